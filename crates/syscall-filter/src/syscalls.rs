//! The x86_64 Linux syscall table: number <-> name.
//!
//! A description names its calls (`"openat"`, not `257`) and a refused call
//! reaches the console by name (`refused syscall io_uring_setup`), so a
//! wrong pair here would silently allow or refuse the wrong call. Each
//! entry is written once, as `name = number`, and on a 64-bit x86_64 Linux
//! build every entry that libc knows is checked against `libc::SYS_<name>`
//! at compile time: a name that drifts from its number does not build.
//! The numbers are spelled out rather than taken from libc because the
//! table describes the x86_64 Linux ABI whatever the host is: the pure core
//! must build (and a description must parse) on FreeBSD too, where libc's
//! `SYS_*` constants are FreeBSD's. Entries newer than the libc release in
//! `Cargo.lock` are marked `kernel` and come from the kernel's
//! `arch/x86/entry/syscalls/syscall_64.tbl` (through Linux 6.19, `listns`);
//! when libc gains one, mark it `libc` and the compiler checks it too.
//! The x32 ABI (numbers with bit 30 set) is not in the table: filters built
//! by this crate refuse it wholesale.
#![forbid(unsafe_code)]

use std::fmt;

use crate::Error;

/// One entry per line: `name = number source`, sorted by number. `source`
/// is `libc` (checked against `libc::SYS_<name>`) or `kernel` (not in libc
/// yet).
macro_rules! x86_64_syscalls {
    ($($name:ident = $nr:literal $source:ident,)*) => {
        /// `(number, name)` for every x86_64 syscall, sorted by number.
        pub(crate) const TABLE: &[(u32, &str)] = &[$(($nr, stringify!($name)),)*];

        #[cfg(all(target_os = "linux", target_arch = "x86_64", target_pointer_width = "64"))]
        mod libc_agrees {
            $(x86_64_syscalls!(@check $source $name $nr);)*
        }
    };
    (@check libc $name:ident $nr:literal) => {
        paste::paste! {
            const _: () = assert!(libc::[<SYS_ $name>] == $nr, stringify!($name));
        }
    };
    (@check kernel $name:ident $nr:literal) => {};
}

