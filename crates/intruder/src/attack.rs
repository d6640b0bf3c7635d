//! The syscall edge: one attack per step, made with raw system calls by the
//! server process itself (or by a child it forks), so the kernel sees
//! exactly what an exploit's code would ask, under the server's own
//! credentials, seccomp filter and Landlock domain. Nothing here decides
//! anything: each function makes its calls and reports what came back.
//!
//! Forks: the server has other threads (its background I/O threads) whose
//! locks a child of `fork` inherits held. So a child runs only raw
//! syscalls on memory prepared before the fork, reports through a pipe,
//! and ends with `exit_group`; it never returns into Rust code that could
//! allocate or take a lock.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::steps::{
    Attack, Errno, Outcome, Request, Signal, BIND_PORT, CONNECT_WAIT_MS, EXEC_WAIT_MS,
    METADATA_ADDR,
};

/// Runs the request's step. `Err` only when the module could not even
/// prepare the step (a path it needs, a child that never answered); every
/// answer of the kernel is an [`Outcome`].
pub(crate) fn perform(request: &Request) -> Result<Outcome, String> {
    let governor = || {
        request
            .governor
            .map(c_long::from)
            .ok_or_else(|| "no governor pid".to_owned())
    };
    match request.step.attack {
        Attack::ForkStay => Ok(fork_stay()),
        Attack::ForkTwice => Ok(fork_twice()),
        Attack::CloneVm => Ok(clone_vm()),
        Attack::IoUring => Ok(io_uring()),
        Attack::MmapRwx => Ok(mmap_rwx()),
        Attack::NetlinkSocket => Ok(socket_only(
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_ROUTE,
            "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)",
        )),
        Attack::BindListen => Ok(bind_listen()),
        Attack::MemfdExec => memfd_exec(),
        Attack::ExecServer => exec_server(),
        Attack::ExecSh => exec_sh(),
        Attack::ExecData => exec_data(),
        Attack::Bpf => Ok(bpf()),
        Attack::UnshareUser => unshare_user(),
        Attack::Mount => mount(),
        Attack::SetuidRoot => Ok(setuid_root()),
        Attack::KillGovernor => Ok(kill_governor(governor()?)),
        Attack::PtraceGovernor => Ok(ptrace_governor(governor()?)),
        Attack::PacketSocket => Ok(socket_only(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            c_int::from(ETH_P_ALL.to_be()),
            "socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)",
        )),
        Attack::WriteKmsg => Ok(write_kmsg()),
        Attack::ConnectMetadata => Ok(connect_metadata()),
    }
}

/// `ETH_P_ALL`, every protocol (libc types it as `c_int`; the kernel reads
/// it as a big-endian 16-bit value).
const ETH_P_ALL: u16 = 0x0003;

