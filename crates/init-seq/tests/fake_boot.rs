//! The boot sequence over the recording fake: the whole seed-000 boot, every
//! step failing in turn, the ordering and secrecy invariants, and seed 003.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::Cell;

use appliance_spec::{Spec, SpecBuilder};
use init_seq::fake::{
    Call, FakeMachine, FakeOs, REFERENCE_MODULES_ORDER, TEST_ADMIN_PASS, TEST_VISITOR_PASS,
};
use init_seq::{Fatal, FsAccess, InitError, Plan, STEP_PID1, STEP_PLAN, STEP_SPEC};
use metadata_fetch::fake::Call as MetadataCall;
use metadata_fetch::FetchError;
use pf_rules::fake::Call as FirewallCall;
use pf_rules::Phase;

const VERSION: &str = "0.1.0-test";

/// The governor entry handed to `boot`; the fake never calls it (it does not
/// fork), and these tests check that.
fn governor(_spec: &Spec, _link: init_seq::GovernorLink) -> i32 {
    panic!("the fake must not run the governor")
}

/// Boots `machine`; returns it for its record.
fn boot_machine(mut machine: FakeMachine) -> (FakeMachine, Result<(), Fatal>) {
    let result = machine.boot(VERSION, &governor, &init_seq::BootOptions::default());
    (machine, result)
}

/// Boots `os` beside the reference network, firewall and metadata server.
fn boot_fake(os: FakeOs) -> (FakeMachine, Result<(), Fatal>) {
    boot_machine(FakeMachine::around(os))
}

/// `machine` with the metadata key `key` holding `value`.
fn with_secret(machine: FakeMachine, key: &str, value: impl Into<Vec<u8>>) -> FakeMachine {
    machine.with_metadata(|metadata| metadata.with_value(key, value))
}

fn is_apply(phase: Phase) -> impl Fn(&Call) -> bool {
    move |c| matches!(c, Call::Firewall(FirewallCall::Apply { phase: p, .. }) if *p == phase)
}

fn is_fetch(c: &Call) -> bool {
    matches!(c, Call::Metadata(MetadataCall::Fetch { .. }))
}

fn reference_plan() -> Plan {
    Plan::new(Spec::reference().unwrap(), REFERENCE_MODULES_ORDER).unwrap()
}

/// Every step name in boot order, the pre-plan steps included.
fn all_step_names() -> Vec<String> {
    let mut names = vec![
        STEP_PID1.to_owned(),
        STEP_SPEC.to_owned(),
        STEP_PLAN.to_owned(),
    ];
    names.extend(reference_plan().steps().iter().map(|s| s.name.clone()));
    names
}

/// A machine on which step `name` fails: its first call fails, through
/// the fake that gets it (init's own, or the network's, the firewall's or
/// the metadata server's own injection); for the secret check, which is
/// pure, its input is bad. `None` for the one step that cannot fail:
/// `metadata close` only drops the client (a client left running would
/// fail the `threads` check before the fork).
fn failing_at(name: &str) -> Option<FakeMachine> {
    let machine = FakeMachine::reference();
    let injected = || format!("injected failure in step {name}");
    Some(match name {
        "secrets" => with_secret(machine, "redis-admin-pass", "short\n"),
        "metadata close" => return None,
        "network" => machine.with_network(|mut network| {
            network.links.fail_call(0);
            network
        }),
        "firewall boot" => machine.with_firewall(|firewall| firewall.fail_call(0, &injected())),
        "firewall sealed" => machine.with_firewall(|firewall| firewall.fail_call(1, &injected())),
        // The first fetch opens the client.
        "fetch redis-admin-pass" => machine.with_metadata(|metadata| {
            metadata.with_connect_error(FetchError::Config { reason: injected() })
        }),
        "fetch redis-visitor-pass" => machine.with_metadata(|metadata| {
            metadata.with_error(
                "redis-visitor-pass",
                FetchError::Transport {
                    key: "redis-visitor-pass".to_owned(),
                    reason: injected(),
                },
            )
        }),
        _ => machine.with_os(|os| os.fail_step(name)),
    })
}

/// A machine on which the call at `index` of `reference`'s record fails,
/// through the fake that records it; `None` for a call no fake can fail.
fn failing_call(reference: &[Call], index: usize) -> Option<FakeMachine> {
    let machine = FakeMachine::reference();
    let injected = format!("injected failure at call #{index}");
    Some(match &reference[index] {
        Call::Firewall(_) => {
            let nth = reference[..index]
                .iter()
                .filter(|c| matches!(c, Call::Firewall(_)))
                .count();
            machine.with_firewall(|firewall| firewall.fail_call(nth, &injected))
        }
        Call::Metadata(MetadataCall::Connect(_)) => machine.with_metadata(|metadata| {
            metadata.with_connect_error(FetchError::Config { reason: injected })
        }),
        Call::Metadata(MetadataCall::Fetch { key }) => machine.with_metadata(|metadata| {
            metadata.with_error(
                key,
                FetchError::Transport {
                    key: key.clone(),
                    reason: injected,
                },
            )
        }),
        // Dropping the client.
        Call::Metadata(MetadataCall::Close) => return None,
        // The DHCP client's first send fails.
        Call::Network(_) => machine.with_network(|mut network| {
            network.transport.fail_call(0);
            network
        }),
        _ => machine.with_os(|os| os.fail_call(index)),
    })
}

fn syscalls(machine: &FakeMachine) -> Vec<Call> {
    machine
        .calls()
        .into_iter()
        .filter(Call::is_syscall)
        .collect()
}

fn position(machine: &FakeMachine, what: &str, pred: impl Fn(&Call) -> bool) -> usize {
    machine
        .calls()
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} call in:\n{}", machine.transcript()))
}

#[test]
fn reference_boot_snapshot() {
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    let transcript = machine.transcript();
    assert!(!transcript.contains(TEST_ADMIN_PASS));
    assert!(!transcript.contains(TEST_VISITOR_PASS));
    insta::assert_snapshot!("reference_boot", transcript);
}

