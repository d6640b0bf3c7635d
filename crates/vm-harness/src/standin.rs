//! The GCE metadata stand-in for local boots.
//!
//! QEMU's `guestfwd=tcp:169.254.169.254:80-cmd:<program>` runs `<program>`
//! once per guest connection with the connection on its stdin/stdout. The
//! program is a private copy of the executable that booted the VM, run as
//! `<copy> __metadata-standin --state <file>` ([`guestfwd_command`]): it
//! reads one HTTP request, answers it as the [`Mode`] in the state file
//! says, and exits. So every program that boots VMs through this crate
//! hands that subcommand ([`SUBCOMMAND`]) to [`main`] first thing (see the
//! crate documentation for why it is not a binary of its own). The test
//! network serves the same answers from a thread ([`serve_logged`]).
//!
//! The state file (0600, in a private temporary directory) carries the two
//! passwords and the mode, so no secret ever appears on a command line that
//! `ps` shows. Every request is appended to a log beside it (method, path,
//! status; never a value), so tests can tell that the guest asked.
//!
//! Modes exist for the fail-closed cases of the boot sequence: a missing
//! key, a wrong `Metadata-Flavor` reply header, an oversized body, and a
//! server that accepts and never answers.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The first argument that makes a program the stand-in.
pub const SUBCOMMAND: &str = "__metadata-standin";

/// The attribute prefix the appliance asks under.
pub const ATTRIBUTES_PATH: &str = "/computeMetadata/v1/instance/attributes/";
/// The admin password's metadata key.
pub const ADMIN_KEY: &str = "redis-admin-pass";
/// The visitor password's metadata key.
pub const VISITOR_KEY: &str = "redis-visitor-pass";
/// Body size in [`Mode::Oversized`]: well past the client's 4096-byte limit.
pub const OVERSIZED_LEN: usize = 64 * 1024;
/// The longest request head read before answering 400.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// File name of the request log beside the state file.
pub const LOG_NAME: &str = "standin.log";

/// How the stand-in answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", content = "key")]
pub enum Mode {
    /// Like GCE: 200 with `Metadata-Flavor: Google` and the value.
    Normal,
    /// This key answers 404 (with the flavor header, as GCE does); others
    /// are normal.
    MissingKey(String),
    /// 200 and the value, but `Metadata-Flavor: Evil`.
    WrongHeader,
    /// 200 with the flavor header and a body of [`OVERSIZED_LEN`] bytes.
    Oversized,
    /// Reads the request and never answers; exits when the guest hangs up.
    NeverAnswers,
    /// Like GCE, with every value followed by one `\n`: what
    /// `--metadata-from-file` sends for a text file (the password the
    /// operator typed is the value without it).
    LineEnding,
    /// The visitor's value carries a tab in the middle.
    ControlChar,
    /// The admin's value is [`SHORT_ADMIN_LEN`] characters long.
    ShortAdmin,
    /// The visitor's value is the admin's.
    SameSecrets,
}

/// The admin password's length in [`Mode::ShortAdmin`]: below init's
/// minimum.
pub const SHORT_ADMIN_LEN: usize = 8;

impl Mode {
    /// Parses the command-line spelling: `normal`, `missing-key[:<key>]`
    /// (default key: the visitor's), `wrong-header`, `oversized`,
    /// `never-answers`.
    pub fn parse(text: &str) -> Result<Mode> {
        Ok(match text {
            "normal" => Mode::Normal,
            "missing-key" => Mode::MissingKey(VISITOR_KEY.to_owned()),
            "wrong-header" => Mode::WrongHeader,
            "oversized" => Mode::Oversized,
            "never-answers" => Mode::NeverAnswers,
            "line-ending" => Mode::LineEnding,
            "control-char" => Mode::ControlChar,
            "short-admin" => Mode::ShortAdmin,
            "same-secrets" => Mode::SameSecrets,
            other => match other.strip_prefix("missing-key:") {
                Some(key) if !key.is_empty() => Mode::MissingKey(key.to_owned()),
                _ => return Err(Error::UnknownMode(other.to_owned())),
            },
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Normal => f.write_str("normal"),
            Mode::MissingKey(key) => write!(f, "missing-key:{key}"),
            Mode::WrongHeader => f.write_str("wrong-header"),
            Mode::Oversized => f.write_str("oversized"),
            Mode::NeverAnswers => f.write_str("never-answers"),
            Mode::LineEnding => f.write_str("line-ending"),
            Mode::ControlChar => f.write_str("control-char"),
            Mode::ShortAdmin => f.write_str("short-admin"),
            Mode::SameSecrets => f.write_str("same-secrets"),
        }
    }
}

/// A password for the local stand-in. Not a production secret (it lives in a
/// 0600 file for one run), but it is still kept out of `Debug` output and
/// logs so a test failure message never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a given value.
    pub fn new(value: String) -> Password {
        Password(value)
    }