fn last_errno() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// A raw syscall's return value, or the errno it set.
fn sys(ret: c_long) -> Result<c_long, Errno> {
    if ret == -1 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

fn refused(errno: Errno, call: &str) -> Outcome {
    Outcome::Refused {
        errno,
        call: call.to_owned(),
    }
}

fn close(fd: c_long) {
    // SAFETY: closing a descriptor this module opened and owns.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| format!("{} has a NUL", path.display()))
}

/// The server's working directory, its data directory (`dir` in
/// valkey.conf; the server chdirs there at start), as a relative path:
/// an attacker needs no `getcwd` (which the server never calls, so its
/// filter refuses it) to write there.
fn data_dir() -> Result<PathBuf, String> {
    Ok(PathBuf::from("."))
}

/// The server binary's path in the image. An attacker knows it (the image
/// is public); reading `/proc/self/exe` would take `readlink`, which the
/// server never calls and its filter refuses, so the step would stop
/// before the exec it is about.
fn server_binary() -> Result<PathBuf, String> {
    Ok(PathBuf::from(SERVER_BINARY))
}

/// Where the image puts the server.
const SERVER_BINARY: &str = "/usr/bin/valkey-server";

/// Sleeps for good with raw `clock_nanosleep` (a forked child's whole
/// life; the call glibc's sleeps make, so the server's filter allows it).
fn sleep_forever() -> ! {
    let hour = libc::timespec {
        tv_sec: 3600,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: clock_nanosleep reads a valid timespec; no remaining-time
        // out.
        unsafe {
            libc::syscall(
                libc::SYS_clock_nanosleep,
                c_long::from(libc::CLOCK_MONOTONIC),
                0 as c_long,
                &hour as *const libc::timespec,
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
    }
}

/// `fork` as the raw `clone` syscall with exactly glibc's `fork()` flags
/// (`CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD`), the one shape of
/// process creation the server's filter allows when it may fork: what an
/// exploit calling the server's own `fork` would make. No `pthread_atfork`
/// handlers run. Returns 0 in the child.
///
/// # Safety
///
/// In the child, the caller runs only raw syscalls on memory prepared
/// before the call and ends with `exit_group` or [`sleep_forever`]: other
/// threads' locks are held forever there.
/// Where a forked child's tid goes (`CLONE_CHILD_SETTID`).
static FORK_CHILD_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

unsafe fn raw_fork() -> Result<c_long, Errno> {
    // SAFETY: clone without a new stack behaves as fork; the kernel writes
    // the child's tid into its own copy of FORK_CHILD_TID (and clears it
    // at exit), a static that outlives every child. The caller upholds the
    // child's contract.
    sys(unsafe {
        libc::syscall(
            libc::SYS_clone,
            c_long::from(libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD),
            0 as c_long,
            0 as c_long,
            FORK_CHILD_TID.as_ptr() as c_long,
            0 as c_long,
        )
    })
}

fn fork_twice() -> Outcome {
    let mut pids = Vec::with_capacity(2);
    for _ in 0..2 {
        // SAFETY: each child only sleeps (raw clock_nanosleep) for good.
        match unsafe { raw_fork() } {
            Err(e) => return refused(e, "fork"),
            Ok(0) => sleep_forever(),
            Ok(pid) => pids.push(pid),
        }
    }
    Outcome::Succeeded(format!(
        "forked pids={pids:?}; two children that never exec sleep for good"
    ))
}

fn fork_stay() -> Outcome {
    // SAFETY: the child only sleeps (raw clock_nanosleep) for good.
    match unsafe { raw_fork() } {
        Err(e) => refused(e, "fork"),
        Ok(0) => sleep_forever(),
        Ok(pid) => Outcome::Succeeded(format!(
            "forked pid={pid}; the child never execs and sleeps for good"
        )),
    }
}

extern "C" fn clone_vm_child(_: *mut c_void) -> c_int {
    sleep_forever()
}

fn clone_vm() -> Outcome {
    const STACK: usize = 64 * 1024;
    // SAFETY: an anonymous private mapping; nothing else refers to it.
    let stack = match sys(unsafe {
        libc::syscall(
            libc::SYS_mmap,
            0 as c_long,
            STACK,
            c_long::from(libc::PROT_READ | libc::PROT_WRITE),
            c_long::from(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK),
            -1 as c_long,
            0 as c_long,
        )
    }) {
        Ok(s) => s,
        Err(e) => return refused(e, "mmap(child stack)"),
    };
    let Ok(base) = usize::try_from(stack) else {
        return refused(Errno(libc::EFAULT), "mmap(child stack)");
    };
    // glibc's clone() is the thin wrapper that switches to the new stack
    // and calls the function there; a raw clone(CLONE_VM) syscall would
    // return into this frame on a stack the parent keeps using.
    // SAFETY: the child runs `clone_vm_child` on its own 64 KiB stack (the
    // mapping is never unmapped: the child keeps using it) and only makes
    // raw clock_nanosleep calls, touching no memory the server uses.
    let pid = unsafe {
        libc::clone(
            clone_vm_child,
            base.saturating_add(STACK) as *mut c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            std::ptr::null_mut(),
        )
    };
    if pid == -1 {
        let e = last_errno();
        // SAFETY: unmapping the stack mapped above, which nothing uses.
        unsafe { libc::syscall(libc::SYS_munmap, stack, STACK) };
        return refused(e, "clone(CLONE_VM|SIGCHLD)");
    }
    Outcome::Succeeded(format!(
        "clone(CLONE_VM) made pid={pid}, a process sharing the server's memory; it sleeps for good"
    ))
}

fn io_uring() -> Outcome {
    // struct io_uring_params: 120 bytes, 8-byte aligned, zeroed.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup writes at most sizeof(io_uring_params) into
    // `params`, which is that large.
    match sys(unsafe { libc::syscall(libc::SYS_io_uring_setup, 4 as c_long, params.as_mut_ptr()) })
    {
        Ok(fd) => {
            close(fd);
            Outcome::Succeeded(format!("io_uring_setup gave fd {fd}"))
        }
        Err(e) => refused(e, "io_uring_setup"),
    }
}

fn mmap_rwx() -> Outcome {
    const PAGE: usize = 4096;
    // SAFETY: a fresh anonymous private mapping at an address the kernel
    // chooses; nothing else refers to it.
    let mapped = sys(unsafe {
        libc::syscall(
            libc::SYS_mmap,
            0 as c_long,
            PAGE,
            c_long::from(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC),
            c_long::from(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
            -1 as c_long,
            0 as c_long,
        )
    });
    match mapped {
        Ok(addr) => {
            // SAFETY: unmapping the page mapped just above.
            unsafe { libc::syscall(libc::SYS_munmap, addr, PAGE) };
            Outcome::Succeeded(format!(
                "a page at {addr:#x} was readable, writable and executable"
            ))
        }
        Err(e) => refused(e, "mmap(PROT_READ|PROT_WRITE|PROT_EXEC)"),
    }
}

fn socket(domain: c_int, kind: c_int, protocol: c_int) -> Result<c_long, Errno> {
    // SAFETY: socket takes no pointers.
    sys(unsafe {
        libc::syscall(
            libc::SYS_socket,
            c_long::from(domain),
            c_long::from(kind | libc::SOCK_CLOEXEC),
            c_long::from(protocol),
        )
    })
}

fn socket_only(domain: c_int, kind: c_int, protocol: c_int, call: &str) -> Outcome {
    match socket(domain, kind, protocol) {
        Ok(fd) => {
            close(fd);
            Outcome::Succeeded(format!("{call} gave fd {fd}"))
        }
        Err(e) => refused(e, call),
    }
}

fn sockaddr_in(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default(),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    }
}

const SOCKADDR_IN_LEN: c_long = std::mem::size_of::<libc::sockaddr_in>() as c_long;

fn bind_listen() -> Outcome {
    let fd = match socket(libc::AF_INET, libc::SOCK_STREAM, 0) {
        Ok(fd) => fd,
        Err(e) => return refused(e, "socket(AF_INET, SOCK_STREAM)"),
    };
    let addr = sockaddr_in([0, 0, 0, 0], BIND_PORT);
    let call = format!("bind(0.0.0.0:{BIND_PORT})");
    // SAFETY: bind reads a valid sockaddr_in of the given length.
    let bound = sys(unsafe {
        libc::syscall(
            libc::SYS_bind,
            fd,
            &addr as *const libc::sockaddr_in,
            SOCKADDR_IN_LEN,
        )
    });
    if let Err(e) = bound {
        close(fd);
        return refused(e, &call);
    }
    // SAFETY: listen takes no pointers.
    let listening = sys(unsafe { libc::syscall(libc::SYS_listen, fd, 16 as c_long) });
    close(fd);
    match listening {
        Ok(_) => Outcome::Succeeded(format!("listened on 0.0.0.0:{BIND_PORT}")),
        Err(e) => refused(e, "listen"),
    }
}

fn bpf() -> Outcome {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries; the rest zero (the kernel checks an unknown tail is).
    let mut attr = [0u32; 30];
    for (slot, value) in attr.iter_mut().zip([2, 4, 4, 1]) {
        *slot = value; // BPF_MAP_TYPE_ARRAY, 4-byte keys and values, 1 entry
    }
    // SAFETY: bpf reads at most `size` bytes of `attr`, which is that large.
    match sys(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0 as c_long, // BPF_MAP_CREATE
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    }) {
        Ok(fd) => {
            close(fd);
            Outcome::Succeeded(format!("bpf(BPF_MAP_CREATE) gave map fd {fd}"))
        }
        Err(e) => refused(e, "bpf(BPF_MAP_CREATE)"),
    }
}

fn setuid_root() -> Outcome {
    // SAFETY: setuid takes no pointers. The raw call changes only this
    // thread's credentials (glibc's wrapper would change every thread's).
    match sys(unsafe { libc::syscall(libc::SYS_setuid, 0 as c_long) }) {
        Ok(_) => Outcome::Succeeded("the server's main thread now runs as uid 0".into()),
        Err(e) => refused(e, "setuid(0)"),
    }
}

fn kill_governor(pid: c_long) -> Outcome {
    // SAFETY: kill takes no pointers.
    match sys(unsafe { libc::syscall(libc::SYS_kill, pid, c_long::from(libc::SIGKILL)) }) {
        Ok(_) => Outcome::Succeeded(format!("SIGKILL sent to the governor, pid {pid}")),
        Err(e) => refused(e, &format!("kill({pid}, SIGKILL)")),
    }
}

fn ptrace_governor(pid: c_long) -> Outcome {
    // SAFETY: PTRACE_ATTACH takes no addresses (both are ignored, passed 0).
    match sys(unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            c_long::from(libc::PTRACE_ATTACH),
            pid,
            0 as c_long,
            0 as c_long,
        )
    }) {
        Ok(_) => Outcome::Succeeded(format!("attached to the governor, pid {pid}")),
        Err(e) => refused(e, &format!("ptrace(PTRACE_ATTACH, {pid})")),
    }
}

