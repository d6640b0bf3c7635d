//! `/proc/PID/stat`, `/proc/PID/status`, `/proc/PID/cmdline`.

use crate::error::Error;

/// `PF_KTHREAD` in the `flags` field of `stat`.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// `PF_EXITING` in the `flags` field of `stat`: set by the kernel as the
/// task starts to exit (`exit_signals()` in `do_exit()`), never cleared.
pub const PF_EXITING: u64 = 0x0000_0004;

/// The fields of `/proc/PID/stat` the governor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Field 1.
    pub pid: u32,
    /// Field 2, between the first `(` and the last `)`: any bytes.
    pub comm: Vec<u8>,
    /// Field 3 (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// Field 4.
    pub ppid: u32,
    /// Field 9: `PF_*` flags.
    pub flags: u64,
    /// Field 14, clock ticks.
    pub utime: u64,
    /// Field 15, clock ticks.
    pub stime: u64,
    /// Field 20.
    pub num_threads: u64,
    /// Field 22, clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    /// Whether the task is a kernel thread.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// Whether the task is a zombie.
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }

    /// Whether the task is exiting (it never returns to user space).
    pub fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0
    }
}

const STAT: &str = "/proc/PID/stat";
const STATUS: &str = "/proc/PID/status";

fn parse_dec<T: std::str::FromStr>(
    bytes: &[u8],
    what: &'static str,
    detail: &'static str,
) -> Result<T, Error> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(Error::parse(what, detail));
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::parse(what, detail))
}

fn parse_signed_as_u64(
    bytes: &[u8],
    what: &'static str,
    detail: &'static str,
) -> Result<u64, Error> {
    // Some fields are printed signed; only their presence matters to us.
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    parse_dec::<u64>(digits, what, detail)
}

/// Parses `/proc/PID/stat`. The name is found between the first `(` and the
/// LAST `)`, since it may itself contain spaces, parentheses and newlines.
pub fn parse_stat(bytes: &[u8]) -> Result<Stat, Error> {
    let open = bytes
        .iter()
        .position(|&b| b == b'(')
        .ok_or(Error::parse(STAT, "no '('"))?;
    let close = bytes
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(Error::parse(STAT, "no ')'"))?;
    if close < open {
        return Err(Error::parse(STAT, "')' before '('"));
    }
    let pid_field = bytes.get(..open).ok_or(Error::parse(STAT, "no pid"))?;
    let pid_field = pid_field
        .strip_suffix(b" ")
        .ok_or(Error::parse(STAT, "no space after pid"))?;
    let pid = parse_dec(pid_field, STAT, "bad pid")?;
    let comm = bytes
        .get(open.saturating_add(1)..close)
        .ok_or(Error::parse(STAT, "no comm"))?
        .to_vec();
    let rest = bytes
        .get(close.saturating_add(1)..)
        .ok_or(Error::parse(STAT, "nothing after comm"))?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let rest = rest
        .strip_prefix(b" ")
        .ok_or(Error::parse(STAT, "no space after comm"))?;
    // After ") ": 0 state, 1 ppid, 2 pgrp, 3 session, 4 tty_nr, 5 tpgid,
    // 6 flags, 7 minflt, 8 cminflt, 9 majflt, 10 cmajflt, 11 utime,
    // 12 stime, 13 cutime, 14 cstime, 15 priority, 16 nice,
    // 17 num_threads, 18 itrealvalue, 19 starttime, 20 vsize, ...
    // vsize is required so that a file cut inside starttime is an error,
    // not a smaller start time.
    let mut fields = [&[][..]; 21];
    let mut it = rest.split(|&b| b == b' ');
    for slot in &mut fields {
        *slot = it.next().ok_or(Error::parse(STAT, "truncated"))?;
    }
    let [state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime, priority, nice, num_threads, itreal, starttime, vsize] =
        fields;
    let state = match state {
        [s] if s.is_ascii_alphabetic() => *s,
        _ => return Err(Error::parse(STAT, "bad state")),
    };
    for f in [
        pgrp, session, tty, tpgid, minflt, cminflt, majflt, cmajflt, cutime, cstime, priority,
        nice, itreal, vsize,
    ] {
        parse_signed_as_u64(f, STAT, "bad numeric field")?;
    }
    Ok(Stat {
        pid,
        comm,
        state,
        ppid: parse_dec(ppid, STAT, "bad ppid")?,
        flags: parse_dec(flags, STAT, "bad flags")?,
        utime: parse_dec(utime, STAT, "bad utime")?,
        stime: parse_dec(stime, STAT, "bad stime")?,
        num_threads: parse_dec(num_threads, STAT, "bad num_threads")?,
        start_time: parse_dec(starttime, STAT, "bad starttime")?,
    })
}

