//! The public endpoint under abuse (issue 11): what one script from one or
//! many addresses can do to the production image, measured from outside.
//!
//! Every case runs on the e2e test network (many client addresses, see
//! [`crate::testnet`]) while a well-behaved visitor keeps appending from its
//! own address and the admin keeps reading (and opening fresh connections)
//! from another. A case fails on any lost acknowledged write, any halt or
//! reboot, or the admin being refused once; it prints its figures.
//!
//! Every attack is bounded in connections, bytes and time and stops by
//! itself; all traffic stays inside the test network's namespace.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

mod cases;

pub(super) use cases::*;

use vm_harness::resp::{self, Conn, Value};
use vm_harness::{matchers, testnet};

use super::{Session, Source};

/// One reply's wait in the background clients.
const REPLY: Duration = Duration::from_secs(10);
/// The well-behaved visitor's cadence.
const VISITOR_EVERY: Duration = Duration::from_millis(200);
/// The admin's cadence (one sample, and a fresh connection every few).
const ADMIN_EVERY: Duration = Duration::from_millis(500);
/// Every this many admin samples, the admin opens a fresh connection (so a
/// case shows the admin can still get in, not only stay in).
const ADMIN_FRESH_EVERY: u64 = 4;
/// What a guard refusal of an XADD answers (the reason and `'` follow).
pub(super) const GUARD_REFUSED: &str = "ERR unknown command 'STREAM-GUARD-REFUSED:";

/// Where the server is and who may talk to it; cheap to clone into threads.
#[derive(Clone)]
pub(super) struct Target {
    net: Option<PathBuf>,
    addr: SocketAddr,
    visitor: String,
    visitor_pass: String,
    admin: String,
    admin_pass: String,
    /// The visitors' stream.
    pub stream: String,
}

impl Target {
    pub(super) fn of(s: &Session) -> Result<Target> {
        let (visitor, stream) = s.visitor()?;
        Ok(Target {
            net: s.net.as_ref().map(testnet::TestNet::path),
            addr: s.server_addr(),
            visitor: visitor.to_owned(),
            visitor_pass: s.state.visitor_pass.expose().to_owned(),
            admin: s.spec.admin().name().to_owned(),
            admin_pass: s.state.admin_pass.expose().to_owned(),
            stream: stream.to_owned(),
        })
    }

    /// Moves the calling thread into the test network (once per thread).
    pub(super) fn enter(&self) -> Result<()> {
        match &self.net {
            Some(p) => Ok(testnet::enter_netns(p)?),
            None => Ok(()),
        }
    }

    /// A raw TCP connection from `source` (thread already entered).
    pub(super) fn tcp(&self, source: Source, timeout: Duration) -> Result<TcpStream> {
        let from = IpAddr::V4(testnet::client_addr(source.index()));
        Ok(testnet::connect_from(from, self.addr, timeout)?)
    }

    pub(super) fn conn(&self, source: Source, timeout: Duration) -> Result<Conn> {
        Ok(Conn::from_stream(self.tcp(source, timeout)?, timeout))
    }

    pub(super) fn visitor(&self, source: Source, timeout: Duration) -> Result<Conn> {
        let mut c = self.conn(source, timeout)?;
        c.auth(&self.visitor, &self.visitor_pass)?;
        Ok(c)
    }

    pub(super) fn admin(&self, timeout: Duration) -> Result<Conn> {
        let mut c = self.conn(Source::Admin, timeout)?;
        c.auth(&self.admin, &self.admin_pass)?;
        Ok(c)
    }

    /// The RESP bytes of `AUTH <visitor> <pass>`.
    pub(super) fn visitor_auth_bytes(&self) -> Vec<u8> {
        resp::encode(&["AUTH", &self.visitor, &self.visitor_pass])
    }

    pub(super) fn admin_name(&self) -> &str {
        &self.admin
    }
}

