//! Bring up the appliance's one network interface at boot: link up, a DHCPv4
//! lease, then the address, MTU and routes from that lease, with no outside
//! tool (no `dhclient`, no `ip`).
//!
//! The crate owns that one concern and is split so that almost all of it is
//! pure and tested without a network:
//! - [`dhcp`]: the DHCPv4 codec (RFC 2131/2132) and the [`Lease`] it yields;
//! - [`client`]: the DISCOVER, OFFER, REQUEST, ACK state machine with
//!   retransmission and backoff inside one deadline, over the [`DhcpTransport`]
//!   trait;
//! - [`frame`]: the IPv4 and UDP headers around a DHCP message, because the
//!   client speaks before the interface has an address;
//! - [`netlink`]: rtnetlink requests and replies as bytes, and
//!   [`netlink::apply_lease`], which turns a lease into ordered operations over
//!   the [`LinkOps`] trait;
//! - [`network`]: the [`Network`] trait the boot sequence takes (one call:
//!   links up, lease, lease applied) and [`configure`], that order over the
//!   two traits above;
//! - `linux` (Linux only): the syscalls behind those two traits, and
//!   `linux::LinuxNetwork`, the [`Network`] the appliance boots with.
//!
//! Deliberately absent: DNS (the appliance reaches its metadata server by IP),
//! lease renewal (the boot sequence configures the interface once; a cloud VM
//! keeps its address for its life), IPv6, and any choice among several NICs
//! beyond "the first ethernet link".
//!
//! Invariants:
//! - Every parser takes `&[u8]`, checks lengths before access and returns an
//!   error on any malformed input; nothing here panics on outside input.
//! - A [`Lease`] only exists for an ACK that matched our transaction id and
//!   hardware address and whose subnet mask was contiguous.
//! - `unsafe` appears only in the `linux` module, one `// SAFETY:` comment per
//!   block; every other module is `#![forbid(unsafe_code)]`.
//! - Every netlink request asks for an ACK and a kernel error is an error.
#![deny(missing_docs)]

pub mod client;
pub mod dhcp;
mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod frame;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod netlink;
pub mod network;

pub use client::{obtain_lease, ClientConfig, DhcpTransport};
pub use dhcp::{ClientId, Lease};
pub use error::NetconfError;
pub use netlink::{apply_lease, Link, LinkOps, Route, RouteScope};
pub use network::{configure, Network};
