//! The guard inside a real Valkey: the Valkey built from the pinned source with
//! the module built from this crate, the seed-000 ACL file, and the visitor
//! trying every shape of XADD that is not a plain append.
//!
//! Needs two paths, which `cargo xtask ci` provides after building both:
//! `APPLIANCE_VALKEY_SERVER` (the pinned Valkey's `valkey-server`) and
//! `STREAM_GUARD_MODULE` (`libstream_guard.so`, built with `--features module`).
//! Without them the tests fail and say how to get them; they are never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use appliance_spec::Spec;
use redis::{Connection, RedisResult, Value};

const VISITOR: &str = "ruachtov-ai-visitors";
const STREAM: &str = "ruach:stream:contact";
const ADMIN_PASSWORD: &str = "guard-test-admin-password";
const VISITOR_PASSWORD: &str = "guard-test-visitor-password";
/// A superuser that exists only in these tests, to show that even it cannot
/// load a module at runtime.
const ROOT_LINE: &str = "user testroot on nopass ~* &* +@all";

fn required_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{var} is not set: run `cargo xtask ci` (it builds the pinned Valkey and the \
             stream-guard module and sets it), or set it by hand"
        ),
    }
}

/// How a test wants its server.
#[derive(Default)]
struct Options {
    /// Module arguments after the base ones (numbers may override).
    guard: Vec<String>,
    /// Extra server arguments.
    server: Vec<String>,
    /// Also listen on TCP at 127.0.0.1 and 127.0.0.2 (a free port).
    tcp: bool,
    /// Mount a tmpfs of this many MiB over the data directory, in a private
    /// mount namespace of the server's own (gone with the server).
    tmpfs_mib: Option<u32>,
}

/// A server listening on a unix socket in its own temporary directory (and,
/// when asked, on 127.0.0.1/127.0.0.2), so parallel tests (and anything else
/// on the machine) can never be confused with it; killed by PID on drop.
struct Valkey {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Valkey {
    fn start() -> Valkey {
        Valkey::start_with(Options::default())
    }

