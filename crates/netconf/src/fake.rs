//! Recording fakes of [`DhcpTransport`], [`LinkOps`] and [`Network`] for
//! tests, here and in other crates (feature `fake`).
//!
//! [`FakeTransport`] plays a scripted server on a virtual clock: each `recv`
//! takes the next [`Incoming`] entry, and an empty script is silence, so a
//! whole exchange with timeouts runs in microseconds. [`FakeLinkOps`] holds a
//! link table and records every operation. Both can be told to fail their
//! n-th call. [`FakeNetwork`] is the two together behind [`Network`]: it
//! runs the real bring-up ([`crate::configure`]) over them, so a boot
//! sequence's test sees the real order and the real errors.
//!
//! ```
//! use std::{net::Ipv4Addr, time::Duration};
//! use netconf::dhcp::MessageType;
//! use netconf::fake::{FakeTransport, Incoming};
//! use netconf::{obtain_lease, ClientConfig, Lease};
//!
//! let lease = Lease {
//!     address: Ipv4Addr::new(10, 204, 1, 50),
//!     prefix_len: 24,
//!     router: Some(Ipv4Addr::new(10, 204, 1, 1)),
//!     mtu: Some(1400),
//!     lease_secs: Some(3600),
//!     server_id: Ipv4Addr::new(10, 204, 1, 1),
//! };
//! let mut network = FakeTransport::new([
//!     Incoming::Silence, // the first DISCOVER is lost
//!     Incoming::Reply(MessageType::Offer, lease),
//!     Incoming::Reply(MessageType::Ack, lease),
//! ]);
//! let config = ClientConfig::new([0x52, 0x54, 0, 1, 2, 3], 0x1234_5678, Duration::from_secs(30));
//! assert_eq!(obtain_lease(&mut network, &config).unwrap(), lease);
//! assert_eq!(network.sent_types(), [Some(1), Some(1), Some(3)]); // DISCOVER x2, REQUEST
//! ```
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::client::DhcpTransport;
use crate::dhcp::{self, Lease, MessageType};
use crate::netlink::{Link, LinkOps, Route, ARPHRD_ETHER, ARPHRD_LOOPBACK, IFF_LOOPBACK};
use crate::{NetconfError, Network};

/// What the scripted network does on the next `recv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Delivers these bytes after [`FakeTransport::latency`].
    Packet(Vec<u8>),
    /// Delivers a server reply of this type built from the lease, with the
    /// xid and MAC of the last message the client sent.
    Reply(MessageType, Lease),
    /// Nothing arrives: the wait runs to its timeout.
    Silence,
}

/// One call the client made on the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportCall {
    /// `send`, with the DHCP message type and xid read back from the bytes.
    Send {
        /// Option 53 of the message, if it parses.
        message_type: Option<u8>,
        /// Its transaction id.
        xid: u32,
        /// The message itself.
        bytes: Vec<u8>,
    },
    /// `recv` with the timeout asked for.
    Recv {
        /// The timeout.
        timeout: Duration,
    },
}

/// A scripted DHCP network on a virtual clock.
#[derive(Debug, Default)]
pub struct FakeTransport {
    script: VecDeque<Incoming>,
    calls: Vec<TransportCall>,
    now: Duration,
    /// How long a scripted packet takes to arrive (capped by the timeout).
    pub latency: Duration,
    fail_call: Option<usize>,
}

impl FakeTransport {
    /// A transport that will play `script`, one entry per `recv`.
    #[must_use]
    pub fn new(script: impl IntoIterator<Item = Incoming>) -> Self {
        Self {
            script: script.into_iter().collect(),
            latency: Duration::from_millis(5),
            ..Self::default()
        }
    }

    /// Makes the `n`-th call (0-based, sends and receives counted together)
    /// fail with an I/O error.
    pub fn fail_call(&mut self, n: usize) {
        self.fail_call = Some(n);
    }

    /// Every call so far.
    #[must_use]
    pub fn calls(&self) -> &[TransportCall] {
        &self.calls
    }

