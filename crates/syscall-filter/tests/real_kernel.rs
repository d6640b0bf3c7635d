//! Filters on the real kernel (Linux, x86_64; runs as root here, never
//! skipped). Each test forks a child that sets `no_new_privs`, installs a
//! filter (handing its listener to the test over a socket pair when the
//! filter notifies) and makes raw system calls; the child reports through
//! its exit status: 0 when every check passed, else the number of the
//! first check that failed. Between `fork` and `_exit` a child only makes
//! raw, async-signal-safe calls and allocates nothing (the test harness is
//! multi-threaded).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use syscall_filter::linux::{
    install, recv_fd, run_traced, send_fd, ChildExit, InstallFlags, Listener, Readiness, Received,
    Responded,
};
use syscall_filter::{
    compile, compile_with, Action, ArgCondition, Error, Filter, Layout, Response, Rule, Syscall,
};

/// An errno no kernel path in these tests returns, marking the filter's
/// refusals apart from the kernel's own errors.
const MARK: i32 = libc::ENOTRECOVERABLE;

fn sys(name: &str) -> Syscall {
    Syscall::named(name).unwrap()
}

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

/// A raw system call with up to six arguments.
fn call(nr: libc::c_long, args: [u64; 6]) -> i64 {
    // SAFETY: the tests pass arguments each call accepts (or that make it
    // fail without touching memory).
    unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) }
}

/// `exit_group`, `exit` and `close` allowed first, unless the filter says
/// otherwise: a child must be able to close its copy of the listener and
/// to report.
fn with_exit(filter: Filter) -> Filter {
    let mut rules: Vec<Rule> = ["exit_group", "exit", "close"]
        .iter()
        .map(|name| sys(name))
        .filter(|s| filter.rules.iter().all(|r| r.syscall != *s))
        .map(|s| Rule::new(s, Action::Allow))
        .collect();
    rules.extend(filter.rules);
    Filter { rules, ..filter }
}

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

fn wait(pid: libc::pid_t, options: libc::c_int) -> Option<Exit> {
    let mut status = 0;
    // SAFETY: waitpid writes the status through a valid pointer.
    let ret = unsafe { libc::waitpid(pid, &mut status, options) };
    assert!(ret >= 0, "waitpid: {}", std::io::Error::last_os_error());
    if ret == 0 {
        return None;
    }
    if libc::WIFSIGNALED(status) {
        Some(Exit::Signal(libc::WTERMSIG(status)))
    } else {
        Some(Exit::Code(libc::WEXITSTATUS(status)))
    }
}

struct Child {
    pid: libc::pid_t,
    listener: Option<Listener>,
}

impl Child {
    fn exit(&self) -> Exit {
        wait(self.pid, 0).unwrap()
    }
    fn listener(&self) -> &Listener {
        self.listener.as_ref().unwrap()
    }
    /// Receives the next notification (within 10 s).
    fn next(&self) -> syscall_filter::Notification {
        let l = self.listener();
        assert_eq!(
            l.wait(Some(Duration::from_secs(10))).unwrap(),
            Readiness::Notification
        );
        match l.recv().unwrap() {
            Received::Notification(n) => n,
            Received::TargetGone => panic!("target gone"),
        }
    }
}

/// Forks a child that installs `filter` (plus `exit`), then runs `body` and
/// exits with its result.
fn spawn(filter: Filter, layout: Layout, body: impl FnOnce() -> i32) -> Child {
    let notifies =
        filter.default == Action::Notify || filter.rules.iter().any(|r| r.action == Action::Notify);
    let (parent_end, child_end) = UnixStream::pair().unwrap();
    let sock = u32::try_from(child_end.as_raw_fd()).unwrap();
    let program = compile_with(&with_exit(filter).with_listener_handoff(sock), layout).unwrap();
    // SAFETY: the child below only makes raw system calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = (|| {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return 100;
            }
            let flags = InstallFlags {
                new_listener: notifies,
                ..InstallFlags::default()
            };
            let listener = match install(&program, flags) {
                Ok(l) => l,
                Err(_) => return 101,
            };
            if let Some(l) = listener {
                if send_fd(child_end.as_fd(), l.as_fd()).is_err() {
                    return 102;
                }
                // Only the supervisor may hold the listener: a copy left
                // here would keep it open after the supervisor closes its
                // own.
                drop(l);
            }
            body()
        })();
        // SAFETY: ends the child without unwinding or running destructors.
        unsafe { libc::_exit(code) };
    }
    drop(child_end);
    let listener =
        notifies.then(|| Listener::from_fd(recv_fd(parent_end.as_fd()).unwrap()).unwrap());
    Child { pid, listener }
}

