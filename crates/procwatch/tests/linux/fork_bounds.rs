//! Forks of the root, bounded (issue 12) and alarms, on the real kernel:
//! - sequential plain forks, each reaped before the next (as Valkey does):
//!   never a false halt, under 5 ms rescans, with and without connector
//!   events (the order of one child's exit and the next one's fork);
//! - a child that outlives a 1 s bound halts on the rescan; one already
//!   older when the engine starts is judged by its real age;
//! - a second concurrent child halts, naming the newcomer (rescan path in a
//!   PID namespace, event path in the initial one);
//! - `run_governor_with_alarms`: a report read from a pipe halts before the
//!   seal; a note is logged; an alarm whose pipe hangs up stops the
//!   governor.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use procwatch::linux::{
    run_governor_with_alarms, GovernorConfig, PowerButtons, ProcConnector, ProcFs,
};
use procwatch::{
    Alarm, AlarmReport, Decision, DetectedBy, Engine, Error, NoEvents, Policy, Reason, Scope,
    SealOn, Stats, Verdict,
};

use super::{
    in_fresh_pid_namespace, me, test_policy, ChannelEnforcer, Guard, PrintingMachine, ROLE,
};

const BOUND: Duration = Duration::from_secs(1);

/// The test policy with one child of the root at a time, living at most
/// `lifetime`.
fn bounded(
    root: u32,
    governor: Option<u32>,
    scope: Scope,
    rescan: Duration,
    lifetime: Duration,
) -> Policy {
    let mut p = test_policy(root, governor, scope, rescan);
    p.children[0].max_alive = Some(1);
    p.children[0].max_lifetime = Some(lifetime);
    p
}

/// A plain fork of this process (no exec: the same exe and uid, a BGSAVE
/// child's shape) that sleeps `ms` and exits.
fn plain_child(ms: u64) -> libc::pid_t {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(ms / 1000).unwrap(),
        tv_nsec: libc::c_long::try_from((ms % 1000) * 1_000_000).unwrap(),
    };
    // SAFETY: the child only calls nanosleep and _exit, which are
    // async-signal-safe, as a fork of a multithreaded process must.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `ts` is a live timespec; no remainder is asked for.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    pid
}

