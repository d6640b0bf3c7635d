//! The arguments of a call that an allowlist's conditions are about, named
//! and decoded: clone flags, socket families and types, memory protection
//! and mapping flags, `fcntl`/`prctl`/`ioctl` requests, and a few more.
//!
//! Used for console lines about refused calls and for the recorder's
//! per-call signatures. Only register values are decoded, never memory the
//! caller points at. Constants are the x86_64 Linux ABI's (stable by
//! definition), written out so the module stays pure and host-neutral.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::filter::{hi32, lo32};
use crate::syscalls::name_of;

/// How to show one argument.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `clone`/`unshare` flags (with `clone`'s exit signal in the low byte
    /// when `signal` is true).
    CloneFlags { signal: bool },
    /// `PROT_*`.
    Prot,
    /// `MAP_*`.
    MapFlags,
    /// `AF_*` (an `int`).
    Family,
    /// `SOCK_*` type and flags (an `int`).
    SockType,
    /// `fcntl` command (an `int`).
    Fcntl,
    /// `prctl` option (an `int`).
    Prctl,
    /// `arch_prctl` code.
    ArchPrctl,
    /// `futex` operation (an `int`).
    Futex,
    /// A signal number (an `int`).
    Signal,
    /// `ioctl` request (an `unsigned int` in the kernel).
    Ioctl,
    /// Flags or numbers shown in hex (an `int`).
    Hex32,
}

/// One argument worth showing: index, name, decoding.
type ArgShown = (u8, &'static str, Kind);

/// Which arguments matter, per call.
const INTERESTING: &[(&str, &[ArgShown])] = &[
    ("accept4", &[(3, "flags", Kind::Hex32)]),
    ("arch_prctl", &[(0, "code", Kind::ArchPrctl)]),
    ("clone", &[(0, "flags", Kind::CloneFlags { signal: true })]),
    ("dup3", &[(2, "flags", Kind::Hex32)]),
    ("epoll_create1", &[(0, "flags", Kind::Hex32)]),
    ("eventfd2", &[(1, "flags", Kind::Hex32)]),
    ("fcntl", &[(1, "cmd", Kind::Fcntl)]),
    ("futex", &[(1, "op", Kind::Futex)]),
    ("getrlimit", &[(0, "resource", Kind::Hex32)]),
    (
        "getsockopt",
        &[(1, "level", Kind::Hex32), (2, "optname", Kind::Hex32)],
    ),
    ("ioctl", &[(1, "request", Kind::Ioctl)]),
    ("kill", &[(1, "signal", Kind::Signal)]),
    ("madvise", &[(2, "advice", Kind::Hex32)]),
    ("memfd_create", &[(1, "flags", Kind::Hex32)]),
    (
        "mmap",
        &[(2, "prot", Kind::Prot), (3, "flags", Kind::MapFlags)],
    ),
    ("mprotect", &[(2, "prot", Kind::Prot)]),
    ("mremap", &[(3, "flags", Kind::Hex32)]),
    ("open", &[(1, "flags", Kind::Hex32)]),
    ("openat", &[(2, "flags", Kind::Hex32)]),
    ("personality", &[(0, "persona", Kind::Hex32)]),
    ("pipe2", &[(1, "flags", Kind::Hex32)]),
    ("pkey_mprotect", &[(2, "prot", Kind::Prot)]),
    ("prctl", &[(0, "option", Kind::Prctl)]),
    ("prlimit64", &[(1, "resource", Kind::Hex32)]),
    ("rt_sigaction", &[(0, "signal", Kind::Signal)]),
    (
        "setns",
        &[(1, "nstype", Kind::CloneFlags { signal: false })],
    ),
    ("setrlimit", &[(0, "resource", Kind::Hex32)]),
    (
        "setsockopt",
        &[(1, "level", Kind::Hex32), (2, "optname", Kind::Hex32)],
    ),
    ("signalfd4", &[(3, "flags", Kind::Hex32)]),
    (
        "socket",
        &[
            (0, "family", Kind::Family),
            (1, "type", Kind::SockType),
            (2, "protocol", Kind::Hex32),
        ],
    ),
    (
        "socketpair",
        &[(0, "family", Kind::Family), (1, "type", Kind::SockType)],
    ),
    ("tgkill", &[(2, "signal", Kind::Signal)]),
    (
        "timerfd_create",
        &[(0, "clock", Kind::Hex32), (1, "flags", Kind::Hex32)],
    ),
    ("tkill", &[(1, "signal", Kind::Signal)]),
    (
        "unshare",
        &[(0, "flags", Kind::CloneFlags { signal: false })],
    ),
];

const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x0000_0100, "CLONE_VM"),
    (0x0000_0200, "CLONE_FS"),
    (0x0000_0400, "CLONE_FILES"),
    (0x0000_0800, "CLONE_SIGHAND"),
    (0x0000_1000, "CLONE_PIDFD"),
    (0x0000_2000, "CLONE_PTRACE"),
    (0x0000_4000, "CLONE_VFORK"),
    (0x0000_8000, "CLONE_PARENT"),
    (0x0001_0000, "CLONE_THREAD"),
    (0x0002_0000, "CLONE_NEWNS"),
    (0x0004_0000, "CLONE_SYSVSEM"),
    (0x0008_0000, "CLONE_SETTLS"),
    (0x0010_0000, "CLONE_PARENT_SETTID"),
    (0x0020_0000, "CLONE_CHILD_CLEARTID"),
    (0x0040_0000, "CLONE_DETACHED"),
    (0x0080_0000, "CLONE_UNTRACED"),
    (0x0100_0000, "CLONE_CHILD_SETTID"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x8000_0000, "CLONE_IO"),
];

