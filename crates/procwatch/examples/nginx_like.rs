//! Governing a different appliance: an nginx-like server whose master runs
//! as root and forks workers that drop to an unprivileged uid.
//!
//! ```text
//! cargo run -p procwatch --example nginx_like            # simulated, with fakes
//! cargo run -p procwatch --example nginx_like -- --watch PID   # Linux, root: watch a live tree, print only
//! ```
//!
//! Only the policy differs from the Valkey appliance; the crate is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use procwatch::fake::{FakeProcessSource, RecordingEnforcer};
use procwatch::render::render_verdict;
use procwatch::{
    ChildRule, Engine, OnEventLoss, Policy, ProcEvent, ProcInfo, RootRule, Scope, SealOn,
    SealedRules, SourceEvent,
};

/// The nginx policy as data: the master (root), workers and cache processes
/// (plain forks that may setuid once to `worker_uid`), nothing else; no exec,
/// no ptrace after the seal. A web host sees bursts, so lost events rescan.
fn nginx_policy(
    master_pid: u32,
    nginx: PathBuf,
    worker_uid: u32,
    governor_pid: u32,
    scope: Scope,
) -> Policy {
    Policy {
        root: RootRule {
            pid: master_pid,
            exe: nginx.clone(),
            uid: 0,
        },
        governor_pid: Some(governor_pid),
        allow_kernel_threads: true,
        children: vec![ChildRule {
            label: "nginx worker/cache process".into(),
            exe: nginx,
            uids: vec![0],
            setuid_to: vec![worker_uid],
            nested: false,
            log: true,
            max_alive: None,
            max_lifetime: None,
        }],
        sealed: SealedRules {
            halt_on_exec: true,
            halt_on_uid_change: true,
            halt_on_ptrace_attach: true,
        },
        seal_on: SealOn::Start,
        on_event_loss: OnEventLoss::Rescan,
        rescan_interval: Duration::from_millis(500),
        scope,
    }
}

fn simulate() {
    let nginx = PathBuf::from("/usr/sbin/nginx");
    let policy = nginx_policy(1, nginx.clone(), 33, 2, Scope::Machine);
    let source = FakeProcessSource::with([
        ProcInfo::new(1, 0, 0, &nginx),
        ProcInfo::new(2, 1, 0, "/sbin/governor"),
    ]);
    let mut engine = Engine::new(policy, source, RecordingEnforcer::default());
    engine.start().unwrap();
    let ev = |e| SourceEvent::Event(e);
    // A worker is forked as root and drops to www-data (33): allowed.
    engine.source_mut().insert(ProcInfo::new(10, 1, 0, &nginx));
    engine
        .handle(&ev(ProcEvent::Fork {
            parent_pid: 1,
            parent_tgid: 1,
            child_pid: 10,
            child_tgid: 10,
        }))
        .unwrap();
    engine
        .handle(&ev(ProcEvent::Uid {
            pid: 10,
            tgid: 10,
            ruid: 33,
            euid: 33,
        }))
        .unwrap();
    // An exploited worker runs a shell: halt.
    engine
        .source_mut()
        .insert(ProcInfo::new(10, 1, 33, "/bin/sh"));
    engine
        .handle(&ev(ProcEvent::Exec { pid: 10, tgid: 10 }))
        .unwrap();
    for v in engine
        .enforcer()
        .notes
        .iter()
        .chain(&engine.enforcer().halts)
    {
        println!("{}", render_verdict(v));
    }
}

#[cfg(target_os = "linux")]
fn watch(master: u32) {
    use procwatch::linux::{run_governor, GovernorConfig, PowerButtons, ProcFs};
    use procwatch::{Error, Machine};

    /// Reports instead of halting: a dry run on a host you do not want to stop.
    struct PrintOnly;
    impl Machine for PrintOnly {
        fn console_line(&mut self, line: &str) {
            println!("{line}");
        }
        fn sync(&mut self) {}
        fn halt(&mut self) -> Result<(), Error> {
            println!("(dry run: would halt)");
            Ok(())
        }
        fn power_off(&mut self) -> Result<(), Error> {
            Ok(())
        }
        fn pet_watchdog(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }

    let info = ProcFs::default()
        .read_process(master)
        .unwrap()
        .complete()
        .expect("no such process, or not readable completely (run as root)");
    let exe = info.exe.clone().expect("cannot read its exe (run as root)");
    // Workers drop to the uid of any existing child, else nobody (65534).
    let policy = nginx_policy(
        master,
        exe,
        65534,
        std::process::id(),
        Scope::Descendants(master),
    );
    let config = GovernorConfig {
        power_buttons: PowerButtons::Disabled,
        watchdog_interval: None,
        ..GovernorConfig::default()
    };
    println!(
        "watching pid {master} ({:?}) and its descendants; Ctrl-C to stop",
        info.exe
    );
    let err = run_governor(policy, PrintOnly, &config).unwrap_err();
    eprintln!("governor stopped: {err}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        #[cfg(target_os = "linux")]
        Some("--watch") => watch(
            args.get(2)
                .and_then(|p| p.parse().ok())
                .expect("--watch PID"),
        ),
        _ => simulate(),
    }
}
