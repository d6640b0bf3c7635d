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

/// A server listening only on a unix socket in its own temporary directory, so
/// parallel tests (and anything else on the machine) can never be confused
/// with it; killed by PID on drop.
struct Valkey {
    child: Child,
    dir: PathBuf,
}

impl Valkey {
    fn start() -> Valkey {
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
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("users.acl"), format!("{acl}{ROOT_LINE}\n")).unwrap();
        let log = std::fs::File::create(dir.join("valkey.log")).unwrap();
        let child = Command::new(&server)
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.join("valkey.sock"))
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-module-command",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .arg("--aclfile")
            .arg(dir.join("users.acl"))
            .arg("--loadmodule")
            .arg(&module)
            .args([
                "append-only",
                VISITOR,
                STREAM,
                "max-pairs",
                "16",
                "max-bytes",
                "4096",
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut valkey = Valkey { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(valkey.dir.join("valkey.sock")).is_err() {
            if let Ok(Some(status)) = valkey.child.try_wait() {
                let log =
                    std::fs::read_to_string(valkey.dir.join("valkey.log")).unwrap_or_default();
                panic!("valkey exited ({status}) before listening:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "valkey did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        valkey
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
