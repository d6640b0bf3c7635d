//! Reading the appliance's serial console: pure matchers for the lines init
//! (`appliance: ...`), the governor (`procwatch: ...`), the stream-guard
//! module (`stream-guard: ...`), the server and the kernel print. They take
//! a line's text ([`crate::Line::text`]) and never panic.
//!
//! A kernel message may be printed into the middle of a line the appliance
//! writes, so matchers look for their marker anywhere in a line and parse
//! from there. Process fields are the governor's escaped form
//! (`procwatch::render::render_process`): printable ASCII as is, `"` and
//! `\` escaped, everything else `\xNN`.
//!
//! Two line formats were first defined here, for the e2e cases, and then
//! printed to match:
//! - [`SEAL_ROW`]: at the seal, the governor prints one line per userspace
//!   process (`procwatch: seal: pid=.. ppid=.. uid=r/e exe=".." comm=".."
//!   cmdline=".."`), then `procwatch: seal: end (<n> userspace processes)`.
//! - [`FIREWALL_READBACK`]: after loading the sealed ruleset, init reads its
//!   rules back from the kernel, checks them rule by rule against those of
//!   the nft text (`pf_rules::render_nft`), and prints
//!   `appliance: firewall sealed ruleset read back sha256=<64 hex> (<n> rules match)`
//!   with the SHA-256 of that text (`pf_rules::Firewall::verify`).

/// Init's prefix.
pub const APPLIANCE: &str = "appliance: ";
/// A fail-closed halt by init: `appliance: FATAL <step>: <reason>`.
pub const FATAL: &str = "appliance: FATAL ";
/// A governor verdict: `procwatch: HALT <reason> [<path>]: <process>`.
pub const HALT_VERDICT: &str = "procwatch: HALT ";
/// A logged allow: `procwatch: allow <reason> [<path>]: <process>`.
pub const ALLOW_VERDICT: &str = "procwatch: allow ";
/// One row of the seal table (format defined here; see the module docs).
pub const SEAL_ROW: &str = "procwatch: seal: ";
/// The power-button line of the governor.
pub const POWER_BUTTON: &str = "procwatch: power button pressed";
/// The kernel's last word after `reboot(RB_HALT_SYSTEM)`.
pub const KERNEL_HALTED: &str = "reboot: System halted";
/// The kernel's last word after `reboot(RB_POWER_OFF)`.
pub const KERNEL_POWER_DOWN: &str = "reboot: Power down";
/// Init's exec of the server.
pub const EXEC_SERVER: &str = "appliance: exec ";
/// The read-back firewall line (format defined here; see the module docs).
pub const FIREWALL_READBACK: &str = "appliance: firewall sealed ruleset read back sha256=";
/// Init's memory budget line (figures follow as `key=value`, bytes).
pub const MEMORY_BUDGET: &str = "appliance: memory budget ";
/// The guard starts refusing visitor writes (disk or memory low).
pub const GUARD_WRITES_REFUSED: &str = "stream-guard: visitor writes refused: ";
/// The guard accepts visitor writes again.
pub const GUARD_WRITES_ACCEPTED: &str = "stream-guard: visitor writes accepted again: ";
/// The guard's bounded-rate report of failed AUTH attempts.
pub const GUARD_AUTH_FAILURES: &str = "stream-guard: auth failures: ";
/// The guard's bounded-rate report of connections it closed.
pub const GUARD_CLOSED: &str = "stream-guard: closed ";
/// Valkey's line when an AOF rewrite completed.
pub const AOF_REWRITE_DONE: &str = "Background AOF rewrite finished successfully";

/// The part of `line` from `marker` on, if present.
pub fn from_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).and_then(|i| line.get(i..))
}

/// `appliance: FATAL <step>: <reason>` -> `(step, reason)`.
pub fn fatal(line: &str) -> Option<(String, String)> {
    let rest = from_marker(line, FATAL)?.get(FATAL.len()..)?;
    let (step, reason) = rest.split_once(": ")?;
    Some((step.to_owned(), reason.to_owned()))
}

/// `appliance: init <version> starting`.
pub fn is_init_banner(line: &str) -> bool {
    from_marker(line, "appliance: init ").is_some_and(|r| r.trim_end().ends_with(" starting"))
}

/// `appliance: governor started as pid <n>` (init) or `appliance: governor
/// pid <n> watching ...` (the governor) -> the governor's pid.
pub fn governor_pid(line: &str) -> Option<u32> {
    if let Some(rest) = from_marker(line, "appliance: governor started as pid ") {
        let digits = rest.get("appliance: governor started as pid ".len()..)?;
        return digits.split_whitespace().next()?.parse().ok();
    }
    let rest = from_marker(line, "appliance: governor pid ")?;
    let digits = rest.get("appliance: governor pid ".len()..)?;
    digits.split_whitespace().next()?.parse().ok()
}

/// A process as the governor prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Parent.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// `exe` link (`?` when unreadable).
    pub exe: String,
    /// `comm`.
    pub comm: String,
    /// Command line, NULs as spaces.
    pub cmdline: String,
}