/// `CLONE_NEWTIME`: shares the exit-signal byte in `clone`, a flag in
/// `unshare`, `setns` and `clone3`.
const CLONE_NEWTIME: u64 = 0x80;

const PROT: &[(u64, &str)] = &[
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x8, "PROT_SEM"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];

const MAP_FLAGS: &[(u64, &str)] = &[
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x40, "MAP_32BIT"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x1_0000, "MAP_NONBLOCK"),
    (0x2_0000, "MAP_STACK"),
    (0x4_0000, "MAP_HUGETLB"),
    (0x8_0000, "MAP_SYNC"),
    (0x10_0000, "MAP_FIXED_NOREPLACE"),
    (0x400_0000, "MAP_UNINITIALIZED"),
];

const FAMILIES: &[(u64, &str)] = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (4, "AF_IPX"),
    (5, "AF_APPLETALK"),
    (9, "AF_X25"),
    (10, "AF_INET6"),
    (15, "AF_KEY"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (29, "AF_CAN"),
    (31, "AF_BLUETOOTH"),
    (38, "AF_ALG"),
    (40, "AF_VSOCK"),
    (44, "AF_XDP"),
];

const SOCK_TYPES: &[(u64, &str)] = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];
const SOCK_FLAGS: &[(u64, &str)] = &[(0x800, "SOCK_NONBLOCK"), (0x8_0000, "SOCK_CLOEXEC")];

const FCNTL: &[(u64, &str)] = &[
    (0, "F_DUPFD"),
    (1, "F_GETFD"),
    (2, "F_SETFD"),
    (3, "F_GETFL"),
    (4, "F_SETFL"),
    (5, "F_GETLK"),
    (6, "F_SETLK"),
    (7, "F_SETLKW"),
    (8, "F_SETOWN"),
    (9, "F_GETOWN"),
    (36, "F_OFD_GETLK"),
    (37, "F_OFD_SETLK"),
    (38, "F_OFD_SETLKW"),
    (1024, "F_SETLEASE"),
    (1025, "F_GETLEASE"),
    (1026, "F_NOTIFY"),
    (1030, "F_DUPFD_CLOEXEC"),
    (1031, "F_SETPIPE_SZ"),
    (1032, "F_GETPIPE_SZ"),
    (1033, "F_ADD_SEALS"),
    (1034, "F_GET_SEALS"),
];

const PRCTL: &[(u64, &str)] = &[
    (1, "PR_SET_PDEATHSIG"),
    (2, "PR_GET_PDEATHSIG"),
    (3, "PR_GET_DUMPABLE"),
    (4, "PR_SET_DUMPABLE"),
    (8, "PR_SET_KEEPCAPS"),
    (15, "PR_SET_NAME"),
    (16, "PR_GET_NAME"),
    (21, "PR_GET_SECCOMP"),
    (22, "PR_SET_SECCOMP"),
    (23, "PR_CAPBSET_READ"),
    (24, "PR_CAPBSET_DROP"),
    (29, "PR_SET_TIMERSLACK"),
    (36, "PR_SET_CHILD_SUBREAPER"),
    (38, "PR_SET_NO_NEW_PRIVS"),
    (39, "PR_GET_NO_NEW_PRIVS"),
    (41, "PR_SET_THP_DISABLE"),
    (42, "PR_GET_THP_DISABLE"),
    (47, "PR_CAP_AMBIENT"),
    (0x5356_4d41, "PR_SET_VMA"),
];

