//! The rendered file loaded by a real server (`redis-server`, the Debian
//! package; CI installs it): what each kind of connection may and may not do.
//!
//! Set `ACL_RENDER_SERVER` to another binary (e.g. `valkey-server`) to run the
//! same cases against it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use acl_render::{render, sha256_hex};
use appliance_spec::{Spec, SpecBuilder};
use redis::{Connection, RedisError, Value};

const ADMIN: &str = "admin";
const VISITOR: &str = "ruachtov-ai-visitors";
const STREAM: &str = "ruach:stream:contact";
const ADMIN_PASSWORD: &str = "test-admin-password-000";
const VISITOR_PASSWORD: &str = "test-visitor-password-000";

/// A server on 127.0.0.1 with our ACL file, killed (by PID) on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(acl_text: &str) -> Server {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "acl-render-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let acl_path = dir.join("users.acl");
        std::fs::write(&acl_path, acl_text).unwrap();

        // The server has no "any free port" option: borrow one from the kernel.
        let port = {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            listener.local_addr().unwrap().port()
        };
        let binary = std::env::var("ACL_RENDER_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--aclfile")
            .arg(&acl_path)
            // Let the ACL, not this switch, be what refuses DEBUG.
            .args(["--enable-debug-command", "yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "cannot start `{binary}`: {e}. These tests need a real server: \
                     `apt-get install redis-server` (Debian), or set ACL_RENDER_SERVER"
                )
            });
        let mut server = Server { child, port, dir };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "server exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                // The port was borrowed and given back, so another process
                // may have taken it first; ours would then fail to bind and
                // exit. A server that is still up a moment later owns it.
                std::thread::sleep(Duration::from_millis(300));
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("server exited with {status} after start:\n{}", self.log());
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not listening after 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A connection that has not authenticated.
    fn connect(&self) -> Connection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        client.get_connection().unwrap()
    }

    /// A connection authenticated as `user`.
    fn login(&self, user: &str, password: &str) -> Connection {
        let mut con = self.connect();
        let reply: Value = redis::cmd("AUTH")
            .arg(user)
            .arg(password)
            .query(&mut con)
            .unwrap();
        assert_eq!(reply, Value::Okay, "AUTH {user}");
        con
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn seed_000_server() -> Server {
    server_for(&Spec::reference().unwrap())
}

fn server_for(spec: &Spec) -> Server {
    let text = render(spec, |key| match key {
        "redis-admin-pass" => Some(ADMIN_PASSWORD.as_bytes()),
        "redis-visitor-pass" => Some(VISITOR_PASSWORD.as_bytes()),
        _ => None,
    })
    .unwrap();
    Server::start(&text)
}

/// The reference with `forks = "never"` (strict mode).
fn strict_spec() -> Spec {
    let text =
        appliance_spec::REFERENCE_TOML.replacen("forks = \"bounded\"", "forks = \"never\"", 1);
    let spec = Spec::from_toml_str(&text).unwrap();
    assert_eq!(spec.server().forks(), appliance_spec::Forks::Never);
    spec
}

fn run(con: &mut Connection, args: &[&str]) -> Result<Value, RedisError> {
    let mut cmd = redis::Cmd::new();
    for arg in args {
        cmd.arg(*arg);
    }
    cmd.query(con)
}

/// Asserts `args` fails with the error `code` (e.g. `NOPERM`), whose text
/// contains `detail`.
fn assert_refused(con: &mut Connection, who: &str, args: &[&str], code: &str, detail: &str) {
    match run(con, args) {
        Ok(v) => panic!("{who}: {args:?} was allowed: {v:?}"),
        Err(e) => {
            assert_eq!(
                e.code(),
                Some(code),
                "{who}: {args:?} failed, but not with {code}: {e}"
            );
            let text = e.detail().unwrap_or_default().to_lowercase();
            assert!(
                text.contains(detail),
                "{who}: {args:?}: {e} does not mention {detail:?}"
            );
        }
    }
}

const NOPERM: &str = "NOPERM";

/// What the ACL reports: the command itself, or one of its keys.
const CMD: &str = "permissions to run";
/// Redis 7.0 says "one of the keys", Valkey 9.1 "a key"; both start so.
const KEY: &str = "permissions to access";

#[test]
fn visitor_may_ping_and_xadd_to_its_stream_and_nothing_else() {
    let server = seed_000_server();
    let mut visitor = server.login(VISITOR, VISITOR_PASSWORD);

    assert_eq!(
        run(&mut visitor, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
    let id = run(&mut visitor, &["XADD", STREAM, "*", "msg", "hello"]).unwrap();
    assert!(matches!(id, Value::BulkString(_)), "XADD reply {id:?}");

    // (command, error code, what the error text says)
    let denied: &[(&[&str], &str, &str)] = &[
        (&["XADD", "other", "*", "msg", "hi"], NOPERM, KEY),
        (
            &["XADD", "ruach:stream:contact2", "*", "msg", "hi"],
            NOPERM,
            KEY,
        ),
        (
            &["XADD", "ruach:stream:contac", "*", "msg", "hi"],
            NOPERM,
            KEY,
        ),
        (&["XRANGE", STREAM, "-", "+"], NOPERM, CMD),
        (&["XREVRANGE", STREAM, "+", "-"], NOPERM, CMD),
        (&["XREAD", "STREAMS", STREAM, "0"], NOPERM, CMD),
        (&["XLEN", STREAM], NOPERM, CMD),
        (&["XDEL", STREAM, "0-1"], NOPERM, CMD),
        (&["XTRIM", STREAM, "MAXLEN", "0"], NOPERM, CMD),
        (&["DEL", STREAM], NOPERM, CMD),
        (&["GET", STREAM], NOPERM, CMD),
        (&["SET", STREAM, "x"], NOPERM, CMD),
        (&["SET", "other", "x"], NOPERM, CMD),
        (&["KEYS", "*"], NOPERM, CMD),
        (&["SCAN", "0"], NOPERM, CMD),
        (&["CONFIG", "GET", "*"], NOPERM, CMD),
        (&["EVAL", "return 1", "0"], NOPERM, CMD),
        (&["FLUSHALL"], NOPERM, CMD),
        (&["ACL", "WHOAMI"], NOPERM, CMD),
        (&["ACL", "LIST"], NOPERM, CMD),
        (&["DEBUG", "SLEEP", "0"], NOPERM, CMD),
        (&["SUBSCRIBE", "news"], NOPERM, CMD),
        (&["PUBLISH", "news", "x"], NOPERM, CMD),
        (&["CLIENT", "LIST"], NOPERM, CMD),
        (&["INFO"], NOPERM, CMD),
        (&["BGSAVE"], NOPERM, CMD),
        (&["BGREWRITEAOF"], NOPERM, CMD),
        (&["SELECT", "1"], NOPERM, CMD),
        (&["MULTI"], NOPERM, CMD),
        (&["GET", STREAM], NOPERM, CMD),
        // The server reports a refused EXEC as an aborted transaction.
        (&["EXEC"], "EXECABORT", "because of: noperm"),
    ];
    for (args, code, detail) in denied {
        assert_refused(&mut visitor, "visitor", args, code, detail);
    }
    // Still usable afterwards, and still only the one entry.
    assert_eq!(
        run(&mut visitor, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );

    let mut admin = server.login(ADMIN, ADMIN_PASSWORD);
    let len: i64 = redis::cmd("XLEN").arg(STREAM).query(&mut admin).unwrap();
    assert_eq!(len, 1);
}

#[test]
fn unauthenticated_connections_can_only_authenticate() {
    let server = seed_000_server();
    let mut anonymous = server.connect();
    let denied: &[&[&str]] = &[
        &["PING"],
        &["GET", STREAM],
        &["XADD", STREAM, "*", "msg", "hi"],
        &["XRANGE", STREAM, "-", "+"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "*"],
        &["ACL", "WHOAMI"],
        &["FLUSHALL"],
        &["HELLO", "3"],
    ];
    for args in denied {
        assert_refused(&mut anonymous, "unauthenticated", args, "NOAUTH", "auth");
    }

    // Wrong passwords, the default user, and the hash itself all fail.
    let visitor_hash = sha256_hex(VISITOR_PASSWORD.as_bytes());
    let bad_logins: &[&[&str]] = &[
        &["AUTH", VISITOR, "wrong-password"],
        &["AUTH", VISITOR, &visitor_hash],
        &["AUTH", ADMIN, VISITOR_PASSWORD],
        &["AUTH", "default", ""],
        &["AUTH", "default", ADMIN_PASSWORD],
        &["AUTH", ADMIN_PASSWORD],
        &["HELLO", "3", "AUTH", "default", "x"],
        &["HELLO", "3", "AUTH", VISITOR, "wrong-password"],
    ];
    for args in bad_logins {
        assert_refused(
            &mut anonymous,
            "unauthenticated",
            args,
            "WRONGPASS",
            "invalid username-password",
        );
    }
    assert_refused(
        &mut anonymous,
        "still unauthenticated",
        &["PING"],
        "NOAUTH",
        "auth",
    );
}

#[test]
fn admin_reads_the_visitors_entries_but_has_no_dangerous_commands() {
    let server = seed_000_server();
    let mut visitor = server.login(VISITOR, VISITOR_PASSWORD);
    let id: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("msg")
        .arg("hello admin")
        .query(&mut visitor)
        .unwrap();

    let mut admin = server.login(ADMIN, ADMIN_PASSWORD);
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(&mut admin)
        .unwrap();
    assert_eq!(
        entries,
        [(id, vec!["msg".to_owned(), "hello admin".to_owned()])]
    );

    let allowed: &[&[&str]] = &[
        &["PING"],
        &["XLEN", STREAM],
        &["XREAD", "STREAMS", STREAM, "0"],
        &["SET", "admin:note", "x"],
        &["GET", "admin:note"],
        &["DEL", "admin:note"],
        &["SCAN", "0"],
        &["TYPE", STREAM],
        &["INFO", "server"],
        &["BGSAVE"],
    ];
    for args in allowed {
        if let Err(e) = run(&mut admin, args) {
            panic!("admin: {args:?} refused: {e}");
        }
    }

    let denied: &[&[&str]] = &[
        &["CONFIG", "GET", "*"],
        &["CONFIG", "SET", "dir", "/tmp"],
        &["DEBUG", "SLEEP", "0"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["ACL", "LIST"],
        &["ACL", "SETUSER", "x", "on", "nopass", "+@all", "~*"],
        &["KEYS", "*"],
        &["SHUTDOWN", "NOSAVE"],
        &["MODULE", "LIST"],
        &["CLIENT", "LIST"],
        &["MONITOR"],
        &["SUBSCRIBE", "news"],
        &["EVAL", "return 1", "0"],
    ];
    for args in denied {
        assert_refused(&mut admin, "admin", args, "NOPERM", CMD);
    }
    // The stream survived all of that.
    let len: i64 = redis::cmd("XLEN").arg(STREAM).query(&mut admin).unwrap();
    assert_eq!(len, 1);

    // The operator's chore: trim the stream, then compact the AOF (the
    // rewrite is started, or scheduled after the BGSAVE above).
    let trimmed: i64 = redis::cmd("XTRIM")
        .arg(STREAM)
        .arg("MAXLEN")
        .arg("0")
        .query(&mut admin)
        .unwrap();
    assert_eq!(trimmed, 1);
    let reply: String = redis::cmd("BGREWRITEAOF").query(&mut admin).unwrap();
    assert!(
        reply.starts_with("Background append only file rewriting"),
        "{reply}"
    );
}

#[test]
fn glob_characters_in_the_key_match_only_that_key() {
    let key = r"contact:[*?]\x";
    let spec = SpecBuilder::reference()
        .set("users[1].stream", key)
        .build()
        .unwrap();
    let text = render(&spec, |_| Some(b"a-shared-test-password".as_slice())).unwrap();
    let server = Server::start(&text);
    let mut visitor = server.login(VISITOR, "a-shared-test-password");

    run(&mut visitor, &["XADD", key, "*", "f", "v"]).unwrap();
    // Each would match if the pattern were read as a glob.
    for other in [
        r"contact:*?]\x",
        r"contact:[*?]x",
        "contact:a",
        r"contact:[ab]\x",
        "contact:?",
        "contact:",
    ] {
        assert_refused(
            &mut visitor,
            "visitor",
            &["XADD", other, "*", "f", "v"],
            "NOPERM",
            KEY,
        );
    }
}

#[test]
fn server_exits_on_a_file_that_does_not_parse() {
    // Guards the harness: a broken file must make start() fail, not pass
    // silently against some default ACL.
    let result = std::panic::catch_unwind(|| Server::start("user admin on #nothex +@all\n"));
    assert!(result.is_err());
}

/// Strict mode: nobody may make the server fork. The admin keeps its
/// operator commands but loses BGSAVE and BGREWRITEAOF; every other command
/// that can fork (or re-enable what forks) was `@dangerous` already.
/// (`MODULE LOAD`, also `@dangerous`, is refused before the ACL by this
/// server's default `enable-module-command no`, as in the appliance.)
#[test]
fn strict_mode_refuses_every_forking_command_to_everyone() {
    let server = server_for(&strict_spec());
    let mut admin = server.login(ADMIN, ADMIN_PASSWORD);
    let mut visitor = server.login(VISITOR, VISITOR_PASSWORD);
    let allowed: &[&[&str]] = &[
        &["PING"],
        &["XADD", STREAM, "*", "msg", "hi"],
        &["XTRIM", STREAM, "MAXLEN", "0"],
        &["INFO", "persistence"],
    ];
    for args in allowed {
        if let Err(e) = run(&mut admin, args) {
            panic!("strict admin: {args:?} refused: {e}");
        }
    }
    let forking: &[&[&str]] = &[
        &["BGSAVE"],
        &["BGSAVE", "SCHEDULE"],
        &["BGREWRITEAOF"],
        &["SAVE"],
        &["SYNC"],
        &["PSYNC", "?", "-1"],
        &["REPLICAOF", "127.0.0.1", "1"],
        &["SLAVEOF", "127.0.0.1", "1"],
        &["CONFIG", "SET", "auto-aof-rewrite-percentage", "100"],
        &["CONFIG", "SET", "save", "1 1"],
        &["CONFIG", "SET", "appendonly", "yes"],
        &["DEBUG", "RELOAD"],
        &["FLUSHALL"],
        &["SHUTDOWN", "NOSAVE"],
    ];
    for args in forking {
        assert_refused(&mut admin, "strict admin", args, NOPERM, CMD);
        assert_refused(&mut visitor, "strict visitor", args, NOPERM, CMD);
    }
    // Nothing forked: no child ran, none is running.
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut admin)
        .unwrap();
    for field in [
        "rdb_bgsave_in_progress:0",
        "aof_rewrite_in_progress:0",
        "aof_rewrite_scheduled:0",
    ] {
        assert!(info.contains(field), "{field} not in {info}");
    }
    // The same file with bounded forks lets the admin do both.
    let bounded = seed_000_server();
    let mut admin = bounded.login(ADMIN, ADMIN_PASSWORD);
    for args in [&["BGSAVE"][..], &["BGREWRITEAOF"][..]] {
        if let Err(e) = run(&mut admin, args) {
            panic!("bounded admin: {args:?} refused: {e}");
        }
    }
}
