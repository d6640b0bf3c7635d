//! The pure check of one metadata reply: plain data in, a [`Secret`] or a
//! [`FetchError`] out. No I/O, so it is unit-tested, property-tested and
//! fuzzed on its own; the HTTP client only gathers the data.

use crate::{FetchError, Secret, ValueProblem};

/// The largest value accepted, in bytes. GCE allows far larger attributes, but
/// a password has no business being this long, and the bound caps what a
/// hostile reply can make PID 1 read.
pub const MAX_VALUE_LEN: usize = 4096;

const FLAVOR_HEADER: &[u8] = b"metadata-flavor";
const FLAVOR_VALUE: &[u8] = b"Google";
const CONTENT_LENGTH_HEADER: &[u8] = b"content-length";

/// One HTTP reply, as plain data.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// The status code.
    pub status: u16,
    /// Header names and values in arrival order; names match ASCII
    /// case-insensitively.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The body bytes read, at most [`MAX_VALUE_LEN`]` + 1` of them (one more
    /// than allowed is enough to know the body is too large).
    pub body: &'a [u8],
}

/// Accepts `reply` to a request for `key` as a value, or says why not.
///
/// Checks, in order: a 5xx status ([`FetchError::ServerError`], retryable);
/// exactly one `Metadata-Flavor` header whose value is exactly `Google`
/// ([`FetchError::NotMetadataServer`]); 3xx ([`FetchError::Redirect`]); 404
/// ([`FetchError::Missing`]); any other status but 200
/// ([`FetchError::Status`]); then the body ([`FetchError::BadValue`]): at most
/// [`MAX_VALUE_LEN`] bytes by `Content-Length` and by count, `Content-Length`
/// (if present) equal to the body's length, non-empty, UTF-8.
///
/// The body is examined only for a 200 reply, so the caller need not read it
/// for any other status, nor when `Content-Length` already says it is too
/// large.
///
/// # Errors
///
/// As listed above. No error carries any byte of the body.
pub fn check_reply(key: &str, reply: &Reply<'_>) -> Result<Secret, FetchError> {
    let status = reply.status;
    if (500..=599).contains(&status) {
        return Err(FetchError::ServerError {
            key: key.to_owned(),
            status,
        });
    }
    check_flavor(reply.headers).map_err(|reason| FetchError::NotMetadataServer {
        key: key.to_owned(),
        reason,
    })?;
    match status {
        200 => {}
        300..=399 => {
            return Err(FetchError::Redirect {
                key: key.to_owned(),
                status,
            })
        }
        404 => return Err(FetchError::Missing(key.to_owned())),
        _ => {
            return Err(FetchError::Status {
                key: key.to_owned(),
                status,
            })
        }
    }
    let bad = |problem| FetchError::BadValue {
        key: key.to_owned(),
        problem,
    };
    check_body(reply.headers, reply.body).map_err(bad)?;
    Ok(Secret::new(reply.body))
}

fn headers_named<'h>(
    headers: &'h [(&'h [u8], &'h [u8])],
    name: &'static [u8],
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn check_flavor(headers: &[(&[u8], &[u8])]) -> Result<(), &'static str> {
    let mut values = headers_named(headers, FLAVOR_HEADER);
    match (values.next(), values.next()) {
        (None, _) => Err("no Metadata-Flavor header"),
        (Some(_), Some(_)) => Err("more than one Metadata-Flavor header"),
        (Some(v), None) if v == FLAVOR_VALUE => Ok(()),
        (Some(_), None) => Err("Metadata-Flavor is not \"Google\""),
    }
}

/// `Content-Length` as a number, if it is one. Only ASCII digits: `u64`'s own
/// parser would also take a leading `+`.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// What a reply's `Content-Length` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declared {
    /// No `Content-Length` header (e.g. a chunked body).
    Nothing,
    /// One length, or several equal ones.
    Length(u64),
    /// Not a number, or two that disagree.
    Malformed,
}

pub(crate) fn declared_length(headers: &[(&[u8], &[u8])]) -> Declared {
    let mut declared = Declared::Nothing;
    for value in headers_named(headers, CONTENT_LENGTH_HEADER) {
        let Some(len) = parse_length(value) else {
            return Declared::Malformed;
        };
        match declared {
            Declared::Length(earlier) if earlier != len => return Declared::Malformed,
            _ => declared = Declared::Length(len),
        }
    }
    declared
}

/// Whether a body of `declared` length may be read at all.
pub(crate) fn declared_fits(declared: Declared) -> bool {
    match declared {
        Declared::Nothing => true,
        // usize -> u64 never truncates on the targets we build for.
        Declared::Length(len) => len <= MAX_VALUE_LEN as u64,
        Declared::Malformed => false,
    }
}

fn check_body(headers: &[(&[u8], &[u8])], body: &[u8]) -> Result<(), ValueProblem> {
    let declared = declared_length(headers);
    match declared {
        Declared::Malformed => return Err(ValueProblem::LengthMismatch),
        Declared::Length(_) if !declared_fits(declared) => return Err(ValueProblem::TooLarge),
        _ => {}
    }
    if body.len() > MAX_VALUE_LEN {
        return Err(ValueProblem::TooLarge);
    }
    if let Declared::Length(len) = declared {
        if len != body.len() as u64 {
            return Err(ValueProblem::LengthMismatch);
        }
    }
    if body.is_empty() {
        return Err(ValueProblem::Empty);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ValueProblem::NotUtf8);
    }
    Ok(())
}
