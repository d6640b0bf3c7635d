//! The pure parts of `cargo xtask bench compare`: the Debian guest's idle
//! measurement block (parsed from console lines), counting executables and
//! setuid/setgid files from a list of modes, counting non-zero RAM pages, and
//! the comparison table. No I/O here except reading a `Read` handed in.

use std::fmt::Write as _;
use std::io::Read;
use std::time::Duration;

/// The prefix of every line of the Debian guest's idle block.
pub const MARK: &str = "bench-compare:";

/// Lines the block may hold: a stock machine has a few dozen processes and
/// sockets; more means the block is not what the script printed.
const MAX_BLOCK_LINES: usize = 4096;

/// Why a block did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// No `bench-compare: begin <pid>` line.
    #[error("no `{MARK} begin <pid>` line")]
    NoBegin,
    /// No `bench-compare: end` line after the begin.
    #[error("no `{MARK} end` line after the begin")]
    NoEnd,
    /// A line of the block that is none of the known kinds.
    #[error("unexpected line in the idle block: {0:?}")]
    Line(String),
    /// More lines than [`MAX_BLOCK_LINES`].
    #[error("the idle block has more than {MAX_BLOCK_LINES} lines")]
    TooLong,
    /// `MemTotal` or `MemAvailable` or `MemFree` missing.
    #[error("the idle block lacks {0}")]
    Missing(&'static str),
}

/// One `ps -e -o pid=,ppid=,comm=` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Command name (may hold spaces).
    pub comm: String,
}

/// What the Debian guest printed once idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleBlock {
    /// The reporting script's own PID (it and its children are not counted).
    pub script_pid: u32,
    /// Every process `ps -e` listed.
    pub processes: Vec<Proc>,
    /// Every `ss -ltnupH` row, as printed.
    pub listening: Vec<String>,
    /// `/proc/meminfo` `MemTotal`, bytes.
    pub mem_total: u64,
    /// `/proc/meminfo` `MemFree`, bytes.
    pub mem_free: u64,
    /// `/proc/meminfo` `MemAvailable`, bytes.
    pub mem_available: u64,
}

/// `kthreadd`: every kernel thread is it or its child.
const KTHREADD_PID: u32 = 2;

impl IdleBlock {
    /// Userspace processes: not kernel threads (PID 2 and its children), not
    /// the reporting script and what it started.
    pub fn userspace(&self) -> Vec<&Proc> {
        self.processes
            .iter()
            .filter(|p| p.pid != KTHREADD_PID && p.ppid != KTHREADD_PID)
            .filter(|p| p.pid != self.script_pid && p.ppid != self.script_pid)
            .collect()
    }

    /// `MemTotal - MemAvailable`.
    pub fn mem_used(&self) -> u64 {
        self.mem_total.saturating_sub(self.mem_available)
    }

    /// `MemTotal - MemFree`.
    pub fn mem_not_free(&self) -> u64 {
        self.mem_total.saturating_sub(self.mem_free)
    }
}

