//! The governor policy the appliance builds from the seed-000 spec, judged on
//! the processes the machine may show after the seal, a child of the governor
//! included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use appliance::governor_policy;
use appliance_spec::Spec;
use procwatch::{History, ProcInfo};

const GOVERNOR: u32 = 2;

#[test]
fn policy_follows_the_spec() {
    let spec = Spec::reference().unwrap();
    let policy = governor_policy(&spec, GOVERNOR);
    assert_eq!(policy.root.pid, 1);
    assert_eq!(policy.root.exe.as_os_str(), "/usr/bin/valkey-server");
    assert_eq!(policy.root.uid, 6379);
    assert_eq!(policy.governor_pid, Some(GOVERNOR));
    assert!(policy.allow_kernel_threads);
    assert_eq!(policy.on_event_loss, procwatch::OnEventLoss::Halt);
    assert_eq!(policy.rescan_interval, Duration::from_millis(500));
    assert!(
        policy.sealed.halt_on_exec
            && policy.sealed.halt_on_uid_change
            && policy.sealed.halt_on_ptrace_attach
    );
}

#[test]
fn judged_after_the_seal() {
    let spec = Spec::reference().unwrap();
    let policy = governor_policy(&spec, GOVERNOR);
    let server = "/usr/bin/valkey-server";
    let fresh = History::default();
    let mut kthread = ProcInfo::new(17, 2, 0, "/");
    kthread.exe = None;
    kthread.kernel_thread = true;
    // (what, process, allowed)
    let cases: Vec<(&str, ProcInfo, bool)> = vec![
        (
            "the server as PID 1",
            ProcInfo::new(1, 0, 6379, server),
            true,
        ),
        ("the governor", ProcInfo::new(GOVERNOR, 1, 0, "/init"), true),
        ("a kernel thread", kthread, true),
        (
            "BGSAVE: a fork of the server",
            ProcInfo::new(40, 1, 6379, server),
            true,
        ),
        ("PID 1 still init", ProcInfo::new(1, 0, 0, "/init"), false),
        ("PID 1 as root", ProcInfo::new(1, 0, 0, server), false),
        // A child of the governor running /init as root (what the old
        // governor-spawned test intruder was).
        (
            "a child of the governor",
            ProcInfo::new(41, GOVERNOR, 0, "/init"),
            false,
        ),
        (
            "a shell from the server",
            ProcInfo::new(42, 1, 6379, "/bin/sh"),
            false,
        ),
        (
            "a server fork as root",
            ProcInfo::new(43, 1, 0, server),
            false,
        ),
        (
            "a grandchild of the server",
            ProcInfo::new(44, 40, 6379, server),
            false,
        ),
    ];
    for (what, process, allowed) in cases {
        let decision = policy.judge_process(&process, fresh, false);
        assert_eq!(!decision.is_halt(), allowed, "{what}: {decision:?}");
    }
}