#[test]
fn every_step_fails_closed() {
    let names = all_step_names();
    // Every step name is unique, or a FATAL line would be ambiguous.
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate step names: {names:?}");

    let mut unfailable = Vec::new();
    for name in &names {
        let Some(failing) = failing_at(name) else {
            unfailable.push(name.as_str());
            continue;
        };
        let (machine, result) = boot_machine(failing);
        let fatal = result.expect_err(name);
        assert_eq!(&fatal.step, name);
        let calls = machine.calls();
        // The step ran, and no later step did.
        let entered = calls
            .iter()
            .position(|c| *c == Call::Step(name.clone()))
            .unwrap_or_else(|| panic!("step {name} never entered"));
        assert!(
            !calls[entered + 1..]
                .iter()
                .any(|c| matches!(c, Call::Step(_))),
            "{name}: a later step ran:\n{}",
            machine.transcript()
        );
        let prefix = format!("appliance: FATAL {name}: ");
        let fatal_at = calls
            .iter()
            .rposition(|c| matches!(c, Call::Console(line) if line.starts_with("appliance: FATAL")))
            .unwrap_or_else(|| panic!("{name}: no FATAL line:\n{}", machine.transcript()));
        let Call::Console(line) = &calls[fatal_at] else {
            unreachable!()
        };
        assert!(line.starts_with(&prefix), "{name}: {line}");
        assert!(!line.contains('\n'));
        // Exactly one FATAL line.
        assert_eq!(
            machine
                .console_lines()
                .iter()
                .filter(|l| l.contains("FATAL"))
                .count(),
            1,
            "{name}"
        );
        if name == STEP_PID1 {
            // Not PID 1: refuse, but never halt a machine we are not init of.
            assert_eq!(&calls[fatal_at + 1..], &[] as &[Call], "{name}");
            assert!(!fatal.halted);
        } else {
            assert_eq!(&calls[fatal_at + 1..], &[Call::Sync, Call::Halt], "{name}");
            assert!(fatal.halted);
        }
        // Nothing after a failure may exec the server.
        assert!(
            !calls.iter().any(|c| matches!(c, Call::Exec(_))) || name == "exec",
            "{name}"
        );
    }
    assert_eq!(unfailable, ["metadata close"]);
}

#[test]
fn pid1_is_checked_before_anything_else() {
    let (machine, result) = boot_fake(FakeOs::reference().with_pid(4242));
    let fatal = result.unwrap_err();
    assert!(matches!(fatal.error, InitError::NotPid1 { pid: 4242 }));
    assert_eq!(
        machine.calls(),
        &[
            Call::Console(format!("appliance: init {VERSION} starting")),
            Call::Step("pid1".into()),
            Call::Getpid,
            Call::Console(
                "appliance: FATAL pid1: running as pid 4242, not 1: this program is the appliance's init and refuses to run anywhere else".into()
            ),
        ]
    );
}

#[test]
fn every_call_failure_is_fatal_or_harmless() {
    let (reference, result) = boot_machine(FakeMachine::reference());
    result.unwrap();
    let reference = reference.calls();
    let total = reference.len();
    let mut fatal_count = 0;
    for (index, call) in reference.iter().enumerate() {
        let Some(failing) = failing_call(&reference, index) else {
            assert_eq!(*call, Call::Metadata(MetadataCall::Close));
            continue;
        };
        let (machine, result) = boot_machine(failing);
        match result {
            Ok(()) => {
                // Infallible calls cannot be failed, and an unreadable block
                // device is skipped: the data disk is found on another one.
                // An unreadable block device is skipped (the boot disk) or
                // read again on the next scan (the data disk).
                let harmless = !call.is_syscall()
                    || matches!(
                        call,
                        Call::Console(_) | Call::Sleep(_) | Call::Sync | Call::Halt
                    )
                    || matches!(call, Call::ReadAt { .. });
                assert!(
                    harmless,
                    "failing call #{index} ({call}) did not stop the boot"
                );
            }
            Err(fatal) => {
                fatal_count += 1;
                if matches!(call, Call::Getpid) {
                    assert!(matches!(fatal.error, InitError::NotPid1 { pid: 4242 }));
                    assert!(!fatal.halted);
                    continue;
                }
                assert!(fatal.halted);
                let calls = machine.calls();
                assert_eq!(
                    &calls[calls.len() - 2..],
                    &[Call::Sync, Call::Halt],
                    "call #{index}"
                );
                let Call::Console(line) = &calls[calls.len() - 3] else {
                    panic!("call #{index}: no FATAL line before sync")
                };
                assert!(line.starts_with(&format!("appliance: FATAL {}: ", fatal.step)));
                // geteuid "fails" by answering 0: the refusal names seed 003.
                if matches!(call, Call::Geteuid) {
                    assert!(matches!(fatal.error, InitError::StillRoot { .. }));
                } else if matches!(call, Call::Network(_)) {
                    // netconf's own injected failure, in the network step.
                    assert!(matches!(fatal.error, InitError::Network { .. }), "{line}");
                    assert!(line.contains("injected failure"), "{line}");
                } else if matches!(call, Call::LandlockAbi) {
                    // A kernel without Landlock: refused, naming both ABIs.
                    assert!(matches!(
                        fatal.error,
                        InitError::LandlockAbi {
                            found: 0,
                            needed: 6
                        }
                    ));
                } else {
                    assert!(
                        line.contains(&format!("injected failure at call #{index}")),
                        "{line}"
                    );
                }
            }
        }
    }
    assert!(
        fatal_count > 60,
        "only {fatal_count} of {total} calls are fallible"
    );
}

