//! The proc connector: process events from the kernel over netlink.
//!
//! The kernel only honours listeners in the initial pid and user namespaces
//! (drivers/connector/cn_proc.c), and reports pids as seen from there.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use nlwire::{Socket, SocketError, SocketOptions};

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

/// A subscribed proc-connector socket.
#[derive(Debug)]
pub struct ProcConnector {
    socket: Socket,
    buf: Vec<u8>,
}

/// A socket failure as the crate's error: the failed call itself, or `op`
/// for the kinds that are not one.
fn os_error(op: &'static str, error: SocketError) -> Error {
    match error {
        SocketError::Os(error) => Error::Os {
            op: error.op,
            source: error.source,
        },
        other => Error::Os {
            op,
            source: other.into_io(),
        },
    }
}

impl ProcConnector {
    /// Opens a netlink connector socket, joins the proc group and sends
    /// `PROC_CN_MCAST_LISTEN`. Needs `CAP_NET_ADMIN`.
    pub fn open(rcvbuf: usize) -> Result<Self, Error> {
        let options = SocketOptions {
            groups: CN_IDX_PROC,
            receive_buffer: Some(rcvbuf),
            nonblocking: true,
            ..SocketOptions::default()
        };
        let socket = Socket::open(nlwire::socket::NETLINK_CONNECTOR, &options)
            .map_err(|e| os_error("proc connector open", e))?;
        let conn = Self {
            socket,
            buf: vec![0u8; 64 * 1024],
        };
        conn.control(PROC_CN_MCAST_LISTEN)?;
        Ok(conn)
    }

    fn control(&self, op: u32) -> Result<(), Error> {
        let msg = control_message(op, 0, std::process::id());
        self.socket
            .send(&msg)
            .map_err(|e| os_error("proc connector listen", e))
    }

    /// Reads every pending datagram without blocking and appends the events
    /// (and `Lost` for `ENOBUFS`, truncation or an unparsable datagram).
    pub fn drain(&mut self, out: &mut Vec<SourceEvent>) -> Result<(), Error> {
        loop {
            let received = match self.socket.recv(&mut self.buf) {
                Ok(received) => received,
                Err(SocketError::WouldBlock) => return Ok(()),
                Err(SocketError::Overrun | SocketError::Truncated { .. }) => {
                    out.push(SourceEvent::Lost);
                    continue;
                }
                Err(e) => return Err(os_error("proc connector recv", e)),
            };
            // Only the kernel speaks on this group; ignore anything else.
            if received.sender != 0 {
                continue;
            }
            let Some(bytes) = self.buf.get(..received.len) else {
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
        self.socket
            .wait_readable(timeout)
            .map_err(|e| os_error("poll proc connector", e))
    }
}

impl AsRawFd for ProcConnector {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
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
