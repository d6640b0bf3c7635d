//! Building netlink messages: a header, a family header, attributes
//! (nested to any depth), each padded to 4 bytes, lengths filled in when a
//! message or a nest is closed. A [`Builder`] holds one message or several
//! back to back (a batch goes to the kernel in one `send`).
//!
//! Writing an attribute cannot fail on the spot, so family code reads as a
//! list of attributes; a length that does not fit its field is remembered
//! and returned when the message is finished, and that message is dropped
//! from the buffer whole.
#![forbid(unsafe_code)]

use crate::attr::{ATTR_HEADER_LEN, NLA_F_NESTED};
use crate::message::{align, Header, HEADER_LEN};
use crate::WireError;

/// A buffer of whole netlink messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// An empty buffer.
    #[must_use]
    pub fn new() -> Builder {
        Builder::default()
    }

    /// An empty buffer with room for `bytes`.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> Builder {
        Builder {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// Appends one message: header (port id 0), `fixed` (the family
    /// header, padded to 4), then what `body` writes.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] if the message or one of its attributes is
    /// longer than its length field; the buffer is then as it was before.
    pub fn message(
        &mut self,
        kind: u16,
        flags: u16,
        seq: u32,
        fixed: &[u8],
        body: impl FnOnce(&mut AttrWriter<'_>),
    ) -> Result<(), WireError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        self.buf.extend_from_slice(fixed);
        pad(&mut self.buf);
        let mut error = None;
        body(&mut AttrWriter {
            buf: &mut self.buf,
            error: &mut error,
        });
        let len = self.buf.len().saturating_sub(start);
        let len = match (error, u32::try_from(len)) {
            (None, Ok(len)) => len,
            (Some(error), _) => {
                self.buf.truncate(start);
                return Err(error);
            }
            (None, Err(_)) => {
                self.buf.truncate(start);
                return Err(WireError::TooLarge {
                    what: "message",
                    len,
                });
            }
        };
        let header = Header {
            len,
            kind,
            flags,
            seq,
            port: 0,
        };
        patch(&mut self.buf, start, &header.to_bytes());
        Ok(())
    }

    /// The messages so far.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The messages, as one datagram.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no message was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// One message on its own (see [`Builder::message`]).
///
/// # Errors
/// [`WireError::TooLarge`] as [`Builder::message`].
pub fn message(
    kind: u16,
    flags: u16,
    seq: u32,
    fixed: &[u8],
    body: impl FnOnce(&mut AttrWriter<'_>),
) -> Result<Vec<u8>, WireError> {
    let mut builder = Builder::new();
    builder.message(kind, flags, seq, fixed, body)?;
    Ok(builder.into_bytes())
}

/// A list of attributes on its own, outside any message: the payload of a
/// nest built apart, or what a reply's nest is compared with.
///
/// # Errors
/// [`WireError::TooLarge`] if an attribute is longer than its length field.
pub fn attributes(body: impl FnOnce(&mut AttrWriter<'_>)) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::new();
    let mut error = None;
    body(&mut AttrWriter {
        buf: &mut buf,
        error: &mut error,
    });
    match error {
        Some(error) => Err(error),
        None => Ok(buf),
    }
}

/// Appends attributes to the message (or nest) being built.
#[derive(Debug)]
pub struct AttrWriter<'a> {
    buf: &'a mut Vec<u8>,
    error: &'a mut Option<WireError>,
}

impl AttrWriter<'_> {
    fn fail(&mut self, error: WireError) {
        self.error.get_or_insert(error);
    }

    /// An attribute of type `kind` with `payload` as is.
    pub fn bytes(&mut self, kind: u16, payload: &[u8]) {
        let len = ATTR_HEADER_LEN.saturating_add(payload.len());
        let Ok(nla_len) = u16::try_from(len) else {
            return self.fail(WireError::TooLarge {
                what: "attribute",
                len,
            });
        };
        self.buf.extend_from_slice(&nla_len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        pad(self.buf);
    }

    /// A one-byte attribute.
    pub fn u8(&mut self, kind: u16, value: u8) {
        self.bytes(kind, &[value]);
    }

    /// A host-order `u16` attribute.
    pub fn u16(&mut self, kind: u16, value: u16) {
        self.bytes(kind, &value.to_ne_bytes());
    }

    /// A host-order `u32` attribute.
    pub fn u32(&mut self, kind: u16, value: u32) {
        self.bytes(kind, &value.to_ne_bytes());
    }

    /// A host-order `u64` attribute.
    pub fn u64(&mut self, kind: u16, value: u64) {
        self.bytes(kind, &value.to_ne_bytes());
    }

    /// A big-endian `u16` attribute.
    pub fn be_u16(&mut self, kind: u16, value: u16) {
        self.bytes(kind, &value.to_be_bytes());
    }

    /// A big-endian `u32` attribute (nf_tables' integers).
    pub fn be_u32(&mut self, kind: u16, value: u32) {
        self.bytes(kind, &value.to_be_bytes());
    }

    /// A big-endian `u64` attribute.
    pub fn be_u64(&mut self, kind: u16, value: u64) {
        self.bytes(kind, &value.to_be_bytes());
    }

    /// A NUL-terminated string (`NLA_NUL_STRING`, as libnftnl and iproute2
    /// send names).
    pub fn c_str(&mut self, kind: u16, value: &str) {
        let mut payload = Vec::with_capacity(value.len().saturating_add(1));
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.bytes(kind, &payload);
    }

    /// A nested attribute (`NLA_F_NESTED` set): what `body` writes is its
    /// payload.
    pub fn nested(&mut self, kind: u16, body: impl FnOnce(&mut AttrWriter<'_>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        body(&mut AttrWriter {
            buf: self.buf,
            error: self.error,
        });
        let len = self.buf.len().saturating_sub(start);
        match u16::try_from(len) {
            Ok(nla_len) => patch(self.buf, start, &nla_len.to_ne_bytes()),
            Err(_) => self.fail(WireError::TooLarge {
                what: "nested attribute",
                len,
            }),
        }
    }

    /// Attributes encoded elsewhere (by [`attributes`], or taken from a
    /// reply), appended as they are and padded.
    pub fn raw(&mut self, encoded: &[u8]) {
        self.buf.extend_from_slice(encoded);
        pad(self.buf);
    }
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(align(buf.len()), 0);
}

/// Overwrites `value.len()` bytes at `at`; callers patch only what they
/// wrote themselves, so the range is always inside the buffer.
fn patch(buf: &mut [u8], at: usize, value: &[u8]) {
    if let Some(slot) = buf.get_mut(at..at.saturating_add(value.len())) {
        slot.copy_from_slice(value);
    }
}
