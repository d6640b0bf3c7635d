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
//! - A [`Spec`] exists only after validation: [`Spec::from_toml_str`] is the
//!   one way to make one ([`SpecBuilder::build`] edits the TOML document and
//!   goes through the same parse and checks). Neither `Spec` nor its tables
//!   ([`Server`], [`Metadata`], [`User`], [`Visitor`], [`Firewall`],
//!   [`Limits`], [`Governor`], [`Guard`]) has a public field, a public
//!   constructor or a `&mut` method, and the tables are reached only through
//!   `&` from a `Spec`. So holding a `Spec`, or any table of one, means it
//!   passed validation: names are safe to place in an ACL file, paths are
//!   absolute, the server uid is not 0. A clone or copy is a copy of a
//!   validated value, and nothing can change it.
//! - Tests that need another spec build it through [`SpecBuilder`] (or from
//!   TOML text); an invalid variant gets the validation error, never a
//!   `Spec`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod guard;
mod raw;
mod validate;

pub use builder::SpecBuilder;
pub use guard::Guard;

pub use validate::{is_valid_metadata_key, is_valid_stream_key, is_valid_user_name};

use std::fmt;

/// The seed-000 reference deployment, exactly as shipped in
/// `image/appliance.toml`. Tests across the workspace use it.
pub const REFERENCE_TOML: &str = include_str!("../../../image/appliance.toml");

/// A validated appliance spec.
///
/// Made only by validation ([`Spec::from_toml_str`], [`SpecBuilder::build`]);
/// read through its accessors, never changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub(crate) name: String,
    pub(crate) server: Server,
    pub(crate) metadata: Metadata,
    pub(crate) admin: User,
    pub(crate) visitors: Vec<Visitor>,
    pub(crate) firewall: Firewall,
    pub(crate) limits: Limits,
    pub(crate) governor: Governor,
    pub(crate) guard: Guard,
}

/// The server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub(crate) binary: String,
    pub(crate) config: String,
    pub(crate) acl_file: String,
    pub(crate) data_dir: String,
    pub(crate) port: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) forks: Forks,
}

impl Server {
    /// Absolute path of the server binary inside the image.
    pub fn binary(&self) -> &str {
        &self.binary
    }

    /// Absolute path of the server's config file inside the image.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Absolute path where init writes the ACL file at boot.
    pub fn acl_file(&self) -> &str {
        &self.acl_file
    }

    /// Absolute path of the data directory (the data disk's mount point).
    pub fn data_dir(&self) -> &str {
        &self.data_dir
    }

    /// TCP port the server listens on (not 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Non-zero uid the server runs as.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Non-zero gid the server runs as.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Whether the server may fork (BGSAVE and AOF-rewrite children).
    pub fn forks(&self) -> Forks {
        self.forks
    }
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
    pub(crate) base_url: String,
    pub(crate) deadline_ms: u32,
    pub(crate) attempts: u32,
}

impl Metadata {
    /// Base URL; a key's URL is this followed by the key. Plain `http://`,
    /// ends with `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Overall deadline for fetching one key, retries included, in ms (not 0).
    pub fn deadline_ms(&self) -> u32 {
        self.deadline_ms
    }

    /// Attempts per key within the deadline (1-20).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// A server user with a password from the metadata server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: String,
    pub(crate) secret: String,
}

impl User {
    /// The user name (see [`is_valid_user_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The metadata key holding this user's password (see
    /// [`is_valid_metadata_key`]).
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// An append-only user: `PING` and `XADD` to one stream, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    pub(crate) user: User,
    pub(crate) stream: String,
}

impl Visitor {
    /// Name and password source.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The one stream key this user may append to (see
    /// [`is_valid_stream_key`]).
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

/// Firewall knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firewall {
    pub(crate) icmp_echo: bool,
    pub(crate) conn_rate_per_source: u32,
    pub(crate) conn_burst_per_source: u32,
    pub(crate) conn_max_per_source: u32,
    pub(crate) conn_max_total: u32,
    pub(crate) meter_size: u32,
}

impl Firewall {
    /// Answer ICMP echo-request.
    pub fn icmp_echo(&self) -> bool {
        self.icmp_echo
    }

    /// New connections per second one source may open to the server port
    /// (not 0).
    pub fn conn_rate_per_source(&self) -> u32 {
        self.conn_rate_per_source
    }

