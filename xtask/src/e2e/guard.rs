//! The stream guard and the server's limits seen from outside, on the shared
//! production VM: guard-attacks (XADD shapes the ACL cannot refuse) and
//! guard-flood (an attacker floods while a well-behaved visitor appends).
//!
//! Every host connection reaches the guest from QEMU's slirp gateway, one
//! source address: the firewall's per-source rate limit throttles the
//! well-behaved visitor and the admin as much as the attacker, so both keep
//! ONE connection opened before the flood (an established connection is not
//! a new one). All traffic goes to 127.0.0.1; every loop is bounded in time.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use vm_harness::resp::{self, Conn, Value};

use super::{stream_tail, Ctx};

/// What a refused visitor XADD answers (the reason and `'` follow).
const GUARD_REFUSED: &str = "ERR unknown command 'STREAM-GUARD-REFUSED:";
/// The maximal stream ID: appending it would exhaust the ID space.
const MAX_ID: &str = "18446744073709551615-18446744073709551615";
/// How long the attacker floods.
const FLOOD_FOR: Duration = Duration::from_secs(18);
/// The well-behaved visitor's cadence.
const GOOD_EVERY: Duration = Duration::from_millis(100);
/// Threads of the attacker that only open new connections.
const CONNECTORS: usize = 8;
/// Beyond `proto-max-bulk-len` (1 MiB): the server closes the connection.
const HUGE_BULK: usize = 2 << 20;
/// Within `proto-max-bulk-len` but far beyond the guard's 4096 bytes.
const NEAR_LIMIT_VALUE: usize = 1_000_000;