/// `INFO` fields as a map.
pub(super) fn info(c: &mut Conn, section: &str) -> Result<HashMap<String, String>> {
    let text = c
        .cmd(&["INFO", section])?
        .text()
        .with_context(|| format!("INFO {section} answered no text"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

fn info_u64(map: &HashMap<String, String>, key: &str) -> u64 {
    map.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// What the admin saw while a case ran.
#[derive(Debug, Default, Clone)]
pub(super) struct AdminLog {
    /// Samples taken.
    pub samples: u64,
    /// Fresh connections opened (and authenticated).
    pub fresh: u64,
    /// Every refusal or failure, with when it happened.
    pub refused: Vec<String>,
    /// Peak `mem_clients_normal` seen.
    pub peak_client_mem: u64,
    /// Peak `connected_clients` seen.
    pub peak_clients: u64,
    /// Slowest fresh connect + AUTH.
    pub slowest_fresh: Duration,
}

/// What the well-behaved visitor got acknowledged and refused.
#[derive(Debug, Default, Clone)]
pub(super) struct VisitorLog {
    /// Acknowledged IDs, in order.
    pub acked: Vec<String>,
    /// Errors (refusals, closed connections), counted.
    pub errors: u64,
    /// The first few error texts.
    pub first_errors: Vec<String>,
}

/// The two well-behaved clients, running until stopped.
pub(super) struct Background {
    stop: Arc<AtomicBool>,
    admin: Option<JoinHandle<AdminLog>>,
    visitor: Option<JoinHandle<VisitorLog>>,
    /// The visitor's log so far, readable while running.
    pub visitor_live: Arc<Mutex<VisitorLog>>,
    started: Instant,
}

impl Background {
    /// Starts both clients against `t`.
    pub(super) fn start(t: &Target) -> Result<Background> {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(AdminLog::default()));
        let admin = {
            let (t, stop, live) = (t.clone(), Arc::clone(&stop), Arc::clone(&live));
            std::thread::Builder::new()
                .name("e2e-admin".into())
                .spawn(move || admin_loop(&t, &stop, &live))?
        };
        let visitor_live = Arc::new(Mutex::new(VisitorLog::default()));
        let visitor = {
            let (t, stop, vlive) = (t.clone(), Arc::clone(&stop), Arc::clone(&visitor_live));
            std::thread::Builder::new()
                .name("e2e-visitor".into())
                .spawn(move || visitor_loop(&t, &stop, &vlive))?
        };
        Ok(Background {
            stop,
            admin: Some(admin),
            visitor: Some(visitor),
            visitor_live,
            started: Instant::now(),
        })
    }

    /// Stops both and returns what they saw.
    pub(super) fn finish(mut self) -> Result<(AdminLog, VisitorLog)> {
        self.stop.store(true, Ordering::Relaxed);
        let admin = self
            .admin
            .take()
            .context("admin thread")?
            .join()
            .map_err(|_| anyhow!("the admin thread panicked"))?;
        let visitor = self
            .visitor
            .take()
            .context("visitor thread")?
            .join()
            .map_err(|_| anyhow!("the visitor thread panicked"))?;
        Ok((admin, visitor))
    }

    /// The visitor's acknowledged IDs so far.
    pub(super) fn visitor_acked(&self) -> Vec<String> {
        self.visitor_live
            .lock()
            .map(|l| l.acked.clone())
            .unwrap_or_default()
    }

    /// Seconds since start.
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.admin.take() {
            let _ = h.join();
        }
        if let Some(h) = self.visitor.take() {
            let _ = h.join();
        }
    }
}

fn admin_loop(t: &Target, stop: &AtomicBool, live: &Mutex<AdminLog>) -> AdminLog {
    let start = Instant::now();
    let note = |what: String| {
        if let Ok(mut l) = live.lock() {
            if l.refused.len() < 20 {
                l.refused
                    .push(format!("{:.1}s: {what}", start.elapsed().as_secs_f64()));
            }
        }
    };
    if let Err(e) = t.enter() {
        note(format!("cannot enter the test network: {e:#}"));
        return live.lock().map(|l| l.clone()).unwrap_or_default();
    }
    let mut persistent: Option<Conn> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if n % ADMIN_FRESH_EVERY == 0 {
            let began = Instant::now();
            match t.admin(REPLY) {
                Ok(mut c) => match c.cmd(&["PING"]) {
                    Ok(Value::Simple(p)) if p == "PONG" => {
                        let took = began.elapsed();
                        if let Ok(mut l) = live.lock() {
                            l.fresh += 1;
                            l.slowest_fresh = l.slowest_fresh.max(took);
                        }
                    }
                    other => note(format!("fresh admin PING answered {other:?}")),
                },
                Err(e) => note(format!("fresh admin connection refused: {e:#}")),
            }
        }
        if persistent.is_none() {
            match t.admin(REPLY) {
                Ok(c) => persistent = Some(c),
                Err(e) => note(format!("admin connection refused: {e:#}")),
            }
        }
        if let Some(c) = persistent.as_mut() {
            let sample = info(c, "memory").and_then(|m| Ok((m, info(c, "clients")?)));
            match sample {
                Ok((mem, clients)) => {
                    let _ = c.cmd(&["XLEN", &t.stream]);
                    if let Ok(mut l) = live.lock() {
                        l.samples += 1;
                        l.peak_client_mem =
                            l.peak_client_mem.max(info_u64(&mem, "mem_clients_normal"));
                        l.peak_clients =
                            l.peak_clients.max(info_u64(&clients, "connected_clients"));
                    }
                }
                Err(e) => {
                    note(format!("admin read failed: {e:#}"));
                    persistent = None;
                }
            }
        }
        std::thread::sleep(ADMIN_EVERY);
    }
    live.lock().map(|l| l.clone()).unwrap_or_default()
}

fn visitor_loop(t: &Target, stop: &AtomicBool, live: &Mutex<VisitorLog>) -> VisitorLog {
    let record = |f: &dyn Fn(&mut VisitorLog)| {
        if let Ok(mut l) = live.lock() {
            f(&mut l);
        }
    };
    let err = |what: String| {
        record(&|l: &mut VisitorLog| {
            l.errors += 1;
            if l.first_errors.len() < 5 {
                l.first_errors.push(what.clone());
            }
        });
    };
    if let Err(e) = t.enter() {
        err(format!("cannot enter the test network: {e:#}"));
    } else {
        let mut conn: Option<Conn> = None;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                match t.visitor(Source::Visitor, REPLY) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        err(format!("connect: {e:#}"));
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                n += 1;
                match c.cmd(&["XADD", &t.stream, "*", "good", &n.to_string()]) {
                    Ok(Value::Bulk(Some(id))) => {
                        let id = String::from_utf8_lossy(&id).into_owned();
                        record(&|l: &mut VisitorLog| l.acked.push(id.clone()));
                    }
                    Ok(other) => err(format!("XADD answered {other:?}")),
                    Err(e) => {
                        err(format!("XADD: {e:#}"));
                        conn = None;
                    }
                }
            }
            std::thread::sleep(VISITOR_EVERY);
        }
    }
    live.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Checks that every ID in `acked` is in the stream (pipelined XRANGEs).
