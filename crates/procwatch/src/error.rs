//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in procwatch. Variants carry the context
/// needed to act on them; none carries process memory or secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file (under `/proc`, `/sys`, `/dev`) could not be read or opened.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Bytes from the kernel did not have the expected shape.
    #[error("malformed {what}: {detail}")]
    Parse {
        /// What was being parsed (`/proc/PID/stat`, a netlink message, ...).
        what: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Os {
        /// The call and its object (`proc connector bind`, `reboot(HALT)`).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A device (power button, watchdog) could not be used.
    #[error("{op} {path}: {source}")]
    Device {
        /// What was attempted.
        op: &'static str,
        /// The device node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An alarm's descriptor hung up or failed with nothing left to read:
    /// its reports can no longer arrive.
    #[error("alarm {name}: {detail}")]
    AlarmGone {
        /// The alarm's name.
        name: String,
        /// What the descriptor reported.
        detail: &'static str,
    },
    /// A fake was told to fail this call (tests only).
    #[error("injected failure: {0}")]
    Injected(&'static str),
}

impl Error {
    pub(crate) fn parse(what: &'static str, detail: &'static str) -> Self {
        Error::Parse { what, detail }
    }
}
