//! intruder: **TEST IMAGES ONLY.** A Valkey module whose one command,
//! `INTRUDER.STEP <name> [<pid>]`, performs one named attack step from
//! inside the server process and replies with what the kernel answered.
//!
//! Why a module: an exploit of the public server runs exactly there, as
//! PID 1's code, with the server's uid, its Landlock domain, its seccomp
//! filter, its `no_new_privs`, its descriptors and its threads. The test
//! intruder it replaces was a process the governor spawned as root from
//! `/init`: it showed that the governor halts on a stranger, never what an
//! attacker inside the server can reach. The command is only the trigger
//! (the admin may call it, a visitor may not); the attack itself is a raw
//! syscall of the server process or of a child it forks.
//!
//! Why test images only: the module *is* the attacker's foothold. `cargo
//! xtask image --test` puts it into the initramfs and `valkey.conf` loads
//! it; a production build has neither, and `cargo xtask verify` fails a
//! production image holding the module file, its `loadmodule` line, or
//! [`MARKER`] in any file.
//!
//! The crate is split in two:
//! - [`steps`] (pure, no `unsafe`): the one table of steps (name, what it
//!   does, what issue 12's defences are expected to make of it), argument
//!   parsing, the reply text of an outcome and its parser, and the
//!   judgement of what a test observed against what the table expects. The
//!   e2e cases of `cargo xtask e2e` are generated from [`steps::STEPS`].
//! - the `module` feature: the Valkey glue and the syscall edge, one attack
//!   per step; every `unsafe` block there carries a `// SAFETY:` line.
//!
//! Invariants:
//! - A step that the kernel lets through replies `succeeded ...`; one it
//!   refuses replies `refused errno=...`; a step whose call never returns
//!   (the machine halts) never replies. The module never hides an outcome.
//! - Children forked by a step run only raw syscalls on memory prepared
//!   before the fork (the server has other threads, whose locks a child
//!   must never touch).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod steps;

#[cfg(all(feature = "module", target_os = "linux"))]
mod attack;
#[cfg(all(feature = "module", target_os = "linux"))]
mod module;

pub use steps::{
    judge, parse_args, Attack, Errno, Expect, HaltWait, Observed, Outcome, Request, Signal, Step,
    StepError, STEPS,
};

/// Compiled into the module (its load line on the console carries it);
/// `cargo xtask verify` fails a production image that contains it anywhere.
pub const MARKER: &str = "appliance-test-intruder-module-v1";

/// The one command the module registers.
pub const COMMAND: &str = "INTRUDER.STEP";

/// The prefix of the module's console lines about a step:
/// `intruder: step <name>: <what it does>` before the attack and
/// `intruder: step <name>: <reply>` after it (when it returns).
pub const STEP_LINE: &str = "intruder: step ";