/// Reads one escaped, quoted field value starting right after `"`;
/// returns the value and the rest after the closing quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), s.get(i + 1..)?)),
            b'\\' => match bytes.get(i + 1)? {
                b'x' => {
                    let hex = s.get(i + 2..i + 4)?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                &c => {
                    out.push(c);
                    i += 2;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

fn field<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let rest = s.trim_start().strip_prefix(name)?.strip_prefix('=')?;
    Some(rest)
}

fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s.get(..end)?.parse().ok()?, s.get(end..)?))
}

/// Parses `pid=.. ppid=.. uid=r/e exe=".." comm=".." cmdline=".."`
/// (anything after the cmdline is ignored).
pub fn parse_process(s: &str) -> Option<Proc> {
    let (pid, s) = number(field(s, "pid")?)?;
    let (ppid, s) = number(field(s, "ppid")?)?;
    let (uid, s) = number(field(s, "uid")?)?;
    let (euid, s) = number(s.strip_prefix('/')?)?;
    let rest = field(s, "exe")?;
    let (exe, s) = match rest.strip_prefix('"') {
        Some(q) => unquote(q)?,
        None => {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest.get(..end)?.to_owned(), rest.get(end..)?)
        }
    };
    let (comm, s) = unquote(field(s, "comm")?.strip_prefix('"')?)?;
    let (cmdline, _) = unquote(field(s, "cmdline")?.strip_prefix('"')?)?;
    Some(Proc {
        pid,
        ppid,
        uid,
        euid,
        exe,
        comm,
        cmdline,
    })
}

/// A governor verdict line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictLine {
    /// The reason text (`process not allowed by policy`, ...).
    pub reason: String,
    /// The path that saw it (`event`, `rescan`, `seal`, ...).
    pub path: String,
    /// The process, when one is named.
    pub process: Option<Proc>,
}

fn verdict(line: &str, marker: &str) -> Option<VerdictLine> {
    let rest = from_marker(line, marker)?.get(marker.len()..)?;
    let open = rest.find(" [")?;
    let reason = rest.get(..open)?.to_owned();
    let after = rest.get(open + 2..)?;
    let (path, process) = after.split_once("]: ")?;
    Some(VerdictLine {
        reason,
        path: path.to_owned(),
        process: parse_process(process),
    })
}

/// `procwatch: HALT ...`.
pub fn halt_verdict(line: &str) -> Option<VerdictLine> {
    verdict(line, HALT_VERDICT)
}

/// `procwatch: allow ...` (an allowed-and-logged process: BGSAVE's child).
pub fn allow_verdict(line: &str) -> Option<VerdictLine> {
    verdict(line, ALLOW_VERDICT)
}

/// A seal-table row -> the process; `None` for other lines and the end row.
pub fn seal_row(line: &str) -> Option<Proc> {
    let rest = from_marker(line, SEAL_ROW)?.get(SEAL_ROW.len()..)?;
    parse_process(rest)
}

/// The seal table's end row: `procwatch: seal: end (<n> userspace processes)`.
pub fn seal_end(line: &str) -> Option<u32> {
    let rest = from_marker(line, SEAL_ROW)?.get(SEAL_ROW.len()..)?;
    let n = rest.strip_prefix("end (")?;
    number(n).map(|(n, _)| n)
}

/// Init's read-back of the sealed ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallReadback {
    /// SHA-256 of the nft text the kernel's rules were checked against
    /// (lowercase hex).
    pub sha256: String,
    /// How many rules matched.
    pub rules: u32,
}

