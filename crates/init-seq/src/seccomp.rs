//! The server's syscall allowlist (design §4 step 12): what Valkey 9.1.2,
//! its stream-guard module and the pinned glibc call, measured, as plain
//! data for `syscall-filter`.
//!
//! How the list was made: Valkey ran with this image's config, module and
//! pinned glibc under a filter that notifies every call, each continued
//! and noted once by the governor (`appliance.test_seccomp=record` on a
//! test image), through the whole e2e suite (`cargo xtask e2e --image
//! target/appliance-test --append appliance.test_seccomp=record`), and on
//! the host through the stream-guard and acl-render real-server suites
//! (`cargo xtask seccomp-trace --everything`). [`ALLOWED`] is what those
//! runs called, argument conditions included; [`ALLOWED_UNSEEN`] names the
//! few calls no run reached that a legitimate path needs, each with its
//! path. Then the same suites ran with this filter, refusals noted instead
//! of halting (`appliance.test_seccomp=log`, `cargo xtask seccomp-trace`):
//! nothing noted. See ARCHITECTURE.md, "The server's syscall filter".
//!
//! What a refused call does: the filter answers `SECCOMP_RET_USER_NOTIF`,
//! the governor holds the listener, prints one line naming the process and
//! the call, syncs and powers off; the call never returns. Two calls are
//! answered otherwise: `clone3` gets ENOSYS so glibc falls back to `clone`,
//! whose flags a classic-BPF filter can read (clone3's are behind a
//! pointer); `execve` is notified like a refusal and the governor lets the
//! first one through (init exec'ing the server), and only that one.
#![forbid(unsafe_code)]

use appliance_spec::Forks;
use syscall_filter::{Action, ArgCondition, Filter, Rule};

use crate::InitError;

/// Calls allowed whatever their arguments: every call the server made in
/// the measured runs (see the module docs), grouped by what needs them.
/// Calls with argument conditions are below.
pub const ALLOWED: &[&str] = &[
    // I/O on the AOF, the RDB, sockets and the console.
    "read",
    "write",
    "writev",
    "pread64",
    "lseek",
    "close",
    "fsync",
    "fdatasync",
    "fadvise64",
    // Files: the AOF directory and manifest (open, stat, rename, unlink,
    // mkdir), the config and the module at start, /proc/self for INFO,
    // statfs for the guard's free-space check.
    "openat",
    "newfstatat",
    "fstat",
    "statx",
    "statfs",
    "getdents64",
    "rename",
    "unlink",
    "mkdir",
    "access",
    "chdir",
    "umask",
    "fcntl",
    "pipe2",
    // Memory (executable mappings are conditioned below).
    "brk",
    "munmap",
    // Signals, threads, the fork's reaping.
    "rt_sigaction",
    "rt_sigprocmask",
    "futex",
    "set_robust_list",
    "rseq",
    "set_tid_address",
    "exit_group",
    "wait4",
    // Process facts and clocks.
    "getpid",
    "prlimit64",
    "sysinfo",
    "uname",
    "clock_nanosleep",
    "setitimer",
    "getrandom",
    // Serving TCP (socket is conditioned below): no connect, ever.
    "bind",
    "listen",
    "accept4",
    "shutdown",
    "getsockname",
    "getpeername",
    "setsockopt",
    "epoll_create",
    "epoll_ctl",
    "epoll_wait",
];

/// Calls never seen in the measured runs but allowed anyway, each with the
/// path that needs it: refusing one would halt the machine the first time
/// that path runs, and some of those paths a visitor can reach.
pub const ALLOWED_UNSEEN: &[(&str, &str)] = &[
    ("exit", "a thread ending (glibc's pthread_exit): none did while measured"),
    ("rt_sigreturn", "the return from any signal handler (SIGTERM, SIGALRM)"),
    ("kill", "Valkey stopping its own rewrite child; the kernel allows it only within the server's uid and Landlock domain"),
    ("ftruncate", "loading an AOF cut short by a power-off (aof-load-truncated), the path after every halt"),
    ("madvise", "glibc's malloc giving a thread arena's memory back"),
    ("mremap", "glibc's realloc of a large mapped chunk: query and output buffers a visitor grows"),
];

