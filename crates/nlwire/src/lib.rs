//! Netlink wire framing and the netlink socket, shared by the crates that
//! speak netlink to the kernel (netconf: rtnetlink; pf-rules: nf_tables;
//! procwatch: the proc connector).
//!
//! - [`message`]: `struct nlmsghdr`, the walk over the messages of one
//!   datagram ([`messages`]), and the control messages every family shares
//!   (`NLMSG_ERROR` as [`ErrorReply`], `NLMSG_DONE`'s status);
//! - [`attr`]: `struct nlattr`, the walk over an attribute list ([`attrs`]),
//!   nested lists, the `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` flags, and
//!   typed readers in either byte order;
//! - [`build`]: messages with a family header and attributes, nested to any
//!   depth, one or several back to back in one datagram (a batch);
//! - `socket` (Linux only): open a `NETLINK_*` socket with groups, receive
//!   buffer, timeout and extended acks; send; receive with truncation and
//!   `ENOBUFS` reported as their own errors; wait for readability;
//! - [`check`]: the one place a raw system-call return code becomes an
//!   error.
//!
//! Deliberately absent: the meaning of any family's messages. rtnetlink's
//! links and routes stay in netconf, nf_tables' expressions and batches in
//! pf-rules, `cn_msg` and `proc_event` in procwatch; each builds and reads
//! its own family header and attribute types on top of this crate. No
//! request/reply bookkeeping either (sequence matching, dump loops): each
//! family waits for different things.
//!
//! Invariants:
//! - Every parser takes `&[u8]`, checks a length before reading what it
//!   covers, and reports malformed input as a [`WireError`]; nothing here
//!   panics on outside input, and a framing error ends a walk (nothing after
//!   a bad length can be trusted to start where it seems to).
//! - What the builders write, the walkers read back unchanged (tested
//!   property by property).
//! - `unsafe` appears only in the Linux `socket` module, one `// SAFETY:`
//!   comment per block; every other module is `#![forbid(unsafe_code)]`.
#![deny(missing_docs)]

pub mod attr;
pub mod build;
mod error;
pub mod message;
#[cfg(target_os = "linux")]
pub mod socket;
mod sys;

pub use attr::{attrs, c_str, Attr, Attrs};
pub use build::{AttrWriter, Builder};
pub use error::{OsError, SocketError, WireError};
pub use message::{align, messages, ErrorReply, Header, Message, Messages};
#[cfg(target_os = "linux")]
pub use socket::{Received, Socket, SocketOptions};
pub use sys::check;

#[cfg(test)]
mod tests;
