//! The data the engine reasons about: processes and process events.

use std::fmt;
use std::path::PathBuf;

/// One process (thread group), as read from the process table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id (thread-group id).
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Executable path; `None` when the kernel shows none (kernel threads,
    /// zombies, a process gone mid-read).
    pub exe: Option<PathBuf>,
    /// The kernel's short name (`comm`, at most 16 bytes, may hold any byte
    /// but NUL, including spaces, `)` and newlines).
    pub comm: Vec<u8>,
    /// Command line, NUL-separated, cut at the reader's bound.
    pub cmdline: Vec<u8>,
    /// The kernel marks this task as a kernel thread (`PF_KTHREAD`); user
    /// space cannot set this flag.
    pub kernel_thread: bool,
    /// The process has exited and runs no code: a zombie, or a task past
    /// the point of its exit where it gave up its memory (see
    /// [`Liveness`]).
    pub zombie: bool,
    /// Start time in clock ticks after boot; with `pid` it names one process
    /// across pid reuse.
    pub start_time: u64,
}

impl ProcInfo {
    /// A user-space process with the given identity and no other detail;
    /// a convenience for policies' tests and fakes.
    pub fn new(pid: u32, ppid: u32, uid: u32, exe: impl Into<PathBuf>) -> Self {
        let exe = exe.into();
        let comm = exe
            .file_name()
            .map(|n| n.as_encoded_bytes().iter().take(15).copied().collect())
            .unwrap_or_default();
        Self {
            pid,
            ppid,
            uid,
            euid: uid,
            exe: Some(exe),
            comm,
            cmdline: Vec::new(),
            kernel_thread: false,
            zombie: false,
            start_time: 0,
        }
    }

    /// A process that exists but could not be read: no exe and uid
    /// `u32::MAX`, so no rule matches it and the policy fails closed.
    pub fn unknown(pid: u32, ppid: u32) -> Self {
        Self {
            pid,
            ppid,
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

    /// A kernel thread as the kernel shows one: no exe, uid 0.
    pub fn kernel_thread(pid: u32, ppid: u32, comm: &str) -> Self {
        Self {
            pid,
            ppid,
            uid: 0,
            euid: 0,
            exe: None,
            comm: comm.as_bytes().to_vec(),
            cmdline: Vec::new(),
            kernel_thread: true,
            zombie: false,
            start_time: 0,
        }
    }
}

/// Which part of a process's record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// `stat`: parent, state, flags, start time (or the directory itself).
    Stat,
    /// `status`: the uids.
    Status,
    /// The `exe` link.
    Exe,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unreadable::Stat => "stat",
            Unreadable::Status => "status",
            Unreadable::Exe => "exe",
        })
    }
}

/// What a process whose record could not be read completely was doing, as
/// a re-check through the same process's files showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its only thread is exiting (`PF_EXITING`): it never returns to user
    /// space, so it runs no code of its own again.
    Exiting,
    /// A zombie: every thread has exited.
    Zombie,
    /// It may still run code: not exiting, or other threads are alive
    /// (a thread-group leader that exited alone looks like a zombie).
    Running,
    /// Its state could not be read either.
    Unknown,
}

impl Liveness {
    /// Whether the process runs no code any more (exiting or a zombie).
    pub fn has_exited(self) -> bool {
        matches!(self, Liveness::Exiting | Liveness::Zombie)
    }
}

/// What could be read of a process whose record is incomplete: each field
/// is `None` when its file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: Option<u32>,
    /// Real and effective uid.
    pub uids: Option<(u32, u32)>,
    /// Executable path.
    pub exe: Option<PathBuf>,
    /// The kernel's short name (empty if unread).
    pub comm: Vec<u8>,
    /// Command line (empty if unread).
    pub cmdline: Vec<u8>,
    /// Start time in clock ticks after boot.
    pub start_time: Option<u64>,
}