#[test]
fn ordering_invariants() {
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();

    let boot_fw = position(&machine, "firewall boot", is_apply(Phase::Boot));
    let sealed_fw = position(&machine, "firewall sealed", is_apply(Phase::Sealed));
    let first_fetch = position(&machine, "fetch", is_fetch);
    let last_fetch = machine.calls().iter().rposition(is_fetch).unwrap();
    let network = position(&machine, "network", |c| matches!(c, Call::Network(_)));
    let close_metadata = position(&machine, "close metadata", |c| {
        *c == Call::Metadata(MetadataCall::Close)
    });
    let acl = position(&machine, "acl write", |c| {
        matches!(c, Call::WriteFile { .. })
    });
    let fork = position(&machine, "fork", |c| *c == Call::ForkGovernor);
    let threads = position(
        &machine,
        "threads",
        |c| matches!(c, Call::ReadFile(p) if p.as_os_str() == "/proc/self/status"),
    );
    let bounding = position(&machine, "bounding", |c| *c == Call::DropBoundingSet);
    let setgroups = position(&machine, "setgroups", |c| *c == Call::ClearGroups);
    let setgid = position(&machine, "setgid", |c| matches!(c, Call::Setgid(_)));
    let setuid = position(&machine, "setuid", |c| matches!(c, Call::Setuid(_)));
    let geteuid = position(&machine, "geteuid", |c| *c == Call::Geteuid);
    let nnp = position(&machine, "nnp", |c| *c == Call::SetNoNewPrivs);
    let caps = position(&machine, "caps", |c| *c == Call::ClearCapabilities);
    let landlock = position(&machine, "landlock", |c| matches!(c, Call::Landlock(_)));
    let data_mount = position(
        &machine,
        "data mount",
        |c| matches!(c, Call::Mount(m) if m.fstype == "ext4"),
    );
    let modules_disabled = position(
        &machine,
        "modules_disabled",
        |c| matches!(c, Call::WriteSysctl { key, .. } if key == "kernel.modules_disabled"),
    );
    let last_module = machine
        .calls()
        .iter()
        .rposition(|c| matches!(c, Call::LoadModule(_)))
        .unwrap();
    let last_mount_of_proc = position(
        &machine,
        "mount /proc",
        |c| matches!(c, Call::Mount(m) if m.target.as_os_str() == "/proc"),
    );

    assert!(last_mount_of_proc < last_module);
    assert!(
        last_module < modules_disabled,
        "modules_disabled after every module"
    );
    assert!(
        network < boot_fw || boot_fw < first_fetch,
        "boot phase before the fetch"
    );
    assert!(
        boot_fw < first_fetch,
        "firewall boot phase before any metadata fetch"
    );
    assert!(last_fetch < close_metadata && close_metadata < acl);
    assert!(
        acl < sealed_fw,
        "ACL written before sealing (metadata no longer needed)"
    );
    assert!(sealed_fw < data_mount);
    assert!(
        close_metadata < threads && threads < fork,
        "single-threaded check right before fork"
    );
    assert!(
        sealed_fw < fork,
        "sealed before the governor starts watching"
    );
    // The governor is exempt from the OOM killer right after the fork, while
    // init still has the capability to lower a score.
    assert_eq!(
        machine.calls()[fork + 2..fork + 4],
        [
            Call::Step("governor oom_score_adj".into()),
            Call::SetOomScoreAdj {
                pid: init_seq::fake::GOVERNOR_PID,
                value: -1000
            }
        ],
        "{}",
        machine.transcript()
    );
    assert!(fork + 3 < bounding);
    // Secrets are checked after the last fetch, before the ACL is rendered.
    let secrets = position(&machine, "secrets", |c| *c == Call::Step("secrets".into()));
    assert!(close_metadata < secrets && secrets < acl);
    // The kernel's TCP limit comes from the budget, after the budget.
    let budget = position(
        &machine,
        "budget",
        |c| matches!(c, Call::Console(l) if l.starts_with("appliance: memory budget ")),
    );
    let tcp_mem = position(
        &machine,
        "tcp_mem",
        |c| matches!(c, Call::WriteSysctl { key, value } if key == "net.ipv4.tcp_mem" && value == "5024 7536 10048"),
    );
    assert!(last_mount_of_proc < budget && budget < tcp_mem && tcp_mem < network);
    for (what, at) in [
        ("bounding set", bounding),
        ("setgroups", setgroups),
        ("setgid", setgid),
        ("setuid", setuid),
    ] {
        assert!(fork < at, "governor forked before {what}");
    }
    assert!(
        bounding < setuid,
        "bounding set dropped while CAP_SETPCAP is still held"
    );
    assert!(setgroups < setgid && setgid < setuid && setuid < geteuid);
    assert!(geteuid < nnp && nnp < caps && caps < landlock);

    // The server starts last: exec is the final call, after the seal.
    let calls = syscalls(&machine);
    let Call::Exec(exec) = calls.last().unwrap() else {
        panic!("last call is not execve:\n{}", machine.transcript())
    };
    // 2 GiB of MemTotal: the budget's figures (crate::budget pins them).
    assert_eq!(
        exec.argv,
        [
            "/usr/bin/valkey-server",
            "/etc/valkey/valkey.conf",
            "--maxmemory",
            "595013631",
            "--maxmemory-policy",
            "noeviction",
            "--maxmemory-clients",
            "45350912",
            "--client-output-buffer-limit",
            "normal 5242880 1310720 5 replica 1048576 0 0 pubsub 1048576 0 0",
        ]
    );
    assert!(exec.env.is_empty());
    assert_eq!(
        calls.iter().filter(|c| matches!(c, Call::Exec(_))).count(),
        1
    );
}

