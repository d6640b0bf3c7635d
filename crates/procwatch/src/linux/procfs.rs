//! The `/proc` reader: a [`ProcessSource`] over procfs.

use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sys;
use crate::error::Error;
use crate::model::{Incomplete, Liveness, Partial, ProcInfo, Read, Unreadable};
use crate::parse::proc::{
    bounded_cmdline, first_dirent_name, parse_dirent_pids, parse_stat, parse_status, Stat, Status,
};
use crate::traits::ProcessSource;

/// Default bound on the command line kept per process.
pub const DEFAULT_CMDLINE_LIMIT: usize = 512;

/// Reads processes from a procfs mount.
///
/// Every read of a process goes through its `/proc/PID` directory, opened
/// once: the kernel binds that descriptor, and every file opened through
/// it, to the process that had the pid when it was opened. Once that
/// process is gone, reads fail, whatever process gets the pid next. So
/// one read never mixes two processes, and no start time needs comparing.
///
/// Between snapshots the reader keeps, within a descriptor budget (half of
/// `RLIMIT_NOFILE`):
///
/// - for a user process, its directory, `stat` and `status` open: each
///   snapshot re-reads them with `pread` (no path walk, no open), resolves
///   `exe` again, and re-reads the command line only when the exe changed
///   or the line was empty (a process inside `execve` reads as empty).
/// - for a kernel thread, a pidfd. A pidfd becomes readable once its
///   process exits; while it is quiet the task is the same one, and its
///   identity cannot have changed (a `PF_KTHREAD` task never execs, and
///   the reader reports uid 0 for kernel threads). It is taken from the
///   last snapshot without a read: one `poll` over all pidfds replaces a
///   `stat` read per kernel thread.
///
/// Pidfds are used only when `pidfd_open(2)` works and the mount belongs
/// to the caller's own PID namespace (checked once through `self/status`'s
/// `NSpid:` line), because `pidfd_open` numbers pids in that namespace.
/// Otherwise a kernel thread keeps its `stat` open instead and is re-read
/// each time. Past the budget, a process is opened, read and closed each
/// time.
#[derive(Debug)]
pub struct ProcFs {
    root: PathBuf,
    cmdline_limit: usize,
    /// The mount's root, open for listing, and whether it is a procfs.
    listing: OnceCell<(OwnedFd, bool)>,
    /// The listing's `getdents64` buffer, reused.
    dirents: Scratch,
    /// What the last snapshot read, by pid.
    known: BTreeMap<u32, Known>,
    pidfds: Pidfds,
    /// Descriptors the reader may keep open between snapshots.
    fd_budget: usize,
    files_read: Cell<u64>,
    kernel_threads_reused: u64,
    /// Clock ticks per second of `stat`'s start time (`_SC_CLK_TCK`).
    ticks_per_second: u64,
}

/// A buffer kept between calls of a `&self` method (taken, used, put back).
#[derive(Default)]
struct Scratch(Cell<Vec<u8>>);

impl Scratch {
    fn take(&self) -> Vec<u8> {
        self.0.take()
    }