    /// A fresh random password: 32 characters of `[A-Za-z0-9]` from
    /// `/dev/urandom`.
    pub fn generate() -> Result<Password> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = String::with_capacity(32);
        let mut file =
            fs::File::open("/dev/urandom").map_err(Error::file("open", "/dev/urandom"))?;
        let mut byte = [0u8; 1];
        while out.len() < 32 {
            file.read_exact(&mut byte)
                .map_err(Error::file("read", "/dev/urandom"))?;
            // 248 = 4 * 62: rejecting the rest keeps the choice uniform.
            if byte[0] < 248 {
                let idx = usize::from(byte[0]) % ALPHABET.len();
                if let Some(&c) = ALPHABET.get(idx) {
                    out.push(char::from(c));
                }
            }
        }
        Ok(Password(out))
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What the stand-in serves, read from the state file on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// How to answer.
    pub mode: Mode,
    /// `redis-admin-pass`.
    pub admin_pass: Password,
    /// `redis-visitor-pass`.
    pub visitor_pass: Password,
}

impl State {
    /// A state in `mode` with two fresh random passwords
    /// ([`Password::generate`]).
    pub fn generate(mode: Mode) -> Result<State> {
        Ok(State {
            mode,
            admin_pass: Password::generate()?,
            visitor_pass: Password::generate()?,
        })
    }

    /// The value served for a known key, as the mode shapes it.
    pub fn value(&self, key: &str) -> Option<String> {
        let admin = self.admin_pass.expose();
        let visitor = self.visitor_pass.expose();
        let v = match (key, &self.mode) {
            (ADMIN_KEY, Mode::ShortAdmin) => admin.chars().take(SHORT_ADMIN_LEN).collect(),
            (ADMIN_KEY, _) => admin.to_owned(),
            (VISITOR_KEY, Mode::SameSecrets) => admin.to_owned(),
            (VISITOR_KEY, Mode::ControlChar) => {
                let half = visitor.len() / 2;
                format!(
                    "{}\t{}",
                    visitor.get(..half).unwrap_or_default(),
                    visitor.get(half..).unwrap_or_default()
                )
            }
            (VISITOR_KEY, _) => visitor.to_owned(),
            _ => return None,
        };
        Some(match self.mode {
            Mode::LineEnding => v + "\n",
            _ => v,
        })
    }

    /// Writes the state to `path`, created 0600 (replacing an older one, so
    /// a test can change the mode between boots).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(Error::StateSerialize)?;
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::file("create", &tmp))?;
        file.write_all(&text).map_err(Error::file("write", &tmp))?;
        drop(file);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(Error::file("chmod", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::file("rename to", path))?;
        Ok(())
    }

    /// Reads a state file; refuses one that others may read.
    pub fn read(path: &Path) -> Result<State> {
        let meta = fs::metadata(path).map_err(Error::file("stat", path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::StateReadable(path.to_path_buf()));
        }
        let text = fs::read(path).map_err(Error::file("read", path))?;
        serde_json::from_slice(&text).map_err(|source| Error::StateParse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What one connection amounted to; written to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The request line's method and path (`-` if none could be read).
    pub request: String,
    /// The status sent, or `None` when nothing was sent.
    pub status: Option<u16>,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} -> {s}", self.request),
            None => write!(f, "{} -> no answer", self.request),
        }
    }
}

/// A parsed request head: request line and whether the flavor header came.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    has_flavor: bool,
}

/// Reads a request head (up to the blank line). `Ok(None)` when the peer
/// closed before sending a full head or it was too long.
fn read_request<R: BufRead>(input: &mut R) -> std::io::Result<Option<Request>> {
    let mut head: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = input
            .by_ref()
            .take(u64::try_from(MAX_REQUEST_HEAD).unwrap_or(u64::MAX))
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        total = total.saturating_add(n);
        if total > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        if trimmed.is_empty() {
            break;
        }
        head.push(trimmed.to_vec());
    }
    let Some((first, headers)) = head.split_first() else {
        return Ok(None);
    };
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let has_flavor = headers.iter().any(|h| {
        let h = String::from_utf8_lossy(h);
        match h.split_once(':') {
            Some((name, value)) => {
                name.trim().eq_ignore_ascii_case("metadata-flavor") && value.trim() == "Google"
            }
            None => false,
        }
    });
    Ok(Some(Request {
        method,
        path,
        has_flavor,
    }))
}