#[test]
fn secrets_never_leak() {
    let secrets = [TEST_ADMIN_PASS, TEST_VISITOR_PASS];
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    for call in machine.calls() {
        let text = format!("{call} {call:?}");
        for secret in secrets {
            assert!(!text.contains(secret), "secret in {text}");
        }
    }
    let calls = machine.calls();
    let writes: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::WriteFile {
                path,
                owner,
                contents,
            } => Some((path, owner, contents)),
            _ => None,
        })
        .collect();
    assert_eq!(writes.len(), 1, "only the ACL file is written");
    let (path, owner, contents) = writes[0];
    assert_eq!(path.as_os_str(), "/run/valkey/users.acl");
    assert_eq!((owner.uid, owner.gid, owner.mode), (6379, 6379, 0o400));
    // Hashes of the values (stripped of one trailing line ending: these have
    // none) are there instead.
    for secret in secrets {
        let hash = sha256_hex(secret.as_bytes());
        assert!(contents.contains(&format!("#{hash}")), "{contents}");
    }
    let mkdir = machine
        .calls()
        .iter()
        .find_map(|c| match c {
            Call::Mkdir { path, owner } => Some((path.clone(), *owner)),
            _ => None,
        })
        .unwrap();
    assert_eq!(mkdir.0.as_os_str(), "/run/valkey");
    assert_eq!((mkdir.1.uid, mkdir.1.mode), (6379, 0o500));

    // Every failure, anywhere: no FATAL line or error text holds a secret.
    for name in all_step_names() {
        let Some(failing) = failing_at(&name) else {
            continue;
        };
        let (machine, result) = boot_machine(failing);
        let fatal = result.unwrap_err();
        let texts = [
            fatal.to_string(),
            format!("{:?}", fatal.error),
            machine.transcript(),
        ];
        for text in texts {
            for secret in secrets {
                assert!(!text.contains(secret), "{name}: secret in {text}");
            }
        }
    }
}

/// Hex SHA-256 of `value`, taken from a rendered ACL whose users all have
/// that password (acl-render has its own tests for the hash).
fn sha256_hex(value: &[u8]) -> String {
    let text = acl_render::render(&Spec::reference().unwrap(), |_| Some(value)).unwrap();
    let admin_line = text.lines().find(|l| l.starts_with("user admin ")).unwrap();
    let after = admin_line.split('#').nth(1).unwrap();
    after.split(' ').next().unwrap().to_owned()
}

#[test]
fn seed_003_refuses_root_after_the_drop() {
    // The matrix through the geteuid seam: 0 refused, anything else accepted.
    let cases: &[(u32, bool)] = &[(0, false), (6379, true), (65534, true), (1, true)];
    for &(euid, accepted) in cases {
        let (machine, result) = boot_fake(FakeOs::reference().with_euid(euid));
        match (accepted, result) {
            (true, Ok(())) => {
                assert!(
                    matches!(syscalls(&machine).last(), Some(Call::Exec(_))),
                    "euid {euid}"
                );
            }
            (false, Err(fatal)) => {
                assert_eq!(fatal.step, "refuse root");
                assert!(matches!(
                    fatal.error,
                    InitError::StillRoot { target_uid: 6379 }
                ));
                let line = machine
                    .console_lines()
                    .into_iter()
                    .find(|l| l.contains("FATAL"))
                    .unwrap()
                    .to_owned();
                assert_eq!(
                    line,
                    "appliance: FATAL refuse root: effective uid is 0 after dropping privileges to uid 6379: refusing to run the server as root"
                );
                // Refused right after the uid checks: nothing further.
                let tail: Vec<_> = syscalls(&machine)
                    .into_iter()
                    .skip_while(|c| *c != Call::Geteuid)
                    .collect();
                assert_eq!(
                    tail,
                    [Call::Geteuid, Call::Console(line), Call::Sync, Call::Halt]
                );
            }
            (accepted, result) => panic!("euid {euid}: accepted={accepted} but {result:?}"),
        }
    }
}

#[test]
fn the_fake_never_runs_the_governor_in_process() {
    let ran = Cell::new(false);
    let mut machine = FakeMachine::reference();
    let entry = |_spec: &Spec, _link: init_seq::GovernorLink| {
        ran.set(true);
        0
    };
    machine
        .boot(VERSION, &entry, &init_seq::BootOptions::default())
        .unwrap();
    assert!(!ran.get());
    assert!(machine
        .console_lines()
        .iter()
        .any(|l| l == "appliance: governor started as pid 2"));
}

#[test]
fn data_disk_cases() {
    // Absent: scanned the whole time, never formatted, then fatal.
    let (machine, result) = boot_fake(FakeOs::reference().without_device("/dev/vdb"));
    let fatal = result.unwrap_err();
    assert_eq!(fatal.step, "data disk");
    assert!(matches!(
        fatal.error,
        InitError::DataDiskNotFound {
            attempts: 40,
            devices: 1,
            ..
        }
    ));
    let sleeps = machine
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Sleep(_)))
        .count();
    assert_eq!(sleeps, 39);
    assert!(!machine
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Mount(m) if m.fstype == "ext4")));

    // Two disks with the label: refuse to guess.
    let twin = init_seq::fake::ext4_superblock_bytes(b"appliance-data");
    let (_, result) = boot_fake(FakeOs::reference().with_device("/dev/sdb", &twin));
    let fatal = result.unwrap_err();
    assert!(
        matches!(fatal.error, InitError::DataDiskAmbiguous { ref devices, .. } if devices.len() == 2)
    );

    // A label that only starts the same is someone else's disk.
    let other = init_seq::fake::ext4_superblock_bytes(b"appliance-data2");
    let (_, result) = boot_fake(
        FakeOs::reference()
            .without_device("/dev/vdb")
            .with_device("/dev/vdc", &other),
    );
    assert!(matches!(
        result.unwrap_err().error,
        InitError::DataDiskNotFound { .. }
    ));

    // Found: mounted nosuid,nodev,noexec at the data dir, root given to the
    // server.
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    let mount = machine
        .calls()
        .iter()
        .find_map(|c| match c {
            Call::Mount(m) if m.fstype == "ext4" => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        mount.to_string(),
        "/dev/vdb on /data type ext4 (nosuid,nodev,noexec)"
    );
    assert!(machine.calls().iter().any(|c| matches!(c,
        Call::SetOwner { path, owner } if path.as_os_str() == "/data" && owner.uid == 6379 && owner.mode == 0o700)));
}

