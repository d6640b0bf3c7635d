//! The attacks, one function each. Each is bounded in connections, bytes
//! and time, and returns its figures as notes; [`super::judge`] decides
//! the common verdict (nothing lost, no halt, admin never refused).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::{
    clients_ceiling, info, info_u64, judge, on_net, peer_closed, write_until_closed, xlen,
    Background, Counter, Target, GUARD_REFUSED,
};
use vm_harness::matchers;
use vm_harness::resp::{self, Value};

use crate::e2e::{Session, Source};

/// How long the reply-amplification attack writes.
const AMPLIFY_FOR: Duration = Duration::from_secs(20);
/// Its connections, and the addresses they come from.
const AMPLIFY_CONNS: u16 = 16;
const AMPLIFY_SOURCES: u16 = 4;
/// The attacker's receive buffer: small, so the server's output buffer
/// fills instead of the attacker's kernel.
const AMPLIFY_RCVBUF: usize = 4096;

/// Unfinished-bulk connections, their sources, and how long they are held.
const BULK_CONNS: u16 = 600;
const BULK_SOURCES: u16 = 60;
const BULK_HOLD: Duration = Duration::from_secs(20);
/// Each announces a bulk this long (the server's proto-max-bulk-len is
/// 1 MiB) and sends this much of it.
const BULK_LEN: usize = 1_000_000;
const BULK_SENT: usize = 64 * 1024;

/// Slot flood: sources, connections tried per source, and how long held.
const SLOT_SOURCES: u16 = 80;
const SLOT_PER_SOURCE: u16 = 40;
const SLOT_HOLD: Duration = Duration::from_secs(15);

/// Trickle: unauthenticated and authenticated tricklers, one byte per
/// second each, for at most this long.
const TRICKLE_UNAUTH: u16 = 40;
const TRICKLE_AUTH: u16 = 20;
const TRICKLE_SOURCES: u16 = 10;
const TRICKLE_MAX: Duration = Duration::from_secs(50);

/// One trickler: whether it authenticated, and how long its connection
/// lived (`None`: still open at the end).
type Lifetime = (bool, Option<Duration>);

/// AUTH guessing: one address, then many, each for this long.
const GUESS_FOR: Duration = Duration::from_secs(10);
const GUESS_CONNS_ONE: u16 = 4;
const GUESS_SOURCES_MANY: u16 = 40;

/// Sustained maximal writes: how long, and at most how many bytes.
const WRITE_FOR: Duration = Duration::from_secs(45);
const WRITE_MAX_BYTES: u64 = 160 << 20;
/// XADDs in flight per round trip.
const WRITE_PIPELINE: usize = 50;

fn attackers(n: u16, sources: u16) -> impl Iterator<Item = Source> {
    (0..n).map(move |i| Source::Attacker(i % sources.max(1)))
}

/// A maximal legitimate visitor XADD: pairs and bytes at the guard's
/// limits.
pub(in crate::e2e) fn max_xadd(t: &Target, max_bytes: usize, tag: u64) -> Vec<String> {
    let field = format!("m{tag}");
    let value_len = max_bytes.saturating_sub(field.len()).max(1);
    vec![
        "XADD".into(),
        t.stream.clone(),
        "*".into(),
        field,
        "x".repeat(value_len),
    ]
}

/// Reply amplification: authenticated visitors pipeline a command whose
/// reply is far larger than the request and never read.
pub(in crate::e2e) fn amplify(s: &mut Session) -> Result<Vec<String>> {
    under_client_memory_ceiling(s, amplify_attack)
}

