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
    // Bounded forks: one server child at a time, for at most 600 s.
    assert_eq!(policy.children.len(), 1);
    let rule = &policy.children[0];
    assert_eq!(rule.exe.as_os_str(), "/usr/bin/valkey-server");
    assert_eq!(rule.uids, [6379]);
    assert!(!rule.nested && rule.setuid_to.is_empty());
    assert_eq!(rule.max_alive, Some(1));
    assert_eq!(rule.max_lifetime, Some(Duration::from_secs(600)));
}

/// The reference spec with `forks = "never"` (strict mode).
fn strict_spec() -> Spec {
    let text =
        appliance_spec::REFERENCE_TOML.replacen("forks = \"bounded\"", "forks = \"never\"", 1);
    let spec = Spec::from_toml_str(&text).unwrap();
    assert_eq!(spec.server().forks(), appliance_spec::Forks::Never);
    spec
}

#[test]
fn the_lifetime_bound_follows_the_spec() {
    let text = appliance_spec::REFERENCE_TOML.replacen(
        "max_child_seconds = 600",
        "max_child_seconds = 7",
        1,
    );
    let policy = governor_policy(&Spec::from_toml_str(&text).unwrap(), GOVERNOR);
    assert_eq!(
        policy.children[0].max_lifetime,
        Some(Duration::from_secs(7))
    );
}

#[test]
fn strict_mode_has_no_child_rule() {
    let policy = governor_policy(&strict_spec(), GOVERNOR);
    assert!(policy.children.is_empty(), "{:?}", policy.children);
    // Everything else as in bounded mode.
    let bounded = governor_policy(&Spec::reference().unwrap(), GOVERNOR);
    assert_eq!(
        (policy.root, policy.sealed, policy.governor_pid),
        (bounded.root, bounded.sealed, bounded.governor_pid)
    );
}

/// A BGSAVE child's life under the bounded policy, and under the strict
/// one, through procwatch's engine over its fakes.
#[test]
fn server_forks_through_the_engine() {
    use procwatch::fake::{FakeProcessSource, RecordingEnforcer};
    use procwatch::{Decision, Engine, ProcEvent, Reason, SourceEvent};
    let server = "/usr/bin/valkey-server";
    let table = || {
        vec![
            ProcInfo::new(1, 0, 6379, server),
            ProcInfo::new(GOVERNOR, 1, 0, "/init"),
        ]
    };
    let fork = |pid| {
        SourceEvent::Event(ProcEvent::Fork {
            parent_pid: 1,
            parent_tgid: 1,
            child_pid: pid,
            child_tgid: pid,
        })
    };
    let child = |pid, start| {
        let mut p = ProcInfo::new(pid, 1, 6379, server);
        p.start_time = start;
        p
    };
    let halts = |spec: &Spec, clock_after: u64, second: bool| -> Vec<Reason> {
        let mut source = FakeProcessSource::with(table());
        source.clock = Some(1000);
        let mut engine = Engine::new(
            governor_policy(spec, GOVERNOR),
            source,
            RecordingEnforcer::default(),
        );
        engine.start().unwrap();
        engine.source_mut().insert(child(40, 1000));
        engine.handle(&fork(40)).unwrap();
        if second {
            engine.source_mut().insert(child(41, 1001));
            engine.handle(&fork(41)).unwrap();
        }
        engine.source_mut().clock = Some(1000 + clock_after);
        engine.rescan().unwrap();
        engine
            .enforcer()
            .halts
            .iter()
            .map(|v| match &v.decision {
                Decision::Halt(r) => r.clone(),
                d => panic!("{d:?}"),
            })
            .collect()
    };
    let reference = Spec::reference().unwrap();
    // 100 clock ticks a second.
    assert_eq!(halts(&reference, 600 * 100, false), []);
    assert!(matches!(
        halts(&reference, 600 * 100 + 1, false).as_slice(),
        [Reason::ChildTooOld { .. }]
    ));
    assert!(matches!(
        halts(&reference, 0, true).as_slice(),
        [Reason::TooManyChildren {
            alive: 2,
            max: 1,
            ..
        }]
    ));
    assert_eq!(halts(&strict_spec(), 0, false), [Reason::Unlisted]);
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
    let strict = governor_policy(&strict_spec(), GOVERNOR);
    for (what, process, allowed) in cases {
        let decision = policy.judge_process(&process, fresh, false);
        assert_eq!(!decision.is_halt(), allowed, "{what}: {decision:?}");
        // Strict mode: the same, but a fork of the server halts too.
        let decision = strict.judge_process(&process, fresh, false);
        let allowed = allowed && process.pid != 40;
        assert_eq!(!decision.is_halt(), allowed, "strict: {what}: {decision:?}");
    }
}
