//! Netlink messages: the 16-byte `struct nlmsghdr`, the walk over the
//! messages of one datagram, and the two control messages every family
//! shares (`NLMSG_ERROR`, `NLMSG_DONE`).
//!
//! Every length is checked before the bytes it covers are read, and a
//! framing error ends the walk: after a bad length nothing that follows can
//! be trusted to start where it seems to.
#![forbid(unsafe_code)]

use crate::attr::{attrs, Attrs, NLMSGERR_ATTR_MSG};
use crate::WireError;

/// `NLMSG_HDRLEN`: the message header's size.
pub const HEADER_LEN: usize = 16;

/// `NLMSG_NOOP`: nothing; skip it.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an acknowledgement (error 0) or an error for a request.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump (and, for the connector, its carrier).
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`: data was lost.
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLM_F_REQUEST`: a request (every message to the kernel).
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multi-message reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: answer with an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ROOT`: return the whole table.
pub const NLM_F_ROOT: u16 = 0x100;
/// `NLM_F_MATCH`: return every entry matching the request.
pub const NLM_F_MATCH: u16 = 0x200;
/// `NLM_F_DUMP`: `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// `NLM_F_REPLACE` (new requests): replace an existing object.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL` (new requests): fail if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE` (new requests): create the object if missing.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND` (new requests): add at the end of a list.
pub const NLM_F_APPEND: u16 = 0x800;
/// `NLM_F_CAPPED` (on `NLMSG_ERROR`): the request's payload is not echoed.
pub const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` (on `NLMSG_ERROR`): extended-ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Rounds `len` up to netlink's 4-byte alignment (`NLMSG_ALIGN`,
/// `NLA_ALIGN`), saturating instead of wrapping.
#[must_use]
pub const fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// `struct nlmsghdr`, host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// `nlmsg_len`: the whole message, header included, before padding.
    pub len: u32,
    /// `nlmsg_type`: a control type (`NLMSG_*`) or the family's.
    pub kind: u16,
    /// `nlmsg_flags` (`NLM_F_*`).
    pub flags: u16,
    /// `nlmsg_seq`: the request's sequence number, echoed in replies.
    pub seq: u32,
    /// `nlmsg_pid`: the sender's port id (0: the kernel).
    pub port: u32,
}

impl Header {
    /// Reads the header at the start of `bytes` (its own fields only: the
    /// length is not checked against anything).
    ///
    /// # Errors
    /// [`WireError::ShortHeader`] if `bytes` has fewer than 16 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Header, WireError> {
        let &[l0, l1, l2, l3, k0, k1, f0, f1, s0, s1, s2, s3, p0, p1, p2, p3, ..] = bytes else {
            return Err(WireError::ShortHeader { have: bytes.len() });
        };
        Ok(Header {
            len: u32::from_ne_bytes([l0, l1, l2, l3]),
            kind: u16::from_ne_bytes([k0, k1]),
            flags: u16::from_ne_bytes([f0, f1]),
            seq: u32::from_ne_bytes([s0, s1, s2, s3]),
            port: u32::from_ne_bytes([p0, p1, p2, p3]),
        })
    }

    /// The header as the kernel lays it out.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        let fields: [&[u8]; 5] = [
            &self.len.to_ne_bytes(),
            &self.kind.to_ne_bytes(),
            &self.flags.to_ne_bytes(),
            &self.seq.to_ne_bytes(),
            &self.port.to_ne_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            if let Some(slot) = out.get_mut(at..at + field.len()) {
                slot.copy_from_slice(field);
            }
            at += field.len();
        }
        out
    }
}

/// One message of a datagram: its header, and the bytes after the header
/// up to `nlmsg_len` (the family header, then attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: Header,
    /// The payload: `nlmsg_len - 16` bytes.
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// Reads the one message at the start of `bytes`, which must hold at
    /// least `nlmsg_len` bytes.
    ///
    /// # Errors
    /// [`WireError::ShortHeader`], or [`WireError::MessageLength`] when
    /// `nlmsg_len` is below 16 or beyond `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, WireError> {
        let header = Header::parse(bytes)?;
        let bad_length = WireError::MessageLength {
            len: header.len,
            have: bytes.len(),
        };
        let len = usize::try_from(header.len).map_err(|_| bad_length.clone())?;
        if len < HEADER_LEN {
            return Err(bad_length);
        }
        let payload = bytes.get(HEADER_LEN..len).ok_or(bad_length)?;
        Ok(Message { header, payload })
    }

    /// The attributes after a family header of `fixed` bytes (rounded up to
    /// 4); `None` when the payload is shorter than that header.
    #[must_use]
    pub fn attrs_after(&self, fixed: usize) -> Option<Attrs<'a>> {
        self.payload.get(align(fixed)..).map(attrs)
    }

    /// The payload of an `NLMSG_ERROR` message. Call it only for that type:
    /// any payload of 4 bytes or more reads as one.
    ///
    /// # Errors
    /// [`WireError::ShortError`] if the error code is missing.
    pub fn error(&self) -> Result<ErrorReply<'a>, WireError> {
        ErrorReply::parse(self.header.flags, self.payload)
    }

    /// The status of an `NLMSG_DONE` message: 0, or the negative errno that
    /// ended a dump early. A `DONE` too short to hold one is 0.
    #[must_use]
    pub fn done_status(&self) -> i32 {
        match self.payload {
            [a, b, c, d, ..] => i32::from_ne_bytes([*a, *b, *c, *d]),
            _ => 0,
        }
    }
}

