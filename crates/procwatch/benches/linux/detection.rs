use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use procwatch::linux::{ProcConnector, ProcFs, DEFAULT_RCVBUF};
use procwatch::parse::proc::parse_status;
use procwatch::{
    ChildRule, Enforcer, Engine, Error, EventSource, NoEvents, OnEventLoss, Policy, ProcessSource,
    RootRule, Scope, SealOn, SealedRules, Verdict,
};

const ROLE: &str = "PROCWATCH_BENCH_ROLE";

struct ChannelEnforcer(mpsc::Sender<Instant>);

impl Enforcer for ChannelEnforcer {
    fn halt(&mut self, _verdict: &Verdict) -> Result<(), Error> {
        let _ = self.0.send(Instant::now());
        Ok(())
    }
    fn note(&mut self, _verdict: &Verdict) {}
}

fn me() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap()
}

fn policy(root: u32, rescan: Duration) -> Policy {
    Policy {
        root: RootRule {
            pid: root,
            exe: me(),
            uid: 0,
        },
        governor_pid: None,
        allow_kernel_threads: true,
        children: vec![ChildRule {
            label: "bench fork".into(),
            exe: me(),
            uids: vec![0],
            setuid_to: vec![],
            nested: false,
            log: false,
            // The appliance's bounds (one child, 600 s), unless
            // PROCWATCH_BENCH_CHILD_BOUNDS=0: the census and the age check
            // then have nothing to do, for comparison.
            max_alive: child_bounds().then_some(1),
            max_lifetime: child_bounds().then_some(Duration::from_secs(600)),
        }],
        sealed: SealedRules {
            halt_on_exec: true,
            halt_on_uid_change: true,
            halt_on_ptrace_attach: true,
        },
        seal_on: SealOn::Start,
        on_event_loss: OnEventLoss::Rescan,
        rescan_interval: rescan,
        scope: Scope::Descendants(root),
    }
}

/// How the idle rows' reader is set up.
#[derive(Clone, Copy)]
enum Reader {
    /// No pidfds, no descriptors kept: every process opened and read.
    Fresh,
    /// No pidfds: every process re-read through its held files.
    Held,
    /// The default: held files, and live kernel threads taken unread.
    Pidfds,
}

fn child_bounds() -> bool {
    env_num("PROCWATCH_BENCH_CHILD_BOUNDS", 1) != 0
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Latencies {
    samples: Vec<Duration>,
    /// From the `spawn` call (fork+exec included) to the verdict.
    from_call: Vec<Duration>,
    /// Verdicts that arrived before `spawn` returned (counted as 0).
    early: usize,
}

impl Latencies {
    fn row(&self, name: &str) -> String {
        let stats = |v: &[Duration]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            let n = v.len();
            let pick = |q: usize| ms(v[(n * q / 100).min(n - 1)]);
            format!(
                "{:.3} | {:.3} | {:.3} | {:.3}",
                pick(50),
                pick(90),
                pick(99),
                ms(v[n - 1])
            )
        };
        format!(
            "| {name} | {} | {} | {} | {} |",
            self.samples.len(),
            stats(&self.samples),
            self.early,
            stats(&self.from_call)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Spawns `trials` forbidden `sleep`s and times each verdict. `gap` returns
/// a pause before each trial (to spread trials over the poll phase).
fn measure(
    rx: &mpsc::Receiver<Instant>,
    trials: u64,
    mut gap: impl FnMut() -> Duration,
) -> Latencies {
    let mut samples = Vec::new();
    let mut from_call = Vec::new();
    let mut early = 0;
    for _ in 0..trials {
        std::thread::sleep(gap());
        let called_at = Instant::now();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let returned = Instant::now();
        let called = rx.recv_timeout(Duration::from_secs(5)).expect("no verdict");
        if called < returned {
            early += 1;
        }
        samples.push(called.saturating_duration_since(returned));
        from_call.push(called.saturating_duration_since(called_at));
        child.kill().unwrap();
        child.wait().unwrap();
        // Nothing else may be pending.
        while rx.try_recv().is_ok() {}
    }
    Latencies {
        samples,
        from_call,
        early,
    }
}

fn event_latency(trials: u64) -> Latencies {
    let pid = std::process::id();
    let mut conn = ProcConnector::open(DEFAULT_RCVBUF).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(
        policy(pid, Duration::from_secs(3600)),
        ProcFs::default(),
        ChannelEnforcer(tx),
    );
    engine.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let mut buf = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            conn.wait(Duration::from_millis(50), &mut buf).unwrap();
            for ev in buf.drain(..) {
                engine.handle(&ev).unwrap();
            }
        }
        engine.stats()
    });
    let lat = measure(&rx, trials, || Duration::ZERO);
    stop.store(true, Ordering::Relaxed);
    let stats = h.join().unwrap();
    eprintln!(
        "event engine: {} events handled, {} lost-event reports",
        stats.events, stats.lost
    );
    lat
}