    fn set(&self, buf: Vec<u8>) {
        self.0.set(buf);
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// What the reader remembers of one process between snapshots.
#[derive(Debug)]
struct Known {
    /// The last complete read of this process, if there was one.
    info: Option<ProcInfo>,
    /// A kernel thread's pidfd.
    pidfd: Option<OwnedFd>,
    /// The process's open procfs files.
    files: Option<ProcDir>,
}

impl Known {
    fn descriptors(&self) -> usize {
        usize::from(self.pidfd.is_some()) + self.files.as_ref().map_or(0, ProcDir::descriptors)
    }
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
    /// procfs reads: `stat`, `status` and `cmdline` contents, `exe` links.
    pub files_read: u64,
    /// Kernel threads a snapshot took from the previous one, unread,
    /// because their pidfd showed them alive.
    pub kernel_threads_reused: u64,
}

/// One file read through a held descriptor.
enum Fetch<T> {
    /// Read and parsed.
    Got(T),
    /// The process the descriptor belongs to is gone (`ESRCH`, `ENOENT`).
    Gone,
    /// Any other failure, or bytes that do not parse (a record half-read).
    Failed,
}

impl<T> Fetch<T> {
    fn from_io(r: io::Result<T>) -> Self {
        match r {
            Ok(v) => Fetch::Got(v),
            Err(e) if vanished(&e) => Fetch::Gone,
            Err(_) => Fetch::Failed,
        }
    }
}

/// What a re-check's `stat` says the task is doing; `None` for a dead task
/// (`X`, being reaped). Another live thread makes the process live,
/// whatever its leader (the task `/proc/PID` shows) is doing.
fn liveness_of(stat: &Stat) -> Option<Liveness> {
    if stat.num_threads > 1 {
        return Some(Liveness::Running);
    }
    match stat.state {
        b'X' | b'x' => None,
        b'Z' => Some(Liveness::Zombie),
        _ if stat.is_exiting() => Some(Liveness::Exiting),
        _ => Some(Liveness::Running),
    }
}

fn kernel_thread_info(pid: u32, stat: Stat) -> ProcInfo {
    ProcInfo {
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
    }
}

/// One process's `/proc/PID` directory and the files opened through it,
/// all bound to the process that had the pid when `dir` was opened.
#[derive(Debug)]
struct ProcDir {
    dir: OwnedFd,
    stat: File,
    /// Opened on first use: kernel threads never need it.
    status: Option<File>,
    /// The `exe` link itself (`O_PATH | O_NOFOLLOW`), opened on first use:
    /// the kernel resolves it when it is read, so it follows an exec.
    exe: Option<OwnedFd>,
}

impl ProcDir {
    fn open(root: &Path, pid: u32) -> io::Result<Self> {
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(root.join(pid.to_string()))?;
        let dir = OwnedFd::from(dir);
        let stat = File::from(sys::openat(dir.as_fd(), c"stat", libc::O_RDONLY)?);
        Ok(Self {
            dir,
            stat,
            status: None,
            exe: None,
        })
    }

    fn descriptors(&self) -> usize {
        2 + usize::from(self.status.is_some()) + usize::from(self.exe.is_some())
    }

    fn status(&mut self) -> io::Result<&File> {
        let file = match self.status.take() {
            Some(f) => f,
            None => File::from(sys::openat(self.dir.as_fd(), c"status", libc::O_RDONLY)?),
        };
        Ok(self.status.insert(file))
    }

    /// The exe link's target; `None` when the kernel shows none (zombies,
    /// kernel threads, a process gone) or it cannot be read.
    fn exe(&mut self) -> Option<PathBuf> {
        if self.exe.is_none() {
            let link = sys::openat(self.dir.as_fd(), c"exe", libc::O_PATH | libc::O_NOFOLLOW);
            self.exe = link.ok();
        }
        let link = self.exe.as_ref()?;
        sys::readlinkat(link.as_fd(), c"").ok()
    }
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc", DEFAULT_CMDLINE_LIMIT)
    }
}

impl ProcFs {
    /// A reader of the procfs mounted at `root`, keeping at most
    /// `cmdline_limit` bytes of each command line.
    pub fn new(root: impl Into<PathBuf>, cmdline_limit: usize) -> Self {
        let fd_budget = usize::try_from(sys::nofile_limit() / 2).unwrap_or(usize::MAX);
        Self {
            root: root.into(),
            cmdline_limit,
            listing: OnceCell::new(),
            dirents: Scratch::default(),
            known: BTreeMap::new(),
            pidfds: Pidfds::Unchecked,
            fd_budget,
            files_read: Cell::new(0),
            kernel_threads_reused: 0,
            ticks_per_second: sys::clock_ticks_per_second(),
        }
    }

    /// The same reader without pidfds: kernel threads are re-read on every
    /// snapshot, like user processes. For comparison and for tests of that
    /// path.
    #[must_use]
    pub fn without_pidfds(mut self) -> Self {
        self.pidfds = Pidfds::Off;
        self.known.clear();
        self
    }