fn open(path: &CString, flags: c_int, mode: libc::mode_t) -> Result<c_long, Errno> {
    // SAFETY: openat reads a NUL-terminated path.
    sys(unsafe {
        libc::syscall(
            libc::SYS_openat,
            c_long::from(libc::AT_FDCWD),
            path.as_ptr(),
            c_long::from(flags | libc::O_CLOEXEC),
            c_long::from(mode),
        )
    })
}

fn write_kmsg() -> Outcome {
    let path = c"/dev/kmsg".to_owned();
    let fd = match open(&path, libc::O_WRONLY, 0) {
        Ok(fd) => fd,
        Err(e) => return refused(e, "open(/dev/kmsg, O_WRONLY)"),
    };
    let line = b"intruder: this line was written to /dev/kmsg by the server\n";
    // SAFETY: write reads `line.len()` bytes of `line`.
    let written = sys(unsafe { libc::syscall(libc::SYS_write, fd, line.as_ptr(), line.len()) });
    close(fd);
    match written {
        Ok(_) => Outcome::Succeeded("wrote a line into the kernel log through /dev/kmsg".into()),
        Err(e) => refused(e, "write(/dev/kmsg)"),
    }
}

/// Waits up to `ms` for `events` on `fd`; returns the events seen (0 on
/// timeout). Through epoll, which the server uses (its filter refuses
/// `ppoll`: the step must reach the call it is about).
fn poll(fd: c_long, events: i16, ms: u16) -> Result<i16, Errno> {
    // SAFETY: epoll_create takes a size hint and returns a descriptor.
    let ep = sys(unsafe { libc::syscall(libc::SYS_epoll_create, 1 as c_long) })?;
    let mut ev = libc::epoll_event {
        events: u32::from(events.unsigned_abs()),
        u64: 0,
    };
    // SAFETY: epoll_ctl reads one epoll_event.
    let added = sys(unsafe {
        libc::syscall(
            libc::SYS_epoll_ctl,
            ep,
            c_long::from(libc::EPOLL_CTL_ADD),
            fd,
            &mut ev as *mut libc::epoll_event,
        )
    });
    if let Err(e) = added {
        close(ep);
        return Err(e);
    }
    let mut out = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: epoll_wait writes at most one epoll_event into `out`.
    let ready = sys(unsafe {
        libc::syscall(
            libc::SYS_epoll_wait,
            ep,
            &mut out as *mut libc::epoll_event,
            1 as c_long,
            c_long::from(ms),
        )
    });
    close(ep);
    let ready = ready?;
    Ok(if ready == 0 {
        0
    } else {
        i16::try_from(out.events & 0x7fff).unwrap_or(i16::MAX)
    })
}

