//! TEST IMAGES ONLY (feature `test-hooks`): what a test image's init and
//! governor do differently, each asked for on the kernel command line:
//! `appliance.test_governor_delay=N` (the governor idles N seconds before it
//! watches: `cargo xtask bench boot` measures the server with and without
//! it in one VM session), `appliance.test_seccomp=off|log` (no syscall
//! filter, for the benchmark; or refusals continued and noted once, for
//! measuring the allowlist) and `appliance.test_max_child_seconds=N` (a
//! shorter bound on a server fork's life, for the e2e case that outlives
//! it).
//!
//! The attacks the e2e tests make come from inside the server, through the
//! test-only `intruder` Valkey module; init spawns nothing for them.

/// Present in the binary only with this feature; `cargo xtask verify` fails
/// a production image whose init contains it.
pub const TEST_HOOKS_MARKER: &str = "appliance-test-hooks-v1";

/// The kernel command-line word that makes a test image's governor stay idle
/// for N seconds before it starts watching. Only a test image (this feature)
/// reads it; a production image ignores the command line entirely.
pub const GOVERNOR_DELAY_PARAM: &str = "appliance.test_governor_delay=";

/// The word that changes what happens to the server's syscall filter:
/// `off` boots without one (the benchmark measures its cost), `log` turns
/// every refusal into a continued call the governor notes once (the
/// allowlist checked against the real workload), `record` notifies every
/// call the same way (what the server uses at all: how the allowlist is
/// measured).
pub const SECCOMP_PARAM: &str = "appliance.test_seccomp=";

/// The word that shortens `governor.max_child_seconds` to N seconds, so the
/// e2e case for a fork that outlives its bound does not wait the
/// reference's ten minutes.
pub const MAX_CHILD_PARAM: &str = "appliance.test_max_child_seconds=";

/// What `appliance.test_seccomp=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompHook {
    /// No filter at all.
    Off,
    /// The filter, with refusals continued and noted.
    Log,
    /// A filter that notifies every call, each continued and noted once:
    /// what the server uses at all.
    Record,
}

fn cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

/// The value of the word starting with `prefix` on `cmdline`.
fn param<'a>(cmdline: &'a str, prefix: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix))
}

/// The delay asked for on `/proc/cmdline`, if any.
pub fn governor_delay() -> Option<u64> {
    delay_in(&cmdline())
}

/// The delay a command line asks for.
fn delay_in(cmdline: &str) -> Option<u64> {
    param(cmdline, GOVERNOR_DELAY_PARAM).and_then(|n| n.parse().ok())
}

/// The seccomp hook asked for on `/proc/cmdline`, if any.
pub fn seccomp_hook() -> Option<SeccompHook> {
    seccomp_in(&cmdline())
}

fn seccomp_in(cmdline: &str) -> Option<SeccompHook> {
    match param(cmdline, SECCOMP_PARAM)? {
        "off" => Some(SeccompHook::Off),
        "log" => Some(SeccompHook::Log),
        "record" => Some(SeccompHook::Record),
        _ => None,
    }
}

/// The shortened child lifetime asked for on `/proc/cmdline`, if any.
pub fn max_child_seconds() -> Option<u64> {
    max_child_in(&cmdline())
}

fn max_child_in(cmdline: &str) -> Option<u64> {
    param(cmdline, MAX_CHILD_PARAM)
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_from_the_command_line() {
        let cases = [
            (
                "console=ttyS0 appliance.test_governor_delay=40 quiet",
                Some(40),
            ),
            ("console=ttyS0", None),
            ("appliance.test_governor_delay=x", None),
            ("appliance.test_governor_delay=", None),
        ];
        for (cmdline, want) in cases {
            assert_eq!(delay_in(cmdline), want, "{cmdline}");
        }
    }

    #[test]
    fn seccomp_and_child_bound_from_the_command_line() {
        assert_eq!(
            seccomp_in("quiet appliance.test_seccomp=off"),
            Some(SeccompHook::Off)
        );
        assert_eq!(
            seccomp_in("appliance.test_seccomp=log panic=-1"),
            Some(SeccompHook::Log)
        );
        assert_eq!(seccomp_in("appliance.test_seccomp=maybe"), None);
        assert_eq!(seccomp_in("console=ttyS0"), None);
        assert_eq!(
            max_child_in("appliance.test_max_child_seconds=15"),
            Some(15)
        );
        assert_eq!(max_child_in("appliance.test_max_child_seconds=0"), None);
        assert_eq!(max_child_in("appliance.test_max_child_seconds=x"), None);
    }
}
