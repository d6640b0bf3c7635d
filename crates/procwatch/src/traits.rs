//! The seams between the engine and the world: where processes and events
//! come from, and what happens to verdicts.

use std::time::Duration;

use crate::error::Error;
use crate::model::{Read, SourceEvent};
use crate::render::render_verdict;
use crate::Verdict;

/// A full view of the process table.
///
/// A source never invents a record for what it could not read: a process
/// read only in part is [`Read::Incomplete`], with what was read and what
/// the process was doing, and the engine decides with the policy.
pub trait ProcessSource {
    /// Every process (thread group) now. Processes that vanish while being
    /// read are left out (or reported [`Read::Gone`]), not reported as
    /// errors; an error means the table itself could not be listed.
    fn snapshot(&mut self) -> Result<Vec<Read>, Error>;

    /// The process that has `pid` now. The default takes a snapshot; real
    /// sources read just that process.
    fn process(&mut self, pid: u32) -> Result<Read, Error> {
        let found = self.snapshot()?.into_iter().find(|r| r.pid() == Some(pid));
        Ok(found.unwrap_or(Read::Gone))
    }

    /// `pid` read again after the last snapshot or read found it
    /// incomplete: the same process, [`Read::Gone`] once that one is gone
    /// (even if another process has the pid now). The default reads the
    /// pid afresh; a source that can tell processes apart should do better.
    fn reread(&mut self, pid: u32) -> Result<Read, Error> {
        self.process(pid)
    }

    /// How long ago a process whose [`ProcInfo::start_time`](crate::ProcInfo::start_time)
    /// is `start_time` started, on the clock the source reads start times
    /// from (Linux: `CLOCK_BOOTTIME` against `stat`'s start time, both
    /// counted from boot). `None` when the source has no such clock; the
    /// engine then counts from when it first saw the process, which
    /// underestimates the age of a process first seen late. The default
    /// has none.
    fn age_of(&self, _start_time: u64) -> Option<Duration> {
        None
    }
}

/// One report of an [`Alarm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmReport {
    /// The process (or thread) the report is about, in the PID namespace of
    /// the engine's process source.
    pub pid: u32,
    /// What happened, for the console line (escaped there).
    pub what: String,
    /// Whether it halts the machine; `false` makes it a logged note (a
    /// mechanism in a measuring mode, for instance).
    pub halt: bool,
}

/// A kernel mechanism beside the process table whose reports the governor
/// turns into verdicts (a seccomp user-notification listener, for
/// instance). A report halts even before the seal: the mechanism has
/// already acted, so something happened that the appliance never does.
pub trait Alarm {
    /// Names the alarm on the console (`alarm from <name>: <what>`).
    fn name(&self) -> &str;

    /// A descriptor that polls readable while reports are pending. If it
    /// hangs up or fails and [`Alarm::read`] then gives nothing, the
    /// governor stops with [`Error::AlarmGone`].
    #[cfg(target_os = "linux")]
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_>;

    /// Appends what is pending to `out`, without blocking (possibly
    /// nothing). An error stops the governor: reports could be missed.
    fn read(&mut self, out: &mut Vec<AlarmReport>) -> Result<(), Error>;
}

/// A stream of process events.
pub trait EventSource {
    /// Waits up to `timeout` for events and appends what arrived to `out`
    /// (possibly nothing). Returns early once something arrived.
    fn wait(&mut self, timeout: Duration, out: &mut Vec<SourceEvent>) -> Result<(), Error>;
}

/// An event source with no events: the engine then relies on rescans alone
/// (the seed's polling model, or a kernel without a process-event API).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSource for NoEvents {
    fn wait(&mut self, timeout: Duration, _out: &mut Vec<SourceEvent>) -> Result<(), Error> {
        std::thread::sleep(timeout);
        Ok(())
    }
}

/// Acts on verdicts.
pub trait Enforcer {
    /// Stops the machine. In production this does not return on success;
    /// a recorder returns `Ok` and the engine carries on.
    fn halt(&mut self, verdict: &Verdict) -> Result<(), Error>;

    /// Records an allowed-but-logged verdict.
    fn note(&mut self, verdict: &Verdict);

    /// Called once, when the policy seals, with every userspace process the
    /// engine then knows (sorted by pid), before any of them is judged. The
    /// default does nothing.
    fn sealed(&mut self, _userspace: &[&crate::ProcInfo]) {}
}

/// The machine's life: console, disks, power, watchdog.
pub trait Machine {
    /// Writes one line to the console (the line has no newline; the
    /// implementation adds one and writes it in a single call).
    fn console_line(&mut self, line: &str);
    /// Flushes file systems.
    fn sync(&mut self);
    /// Halts the machine; returns only on failure.
    fn halt(&mut self) -> Result<(), Error>;
    /// Powers the machine off; returns only on failure.
    fn power_off(&mut self) -> Result<(), Error>;
    /// Tells the watchdog the governor is alive.
    fn pet_watchdog(&mut self) -> Result<(), Error>;
}

/// The production enforcer over any [`Machine`]: one console line naming the
/// offender, `sync()`, halt; if halting fails, power off.
#[derive(Debug)]
pub struct MachineEnforcer<M> {
    machine: M,
}

impl<M: Machine> MachineEnforcer<M> {
    /// Wraps a machine.
    pub fn new(machine: M) -> Self {
        Self { machine }
    }

    /// The machine, for the governor loop (power button, watchdog).
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Unwraps the machine.
    pub fn into_machine(self) -> M {
        self.machine
    }
}

impl<M: Machine> Enforcer for MachineEnforcer<M> {
    fn halt(&mut self, verdict: &Verdict) -> Result<(), Error> {
        self.machine.console_line(&render_verdict(verdict));
        self.machine.sync();
        let halt_error = match self.machine.halt() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        self.machine.console_line(&format!(
            "procwatch: halt failed ({halt_error}); powering off"
        ));
        match self.machine.power_off() {
            Ok(()) => Ok(()),
            Err(_) => Err(halt_error),
        }
    }

    fn note(&mut self, verdict: &Verdict) {
        self.machine.console_line(&render_verdict(verdict));
    }

    /// Prints the table at the seal: `procwatch: seal: <process>` per
    /// userspace process, then `procwatch: seal: end (<n> userspace processes)`.
    fn sealed(&mut self, userspace: &[&crate::ProcInfo]) {
        for p in userspace {
            self.machine.console_line(&format!(
                "procwatch: seal: {}",
                crate::render::render_process(p)
            ));
        }
        self.machine.console_line(&format!(
            "procwatch: seal: end ({} userspace processes)",
            userspace.len()
        ));
    }
}