#[test]
fn allowed_calls_run_errno_answers_return_their_errno_clone3_is_enosys() {
    // SAFETY: getpid has no preconditions.
    let me = i64::from(unsafe { libc::getpid() });
    for layout in [Layout::Linear, Layout::Tree] {
        let filter = Filter::new(Action::KillProcess)
            .rule(Rule::new(sys("getppid"), Action::Allow))
            .rule(Rule::new(sys("uname"), Action::Errno(MARK as u16)))
            .rule(Rule::new(sys("clone3"), Action::Errno(libc::ENOSYS as u16)))
            .rule(Rule::new(sys("getpid"), Action::Log));
        let child = spawn(filter, layout, || {
            if call(libc::SYS_getppid, [0; 6]) != me {
                return 1;
            }
            let mut uts = std::mem::MaybeUninit::<libc::utsname>::uninit();
            if call(libc::SYS_uname, [uts.as_mut_ptr() as u64, 0, 0, 0, 0, 0]) != -1
                || errno() != MARK
            {
                return 2;
            }
            let args = [0u64; 11];
            if call(libc::SYS_clone3, [args.as_ptr() as u64, 88, 0, 0, 0, 0]) != -1
                || errno() != libc::ENOSYS
            {
                return 3;
            }
            if call(libc::SYS_getpid, [0; 6]) <= 0 {
                return 4;
            }
            0
        });
        assert_eq!(child.exit(), Exit::Code(0), "{layout:?}");
    }
}

#[test]
fn kill_process_and_trap_end_the_process_with_sigsys() {
    for action in [Action::KillProcess, Action::Trap] {
        let child = spawn(
            Filter::new(Action::Allow).rule(Rule::new(sys("getpid"), action)),
            Layout::Tree,
            || {
                call(libc::SYS_getpid, [0; 6]);
                1
            },
        );
        assert_eq!(child.exit(), Exit::Signal(libc::SIGSYS), "{action:?}");
    }
}

#[test]
fn notified_call_waits_for_the_supervisor_who_sees_pid_name_and_args() {
    let filter = Filter::new(Action::Allow)
        .rule(Rule::new(sys("getppid"), Action::Notify))
        .rule(Rule::new(sys("uname"), Action::Notify));
    // SAFETY: getpid has no preconditions.
    let me = i64::from(unsafe { libc::getpid() });
    let child = spawn(filter, Layout::Tree, || {
        // Answered with a value, without running.
        if call(
            libc::SYS_getppid,
            [0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666],
        ) != 4242
        {
            return 1;
        }
        // Answered with an errno.
        if call(libc::SYS_uname, [0; 6]) != -1 || errno() != libc::EACCES {
            return 2;
        }
        // Continued: runs for real.
        if call(libc::SYS_getppid, [0; 6]) != me {
            return 3;
        }
        0
    });
    let l = child.listener();

    let n = child.next();
    assert_eq!(i64::from(n.pid), i64::from(child.pid));
    assert_eq!(n.syscall_name(), Some("getppid"));
    assert_eq!(
        n.data.args,
        [0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666]
    );
    assert!(n.data.instruction_pointer != 0);
    // The call waits: the child is still there.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(wait(child.pid, libc::WNOHANG), None);
    assert!(l.id_valid(n.id).unwrap());
    assert_eq!(
        l.respond(n.id, Response::Value(4242)).unwrap(),
        Responded::Delivered
    );
    assert!(!l.id_valid(n.id).unwrap());

    let n = child.next();
    assert_eq!(n.syscall_name(), Some("uname"));
    assert!(
        n.to_string()
            .starts_with(&format!("pid {} syscall uname(63) args=[0x0,", child.pid)),
        "{n}"
    );
    l.respond(n.id, Response::Errno(libc::EACCES)).unwrap();

    let n = child.next();
    l.respond(n.id, Response::Continue).unwrap();
    assert_eq!(child.exit(), Exit::Code(0));
    // Nobody uses the filter any more.
    assert_eq!(
        l.wait(Some(Duration::from_secs(5))).unwrap(),
        Readiness::Hangup
    );
}