#[test]
fn sysctl_presence() {
    // An optional key may be missing from the kernel ...
    let (machine, result) =
        boot_fake(FakeOs::reference().with_absent_sysctl("kernel.yama.ptrace_scope"));
    result.unwrap();
    assert!(machine
        .console_lines()
        .iter()
        .any(|l| l == "appliance: sysctl kernel.yama.ptrace_scope absent on this kernel, skipped"));
    // ... a required one may not.
    let (_, result) = boot_fake(FakeOs::reference().with_absent_sysctl("kernel.kptr_restrict"));
    let fatal = result.unwrap_err();
    assert_eq!(fatal.step, "sysctl kernel.kptr_restrict");
    assert_eq!(
        fatal.to_string(),
        "appliance: FATAL sysctl kernel.kptr_restrict: sysctl kernel.kptr_restrict does not exist on this kernel"
    );
}

#[test]
fn secret_problems_halt() {
    let (_, result) = boot_machine(
        FakeMachine::reference().with_metadata(|metadata| metadata.without("redis-visitor-pass")),
    );
    let fatal = result.unwrap_err();
    assert_eq!(fatal.step, "fetch redis-visitor-pass");
    assert_eq!(
        fatal.to_string(),
        "appliance: FATAL fetch redis-visitor-pass: metadata key \"redis-visitor-pass\" is missing (HTTP 404)"
    );

    // One FATAL line per refusal, naming the key, never the value or its
    // length; nothing written, nothing after.
    let admin_ok = "0123456789abcdef";
    let cases: &[(&str, &[u8], &[u8], &str)] = &[
        (
            "empty admin",
            b"",
            b"visitor-Kp3x9-value",
            "metadata key \"redis-admin-pass\": the value is empty after stripping one trailing line ending",
        ),
        (
            "admin only a newline",
            b"\r\n",
            b"visitor-Kp3x9-value",
            "metadata key \"redis-admin-pass\": the value is empty after stripping one trailing line ending",
        ),
        (
            "visitor with two newlines",
            admin_ok.as_bytes(),
            b"visitor-pass-Kp3x9\n\n",
            "metadata key \"redis-visitor-pass\": the value holds a control character (a byte below 0x20, or 0x7f) after stripping one trailing line ending",
        ),
        (
            "admin with a tab",
            b"0123456789\tabcdef",
            b"visitor-Kp3x9-value",
            "metadata key \"redis-admin-pass\": the value holds a control character (a byte below 0x20, or 0x7f) after stripping one trailing line ending",
        ),
        (
            "short admin",
            b"admin-Zq8v1-x15\n",
            b"visitor-Kp3x9-value",
            "metadata key \"redis-admin-pass\": the admin secret is shorter than 16 bytes",
        ),
        (
            "admin equal to the visitor after stripping",
            b"shared-secret-Zq8v1\r\n",
            b"shared-secret-Zq8v1\n",
            "metadata key \"redis-admin-pass\": the admin secret equals the visitor secret of metadata key \"redis-visitor-pass\", which is public",
        ),
    ];
    for (what, admin, visitor, reason) in cases {
        let machine = with_secret(FakeMachine::reference(), "redis-admin-pass", *admin);
        let (machine, result) = boot_machine(with_secret(machine, "redis-visitor-pass", *visitor));
        let fatal = result.unwrap_err();
        assert_eq!(fatal.step, "secrets", "{what}");
        assert!(
            matches!(fatal.error, InitError::SecretRefused { .. }),
            "{what}"
        );
        let line = format!("appliance: FATAL secrets: {reason}");
        assert_eq!(fatal.to_string(), line, "{what}");
        let tail: Vec<_> = machine
            .calls()
            .iter()
            .skip_while(|c| **c != Call::Step("secrets".into()))
            .cloned()
            .collect();
        assert_eq!(
            tail,
            [
                Call::Step("secrets".into()),
                Call::Console(line),
                Call::Sync,
                Call::Halt
            ],
            "{what}"
        );
        for value in [admin, visitor] {
            let value = String::from_utf8_lossy(value);
            let value = value.trim_end();
            if value.len() > 3 {
                assert!(
                    !machine.transcript().contains(value),
                    "{what}: value in transcript"
                );
            }
        }
    }
}

#[test]
fn acl_hashes_the_stripped_value() {
    let cases: &[(&str, &str)] = &[("\n", "\r\n"), ("\r\n", "\n"), ("", "")];
    for (admin_end, visitor_end) in cases {
        let machine = with_secret(
            FakeMachine::reference(),
            "redis-admin-pass",
            format!("{TEST_ADMIN_PASS}{admin_end}"),
        );
        let (machine, result) = boot_machine(with_secret(
            machine,
            "redis-visitor-pass",
            format!("{TEST_VISITOR_PASS}{visitor_end}"),
        ));
        result.unwrap();
        let acl = machine
            .calls()
            .iter()
            .find_map(|c| match c {
                Call::WriteFile { contents, .. } => Some(contents.clone()),
                _ => None,
            })
            .unwrap();
        let admin = acl.lines().find(|l| l.starts_with("user admin ")).unwrap();
        let visitor = acl
            .lines()
            .find(|l| l.starts_with("user ruachtov-ai-visitors "))
            .unwrap();
        assert!(
            admin.contains(&format!(
                "#{} ",
                acl_render::sha256_hex(TEST_ADMIN_PASS.as_bytes())
            )),
            "{admin}"
        );
        assert!(
            visitor.contains(&format!(
                "#{} ",
                acl_render::sha256_hex(TEST_VISITOR_PASS.as_bytes())
            )),
            "{visitor}"
        );
        if !admin_end.is_empty() {
            let with_newline = format!("{TEST_ADMIN_PASS}{admin_end}");
            assert!(!acl.contains(&acl_render::sha256_hex(with_newline.as_bytes())));
        }
    }
}

