//! The `appliance-image` binary's exit statuses and output streams, run as
//! a user runs it: help on stdout with 0, a usage error on stderr with 2, an
//! audit failure 1, a missing host tool 3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], path: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_appliance-image"));
    cmd.args(args).current_dir(std::env::temp_dir());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_goes_to_stdout_with_status_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["build", "--help"],
        &["verify", "-h"],
        &["gce", "--help"],
        &["pins", "--help"],
    ] {
        let out = run(args, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            text(&out.stdout).starts_with("usage: appliance-image"),
            "{args:?}"
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn usage_errors_go_to_stderr_with_status_2() {
    for args in [
        &[][..],
        &["bogus"],
        &["build", "--bogus"],
        &["verify", "a", "b"],
        &["gce", "--project", "p"],
        &["pins"],
    ] {
        let out = run(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("appliance-image: "), "{args:?}: {err}");
        assert!(err.contains("usage: appliance-image"), "{args:?}: {err}");
    }
}

#[test]
fn a_failing_audit_is_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("appliance.toml");
    std::fs::write(&spec, appliance_spec::REFERENCE_TOML).unwrap();
    let empty = dir.path().join("image");
    std::fs::create_dir(&empty).unwrap();
    let out = run(
        &[
            "verify",
            empty.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(report.starts_with("[FAIL] manifest:"), "{report}");
}

#[test]
fn a_missing_host_tool_is_status_3() {
    // No PATH with the build's tools (make, cc, mkfs.ext4, dpkg-deb, ...).
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let out = run(
        &[
            "build",
            "--spec",
            &d("s"),
            "--sources",
            &d("p"),
            "--out",
            &d("o"),
            "--cache",
            &d("c"),
            "--init",
            &d("i"),
            "--stream-guard",
            &d("g"),
        ],
        Some(dir.path().to_str().unwrap()),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("missing host tools"), "{err}");
    assert!(!Path::new(&d("o")).exists());
}