fn poll_latency(trials: u64) -> Latencies {
    let pid = std::process::id();
    let (tx, rx) = mpsc::channel();
    let mut engine = Engine::new(
        policy(pid, Duration::from_millis(500)),
        ProcFs::default(),
        ChannelEnforcer(tx),
    );
    engine.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let h =
        std::thread::spawn(move || engine.run(&mut NoEvents, |_| !stop2.load(Ordering::Relaxed)));
    // A small LCG spreads the trials over the 500 ms poll phase.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let lat = measure(&rx, trials, || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis((seed >> 33) % 500)
    });
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap().unwrap();
    lat
}

/// Child role: run the engine for `secs`, then print `cpu_us wall_us
/// maxrss_kib vmhwm_kib scans events processes kernel_threads files_read`.
fn role_idle(with_connector: bool, judge_all_under: Option<u32>, reader: Reader) {
    let secs = env_num("PROCWATCH_BENCH_IDLE_SECS", 60);
    let pid = std::process::id();
    let (tx, _rx) = mpsc::channel();
    let mut p = policy(pid, Duration::from_millis(500));
    if let Some(root) = judge_all_under {
        // Judge the whole table, as an appliance does; verdicts go to a
        // channel nobody reads.
        p.scope = Scope::Machine;
        p.root.pid = root;
    }
    let source = match reader {
        Reader::Fresh => ProcFs::default().without_pidfds().with_fd_budget(0),
        Reader::Held => ProcFs::default().without_pidfds(),
        Reader::Pidfds => ProcFs::default(),
    };
    let mut engine = Engine::new(p, source, ChannelEnforcer(tx));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    if with_connector {
        let mut conn = ProcConnector::open(DEFAULT_RCVBUF).unwrap();
        engine
            .run(&mut conn, |_| Instant::now() < deadline)
            .unwrap();
    } else {
        engine
            .run(&mut NoEvents, |_| Instant::now() < deadline)
            .unwrap();
    }
    let wall = start.elapsed();
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let us = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap() * 1_000_000 + u64::try_from(t.tv_usec).unwrap()
    };
    let cpu = us(ru.ru_utime) + us(ru.ru_stime);
    let status = parse_status(&std::fs::read("/proc/self/status").unwrap()).unwrap();
    let table = ProcFs::default().without_pidfds().snapshot().unwrap();
    let kernel = table
        .iter()
        .filter_map(procwatch::Read::as_complete)
        .filter(|p| p.kernel_thread)
        .count();
    assert_eq!(
        engine.source_mut().uses_pidfds(),
        matches!(reader, Reader::Pidfds)
    );
    println!(
        "IDLE {cpu} {} {} {} {} {} {} {kernel} {}",
        wall.as_micros(),
        ru.ru_maxrss,
        status.vm_hwm_kib.unwrap_or(0),
        engine.stats().scans,
        engine.stats().events,
        table.len(),
        engine.source_mut().stats().files_read
    );
}

/// One idle run of `role` in a child process: its `IDLE` numbers.
fn idle_run(role: &str) -> Vec<f64> {
    let mut cmd = if role == "idle-pidns" {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc"]).arg(me());
        c
    } else {
        Command::new(me())
    };
    let out = cmd.env(ROLE, role).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("IDLE "))
        .unwrap_or_else(|| panic!("{text}"));
    line.split(' ')
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect()
}

/// CPU % of one core of an idle run.
fn cpu_percent(f: &[f64]) -> f64 {
    100.0 * f[0] / f[1]
}