#[test]
fn closing_the_listener_fails_waiting_and_later_calls_with_enosys() {
    let child = spawn(
        Filter::new(Action::Allow).rule(Rule::new(sys("getppid"), Action::Notify)),
        Layout::Tree,
        || {
            if call(libc::SYS_getppid, [0; 6]) != -1 || errno() != libc::ENOSYS {
                return 1;
            }
            if call(libc::SYS_getppid, [0; 6]) != -1 || errno() != libc::ENOSYS {
                return 2;
            }
            0
        },
    );
    let mut child = child;
    let _waiting = child.next();
    drop(child.listener.take());
    assert_eq!(child.exit(), Exit::Code(0));
}

#[test]
fn notify_without_a_listener_is_enosys() {
    let program = compile(&with_exit(
        Filter::new(Action::Allow).rule(Rule::new(sys("getppid"), Action::Notify)),
    ))
    .unwrap();
    // SAFETY: the child only makes raw system calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            if !matches!(install(&program, InstallFlags::default()), Ok(None)) {
                return 1;
            }
            if call(libc::SYS_getppid, [0; 6]) != -1 || errno() != libc::ENOSYS {
                return 2;
            }
            0
        })();
        // SAFETY: ends the child.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(wait(pid, 0), Some(Exit::Code(0)));
}

#[test]
fn without_no_new_privs_an_unprivileged_install_is_refused_and_says_why() {
    let program = compile(&with_exit(Filter::new(Action::Allow))).unwrap();
    // SAFETY: the child only makes raw system calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| {
            // Dropping every uid 0 drops the capabilities (CAP_SYS_ADMIN
            // would waive the rule).
            // SAFETY: setresuid with integer arguments.
            if unsafe { libc::setresuid(65534, 65534, 65534) } != 0 {
                return 1;
            }
            if !matches!(
                install(&program, InstallFlags::default()),
                Err(Error::NoNewPrivs)
            ) {
                return 2;
            }
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            if install(&program, InstallFlags::default()).is_err() {
                return 3;
            }
            0
        })();
        // SAFETY: ends the child.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(wait(pid, 0), Some(Exit::Code(0)));
    assert!(Error::NoNewPrivs
        .to_string()
        .contains("no_new_privs must be set first"));
}

const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
const NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

#[test]
fn clone_arguments_are_checked() {
    let filter = Filter::new(Action::Allow)
        .rule(
            Rule::new(sys("clone"), Action::Errno(MARK as u16))
                .when(ArgCondition::any_set(0, NAMESPACES)),
        )
        .rule(
            Rule::new(sys("clone"), Action::Errno(MARK as u16))
                .when(ArgCondition::any_set(0, CLONE_VM))
                .when(ArgCondition::none_set(0, CLONE_THREAD)),
        )
        .rule(Rule::new(sys("clone"), Action::Allow));
    let sigchld = libc::SIGCHLD as u64;
    let child = spawn(filter, Layout::Tree, || {
        // A process sharing our memory: refused.
        if call(libc::SYS_clone, [CLONE_VM | sigchld, 0, 0, 0, 0, 0]) != -1 || errno() != MARK {
            return 1;
        }
        // New namespaces: refused (root could make them otherwise).
        if call(
            libc::SYS_clone,
            [libc::CLONE_NEWNS as u64 | sigchld, 0, 0, 0, 0, 0],
        ) != -1
            || errno() != MARK
        {
            return 2;
        }
        if call(
            libc::SYS_clone,
            [libc::CLONE_NEWUSER as u64 | sigchld, 0, 0, 0, 0, 0],
        ) != -1
            || errno() != MARK
        {
            return 3;
        }
        // A thread is let through: the kernel itself answers EINVAL here
        // (CLONE_THREAD without CLONE_SIGHAND), not the filter.
        if call(libc::SYS_clone, [CLONE_VM | CLONE_THREAD, 0, 0, 0, 0, 0]) != -1
            || errno() != libc::EINVAL
        {
            return 4;
        }
        // A plain fork works.
        let pid = call(libc::SYS_clone, [sigchld, 0, 0, 0, 0, 0]);
        if pid == 0 {
            // SAFETY: the grandchild ends at once.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            return 5;
        }
        let mut status = 0;
        // SAFETY: wait4 writes the status through a valid pointer.
        let waited =
            unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, std::ptr::null_mut()) };
        if i64::from(waited) != pid || !libc::WIFEXITED(status) {
            return 6;
        }
        0
    });
    assert_eq!(child.exit(), Exit::Code(0));
}