x86_64_syscalls! {
    read = 0 libc,
    write = 1 libc,
    open = 2 libc,
    close = 3 libc,
    stat = 4 libc,
    fstat = 5 libc,
    lstat = 6 libc,
    poll = 7 libc,
    lseek = 8 libc,
    mmap = 9 libc,
    mprotect = 10 libc,
    munmap = 11 libc,
    brk = 12 libc,
    rt_sigaction = 13 libc,
    rt_sigprocmask = 14 libc,
    rt_sigreturn = 15 libc,
    ioctl = 16 libc,
    pread64 = 17 libc,
    pwrite64 = 18 libc,
    readv = 19 libc,
    writev = 20 libc,
    access = 21 libc,
    pipe = 22 libc,
    select = 23 libc,
    sched_yield = 24 libc,
    mremap = 25 libc,
    msync = 26 libc,
    mincore = 27 libc,
    madvise = 28 libc,
    shmget = 29 libc,
    shmat = 30 libc,
    shmctl = 31 libc,
    dup = 32 libc,
    dup2 = 33 libc,
    pause = 34 libc,
    nanosleep = 35 libc,
    getitimer = 36 libc,
    alarm = 37 libc,
    setitimer = 38 libc,
    getpid = 39 libc,
    sendfile = 40 libc,
    socket = 41 libc,
    connect = 42 libc,
    accept = 43 libc,
    sendto = 44 libc,
    recvfrom = 45 libc,
    sendmsg = 46 libc,
    recvmsg = 47 libc,
    shutdown = 48 libc,
    bind = 49 libc,
    listen = 50 libc,
    getsockname = 51 libc,
    getpeername = 52 libc,
    socketpair = 53 libc,
    setsockopt = 54 libc,
    getsockopt = 55 libc,
    clone = 56 libc,
    fork = 57 libc,
    vfork = 58 libc,
    execve = 59 libc,
    exit = 60 libc,
    wait4 = 61 libc,
    kill = 62 libc,
    uname = 63 libc,
    semget = 64 libc,
    semop = 65 libc,
    semctl = 66 libc,
    shmdt = 67 libc,
    msgget = 68 libc,
    msgsnd = 69 libc,
    msgrcv = 70 libc,
    msgctl = 71 libc,
    fcntl = 72 libc,
    flock = 73 libc,
    fsync = 74 libc,
    fdatasync = 75 libc,
    truncate = 76 libc,
    ftruncate = 77 libc,
    getdents = 78 libc,
    getcwd = 79 libc,
    chdir = 80 libc,
    fchdir = 81 libc,
    rename = 82 libc,
    mkdir = 83 libc,
    rmdir = 84 libc,
    creat = 85 libc,
    link = 86 libc,
    unlink = 87 libc,
    symlink = 88 libc,
    readlink = 89 libc,
    chmod = 90 libc,
    fchmod = 91 libc,
    chown = 92 libc,
    fchown = 93 libc,
    lchown = 94 libc,
    umask = 95 libc,
    gettimeofday = 96 libc,
    getrlimit = 97 libc,
    getrusage = 98 libc,
    sysinfo = 99 libc,
    times = 100 libc,
    ptrace = 101 libc,
    getuid = 102 libc,
    syslog = 103 libc,
    getgid = 104 libc,
    setuid = 105 libc,
    setgid = 106 libc,
    geteuid = 107 libc,
    getegid = 108 libc,
    setpgid = 109 libc,
    getppid = 110 libc,
    getpgrp = 111 libc,
    setsid = 112 libc,
    setreuid = 113 libc,
    setregid = 114 libc,
    getgroups = 115 libc,
    setgroups = 116 libc,
    setresuid = 117 libc,
    getresuid = 118 libc,
    setresgid = 119 libc,
    getresgid = 120 libc,
    getpgid = 121 libc,
    setfsuid = 122 libc,
    setfsgid = 123 libc,
    getsid = 124 libc,
    capget = 125 libc,
    capset = 126 libc,
    rt_sigpending = 127 libc,
    rt_sigtimedwait = 128 libc,
    rt_sigqueueinfo = 129 libc,
    rt_sigsuspend = 130 libc,
    sigaltstack = 131 libc,
    utime = 132 libc,
    mknod = 133 libc,
    uselib = 134 libc,
    personality = 135 libc,
    ustat = 136 libc,
    statfs = 137 libc,
    fstatfs = 138 libc,
    sysfs = 139 libc,
    getpriority = 140 libc,
    setpriority = 141 libc,
    sched_setparam = 142 libc,
    sched_getparam = 143 libc,
    sched_setscheduler = 144 libc,
    sched_getscheduler = 145 libc,
    sched_get_priority_max = 146 libc,
    sched_get_priority_min = 147 libc,
    sched_rr_get_interval = 148 libc,
    mlock = 149 libc,
    munlock = 150 libc,
    mlockall = 151 libc,
    munlockall = 152 libc,
    vhangup = 153 libc,
    modify_ldt = 154 libc,
    pivot_root = 155 libc,
    _sysctl = 156 libc,
    prctl = 157 libc,
    arch_prctl = 158 libc,
    adjtimex = 159 libc,
    setrlimit = 160 libc,
    chroot = 161 libc,
    sync = 162 libc,
    acct = 163 libc,
    settimeofday = 164 libc,
    mount = 165 libc,
    umount2 = 166 libc,
    swapon = 167 libc,
    swapoff = 168 libc,
    reboot = 169 libc,
    sethostname = 170 libc,
    setdomainname = 171 libc,
    iopl = 172 libc,
    ioperm = 173 libc,
    init_module = 175 libc,
    delete_module = 176 libc,
    quotactl = 179 libc,
    nfsservctl = 180 libc,
    getpmsg = 181 libc,
    putpmsg = 182 libc,
    afs_syscall = 183 libc,
    tuxcall = 184 libc,
    security = 185 libc,
    gettid = 186 libc,
    readahead = 187 libc,
    setxattr = 188 libc,
    lsetxattr = 189 libc,
    fsetxattr = 190 libc,
    getxattr = 191 libc,
    lgetxattr = 192 libc,
    fgetxattr = 193 libc,
    listxattr = 194 libc,
    llistxattr = 195 libc,
    flistxattr = 196 libc,
    removexattr = 197 libc,
    lremovexattr = 198 libc,
    fremovexattr = 199 libc,
    tkill = 200 libc,
    time = 201 libc,
    futex = 202 libc,
    sched_setaffinity = 203 libc,
    sched_getaffinity = 204 libc,
    set_thread_area = 205 libc,
    io_setup = 206 libc,
    io_destroy = 207 libc,
    io_getevents = 208 libc,
    io_submit = 209 libc,
    io_cancel = 210 libc,
    get_thread_area = 211 libc,
    lookup_dcookie = 212 libc,
    epoll_create = 213 libc,
    epoll_ctl_old = 214 libc,
    epoll_wait_old = 215 libc,
    remap_file_pages = 216 libc,
    getdents64 = 217 libc,
    set_tid_address = 218 libc,
    restart_syscall = 219 libc,
    semtimedop = 220 libc,
    fadvise64 = 221 libc,
    timer_create = 222 libc,
    timer_settime = 223 libc,
    timer_gettime = 224 libc,
    timer_getoverrun = 225 libc,
    timer_delete = 226 libc,
    clock_settime = 227 libc,
    clock_gettime = 228 libc,
    clock_getres = 229 libc,
    clock_nanosleep = 230 libc,
    exit_group = 231 libc,
    epoll_wait = 232 libc,
    epoll_ctl = 233 libc,
    tgkill = 234 libc,
    utimes = 235 libc,
    vserver = 236 libc,
    mbind = 237 libc,
    set_mempolicy = 238 libc,
    get_mempolicy = 239 libc,
    mq_open = 240 libc,
    mq_unlink = 241 libc,
    mq_timedsend = 242 libc,
    mq_timedreceive = 243 libc,
    mq_notify = 244 libc,
    mq_getsetattr = 245 libc,
    kexec_load = 246 libc,
    waitid = 247 libc,
    add_key = 248 libc,
    request_key = 249 libc,
    keyctl = 250 libc,
    ioprio_set = 251 libc,
    ioprio_get = 252 libc,
    inotify_init = 253 libc,
    inotify_add_watch = 254 libc,
    inotify_rm_watch = 255 libc,
    migrate_pages = 256 libc,
    openat = 257 libc,
    mkdirat = 258 libc,
    mknodat = 259 libc,
    fchownat = 260 libc,
    futimesat = 261 libc,
    newfstatat = 262 libc,
    unlinkat = 263 libc,
    renameat = 264 libc,
    linkat = 265 libc,
    symlinkat = 266 libc,
    readlinkat = 267 libc,
    fchmodat = 268 libc,
    faccessat = 269 libc,
    pselect6 = 270 libc,
    ppoll = 271 libc,
    unshare = 272 libc,
    set_robust_list = 273 libc,
    get_robust_list = 274 libc,
    splice = 275 libc,
    tee = 276 libc,
    sync_file_range = 277 libc,
    vmsplice = 278 libc,
    move_pages = 279 libc,
    utimensat = 280 libc,
    epoll_pwait = 281 libc,
    signalfd = 282 libc,
    timerfd_create = 283 libc,
    eventfd = 284 libc,
    fallocate = 285 libc,
    timerfd_settime = 286 libc,
    timerfd_gettime = 287 libc,
    accept4 = 288 libc,
    signalfd4 = 289 libc,
    eventfd2 = 290 libc,
    epoll_create1 = 291 libc,
    dup3 = 292 libc,
    pipe2 = 293 libc,
    inotify_init1 = 294 libc,
    preadv = 295 libc,
    pwritev = 296 libc,
    rt_tgsigqueueinfo = 297 libc,
    perf_event_open = 298 libc,
    recvmmsg = 299 libc,
    fanotify_init = 300 libc,
    fanotify_mark = 301 libc,
    prlimit64 = 302 libc,
    name_to_handle_at = 303 libc,
    open_by_handle_at = 304 libc,
    clock_adjtime = 305 libc,
    syncfs = 306 libc,
    sendmmsg = 307 libc,
    setns = 308 libc,
    getcpu = 309 libc,
    process_vm_readv = 310 libc,
    process_vm_writev = 311 libc,
    kcmp = 312 libc,
    finit_module = 313 libc,
    sched_setattr = 314 libc,
    sched_getattr = 315 libc,
    renameat2 = 316 libc,
    seccomp = 317 libc,
    getrandom = 318 libc,
    memfd_create = 319 libc,
    kexec_file_load = 320 libc,
    bpf = 321 libc,
    execveat = 322 libc,
    userfaultfd = 323 libc,
    membarrier = 324 libc,
    mlock2 = 325 libc,
    copy_file_range = 326 libc,
    preadv2 = 327 libc,
    pwritev2 = 328 libc,
    pkey_mprotect = 329 libc,
    pkey_alloc = 330 libc,
    pkey_free = 331 libc,
    statx = 332 libc,
    io_pgetevents = 333 kernel,
    rseq = 334 libc,
    uretprobe = 335 kernel,
    uprobe = 336 kernel,
    pidfd_send_signal = 424 libc,
    io_uring_setup = 425 libc,
    io_uring_enter = 426 libc,
    io_uring_register = 427 libc,
    open_tree = 428 libc,
    move_mount = 429 libc,
    fsopen = 430 libc,
    fsconfig = 431 libc,
    fsmount = 432 libc,
    fspick = 433 libc,
    pidfd_open = 434 libc,
    clone3 = 435 libc,
    close_range = 436 libc,
    openat2 = 437 libc,
    pidfd_getfd = 438 libc,
    faccessat2 = 439 libc,
    process_madvise = 440 libc,
    epoll_pwait2 = 441 libc,
    mount_setattr = 442 libc,
    quotactl_fd = 443 libc,
    landlock_create_ruleset = 444 libc,
    landlock_add_rule = 445 libc,
    landlock_restrict_self = 446 libc,
    memfd_secret = 447 libc,
    process_mrelease = 448 libc,
    futex_waitv = 449 libc,
    set_mempolicy_home_node = 450 libc,
    cachestat = 451 kernel,
    fchmodat2 = 452 libc,
    map_shadow_stack = 453 kernel,
    futex_wake = 454 kernel,
    futex_wait = 455 kernel,
    futex_requeue = 456 kernel,
    statmount = 457 kernel,
    listmount = 458 kernel,
    lsm_get_self_attr = 459 kernel,
    lsm_set_self_attr = 460 kernel,
    lsm_list_modules = 461 kernel,
    mseal = 462 libc,
    setxattrat = 463 kernel,
    getxattrat = 464 kernel,
    listxattrat = 465 kernel,
    removexattrat = 466 kernel,
    open_tree_attr = 467 kernel,
    file_getattr = 468 kernel,
    file_setattr = 469 kernel,
    listns = 470 kernel,
}

