//! The netlink loader: sends an encoded batch on a `NETLINK_NETFILTER`
//! socket and waits for the kernel to acknowledge every message. `unsafe`
//! is confined to the four socket syscalls below.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::firewall::Firewall;
use crate::netlink::{
    ack_status, encode_batch, encode_rule_dump, parse_acks, parse_rule_dump, verify_rules,
    AckStatus,
};
use crate::policy::{Phase, Policy};
use crate::{FirewallError, ReadBack};

/// Kernel `setsockopt` options on `SOL_NETLINK` (linux/netlink.h): keep
/// error replies short (no echo of our message) and ask for the text of
/// extended acks.
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

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
        let socket = NetlinkSocket::open(self.reply_timeout)?;
        socket.send(&batch.bytes)?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match ack_status(&batch.messages, &replies) {
                AckStatus::Complete => return Ok(()),
                AckStatus::Failed(err) => return Err(err),
                AckStatus::Pending => {}
            }
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
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
                Err(source) => return Err(FirewallError::Socket { op: "recv", source }),
            };
            replies.extend(parse_acks(buf.get(..n).unwrap_or(&[]))?);
        }
    }

    fn verify(&mut self, policy: &Policy, phase: Phase) -> Result<ReadBack, FirewallError> {
        let socket = NetlinkSocket::open(self.reply_timeout)?;
        socket.send(&encode_rule_dump(1)?)?;
        let mut rules = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(FirewallError::MalformedReply(
                        "rule dump not finished before the reply timeout",
                    ))
                }
                Err(source) => return Err(FirewallError::Socket { op: "recv", source }),
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

struct NetlinkSocket {
    fd: OwnedFd,
}

fn check(op: &'static str, rc: libc::c_int) -> Result<libc::c_int, FirewallError> {
    if rc < 0 {
        Err(FirewallError::Socket {
            op,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

impl NetlinkSocket {
    fn open(reply_timeout: Duration) -> Result<NetlinkSocket, FirewallError> {
        // SAFETY: plain socket(2) with constant arguments; the returned fd is
        // checked before use and owned by OwnedFd from here on.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        let raw = check("socket", raw)?;
        // SAFETY: `raw` is a freshly created, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = NetlinkSocket { fd };

        let one: libc::c_int = 1;
        sock.setsockopt(
            libc::SOL_NETLINK,
            NETLINK_CAP_ACK,
            &one,
            "setsockopt NETLINK_CAP_ACK",
        )?;
        sock.setsockopt(
            libc::SOL_NETLINK,
            NETLINK_EXT_ACK,
            &one,
            "setsockopt NETLINK_EXT_ACK",
        )?;
        // suseconds_t is i32 on 32-bit targets: keep the checked conversion.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let timeout = libc::timeval {
            tv_sec: libc::time_t::try_from(reply_timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::try_from(reply_timeout.subsec_micros()).unwrap_or(0),
        };
        sock.setsockopt(
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout,
            "setsockopt SO_RCVTIMEO",
        )?;

        let addr = kernel_addr();
        // SAFETY: `addr` is a fully initialised sockaddr_nl and the length
        // passed is its size; bind does not keep the pointer.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                sockaddr_nl_len(),
            )
        };
        check("bind", rc)?;
        Ok(sock)
    }

    fn setsockopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
        op: &'static str,
    ) -> Result<(), FirewallError> {
        let len = libc::socklen_t::try_from(mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
        // SAFETY: `value` points to a live, initialised T of exactly `len`
        // bytes for the duration of the call; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                len,
            )
        };
        check(op, rc).map(|_| ())
    }

    fn send(&self, bytes: &[u8]) -> Result<(), FirewallError> {
        let addr = kernel_addr();
        // SAFETY: the buffer and the address are valid for the stated
        // lengths for the duration of the call; sendto does not keep them.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                sockaddr_nl_len(),
            )
        };
        if sent < 0 {
            return Err(FirewallError::Socket {
                op: "sendto",
                source: io::Error::last_os_error(),
            });
        }
        // A netlink datagram is sent whole or not at all.
        if usize::try_from(sent).ok() != Some(bytes.len()) {
            return Err(FirewallError::Socket {
                op: "sendto",
                source: io::Error::new(io::ErrorKind::WriteZero, "short netlink send"),
            });
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes; the
        // kernel writes at most that many.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// The kernel's netlink address (port id 0, no groups).
fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value
    // (it has a private padding field, so it cannot be built literally).
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    // AF_NETLINK is 16: the conversion cannot fail.
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or_default();
    addr
}

fn sockaddr_nl_len() -> libc::socklen_t {
    // 12 bytes: always fits.
    libc::socklen_t::try_from(mem::size_of::<libc::sockaddr_nl>()).unwrap_or(12)
}
