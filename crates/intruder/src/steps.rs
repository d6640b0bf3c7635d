//! The step table and everything about a step that needs no syscall: the
//! names, what each does, what issue 12's defences should make of it,
//! argument parsing, the reply text of an outcome (and its parser, for the
//! e2e cases), and the judgement of an observation against the table.
#![forbid(unsafe_code)]

use std::fmt;

/// The attack a step performs; the module's glue dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attack {
    /// Fork a child that never execs and sleeps for good.
    ForkStay,
    /// Fork two such children, one after the other: two server children
    /// alive at once, which Valkey never has.
    ForkTwice,
    /// `clone(CLONE_VM)` without `CLONE_THREAD`: a process sharing the
    /// server's memory.
    CloneVm,
    /// `io_uring_setup`.
    IoUring,
    /// One anonymous page mapped readable, writable and executable.
    MmapRwx,
    /// An `AF_NETLINK` socket.
    NetlinkSocket,
    /// `bind` + `listen` on [`BIND_PORT`].
    BindListen,
    /// A forked child copies the server binary into a memfd and
    /// `execveat`s it.
    MemfdExec,
    /// A forked child `execve`s the server binary.
    ExecServer,
    /// A forked child `execve`s `/bin/sh`.
    ExecSh,
    /// The server binary copied into the data directory, `execve`d by a
    /// forked child.
    ExecData,
    /// `bpf(BPF_MAP_CREATE)`.
    Bpf,
    /// A forked child `unshare(CLONE_NEWUSER)`s.
    UnshareUser,
    /// `mount` of a tmpfs.
    Mount,
    /// `setuid(0)`.
    SetuidRoot,
    /// `kill(governor, SIGKILL)`.
    KillGovernor,
    /// `ptrace(PTRACE_ATTACH, governor)`.
    PtraceGovernor,
    /// An `AF_PACKET` socket.
    PacketSocket,
    /// `/dev/kmsg` opened for writing.
    WriteKmsg,
    /// A TCP connection to the metadata server.
    ConnectMetadata,
}

/// What the step table expects once issue 12's defences (seccomp, the
/// governor's child bounds, Landlock network rules) are in. The lead
/// tightens these as each defence lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The machine halts (the governor powers it off).
    Halt,
    /// The call fails with exactly this errno; the machine keeps serving.
    Refused(Errno),
    /// Either the call is refused (any errno, or a forked child doing it is
    /// killed by a signal) or the machine halts.
    RefusedOrHalt,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Halt => f.write_str("a halt"),
            Expect::Refused(e) => write!(f, "a refusal with errno {e}"),
            Expect::RefusedOrHalt => f.write_str("a refusal or a halt"),
        }
    }
}

/// How long a case watches for a halt once the step has replied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltWait {
    /// The governor acts on an event or its next rescan: a couple of
    /// seconds at most.
    Prompt,
    /// The governor halts a server child that outlives its bound
    /// (`governor.max_child_seconds`): that long, plus a margin.
    ChildLifetime,
}

/// What a step needs besides its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing.
    None,
    /// The governor's pid. The server's `/proc` is mounted `hidepid=2`, so
    /// the attacker cannot read it; the e2e case takes it from the console
    /// (init prints it), as an attacker would find it by probing pids.
    GovernorPid,
}

/// One attack step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The name `INTRUDER.STEP` takes and the e2e case is named after.
    pub name: &'static str,
    /// What the glue runs.
    pub attack: Attack,
    /// What it does, in one line (logged on the console before it runs).
    pub does: &'static str,
    /// The outcome expected once issue 12 is done.
    pub expect: Expect,
    /// How long to watch for a halt after the reply.
    pub wait: HaltWait,
    /// What the command needs besides the name.
    pub target: Target,
}

/// The port [`Attack::BindListen`] binds (any port but the server's).
pub const BIND_PORT: u16 = 4444;

/// The metadata server [`Attack::ConnectMetadata`] connects to. Only ever
/// reached from inside the guest, where it is QEMU's user network's
/// stand-in or the e2e test network's local listener.
pub const METADATA_ADDR: ([u8; 4], u16) = ([169, 254, 169, 254], 80);

/// How long [`Attack::ConnectMetadata`] waits for the connection (the
/// sealed firewall drops it silently, so without a bound it would wait
/// for the kernel's SYN retries, about two minutes).
pub const CONNECT_WAIT_MS: u16 = 3000;