    fn start_with(opts: Options) -> Valkey {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let server = required_path("APPLIANCE_VALKEY_SERVER");
        let module = required_path("STREAM_GUARD_MODULE");
        let spec = Spec::reference().unwrap();
        let acl = acl_render::render(&spec, |key| match key {
            "redis-admin-pass" => Some(ADMIN_PASSWORD.as_bytes()),
            "redis-visitor-pass" => Some(VISITOR_PASSWORD.as_bytes()),
            _ => None,
        })
        .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "stream-guard-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(dir.join("users.acl"), format!("{acl}{ROOT_LINE}\n")).unwrap();
        let log = std::fs::File::create(dir.join("valkey.log")).unwrap();
        let port = if opts.tcp { free_port() } else { 0 };
        let mut args: Vec<String> = vec!["--port".into(), port.to_string()];
        if opts.tcp {
            args.extend(["--bind".into(), "127.0.0.1 127.0.0.2".into()]);
        }
        let path = |p: &PathBuf| p.to_str().unwrap().to_string();
        args.extend([
            "--unixsocket".into(),
            path(&dir.join("valkey.sock")),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--enable-module-command".into(),
            "no".into(),
            "--dir".into(),
            path(&data),
            "--aclfile".into(),
            path(&dir.join("users.acl")),
        ]);
        args.extend(opts.server);
        args.extend(["--loadmodule".into(), path(&module)]);
        args.extend(
            [
                "append-only",
                VISITOR,
                STREAM,
                "admin",
                "admin",
                "data-dir",
                data.to_str().unwrap(),
                "max-pairs",
                "16",
                "max-bytes",
                "4096",
            ]
            .map(String::from),
        );
        args.extend(opts.guard);
        let mut command = match opts.tmpfs_mib {
            None => {
                let mut c = Command::new(&server);
                c.args(&args);
                c
            }
            Some(mib) => {
                // `exec` keeps the PID, so the child is the server itself and
                // /proc/<pid>/root reaches its mounts.
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(format!(
                        "mount -t tmpfs -o size={mib}m,mode=0700 stream-guard-test \"$1\" && shift && exec \"$@\""
                    ))
                    .arg("sh")
                    .arg(&data)
                    .arg(&server)
                    .args(&args);
                c
            }
        };
        let child = command
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut valkey = Valkey { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(valkey.dir.join("valkey.sock")).is_err() {
            if let Ok(Some(status)) = valkey.child.try_wait() {
                panic!(
                    "valkey exited ({status}) before listening:\n{}",
                    valkey.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "valkey did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        valkey
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("valkey.log")).unwrap_or_default()
    }

    /// The data directory as this process sees it: through the server's
    /// root when the server has its own mount namespace.
    fn data_dir(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
            .join(self.dir.strip_prefix("/").unwrap())
            .join("data")
    }

    /// Waits up to `secs` for a log line containing `text`.
    fn wait_log(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {secs} s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn root(&self) -> Connection {
        self.connect("testroot", "x")
    }

    fn connect(&self, user: &str, password: &str) -> Connection {
        let addr = redis::ConnectionAddr::Unix(self.dir.join("valkey.sock"));
        let info = redis::ConnectionInfo {
            addr,
            redis: redis::RedisConnectionInfo {
                username: Some(user.into()),
                password: Some(password.into()),
                ..Default::default()
            },
        };
        redis::Client::open(info).unwrap().get_connection().unwrap()
    }

    fn visitor(&self) -> Connection {
        self.connect(VISITOR, VISITOR_PASSWORD)
    }

    fn admin(&self) -> Connection {
        self.connect("admin", ADMIN_PASSWORD)
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(conn: &mut Connection, line: &[&str]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(line[0]);
    for a in &line[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn)
}

fn xlen(admin: &mut Connection) -> i64 {
    redis::cmd("XLEN").arg(STREAM).query(admin).unwrap()
}

fn append(visitor: &mut Connection, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("msg")
                .arg(format!("hello {i}"))
                .query(visitor)
                .unwrap()
        })
        .collect()
}

/// Asserts the command was refused by the guard with this reason.
fn assert_refused(conn: &mut Connection, line: &[&str], code: &str) {
    let err = run(conn, line).expect_err(&format!("{line:?} was accepted"));
    let text = err.to_string();
    assert!(
        text.contains(&format!("STREAM-GUARD-REFUSED:{code}")),
        "{line:?}: expected the guard's `{code}` refusal, got: {text}"
    );
}

#[test]
fn the_two_measured_attacks_fail_and_the_inbox_survives() {
    let valkey = Valkey::start();
    let (mut visitor, mut admin) = (valkey.visitor(), valkey.admin());
    let ids = append(&mut visitor, 5);
    assert_eq!(xlen(&mut admin), 5);

    assert_refused(
        &mut visitor,
        &["XADD", STREAM, "MAXLEN", "0", "*", "f", "v"],
        "option",
    );
    assert_eq!(xlen(&mut admin), 5, "MAXLEN 0 must not trim the inbox");

    let max = "18446744073709551615-18446744073709551615";
    assert_refused(
        &mut visitor,
        &["XADD", STREAM, max, "f", "v"],
        "explicit-id",
    );
    let next: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("msg")
        .arg("after the attack")
        .query(&mut visitor)
        .expect("the next visitor XADD * must still work");
    assert!(next > ids[4], "new id {next} after {}", ids[4]);
    assert_eq!(xlen(&mut admin), 6);
}

/// (visitor's command, the guard's reason)
const REFUSED: &[(&[&str], &str)] = &[
    (&["XADD", STREAM, "maxlen", "0", "*", "f", "v"], "option"),
    (
        &["XADD", STREAM, "MaxLen", "~", "0", "*", "f", "v"],
        "option",
    ),
    (
        &["XADD", STREAM, "MAXLEN", "=", "1", "*", "f", "v"],
        "option",
    ),
    (
        &["XADD", STREAM, "MINID", "99999999999999", "*", "f", "v"],
        "option",
    ),
    (
        &["XADD", STREAM, "minid", "~", "0", "*", "f", "v"],
        "option",
    ),
    (&["XADD", STREAM, "NOMKSTREAM", "*", "f", "v"], "option"),
    (
        &["XADD", STREAM, "nomkstream", "MAXLEN", "0", "*", "f", "v"],
        "option",
    ),
    (&["XADD", STREAM, "LIMIT", "10", "*", "f", "v"], "option"),
    (&["XADD", STREAM, "0-1", "f", "v"], "explicit-id"),
    (
        &["XADD", STREAM, "99999999999999-0", "f", "v"],
        "explicit-id",
    ),
    (&["XADD", STREAM, "1-*", "f", "v"], "explicit-id"),
    (&["XADD", STREAM, "*-0", "f", "v"], "explicit-id"),
    (&["xadd", STREAM, "5", "f", "v"], "explicit-id"),
    (&["XADD", STREAM, "*"], "no-fields"),
    (&["XADD", STREAM], "no-fields"),
    (&["XADD", STREAM, "*", "f"], "odd-fields"),
    (&["XADD", STREAM, "*", "f", "v", "g"], "odd-fields"),
    (&["XADD", "other", "*", "f", "v"], "other-key"),
    (
        &["XADD", "RUACH:STREAM:CONTACT", "*", "f", "v"],
        "other-key",
    ),
    (&["XADD", "ruach:stream:*", "*", "f", "v"], "other-key"),
    (
        &["xAdD", "ruach:stream:contact2", "*", "f", "v"],
        "other-key",
    ),
];

#[test]
fn every_other_shape_is_refused_and_nothing_changes() {
    let valkey = Valkey::start();
    let (mut visitor, mut admin) = (valkey.visitor(), valkey.admin());
    append(&mut visitor, 3);
    for (line, code) in REFUSED {
        assert_refused(&mut visitor, line, code);
    }
    assert_eq!(xlen(&mut admin), 3);
    let other: i64 = redis::cmd("EXISTS").arg("other").query(&mut admin).unwrap();
    assert_eq!(other, 0, "a refused XADD created a key");
}

#[test]
fn size_limits_hold() {
    let valkey = Valkey::start();
    let (mut visitor, mut admin) = (valkey.visitor(), valkey.admin());
    let mut pairs: Vec<String> = Vec::new();
    for i in 0..17 {
        pairs.push(format!("f{i}"));
        pairs.push("v".into());
    }
    let line = |n: usize| -> Vec<&str> {
        let mut l = vec!["XADD", STREAM, "*"];
        l.extend(pairs[..2 * n].iter().map(String::as_str));
        l
    };
    run(&mut visitor, &line(16)).expect("16 pairs are within the limit");
    assert_refused(&mut visitor, &line(17), "too-many-pairs");

    let big = "x".repeat(4095);
    run(&mut visitor, &["XADD", STREAM, "*", "f", &big]).expect("4096 bytes are within the limit");
    let too_big = "x".repeat(4096);
    assert_refused(
        &mut visitor,
        &["XADD", STREAM, "*", "f", &too_big],
        "too-large",
    );
    assert_eq!(xlen(&mut admin), 2);
}

#[test]
fn the_admin_is_untouched() {
    let valkey = Valkey::start();
    let (mut visitor, mut admin) = (valkey.visitor(), valkey.admin());
    append(&mut visitor, 10);
    run(
        &mut admin,
        &["XADD", STREAM, "MAXLEN", "3", "*", "by", "admin"],
    )
    .expect("admin XADD with MAXLEN");
    assert_eq!(xlen(&mut admin), 3, "the admin may trim");
    run(&mut admin, &["XADD", "admin:notes", "1-1", "f", "v"])
        .expect("admin XADD with an explicit id");
}

#[test]
fn modules_cannot_be_loaded_at_runtime() {
    let valkey = Valkey::start();
    let module = required_path("STREAM_GUARD_MODULE");
    let module = module.to_str().unwrap();
    let mut root = valkey.connect("testroot", "x");
    let err = run(&mut root, &["MODULE", "LOAD", module]).expect_err("MODULE LOAD must be refused");
    assert!(
        err.to_string().contains("MODULE command not allowed"),
        "even a superuser must be refused by enable-module-command no: {err}"
    );
    let mut admin = valkey.admin();
    let err = run(&mut admin, &["MODULE", "LIST"]).expect_err("admin has no MODULE");
    assert!(err.to_string().contains("NOPERM"), "{err}");
    // The guard is loaded: the server says so to the superuser.
    let list: Value = run(&mut root, &["MODULE", "LIST"]).unwrap_or(Value::Nil);
    let text = format!("{list:?}");
    assert!(text.contains("stream-guard"), "module list: {text}");
}

#[test]
fn a_bad_module_argument_stops_the_server() {
    let server = required_path("APPLIANCE_VALKEY_SERVER");
    let module = required_path("STREAM_GUARD_MODULE");
    let out = Command::new(&server)
        .args(["--port", "0", "--save", ""])
        .arg("--loadmodule")
        .arg(&module)
        .args(["append-only", VISITOR, STREAM, "trim", "yes"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the server started with a misconfigured guard"
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("stream-guard: refusing to load"), "{log}");
}

// ---------------------------------------------------------------------------
// The public-port guard: disk and memory refusal, the AUTH throttle, and
// connection slots.

const REFUSED_LINE: &str = "stream-guard: visitor writes refused:";
const ACCEPTED_LINE: &str = "stream-guard: visitor writes accepted again:";

fn count_lines(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

/// Appends 4000-byte entries as the visitor until the guard refuses one;
/// returns how many went in and the refusal's text.
fn fill_until_refused(visitor: &mut Connection, max: usize) -> (usize, String) {
    let big = "x".repeat(4000);
    for n in 0..max {
        let r: RedisResult<String> = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("f")
            .arg(&big)
            .query(visitor);
        if let Err(e) = r {
            return (n, e.to_string());
        }
    }
    panic!("{max} XADDs of 4000 bytes and no refusal");
}

/// Retries a visitor XADD until it goes in (bounded).
fn wait_accepted(visitor: &mut Connection, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r: RedisResult<String> = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("msg")
            .arg("back")
            .query(visitor);
        match r {
            Ok(_) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "visitor still refused after {secs} s: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_filling_disk_refuses_visitors_first_and_recovers_after_compaction() {
    // 8 MiB data disk, 1 MiB reserve, every write fsynced to the AOF.
    let valkey = Valkey::start_with(Options {
        tmpfs_mib: Some(8),
        guard: ["disk-reserve", "1048576"].map(String::from).to_vec(),
        server: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    });
    let (mut visitor, mut admin) = (valkey.visitor(), valkey.admin());
    let (n, err) = fill_until_refused(&mut visitor, 5000);
    assert!(err.contains("STREAM-GUARD-REFUSED:disk-low"), "{err}");
    assert!(n > 100, "refused after only {n} appends");
    let line = valkey.wait_log(REFUSED_LINE, 2);
    assert!(
        line.contains("visitor writes refused: disk free "),
        "{line}"
    );
    // The refusal came with room to spare: the admin still writes, and the
    // AOF rewrite fits.
    run(&mut admin, &["XADD", "admin:notes", "*", "by", "admin"]).expect("the admin writes on");
    assert_refused(&mut visitor, &["XADD", STREAM, "*", "f", "v"], "disk-low");
    let before = xlen(&mut admin);
    assert_eq!(before, i64::try_from(n).unwrap());

    // The admin trims and compacts; visitors get back in without a restart.
    run(&mut admin, &["XTRIM", STREAM, "MAXLEN", "0"]).unwrap();
    run(&mut valkey.root(), &["BGREWRITEAOF"]).unwrap();
    wait_accepted(&mut visitor, 10);
    let line = valkey.wait_log(ACCEPTED_LINE, 2);
    assert!(
        line.contains("visitor writes accepted again: disk free "),
        "{line}"
    );
    let log = valkey.log();
    assert_eq!(count_lines(&log, REFUSED_LINE), 1, "{log}");
    assert_eq!(count_lines(&log, ACCEPTED_LINE), 1, "{log}");
    // The data dir really was the small tmpfs.
    assert!(valkey.data_dir().join("appendonlydir").is_dir());
}

#[test]
fn memory_near_maxmemory_refuses_visitors_not_the_admin() {
    let valkey = Valkey::start_with(Options {
        guard: ["memory-refuse-percent", "90"].map(String::from).to_vec(),
        ..Options::default()
    });
    let (mut visitor, mut admin, mut root) = (valkey.visitor(), valkey.admin(), valkey.root());
    let info: String = redis::cmd("INFO").arg("memory").query(&mut root).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Room for about 2 MiB of entries before 90 %.
    let max = (used + 2 * 1024 * 1024) * 100 / 90;
    run(&mut root, &["CONFIG", "SET", "maxmemory", &max.to_string()]).unwrap();
    // The guard reads maxmemory at its next tick (in production it is set
    // once, on the command line at boot).
    std::thread::sleep(Duration::from_millis(600));
    let (n, err) = fill_until_refused(&mut visitor, 5000);
    assert!(
        err.contains("STREAM-GUARD-REFUSED:memory-low"),
        "after {n}: {err}"
    );
    let line = valkey.wait_log(REFUSED_LINE, 2);
    assert!(
        line.contains("visitor writes refused: memory used "),
        "{line}"
    );
    run(&mut admin, &["XADD", "admin:notes", "*", "by", "admin"]).expect("the admin writes on");
    run(
        &mut root,
        &["CONFIG", "SET", "maxmemory", &(max * 4).to_string()],
    )
    .unwrap();
    wait_accepted(&mut visitor, 5);
    let line = valkey.wait_log(ACCEPTED_LINE, 2);
    assert!(line.contains("memory used "), "{line}");
    let log = valkey.log();
    assert_eq!(count_lines(&log, REFUSED_LINE), 1, "{log}");
    assert_eq!(count_lines(&log, ACCEPTED_LINE), 1, "{log}");
}

/// A bare RESP connection over TCP from a chosen source address.
struct Raw {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(source: [u8; 4], port: u16) -> Raw {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let from = std::net::SocketAddr::from((source, 0));
        socket.bind(&from.into()).unwrap();
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        socket.connect(&to.into()).unwrap();
        let stream: std::net::TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, words: &[&str]) {
        assert!(self.try_send(words), "cannot send {words:?}");
    }

    fn try_send(&mut self, words: &[&str]) -> bool {
        use std::io::Write;
        let mut out = format!("*{}\r\n", words.len());
        for w in words {
            out.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        self.stream.write_all(out.as_bytes()).is_ok()
    }

    /// One reply line (simple string, error, or the header of anything
    /// else); `None` when the server closed the connection.
    fn line(&mut self) -> Option<String> {
        use std::io::Read;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn auth(&mut self, user: &str, password: &str) -> String {
        self.send(&["AUTH", user, password]);
        self.line().expect("the server closed the connection")
    }

    /// Waits until the server closes this connection; returns after how long.
    fn closed_within(&mut self, secs: u64) -> Duration {
        use std::io::Read;
        let start = Instant::now();
        self.stream
            .set_read_timeout(Some(Duration::from_secs(secs)))
            .unwrap();
        let mut chunk = [0u8; 64];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return start.elapsed(),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return start.elapsed()
                }
                Err(e) => panic!("not closed within {secs} s: {e}"),
            }
        }
    }
}

#[test]
fn auth_guessing_is_throttled_per_source_address() {
    let valkey = Valkey::start_with(Options {
        tcp: true,
        guard: ["auth-failures-per-minute", "3"].map(String::from).to_vec(),
        ..Options::default()
    });
    let port = valkey.port;
    let mut guesser = Raw::connect([127, 0, 0, 1], port);
    for i in 0..3 {
        let reply = guesser.auth(VISITOR, &format!("guess-{i}"));
        assert!(reply.starts_with("-WRONGPASS"), "guess {i}: {reply}");
    }
    // Over budget: refused before any check, the right password included,
    // and on a fresh connection from the same address, and through HELLO.
    let refused = "-ERR too many failed AUTH attempts from this address, retry later";
    assert_eq!(guesser.auth(VISITOR, "guess-3"), refused);
    assert_eq!(guesser.auth(VISITOR, VISITOR_PASSWORD), refused);
    let mut again = Raw::connect([127, 0, 0, 1], port);
    assert_eq!(again.auth("admin", ADMIN_PASSWORD), refused);
    again.send(&["HELLO", "2", "AUTH", VISITOR, VISITOR_PASSWORD]);
    assert_eq!(again.line().unwrap(), refused);

    // Another source address is not affected.
    let mut other = Raw::connect([127, 0, 0, 2], port);
    assert_eq!(other.auth(VISITOR, VISITOR_PASSWORD), "+OK");
    other.send(&["PING"]);
    assert_eq!(other.line().unwrap(), "+PONG");
    let mut hello = Raw::connect([127, 0, 0, 2], port);
    hello.send(&["HELLO", "2", "AUTH", "admin", ADMIN_PASSWORD]);
    assert!(
        hello.line().unwrap().starts_with('*'),
        "HELLO with the right password"
    );

    let line = valkey.wait_log("stream-guard: auth failures:", 2);
    assert!(
        line.contains("stream-guard: auth failures: 3 in the last ")
            && line.contains(" s from 1 addresses, 4 refused by the throttle"),
        "{line}"
    );
    // No password and no user name reach the log.
    let log = valkey.log();
    for secret in ["guess-0", "guess-3", VISITOR_PASSWORD, ADMIN_PASSWORD] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn silent_and_trickling_connections_are_closed_the_admin_is_not() {
    let valkey = Valkey::start_with(Options {
        tcp: true,
        guard: ["auth-timeout", "2", "command-timeout", "3"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    });
    let port = valkey.port;
    let mut admin = Raw::connect([127, 0, 0, 1], port);
    assert_eq!(admin.auth("admin", ADMIN_PASSWORD), "+OK");

    // Never authenticates.
    let mut silent = Raw::connect([127, 0, 0, 1], port);
    // Authenticates, then trickles a command one byte a second.
    let mut trickle = Raw::connect([127, 0, 0, 1], port);
    assert_eq!(trickle.auth(VISITOR, VISITOR_PASSWORD), "+OK");
    let t0 = Instant::now();
    let writer = std::thread::spawn({
        let mut stream = trickle.stream.try_clone().unwrap();
        move || {
            use std::io::Write;
            for b in b"*5\r\n$4\r\nXADD\r\n$20\r\nruach:stream:contact\r\n$1\r\n*\r\n" {
                if stream.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    let silent_after = silent.closed_within(6);
    assert!(
        silent_after >= Duration::from_millis(1500) && silent_after <= Duration::from_secs(4),
        "closed after {silent_after:?}"
    );
    trickle.closed_within(6);
    let trickle_after = t0.elapsed();
    assert!(
        trickle_after >= Duration::from_millis(2500) && trickle_after <= Duration::from_secs(5),
        "trickle closed after {trickle_after:?}"
    );
    writer.join().unwrap();

    // The admin, idle all along, is still there.
    admin.send(&["PING"]);
    assert_eq!(admin.line().unwrap(), "+PONG");
    let line = valkey.wait_log("stream-guard: closed ", 11);
    assert!(line.contains(" connections in the last "), "{line}");
    // Both closes reach the console, in one line or two (10 s apart).
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let log = valkey.log();
        let (mut auth, mut command) = (0, 0);
        for l in log.lines().filter(|l| l.contains("stream-guard: closed ")) {
            let n = |what: &str| -> u32 {
                let end = l.find(what).unwrap();
                l[..end].rsplit(['(', ' ']).next().unwrap().parse().unwrap()
            };
            auth += n(" auth timeout");
            command += n(" command timeout");
        }
        if auth >= 1 && command >= 1 {
            assert!(log.contains("to keep 32 slots for the admin)"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn slots_are_kept_for_the_admin() {
    // maxclients 12, 4 kept for the admin: non-admin connections are cut
    // back below 8.
    let valkey = Valkey::start_with(Options {
        tcp: true,
        guard: ["admin-reserved-slots", "4"].map(String::from).to_vec(),
        server: ["--maxclients", "12"].map(String::from).to_vec(),
        ..Options::default()
    });
    let port = valkey.port;
    let mut visitors: Vec<Raw> = Vec::new();
    for _ in 0..12 {
        let mut v = Raw::connect([127, 0, 0, 2], port);
        v.send(&["AUTH", VISITOR, VISITOR_PASSWORD]);
        visitors.push(v);
    }
    // Whatever the race with the sweep, the admin gets in and stays.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut admin = loop {
        let mut a = Raw::connect([127, 0, 0, 1], port);
        a.send(&["AUTH", "admin", ADMIN_PASSWORD]);
        match a.line() {
            Some(l) if l == "+OK" => break a,
            other => assert!(Instant::now() < deadline, "admin kept out: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(600));
    let mut root = valkey.root();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut root).unwrap();
    let connected = list.lines().count();
    assert!(
        connected < 8 + 1,
        "{connected} clients (the root's included):\n{list}"
    );
    let alive = visitors
        .iter_mut()
        .map(|v| {
            v.stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            // The AUTH reply, then the PONG; a closed one reads nothing.
            v.try_send(&["PING"])
                && v.line().as_deref() == Some("+OK")
                && v.line().as_deref() == Some("+PONG")
        })
        .filter(|alive| *alive)
        .count();
    assert!(alive < 8, "{alive} visitors kept");
    admin.send(&["PING"]);
    assert_eq!(admin.line().unwrap(), "+PONG", "the admin is never closed");
    let line = valkey.wait_log("to keep 4 slots for the admin)", 11);
    assert!(line.contains("stream-guard: closed "), "{line}");
}

#[test]
fn a_guard_without_admin_or_data_dir_does_not_load() {
    let server = required_path("APPLIANCE_VALKEY_SERVER");
    let module = required_path("STREAM_GUARD_MODULE");
    for args in [
        &["append-only", VISITOR, STREAM, "data-dir", "/tmp"][..],
        &["append-only", VISITOR, STREAM, "admin", "admin"][..],
    ] {
        let out = Command::new(&server)
            .args(["--port", "0", "--save", ""])
            .arg("--loadmodule")
            .arg(&module)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: the server started");
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(log.contains("stream-guard: refusing to load"), "{log}");
    }
}