/// One x86_64 syscall, known to the table: it always has a name.
///
/// Serialized as its name (`"openat"`), so a dumped description reads and
/// diffs like the source it came from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Syscall(u32);

impl Syscall {
    /// `sendmsg`, the call that hands a listener to its supervisor.
    pub const SENDMSG: Syscall = Syscall(46);
    /// `clone`.
    pub const CLONE: Syscall = Syscall(56);
    /// `execve`.
    pub const EXECVE: Syscall = Syscall(59);
    /// `clone3`, whose flags sit in memory a filter cannot read.
    pub const CLONE3: Syscall = Syscall(435);

    /// The syscall called `name` (`"openat"`); an error names what was asked
    /// for when the table has no such call.
    pub fn named(name: &str) -> Result<Self, Error> {
        TABLE
            .iter()
            .find(|(_, n)| *n == name)
            .map(|&(nr, _)| Syscall(nr))
            .ok_or_else(|| Error::UnknownSyscall {
                name: name.to_owned(),
            })
    }

    /// The syscall numbered `nr`, if the table knows it (x32 numbers and
    /// holes in the table are not syscalls here).
    pub fn from_nr(nr: u32) -> Option<Self> {
        TABLE
            .binary_search_by_key(&nr, |&(n, _)| n)
            .ok()
            .map(|_| Syscall(nr))
    }