/// How long a step that execs in a child waits for the child to report a
/// failed exec before it counts the exec as done.
pub const EXEC_WAIT_MS: u16 = 2000;

/// Every step, in the order the e2e cases run. The first six went through
/// in the production image before issue 12, then the memfd exec (which the
/// governor halted on), then the rest.
pub const STEPS: [Step; 20] = [
    Step {
        name: "fork-stay",
        attack: Attack::ForkStay,
        does: "fork a child that never execs and sleeps for good; reply with its pid",
        expect: Expect::Halt,
        wait: HaltWait::ChildLifetime,
        target: Target::None,
    },
    Step {
        name: "fork-twice",
        attack: Attack::ForkTwice,
        does: "fork two children that never exec and sleep for good (fork()'s own flags); reply with their pids",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "clone-vm",
        attack: Attack::CloneVm,
        does: "clone(CLONE_VM|SIGCHLD) without CLONE_THREAD: a process sharing the server's memory that sleeps for good",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "io-uring",
        attack: Attack::IoUring,
        does: "io_uring_setup(4 entries)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "mmap-rwx",
        attack: Attack::MmapRwx,
        does: "mmap one anonymous page PROT_READ|PROT_WRITE|PROT_EXEC",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "netlink-socket",
        attack: Attack::NetlinkSocket,
        does: "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "bind-listen",
        attack: Attack::BindListen,
        does: "bind 0.0.0.0:4444 and listen, beside the server's port",
        expect: Expect::Refused(Errno::EACCES),
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "memfd-exec",
        attack: Attack::MemfdExec,
        does: "in a forked child: memfd_create, copy /proc/self/exe (the server binary) into it, execveat the memfd",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "exec-server",
        attack: Attack::ExecServer,
        does: "in a forked child: execve the server binary (the one file Landlock lets the server execute)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "exec-sh",
        attack: Attack::ExecSh,
        does: "in a forked child: execve /bin/sh -c id",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "exec-data",
        attack: Attack::ExecData,
        does: "copy the server binary to <data dir>/intruder-exec (mode 0755), execve it in a forked child",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "bpf",
        attack: Attack::Bpf,
        does: "bpf(BPF_MAP_CREATE, a one-entry array map)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "unshare-user",
        attack: Attack::UnshareUser,
        does: "in a forked (single-threaded) child: unshare(CLONE_NEWUSER)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "mount",
        attack: Attack::Mount,
        does: "mount a tmpfs on <data dir>/intruder-mnt",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "setuid-root",
        attack: Attack::SetuidRoot,
        does: "setuid(0) on the server's main thread",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "kill-governor",
        attack: Attack::KillGovernor,
        does: "kill(<governor pid>, SIGKILL)",
        expect: Expect::Refused(Errno::EPERM),
        wait: HaltWait::Prompt,
        target: Target::GovernorPid,
    },
    Step {
        name: "ptrace-governor",
        attack: Attack::PtraceGovernor,
        does: "ptrace(PTRACE_ATTACH, <governor pid>)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::GovernorPid,
    },
    Step {
        name: "packet-socket",
        attack: Attack::PacketSocket,
        does: "socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "write-kmsg",
        attack: Attack::WriteKmsg,
        does: "open /dev/kmsg for writing and write one line",
        expect: Expect::Refused(Errno::EACCES),
        wait: HaltWait::Prompt,
        target: Target::None,
    },
    Step {
        name: "connect-metadata",
        attack: Attack::ConnectMetadata,
        does: "TCP connect to 169.254.169.254:80 (the metadata server, closed since the seal), at most 3 s",
        expect: Expect::Halt,
        wait: HaltWait::Prompt,
        target: Target::None,
    },
];

/// The step called `name`.
pub fn find(name: &str) -> Option<&'static Step> {
    STEPS.iter().find(|s| s.name == name)
}

/// Every step name, comma-separated (for error messages).
pub fn names() -> String {
    STEPS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// A parsed `INTRUDER.STEP` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The step.
    pub step: &'static Step,
    /// The governor's pid, for steps whose [`Target`] is the governor.
    pub governor: Option<u32>,
}

