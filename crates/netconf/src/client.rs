//! The DHCP client state machine: DISCOVER until an OFFER, REQUEST until an
//! ACK, a NAK starts over, every wait bounded by one overall deadline.
//!
//! Retransmission follows RFC 2131 §4.1 without its random jitter (one client
//! per link, so there is no herd to spread): the first wait is
//! [`ClientConfig::first_retransmit`], each retransmission doubles it up to
//! [`ClientConfig::max_retransmit`], and no wait runs past the deadline.
//! A REQUEST that goes unanswered [`ClientConfig::request_attempts`] times
//! sends the client back to DISCOVER, as does a NAK; each restart takes a new
//! transaction id so that late replies to the old one are ignored.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::dhcp::{self, ClientParams, Lease, Offer, Reply};
use crate::NetconfError;

/// How the client sends and receives DHCP messages and tells time. The real
/// implementation is a packet socket on one interface (`linux` module); the
/// fake in `fake` plays a scripted server on a virtual clock.
pub trait DhcpTransport {
    /// Sends one DHCP message (the UDP payload) to the broadcast address,
    /// from port 68 to port 67. A transient failure the retransmission will
    /// cover (no carrier yet, full queue) is `Ok`: the packet is just lost.
    ///
    /// # Errors
    /// A failure retrying cannot fix.
    fn send(&mut self, message: &[u8]) -> Result<(), NetconfError>;

    /// Waits at most `timeout` for one datagram to UDP port 68 and copies its
    /// payload into `buf` (truncating to `buf.len()`), returning the payload
    /// length, or `None` when the time passed without one.
    ///
    /// # Errors
    /// A failure of the underlying socket.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, NetconfError>;

    /// Monotonic time since the transport was created.
    fn elapsed(&self) -> Duration;
}

impl<T: DhcpTransport + ?Sized> DhcpTransport for &mut T {
    fn send(&mut self, message: &[u8]) -> Result<(), NetconfError> {
        (**self).send(message)
    }
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, NetconfError> {
        (**self).recv(buf, timeout)
    }
    fn elapsed(&self) -> Duration {
        (**self).elapsed()
    }
}

/// Everything the state machine needs to know, fixed before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Who the client is.
    pub params: ClientParams,
    /// The first transaction id; restarts derive new ones with [`next_xid`].
    pub xid: u32,
    /// Give up when the transport's clock passes this.
    pub deadline: Duration,
    /// The first wait for a reply.
    pub first_retransmit: Duration,
    /// The longest wait between retransmissions.
    pub max_retransmit: Duration,
    /// REQUESTs sent for one OFFER before going back to DISCOVER.
    pub request_attempts: u32,
}

impl ClientConfig {
    /// A configuration with the defaults: first wait 1 s (a cloud's DHCP
    /// server answers in milliseconds, and the boot is waiting), doubling to
    /// 8 s, four REQUESTs per OFFER, no client identifier, replies up to 1500
    /// bytes.
    #[must_use]
    pub fn new(mac: [u8; 6], xid: u32, deadline: Duration) -> Self {
        Self {
            params: ClientParams {
                mac,
                client_id: None,
                max_message_size: 1500,
            },
            xid,
            deadline,
            first_retransmit: Duration::from_secs(1),
            max_retransmit: Duration::from_secs(8),
            request_attempts: 4,
        }
    }
}

/// The transaction id after `xid`: an odd-constant multiply-and-add, a
/// bijection, so no restart reuses the id of the one just before it.
#[must_use]
pub fn next_xid(xid: u32) -> u32 {
    xid.wrapping_mul(0x9E37_79B9).wrapping_add(0x7F4A_7C15)
}

/// Largest DHCP message the client reads; anything longer is cut and then
/// fails to decode (a legal reply is at most the 1500 we advertise).
const RECV_BUF_LEN: usize = 2048;

enum State {
    Selecting,
    Requesting { offer: Offer, attempts: u32 },
}

enum Waited<T> {
    Got(T),
    Nak,
    TimedOut,
}

/// Runs the exchange until an ACK, and returns its lease.
///
/// # Errors
/// [`NetconfError::Timeout`] when the deadline passes first, or any error of
/// the transport.
pub fn obtain_lease<T: DhcpTransport + ?Sized>(
    transport: &mut T,
    config: &ClientConfig,
) -> Result<Lease, NetconfError> {
    let mut run = Run {
        transport,
        config,
        xid: config.xid,
        naks: 0,
        buf: vec![0; RECV_BUF_LEN],
    };
    run.run()
}