/// Parses the last complete block among console `lines` (other console
/// output may come between its lines and is ignored).
pub fn parse_block<S: AsRef<str>>(lines: &[S]) -> Result<IdleBlock, BlockError> {
    let ours: Vec<&str> = lines
        .iter()
        .filter_map(|l| {
            l.as_ref()
                .trim_end()
                .split_once(MARK)
                .map(|(_, r)| r.trim())
        })
        .collect();
    let begin = ours
        .iter()
        .rposition(|l| l.starts_with("begin "))
        .ok_or(BlockError::NoBegin)?;
    let rest = ours.get(begin..).unwrap_or_default();
    let script_pid = rest
        .first()
        .and_then(|l| l.strip_prefix("begin "))
        .and_then(|p| p.trim().parse().ok())
        .ok_or(BlockError::NoBegin)?;
    let end = rest
        .iter()
        .position(|l| *l == "end")
        .ok_or(BlockError::NoEnd)?;
    let body = rest.get(1..end).unwrap_or_default();
    if body.len() > MAX_BLOCK_LINES {
        return Err(BlockError::TooLong);
    }
    let mut processes = Vec::new();
    let mut listening = Vec::new();
    let (mut total, mut free, mut avail) = (None, None, None);
    for line in body {
        let bad = || BlockError::Line((*line).to_owned());
        let (kind, value) = line.split_once(' ').ok_or_else(bad)?;
        match kind {
            "ps" => processes.push(parse_ps(value).ok_or_else(bad)?),
            "ss" => listening.push(value.trim().to_owned()),
            "mem" => {
                let (name, kib) = parse_meminfo(value).ok_or_else(bad)?;
                let bytes = kib.checked_mul(1024).ok_or_else(bad)?;
                match name {
                    "MemTotal" => total = Some(bytes),
                    "MemFree" => free = Some(bytes),
                    "MemAvailable" => avail = Some(bytes),
                    _ => return Err(bad()),
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(IdleBlock {
        script_pid,
        processes,
        listening,
        mem_total: total.ok_or(BlockError::Missing("MemTotal"))?,
        mem_free: free.ok_or(BlockError::Missing("MemFree"))?,
        mem_available: avail.ok_or(BlockError::Missing("MemAvailable"))?,
    })
}

fn parse_ps(value: &str) -> Option<Proc> {
    let mut it = value.trim_start().splitn(2, char::is_whitespace);
    let pid = it.next()?.parse().ok()?;
    let rest = it.next()?.trim_start();
    let mut it = rest.splitn(2, char::is_whitespace);
    let ppid = it.next()?.parse().ok()?;
    let comm = it.next().unwrap_or_default().trim().to_owned();
    Some(Proc { pid, ppid, comm })
}

/// `MemTotal:        1004000 kB` -> (`MemTotal`, 1004000).
fn parse_meminfo(value: &str) -> Option<(&str, u64)> {
    let (name, rest) = value.split_once(':')?;
    let kib = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some((name.trim(), kib))
}

/// Files on a root filesystem, counted by mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCounts {
    /// Regular files.
    pub regular: u64,
    /// Regular files with any execute bit.
    pub executables: u64,
    /// Regular files with the setuid or setgid bit.
    pub setid: u64,
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

impl FileCounts {
    /// Adds one file of `st_mode` `mode` (anything not regular is ignored).
    pub fn add(&mut self, mode: u32) {
        if mode & S_IFMT != S_IFREG {
            return;
        }
        self.regular += 1;
        if mode & 0o111 != 0 {
            self.executables += 1;
        }
        if mode & 0o6000 != 0 {
            self.setid += 1;
        }
    }
}

/// The guest page size the RAM dump is counted in.
pub const PAGE: usize = 4096;

/// Counts the `PAGE`-sized pages of `r` holding any non-zero byte, and all
/// pages (a short last page counts as a page).
pub fn nonzero_pages<R: Read>(mut r: R) -> std::io::Result<(u64, u64)> {
    let mut buf = vec![0u8; PAGE * 256];
    let (mut nonzero, mut total) = (0u64, 0u64);
    let mut filled = 0usize;
    loop {
        let n = r.read(buf.get_mut(filled..).unwrap_or_default())?;
        filled += n;
        if n != 0 && filled < buf.len() {
            continue;
        }
        for page in buf.get(..filled).unwrap_or_default().chunks(PAGE) {
            total += 1;
            if page.iter().any(|&b| b != 0) {
                nonzero += 1;
            }
        }
        if n == 0 {
            return Ok((nonzero, total));
        }
        filled = 0;
    }
}

/// One row of the comparison: a name and both figures, and the ratio
/// appliance/Debian when it means something.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is measured, and how.
    pub what: String,
    /// The appliance's figure, rendered.
    pub appliance: String,
    /// The Debian guest's figure, rendered.
    pub debian: String,
    /// appliance / Debian.
    pub ratio: Option<f64>,
}

impl Row {
    /// A row of two counts, with their ratio.
    pub fn counts(what: &str, appliance: u64, debian: u64) -> Row {
        Row {
            what: what.to_owned(),
            appliance: appliance.to_string(),
            debian: debian.to_string(),
            ratio: ratio(appliance as f64, debian as f64),
        }
    }

    /// A row of two byte sizes, in MiB, with their ratio.
    pub fn bytes(what: &str, appliance: Option<u64>, debian: Option<u64>) -> Row {
        let show = |b: Option<u64>| b.map_or_else(|| "-".to_owned(), mib);
        Row {
            what: what.to_owned(),
            appliance: show(appliance),
            debian: show(debian),
            ratio: appliance
                .zip(debian)
                .and_then(|(a, d)| ratio(a as f64, d as f64)),
        }
    }

    /// A row of two durations (seconds), with their ratio.
    pub fn seconds(what: &str, appliance: Option<Duration>, debian: Option<Duration>) -> Row {
        let show = |d: Option<Duration>| {
            d.map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        Row {
            what: what.to_owned(),
            appliance: show(appliance),
            debian: show(debian),
            ratio: appliance
                .zip(debian)
                .and_then(|(a, d)| ratio(a.as_secs_f64(), d.as_secs_f64())),
        }
    }

    /// A row of two rates (per second), with their ratio.
    pub fn rates(what: &str, appliance: Option<f64>, debian: Option<f64>) -> Row {
        let show = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}/s"));
        Row {
            what: what.to_owned(),
            appliance: show(appliance),
            debian: show(debian),
            ratio: appliance.zip(debian).and_then(|(a, d)| ratio(a, d)),
        }
    }

    /// A row of free text, no ratio.
    pub fn text(what: &str, appliance: &str, debian: &str) -> Row {
        Row {
            what: what.to_owned(),
            appliance: appliance.to_owned(),
            debian: debian.to_owned(),
            ratio: None,
        }
    }
}

/// `a / d`, when `d` is positive.
pub fn ratio(a: f64, d: f64) -> Option<f64> {
    (d > 0.0 && a.is_finite() && d.is_finite()).then(|| a / d)
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The table as Markdown (it goes into BENCHMARKS.md as printed). A ratio
/// under 0.01 is shown with more digits, so it never reads as zero.
pub fn render(rows: &[Row]) -> String {
    let head = ["", "appliance", "Debian 12", "appliance / Debian"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let ratio = match r.ratio {
                None => "-".to_owned(),
                Some(x) if x != 0.0 && x.abs() < 0.01 => format!("{x:.4}"),
                Some(x) => format!("{x:.2}"),
            };
            [
                r.what.replace('|', "\\|"),
                r.appliance.replace('|', "\\|"),
                r.debian.replace('|', "\\|"),
                ratio,
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, cell) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: [&str; 4]| {
        let [w0, w1, w2, w3] = width;
        let pad = |s: &str, w: usize| w.saturating_sub(s.chars().count());
        let _ = writeln!(
            out,
            "| {}{} | {}{} | {}{} | {}{} |",
            c[0],
            " ".repeat(pad(c[0], w0)),
            " ".repeat(pad(c[1], w1)),
            c[1],
            " ".repeat(pad(c[2], w2)),
            c[2],
            " ".repeat(pad(c[3], w3)),
            c[3],
        );
    };
    line(&mut out, head);
    let [w0, w1, w2, w3] = width;
    let _ = writeln!(
        out,
        "|{}|{}:|{}:|{}:|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 1),
        "-".repeat(w2 + 1),
        "-".repeat(w3 + 1)
    );
    for c in &cells {
        line(&mut out, [&c[0], &c[1], &c[2], &c[3]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the guest's script prints (as the console splits it), with a
    /// getty prompt and a kernel line in between.
    const BLOCK: &str = "\
bench-compare: begin 612
bench-compare: ps       1       0 systemd
bench-compare: ps       2       0 kthreadd
bench-compare: ps       3       2 rcu_gp
bench-compare: ps     180       1 systemd-journal
bench-compare: ps     401       1 sshd
bench-compare: ps     402       1 redis-server
[   61.200000] random: crng init done

Debian GNU/Linux 12 debian-bench ttyS0
bench-compare: ps     403       1 agetty
bench-compare: ps     612       1 sh
bench-compare: ps     613     612 ps
bench-compare: ps     614     612 sed
bench-compare: ss tcp   LISTEN 0      511          0.0.0.0:6379      0.0.0.0:*    users:((\"redis-server\",pid=402,fd=6))
bench-compare: ss tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=401,fd=3))
bench-compare: mem MemTotal:         997244 kB
bench-compare: mem MemFree:          600000 kB
bench-compare: mem MemAvailable:     800000 kB
bench-compare: end";

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_guest_block() {
        let b = parse_block(&lines(BLOCK)).unwrap();
        assert_eq!(b.script_pid, 612);
        assert_eq!(b.processes.len(), 10);
        let user: Vec<&str> = b.userspace().iter().map(|p| p.comm.as_str()).collect();
        assert_eq!(
            user,
            [
                "systemd",
                "systemd-journal",
                "sshd",
                "redis-server",
                "agetty"
            ]
        );
        assert_eq!(b.listening.len(), 2);
        assert!(b.listening[0].contains("0.0.0.0:6379"));
        assert_eq!(b.mem_total, 997_244 * 1024);
        assert_eq!(b.mem_used(), (997_244 - 800_000) * 1024);
        assert_eq!(b.mem_not_free(), (997_244 - 600_000) * 1024);
    }

    #[test]
    fn the_last_complete_block_wins() {
        let two = format!("{BLOCK}\n{}", BLOCK.replace("begin 612", "begin 700"));
        assert_eq!(parse_block(&lines(&two)).unwrap().script_pid, 700);
    }

    #[test]
    fn bad_blocks_are_refused() {
        type Case = (&'static str, BlockError);
        let cases: Vec<Case> = vec![
            ("nothing here", BlockError::NoBegin),
            (
                "bench-compare: begin x\nbench-compare: end",
                BlockError::NoBegin,
            ),
            (
                "bench-compare: begin 5\nbench-compare: ps 1 0 init",
                BlockError::NoEnd,
            ),
            (
                "bench-compare: begin 5\nbench-compare: ps one 0 init\nbench-compare: end",
                BlockError::Line("ps one 0 init".into()),
            ),
            (
                "bench-compare: begin 5\nbench-compare: what\nbench-compare: end",
                BlockError::Line("what".into()),
            ),
            (
                "bench-compare: begin 5\nbench-compare: mem MemTotal: 1 MB\nbench-compare: end",
                BlockError::Line("mem MemTotal: 1 MB".into()),
            ),
            (
                "bench-compare: begin 5\nbench-compare: mem MemTotal: 1 kB\nbench-compare: end",
                BlockError::Missing("MemFree"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_block(&lines(text)), Err(want), "{text}");
        }
    }

    #[test]
    fn counts_files_by_mode() {
        let mut c = FileCounts::default();
        for mode in [
            0o100_755, // executable
            0o100_644, // plain file
            0o104_755, // setuid executable
            0o102_755, // setgid executable
            0o040_755, // directory: not counted
            0o120_777, // symlink: not counted
            0o100_100, // owner-execute only
        ] {
            c.add(mode);
        }
        assert_eq!(
            c,
            FileCounts {
                regular: 5,
                executables: 4,
                setid: 2
            }
        );
    }

    #[test]
    fn counts_nonzero_pages() {
        let mut ram = vec![0u8; PAGE * 300 + 10];
        ram[5] = 1; // page 0
        ram[PAGE * 299 + 4095] = 7; // page 299
        ram[PAGE * 300 + 9] = 1; // the short last page
        let (nonzero, total) = nonzero_pages(std::io::Cursor::new(&ram)).unwrap();
        assert_eq!((nonzero, total), (3, 301));
        assert_eq!(nonzero_pages(std::io::empty()).unwrap(), (0, 0));
    }

    #[test]
    fn renders_the_table() {
        let rows = vec![
            Row::counts("userspace processes at idle", 2, 14),
            Row::bytes("image", Some(16 * 1024 * 1024), Some(160 * 1024 * 1024)),
            Row::seconds(
                "QEMU start -> first XADD",
                Some(Duration::from_millis(6500)),
                Some(Duration::from_secs(26)),
            ),
            Row::rates("XADD | sequential", Some(400.0), None),
            Row::counts("setuid/setgid files", 0, 25),
            Row::counts("tiny", 1, 1000),
            Row::text("listening sockets", "1 (spec)", "4"),
        ];
        insta::assert_snapshot!(render(&rows), @r###"
        |                             | appliance | Debian 12 | appliance / Debian |
        |-----------------------------|----------:|----------:|-------------------:|
        | userspace processes at idle |         2 |        14 |               0.14 |
        | image                       |  16.0 MiB | 160.0 MiB |               0.10 |
        | QEMU start -> first XADD    |    6.50 s |   26.00 s |               0.25 |
        | XADD \| sequential          |     400/s |         - |                  - |
        | setuid/setgid files         |         0 |        25 |               0.00 |
        | tiny                        |         1 |      1000 |             0.0010 |
        | listening sockets           |  1 (spec) |         4 |                  - |
        "###);
    }
}