    /// The same reader keeping at most `n` descriptors open between
    /// snapshots (default: half of `RLIMIT_NOFILE`); 0 keeps none, so every
    /// snapshot opens and reads every process afresh.
    #[must_use]
    pub fn with_fd_budget(mut self, n: usize) -> Self {
        self.fd_budget = n;
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

    /// Descriptors the reader holds open now.
    pub fn open_descriptors(&self) -> usize {
        self.known.values().map(Known::descriptors).sum()
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

    fn read_stat(&self, files: &ProcDir) -> Fetch<Stat> {
        self.count_read();
        match Fetch::from_io(pread_whole(&files.stat)) {
            Fetch::Got(bytes) => parse_stat(&bytes).map_or(Fetch::Failed, Fetch::Got),
            Fetch::Gone => Fetch::Gone,
            Fetch::Failed => Fetch::Failed,
        }
    }

    fn read_status(&self, files: &mut ProcDir) -> Fetch<Status> {
        let file = match Fetch::from_io(files.status()) {
            Fetch::Got(f) => f,
            Fetch::Gone => return Fetch::Gone,
            Fetch::Failed => return Fetch::Failed,
        };
        self.count_read();
        match Fetch::from_io(pread_whole(file)) {
            Fetch::Got(bytes) => parse_status(&bytes).map_or(Fetch::Failed, Fetch::Got),
            Fetch::Gone => Fetch::Gone,
            Fetch::Failed => Fetch::Failed,
        }
    }

    fn read_cmdline(&self, files: &ProcDir) -> Vec<u8> {
        self.count_read();
        let Ok(file) = sys::openat(files.dir.as_fd(), c"cmdline", libc::O_RDONLY).map(File::from)
        else {
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

    /// Reads the process that has `pid` now, through a directory opened
    /// for this read.
    pub fn read_process(&self, pid: u32) -> Result<Read, Error> {
        Ok(match self.open_dir(pid) {
            Fetch::Got(mut files) => self.read_through(pid, &mut files, None),
            Fetch::Gone => Read::Gone,
            Fetch::Failed => unopened(pid),
        })
    }

    /// Opens `pid`'s directory and `stat`.
    fn open_dir(&self, pid: u32) -> Fetch<ProcDir> {
        Fetch::from_io(ProcDir::open(&self.root, pid))
    }

    /// Reads the process `files` belong to, once. `same` is what an earlier
    /// read of this very process found (the held files guarantee it is the
    /// same process): then `status` alone stands in for `stat`, since the
    /// start time and the kernel-thread flag cannot have changed, and the
    /// command line is kept while the exe is unchanged.
    ///
    /// A part that cannot be read does not make a record: the process is
    /// re-checked through the same files ([`ProcFs::recheck`]) and reported
    /// gone or [`Read::Incomplete`].
    fn read_through(&self, pid: u32, files: &mut ProcDir, same: Option<&ProcInfo>) -> Read {
        let mut failed = None;
        let mut partial = Partial::new(pid);
        let fast = same.filter(|k| !k.kernel_thread && files.status.is_some());
        let mut stat = None;
        if fast.is_none() {
            match self.read_stat(files) {
                Fetch::Got(s) if s.is_kernel_thread() => {
                    return Read::Complete(kernel_thread_info(pid, s))
                }
                Fetch::Got(s) => stat = Some(s),
                Fetch::Gone => return Read::Gone,
                Fetch::Failed => failed = Some(Unreadable::Stat),
            }
        }
        let status = match self.read_status(files) {
            Fetch::Got(s) => Some(s),
            Fetch::Gone => return Read::Gone,
            Fetch::Failed => {
                failed.get_or_insert(Unreadable::Status);
                None
            }
        };
        let stands_in = |s: &Status| s.name.is_some() && s.state.is_some() && s.ppid.is_some();
        if fast.is_some() && !status.as_ref().is_some_and(stands_in) {
            match self.read_stat(files) {
                Fetch::Got(s) => stat = Some(s),
                Fetch::Gone => return Read::Gone,
                Fetch::Failed => {
                    failed.get_or_insert(Unreadable::Stat);
                }
            }
        }
        let mut state = None;
        if let Some(s) = stat {
            partial.ppid = Some(s.ppid);
            partial.start_time = Some(s.start_time);
            partial.comm = s.comm;
            state = Some(s.state);
        } else if let (Some(known), Some(st)) = (fast, &status) {
            partial.ppid = st.ppid;
            partial.start_time = Some(known.start_time);
            partial.comm = st.name.clone().unwrap_or_default();
            state = st.state;
        }
        if let Some(st) = &status {
            let [uid, euid, _, _] = st.uids;
            partial.uids = Some((uid, euid));
        }
        // Zombies and exiting tasks (their memory gone) show no exe.
        self.count_read();
        partial.exe = files.exe();
        if partial.exe.is_none() {
            failed.get_or_insert(Unreadable::Exe);
        }
        // The same process (held files) with the same exe has the same
        // command line: it changes at exec. The policy never reads it; it
        // names the process on the console.
        partial.cmdline = match same {
            Some(k) if !k.cmdline.is_empty() && k.exe == partial.exe => k.cmdline.clone(),
            _ => self.read_cmdline(files),
        };
        match (failed, partial.ppid, partial.uids, partial.start_time) {
            (None, Some(ppid), Some((uid, euid)), Some(start_time)) => Read::Complete(ProcInfo {
                pid,
                ppid,
                uid,
                euid,
                exe: partial.exe,
                comm: partial.comm,
                cmdline: partial.cmdline,
                kernel_thread: false,
                zombie: state == Some(b'Z'),
                start_time,
            }),
            (what, ..) => self.recheck(files, what.unwrap_or(Unreadable::Stat), partial),
        }
    }

    /// After part of the record of the process `files` belong to could not
    /// be read: is that process still there, and what is it doing? Asked
    /// of its held `stat`, which fails once that very process is gone,
    /// whatever has the pid now.
    ///
    /// Exiting and zombie are confirmed by a second read: a leader can be
    /// exiting because another thread is inside `execve`, which then takes
    /// over the pid (`de_thread`), and the second read shows that thread.
    fn recheck(&self, files: &ProcDir, what: Unreadable, mut partial: Partial) -> Read {
        let incomplete = |liveness, partial| {
            Read::Incomplete(Incomplete {
                what,
                liveness,
                partial,
            })
        };
        let first = match self.read_stat(files) {
            Fetch::Got(s) => s,
            Fetch::Gone => return Read::Gone,
            Fetch::Failed => return incomplete(Liveness::Unknown, partial),
        };
        if first.is_kernel_thread() {
            return Read::Complete(kernel_thread_info(partial.pid, first));
        }
        partial.ppid = partial.ppid.or(Some(first.ppid));
        partial.start_time = partial.start_time.or(Some(first.start_time));
        let mut liveness = liveness_of(&first);
        if partial.comm.is_empty() {
            partial.comm = first.comm;
        }
        if liveness.is_some_and(Liveness::has_exited) {
            liveness = match self.read_stat(files) {
                Fetch::Got(again) => liveness_of(&again),
                Fetch::Gone => None,
                Fetch::Failed => Some(Liveness::Unknown),
            };
        }
        match liveness {
            Some(l) => incomplete(l, partial),
            None => Read::Gone,
        }
    }

    /// Reads a process the last snapshot read, and what to keep of it.
    fn read_known(
        &mut self,
        pid: u32,
        k: Known,
        me: Option<u32>,
        use_pidfds: bool,
    ) -> (Read, Option<Known>) {
        // The reader's own process is read once: a change to it that it did
        // not make means another process controls it, which no re-read of
        // its own files could expose. A kernel thread whose pidfd is quiet
        // is the same task as last time, with the same identity.
        let unread = (Some(pid) == me && k.files.is_some()) || k.pidfd.is_some();
        if let (true, Some(info)) = (unread, &k.info) {
            if k.pidfd.is_some() {
                self.kernel_threads_reused = self.kernel_threads_reused.saturating_add(1);
            }
            return (Read::Complete(info.clone()), Some(k));
        }
        let Known { info, files, .. } = k;
        // An exited kernel thread (its pidfd dropped), or nothing held:
        // read afresh.
        let Some(mut files) = files else {
            return self.read_new(pid, use_pidfds);
        };
        match self.read_through(pid, &mut files, info.as_ref()) {
            // The process we held is gone; the pid is listed, so another
            // process may have it now.
            Read::Gone => self.read_new(pid, use_pidfds),
            read => {
                // An incomplete read keeps the last complete one.
                let info = read.as_complete().cloned().or(info);
                let known = Known {
                    info,
                    pidfd: None,
                    files: Some(files),
                };
                (read, Some(known))
            }
        }
    }

    /// Reads a process this snapshot meets for the first time (or again
    /// after it, or its pid's last holder, went away), and what to keep of
    /// it (nothing once it is gone).
    fn read_new(&self, pid: u32, use_pidfds: bool) -> (Read, Option<Known>) {
        let mut files = match self.open_dir(pid) {
            Fetch::Got(files) => files,
            Fetch::Gone => return (Read::Gone, None),
            Fetch::Failed => return (unopened(pid), None),
        };
        let read = self.read_through(pid, &mut files, None);
        let info = match &read {
            Read::Gone => return (read, None),
            Read::Complete(p) => Some(p.clone()),
            Read::Incomplete(_) => None,
        };
        if let Some(p) = info.as_ref().filter(|p| p.kernel_thread && use_pidfds) {
            if let Ok(pidfd) = sys::pidfd_open(pid) {
                // The pidfd names whoever had the pid when it was opened: if
                // the task `files` belong to is still there after that, it
                // was that task.
                if matches!(self.read_stat(&files), Fetch::Got(_)) {
                    let known = Known {
                        info: Some(p.clone()),
                        pidfd: Some(pidfd),
                        files: None,
                    };
                    return (read, Some(known));
                }
            }
        }
        let known = Known {
            info,
            pidfd: None,
            files: Some(files),
        };
        (read, Some(known))
    }

    /// The pids listed in the mount, read with `getdents64` through a
    /// descriptor of the mount's root kept open for the next listing.
    pub fn pids(&self) -> Result<Vec<u32>, Error> {
        let list_error = |source| Error::Read {
            path: self.root.clone(),
            source,
        };
        let (dir, procfs) = match self.listing.get() {
            Some(listing) => listing,
            None => {
                let dir = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(&self.root)
                    .map_err(list_error)?;
                let dir = OwnedFd::from(dir);
                let procfs = sys::is_procfs(dir.as_fd());
                self.listing.get_or_init(|| (dir, procfs))
            }
        };
        // The buffer is kept for the next listing.
        let mut buf = self.dirents.take();
        let listed = list_processes(dir.as_fd(), *procfs, &mut buf).map_err(list_error);
        let mut pids = Vec::new();
        let parsed =
            listed.and_then(|n| parse_dirent_pids(buf.get(..n).unwrap_or_default(), &mut pids));
        self.dirents.set(buf);
        parsed?;
        pids.sort_unstable();
        Ok(pids)
    }
}

/// Where procfs's root lists `self`, `thread-self` and then the processes
/// (`FIRST_PROCESS_ENTRY` in the kernel's `fs/proc/internal.h`); its fixed
/// entries (`cpuinfo`, `sys`, ...) come before.
const FIRST_PROCESS_ENTRY: libc::off_t = 256;

/// Reads the directory records of a mount's root into `buf`. On a procfs
/// root its fixed entries are skipped when the layout is the one expected:
/// the listing from [`FIRST_PROCESS_ENTRY`] must begin with `self` (a layout
/// with processes listed earlier would begin with a pid; one with them
/// later still begins with `self`). Otherwise the whole directory is read
/// from its start, so no process is ever skipped.
fn list_processes(dir: BorrowedFd<'_>, procfs: bool, buf: &mut Vec<u8>) -> io::Result<usize> {
    if procfs {
        let n = sys::read_dirents(dir, FIRST_PROCESS_ENTRY, buf)?;
        if first_dirent_name(buf.get(..n).unwrap_or_default()) == Some(b"self".as_slice()) {
            return Ok(n);
        }
    }
    sys::read_dirents(dir, 0, buf)
}

/// Drops the pidfd of every process in `known` that the kernel reports as
/// exited (or in error), by one `poll` over all of them: what was known of
/// those may be of another process now.
fn forget_exited(known: &mut BTreeMap<u32, Known>) {
    let fds: Vec<BorrowedFd<'_>> = known
        .values()
        .filter_map(|k| k.pidfd.as_ref().map(AsFd::as_fd))
        .collect();
    let mut exited = Vec::new();
    sys::pidfds_exited(&fds, &mut exited);
    drop(fds);
    let with_pidfd = known.values_mut().filter(|k| k.pidfd.is_some());
    for (k, gone) in with_pidfd.zip(exited) {
        if gone {
            k.pidfd = None;
        }
    }
}

/// A process whose directory could not be opened, though it is listed and
/// the failure was not that it is gone (a descriptor limit, a refusal).
fn unopened(pid: u32) -> Read {
    Read::Incomplete(Incomplete {
        what: Unreadable::Stat,
        liveness: Liveness::Unknown,
        partial: Partial::new(pid),
    })
}

impl ProcessSource for ProcFs {
    fn snapshot(&mut self) -> Result<Vec<Read>, Error> {
        let pids = self.pids()?;
        let use_pidfds = self.uses_pidfds();
        let mut known = std::mem::take(&mut self.known);
        forget_exited(&mut known);
        let mut held = 0usize;
        let mut out = Vec::with_capacity(pids.len());
        // With pidfds the mount numbers pids as this process does, so this
        // is the reader's own process.
        let me = use_pidfds.then(std::process::id);
        for pid in pids {
            let (read, keep) = match known.remove(&pid) {
                Some(k) => self.read_known(pid, k, me, use_pidfds),
                None => self.read_new(pid, use_pidfds),
            };
            if !matches!(read, Read::Gone) {
                out.push(read);
            }
            let Some(mut entry) = keep else {
                continue;
            };
            if held.saturating_add(entry.descriptors()) > self.fd_budget {
                // Over budget: remember the process, hold nothing open.
                entry.pidfd = None;
                entry.files = None;
            }
            held = held.saturating_add(entry.descriptors());
            self.known.insert(pid, entry);
        }
        // What is left in `known` is gone; dropping it closes its files.
        Ok(out)
    }

    /// The process that has `pid` now, through a directory opened for
    /// this read. One read only in part keeps that directory for
    /// [`ProcessSource::reread`] (and the next snapshot), so a re-read is
    /// of the same process.
    fn process(&mut self, pid: u32) -> Result<Read, Error> {
        let mut files = match self.open_dir(pid) {
            Fetch::Got(files) => files,
            Fetch::Gone => return Ok(Read::Gone),
            Fetch::Failed => return Ok(unopened(pid)),
        };
        let read = self.read_through(pid, &mut files, None);
        let room = self.open_descriptors().saturating_add(files.descriptors()) <= self.fd_budget;
        if matches!(read, Read::Incomplete(_)) && room {
            let known = Known {
                info: None,
                pidfd: None,
                files: Some(files),
            };
            self.known.insert(pid, known);
        }
        Ok(read)
    }

    /// Through the files held for `pid` since the last snapshot, so it is
    /// the same process or [`Read::Gone`]. Without held files (over the
    /// descriptor budget, or a kernel thread held by a pidfd) the pid is
    /// read afresh, and a start time other than the last one read is
    /// another process: the one asked about is gone.
    /// `CLOCK_BOOTTIME` now, less the start time: the kernel counts both
    /// from boot, suspended time included (and shifts both alike in a time
    /// namespace), so the age is right for a process first seen late. The
    /// start time is cut down to a clock tick (10 ms), so the process
    /// started before the end of that tick: the age is counted from there,
    /// never more than the true age.
    fn age_of(&self, start_time: u64) -> Option<Duration> {
        let now = sys::boot_time().ok()?;
        let nanos = u128::from(start_time.saturating_add(1)).saturating_mul(1_000_000_000)
            / u128::from(self.ticks_per_second.max(1));
        let started = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Some(now.saturating_sub(started))
    }

    fn reread(&mut self, pid: u32) -> Result<Read, Error> {
        let Some(mut k) = self.known.remove(&pid) else {
            return self.read_process(pid);
        };
        let read = match k.files.as_mut() {
            Some(files) => self.read_through(pid, files, k.info.as_ref()),
            None => {
                let read = self.read_process(pid)?;
                let last_start = k.info.as_ref().map(|i| i.start_time);
                let start = match &read {
                    Read::Complete(p) => Some(p.start_time),
                    Read::Incomplete(i) => i.partial.start_time,
                    Read::Gone => None,
                };
                match (last_start, start) {
                    (Some(a), Some(b)) if a != b => Read::Gone,
                    _ => read,
                }
            }
        };
        if !matches!(read, Read::Gone) {
            if let Read::Complete(p) = &read {
                k.info = Some(p.clone());
            }
            self.known.insert(pid, k);
        }
        Ok(read)
    }
}

/// Reads a held procfs file from its start with `pread`, growing the buffer
/// until the text fits. A procfs `stat` or `status` file is generated whole
/// on each read from offset 0, so a read that does not fill the buffer has
/// returned all of it.
fn pread_whole(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    loop {
        match file.read_at(&mut buf, 0) {
            Ok(n) if n < buf.len() => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => {
                if buf.len() >= 1 << 20 {
                    return Err(io::Error::from(io::ErrorKind::InvalidData));
                }
                buf.resize(buf.len().saturating_mul(2), 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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
