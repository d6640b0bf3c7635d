//! The cases that share one production VM: ready, acl-wall, no-lua,
//! two-processes, firewall, bgsave, power-button (which restarts it on the
//! same data disk) and no-cleartext (which scans the disks afterwards).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use vm_harness::matchers::{self, Proc};
use vm_harness::resp::{self, Conn, Value};
use vm_harness::standin::Mode;

use super::{check_acked, host_command, xadd, Ctx, ReadyProbe, Session};

/// a. The visitor authenticates and an XADD is acknowledged.
pub(super) fn ready(ctx: &mut Ctx) -> Result<Vec<String>> {
    let mode = ctx.opts.boot;
    let s = ctx.shared()?;
    let at = s.ready_at.context("the shared VM has no ready time")?;
    let mut c = s.visitor_conn()?;
    let (_, stream) = s.visitor()?;
    let stream = stream.to_owned();
    let id = xadd(&mut c, &stream, "ready-2")?;
    ctx.shared.acked.count += 1;
    ctx.shared.acked.last_id = Some(id);
    Ok(vec![format!(
        "QEMU start -> first acknowledged visitor XADD: {:.1}s ({mode:?} boot, TCG)",
        at.as_secs_f64()
    )])
}

/// One command to try: its words before the filler, its arity, whether it
/// is flagged `no_auth` (Valkey skips the ACL command check for those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommandDesc {
    pub(super) words: Vec<String>,
    pub(super) arity: i64,
    pub(super) no_auth: bool,
}

impl CommandDesc {
    pub(super) fn name(&self) -> String {
        self.words.join(" ")
    }

    /// The words plus `x` fillers up to the arity, so the server's arity
    /// check passes and the ACL check decides.
    pub(super) fn argv(&self) -> Vec<String> {
        let want = usize::try_from(self.arity.unsigned_abs()).unwrap_or(0);
        let mut v = self.words.clone();
        while v.len() < want {
            v.push("x".to_owned());
        }
        v
    }
}

fn desc_from_entry(entry: &Value) -> Option<CommandDesc> {
    let items = entry.items()?;
    let name = items.first()?.text()?;
    let arity = items.get(1)?.int()?;
    let no_auth = items
        .get(2)
        .and_then(Value::items)
        .is_some_and(|flags| flags.iter().any(|f| f.text().as_deref() == Some("no_auth")));
    Some(CommandDesc {
        words: name.split('|').map(str::to_lowercase).collect(),
        arity,
        no_auth,
    })
}

/// Every command and subcommand in a `COMMAND` reply.
pub(super) fn command_table(reply: &Value) -> Vec<CommandDesc> {
    let mut out = Vec::new();
    for entry in reply.items().unwrap_or_default() {
        let Some(desc) = desc_from_entry(entry) else {
            continue;
        };
        let subs = entry.items().and_then(|i| i.get(9)).and_then(Value::items);
        let has_subs = subs.is_some_and(|s| !s.is_empty());
        for sub in subs.unwrap_or_default() {
            if let Some(mut d) = desc_from_entry(sub) {
                d.no_auth |= desc.no_auth;
                out.push(d);
            }
        }
        if !has_subs {
            out.push(desc);
        }
    }
    out.sort_by_key(CommandDesc::name);
    out
}

