//! The module inside a real Valkey on this machine: the Valkey built from
//! the pinned source loads the module built from this crate, with the
//! admin's and the visitor's ACL rules of the appliance. The admin may call
//! every step and gets an outcome back; the visitor gets NOPERM; the server
//! keeps serving after all of them.
//!
//! The server runs as `nobody` in a network namespace of its own with no
//! interface up (`unshare --net`, then `setpriv`), so no step reaches
//! anything outside it (the metadata connect fails at routing). What the
//! host's kernel answers differs from the appliance's, so only the answers
//! any unprivileged process gets are asserted; the table of outcomes is
//! printed. Children the steps leave (the fork that stays, the CLONE_VM
//! process) die with the server's process group.
//!
//! Needs two paths, which `cargo xtask ci` provides after building both:
//! `APPLIANCE_VALKEY_SERVER` (the pinned Valkey's `valkey-server`) and
//! `INTRUDER_MODULE` (`libintruder.so`, built with `--features module`).
//! Without them the test fails and says how to get them; it is never
//! skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use intruder::{Errno, Outcome, COMMAND, MARKER, STEPS};

/// `nobody` on Debian.
const NOBODY: u32 = 65534;

fn required_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{var} is not set: run `cargo xtask ci` (it builds the pinned Valkey and the \
             intruder module and sets it), or set it by hand"
        ),
    }
}

/// The server, killed with its whole process group (and so every child a
/// step left) on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// In the data directory: the only one the server (nobody) may write.
    fn socket(&self) -> PathBuf {
        self.dir.join("data/valkey.sock")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> Server {
    let server = required_path("APPLIANCE_VALKEY_SERVER");
    let module = required_path("INTRUDER_MODULE");
    let dir = std::env::temp_dir().join(format!("intruder-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The server runs as nobody: it reads its copies, writes only `data`.
    let so = dir.join("intruder.so");
    std::fs::copy(&module, &so).unwrap();
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("users.acl"),
        format!(
            "user default off\nuser admin on nopass {}\nuser visitor on nopass {} %W~s\n",
            acl_render::ADMIN_RULES,
            acl_render::VISITOR_RULES
        ),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args([&format!("{NOBODY}:{NOBODY}")])
        .arg(&data)
        .arg(dir.join("users.acl"))
        .status()
        .unwrap();
    assert!(chown.success());
    let log = std::fs::File::create(dir.join("valkey.log")).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let child = Command::new("unshare")
        .args(["--net", "--", "setpriv"])
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(&server)
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .args(["--unixsocket", &path(&data.join("valkey.sock"))])
        .args([
            "--dir",
            &path(&data),
            "--aclfile",
            &path(&dir.join("users.acl")),
        ])
        .args(["--enable-module-command", "no"])
        .args(["--loadmodule", &path(&so)])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut s = Server { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(s.socket()).is_err() {
        assert!(
            Instant::now() < deadline && s.child.try_wait().unwrap().is_none(),
            "the server did not start: {}",
            std::fs::read_to_string(s.dir.join("valkey.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// A connection authenticated as `user`; commands answer one line.
struct Client {
    reader: BufReader<UnixStream>,
    stream: UnixStream,
}

impl Client {
    fn new(s: &Server, user: &str) -> Client {
        let stream = UnixStream::connect(s.socket()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut c = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        assert_eq!(c.cmd(&["AUTH", user, "any"]), "+OK");
        c
    }

    /// Sends a command; returns its reply line (`+...` or `-...`).
    fn cmd(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(out.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }
}

#[test]
fn every_step_answers_the_admin_and_never_the_visitor() {
    // A root process the steps aimed at the governor may try to kill or
    // trace: as nobody they must not.
    let mut target = Command::new("sleep").arg("120").spawn().unwrap();
    let target_pid = target.id().to_string();
    let s = start();
    let log = std::fs::read_to_string(s.dir.join("valkey.log")).unwrap();
    assert!(log.contains(MARKER), "no load line with the marker:\n{log}");

    let mut visitor = Client::new(&s, "visitor");
    let mut admin = Client::new(&s, "admin");
    let mut table = Vec::new();
    for step in &STEPS {
        let denied = visitor.cmd(&[COMMAND, step.name]);
        assert!(denied.starts_with("-NOPERM"), "{}: {denied}", step.name);
        let mut args = vec![COMMAND, step.name];
        if step.target == intruder::steps::Target::GovernorPid {
            args.push(&target_pid);
        }
        let reply = admin.cmd(&args);
        let text = reply
            .strip_prefix('+')
            .unwrap_or_else(|| panic!("{}: {reply}", step.name));
        let outcome =
            Outcome::parse(text).unwrap_or_else(|| panic!("{}: unparsable {text:?}", step.name));
        table.push(format!("{:<18} {}", step.name, outcome.reply()));
        let unprivileged = match step.name {
            "setuid-root" | "mount" | "kill-governor" | "ptrace-governor" => Some(Errno::EPERM),
            _ => None,
        };
        if let Some(errno) = unprivileged {
            assert!(
                matches!(&outcome, Outcome::Refused { errno: e, .. } if *e == errno),
                "{}: {outcome:?}",
                step.name
            );
        }
    }
    println!("{}", table.join("\n"));
    for (args, want) in [
        (vec![COMMAND], "-usage: INTRUDER.STEP"),
        (vec![COMMAND, "nope"], "-no step named \"nope\""),
        (vec![COMMAND, "kill-governor"], "-step kill-governor needs"),
    ] {
        let got = admin.cmd(&args);
        assert!(got.starts_with(want), "{args:?}: {got}");
    }
    assert_eq!(
        admin.cmd(&["PING"]),
        "+PONG",
        "the server survived every step"
    );
    assert!(
        target.try_wait().unwrap().is_none(),
        "the stand-in governor was killed"
    );
    let _ = target.kill();
    let _ = target.wait();
}
