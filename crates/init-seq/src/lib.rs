//! The appliance's boot sequence (design §4): PID 1 from the first mount to
//! the `execve` of the server, as a validated [`Plan`] of ordered, named steps
//! carried out over a [`Machine`]: init's own syscalls behind the [`Os`]
//! trait, and the network, the firewall and the metadata server behind their
//! own crates' traits (`netconf::Network`, `pf_rules::Firewall`,
//! `metadata_fetch::Connector`).
//!
//! The crate owns the order and the fail-closed discipline: [`boot`] checks
//! that it is PID 1, reads the spec and the module load order from the image,
//! validates everything into a [`Plan`] (no side effects), then runs the
//! steps; at the first error it prints exactly one line
//! `appliance: FATAL <step>: <reason>`, calls `sync()` and halts. What each
//! step does to the machine lives behind the [`Machine`]'s parts, passed in
//! by the caller: `os::linux::LinuxOs` and the leaf crates' Linux
//! implementations for real; `fake::FakeMachine` (feature `fake`) for tests,
//! `fake::FakeOs` recording init's typed calls beside the leaf crates' own
//! recording fakes, in one journal.
//!
//! It deliberately does not: render the firewall, speak DHCP or HTTP, or
//! decide what the governor allows (pf-rules, netconf, metadata-fetch and
//! procwatch do; the boot calls them through their traits); format a disk
//! (the data disk is found by its ext4 label or the boot halts); or retry a
//! failed step.
//!
//! Invariants:
//! - Nothing is done to the machine before the spec, the module order and
//!   every derived path, uid and rule have been validated.
//! - The firewall's boot phase is loaded before any metadata fetch, the sealed
//!   phase before the data disk, the governor, and the server; the sealed
//!   rules are read back from the kernel and checked rule by rule before
//!   the boot goes on.
//! - The metadata client is opened at the first fetch and dropped (its
//!   thread joined) in the `metadata close` step, never reopened; init checks
//!   it has one thread before it forks.
//! - Cleartext secrets live only in [`metadata_fetch::Secret`]s (zeroized on
//!   drop), are stripped of one trailing line ending in place and checked
//!   ([`secrets`]) before the ACL is rendered, are dropped right after it,
//!   and never reach a console line, a file or an error.
//! - The server is exec'd with one memory budget ([`budget`]) whose figures
//!   add up to at most `MemTotal`; the governor is exempt from the
//!   out-of-memory killer before privileges are dropped.
//! - The governor is forked single-threaded, before privileges are dropped.
//! - The server is exec'd with an effective uid other than 0 (seed 003), no
//!   capabilities, `no_new_privs` and Landlock; `execve` is the last call.
//! - `unsafe` lives only in `os/linux.rs`, one `// SAFETY:` comment per block.
#![deny(missing_docs)]

mod boot;
pub mod budget;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod os;
pub mod parse;
pub mod plan;
pub mod seccomp;
pub mod secrets;

pub use boot::grow_data_filesystem;
pub use boot::{
    boot, fatal_line, run, BootOptions, Fatal, FilterChoice, Governor, Machine, CONSOLE_PREFIX,
    STEP_PID1, STEP_PLAN, STEP_SPEC,
};
pub use budget::{MemoryBudget, OutputLimit};
pub use error::InitError;
pub use os::{
    Exec, FsAccess, FsRule, GovernorLink, LandlockRules, Mount, MountFlags, Os, Owner, LANDLOCK_ABI,
};
pub use plan::{Action, Plan, Step};