/// When the admin may not run `COMMAND`: a fixed list covering every ACL
/// category that matters (arity as Valkey declares it).
pub(super) fn fallback_table() -> Vec<CommandDesc> {
    const LIST: &[(&str, i64)] = &[
        ("get", 2),
        ("set", -3),
        ("del", -2),
        ("keys", 2),
        ("scan", -2),
        ("dbsize", 1),
        ("config|get", -3),
        ("config|set", -4),
        ("flushall", -1),
        ("flushdb", -1),
        ("eval", -3),
        ("evalsha", -3),
        ("fcall", -3),
        ("script|load", 3),
        ("function|load", -3),
        ("module|list", 2),
        ("debug", -2),
        ("shutdown", -1),
        ("acl|whoami", 2),
        ("acl|list", 2),
        ("acl|setuser", -3),
        ("client|list", -2),
        ("client|kill", -3),
        ("info", -1),
        ("bgsave", -1),
        ("save", -1),
        ("bgrewriteaof", 1),
        ("replicaof", 3),
        ("slaveof", 3),
        ("sync", 1),
        ("psync", -3),
        ("monitor", 1),
        ("subscribe", -2),
        ("publish", 3),
        ("xread", -4),
        ("xrange", -4),
        ("xrevrange", -4),
        ("xlen", 2),
        ("xdel", -3),
        ("xtrim", -4),
        ("xgroup|create", -5),
        ("xreadgroup", -7),
        ("xsetid", -3),
        ("xinfo|stream", -3),
        ("select", 2),
        ("swapdb", 3),
        ("migrate", -6),
        ("restore", -4),
        ("dump", 2),
        ("object|encoding", 3),
        ("memory|usage", -3),
        ("slowlog|get", -2),
        ("lastsave", 1),
        ("time", 1),
        ("echo", 2),
        ("multi", 1),
        ("exec", 1),
        ("watch", -2),
        ("wait", 3),
        ("cluster|info", 2),
        ("readonly", 1),
        ("expire", -3),
        ("rename", 3),
        ("lpush", -3),
        ("hset", -4),
        ("sadd", -3),
        ("zadd", -4),
        ("pfadd", -2),
        ("append", 3),
        ("incr", 2),
        ("ping", -1),
        ("xadd", -5),
        ("auth", -2),
        ("hello", -1),
        ("reset", 1),
    ];
    LIST.iter()
        .map(|(name, arity)| CommandDesc {
            words: name.split('|').map(str::to_owned).collect(),
            arity: *arity,
            no_auth: matches!(*name, "auth" | "hello" | "reset" | "quit"),
        })
        .collect()
}

fn is_noperm(v: &Value) -> bool {
    v.error().is_some_and(|e| e.starts_with("NOPERM"))
}

/// A reply that shows the command did not run, and why: the ACL (`NOPERM`,
/// also inside a discarded transaction), the stream guard (which renames a
/// refused XADD before the ACL sees it), or a command the config disables
/// for everyone (`DEBUG`, `MODULE`).
fn refusal(v: &Value) -> Option<&'static str> {
    let e = v.error()?;
    if e.starts_with("NOPERM") {
        Some("acl")
    } else if e.starts_with("EXECABORT") && (e.contains("NOPERM") || e.contains("NOAUTH")) {
        Some("acl (transaction)")
    } else if e.starts_with("ERR unknown command 'STREAM-GUARD-REFUSED:") {
        Some("stream-guard")
    } else if e.contains("command not allowed") {
        Some("disabled by config")
    } else {
        None
    }
}

