//! The `/proc` reader: a [`ProcessSource`] over procfs.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::sys;
use crate::error::Error;
use crate::model::ProcInfo;
use crate::parse::proc::{bounded_cmdline, parse_stat, parse_status};
use crate::traits::ProcessSource;

/// Default bound on the command line kept per process.
pub const DEFAULT_CMDLINE_LIMIT: usize = 512;

/// Reads processes from a procfs mount.
///
/// A snapshot reads every user process in full (`stat`, `status`, the `exe`
/// link; the command line only when the process is new or exec'd). It
/// also holds a pidfd for every process it has read. A pidfd names exactly
/// one process and becomes readable once that process exits, so:
///
/// - a kernel thread whose pidfd is still quiet is the same task as last
///   time, and its identity cannot have changed (a `PF_KTHREAD` task never
///   execs, and the reader reports uid 0 for kernel threads anyway). It is
///   taken from the last snapshot without a read: one `poll` over all
///   pidfds replaces a `stat` read per kernel thread.
/// - a user process is re-read; its pidfd, quiet after the reads, proves
///   the pid was not reused while they ran. Without a pidfd, `stat` is
///   read again and the start times compared.
///
/// Pidfds are used only when `pidfd_open(2)` works and the mount belongs
/// to the caller's own PID namespace (checked once through `self/status`'s
/// `NSpid:` line), because `pidfd_open` numbers pids in that namespace.
/// Otherwise, or for a process whose pidfd cannot be opened (`EMFILE`),
/// every process is read in full every time.
#[derive(Debug)]
pub struct ProcFs {
    root: PathBuf,
    cmdline_limit: usize,
    /// What the last snapshot read, by pid.
    known: HashMap<u32, Known>,
    pidfds: Pidfds,
    files_read: Cell<u64>,
    kernel_threads_reused: u64,
}

/// What the reader remembers of one process between snapshots.
#[derive(Debug)]
struct Known {
    info: ProcInfo,
    /// Names the process `info` describes; `None` if none could be had.
    pidfd: Option<OwnedFd>,
}

/// Whether pidfds can name the processes this mount lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pidfds {
    /// Not checked yet (checked at the first snapshot).
    Unchecked,
    /// `pidfd_open` works and the mount is in the caller's PID namespace.
    Usable,
    /// Not used: unsupported, another namespace's mount, or switched off.
    Off,
}

/// Counters of the reader's work, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// procfs files read (`stat`, `status`, `cmdline`) and `exe` links
    /// resolved.
    pub files_read: u64,
    /// Kernel threads a snapshot took from the previous one, unread,
    /// because their pidfd showed them alive.
    pub kernel_threads_reused: u64,
}

/// One process as read, and whether its pidfd vouches for the read.
struct ReadProcess {
    info: ProcInfo,
    /// The pidfd opened before the reads was still quiet after them: every
    /// read was of the process it names.
    vouched: bool,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc", DEFAULT_CMDLINE_LIMIT)
    }
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// A process that exists but cannot be read or parsed: a bare record, so
/// the policy judges it (no exe matches no rule).
fn unreadable(pid: u32) -> ProcInfo {
    ProcInfo {
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
    }
}

impl ProcFs {
    /// A reader of the procfs mounted at `root`, keeping at most
    /// `cmdline_limit` bytes of each command line.
    pub fn new(root: impl Into<PathBuf>, cmdline_limit: usize) -> Self {
        Self {
            root: root.into(),
            cmdline_limit,
            known: HashMap::new(),
            pidfds: Pidfds::Unchecked,
            files_read: Cell::new(0),
            kernel_threads_reused: 0,
        }
    }

