//! A recording in-memory [`MetadataSource`] and [`Connector`] for tests,
//! here and in the crates that consume secrets (acl-render, init-seq).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use appliance_spec::Metadata;
use zeroize::Zeroizing;

use crate::{check_key, Connector, FetchError, MetadataSource, Secret};

/// One request made to a [`FakeMetadata`], directly or through a
/// [`FakeConnection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Connector::connect`] with the spec's table, recorded even when
    /// refused.
    Connect(Metadata),
    /// `fetch(key)`, recorded even when the key is refused.
    Fetch {
        /// The key asked for.
        key: String,
    },
    /// A [`FakeConnection`] dropped: the client closed.
    Close,
}

/// What the fake answers for one key.
enum Answer {
    Value(Zeroizing<Vec<u8>>),
    Error(FetchError),
}

/// Sees every call as it is recorded (see [`FakeMetadata::set_observer`]).
type Observer = Box<dyn FnMut(&Call) + Send>;

/// A metadata server made of a map: key -> value or injected error. A key not
/// in the map is [`FetchError::Missing`]; an invalid key name is
/// [`FetchError::InvalidKey`], as with the real client. As a [`Connector`]
/// it hands out [`FakeConnection`]s to itself, and can be told to refuse.
#[derive(Default)]
pub struct FakeMetadata {
    answers: BTreeMap<String, Answer>,
    connect_error: Option<FetchError>,
    calls: Mutex<Vec<Call>>,
    observer: Mutex<Option<Observer>>,
}

impl FakeMetadata {
    /// An empty server: every key is missing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `key` with `value`.
    #[must_use]
    pub fn with_value(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.answers
            .insert(key.to_owned(), Answer::Value(Zeroizing::new(value.into())));
        self
    }

    /// Answers `key` with `error`.
    #[must_use]
    pub fn with_error(mut self, key: &str, error: FetchError) -> Self {
        self.answers.insert(key.to_owned(), Answer::Error(error));
        self
    }

    /// Removes `key` (asking for it answers [`FetchError::Missing`]).
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.answers.remove(key);
        self
    }

    /// Refuses every [`Connector::connect`] with `error`.
    #[must_use]
    pub fn with_connect_error(mut self, error: FetchError) -> Self {
        self.connect_error = Some(error);
        self
    }

    /// Also hands each call, as it is recorded, to `observer` (replacing any
    /// earlier one): a test driving several fakes keeps one record of all
    /// their calls, in the order they were made.
    pub fn set_observer(&mut self, observer: impl FnMut(&Call) + Send + 'static) {
        *self
            .observer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(observer));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, call: Call) {
        if let Some(observer) = self
            .observer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            observer(&call);
        }
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }
}

impl std::fmt::Debug for FakeMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeMetadata")
            .field("keys", &self.answers.keys().collect::<Vec<_>>())
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl MetadataSource for FakeMetadata {
    fn fetch(&self, key: &str) -> Result<Secret, FetchError> {
        self.record(Call::Fetch {
            key: key.to_owned(),
        });
        check_key(key)?;
        match self.answers.get(key) {
            Some(Answer::Value(value)) => Ok(Secret::new(value.to_vec())),
            Some(Answer::Error(error)) => Err(error.clone()),
            None => Err(FetchError::Missing(key.to_owned())),
        }
    }
}

impl Connector for FakeMetadata {
    fn connect(&self, metadata: &Metadata) -> Result<Box<dyn MetadataSource + '_>, FetchError> {
        self.record(Call::Connect(metadata.clone()));
        match &self.connect_error {
            Some(error) => Err(error.clone()),
            None => Ok(Box::new(FakeConnection { server: self })),
        }
    }
}

/// A client of a [`FakeMetadata`], as [`Connector::connect`] gives it:
/// fetches go to the server, and dropping it records [`Call::Close`].
#[derive(Debug)]
pub struct FakeConnection<'a> {
    server: &'a FakeMetadata,
}

impl MetadataSource for FakeConnection<'_> {
    fn fetch(&self, key: &str) -> Result<Secret, FetchError> {
        self.server.fetch(key)
    }
}

impl Drop for FakeConnection<'_> {
    fn drop(&mut self) {
        self.server.record(Call::Close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueProblem;
    use std::sync::Arc;

    #[test]
    fn answers_and_records() {
        let injected = FetchError::BadValue {
            key: "redis-visitor-pass".to_owned(),
            problem: ValueProblem::Empty,
        };
        let fake = FakeMetadata::new()
            .with_value("redis-admin-pass", "s3cret")
            .with_error("redis-visitor-pass", injected.clone());
        let source: &dyn MetadataSource = &fake;
        assert_eq!(
            source.fetch("redis-admin-pass").unwrap().expose(),
            b"s3cret"
        );
        assert_eq!(source.fetch("redis-visitor-pass").unwrap_err(), injected);
        assert_eq!(
            source.fetch("other").unwrap_err(),
            FetchError::Missing("other".to_owned())
        );
        assert!(matches!(
            source.fetch("../x").unwrap_err(),
            FetchError::InvalidKey { .. }
        ));
        let keys: Vec<String> = fake
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Fetch { key } => Some(key),
                Call::Connect(_) | Call::Close => None,
            })
            .collect();
        assert_eq!(
            keys,
            ["redis-admin-pass", "redis-visitor-pass", "other", "../x"]
        );
        assert!(!format!("{fake:?}").contains("s3cret"));
    }

    #[test]
    fn connections_are_recorded_from_open_to_drop() {
        let spec = appliance_spec::Spec::reference().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut fake = FakeMetadata::new()
            .with_value("redis-admin-pass", "s3cret")
            .without("redis-admin-pass");
        let log = Arc::clone(&seen);
        fake.set_observer(move |call| log.lock().unwrap().push(call.clone()));
        let connector: &dyn Connector = &fake;
        let source = connector.connect(spec.metadata()).unwrap();
        assert_eq!(
            source.fetch("redis-admin-pass").unwrap_err(),
            FetchError::Missing("redis-admin-pass".to_owned())
        );
        drop(source);
        let want = [
            Call::Connect(spec.metadata().clone()),
            Call::Fetch {
                key: "redis-admin-pass".to_owned(),
            },
            Call::Close,
        ];
        assert_eq!(fake.calls(), want);
        assert_eq!(*seen.lock().unwrap(), want);

        let refused = FakeMetadata::new().with_connect_error(FetchError::Config {
            reason: "injected".to_owned(),
        });
        assert!(refused.connect(spec.metadata()).is_err());
        assert_eq!(refused.calls(), [Call::Connect(spec.metadata().clone())]);
    }
}
