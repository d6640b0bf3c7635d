//! The data the engine reasons about: processes and process events.

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
    /// The process is a zombie: it has exited and runs no code.
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
