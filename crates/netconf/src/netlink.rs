//! rtnetlink as bytes, and the link operations a lease turns into.
//!
//! The request builders and the reply parser are pure functions over bytes
//! (host byte order for netlink's own integers, network order for
//! addresses, as the kernel expects); the framing (headers, attributes,
//! lengths) is `nlwire`'s, the rtnetlink messages are ours, and the `linux`
//! module only moves those bytes through a socket. The constants are the
//! kernel's stable ABI, copied here so this module needs no `libc` and
//! builds on every target.
//!
//! [`apply_lease`] and [`bring_links_up`] hold the ordering rules over the
//! [`LinkOps`] trait, so a fake checks them without a kernel.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use crate::dhcp::Lease;
use crate::NetconfError;

use nlwire::message::{
    NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST,
};
use nlwire::WireError;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
/// `ARPHRD_ETHER`: ethernet, which includes virtio-net, gVNIC and veth.
pub const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_DHCP`: marks our routes as DHCP's in `ip route` output.
const RTPROT_DHCP: u8 = 16;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// A network interface as `RTM_GETLINK` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// ARP hardware type (`ARPHRD_*`).
    pub link_type: u16,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Hardware address, when it is 6 bytes long.
    pub mac: Option<[u8; 6]>,
    /// Current MTU.
    pub mtu: Option<u32>,
}

impl Link {
    /// Loopback by type or flag.
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        self.link_type == ARPHRD_LOOPBACK || self.flags & IFF_LOOPBACK != 0
    }

    /// An ethernet link with a MAC that DHCP can run on.
    #[must_use]
    pub fn is_ethernet(&self) -> bool {
        self.link_type == ARPHRD_ETHER && !self.is_loopback() && self.mac.is_some()
    }
}

/// Route scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteScope {
    /// Reachable through a gateway (`scope global`).
    Universe,
    /// Directly on the link (`scope link`).
    Link,
}

/// An IPv4 route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Destination prefix length (0 for the default route).
    pub prefix_len: u8,
    /// Next hop, if not on-link.
    pub gateway: Option<Ipv4Addr>,
    /// Route scope.
    pub scope: RouteScope,
    /// Outgoing interface index.
    pub interface: u32,
    /// Source address for locally originated packets.
    pub preferred_source: Option<Ipv4Addr>,
}

/// The link operations bringing up an interface needs. The real
/// implementation is an rtnetlink socket; `fake::FakeLinkOps` records calls.
pub trait LinkOps {
    /// All links.
    ///
    /// # Errors
    /// The dump failed or did not parse.
    fn links(&mut self) -> Result<Vec<Link>, NetconfError>;
    /// Sets `IFF_UP` on the link.
    ///
    /// # Errors
    /// The kernel refused.
    fn set_up(&mut self, index: u32) -> Result<(), NetconfError>;
    /// Sets the link's MTU.
    ///
    /// # Errors
    /// The kernel refused.
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetconfError>;
    /// Adds (or replaces) an IPv4 address on the link.
    ///
    /// # Errors
    /// The kernel refused.
    fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError>;
    /// Adds (or replaces) a route.
    ///
    /// # Errors
    /// The kernel refused.
    fn add_route(&mut self, route: &Route) -> Result<(), NetconfError>;
}

/// The first ethernet link by index: on a VM, the NIC the cloud attached
/// first.
#[must_use]
pub fn first_ethernet(links: &[Link]) -> Option<&Link> {
    links
        .iter()
        .filter(|link| link.is_ethernet())
        .min_by_key(|link| link.index)
}

/// Sets every loopback link up, then the link named `name` (or the first
/// ethernet link), and returns that link.
///
/// # Errors
/// [`NetconfError::NoSuchLink`], [`NetconfError::NoEthernetLink`] (also for a
/// named link that is not ethernet), or a refused operation.
pub fn bring_links_up<L: LinkOps + ?Sized>(
    ops: &mut L,
    name: Option<&str>,
) -> Result<Link, NetconfError> {
    let links = ops.links()?;
    let chosen = match name {
        Some(name) => links
            .iter()
            .find(|link| link.name == name)
            .ok_or_else(|| NetconfError::NoSuchLink(name.to_owned()))?,
        None => first_ethernet(&links).ok_or(NetconfError::NoEthernetLink)?,
    };
    if !chosen.is_ethernet() {
        return Err(NetconfError::NoEthernetLink);
    }
    for loopback in links.iter().filter(|link| link.is_loopback()) {
        ops.set_up(loopback.index)?;
    }
    ops.set_up(chosen.index)?;
    Ok(chosen.clone())
}

/// Configures the link `index` from `lease`: MTU, address, then routes.
///
/// When the router lies outside the leased prefix (GCE's /32), an on-link
/// host route to it goes in first: the kernel refuses a default route via a
/// gateway it cannot reach.
///
/// # Errors
/// The first refused operation; later ones are not attempted.
pub fn apply_lease<L: LinkOps + ?Sized>(
    ops: &mut L,
    index: u32,
    lease: &Lease,
) -> Result<(), NetconfError> {
    if let Some(mtu) = lease.mtu {
        ops.set_mtu(index, u32::from(mtu))?;
    }
    ops.add_address(index, lease.address, lease.prefix_len)?;
    let Some(router) = lease.router else {
        return Ok(());
    };
    if !lease.router_in_prefix() {
        ops.add_route(&Route {
            destination: router,
            prefix_len: 32,
            gateway: None,
            scope: RouteScope::Link,
            interface: index,
            preferred_source: Some(lease.address),
        })?;
    }
    ops.add_route(&Route {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway: Some(router),
        scope: RouteScope::Universe,
        interface: index,
        preferred_source: Some(lease.address),
    })
}

/// `RTM_GETLINK` dump of every link.
#[must_use]
pub fn request_links(seq: u32) -> Vec<u8> {
    let ifinfo = ifinfomsg(AF_UNSPEC, 0, 0, 0);
    message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, &ifinfo, &[])
}

/// `RTM_NEWLINK` setting `IFF_UP` (and nothing else) on `index`.
#[must_use]
pub fn request_set_up(seq: u32, index: u32) -> Vec<u8> {
    let ifinfo = ifinfomsg(AF_UNSPEC, index, IFF_UP, IFF_UP);
    message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, &ifinfo, &[])
}

/// `RTM_NEWLINK` setting the MTU of `index`.
#[must_use]
pub fn request_set_mtu(seq: u32, index: u32, mtu: u32) -> Vec<u8> {
    let ifinfo = ifinfomsg(AF_UNSPEC, index, 0, 0);
    message(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        &ifinfo,
        &[(IFLA_MTU, &mtu.to_ne_bytes())],
    )
}

/// `RTM_NEWADDR` adding `address/prefix_len` to `index`, with the subnet
/// broadcast when the prefix has one. No lifetime is set: the address stays
/// until reboot, because nothing renews the lease.
#[must_use]
pub fn request_add_address(seq: u32, index: u32, address: Ipv4Addr, prefix_len: u8) -> Vec<u8> {
    let mut ifaddr = vec![AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE];
    ifaddr.extend_from_slice(&index.to_ne_bytes());
    let local = address.octets();
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    let broadcast = Ipv4Addr::from(u32::from(address) | host_bits).octets();
    let mut attrs: Vec<(u16, &[u8])> = vec![(IFA_LOCAL, &local), (IFA_ADDRESS, &local)];
    // A /31 or /32 has no broadcast address (RFC 3021).
    if prefix_len <= 30 {
        attrs.push((IFA_BROADCAST, &broadcast));
    }
    message(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        &ifaddr,
        &attrs,
    )
}

/// `RTM_NEWROUTE` adding (or replacing) `route` in the main table.
#[must_use]
pub fn request_add_route(seq: u32, route: &Route) -> Vec<u8> {
    let scope = match route.scope {
        RouteScope::Universe => RT_SCOPE_UNIVERSE,
        RouteScope::Link => RT_SCOPE_LINK,
    };
    let mut rtmsg = vec![
        AF_INET,
        route.prefix_len,
        0, // src_len
        0, // tos
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        scope,
        RTN_UNICAST,
    ];
    rtmsg.extend_from_slice(&0_u32.to_ne_bytes()); // flags
    let destination = route.destination.octets();
    let gateway = route.gateway.map(|g| g.octets());
    let source = route.preferred_source.map(|s| s.octets());
    let oif = route.interface.to_ne_bytes();
    let mut attrs: Vec<(u16, &[u8])> = Vec::new();
    if route.prefix_len > 0 {
        attrs.push((RTA_DST, &destination));
    }
    if let Some(gateway) = &gateway {
        attrs.push((RTA_GATEWAY, gateway));
    }
    if let Some(source) = &source {
        attrs.push((RTA_PREFSRC, source));
    }
    attrs.push((RTA_OIF, &oif));
    message(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        &rtmsg,
        &attrs,
    )
}

fn ifinfomsg(family: u8, index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut out = vec![family, 0];
    out.extend_from_slice(&0_u16.to_ne_bytes()); // ifi_type
    out.extend_from_slice(&index.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&change.to_ne_bytes());
    out
}

/// One request: header, family header, attributes. Ours are a few
/// fixed-size values, far below netlink's length limits, so building cannot
/// fail; if it ever did, the empty datagram would get no acknowledgement and
/// the request would time out rather than go out wrong.
fn message(msg_type: u16, flags: u16, seq: u32, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    nlwire::build::message(msg_type, flags, seq, fixed, |w| {
        for (attr_type, value) in attrs {
            w.bytes(*attr_type, value);
        }
    })
    .unwrap_or_default()
}

/// What one message from the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// One link of a dump.
    Link(Link),
    /// The end of a dump.
    Done,
    /// An ACK (`errno` 0) or an error (`errno` > 0) for request `seq`.
    Ack {
        /// The positive errno; 0 for success.
        errno: i32,
    },
    /// Anything else, ignored.
    Other {
        /// The message type.
        msg_type: u16,
    },
}

/// A parsed message with the sequence number it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's sequence number.
    pub seq: u32,
    /// What the message says.
    pub response: Response,
}

/// Parses every message in one datagram from the kernel.
///
/// # Errors
/// [`NetconfError::NetlinkMalformed`] on any length inconsistency.
pub fn parse_replies(datagram: &[u8]) -> Result<Vec<Reply>, NetconfError> {
    let mut replies = Vec::new();
    for message in nlwire::messages(datagram) {
        let message = message.map_err(malformed)?;
        let response = match message.header.kind {
            NLMSG_DONE => Response::Done,
            NLMSG_ERROR => Response::Ack {
                errno: message.error().map_err(malformed)?.errno,
            },
            RTM_NEWLINK => Response::Link(parse_link(message.payload)?),
            other => Response::Other { msg_type: other },
        };
        replies.push(Reply {
            seq: message.header.seq,
            response,
        });
    }
    Ok(replies)
}

fn malformed(error: WireError) -> NetconfError {
    NetconfError::NetlinkMalformed {
        what: error.detail(),
    }
}

fn parse_link(payload: &[u8]) -> Result<Link, NetconfError> {
    let Some((fixed, attrs)) = payload.split_at_checked(16) else {
        return Err(NetconfError::NetlinkMalformed {
            what: "short ifinfomsg",
        });
    };
    let &[_, _, t0, t1, i0, i1, i2, i3, f0, f1, f2, f3, ..] = fixed else {
        return Err(NetconfError::NetlinkMalformed {
            what: "short ifinfomsg",
        });
    };
    let mut link = Link {
        index: u32::from_ne_bytes([i0, i1, i2, i3]),
        name: String::new(),
        link_type: u16::from_ne_bytes([t0, t1]),
        flags: u32::from_ne_bytes([f0, f1, f2, f3]),
        mac: None,
        mtu: None,
    };
    for attr in nlwire::attrs(attrs) {
        let attr = attr.map_err(malformed)?;
        match attr.kind() {
            IFLA_IFNAME => link.name = attr.to_string_lossy(),
            IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(attr.payload()).ok(),
            IFLA_MTU => link.mtu = attr.u32().ok(),
            _ => {}
        }
    }
    Ok(link)
}

#[cfg(test)]
mod tests;
