//! The project's automation beyond building the image (that is
//! `appliance-image`'s, which `cargo xtask image|verify|pins|gce` wrap): the
//! VM harness, the end-to-end suite, `run`, the benchmarks and the syscall
//! trace. A library so its pieces can be tested; the `xtask` binary only
//! dispatches subcommands.
//!
//! This crate never runs on the appliance. It may use `anyhow` and print
//! progress, but parsers of outside input still take `&[u8]` and never panic.

pub mod bench;
pub mod e2e;
pub mod qemu;
pub mod run;
pub mod seccomp;
pub mod standin;
pub mod testnet;

/// Arguments a command cannot make sense of: `cargo xtask` exits with status
/// 2 ([`appliance_image::cli::EXIT_USAGE`]) and prints the usage on stderr.
#[derive(Debug)]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The command's usage.
    pub usage: &'static str,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n\n{}", self.message, self.usage)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as the `anyhow::Error` the commands return.
pub fn usage_error(message: impl Into<String>, usage: &'static str) -> anyhow::Error {
    UsageError {
        message: message.into(),
        usage,
    }
    .into()
}