/// Why the arguments of `INTRUDER.STEP` were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// No step name.
    #[error("usage: INTRUDER.STEP <step> [<governor pid>]; steps: {}", names())]
    Usage,
    /// A name not in the table.
    #[error("no step named {0:?}; steps: {steps}", steps = names())]
    Unknown(String),
    /// A governor step without its pid.
    #[error("step {0} needs the governor's pid: INTRUDER.STEP {0} <pid>")]
    NeedsPid(&'static str),
    /// A pid that is not a number above 1.
    #[error("{0:?} is not a pid above 1")]
    BadPid(String),
    /// More arguments than the step takes.
    #[error("step {0} takes no argument after its pid")]
    TooMany(&'static str),
}

/// Parses the arguments after the command name.
pub fn parse_args(args: &[&[u8]]) -> Result<Request, StepError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (name, rest) = args.split_first().ok_or(StepError::Usage)?;
    let name = text(name);
    let step = find(&name).ok_or(StepError::Unknown(name))?;
    match (step.target, rest) {
        (Target::None, []) => Ok(Request {
            step,
            governor: None,
        }),
        (Target::None, [_, ..]) => Err(StepError::TooMany(step.name)),
        (Target::GovernorPid, []) => Err(StepError::NeedsPid(step.name)),
        (Target::GovernorPid, [pid]) => {
            let pid_text = text(pid);
            match pid_text.parse::<u32>() {
                Ok(p) if p > 1 => Ok(Request {
                    step,
                    governor: Some(p),
                }),
                _ => Err(StepError::BadPid(pid_text)),
            }
        }
        (Target::GovernorPid, [_, _, ..]) => Err(StepError::TooMany(step.name)),
    }
}

/// A Linux errno value, printed with its name when it is one we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// Linux's numbers (x86-64 and the generic table agree on these), kept here
/// so the pure part needs no libc; a test checks them against libc.
const ERRNO_NAMES: [(i32, &str); 45] = [
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (26, "ETXTBSY"),
    (28, "ENOSPC"),
    (30, "EROFS"),
    (32, "EPIPE"),
    (36, "ENAMETOOLONG"),
    (38, "ENOSYS"),
    (40, "ELOOP"),
    (88, "ENOTSOCK"),
    (92, "ENOPROTOOPT"),
    (93, "EPROTONOSUPPORT"),
    (94, "ESOCKTNOSUPPORT"),
    (95, "EOPNOTSUPP"),
    (97, "EAFNOSUPPORT"),
    (98, "EADDRINUSE"),
    (99, "EADDRNOTAVAIL"),
    (100, "ENETDOWN"),
    (101, "ENETUNREACH"),
    (104, "ECONNRESET"),
    (107, "ENOTCONN"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (113, "EHOSTUNREACH"),
    (115, "EINPROGRESS"),
    (122, "EDQUOT"),
];

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);
    /// Permission denied.
    pub const EACCES: Errno = Errno(13);
    /// Connection timed out (also what a connect that got no answer within
    /// [`CONNECT_WAIT_MS`] reports).
    pub const ETIMEDOUT: Errno = Errno(110);

    /// The symbolic name, if known.
    pub fn name(self) -> Option<&'static str> {
        ERRNO_NAMES
            .iter()
            .find(|(n, _)| *n == self.0)
            .map(|(_, name)| *name)
    }

    fn from_name(name: &str) -> Option<Errno> {
        ERRNO_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(code, _)| Errno(*code))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.name().unwrap_or("E?"))
    }
}

/// A signal number, printed with its name when it is one we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

const SIGNAL_NAMES: [(i32, &str); 13] = [
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (11, "SIGSEGV"),
    (13, "SIGPIPE"),
    (15, "SIGTERM"),
    (31, "SIGSYS"),
];

impl Signal {
    /// What a seccomp filter's `SECCOMP_RET_KILL_*` delivers.
    pub const SIGSYS: Signal = Signal(31);

    /// The symbolic name, if known.
    pub fn name(self) -> Option<&'static str> {
        SIGNAL_NAMES
            .iter()
            .find(|(n, _)| *n == self.0)
            .map(|(_, name)| *name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.name().unwrap_or("SIG?"))
    }
}

/// What the kernel made of a step that returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every call went through; what was achieved.
    Succeeded(String),
    /// A call failed with `errno`.
    Refused {
        /// The errno.
        errno: Errno,
        /// Which call, e.g. `execveat(memfd)`.
        call: String,
    },
    /// A forked child doing the call was killed by a signal (a seccomp
    /// filter's kill action).
    Killed {
        /// The signal.
        signal: Signal,
        /// Which call the child was making.
        call: String,
    },
}

