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
pub mod packages;
pub mod run;
pub mod seccomp;

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

/// The options of a command that parses its own (`run`, `e2e`, `bench`):
/// one at a time, each value taken right after its flag, usage errors
/// carrying the command's usage.
#[derive(Debug)]
pub struct Args<'a> {
    rest: std::slice::Iter<'a, String>,
    usage: &'static str,
}

impl<'a> Args<'a> {
    /// The options in `args`, for a command with this usage.
    pub fn new(args: &'a [String], usage: &'static str) -> Args<'a> {
        Args {
            rest: args.iter(),
            usage,
        }
    }

    /// The next option, if any.
    pub fn next_flag(&mut self) -> Option<&'a str> {
        self.rest.next().map(String::as_str)
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> anyhow::Result<String> {
        self.rest
            .next()
            .cloned()
            .ok_or_else(|| usage_error(format!("{flag} needs a value"), self.usage))
    }

    /// The value after `flag`, parsed.
    pub fn parse<T>(&mut self, flag: &str) -> anyhow::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        use anyhow::Context as _;
        self.value(flag)?.parse().with_context(|| flag.to_owned())
    }

    /// The usage error for an option the command does not know.
    pub fn unknown(&self, flag: &str) -> anyhow::Error {
        usage_error(format!("unknown argument `{flag}`"), self.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_take_values_after_their_flags() {
        let words: Vec<String> = ["--runs", "3", "--image", "/i", "--runs", "x", "--last"]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        let mut a = Args::new(&words, "usage: test");
        assert_eq!(a.next_flag(), Some("--runs"));
        assert_eq!(a.parse::<usize>("--runs").unwrap(), 3);
        assert_eq!(a.next_flag(), Some("--image"));
        assert_eq!(a.value("--image").unwrap(), "/i");
        assert_eq!(a.next_flag(), Some("--runs"));
        let bad = a.parse::<usize>("--runs").unwrap_err();
        assert!(bad.downcast_ref::<UsageError>().is_none(), "{bad:#}");
        assert!(format!("{bad:#}").starts_with("--runs: "), "{bad:#}");
        assert_eq!(a.next_flag(), Some("--last"));
        let missing = a.value("--last").unwrap_err();
        let usage = missing.downcast_ref::<UsageError>().unwrap();
        assert_eq!(usage.message, "--last needs a value");
        assert_eq!(usage.usage, "usage: test");
        assert!(a.unknown("--what").downcast_ref::<UsageError>().is_some());
        assert_eq!(a.next_flag(), None);
    }
}
