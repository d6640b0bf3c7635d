//! The syscall edge: raw return codes to `Result`.

use std::ffi::{CStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// A raw return code as [`Error::Os`]: `nlwire::check`, the workspace's
/// one conversion of raw return codes, with this crate's error.
pub(crate) fn cvt(ret: libc::c_int, op: &'static str) -> Result<libc::c_int, Error> {
    nlwire::check(op, ret).map_err(|e| Error::Os {
        op: e.op,
        source: e.source,
    })
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

/// `openat(2)` relative to `dir`, close-on-exec, with `flags` besides
/// (`O_RDONLY` for a file to read, `O_PATH | O_NOFOLLOW` for a link).
pub(crate) fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is a
    // live descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `readlinkat(2)` relative to `dir` (a procfs link target fits in
/// `PATH_MAX`; a longer one is cut there, as the kernel cuts it). An empty
/// `name` reads the link `dir` itself was opened on (`O_PATH | O_NOFOLLOW`).
pub(crate) fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `name` is NUL-terminated; `buf` is a live, writable buffer of
    // `buf.len()` bytes.
    let ret = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = nlwire::check("readlinkat", ret).map_err(|e| e.source)?;
    buf.truncate(usize::try_from(len).unwrap_or(0));
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), or 1024 if it
/// cannot be read.
pub(crate) fn nofile_limit() -> u64 {
    // SAFETY: an all-zero rlimit is valid; getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// Reads a directory with `getdents64(2)`, from directory position `from`
/// (0: its start) to its end, into `buf`, which is grown (never shrunk) as
/// needed and reused across calls; returns how many bytes of it hold
/// records, for [`crate::parse::proc::parse_dirent_pids`].
pub(crate) fn read_dirents(
    dir: BorrowedFd<'_>,
    from: libc::off_t,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    // SAFETY: lseek on a live descriptor; no memory is passed.
    if unsafe { libc::lseek(dir.as_raw_fd(), from, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut filled = 0usize;
    loop {
        if buf.len().saturating_sub(filled) < 4096 {
            let grown = buf.len().saturating_mul(2).max(32 * 1024);
            buf.resize(grown, 0);
        }
        let spare = buf.get_mut(filled..).unwrap_or_default();
        // SAFETY: `spare` is a live, writable buffer of `spare.len()` bytes,
        // which the kernel fills with whole records.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                spare.as_mut_ptr(),
                spare.len(),
            )
        };
        let n = match ret {
            0 => return Ok(filled),
            r if r < 0 => return Err(io::Error::last_os_error()),
            r => usize::try_from(r).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?,
        };
        filled = filled.saturating_add(n).min(buf.len());
    }
}

/// Whether `fd` is on a procfs mount (`fstatfs` reports `PROC_SUPER_MAGIC`).
pub(crate) fn is_procfs(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: an all-zero statfs is valid; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable statfs; `fd` is a live descriptor.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    st.f_type == libc::PROC_SUPER_MAGIC
}

/// Clock ticks per second of `/proc`'s times (`sysconf(_SC_CLK_TCK)`,
/// `USER_HZ`); 100, the value on every Linux architecture, if it cannot be
/// read.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes a constant and returns a number; no memory is
    // passed.
    let ret = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ret).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `CLOCK_BOOTTIME` now: time since boot, suspended time included, the
/// clock `stat`'s start time counts.
pub(crate) fn boot_time() -> io::Result<Duration> {
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a live, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let nanos =
        u32::try_from(ts.tv_nsec).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(Duration::new(secs, nanos))
}
