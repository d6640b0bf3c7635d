//! Secret hygiene between the metadata fetch and the ACL: what an operator
//! stores is not always exactly the password they mean, and some values
//! must not be accepted at all.
//!
//! Operators usually set a secret with `gcloud ... --metadata-from-file`
//! from a text file, which ends with a newline that nobody types at `AUTH`.
//! So exactly one trailing line ending (`\n` or `\r\n`) is removed; the
//! value that is left must be non-empty and free of control characters
//! (a second newline, a stray `\r`, a tab), which no client can send as
//! part of an `AUTH` argument typed by a person and which usually mean the
//! wrong file was stored. The admin secret must be at least
//! [`ADMIN_SECRET_MIN_LEN`] bytes and differ from every visitor secret: the
//! visitor password is public.
//!
//! Nothing here copies a value: lines are stripped in place
//! ([`Secret::truncate`] zeroes the removed bytes), and every refusal names
//! the metadata key, never the value or its length.
#![forbid(unsafe_code)]

use std::fmt;

use appliance_spec::Spec;
use metadata_fetch::Secret;

/// The shortest admin secret accepted: 16 bytes. That is what the common
/// generators give for 96 random bits (`openssl rand -base64 12`,
/// `pwgen -s 16`), which no online guessing at a throttled `AUTH` nor an
/// offline search of the SHA-256 in the ACL file can exhaust; shorter
/// values are typed by hand.
pub const ADMIN_SECRET_MIN_LEN: usize = 16;

/// Why a fetched secret was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretProblem {
    /// Nothing is left after stripping one trailing line ending.
    Empty,
    /// A byte below 0x20 or 0x7f is left after stripping.
    ControlCharacter,
    /// The admin secret is shorter than [`ADMIN_SECRET_MIN_LEN`].
    AdminTooShort,
    /// The admin secret equals the secret of this (visitor's) metadata key.
    AdminEqualsVisitor {
        /// The visitor's metadata key.
        visitor_key: String,
    },
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretProblem::Empty => {
                f.write_str("the value is empty after stripping one trailing line ending")
            }
            SecretProblem::ControlCharacter => f.write_str(
                "the value holds a control character (a byte below 0x20, or 0x7f) after stripping one trailing line ending",
            ),
            SecretProblem::AdminTooShort => write!(
                f,
                "the admin secret is shorter than {ADMIN_SECRET_MIN_LEN} bytes"
            ),
            SecretProblem::AdminEqualsVisitor { visitor_key } => write!(
                f,
                "the admin secret equals the visitor secret of metadata key {visitor_key:?}, which is public"
            ),
        }
    }
}

/// How many bytes of `value` are kept: all but one trailing `\r\n` or `\n`.
pub fn stripped_len(value: &[u8]) -> usize {
    let ending = if value.ends_with(b"\r\n") {
        2
    } else if value.ends_with(b"\n") {
        1
    } else {
        0
    };
    value.len().saturating_sub(ending)
}

/// Checks a value that has been stripped: not empty, no control character.
pub fn check_value(value: &[u8]) -> Result<(), SecretProblem> {
    if value.is_empty() {
        return Err(SecretProblem::Empty);
    }
    if value.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(SecretProblem::ControlCharacter);
    }
    Ok(())
}

/// Strips one trailing line ending from `secret` in place, then checks it.
pub fn clean(secret: &mut Secret) -> Result<(), SecretProblem> {
    let keep = stripped_len(secret.expose());
    secret.truncate(keep);
    check_value(secret.expose())
}

