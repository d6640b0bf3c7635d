//! The proc connector: process events from the kernel over netlink.
//!
//! The kernel only honours listeners in the initial pid and user namespaces
//! (drivers/connector/cn_proc.c), and reports pids as seen from there.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::sys::{cvt, cvt_size};
use crate::error::Error;
use crate::model::SourceEvent;
use crate::parse::connector::{
    control_message, parse_datagram, Message, CN_IDX_PROC, PROC_CN_MCAST_IGNORE,
    PROC_CN_MCAST_LISTEN,
};
use crate::traits::EventSource;

/// Default receive buffer: room for tens of thousands of events, so a burst
/// (a fork storm, a build on a shared host) is absorbed, not lost.
pub const DEFAULT_RCVBUF: usize = 8 << 20;

const NETLINK_CONNECTOR: libc::c_int = 11;

/// A subscribed proc-connector socket.
#[derive(Debug)]
pub struct ProcConnector {
    fd: OwnedFd,
    buf: Vec<u8>,
}

fn sockaddr_nl(groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(16);
    sa.nl_pid = 0;
    sa.nl_groups = groups;
    sa
}

fn nl_len() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or(12)
}

impl ProcConnector {
    /// Opens a netlink connector socket, joins the proc group and sends
    /// `PROC_CN_MCAST_LISTEN`. Needs `CAP_NET_ADMIN`.
    pub fn open(rcvbuf: usize) -> Result<Self, Error> {
        // SAFETY: plain socket(2) call; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                NETLINK_CONNECTOR,
            )
        };
        let raw = cvt(raw, "proc connector socket")?;
        // SAFETY: `raw` is a fresh descriptor we own; OwnedFd closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `size` is a live c_int and its length is passed.
            let ret = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    std::ptr::from_ref(&size).cast(),
                    libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
                )
            };
            // SO_RCVBUFFORCE needs CAP_NET_ADMIN; SO_RCVBUF is capped by
            // net.core.rmem_max. Either is better than the default.
            if ret == 0 {
                break;
            }
        }
        let sa = sockaddr_nl(CN_IDX_PROC);
        // SAFETY: `sa` is a valid sockaddr_nl and its length is passed.
        let ret = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), nl_len()) };
        cvt(ret, "proc connector bind")?;
        let conn = Self {
            fd,
            buf: vec![0u8; 64 * 1024],
        };
        conn.control(PROC_CN_MCAST_LISTEN)?;
        Ok(conn)
    }

    fn control(&self, op: u32) -> Result<(), Error> {
        let msg = control_message(op, 0, std::process::id());
        let dest = sockaddr_nl(0);
        // SAFETY: `msg` and `dest` are live for the call; lengths are theirs.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                std::ptr::from_ref(&dest).cast(),
                nl_len(),
            )
        };
        cvt_size(ret).map(|_| ()).map_err(|source| Error::Os {
            op: "proc connector listen",
            source,
        })
    }

    /// Reads every pending datagram without blocking and appends the events
    /// (and `Lost` for `ENOBUFS`, truncation or an unparsable datagram).
    pub fn drain(&mut self, out: &mut Vec<SourceEvent>) -> Result<(), Error> {
        loop {
            let mut from = sockaddr_nl(0);
            let mut from_len = nl_len();
            // SAFETY: `buf`, `from` and `from_len` are live, writable and
            // their sizes are passed; MSG_TRUNC makes the kernel return the
            // datagram's full length so truncation is visible.
            let ret = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    std::ptr::from_mut(&mut from).cast(),
                    &mut from_len,
                )
            };
            let n = match cvt_size(ret) {
                Ok(n) => n,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(()),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        out.push(SourceEvent::Lost);
                        continue;
                    }
                    _ => {
                        return Err(Error::Os {
                            op: "proc connector recv",
                            source: e,
                        })
                    }
                },
            };
            if n > self.buf.len() {
                out.push(SourceEvent::Lost);
                continue;
            }
            // Only the kernel speaks on this group; ignore anything else.
            if from.nl_pid != 0 {
                continue;
            }
            let Some(bytes) = self.buf.get(..n) else {
                continue;
            };
            match parse_datagram(bytes) {
                Ok(messages) => {
                    for m in messages {
                        match m {
                            Message::Event(ev) => out.push(SourceEvent::Event(ev)),
                            Message::Overrun => out.push(SourceEvent::Lost),
                            Message::Ignored => {}
                        }
                    }
                }
                Err(_) => out.push(SourceEvent::Lost),
            }
        }
    }

    /// Waits until the socket is readable (or has an error pending), at most
    /// `timeout`. Returns whether it is.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, Error> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = super::timeout_ms(timeout);
        // SAFETY: one live pollfd, count 1.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        match cvt(ret, "poll proc connector") {
            Ok(n) => Ok(n > 0),
            Err(Error::Os { source, .. }) if source.kind() == io::ErrorKind::Interrupted => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl AsRawFd for ProcConnector {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl EventSource for ProcConnector {
    fn wait(&mut self, timeout: Duration, out: &mut Vec<SourceEvent>) -> Result<(), Error> {
        if self.wait_readable(timeout)? {
            self.drain(out)?;
        }
        Ok(())
    }
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // Lets the kernel stop building events when nobody listens.
        let _ = self.control(PROC_CN_MCAST_IGNORE);
    }
}
