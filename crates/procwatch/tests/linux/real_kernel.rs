use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use procwatch::linux::{run_governor, GovernorConfig, PowerButtons, ProcConnector, ProcFs};
use procwatch::parse::input::{encode_input_event, InputEvent, InputLayout, EV_KEY, KEY_POWER};
use procwatch::{
    ChildRule, Decision, DetectedBy, Enforcer, Engine, Error, Machine, NoEvents, OnEventLoss,
    Policy, ProcessSource, Reason, RootRule, Scope, SealOn, SealedRules, Verdict,
};

const ROLE: &str = "PROCWATCH_TEST_ROLE";

/// Kills and reaps a child on drop, so a failing test leaves nothing behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends each verdict, with the time it arrived, to the test.
struct ChannelEnforcer(mpsc::Sender<(Verdict, Instant)>);

impl Enforcer for ChannelEnforcer {
    fn halt(&mut self, verdict: &Verdict) -> Result<(), Error> {
        let _ = self.0.send((verdict.clone(), Instant::now()));
        Ok(())
    }
    fn note(&mut self, _verdict: &Verdict) {}
}

fn me() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap()
}

/// A policy for "this process and its descendants": the root runs this test
/// binary; plain forks of it are allowed; sealed from the start.
fn test_policy(root: u32, governor: Option<u32>, scope: Scope, rescan: Duration) -> Policy {
    Policy {
        root: RootRule {
            pid: root,
            exe: me(),
            uid: 0,
        },
        governor_pid: governor,
        allow_kernel_threads: true,
        children: vec![ChildRule {
            label: "test fork".into(),
            exe: me(),
            uids: vec![0],
            setuid_to: vec![],
            nested: false,
            log: false,
        }],
        sealed: SealedRules {
            halt_on_exec: true,
            halt_on_uid_change: true,
            halt_on_ptrace_attach: true,
        },
        seal_on: SealOn::Start,
        on_event_loss: OnEventLoss::Rescan,
        rescan_interval: rescan,
        scope,
    }
}

fn sleeper() -> Guard {
    Guard(Command::new("sleep").arg("30").spawn().unwrap())
}

fn halt_pid(v: &Verdict) -> u32 {
    assert!(matches!(v.decision, Decision::Halt(_)), "{v:?}");
    v.process.as_ref().map(|p| p.pid).unwrap()
}

fn procfs_reads_hostile_names_and_skips_vanished() {
    // Only a process itself may write its comm: the shell renames itself
    // (printf is a builtin) and waits. comm is 15 bytes at most; this one
    // has ')', spaces and a newline.
    let child = Guard(
        Command::new("sh")
            .args(["-c", "printf 'a) b\\nc) S 1 2' > /proc/$$/comm; sleep 30"])
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let fs = ProcFs::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    let p = loop {
        let p = fs.read_process(pid).unwrap().unwrap();
        if p.comm != b"sh" || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(p.comm, b"a) b\nc) S 1 2");
    assert_eq!(p.ppid, std::process::id());
    assert!(
        p.exe.as_ref().unwrap().to_string_lossy().contains("sh"),
        "{p:?}"
    );
    assert!(p.cmdline.starts_with(b"sh\x00-c\x00printf"), "{p:?}");
    assert!(!p.kernel_thread);
    drop(child);
    assert_eq!(fs.read_process(pid).unwrap(), None);
    let kthreadd = fs.read_process(2).unwrap().unwrap();
    assert!(kthreadd.kernel_thread, "{kthreadd:?}");
    let all = ProcFs::default().snapshot().unwrap();
    assert!(all.iter().any(|p| p.pid == std::process::id()));
    println!(
        "ok: /proc reader (hostile comm, vanished pid, kernel thread, {} processes)",
        all.len()
    );
}

fn pidns_rescan_catches_a_forbidden_child_of_pid_1() {
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(me())
        .env(ROLE, "pidns")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pidns role failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PIDNS-OK"), "{stdout}");
    println!("ok: PID namespace, rescan path: {}", stdout.trim());
}

/// Runs as PID 1 of a fresh PID namespace: the engine over the namespace's
/// /proc with rescans only; a forbidden `sleep`, child of PID 1, must be
/// named.
fn role_pidns() {
    assert_eq!(std::process::id(), 1);
    let policy = test_policy(1, Some(1), Scope::Machine, Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(policy, ProcFs::default(), ChannelEnforcer(tx));
    engine.start().unwrap();
    assert!(rx.try_recv().is_err(), "a clean namespace must pass");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let runner =
        std::thread::spawn(move || engine.run(&mut NoEvents, |_| !stop2.load(Ordering::Relaxed)));
    let child = sleeper();
    let (verdict, _) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no verdict");
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap().unwrap();
    let pid = halt_pid(&verdict);
    let p = verdict.process.as_ref().unwrap();
    assert_eq!(pid, child.0.id());
    assert_eq!(p.ppid, 1);
    assert_eq!(verdict.decision, Decision::Halt(Reason::Unlisted));
    assert_eq!(verdict.path, DetectedBy::Rescan);
    println!(
        "PIDNS-OK pid={pid} ppid={} exe={:?} path={}",
        p.ppid, p.exe, verdict.path
    );
}

fn connector_event_path_catches_a_forbidden_exec() {
    let me_pid = std::process::id();
    // An hour: anything seen in this test was seen by the event path.
    let policy = test_policy(
        me_pid,
        None,
        Scope::Descendants(me_pid),
        Duration::from_secs(3600),
    );
    let mut conn = ProcConnector::open(procwatch::linux::DEFAULT_RCVBUF).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(policy, ProcFs::default(), ChannelEnforcer(tx));
    engine.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            procwatch::EventSource::wait(&mut conn, Duration::from_millis(50), &mut buf).unwrap();
            for ev in buf.drain(..) {
                engine.handle(&ev).unwrap();
            }
        }
        engine.stats()
    });
    for round in 0..5 {
        let child = sleeper();
        let (verdict, _) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no verdict from the event path");
        assert_eq!(halt_pid(&verdict), child.0.id(), "round {round}");
        assert_eq!(verdict.path, DetectedBy::Event, "round {round}");
        assert!(
            matches!(
                verdict.decision,
                Decision::Halt(Reason::ExecAfterSeal | Reason::Unlisted)
            ),
            "{verdict:?}"
        );
        println!(
            "ok: proc connector round {round}: pid {} {:?} by {}",
            child.0.id(),
            verdict.decision,
            verdict.path
        );
    }
    stop.store(true, Ordering::Relaxed);
}