    /// Burst allowed above that rate (at least the rate).
    pub fn conn_burst_per_source(&self) -> u32 {
        self.conn_burst_per_source
    }

    /// Concurrent connections one source may hold to the server port; its
    /// next SYN is dropped silently. Below `limits.maxclients`.
    pub fn conn_max_per_source(&self) -> u32 {
        self.conn_max_per_source
    }

    /// Concurrent connections all sources together may hold to the server
    /// port. At most [`Firewall::meter_size`].
    pub fn conn_max_total(&self) -> u32 {
        self.conn_max_total
    }

    /// Sources each per-source meter (rate and count) remembers at once. A
    /// new source that finds a meter full is not admitted (fail closed), so
    /// it is at least `limits.maxclients`; at most 262144 to bound kernel
    /// memory.
    pub fn meter_size(&self) -> u32 {
        self.meter_size
    }
}

/// Resource bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub(crate) maxclients: u32,
    pub(crate) timeout: u32,
    pub(crate) proto_max_bulk_len: u64,
    pub(crate) client_query_buffer_limit: u64,
    pub(crate) xadd_max_pairs: u32,
    pub(crate) xadd_max_bytes: u32,
}

impl Limits {
    /// `maxclients` (not 0).
    pub fn maxclients(&self) -> u32 {
        self.maxclients
    }

    /// `timeout`, seconds an idle client is kept (not 0).
    pub fn timeout(&self) -> u32 {
        self.timeout
    }

    /// `proto-max-bulk-len`, bytes (at least 1 MiB).
    pub fn proto_max_bulk_len(&self) -> u64 {
        self.proto_max_bulk_len
    }

    /// `client-query-buffer-limit`, bytes (at least `proto_max_bulk_len`).
    pub fn client_query_buffer_limit(&self) -> u64 {
        self.client_query_buffer_limit
    }

    /// Field/value pairs one append-only `XADD` may carry (1-1024).
    pub fn xadd_max_pairs(&self) -> u32 {
        self.xadd_max_pairs
    }

    /// Total bytes of one append-only `XADD`'s fields and values (2 to
    /// `proto_max_bulk_len`).
    pub fn xadd_max_bytes(&self) -> u32 {
        self.xadd_max_bytes
    }
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
    pub(crate) rescan_interval_ms: u32,
    pub(crate) on_event_loss: OnEventLoss,
    pub(crate) max_child_seconds: u32,
}

impl Governor {
    /// Interval of the full `/proc` rescan, ms (10-60000).
    pub fn rescan_interval_ms(&self) -> u32 {
        self.rescan_interval_ms
    }

    /// Lost-event policy.
    pub fn on_event_loss(&self) -> OnEventLoss {
        self.on_event_loss
    }

    /// Seconds a server child (BGSAVE, AOF rewrite) may live before the
    /// governor halts the machine (with [`Forks::Bounded`]; unused with
    /// [`Forks::Never`]). 1 to 86400.
    pub fn max_child_seconds(&self) -> u32 {
        self.max_child_seconds
    }
}

/// Why a spec was rejected.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A [`SpecBuilder`] edit could not be made: the path leads through a
    /// value that is not a table, or to an array entry that does not exist.
    /// The spec itself was never checked.
    #[error("cannot edit spec field `{path}`: {reason}")]
    Edit {
        /// The path as given to the builder.
        path: String,
        /// Why it cannot be edited.
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
            SpecError::Syntax(_) | SpecError::Edit { .. } => None,
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

    /// The appliance's name (also its hostname).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server process: where it lives in the image, who it runs as.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Where the boot-time secrets come from.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The one admin user.
    pub fn admin(&self) -> &User {
        &self.admin
    }

    /// The append-only users (visitors), in file order.
    pub fn visitors(&self) -> &[Visitor] {
        &self.visitors
    }

    /// Every user, admin first, then the visitors in file order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        std::iter::once(&self.admin).chain(self.visitors.iter().map(|v| &v.user))
    }

    /// Firewall knobs beyond "the server port and nothing else".
    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    /// Resource bounds for the server and the stream guard.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Governor tuning.
    pub fn governor(&self) -> &Governor {
        &self.governor
    }

    /// What stream-guard enforces on the public port.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}
