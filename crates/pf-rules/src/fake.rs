//! A recording [`Firewall`] for tests (the `fake` feature).
#![forbid(unsafe_code)]

use crate::firewall::Firewall;
use crate::policy::{Phase, Policy};
use crate::{FirewallError, ReadBack};

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Firewall::apply`] with its arguments.
    Apply {
        /// The policy applied.
        policy: Policy,
        /// The phase applied.
        phase: Phase,
    },
    /// [`Firewall::verify`] with its arguments.
    Verify {
        /// The policy compared with.
        policy: Policy,
        /// The phase compared with.
        phase: Phase,
    },
}

/// Sees every call as it is recorded (see [`FakeFirewall::set_observer`]).
type Observer = Box<dyn FnMut(&Call) + Send>;

/// Records every call; can be told to fail the call with a given index.
#[derive(Default)]
pub struct FakeFirewall {
    /// Every call so far, failed ones included, in order.
    pub calls: Vec<Call>,
    fail_at: Vec<(usize, String)>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for FakeFirewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFirewall")
            .field("calls", &self.calls)
            .field("fail_at", &self.fail_at)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl FakeFirewall {
    /// A fake that accepts everything.
    pub fn new() -> FakeFirewall {
        FakeFirewall::default()
    }

    /// Makes the `index`-th call (0-based) fail with
    /// [`FirewallError::Injected`] carrying `reason`.
    pub fn fail_call(mut self, index: usize, reason: &str) -> FakeFirewall {
        self.fail_at.push((index, reason.to_owned()));
        self
    }

    /// Also hands each call, as it is recorded, to `observer` (replacing any
    /// earlier one): a test driving several fakes keeps one record of all
    /// their calls, in the order they were made.
    pub fn set_observer(&mut self, observer: impl FnMut(&Call) + Send + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// The phases applied so far, in order (failed calls included;
    /// verifications left out).
    pub fn phases(&self) -> Vec<Phase> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Apply { phase, .. } => Some(*phase),
                Call::Verify { .. } => None,
            })
            .collect()
    }

    fn record(&mut self, call: Call) -> Result<(), FirewallError> {
        let index = self.calls.len();
        if let Some(observer) = &mut self.observer {
            observer(&call);
        }
        self.calls.push(call);
        match self.fail_at.iter().find(|(i, _)| *i == index) {
            Some((_, reason)) => Err(FirewallError::Injected(reason.clone())),
            None => Ok(()),
        }
    }
}

impl Firewall for FakeFirewall {
    fn apply(&mut self, policy: &Policy, phase: Phase) -> Result<(), FirewallError> {
        self.record(Call::Apply {
            policy: policy.clone(),
            phase,
        })
    }

    /// Succeeds with what a kernel holding exactly `policy` in `phase`
    /// would report.
    fn verify(&mut self, policy: &Policy, phase: Phase) -> Result<ReadBack, FirewallError> {
        self.record(Call::Verify {
            policy: policy.clone(),
            phase,
        })?;
        Ok(ReadBack::expected(policy, phase))
    }
}