/// b. The visitor is refused every command but PING, XADD on its stream and
/// the commands Valkey exempts from ACLs (`no_auth`: AUTH, HELLO, ...); an
/// unauthenticated connection gets only the auth error.
pub(super) fn acl_wall(ctx: &mut Ctx) -> Result<Vec<String>> {
    ctx.shared()?;
    let mut acked = ctx.shared.acked.clone();
    let s = ctx.shared()?;
    let (_, stream) = s.visitor()?;
    let stream = stream.to_owned();
    let mut notes = Vec::new();
    let mut admin = s.admin_conn()?;
    let table = match admin.cmd(&["COMMAND"])? {
        reply @ Value::Array(Some(_)) => {
            let t = command_table(&reply);
            notes.push(format!(
                "{} commands and subcommands from COMMAND (as admin)",
                t.len()
            ));
            t
        }
        other => {
            let t = fallback_table();
            notes.push(format!(
                "admin COMMAND answered {other:?}; checked a fixed list of {} commands",
                t.len()
            ));
            t
        }
    };
    if table.len() < 20 {
        bail!(
            "only {} commands to check: the COMMAND reply was not understood",
            table.len()
        );
    }
    let mut violations: Vec<String> = Vec::new();
    let mut exempt: Vec<String> = Vec::new();
    let mut visitor = s.visitor_conn()?;

    // What the visitor must be able to do.
    match visitor.cmd(&["PING"])? {
        Value::Simple(p) if p == "PONG" => {}
        other => violations.push(format!("visitor PING answered {other:?}")),
    }
    match xadd(&mut visitor, &stream, "acl-wall") {
        Ok(id) => {
            acked.count += 1;
            acked.last_id = Some(id);
        }
        Err(e) => violations.push(format!("visitor XADD on {stream}: {e:#}")),
    }
    // XADD anywhere else, including keys that a broken glob escape would let
    // through.
    for key in [
        "other:key".to_owned(),
        format!("{stream}2"),
        format!("x{stream}"),
        stream.replace(':', "?"),
        format!(
            "{}*",
            stream.get(..stream.len().saturating_sub(1)).unwrap_or("")
        ),
    ] {
        let v = visitor.cmd(&["XADD", key.as_str(), "*", "f", "v"])?;
        if refusal(&v).is_none() {
            violations.push(format!("visitor XADD on {key:?} answered {v:?}"));
        }
    }

    let (name, _) = s.visitor()?;
    let name = name.to_owned();
    let pass = s.state.visitor_pass.expose().to_owned();
    let port = s.port;
    for d in &table {
        let cmd = d.name();
        if matches!(d.words.first().map(String::as_str), Some("ping" | "xadd"))
            && d.words.len() == 1
        {
            continue; // checked above with real arguments
        }
        if cmd == "quit" {
            exempt.push(cmd);
            continue; // allowed for everyone: it closes the connection
        }
        let reply = visitor.cmd(&d.argv());
        if cmd == "reset" || cmd == "hello" {
            // The protocol handshake and reset are open to every client
            // (issue 2: "nothing but AUTH/HELLO"); RESET drops the login, so
            // log in again before the next command.
            exempt.push(cmd);
            visitor = Conn::connect(port, super::REPLY_TIMEOUT)?;
            visitor.auth(&name, &pass)?;
            continue;
        }
        match reply {
            Ok(v) if refusal(&v).is_some() => {}
            Ok(v) if d.no_auth && !matches!(v, Value::Bulk(Some(_)) | Value::Array(Some(_))) => {
                exempt.push(cmd);
            }
            other => {
                violations.push(format!(
                    "visitor `{}` answered {other:?}",
                    d.argv().join(" ")
                ));
                visitor = Conn::connect(port, super::REPLY_TIMEOUT)?;
                visitor.auth(&name, &pass)?;
            }
        }
    }

    // Unauthenticated: nothing but NOAUTH (no_auth commands may answer an
    // error or a bare status, never data).
    let mut anon = Conn::connect(port, super::REPLY_TIMEOUT)?;
    let mut anon_checked = 0usize;
    for d in &table {
        if d.name() == "quit" {
            continue;
        }
        anon_checked += 1;
        let reply = anon.cmd(&d.argv());
        let ok = match &reply {
            Ok(Value::Error(e)) => {
                d.no_auth
                    || e.starts_with("NOAUTH")
                    || (e.starts_with("EXECABORT") && e.contains("NOAUTH"))
            }
            Ok(Value::Simple(_)) => d.no_auth,
            _ => false,
        };
        if !ok {
            violations.push(format!(
                "unauthenticated `{}` answered {reply:?}",
                d.argv().join(" ")
            ));
            anon = Conn::connect(port, super::REPLY_TIMEOUT)?;
        }
    }
    ctx.shared.acked = acked;
    exempt.sort();
    exempt.dedup();
    notes.push(format!(
        "visitor: PING and XADD {stream} allowed; refused everything else; ACL-exempt (no_auth) commands: {}",
        exempt.join(", ")
    ));
    notes.push(format!(
        "unauthenticated: {anon_checked} commands, only NOAUTH (or no_auth errors)"
    ));
    if !violations.is_empty() {
        bail!(
            "{} violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        );
    }
    Ok(notes)
}

/// c. No Lua: EVAL and FCALL fail for the admin too.
pub(super) fn no_lua(ctx: &mut Ctx) -> Result<Vec<String>> {
    let image = ctx.image.clone();
    let s = ctx.shared()?;
    let mut admin = s.admin_conn()?;
    let tries: [&[&str]; 4] = [
        &["EVAL", "return 1", "0"],
        &["EVAL_RO", "return 1", "0"],
        &["FCALL", "f", "0"],
        &[
            "FUNCTION",
            "LOAD",
            "#!lua name=e2e\nserver.register_function('f', function() return 1 end)",
        ],
    ];
    let mut engine_errors = Vec::new();
    let mut noperm = Vec::new();
    for argv in tries {
        let v = admin.cmd(argv)?;
        let what = argv.first().copied().unwrap_or("");
        match v.error() {
            None => bail!("admin {what} succeeded ({v:?}): a scripting engine is present"),
            Some(e) if e.to_ascii_lowercase().contains("engine") => {
                engine_errors.push(format!("{what}: {e}"))
            }
            Some(e) if e.starts_with("NOPERM") => noperm.push(what),
            Some(e) => bail!("admin {what} failed, but not for a missing engine nor the ACL: {e}"),
        }
    }
    let mut visitor = s.visitor_conn()?;
    let v = visitor.cmd(&["EVAL", "return 1", "0"])?;
    if !is_noperm(&v) {
        bail!("visitor EVAL answered {v:?}");
    }
    let mut notes = Vec::new();
    if !engine_errors.is_empty() {
        notes.push(format!("engine absent: {}", engine_errors.join("; ")));
    }
    if !noperm.is_empty() {
        // The ACL refuses first, so the engine's error cannot be seen from
        // outside; prove its absence from the booted image instead.
        let server = super::initramfs_file(&image, s.spec.server().binary())?;
        if server
            .windows(b"luaL_newstate".len())
            .any(|w| w == b"luaL_newstate")
        {
            bail!("the server binary in the image contains luaL_newstate (Lua is built in)");
        }
        notes.push(format!(
            "admin {} refused with NOPERM (@scripting not granted); the booted server binary has no luaL_newstate",
            noperm.join("/")
        ));
    }
    Ok(notes)
}

/// d. At the seal userspace is exactly PID 1 = the server (non-root) and
/// the governor.
pub(super) fn two_processes(ctx: &mut Ctx) -> Result<Vec<String>> {
    let s = ctx.shared()?;
    let c = s.vm.console();
    let end = c.wait_for(0, Duration::from_secs(10), |l| {
        matchers::seal_end(l).is_some()
    });
    let lines = c.lines();
    let rows: Vec<Proc> = lines
        .iter()
        .filter_map(|l| matchers::seal_row(&l.text))
        .collect();
    if rows.is_empty() {
        bail!(
            "the governor printed no process table at the seal: expected one `{}pid=.. ppid=.. uid=r/e exe=\"..\" comm=\"..\" cmdline=\"..\"` line per userspace process and `{}end (<n> userspace processes)`",
            matchers::SEAL_ROW,
            matchers::SEAL_ROW
        );
    }
    if end.is_none() {
        bail!(
            "the seal table has no end line `{}end (<n> userspace processes)`",
            matchers::SEAL_ROW
        );
    }
    let gov = lines.iter().find_map(|l| matchers::governor_pid(&l.text));
    check_seal_table(&rows, s.spec.server().binary(), s.spec.server().uid(), gov)
        .map_err(anyhow::Error::msg)?;
    Ok(rows
        .iter()
        .map(|p| {
            format!(
                "pid {} ppid {} uid {}/{} exe {}",
                p.pid, p.ppid, p.uid, p.euid, p.exe
            )
        })
        .collect())
}

/// i. A forwarded port other than the server's gets no service, and the
/// sealed ruleset read back from the kernel matches the rendered one.
pub(super) fn firewall(ctx: &mut Ctx) -> Result<Vec<String>> {
    let s = ctx.shared()?;
    let probe = resp::probe(s.extra_port, Duration::from_secs(5));
    if !probe.no_service() {
        bail!(
            "guest port 22 (host 127.0.0.1:{}) answered: {probe:?}",
            s.extra_port
        );
    }
    let mut notes = vec![format!("guest port 22: no service ({probe:?})")];
    let policy = pf_rules::Policy::from_spec(&s.spec)?;
    let rendered = pf_rules::render_nft(&policy, pf_rules::Phase::Sealed);
    let want = hex(&Sha256::digest(rendered.as_bytes()));
    let got =
        s.vm.console()
            .lines()
            .iter()
            .find_map(|l| matchers::firewall_readback(&l.text));
    match got {
        None => bail!(
            "guest port 22 had no service, but init printed no read-back of the sealed ruleset (expected `{}<sha256 of the nft text>`, rendered sha256 {want})",
            matchers::FIREWALL_READBACK
        ),
        Some(rb) if rb.sha256 != want => bail!(
            "the sealed ruleset read back hashes to {}, rendered {want}",
            rb.sha256
        ),
        Some(rb) if rb.rules == 0 => {
            bail!("init read back the sealed ruleset but reports 0 rules matched")
        }
        Some(rb) => notes.push(format!(
            "sealed ruleset read back matches the rendered one ({} rules, sha256 {want})",
            rb.rules
        )),
    }
    Ok(notes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(key)?
            .strip_prefix(':')
            .map(str::to_owned)
    })
}