/// Kills (if still running) and reaps a child of this process.
fn end_child(pid: libc::pid_t) {
    // SAFETY: signals and reaps our own child; `status` is a live int.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// Forks `n` children one after the other, each reaped before the next is
/// forked; every tenth lives 1 ms, the others exit at once. Stops after
/// `budget`; returns how many were forked.
fn sequential_children(n: u32, budget: Duration) -> u32 {
    let end = Instant::now() + budget;
    let mut forked = 0;
    while forked < n && Instant::now() < end {
        let pid = plain_child(if forked % 10 == 0 { 1 } else { 0 });
        let mut status = 0;
        // SAFETY: reaps our own child; `status` is a live int.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        forked += 1;
    }
    forked
}

type Background = (Arc<AtomicBool>, JoinHandle<Stats>);

/// Runs `engine` (started) in a thread, with connector events if given,
/// until the flag is set.
fn in_background(
    mut engine: Engine<ProcFs, ChannelEnforcer>,
    mut events: Option<ProcConnector>,
) -> Background {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let runner = std::thread::spawn(move || -> Stats {
        let keep_going = |_: &Engine<_, _>| !stop2.load(Ordering::Relaxed);
        match events.as_mut() {
            Some(conn) => engine.run(conn, keep_going).unwrap(),
            None => engine.run(&mut NoEvents, keep_going).unwrap(),
        }
        engine.stats()
    });
    (stop, runner)
}

fn stop((stop, runner): Background) -> Stats {
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap()
}

fn halted_pid(v: &Verdict) -> u32 {
    v.process.as_ref().map(|p| p.pid).unwrap()
}

/// Sequential children under the engine: no halt. Returns a report.
fn sequential_children_never_halt(policy: Policy, events: Option<ProcConnector>) -> String {
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(policy, ProcFs::default(), ChannelEnforcer(tx));
    engine.start().unwrap();
    let bg = in_background(engine, events);
    let started = Instant::now();
    let forked = sequential_children(2000, Duration::from_secs(20));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let stats = stop(bg);
    let halts: Vec<Verdict> = rx.try_iter().map(|(v, _)| v).collect();
    assert!(halts.is_empty(), "{} false halts: {halts:?}", halts.len());
    assert!(forked >= 200, "only {forked} forks in {took:?}");
    format!(
        "{forked} sequential children in {} ms, scans={} events={}, no halt",
        took.as_millis(),
        stats.scans,
        stats.events
    )
}

/// A child that outlives the bound halts, by the rescan, within about one
/// rescan interval after the bound. Returns a report.
fn a_child_outliving_the_bound_halts(policy: Policy, events: Option<ProcConnector>) -> String {
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(policy, ProcFs::default(), ChannelEnforcer(tx));
    engine.start().unwrap();
    let bg = in_background(engine, events);
    let forked = Instant::now();
    let pid = plain_child(5000);
    let got = rx.recv_timeout(Duration::from_secs(10));
    end_child(pid);
    stop(bg);
    let (verdict, at) = got.expect("no verdict on a child outliving its bound");
    assert_eq!(
        halted_pid(&verdict),
        u32::try_from(pid).unwrap(),
        "{verdict:?}"
    );
    assert_eq!(verdict.path, DetectedBy::Rescan, "{verdict:?}");
    let Decision::Halt(Reason::ChildTooOld { age, max, .. }) = verdict.decision else {
        panic!("{verdict:?}");
    };
    assert!(age > max && max == BOUND, "{verdict:?}");
    format!(
        "child {pid} halted {} ms after its fork (bound {} ms, age read {} ms)",
        at.duration_since(forked).as_millis(),
        BOUND.as_millis(),
        age.as_millis()
    )
}

/// A child already older than the bound when the engine starts is judged
/// by its real age (its start time against `CLOCK_BOOTTIME`), not from
/// when the engine first saw it.
fn a_child_first_seen_late_is_judged_by_its_real_age(policy: Policy) -> String {
    let pid = plain_child(5000);
    std::thread::sleep(BOUND + Duration::from_millis(500));
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(policy, ProcFs::default(), ChannelEnforcer(tx));
    engine.start().unwrap();
    end_child(pid);
    let (verdict, _) = rx.try_recv().expect("the first snapshot must halt");
    assert_eq!(halted_pid(&verdict), u32::try_from(pid).unwrap());
    assert_eq!(verdict.path, DetectedBy::Snapshot);
    let Decision::Halt(Reason::ChildTooOld { age, .. }) = verdict.decision else {
        panic!("{verdict:?}");
    };
    assert!(age >= BOUND + Duration::from_millis(400), "{verdict:?}");
    format!(
        "child {pid} first seen at age {} ms, halted",
        age.as_millis()
    )
}

/// A second child while the first lives halts, naming the second.
fn a_second_concurrent_child_halts(
    policy: Policy,
    events: Option<ProcConnector>,
    path: DetectedBy,
) -> String {
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(policy, ProcFs::default(), ChannelEnforcer(tx));
    engine.start().unwrap();
    let bg = in_background(engine, events);
    let first = plain_child(5000);
    std::thread::sleep(Duration::from_millis(200));
    let second = plain_child(5000);
    let got = rx.recv_timeout(Duration::from_secs(10));
    end_child(first);
    end_child(second);
    stop(bg);
    let (verdict, _) = got.expect("no verdict on a second concurrent child");
    assert_eq!(
        halted_pid(&verdict),
        u32::try_from(second).unwrap(),
        "{verdict:?}"
    );
    assert_eq!(verdict.path, path, "{verdict:?}");
    assert!(
        matches!(
            verdict.decision,
            Decision::Halt(Reason::TooManyChildren {
                alive: 2,
                max: 1,
                ..
            })
        ),
        "{verdict:?}"
    );
    format!("second child {second} (first {first}) halted by {path}")
}

pub(crate) fn pidns_fork_bounds() {
    let stdout = in_fresh_pid_namespace("fork-bounds", "FORK-BOUNDS-OK");
    println!("ok: PID namespace, fork bounds, rescans:");
    for line in stdout.lines().filter(|l| l.starts_with("  ")) {
        println!("{line}");
    }
}

/// Runs as PID 1 of a fresh PID namespace: rescans alone.
pub(crate) fn role_fork_bounds() {
    assert_eq!(std::process::id(), 1);
    let rescan = Duration::from_millis(5);
    let policy = |lifetime| bounded(1, Some(1), Scope::Machine, rescan, lifetime);
    println!("  {}", sequential_children_never_halt(policy(BOUND), None));
    println!(
        "  {}",
        a_child_outliving_the_bound_halts(policy(BOUND), None)
    );
    println!(
        "  {}",
        a_child_first_seen_late_is_judged_by_its_real_age(policy(BOUND))
    );
    println!(
        "  {}",
        a_second_concurrent_child_halts(policy(Duration::from_secs(60)), None, DetectedBy::Rescan)
    );
    println!("FORK-BOUNDS-OK");
}

/// The same in the initial PID namespace, scoped to this process's
/// descendants, with connector events.
pub(crate) fn connector_fork_bounds() {
    let me_pid = std::process::id();
    let scope = Scope::Descendants(me_pid);
    let conn = || Some(ProcConnector::open(procwatch::linux::DEFAULT_RCVBUF).unwrap());
    let fast = Duration::from_millis(5);
    let report = sequential_children_never_halt(bounded(me_pid, None, scope, fast, BOUND), conn());
    println!("ok: connector and 5 ms rescans: {report}");
    // An hour between rescans: the second child is seen by its fork event.
    let hour = Duration::from_secs(3600);
    let policy = bounded(me_pid, None, scope, hour, Duration::from_secs(60));
    let report = a_second_concurrent_child_halts(policy, conn(), DetectedBy::Event);
    println!("ok: connector: {report}");
}

/// An alarm over a pipe (or FIFO): each line `halt|note <pid> <what>` is
/// one report.
struct LineAlarm {
    fd: OwnedFd,
    pending: Vec<u8>,
}

impl Alarm for LineAlarm {
    fn name(&self) -> &str {
        "test-pipe"
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn read(&mut self, out: &mut Vec<AlarmReport>) -> Result<(), Error> {
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: `buf` is a live, writable buffer of its length; the
            // descriptor is non-blocking.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            self.pending
                .extend_from_slice(&buf[..usize::try_from(n).unwrap()]);
        }
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            let mut words = line.splitn(3, ' ');
            let halt = words.next() == Some("halt");
            let pid = words.next().unwrap().parse().unwrap();
            let what = words.next().unwrap_or_default().to_owned();
            out.push(AlarmReport { pid, what, halt });
        }
        Ok(())
    }
}