fn connect_metadata() -> Outcome {
    let (ip, port) = METADATA_ADDR;
    let call = format!("connect({}.{}.{}.{}:{port})", ip[0], ip[1], ip[2], ip[3]);
    let fd = match socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) {
        Ok(fd) => fd,
        Err(e) => return refused(e, "socket(AF_INET, SOCK_STREAM)"),
    };
    let addr = sockaddr_in(ip, port);
    // SAFETY: connect reads a valid sockaddr_in of the given length.
    let started = sys(unsafe {
        libc::syscall(
            libc::SYS_connect,
            fd,
            &addr as *const libc::sockaddr_in,
            SOCKADDR_IN_LEN,
        )
    });
    let outcome = match started {
        Ok(_) => Outcome::Succeeded(format!("{call} connected at once")),
        Err(e) if e.0 == libc::EINPROGRESS => match poll(fd, libc::POLLOUT, CONNECT_WAIT_MS) {
            Ok(0) => refused(
                Errno::ETIMEDOUT,
                &format!("{call}: no answer within {} ms (dropped)", CONNECT_WAIT_MS),
            ),
            Ok(_) => match socket_error(fd) {
                Ok(0) => Outcome::Succeeded(format!("{call} connected")),
                Ok(code) => refused(Errno(code), &call),
                Err(e) => refused(e, "getsockopt(SO_ERROR)"),
            },
            Err(e) => refused(e, "epoll_wait"),
        },
        Err(e) => refused(e, &call),
    };
    close(fd);
    outcome
}