#[test]
fn socket_families_are_checked_on_the_low_32_bits() {
    let mut filter = Filter::new(Action::Allow);
    for family in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6] {
        filter = filter.rule(
            Rule::new(sys("socket"), Action::Allow)
                .when(ArgCondition::equal(0, family as u64).low32()),
        );
    }
    let filter = filter.rule(Rule::new(sys("socket"), Action::Errno(MARK as u16)));
    let child = spawn(filter, Layout::Linear, || {
        let stream = libc::SOCK_STREAM as u64;
        let raw = libc::SOCK_RAW as u64;
        for (check, family, ty, allowed) in [
            (1, libc::AF_INET as u64, stream, true),
            (2, libc::AF_INET6 as u64, stream, true),
            (3, libc::AF_UNIX as u64, stream, true),
            // The kernel reads an int: high bits change nothing.
            (4, libc::AF_INET as u64 | 1 << 32, stream, true),
            (5, libc::AF_NETLINK as u64, raw, false),
            (6, libc::AF_NETLINK as u64 | 1 << 32, raw, false),
            (7, libc::AF_PACKET as u64, raw, false),
        ] {
            let fd = call(libc::SYS_socket, [family, ty, 0, 0, 0, 0]);
            if allowed {
                if fd < 0 {
                    return check;
                }
                call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
            } else if fd != -1 || errno() != MARK {
                return check;
            }
        }
        0
    });
    assert_eq!(child.exit(), Exit::Code(0));
}

#[test]
fn writable_executable_memory_is_refused() {
    const R: u64 = libc::PROT_READ as u64;
    const W: u64 = libc::PROT_WRITE as u64;
    const X: u64 = libc::PROT_EXEC as u64;
    const ANON: u64 = libc::MAP_ANONYMOUS as u64;
    let private = libc::MAP_PRIVATE as u64;
    let mark = Action::Errno(MARK as u16);
    let filter = Filter::new(Action::Allow)
        .rule(Rule::new(sys("mmap"), mark).when(ArgCondition::masked_equal(2, W | X, W | X)))
        .rule(
            Rule::new(sys("mmap"), mark)
                .when(ArgCondition::any_set(2, X))
                .when(ArgCondition::any_set(3, ANON)),
        )
        .rule(Rule::new(sys("mmap"), Action::Allow))
        .rule(Rule::new(sys("mprotect"), mark).when(ArgCondition::any_set(2, X)))
        .rule(Rule::new(sys("mprotect"), Action::Allow));
    let child = spawn(filter, Layout::Tree, || {
        let page = 4096;
        let mmap =
            |prot: u64, flags: u64, fd: u64| call(libc::SYS_mmap, [0, page, prot, flags, fd, 0]);
        let data = mmap(R | W, private | ANON, u64::MAX);
        if data < 0 {
            return 1;
        }
        if mmap(R | W | X, private | ANON, u64::MAX) != -1 || errno() != MARK {
            return 2;
        }
        if mmap(R | X, private | ANON, u64::MAX) != -1 || errno() != MARK {
            return 3;
        }
        // Code from a file, read-only: how the loader maps a library.
        let fd = call(
            libc::SYS_open,
            [
                c"/bin/true".as_ptr() as u64,
                libc::O_RDONLY as u64,
                0,
                0,
                0,
                0,
            ],
        );
        if fd < 0 {
            return 4;
        }
        if mmap(R | X, private, fd as u64) < 0 {
            return 5;
        }
        if mmap(W | X, private, fd as u64) != -1 || errno() != MARK {
            return 6;
        }
        if call(libc::SYS_mprotect, [data as u64, page, R | X, 0, 0, 0]) != -1 || errno() != MARK {
            return 7;
        }
        if call(libc::SYS_mprotect, [data as u64, page, R, 0, 0, 0]) != 0 {
            return 8;
        }
        0
    });
    assert_eq!(child.exit(), Exit::Code(0));
}

