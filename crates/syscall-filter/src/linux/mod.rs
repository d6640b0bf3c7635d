//! The Linux edge: install a compiled program, serve the notifications it
//! raises, and pass the listener between processes.
//!
//! Ordering for a process that filters itself and then execs (init):
//! `no_new_privs` (or `CAP_SYS_ADMIN`), then [`install`] with a new
//! listener, then [`send_fd`] of the listener to the supervisor, close the
//! copies, `execve`. From the moment [`install`] returns, every call the
//! process makes goes through the filter, including that `sendmsg`, the
//! `close`s and the `execve`: the filter must allow the `sendmsg`
//! ([`Filter::with_listener_handoff`](crate::Filter::with_listener_handoff)),
//! since a notified call would wait for a supervisor that does not have the
//! listener yet. [`install`] itself makes no system call after `seccomp()`.
//!
//! [`install`] and [`send_fd`] allocate nothing and call only
//! async-signal-safe system calls, so a child may use them between `fork`
//! and `execve` even when the parent has other threads.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::{Error, Instruction, Notification, Program, Response, SeccompData};

mod trace;

pub use trace::{record_and_continue, run_traced, run_traced_reporting, ChildExit, Traced};

// A program is handed to the kernel in place: `Instruction` must be
// `struct sock_filter` exactly.
const _: () = {
    assert!(size_of::<Instruction>() == size_of::<libc::sock_filter>());
    assert!(align_of::<Instruction>() == align_of::<libc::sock_filter>());
    assert!(offset_of!(Instruction, code) == offset_of!(libc::sock_filter, code));
    assert!(offset_of!(Instruction, jt) == offset_of!(libc::sock_filter, jt));
    assert!(offset_of!(Instruction, jf) == offset_of!(libc::sock_filter, jf));
    assert!(offset_of!(Instruction, k) == offset_of!(libc::sock_filter, k));
};

/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE` in the response's `u32` field.
const USER_NOTIF_FLAG_CONTINUE: u32 = 1;
const _: () =
    assert!(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE == USER_NOTIF_FLAG_CONTINUE as libc::c_ulong);

/// Size of a descriptor in an `SCM_RIGHTS` message.
const FD_SIZE: libc::c_uint = 4;
const _: () = assert!(size_of::<RawFd>() == FD_SIZE as usize);

/// Options for [`install`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstallFlags {
    /// Return a listener for the filter's [`Notify`](crate::Action::Notify)
    /// answers (`SECCOMP_FILTER_FLAG_NEW_LISTENER`). Without one anywhere
    /// in the process's filter stack, a notified call fails with ENOSYS.
    pub new_listener: bool,
    /// Once the supervisor has received a notification, only a fatal signal
    /// interrupts the waiting call (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`,
    /// Linux 5.19; needs `new_listener`). Without it, a signal handler
    /// running in the caller restarts the call, which notifies again.
    pub wait_killable_recv: bool,
    /// Apply the filter to every thread of the process
    /// (`SECCOMP_FILTER_FLAG_TSYNC`, with `TSYNC_ESRCH` so a failure is
    /// ESRCH and never confused with a listener descriptor).
    pub tsync: bool,
    /// Log every refused call to the audit log
    /// (`SECCOMP_FILTER_FLAG_LOG`).
    pub log: bool,
}

