use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use procwatch::linux::{run_governor, GovernorConfig, PowerButtons, ProcConnector, ProcFs};
use procwatch::parse::input::{encode_input_event, InputEvent, InputLayout, EV_KEY, KEY_POWER};
use procwatch::{
    ChildRule, Decision, DetectedBy, Enforcer, Engine, Error, Liveness, Machine, NoEvents,
    OnEventLoss, Policy, ProcInfo, ProcessSource, Read, Reason, RootRule, Scope, SealOn,
    SealedRules, Stats, Verdict,
};

mod fork_bounds;

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

/// The complete records of a snapshot.
fn complete(snapshot: Vec<Read>) -> Vec<ProcInfo> {
    snapshot.into_iter().filter_map(Read::complete).collect()
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
        let p = fs.read_process(pid).unwrap().complete().unwrap();
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
    // A snapshot reader re-reads a process it holds from `status` alone,
    // whose Name: is escaped: the name must come back the same.
    let mut held = ProcFs::default();
    complete(held.snapshot().unwrap());
    let before = held.stats().files_read;
    let again = complete(held.snapshot().unwrap());
    let q = again.iter().find(|q| q.pid == pid).unwrap();
    assert_eq!(
        (&q.comm, q.ppid, q.start_time, &q.exe, &q.cmdline),
        (&p.comm, p.ppid, p.start_time, &p.exe, &p.cmdline)
    );
    let users = again.iter().filter(|q| !q.kernel_thread).count();
    let files = held.stats().files_read - before;
    assert!(
        files <= u64::try_from(3 * users).unwrap(),
        "{files} reads for {users} user processes"
    );
    drop(child);
    assert_eq!(fs.read_process(pid).unwrap(), Read::Gone);
    let kthreadd = fs.read_process(2).unwrap().complete().unwrap();
    assert!(kthreadd.kernel_thread, "{kthreadd:?}");
    // The getdents64 listing agrees with std's readdir: what both readdir
    // listings around it show is in it, and nothing outside either.
    let readdir = || -> std::collections::BTreeSet<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect()
    };
    let (a, listed, c) = (readdir(), fs.pids().unwrap(), readdir());
    let listed: std::collections::BTreeSet<u32> = listed.into_iter().collect();
    assert!(
        a.intersection(&c).all(|p| listed.contains(p)),
        "{a:?} {listed:?} {c:?}"
    );
    assert!(
        listed.iter().all(|p| a.contains(p) || c.contains(p)),
        "{a:?} {listed:?} {c:?}"
    );
    assert!(listed.contains(&1) && listed.contains(&std::process::id()));
    // Not a procfs root: the listing from procfs's first process entry does
    // not begin with `self`, so the whole directory is read.
    let dir = std::env::temp_dir().join(format!("procwatch-listing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for name in (1..=300)
        .map(|n| n.to_string())
        .chain(["self".into(), "abc".into()])
    {
        std::fs::create_dir_all(dir.join(name)).unwrap();
    }
    let plain_dir = ProcFs::new(&dir, 64).pids().unwrap();
    assert_eq!(plain_dir, (1..=300).collect::<Vec<u32>>());
    std::fs::remove_dir_all(&dir).unwrap();
    let all = complete(ProcFs::default().snapshot().unwrap());
    assert!(all.iter().any(|p| p.pid == std::process::id()));
    println!(
        "ok: /proc reader (hostile comm, vanished pid, kernel thread, {} processes)",
        all.len()
    );
}

/// A zombie reads as incomplete (its exe link is gone) with what could be
/// read; re-read through the held files it stays that zombie, and once
/// reaped it is gone, through the held files as afresh.
fn procfs_reads_a_zombie_as_incomplete_and_the_reaped_as_gone() {
    // SAFETY: the child only calls `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0);
    let upid = u32::try_from(pid).unwrap();
    let mut fs = ProcFs::default();
    let is_zombie = |r: &Read| matches!(r, Read::Incomplete(i) if i.liveness == Liveness::Zombie);
    let deadline = Instant::now() + Duration::from_secs(5);
    let read = loop {
        let r = fs.read_process(upid).unwrap();
        if is_zombie(&r) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let Read::Incomplete(inc) = &read else {
        panic!("{read:?}");
    };
    assert_eq!(inc.what, procwatch::Unreadable::Exe, "{inc:?}");
    assert_eq!(inc.liveness, Liveness::Zombie, "{inc:?}");
    assert_eq!(inc.partial.ppid, Some(std::process::id()), "{inc:?}");
    assert_eq!(inc.partial.uids, Some((0, 0)), "{inc:?}");
    assert!(inc.partial.start_time.is_some(), "{inc:?}");
    let snap = fs.snapshot().unwrap();
    assert!(snap.iter().any(|r| r.pid() == Some(upid) && is_zombie(r)));
    assert!(is_zombie(&fs.reread(upid).unwrap()));
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a live int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(fs.reread(upid).unwrap(), Read::Gone);
    assert_eq!(fs.read_process(upid).unwrap(), Read::Gone);
    println!("ok: /proc reader: zombie {upid} read as {inc:?}, then gone");
}

/// Kernel threads whose pidfd is quiet are taken from the last snapshot
/// unread, and what the reader reports of them matches a fresh read.
fn procfs_reuses_live_kernel_threads_unread() {
    let mut fs = ProcFs::default();
    assert!(
        fs.uses_pidfds(),
        "the host's /proc is this process's own PID namespace"
    );
    let first = complete(fs.snapshot().unwrap());
    let before = fs.stats();
    let second = complete(fs.snapshot().unwrap());
    let after = fs.stats();
    let kernel: Vec<&ProcInfo> = second.iter().filter(|p| p.kernel_thread).collect();
    let users = second.len() - kernel.len();
    assert!(
        kernel.iter().any(|p| p.pid == 2),
        "kthreadd must be listed: {kernel:?}"
    );
    // Every kernel thread present in both snapshots as the same task came
    // from the cache.
    let same_task = kernel
        .iter()
        .filter(|k| {
            first
                .iter()
                .any(|p| p.pid == k.pid && p.start_time == k.start_time && p.kernel_thread)
        })
        .count();
    let reused = after.kernel_threads_reused - before.kernel_threads_reused;
    assert_eq!(reused, u64::try_from(same_task).unwrap());
    // A user process costs stat, status and exe (cmdline when new, a second
    // stat without a pidfd); a kernel thread new to this snapshot costs one
    // stat; a reused one costs nothing.
    let files = after.files_read - before.files_read;
    let bound = 5 * users + (kernel.len() - same_task);
    assert!(
        files <= u64::try_from(bound).unwrap(),
        "{files} files read for {users} user processes and {} kernel threads ({same_task} reused)",
        kernel.len()
    );
    // What the cache reports agrees with an uncached read of each one.
    let fresh = ProcFs::default().without_pidfds();
    for k in &kernel {
        let Some(now) = fresh.read_process(k.pid).unwrap().complete() else {
            continue; // exited since
        };
        assert_eq!(
            (
                now.pid,
                now.ppid,
                now.kernel_thread,
                now.start_time,
                now.uid
            ),
            (k.pid, k.ppid, k.kernel_thread, k.start_time, k.uid),
            "{k:?}"
        );
    }
    // The reader without pidfds re-reads every kernel thread each time.
    let mut plain = ProcFs::default().without_pidfds();
    assert!(!plain.uses_pidfds());
    complete(plain.snapshot().unwrap());
    let start = plain.stats();
    let snap = complete(plain.snapshot().unwrap());
    let plain_files = plain.stats().files_read - start.files_read;
    assert_eq!(plain.stats().kernel_threads_reused, 0);
    assert!(
        plain_files >= u64::try_from(snap.iter().filter(|p| p.kernel_thread).count()).unwrap(),
        "{plain_files}"
    );
    println!(
        "ok: /proc reader: {} kernel threads ({reused} reused unread), {users} user processes: {files} files read with pidfds, {plain_files} without",
        kernel.len()
    );
}

/// Runs this binary as `role` in a fresh PID namespace (its PID 1, with its
/// own /proc) and returns what it printed, which must hold `marker`.
fn in_fresh_pid_namespace(role: &str, marker: &str) -> String {
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(me())
        .env(ROLE, role)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{role} role failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(marker), "{stdout}");
    stdout
}

/// A process the reader holds open execs: the next snapshots show the new
/// exe and command line, read through the same held files.
fn procfs_held_process_is_seen_after_exec() {
    let mut child = Command::new("sh")
        .args(["-c", "read x; exec sleep 31"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let child = Guard(child);
    let mut fs = ProcFs::default();
    let find = |fs: &mut ProcFs| {
        complete(fs.snapshot().unwrap())
            .into_iter()
            .find(|p| p.pid == pid)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = loop {
        let p = find(&mut fs).unwrap();
        if p.cmdline.starts_with(b"sh\0-c") || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(before.cmdline.starts_with(b"sh\0-c"), "{before:?}");
    let opened = fs.open_descriptors();
    writeln!(stdin).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let p = find(&mut fs).unwrap();
        let execd = p.exe.as_ref().is_some_and(|e| e.ends_with("sleep")) && !p.cmdline.is_empty();
        if execd || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(
        after.exe.as_ref().is_some_and(|e| e.ends_with("sleep")),
        "{after:?}"
    );
    assert_eq!(after.cmdline, b"sleep\x0031\x00", "{after:?}");
    assert_eq!(after.start_time, before.start_time);
    assert_eq!(fs.open_descriptors(), opened, "the same files were read");
    drop(child);
    println!(
        "ok: held process exec'd: {:?} -> {:?}, cmdline {:?}",
        before.exe,
        after.exe,
        String::from_utf8_lossy(&after.cmdline)
    );
}

fn pidns_pid_reuse_is_seen() {
    let stdout = in_fresh_pid_namespace("pid-reuse", "PID-REUSE-OK");
    println!("ok: pid reuse: {}", stdout.trim());
}

/// Spawns `sleep <arg>` as the given pid: `ns_last_pid` set to one less
/// (PID 1 of a fresh namespace may write it).
fn sleeper_at(pid: u32, arg: &str) -> Guard {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
    let child = Guard(Command::new("sleep").arg(arg).spawn().unwrap());
    assert_eq!(child.0.id(), pid, "ns_last_pid did not place the child");
    child
}

/// Runs as PID 1 of a fresh PID namespace: a process the reader knows exits
/// and the same executable takes its pid at once (within one clock tick,
/// so the start times may well be equal). The next snapshot must show the
/// new process, not what was known of the old one.
fn role_pid_reuse() {
    assert_eq!(std::process::id(), 1);
    let cmd = |p: &ProcInfo| String::from_utf8_lossy(&p.cmdline).replace('\0', " ");
    let mut report = Vec::new();
    for (name, mut fs, pause) in [
        ("pidfd", ProcFs::default(), Duration::ZERO),
        // Without pidfds the reader tells processes apart by start time
        // alone, which has clock-tick resolution: give it a tick.
        (
            "start time",
            ProcFs::default().without_pidfds(),
            Duration::from_millis(30),
        ),
    ] {
        assert_eq!(fs.uses_pidfds(), name == "pidfd");
        let pid = 40;
        let old = sleeper_at(pid, "1001");
        // Until sleep has exec'd, the child shows this test binary.
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = loop {
            let snap = complete(fs.snapshot().unwrap());
            let p = snap.into_iter().find(|p| p.pid == pid).unwrap();
            if cmd(&p) == "sleep 1001 " || Instant::now() > deadline {
                break p;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(cmd(&seen), "sleep 1001 ", "{seen:?}");
        drop(old);
        std::thread::sleep(pause);
        let new = sleeper_at(pid, "1002");
        let deadline = Instant::now() + Duration::from_secs(5);
        let now = loop {
            let snap = complete(fs.snapshot().unwrap());
            let p = snap.into_iter().find(|p| p.pid == pid).unwrap();
            // Inside execve the new image's command line reads as empty
            // for a moment; the reader re-reads an empty line.
            if (p.exe == seen.exe && !p.cmdline.is_empty()) || Instant::now() > deadline {
                break p;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(now.exe, seen.exe, "{now:?}");
        assert_eq!(
            cmd(&now),
            "sleep 1002 ",
            "{name}: the old process's command line was kept: {now:?}"
        );
        report.push(format!(
            "{name}: pid {pid} start {} -> {}",
            seen.start_time, now.start_time
        ));
        drop(new);
    }
    println!("PID-REUSE-OK {}", report.join("; "));
}

/// A procfs of another PID namespace numbers pids differently from
/// `pidfd_open`: the reader must not use pidfds for it, and still reads it.
fn procfs_of_another_pid_namespace_uses_no_pidfds() {
    let unshare = Guard(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "sleep", "30"])
            .spawn()
            .unwrap(),
    );
    let outer = unshare.0.id();
    let mut host = ProcFs::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let inner = loop {
        let found = host
            .snapshot()
            .unwrap()
            .into_iter()
            .filter_map(Read::complete)
            .find(|p| p.ppid == outer && p.exe.as_ref().is_some_and(|e| e.ends_with("sleep")));
        if let Some(p) = found {
            break p.pid;
        }
        assert!(
            Instant::now() < deadline,
            "the namespaced sleep never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // The namespace's own /proc, reached through its root.
    let mut fs = ProcFs::new(
        format!("/proc/{inner}/root/proc"),
        procwatch::linux::DEFAULT_CMDLINE_LIMIT,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let snap = loop {
        let snap = complete(fs.snapshot().unwrap());
        if !snap.is_empty() || Instant::now() > deadline {
            break snap;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!fs.uses_pidfds());
    let one = snap
        .iter()
        .find(|p| p.pid == 1)
        .unwrap_or_else(|| panic!("{snap:?}"));
    assert!(
        one.exe.as_ref().is_some_and(|e| e.ends_with("sleep")),
        "{one:?}"
    );
    // Read twice: nothing is taken unread without pidfds.
    complete(fs.snapshot().unwrap());
    assert_eq!(fs.stats().kernel_threads_reused, 0);
    println!(
        "ok: a procfs of another PID namespace: no pidfds, {} processes read",
        snap.len()
    );
}

fn pidns_rescan_catches_a_forbidden_child_of_pid_1() {
    let stdout = in_fresh_pid_namespace("pidns", "PIDNS-OK");
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

/// What a source read, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct ReadCounts {
    complete: u64,
    gone: u64,
    exiting: u64,
    zombie: u64,
    running: u64,
    unknown: u64,
}

impl ReadCounts {
    fn count(&mut self, read: &Read) {
        let slot = match read {
            Read::Complete(_) => &mut self.complete,
            Read::Gone => &mut self.gone,
            Read::Incomplete(i) => match i.liveness {
                Liveness::Exiting => &mut self.exiting,
                Liveness::Zombie => &mut self.zombie,
                Liveness::Running => &mut self.running,
                Liveness::Unknown => &mut self.unknown,
            },
        };
        *slot += 1;
    }
}

/// A `/proc` reader that counts what it reads.
struct Counting {
    fs: ProcFs,
    counts: Arc<Mutex<ReadCounts>>,
}

impl ProcessSource for Counting {
    fn snapshot(&mut self) -> Result<Vec<Read>, Error> {
        let snap = self.fs.snapshot()?;
        let mut c = self.counts.lock().unwrap();
        snap.iter().for_each(|r| c.count(r));
        Ok(snap)
    }
    fn process(&mut self, pid: u32) -> Result<Read, Error> {
        let r = self.fs.process(pid)?;
        self.counts.lock().unwrap().count(&r);
        Ok(r)
    }
    fn reread(&mut self, pid: u32) -> Result<Read, Error> {
        let r = self.fs.reread(pid)?;
        self.counts.lock().unwrap().count(&r);
        Ok(r)
    }
}

/// Forks plain children of this process (no exec: the same exe and uid),
/// `n` of them or as many as fit in `budget`. Most `_exit` at once, every
/// tenth after 1 ms; the parent reaps them lazily, every fiftieth fork
/// pausing 2 ms first, so some stay zombies for a while. Each child
/// inherits a 16 MiB written buffer: its exit tears that down after its
/// exe link is gone, which widens the window in which a reader finds it
/// exiting. Returns how many were forked.
fn fork_storm(n: u32, budget: Duration) -> u32 {
    let ballast = vec![1u8; 16 << 20];
    let end = Instant::now() + budget;
    let mut pending: Vec<libc::pid_t> = Vec::new();
    let reap = |pending: &mut Vec<libc::pid_t>, flags| {
        pending.retain(|&pid| {
            let mut status = 0;
            // SAFETY: waits for our own child `pid`; `status` is a live int.
            let r = unsafe { libc::waitpid(pid, &mut status, flags) };
            r == 0
        });
    };
    let mut forked = 0;
    while forked < n && Instant::now() < end {
        // SAFETY: the child only calls async-signal-safe functions
        // (nanosleep, _exit), as a fork of a multithreaded process must.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if forked % 10 == 0 {
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                // SAFETY: `ts` is a live timespec; no remainder is asked for.
                unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            }
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        pending.push(pid);
        forked += 1;
        if forked % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        reap(&mut pending, libc::WNOHANG);
    }
    reap(&mut pending, 0);
    assert!(pending.is_empty());
    std::hint::black_box(&ballast);
    forked
}

const STORM_FORKS: u32 = 5000;
/// The storm stops by itself after this, however far it got: two storms
/// stay under a minute even on this shared 2-core machine under load
/// (5000 forks take about 5 s idle, 13 s at a load average of 8).
const STORM_BUDGET: Duration = Duration::from_secs(25);
/// Fewer forks than this in the budget would test too little: fail.
const STORM_MIN_FORKS: u32 = 1000;

/// An allowed child (a plain fork of the root) forking and exiting
/// thousands of times while the engine rescans every 5 ms (and, in the
/// initial PID namespace, serves connector events): no halt. Then the
/// control: a real forbidden process (an exec of another binary) is still
/// halted. Returns the storm's report line.
fn fork_storm_under_the_engine(
    policy: Policy,
    mut events: Option<procwatch::linux::ProcConnector>,
) -> String {
    let (tx, rx) = mpsc::channel();
    let counts = Arc::new(Mutex::new(ReadCounts::default()));
    let source = Counting {
        fs: ProcFs::default(),
        counts: counts.clone(),
    };
    let mut engine = Engine::new(policy, source, ChannelEnforcer(tx));
    engine.start().unwrap();
    assert!(rx.try_recv().is_err(), "a clean start must pass");
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
    let started = Instant::now();
    let forked = fork_storm(STORM_FORKS, STORM_BUDGET);
    let storm = started.elapsed();
    // A few more rescans over what the storm left.
    std::thread::sleep(Duration::from_millis(100));
    let halts: Vec<Verdict> = rx.try_iter().map(|(v, _)| v).collect();
    assert!(halts.is_empty(), "{} false halts: {halts:?}", halts.len());
    assert!(
        forked >= STORM_MIN_FORKS,
        "only {forked} forks in {storm:?}"
    );
    let child = sleeper();
    let got = rx.recv_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let stats = runner.join().unwrap();
    let (verdict, _) = got.expect("the forbidden process was not halted");
    assert_eq!(halt_pid(&verdict), child.0.id(), "{verdict:?}");
    let c = *counts.lock().unwrap();
    // The storm must have shown the reader processes it could not read
    // completely (the field's case is the exiting one), or it tested
    // nothing.
    assert!(c.exiting > 0 && c.zombie > 0, "{c:?}");
    format!(
        "forks={forked} in {} ms, scans={} events={} incomplete={} rereads={}, reads {c:?}; control: {:?} by {}",
        storm.as_millis(),
        stats.scans,
        stats.events,
        stats.incomplete,
        stats.rereads,
        verdict.decision,
        verdict.path
    )
}

fn pidns_fork_storm_of_an_allowed_child_never_halts() {
    let stdout = in_fresh_pid_namespace("fork-storm", "FORK-STORM-OK");
    println!("ok: PID namespace, fork storm, rescans: {}", stdout.trim());
}

/// Runs as PID 1 of a fresh PID namespace: the whole machine watched by
/// rescans alone (the connector does not speak to other namespaces).
fn role_fork_storm() {
    assert_eq!(std::process::id(), 1);
    let policy = test_policy(1, Some(1), Scope::Machine, Duration::from_millis(5));
    let report = fork_storm_under_the_engine(policy, None);
    println!("FORK-STORM-OK {report}");
}

/// The same in the initial PID namespace, scoped to this process's
/// descendants, with connector events beside the 5 ms rescans.
fn connector_fork_storm_of_an_allowed_child_never_halts() {
    let me_pid = std::process::id();
    let policy = test_policy(
        me_pid,
        None,
        Scope::Descendants(me_pid),
        Duration::from_millis(5),
    );
    let conn = ProcConnector::open(procwatch::linux::DEFAULT_RCVBUF).unwrap();
    let report = fork_storm_under_the_engine(policy, Some(conn));
    println!("ok: fork storm, connector and rescans: {report}");
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
        Ok("pid-reuse") => return role_pid_reuse(),
        Ok("fork-storm") => return role_fork_storm(),
        Ok("fork-bounds") => return fork_bounds::role_fork_bounds(),
        Ok("governor-alarm") => return fork_bounds::role_governor_alarm(),
        _ => {}
    }
    let tests: [(&str, fn()); 14] = [
        (
            "procfs_reads_hostile_names_and_skips_vanished",
            procfs_reads_hostile_names_and_skips_vanished,
        ),
        (
            "procfs_reads_a_zombie_as_incomplete_and_the_reaped_as_gone",
            procfs_reads_a_zombie_as_incomplete_and_the_reaped_as_gone,
        ),
        (
            "procfs_reuses_live_kernel_threads_unread",
            procfs_reuses_live_kernel_threads_unread,
        ),
        (
            "procfs_held_process_is_seen_after_exec",
            procfs_held_process_is_seen_after_exec,
        ),
        ("pidns_pid_reuse_is_seen", pidns_pid_reuse_is_seen),
        (
            "procfs_of_another_pid_namespace_uses_no_pidfds",
            procfs_of_another_pid_namespace_uses_no_pidfds,
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
            "pidns_fork_storm_of_an_allowed_child_never_halts",
            pidns_fork_storm_of_an_allowed_child_never_halts,
        ),
        (
            "connector_fork_storm_of_an_allowed_child_never_halts",
            connector_fork_storm_of_an_allowed_child_never_halts,
        ),
        (
            "run_governor_pets_powers_off_and_halts",
            run_governor_pets_powers_off_and_halts,
        ),
        ("pidns_fork_bounds", fork_bounds::pidns_fork_bounds),
        ("connector_fork_bounds", fork_bounds::connector_fork_bounds),
        (
            "run_governor_halts_on_an_alarm_before_the_seal",
            fork_bounds::run_governor_halts_on_an_alarm_before_the_seal,
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
