//! The syscall edge: raw return codes to `Result`.

use std::io;

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