/// The refusal reason in a guard error, if `v` is one.
fn guard_reason(v: &Value) -> Option<String> {
    let rest = v.error()?.strip_prefix(GUARD_REFUSED)?;
    Some(rest.split('\'').next().unwrap_or_default().to_owned())
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// `XADD <stream> * f0 v f1 v ...` with `pairs` pairs.
fn xadd_pairs(stream: &str, pairs: usize) -> Vec<String> {
    let mut v = argv(&["XADD", stream, "*"]);
    for i in 0..pairs {
        v.push(format!("f{i}"));
        v.push("v".to_owned());
    }
    v
}

/// `XADD <stream> * f <len bytes>`.
fn xadd_value(stream: &str, len: usize) -> Vec<String> {
    argv(&["XADD", stream, "*", "f", &"v".repeat(len)])
}

/// The attacks guard-attacks sends as the visitor, with the reason the guard
/// must give.
fn attacks(stream: &str) -> Vec<(&'static str, &'static str, Vec<String>)> {
    vec![
        (
            "MAXLEN 0",
            "option",
            argv(&["XADD", stream, "MAXLEN", "0", "*", "f", "v"]),
        ),
        (
            "maximal explicit ID",
            "explicit-id",
            argv(&["XADD", stream, MAX_ID, "f", "v"]),
        ),
        (
            "MAXLEN ~ 0",
            "option",
            argv(&["XADD", stream, "MAXLEN", "~", "0", "*", "f", "v"]),
        ),
        (
            "MINID",
            "option",
            argv(&["XADD", stream, "MINID", MAX_ID, "*", "f", "v"]),
        ),
        (
            "explicit ID 1-1",
            "explicit-id",
            argv(&["XADD", stream, "1-1", "f", "v"]),
        ),
        ("17 pairs", "too-many-pairs", xadd_pairs(stream, 17)),
        ("5000-byte value", "too-large", xadd_value(stream, 5000)),
    ]
}

/// e. Argument shapes `+xadd` alone would allow are refused by the guard
/// and change nothing; the visitor can still append, the admin is not
/// guarded.
pub(super) fn guard_attacks(ctx: &mut Ctx) -> Result<Vec<String>> {
    let s = ctx.shared()?;
    let (_, stream) = s.visitor()?;
    let stream = stream.to_owned();
    let mut visitor = s.visitor_conn()?;
    let mut admin = s.admin_conn()?;
    let (before, last_before) = stream_tail(&mut admin, &stream)?;
    let mut notes = Vec::new();
    let mut violations = Vec::new();
    for (what, want, cmd) in attacks(&stream) {
        let reply = visitor.cmd(&cmd)?;
        match guard_reason(&reply) {
            Some(reason) if reason == want => notes.push(format!(
                "visitor XADD {what}: refused by the guard ({reason})"
            )),
            Some(reason) => violations.push(format!(
                "visitor XADD {what}: refused as {reason}, expected {want}"
            )),
            None => violations.push(format!(
                "visitor XADD {what} answered {reply:?}, not the guard's refusal"
            )),
        }
    }
    let (after, last_after) = stream_tail(&mut admin, &stream)?;
    if (after, &last_after) != (before, &last_before) {
        violations.push(format!(
            "the refused XADDs changed the stream: XLEN {before} -> {after}, last ID {last_before:?} -> {last_after:?}"
        ));
    }
    if !violations.is_empty() {
        bail!(
            "{} violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        );
    }
    notes.push(format!(
        "XLEN {stream} (admin) unchanged across the refused XADDs: {before}"
    ));

    let id = match visitor.cmd(&["XADD", &stream, "*", "f", "v"])? {
        Value::Bulk(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
        other => bail!("after the refusals, visitor XADD {stream} * f v answered {other:?}"),
    };
    ctx.shared.acked.count += 1;
    ctx.shared.acked.last_id = Some(id.clone());
    notes.push(format!(
        "then visitor XADD {stream} * f v acknowledged: {id}"
    ));

    // A MAXLEN far above the length: the admin's options run, nothing is
    // trimmed (the stream is the shared bookkeeping of acknowledged writes).
    let cap = (before + 2).max(1_000_000).to_string();
    let reply = admin.cmd(&["XADD", &stream, "MAXLEN", &cap, "*", "f", "v"])?;
    let admin_id = match reply {
        Value::Bulk(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
        other => bail!("admin XADD {stream} MAXLEN {cap} * f v answered {other:?}"),
    };
    ctx.shared.acked.count += 1;
    ctx.shared.acked.last_id = Some(admin_id.clone());
    let (len, last) = stream_tail(&mut admin, &stream)?;
    if len != before + 2 || last.as_deref() != Some(admin_id.as_str()) {
        bail!(
            "after one visitor and one admin XADD: XLEN {len} (expected {}), last ID {last:?} (expected {admin_id})",
            before + 2
        );
    }
    notes.push(format!(
        "admin XADD {stream} MAXLEN {cap} * f v acknowledged ({admin_id}), not guarded; XLEN {len}"
    ));
    Ok(notes)
}

/// What the well-behaved visitor saw.
#[derive(Debug, Default)]
struct Good {
    attempts: u64,
    /// `(n, id)` of each acknowledged `XADD <stream> * msg flood-<n>`.
    acked: Vec<(u64, String)>,
    /// `(n, why)` of each failed attempt (its outcome on the server unknown).
    failed: Vec<(u64, String)>,
    reconnects: u64,
}

/// What the admin saw, once a second.
#[derive(Debug, Default)]
struct AdminView {
    reads: u64,
    failures: Vec<String>,
    peak_used: u64,
    maxmemory: u64,
    longest_gap: Duration,
}

/// What the attacker did and what came back.
#[derive(Debug, Default)]
struct Attack {
    conns_tried: u64,
    conns_answered: u64,
    conns_connect_failed: u64,
    conns_closed: u64,
    conns_silent: u64,
    xadd_sent: u64,
    xadd_refused: u64,
    /// Other error replies (first one kept).
    xadd_other_errors: u64,
    other_error_sample: Option<String>,
    /// Acknowledged attacker XADDs: must stay empty.
    xadd_accepted: Vec<String>,
    xadd_unanswered: u64,
    persistent_lost: u64,
    persistent_reconnect_failed: u64,
    huge_sent: u64,
    huge_closed: u64,
    /// Of those, how many answered `Protocol error` first.
    huge_protocol_error: u64,
    huge_connect_failed: u64,
    huge_other: Vec<String>,
}

impl Attack {
    fn record(&mut self, v: &Value) {
        if guard_reason(v).is_some() {
            self.xadd_refused += 1;
        } else if let Some(e) = v.error() {
            self.xadd_other_errors += 1;
            if self.other_error_sample.is_none() {
                self.other_error_sample = Some(e.chars().take(120).collect());
            }
        } else {
            self.xadd_accepted.push(format!("{v:?}"));
        }
    }
}

/// Credentials and addresses the threads need (owned: no `Session` borrow).
#[derive(Clone)]
struct Target {
    port: u16,
    stream: String,
    visitor: (String, String),
    admin: (String, String),
}

impl Target {
    fn connect(&self, who: &(String, String), timeout: Duration) -> Result<Conn> {
        let mut c = Conn::connect(self.port, timeout)?;
        c.auth(&who.0, &who.1)?;
        Ok(c)
    }
}

/// f. An attacker floods new connections and oversized XADDs; a
/// well-behaved visitor on one established connection keeps appending, the
/// admin keeps reading, memory stays under `maxmemory`, nothing acknowledged
/// is lost and the machine stays up.
pub(super) fn guard_flood(ctx: &mut Ctx) -> Result<Vec<String>> {
    let s = ctx.shared()?;
    let (visitor_name, stream) = s.visitor()?;
    let target = Target {
        port: s.port,
        stream: stream.to_owned(),
        visitor: (
            visitor_name.to_owned(),
            s.state.visitor_pass.expose().to_owned(),
        ),
        admin: (
            s.spec.admin().name().to_owned(),
            s.state.admin_pass.expose().to_owned(),
        ),
    };
    let console_maxmemory =
        s.vm.console()
            .lines()
            .iter()
            .find_map(|l| console_maxmemory(&l.text));
    // Everything the flood needs is connected before it starts.
    let mut admin = target.connect(&target.admin, Duration::from_secs(10))?;
    let (len_before, last_before) = stream_tail(&mut admin, &target.stream)?;
    let good_conn = target.connect(&target.visitor, Duration::from_secs(5))?;
    let mut persistent = Vec::new();
    for _ in 0..2 {
        persistent.push(Some(
            target.connect(&target.visitor, Duration::from_secs(10))?,
        ));
    }

    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + FLOOD_FOR;
    let (good, view, attack) = std::thread::scope(|scope| {
        let good = scope.spawn(|| well_behaved(&target, good_conn, deadline));
        let view = scope.spawn(|| admin_reads(&mut admin, &target.stream, &stop));
        let attack = scope.spawn(|| attacker(&target, persistent, deadline));
        let good = good.join();
        let attack = attack.join();
        stop.store(true, Ordering::Relaxed);
        (good, view.join(), attack)
    });
    let took = start.elapsed();
    let (Ok(good), Ok(view), Ok(attack)) = (good, view, attack) else {
        bail!("a flood thread panicked");
    };

    // After: the machine is up and answers a new connection (the
    // per-source bucket refills within 2 s once the flood stops).
    let s = ctx.shared()?;
    s.check_alive()?;
    std::thread::sleep(Duration::from_secs(3));
    let mut after = s
        .admin_conn()
        .context("a new admin connection after the flood")?;
    match after.cmd(&["PING"])? {
        Value::Simple(p) if p == "PONG" => {}
        other => bail!("after the flood PING answered {other:?}"),
    }
    let (len_after, _) = stream_tail(&mut after, &target.stream)?;
    let from = match &last_before {
        Some(id) => format!("({id}"),
        None => "-".to_owned(),
    };
    let entries = after.cmd(&["XRANGE", &target.stream, &from, "+"])?;
    let landed: Vec<(String, Option<String>)> = entries
        .items()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let items = e.items()?;
            let id = items.first()?.text()?;
            let fields = items.get(1)?.items()?;
            let msg = match (fields.first()?.text(), fields.get(1)) {
                (Some(f), Some(v)) if f == "msg" && fields.len() == 2 => v.text(),
                _ => None,
            };
            Some((id, msg))
        })
        .collect();

    let mut notes = vec![
        format!(
            "one source for all host traffic (QEMU slirp gateway): the well-behaved visitor and the admin each used ONE connection opened before the flood; flood {:.1}s",
            took.as_secs_f64()
        ),
        format!(
            "attacker new connections ({CONNECTORS} connector threads, PING each): {} tried, {} answered, {} closed/reset without reply, {} silent (no byte in 1 s), {} connect timed out or failed (300 ms)",
            attack.conns_tried,
            attack.conns_answered,
            attack.conns_closed,
            attack.conns_silent,
            attack.conns_connect_failed
        ),
        format!(
            "attacker XADDs (17 pairs, 5000-byte and {NEAR_LIMIT_VALUE}-byte values, MAXLEN 0, maximal ID) on 2 persistent connections: {} sent, {} refused by the guard, {} other errors{}, {} accepted, {} unanswered; connections lost {}, reconnects failed {}",
            attack.xadd_sent,
            attack.xadd_refused,
            attack.xadd_other_errors,
            attack
                .other_error_sample
                .as_ref()
                .map(|e| format!(" (e.g. {e:?})"))
                .unwrap_or_default(),
            attack.xadd_accepted.len(),
            attack.xadd_unanswered,
            attack.persistent_lost,
            attack.persistent_reconnect_failed
        ),
        format!(
            "attacker {} MiB bulk strings (as the visitor, new connection each): {} sent, {} connections closed by the server ({} after `Protocol error`), {} could not connect, {} other",
            HUGE_BULK >> 20,
            attack.huge_sent,
            attack.huge_closed,
            attack.huge_protocol_error,
            attack.huge_connect_failed,
            attack.huge_other.len()
        ),
        format!(
            "well-behaved visitor: {} XADDs, {} acknowledged, {} failed, {} reconnects",
            good.attempts,
            good.acked.len(),
            good.failed.len(),
            good.reconnects
        ),
        format!(
            "admin: {} reads (XLEN + INFO memory), {} failed, longest gap {:.1}s; peak used_memory {} of maxmemory {}{}",
            view.reads,
            view.failures.len(),
            view.longest_gap.as_secs_f64(),
            view.peak_used,
            view.maxmemory,
            console_maxmemory
                .map(|m| format!(" (console: maxmemory {m} bytes)"))
                .unwrap_or_default()
        ),
    ];

    let mut violations = Vec::new();
    if good.attempts == 0 || good.acked.len() as u64 * 10 < good.attempts * 9 {
        violations.push(format!(
            "the well-behaved visitor got {} of {} XADDs acknowledged (< 90%); first failures: {:?}",
            good.acked.len(),
            good.attempts,
            good.failed.iter().take(3).collect::<Vec<_>>()
        ));
    }
    if !view.failures.is_empty() {
        violations.push(format!(
            "{} admin reads failed: {:?}",
            view.failures.len(),
            view.failures.iter().take(3).collect::<Vec<_>>()
        ));
    }
    if view.reads < FLOOD_FOR.as_secs() / 2 || view.longest_gap > Duration::from_secs(5) {
        violations.push(format!(
            "the admin read only {} times, longest gap {:.1}s",
            view.reads,
            view.longest_gap.as_secs_f64()
        ));
    }
    if view.maxmemory == 0 {
        violations.push("INFO memory reported no maxmemory".to_owned());
    } else if view.peak_used > view.maxmemory {
        violations.push(format!(
            "used_memory peaked at {} above maxmemory {}",
            view.peak_used, view.maxmemory
        ));
    }
    if let Some(m) = console_maxmemory {
        if view.maxmemory != 0 && m != view.maxmemory {
            violations.push(format!(
                "INFO maxmemory {} but the console says {m}",
                view.maxmemory
            ));
        }
    }
    if !attack.xadd_accepted.is_empty() {
        violations.push(format!(
            "attacker XADDs acknowledged: {:?}",
            attack.xadd_accepted
        ));
    }
    if attack.huge_sent > 0 && attack.huge_closed == 0 {
        violations.push(format!(
            "no {} MiB bulk string closed its connection: {:?}",
            HUGE_BULK >> 20,
            attack.huge_other
        ));
    }

    // Every acknowledged XADD is there; anything else that landed is a
    // well-behaved attempt whose reply was lost.
    let ids: std::collections::HashSet<&str> = landed.iter().map(|(id, _)| id.as_str()).collect();
    let missing: Vec<&(u64, String)> = good
        .acked
        .iter()
        .filter(|(_, id)| !ids.contains(id.as_str()))
        .collect();
    if !missing.is_empty() {
        violations.push(format!(
            "{} acknowledged XADDs missing after the flood: {:?}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        ));
    }
    let unknown: std::collections::HashSet<String> =
        good.failed.iter().map(|(n, _)| flood_value(*n)).collect();
    let acked_ids: std::collections::HashSet<&str> =
        good.acked.iter().map(|(_, id)| id.as_str()).collect();
    let stray: Vec<&(String, Option<String>)> = landed
        .iter()
        .filter(|(id, msg)| {
            !acked_ids.contains(id.as_str()) && !msg.as_ref().is_some_and(|m| unknown.contains(m))
        })
        .collect();
    if !stray.is_empty() {
        violations.push(format!(
            "{} entries appeared that no acknowledged or attempted well-behaved XADD explains: {:?}",
            stray.len(),
            stray.iter().take(5).collect::<Vec<_>>()
        ));
    }
    let delta = len_after - len_before;
    if usize::try_from(delta).ok() != Some(landed.len()) {
        violations.push(format!(
            "XLEN went {len_before} -> {len_after} but XRANGE shows {} new entries",
            landed.len()
        ));
    }
    let unacked_landed = landed.len().saturating_sub(good.acked.len());
    notes.push(format!(
        "after: PING answered on a new connection; XLEN {len_before} -> {len_after}; all {} acknowledged IDs present (XRANGE){}",
        good.acked.len(),
        if unacked_landed > 0 {
            format!(", plus {unacked_landed} failed-reply attempts that landed")
        } else {
            String::new()
        }
    ));
    // The disk now holds these too: power-button checks the exact count.
    ctx.shared.acked.count += landed.len() as u64;
    if let Some((id, _)) = landed.last() {
        ctx.shared.acked.last_id = Some(id.clone());
    }
    if !violations.is_empty() {
        bail!(
            "{} violation(s):\n{}\n{}",
            violations.len(),
            violations.join("\n"),
            notes.join("\n")
        );
    }
    Ok(notes)
}

fn flood_value(n: u64) -> String {
    format!("flood-{n}")
}

/// `... exec ... (maxmemory N bytes)` from init.
fn console_maxmemory(line: &str) -> Option<u64> {
    let rest = line.split("(maxmemory ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// `used_memory` and `maxmemory` from an `INFO memory` reply.
fn memory_fields(info: &str) -> (Option<u64>, Option<u64>) {
    let field = |key: &str| {
        info.lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(key)?
                .strip_prefix(':')?
                .parse::<u64>()
                .ok()
        })
    };
    (field("used_memory"), field("maxmemory"))
}

/// One `XADD <stream> * msg flood-<n>` every [`GOOD_EVERY`] until `deadline`.
fn well_behaved(target: &Target, conn: Conn, deadline: Instant) -> Good {
    let mut good = Good::default();
    let mut conn = Some(conn);
    let mut next = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        if conn.is_none() {
            good.reconnects += 1;
            conn = target.connect(&target.visitor, Duration::from_secs(5)).ok();
        }
        let value = flood_value(n);
        good.attempts += 1;
        let reply = match conn.as_mut() {
            Some(c) => c
                .cmd(&["XADD", &target.stream, "*", "msg", &value])
                .map_err(anyhow::Error::from),
            None => Err(anyhow::anyhow!("no connection (reconnect failed)")),
        };
        match reply {
            Ok(Value::Bulk(Some(id))) => good
                .acked
                .push((n, String::from_utf8_lossy(&id).into_owned())),
            Ok(other) => good.failed.push((n, format!("{other:?}"))),
            Err(e) => {
                // A late reply would answer the next command: start over.
                good.failed.push((n, format!("{e:#}")));
                conn = None;
            }
        }
        n += 1;
        next += GOOD_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    good
}

/// XLEN and INFO memory once a second until `stop`.
fn admin_reads(admin: &mut Conn, stream: &str, stop: &AtomicBool) -> AdminView {
    let mut view = AdminView::default();
    let mut last_ok = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let read = (|| -> Result<String> {
            admin
                .cmd(&["XLEN", stream])?
                .int()
                .context("XLEN is not an integer")?;
            admin
                .cmd(&["INFO", "memory"])?
                .text()
                .context("INFO memory is not text")
        })();
        match read {
            Ok(info) => {
                let (used, max) = memory_fields(&info);
                match (used, max) {
                    (Some(u), Some(m)) => {
                        view.reads += 1;
                        view.peak_used = view.peak_used.max(u);
                        view.maxmemory = m;
                        view.longest_gap = view.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    _ => view
                        .failures
                        .push("INFO memory has no used_memory/maxmemory".to_owned()),
                }
            }
            Err(e) => {
                view.failures.push(format!("{e:#}"));
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    view.longest_gap = view.longest_gap.max(last_ok.elapsed());
    view
}

/// [`CONNECTORS`] threads open new connections without pause while this one
/// sends, in rounds, one 2 MiB bulk string on a new connection and
/// pipelined oversized XADDs on the persistent connections.
fn attacker(target: &Target, mut persistent: Vec<Option<Conn>>, deadline: Instant) -> Attack {
    let mut a = Attack::default();
    let addr = SocketAddr::from(([127, 0, 0, 1], target.port));
    let shapes = [
        xadd_pairs(&target.stream, 17),
        xadd_value(&target.stream, 5000),
        argv(&["XADD", &target.stream, "MAXLEN", "0", "*", "f", "v"]),
        argv(&["XADD", &target.stream, MAX_ID, "f", "v"]),
    ];
    let near_limit = xadd_value(&target.stream, NEAR_LIMIT_VALUE);
    let conns = std::thread::scope(|scope| {
        let connectors: Vec<_> = (0..CONNECTORS)
            .map(|_| scope.spawn(move || connection_flood(addr, deadline)))
            .collect();
        while Instant::now() < deadline {
            huge_bulk(target, addr, &mut a);
            for (i, slot) in persistent.iter_mut().enumerate() {
                if Instant::now() >= deadline {
                    break;
                }
                if slot.is_none() {
                    *slot = target.connect(&target.visitor, Duration::from_secs(5)).ok();
                    if slot.is_none() {
                        a.persistent_reconnect_failed += 1;
                        continue;
                    }
                }
                let Some(c) = slot.as_mut() else { continue };
                let mut batch: Vec<&Vec<String>> = shapes.iter().cycle().take(40).collect();
                if i == 0 {
                    batch.push(&near_limit);
                }
                let mut sent = 0u64;
                for cmd in &batch {
                    if c.send(cmd).is_err() {
                        break;
                    }
                    sent += 1;
                }
                a.xadd_sent += sent;
                let mut lost = sent < batch.len() as u64;
                for k in 0..sent {
                    match c.read_reply() {
                        Ok(v) => a.record(&v),
                        Err(_) => {
                            a.xadd_unanswered += sent - k;
                            lost = true;
                            break;
                        }
                    }
                }
                if lost {
                    a.persistent_lost += 1;
                    *slot = None;
                }
            }
        }
        connectors
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect::<Vec<ConnStats>>()
    });
    for c in conns {
        a.conns_tried += c.tried;
        a.conns_answered += c.answered;
        a.conns_closed += c.closed;
        a.conns_silent += c.silent;
        a.conns_connect_failed += c.connect_failed;
    }
    a
}

/// New connections of one connector thread.
#[derive(Debug, Default)]
struct ConnStats {
    tried: u64,
    answered: u64,
    closed: u64,
    silent: u64,
    connect_failed: u64,
}

/// Until `deadline`: a new connection, an inline PING, at most 1 s for the
/// first byte, close; again.
fn connection_flood(addr: SocketAddr, deadline: Instant) -> ConnStats {
    let mut c = ConnStats::default();
    while Instant::now() < deadline {
        c.tried += 1;
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => s,
            Err(_) => {
                c.connect_failed += 1;
                continue;
            }
        };
        if s.write_all(b"PING\r\n").is_err() {
            c.closed += 1;
            continue;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => c.closed += 1,
            Ok(_) => c.answered += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                c.silent += 1;
            }
            Err(_) => c.closed += 1,
        }
    }
    c
}

/// As the visitor, an XADD whose value's bulk length is beyond
/// `proto-max-bulk-len`: the server must answer a protocol error and close.
fn huge_bulk(target: &Target, addr: SocketAddr, a: &mut Attack) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        a.huge_connect_failed += 1;
        return;
    };
    // Short: a connection the guest's rate limit dropped stays silent.
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let auth = resp::encode(&["AUTH", &target.visitor.0, &target.visitor.1]);
    let mut buf = Vec::new();
    if s.write_all(&auth).is_err() || !read_until(&mut s, &mut buf, |b| b.ends_with(b"\r\n")) {
        // Accepted by slirp but dropped by the guest's rate limit.
        a.huge_connect_failed += 1;
        return;
    }
    if !buf.starts_with(b"+OK") {
        a.huge_other
            .push(format!("AUTH answered {:?}", String::from_utf8_lossy(&buf)));
        return;
    }
    a.huge_sent += 1;
    let mut head = format!(
        "*5\r\n$4\r\nXADD\r\n${}\r\n{}\r\n$1\r\n*\r\n$1\r\nf\r\n${HUGE_BULK}\r\n",
        target.stream.len(),
        target.stream
    )
    .into_bytes();
    let chunk = vec![b'v'; 64 * 1024];
    head.extend_from_slice(&chunk);
    let mut written = 0usize;
    if s.write_all(&head).is_ok() {
        written += 64 * 1024;
        while written < HUGE_BULK && s.write_all(&chunk).is_ok() {
            written += chunk.len();
        }
    }
    buf.clear();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let closed = read_until(&mut s, &mut buf, |_| false);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if closed && (buf.is_empty() || text.contains("Protocol error")) {
        a.huge_closed += 1;
        if text.contains("Protocol error") {
            a.huge_protocol_error += 1;
        }
    } else {
        a.huge_other.push(format!(
            "after {written} bytes: {:?}, closed: {closed}",
            text.chars().take(100).collect::<String>()
        ));
    }
}

/// Reads into `buf` until `done(buf)`; true if done or the peer closed
/// (EOF or reset), false on a timeout.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if done(buf) {
                    return true;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_reasons() {
        let refused = Value::Error(
            "ERR unknown command 'STREAM-GUARD-REFUSED:option', with args beginning with: "
                .to_owned(),
        );
        assert_eq!(guard_reason(&refused).as_deref(), Some("option"));
        assert_eq!(guard_reason(&Value::Error("NOPERM no".to_owned())), None);
        assert_eq!(guard_reason(&Value::Bulk(Some(b"1-1".to_vec()))), None);
    }

    #[test]
    fn shapes() {
        assert_eq!(xadd_pairs("s", 17).len(), 3 + 34);
        assert_eq!(xadd_value("s", 5000)[4].len(), 5000);
        let a = attacks("s");
        assert!(a
            .iter()
            .all(|(_, _, cmd)| cmd[0] == "XADD" && cmd[1] == "s"));
    }

    #[test]
    fn memory_and_console_fields() {
        let info = "# Memory\r\nused_memory:1234\r\nused_memory_human:1K\r\nmaxmemory:536870912\r\nmaxmemory_human:512M\r\n";
        assert_eq!(memory_fields(info), (Some(1234), Some(536870912)));
        assert_eq!(
            console_maxmemory("appliance: exec /usr/bin/valkey-server (maxmemory 511000000 bytes)"),
            Some(511000000)
        );
        assert_eq!(console_maxmemory("appliance: exec x"), None);
    }
}
