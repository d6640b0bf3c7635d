//! Linux: an rtnetlink socket behind [`LinkOps`], a packet socket behind
//! [`DhcpTransport`], and [`bring_up`], which runs the whole thing (behind
//! the [`Network`] trait: [`LinuxNetwork`]).
//!
//! This is the crate's only `unsafe` code: the packet socket's syscalls,
//! each block with a `// SAFETY:` comment, raw return codes turned into
//! errors by `nlwire::check`. The netlink socket is `nlwire`'s. Building and
//! parsing what goes through the sockets is in the pure modules.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nlwire::{OsError, SocketError, SocketOptions};

use crate::client::DhcpTransport;
use crate::dhcp::Lease;
use crate::netlink::{self, Link, LinkOps, Response, Route};
use crate::{frame, NetconfError, Network};

/// How long to wait for the kernel's answer to one netlink request. The
/// kernel answers at once; this only keeps a broken kernel from hanging boot.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Large enough for any netlink dump datagram the kernel sends (it fills up
/// to a page or two per datagram) and any DHCP frame.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Brings up the first ethernet link (and loopback), obtains a DHCP lease on
/// it within `deadline` and applies it: MTU, address, routes.
///
/// # Errors
/// [`NetconfError::NoEthernetLink`], [`NetconfError::Timeout`], or the first
/// failed syscall or refused netlink request.
pub fn bring_up(deadline: Duration) -> Result<Lease, NetconfError> {
    configure(None, deadline)
}

/// [`bring_up`] on the link named `interface` instead of the first ethernet
/// link.
///
/// # Errors
/// As [`bring_up`], and [`NetconfError::NoSuchLink`].
pub fn bring_up_on(interface: &str, deadline: Duration) -> Result<Lease, NetconfError> {
    configure(Some(interface), deadline)
}

fn configure(name: Option<&str>, deadline: Duration) -> Result<Lease, NetconfError> {
    let mut netlink = Netlink::open()?;
    crate::network::configure(&mut netlink, name, deadline, random_xid, |link| {
        PacketTransport::open(link.index)
    })
}

/// The network on Linux: [`bring_up`] (or [`bring_up_on`] a named link)
/// behind the [`Network`] trait.
#[derive(Debug, Clone, Default)]
pub struct LinuxNetwork {
    interface: Option<String>,
}

impl LinuxNetwork {
    /// The first ethernet link.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The link named `interface`.
    #[must_use]
    pub fn on(interface: &str) -> Self {
        Self {
            interface: Some(interface.to_owned()),
        }
    }
}

impl Network for LinuxNetwork {
    fn bring_up(&mut self, deadline: Duration) -> Result<Lease, NetconfError> {
        configure(self.interface.as_deref(), deadline)
    }
}

/// A transaction id nobody on the link can predict from the boot alone.
/// `RandomState` is seeded by the standard library from the kernel's
/// non-blocking random source, which needs no unsafe code here and never
/// blocks early in boot.
fn random_xid(mac: &[u8; 6]) -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(mac);
    let [a, b, c, d, ..] = hasher.finish().to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

/// A failed syscall as the crate's error.
fn syscall(error: OsError) -> NetconfError {
    NetconfError::Syscall {
        call: error.op,
        source: error.source,
    }
}

fn new_socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
    call: &'static str,
) -> Result<OwnedFd, NetconfError> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = nlwire::check(call, unsafe {
        libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol)
    })
    .map_err(syscall)?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// An rtnetlink socket that sends one request at a time and waits for its