/// `ioctl` requests allowed (the second argument): `TCGETS` (glibc's
/// `isatty` on the console), the only one seen.
pub const IOCTL_REQUESTS: &[(&str, u64)] = &[("TCGETS", 0x5401)];

/// `prctl` options allowed (the first argument), both seen: `PR_SET_NAME`
/// (thread names) and `PR_SET_THP_DISABLE` (Valkey turns transparent huge
/// pages off for itself when the kernel has them on).
pub const PRCTL_OPTIONS: &[(&str, u64)] = &[("PR_SET_NAME", 15), ("PR_SET_THP_DISABLE", 41)];

/// `arch_prctl` codes allowed: `ARCH_SET_FS` (the loader sets the thread
/// pointer), the only one seen.
pub const ARCH_PRCTL_CODES: &[(&str, u64)] = &[("ARCH_SET_FS", 0x1002)];

/// Named values of one argument (`("AF_INET", 2)`).
type NamedValues = &'static [(&'static str, u64)];

/// Socket families allowed: `AF_INET` only, the one seen. The server binds
/// 0.0.0.0 (valkey.conf), the firewall drops IPv6, and no unix socket is
/// configured; every other family (netlink, packet, unix, ...) halts.
pub const SOCKET_FAMILIES: &[(&str, u64)] = &[("AF_INET", 2)];

/// `mprotect` protections seen: `PROT_READ` (the loader's RELRO) and
/// `PROT_READ|PROT_WRITE`. Nothing is ever made executable after mapping.
const MPROTECT_NO: u64 = PROT_EXEC;

/// `clone` flags of a glibc thread (`pthread_create`): `CLONE_VM | CLONE_FS |
/// CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS
/// | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID`. Only this exact value:
/// anything else with `CLONE_VM` (a second process sharing the server's
/// memory), a namespace flag, `CLONE_VFORK`, `CLONE_PARENT` or a pidfd is
/// refused by not being listed.
pub const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00;

/// `clone` flags of glibc's `fork()`: `CLONE_CHILD_SETTID |
/// CLONE_CHILD_CLEARTID | SIGCHLD`. Allowed only when the spec lets the
/// server fork (BGSAVE, AOF rewrite); the governor bounds what the child
/// may do and how long it may live.
pub const CLONE_FORK_FLAGS: u64 = 0x0120_0011;

/// `ENOSYS`, the answer to `clone3`.
const ENOSYS: u16 = 38;

const PROT_WRITE: u64 = 0x2;
const PROT_EXEC: u64 = 0x4;
const MAP_ANONYMOUS: u64 = 0x20;

/// The server's filter for the spec's fork mode. Every call not allowed
/// here is notified to the governor, which halts the machine.
///
/// # Errors
///
/// [`InitError::Seccomp`] if a name is not an x86_64 syscall or the filter
/// does not validate: a bug in this table, caught by its tests.
pub fn server_filter(forks: Forks) -> Result<Filter, InitError> {
    let named = |name: &str, action| {
        Rule::named(name, action).map_err(|e| InitError::Seccomp {
            reason: e.to_string(),
        })
    };
    let mut filter = Filter::new(Action::Notify);
    for name in ALLOWED
        .iter()
        .copied()
        .chain(ALLOWED_UNSEEN.iter().map(|(name, _)| *name))
    {
        filter = filter.rule(named(name, Action::Allow)?);
    }
    // Calls allowed only with one of a few values in one `int` argument.
    let by_value: [(&str, u8, NamedValues); 4] = [
        ("ioctl", 1, IOCTL_REQUESTS),
        ("prctl", 0, PRCTL_OPTIONS),
        ("arch_prctl", 0, ARCH_PRCTL_CODES),
        ("socket", 0, SOCKET_FAMILIES),
    ];
    for (name, arg, values) in by_value {
        for (_, value) in values {
            filter = filter
                .rule(named(name, Action::Allow)?.when(ArgCondition::equal(arg, *value).low32()));
        }
    }
    // Executable memory only from files (the loader, the module), never
    // writable at once, never anonymous; no page made executable later.
    filter = filter
        .rule(
            named("mmap", Action::Notify)?
                .when(ArgCondition::any_set(2, PROT_EXEC).low32())
                .when(ArgCondition::any_set(2, PROT_WRITE).low32()),
        )
        .rule(
            named("mmap", Action::Notify)?
                .when(ArgCondition::any_set(2, PROT_EXEC).low32())
                .when(ArgCondition::any_set(3, MAP_ANONYMOUS).low32()),
        )
        .rule(named("mmap", Action::Allow)?)
        .rule(
            named("mprotect", Action::Allow)?.when(ArgCondition::none_set(2, MPROTECT_NO).low32()),
        );
    filter = filter
        .rule(named("clone", Action::Allow)?.when(ArgCondition::equal(0, CLONE_THREAD_FLAGS)));
    if forks == Forks::Bounded {
        filter = filter
            .rule(named("clone", Action::Allow)?.when(ArgCondition::equal(0, CLONE_FORK_FLAGS)));
    }
    filter = filter
        .rule(named("clone3", Action::Errno(ENOSYS))?)
        .rule(named("execve", Action::Notify)?);
    filter.validate().map_err(|e| InitError::Seccomp {
        reason: e.to_string(),
    })?;
    Ok(filter)
}