/// Cleans every fetched secret (by metadata key), then checks the admin's
/// against the minimum length and against every visitor's. The first
/// problem is returned with the metadata key it concerns.
///
/// A key of the spec that is not among `secrets` is left to the ACL
/// renderer, which refuses it.
pub fn check_secrets(
    spec: &Spec,
    secrets: &mut [(String, Secret)],
) -> Result<(), (String, SecretProblem)> {
    for (key, secret) in secrets.iter_mut() {
        clean(secret).map_err(|problem| (key.clone(), problem))?;
    }
    let find = |key: &str| {
        secrets
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, secret)| secret.expose())
    };
    let admin_key = spec.admin().secret();
    let Some(admin) = find(admin_key) else {
        return Ok(());
    };
    if admin.len() < ADMIN_SECRET_MIN_LEN {
        return Err((admin_key.to_owned(), SecretProblem::AdminTooShort));
    }
    for visitor in spec.visitors() {
        let key = visitor.user().secret();
        if find(key).is_some_and(|value| value == admin) {
            return Err((
                admin_key.to_owned(),
                SecretProblem::AdminEqualsVisitor {
                    visitor_key: key.to_owned(),
                },
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strip_and_check_table() {
        type Row = (&'static [u8], Result<&'static [u8], SecretProblem>);
        let rows: &[Row] = &[
            (b"hunter2hunter2", Ok(b"hunter2hunter2")),
            (b"hunter2\n", Ok(b"hunter2")),
            (b"hunter2\r\n", Ok(b"hunter2")),
            // Exactly one line ending: a second one stays, and is refused.
            (b"hunter2\n\n", Err(SecretProblem::ControlCharacter)),
            (b"hunter2\r\n\r\n", Err(SecretProblem::ControlCharacter)),
            (b"hunter2\n\r\n", Err(SecretProblem::ControlCharacter)),
            // A lone \r is not a line ending here.
            (b"hunter2\r", Err(SecretProblem::ControlCharacter)),
            (b"hun\tter2", Err(SecretProblem::ControlCharacter)),
            (b"hun\0ter2", Err(SecretProblem::ControlCharacter)),
            (b"hunter2\x7f", Err(SecretProblem::ControlCharacter)),
            (b"\x1b[0m", Err(SecretProblem::ControlCharacter)),
            (b"", Err(SecretProblem::Empty)),
            (b"\n", Err(SecretProblem::Empty)),
            (b"\r\n", Err(SecretProblem::Empty)),
            // Spaces and non-ASCII UTF-8 are ordinary password bytes.
            (b" pass word ", Ok(b" pass word ")),
            ("pässwörd\n".as_bytes(), Ok("pässwörd".as_bytes())),
            (b"~!@#$%^&*()\n", Ok(b"~!@#$%^&*()")),
        ];
        for (input, want) in rows {
            let mut secret = Secret::new(input.to_vec());
            let got = clean(&mut secret).map(|()| secret.expose().to_vec());
            assert_eq!(got, want.clone().map(<[u8]>::to_vec), "{input:?}");
        }
    }

    fn spec() -> Spec {
        Spec::reference().unwrap()
    }

    fn fetched(admin: &[u8], visitor: &[u8]) -> Vec<(String, Secret)> {
        vec![
            ("redis-admin-pass".to_owned(), Secret::new(admin.to_vec())),
            (
                "redis-visitor-pass".to_owned(),
                Secret::new(visitor.to_vec()),
            ),
        ]
    }

    #[test]
    fn admin_rules_table() {
        type Row = (
            &'static [u8],
            &'static [u8],
            Option<(&'static str, SecretProblem)>,
        );
        let rows: &[Row] = &[
            (b"0123456789abcdef\n", b"visitor\n", None),
            (b"0123456789abcdef", b"v", None),
            (
                b"0123456789abcde\n",
                b"visitor",
                Some(("redis-admin-pass", SecretProblem::AdminTooShort)),
            ),
            // Equal after stripping: one has a newline, the other not.
            (
                b"0123456789abcdef\n",
                b"0123456789abcdef",
                Some((
                    "redis-admin-pass",
                    SecretProblem::AdminEqualsVisitor {
                        visitor_key: "redis-visitor-pass".to_owned(),
                    },
                )),
            ),
            // Each value's own problem first, in fetch order.
            (
                b"0123456789abcdef",
                b"",
                Some(("redis-visitor-pass", SecretProblem::Empty)),
            ),
            (
                b"a\tb",
                b"",
                Some(("redis-admin-pass", SecretProblem::ControlCharacter)),
            ),
        ];
        for (admin, visitor, want) in rows {
            let mut secrets = fetched(admin, visitor);
            let got = check_secrets(&spec(), &mut secrets).err();
            let want = want.clone().map(|(k, p)| (k.to_owned(), p));
            assert_eq!(got, want, "{admin:?} {visitor:?}");
        }
        // The values are stripped in place.
        let mut secrets = fetched(b"0123456789abcdef\r\n", b"visitor\n");
        check_secrets(&spec(), &mut secrets).unwrap();
        assert_eq!(secrets[0].1.expose(), b"0123456789abcdef");
        assert_eq!(secrets[1].1.expose(), b"visitor");
    }

    #[test]
    fn messages_name_no_value() {
        let problems = [
            SecretProblem::Empty,
            SecretProblem::ControlCharacter,
            SecretProblem::AdminTooShort,
            SecretProblem::AdminEqualsVisitor {
                visitor_key: "redis-visitor-pass".to_owned(),
            },
        ];
        for problem in problems {
            let text = problem.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(!text.is_empty());
        }
    }

    proptest! {
        #[test]
        fn one_line_ending_is_stripped(
            value in proptest::collection::vec(0x20u8..=0xff, 1..64),
            ending in prop_oneof![Just(&b""[..]), Just(&b"\n"[..]), Just(&b"\r\n"[..])],
        ) {
            prop_assume!(!value.contains(&0x7f));
            let mut input = value.clone();
            input.extend_from_slice(ending);
            let mut secret = Secret::new(input);
            prop_assert_eq!(clean(&mut secret), Ok(()));
            prop_assert_eq!(secret.expose(), &value[..]);
        }

        #[test]
        fn clean_never_panics_and_leaves_no_control_character(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut secret = Secret::new(bytes.clone());
            match clean(&mut secret) {
                Ok(()) => {
                    prop_assert!(!secret.is_empty());
                    prop_assert!(secret.expose().iter().all(|&b| b >= 0x20 && b != 0x7f));
                    prop_assert!(bytes.starts_with(secret.expose()));
                    prop_assert!(bytes.len() - secret.len() <= 2);
                }
                Err(_) => {
                    let kept = &bytes[..stripped_len(&bytes)];
                    prop_assert!(kept.is_empty() || kept.iter().any(|&b| b < 0x20 || b == 0x7f));
                }
            }
        }
    }
}