    /// The message types sent so far, in order.
    #[must_use]
    pub fn sent_types(&self) -> Vec<Option<u8>> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                TransportCall::Send { message_type, .. } => Some(*message_type),
                TransportCall::Recv { .. } => None,
            })
            .collect()
    }

    /// The timeouts asked for so far, in order.
    #[must_use]
    pub fn recv_timeouts(&self) -> Vec<Duration> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                TransportCall::Recv { timeout } => Some(*timeout),
                TransportCall::Send { .. } => None,
            })
            .collect()
    }

    fn injected_failure(&self, call: &'static str) -> Result<(), NetconfError> {
        if self.fail_call == Some(self.calls.len().saturating_sub(1)) {
            return Err(NetconfError::Syscall {
                call,
                source: io::Error::other("injected failure"),
            });
        }
        Ok(())
    }

    fn last_sent(&self) -> Option<&[u8]> {
        self.calls.iter().rev().find_map(|call| match call {
            TransportCall::Send { bytes, .. } => Some(bytes.as_slice()),
            TransportCall::Recv { .. } => None,
        })
    }
}

impl DhcpTransport for FakeTransport {
    fn send(&mut self, message: &[u8]) -> Result<(), NetconfError> {
        let parsed = dhcp::Message::parse(message).ok();
        self.calls.push(TransportCall::Send {
            message_type: parsed.as_ref().and_then(|m| match m.options.get(53) {
                Some(&[t]) => Some(t),
                _ => None,
            }),
            xid: parsed.as_ref().map_or(0, |m| m.xid),
            bytes: message.to_vec(),
        });
        self.injected_failure("send")
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, NetconfError> {
        self.calls.push(TransportCall::Recv { timeout });
        self.injected_failure("recv")?;
        let packet = match self.script.pop_front() {
            None | Some(Incoming::Silence) => None,
            Some(Incoming::Packet(bytes)) => Some(bytes),
            Some(Incoming::Reply(message_type, lease)) => {
                let (xid, mac) = self
                    .last_sent()
                    .and_then(|sent| dhcp::Message::parse(sent).ok())
                    .map_or((0, [0; 6]), |m| {
                        let mut mac = [0; 6];
                        mac.copy_from_slice(m.client_hardware.get(..6).unwrap_or(&[0; 6]));
                        (m.xid, mac)
                    });
                Some(dhcp::encode_reply(message_type, &lease, xid, mac))
            }
        };
        match packet {
            None => {
                self.now = self.now.saturating_add(timeout);
                Ok(None)
            }
            Some(bytes) => {
                self.now = self.now.saturating_add(self.latency.min(timeout));
                let len = bytes.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..len), bytes.get(..len)) {
                    dst.copy_from_slice(src);
                }
                Ok(Some(len))
            }
        }
    }

    fn elapsed(&self) -> Duration {
        self.now
    }
}

/// One operation on [`FakeLinkOps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCall {
    /// `links`.
    Links,
    /// `set_up(index)`.
    SetUp(u32),
    /// `set_mtu(index, mtu)`.
    SetMtu(u32, u32),
    /// `add_address(index, address, prefix_len)`.
    AddAddress(u32, Ipv4Addr, u8),
    /// `add_route(route)`.
    AddRoute(Route),
}

/// A link table that records every operation.
#[derive(Debug, Default)]
pub struct FakeLinkOps {
    /// What `links` returns.
    pub links: Vec<Link>,
    calls: Vec<LinkCall>,
    fail_call: Option<usize>,
}

impl FakeLinkOps {
    /// A fake with this link table.
    #[must_use]
    pub fn new(links: Vec<Link>) -> Self {
        Self {
            links,
            ..Self::default()
        }
    }

    /// Makes the `n`-th call (0-based) fail as if the kernel said `EPERM`.
    pub fn fail_call(&mut self, n: usize) {
        self.fail_call = Some(n);
    }

    /// Every call so far.
    #[must_use]
    pub fn calls(&self) -> &[LinkCall] {
        &self.calls
    }

