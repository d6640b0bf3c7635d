//! The real source: GCE's metadata server over plain HTTP, through reqwest's
//! blocking client. Portable code (no OS calls of its own), so it needs no
//! `cfg(target_os)` gate.

use std::error::Error as StdError;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::redirect::Policy;
use reqwest::Url;
use zeroize::Zeroizing;

use crate::reply::{declared_fits, declared_length};
use crate::{
    check_key, check_reply, Connector, FetchError, MetadataSource, Reply, Secret, MAX_VALUE_LEN,
};

/// Where GCE serves an instance's custom attributes.
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254/computeMetadata/v1/instance/attributes/";

/// The pause after the first failed attempt; it doubles after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A boot that waits longer than this for metadata is broken anyway; the bound
/// keeps `Instant + deadline` far from overflow.
const MAX_DEADLINE: Duration = Duration::from_secs(3600);

/// How to reach the metadata server and how long to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceConfig {
    /// Plain `http://` URL ending in `/`; a key's URL is this followed by the
    /// key.
    pub base_url: String,
    /// Overall time for one key, every attempt and pause included.
    pub deadline: Duration,
    /// Attempts per key (at least 1); only 5xx replies and transport errors
    /// are retried.
    pub attempts: u32,
}

impl Default for GceConfig {
    /// GCE's attribute URL, 20 s, 5 attempts: the seed-000 values.
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            deadline: Duration::from_secs(20),
            attempts: 5,
        }
    }
}

impl GceConfig {
    /// The `[metadata]` table of a validated spec.
    pub fn from_spec(metadata: &appliance_spec::Metadata) -> Self {
        Self {
            base_url: metadata.base_url().to_owned(),
            deadline: Duration::from_millis(u64::from(metadata.deadline_ms())),
            attempts: metadata.attempts(),
        }
    }
}

/// The GCE metadata server as a [`MetadataSource`].
///
/// Holding one means holding reqwest's runtime thread. Drop it before the
/// process forks: dropping joins that thread, so the process is single-threaded
/// again afterwards (tested in `tests/threads.rs`).
#[derive(Debug)]
pub struct GceMetadata {
    client: Client,
    base_url: Url,
    deadline: Duration,
    attempts: u32,
}

impl GceMetadata {
    /// Checks `config` and builds the client (which starts its runtime
    /// thread). Sends nothing.
    ///
    /// # Errors
    ///
    /// [`FetchError::Config`] for a base URL that is not plain `http://` with a
    /// host and a path ending in `/` (no credentials, query or fragment), zero
    /// attempts, a zero deadline or one over an hour, or a client that cannot
    /// be built.
    pub fn new(config: GceConfig) -> Result<Self, FetchError> {
        let base_url = parse_base_url(&config.base_url)?;
        if config.attempts == 0 {
            return Err(config_error("attempts must be at least 1"));
        }
        if config.deadline.is_zero() || config.deadline > MAX_DEADLINE {
            return Err(config_error("deadline must be between 1 ms and 1 hour"));
        }
        let client = Client::builder()
            .redirect(Policy::none())
            // HTTP_PROXY and friends must not divert a request for secrets.
            .no_proxy()
            // A fresh connection per attempt: nothing half-read is ever reused.
            .pool_max_idle_per_host(0)
            .referer(false)
            .timeout(config.deadline)
            .build()
            .map_err(|e| config_error(&format!("building the HTTP client: {}", describe(&e))))?;
        Ok(Self {
            client,
            base_url,
            deadline: config.deadline,
            attempts: config.attempts,
        })
    }

    /// One request, its timeout clipped to what is left before `deadline`.
    fn attempt(&self, key: &str, url: &Url, deadline: Instant) -> Result<Secret, FetchError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(transport(
                key,
                "deadline passed before the request".to_owned(),
            ));
        }
        let mut response = self
            .client
            .get(url.clone())
            .header("Metadata-Flavor", "Google")
            .timeout(left)
            .send()
            .map_err(|e| transport(key, describe(&e)))?;
        let status = response.status().as_u16();
        let header_map = response.headers().clone();
        let headers: Vec<(&[u8], &[u8])> = header_map
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .collect();
        let mut body = Zeroizing::new(Vec::new());
        // Only a 200 reply's body matters, and one declared too large is
        // refused unread.
        if status == 200 && declared_fits(declared_length(&headers)) {
            read_limited(&mut response, deadline, &mut body)
                .map_err(|e| transport(key, format!("reading the body: {}", describe(&e))))?;
        }
        // Closes the connection now: with no pool, an unread body is discarded
        // rather than drained.
        drop(response);
        check_reply(
            key,
            &Reply {
                status,
                headers: &headers,
                body: &body,
            },
        )
    }
}

/// Opens a [`GceMetadata`] configured by the spec's `[metadata]` table
/// ([`GceConfig::from_spec`]): the real [`Connector`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GceConnector;

impl Connector for GceConnector {
    fn connect(
        &self,
        metadata: &appliance_spec::Metadata,
    ) -> Result<Box<dyn MetadataSource + '_>, FetchError> {
        Ok(Box::new(GceMetadata::new(GceConfig::from_spec(metadata))?))
    }
}