/// The calling thread must be inside the test network.
pub(super) fn check_present(t: &Target, acked: &[String]) -> Result<()> {
    let mut c = t.admin(Duration::from_secs(30))?;
    for chunk in acked.chunks(200) {
        for id in chunk {
            c.send(&["XRANGE", &t.stream, id, id])?;
        }
        for id in chunk {
            let v = c.read_reply()?;
            if v.items().is_none_or(<[Value]>::is_empty) {
                bail!("acknowledged entry {id} is missing from {}", t.stream);
            }
        }
    }
    Ok(())
}

/// `XLEN` of the visitors' stream, as the admin sees it.
pub(super) fn xlen(t: &Target) -> Result<u64> {
    let t2 = t.clone();
    on_net(t, move || {
        let mut c = t2.admin(REPLY)?;
        let n = c.cmd(&["XLEN", &t2.stream])?.int().context("XLEN")?;
        Ok(u64::try_from(n).unwrap_or(0))
    })
}

/// Runs `f` on a thread inside `t`'s network.
pub(super) fn on_net<T: Send + 'static>(
    t: &Target,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let t = t.clone();
    std::thread::spawn(move || t.enter().and_then(|()| f()))
        .join()
        .map_err(|_| anyhow!("a test-network thread panicked"))?
}