fn socket_error(fd: c_long) -> Result<c_int, Errno> {
    let mut code: c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<c_int>()).unwrap_or(4);
    // SAFETY: getsockopt writes at most `len` bytes into `code` and the
    // length into `len`, both valid.
    sys(unsafe {
        libc::syscall(
            libc::SYS_getsockopt,
            fd,
            c_long::from(libc::SOL_SOCKET),
            c_long::from(libc::SO_ERROR),
            &mut code as *mut c_int,
            &mut len as *mut libc::socklen_t,
        )
    })?;
    Ok(code)
}

/// Copies everything `from` holds to `to` with `sendfile`.
/// Copies with plain `read` and `write` (calls the server makes, so its
/// filter lets them through: the step reaches the call it is about).
fn copy_all(from: c_long, to: c_long) -> Result<(), Errno> {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: read into a live stack buffer of its length.
        let n = sys(unsafe { libc::syscall(libc::SYS_read, from, buf.as_mut_ptr(), buf.len()) })?;
        if n == 0 {
            return Ok(());
        }
        let mut done = 0;
        while done < n {
            let off = usize::try_from(done).unwrap_or(0);
            // SAFETY: writes the part of the buffer read above.
            let w = sys(unsafe {
                libc::syscall(
                    libc::SYS_write,
                    to,
                    buf.as_ptr().wrapping_add(off),
                    usize::try_from(n - done).unwrap_or(0),
                )
            })?;
            done += w;
        }
    }
}

// ---- children ---------------------------------------------------------

/// How a child's pipe ended.
enum ChildEnd {
    /// The child wrote its report: `errno` 0 when every call returned
    /// successfully, else the errno of call number `call`.
    Reported { errno: c_int, call: usize },
    /// The pipe closed without a report: the child exec'd (the pipe is
    /// close-on-exec) or died.
    Closed,
    /// Nothing within the wait.
    Silent,
}

/// A child's state, as `wait4(WNOHANG)` tells it.
enum ChildState {
    Running,
    Exited(c_int),
    Signaled(c_int),
}

