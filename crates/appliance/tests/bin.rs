//! The built `/init` binary, run for real where that is harmless: as an
//! ordinary process (it must refuse), and as PID 1 of a fresh PID and mount
//! namespace with an empty `/etc` (it must fail closed at the spec step:
//! FATAL line, `sync`, `reboot(HALT)`, which in a PID namespace only kills
//! that namespace's init with SIGINT). Needs root and util-linux `unshare`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_appliance");

fn banner() -> String {
    format!("appliance: init {} starting", appliance::VERSION)
}

#[test]
fn refuses_unless_pid_1() {
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0], banner());
    assert!(
        lines[1].starts_with("appliance: FATAL pid1: running as pid "),
        "{stderr}"
    );
}

#[test]
fn as_pid_1_without_a_spec_it_halts() {
    // The tmpfs over /etc guarantees the boot stops at the spec step, before
    // any step that would touch the host's kernel settings.
    let script = format!("mount -t tmpfs none /etc && exec {BIN}");
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "{}\nappliance: FATAL spec: open /etc/appliance.toml: No such file or directory (os error 2)\n",
            banner()
        )
    );
    // reboot(RB_HALT_SYSTEM) in a PID namespace: its init dies of SIGINT,
    // which unshare passes on by dying of it too.
    assert_eq!(out.status.signal(), Some(2), "{:?}", out.status);
}

#[test]
fn test_hooks_marker_only_with_the_feature() {
    let binary = std::fs::read(BIN).unwrap();
    let marker = b"appliance-test-hooks-v1";
    let present = binary.windows(marker.len()).any(|w| w == marker);
    assert_eq!(present, cfg!(feature = "test-hooks"));
    #[cfg(feature = "test-hooks")]
    assert_eq!(appliance::TEST_HOOKS_MARKER.as_bytes(), marker);
}
