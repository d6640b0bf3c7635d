//! The one type a fetched value lives in.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value: owned bytes, overwritten with zeros when dropped.
///
/// There is no `Display`, no `Clone`, and `Debug` prints only the length, so a
/// value cannot slip into a log line or an error by accident; the only way to
/// the bytes is the explicit [`Secret::expose`] (or [`Secret::as_str`]).
///
/// Zeroizing covers this buffer only: copies made elsewhere (the HTTP stack's
/// own buffers, a caller's `to_vec()`) are beyond its reach.
pub struct Secret {
    bytes: Vec<u8>,
}

impl Secret {
    /// Takes ownership of `bytes` (a `Vec<u8>` or `String` moves without a
    /// copy).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
        }
    }

    /// The value's bytes. Named so that every use stands out in review.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The value as text, if it is UTF-8 (a value from [`crate::check_reply`]
    /// always is).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// Shortens the value to its first `len` bytes (no effect if it is not
    /// longer), overwriting the removed bytes with zeros first: no copy is
    /// made, and nothing of the tail is left in the buffer.
    pub fn truncate(&mut self, len: usize) {
        if let Some(tail) = self.bytes.get_mut(len..) {
            tail.zeroize();
        }
        self.bytes.truncate(len);
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Zeroes the whole allocation, spare capacity included.
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted, {} bytes>)", self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_length_not_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted, 7 bytes>)");
        assert_eq!(format!("{secret:#?}"), "Secret(<redacted, 7 bytes>)");
    }

    #[test]
    fn exposes_exact_bytes() {
        let secret = Secret::new(String::from("pa ss\n"));
        assert_eq!(secret.expose(), b"pa ss\n");
        assert_eq!(secret.as_str(), Some("pa ss\n"));
        assert_eq!(secret.len(), 6);
        assert!(!secret.is_empty());
        assert_eq!(Secret::new(vec![0xff]).as_str(), None);
    }

    #[test]
    fn truncate_shortens_in_place() {
        let mut secret = Secret::new(String::from("pass\r\n"));
        let before = secret.expose().as_ptr();
        secret.truncate(4);
        assert_eq!(secret.expose(), b"pass");
        assert_eq!(
            secret.expose().as_ptr(),
            before,
            "no reallocation, so no copy"
        );
        let mut other = Secret::new("ab");
        other.truncate(5);
        assert_eq!(other.expose(), b"ab");
        other.truncate(0);
        assert!(other.is_empty());
    }
}