/// Forks; the child runs `body`, writes `[errno, call index]` into a
/// close-on-exec pipe and exits. Waits up to `wait` for the report.
///
/// `body` runs in the child of a multi-threaded process: it must make only
/// raw syscalls on memory prepared before this call (no allocation, no
/// locks). It returns only if its calls returned: `Ok` when all succeeded,
/// `Err((errno, index))` at the first that failed.
fn in_child(
    body: &dyn Fn() -> Result<(), (Errno, usize)>,
    wait: Duration,
) -> Result<(c_long, ChildEnd), Outcome> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if let Err(e) = sys(unsafe {
        libc::syscall(
            libc::SYS_pipe2,
            fds.as_mut_ptr(),
            c_long::from(libc::O_CLOEXEC),
        )
    }) {
        return Err(refused(e, "pipe2"));
    }
    let [read_end, write_end] = fds.map(c_long::from);
    // SAFETY: the child below only calls `body` (held to the same contract)
    // and raw write/close/exit_group on the pipe prepared above.
    match unsafe { raw_fork() } {
        Err(e) => {
            close(read_end);
            close(write_end);
            Err(refused(e, "fork"))
        }
        Ok(0) => {
            close(read_end);
            let (errno, call) = match body() {
                Ok(()) => (0, 0),
                Err((e, i)) => (e.0, i),
            };
            let mut report = [0u8; 8];
            for (slot, byte) in report.iter_mut().zip(
                errno
                    .to_ne_bytes()
                    .into_iter()
                    .chain(u32::try_from(call).unwrap_or(u32::MAX).to_ne_bytes()),
            ) {
                *slot = byte;
            }
            // SAFETY: write reads 8 bytes of `report`; exit_group ends the
            // child without running anything of the parent's.
            unsafe {
                libc::syscall(libc::SYS_write, write_end, report.as_ptr(), report.len());
                libc::syscall(libc::SYS_exit_group, 0 as c_long);
            }
            sleep_forever()
        }
        Ok(pid) => {
            close(write_end);
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let end = match poll(read_end, libc::POLLIN, ms) {
                Ok(0) => ChildEnd::Silent,
                Ok(_) => {
                    let mut report = [0u8; 8];
                    // SAFETY: read writes at most 8 bytes into `report`.
                    let n = unsafe {
                        libc::syscall(libc::SYS_read, read_end, report.as_mut_ptr(), report.len())
                    };
                    match (n, report) {
                        (8, [a, b, c, d, e, f, g, h]) => ChildEnd::Reported {
                            errno: c_int::from_ne_bytes([a, b, c, d]),
                            call: usize::try_from(u32::from_ne_bytes([e, f, g, h]))
                                .unwrap_or(usize::MAX),
                        },
                        _ => ChildEnd::Closed,
                    }
                }
                Err(_) => ChildEnd::Silent,
            };
            close(read_end);
            Ok((pid, end))
        }
    }
}