#[test]
fn threads_check_refuses_a_multithreaded_init() {
    let (machine, result) =
        boot_fake(FakeOs::reference().with_file("/proc/self/status", "Threads:\t3\n"));
    let fatal = result.unwrap_err();
    assert_eq!(fatal.step, "threads");
    assert!(matches!(
        fatal.error,
        InitError::NotSingleThreaded { threads: 3 }
    ));
    assert!(!machine.calls().contains(&Call::ForkGovernor));
}

#[test]
fn memory_budget_follows_ram() {
    let limits = *Spec::reference().unwrap().limits();
    let minimum = init_seq::budget::minimum_mem_total(&limits);
    assert_eq!(minimum, 550_444_148);
    let cases: &[(&str, Result<u64, &str>)] = &[
        ("MemTotal: 4194304 kB\n", Ok(4 << 30)),
        // QEMU -m 1024.
        ("MemTotal: 1002932 kB\n", Ok(1_002_932 * 1024)),
        // The least whole kB above the minimum boots ...
        ("MemTotal: 537544 kB\n", Ok(537_544 * 1024)),
        // ... one kB less does not.
        (
            "MemTotal: 537543 kB\n",
            Err("MemTotal is 550444032 bytes; at least 550444148 are needed for the spec's limits"),
        ),
        (
            "MemTotal: 65536 kB\n",
            Err("MemTotal is 67108864 bytes; at least 550444148 are needed for the spec's limits"),
        ),
        ("MemFree: 1 kB\n", Err("/proc/meminfo: no MemTotal line")),
    ];
    for (meminfo, want) in cases {
        let (machine, result) = boot_fake(FakeOs::reference().with_file("/proc/meminfo", meminfo));
        match (want, result) {
            (Ok(total), Ok(())) => {
                let budget = init_seq::MemoryBudget::new(*total, &limits).unwrap();
                let Some(Call::Exec(exec)) = syscalls(&machine).last().cloned() else {
                    panic!()
                };
                assert_eq!(exec.argv[3], budget.data.to_string());
                assert_eq!(exec.argv[7], budget.clients.to_string());
                assert_eq!(exec.argv[9], budget.output_buffer_limits());
                let lines = machine.console_lines();
                let budget_lines: Vec<_> = lines
                    .iter()
                    .filter(|l| l.starts_with("appliance: memory budget "))
                    .collect();
                assert_eq!(budget_lines.len(), 1, "one budget line");
                assert_eq!(
                    *budget_lines[0],
                    format!(
                        "appliance: memory budget total={total} data={} fork={} clients={} server={} governor={} kernel={} margin={} output-normal={}/{}/{}",
                        budget.data,
                        budget.fork,
                        budget.clients,
                        budget.server,
                        budget.governor,
                        budget.kernel,
                        budget.margin,
                        budget.output_normal.hard,
                        budget.output_normal.soft,
                        budget.output_normal.seconds
                    )
                );
                assert!(lines.contains(&format!(
                    "appliance: exec /usr/bin/valkey-server (maxmemory {} bytes)",
                    budget.data
                )));
            }
            (Err(reason), Err(fatal)) => {
                assert_eq!(fatal.step, "memory budget");
                assert_eq!(fatal.error.to_string(), *reason);
                // Before any module, sysctl or network.
                assert!(!machine.calls().iter().any(|c| matches!(
                    c,
                    Call::LoadModule(_) | Call::WriteSysctl { .. } | Call::Network(_)
                )));
            }
            (want, got) => panic!("{meminfo:?}: want {want:?}, got {got:?}"),
        }
    }
    // The exact line for QEMU's 1 GiB (the e2e suite parses it).
    let (machine, result) =
        boot_fake(FakeOs::reference().with_file("/proc/meminfo", "MemTotal: 1002932 kB\n"));
    result.unwrap();
    assert!(machine
        .console_lines()
        .iter()
        .any(|l| l.starts_with("appliance: memory budget total=1027002368 data=")));
}

#[test]
fn bad_inputs_are_refused_before_acting() {
    // A bad module order or spec: nothing but reads happened before the halt.
    type Build = fn() -> FakeOs;
    let cases: &[(&str, Build, &str)] = &[
        (
            "relative module path",
            || FakeOs::reference().with_file("/etc/modules.order", "virtio.ko\n"),
            "plan",
        ),
        (
            "spec that does not parse",
            || FakeOs::reference().with_file("/etc/appliance.toml", "[server]\nuid = 0\n"),
            "spec",
        ),
        (
            "spec that is not UTF-8",
            || FakeOs::reference().with_file("/etc/appliance.toml", b"\xff\xfe"),
            "spec",
        ),
        (
            "unreadable module order",
            || {
                FakeOs::reference().fail_when(
                    |c| matches!(c, Call::ReadFile(p) if p.as_os_str() == "/etc/modules.order"),
                )
            },
            "plan",
        ),
    ];
    for (what, build, step) in cases {
        let (machine, result) = boot_fake(build());
        let fatal = result.unwrap_err();
        assert_eq!(&fatal.step, step, "{what}");
        assert!(
            syscalls(&machine).iter().all(|c| matches!(
                c,
                Call::Console(_) | Call::Getpid | Call::ReadFile(_) | Call::Sync | Call::Halt
            )),
            "{what}: acted before validating:\n{}",
            machine.transcript()
        );
    }
}

