//! The crate's one error type.
#![forbid(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Everything that can go wrong while bringing the interface up.
///
/// Decoding variants describe why a packet was not a usable reply; the client
/// ignores such packets and keeps waiting, so they only surface from the
/// decoder itself (tests, fuzzing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetconfError {
    /// The input ended before a field we need.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which field or header was cut short.
        what: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were there.
        have: usize,
    },
    /// A BOOTP message without the DHCP magic cookie.
    #[error("no DHCP magic cookie")]
    BadMagicCookie,
    /// A BOOTREQUEST (or garbage) where a BOOTREPLY was expected.
    #[error("not a BOOTREPLY (op {op})")]
    NotAReply {
        /// The `op` byte found.
        op: u8,
    },
    /// A hardware type other than ethernet with 6-byte addresses.
    #[error("unsupported hardware type {htype} length {hlen}")]
    UnsupportedHardware {
        /// The `htype` byte.
        htype: u8,
        /// The `hlen` byte.
        hlen: u8,
    },
    /// A reply to some other transaction.
    #[error("transaction id {got:#010x}, expected {expected:#010x}")]
    WrongTransaction {
        /// Our xid.
        expected: u32,
        /// The reply's xid.
        got: u32,
    },
    /// A reply addressed to another client's hardware address.
    #[error("reply for another hardware address")]
    WrongHardwareAddress,
    /// An option whose length does not fit its definition.
    #[error("option {code} has bad length {len}")]
    BadOptionLength {
        /// The option code.
        code: u8,
        /// Its (concatenated) length.
        len: usize,
    },
    /// An option that must be present is missing.
    #[error("option {code} missing")]
    MissingOption {
        /// The option code.
        code: u8,
    },
    /// An option with a value outside its definition.
    #[error("option {code} has bad value {value}")]
    BadOptionValue {
        /// The option code.
        code: u8,
        /// The offending value.
        value: u32,
    },
    /// A DHCP message type this client does not expect from a server.
    #[error("unexpected DHCP message type {message_type}")]
    UnexpectedMessageType {
        /// The option 53 value.
        message_type: u8,
    },
    /// A subnet mask that is not contiguous ones then zeros, or is all zeros.
    #[error("unusable subnet mask {0}")]
    BadSubnetMask(Ipv4Addr),
    /// The offered address is not a unicast host address.
    #[error("unusable offered address {0}")]
    UnusableAddress(Ipv4Addr),
    /// A client identifier outside 2..=255 bytes (RFC 2132 §9.14).
    #[error("client identifier of {len} bytes; must be 2..=255")]
    BadClientId {
        /// The length given.
        len: usize,
    },
    /// A frame that is not an IPv4/UDP datagram for the DHCP client port.
    #[error("not a DHCP client datagram: {reason}")]
    NotDhcpDatagram {
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A DHCP payload too large for one UDP datagram.
    #[error("DHCP message of {len} bytes does not fit a UDP datagram")]
    Oversized {
        /// The payload length.
        len: usize,
    },
    /// No ACK arrived within the deadline.
    #[error("no DHCP lease within {deadline:?} (last phase: {phase}, {naks} NAKs)")]
    Timeout {
        /// The overall deadline.
        deadline: Duration,
        /// What the client was waiting for when time ran out.
        phase: &'static str,
        /// NAKs received, which each restarted the exchange.
        naks: u32,
    },
    /// A netlink reply that does not parse.
    #[error("malformed netlink reply: {what}")]
    NetlinkMalformed {
        /// What was wrong.
        what: &'static str,
    },
    /// The kernel refused a netlink request.
    #[error("netlink {request} refused: {source}")]
    NetlinkRefused {
        /// Which request.
        request: &'static str,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// No ethernet link other than loopback exists.
    #[error("no ethernet link found")]
    NoEthernetLink,
    /// The named interface does not exist.
    #[error("no link named {0:?}")]
    NoSuchLink(String),
    /// A syscall failed.
    #[error("{call}: {source}")]
    Syscall {
        /// The syscall and what it was for.
        call: &'static str,
        /// The error it returned.
        source: io::Error,
    },
}