/// TEST IMAGES ONLY: the filter that measures what the server uses. It
/// allows nothing: every call is notified (the governor, in log mode,
/// notes each distinct call once and continues it), except `clone3`, which
/// answers ENOSYS as in [`server_filter`] so glibc takes the same path.
///
/// # Errors
///
/// As [`server_filter`].
pub fn notify_everything() -> Result<Filter, InitError> {
    let clone3 = Rule::named("clone3", Action::Errno(ENOSYS)).map_err(|e| InitError::Seccomp {
        reason: e.to_string(),
    })?;
    Ok(Filter::new(Action::Notify).rule(clone3))
}

/// The number of distinct syscalls the filter lets through in some form
/// (for the console line and the closing figures).
pub fn allowed_syscalls(filter: &Filter) -> usize {
    let mut names: Vec<&str> = filter
        .rules
        .iter()
        .filter(|r| r.action == Action::Allow)
        .map(|r| r.syscall.name())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall_filter::{compile, SeccompData, Syscall};

    fn nr(name: &str) -> u32 {
        Syscall::named(name).unwrap().nr()
    }

    fn call(name: &str, args: [u64; 6]) -> SeccompData {
        SeccompData::x86_64(nr(name), args)
    }

    #[test]
    fn builds_validates_and_compiles_for_both_modes() {
        for forks in [Forks::Bounded, Forks::Never] {
            let filter = server_filter(forks).unwrap();
            let program = compile(&filter).unwrap();
            assert!(program.len() < 1024, "{} instructions", program.len());
        }
    }

    #[test]
    fn what_the_server_may_and_may_not_do() {
        let bounded = server_filter(Forks::Bounded).unwrap();
        let never = server_filter(Forks::Never).unwrap();
        let allow = Action::Allow;
        let notify = Action::Notify;
        let cases: &[(&str, [u64; 6], Action, Action)] = &[
            ("read", [0; 6], allow, allow),
            ("clone", [CLONE_THREAD_FLAGS, 0, 0, 0, 0, 0], allow, allow),
            ("clone", [CLONE_FORK_FLAGS, 0, 0, 0, 0, 0], allow, notify),
            // CLONE_VM without CLONE_THREAD, and with SIGCHLD.
            ("clone", [0x100 | 17, 0, 0, 0, 0, 0], notify, notify),
            // A namespace flag on a thread or a fork.
            (
                "clone",
                [CLONE_THREAD_FLAGS | 0x1000_0000, 0, 0, 0, 0, 0],
                notify,
                notify,
            ),
            (
                "clone",
                [CLONE_FORK_FLAGS | 0x4000_0000, 0, 0, 0, 0, 0],
                notify,
                notify,
            ),
            // vfork-style.
            ("clone", [0x4100 | 17, 0, 0, 0, 0, 0], notify, notify),
            ("clone3", [0; 6], Action::Errno(38), Action::Errno(38)),
            ("fork", [0; 6], notify, notify),
            ("vfork", [0; 6], notify, notify),
            ("execve", [0; 6], notify, notify),
            ("execveat", [0; 6], notify, notify),
            ("memfd_create", [0; 6], notify, notify),
            ("io_uring_setup", [0; 6], notify, notify),
            ("bpf", [0; 6], notify, notify),
            ("ptrace", [0; 6], notify, notify),
            ("process_vm_readv", [0; 6], notify, notify),
            ("process_vm_writev", [0; 6], notify, notify),
            ("mount", [0; 6], notify, notify),
            ("umount2", [0; 6], notify, notify),
            ("pivot_root", [0; 6], notify, notify),
            ("unshare", [0; 6], notify, notify),
            ("setns", [0; 6], notify, notify),
            ("add_key", [0; 6], notify, notify),
            ("keyctl", [0; 6], notify, notify),
            ("request_key", [0; 6], notify, notify),
            ("perf_event_open", [0; 6], notify, notify),
            ("userfaultfd", [0; 6], notify, notify),
            ("kexec_load", [0; 6], notify, notify),
            ("kexec_file_load", [0; 6], notify, notify),
            ("init_module", [0; 6], notify, notify),
            ("finit_module", [0; 6], notify, notify),
            ("delete_module", [0; 6], notify, notify),
            ("personality", [0; 6], notify, notify),
            ("connect", [0; 6], notify, notify),
            ("setuid", [0; 6], notify, notify),
            ("socket", [2, 1, 0, 0, 0, 0], allow, allow),
            ("socket", [10, 1, 0, 0, 0, 0], notify, notify),
            ("socket", [1, 1, 0, 0, 0, 0], notify, notify),
            ("socketpair", [1, 1, 0, 0, 0, 0], notify, notify),
            ("arch_prctl", [0x1002, 0, 0, 0, 0, 0], allow, allow),
            ("arch_prctl", [0x1021, 0, 0, 0, 0, 0], notify, notify),
            ("sendmsg", [3, 0, 0, 0, 0, 0], notify, notify),
            ("getuid", [0; 6], notify, notify),
            ("socket", [16, 3, 0, 0, 0, 0], notify, notify),
            ("socket", [17, 3, 0, 0, 0, 0], notify, notify),
            // The kernel reads the family as an int: high bits do not help.
            ("socket", [16 | 1 << 32, 3, 0, 0, 0, 0], notify, notify),
            // PROT_READ|PROT_EXEC from a file: the loader and the module.
            ("mmap", [0, 4096, 5, 0x802, 3, 0], allow, allow),
            ("mmap", [0, 4096, 3, 0x22, u64::MAX, 0], allow, allow),
            // Anonymous executable, writable executable.
            ("mmap", [0, 4096, 5, 0x22, u64::MAX, 0], notify, notify),
            ("mmap", [0, 4096, 7, 0x02, 3, 0], notify, notify),
            ("mprotect", [0, 4096, 1, 0, 0, 0], allow, allow),
            ("mprotect", [0, 4096, 5, 0, 0, 0], notify, notify),
            ("pkey_mprotect", [0, 4096, 5, 0, 0, 0], notify, notify),
            ("ioctl", [1, 0x5401, 0, 0, 0, 0], allow, allow),
            ("ioctl", [1, 0x5412, 0, 0, 0, 0], notify, notify),
            ("prctl", [15, 0, 0, 0, 0, 0], allow, allow),
            ("prctl", [38, 1, 0, 0, 0, 0], notify, notify),
        ];
        for (name, args, want_bounded, want_never) in cases {
            let data = call(name, *args);
            assert_eq!(
                bounded.evaluate(&data),
                *want_bounded,
                "bounded {name} {args:x?}"
            );
            assert_eq!(never.evaluate(&data), *want_never, "never {name} {args:x?}");
        }
    }

    #[test]
    fn allowed_count() {
        let filter = server_filter(Forks::Bounded).unwrap();
        // Every ALLOWED name plus the conditioned ones.
        let conditioned = [
            "ioctl",
            "prctl",
            "arch_prctl",
            "socket",
            "mmap",
            "mprotect",
            "clone",
        ];
        assert_eq!(
            allowed_syscalls(&filter),
            ALLOWED.len() + ALLOWED_UNSEEN.len() + conditioned.len()
        );
        // No call is listed twice.
        let mut names: Vec<&str> = ALLOWED
            .iter()
            .copied()
            .chain(ALLOWED_UNSEEN.iter().map(|(n, _)| *n))
            .chain(conditioned)
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }
}
