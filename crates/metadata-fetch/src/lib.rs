//! Fetch the appliance's boot secrets from the cloud metadata server.
//!
//! This crate owns one concern: asking the GCE metadata server for the value of
//! an instance attribute (`redis-admin-pass`, `redis-visitor-pass`, ...) and
//! handing it back as a [`Secret`], or refusing with a [`FetchError`] that says
//! why. Callers go through the small [`MetadataSource`] trait; [`GceMetadata`]
//! is the real HTTP client, and a recording fake (`fake::FakeMetadata`) sits
//! behind the `fake` feature for other crates' tests. A caller that learns
//! where the server is only from the spec, and must be rid of the client
//! (and its thread) before it forks, opens one through a [`Connector`]
//! ([`GceConnector`] for real) and drops it when done.
//!
//! It deliberately does not: follow redirects, use a proxy, speak TLS or resolve
//! names (the server is reached by IP), cache values, hash them, or write them
//! anywhere. What a caller does with a value is its own business.
//!
//! Invariants:
//! - A reply is accepted only if it carries exactly one `Metadata-Flavor: Google`
//!   header, status 200, and a body of 1 to [`MAX_VALUE_LEN`] bytes of UTF-8;
//!   that check is the pure function [`check_reply`], fuzzed.
//! - No more than `MAX_VALUE_LEN + 1` body bytes are ever read from a reply.
//! - One fetch finishes within its configured overall deadline, retries
//!   included.
//! - A value lives only in a [`Secret`] (zeroized on drop, never printed); no
//!   error's text or `Debug` output contains a value.
//! - A key name is validated before any URL is built from it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod gce;
mod reply;
mod secret;

pub use error::{FetchError, ValueProblem};
pub use gce::{GceConfig, GceConnector, GceMetadata, DEFAULT_BASE_URL};
pub use reply::{check_reply, Reply, MAX_VALUE_LEN};
pub use secret::Secret;

/// Where boot secrets come from.
///
/// One method: the boot sequence asks for each key it needs and halts on the
/// first error. Implementations validate `key` with
/// [`appliance_spec::is_valid_metadata_key`] and answer
/// [`FetchError::InvalidKey`] otherwise.
pub trait MetadataSource {
    /// The value of metadata attribute `key`.
    ///
    /// # Errors
    ///
    /// [`FetchError::Missing`] when the server says the key does not exist;
    /// another variant for anything else that is not a well-formed value.
    fn fetch(&self, key: &str) -> Result<Secret, FetchError>;
}

/// Opens a [`MetadataSource`] for the spec's `[metadata]` table.
///
/// The boot sequence holds no client until its first fetch (the server's
/// address is in the spec it reads at boot) and drops the one it opened
/// before it forks: a client may run a thread ([`GceMetadata`] does), and
/// dropping it must end that thread.
pub trait Connector {
    /// A source configured by `metadata`. Sends nothing.
    ///
    /// # Errors
    ///
    /// [`FetchError::Config`] when `metadata` is unusable or the client
    /// cannot be built.
    fn connect(
        &self,
        metadata: &appliance_spec::Metadata,
    ) -> Result<Box<dyn MetadataSource + '_>, FetchError>;
}

/// Refuses a key that could not safely be appended to a URL.
fn check_key(key: &str) -> Result<(), FetchError> {
    if appliance_spec::is_valid_metadata_key(key) {
        Ok(())
    } else {
        Err(FetchError::InvalidKey {
            key: key.to_owned(),
        })
    }
}