fn amplify_attack(t: &Target) -> Result<impl FnOnce() -> Result<String>> {
    let closed = Arc::new(Counter::default());
    let sent = Arc::new(Counter::default());
    let deadline = Instant::now() + AMPLIFY_FOR;
    let mut workers = Vec::new();
    for src in attackers(AMPLIFY_CONNS, AMPLIFY_SOURCES) {
        let (t, closed, sent) = (t.clone(), Arc::clone(&closed), Arc::clone(&sent));
        workers.push(std::thread::spawn(move || -> Result<()> {
            t.enter()?;
            // HELLO answers a map of server facts (~150 bytes) to 7 bytes.
            let chunk = b"HELLO\r\n".repeat(4096);
            while Instant::now() < deadline {
                let Ok(stream) = t.tcp(src, Duration::from_secs(5)) else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let sock = socket2::SockRef::from(&stream);
                let _ = sock.set_recv_buffer_size(AMPLIFY_RCVBUF);
                let mut stream = stream;
                if write_until_closed(&mut stream, &t.visitor_auth_bytes(), deadline)? {
                    closed.add(1);
                    continue;
                }
                loop {
                    if write_until_closed(&mut stream, &chunk, deadline)? {
                        closed.add(1);
                        break;
                    }
                    sent.add(chunk.len() as u64);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Ok(())
        }));
    }
    join_all(workers, "an attack thread")?;
    Ok(move || {
        if closed.get() == 0 {
            bail!("the server never closed an attacker that did not read its replies");
        }
        Ok(format!(
            "{AMPLIFY_CONNS} connections from {AMPLIFY_SOURCES} addresses sent {:.1} MiB of HELLO without reading for {}s; \
             the server closed {} of them",
            sent.get() as f64 / 1048576.0,
            AMPLIFY_FOR.as_secs(),
            closed.get(),
        ))
    })
}

/// Many connections, each announcing a large bulk and sending only part.
pub(in crate::e2e) fn bulks(s: &mut Session) -> Result<Vec<String>> {
    under_client_memory_ceiling(s, bulks_attack)
}

fn bulks_attack(t: &Target) -> Result<impl FnOnce() -> Result<String>> {
    let opened = Arc::new(Counter::default());
    let alive_at_end = Arc::new(Counter::default());
    let mut head = t.visitor_auth_bytes();
    head.extend_from_slice(
        format!(
            "*5\r\n$4\r\nXADD\r\n${}\r\n{}\r\n$1\r\n*\r\n$1\r\nf\r\n${BULK_LEN}\r\n",
            t.stream.len(),
            t.stream
        )
        .as_bytes(),
    );
    head.extend(std::iter::repeat_n(b'b', BULK_SENT));
    let head = Arc::new(head);
    let mut workers = Vec::new();
    let per_thread = 50u16;
    let sources: Vec<Source> = attackers(BULK_CONNS, BULK_SOURCES).collect();
    for group in sources.chunks(usize::from(per_thread)) {
        let group = group.to_vec();
        let (t, head, opened, alive) = (
            t.clone(),
            Arc::clone(&head),
            Arc::clone(&opened),
            Arc::clone(&alive_at_end),
        );
        workers.push(std::thread::spawn(move || -> Result<()> {
            t.enter()?;
            let mut held: Vec<TcpStream> = Vec::new();
            for src in group {
                if let Ok(mut st) = t.tcp(src, Duration::from_secs(5)) {
                    let until = Instant::now() + Duration::from_secs(5);
                    if !write_until_closed(&mut st, &head, until)? {
                        opened.add(1);
                        held.push(st);
                    }
                }
            }
            std::thread::sleep(BULK_HOLD);
            for mut st in held {
                if !peer_closed(&mut st) {
                    alive.add(1);
                }
            }
            Ok(())
        }));
    }
    join_all(workers, "an attack thread")?;
    Ok(move || {
        Ok(format!(
            "{BULK_CONNS} connections from {BULK_SOURCES} addresses announced {BULK_LEN}-byte bulks: {} got their \
             {} KiB in, {} still open after {}s",
            opened.get(),
            BULK_SENT / 1024,
            alive_at_end.get(),
            BULK_HOLD.as_secs(),
        ))
    })
}

/// The frame of the attacks bounded by client memory (amplify, bulks):
/// `attack` runs while the background clients do; then the common verdict
/// ([`judge`]), client memory must have stayed under the memory budget's
/// ceiling, and the attack's own check (what `attack` returned) gives the
/// first note's figures.
fn under_client_memory_ceiling<F>(
    s: &mut Session,
    attack: impl FnOnce(&Target) -> Result<F>,
) -> Result<Vec<String>>
where
    F: FnOnce() -> Result<String>,
{
    let t = Target::of(s)?;
    let ceiling = clients_ceiling(s)?;
    let from = s.vm.console().len();
    let bg = Background::start(&t)?;
    let check = attack(&t)?;
    let (mut notes, admin, _) = judge(s, &t, bg, from)?;
    if admin.peak_client_mem > ceiling {
        bail!(
            "client memory peaked at {} bytes, above the ceiling of {ceiling}",
            admin.peak_client_mem
        );
    }
    let figures = check()?;
    notes.insert(
        0,
        format!(
            "{figures}; peak client memory {:.1} MiB against the ceiling {:.1} MiB",
            admin.peak_client_mem as f64 / 1048576.0,
            ceiling as f64 / 1048576.0
        ),
    );
    Ok(notes)
}

/// Joins attack threads (`what`, for the message when one panicked) and
/// returns what each returned, failing on the first error.
fn join_all<T>(workers: Vec<JoinHandle<Result<T>>>, what: &str) -> Result<Vec<T>> {
    workers
        .into_iter()
        .map(|w| w.join().map_err(|_| anyhow!("{what} panicked"))?)
        .collect()
}

/// Idle authenticated connections from many addresses, more than the
/// server has slots for.
pub(in crate::e2e) fn slots(s: &mut Session) -> Result<Vec<String>> {
    let t = Target::of(s)?;
    let maxclients = u64::from(s.spec.limits().maxclients());
    let from = s.vm.console().len();
    let bg = Background::start(&t)?;
    let per_source: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; usize::from(SLOT_SOURCES)]));
    let peak_held = Arc::new(Counter::default());
    let mut workers = Vec::new();
    for src in 0..SLOT_SOURCES {
        let (t, per_source) = (t.clone(), Arc::clone(&per_source));
        workers.push(std::thread::spawn(move || -> Result<Vec<TcpStream>> {
            t.enter()?;
            let mut held = Vec::new();
            let auth = t.visitor_auth_bytes();
            for _ in 0..SLOT_PER_SOURCE {
                let Ok(st) = t.tcp(Source::Attacker(src), Duration::from_secs(2)) else {
                    continue;
                };
                let mut c = resp::Conn::from_stream(st, Duration::from_secs(5));
                if c.stream().write_all(&auth).is_err() {
                    continue;
                }
                if let Ok(Value::Simple(ok)) = c.read_reply() {
                    if ok == "OK" {
                        held.push(c.stream().try_clone()?);
                    }
                }
            }
            if let Ok(mut p) = per_source.lock() {
                if let Some(slot) = p.get_mut(usize::from(src)) {
                    *slot = held.len() as u64;
                }
            }
            Ok(held)
        }));
    }
    let mut held: Vec<TcpStream> = join_all(workers, "an attack thread")?
        .into_iter()
        .flatten()
        .collect();
    peak_held.add(held.len() as u64);
    let hold_until = Instant::now() + SLOT_HOLD;
    while Instant::now() < hold_until {
        std::thread::sleep(Duration::from_millis(500));
    }
    let still: u64 = held.iter_mut().map(|h| u64::from(!peer_closed(h))).sum();
    drop(held);
    let (mut notes, admin, _) = judge(s, &t, bg, from)?;
    let per = per_source.lock().map(|p| p.clone()).unwrap_or_default();
    let max_per = per.iter().copied().max().unwrap_or(0);
    let cap = u64::from(s.spec.firewall().conn_max_per_source());
    if max_per > cap {
        bail!("one address held {max_per} authenticated connections, above the firewall's cap of {cap}");
    }
    notes.insert(
        0,
        format!(
            "{SLOT_SOURCES} addresses tried {SLOT_PER_SOURCE} idle authenticated connections each: {} were answered +OK \
             to AUTH (most from one address: {max_per}, cap {cap}); peak connected clients {} of maxclients {maxclients}; \
             {still} still open after {}s",
            peak_held.get(),
            admin.peak_clients,
            SLOT_HOLD.as_secs()
        ),
    );
    Ok(notes)
}