#[test]
fn foreign_calling_conventions_are_refused() {
    // x32: answered like any refused call (here: the default errno).
    let child = spawn(
        Filter::new(Action::Errno(MARK as u16)).rule(Rule::new(sys("getpid"), Action::Allow)),
        Layout::Tree,
        || {
            if call(libc::SYS_getpid, [0; 6]) <= 0 {
                return 1;
            }
            if call(libc::SYS_getpid | 0x4000_0000, [0; 6]) != -1 || errno() != MARK {
                return 2;
            }
            0
        },
    );
    assert_eq!(child.exit(), Exit::Code(0));
    // i386 (`int 0x80`, AUDIT_ARCH_I386): killed, even for a call the
    // filter allows by its x86_64 number.
    let child = spawn(Filter::new(Action::Allow), Layout::Tree, || {
        // SAFETY: i386 getpid (20) takes no arguments and touches no memory.
        unsafe { std::arch::asm!("int 0x80", inlateout("eax") 20 => _, options(nostack)) };
        1
    });
    assert_eq!(child.exit(), Exit::Signal(libc::SIGSYS));
}

#[test]
fn the_listener_crosses_a_socketpair_close_on_exec_and_is_checked() {
    let child = spawn(
        Filter::new(Action::Allow).rule(Rule::new(sys("getppid"), Action::Notify)),
        Layout::Tree,
        || {
            call(libc::SYS_getppid, [0; 6]);
            0
        },
    );
    let l = child.listener();
    // SAFETY: F_GETFD on a descriptor this test owns.
    let fd_flags = unsafe { libc::fcntl(l.as_raw_fd(), libc::F_GETFD) };
    assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    let n = child.next();
    l.respond(n.id, Response::Continue).unwrap();
    assert_eq!(child.exit(), Exit::Code(0));

    // Anything else is refused by `from_fd`.
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(matches!(
        Listener::from_fd(OwnedFd::from(a)),
        Err(Error::NotAListener(_))
    ));
    // And `recv_fd` wants a descriptor, not just bytes.
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"x").unwrap();
    assert!(matches!(recv_fd(b.as_fd()), Err(Error::FdPassing(_))));
    drop(a);
    assert!(matches!(recv_fd(b.as_fd()), Err(Error::FdPassing(_))));
}

/// About 150 calls allowed, the rest killed: it installs, and allowed calls
/// run (both layouts).
#[test]
fn a_150_call_allowlist_installs_and_works() {
    for layout in [Layout::Linear, Layout::Tree] {
        let mut filter = Filter::new(Action::KillProcess);
        for s in Syscall::all().take(150) {
            filter.rules.push(Rule::new(s, Action::Allow));
        }
        assert!(filter.rules.iter().any(|r| r.syscall == sys("getppid")));
        filter
            .rules
            .push(Rule::new(sys("getrandom"), Action::Errno(MARK as u16)));
        let program = compile_with(&with_exit(filter.clone()), layout).unwrap();
        assert!(program.len() > 300, "{}", program.len());
        let child = spawn(filter, layout, || {
            if call(libc::SYS_getppid, [0; 6]) <= 0 || call(libc::SYS_getpid, [0; 6]) <= 0 {
                return 1;
            }
            if call(libc::SYS_getrandom, [0; 6]) != -1 || errno() != MARK {
                return 2;
            }
            // Not in the list: killed.
            call(libc::SYS_io_uring_setup, [0; 6]);
            3
        });
        assert_eq!(child.exit(), Exit::Signal(libc::SIGSYS), "{layout:?}");
    }
}