/// answer, matched by sequence number.
#[derive(Debug)]
pub struct Netlink {
    socket: nlwire::Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// A netlink socket failure as the crate's error; `call` names the
/// operation for the kinds that are not a failed syscall of their own.
fn netlink_error(call: &'static str, error: SocketError) -> NetconfError {
    match error {
        SocketError::Os(error) => syscall(error),
        SocketError::Truncated { .. } => NetconfError::NetlinkMalformed {
            what: "reply larger than the receive buffer",
        },
        SocketError::ShortSend { .. } => NetconfError::NetlinkMalformed { what: "short send" },
        other => NetconfError::Syscall {
            call,
            source: other.into_io(),
        },
    }
}

impl Netlink {
    /// Opens and binds a `NETLINK_ROUTE` socket.
    ///
    /// # Errors
    /// A failed syscall.
    pub fn open() -> Result<Self, NetconfError> {
        let options = SocketOptions {
            receive_timeout: Some(NETLINK_TIMEOUT),
            ..SocketOptions::default()
        };
        let socket = nlwire::Socket::open(nlwire::socket::NETLINK_ROUTE, &options)
            .map_err(|e| netlink_error("socket(AF_NETLINK)", e))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, message: &[u8]) -> Result<(), NetconfError> {
        self.socket
            .send(message)
            .map_err(|e| netlink_error("send(netlink)", e))
    }

    fn receive(&mut self) -> Result<Vec<netlink::Reply>, NetconfError> {
        let received = self
            .socket
            .recv(&mut self.buf)
            .map_err(|e| netlink_error("recv(netlink)", e))?;
        let datagram = self.buf.get(..received.len).unwrap_or_default();
        netlink::parse_replies(datagram)
    }

    /// Sends a request that asked for an ACK and waits for it.
    fn request(
        &mut self,
        request: &'static str,
        message: &[u8],
        seq: u32,
    ) -> Result<(), NetconfError> {
        self.send(message)?;
        loop {
            for reply in self.receive()? {
                if reply.seq != seq {
                    continue;
                }
                if let Response::Ack { errno } = reply.response {
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(NetconfError::NetlinkRefused {
                            request,
                            source: io::Error::from_raw_os_error(errno),
                        })
                    };
                }
            }
        }
    }
}

impl LinkOps for Netlink {
    fn links(&mut self) -> Result<Vec<Link>, NetconfError> {
        let seq = self.next_seq();
        self.send(&netlink::request_links(seq))?;
        let mut links = Vec::new();
        loop {
            for reply in self.receive()? {
                if reply.seq != seq {
                    continue;
                }
                match reply.response {
                    Response::Link(link) => links.push(link),
                    Response::Done => return Ok(links),
                    Response::Ack { errno } if errno != 0 => {
                        return Err(NetconfError::NetlinkRefused {
                            request: "RTM_GETLINK",
                            source: io::Error::from_raw_os_error(errno),
                        })
                    }
                    Response::Ack { .. } | Response::Other { .. } => {}
                }
            }
        }
    }