struct Run<'a, T: ?Sized> {
    transport: &'a mut T,
    config: &'a ClientConfig,
    xid: u32,
    naks: u32,
    buf: Vec<u8>,
}

impl<T: DhcpTransport + ?Sized> Run<'_, T> {
    fn run(&mut self) -> Result<Lease, NetconfError> {
        let mut state = State::Selecting;
        let mut wait = self.config.first_retransmit;
        loop {
            state =
                match state {
                    State::Selecting => {
                        let secs = self.secs();
                        self.transport.send(&dhcp::encode_discover(
                            &self.config.params,
                            self.xid,
                            secs,
                        ))?;
                        match self.wait_for(wait, "OFFER", None, |reply| match reply {
                            Reply::Offer(offer) => Some(offer),
                            _ => None,
                        })? {
                            Waited::Got(offer) => {
                                wait = self.config.first_retransmit;
                                State::Requesting { offer, attempts: 0 }
                            }
                            Waited::TimedOut | Waited::Nak => {
                                wait = self.backoff(wait);
                                State::Selecting
                            }
                        }
                    }
                    State::Requesting { offer, attempts } => {
                        if attempts >= self.config.request_attempts {
                            self.restart(&mut wait);
                            State::Selecting
                        } else {
                            let secs = self.secs();
                            self.transport.send(&dhcp::encode_request(
                                &self.config.params,
                                self.xid,
                                secs,
                                offer.address,
                                offer.server_id,
                            ))?;
                            match self.wait_for(wait, "ACK", Some(offer.server_id), |reply| {
                                match reply {
                                    Reply::Ack(lease)
                                        if lease.address == offer.address
                                            && lease.server_id == offer.server_id =>
                                    {
                                        Some(lease)
                                    }
                                    _ => None,
                                }
                            })? {
                                Waited::Got(lease) => return Ok(lease),
                                Waited::Nak => {
                                    self.naks = self.naks.saturating_add(1);
                                    self.restart(&mut wait);
                                    State::Selecting
                                }
                                Waited::TimedOut => {
                                    wait = self.backoff(wait);
                                    State::Requesting {
                                        offer,
                                        attempts: attempts.saturating_add(1),
                                    }
                                }
                            }
                        }
                    }
                };
        }
    }

    fn restart(&mut self, wait: &mut Duration) {
        self.xid = next_xid(self.xid);
        *wait = self.config.first_retransmit;
    }

    fn backoff(&self, wait: Duration) -> Duration {
        wait.saturating_mul(2).min(self.config.max_retransmit)
    }

    /// Seconds since the exchange began, for the `secs` field.
    fn secs(&self) -> u16 {
        u16::try_from(self.transport.elapsed().as_secs()).unwrap_or(u16::MAX)
    }

    /// Waits up to `wait` (and never past the deadline) for a reply `accept`
    /// takes. Packets that do not decode, belong to another transaction or
    /// are the wrong kind are dropped without ending the wait. While a
    /// REQUEST to `requested_from` is out, a NAK ends the wait, unless it
    /// names another server: that one's NAK is about a lease it does not hold.
    fn wait_for<R>(
        &mut self,
        wait: Duration,
        phase: &'static str,
        requested_from: Option<Ipv4Addr>,
        accept: impl Fn(Reply) -> Option<R>,
    ) -> Result<Waited<R>, NetconfError> {
        let deadline = self.config.deadline;
        let window_end = self.transport.elapsed().saturating_add(wait).min(deadline);
        loop {
            let now = self.transport.elapsed();
            if now >= deadline {
                return Err(NetconfError::Timeout {
                    deadline,
                    phase,
                    naks: self.naks,
                });
            }
            if now >= window_end {
                return Ok(Waited::TimedOut);
            }
            let Some(len) = self
                .transport
                .recv(&mut self.buf, window_end.saturating_sub(now))?
            else {
                continue;
            };
            let packet = self.buf.get(..len).unwrap_or_default();
            match dhcp::decode_reply(packet, self.xid, self.config.params.mac) {
                Ok(Reply::Nak { server_id })
                    if requested_from.is_some()
                        && server_id.is_none_or(|id| Some(id) == requested_from) =>
                {
                    return Ok(Waited::Nak)
                }
                Ok(reply) => {
                    if let Some(accepted) = accept(reply) {
                        return Ok(Waited::Got(accepted));
                    }
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
