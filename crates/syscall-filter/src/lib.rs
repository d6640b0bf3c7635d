//! seccomp-BPF syscall filters as plain data: describe a filter (a default
//! [`Action`] and ordered [`Rule`]s on x86_64 syscalls and their argument
//! registers), [`compile`] it to classic BPF, install it, and serve the
//! user notifications it raises.
//!
//! The crate owns one concern: turning a description into a program the
//! kernel enforces exactly as described, and giving a supervisor process the
//! calls the program hands it. The description ([`Filter`]) is data that
//! serializes and diffs; [`Filter::evaluate`] is its meaning, and the
//! compiled program answers the same for every call (checked by a property
//! test and a fuzz target against the `interpret` module, feature
//! `interpret`). On Linux, [`linux`] installs a program
//! (`seccomp(SECCOMP_SET_MODE_FILTER)`), wraps the notification listener,
//! passes it between processes, and records what a program calls
//! ([`Recorder`]) so an allowlist can be derived from a run.
//!
//! It deliberately does not choose which calls an application needs (the
//! caller brings the description, typically measured with [`Recorder`]),
//! decide what to do about a refused call (the supervisor does: the
//! appliance's governor halts the machine), or read the caller's memory
//! behind pointer arguments.
//!
//! Invariants:
//! - Every compiled program first kills a process calling through another
//!   architecture and answers x32-ABI calls with [`Filter::x32_action`]
//!   (never `Allow`), so no rule can be sidestepped by the calling
//!   convention.
//! - `compile` validates first: a rule that can never apply, an argument
//!   that does not exist, a condition that is always or never true, an
//!   errno the kernel cannot return, or a program longer than the kernel
//!   takes is an error, never a silently different filter.
//! - The pure core (description, table, compiler, interpreter, recorder)
//!   has no `unsafe` and no I/O and builds on any host; `unsafe` lives only
//!   in [`linux`], one `// SAFETY:` comment per block.
//! - Nothing in the crate panics on any input (no `unwrap`, no unchecked
//!   indexing outside tests).
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod args;
mod bpf;
mod compile;
mod error;
mod filter;
mod notify;
mod record;
pub mod syscalls;

#[cfg(feature = "interpret")]
pub mod interpret;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod linux;

pub use args::{describe_args, signature};
pub use bpf::{op, Instruction, Program, MAX_INSTRUCTIONS};
pub use compile::{compile, compile_with, Layout, TREE_LEAF};
pub use error::Error;
pub use filter::{
    Action, ArgCondition, ArgTest, Filter, Rule, SeccompData, Width, AUDIT_ARCH_X86_64, MAX_ERRNO,
    X32_SYSCALL_BIT,
};
pub use notify::{call_name, Notification, Response};
pub use record::{CallRecord, Recorder};
pub use syscalls::Syscall;
