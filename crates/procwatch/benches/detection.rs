//! Detection latency and idle cost of the governor, printed as a table.
//!
//! `cargo bench -p procwatch` (root needed: proc connector, `unshare`).
//! Knobs: PROCWATCH_BENCH_EVENT_TRIALS (1000), PROCWATCH_BENCH_POLL_TRIALS
//! (1000; each polling trial takes 500 ms), PROCWATCH_BENCH_IDLE_SECS (60),
//! PROCWATCH_BENCH_IDLE_RUNS (3 rounds of every idle setting; rows are medians).
//!
//! Latency is measured from `Command::spawn` returning in the parent (the
//! forbidden fork+exec is done) to the enforcer being called, in-process,
//! with the policy scoped to this process's descendants so the rest of the
//! (shared, busy) host is read but not judged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_os = "linux")]
#[path = "linux/detection.rs"]
mod imp;

#[cfg(target_os = "linux")]
fn main() {
    imp::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("detection: Linux only");
}
