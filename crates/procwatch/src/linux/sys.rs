//! The syscall edge: raw return codes to `Result`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::Error;

/// `-1` → the thread's `errno` as [`Error::Os`].
pub(crate) fn cvt(ret: libc::c_int, op: &'static str) -> Result<libc::c_int, Error> {
    if ret == -1 {
        Err(Error::Os {
            op,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for `ssize_t` returns.
pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        usize::try_from(ret).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    }
}

/// `pidfd_open(2)`: a descriptor naming exactly the process that has `pid`
/// now (in the caller's PID namespace), close-on-exec. It becomes readable
/// once that process has exited, whatever process gets the pid next.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Polls pidfds without waiting: `exited[i]` is set for every descriptor the
/// kernel reports as anything but quiet (exited, or an error). If `poll`
/// itself fails, every entry counts as exited, so callers re-read.
pub(crate) fn pidfds_exited(fds: &[BorrowedFd<'_>], exited: &mut Vec<bool>) {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    exited.clear();
    let Ok(n) = libc::nfds_t::try_from(polls.len()) else {
        exited.resize(fds.len(), true);
        return;
    };
    // SAFETY: `polls` is a live array of `n` pollfd entries; timeout 0 never
    // blocks.
    let ret = unsafe { libc::poll(polls.as_mut_ptr(), n, 0) };
    if ret < 0 {
        exited.resize(fds.len(), true);
        return;
    }
    exited.extend(polls.iter().map(|p| p.revents != 0));
}

/// Whether a pidfd's process is still alive (its pidfd is quiet).
pub(crate) fn pidfd_alive(fd: BorrowedFd<'_>) -> bool {
    let mut exited = Vec::with_capacity(1);
    pidfds_exited(&[fd], &mut exited);
    exited.first() == Some(&false)
}