fn respond<W: Write>(
    out: &mut W,
    status: u16,
    reason: &str,
    flavor: Option<&str>,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    if let Some(flavor) = flavor {
        head.push_str(&format!("Metadata-Flavor: {flavor}\r\n"));
    }
    head.push_str("Content-Type: application/text\r\n");
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    head.push_str("Connection: close\r\n\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// Serves one connection: reads one request from `input`, answers on
/// `output` as `state.mode` says. In [`Mode::NeverAnswers`] it reads
/// `input` to its end (the guest hanging up) and sends nothing.
pub fn serve<R: Read, W: Write>(state: &State, input: R, output: &mut W) -> Result<Served> {
    serve_io(state, input, output).map_err(Error::io("serve a metadata request"))
}

fn serve_io<R: Read, W: Write>(state: &State, input: R, output: &mut W) -> std::io::Result<Served> {
    let mut input = BufReader::new(input);
    let Some(req) = read_request(&mut input)? else {
        return Ok(Served {
            request: "-".to_owned(),
            status: None,
        });
    };
    let request = format!("{} {}", req.method, req.path);
    if state.mode == Mode::NeverAnswers {
        // Hold the connection open until the guest gives up; a broken pipe
        // or QEMU's exit ends the read too, so this never outlives the VM.
        let _ = std::io::copy(&mut input, &mut std::io::sink());
        return Ok(Served {
            request,
            status: None,
        });
    }
    let path = req.path.split('?').next().unwrap_or("");
    let key = path.strip_prefix(ATTRIBUTES_PATH);
    let status = if req.method != "GET" {
        respond(output, 405, "Method Not Allowed", Some("Google"), b"")?;
        405
    } else if !req.has_flavor {
        // What GCE does without the request header.
        respond(
            output,
            403,
            "Forbidden",
            Some("Google"),
            b"Missing Metadata-Flavor:Google header.\n",
        )?;
        403
    } else {
        match (key.and_then(|k| state.value(k)), &state.mode) {
            (Some(_), Mode::MissingKey(missing)) if key == Some(missing.as_str()) => {
                respond(output, 404, "Not Found", Some("Google"), b"Not Found\n")?;
                404
            }
            (None, _) => {
                respond(output, 404, "Not Found", Some("Google"), b"Not Found\n")?;
                404
            }
            (Some(value), Mode::WrongHeader) => {
                respond(output, 200, "OK", Some("Evil"), value.as_bytes())?;
                200
            }
            (Some(_), Mode::Oversized) => {
                let body = vec![b'A'; OVERSIZED_LEN];
                // The client may hang up after its limit: not our failure.
                let _ = respond(output, 200, "OK", Some("Google"), &body);
                200
            }
            (Some(value), _) => {
                respond(output, 200, "OK", Some("Google"), value.as_bytes())?;
                200
            }
        }
    };
    Ok(Served {
        request,
        status: Some(status),
    })
}

/// The log beside a state file.
pub fn log_path(state_file: &Path) -> PathBuf {
    state_file.with_file_name(LOG_NAME)
}

/// Serves one connection on this process's stdin/stdout (what QEMU's
/// `guestfwd ... cmd:` gives it) with the state in `state_file`, then
/// appends one line to the log.
pub fn serve_stdio(state_file: &Path) -> Result<()> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    serve_logged(state_file, stdin, &mut stdout)
}

/// Serves one connection with the state in `state_file` (read now), then
/// appends one line to the log: the guestfwd program and the test
/// network's listener both answer through this.
pub fn serve_logged<R: Read, W: Write>(state_file: &Path, input: R, output: &mut W) -> Result<()> {
    let state = State::read(state_file)?;
    let served = serve(&state, input, output)?;
    let log = log_path(state_file);
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{} {served}", state.mode))
        .map_err(Error::file("append to", log))
}

/// The stand-in program: what follows [`SUBCOMMAND`] on its command line
/// (`--state <file>`); serves one connection on stdin/stdout.
pub fn main(args: &[String]) -> Result<()> {
    match args {
        [flag, file] if flag == "--state" => serve_stdio(Path::new(file)),
        _ => Err(Error::StandinUsage),
    }
}

/// The metadata program line for QEMU's `guestfwd`: a private copy of this
/// very executable (beside `state_file`, in the VM's directory, removed
/// with it) with [`SUBCOMMAND`] and the state file. A copy, because QEMU
/// starts the program once per guest connection for as long as the VM
/// runs, and a `cargo build` meanwhile (CI runs `cargo test` before e2e in
/// the same `cargo xtask ci`) replaces `target/debug/xtask`, leaving this
/// process's own path deleted.
pub fn guestfwd_command(state_file: &Path) -> Result<String> {
    let dir = state_file
        .parent()
        .ok_or_else(|| Error::StandinPath(state_file.to_path_buf()))?;
    let exe = dir.join("metadata-standin");
    fs::copy("/proc/self/exe", &exe).map_err(Error::file("copy this executable to", &exe))?;
    let line = format!(
        "{} {SUBCOMMAND} --state {}",
        exe.display(),
        state_file.display()
    );
    if line.contains(',') || exe.to_string_lossy().contains(' ') {
        return Err(Error::StandinPath(exe));
    }
    Ok(line)
}

/// The requests a stand-in served so far (one line each).
pub fn read_log(state_file: &Path) -> Vec<String> {
    fs::read_to_string(log_path(state_file))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(mode: Mode) -> State {
        State {
            mode,
            admin_pass: Password::new("admin-secret-1".into()),
            visitor_pass: Password::new("visitor-secret-2".into()),
        }
    }

    fn request(key: &str) -> Vec<u8> {
        format!(
            "GET {ATTRIBUTES_PATH}{key} HTTP/1.1\r\nHost: 169.254.169.254\r\n\
             Metadata-Flavor: Google\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes()
    }

    fn run(mode: Mode, req: &[u8]) -> (Served, String) {
        let mut out = Vec::new();
        let served = serve(&state(mode), req, &mut out).unwrap();
        (served, String::from_utf8(out).unwrap())
    }

    fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
        let head = reply.split("\r\n\r\n").next().unwrap();
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn body(reply: &str) -> &str {
        reply.split_once("\r\n\r\n").unwrap().1
    }

    #[test]
    fn table_of_modes() {
        // (mode, key, status, flavor header, body)
        // (mode, key, status, flavor header, body)
        type Case<'a> = (Mode, &'a str, Option<u16>, Option<&'a str>, String);
        let cases: Vec<Case> = vec![
            (
                Mode::Normal,
                ADMIN_KEY,
                Some(200),
                Some("Google"),
                "admin-secret-1".into(),
            ),
            (
                Mode::Normal,
                VISITOR_KEY,
                Some(200),
                Some("Google"),
                "visitor-secret-2".into(),
            ),
            (
                Mode::Normal,
                "other-key",
                Some(404),
                Some("Google"),
                "Not Found\n".into(),
            ),
            (
                Mode::MissingKey(VISITOR_KEY.into()),
                VISITOR_KEY,
                Some(404),
                Some("Google"),
                "Not Found\n".into(),
            ),
            (
                Mode::MissingKey(VISITOR_KEY.into()),
                ADMIN_KEY,
                Some(200),
                Some("Google"),
                "admin-secret-1".into(),
            ),
            (
                Mode::WrongHeader,
                ADMIN_KEY,
                Some(200),
                Some("Evil"),
                "admin-secret-1".into(),
            ),
            (
                Mode::Oversized,
                ADMIN_KEY,
                Some(200),
                Some("Google"),
                "A".repeat(OVERSIZED_LEN),
            ),
            (Mode::NeverAnswers, ADMIN_KEY, None, None, String::new()),
        ];
        for (mode, key, status, flavor, want_body) in cases {
            let (served, reply) = run(mode.clone(), &request(key));
            assert_eq!(served.status, status, "{mode} {key}");
            assert_eq!(served.request, format!("GET {ATTRIBUTES_PATH}{key}"));
            if status.is_none() {
                assert!(reply.is_empty(), "{mode}: sent {reply:?}");
                continue;
            }
            let code = status.unwrap().to_string();
            assert!(
                reply.starts_with(&format!("HTTP/1.1 {code} ")),
                "{mode}: {reply}"
            );
            assert_eq!(header(&reply, "metadata-flavor"), flavor, "{mode} {key}");
            assert_eq!(header(&reply, "connection"), Some("close"));
            let len: usize = header(&reply, "content-length").unwrap().parse().unwrap();
            assert_eq!(len, want_body.len());
            assert_eq!(body(&reply), want_body, "{mode} {key}");
        }
    }

    #[test]
    fn request_without_flavor_is_forbidden_like_gce() {
        let req = format!("GET {ATTRIBUTES_PATH}{ADMIN_KEY} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (served, reply) = run(Mode::Normal, req.as_bytes());
        assert_eq!(served.status, Some(403));
        assert!(!reply.contains("admin-secret-1"));
    }

    #[test]
    fn query_string_is_ignored_and_bare_newlines_accepted() {
        let req = format!(
            "GET {ATTRIBUTES_PATH}{ADMIN_KEY}?alt=text HTTP/1.1\nMetadata-Flavor: Google\n\n"
        );
        let (served, reply) = run(Mode::Normal, req.as_bytes());
        assert_eq!(served.status, Some(200));
        assert_eq!(body(&reply), "admin-secret-1");
    }

    #[test]
    fn truncated_or_huge_requests_get_no_answer() {
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(),
            [b"GET /".as_slice(), &vec![b'a'; MAX_REQUEST_HEAD * 2]].concat(),
        ];
        for req in cases {
            let (served, reply) = run(Mode::Normal, &req);
            assert_eq!(served.status, None);
            assert_eq!(served.request, "-");
            assert!(reply.is_empty());
        }
    }

    #[test]
    fn post_is_refused() {
        let req = format!(
            "POST {ATTRIBUTES_PATH}{ADMIN_KEY} HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n"
        );
        let (served, reply) = run(Mode::Normal, req.as_bytes());
        assert_eq!(served.status, Some(405));
        assert!(!reply.contains("secret"));
    }

    #[test]
    fn mode_spellings_round_trip() {
        for text in [
            "normal",
            "missing-key:redis-admin-pass",
            "wrong-header",
            "oversized",
            "never-answers",
        ] {
            assert_eq!(Mode::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Mode::parse("missing-key").unwrap(),
            Mode::MissingKey(VISITOR_KEY.into())
        );
        assert!(Mode::parse("missing-key:").is_err());
        assert!(Mode::parse("bogus").is_err());
    }

    #[test]
    fn state_file_is_private_and_round_trips() {
        let dir = crate::host::temp_dir("standin-test").unwrap();
        let path = dir.path().join("state.json");
        let s = state(Mode::MissingKey(ADMIN_KEY.into()));
        s.write(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(State::read(&path).unwrap(), s);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(State::read(&path), Err(Error::StateReadable(_))));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"{").unwrap();
        assert!(matches!(State::read(&path), Err(Error::StateParse { .. })));
    }

    #[test]
    fn the_program_takes_only_a_state_file() {
        for args in [
            &[][..],
            &["--state"],
            &["--mode", "x"],
            &["--state", "a", "b"],
        ] {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            assert!(matches!(main(&args), Err(Error::StandinUsage)), "{args:?}");
        }
    }

    #[test]
    fn guestfwd_runs_a_private_copy_of_this_executable() {
        let dir = crate::host::temp_dir("standin-test").unwrap();
        let state_file = dir.path().join("standin.json");
        let line = guestfwd_command(&state_file).unwrap();
        let exe = dir.path().join("metadata-standin");
        assert_eq!(
            line,
            format!(
                "{} {SUBCOMMAND} --state {}",
                exe.display(),
                state_file.display()
            )
        );
        assert_eq!(fs::read(&exe).unwrap(), fs::read("/proc/self/exe").unwrap());
    }

    #[test]
    fn served_requests_are_logged_without_values() {
        let dir = crate::host::temp_dir("standin-test").unwrap();
        let state_file = dir.path().join("standin.json");
        state(Mode::WrongHeader).write(&state_file).unwrap();
        let mut out = Vec::new();
        serve_logged(&state_file, request(ADMIN_KEY).as_slice(), &mut out).unwrap();
        serve_logged(&state_file, &b""[..], &mut out).unwrap();
        let log = read_log(&state_file);
        assert_eq!(
            log,
            [
                format!("wrong-header GET {ATTRIBUTES_PATH}{ADMIN_KEY} -> 200"),
                "wrong-header - -> no answer".to_owned()
            ]
        );
        assert!(log.iter().all(|l| !l.contains("secret")));
        let mode = fs::metadata(log_path(&state_file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn debug_never_shows_a_password() {
        let text = format!("{:?}", state(Mode::Normal));
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn generated_passwords_are_distinct_alphanumeric() {
        let a = Password::generate().unwrap();
        let b = Password::generate().unwrap();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        let s = State::generate(Mode::Oversized).unwrap();
        assert_eq!(s.mode, Mode::Oversized);
        assert_ne!(s.admin_pass, s.visitor_pass);
    }
}