/// `struct nlmsgerr` and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// The positive errno; 0 for an acknowledgement.
    pub errno: i32,
    /// The header of the request this answers, when the kernel echoed it
    /// (it always does; a reply cut short has none).
    pub request: Option<Header>,
    /// Extended-ack attributes (`NLMSGERR_ATTR_*`), when the kernel sent
    /// any (`NLM_F_ACK_TLVS`); empty otherwise.
    pub ext_ack: &'a [u8],
}

impl<'a> ErrorReply<'a> {
    /// Parses the payload of an `NLMSG_ERROR` message whose header carried
    /// `flags`: the error code, the echoed request header, the echoed
    /// request payload unless `NLM_F_CAPPED`, then extended-ack attributes
    /// if `NLM_F_ACK_TLVS`.
    ///
    /// # Errors
    /// [`WireError::ShortError`] if the 4-byte error code is missing;
    /// anything after it is optional.
    pub fn parse(flags: u16, payload: &'a [u8]) -> Result<ErrorReply<'a>, WireError> {
        let &[e0, e1, e2, e3, ..] = payload else {
            return Err(WireError::ShortError {
                have: payload.len(),
            });
        };
        let error = i32::from_ne_bytes([e0, e1, e2, e3]);
        let request = payload.get(4..).and_then(|b| Header::parse(b).ok());
        let mut ext_ack: &[u8] = &[];
        if let Some(request) = request.filter(|_| flags & NLM_F_ACK_TLVS != 0) {
            let mut at = 4 + HEADER_LEN;
            if flags & NLM_F_CAPPED == 0 {
                let echoed = usize::try_from(request.len).unwrap_or(usize::MAX);
                at = at.saturating_add(echoed.saturating_sub(HEADER_LEN));
            }
            ext_ack = payload.get(at..).unwrap_or_default();
        }
        Ok(ErrorReply {
            errno: error.saturating_neg(),
            request,
            ext_ack,
        })
    }

    /// Whether this is an acknowledgement (error 0).
    #[must_use]
    pub fn is_ack(&self) -> bool {
        self.errno == 0
    }

    /// The kernel's text for the error (`NLMSGERR_ATTR_MSG`), if it sent
    /// one. A malformed attribute list reads as no text.
    #[must_use]
    pub fn message(&self) -> Option<String> {
        attrs(self.ext_ack)
            .map_while(Result::ok)
            .find(|a| a.kind() == NLMSGERR_ATTR_MSG)
            .map(|a| a.to_string_lossy())
    }
}

/// Walks the messages of one datagram, in order.
#[must_use]
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

/// The iterator of [`messages`]: each item is a message or the framing
/// error that ends the walk.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Message::parse(self.rest) {
            Ok(message) => {
                // Messages are padded to 4 bytes; the last one may not be.
                let advance = align(HEADER_LEN + message.payload.len());
                self.rest = self.rest.get(advance..).unwrap_or_default();
                Some(Ok(message))
            }
            Err(error) => {
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

impl std::iter::FusedIterator for Messages<'_> {}