/// Installs `program` on the calling thread (and, with `tsync`, its
/// siblings); returns the listener when `flags.new_listener` is set.
///
/// The caller must have set `no_new_privs` (or hold `CAP_SYS_ADMIN`):
/// otherwise the kernel refuses with EACCES, reported as
/// [`Error::NoNewPrivs`]. A filter cannot be removed; filters stack, and the
/// strictest answer of all of them applies.
pub fn install(program: &Program, flags: InstallFlags) -> Result<Option<Listener>, Error> {
    if cfg!(not(target_arch = "x86_64")) {
        return Err(Error::WrongArch);
    }
    let len = u16::try_from(program.len()).map_err(|_| Error::TooLong {
        len: program.len(),
        max: crate::MAX_INSTRUCTIONS,
    })?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program (the pointer is `*mut` in C).
        filter: program
            .instructions()
            .as_ptr()
            .cast_mut()
            .cast::<libc::sock_filter>(),
    };
    let mut bits: libc::c_ulong = 0;
    if flags.new_listener {
        bits |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    if flags.wait_killable_recv {
        bits |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }
    if flags.tsync {
        bits |= libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    }
    if flags.log {
        bits |= libc::SECCOMP_FILTER_FLAG_LOG;
    }
    // SAFETY: `fprog` points at `program`'s instructions, which are laid out
    // as `sock_filter` (checked above) and outlive the call; the kernel
    // copies the program and keeps no pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            bits,
            std::ptr::from_ref(&fprog),
        )
    };
    let ret = match sys(ret, "seccomp(SECCOMP_SET_MODE_FILTER)") {
        Err(e) if e.errno() == Some(libc::EACCES) => return Err(Error::NoNewPrivs),
        other => other?,
    };
    if !flags.new_listener {
        return Ok(None);
    }
    let fd = RawFd::try_from(ret).map_err(|_| Error::Os {
        op: "seccomp(SECCOMP_SET_MODE_FILTER) returned a descriptor out of range",
        source: io::Error::from_raw_os_error(libc::EBADF),
    })?;
    // SAFETY: with NEW_LISTENER the kernel returns a new descriptor
    // (close-on-exec) that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // No check of the descriptor here: any call now goes through the filter.
    Ok(Some(Listener {
        fd,
        sizes_checked: OnceLock::new(),
    }))
}

/// The one place a raw return code becomes a `Result`: a negative return
/// is the thread's errno, as [`Error::Os`] naming the call.
pub(crate) fn sys(ret: i64, op: &'static str) -> Result<i64, Error> {
    if ret < 0 {
        Err(Error::Os {
            op,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

/// [`sys`], making the call again while it fails with EINTR.
pub(crate) fn sys_retry(op: &'static str, mut call: impl FnMut() -> i64) -> Result<i64, Error> {
    loop {
        match sys(call(), op) {
            Err(e) if e.errno() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// Buffers for the notification structures, in 8-byte words: room for the
/// kernel's structures should they grow (today 80 and 24 bytes).
const NOTIF_WORDS: usize = 32;
const RESP_WORDS: usize = 8;

/// Checks that the kernel's notification structures
/// (`SECCOMP_GET_NOTIF_SIZES`) are at least ours and fit our buffers.
fn check_sizes() -> Result<(), Error> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: GET_NOTIF_SIZES writes one `seccomp_notif_sizes` to the
    // pointer, which is valid for that.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            std::ptr::from_mut(&mut sizes),
        )
    };
    sys(ret, "seccomp(SECCOMP_GET_NOTIF_SIZES)")?;
    let check = |what, kernel: u16, ours: usize, room: usize| {
        if usize::from(kernel) > room || usize::from(kernel) < ours {
            Err(Error::NotifSizes {
                what,
                kernel,
                ours: room,
            })
        } else {
            Ok(())
        }
    };
    check(
        "seccomp_notif",
        sizes.seccomp_notif,
        size_of::<libc::seccomp_notif>(),
        NOTIF_WORDS * 8,
    )?;
    check(
        "seccomp_notif_resp",
        sizes.seccomp_notif_resp,
        size_of::<libc::seccomp_notif_resp>(),
        RESP_WORDS * 8,
    )
}

/// The supervisor's end of a filter: notified calls arrive here.
///
/// Closing it (dropping it, or the holding process dying) makes every
/// call waiting on it, and every later notified call, fail with ENOSYS:
/// a supervisor whose refusals must hold has to outlive the filtered
/// processes, or take the machine down with it.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    /// Set once the kernel's structure sizes have been checked.
    sizes_checked: OnceLock<()>,
}

/// What [`Listener::recv`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A call waiting for an answer.
    Notification(Notification),
    /// A call was queued but its thread died (or a signal took it away)
    /// before it could be read (ENOENT): nothing to answer.
    TargetGone,
}

/// What [`Listener::respond`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Responded {
    /// The answer reached the waiting call.
    Delivered,
    /// The call is no longer waiting (its thread died, or a signal
    /// interrupted it; it will notify again when restarted): ENOENT.
    TargetGone,
}

/// What [`Listener::wait`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// A notification can be received.
    Notification,
    /// No process uses the filter any more: nothing will ever arrive.
    Hangup,
    /// The timeout passed.
    TimedOut,
}

