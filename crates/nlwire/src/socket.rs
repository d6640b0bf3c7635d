//! The netlink socket (Linux): open with the options our families need,
//! send a datagram to the kernel, receive one with truncation and overrun
//! reported as such, wait for readability.
//!
//! `nix` makes the calls it covers (bind, sendto, recvmsg, the `SOL_SOCKET`
//! options, poll). The two it does not are raw `libc` calls here, each
//! with a `// SAFETY:` comment and its return code through
//! [`crate::check`]: `socket(2)`, because `nix` has no name for
//! `NETLINK_CONNECTOR`, and the `SOL_NETLINK` integer options.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, MsgFlags, NetlinkAddr};
use nix::sys::time::TimeVal;

use crate::{check, OsError, SocketError};

/// `NETLINK_ROUTE`: links, addresses, routes.
pub const NETLINK_ROUTE: i32 = libc::NETLINK_ROUTE;
/// `NETLINK_CONNECTOR`: the kernel connector (the proc connector's carrier).
pub const NETLINK_CONNECTOR: i32 = libc::NETLINK_CONNECTOR;
/// `NETLINK_NETFILTER`: nfnetlink (nf_tables).
pub const NETLINK_NETFILTER: i32 = libc::NETLINK_NETFILTER;

/// `SOL_NETLINK` options (linux/netlink.h).
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// How to set a socket up before it is bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// Multicast groups to join at bind time (`nl_groups`), 0 for none.
    pub groups: u32,
    /// Receive buffer size: `SO_RCVBUFFORCE` (needs `CAP_NET_ADMIN`), else
    /// `SO_RCVBUF` (capped by `net.core.rmem_max`), else the default. A
    /// larger buffer only absorbs bursts, so failing to get one is no error.
    pub receive_buffer: Option<usize>,
    /// `SO_RCVTIMEO`: how long a blocking receive waits before
    /// [`SocketError::WouldBlock`].
    pub receive_timeout: Option<Duration>,
    /// `SOCK_NONBLOCK`: a receive with nothing queued returns
    /// [`SocketError::WouldBlock`] at once.
    pub nonblocking: bool,
    /// `NETLINK_CAP_ACK` and `NETLINK_EXT_ACK`: error replies do not echo
    /// the request's payload and carry the kernel's text.
    pub extended_acks: bool,
}

/// One datagram received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its length; the datagram is the buffer's first `len` bytes.
    pub len: usize,
    /// The sender's port id: 0 is the kernel.
    pub sender: u32,
}

/// A bound netlink socket, close-on-exec.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens a `protocol` socket (`NETLINK_*`), applies `options` and binds
    /// it (port id chosen by the kernel).
    ///
    /// # Errors
    /// The failed call, as [`SocketError::Os`].
    pub fn open(protocol: i32, options: &SocketOptions) -> Result<Socket, SocketError> {
        let mut kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if options.nonblocking {
            kind |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = check("socket(AF_NETLINK)", unsafe {
            libc::socket(libc::AF_NETLINK, kind, protocol)
        })?;
        // SAFETY: `raw` is a descriptor the kernel just returned, owned by
        // nothing else; OwnedFd closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = Socket { fd };
        if let Some(size) = options.receive_buffer {
            let _ = socket::setsockopt(&socket.fd, sockopt::RcvBufForce, &size)
                .or_else(|_| socket::setsockopt(&socket.fd, sockopt::RcvBuf, &size));
        }
        if let Some(timeout) = options.receive_timeout {
            socket::setsockopt(&socket.fd, sockopt::ReceiveTimeout, &timeval(timeout))
                .map_err(|e| OsError::nix("setsockopt(SO_RCVTIMEO)", e))?;
        }
        if options.extended_acks {
            socket.set_netlink_option(NETLINK_CAP_ACK, "setsockopt(NETLINK_CAP_ACK)")?;
            socket.set_netlink_option(NETLINK_EXT_ACK, "setsockopt(NETLINK_EXT_ACK)")?;
        }
        socket::bind(socket.fd.as_raw_fd(), &NetlinkAddr::new(0, options.groups))
            .map_err(|e| OsError::nix("bind(AF_NETLINK)", e))?;
        Ok(socket)
    }

    /// Switches a `SOL_NETLINK` boolean option on.
    fn set_netlink_option(&self, name: libc::c_int, op: &'static str) -> Result<(), OsError> {
        let on: libc::c_int = 1;
        let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
        // SAFETY: `on` is a live c_int and `len` is its size; the kernel
        // copies it during the call.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                name,
                std::ptr::from_ref(&on).cast(),
                len,
            )
        };
        check(op, ret).map(|_| ())
    }

    /// Sends one datagram to the kernel.
    ///
    /// # Errors
    /// [`SocketError::Os`], or [`SocketError::ShortSend`] if the kernel
    /// took only part of it.
    pub fn send(&self, datagram: &[u8]) -> Result<(), SocketError> {
        let kernel = NetlinkAddr::new(0, 0);
        let sent = socket::sendto(self.fd.as_raw_fd(), datagram, &kernel, MsgFlags::empty())
            .map_err(|e| OsError::nix("sendto(AF_NETLINK)", e))?;
        if sent != datagram.len() {
            return Err(SocketError::ShortSend {
                sent,
                len: datagram.len(),
            });
        }
        Ok(())
    }

    /// Receives one datagram into `buf`, retrying a receive a signal
    /// interrupted.
    ///
    /// # Errors
    /// - [`SocketError::WouldBlock`]: nothing queued (non-blocking) or
    ///   nothing within the receive timeout;
    /// - [`SocketError::Overrun`]: the kernel dropped messages for this
    ///   socket (`ENOBUFS`); the next receive goes on with what is queued;
    /// - [`SocketError::Truncated`]: the datagram did not fit `buf`;
    /// - [`SocketError::Os`]: any other failure.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Received, SocketError> {
        let capacity = buf.len();
        let mut iov = [IoSliceMut::new(buf)];
        loop {
            // MSG_TRUNC: the return is the datagram's real length, so a
            // datagram larger than the buffer is seen, not silently cut.
            let received = socket::recvmsg::<NetlinkAddr>(
                self.fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_TRUNC,
            );
            let message = match received {
                Ok(message) => message,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(SocketError::WouldBlock),
                Err(Errno::ENOBUFS) => return Err(SocketError::Overrun),
                Err(e) => return Err(OsError::nix("recvmsg(AF_NETLINK)", e).into()),
            };
            if message.bytes > capacity || message.flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(SocketError::Truncated {
                    len: message.bytes,
                    capacity,
                });
            }
            return Ok(Received {
                len: message.bytes,
                sender: message.address.map_or(0, |a| a.pid()),
            });
        }
    }

    /// Waits until a datagram (or an error) is pending, at most `timeout`
    /// (rounded up to whole milliseconds). A wait a signal interrupted
    /// counts as not readable.
    ///
    /// # Errors
    /// A failed `poll`, as [`SocketError::Os`].
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, SocketError> {
        let millis = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(ready) => Ok(ready > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(OsError::nix("poll(AF_NETLINK)", e).into()),
        }
    }
}

fn timeval(timeout: Duration) -> TimeVal {
    let secs = libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX);
    TimeVal::new(secs, libc::suseconds_t::from(timeout.subsec_micros()))
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