/// The child's state, polled with `wait4(WNOHANG)` for up to `patience`
/// (reaping it if it ended).
fn child_state(pid: c_long, patience: Duration) -> ChildState {
    let deadline = Instant::now() + patience;
    loop {
        let mut status: c_int = 0;
        // SAFETY: wait4 writes the status into `status`; no rusage.
        let got = unsafe {
            libc::syscall(
                libc::SYS_wait4,
                pid,
                &mut status as *mut c_int,
                c_long::from(libc::WNOHANG),
                std::ptr::null_mut::<libc::rusage>(),
            )
        };
        if got == pid {
            if libc::WIFSIGNALED(status) {
                return ChildState::Signaled(libc::WTERMSIG(status));
            }
            return ChildState::Exited(libc::WEXITSTATUS(status));
        }
        if got == -1 || Instant::now() >= deadline {
            return ChildState::Running;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `body` in a child and turns what came back into an outcome.
/// `calls` names the body's calls by index; `what` says what a child that
/// exec'd is running.
fn child_outcome(
    body: &dyn Fn() -> Result<(), (Errno, usize)>,
    calls: &[&str],
    what: &str,
) -> Result<Outcome, String> {
    let (pid, end) = match in_child(body, Duration::from_millis(u64::from(EXEC_WAIT_MS))) {
        Ok(r) => r,
        Err(outcome) => return Ok(outcome),
    };
    let call_name = |i: usize| calls.get(i).copied().unwrap_or("?").to_owned();
    let all_calls = calls.join(", ");
    match end {
        ChildEnd::Reported { errno: 0, .. } => {
            let _ = child_state(pid, Duration::from_secs(1));
            Ok(Outcome::Succeeded(format!(
                "a forked child (pid {pid}) made {all_calls}: all succeeded"
            )))
        }
        ChildEnd::Reported { errno, call } => {
            let _ = child_state(pid, Duration::from_secs(1));
            Ok(Outcome::Refused {
                errno: Errno(errno),
                call: format!("{} (forked child)", call_name(call)),
            })
        }
        ChildEnd::Closed => match child_state(pid, Duration::from_millis(200)) {
            ChildState::Signaled(sig) => Ok(Outcome::Killed {
                signal: Signal(sig),
                call: format!("a forked child's {all_calls}"),
            }),
            ChildState::Exited(code) => Ok(Outcome::Succeeded(format!(
                "a forked child (pid {pid}) exec'd {what}, which exited with status {code}"
            ))),
            ChildState::Running => Ok(Outcome::Succeeded(format!(
                "a forked child (pid {pid}) exec'd {what}, which runs"
            ))),
        },
        ChildEnd::Silent => Err(format!(
            "the forked child (pid {pid}) neither reported nor exec'd within {EXEC_WAIT_MS} ms"
        )),
    }
}

/// A NULL-terminated pointer array over `strings` (which must outlive it).
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn c_strings(words: &[&str]) -> Result<Vec<CString>, String> {
    words
        .iter()
        .map(|w| CString::new(*w).map_err(|_| format!("{w:?} has a NUL")))
        .collect()
}

fn execve(path: &CString, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: execve reads a NUL-terminated path and two NULL-terminated
    // arrays of NUL-terminated strings, all prepared before the fork. It
    // returns only on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execve,
            path.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    last_errno()
}

/// The arguments a second server would get: no port, no snapshots, so a
/// server that did start would serve nothing and write nothing.
const SERVER_ARGS: [&str; 5] = ["valkey-server", "--port", "0", "--save", ""];

fn memfd_exec() -> Result<Outcome, String> {
    let name = c"intruder".to_owned();
    let self_exe = c"/proc/self/exe".to_owned();
    let empty = c"".to_owned();
    let args = c_strings(&SERVER_ARGS)?;
    let argv = pointers(&args);
    let envp = pointers(&[]);
    let body = || -> Result<(), (Errno, usize)> {
        // SAFETY: memfd_create reads a NUL-terminated name.
        let memfd = sys(unsafe {
            libc::syscall(
                libc::SYS_memfd_create,
                name.as_ptr(),
                c_long::from(libc::MFD_CLOEXEC),
            )
        })
        .map_err(|e| (e, 0))?;
        let exe = open(&self_exe, libc::O_RDONLY, 0).map_err(|e| (e, 1))?;
        copy_all(exe, memfd).map_err(|e| (e, 2))?;
        // SAFETY: execveat with AT_EMPTY_PATH runs the file `memfd` refers
        // to; the empty path and the arrays were prepared before the fork.
        sys(unsafe {
            libc::syscall(
                libc::SYS_execveat,
                memfd,
                empty.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                c_long::from(libc::AT_EMPTY_PATH),
            )
        })
        .map_err(|e| (e, 3))?;
        Ok(())
    };
    child_outcome(
        &body,
        &[
            "memfd_create",
            "open(/proc/self/exe)",
            "sendfile(into the memfd)",
            "execveat(memfd)",
        ],
        "a memfd copy of the server binary",
    )
}

fn exec_server() -> Result<Outcome, String> {
    let server = c_path(&server_binary()?)?;
    let args = c_strings(&SERVER_ARGS)?;
    let argv = pointers(&args);
    let envp = pointers(&[]);
    let call = format!("execve({})", server.to_string_lossy());
    let body = || Err((execve(&server, &argv, &envp), 0));
    child_outcome(&body, &[call.as_str()], "the server binary")
}

fn exec_sh() -> Result<Outcome, String> {
    let sh = c"/bin/sh".to_owned();
    let args = c_strings(&["sh", "-c", "id"])?;
    let argv = pointers(&args);
    let envp = pointers(&[]);
    let body = || Err((execve(&sh, &argv, &envp), 0));
    child_outcome(&body, &["execve(/bin/sh)"], "/bin/sh")
}

fn exec_data() -> Result<Outcome, String> {
    let path = data_dir()?.join("intruder-exec");
    let target = c_path(&path)?;
    let shown = path.display().to_string();
    let copy = open(
        &target,
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        0o755,
    );
    let fd = match copy {
        Ok(fd) => fd,
        Err(e) => return Ok(refused(e, &format!("open({shown}, O_CREAT)"))),
    };
    let written = open(&c"/proc/self/exe".to_owned(), libc::O_RDONLY, 0)
        .map_err(|e| (e, "open(/proc/self/exe)"))
        .and_then(|exe| {
            // The file is created 0755 (less the server's umask, 022):
            // no fchmod, which the server never calls.
            let copied = copy_all(exe, fd).map_err(|e| (e, "read/write"));
            close(exe);
            copied
        });
    close(fd);
    let outcome = match written {
        Err((e, call)) => Ok(refused(e, &format!("{call} ({shown})"))),
        Ok(()) => {
            let args = c_strings(&SERVER_ARGS)?;
            let argv = pointers(&args);
            let envp = pointers(&[]);
            let call = format!("execve({shown})");
            let body = || Err((execve(&target, &argv, &envp), 0));
            child_outcome(
                &body,
                &[call.as_str()],
                "a copy of the server in the data directory",
            )
        }
    };
    // SAFETY: unlinkat reads a NUL-terminated path.
    unsafe {
        libc::syscall(
            libc::SYS_unlinkat,
            c_long::from(libc::AT_FDCWD),
            target.as_ptr(),
            0 as c_long,
        )
    };
    outcome
}

fn unshare_user() -> Result<Outcome, String> {
    // In a child: the server has several threads, and the kernel refuses
    // CLONE_NEWUSER to a multi-threaded process (EINVAL) whatever the
    // policy; the child is single-threaded.
    let body = || {
        // SAFETY: unshare takes no pointers.
        sys(unsafe { libc::syscall(libc::SYS_unshare, c_long::from(libc::CLONE_NEWUSER)) })
            .map(|_| ())
            .map_err(|e| (e, 0))
    };
    child_outcome(&body, &["unshare(CLONE_NEWUSER)"], "nothing")
}

fn mount() -> Result<Outcome, String> {
    let path = data_dir()?.join("intruder-mnt");
    let target = c_path(&path)?;
    let shown = path.display().to_string();
    // SAFETY: mkdirat reads a NUL-terminated path.
    let made = sys(unsafe {
        libc::syscall(
            libc::SYS_mkdirat,
            c_long::from(libc::AT_FDCWD),
            target.as_ptr(),
            0o700 as c_long,
        )
    });
    match made {
        Ok(_) => {}
        Err(e) if e.0 == libc::EEXIST => {}
        Err(e) => return Ok(refused(e, &format!("mkdir({shown})"))),
    }
    let source = c"intruder".to_owned();
    let fstype = c"tmpfs".to_owned();
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: mount reads three NUL-terminated strings; no data.
    let mounted = sys(unsafe {
        libc::syscall(
            libc::SYS_mount,
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags as c_long,
            std::ptr::null::<c_void>(),
        )
    });
    let outcome = match mounted {
        Ok(_) => {
            // SAFETY: umount2 reads a NUL-terminated path.
            unsafe {
                libc::syscall(
                    libc::SYS_umount2,
                    target.as_ptr(),
                    c_long::from(libc::MNT_DETACH),
                )
            };
            Outcome::Succeeded(format!("mounted a tmpfs on {shown}"))
        }
        Err(e) => refused(e, &format!("mount(tmpfs on {shown})")),
    };
    // SAFETY: unlinkat with AT_REMOVEDIR reads a NUL-terminated path.
    unsafe {
        libc::syscall(
            libc::SYS_unlinkat,
            c_long::from(libc::AT_FDCWD),
            target.as_ptr(),
            c_long::from(libc::AT_REMOVEDIR),
        )
    };
    Ok(outcome)
}
