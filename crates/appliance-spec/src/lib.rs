//! The appliance spec: `image/appliance.toml` parsed and validated into plain
//! data before anything else looks at it.
//!
//! This crate owns one concern: turning the operator's declaration into a
//! [`Spec`] whose every field is already known to be well formed. It does no
//! I/O (callers hand it the file's text) and knows nothing of how the fields
//! are used: renderers, the boot sequence and the governor each read the parts
//! they need.
//!
//! Invariants:
//! - Unknown fields anywhere in the file are an error, never ignored.
//! - Every validation error names the field (as a TOML path) and the bad value.
//! - A [`Spec`] can only be built through [`Spec::from_toml_str`], so holding one
//!   means it passed validation: names are safe to place in an ACL file, paths
//!   are absolute, the server uid is not 0.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod guard;
mod raw;
mod validate;

pub use guard::Guard;

pub use validate::{is_valid_metadata_key, is_valid_stream_key, is_valid_user_name};

use std::fmt;

/// The seed-000 reference deployment, exactly as shipped in
/// `image/appliance.toml`. Tests across the workspace use it.
pub const REFERENCE_TOML: &str = include_str!("../../../image/appliance.toml");

/// A validated appliance spec.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Spec {
    /// The appliance's name (also its hostname).
    pub name: String,
    /// The server process: where it lives in the image, who it runs as.
    pub server: Server,
    /// Where the boot-time secrets come from.
    pub metadata: Metadata,
    /// The one admin user.
    pub admin: User,
    /// The append-only users (visitors), in file order.
    pub visitors: Vec<Visitor>,
    /// Firewall knobs beyond "the server port and nothing else".
    pub firewall: Firewall,
    /// Resource bounds for the server and the stream guard.
    pub limits: Limits,
    /// Governor tuning.
    pub governor: Governor,
    /// What stream-guard enforces on the public port.
    pub guard: Guard,
}

/// The server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Absolute path of the server binary inside the image.
    pub binary: String,
    /// Absolute path of the server's config file inside the image.
    pub config: String,
    /// Absolute path where init writes the ACL file at boot.
    pub acl_file: String,
    /// Absolute path of the data directory (the data disk's mount point).
    pub data_dir: String,
    /// TCP port the server listens on.
    pub port: u16,
    /// Non-zero uid the server runs as.
    pub uid: u32,
    /// Non-zero gid the server runs as.
    pub gid: u32,
    /// Whether the server may fork (BGSAVE and AOF-rewrite children).
    pub forks: Forks,
}

/// Whether the server may fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forks {
    /// One plain fork of the server at a time (BGSAVE, AOF rewrite), living
    /// at most [`Governor::max_child_seconds`]; the admin may `BGSAVE` and
    /// `BGREWRITEAOF`, and the server rewrites its AOF as it grows.
    Bounded,
    /// The server never forks: automatic AOF rewrite off, `BGSAVE` and
    /// `BGREWRITEAOF` refused to everyone, and any new process halts the
    /// machine ("two processes, forever"). The AOF is then never compacted
    /// while the machine runs.
    Never,
}

/// The cloud metadata server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Base URL; a key's URL is this followed by the key. Plain `http://`,
    /// ends with `/`.
    pub base_url: String,
    /// Overall deadline for fetching one key, retries included, in ms.
    pub deadline_ms: u32,
    /// Attempts per key within the deadline (at least 1).
    pub attempts: u32,
}

/// A server user with a password from the metadata server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (validated: see [`is_valid_user_name`]).
    pub name: String,
    /// The metadata key holding this user's password.
    pub secret: String,
}

/// An append-only user: `PING` and `XADD` to one stream, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    /// Name and password source.
    pub user: User,
    /// The one stream key this user may append to (see [`is_valid_stream_key`]).
    pub stream: String,
}

/// Firewall knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firewall {
    /// Answer ICMP echo-request.
    pub icmp_echo: bool,
    /// New connections per second one source may open to the server port.
    pub conn_rate_per_source: u32,
    /// Burst allowed above that rate.
    pub conn_burst_per_source: u32,
    /// Concurrent connections one source may hold to the server port; its
    /// next SYN is dropped silently. Below `limits.maxclients`.
    pub conn_max_per_source: u32,
    /// Concurrent connections all sources together may hold to the server
    /// port. At most `limits.maxclients`.
    pub conn_max_total: u32,
    /// Sources each per-source meter (rate and count) remembers at once. A
    /// new source that finds a meter full is not admitted (fail closed), so
    /// it is at least `limits.maxclients`; at most 262144 to bound kernel
    /// memory.
    pub meter_size: u32,
}

/// Resource bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `maxclients`.
    pub maxclients: u32,
    /// `timeout`, seconds an idle client is kept.
    pub timeout: u32,
    /// `proto-max-bulk-len`, bytes.
    pub proto_max_bulk_len: u64,
    /// `client-query-buffer-limit`, bytes.
    pub client_query_buffer_limit: u64,
    /// Field/value pairs one append-only `XADD` may carry.
    pub xadd_max_pairs: u32,
    /// Total bytes of one append-only `XADD`'s fields and values.
    pub xadd_max_bytes: u32,
}

/// What the governor does when the kernel reports lost process events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEventLoss {
    /// Halt the machine (fail closed).
    Halt,
    /// Rescan `/proc` and carry on.
    Rescan,
}

/// Governor tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Governor {
    /// Interval of the full `/proc` rescan, ms.
    pub rescan_interval_ms: u32,
    /// Lost-event policy.
    pub on_event_loss: OnEventLoss,
    /// Seconds a server child (BGSAVE, AOF rewrite) may live before the
    /// governor halts the machine (with [`Forks::Bounded`]; unused with
    /// [`Forks::Never`]).
    pub max_child_seconds: u32,
}

/// Why a spec was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The text is not TOML, has a field of the wrong type, misses a required
    /// field, or has an unknown one. The message names it.
    #[error("spec is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    /// A field parsed but its value is not acceptable.
    #[error("spec field `{field}` = {value}: {reason}")]
    Invalid {
        /// TOML path of the field, e.g. `users[1].name`.
        field: String,
        /// The offending value, quoted and escaped for display.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl SpecError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl fmt::Debug,
        reason: &'static str,
    ) -> Self {
        SpecError::Invalid {
            field: field.into(),
            value: format!("{value:?}"),
            reason,
        }
    }

    /// The TOML path of the rejected field, when the error is about one value.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { field, .. } => Some(field),
            SpecError::Syntax(_) => None,
        }
    }
}

impl Spec {
    /// Parses and validates a spec.
    pub fn from_toml_str(text: &str) -> Result<Spec, SpecError> {
        let raw: raw::RawSpec = toml::from_str(text)?;
        validate::validate(raw)
    }

    /// The seed-000 reference deployment ([`REFERENCE_TOML`]).
    pub fn reference() -> Result<Spec, SpecError> {
        Spec::from_toml_str(REFERENCE_TOML)
    }

    /// Every user, admin first, then the visitors in file order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        std::iter::once(&self.admin).chain(self.visitors.iter().map(|v| &v.user))
    }
}