    /// The same reader without pidfds: every snapshot reads every process
    /// in full, and pid reuse during a read is caught by reading `stat`
    /// twice. For comparison and for tests of that path.
    #[must_use]
    pub fn without_pidfds(mut self) -> Self {
        self.pidfds = Pidfds::Off;
        self.known.clear();
        self
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the reader has done so far.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            files_read: self.files_read.get(),
            kernel_threads_reused: self.kernel_threads_reused,
        }
    }

    /// Whether snapshots use pidfds (decided at the first snapshot).
    pub fn uses_pidfds(&mut self) -> bool {
        if self.pidfds == Pidfds::Unchecked {
            self.pidfds = if self.mount_in_own_pid_namespace() {
                Pidfds::Usable
            } else {
                Pidfds::Off
            };
        }
        self.pidfds == Pidfds::Usable
    }

    /// `pidfd_open` works, and the mount numbers pids as this process's own
    /// PID namespace does: its `self/status` lists one `NSpid:` level, equal
    /// to our pid.
    fn mount_in_own_pid_namespace(&self) -> bool {
        let me = std::process::id();
        if sys::pidfd_open(me).is_err() {
            return false;
        }
        let Ok(bytes) = read_small(&self.root.join("self").join("status")) else {
            return false;
        };
        parse_status(&bytes)
            .ok()
            .and_then(|s| s.ns_pid)
            .is_some_and(|n| n.same_namespace() && n.inner == me)
    }

    fn count_read(&self) {
        self.files_read.set(self.files_read.get().saturating_add(1));
    }

    fn read_file(&self, pid: u32, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.count_read();
        let path = self.root.join(pid.to_string()).join(name);
        match read_small(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if vanished(&e) => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn read_cmdline(&self, pid: u32) -> Vec<u8> {
        self.count_read();
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
        Ok(self.read_process_with(pid, None, None)?.map(|r| r.info))
    }

    /// Like [`ProcFs::read_process`], taking the command line from `known`
    /// when it is the same process running the same exe. `pidfd`, opened
    /// before the reads, replaces the second `stat` read when it is still
    /// quiet after them.
    fn read_process_with(
        &self,
        pid: u32,
        known: Option<&ProcInfo>,
        pidfd: Option<BorrowedFd<'_>>,
    ) -> Result<Option<ReadProcess>, Error> {
        let Some(stat_bytes) = self.read_file(pid, "stat")? else {
            return Ok(None);
        };
        let stat = parse_stat(&stat_bytes)?;
        if stat.is_kernel_thread() {
            let info = ProcInfo {
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
            };
            let vouched = pidfd.is_some_and(sys::pidfd_alive);
            return Ok(Some(ReadProcess { info, vouched }));
        }
        let Some(status_bytes) = self.read_file(pid, "status")? else {
            return Ok(None);
        };
        let status = parse_status(&status_bytes)?;
        // Zombies, kernel threads and processes gone mid-read show no exe;
        // an unprivileged reader may not see others' exe.
        self.count_read();
        let exe = fs::read_link(self.root.join(pid.to_string()).join("exe")).ok();
        // An empty line is not reused: a process caught inside `execve`
        // (new exe, argument pages not yet set up) reads as empty.
        let cmdline = match (known, &exe) {
            (Some(k), Some(exe))
                if !k.cmdline.is_empty()
                    && k.start_time == stat.start_time
                    && k.exe.as_ref() == Some(exe) =>
            {
                k.cmdline.clone()
            }
            _ => self.read_cmdline(pid),
        };
        // The pid may have been reused between the reads: if so, what we
        // read mixes two processes. A quiet pidfd rules that out; without
        // one, compare the start time with a second read.
        let vouched = pidfd.is_some_and(sys::pidfd_alive);
        if !vouched {
            let Some(again) = self.read_file(pid, "stat")? else {
                return Ok(None);
            };
            match parse_stat(&again) {
                Ok(s) if s.start_time == stat.start_time => {}
                _ => return Ok(None),
            }
        }
        let [uid, euid, _, _] = status.uids;
        let info = ProcInfo {
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
        };
        Ok(Some(ReadProcess { info, vouched }))
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

/// The pids in `known` whose pidfd reports an exit (or an error), by one
/// `poll` over all of them.
fn exited_pids(known: &HashMap<u32, Known>) -> HashSet<u32> {
    let (pids, fds): (Vec<u32>, Vec<BorrowedFd<'_>>) = known
        .iter()
        .filter_map(|(&pid, k)| k.pidfd.as_ref().map(|fd| (pid, fd.as_fd())))
        .unzip();
    let mut exited = Vec::new();
    sys::pidfds_exited(&fds, &mut exited);
    pids.into_iter()
        .zip(exited)
        .filter_map(|(pid, gone)| gone.then_some(pid))
        .collect()
}

impl ProcessSource for ProcFs {
    fn snapshot(&mut self) -> Result<Vec<ProcInfo>, Error> {
        let pids = self.pids()?;
        let use_pidfds = self.uses_pidfds();
        let mut known = std::mem::take(&mut self.known);
        let exited = exited_pids(&known);
        let mut out = Vec::with_capacity(pids.len());
        for pid in pids {
            let (prev, pidfd) = match known.remove(&pid) {
                Some(Known {
                    info,
                    pidfd: Some(fd),
                }) if !exited.contains(&pid) => {
                    if info.kernel_thread {
                        self.kernel_threads_reused = self.kernel_threads_reused.saturating_add(1);
                        out.push(info.clone());
                        self.known.insert(
                            pid,
                            Known {
                                info,
                                pidfd: Some(fd),
                            },
                        );
                        continue;
                    }
                    (Some(info), Some(fd))
                }
                // Its pidfd says it exited: the pid may be another
                // process's now, so nothing known of it carries over.
                Some(Known { pidfd: Some(_), .. }) => (None, None),
                Some(Known { info, pidfd: None }) => (Some(info), None),
                None => (None, None),
            };
            let pidfd = match pidfd {
                Some(fd) => Some(fd),
                None if use_pidfds => match sys::pidfd_open(pid) {
                    Ok(fd) => Some(fd),
                    Err(e) if vanished(&e) => continue,
                    // Out of descriptors, say: read this one in full.
                    Err(_) => None,
                },
                None => None,
            };
            match self.read_process_with(pid, prev.as_ref(), pidfd.as_ref().map(AsFd::as_fd)) {
                Ok(Some(read)) => {
                    out.push(read.info.clone());
                    let pidfd = if read.vouched { pidfd } else { None };
                    self.known.insert(
                        pid,
                        Known {
                            info: read.info,
                            pidfd,
                        },
                    );
                }
                Ok(None) => {}
                Err(_) => out.push(unreadable(pid)),
            }
        }
        // What is left in `known` is gone; dropping it closes its pidfds.
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
