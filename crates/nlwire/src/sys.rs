//! The one conversion of a raw system-call return code into an error, for
//! the calls `nix` does not cover (a netlink protocol it has no name for,
//! a `SOL_NETLINK` option) and for any other crate's raw calls.
#![forbid(unsafe_code)]

use std::io;

use crate::OsError;

/// A raw return code as a result: negative means failure, and the thread's
/// `errno` (read at once, before anything can overwrite it) says why.
/// Works for `int`, `ssize_t` and `long` returns alike.
///
/// # Errors
/// [`OsError`] naming `op` when `ret` is negative.
pub fn check<T: Copy + PartialOrd + Default>(op: &'static str, ret: T) -> Result<T, OsError> {
    if ret < T::default() {
        Err(OsError {
            op,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

#[cfg(target_os = "linux")]
impl OsError {
    /// The error of a `nix` call, named `op`.
    #[must_use]
    pub fn nix(op: &'static str, errno: nix::errno::Errno) -> OsError {
        OsError {
            op,
            source: io::Error::from(errno),
        }
    }
}
