//! Process-table governance: watch every process on a machine (or under one
//! process), judge each against a policy that is plain data, and hand what
//! is not allowed to an enforcer that halts the machine.
//!
//! The crate owns one concern: deciding, as soon as the kernel reports it,
//! whether a process may exist. It reads the process table through a
//! [`ProcessSource`] (a full snapshot) and an [`EventSource`] (fork, exec,
//! uid change, ptrace, comm, exit; lost-event signal), and acts only through
//! an [`Enforcer`] (and a [`Machine`] for console, sync, halt, power off and
//! watchdog). Allowed children can be bounded in number and lifetime
//! ([`ChildRule::max_alive`], [`ChildRule::max_lifetime`]). Other kernel
//! mechanisms report through an [`Alarm`] (a seccomp listener, say): a
//! report is a verdict of its own, a halt even before the seal. On Linux,
//! [`linux`] provides all of them: a `/proc` reader, the proc connector over
//! netlink, `reboot(2)`, the ACPI power button and `/dev/watchdog`, and
//! [`linux::run_governor_with_alarms`] wiring them together.
//!
//! It deliberately knows nothing of any particular appliance, spec format or
//! server: callers build a [`Policy`] (e.g. [`Policy::single_server`]). It
//! does not kill processes: its only remedy is the whole machine.
//!
//! Invariants:
//! - procwatch never halts without a policy verdict: every call to
//!   [`Enforcer::halt`] carries a [`Verdict`] with a `Halt` [`Decision`].
//! - Before the seal no process is judged; at the seal every process is.
//!   An alarm's report is judged at once, sealed or not.
//! - No process is judged on a record that could not be read: a source
//!   reports it [`Read::Incomplete`], and the engine judges what the
//!   process was last read completely as, or, for one never read
//!   completely and alive, the policy's verdict on an unknown process.
//! - Parsers take bytes, check lengths first and never panic; nothing in the
//!   engine or the governor loop panics.
//! - Unsafe code lives only in `linux` (the syscall edge), one
//!   `// SAFETY:` comment per block.
#![deny(missing_docs)]

mod engine;
mod error;
mod model;
pub mod parse;
mod policy;
pub mod render;
mod traits;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

#[cfg(target_os = "linux")]
pub mod linux;

pub use engine::{DetectedBy, Engine, Stats, Verdict, MAX_READ_ATTEMPTS};
pub use error::Error;
pub use model::{
    Incomplete, Liveness, Partial, ProcEvent, ProcInfo, Read, SourceEvent, Unreadable,
};
pub use policy::{
    ChildRule, Decision, History, OnEventLoss, Policy, Reason, RootRule, Scope, SealOn,
    SealedRules, DEFAULT_RESCAN_INTERVAL,
};
pub use traits::{
    Alarm, AlarmReport, Enforcer, EventSource, Machine, MachineEnforcer, NoEvents, ProcessSource,
};

#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod tests;