impl MetadataSource for GceMetadata {
    fn fetch(&self, key: &str) -> Result<Secret, FetchError> {
        check_key(key)?;
        let url = Url::parse(&format!("{}{key}", self.base_url.as_str()))
            .map_err(|e| config_error(&format!("URL for key {key:?}: {e}")))?;
        let start = Instant::now();
        let deadline = start + self.deadline;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.attempt(key, &url, deadline) {
                Ok(secret) => return Ok(secret),
                Err(error) if !error.is_retryable() => return Err(error),
                Err(error) => error,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            // No point pausing if no attempt could start after the pause.
            if attempts >= self.attempts || left <= backoff {
                return Err(FetchError::GaveUp {
                    key: key.to_owned(),
                    attempts,
                    elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    last: Box::new(error),
                });
            }
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
}

fn config_error(reason: &str) -> FetchError {
    FetchError::Config {
        reason: reason.to_owned(),
    }
}

fn transport(key: &str, reason: String) -> FetchError {
    FetchError::Transport {
        key: key.to_owned(),
        reason,
    }
}

fn parse_base_url(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text).map_err(|e| config_error(&format!("base URL {text:?}: {e}")))?;
    let plain = url.scheme() == "http"
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path().ends_with('/');
    if plain {
        Ok(url)
    } else {
        Err(config_error(&format!(
            "base URL {text:?} must be plain http://host/path/ (no credentials, query or fragment, ending in '/')"
        )))
    }
}

/// The error and its causes on one line, outermost first.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads at most `MAX_VALUE_LEN + 1` bytes into `body` (pre-sized, so the
/// value is never copied by a reallocation), stopping at `deadline`.
fn read_limited(reader: &mut impl Read, deadline: Instant, body: &mut Vec<u8>) -> io::Result<()> {
    let limit = MAX_VALUE_LEN + 1;
    body.clear();
    body.resize(limit, 0);
    let mut limited = reader.take(limit as u64);
    let mut filled = 0;
    let result = loop {
        if Instant::now() >= deadline {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed while reading",
            ));
        }
        let Some(rest) = body.get_mut(filled..) else {
            break Ok(());
        };
        match limited.read(rest) {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    body.truncate(filled);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        let cases: &[(&str, u32, u64, bool)] = &[
            (DEFAULT_BASE_URL, 5, 20_000, true),
            ("http://127.0.0.1:8080/a/", 1, 1, true),
            ("https://169.254.169.254/a/", 5, 20_000, false),
            ("http://169.254.169.254/a", 5, 20_000, false),
            ("http://user:pw@169.254.169.254/a/", 5, 20_000, false),
            ("http://169.254.169.254/a/?x=1", 5, 20_000, false),
            ("http://169.254.169.254/a/#f", 5, 20_000, false),
            ("169.254.169.254/a/", 5, 20_000, false),
            ("file:///etc/", 5, 20_000, false),
            (DEFAULT_BASE_URL, 0, 20_000, false),
            (DEFAULT_BASE_URL, 5, 0, false),
            (DEFAULT_BASE_URL, 5, 3_600_001, false),
        ];
        for &(base_url, attempts, deadline_ms, ok) in cases {
            let config = GceConfig {
                base_url: base_url.to_owned(),
                deadline: Duration::from_millis(deadline_ms),
                attempts,
            };
            let result = GceMetadata::new(config);
            assert_eq!(
                result.is_ok(),
                ok,
                "{base_url} {attempts} {deadline_ms}: {result:?}"
            );
            if let Err(e) = result {
                assert!(matches!(e, FetchError::Config { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn connector_checks_the_spec_config() {
        let spec = appliance_spec::Spec::reference().unwrap();
        assert!(GceConnector.connect(spec.metadata()).is_ok());
        // No spec holds 0 attempts: the spec refuses it ...
        let err = appliance_spec::SpecBuilder::reference()
            .set("metadata.attempts", 0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Some("metadata.attempts"), "{err}");
        // ... and so would the client the connector opens, on its own.
        let bad = GceConfig {
            attempts: 0,
            ..GceConfig::from_spec(spec.metadata())
        };
        assert!(matches!(
            GceMetadata::new(bad),
            Err(FetchError::Config { .. })
        ));
    }

    #[test]
    fn reference_spec_gives_the_default_config() {
        let spec = appliance_spec::Spec::reference().unwrap();
        assert_eq!(GceConfig::from_spec(spec.metadata()), GceConfig::default());
    }

    #[test]
    fn invalid_key_is_refused_before_any_request() {
        // Port 9 on loopback: nothing listens, and nothing is sent anyway.
        let source = GceMetadata::new(GceConfig {
            base_url: "http://127.0.0.1:9/attributes/".to_owned(),
            deadline: Duration::from_millis(500),
            attempts: 1,
        })
        .unwrap();
        for key in [
            "",
            "../token",
            "a/b",
            "a?b",
            "a b",
            "k%2f",
            "ключ",
            &"k".repeat(65),
        ] {
            assert_eq!(
                source.fetch(key).unwrap_err(),
                FetchError::InvalidKey {
                    key: key.to_owned()
                }
            );
        }
    }

    #[test]
    fn read_limited_stops_one_past_the_limit() {
        let endless = io::repeat(b'x');
        let mut body = Vec::new();
        read_limited(
            &mut endless.take(1 << 20),
            Instant::now() + Duration::from_secs(60),
            &mut body,
        )
        .unwrap();
        assert_eq!(body.len(), MAX_VALUE_LEN + 1);
        let mut short = &b"abc"[..];
        read_limited(
            &mut short,
            Instant::now() + Duration::from_secs(60),
            &mut body,
        )
        .unwrap();
        assert_eq!(body, b"abc");
    }
}
