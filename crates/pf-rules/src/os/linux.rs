//! The netlink loader: sends an encoded batch on a `NETLINK_NETFILTER`
//! socket (`nlwire`'s) and waits for the kernel to acknowledge every
//! message. No `unsafe` of its own.
#![forbid(unsafe_code)]

use std::io;
use std::time::Duration;

use nlwire::{Socket, SocketError, SocketOptions};

use crate::firewall::Firewall;
use crate::netlink::{
    ack_status, encode_batch, encode_rule_dump, parse_acks, parse_rule_dump, verify_rules,
    AckStatus,
};
use crate::policy::{Phase, Policy};
use crate::{FirewallError, ReadBack};

/// Applies policies with nf_tables netlink messages, no `nft` binary
/// needed. Acts on the network namespace of the calling thread.
#[derive(Debug, Clone)]
pub struct NetlinkFirewall {
    reply_timeout: Duration,
}

impl Default for NetlinkFirewall {
    fn default() -> Self {
        NetlinkFirewall::new()
    }
}

impl NetlinkFirewall {
    /// A loader that waits up to 5 s for the kernel's acknowledgements (a
    /// transaction of this size commits in milliseconds; the bound only
    /// keeps a wedged kernel from hanging the boot).
    pub fn new() -> NetlinkFirewall {
        NetlinkFirewall {
            reply_timeout: Duration::from_secs(5),
        }
    }

    /// The same with another acknowledgement timeout.
    pub fn with_reply_timeout(reply_timeout: Duration) -> NetlinkFirewall {
        NetlinkFirewall { reply_timeout }
    }
}

impl Firewall for NetlinkFirewall {
    fn apply(&mut self, policy: &Policy, phase: Phase) -> Result<(), FirewallError> {
        // Sequence numbers only need to be unique on this fresh socket.
        let batch = encode_batch(policy, phase, 1)?;
        let socket = open(self.reply_timeout)?;
        send(&socket, &batch.bytes)?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match ack_status(&batch.messages, &replies) {
                AckStatus::Complete => return Ok(()),
                AckStatus::Failed(err) => return Err(err),
                AckStatus::Pending => {}
            }
            let n = match recv(&socket, &mut buf) {
                Ok(n) => n,
                Err(SocketError::WouldBlock) => {
                    let missing = batch.messages.iter().find(|m| {
                        !replies
                            .iter()
                            .any(|r| matches!(r, crate::AckOutcome::Ack { seq } if *seq == m.seq))
                    });
                    return Err(match missing {
                        Some(m) => FirewallError::MissingAck {
                            seq: m.seq,
                            what: m.what.clone(),
                        },
                        None => FirewallError::MalformedReply(
                            "timed out with every message acknowledged",
                        ),
                    });
                }
                Err(e) => return Err(socket_error("recv", e)),
            };
            replies.extend(parse_acks(buf.get(..n).unwrap_or(&[]))?);
        }
    }

    fn verify(&mut self, policy: &Policy, phase: Phase) -> Result<ReadBack, FirewallError> {
        let socket = open(self.reply_timeout)?;
        send(&socket, &encode_rule_dump(1)?)?;
        let mut rules = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match recv(&socket, &mut buf) {
                Ok(n) => n,
                Err(SocketError::WouldBlock) => {
                    return Err(FirewallError::MalformedReply(
                        "rule dump not finished before the reply timeout",
                    ))
                }
                Err(e) => return Err(socket_error("recv", e)),
            };
            let dump = parse_rule_dump(buf.get(..n).unwrap_or(&[]))?;
            rules.extend(dump.rules);
            if dump.done {
                break;
            }
        }
        verify_rules(policy, phase, &rules)
    }
}

/// A `NETLINK_NETFILTER` socket whose error replies are short (no echo of
/// our message) and carry the kernel's text, and whose receives give up
/// after `reply_timeout`.
fn open(reply_timeout: Duration) -> Result<Socket, FirewallError> {
    let options = SocketOptions {
        receive_timeout: Some(reply_timeout),
        extended_acks: true,
        ..SocketOptions::default()
    };
    Socket::open(nlwire::socket::NETLINK_NETFILTER, &options).map_err(|e| socket_error("socket", e))
}

fn send(socket: &Socket, bytes: &[u8]) -> Result<(), FirewallError> {
    socket.send(bytes).map_err(|e| socket_error("sendto", e))
}

/// One datagram's length; a timeout is [`SocketError::WouldBlock`].
fn recv(socket: &Socket, buf: &mut [u8]) -> Result<usize, SocketError> {
    socket.recv(buf).map(|received| received.len)
}

/// A socket failure as the crate's error; `op` names the step for the kinds
/// that are not a failed syscall of their own.
fn socket_error(op: &'static str, error: SocketError) -> FirewallError {
    match error {
        SocketError::Os(error) => FirewallError::Socket {
            op: error.op,
            source: error.source,
        },
        SocketError::Truncated { .. } => {
            FirewallError::MalformedReply("reply larger than the receive buffer")
        }
        SocketError::ShortSend { .. } => FirewallError::Socket {
            op,
            source: io::Error::new(io::ErrorKind::WriteZero, "short netlink send"),
        },
        other => FirewallError::Socket {
            op,
            source: other.into_io(),
        },
    }
}