/// Replaces what a simple-string reply cannot carry (CR, LF, other control
/// characters) with spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Outcome {
    /// The reply text (sent as a simple string, so one line):
    /// `succeeded <detail>`, `refused errno=<n> <NAME> in <call>` or
    /// `killed signal=<n> <NAME> in <call>`.
    pub fn reply(&self) -> String {
        match self {
            Outcome::Succeeded(detail) => format!("succeeded {}", one_line(detail)),
            Outcome::Refused { errno, call } => format!(
                "refused errno={} {} in {}",
                errno.0,
                errno.name().unwrap_or("E?"),
                one_line(call)
            ),
            Outcome::Killed { signal, call } => format!(
                "killed signal={} {} in {}",
                signal.0,
                signal.name().unwrap_or("SIG?"),
                one_line(call)
            ),
        }
    }

    /// Parses a reply written by [`Outcome::reply`].
    pub fn parse(reply: &str) -> Option<Outcome> {
        if let Some(detail) = reply.strip_prefix("succeeded ") {
            return Some(Outcome::Succeeded(detail.to_owned()));
        }
        let numbered = |rest: &str, key: &str| -> Option<(i32, String, String)> {
            let rest = rest.strip_prefix(key)?;
            let (number, rest) = rest.split_once(' ')?;
            let (name, call) = rest.split_once(" in ")?;
            Some((number.parse().ok()?, name.to_owned(), call.to_owned()))
        };
        if let Some(rest) = reply.strip_prefix("refused ") {
            let (n, name, call) = numbered(rest, "errno=")?;
            let known = Errno::from_name(&name);
            if known.is_some_and(|k| k.0 != n) || (known.is_none() && name != "E?") {
                return None;
            }
            return Some(Outcome::Refused {
                errno: Errno(n),
                call,
            });
        }
        let rest = reply.strip_prefix("killed ")?;
        let (n, name, call) = numbered(rest, "signal=")?;
        if Signal(n).name().unwrap_or("SIG?") != name {
            return None;
        }
        Some(Outcome::Killed {
            signal: Signal(n),
            call,
        })
    }
}

/// What an e2e case saw after sending the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The step replied and the machine kept running.
    Replied(Outcome),
    /// The machine halted (the governor's verdict, then power-off), with
    /// or without a reply first.
    Halted {
        /// The reply, if one came before the halt.
        reply: Option<Outcome>,
    },
}

