//! Console lines. Process names and command lines are attacker-chosen bytes:
//! they are escaped so a line stays one line and cannot fake another.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::model::ProcInfo;
use crate::policy::Decision;
use crate::Verdict;

/// Escapes bytes for a console line: printable ASCII as is (but `"` and `\`
/// escaped), everything else as `\xNN`; NUL separators of a command line
/// become spaces.
pub fn escape_bytes(bytes: &[u8], nul_as_space: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            0 if nul_as_space => out.push(' '),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// `pid=.. ppid=.. uid=ruid/euid exe=".." comm=".." cmdline=".."`.
pub fn render_process(p: &ProcInfo) -> String {
    let exe = match &p.exe {
        Some(path) => escape_bytes(path.as_os_str().as_encoded_bytes(), false),
        None => "?".to_owned(),
    };
    let cmdline = p.cmdline.strip_suffix(&[0]).unwrap_or(&p.cmdline);
    format!(
        "pid={} ppid={} uid={}/{} exe=\"{}\" comm=\"{}\" cmdline=\"{}\"",
        p.pid,
        p.ppid,
        p.uid,
        p.euid,
        exe,
        escape_bytes(&p.comm, false),
        escape_bytes(cmdline, true)
    )
}

/// One console line for a verdict: `procwatch: HALT <reason> [<path>]: <process>`.
pub fn render_verdict(v: &Verdict) -> String {
    let (word, reason) = match &v.decision {
        Decision::Allow => ("allow", String::new()),
        Decision::AllowLogged(r) => ("allow", r.to_string()),
        Decision::Halt(r) => ("HALT", r.to_string()),
    };
    let process = match &v.process {
        Some(p) => render_process(p),
        None => "no single process".to_owned(),
    };
    format!("procwatch: {word} {reason} [{}]: {process}", v.path)
}