    /// The x86_64 syscall number.
    pub fn nr(self) -> u32 {
        self.0
    }

    /// The syscall's name (`"openat"`).
    pub fn name(self) -> &'static str {
        name_of(self.0).unwrap_or("?")
    }

    /// Every syscall in the table, by number.
    pub fn all() -> impl Iterator<Item = Syscall> {
        TABLE.iter().map(|&(nr, _)| Syscall(nr))
    }
}

/// The name of syscall number `nr`, if the table knows it.
pub fn name_of(nr: u32) -> Option<&'static str> {
    TABLE
        .binary_search_by_key(&nr, |&(n, _)| n)
        .ok()
        .and_then(|i| TABLE.get(i))
        .map(|&(_, name)| name)
}

impl fmt::Debug for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Syscall {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Syscall::named(s)
    }
}

impl serde::Serialize for Syscall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Syscall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Syscall::named(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
        let mut names: Vec<&str> = TABLE.iter().map(|&(_, n)| n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn lookups_agree_both_ways() {
        for &(nr, name) in TABLE {
            assert_eq!(Syscall::named(name).unwrap().nr(), nr);
            assert_eq!(name_of(nr), Some(name));
        }
        assert_eq!(Syscall::named("io_uring_setup").unwrap().nr(), 425);
        assert_eq!(Syscall::named("clone3").unwrap().nr(), 435);
        assert_eq!(name_of(0), Some("read"));
        assert_eq!(name_of(0x4000_0000), None);
        assert_eq!(name_of(400), None);
        assert!(matches!(
            Syscall::named("fork2"),
            Err(Error::UnknownSyscall { name }) if name == "fork2"
        ));
    }

    #[test]
    fn named_constants_match_the_table() {
        for (c, name) in [
            (Syscall::SENDMSG, "sendmsg"),
            (Syscall::CLONE, "clone"),
            (Syscall::EXECVE, "execve"),
            (Syscall::CLONE3, "clone3"),
        ] {
            assert_eq!(c.name(), name);
        }
    }

    #[test]
    fn serde_uses_names() {
        let s = Syscall::named("openat").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"openat\"");
        let back: Syscall = serde_json::from_str("\"openat\"").unwrap();
        assert_eq!(back, s);
        let err = serde_json::from_str::<Syscall>("\"openat3\"").unwrap_err();
        assert!(err.to_string().contains("openat3"), "{err}");
    }
}