/// Judges an observation against the table's expectation: `Ok` with what
/// happened, or `Err` with why the case fails.
pub fn judge(expect: Expect, seen: &Observed) -> Result<String, String> {
    match seen {
        Observed::Halted { .. } => match expect {
            Expect::Halt | Expect::RefusedOrHalt => Ok("the machine halted".into()),
            Expect::Refused(want) => Err(format!(
                "the machine halted, but the table expects a refusal with errno {want} (update the table if a halt is the intended defence)"
            )),
        },
        Observed::Replied(Outcome::Succeeded(detail)) => Err(format!(
            "nothing stopped it: the step succeeded ({detail}) and the machine kept running; the table expects {expect}"
        )),
        Observed::Replied(Outcome::Refused { errno, call }) => {
            let what = format!("refused with errno {errno} in {call}");
            match expect {
                Expect::Refused(want) if want == *errno => Ok(what),
                Expect::RefusedOrHalt => Ok(what),
                Expect::Refused(want) => Err(format!(
                    "{what}, but the table expects errno {want}"
                )),
                Expect::Halt => Err(format!(
                    "{what} and the machine kept running, but the table expects a halt"
                )),
            }
        }
        Observed::Replied(Outcome::Killed { signal, call }) => {
            let what = format!("refused: the child was killed by signal {signal} in {call}");
            match expect {
                Expect::RefusedOrHalt => Ok(what),
                other => Err(format!("{what}, but the table expects {other}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_unique_lowercase_and_found() {
        let mut names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STEPS.len());
        for s in &STEPS {
            assert!(
                s.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                s.name
            );
            assert_eq!(find(s.name), Some(s));
            assert!(!s.does.is_empty());
        }
        let mut attacks: Vec<Attack> = STEPS.iter().map(|s| s.attack).collect();
        attacks.dedup();
        assert_eq!(attacks.len(), STEPS.len(), "one step per attack");
    }

    #[test]
    fn the_issue_asks_for_these_steps() {
        for name in [
            "fork-stay",
            "clone-vm",
            "io-uring",
            "mmap-rwx",
            "netlink-socket",
            "bind-listen",
            "memfd-exec",
            "exec-server",
            "kill-governor",
            "ptrace-governor",
            "connect-metadata",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
    }

    #[test]
    fn parse_args_table() {
        type Case = (
            &'static [&'static [u8]],
            Result<(&'static str, Option<u32>), StepError>,
        );
        let cases: &[Case] = &[
            (&[b"io-uring"], Ok(("io-uring", None))),
            (&[b"kill-governor", b"93"], Ok(("kill-governor", Some(93)))),
            (&[], Err(StepError::Usage)),
            (&[b"IO-URING"], Err(StepError::Unknown("IO-URING".into()))),
            (&[b"io-uring", b"1"], Err(StepError::TooMany("io-uring"))),
            (
                &[b"kill-governor"],
                Err(StepError::NeedsPid("kill-governor")),
            ),
            (
                &[b"kill-governor", b"1"],
                Err(StepError::BadPid("1".into())),
            ),
            (
                &[b"kill-governor", b"-3"],
                Err(StepError::BadPid("-3".into())),
            ),
            (
                &[b"ptrace-governor", b"x"],
                Err(StepError::BadPid("x".into())),
            ),
            (
                &[b"ptrace-governor", b"9", b"9"],
                Err(StepError::TooMany("ptrace-governor")),
            ),
        ];
        for (args, want) in cases {
            let got = parse_args(args).map(|r| (r.step.name, r.governor));
            assert_eq!(&got, want, "{args:?}");
        }
    }

    #[test]
    fn errors_list_the_steps() {
        let text = StepError::Unknown("nope".into()).to_string();
        assert!(
            text.contains("fork-stay") && text.contains("connect-metadata"),
            "{text}"
        );
    }

    #[test]
    fn errno_and_signal_numbers_are_linux_s() {
        let errnos = [
            ("EPERM", libc::EPERM),
            ("ENOENT", libc::ENOENT),
            ("ESRCH", libc::ESRCH),
            ("EINTR", libc::EINTR),
            ("EIO", libc::EIO),
            ("ENXIO", libc::ENXIO),
            ("E2BIG", libc::E2BIG),
            ("ENOEXEC", libc::ENOEXEC),
            ("EBADF", libc::EBADF),
            ("ECHILD", libc::ECHILD),
            ("EAGAIN", libc::EAGAIN),
            ("ENOMEM", libc::ENOMEM),
            ("EACCES", libc::EACCES),
            ("EFAULT", libc::EFAULT),
            ("EBUSY", libc::EBUSY),
            ("EEXIST", libc::EEXIST),
            ("ENODEV", libc::ENODEV),
            ("ENOTDIR", libc::ENOTDIR),
            ("EINVAL", libc::EINVAL),
            ("ENFILE", libc::ENFILE),
            ("EMFILE", libc::EMFILE),
            ("ETXTBSY", libc::ETXTBSY),
            ("ENOSPC", libc::ENOSPC),
            ("EROFS", libc::EROFS),
            ("EPIPE", libc::EPIPE),
            ("ENAMETOOLONG", libc::ENAMETOOLONG),
            ("ENOSYS", libc::ENOSYS),
            ("ELOOP", libc::ELOOP),
            ("ENOTSOCK", libc::ENOTSOCK),
            ("ENOPROTOOPT", libc::ENOPROTOOPT),
            ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
            ("ESOCKTNOSUPPORT", libc::ESOCKTNOSUPPORT),
            ("EOPNOTSUPP", libc::EOPNOTSUPP),
            ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
            ("EADDRINUSE", libc::EADDRINUSE),
            ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
            ("ENETDOWN", libc::ENETDOWN),
            ("ENETUNREACH", libc::ENETUNREACH),
            ("ECONNRESET", libc::ECONNRESET),
            ("ENOTCONN", libc::ENOTCONN),
            ("ETIMEDOUT", libc::ETIMEDOUT),
            ("ECONNREFUSED", libc::ECONNREFUSED),
            ("EHOSTUNREACH", libc::EHOSTUNREACH),
            ("EINPROGRESS", libc::EINPROGRESS),
            ("EDQUOT", libc::EDQUOT),
        ];
        assert_eq!(errnos.len(), ERRNO_NAMES.len());
        for (name, n) in errnos {
            assert_eq!(Errno(n).name(), Some(name));
        }
        let signals = [
            ("SIGHUP", libc::SIGHUP),
            ("SIGINT", libc::SIGINT),
            ("SIGQUIT", libc::SIGQUIT),
            ("SIGILL", libc::SIGILL),
            ("SIGTRAP", libc::SIGTRAP),
            ("SIGABRT", libc::SIGABRT),
            ("SIGBUS", libc::SIGBUS),
            ("SIGFPE", libc::SIGFPE),
            ("SIGKILL", libc::SIGKILL),
            ("SIGSEGV", libc::SIGSEGV),
            ("SIGPIPE", libc::SIGPIPE),
            ("SIGTERM", libc::SIGTERM),
            ("SIGSYS", libc::SIGSYS),
        ];
        assert_eq!(signals.len(), SIGNAL_NAMES.len());
        for (name, n) in signals {
            assert_eq!(Signal(n).name(), Some(name));
        }
    }

    #[test]
    fn replies() {
        let cases = [
            (
                Outcome::Refused {
                    errno: Errno::EACCES,
                    call: "open(/dev/kmsg)".into(),
                },
                "refused errno=13 EACCES in open(/dev/kmsg)",
            ),
            (
                Outcome::Refused {
                    errno: Errno(4095),
                    call: "x".into(),
                },
                "refused errno=4095 E? in x",
            ),
            (
                Outcome::Killed {
                    signal: Signal::SIGSYS,
                    call: "execveat(memfd)".into(),
                },
                "killed signal=31 SIGSYS in execveat(memfd)",
            ),
            (
                Outcome::Succeeded("forked pid=7\r\nsecond line".into()),
                "succeeded forked pid=7  second line",
            ),
        ];
        for (outcome, text) in cases {
            assert_eq!(outcome.reply(), text);
        }
        for bad in [
            "",
            "succeeded",
            "refused errno=13 EPERM in x",
            "refused errno=13 EACCES",
            "refused errno=x EACCES in y",
            "killed signal=31 SIGKILL in x",
            "OK",
        ] {
            assert_eq!(Outcome::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn judgements() {
        let refused = |n: i32| {
            Observed::Replied(Outcome::Refused {
                errno: Errno(n),
                call: "c".into(),
            })
        };
        let killed = Observed::Replied(Outcome::Killed {
            signal: Signal::SIGSYS,
            call: "c".into(),
        });
        let succeeded = Observed::Replied(Outcome::Succeeded("done".into()));
        let halted = Observed::Halted { reply: None };
        let halted_after_success = Observed::Halted {
            reply: Some(Outcome::Succeeded("exec'd".into())),
        };
        let eacces = Expect::Refused(Errno::EACCES);
        let cases: Vec<(Expect, Observed, bool)> = vec![
            (Expect::Halt, halted.clone(), true),
            (Expect::Halt, halted_after_success, true),
            (Expect::Halt, refused(13), false),
            (Expect::Halt, killed.clone(), false),
            (Expect::Halt, succeeded.clone(), false),
            (eacces, refused(13), true),
            (eacces, refused(1), false),
            (eacces, killed.clone(), false),
            (eacces, halted.clone(), false),
            (eacces, succeeded.clone(), false),
            (Expect::RefusedOrHalt, refused(1), true),
            (Expect::RefusedOrHalt, refused(110), true),
            (Expect::RefusedOrHalt, killed, true),
            (Expect::RefusedOrHalt, halted, true),
            (Expect::RefusedOrHalt, succeeded.clone(), false),
        ];
        for (expect, seen, pass) in cases {
            let got = judge(expect, &seen);
            assert_eq!(got.is_ok(), pass, "{expect:?} {seen:?}: {got:?}");
        }
        let why = judge(Expect::RefusedOrHalt, &succeeded).unwrap_err();
        assert!(why.starts_with("nothing stopped it"), "{why}");
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        let text = "[ -~]{0,40}";
        let call = "[!-~][ -~]{0,30}";
        prop_oneof![
            text.prop_map(Outcome::Succeeded),
            (0i32..5000, call).prop_map(|(n, call)| Outcome::Refused {
                errno: Errno(n),
                call
            }),
            (0i32..70, call).prop_map(|(n, call)| Outcome::Killed {
                signal: Signal(n),
                call
            }),
        ]
    }

    proptest! {
        #[test]
        fn reply_round_trips(o in outcome()) {
            let text = o.reply();
            prop_assert!(!text.contains('\r') && !text.contains('\n'));
            prop_assert_eq!(Outcome::parse(&text), Some(o));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Outcome::parse(&s);
        }
    }
}
