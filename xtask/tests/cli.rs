//! `cargo xtask`'s command line as a user meets it: every command answers
//! `--help`/`-h` on stdout with status 0, a usage error goes to stderr with
//! status 2, and the image commands are appliance-image's. Runs the built
//! binary from another directory; nothing here builds or boots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_command_answers_help_on_stdout() {
    let commands: &[&[&str]] = &[
        &[],
        &["ci"],
        &["fuzz"],
        &["run"],
        &["e2e"],
        &["bench"],
        &["bench", "boot"],
        &["bench", "compare"],
        &["seccomp-trace"],
        &["image"],
        &["verify"],
        &["pins"],
        &["gce"],
    ];
    for command in commands {
        for flag in ["--help", "-h"] {
            let mut args = command.to_vec();
            args.push(flag);
            let out = xtask(&args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}",
                text(&out.stderr)
            );
            let help = text(&out.stdout);
            assert!(help.starts_with("usage: cargo xtask"), "{args:?}: {help}");
            assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
        }
    }
    assert!(text(&xtask(&["image", "--help"]).stdout).starts_with("usage: cargo xtask image"));
    assert!(text(&xtask(&["bench", "compare", "-h"]).stdout)
        .starts_with("usage: cargo xtask bench compare"));
}

#[test]
fn usage_errors_are_status_2_on_stderr() {
    let cases: &[&[&str]] = &[
        &[],
        &["nonsense"],
        &["ci", "extra"],
        &["fuzz", "--minutes", "1"],
        &["run", "--bogus"],
        &["e2e", "--only"],
        &["bench"],
        &["bench", "boot", "--bogus"],
        &["seccomp-trace", "--bogus"],
        &["image", "--bogus"],
        &["verify", "a", "b"],
        &["pins"],
        &["gce", "--project", "p", "--zone", "z"],
    ];
    for args in cases {
        let out = xtask(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains("usage: cargo xtask"), "{args:?}");
    }
}

#[test]
fn an_audit_failure_is_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("[FAIL] manifest:"));
}