/// j. An admin BGSAVE forks a child the governor allows and logs; the
/// machine stays up and the RDB is on the data disk.
pub(super) fn bgsave(ctx: &mut Ctx) -> Result<Vec<String>> {
    let data = ctx.shared_data_or_boot()?;
    let s = ctx.shared()?;
    let from = s.vm.console().len();
    let mut admin = s.admin_conn()?;
    let reply = admin.cmd(&["BGSAVE"])?;
    if reply.error().is_some() {
        bail!("BGSAVE answered {reply:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        s.check_alive()?;
        let info = admin
            .cmd(&["INFO", "persistence"])?
            .text()
            .unwrap_or_default();
        let running = info_field(&info, "rdb_bgsave_in_progress");
        let status = info_field(&info, "rdb_last_bgsave_status");
        if running.as_deref() == Some("0") && status.as_deref() == Some("ok") {
            break;
        }
        if running.as_deref() == Some("0") && status.is_some() && status.as_deref() != Some("ok") {
            bail!(
                "BGSAVE failed: rdb_last_bgsave_status:{}",
                status.unwrap_or_default()
            );
        }
        if Instant::now() >= deadline {
            bail!("BGSAVE did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let server = s.spec.server().binary().to_owned();
    let logged = s.vm.console().wait_for(from, Duration::from_secs(15), |l| {
        matchers::allow_verdict(l)
            .and_then(|v| v.process)
            .is_some_and(|p| p.ppid == 1 && p.exe == server)
    });
    let Some((_, line)) = logged else {
        bail!(
            "BGSAVE finished but the governor logged no allowed child of PID 1 (`{}...`)\n{}",
            matchers::ALLOW_VERDICT,
            s.vm.console().tail(10)
        );
    };
    std::thread::sleep(Duration::from_secs(2));
    s.check_alive()?;
    match admin.cmd(&["PING"])? {
        Value::Simple(p) if p == "PONG" => {}
        other => bail!("after BGSAVE PING answered {other:?}"),
    }
    let listing = data_disk_listing(&data)?;
    if !listing.contains("dump.rdb") {
        bail!("no dump.rdb on the data disk; `ls -l /` shows:\n{listing}");
    }
    Ok(vec![
        format!("governor: {}", line.text.trim()),
        "dump.rdb is on the data disk (debugfs ls, after e2fsck replayed the journal on a copy)"
            .to_owned(),
    ])
}

/// `ls -l /` of an ext4 image, read with debugfs from a copy whose journal
/// e2fsck has replayed (the VM may still be running and have committed
/// changes only to the journal).
pub(super) fn data_disk_listing(data: &std::path::Path) -> Result<String> {
    let tmp = vm_harness::temp_dir("e2e-disk")?;
    let copy = tmp.path().join("data.raw");
    vm_harness::copy_sparse(data, &copy)?;
    let copy_s = copy.to_string_lossy().into_owned();
    // 1: errors corrected, 2: ... and reboot advised; both fine for a copy.
    host_command("e2fsck", &["-fy", &copy_s], &[1, 2])?;
    host_command("debugfs", &["-R", "ls -l /", &copy_s], &[])
}

/// k. The power button makes the governor sync and power off; a new VM on
/// the same disk has every acknowledged XADD.
pub(super) fn power_button(ctx: &mut Ctx) -> Result<Vec<String>> {
    let s = ctx.shared()?;
    let (_, stream) = s.visitor()?;
    let stream = stream.to_owned();
    let mut c = s.visitor_conn()?;
    let mut acked = ctx.shared.acked.clone();
    for i in 0..20 {
        let id = xadd(&mut c, &stream, &format!("power-{i}"))?;
        acked.count += 1;
        acked.last_id = Some(id);
    }
    ctx.shared.acked = acked.clone();
    let mut s = ctx.shared.vm.session.take().context("shared VM")?;
    let from = s.vm.console().len();
    let pressed = Instant::now();
    s.vm.monitor("system_powerdown")?;
    let seen = s.vm.console().wait_for(from, Duration::from_secs(30), |l| {
        l.contains(matchers::POWER_BUTTON)
    });
    let exit = s.vm.wait_exit(Duration::from_secs(60))?;
    let took = pressed.elapsed();
    if seen.is_none() {
        bail!(
            "no `{}` line within 30 s of system_powerdown\n{}",
            matchers::POWER_BUTTON,
            s.vm.console().tail(10)
        );
    }
    let Some(status) = exit else {
        bail!(
            "the governor saw the button but QEMU did not exit within 60 s\n{}",
            s.vm.console().tail(10)
        );
    };
    let powered_down =
        s.vm.console()
            .lines()
            .iter()
            .any(|l| l.text.contains(matchers::KERNEL_POWER_DOWN));
    drop(s);

    // A fresh VM on the same disk: everything acknowledged is there.
    let data = ctx.shared_data()?;
    let log = ctx.next_shared_log();
    let state = ctx.state(Mode::Normal);
    let mut fresh = Session::boot(&ctx.image, ctx.opts.boot, &data, state, log)?;
    fresh.wait_ready(ReadyProbe::AdminPing)?;
    let mut admin = fresh.admin_conn()?;
    let checked = check_acked(&mut admin, &stream, &acked)?;
    fresh.vm.monitor("system_powerdown")?;
    if fresh.vm.wait_exit(Duration::from_secs(60))?.is_none() {
        fresh.vm.stop()?;
    }
    ctx.shared.stopped_cleanly = true;
    Ok(vec![
        format!(
            "QEMU exited ({status}) {:.1}s after system_powerdown{}",
            took.as_secs_f64(),
            if powered_down {
                ", kernel printed `reboot: Power down`"
            } else {
                ""
            }
        ),
        format!("fresh VM on the same disk: {checked}"),
    ])
}

/// h. Neither password's bytes appear in the data disk, the image files or
/// any console log.
pub(super) fn no_cleartext(ctx: &mut Ctx) -> Result<Vec<String>> {
    if ctx.shared.data.is_none() {
        ctx.shared()?;
    }
    ctx.shutdown_shared();
    let mut files: Vec<std::path::PathBuf> = vec![ctx.shared_data()?];
    for image in [&ctx.image, &ctx.test_image] {
        for name in appliance_image::assemble::OUTPUTS {
            let p = image.file(name);
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.extend(
        ctx.shared
            .console_logs
            .iter()
            .filter(|p| p.is_file())
            .cloned(),
    );
    let passwords = [
        (
            "redis-admin-pass",
            ctx.passwords.0.expose().as_bytes().to_vec(),
        ),
        (
            "redis-visitor-pass",
            ctx.passwords.1.expose().as_bytes().to_vec(),
        ),
    ];
    let needles: Vec<&[u8]> = passwords.iter().map(|(_, pw)| pw.as_slice()).collect();
    let mut found = Vec::new();
    for f in &files {
        let hits = super::file_contains_any(f, &needles)?;
        for ((key, _), hit) in passwords.iter().zip(hits) {
            if hit {
                found.push(format!("{key} in {}", f.display()));
            }
        }
    }
    // The initramfs is compressed: look inside it too. (`image.tar.gz` and
    // `data.tar.gz` hold `disk.raw` and `data.raw`, scanned above as is.)
    let mut inside = 0usize;
    for image in [&ctx.image, &ctx.test_image] {
        if let Ok(cpio) = super::initramfs(image) {
            inside += 1;
            let hits = super::reader_contains_any(cpio.as_slice(), &needles)?;
            for ((key, _), hit) in passwords.iter().zip(hits) {
                if hit {
                    found.push(format!(
                        "{key} in the initramfs of {}",
                        image.dir().display()
                    ));
                }
            }
        }
    }
    if !found.is_empty() {
        bail!("cleartext password found: {}", found.join("; "));
    }
    Ok(vec![format!(
        "{} files and {inside} decompressed archives scanned for both passwords",
        files.len()
    )])
}

/// What the userspace table at the seal must be, checked: exactly two
/// processes, PID 1 running `server` with a non-root real and effective
/// uid equal to `server_uid`, and the governor (`governor_pid` when known).
fn check_seal_table(
    rows: &[Proc],
    server: &str,
    server_uid: u32,
    governor_pid: Option<u32>,
) -> Result<(), String> {
    if rows.len() != 2 {
        let names: Vec<String> = rows
            .iter()
            .map(|p| format!("{}:{}", p.pid, p.exe))
            .collect();
        return Err(format!(
            "expected 2 userspace processes, got {}: {names:?}",
            rows.len()
        ));
    }
    let Some(pid1) = rows.iter().find(|p| p.pid == 1) else {
        return Err("no PID 1 in the seal table".into());
    };
    if pid1.exe != server {
        return Err(format!("PID 1 runs {:?}, not {server:?}", pid1.exe));
    }
    if pid1.uid == 0 || pid1.euid == 0 || pid1.uid != server_uid || pid1.euid != server_uid {
        return Err(format!(
            "PID 1 runs as uid {}/{}, expected {server_uid}/{server_uid} (never root)",
            pid1.uid, pid1.euid
        ));
    }
    let Some(other) = rows.iter().find(|p| p.pid != 1) else {
        return Err("no governor in the seal table".into());
    };
    if let Some(g) = governor_pid {
        if other.pid != g {
            return Err(format!(
                "the second process is pid {} ({}), but the governor is pid {g}",
                other.pid, other.exe
            ));
        }
    }
    if other.ppid != 1 {
        return Err(format!(
            "the governor's parent is {}, not PID 1",
            other.ppid
        ));
    }
    Ok(())
}

impl Ctx {
    /// The shared data disk, booting the shared VM first if needed.
    fn shared_data_or_boot(&mut self) -> Result<std::path::PathBuf> {
        self.shared()?;
        self.shared_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn entry(name: &str, arity: i64, flags: &[&str], subs: Vec<Value>) -> Value {
        let mut v = vec![
            bulk(name),
            Value::Int(arity),
            Value::Array(Some(
                flags.iter().map(|f| Value::Simple((*f).into())).collect(),
            )),
            Value::Int(1),
            Value::Int(1),
            Value::Int(1),
            Value::Array(Some(vec![])),
            Value::Array(Some(vec![])),
            Value::Array(Some(vec![])),
        ];
        v.push(Value::Array(Some(subs)));
        Value::Array(Some(v))
    }

    fn row(pid: u32, ppid: u32, uid: u32, exe: &str) -> Proc {
        Proc {
            pid,
            ppid,
            uid,
            euid: uid,
            exe: exe.into(),
            comm: String::new(),
            cmdline: String::new(),
        }
    }

    #[test]
    fn seal_table_checks() {
        let server = "/usr/bin/valkey-server";
        let good = vec![row(1, 0, 6379, server), row(73, 1, 0, "/init")];
        assert_eq!(check_seal_table(&good, server, 6379, Some(73)), Ok(()));
        let cases: Vec<(Vec<Proc>, Option<u32>, &str)> = vec![
            (vec![row(1, 0, 6379, server)], None, "expected 2"),
            (
                vec![row(1, 0, 0, server), row(73, 1, 0, "/init")],
                None,
                "never root",
            ),
            (
                vec![row(1, 0, 6379, "/init"), row(73, 1, 0, "/init")],
                None,
                "not \"/usr",
            ),
            (
                vec![row(1, 0, 6379, server), row(74, 1, 0, "/init")],
                Some(73),
                "governor is pid 73",
            ),
            (
                vec![
                    row(1, 0, 6379, server),
                    row(73, 1, 0, "/init"),
                    row(80, 73, 0, "/bin/sh"),
                ],
                None,
                "got 3",
            ),
        ];
        for (rows, gov, want) in cases {
            let err = check_seal_table(&rows, server, 6379, gov).unwrap_err();
            assert!(err.contains(want), "{err} !~ {want}");
        }
    }

    #[test]
    fn command_table_expands_subcommands_and_flags() {
        let reply = Value::Array(Some(vec![
            entry("get", 2, &["readonly"], vec![]),
            entry("auth", -2, &["no_auth", "fast"], vec![]),
            entry(
                "config",
                -2,
                &[],
                vec![
                    entry("config|get", -3, &[], vec![]),
                    entry("config|set", -4, &[], vec![]),
                ],
            ),
            Value::Int(3),
        ]));
        let t = command_table(&reply);
        let names: Vec<String> = t.iter().map(CommandDesc::name).collect();
        assert_eq!(names, vec!["auth", "config get", "config set", "get"]);
        assert!(t[0].no_auth);
        assert_eq!(t[1].argv(), vec!["config", "get", "x"]);
        assert_eq!(t[2].argv(), vec!["config", "set", "x", "x"]);
        assert_eq!(t[3].argv(), vec!["get", "x"]);
    }

    #[test]
    fn fallback_table_is_broad_and_well_formed() {
        let t = fallback_table();
        assert!(t.len() > 60);
        for d in &t {
            assert!(d.argv().len() >= d.words.len());
            assert!(d.arity != 0, "{}", d.name());
        }
        assert!(t.iter().any(|d| d.name() == "auth" && d.no_auth));
    }

    #[test]
    fn info_fields() {
        let info = "# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_bgsave_status:ok\r\n";
        assert_eq!(
            info_field(info, "rdb_bgsave_in_progress").as_deref(),
            Some("0")
        );
        assert_eq!(
            info_field(info, "rdb_last_bgsave_status").as_deref(),
            Some("ok")
        );
        assert_eq!(info_field(info, "rdb"), None);
    }
}
