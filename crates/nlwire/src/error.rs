//! The crate's errors: what was wrong with bytes (pure), and what a socket
//! call returned (Linux).
#![forbid(unsafe_code)]

use std::io;

/// Bytes that are not well-formed netlink, or a value that does not fit
/// netlink's length fields. Every variant names the lengths involved.
///
/// [`WireError::detail`] gives a fixed phrase per kind, for callers whose
/// own error type carries a `&'static str`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes left than a message header (16).
    #[error("short message header: {have} bytes left, a header needs 16")]
    ShortHeader {
        /// Bytes left in the datagram.
        have: usize,
    },
    /// `nlmsg_len` below the header or beyond the datagram.
    #[error("message length {len} outside 16..={have}")]
    MessageLength {
        /// The header's `nlmsg_len`.
        len: u32,
        /// Bytes left in the datagram, this header included.
        have: usize,
    },
    /// An `NLMSG_ERROR` message without its 4-byte error code.
    #[error("short error message: {have} payload bytes, the error code needs 4")]
    ShortError {
        /// Payload bytes of the message.
        have: usize,
    },
    /// Fewer bytes left than an attribute header (4).
    #[error("short attribute header: {have} bytes left, a header needs 4")]
    ShortAttrHeader {
        /// Bytes left in the attribute list.
        have: usize,
    },
    /// `nla_len` below the attribute header or beyond the list.
    #[error("attribute length {len} outside 4..={have}")]
    AttrLength {
        /// The attribute's `nla_len`.
        len: u16,
        /// Bytes left in the attribute list, this header included.
        have: usize,
    },
    /// An attribute read as a fixed-size value has another size.
    #[error("attribute {kind} has {have} payload bytes, a {what} needs {need}")]
    AttrSize {
        /// The attribute type (flags masked off).
        kind: u16,
        /// The value type asked for (`u32`, ...).
        what: &'static str,
        /// Its size.
        need: usize,
        /// The payload's size.
        have: usize,
    },
    /// A message or attribute being built is longer than its length field
    /// can say (`u32` for a message, `u16` for an attribute).
    #[error("{what} of {len} bytes does not fit its length field")]
    TooLarge {
        /// A message, an attribute, a nested attribute.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

impl WireError {
    /// A fixed phrase for the kind of error, without the numbers.
    #[must_use]
    pub fn detail(&self) -> &'static str {
        match self {
            Self::ShortHeader { .. } => "short message header",
            Self::MessageLength { .. } => "message length",
            Self::ShortError { .. } => "short error message",
            Self::ShortAttrHeader { .. } => "short attribute header",
            Self::AttrLength { .. } => "attribute length",
            Self::AttrSize { .. } => "attribute value size",
            Self::TooLarge { what, .. } => what,
        }
    }
}

/// A failed system call: which one, and the `errno` it left.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct OsError {
    /// The call and its object (`bind(AF_NETLINK)`).
    pub op: &'static str,
    /// The error the kernel returned.
    #[source]
    pub source: io::Error,
}

/// What a netlink socket call can end in besides success.
///
/// The kinds a caller acts on differently have their own variant: no
/// datagram yet, a receive buffer that overflowed (the kernel dropped
/// messages), a datagram larger than the buffer given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// A system call failed.
    #[error(transparent)]
    Os(#[from] OsError),
    /// No datagram is queued (a non-blocking socket) or none came within
    /// the receive timeout (`EAGAIN`).
    #[error("no netlink datagram within the receive timeout")]
    WouldBlock,
    /// The socket's receive buffer overflowed and the kernel dropped
    /// messages for it (`ENOBUFS`). The socket stays usable; what was lost
    /// is gone.
    #[error("netlink receive buffer overflowed: the kernel dropped messages (ENOBUFS)")]
    Overrun,
    /// A datagram longer than the receive buffer; its tail was lost.
    #[error("netlink datagram of {len} bytes truncated to the {capacity}-byte buffer")]
    Truncated {
        /// The datagram's real length.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// The kernel took only part of a datagram (netlink sends whole
    /// datagrams or nothing, so this means a broken kernel or socket).
    #[error("short netlink send: {sent} of {len} bytes")]
    ShortSend {
        /// Bytes sent.
        sent: usize,
        /// Bytes of the datagram.
        len: usize,
    },
}

impl SocketError {
    /// The error as an `io::Error`, for callers that report one: the OS
    /// error itself, or the `errno` (or kind) the variant stands for.
    #[must_use]
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Os(os) => os.source,
            Self::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            Self::Overrun => io::Error::other("netlink receive buffer overflowed (ENOBUFS)"),
            Self::Truncated { .. } | Self::ShortSend { .. } => io::Error::other(self.to_string()),
        }
    }
}