    fn record(&mut self, call: LinkCall) -> Result<(), NetconfError> {
        self.calls.push(call);
        if self.fail_call == Some(self.calls.len().saturating_sub(1)) {
            return Err(NetconfError::NetlinkRefused {
                request: "fake",
                source: io::Error::from_raw_os_error(1),
            });
        }
        Ok(())
    }
}

impl LinkOps for FakeLinkOps {
    fn links(&mut self) -> Result<Vec<Link>, NetconfError> {
        self.record(LinkCall::Links)?;
        Ok(self.links.clone())
    }
    fn set_up(&mut self, index: u32) -> Result<(), NetconfError> {
        self.record(LinkCall::SetUp(index))
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetconfError> {
        self.record(LinkCall::SetMtu(index, mtu))
    }
    fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError> {
        self.record(LinkCall::AddAddress(index, address, prefix_len))
    }
    fn add_route(&mut self, route: &Route) -> Result<(), NetconfError> {
        self.record(LinkCall::AddRoute(*route))
    }
}

/// One call on [`FakeNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkCall {
    /// [`Network::bring_up`] with its deadline.
    BringUp {
        /// The deadline asked for.
        deadline: Duration,
    },
}

/// Sees every call as it is recorded (see [`FakeNetwork::set_observer`]).
type Observer = Box<dyn FnMut(&NetworkCall) + Send>;

/// The transaction id [`FakeNetwork`] starts with (the scripted server
/// answers whatever id the client sent).
const FAKE_XID: u32 = 0x0a80_0007;

/// A NIC and its DHCP server: [`FakeLinkOps`] and [`FakeTransport`] behind
/// [`Network`], with the real bring-up run over them. Fail it through its
/// parts ([`FakeLinkOps::fail_call`], [`FakeTransport::fail_call`], or a
/// silent script, which runs to the deadline on the virtual clock).
#[derive(Default)]
pub struct FakeNetwork {
    /// The link table.
    pub links: FakeLinkOps,
    /// The DHCP server.
    pub transport: FakeTransport,
    calls: Vec<NetworkCall>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for FakeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeNetwork")
            .field("links", &self.links)
            .field("transport", &self.transport)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl FakeNetwork {
    /// A machine with these parts.
    #[must_use]
    pub fn new(links: FakeLinkOps, transport: FakeTransport) -> Self {
        Self {
            links,
            transport,
            ..Self::default()
        }
    }

    /// Loopback (index 1) and one ethernet link `eth0` (index 2, MTU 1500),
    /// and a server that offers `lease` and acknowledges it.
    #[must_use]
    pub fn serving(lease: Lease) -> Self {
        let links = vec![
            Link {
                index: 1,
                name: "lo".to_owned(),
                link_type: ARPHRD_LOOPBACK,
                flags: IFF_LOOPBACK,
                mac: None,
                mtu: Some(65_536),
            },
            Link {
                index: 2,
                name: "eth0".to_owned(),
                link_type: ARPHRD_ETHER,
                flags: 0,
                mac: Some([0x42, 0x01, 0x0a, 0x80, 0x00, 0x07]),
                mtu: Some(1500),
            },
        ];
        Self::new(
            FakeLinkOps::new(links),
            FakeTransport::new([
                Incoming::Reply(MessageType::Offer, lease),
                Incoming::Reply(MessageType::Ack, lease),
            ]),
        )
    }

    /// Also hands each call, as it is recorded, to `observer` (replacing any
    /// earlier one): a test driving several fakes keeps one record of all
    /// their calls, in the order they were made.
    pub fn set_observer(&mut self, observer: impl FnMut(&NetworkCall) + Send + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// Every call so far.
    #[must_use]
    pub fn calls(&self) -> &[NetworkCall] {
        &self.calls
    }
}

impl Network for FakeNetwork {
    fn bring_up(&mut self, deadline: Duration) -> Result<Lease, NetconfError> {
        let call = NetworkCall::BringUp { deadline };
        if let Some(observer) = &mut self.observer {
            observer(&call);
        }
        self.calls.push(call);
        let transport = &mut self.transport;
        crate::configure(
            &mut self.links,
            None,
            deadline,
            |_| FAKE_XID,
            |_| Ok(transport),
        )
    }
}