impl Partial {
    /// Nothing read yet of `pid`.
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            ppid: None,
            uids: None,
            exe: None,
            comm: Vec::new(),
            cmdline: Vec::new(),
            start_time: None,
        }
    }

    /// What `known` (the last complete record of this very process) says,
    /// corrected by every field that could be read now: readable facts win,
    /// unreadable ones keep their known value.
    pub fn over(&self, known: &ProcInfo) -> ProcInfo {
        let mut p = known.clone();
        p.pid = self.pid;
        if let Some(ppid) = self.ppid {
            p.ppid = ppid;
        }
        if let Some((uid, euid)) = self.uids {
            p.uid = uid;
            p.euid = euid;
        }
        if self.exe.is_some() {
            p.exe.clone_from(&self.exe);
        }
        if !self.comm.is_empty() {
            p.comm.clone_from(&self.comm);
        }
        if !self.cmdline.is_empty() {
            p.cmdline.clone_from(&self.cmdline);
        }
        if let Some(t) = self.start_time {
            p.start_time = t;
        }
        p
    }

    /// The record of a process never read completely: what was read, and
    /// [`ProcInfo::unknown`]'s values (no exe, uid `u32::MAX`) for the rest.
    pub fn as_unknown(&self) -> ProcInfo {
        let mut p = self.over(&ProcInfo::unknown(self.pid, 0));
        // An exe read now is a fact; without one nothing matches a rule.
        p.exe.clone_from(&self.exe);
        p
    }

    /// The record of a process never read completely that has exited
    /// (runs no code): as [`Partial::as_unknown`], marked
    /// [`ProcInfo::zombie`], with no exe.
    pub fn as_exited(&self) -> ProcInfo {
        let mut p = self.as_unknown();
        p.exe = None;
        p.zombie = true;
        p
    }

    /// The readable fields of a record (its exe only if it has one).
    pub fn of(p: &ProcInfo) -> Self {
        Self {
            pid: p.pid,
            ppid: Some(p.ppid),
            uids: Some((p.uid, p.euid)),
            exe: p.exe.clone(),
            comm: p.comm.clone(),
            cmdline: p.cmdline.clone(),
            start_time: Some(p.start_time),
        }
    }
}

/// A process whose record could not be read completely, though a re-check
/// through its own files found it still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The first part that could not be read.
    pub what: Unreadable,
    /// What the process was doing.
    pub liveness: Liveness,
    /// What could be read.
    pub partial: Partial,
}

/// One read of one process by a [`ProcessSource`](crate::ProcessSource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Everything the policy judges (parent, uids, exe, kernel-thread flag,
    /// start time) was read, from one process's files.
    Complete(ProcInfo),
    /// The process exists (or did at the re-check) but part of its record
    /// could not be read.
    Incomplete(Incomplete),
    /// The process is gone (reaped, or dead and being reaped): there is
    /// nothing to judge.
    Gone,
}

impl Read {
    /// The process id, unless gone.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Read::Complete(p) => Some(p.pid),
            Read::Incomplete(i) => Some(i.partial.pid),
            Read::Gone => None,
        }
    }

    /// The complete record, if it is one.
    pub fn complete(self) -> Option<ProcInfo> {
        match self {
            Read::Complete(p) => Some(p),
            _ => None,
        }
    }

    /// The complete record, if it is one.
    pub fn as_complete(&self) -> Option<&ProcInfo> {
        match self {
            Read::Complete(p) => Some(p),
            _ => None,
        }
    }
}

/// One process event, as the kernel reports it (proc connector on Linux).
///
/// Pids are thread ids, tgids are process ids: a thread's events carry
/// `pid != tgid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcEvent {
    /// A task was created. `child_pid != child_tgid` means a new thread, not
    /// a new process.
    Fork {
        /// The creating thread.
        parent_pid: u32,
        /// The creating process.
        parent_tgid: u32,
        /// The new task.
        child_pid: u32,
        /// The new task's process.
        child_tgid: u32,
    },
    /// A process replaced its image with `execve`.
    Exec {
        /// The thread.
        pid: u32,
        /// The process.
        tgid: u32,
    },
    /// Real or effective uid changed (or was set).
    Uid {
        /// The thread.
        pid: u32,
        /// The process.
        tgid: u32,
        /// New real uid.
        ruid: u32,
        /// New effective uid.
        euid: u32,
    },
    /// Real or effective gid changed (recorded, not judged).
    Gid {
        /// The thread.
        pid: u32,
        /// The process.
        tgid: u32,
    },
    /// A tracer attached (`tracer_tgid != 0`) or detached (`0`).
    Ptrace {
        /// The traced thread.
        pid: u32,
        /// The traced process.
        tgid: u32,
        /// The tracing thread (0 on detach).
        tracer_pid: u32,
        /// The tracing process (0 on detach).
        tracer_tgid: u32,
    },
    /// A task changed its `comm`.
    Comm {
        /// The thread.
        pid: u32,
        /// The process.
        tgid: u32,
        /// The new name, without trailing NULs.
        comm: Vec<u8>,
    },
    /// A task exited.
    Exit {
        /// The thread.
        pid: u32,
        /// The process.
        tgid: u32,
    },
    /// Anything else the kernel reports (session id, core dump, the listen
    /// acknowledgement): carries the kernel's `what` code.
    Other {
        /// The kernel's event code.
        what: u32,
    },
}

/// What an [`EventSource`](crate::EventSource) delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// One process event.
    Event(ProcEvent),
    /// The source dropped events (netlink `ENOBUFS`, truncation): the engine's
    /// picture may be stale.
    Lost,
}
