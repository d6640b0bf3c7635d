//! A recording in-memory [`MetadataSource`] for tests, here and in the crates
//! that consume secrets (acl-render, init-seq).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::{check_key, FetchError, MetadataSource, Secret};

/// One request made to a [`FakeMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `fetch(key)`, recorded even when the key is refused.
    Fetch {
        /// The key asked for.
        key: String,
    },
}

/// What the fake answers for one key.
enum Answer {
    Value(Zeroizing<Vec<u8>>),
    Error(FetchError),
}

/// A metadata server made of a map: key -> value or injected error. A key not
/// in the map is [`FetchError::Missing`]; an invalid key name is
/// [`FetchError::InvalidKey`], as with the real client.
#[derive(Default)]
pub struct FakeMetadata {
    answers: BTreeMap<String, Answer>,
    calls: Mutex<Vec<Call>>,
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

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for FakeMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeMetadata")
            .field("keys", &self.answers.keys().collect::<Vec<_>>())
            .field("calls", &self.calls())
            .finish()
    }
}

impl MetadataSource for FakeMetadata {
    fn fetch(&self, key: &str) -> Result<Secret, FetchError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Call::Fetch {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueProblem;

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
            .map(|Call::Fetch { key }| key)
            .collect();
        assert_eq!(
            keys,
            ["redis-admin-pass", "redis-visitor-pass", "other", "../x"]
        );
        assert!(!format!("{fake:?}").contains("s3cret"));
    }
}
