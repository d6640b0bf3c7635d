//! The ACL renderer must never panic, whatever names and keys a spec holds and
//! whatever passwords it is handed; and whatever it renders must hold one hash
//! per user and never a password's cleartext. The names and keys go through
//! spec validation first (a `Spec` exists only after it), which must not
//! panic either; the renderer's own re-check of values no spec can hold is
//! tested in acl-render's `check` module.
#![no_main]

use std::sync::OnceLock;

use acl_render::{render, sha256_hex};
use appliance_spec::{is_valid_stream_key, is_valid_user_name, SpecBuilder};
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// What replaces the reference spec's values; `None` keeps the reference one
/// (or, for a password, means the metadata key is missing).
#[derive(Debug)]
struct Input {
    admin_name: Option<String>,
    visitor_name: Option<String>,
    stream: Option<String>,
    admin_password: Option<Vec<u8>>,
    visitor_password: Option<Vec<u8>>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Input {
            admin_name: Arbitrary::arbitrary(u)?,
            visitor_name: Arbitrary::arbitrary(u)?,
            stream: Arbitrary::arbitrary(u)?,
            admin_password: Arbitrary::arbitrary(u)?,
            visitor_password: Arbitrary::arbitrary(u)?,
        })
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

/// The text with each `#<hash>` cut to `#`: all that may not depend on passwords.
fn skeleton(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split(' ')
                .map(|t| {
                    if t.len() == 65 && t.starts_with('#') {
                        "#"
                    } else {
                        t
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parsing the reference TOML text each run would dominate the run time; a
/// copy of the parsed document is edited instead.
static REFERENCE: OnceLock<SpecBuilder> = OnceLock::new();

fuzz_target!(|input: Input| {
    let mut builder = REFERENCE.get_or_init(SpecBuilder::reference).clone();
    if let Some(name) = input.admin_name {
        builder = builder.set("users[0].name", name);
    }
    if let Some(name) = input.visitor_name {
        builder = builder.set("users[1].name", name);
    }
    if let Some(stream) = input.stream {
        builder = builder.set("users[1].stream", stream);
    }
    let Ok(spec) = builder.build() else {
        return;
    };
    let admin_pw = input.admin_password.as_deref();
    let visitor_pw = input.visitor_password.as_deref();
    let lookup = |key: &str| match key {
        "redis-admin-pass" => admin_pw,
        "redis-visitor-pass" => visitor_pw,
        _ => None,
    };
    let Ok(text) = render(&spec, lookup) else {
        return;
    };

    let (Some(admin_pw), Some(visitor_pw)) = (admin_pw, visitor_pw) else {
        panic!("rendered with a missing password");
    };
    assert!(!admin_pw.is_empty() && !visitor_pw.is_empty());
    assert!(
        is_valid_user_name(spec.admin().name())
            && is_valid_user_name(spec.visitors()[0].user().name())
    );
    assert!(is_valid_stream_key(spec.visitors()[0].stream()));

    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, password) in lines.iter().skip(1).zip([admin_pw, visitor_pw]) {
        let hashes: Vec<&str> = line.split(' ').filter(|t| t.starts_with('#')).collect();
        assert_eq!(hashes, [format!("#{}", sha256_hex(password))], "{line}");
    }
    assert!(!lines[0].contains('#'));

    // Only the hashes depend on the passwords; a password can appear only where
    // the password-independent text holds it anyway (e.g. "resetchannels").
    let Ok(fixed) = render(&spec, |_| Some(b"fixed-password".as_slice())) else {
        panic!("rendering failed for a fixed password only");
    };
    let skel = skeleton(&text);
    assert_eq!(skel, skeleton(&fixed));
    for password in [admin_pw, visitor_pw] {
        if password.len() >= 8 && !contains(skel.as_bytes(), password) {
            assert!(
                !cleartext_outside_hashes(text.as_bytes(), password),
                "cleartext in {text}"
            );
        }
    }
});
