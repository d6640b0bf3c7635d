//! The appliance's one program, wired from the workspace's crates: `init`
//! (PID 1: the boot sequence of `init-seq` over the real Linux OS, ending in
//! the `execve` of the server) and the governor that init forks on the way
//! (the same binary, no exec: `procwatch`'s Linux governor with the policy
//! built here from the spec).
//!
//! This crate only wires; every behaviour lives in a library crate with its
//! own tests. It deliberately has no command line: what it does follows from
//! being PID 1 and from `/etc/appliance.toml`.
//!
//! Invariants:
//! - The governor's policy is data built from the spec ([`governor_policy`]):
//!   the sealed PID 1 is the spec's server binary running as the spec's uid;
//!   the governor is the forked child's own pid; the server's forks are
//!   bounded (one at a time, `governor.max_child_seconds`) or, with
//!   `server.forks = "never"`, not allowed at all.
//! - Without the `test-hooks` feature the binary holds no test code; with
//!   it, it holds [`TEST_HOOKS_MARKER`], which `cargo xtask verify` looks
//!   for to fail a production image.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::Duration;

use appliance_spec::{Forks, OnEventLoss, Spec};
use procwatch::Policy;

#[cfg(target_os = "linux")]
mod governor;
pub mod seccomp;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;

#[cfg(target_os = "linux")]
pub use governor::governor_main;
#[cfg(feature = "test-hooks")]
pub use test_hooks::TEST_HOOKS_MARKER;

/// What init is told beside the spec: always the defaults (the syscall
/// filter installed) in a production image; a test image may boot without
/// the filter when its command line asks (`appliance.test_seccomp=off`).
pub fn boot_options() -> init_seq::BootOptions {
    #[cfg(feature = "test-hooks")]
    {
        init_seq::BootOptions {
            syscall_filter: || match test_hooks::seccomp_hook() {
                Some(test_hooks::SeccompHook::Off) => init_seq::FilterChoice::None,
                Some(test_hooks::SeccompHook::Record) => init_seq::FilterChoice::NotifyEverything,
                Some(test_hooks::SeccompHook::Log) | None => init_seq::FilterChoice::Server,
            },
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    init_seq::BootOptions::default()
}

/// The init's version, shown in the banner `appliance: init <version> starting`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The governor's policy for this appliance (design §5): after the seal (PID 1
/// execs the server), PID 1 must be `spec.server().binary()` running as
/// `spec.server().uid()`; the governor (`governor_pid`) and kernel threads are
/// allowed; anything else, any exec, uid change or ptrace attach halts the
/// machine. Plain forks of the server by PID 1 (BGSAVE, AOF rewrite) depend
/// on `spec.server().forks()`:
/// - [`Forks::Bounded`]: allowed and logged, one at a time, each living at
///   most `spec.governor().max_child_seconds()`;
/// - [`Forks::Never`]: no child rule at all, so any new process halts.
pub fn governor_policy(spec: &Spec, governor_pid: u32) -> Policy {
    let on_event_loss = match spec.governor().on_event_loss() {
        OnEventLoss::Halt => procwatch::OnEventLoss::Halt,
        OnEventLoss::Rescan => procwatch::OnEventLoss::Rescan,
    };
    let mut policy = Policy::single_server(
        spec.server().binary(),
        spec.server().uid(),
        governor_pid,
        on_event_loss,
        Duration::from_millis(u64::from(spec.governor().rescan_interval_ms())),
    );
    match spec.server().forks() {
        Forks::Bounded => {
            let lifetime = Duration::from_secs(u64::from(spec.governor().max_child_seconds()));
            for rule in &mut policy.children {
                rule.max_alive = Some(1);
                rule.max_lifetime = Some(lifetime);
            }
        }
        Forks::Never => policy.children.clear(),
    }
    policy
}