/// The figures of the `appliance: memory budget` console line.
pub(super) fn memory_budget(s: &Session) -> Result<HashMap<String, String>> {
    let lines = s.vm.console().lines();
    let line = lines
        .iter()
        .find_map(|l| matchers::from_marker(&l.text, matchers::MEMORY_BUDGET))
        .context("no memory budget line on the console")?;
    Ok(line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// The `clients=` ceiling of the memory budget, bytes.
pub(super) fn clients_ceiling(s: &Session) -> Result<u64> {
    memory_budget(s)?
        .get("clients")
        .and_then(|v| v.parse().ok())
        .context("the memory budget line has no clients= figure")
}

/// After a case: the machine is up, booted once, every acknowledged write
/// of the well-behaved visitor present, and the admin never refused.
/// Returns the notes on the background clients.
pub(super) fn judge(
    s: &mut Session,
    t: &Target,
    bg: Background,
    from_line: usize,
) -> Result<(Vec<String>, AdminLog, VisitorLog)> {
    let took = bg.elapsed();
    let (admin, visitor) = bg.finish()?;
    machine_ok(s, from_line)?;
    check_present_on_net(t, visitor.acked.clone())?;
    if !admin.refused.is_empty() {
        bail!("the admin was refused: {}", admin.refused.join("; "));
    }
    let notes = vec![
        format!(
            "well-behaved visitor: {} XADDs acknowledged, all present; {} errors{}",
            visitor.acked.len(),
            visitor.errors,
            match visitor.first_errors.first() {
                Some(e) => format!(" (first: {e})"),
                None => String::new(),
            }
        ),
        format!(
            "admin: {} samples, {} fresh connections, slowest fresh connect+AUTH {:.2}s, never refused; {:.0}s in all",
            admin.samples,
            admin.fresh,
            admin.slowest_fresh.as_secs_f64(),
            took.as_secs_f64()
        ),
    ];
    Ok((notes, admin, visitor))
}

/// Kernel lines that show the out-of-memory killer ran.
const OOM_MARKERS: [&str; 2] = ["invoked oom-killer", "Out of memory"];

/// The machine is up, booted once, and since console line `from` printed
/// no HALT verdict and no out-of-memory kill.
pub(super) fn machine_ok(s: &mut Session, from: usize) -> Result<()> {
    s.check_alive()?;
    let lines = s.vm.console().lines();
    let boots = lines
        .iter()
        .filter(|l| matchers::is_init_banner(&l.text))
        .count();
    if boots != 1 {
        bail!("the machine booted {boots} times (a reboot)");
    }
    for l in lines.iter().skip(from) {
        if l.text.contains(matchers::HALT_VERDICT) {
            bail!("the governor printed a HALT line: {}", l.text);
        }
        if OOM_MARKERS.iter().any(|m| l.text.contains(m)) {
            bail!("the out-of-memory killer ran: {}", l.text);
        }
    }
    Ok(())
}

/// A counter shared by attack threads.
#[derive(Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    pub(super) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Writes `bytes` until done, the peer closes, or `deadline`; true when the
/// peer closed (reset or broken pipe).
pub(super) fn write_until_closed(
    stream: &mut TcpStream,
    bytes: &[u8],
    deadline: Instant,
) -> Result<bool> {
    let mut off = 0usize;
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    while off < bytes.len() {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        match stream.write(bytes.get(off..).unwrap_or_default()) {
            Ok(0) => return Ok(true),
            Ok(n) => off += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(true),
        }
    }
    Ok(false)
}

/// Whether the peer has closed `stream` (EOF or reset), without blocking
/// for long; bytes waiting are read and dropped.
pub(super) fn peer_closed(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// [`check_present`] on a thread inside `t`'s network.
pub(super) fn check_present_on_net(t: &Target, acked: Vec<String>) -> Result<()> {
    let t2 = t.clone();
    on_net(t, move || check_present(&t2, &acked))
}
