//! TEST IMAGES ONLY (feature `test-intruder`): one forbidden process, a few
//! seconds after the server starts, so the e2e tests can watch the governor
//! halt the machine.
//!
//! Why it comes from the governor: after the seal only two processes are
//! left, the server (PID 1, which init no longer controls once it has exec'd)
//! and the governor. A child forked by init before its exec would already
//! exist at the seal and be caught at once, before the server has served
//! anything. So the governor process, before it starts watching, spawns a
//! thread that waits until PID 1 runs the server, waits [`DELAY`] more, and
//! then starts `/proc/self/exe` (the appliance binary) with the argument
//! [`INTRUDER_ARG`]. That process matches none of the policy's allow rules:
//! its pid is not the governor's, it is no kernel thread, not PID 1, and not
//! a fork of the server by PID 1 (its parent is the governor, its exe is
//! `/init`, its uid 0); and it execs after the seal. The governor halts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use appliance_spec::Spec;

/// Present in the binary only with this feature; `cargo xtask verify` fails
/// a production image whose init contains it.
pub const TEST_INTRUDER_MARKER: &str = "appliance-test-intruder-v1";

/// The argument that makes the binary the intruder instead of init.
pub const INTRUDER_ARG: &str = "--test-intruder";

/// Time between the server's start and the intruder's.
pub const DELAY: Duration = Duration::from_secs(5);

/// How long to wait for PID 1 to become the server before giving up.
const SERVER_WAIT: Duration = Duration::from_secs(600);

/// Starts the thread that will start the intruder.
pub fn arm(spec: &Spec) {
    let server = spec.server.binary.clone();
    let spawned = std::thread::Builder::new()
        .name("test-intruder".to_owned())
        .spawn(move || {
            if wait_for_server(Path::new(&server)) {
                std::thread::sleep(DELAY);
                eprintln!(
                    "appliance: {TEST_INTRUDER_MARKER}: starting a forbidden process {} s after the server",
                    DELAY.as_secs()
                );
                if let Err(error) = Command::new("/proc/self/exe").arg(INTRUDER_ARG).spawn() {
                    eprintln!("appliance: {TEST_INTRUDER_MARKER}: could not start: {error}");
                }
            }
        });
    if let Err(error) = spawned {
        eprintln!("appliance: {TEST_INTRUDER_MARKER}: no thread: {error}");
    }
}

fn wait_for_server(server: &Path) -> bool {
    let step = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    while waited < SERVER_WAIT {
        if std::fs::read_link("/proc/1/exe").is_ok_and(|exe| exe == server) {
            return true;
        }
        std::thread::sleep(step);
        waited = waited.saturating_add(step);
    }
    false
}

/// What the intruder process does: nothing, until the governor halts the
/// machine.
pub fn be_the_intruder() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The kernel command-line word that makes a test image's governor stay idle
/// for N seconds before it starts watching (`cargo xtask bench boot` measures
/// the server with and without the governor in one VM session this way).
/// Only a test image (this feature) reads it; a production image ignores the
/// command line entirely.
pub const GOVERNOR_DELAY_PARAM: &str = "appliance.test_governor_delay=";

/// The delay asked for on `/proc/cmdline`, if any.
pub fn governor_delay() -> Option<u64> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(GOVERNOR_DELAY_PARAM))
        .and_then(|n| n.parse().ok())
}
