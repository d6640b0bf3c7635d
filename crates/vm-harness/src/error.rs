//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::resp::ProtocolError;

/// What went wrong booting, watching or talking to a VM. Every variant
/// names what was being done and on what; the cause, when there is one,
/// is its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// QEMU's option syntax cannot carry a path with a comma.
    #[error("QEMU cannot take a path with a comma: {}", .0.display())]
    CommaInPath(PathBuf),
    /// QEMU's `guestfwd=...-cmd:` cannot carry a comma either.
    #[error("the metadata command must not contain a comma: {0}")]
    CommaInMetadataCommand(String),
    /// A tap network was asked for together with user-network forwards.
    #[error("a tap network takes no user-network forwards or metadata program")]
    TapWithUserForwards,
    /// Not one of `scsi`, `nvme`, `virtio`.
    #[error("no disk interface `{0}`; scsi, nvme or virtio")]
    UnknownDiskInterface(String),
    /// Not a stand-in mode's spelling.
    #[error(
        "unknown stand-in mode `{0}` (normal, missing-key[:KEY], wrong-header, oversized, \
         never-answers, line-ending, control-char, short-admin, same-secrets)"
    )]
    UnknownMode(String),
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    File {
        /// The operation (`create`, `read`, ...).
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O operation failed.
    #[error("{what}")]
    Io {
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("start {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line, for the reader.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// The image directory lacks the kernel command line file its assembly
    /// writes.
    #[error(
        "no appliance.cmdline in {} (an image from an older build? rebuild it with `cargo xtask image`)",
        .0.display()
    )]
    NoCmdline(PathBuf),
    /// The executable the stand-in runs as cannot be put on QEMU's command
    /// line (a comma or a space in its path).
    #[error("this executable cannot be passed to QEMU's guestfwd: {}", .0.display())]
    StandinPath(PathBuf),
    /// The stand-in program was called with other arguments.
    #[error("usage: {} --state <file>", crate::standin::SUBCOMMAND)]
    StandinUsage,
    /// A stand-in state file others may read.
    #[error("{} is readable by others; refusing", .0.display())]
    StateReadable(PathBuf),
    /// A stand-in state file that is not the JSON this crate writes.
    #[error("parse {}", path.display())]
    StateParse {
        /// The state file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The stand-in state could not be serialized.
    #[error("serialize stand-in state")]
    StateSerialize(#[source] serde_json::Error),
    /// The test network was asked for more client addresses than it has.
    #[error("at most {max} client addresses, not {asked}")]
    TooManyClients {
        /// Asked for.
        asked: u16,
        /// The most there are.
        max: u16,
    },
    /// A helper process or thread did not come up in time.
    #[error("{what} did not start within {within:?}")]
    StartTimeout {
        /// Which.
        what: &'static str,
        /// How long it had.
        within: Duration,
    },
    /// dnsmasq ended while starting.
    #[error("dnsmasq exited ({status}): {log}")]
    DnsmasqExited {
        /// How it ended.
        status: ExitStatus,
        /// Its log.
        log: String,
    },
    /// A thread inside the test network panicked.
    #[error("a thread in the test network panicked")]
    ThreadPanicked,
    /// A TCP connection could not be made.
    #[error("connect {}{to}", from.map(|f| format!("{f} -> ")).unwrap_or_default())]
    Connect {
        /// The source address bound first, if one was.
        from: Option<std::net::IpAddr>,
        /// Where to.
        to: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No complete reply within the connection's timeout.
    #[error("no reply within {0:?}")]
    NoReply(Duration),
    /// The server closed the connection before a complete reply.
    #[error("the server closed the connection")]
    Closed,
    /// The bytes that came back are not RESP.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// `AUTH` did not answer `+OK`.
    #[error("AUTH as {user} answered {reply}")]
    Auth {
        /// Who tried.
        user: String,
        /// What came back (its `Debug` form).
        reply: String,
    },
    /// The QEMU monitor could not be reached or did not answer.
    #[error("QEMU monitor {}", socket.display())]
    Monitor {
        /// Its socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Host tools are missing.
    #[error(transparent)]
    HostTools(#[from] host_tools::Error),
}

impl Error {
    /// An [`Error::File`] for `what` on `path`: a short way to say it in
    /// `map_err`.
    pub(crate) fn file(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::File { what, path, source }
    }

    /// An [`Error::Io`] for `what`.
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
