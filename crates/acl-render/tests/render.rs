//! The rendered ACL file: the seed-000 snapshot, refusals, and properties over
//! arbitrary passwords and keys. Hostile names and keys, which no `Spec` can
//! hold, are tested against both the spec and the renderer's own check in
//! `src/check.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use acl_render::{escape_key_glob, render, sha256_hex, AclError};
use appliance_spec::{Spec, SpecBuilder};
use proptest::prelude::*;

/// Fixed test secrets (never used anywhere real).
const ADMIN_PASSWORD: &[u8] = b"test-admin-password-000";
const VISITOR_PASSWORD: &[u8] = b"test-visitor-password-000";

fn reference() -> Spec {
    Spec::reference().expect("the reference spec is valid")
}

fn reference_secrets(key: &str) -> Option<&'static [u8]> {
    match key {
        "redis-admin-pass" => Some(ADMIN_PASSWORD),
        "redis-visitor-pass" => Some(VISITOR_PASSWORD),
        _ => None,
    }
}

fn is_hash_token(token: &str) -> bool {
    token.len() == 65
        && token.starts_with('#')
        && token[1..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The hash tokens of each `user` line, in order.
fn hashes_per_line(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|line| line.split(' ').filter(|t| t.starts_with('#')).collect())
        .collect()
}

/// The text with every hash token cut down to `#`: what must not depend on
/// the passwords at all.
fn skeleton(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split(' ')
                .map(|t| if is_hash_token(t) { "#" } else { t })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn seed_000_acl_file() {
    let text = render(&reference(), reference_secrets).unwrap();
    insta::assert_snapshot!("seed_000_users_acl", text);
}

/// The reference with `forks = "never"` (strict mode).
fn strict() -> Spec {
    let text =
        appliance_spec::REFERENCE_TOML.replacen("forks = \"bounded\"", "forks = \"never\"", 1);
    Spec::from_toml_str(&text).unwrap()
}

#[test]
fn strict_mode_acl_file() {
    let text = render(&strict(), reference_secrets).unwrap();
    insta::assert_snapshot!("strict_users_acl", text);
}

/// Strict mode differs from the reference in exactly the admin's two
/// forking commands.
#[test]
fn strict_mode_removes_exactly_the_forking_commands() {
    let bounded = render(&reference(), reference_secrets).unwrap();
    let strict = render(&strict(), reference_secrets).unwrap();
    let diff: Vec<(&str, &str)> = bounded
        .lines()
        .zip(strict.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(diff.len(), 1, "{diff:?}");
    let (a, b) = diff[0];
    assert!(a.starts_with("user admin ") && b.starts_with("user admin "));
    let tokens = |l: &str| l.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let removed: Vec<String> = tokens(a)
        .into_iter()
        .filter(|t| !tokens(b).contains(t))
        .collect();
    assert_eq!(removed, ["+bgsave", "+bgrewriteaof"]);
    assert!(tokens(b).iter().all(|t| tokens(a).contains(t)));
    for text in [&bounded, &strict] {
        let visitor = text.lines().nth(2).unwrap();
        assert!(!visitor.contains("bg"), "{visitor}");
    }
}

#[test]
fn seed_000_hashes_are_the_sha256_of_the_test_secrets() {
    let text = render(&reference(), reference_secrets).unwrap();
    let hashes = hashes_per_line(&text);
    assert_eq!(hashes.len(), 3, "{text}");
    assert!(hashes[0].is_empty(), "the default user has no password");
    assert_eq!(hashes[1], [format!("#{}", sha256_hex(ADMIN_PASSWORD))]);
    assert_eq!(hashes[2], [format!("#{}", sha256_hex(VISITOR_PASSWORD))]);
}

#[test]
fn missing_or_empty_passwords_are_refused_naming_the_metadata_key() {
    type Lookup = fn(&str) -> Option<&'static [u8]>;
    let cases: &[(&str, Lookup, AclError)] = &[
        (
            "admin password missing",
            |k| (k != "redis-admin-pass").then_some(VISITOR_PASSWORD),
            AclError::MissingPassword {
                user: "admin".into(),
                metadata_key: "redis-admin-pass".into(),
            },
        ),
        (
            "visitor password missing",
            |k| (k != "redis-visitor-pass").then_some(ADMIN_PASSWORD),
            AclError::MissingPassword {
                user: "ruachtov-ai-visitors".into(),
                metadata_key: "redis-visitor-pass".into(),
            },
        ),
        (
            "admin password empty",
            |k| {
                Some(if k == "redis-admin-pass" {
                    b""
                } else {
                    VISITOR_PASSWORD
                })
            },
            AclError::EmptyPassword {
                user: "admin".into(),
                metadata_key: "redis-admin-pass".into(),
            },
        ),
        (
            "visitor password empty",
            |k| {
                Some(if k == "redis-visitor-pass" {
                    b""
                } else {
                    ADMIN_PASSWORD
                })
            },
            AclError::EmptyPassword {
                user: "ruachtov-ai-visitors".into(),
                metadata_key: "redis-visitor-pass".into(),
            },
        ),
    ];
    for (name, lookup, want) in cases {
        let err = render(&reference(), lookup).unwrap_err();
        assert_eq!(&err, want, "{name}");
        let message = err.to_string();
        let key = if name.starts_with("admin") {
            "redis-admin-pass"
        } else {
            "redis-visitor-pass"
        };
        assert!(message.contains(&format!("{key:?}")), "{name}: {message}");
        for secret in [ADMIN_PASSWORD, VISITOR_PASSWORD] {
            assert!(
                !message.contains(std::str::from_utf8(secret).unwrap()),
                "{name}: {message}"
            );
        }
    }
}

proptest! {
    #[test]
    fn any_password_yields_one_hash_per_user_and_never_the_cleartext(
        admin in proptest::collection::vec(any::<u8>(), 1..96),
        visitor in proptest::collection::vec(any::<u8>(), 1..96),
    ) {
        let spec = reference();
        let lookup = |k: &str| match k {
            "redis-admin-pass" => Some(admin.as_slice()),
            "redis-visitor-pass" => Some(visitor.as_slice()),
            _ => None,
        };
        let text = render(&spec, lookup).unwrap();

        let hashes = hashes_per_line(&text);
        prop_assert_eq!(hashes.len(), 3);
        prop_assert!(hashes[0].is_empty());
        prop_assert_eq!(&hashes[1], &[format!("#{}", sha256_hex(&admin))]);
        prop_assert_eq!(&hashes[2], &[format!("#{}", sha256_hex(&visitor))]);

        // Nothing but the hashes depends on the passwords ...
        let fixed = render(&spec, reference_secrets).unwrap();
        let skel = skeleton(&text);
        prop_assert_eq!(&skel, &skeleton(&fixed));
        // ... so a password can only appear where the fixed text has it
        // anyway (a password "resetchannels" is in every file).
        for password in [&admin, &visitor] {
            if password.len() >= 8 && !contains(skel.as_bytes(), password) {
                prop_assert!(!cleartext_outside_hashes(text.as_bytes(), password));
            }
        }
    }

    #[test]
    fn any_valid_key_becomes_one_pattern_matching_exactly_it(key in "[!-~]{1,64}") {
        let spec = SpecBuilder::reference().set("users[1].stream", key.as_str()).build().unwrap();
        let text = render(&spec, reference_secrets).unwrap();
        let line = text.lines().nth(2).unwrap();
        let patterns: Vec<&str> = line.split(' ').filter(|t| t.starts_with("%W~")).collect();
        prop_assert_eq!(patterns.len(), 1);
        prop_assert_eq!(patterns[0], format!("%W~{}", escape_key_glob(&key)));
        prop_assert_eq!(unescape(&patterns[0][3..]), key);
        prop_assert!(line.ends_with(patterns[0]));
    }
}

/// Whether `password` occurs in `text` anywhere but overlapping a hash: a
/// password may by chance share bytes with a hash (the fuzzer can make one
/// user's password a slice of another's hash), which is no leak.
fn cleartext_outside_hashes(text: &[u8], password: &[u8]) -> bool {
    let is_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let hashes: Vec<std::ops::Range<usize>> = (0..text.len())
        .filter(|&i| {
            text[i] == b'#'
                && text
                    .get(i + 1..i + 65)
                    .is_some_and(|h| h.iter().all(is_hex))
        })
        .map(|i| i + 1..i + 65)
        .collect();
    text.windows(password.len())
        .enumerate()
        .filter(|(_, w)| *w == password)
        .any(|(at, _)| {
            let found = at..at + password.len();
            !hashes
                .iter()
                .any(|h| h.start < found.end && found.start < h.end)
        })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The server's reading of an escaped pattern with no unescaped glob
/// character: the literal it matches.
fn unescape(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().expect("no dangling backslash")),
            '*' | '?' | '[' | ']' => panic!("unescaped glob character in {pattern:?}"),
            c => out.push(c),
        }
    }
    out
}