/// The fields of `/proc/PID/status` the governor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `Name:`, unescaped: the same bytes as `comm` in `stat`.
    pub name: Option<Vec<u8>>,
    /// `State:`, its letter (`R`, `S`, `Z`, ...).
    pub state: Option<u8>,
    /// `PPid:`.
    pub ppid: Option<u32>,
    /// `Uid:` real, effective, saved, filesystem.
    pub uids: [u32; 4],
    /// `Threads:`, if present.
    pub threads: Option<u64>,
    /// `VmHWM:` in KiB (peak RSS), if present (absent for kernel threads).
    pub vm_hwm_kib: Option<u64>,
    /// `NSpid:`, if present (Linux 4.1 and later).
    pub ns_pid: Option<NsPid>,
}

/// The `NSpid:` line: the process's pid in each PID namespace from the one
/// the procfs mount belongs to (first) down to the process's own (last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsPid {
    /// The pid as the procfs mount numbers it.
    pub outer: u32,
    /// The pid in the process's own PID namespace.
    pub inner: u32,
    /// How many namespaces the line lists (at least 1).
    pub levels: u32,
}

impl NsPid {
    /// Whether the procfs mount numbers pids as the process itself does:
    /// exactly one level, so the mount belongs to the process's own PID
    /// namespace.
    pub fn same_namespace(&self) -> bool {
        self.levels == 1 && self.outer == self.inner
    }
}

/// Parses `/proc/PID/status`. The kernel escapes newlines in `Name:`, so the
/// text is line-based; only the first line of each key counts, and only
/// complete (newline-terminated) lines, so a cut inside a number is not
/// read as a smaller number.
pub fn parse_status(bytes: &[u8]) -> Result<Status, Error> {
    let mut uids = None;
    let mut name = None;
    let mut state = None;
    let mut ppid = None;
    let mut threads = None;
    let mut vm_hwm_kib = None;
    let mut ns_pid = None;
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(last) => bytes.get(..last).unwrap_or_default(),
        None => &[],
    };
    for line in complete.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = (
            line.get(..colon).unwrap_or_default(),
            line.get(colon.saturating_add(1)..).unwrap_or_default(),
        );
        let mut words = value
            .split(|&b| b == b'\t' || b == b' ')
            .filter(|w| !w.is_empty());
        match key {
            b"Name" if name.is_none() => {
                // "Name:" is followed by one tab, then the escaped name,
                // which may itself hold spaces and tabs.
                let raw = value
                    .strip_prefix(b"\t")
                    .ok_or(Error::parse(STATUS, "no tab after Name:"))?;
                name = Some(unescape_status_name(raw));
            }
            b"State" if state.is_none() => {
                state = match words.next() {
                    Some([s]) if s.is_ascii_alphabetic() => Some(*s),
                    _ => return Err(Error::parse(STATUS, "bad State")),
                };
            }
            b"PPid" if ppid.is_none() => {
                let w = words
                    .next()
                    .ok_or(Error::parse(STATUS, "empty PPid line"))?;
                ppid = Some(parse_dec(w, STATUS, "bad PPid")?);
            }
            b"Uid" if uids.is_none() => {
                let mut u = [0u32; 4];
                for slot in &mut u {
                    let w = words.next().ok_or(Error::parse(STATUS, "short Uid line"))?;
                    *slot = parse_dec(w, STATUS, "bad uid")?;
                }
                uids = Some(u);
            }
            b"Threads" if threads.is_none() => {
                let w = words
                    .next()
                    .ok_or(Error::parse(STATUS, "empty Threads line"))?;
                threads = Some(parse_dec(w, STATUS, "bad Threads")?);
            }
            b"VmHWM" if vm_hwm_kib.is_none() => {
                let w = words
                    .next()
                    .ok_or(Error::parse(STATUS, "empty VmHWM line"))?;
                vm_hwm_kib = Some(parse_dec(w, STATUS, "bad VmHWM")?);
            }
            b"NSpid" if ns_pid.is_none() => {
                let mut levels = 0u32;
                let (mut outer, mut inner) = (0, 0);
                for w in words {
                    inner = parse_dec(w, STATUS, "bad NSpid")?;
                    if levels == 0 {
                        outer = inner;
                    }
                    levels = levels.saturating_add(1);
                }
                if levels == 0 {
                    return Err(Error::parse(STATUS, "empty NSpid line"));
                }
                ns_pid = Some(NsPid {
                    outer,
                    inner,
                    levels,
                });
            }
            _ => {}
        }
    }
    Ok(Status {
        name,
        state,
        ppid,
        uids: uids.ok_or(Error::parse(STATUS, "no Uid line"))?,
        threads,
        vm_hwm_kib,
        ns_pid,
    })
}

