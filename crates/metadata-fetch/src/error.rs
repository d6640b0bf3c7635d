//! The crate's one error type.

use std::fmt;

/// Why a metadata value was not returned.
///
/// Every variant names the key. None carries any part of a value: reasons about
/// the body are the fixed [`ValueProblem`] list, and transport reasons come from
/// the HTTP stack, which never sees a body it has not been asked to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The key name is not a valid metadata key; nothing was sent.
    #[error(
        "metadata key {key:?} is not a valid key name (1 to 64 ASCII letters, digits, '-' or '_')"
    )]
    InvalidKey {
        /// The refused key.
        key: String,
    },
    /// The client configuration is unusable; nothing was sent.
    #[error("metadata client configuration: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered 404: the instance has no such attribute.
    #[error("metadata key {0:?} is missing (HTTP 404)")]
    Missing(String),
    /// The reply does not come from the metadata server: its
    /// `Metadata-Flavor` header is absent, repeated or not `Google`.
    #[error("metadata key {key:?}: reply not from the metadata server: {reason}")]
    NotMetadataServer {
        /// The key asked for.
        key: String,
        /// Which check failed.
        reason: &'static str,
    },
    /// The server answered with a redirect; redirects are never followed.
    #[error("metadata key {key:?}: redirect (HTTP {status}) refused")]
    Redirect {
        /// The key asked for.
        key: String,
        /// The 3xx status.
        status: u16,
    },
    /// The server answered 5xx. Retried until attempts or deadline run out.
    #[error("metadata key {key:?}: server error (HTTP {status})")]
    ServerError {
        /// The key asked for.
        key: String,
        /// The 5xx status.
        status: u16,
    },
    /// The server answered a status that is neither 200, 404, 3xx nor 5xx.
    #[error("metadata key {key:?}: unexpected HTTP status {status}")]
    Status {
        /// The key asked for.
        key: String,
        /// The status.
        status: u16,
    },
    /// The reply was from the metadata server, but the value is unusable.
    #[error("metadata key {key:?}: value rejected: {problem}")]
    BadValue {
        /// The key asked for.
        key: String,
        /// What is wrong with the value.
        problem: ValueProblem,
    },
    /// The request did not complete: connection refused or reset, timed out,
    /// malformed HTTP. Retried until attempts or deadline run out.
    #[error("metadata key {key:?}: {reason}")]
    Transport {
        /// The key asked for.
        key: String,
        /// The HTTP stack's description, outermost cause first.
        reason: String,
    },
    /// Every attempt failed with a retryable error (5xx or transport), or the
    /// overall deadline ran out.
    #[error("metadata key {key:?}: gave up after {attempts} attempt(s) in {elapsed_ms} ms; last error: {last}")]
    GaveUp {
        /// The key asked for.
        key: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent, retries and backoff included.
        elapsed_ms: u64,
        /// The last attempt's error.
        last: Box<FetchError>,
    },
}

impl FetchError {
    /// Whether another attempt may succeed: a 5xx reply or a transport error.
    /// Every other answer is the server's final word.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ServerError { .. } | Self::Transport { .. })
    }
}

/// What is wrong with a reply's body. A fixed list, so an error can never
/// quote the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueProblem {
    /// No bytes.
    Empty,
    /// More than [`crate::MAX_VALUE_LEN`] bytes (by `Content-Length` or by
    /// what was read).
    TooLarge,
    /// `Content-Length` is malformed or differs from the body's length.
    LengthMismatch,
    /// Not valid UTF-8.
    NotUtf8,
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty"),
            Self::TooLarge => write!(f, "larger than {} bytes", crate::MAX_VALUE_LEN),
            Self::LengthMismatch => {
                f.write_str("Content-Length malformed or not the body's length")
            }
            Self::NotUtf8 => f.write_str("not valid UTF-8"),
        }
    }
}
