//! The whole bring-up as one call: the [`Network`] trait the boot sequence
//! takes, and [`configure`], the order of the steps over the two smaller
//! traits, which both the Linux implementation and the fake run.
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::client::{obtain_lease, ClientConfig, DhcpTransport};
use crate::dhcp::Lease;
use crate::netlink::{apply_lease, bring_links_up, Link, LinkOps};
use crate::NetconfError;

/// The network as the boot sequence sees it: one call that leaves the NIC
/// configured. The real implementation is `linux::LinuxNetwork`;
/// `fake::FakeNetwork` (feature `fake`) runs the same steps over the
/// recording link table and the scripted DHCP server.
pub trait Network {
    /// Sets loopback and the first ethernet link up, obtains a DHCPv4 lease
    /// on it within `deadline` and applies it (MTU, address, routes).
    ///
    /// # Errors
    /// [`NetconfError::NoEthernetLink`], [`NetconfError::Timeout`], or the
    /// first failed operation; nothing after it is attempted.
    fn bring_up(&mut self, deadline: Duration) -> Result<Lease, NetconfError>;
}

/// The bring-up over `links` and the transport `open_transport` gives for
/// the chosen link: links up ([`bring_links_up`], on `interface` or the
/// first ethernet link), a lease with the transaction id `xid` makes from
/// the link's MAC ([`obtain_lease`]), then the lease applied
/// ([`apply_lease`]).
///
/// # Errors
/// As [`Network::bring_up`], and [`NetconfError::NoSuchLink`] for a named
/// link that does not exist.
pub fn configure<L, T>(
    links: &mut L,
    interface: Option<&str>,
    deadline: Duration,
    xid: impl FnOnce(&[u8; 6]) -> u32,
    open_transport: impl FnOnce(&Link) -> Result<T, NetconfError>,
) -> Result<Lease, NetconfError>
where
    L: LinkOps + ?Sized,
    T: DhcpTransport,
{
    let link = bring_links_up(links, interface)?;
    let mac = link.mac.ok_or(NetconfError::NoEthernetLink)?;
    let mut transport = open_transport(&link)?;
    let mut config = ClientConfig::new(mac, xid(&mac), deadline);
    // Replies no larger than the link MTU arrive unfragmented; a packet
    // socket sees fragments as they are and cannot use them.
    config.params.max_message_size = link
        .mtu
        .and_then(|mtu| u16::try_from(mtu.min(1500)).ok())
        .unwrap_or(1500);
    let lease = obtain_lease(&mut transport, &config)?;
    apply_lease(links, link.index, &lease)?;
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::fake::{FakeNetwork, FakeTransport, LinkCall, NetworkCall};
    use crate::{Route, RouteScope};

    const DEADLINE: Duration = Duration::from_secs(30);

    /// GCE's shape: a /32 with the router outside it.
    fn lease() -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 128, 0, 7),
            prefix_len: 32,
            router: Some(Ipv4Addr::new(10, 128, 0, 1)),
            mtu: Some(1460),
            lease_secs: Some(86_400),
            server_id: Ipv4Addr::new(10, 128, 0, 1),
        }
    }

    #[test]
    fn links_up_then_lease_then_lease_applied() {
        let mut network = FakeNetwork::serving(lease());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        network.set_observer(move |call| log.lock().unwrap().push(call.clone()));
        assert_eq!(network.bring_up(DEADLINE).unwrap(), lease());
        let bring_up = [NetworkCall::BringUp { deadline: DEADLINE }];
        assert_eq!(network.calls(), bring_up);
        assert_eq!(*seen.lock().unwrap(), bring_up);
        assert_eq!(network.transport.sent_types(), [Some(1), Some(3)]);
        let route = |destination, prefix_len, gateway, scope| {
            LinkCall::AddRoute(Route {
                destination,
                prefix_len,
                gateway,
                scope,
                interface: 2,
                preferred_source: Some(Ipv4Addr::new(10, 128, 0, 7)),
            })
        };
        assert_eq!(
            network.links.calls(),
            [
                LinkCall::Links,
                LinkCall::SetUp(1),
                LinkCall::SetUp(2),
                LinkCall::SetMtu(2, 1460),
                LinkCall::AddAddress(2, Ipv4Addr::new(10, 128, 0, 7), 32),
                route(Ipv4Addr::new(10, 128, 0, 1), 32, None, RouteScope::Link),
                route(
                    Ipv4Addr::UNSPECIFIED,
                    0,
                    Some(Ipv4Addr::new(10, 128, 0, 1)),
                    RouteScope::Universe
                ),
            ]
        );
    }

    #[test]
    fn failures_stop_the_bring_up() {
        // No server: the deadline passes (on the virtual clock), nothing is
        // configured.
        let mut silent = FakeNetwork::serving(lease());
        silent.transport = FakeTransport::new([]);
        assert!(matches!(
            silent.bring_up(DEADLINE),
            Err(NetconfError::Timeout { .. })
        ));
        assert_eq!(
            silent.links.calls(),
            [LinkCall::Links, LinkCall::SetUp(1), LinkCall::SetUp(2)]
        );

        // The link table refused: no DHCP at all.
        let mut refused = FakeNetwork::serving(lease());
        refused.links.fail_call(0);
        assert!(refused.bring_up(DEADLINE).is_err());
        assert!(refused.transport.calls().is_empty());

        // The address refused: no route after it.
        let mut no_address = FakeNetwork::serving(lease());
        no_address.links.fail_call(4);
        assert!(no_address.bring_up(DEADLINE).is_err());
        assert_eq!(no_address.links.calls().len(), 5);
    }
}