    fn set_up(&mut self, index: u32) -> Result<(), NetconfError> {
        let seq = self.next_seq();
        self.request("RTM_NEWLINK up", &netlink::request_set_up(seq, index), seq)
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetconfError> {
        let seq = self.next_seq();
        self.request(
            "RTM_NEWLINK mtu",
            &netlink::request_set_mtu(seq, index, mtu),
            seq,
        )
    }

    fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError> {
        let seq = self.next_seq();
        let message = netlink::request_add_address(seq, index, address, prefix_len);
        self.request("RTM_NEWADDR", &message, seq)
    }

    fn add_route(&mut self, route: &Route) -> Result<(), NetconfError> {
        let seq = self.next_seq();
        self.request("RTM_NEWROUTE", &netlink::request_add_route(seq, route), seq)
    }
}

/// DHCP over an `AF_PACKET` datagram socket bound to one interface: frames
/// carry our own IPv4/UDP headers, so no address is needed and no IP-layer
/// filter (reverse path, firewall input) sees the exchange.
#[derive(Debug)]
pub struct PacketTransport {
    fd: OwnedFd,
    index: u32,
    started: Instant,
    frame_buf: Vec<u8>,
}

fn link_address(index: u32) -> Result<libc::sockaddr_ll, NetconfError> {
    // SAFETY: sockaddr_ll is plain old data; all zeros is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or_default();
    addr.sll_protocol = u16::try_from(libc::ETH_P_IP).unwrap_or_default().to_be();
    addr.sll_ifindex = i32::try_from(index).map_err(|_| NetconfError::NoEthernetLink)?;
    Ok(addr)
}

impl PacketTransport {
    /// Opens a packet socket receiving IPv4 on interface `index` only.
    ///
    /// # Errors
    /// A failed syscall.
    pub fn open(index: u32) -> Result<Self, NetconfError> {
        // Protocol 0 receives nothing until bind() names the interface, so
        // no frame from another interface slips into the queue meanwhile.
        let fd = new_socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0, "socket(AF_PACKET)")?;
        let addr = link_address(index)?;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        nlwire::check("bind(AF_PACKET)", rc).map_err(syscall)?;
        Ok(Self {
            fd,
            index,
            started: Instant::now(),
            frame_buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Waits up to `timeout` for the socket to become readable.
    fn readable(&self, timeout: Duration) -> Result<bool, NetconfError> {
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up: a sub-millisecond rest must still wait, not spin.
        let millis = timeout.as_micros().div_ceil(1000);
        let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pollfd` is one valid pollfd, matching the count of 1.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, millis) };
        match nlwire::check("poll(AF_PACKET)", ready) {
            Ok(ready) => Ok(ready > 0),
            Err(error) if error.source.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(error) => Err(syscall(error)),
        }
    }

    /// Reads one frame without blocking; `None` if there was none or it was
    /// one of our own outgoing frames.
    fn read_frame(&mut self) -> Result<Option<usize>, NetconfError> {
        // SAFETY: sockaddr_ll is plain old data; all zeros is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut from_len = socklen_of::<libc::sockaddr_ll>();
        // SAFETY: the buffer pointer and length describe `self.frame_buf`;
        // `from` and `from_len` are valid and sized for a sockaddr_ll.
        let len = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                self.frame_buf.as_mut_ptr().cast(),
                self.frame_buf.len(),
                libc::MSG_DONTWAIT,
                (&raw mut from).cast::<libc::sockaddr>(),
                &raw mut from_len,
            )
        };
        let len = match nlwire::check("recvfrom(AF_PACKET)", len) {
            Ok(len) => len,
            Err(error) => {
                return match error.source.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(syscall(error)),
                }
            }
        };
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(usize::try_from(len).ok())
    }
}

impl DhcpTransport for PacketTransport {
    fn send(&mut self, message: &[u8]) -> Result<(), NetconfError> {
        let frame = frame::build_client_broadcast(message)?;
        let mut to = link_address(self.index)?;
        to.sll_halen = 6;
        if let Some(address) = to.sll_addr.get_mut(..6) {
            address.fill(0xFF);
        }
        // SAFETY: the buffer pointer and length describe `frame`; `to` is a
        // valid sockaddr_ll and the length passed is its size.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast::<libc::sockaddr>(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        match nlwire::check("sendto(AF_PACKET)", sent) {
            Ok(_) => Ok(()),
            // No carrier yet or a full queue: the packet is lost and the
            // client's retransmission covers it.
            Err(error)
                if matches!(
                    error.source.raw_os_error(),
                    Some(libc::ENETDOWN | libc::ENOBUFS | libc::EAGAIN | libc::ENXIO)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(syscall(error)),
        }
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, NetconfError> {
        let start = Instant::now();
        loop {
            let waited = start.elapsed();
            if waited >= timeout || !self.readable(timeout.saturating_sub(waited))? {
                if start.elapsed() >= timeout {
                    return Ok(None);
                }
                continue;
            }
            let Some(len) = self.read_frame()? else {
                continue;
            };
            let Ok(payload) =
                frame::parse_client_datagram(self.frame_buf.get(..len).unwrap_or_default())
            else {
                continue;
            };
            let copied = payload.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..copied), payload.get(..copied)) {
                dst.copy_from_slice(src);
            }
            return Ok(Some(copied));
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