/// Slowloris: connections that send one byte a second and never complete
/// a command, before and after authenticating.
pub(in crate::e2e) fn trickle(s: &mut Session) -> Result<Vec<String>> {
    let t = Target::of(s)?;
    let from = s.vm.console().len();
    let bg = Background::start(&t)?;
    let auth_timeout = Duration::from_secs(u64::from(s.spec.guard().auth_timeout_seconds()));
    let cmd_timeout = Duration::from_secs(u64::from(s.spec.guard().command_timeout_seconds()));
    // (authenticated, lifetime or None when still open at the end)
    let results: Arc<Mutex<Vec<Lifetime>>> = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    let kinds = (0..TRICKLE_UNAUTH)
        .map(|_| false)
        .chain((0..TRICKLE_AUTH).map(|_| true));
    for (i, authed) in kinds.enumerate() {
        let (t, results) = (t.clone(), Arc::clone(&results));
        let src = Source::Attacker(u16::try_from(i).unwrap_or(0) % TRICKLE_SOURCES);
        workers.push(std::thread::spawn(move || -> Result<()> {
            t.enter()?;
            let mut st = t.tcp(src, Duration::from_secs(5))?;
            let began = Instant::now();
            if authed {
                let mut c = resp::Conn::from_stream(st.try_clone()?, Duration::from_secs(10));
                c.send(&["AUTH", &t.visitor, &t.visitor_pass])?;
                match c.read_reply()? {
                    Value::Simple(ok) if ok == "OK" => {}
                    other => bail!("trickler AUTH answered {other:?}"),
                }
            }
            let body = b"*2\r\n$4\r\nPING\r\n$200\r\n".to_vec();
            let mut lifetime = None;
            for byte in body.iter().cycle() {
                if began.elapsed() >= TRICKLE_MAX {
                    break;
                }
                if st.write_all(&[*byte]).is_err() || peer_closed(&mut st) {
                    lifetime = Some(began.elapsed());
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            if let Ok(mut r) = results.lock() {
                r.push((authed, lifetime));
            }
            Ok(())
        }));
    }
    join_all(workers, "an attack thread")?;
    let (mut notes, _, _) = judge(s, &t, bg, from)?;
    let r = results.lock().map(|r| r.clone()).unwrap_or_default();
    let slack = Duration::from_secs(5);
    let mut figures = Vec::new();
    for (authed, limit, n) in [
        (false, auth_timeout, TRICKLE_UNAUTH),
        (true, cmd_timeout, TRICKLE_AUTH),
    ] {
        let group: Vec<Option<Duration>> = r
            .iter()
            .filter(|(a, _)| *a == authed)
            .map(|(_, l)| *l)
            .collect();
        let open = group.iter().filter(|l| l.is_none()).count();
        let longest = group.iter().flatten().max().copied().unwrap_or_default();
        let what = if authed {
            "authenticated"
        } else {
            "unauthenticated"
        };
        if open > 0 || longest > limit + slack {
            bail!(
                "{what} tricklers held their slot too long: {open} of {n} still open after {}s, \
                 longest closed after {:.1}s (limit {}s)",
                TRICKLE_MAX.as_secs(),
                longest.as_secs_f64(),
                limit.as_secs()
            );
        }
        figures.push(format!(
            "{n} {what} tricklers all closed, the last after {:.1}s (limit {}s)",
            longest.as_secs_f64(),
            limit.as_secs()
        ));
    }
    notes.insert(0, figures.join("; "));
    Ok(notes)
}

/// One source's guessing: connections pipelining wrong admin passwords,
/// reconnecting when closed. Returns (answered WRONGPASS, throttled).
fn guess_from(t: &Target, srcs: Vec<Source>, deadline: Instant) -> Result<(u64, u64)> {
    let wrong = Arc::new(Counter::default());
    let throttled = Arc::new(Counter::default());
    let mut workers = Vec::new();
    for src in srcs {
        let (t, wrong, throttled) = (t.clone(), Arc::clone(&wrong), Arc::clone(&throttled));
        workers.push(std::thread::spawn(move || -> Result<()> {
            t.enter()?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let Ok(mut c) = t.conn(src, Duration::from_secs(5)) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                'conn: while Instant::now() < deadline {
                    for _ in 0..20 {
                        n += 1;
                        if c.send(&["AUTH", t.admin_name(), &format!("guess-{n}")])
                            .is_err()
                        {
                            break 'conn;
                        }
                    }
                    for _ in 0..20 {
                        match c.read_reply() {
                            Ok(v) => match v.error() {
                                Some(e) if e.starts_with("WRONGPASS") => wrong.add(1),
                                Some(_) => throttled.add(1),
                                None => bail!("a guess was accepted: {v:?}"),
                            },
                            Err(_) => break 'conn,
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    join_all(workers, "a guessing thread")?;
    Ok((wrong.get(), throttled.get()))
}

/// AUTH guessing from one address, then from many.
pub(in crate::e2e) fn guessing(s: &mut Session) -> Result<Vec<String>> {
    let t = Target::of(s)?;
    let from = s.vm.console().len();
    let bg = Background::start(&t)?;
    let budget = u64::from(s.spec.guard().auth_failures_per_minute());
    let one: Vec<Source> = (0..GUESS_CONNS_ONE).map(|_| Source::Attacker(0)).collect();
    let (w1, th1) = guess_from(&t, one, Instant::now() + GUESS_FOR)?;
    let many: Vec<Source> = (1..=GUESS_SOURCES_MANY).map(Source::Attacker).collect();
    let (w2, th2) = guess_from(&t, many, Instant::now() + GUESS_FOR)?;
    let (mut notes, _, _) = judge(s, &t, bg, from)?;
    let secs = GUESS_FOR.as_secs_f64();
    // A source's bucket holds `budget` failures and refills at budget/min.
    let allowed_one = budget + (budget * GUESS_FOR.as_secs()).div_ceil(60);
    if w1 > allowed_one {
        bail!("one address had {w1} wrong passwords checked in {secs}s; the budget allows {allowed_one}");
    }
    let allowed_many = allowed_one * u64::from(GUESS_SOURCES_MANY);
    if w2 > allowed_many {
        bail!("{GUESS_SOURCES_MANY} addresses had {w2} wrong passwords checked in {secs}s; the budget allows {allowed_many}");
    }
    let lines =
        s.vm.console()
            .lines()
            .iter()
            .skip(from)
            .filter(|l| l.text.contains(matchers::GUARD_AUTH_FAILURES))
            .count();
    if lines == 0 {
        bail!(
            "no `{}` line reached the console",
            matchers::GUARD_AUTH_FAILURES
        );
    }
    let max_lines =
        usize::try_from((2 * GUESS_FOR.as_secs()).div_ceil(10)).unwrap_or(usize::MAX) + 2;
    if lines > max_lines {
        bail!(
            "{lines} auth-failure console lines in {:.0}s: not a bounded rate",
            2.0 * secs
        );
    }
    notes.insert(
        0,
        format!(
            "one address, {GUESS_CONNS_ONE} connections: {w1} guesses checked ({:.1}/s), {th1} refused by the throttle; \
             {GUESS_SOURCES_MANY} addresses: {w2} checked ({:.1}/s), {th2} refused; {lines} console lines",
            w1 as f64 / secs,
            w2 as f64 / secs
        ),
    );
    Ok(notes)
}

/// Sustained maximal legitimate writes while the admin forces AOF
/// rewrites back to back.
pub(in crate::e2e) fn rewrites(s: &mut Session) -> Result<Vec<String>> {
    let t = Target::of(s)?;
    let from = s.vm.console().len();
    let max_bytes = usize::try_from(s.spec.limits().xadd_max_bytes()).unwrap_or(4096);
    let before = xlen(&t)?;
    let bg = Background::start(&t)?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Counter::default());
    let bytes = Arc::new(Counter::default());
    let writer = {
        let (t, stop, acked, bytes) = (
            t.clone(),
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&bytes),
        );
        std::thread::spawn(move || -> Result<()> {
            t.enter()?;
            let mut c = t.visitor(Source::Attacker(0), Duration::from_secs(30))?;
            let deadline = Instant::now() + WRITE_FOR;
            let mut tag = 0u64;
            while Instant::now() < deadline
                && bytes.get() < WRITE_MAX_BYTES
                && !stop.load(Ordering::Relaxed)
            {
                for _ in 0..WRITE_PIPELINE {
                    tag += 1;
                    c.send(&max_xadd(&t, max_bytes, tag))?;
                }
                for _ in 0..WRITE_PIPELINE {
                    match c.read_reply()? {
                        Value::Bulk(Some(_)) => {
                            acked.add(1);
                            bytes.add(max_bytes as u64);
                        }
                        other => bail!("a maximal XADD answered {other:?}"),
                    }
                }
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let forks = on_net(&t, {
        let (t, stop) = (t.clone(), Arc::clone(&stop));
        move || -> Result<(u64, u64)> {
            let mut c = t.admin(Duration::from_secs(30))?;
            let first = info_u64(&info(&mut c, "stats")?, "total_forks");
            let mut asked = 0u64;
            while started.elapsed() < WRITE_FOR + Duration::from_secs(5)
                && !stop.load(Ordering::Relaxed)
            {
                let p = info(&mut c, "persistence")?;
                if info_u64(&p, "aof_rewrite_in_progress") == 0
                    && info_u64(&p, "aof_rewrite_scheduled") == 0
                {
                    match c.cmd(&["BGREWRITEAOF"])? {
                        Value::Simple(_) | Value::Bulk(_) => asked += 1,
                        other => bail!("BGREWRITEAOF answered {other:?}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            let last = info_u64(&info(&mut c, "stats")?, "total_forks");
            Ok((asked, last.saturating_sub(first)))
        }
    });
    stop.store(true, Ordering::Relaxed);
    let wrote = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"));
    let (asked, forked) = forks?;
    wrote??;
    // Let the last rewrite finish before counting.
    std::thread::sleep(Duration::from_secs(3));
    let (mut notes, _, visitor) = judge(s, &t, bg, from)?;
    let after = xlen(&t)?;
    let want = before + acked.get() + visitor.acked.len() as u64;
    if after != want {
        bail!(
            "XLEN is {after}, but {before} + {} + {} were acknowledged",
            acked.get(),
            visitor.acked.len()
        );
    }
    let done =
        s.vm.console()
            .lines()
            .iter()
            .skip(from)
            .filter(|l| l.text.contains(matchers::AOF_REWRITE_DONE))
            .count();
    if done < 5 {
        bail!("only {done} AOF rewrites finished; the case needs at least 5 to mean anything");
    }
    notes.insert(
        0,
        format!(
            "{} maximal XADDs ({:.1} MiB) acknowledged in {:.0}s and all present (XLEN {before} -> {after}); \
             {asked} BGREWRITEAOF asked, {forked} forks, {done} rewrites finished; no HALT line",
            acked.get(),
            bytes.get() as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(notes)
}

/// Fills a small data disk through the visitor until the guard refuses,
/// then the admin trims and compacts, and visitors append again.
pub(in crate::e2e) fn disk_fill(s: &mut Session) -> Result<Vec<String>> {
    let t = Target::of(s)?;
    let from = s.vm.console().len();
    let max_bytes = usize::try_from(s.spec.limits().xadd_max_bytes()).unwrap_or(4096);
    let bg = Background::start(&t)?;
    let fill = on_net(&t, {
        let t = t.clone();
        move || -> Result<(Vec<String>, Duration, String)> {
            let mut c = t.visitor(Source::Attacker(0), Duration::from_secs(30))?;
            let began = Instant::now();
            let mut acked: Vec<String> = Vec::new();
            let mut tag = 0u64;
            while began.elapsed() < Duration::from_secs(240) {
                for _ in 0..WRITE_PIPELINE {
                    tag += 1;
                    c.send(&max_xadd(&t, max_bytes, tag))?;
                }
                let mut refused = None;
                for _ in 0..WRITE_PIPELINE {
                    match c.read_reply()? {
                        Value::Bulk(Some(id)) => {
                            acked.push(String::from_utf8_lossy(&id).into_owned())
                        }
                        other => match other.error() {
                            Some(e) if e.starts_with(GUARD_REFUSED) => refused = Some(e.to_owned()),
                            _ => bail!("a filling XADD answered {other:?}"),
                        },
                    }
                }
                if let Some(e) = refused {
                    return Ok((acked, began.elapsed(), e));
                }
            }
            bail!(
                "the guard never refused within 240 s ({} XADDs acknowledged)",
                acked.len()
            )
        }
    })?;
    let (filled, fill_took, refusal) = fill;
    let refused_line =
        s.vm.console()
            .wait_for(from, Duration::from_secs(10), |l| {
                l.contains(matchers::GUARD_WRITES_REFUSED)
            })
            .map(|(_, l)| l.text)
            .context("no console line when the refusal started")?;
    // Nothing acknowledged is lost: every filler and well-behaved entry is
    // there before the admin's deliberate trim.
    let mut must = filled.clone();
    must.extend(bg.visitor_acked());
    super::check_present_on_net(&t, must)?;
    let filled = filled.len() as u64;
    // The admin: writes into the reserve, trims, compacts.
    let recovered = on_net(&t, {
        let t = t.clone();
        move || -> Result<(u64, Duration)> {
            let mut c = t.admin(Duration::from_secs(60))?;
            let len = c.cmd(&["XLEN", &t.stream])?.int().context("XLEN")?;
            match c.cmd(&["XADD", "admin:notes", "*", "note", "disk low"])? {
                Value::Bulk(Some(_)) => {}
                other => bail!("the admin's own write was refused: {other:?}"),
            }
            let keep = "100";
            c.cmd(&["XTRIM", &t.stream, "MAXLEN", keep])?
                .int()
                .context("XTRIM")?;
            let began = Instant::now();
            match c.cmd(&["BGREWRITEAOF"])? {
                Value::Simple(_) | Value::Bulk(_) => {}
                other => bail!("BGREWRITEAOF answered {other:?}"),
            }
            let mut v = t.visitor(Source::Attacker(1), Duration::from_secs(30))?;
            while began.elapsed() < Duration::from_secs(120) {
                match v.cmd(&["XADD", &t.stream, "*", "after", "recovery"])? {
                    Value::Bulk(Some(_)) => {
                        return Ok((u64::try_from(len).unwrap_or(0), began.elapsed()))
                    }
                    other if other.error().is_some_and(|e| e.starts_with(GUARD_REFUSED)) => {
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    other => bail!("a visitor XADD after the trim answered {other:?}"),
                }
            }
            bail!("visitors could not append within 120 s of the trim and compaction")
        }
    })?;
    let (len_before_trim, recover_took) = recovered;
    let accepted_line =
        s.vm.console()
            .wait_for(from, Duration::from_secs(10), |l| {
                l.contains(matchers::GUARD_WRITES_ACCEPTED)
            })
            .map(|(_, l)| l.text)
            .context("no console line when the refusal ended")?;
    let (mut notes, _, visitor) = judge_before_trim(s, &t, bg, from, len_before_trim, filled)?;
    notes.insert(
        0,
        format!(
            "{filled} maximal XADDs acknowledged in {:.1}s before the guard refused ({refusal}); all {len_before_trim} \
             entries were present for the admin; visitors appended again {:.1}s after the admin's trim and compaction; \
             the well-behaved visitor had {} refused",
            fill_took.as_secs_f64(),
            recover_took.as_secs_f64(),
            visitor.errors
        ),
    );
    notes.push(format!("console: {}", refused_line.trim()));
    notes.push(format!("console: {}", accepted_line.trim()));
    Ok(notes)
}

/// [`judge`] for the disk case: the trim deliberately removed entries, so
/// presence is checked by count before the trim, not by ID after it.
fn judge_before_trim(
    s: &mut Session,
    t: &Target,
    bg: Background,
    from: usize,
    len_before_trim: u64,
    filled: u64,
) -> Result<(Vec<String>, super::AdminLog, super::VisitorLog)> {
    let took = bg.elapsed();
    let (admin, visitor) = bg.finish()?;
    super::machine_ok(s, from)?;
    if !admin.refused.is_empty() {
        bail!("the admin was refused: {}", admin.refused.join("; "));
    }
    // Ready's XADD, the filler's and the well-behaved visitor's before
    // the trim: at least the filler's must all be there.
    if len_before_trim < filled {
        bail!("XLEN before the trim was {len_before_trim}, but {filled} XADDs were acknowledged");
    }
    let _ = t;
    Ok((
        vec![format!(
            "admin: {} samples, {} fresh connections, never refused; {:.0}s in all",
            admin.samples,
            admin.fresh,
            took.as_secs_f64()
        )],
        admin,
        visitor,
    ))
}