/// Parses `... read back sha256=<64 hex> (<n> rules match)`.
pub fn firewall_readback(line: &str) -> Option<FirewallReadback> {
    let rest = from_marker(line, FIREWALL_READBACK)?.get(FIREWALL_READBACK.len()..)?;
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    if hex.len() != 64 {
        return None;
    }
    let rest = rest.get(64..)?.strip_prefix(" (")?;
    let (rules, rest) = number(rest)?;
    rest.strip_prefix(" rules match)")?;
    Some(FirewallReadback {
        sha256: hex.to_ascii_lowercase(),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_lines() {
        let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
            (
                "appliance: FATAL fetch-secret: redis-visitor-pass: not found (404)",
                Some(("fetch-secret", "redis-visitor-pass: not found (404)")),
            ),
            (
                "[    3.1] xyzappliance: FATAL net: no link",
                Some(("net", "no link")),
            ),
            ("appliance: init 0.1.0 starting", None),
            ("appliance: FATAL nocolon", None),
        ];
        for (line, want) in cases {
            let got = fatal(line);
            assert_eq!(
                got.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                want,
                "{line}"
            );
        }
    }

    #[test]
    fn banner_and_governor_pid() {
        assert!(is_init_banner("appliance: init 0.1.0 starting"));
        assert!(!is_init_banner("appliance: init 0.1.0 started"));
        assert_eq!(
            governor_pid("appliance: governor started as pid 73"),
            Some(73)
        );
        assert_eq!(
            governor_pid("appliance: governor pid 73 watching (server /usr/bin/valkey-server uid 6379, rescan every 500 ms)"),
            Some(73)
        );
        assert_eq!(governor_pid("appliance: governor: no /dev/watchdog"), None);
    }

    /// Lines as `procwatch::render` prints them.
    #[test]
    fn verdicts_and_processes() {
        let line = r#"procwatch: HALT process not allowed by policy [event]: pid=91 ppid=73 uid=0/0 exe="/init" comm="init" cmdline="/proc/self/exe --stray""#;
        let v = halt_verdict(line).unwrap();
        assert_eq!(v.reason, "process not allowed by policy");
        assert_eq!(v.path, "event");
        let p = v.process.unwrap();
        assert_eq!(
            p,
            Proc {
                pid: 91,
                ppid: 73,
                uid: 0,
                euid: 0,
                exe: "/init".into(),
                comm: "init".into(),
                cmdline: "/proc/self/exe --stray".into(),
            }
        );
        let line = r#"procwatch: allow allowed child (server fork) [event]: pid=120 ppid=1 uid=6379/6379 exe="/usr/bin/valkey-server" comm="redis-rdb-bgsave" cmdline="/usr/bin/valkey-server *:6379""#;
        let v = allow_verdict(line).unwrap();
        assert_eq!(v.reason, "allowed child (server fork)");
        assert_eq!(v.process.unwrap().comm, "redis-rdb-bgsave");
        assert!(halt_verdict(line).is_none());
        let line = "procwatch: HALT process events lost [event loss]: no single process";
        let v = halt_verdict(line).unwrap();
        assert_eq!((v.path.as_str(), v.process), ("event loss", None));
    }

    #[test]
    fn escapes_are_decoded_and_cannot_fake_fields() {
        let s = r#"pid=5 ppid=1 uid=0/0 exe=? comm="a\" cmdline=\"x" cmdline="\x1b[2J\\ ok""#;
        let p = parse_process(s).unwrap();
        assert_eq!(p.exe, "?");
        assert_eq!(p.comm, "a\" cmdline=\"x");
        assert_eq!(p.cmdline, "\u{1b}[2J\\ ok");
        for bad in [
            "pid=x",
            "pid=1 ppid=2 uid=3",
            r#"pid=1 ppid=0 uid=1/1 exe="/a comm="b""#,
            r#"pid=1 ppid=0 uid=1/1 exe="\x4" comm="" cmdline="""#,
        ] {
            assert!(parse_process(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn seal_table_rows() {
        let line = r#"procwatch: seal: pid=1 ppid=0 uid=6379/6379 exe="/usr/bin/valkey-server" comm="valkey-server" cmdline="/usr/bin/valkey-server /etc/valkey/valkey.conf""#;
        assert_eq!(seal_row(line).unwrap().pid, 1);
        assert_eq!(
            seal_row("procwatch: seal: end (2 userspace processes)"),
            None
        );
        assert_eq!(
            seal_end("procwatch: seal: end (2 userspace processes)"),
            Some(2)
        );
        assert_eq!(
            seal_end("procwatch: seal: end (x userspace processes)"),
            None
        );
        assert_eq!(seal_end(line), None);
    }

    #[test]
    fn firewall_readback_line() {
        let hex = "ab".repeat(32);
        let upper = "AB".repeat(32);
        let cases: Vec<(String, Option<(&str, u32)>)> = vec![
            (
                format!("{FIREWALL_READBACK}{hex} (10 rules match)"),
                Some((&hex, 10)),
            ),
            (
                format!("[    1.2] {FIREWALL_READBACK}{upper} (0 rules match)\r"),
                Some((&hex, 0)),
            ),
            (format!("{FIREWALL_READBACK}{hex}"), None),
            (format!("{FIREWALL_READBACK}{hex} (x rules match)"), None),
            (format!("{FIREWALL_READBACK}{hex} (10 rules)"), None),
            (format!("{FIREWALL_READBACK}{hex}a (10 rules match)"), None),
            (format!("{FIREWALL_READBACK}abc (10 rules match)"), None),
        ];
        for (line, want) in cases {
            let got = firewall_readback(&line);
            let want = want.map(|(h, n)| FirewallReadback {
                sha256: h.to_owned(),
                rules: n,
            });
            assert_eq!(got, want, "{line:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn matchers_never_panic(line in "\\PC{0,200}") {
            let _ = fatal(&line);
            let _ = is_init_banner(&line);
            let _ = governor_pid(&line);
            let _ = halt_verdict(&line);
            let _ = allow_verdict(&line);
            let _ = seal_row(&line);
            let _ = seal_end(&line);
            let _ = firewall_readback(&line);
            let _ = parse_process(&line);
        }

        #[test]
        fn process_fields_never_panic(tail in "[ -~]{0,120}") {
            let _ = parse_process(&format!("pid=1 ppid=0 uid=0/0 exe=\"{tail}"));
            let _ = halt_verdict(&format!("procwatch: HALT r [event]: pid=1 ppid=0 uid=0/0 exe=? comm=\"{tail}"));
        }
    }
}
