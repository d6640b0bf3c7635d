//! The renderer's own check of names and keys before they become ACL lines.
//!
//! A [`Spec`](appliance_spec::Spec) exists only after validation, which
//! already refuses every value refused here, so through
//! [`render`](crate::render) this never fires. It stays as defence in depth,
//! on plain strings so its tests can hand it what no `Spec` can hold; each
//! test case shows both layers: the spec refuses the value, and so would the
//! renderer.

use appliance_spec::{is_valid_stream_key, is_valid_user_name};

use crate::AclError;

/// Checks every user name (unique, safe in an ACL file) and every visitor's
/// `(name, stream key)`.
pub(crate) fn users<'s>(
    names: impl IntoIterator<Item = &'s str>,
    streams: impl IntoIterator<Item = (&'s str, &'s str)>,
) -> Result<(), AclError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !is_valid_user_name(name) {
            return Err(AclError::InvalidUserName {
                name: name.to_owned(),
            });
        }
        if seen.contains(&name) {
            return Err(AclError::DuplicateUser {
                name: name.to_owned(),
            });
        }
        seen.push(name);
    }
    for (user, key) in streams {
        if !is_valid_stream_key(key) {
            return Err(AclError::InvalidStreamKey {
                user: user.to_owned(),
                key: key.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;
    use appliance_spec::SpecBuilder;
    use proptest::prelude::*;

    const VISITOR: &str = "ruachtov-ai-visitors";

    fn reference_secrets(key: &str) -> Option<&'static [u8]> {
        match key {
            "redis-admin-pass" => Some(b"test-admin-password-000"),
            "redis-visitor-pass" => Some(b"test-visitor-password-000"),
            _ => None,
        }
    }

    /// The reference's users with one name replaced: `(names, streams)` as
    /// `render` hands them to [`users`].
    fn with_name(name: &str, visitor: bool) -> (Vec<&str>, Vec<(&str, &str)>) {
        let (admin, visitor) = if visitor {
            ("admin", name)
        } else {
            (name, VISITOR)
        };
        (
            vec![admin, visitor],
            vec![(visitor, "ruach:stream:contact")],
        )
    }

    /// Asserts that the spec refuses `value` at `field` and shows it.
    fn spec_refuses(field: &str, value: &str) -> Result<(), TestCaseError> {
        let err = SpecBuilder::reference().set(field, value).build();
        let err = err
            .err()
            .ok_or_else(|| TestCaseError::fail(format!("spec accepted {field} = {value:?}")))?;
        prop_assert_eq!(err.field(), Some(field), "{}", err);
        prop_assert!(err.to_string().contains(&format!("{value:?}")), "{}", err);
        Ok(())
    }

    /// Asserts that both layers refuse `name` as the admin's or the visitor's
    /// name: the spec naming the field, the renderer naming the value.
    fn name_refused(name: &str, visitor: bool) -> Result<(), TestCaseError> {
        spec_refuses(
            if visitor {
                "users[1].name"
            } else {
                "users[0].name"
            },
            name,
        )?;
        let (names, streams) = with_name(name, visitor);
        let err = users(names, streams).unwrap_err();
        prop_assert!(err.to_string().contains(&format!("{name:?}")), "{}", err);
        prop_assert_eq!(err, AclError::InvalidUserName { name: name.into() });
        Ok(())
    }

    /// Asserts the same of `key` as the visitor's stream key.
    fn key_refused(key: &str) -> Result<(), TestCaseError> {
        spec_refuses("users[1].stream", key)?;
        let err = users(["admin", VISITOR], [(VISITOR, key)]).unwrap_err();
        prop_assert!(err.to_string().contains(&format!("{key:?}")), "{}", err);
        prop_assert_eq!(
            err,
            AclError::InvalidStreamKey {
                user: VISITOR.into(),
                key: key.into()
            }
        );
        Ok(())
    }

    #[test]
    fn duplicate_user_names_are_refused() {
        let err = SpecBuilder::reference()
            .set("users[1].name", "admin")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Some("users[1].name"), "{err}");
        assert_eq!(
            users(["admin", "admin"], []),
            Err(AclError::DuplicateUser {
                name: "admin".into()
            })
        );
    }

    #[test]
    fn hostile_values_are_refused_naming_them() {
        // Each value would change the meaning of the line if written as is.
        let names = [
            "",
            "default",
            "adm in",
            "admin\non",
            "admin\r",
            "admin\t",
            "admin\0",
            ">password",
            "#hash",
            "~*",
            "&*",
            "+@all",
            "-@all",
            "@all",
            "nopass",
            "a>b",
            "a#b",
            "a~b",
            "a&b",
            "a+b",
            "a@b",
            "\u{7f}x",
            "é",
        ];
        for name in names {
            for visitor in [false, true] {
                if name == "nopass" {
                    // A plain word is a valid name: it is never read as a rule
                    // because the name is always the token after `user`.
                    let field = if visitor {
                        "users[1].name"
                    } else {
                        "users[0].name"
                    };
                    let spec = SpecBuilder::reference().set(field, name).build().unwrap();
                    assert!(render(&spec, reference_secrets).is_ok(), "{field}");
                    let (names, streams) = with_name(name, visitor);
                    assert_eq!(users(names, streams), Ok(()));
                    continue;
                }
                name_refused(name, visitor).unwrap();
            }
        }

        let keys = [
            "",
            "a b",
            "a\nuser x on nopass +@all ~*",
            "a\r",
            "a\t",
            "a\0",
            "\u{7f}",
            "ké",
            &"k".repeat(257),
        ];
        for key in keys {
            key_refused(key).unwrap();
        }
    }

    /// Bytes from which hostile names and keys are built.
    const HOSTILE: &[char] = &[
        ' ', '\t', '\n', '\r', '\0', '\u{1b}', '\u{7f}', '>', '<', '#', '~', '&', '+', '-', '@',
        '%', '*', '"', '\'', 'é',
    ];

    fn hostile_name() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]{0,8}",
            proptest::sample::select(HOSTILE),
            "[a-z0-9]{0,8}",
        )
            .prop_filter_map(
                "a name is hostile unless the hostile part is a plain '-' inside it",
                |(head, bad, tail)| {
                    let name = format!("{head}{bad}{tail}");
                    (!is_valid_user_name(&name)).then_some(name)
                },
            )
    }

    fn hostile_key() -> impl Strategy<Value = String> {
        (
            "[ -~]{0,8}",
            proptest::sample::select(HOSTILE),
            "[ -~]{0,8}",
        )
            .prop_filter_map(
                "keys may hold any printable ASCII but space",
                |(head, bad, tail)| {
                    let key = format!("{head}{bad}{tail}");
                    (!is_valid_stream_key(&key)).then_some(key)
                },
            )
    }

    proptest! {
        #[test]
        fn hostile_user_names_are_refused(name in hostile_name(), visitor in any::<bool>()) {
            name_refused(&name, visitor)?;
        }

        #[test]
        fn hostile_stream_keys_are_refused(key in hostile_key()) {
            key_refused(&key)?;
        }
    }
}