/// Who refuses an unsafe value: the spec's validation (so no plan ever sees
/// it; the plan's own check of it, defence in depth, is tested in
/// `src/plan.rs`), or the plan, for values that are well formed but unsafe
/// to boot with.
#[derive(Debug)]
enum Refused {
    /// The spec, naming this field.
    BySpec(&'static str),
    /// The plan, with this error.
    ByPlan(&'static str),
}

#[test]
fn unsafe_specs_are_refused_by_the_plan() {
    type Edit = fn(SpecBuilder) -> SpecBuilder;
    use Refused::{ByPlan, BySpec};
    let cases: &[(&str, Edit, Refused)] = &[
        ("root uid", |s| s.set("server.uid", 0), BySpec("server.uid")),
        ("root gid", |s| s.set("server.gid", 0), BySpec("server.gid")),
        (
            "acl outside /run",
            |s| s.set("server.acl_file", "/etc/users.acl"),
            ByPlan("server.acl_file = \"/etc/users.acl\": must be /run/<dir>/<file>: init creates <dir> fresh for it"),
        ),
        (
            "acl directly in /run",
            |s| s.set("server.acl_file", "/run/users.acl"),
            ByPlan("server.acl_file = \"/run/users.acl\": must be /run/<dir>/<file>: init creates <dir> fresh for it"),
        ),
        (
            "data dir on /",
            |s| s.set("server.data_dir", "/"),
            BySpec("server.data_dir"),
        ),
        (
            "data dir in /proc",
            |s| s.set("server.data_dir", "/proc/data"),
            ByPlan("server.data_dir = \"/proc/data\": the data disk cannot be mounted in /proc, /sys, /dev or /run"),
        ),
        (
            "binary writable by the server",
            |s| s.set("server.binary", "/data/valkey-server"),
            ByPlan("server.binary = \"/data/valkey-server\": must not be inside server.data_dir, which the server can write"),
        ),
        (
            "config writable by the server",
            |s| s.set("server.config", "/data/valkey.conf"),
            ByPlan("server.config = \"/data/valkey.conf\": must not be inside server.data_dir, which the server can write"),
        ),
        (
            "dot-dot in a path",
            |s| s.set("server.binary", "/usr/bin/../../data/x"),
            BySpec("server.binary"),
        ),
        (
            "space in a path",
            |s| s.set("server.config", "/etc/valkey conf"),
            BySpec("server.config"),
        ),
    ];
    for (what, edit, refused) in cases {
        match (refused, edit(SpecBuilder::reference()).build()) {
            (BySpec(field), Err(err)) => assert_eq!(err.field(), Some(*field), "{what}: {err}"),
            (ByPlan(want), Ok(spec)) => {
                let error = Plan::new(spec, "").unwrap_err();
                assert_eq!(error.to_string(), *want, "{what}");
            }
            (refused, built) => panic!("{what}: want {refused:?}, the spec gave {built:?}"),
        }
    }
    // The reference passes, with and without modules.
    Plan::new(Spec::reference().unwrap(), "").unwrap();
    Plan::new(Spec::reference().unwrap(), REFERENCE_MODULES_ORDER).unwrap();
}

#[test]
fn landlock_rules_follow_the_spec() {
    let plan = reference_plan();
    let rules = plan
        .steps()
        .iter()
        .find_map(|s| match &s.action {
            init_seq::Action::Landlock(rules) => Some(rules.clone()),
            _ => None,
        })
        .unwrap();
    let executable: Vec<_> = rules
        .fs
        .iter()
        .filter(|r| r.access == FsAccess::ReadExecute)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        executable,
        ["/usr/bin/valkey-server", "/lib64/ld-linux-x86-64.so.2"].map(std::path::PathBuf::from)
    );
    // The loader only if the image has one; the server binary always.
    assert!(rules
        .fs
        .iter()
        .any(|r| r.path.as_os_str() == "/usr/bin/valkey-server" && !r.if_exists));
    let writable: Vec<_> = rules
        .fs
        .iter()
        .filter(|r| r.access == FsAccess::ReadWrite)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(writable, ["/data"].map(std::path::PathBuf::from));
    assert_eq!(rules.bind_tcp, [6379]);
    assert!(rules.connect_tcp.is_empty());
    assert!(rules.scoped);
    assert_eq!(rules.required_abi(), init_seq::LANDLOCK_ABI);
    assert_eq!(
        rules.summary(),
        "fs, net bind 6379 only, connect none, scoped signals and abstract unix sockets"
    );
}

#[test]
fn landlock_below_the_needed_abi_does_not_boot() {
    for (abi, line) in [
        (
            0,
            Some("appliance: FATAL landlock: the kernel has Landlock ABI 0 (0: not built in or not enabled), the policy needs 6 (file truncate and device ioctl rights, TCP bind and connect rules, signal and abstract unix socket scopes)"),
        ),
        (5, Some("appliance: FATAL landlock: the kernel has Landlock ABI 5 (")),
        (6, None),
        (7, None),
    ] {
        let (machine, result) = boot_fake(FakeOs::reference().with_landlock_abi(abi));
        let lines = machine.console_lines();
        match line {
            Some(want) => {
                let fatal = result.unwrap_err();
                assert_eq!(fatal.step, "landlock");
                assert!(fatal.halted);
                assert!(
                    lines.iter().any(|l| l.starts_with(want)),
                    "ABI {abi}: {lines:?}"
                );
                // Nothing was restricted half-way, and nothing ran after.
                assert!(!machine.calls().iter().any(|c| matches!(c, Call::Landlock(_))));
                assert!(!machine.calls().iter().any(|c| matches!(c, Call::Exec(_))));
            }
            None => {
                result.unwrap();
                let want = if abi == 6 {
                    "appliance: landlock ABI 6 enforced (fs, ".to_owned()
                } else {
                    format!("appliance: landlock ABI 6 enforced on a kernel with ABI {abi} (fs, ")
                };
                assert!(
                    lines.iter().any(|l| l.starts_with(&want)),
                    "ABI {abi}: {lines:?}"
                );
            }
        }
    }
}

#[test]
fn sealed_ruleset_is_read_back_before_anything_else_runs() {
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    let calls = machine.calls();
    let sealed = position(&machine, "firewall sealed", is_apply(Phase::Sealed));
    let policy = pf_rules::Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    // Load, its console line, then the read-back and its line.
    assert_eq!(
        calls[sealed + 2],
        Call::Firewall(FirewallCall::Verify {
            policy: policy.clone(),
            phase: Phase::Sealed
        })
    );
    let want = pf_rules::ReadBack::expected(&policy, Phase::Sealed);
    assert_eq!(
        calls[sealed + 3],
        Call::Console(format!(
            "appliance: firewall sealed ruleset read back sha256={} ({} rules match)",
            want.sha256, want.rules
        ))
    );
    // Only the seal is read back.
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Firewall(FirewallCall::Verify { .. })))
            .count(),
        1
    );

    // A failed read-back is fatal in the sealed step, before the data disk.
    // pf-rules' fake: call #2 is the read-back (after the two loads).
    let (machine, result) = boot_machine(
        FakeMachine::reference().with_firewall(|firewall| firewall.fail_call(2, "dump refused")),
    );
    let fatal = result.unwrap_err();
    assert_eq!(fatal.step, "firewall sealed");
    assert!(fatal.halted);
    assert!(!machine
        .calls()
        .contains(&Call::Step("data disk".to_owned())));
}