/// Opens `path` (a FIFO) for reading, non-blocking, and for writing too, so
/// it never hangs up while the test writes one line at a time.
fn open_fifo_alarm(path: &str) -> LineAlarm {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    LineAlarm {
        fd: OwnedFd::from(file),
        pending: Vec::new(),
    }
}

/// A policy that never seals: its root must run an executable that does
/// not exist.
fn never_sealed(root: u32) -> Policy {
    let mut p = test_policy(
        root,
        Some(std::process::id()),
        Scope::Descendants(root),
        Duration::from_secs(3600),
    );
    p.root.exe = "/nonexistent/server".into();
    p.seal_on = SealOn::RootExec;
    p
}

pub(crate) fn role_governor_alarm() {
    let root: u32 = std::env::var("PROCWATCH_TEST_ROOT")
        .unwrap()
        .parse()
        .unwrap();
    let config = GovernorConfig {
        power_buttons: PowerButtons::Disabled,
        watchdog_interval: Some(Duration::from_millis(100)),
        ..GovernorConfig::default()
    };
    let alarm: Box<dyn Alarm> = match std::env::var("PROCWATCH_TEST_ALARM").unwrap().as_str() {
        // A pipe whose writer is gone at once: the alarm hangs up.
        "hangup" => {
            let mut fds = [0; 2];
            // SAFETY: `fds` is a live array of two ints.
            let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            assert_eq!(ret, 0);
            // SAFETY: closes the write end we just got.
            unsafe { libc::close(fds[1]) };
            // SAFETY: the read end is ours alone.
            let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
            Box::new(LineAlarm {
                fd,
                pending: Vec::new(),
            })
        }
        fifo => Box::new(open_fifo_alarm(fifo)),
    };
    let err = run_governor_with_alarms(never_sealed(root), PrintingMachine, &config, vec![alarm])
        .unwrap_err();
    println!("CALL error {err}");
    std::process::exit(2);
}