const ARCH_PRCTL: &[(u64, &str)] = &[
    (0x1001, "ARCH_SET_GS"),
    (0x1002, "ARCH_SET_FS"),
    (0x1003, "ARCH_GET_FS"),
    (0x1004, "ARCH_GET_GS"),
    (0x1011, "ARCH_GET_CPUID"),
    (0x1012, "ARCH_SET_CPUID"),
    (0x4001, "ARCH_GET_UNTAG_MASK"),
    (0x5001, "ARCH_SHSTK_ENABLE"),
    (0x5002, "ARCH_SHSTK_DISABLE"),
    (0x5005, "ARCH_SHSTK_STATUS"),
];

const FUTEX_OPS: &[(u64, &str)] = &[
    (0, "FUTEX_WAIT"),
    (1, "FUTEX_WAKE"),
    (2, "FUTEX_FD"),
    (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"),
    (5, "FUTEX_WAKE_OP"),
    (6, "FUTEX_LOCK_PI"),
    (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"),
    (9, "FUTEX_WAIT_BITSET"),
    (10, "FUTEX_WAKE_BITSET"),
    (11, "FUTEX_WAIT_REQUEUE_PI"),
    (12, "FUTEX_CMP_REQUEUE_PI"),
    (13, "FUTEX_LOCK_PI2"),
];
const FUTEX_FLAGS: &[(u64, &str)] = &[
    (0x80, "FUTEX_PRIVATE_FLAG"),
    (0x100, "FUTEX_CLOCK_REALTIME"),
];

const SIGNALS: &[(u64, &str)] = &[
    (0, "0"),
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (16, "SIGSTKFLT"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (24, "SIGXCPU"),
    (25, "SIGXFSZ"),
    (26, "SIGVTALRM"),
    (27, "SIGPROF"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (31, "SIGSYS"),
];

const IOCTLS: &[(u64, &str)] = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x540f, "TIOCGPGRP"),
    (0x5413, "TIOCGWINSZ"),
    (0x541b, "FIONREAD"),
    (0x5421, "FIONBIO"),
    (0x5450, "FIONCLEX"),
    (0x5451, "FIOCLEX"),
    (0x5452, "FIOASYNC"),
];

/// The arguments of call `nr` worth recording, named and decoded, in
/// argument order. Empty for calls with nothing a filter condition would
/// test.
pub fn describe_args(nr: u32, args: &[u64; 6]) -> Vec<(&'static str, String)> {
    let Some(name) = name_of(nr) else {
        return Vec::new();
    };
    let Some((_, wanted)) = INTERESTING.iter().find(|(n, _)| *n == name) else {
        return Vec::new();
    };
    wanted
        .iter()
        .filter_map(|&(index, arg_name, kind)| {
            let value = *args.get(usize::from(index))?;
            Some((arg_name, render(value, kind)))
        })
        .collect()
}

/// The signature of a call for the recorder: its decoded arguments joined
/// as `name=value` words (empty when nothing is worth recording).
pub fn signature(nr: u32, args: &[u64; 6]) -> String {
    let mut out = String::new();
    for (name, value) in describe_args(nr, args) {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{name}={value}");
    }
    out
}

fn render(value: u64, kind: Kind) -> String {
    // An `int` argument: the kernel reads only the low half, so that is what
    // is decoded; stray high bits are shown, not hidden.
    let int = |render: &dyn Fn(u64) -> String| {
        let shown = render(u64::from(lo32(value)));
        match hi32(value) {
            0 => shown,
            high => format!("{shown}(high {high:#x})"),
        }
    };
    match kind {
        Kind::CloneFlags { signal } => clone_flags(value, signal),
        Kind::Prot => int(&|v| flags(v, PROT, "PROT_NONE")),
        Kind::MapFlags => int(&map_flags),
        Kind::Family => int(&|v| enum_name(v, FAMILIES)),
        Kind::SockType => int(&|v| {
            let base = enum_name(v & 0xf, SOCK_TYPES);
            match v & !0xf {
                0 => base,
                rest => format!("{base}|{}", flags(rest, SOCK_FLAGS, "")),
            }
        }),
        Kind::Fcntl => int(&|v| enum_name(v, FCNTL)),
        Kind::Prctl => int(&|v| enum_name(v, PRCTL)),
        Kind::ArchPrctl => enum_name(value, ARCH_PRCTL),
        Kind::Futex => int(&|v| {
            let base = enum_name(v & 0x7f, FUTEX_OPS);
            match v & !0x7f {
                0 => base,
                rest => format!("{base}|{}", flags(rest, FUTEX_FLAGS, "")),
            }
        }),
        Kind::Signal => int(&|v| enum_name(v, SIGNALS)),
        Kind::Ioctl => int(&|v| enum_name(v, IOCTLS)),
        Kind::Hex32 => int(&|v| format!("{v:#x}")),
    }
}

/// `NAME` for a known value, the number otherwise.
fn enum_name(value: u64, table: &[(u64, &str)]) -> String {
    table
        .iter()
        .find(|&&(v, _)| v == value)
        .map_or_else(|| format!("{value:#x}"), |&(_, n)| n.to_owned())
}

/// `A|B|0x40` (leftover bits in hex), or `none` for zero.
fn flags(value: u64, table: &[(u64, &str)], none: &str) -> String {
    if value == 0 {
        return if none.is_empty() {
            "0".to_owned()
        } else {
            none.to_owned()
        };
    }
    let mut parts: Vec<String> = Vec::new();
    let mut rest = value;
    for &(bit, name) in table {
        if value & bit == bit {
            parts.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

fn map_flags(value: u64) -> String {
    let kind = match value & 0x3 {
        1 => "MAP_SHARED",
        2 => "MAP_PRIVATE",
        3 => "MAP_SHARED_VALIDATE",
        _ => "MAP_TYPE_0",
    };
    match value & !0x3 {
        0 => kind.to_owned(),
        rest => format!("{kind}|{}", flags(rest, MAP_FLAGS, "")),
    }
}

fn clone_flags(value: u64, exit_signal: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = value;
    if exit_signal {
        let signal = value & 0xff;
        rest &= !0xff;
        let named = flags(rest, CLONE_FLAGS, "");
        if rest != 0 {
            parts.push(named);
        }
        if signal != 0 || parts.is_empty() {
            parts.push(enum_name(signal, SIGNALS));
        }
    } else {
        if rest & CLONE_NEWTIME != 0 {
            parts.push("CLONE_NEWTIME".to_owned());
            rest &= !CLONE_NEWTIME;
        }
        if rest != 0 || parts.is_empty() {
            parts.push(flags(rest, CLONE_FLAGS, "0"));
        }
    }
    parts.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Syscall;

    fn sig(name: &str, args: [u64; 6]) -> String {
        signature(Syscall::named(name).unwrap().nr(), &args)
    }

    #[test]
    fn every_interesting_call_exists() {
        for (name, _) in INTERESTING {
            Syscall::named(name).unwrap();
        }
    }

    #[test]
    fn signatures() {
        let cases: &[(&str, [u64; 6], &str)] = &[
            // glibc's pthread_create.
            ("clone", [0x3d0f00, 0, 0, 0, 0, 0], "flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"),
            // glibc's fork.
            ("clone", [0x0120_0011, 0, 0, 0, 0, 0], "flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"),
            ("clone", [0, 0, 0, 0, 0, 0], "flags=0"),
            ("unshare", [0x2_0080, 0, 0, 0, 0, 0], "flags=CLONE_NEWTIME|CLONE_NEWNS"),
            ("socket", [10, 0x80801, 0, 0, 0, 0], "family=AF_INET6 type=SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC protocol=0x0"),
            ("socket", [16 | 1 << 32, 3, 9, 0, 0, 0], "family=AF_NETLINK(high 0x1) type=SOCK_RAW protocol=0x9"),
            ("mmap", [0, 4096, 7, 0x22, 0, 0], "prot=PROT_READ|PROT_WRITE|PROT_EXEC flags=MAP_PRIVATE|MAP_ANONYMOUS"),
            ("mmap", [0, 4096, 0, 0x802, 3, 0], "prot=PROT_NONE flags=MAP_PRIVATE|MAP_DENYWRITE"),
            ("mprotect", [0, 4096, 5, 0, 0, 0], "prot=PROT_READ|PROT_EXEC"),
            ("fcntl", [3, 1030, 0, 0, 0, 0], "cmd=F_DUPFD_CLOEXEC"),
            ("futex", [0, 0x89, 0, 0, 0, 0], "op=FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG"),
            ("prctl", [38, 1, 0, 0, 0, 0], "option=PR_SET_NO_NEW_PRIVS"),
            ("prctl", [0x9999, 0, 0, 0, 0, 0], "option=0x9999"),
            ("ioctl", [1, 0x5401, 0, 0, 0, 0], "request=TCGETS"),
            ("tgkill", [1, 1, 15, 0, 0, 0], "signal=SIGTERM"),
            ("arch_prctl", [0x1002, 0, 0, 0, 0, 0], "code=ARCH_SET_FS"),
            ("read", [0, 0, 0, 0, 0, 0], ""),
        ];
        for (name, args, want) in cases {
            assert_eq!(sig(name, *args), *want, "{name} {args:x?}");
        }
        assert_eq!(signature(0x4000_0000, &[0; 6]), "");
    }
}