/// Prints each machine call as one line on stdout; exits on halt.
struct PrintingMachine;

impl Machine for PrintingMachine {
    fn console_line(&mut self, line: &str) {
        println!("CALL console {line}");
    }
    fn sync(&mut self) {
        println!("CALL sync");
    }
    fn halt(&mut self) -> Result<(), Error> {
        println!("CALL halt");
        std::process::exit(0);
    }
    fn power_off(&mut self) -> Result<(), Error> {
        println!("CALL power_off");
        Ok(())
    }
    fn pet_watchdog(&mut self) -> Result<(), Error> {
        println!("CALL pet");
        Ok(())
    }
}

fn role_governor() {
    let root: u32 = std::env::var("PROCWATCH_TEST_ROOT")
        .unwrap()
        .parse()
        .unwrap();
    let button = PathBuf::from(std::env::var("PROCWATCH_TEST_BUTTON").unwrap());
    let policy = test_policy(
        root,
        Some(std::process::id()),
        Scope::Descendants(root),
        Duration::from_secs(3600),
    );
    let config = GovernorConfig {
        power_buttons: PowerButtons::Paths(vec![button]),
        watchdog_interval: Some(Duration::from_millis(100)),
        ..GovernorConfig::default()
    };
    let err = run_governor(policy, PrintingMachine, &config).unwrap_err();
    println!("CALL error {err}");
    std::process::exit(2);
}

fn run_governor_pets_powers_off_and_halts() {
    let dir = std::env::temp_dir().join(format!("procwatch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("button");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut gov = Guard(
        Command::new(me())
            .env(ROLE, "governor")
            .env("PROCWATCH_TEST_ROOT", std::process::id().to_string())
            .env("PROCWATCH_TEST_BUTTON", &fifo)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = gov.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let expect = |want: &dyn Fn(&str) -> bool, what: &str| -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("waiting for {what}; saw {seen:?}"));
            let done = want(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    };
    // The first pet comes after the snapshot and the button are set up.
    expect(&|l| l == "CALL pet", "first watchdog pet");
    expect(&|l| l == "CALL pet", "second watchdog pet");
    let mut press = Vec::new();
    for ev in [
        InputEvent {
            kind: EV_KEY,
            code: KEY_POWER,
            value: 1,
        },
        InputEvent {
            kind: 0,
            code: 0,
            value: 0,
        },
    ] {
        press.extend(encode_input_event(ev, InputLayout::NATIVE));
    }
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(&press).unwrap();
    let seen = expect(&|l| l == "CALL power_off", "power off");
    let sync_at = seen
        .iter()
        .position(|l| l == "CALL sync")
        .expect("sync before power off");
    assert!(
        seen[..sync_at]
            .iter()
            .any(|l| l.contains("power button pressed")),
        "{seen:?}"
    );
    let child = sleeper();
    let seen = expect(&|l| l == "CALL halt", "halt");
    let line = seen
        .iter()
        .find(|l| l.starts_with("CALL console procwatch: HALT"))
        .unwrap_or_else(|| panic!("no HALT line: {seen:?}"));
    assert!(line.contains(&format!("pid={} ", child.0.id())), "{line}");
    assert!(line.contains("[event]"), "{line}");
    assert!(seen.iter().position(|l| l == "CALL sync") > seen.iter().position(|l| l == line));
    assert!(gov.0.wait().unwrap().success());
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
    println!("ok: run_governor: watchdog pets, power button -> sync + power off, forbidden exec -> {line}");
}

pub(crate) fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("pidns") => return role_pidns(),
        Ok("governor") => return role_governor(),
        _ => {}
    }
    let tests: [(&str, fn()); 4] = [
        (
            "procfs_reads_hostile_names_and_skips_vanished",
            procfs_reads_hostile_names_and_skips_vanished,
        ),
        (
            "pidns_rescan_catches_a_forbidden_child_of_pid_1",
            pidns_rescan_catches_a_forbidden_child_of_pid_1,
        ),
        (
            "connector_event_path_catches_a_forbidden_exec",
            connector_event_path_catches_a_forbidden_exec,
        ),
        (
            "run_governor_pets_powers_off_and_halts",
            run_governor_pets_powers_off_and_halts,
        ),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        println!("test {name} ...");
        test();
    }
    println!("real_kernel: all passed");
}