/// Starts the alarm governor role; returns it and a receiver of its lines.
fn alarm_governor(alarm: &str) -> (Guard, mpsc::Receiver<String>) {
    let mut gov = Guard(
        Command::new(me())
            .env(ROLE, "governor-alarm")
            .env("PROCWATCH_TEST_ROOT", std::process::id().to_string())
            .env("PROCWATCH_TEST_ALARM", alarm)
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
    (gov, rx)
}

fn expect(rx: &mpsc::Receiver<String>, want: &dyn Fn(&str) -> bool, what: &str) -> Vec<String> {
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
}

pub(crate) fn run_governor_halts_on_an_alarm_before_the_seal() {
    let dir = std::env::temp_dir().join(format!("procwatch-alarm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("alarm");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (mut gov, rx) = alarm_governor(fifo.to_str().unwrap());
    let mut all = expect(&rx, &|l| l == "CALL pet", "the loop running");
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let me_pid = std::process::id();
    writeln!(w, "note {me_pid} would refuse fork").unwrap();
    let seen = expect(
        &rx,
        &|l| l.starts_with("CALL console procwatch: allow alarm"),
        "the note",
    );
    all.extend(seen.iter().cloned());
    let note = seen.last().unwrap();
    assert!(
        note.contains("alarm from test-pipe: would refuse fork [alarm]: ")
            && note.contains(&format!("pid={me_pid} ")),
        "{note}"
    );
    writeln!(w, "halt {me_pid} fork refused").unwrap();
    let seen = expect(&rx, &|l| l == "CALL halt", "the halt");
    all.extend(seen.iter().cloned());
    assert!(
        !all.iter().any(|l| l.contains("procwatch: seal:")),
        "the policy sealed: {all:?}"
    );
    let line = seen
        .iter()
        .find(|l| l.starts_with("CALL console procwatch: HALT"))
        .unwrap_or_else(|| panic!("no HALT line: {seen:?}"));
    assert!(
        line.contains("HALT alarm from test-pipe: fork refused [alarm]: ")
            && line.contains(&format!("pid={me_pid} ppid=")),
        "{line}"
    );
    assert!(gov.0.wait().unwrap().success());
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
    println!("ok: run_governor_with_alarms, never sealed: note logged, halt -> {line}");

    let (mut gov, rx) = alarm_governor("hangup");
    let seen = expect(&rx, &|l| l.starts_with("CALL error"), "the alarm's hang-up");
    let last = seen.last().unwrap();
    assert_eq!(last, "CALL error alarm test-pipe: descriptor hung up");
    assert_eq!(gov.0.wait().unwrap().code(), Some(2));
    println!("ok: run_governor_with_alarms: a hung-up alarm stops the governor: {last}");
}
