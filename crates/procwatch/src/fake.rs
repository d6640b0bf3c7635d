//! Recording fakes for tests (this crate's and other crates'), behind the
//! `fake` feature.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::error::Error;
use crate::model::{ProcInfo, Read, SourceEvent};
use crate::traits::{Enforcer, EventSource, Machine, ProcessSource};
use crate::Verdict;

/// A process table the test edits.
///
/// Each listed process reads as its [`Read`] (a [`Read::Gone`] is listed
/// but vanishes when read). [`ProcessSource::process`] and
/// [`ProcessSource::reread`] first answer from the pid's script, in order,
/// then from the table.
#[derive(Debug, Default, Clone)]
pub struct FakeProcessSource {
    /// The processes, by pid.
    pub procs: BTreeMap<u32, Read>,
    /// Answers to the next single-process reads of a pid, in order.
    pub scripts: BTreeMap<u32, VecDeque<Read>>,
    /// Full snapshots taken so far.
    pub snapshots: u64,
    /// Calls to `reread`, by pid.
    pub rereads: BTreeMap<u32, u32>,
    /// Calls to `process`, by pid.
    pub reads: BTreeMap<u32, u32>,
    /// The next snapshot fails with [`Error::Injected`].
    pub fail_next_snapshot: bool,
    /// Now, in clock ticks since boot ([`FAKE_TICKS_PER_SECOND`] a
    /// second), the clock [`ProcInfo::start_time`] counts; `None`: the
    /// source has no clock ([`ProcessSource::age_of`] answers `None`).
    pub clock: Option<u64>,
}

/// Clock ticks per second of the fake's clock (Linux's `USER_HZ`).
pub const FAKE_TICKS_PER_SECOND: u64 = 100;

impl FakeProcessSource {
    /// A table holding `procs`.
    pub fn with(procs: impl IntoIterator<Item = ProcInfo>) -> Self {
        Self {
            procs: procs
                .into_iter()
                .map(|p| (p.pid, Read::Complete(p)))
                .collect(),
            ..Self::default()
        }
    }

    /// Adds or replaces a process, readable completely.
    pub fn insert(&mut self, p: ProcInfo) {
        self.procs.insert(p.pid, Read::Complete(p));
    }

    /// Lists `pid`, reading as `read`.
    pub fn insert_read(&mut self, pid: u32, read: Read) {
        self.procs.insert(pid, read);
    }

    /// Queues the answer to the next single-process read of `pid`.
    pub fn script(&mut self, pid: u32, read: Read) {
        self.scripts.entry(pid).or_default().push_back(read);
    }

    fn read_one(&mut self, pid: u32) -> Read {
        if let Some(next) = self.scripts.get_mut(&pid).and_then(VecDeque::pop_front) {
            return next;
        }
        self.procs.get(&pid).cloned().unwrap_or(Read::Gone)
    }

    /// Removes a process.
    pub fn remove(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }
}

impl ProcessSource for FakeProcessSource {
    fn snapshot(&mut self) -> Result<Vec<Read>, Error> {
        if std::mem::take(&mut self.fail_next_snapshot) {
            return Err(Error::Injected("snapshot"));
        }
        self.snapshots += 1;
        Ok(self.procs.values().cloned().collect())
    }

    fn process(&mut self, pid: u32) -> Result<Read, Error> {
        *self.reads.entry(pid).or_default() += 1;
        Ok(self.read_one(pid))
    }

    fn reread(&mut self, pid: u32) -> Result<Read, Error> {
        *self.rereads.entry(pid).or_default() += 1;
        Ok(self.read_one(pid))
    }

    fn age_of(&self, start_time: u64) -> Option<Duration> {
        let ticks = self.clock?.saturating_sub(start_time);
        Some(Duration::from_millis(
            ticks.saturating_mul(1000 / FAKE_TICKS_PER_SECOND),
        ))
    }
}

/// A queue of events the test fills; `wait` hands all of them over at once.
#[derive(Debug, Default, Clone)]
pub struct FakeEventSource {
    /// Pending events.
    pub queue: VecDeque<SourceEvent>,
    /// Calls to `wait`.
    pub waits: u64,
}

impl FakeEventSource {
    /// Queues an event.
    pub fn push(&mut self, ev: SourceEvent) {
        self.queue.push_back(ev);
    }
}

impl EventSource for FakeEventSource {
    fn wait(&mut self, _timeout: Duration, out: &mut Vec<SourceEvent>) -> Result<(), Error> {
        self.waits += 1;
        out.extend(self.queue.drain(..));
        Ok(())
    }
}

/// Records verdicts; halting returns so the engine carries on.
#[derive(Debug, Default, Clone)]
pub struct RecordingEnforcer {
    /// Halts, in order.
    pub halts: Vec<Verdict>,
    /// Notes, in order.
    pub notes: Vec<Verdict>,
    /// `halt` fails with [`Error::Injected`] (after recording).
    pub fail_halt: bool,
}

impl Enforcer for RecordingEnforcer {
    fn halt(&mut self, verdict: &Verdict) -> Result<(), Error> {
        self.halts.push(verdict.clone());
        if self.fail_halt {
            return Err(Error::Injected("halt"));
        }
        Ok(())
    }

    fn note(&mut self, verdict: &Verdict) {
        self.notes.push(verdict.clone());
    }
}

/// One call made to a [`FakeMachine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `console_line(line)`.
    ConsoleLine(String),
    /// `sync()`.
    Sync,
    /// `halt()`.
    Halt,
    /// `power_off()`.
    PowerOff,
    /// `pet_watchdog()`.
    PetWatchdog,
}

/// Which calls a [`FakeMachine`] fails.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FailCalls {
    /// `halt()` fails.
    pub halt: bool,
    /// `power_off()` fails.
    pub power_off: bool,
    /// `pet_watchdog()` fails.
    pub pet_watchdog: bool,
}

/// A machine that records every call (failing calls are recorded too).
#[derive(Debug, Default, Clone)]
pub struct FakeMachine {
    /// Calls, in order.
    pub calls: Vec<Call>,
    /// Calls to fail.
    pub fail: FailCalls,
}

impl Machine for FakeMachine {
    fn console_line(&mut self, line: &str) {
        self.calls.push(Call::ConsoleLine(line.to_owned()));
    }

    fn sync(&mut self) {
        self.calls.push(Call::Sync);
    }

    fn halt(&mut self) -> Result<(), Error> {
        self.calls.push(Call::Halt);
        if self.fail.halt {
            return Err(Error::Injected("halt"));
        }
        Ok(())
    }

    fn power_off(&mut self) -> Result<(), Error> {
        self.calls.push(Call::PowerOff);
        if self.fail.power_off {
            return Err(Error::Injected("power_off"));
        }
        Ok(())
    }

    fn pet_watchdog(&mut self) -> Result<(), Error> {
        self.calls.push(Call::PetWatchdog);
        if self.fail.pet_watchdog {
            return Err(Error::Injected("pet_watchdog"));
        }
        Ok(())
    }
}