/// Undoes the kernel's escaping of `Name:` in `/proc/PID/status`: a
/// newline is shown as `\n` and a backslash as `\\`; every other byte
/// stands for itself (an unknown escape is kept as it is).
pub fn unescape_status_name(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(other) => out.extend([b'\\', other]),
            None => out.push(b'\\'),
        }
    }
    out
}

/// The first `limit` bytes of a command line (NUL-separated arguments).
pub fn bounded_cmdline(bytes: &[u8], limit: usize) -> Vec<u8> {
    bytes.get(..limit).unwrap_or(bytes).to_vec()
}

/// The header of a `linux_dirent64` record: `d_ino` (8 bytes), `d_off` (8),
/// `d_reclen` (2), `d_type` (1); the NUL-terminated name follows.
const DIRENT64_HEADER: usize = 19;

const DIRENTS: &str = "getdents64 records";

/// Appends to `pids` the numeric names in a buffer of `linux_dirent64`
/// records as `getdents64(2)` fills it (a procfs root lists one directory
/// per process, named by its pid, among other entries).
pub fn parse_dirent_pids(buf: &[u8], pids: &mut Vec<u32>) -> Result<(), Error> {
    let mut rest = buf;
    while !rest.is_empty() {
        let reclen = rest
            .get(16..18)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(|b| usize::from(u16::from_ne_bytes(b)))
            .ok_or(Error::parse(DIRENTS, "record header cut"))?;
        if reclen <= DIRENT64_HEADER {
            return Err(Error::parse(DIRENTS, "record shorter than its header"));
        }
        let record = rest
            .get(..reclen)
            .ok_or(Error::parse(DIRENTS, "record cut"))?;
        let name_field = record.get(DIRENT64_HEADER..).unwrap_or_default();
        let name_len = name_field
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::parse(DIRENTS, "name without NUL"))?;
        let name = name_field.get(..name_len).unwrap_or_default();
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            if let Ok(pid) = parse_dec::<u32>(name, DIRENTS, "pid out of range") {
                pids.push(pid);
            }
        }
        rest = rest.get(reclen..).unwrap_or_default();
    }
    Ok(())
}

/// The name in the first `linux_dirent64` record of `buf`, if it holds a
/// whole one.
pub fn first_dirent_name(buf: &[u8]) -> Option<&[u8]> {
    let reclen = buf
        .get(16..18)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(|b| usize::from(u16::from_ne_bytes(b)))?;
    let name_field = buf.get(DIRENT64_HEADER..reclen)?;
    let len = name_field.iter().position(|&b| b == 0)?;
    name_field.get(..len)
}

/// Encodes `linux_dirent64` records as the kernel lays them out (8-byte
/// aligned), for tests and fuzz seeds.
pub fn encode_dirents<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let len = (DIRENT64_HEADER + name.len() + 1).next_multiple_of(8);
        let Ok(reclen) = u16::try_from(len) else {
            continue;
        };
        let ino = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        out.extend(ino.to_ne_bytes());
        out.extend(ino.to_ne_bytes());
        out.extend(reclen.to_ne_bytes());
        out.push(4); // DT_DIR
        out.extend(name);
        out.resize(out.len() + (len - DIRENT64_HEADER - name.len()), 0);
    }
    out
}
