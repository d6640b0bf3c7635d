//! The appliance's firewall: one [`Policy`] built from the spec, rendered as a
//! FreeBSD `pf.conf` ([`render_pf`]) or an nftables ruleset ([`render_nft`]),
//! and on Linux loaded into the kernel over netlink without an `nft` binary
//! ([`Firewall`], `NetlinkFirewall`), then read back from the kernel and
//! checked rule by rule against what was loaded ([`Firewall::verify`]).
//!
//! The policy is default drop, silently (no RST, no ICMP unreachable): inbound
//! only the server port (with a per-source new-connection rate limit, a
//! per-source and a total cap on concurrent connections, and a source that
//! a full meter cannot hold dropped: the meters fail closed), ICMP echo if
//! the spec asks, loopback, and replies to established connections.
//! Outbound depends on the boot [`Phase`]: DHCP and the metadata server while
//! booting, nothing of our own once sealed. IPv6 is dropped everywhere but on
//! loopback.
//!
//! This crate deliberately does not bring up interfaces, resolve names (the
//! metadata host must be an IPv4 literal), run `pfctl`/`nft`, or touch any
//! table but its own (`inet appliance`).
//!
//! Invariants:
//! - The renderers and the netlink encoder are pure functions of
//!   `(&Policy, Phase)`; the nftables text and the netlink batch are derived
//!   from one intermediate ruleset, so they cannot say different things.
//! - Loading a phase replaces our table in one kernel transaction: there is no
//!   moment with the old rules gone and the new ones not yet in force.
//! - No `unsafe`: netlink framing and the socket are `nlwire`'s; this crate
//!   keeps only nf_tables' messages and expressions.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod firewall;
mod ir;
mod netlink;
mod nft;
mod pf;
mod policy;

#[cfg(target_os = "linux")]
mod os;

#[cfg(feature = "fake")]
pub mod fake;

pub use firewall::Firewall;
pub use netlink::{
    ack_status, encode_batch, encode_rule_dump, expected_rules, parse_acks, parse_rule_dump,
    verify_rules, AckOutcome, AckStatus, Batch, BatchMessage, DumpedRule, ReadBack, RuleDump,
};
pub use nft::{render_nft, NFT_TABLE};
pub use pf::render_pf;
pub use policy::{ConnLimit, Egress, Phase, Policy, RateLimit};

#[cfg(target_os = "linux")]
pub use os::linux::NetlinkFirewall;

use std::io;

/// Everything that can go wrong building or loading the firewall.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// `metadata.base_url` has no host we can read.
    #[error("metadata.base_url {url:?}: no host after http://")]
    MetadataUrl {
        /// The URL from the spec (it holds no secret).
        url: String,
    },
    /// The metadata host is a name or an IPv6 literal. The firewall opens
    /// egress to exactly one IPv4 address, and nothing on the appliance
    /// resolves names.
    #[error("metadata.base_url host {host:?} is not an IPv4 literal; the boot firewall needs one address, never a name")]
    MetadataHostNotIpv4 {
        /// The host part as written.
        host: String,
    },
    /// The metadata URL names a port that is not a number in 1..=65535.
    #[error("metadata.base_url port {port:?} is not a TCP port")]
    MetadataPort {
        /// The port part as written.
        port: String,
    },
    /// A netlink socket syscall failed.
    #[error("netlink {op}: {source}")]
    Socket {
        /// The syscall.
        op: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
    /// The kernel refused one message of the batch; the whole transaction was
    /// rolled back.
    #[error("nftables refused {what} (batch message seq {seq}): {}", io::Error::from_raw_os_error(*errno))]
    Refused {
        /// Sequence number of the refused message.
        seq: u32,
        /// Which object the message created or deleted.
        what: String,
        /// The kernel's errno (positive).
        errno: i32,
    },
    /// The kernel did not acknowledge a message before the receive timeout.
    #[error("no acknowledgement from nftables for {what} (seq {seq})")]
    MissingAck {
        /// Sequence number of the unacknowledged message.
        seq: u32,
        /// Which object the message created or deleted.
        what: String,
    },
    /// A reply from the kernel could not be parsed.
    #[error("malformed netlink reply: {0}")]
    MalformedReply(&'static str),
    /// A value does not fit the netlink wire format (never with a spec-built
    /// policy).
    #[error("netlink message too large: {0}")]
    TooLarge(&'static str),
    /// The ruleset read back from the kernel is not the one we load.
    #[error("the {phase} ruleset read back from the kernel differs at chain {chain} rule #{rule}: {detail}")]
    ReadBackMismatch {
        /// The phase it was compared with.
        phase: &'static str,
        /// The chain.
        chain: String,
        /// The rule, 1-based, in the chain.
        rule: usize,
        /// What differs.
        detail: String,
    },
    /// A failure injected into the recording fake.
    #[error("injected failure: {0}")]
    Injected(String),
}
