//! TEST IMAGES ONLY (feature `test-hooks`): what a test image's init does
//! differently. One hook is left: `cargo xtask bench boot` can ask a test
//! image's governor to stay idle for N seconds before it starts watching
//! (`appliance.test_governor_delay=N` on the kernel command line), so the
//! server's throughput is measured with and without the governor in one VM
//! session.
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

/// The delay asked for on `/proc/cmdline`, if any.
pub fn governor_delay() -> Option<u64> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    delay_in(&cmdline)
}

/// The delay a command line asks for.
fn delay_in(cmdline: &str) -> Option<u64> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(GOVERNOR_DELAY_PARAM))
        .and_then(|n| n.parse().ok())
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
}
