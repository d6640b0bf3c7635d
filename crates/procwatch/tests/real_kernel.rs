//! The engine on the real kernel (root needed; nothing is skipped):
//! - `/proc` reading of a process with a hostile name, and of a vanished pid;
//! - inside a fresh PID namespace (`unshare --pid --fork --mount-proc`): a
//!   forbidden child of PID 1 (the seed's hole) is caught by the rescan;
//! - the proc connector: a forbidden exec is caught by the event path, not
//!   by the (hour-long) rescan;
//! - `run_governor` in a child process with a printing machine: watchdog
//!   pets, a power-button press from a FIFO, a forbidden exec halting;
//! - forks of the root bounded in number and lifetime, and alarms
//!   (`linux/fork_bounds.rs`).
//!
//! The proc connector ignores listeners outside the initial PID namespace,
//! so the connector cases run in it, scoped to this process's descendants.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_os = "linux")]
#[path = "linux/real_kernel.rs"]
mod imp;

#[cfg(target_os = "linux")]
fn main() {
    imp::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("real_kernel: Linux only");
}
