//! The `/proc` reader: a [`ProcessSource`] over procfs.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::model::ProcInfo;
use crate::parse::proc::{bounded_cmdline, parse_stat, parse_status};
use crate::traits::ProcessSource;

/// Default bound on the command line kept per process.
pub const DEFAULT_CMDLINE_LIMIT: usize = 512;

/// Reads processes from a procfs mount.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
    cmdline_limit: usize,
    /// Command lines from the last snapshot, by pid and start time: a
    /// process's command line is only re-read when it is new or exec'd.
    cmdlines: HashMap<u32, (u64, PathBuf, Vec<u8>)>,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc", DEFAULT_CMDLINE_LIMIT)
    }
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

impl ProcFs {
    /// A reader of the procfs mounted at `root`, keeping at most
    /// `cmdline_limit` bytes of each command line.
    pub fn new(root: impl Into<PathBuf>, cmdline_limit: usize) -> Self {
        Self {
            root: root.into(),
            cmdline_limit,
            cmdlines: HashMap::new(),
        }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read_file(&self, pid: u32, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.root.join(pid.to_string()).join(name);
        match read_small(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if vanished(&e) => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn read_cmdline(&self, pid: u32) -> Vec<u8> {
        let path = self.root.join(pid.to_string()).join("cmdline");
        let Ok(file) = fs::File::open(path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        let limit = u64::try_from(self.cmdline_limit).unwrap_or(u64::MAX);
        // A process may have exited or be unreadable: an empty line then.
        if file.take(limit).read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        bounded_cmdline(&buf, self.cmdline_limit)
    }

    /// Reads one process; `Ok(None)` if it is gone (or was replaced by a new
    /// process with the same pid while being read).
    pub fn read_process(&self, pid: u32) -> Result<Option<ProcInfo>, Error> {
        self.read_process_with(pid, None)
    }

    /// Like [`ProcFs::read_process`], taking the command line from `known`
    /// (start time, exe, command line) when the process is the same one
    /// running the same exe.
    fn read_process_with(
        &self,
        pid: u32,
        known: Option<&(u64, PathBuf, Vec<u8>)>,
    ) -> Result<Option<ProcInfo>, Error> {
        let Some(stat_bytes) = self.read_file(pid, "stat")? else {
            return Ok(None);
        };
        let stat = parse_stat(&stat_bytes)?;
        if stat.is_kernel_thread() {
            return Ok(Some(ProcInfo {
                pid,
                ppid: stat.ppid,
                uid: 0,
                euid: 0,
                exe: None,
                comm: stat.comm,
                cmdline: Vec::new(),
                kernel_thread: true,
                zombie: false,
                start_time: stat.start_time,
            }));
        }
        let Some(status_bytes) = self.read_file(pid, "status")? else {
            return Ok(None);
        };
        let status = parse_status(&status_bytes)?;
        // Zombies, kernel threads and processes gone mid-read show no exe;
        // an unprivileged reader may not see others' exe.
        let exe = fs::read_link(self.root.join(pid.to_string()).join("exe")).ok();
        let cmdline = match (known, &exe) {
            (Some((start, known_exe, line)), Some(exe))
                if *start == stat.start_time && known_exe == exe =>
            {
                line.clone()
            }
            _ => self.read_cmdline(pid),
        };
        // The pid may have been reused between the reads: if the start time
        // changed, what we read mixes two processes.
        let Some(again) = self.read_file(pid, "stat")? else {
            return Ok(None);
        };
        match parse_stat(&again) {
            Ok(s) if s.start_time == stat.start_time => {}
            _ => return Ok(None),
        }
        let [uid, euid, _, _] = status.uids;
        Ok(Some(ProcInfo {
            pid,
            ppid: stat.ppid,
            uid,
            euid,
            exe,
            comm: stat.comm,
            cmdline,
            kernel_thread: false,
            zombie: stat.state == b'Z',
            start_time: stat.start_time,
        }))
    }

    /// The pids listed in the mount.
    pub fn pids(&self) -> Result<Vec<u32>, Error> {
        let dir = fs::read_dir(&self.root).map_err(|source| Error::Read {
            path: self.root.clone(),
            source,
        })?;
        let mut pids = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|source| Error::Read {
                path: self.root.clone(),
                source,
            })?;
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
                continue;
            }
            if let Some(pid) = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }
}

impl ProcessSource for ProcFs {
    fn snapshot(&mut self) -> Result<Vec<ProcInfo>, Error> {
        let mut out = Vec::new();
        let mut cmdlines = HashMap::new();
        for pid in self.pids()? {
            match self.read_process_with(pid, self.cmdlines.get(&pid)) {
                Ok(Some(p)) => {
                    if let Some(exe) = &p.exe {
                        cmdlines.insert(pid, (p.start_time, exe.clone(), p.cmdline.clone()));
                    }
                    out.push(p);
                }
                Ok(None) => {}
                // The process exists but cannot be read or parsed: keep a
                // bare record so the policy judges it (no exe matches no rule).
                Err(_) => out.push(ProcInfo {
                    pid,
                    ppid: 0,
                    uid: u32::MAX,
                    euid: u32::MAX,
                    exe: None,
                    comm: Vec::new(),
                    cmdline: Vec::new(),
                    kernel_thread: false,
                    zombie: false,
                    start_time: 0,
                }),
            }
        }
        self.cmdlines = cmdlines;
        Ok(out)
    }

    fn process(&mut self, pid: u32) -> Result<Option<ProcInfo>, Error> {
        self.read_process(pid)
    }
}

/// Reads a small procfs file with plain `read` calls: `fs::read` would also
/// `statx` and `lseek` for a size hint that procfs does not have.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len.saturating_mul(2), 0);
        }
        let Some(spare) = buf.get_mut(len..) else {
            break;
        };
        match file.read(spare) {
            Ok(0) => break,
            Ok(n) => len = len.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}