impl Listener {
    /// Adopts a listener received from another process ([`recv_fd`]),
    /// checking that it is one (`SECCOMP_IOCTL_NOTIF_ID_VALID` answers a
    /// listener with ENOENT or 0, anything else with ENOTTY or EINVAL).
    pub fn from_fd(fd: OwnedFd) -> Result<Self, Error> {
        let listener = Listener {
            fd,
            sizes_checked: OnceLock::new(),
        };
        match listener.id_valid(0) {
            Ok(_) => Ok(listener),
            Err(Error::Os { source, .. }) => Err(Error::NotAListener(source)),
            Err(other) => Err(other),
        }
    }

    /// Gives up the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    fn check_sizes(&self) -> Result<(), Error> {
        if self.sizes_checked.get().is_none() {
            check_sizes()?;
            let _ = self.sizes_checked.set(());
        }
        Ok(())
    }

    /// Waits up to `timeout` (forever for `None`) for a notification or for
    /// the filter to lose its last user. EINTR counts as a timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Readiness, Error> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(Readiness::TimedOut),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Os {
                    op: "poll(seccomp listener)",
                    source: e.into(),
                })
            }
        }
        let revents = fds
            .first()
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLIN) {
            Ok(Readiness::Notification)
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            Ok(Readiness::Hangup)
        } else {
            Ok(Readiness::TimedOut)
        }
    }

    /// Receives one notification, waiting for it unless [`wait`](Self::wait)
    /// said one is ready (`SECCOMP_IOCTL_NOTIF_RECV`; EINTR is retried).
    pub fn recv(&self) -> Result<Received, Error> {
        // The kernel writes its own structure size: make sure `buf` holds it.
        self.check_sizes()?;
        let mut buf = [0u64; NOTIF_WORDS];
        let received = sys_retry("ioctl(SECCOMP_IOCTL_NOTIF_RECV)", || {
            buf.fill(0);
            // SAFETY: `buf` is 8-byte aligned, zeroed (the kernel refuses a
            // dirty buffer) and at least the kernel's `seccomp_notif` size
            // (checked by `check_sizes`), which is all the kernel writes.
            i64::from(unsafe {
                libc::ioctl(
                    self.fd.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_RECV,
                    buf.as_mut_ptr(),
                )
            })
        });
        match received {
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(Received::TargetGone),
            other => other?,
        };
        // SAFETY: `buf` is initialized, aligned for `seccomp_notif` (8) and
        // larger than it; every bit pattern is a valid `seccomp_notif`.
        let raw: libc::seccomp_notif = unsafe { std::ptr::read(buf.as_ptr().cast()) };
        Ok(Received::Notification(Notification {
            id: raw.id,
            pid: raw.pid,
            data: SeccompData {
                nr: u32::from_ne_bytes(raw.data.nr.to_ne_bytes()),
                arch: raw.data.arch,
                instruction_pointer: raw.data.instruction_pointer,
                args: raw.data.args,
            },
        }))
    }

    /// Answers notification `id` (`SECCOMP_IOCTL_NOTIF_SEND`; EINTR is
    /// retried). `Continue` runs the call as made; `Errno(e)` needs e > 0.
    pub fn respond(&self, id: u64, response: Response) -> Result<Responded, Error> {
        // The kernel reads its own structure size: make sure `buf` holds it.
        self.check_sizes()?;
        let (val, error, flags) = match response {
            Response::Continue => (0, 0, USER_NOTIF_FLAG_CONTINUE),
            Response::Errno(e) if e > 0 => (0, -e, 0),
            Response::Errno(_) => {
                return Err(Error::Os {
                    op: "respond: an errno answer must be positive",
                    source: io::Error::from_raw_os_error(libc::EINVAL),
                })
            }
            Response::Value(v) => (v, 0, 0),
        };
        let resp = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        let mut buf = [0u64; RESP_WORDS];
        // SAFETY: `buf` is 8-byte aligned and larger than
        // `seccomp_notif_resp`; the rest stays zero, as the kernel wants
        // any fields it knows and we do not.
        unsafe { std::ptr::write(buf.as_mut_ptr().cast::<libc::seccomp_notif_resp>(), resp) };
        let sent = sys_retry("ioctl(SECCOMP_IOCTL_NOTIF_SEND)", || {
            // SAFETY: `buf` holds the response and is at least the kernel's
            // `seccomp_notif_resp` size (checked by `check_sizes`); the
            // kernel only reads it.
            i64::from(unsafe {
                libc::ioctl(
                    self.fd.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_SEND,
                    buf.as_mut_ptr(),
                )
            })
        });
        match sent {
            Ok(_) => Ok(Responded::Delivered),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(Responded::TargetGone),
            Err(e) => Err(e),
        }
    }

    /// Whether notification `id` is still waiting
    /// (`SECCOMP_IOCTL_NOTIF_ID_VALID`). A supervisor that reads anything
    /// about the caller (its `/proc` entry, its memory) checks this after
    /// reading, so what it read belongs to that caller and not to a
    /// process that reused the pid.
    pub fn id_valid(&self, id: u64) -> Result<bool, Error> {
        let mut id = id;
        // SAFETY: ID_VALID reads one u64 through the pointer.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                std::ptr::from_mut(&mut id),
            )
        };
        match sys(i64::from(ret), "ioctl(SECCOMP_IOCTL_NOTIF_ID_VALID)") {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Control-message room for a few descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends descriptor `fd` over the unix socket `socket` (`SCM_RIGHTS`, with
/// a one-byte payload). Written on libc rather than nix because nix's
/// `sendmsg` allocates its control buffer, and this runs between `fork` and
/// `execve` in a process that may have had other threads.
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Error> {
    let mut payload = [b'L'];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut control = CmsgBuf([0; 64]);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FD_SIZE) };
    // SAFETY: an all-zero msghdr is valid (null name, no iovecs).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = std::ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = usize::try_from(space)
        .unwrap_or(usize::MAX)
        .min(control.0.len());
    // SAFETY: `msg` points at `control`, which is large and aligned enough
    // for one header with one descriptor (CMSG_SPACE(4) = 24 <= 64), so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA points inside `control`.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        if header.is_null() {
            return Err(Error::FdPassing("no room for the control message"));
        }
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(FD_SIZE) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd.as_raw_fd());
    }
    let sent = sys_retry("sendmsg(SCM_RIGHTS)", || {
        // SAFETY: `msg` and everything it points at live across the call.
        let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        sent as i64
    })?;
    if sent != 1 {
        return Err(Error::FdPassing(
            "the descriptor's message was not sent whole",
        ));
    }
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`], close-on-exec. Anything
/// but exactly one descriptor is an error, and every descriptor that did
/// arrive is closed. Written on libc for symmetry with [`send_fd`] and
/// because nix's `cmsgs()` refuses to walk a truncated control buffer, which
/// would leave the descriptors that did fit open and unowned.
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    let mut payload = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut control = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid (null name, no iovecs).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = std::ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    let got = sys_retry("recvmsg(SCM_RIGHTS)", || {
        // SAFETY: `msg` points at live buffers of the lengths it states.
        let got = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        got as i64
    })?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: after recvmsg, `msg`'s control fields describe the headers the
    // kernel wrote into `control`; CMSG_FIRSTHDR/NXTHDR stay inside it and
    // CMSG_DATA points at `cmsg_len - CMSG_LEN(0)` bytes of descriptors.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            let h = &*header;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let bytes = h.cmsg_len.saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..bytes / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    // Each received descriptor is new in this process.
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::FdPassing(
            "more descriptors arrived than expected (truncated)",
        ));
    }
    match (got, fds.len()) {
        (0, 0) => Err(Error::FdPassing(
            "the peer closed without sending a descriptor",
        )),
        (_, 1) => fds.pop().ok_or(Error::FdPassing("no descriptor")),
        (_, 0) => Err(Error::FdPassing("a message arrived without a descriptor")),
        _ => Err(Error::FdPassing("more than one descriptor arrived")),
    }
}