/// The appliance's pattern: the first `execve` (init exec'ing the server)
/// is continued by the supervisor; a later one is not.
#[test]
fn first_execve_continued_second_refused() {
    let sh = CString::new("/bin/sh").unwrap();
    let argv = [
        sh.clone(),
        CString::new("-c").unwrap(),
        CString::new("exec /bin/true").unwrap(),
    ];
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let filter = Filter::new(Action::Allow).rule(Rule::new(sys("execve"), Action::Notify));
    let child = spawn(filter, Layout::Tree, || {
        // SAFETY: NUL-terminated path and null-terminated arrays.
        unsafe { libc::execve(sh.as_ptr(), argv_ptrs.as_ptr(), envp.as_ptr()) };
        99
    });
    let l = child.listener();
    let first = child.next();
    assert_eq!(first.syscall_name(), Some("execve"));
    l.respond(first.id, Response::Continue).unwrap();
    let second = child.next();
    assert_eq!(second.syscall_name(), Some("execve"));
    assert_eq!(i64::from(second.pid), i64::from(child.pid));
    l.respond(second.id, Response::Errno(libc::EPERM)).unwrap();
    // The shell reports the refused exec and fails.
    match child.exit() {
        Exit::Code(c) => assert!(c != 0 && c != 99, "{c}"),
        other => panic!("{other:?}"),
    }
}

fn cstrings(words: &[&str]) -> Vec<CString> {
    words.iter().map(|w| CString::new(*w).unwrap()).collect()
}

#[test]
fn tracing_bin_true_records_its_calls() {
    let traced = run_traced(
        c"/bin/true",
        &cstrings(&["true"]),
        &[],
        &Filter::new(Action::Notify),
    )
    .unwrap();
    assert_eq!(traced.exit, ChildExit::Exited(0));
    let names: Vec<&str> = traced.recorder.calls().map(|(name, _)| name).collect();
    for expected in ["execve", "exit_group", "mmap", "brk"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // The handoff itself is allowed, not recorded.
    assert!(!names.contains(&"sendmsg"), "{names:?}");
    let report = traced.recorder.report();
    assert!(report.contains("prot=PROT_READ"), "{report}");
}

#[test]
fn tracing_a_missing_program_records_the_failed_exec() {
    let traced = run_traced(
        c"/nonexistent/program",
        &cstrings(&["x"]),
        &[],
        &Filter::new(Action::Notify),
    )
    .unwrap();
    assert_eq!(traced.exit, ChildExit::Exited(127));
    let names: Vec<&str> = traced.recorder.calls().map(|(name, _)| name).collect();
    assert_eq!(names, ["execve", "exit_group"]);
}

#[test]
fn tracing_under_a_draft_allowlist_records_only_what_it_misses() {
    let first = run_traced(
        c"/bin/true",
        &cstrings(&["true"]),
        &[],
        &Filter::new(Action::Notify),
    )
    .unwrap();
    // Allow everything seen but mmap: only mmap is recorded the second time.
    let mut draft = first.recorder.draft_allowlist(Action::KillProcess);
    draft.rules.retain(|r| r.syscall != sys("mmap"));
    let second = run_traced(
        c"/bin/true",
        &cstrings(&["true"]),
        &[],
        &draft.with_refusals_as(Action::Notify),
    )
    .unwrap();
    assert_eq!(second.exit, ChildExit::Exited(0));
    let names: Vec<&str> = second.recorder.calls().map(|(name, _)| name).collect();
    assert_eq!(names, ["mmap"]);
}

#[test]
fn tracing_redis_server_version_if_installed() {
    let path = c"/usr/bin/redis-server";
    if !std::path::Path::new("/usr/bin/redis-server").exists() {
        eprintln!("redis-server not installed: /bin/true covers tracing");
        return;
    }
    let traced = run_traced(
        path,
        &cstrings(&["redis-server", "--version"]),
        &[],
        &Filter::new(Action::Notify),
    )
    .unwrap();
    assert_eq!(traced.exit, ChildExit::Exited(0));
    let names: Vec<&str> = traced.recorder.calls().map(|(name, _)| name).collect();
    assert!(names.contains(&"write"), "{names:?}");
}
