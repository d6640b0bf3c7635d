//! Netlink attributes (`struct nlattr`): a 4-byte header (`nla_len`,
//! `nla_type`), the payload, padding to 4 bytes. A payload may itself be a
//! list of attributes (nested).
//!
//! The two top bits of `nla_type` are flags, not part of the type:
//! `NLA_F_NESTED` (the payload is attributes) and `NLA_F_NET_BYTEORDER`
//! (the payload is big-endian). [`Attr::kind`] masks them off; the flags
//! have their own accessors. Families differ in byte order: rtnetlink
//! integers are host order, nf_tables' are big-endian without the flag, so
//! both readers exist and the caller picks.
#![forbid(unsafe_code)]

use crate::message::align;
use crate::WireError;

/// `NLA_HDRLEN`: the attribute header's size.
pub const ATTR_HEADER_LEN: usize = 4;
/// `NLA_F_NESTED`: the payload is a list of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`: the payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// `NLA_TYPE_MASK`: the type without the two flag bits.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// `NLMSGERR_ATTR_MSG`: the extended ack's error text.
pub const NLMSGERR_ATTR_MSG: u16 = 1;

/// One attribute: its type with flags, and its payload (no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    raw_kind: u16,
    payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The type, flag bits masked off.
    #[must_use]
    pub fn kind(&self) -> u16 {
        self.raw_kind & NLA_TYPE_MASK
    }

    /// `nla_type` as sent, flag bits included.
    #[must_use]
    pub fn raw_kind(&self) -> u16 {
        self.raw_kind
    }

    /// Whether the sender marked the payload as nested attributes. Not
    /// every family sets the flag on its nests (rtnetlink often does not);
    /// [`Attr::nested`] reads any payload as attributes.
    #[must_use]
    pub fn is_nested(&self) -> bool {
        self.raw_kind & NLA_F_NESTED != 0
    }

    /// Whether the sender marked the payload as network byte order.
    #[must_use]
    pub fn is_net_byteorder(&self) -> bool {
        self.raw_kind & NLA_F_NET_BYTEORDER != 0
    }

    /// The payload, without padding.
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The payload read as a list of attributes.
    #[must_use]
    pub fn nested(&self) -> Attrs<'a> {
        attrs(self.payload)
    }

    /// The payload up to its first NUL (all of it if it has none): the
    /// bytes of an `NLA_STRING` / `NLA_NUL_STRING`.
    #[must_use]
    pub fn c_str(&self) -> &'a [u8] {
        c_str(self.payload)
    }

    /// [`Attr::c_str`] as text, invalid UTF-8 replaced.
    #[must_use]
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.c_str()).into_owned()
    }

    fn array<const N: usize>(&self, what: &'static str) -> Result<[u8; N], WireError> {
        <[u8; N]>::try_from(self.payload).map_err(|_| WireError::AttrSize {
            kind: self.kind(),
            what,
            need: N,
            have: self.payload.len(),
        })
    }

    /// A one-byte payload.
    ///
    /// # Errors
    /// [`WireError::AttrSize`] if the payload is not exactly 1 byte.
    pub fn u8(&self) -> Result<u8, WireError> {
        self.array::<1>("u8").map(|[b]| b)
    }

    /// A host-order `u16` payload (exactly 2 bytes).
    ///
    /// # Errors
    /// [`WireError::AttrSize`] on any other size.
    pub fn u16(&self) -> Result<u16, WireError> {
        self.array("u16").map(u16::from_ne_bytes)
    }

    /// A host-order `u32` payload (exactly 4 bytes).
    ///
    /// # Errors
    /// [`WireError::AttrSize`] on any other size.
    pub fn u32(&self) -> Result<u32, WireError> {
        self.array("u32").map(u32::from_ne_bytes)
    }

    /// A host-order `u64` payload (exactly 8 bytes).
    ///
    /// # Errors
    /// [`WireError::AttrSize`] on any other size.
    pub fn u64(&self) -> Result<u64, WireError> {
        self.array("u64").map(u64::from_ne_bytes)
    }

    /// A big-endian `u16` payload (exactly 2 bytes).
    ///
    /// # Errors
    /// [`WireError::AttrSize`] on any other size.
    pub fn be_u16(&self) -> Result<u16, WireError> {
        self.array("u16").map(u16::from_be_bytes)
    }

    /// A big-endian `u32` payload (exactly 4 bytes).
    ///
    /// # Errors
    /// [`WireError::AttrSize`] on any other size.
    pub fn be_u32(&self) -> Result<u32, WireError> {
        self.array("u32").map(u32::from_be_bytes)
    }

    /// A big-endian `u64` payload (exactly 8 bytes).
    ///
    /// # Errors
    /// [`WireError::AttrSize`] on any other size.
    pub fn be_u64(&self) -> Result<u64, WireError> {
        self.array("u64").map(u64::from_be_bytes)
    }
}

/// `bytes` up to the first NUL, or all of it.
#[must_use]
pub fn c_str(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// Walks a list of attributes (the rest of a message after its family
/// header, or a nested payload).
#[must_use]
pub fn attrs(bytes: &[u8]) -> Attrs<'_> {
    Attrs { rest: bytes }
}

/// The iterator of [`attrs`]: each item is an attribute or the framing
/// error that ends the walk.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The first attribute of type `kind` (flags masked off).
    ///
    /// # Errors
    /// The framing error met before finding it.
    pub fn find(self, kind: u16) -> Result<Option<Attr<'a>>, WireError> {
        for attr in self {
            let attr = attr?;
            if attr.kind() == kind {
                return Ok(Some(attr));
            }
        }
        Ok(None)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = parse_attr(self.rest);
        match &item {
            Ok(attr) => {
                let advance = align(ATTR_HEADER_LEN + attr.payload.len());
                self.rest = self.rest.get(advance..).unwrap_or_default();
            }
            Err(_) => self.rest = &[],
        }
        Some(item)
    }
}

impl std::iter::FusedIterator for Attrs<'_> {}

fn parse_attr(bytes: &[u8]) -> Result<Attr<'_>, WireError> {
    let &[l0, l1, k0, k1, ..] = bytes else {
        return Err(WireError::ShortAttrHeader { have: bytes.len() });
    };
    let len = u16::from_ne_bytes([l0, l1]);
    let bad_length = WireError::AttrLength {
        len,
        have: bytes.len(),
    };
    let payload = usize::from(len)
        .checked_sub(ATTR_HEADER_LEN)
        .and_then(|_| bytes.get(ATTR_HEADER_LEN..usize::from(len)))
        .ok_or(bad_length)?;
    Ok(Attr {
        raw_kind: u16::from_ne_bytes([k0, k1]),
        payload,
    })
}
