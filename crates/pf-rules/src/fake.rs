//! A recording [`Firewall`] for tests (the `fake` feature).
#![forbid(unsafe_code)]

use crate::firewall::Firewall;
use crate::policy::{Phase, Policy};
use crate::FirewallError;

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
}

/// Records every call; can be told to fail the call with a given index.
#[derive(Debug, Default)]
pub struct FakeFirewall {
    /// Every call so far, failed ones included, in order.
    pub calls: Vec<Call>,
    fail_at: Vec<(usize, String)>,
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

    /// The phases applied so far, in order (failed calls included).
    pub fn phases(&self) -> Vec<Phase> {
        self.calls
            .iter()
            .map(|c| match c {
                Call::Apply { phase, .. } => *phase,
            })
            .collect()
    }
}

impl Firewall for FakeFirewall {
    fn apply(&mut self, policy: &Policy, phase: Phase) -> Result<(), FirewallError> {
        let index = self.calls.len();
        self.calls.push(Call::Apply {
            policy: policy.clone(),
            phase,
        });
        match self.fail_at.iter().find(|(i, _)| *i == index) {
            Some((_, reason)) => Err(FirewallError::Injected(reason.clone())),
            None => Ok(()),
        }
    }
}