#[test]
fn the_metadata_client_lives_from_the_first_fetch_to_the_close() {
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    let calls = machine.calls();
    let metadata: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Metadata(call) => Some(call.clone()),
            _ => None,
        })
        .collect();
    // One client, opened with the spec's [metadata] table, each key once,
    // then dropped; never reopened.
    let fetch = |key: &str| MetadataCall::Fetch {
        key: key.to_owned(),
    };
    assert_eq!(
        metadata,
        [
            MetadataCall::Connect(Spec::reference().unwrap().metadata().clone()),
            fetch("redis-admin-pass"),
            fetch("redis-visitor-pass"),
            MetadataCall::Close,
        ]
    );
    // Opened in the first fetch step, dropped in its own step.
    let connect = position(&machine, "connect", |c| {
        matches!(c, Call::Metadata(MetadataCall::Connect(_)))
    });
    assert_eq!(
        calls[connect - 1],
        Call::Step("fetch redis-admin-pass".into())
    );
    let close = position(&machine, "close", |c| {
        *c == Call::Metadata(MetadataCall::Close)
    });
    assert_eq!(calls[close - 1], Call::Step("metadata close".into()));

    // A failed fetch drops the client before the FATAL line.
    let failing = failing_at("fetch redis-visitor-pass").unwrap();
    let (machine, result) = boot_machine(failing);
    assert_eq!(result.unwrap_err().step, "fetch redis-visitor-pass");
    let calls = machine.calls();
    let tail = &calls[calls.len() - 4..];
    assert_eq!(tail[0], Call::Metadata(MetadataCall::Close));
    assert!(
        matches!(&tail[1], Call::Console(l) if l.starts_with("appliance: FATAL fetch redis-visitor-pass: "))
    );
    assert_eq!(tail[2..], [Call::Sync, Call::Halt]);

    // A client that cannot be opened: fatal in the first fetch, nothing
    // fetched.
    let (machine, result) = boot_machine(FakeMachine::reference().with_metadata(|metadata| {
        metadata.with_connect_error(FetchError::Config {
            reason: "attempts must be at least 1".to_owned(),
        })
    }));
    let fatal = result.unwrap_err();
    assert_eq!(
        fatal.to_string(),
        "appliance: FATAL fetch redis-admin-pass: metadata client configuration: attempts must be at least 1"
    );
    assert!(!machine.calls().iter().any(is_fetch));
}

#[test]
fn the_network_comes_up_through_netconf_or_the_boot_halts() {
    use netconf::fake::{FakeLinkOps, FakeNetwork, FakeTransport, LinkCall};

    // The lease on the console as netconf's client got it from the scripted
    // server, and the link configured from it.
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    assert!(machine
        .console_lines()
        .iter()
        .any(|l| l == "appliance: network 10.128.0.7/32 via 10.128.0.1 mtu 1460 from 10.128.0.1"));
    assert_eq!(machine.network.transport.sent_types(), [Some(1), Some(3)]);
    assert!(machine
        .network
        .links
        .calls()
        .contains(&LinkCall::SetMtu(2, 1460)));

    // A lease without router or MTU says so by leaving them out.
    let bare = netconf::Lease {
        router: None,
        mtu: None,
        prefix_len: 24,
        ..init_seq::fake::REFERENCE_LEASE
    };
    let (machine, result) =
        boot_machine(FakeMachine::reference().with_network(|_| FakeNetwork::serving(bare)));
    result.unwrap();
    assert!(machine
        .console_lines()
        .iter()
        .any(|l| l == "appliance: network 10.128.0.7/24 from 10.128.0.1"));

    // No DHCP server: the deadline passes (on the fake's clock), and no
    // ethernet link: nothing to ask on. Either halts in the network step,
    // before the firewall and any fetch.
    let silent = |network: FakeNetwork| FakeNetwork::new(network.links, FakeTransport::new([]));
    let no_nic = |_| FakeNetwork::new(FakeLinkOps::new(Vec::new()), FakeTransport::new([]));
    type Change = fn(FakeNetwork) -> FakeNetwork;
    let cases: [(Change, &str); 2] = [
        (silent, "appliance: FATAL network: network: "),
        (
            no_nic,
            "appliance: FATAL network: network: no ethernet link found",
        ),
    ];
    for (change, line) in cases {
        let (machine, result) = boot_machine(FakeMachine::reference().with_network(change));
        let fatal = result.unwrap_err();
        assert_eq!(fatal.step, "network");
        assert!(fatal.to_string().starts_with(line), "{fatal}");
        assert!(!machine
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Firewall(_) | Call::Metadata(_))));
    }
}

#[test]
fn the_firewall_gets_the_plans_policy() {
    let (machine, result) = boot_fake(FakeOs::reference());
    result.unwrap();
    let policy = reference_plan().policy().clone();
    let apply = |phase| FirewallCall::Apply {
        policy: policy.clone(),
        phase,
    };
    assert_eq!(
        machine.firewall.calls,
        [
            apply(Phase::Boot),
            apply(Phase::Sealed),
            FirewallCall::Verify {
                policy: policy.clone(),
                phase: Phase::Sealed
            }
        ]
    );
}