/// The table row of a setting: its median run, and the range over all runs.
fn idle_row(name: &str, mut runs: Vec<Vec<f64>>) -> String {
    runs.sort_by(|a, b| cpu_percent(a).total_cmp(&cpu_percent(b)));
    let (low, high) = (cpu_percent(&runs[0]), cpu_percent(&runs[runs.len() - 1]));
    let f = &runs[runs.len() / 2];
    let (cpu, wall, maxrss, hwm, scans, events, procs, kernel, files) =
        (f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]);
    format!(
        "| {name} | {:.0} | {procs:.0} | {kernel:.0} | {scans:.0} | {:.1} | {events:.0} | {:.1} | {:.4} | {low:.4}–{high:.4} | {maxrss:.0} | {hwm:.0} |",
        wall / 1e6,
        files / scans,
        cpu / 1e3,
        cpu_percent(f)
    )
}

pub(crate) fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("idle-pidns") => return role_idle(false, None, Reader::Pidfds),
        Ok("idle-host-scan-fresh") => return role_idle(false, Some(1), Reader::Fresh),
        Ok("idle-host-scan-held") => return role_idle(false, Some(1), Reader::Held),
        Ok("idle-host-scan") => return role_idle(false, Some(1), Reader::Pidfds),
        Ok("idle-host") => return role_idle(true, None, Reader::Pidfds),
        _ => {}
    }
    // `cargo bench` passes `--bench`; ignore arguments.
    let event_trials = env_num("PROCWATCH_BENCH_EVENT_TRIALS", 1000);
    let poll_trials = env_num("PROCWATCH_BENCH_POLL_TRIALS", 1000);
    let processes = ProcFs::default().pids().unwrap().len();
    eprintln!("measuring event latency ({event_trials} trials) ...");
    let ev = event_latency(event_trials);
    eprintln!("measuring poll latency ({poll_trials} trials) ...");
    let poll = poll_latency(poll_trials);
    eprintln!("measuring idle cost ...");
    let settings = [
        (
            "idle-pidns",
            "fresh PID namespace, rescans only (tiny /proc)",
        ),
        (
            "idle-host-scan-fresh",
            "host /proc, rescans only, whole table judged; every process opened and read each scan",
        ),
        (
            "idle-host-scan-held",
            "host /proc, rescans only, whole table judged; files held open, no pidfds",
        ),
        (
            "idle-host-scan",
            "host /proc, rescans only, whole table judged; files held open, pidfds (default)",
        ),
        ("idle-host", "host, connector + rescans, scoped, pidfds"),
    ];
    // Rounds of every setting in turn, so that a slow spell of a shared
    // machine falls on all of them alike; each row is its median run.
    let rounds = env_num("PROCWATCH_BENCH_IDLE_RUNS", 3).max(1);
    let mut results: Vec<Vec<Vec<f64>>> = vec![Vec::new(); settings.len()];
    for round in 1..=rounds {
        eprintln!("idle round {round} of {rounds} ...");
        for (slot, (role, _)) in results.iter_mut().zip(settings) {
            slot.push(idle_run(role));
        }
    }
    let idle_rows: Vec<String> = settings
        .iter()
        .zip(results)
        .map(|((_, name), runs)| idle_row(name, runs))
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("Detection latency: forbidden fork+exec (`spawn` returned) -> enforcer called; host /proc holds {processes} processes; loadavg at end: {}", load.trim());
    println!();
    println!("| path | trials | p50 ms | p90 ms | p99 ms | max ms | verdicts before spawn returned | from spawn call: p50 | p90 | p99 | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!("{}", ev.row("proc connector events (a)"));
    println!("{}", poll.row("500 ms /proc polling, as the seed (b)"));
    println!();
    println!("Governor cost over an idle period (child process, getrusage RUSAGE_SELF, /proc/self/status VmHWM); median of {rounds} runs per setting");
    println!();
    println!("| setting | wall s | processes in /proc | of them kernel threads | scans | proc files read per scan | events | CPU ms | CPU % of one core | CPU % range over the runs | ru_maxrss KiB | VmHWM KiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in idle_rows {
        println!("{row}");
    }
}
