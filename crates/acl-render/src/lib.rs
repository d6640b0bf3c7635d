//! The appliance's users and their passwords, rendered as the Valkey ACL file
//! (`aclfile`, §6 of the design).
//!
//! This crate owns one concern: turning a validated [`Spec`] plus the
//! cleartext passwords fetched from the metadata server into the text of the
//! server's ACL file. It does no I/O: the caller hands it a lookup from
//! metadata key to password bytes, writes the returned text where the server
//! expects it (0400, owned by the server uid) and wipes the cleartext. It does
//! not fetch, store or zeroize secrets, and it does not guard `XADD`'s
//! arguments: ACLs cannot, that is the `stream-guard` module's job.
//!
//! Invariants:
//! - The cleartext never reaches the output: each user gets exactly one
//!   `#<sha256>` rule, the lowercase hex SHA-256 of the password bytes it is
//!   given (init strips one trailing line ending from each metadata value
//!   first, so that is the hash of what a client sends to `AUTH`).
//! - The built-in `default` user is switched off with no keys, channels or
//!   commands: an unauthenticated connection can run nothing but `AUTH`/`HELLO`.
//! - When the spec says the server never forks, no user may run a command
//!   that forks it (`BGSAVE`, `BGREWRITEAOF`).
//! - Names and keys are re-validated here, though a [`Spec`] exists only
//!   after validation: this is where a bad name would turn into a rule, so
//!   the check stays as defence in depth. A value that could be read as ACL
//!   syntax is refused with an error naming it, never escaped into something
//!   else.
//! - Errors name users, keys and metadata keys, never a password.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt::Write as _;

use appliance_spec::{Forks, Spec, User};
use sha2::{Digest, Sha256};

mod check;

/// The `default` user's line: off, no keys, no channels, no commands.
pub const DEFAULT_USER_LINE: &str = "user default off resetkeys resetchannels -@all";

/// The admin's rules after its hash when the server may fork
/// ([`Forks::Bounded`]): operator commands on every key, no channels,
/// nothing `@dangerous` but `INFO`, `BGSAVE` and `BGREWRITEAOF` (after
/// trimming the stream, the admin compacts the append-only file, which
/// otherwise keeps every trimmed entry on the data disk until the server's
/// own growth trigger fires).
pub const ADMIN_RULES: &str = "resetchannels -@all +@read +@write +@stream +@keyspace +@connection -@dangerous +info +bgsave +bgrewriteaof ~*";

/// The admin's rules when the server never forks ([`Forks::Never`]): as
/// [`ADMIN_RULES`] without `BGSAVE` and `BGREWRITEAOF`, which fork. Both
/// are `@dangerous`, so nobody may run them; no command left to anyone
/// forks (`SYNC`/`PSYNC`, `CONFIG`, `DEBUG`, `MODULE` are `@dangerous`
/// too).
pub const ADMIN_RULES_NO_FORKS: &str =
    "resetchannels -@all +@read +@write +@stream +@keyspace +@connection -@dangerous +info ~*";

/// The admin's rules for a spec's fork mode.
pub fn admin_rules(forks: Forks) -> &'static str {
    match forks {
        Forks::Bounded => ADMIN_RULES,
        Forks::Never => ADMIN_RULES_NO_FORKS,
    }
}

/// A visitor's command rules (its one write-only key pattern follows them).
pub const VISITOR_RULES: &str = "resetchannels -@all +ping +xadd";

/// Why the ACL file could not be rendered. No variant carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// A user name that is not safe to place in an ACL file.
    #[error("user name {name:?} cannot be placed in the ACL file: it must be 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit, and not `default`")]
    InvalidUserName {
        /// The rejected name.
        name: String,
    },
    /// A visitor's stream key that is not safe to place in an ACL file.
    #[error("stream key {key:?} of user {user:?} cannot be placed in the ACL file: it must be 1-256 printable ASCII characters without spaces")]
    InvalidStreamKey {
        /// The user the key belongs to.
        user: String,
        /// The rejected key.
        key: String,
    },
    /// Two users with the same name; the server refuses such a file.
    #[error("user name {name:?} appears more than once")]
    DuplicateUser {
        /// The repeated name.
        name: String,
    },
    /// The lookup had no password for this user's metadata key.
    #[error("no password for user {user:?}: metadata key {metadata_key:?} is missing")]
    MissingPassword {
        /// The user.
        user: String,
        /// The metadata key that was looked up.
        metadata_key: String,
    },
    /// The password is empty: it would hash to a well-known value.
    #[error("empty password for user {user:?} (metadata key {metadata_key:?})")]
    EmptyPassword {
        /// The user.
        user: String,
        /// The metadata key that was looked up.
        metadata_key: String,
    },
}

/// Renders the ACL file for `spec`: the `default` user switched off, the
/// admin (its rules following `spec.server().forks()`, see [`admin_rules`]),
/// then each visitor in spec order, one line each, ending in a newline.
///
/// `password(metadata_key)` returns the cleartext password stored under that
/// metadata key (the user's [`User::secret`]), or `None` when there is none.
///
/// ```
/// let spec = appliance_spec::Spec::reference()?;
/// let text = acl_render::render(&spec, |metadata_key| match metadata_key {
///     "redis-admin-pass" => Some(b"test-admin-password-000".as_slice()),
///     "redis-visitor-pass" => Some(b"test-visitor-password-000".as_slice()),
///     _ => None,
/// })?;
/// assert_eq!(text.lines().count(), 3);
/// assert!(!text.contains("test-admin-password-000"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn render<'a>(
    spec: &Spec,
    password: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<String, AclError> {
    check::users(
        spec.users().map(User::name),
        spec.visitors()
            .iter()
            .map(|v| (v.user().name(), v.stream())),
    )?;

    let mut text = String::new();
    text.push_str(DEFAULT_USER_LINE);
    text.push('\n');
    let admin_hash = password_hash(spec.admin(), &password)?;
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        text,
        "user {} on #{admin_hash} {}",
        spec.admin().name(),
        admin_rules(spec.server().forks())
    );
    for visitor in spec.visitors() {
        let hash = password_hash(visitor.user(), &password)?;
        let _ = writeln!(
            text,
            "user {} on #{hash} {VISITOR_RULES} %W~{}",
            visitor.user().name(),
            escape_key_glob(visitor.stream())
        );
    }
    Ok(text)
}

/// Lowercase hex SHA-256 of `bytes`: the form the server's `#<hash>` rule takes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Escapes the server's glob characters (`*`, `?`, `[`, `]`, `\`) in `key`
/// with a backslash, so the resulting pattern matches exactly `key`.
pub fn escape_key_glob(key: &str) -> String {
    let mut escaped = String::with_capacity(key.len());
    for c in key.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn password_hash<'a>(
    user: &User,
    password: &impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<String, AclError> {
    match password(user.secret()) {
        None => Err(AclError::MissingPassword {
            user: user.name().to_owned(),
            metadata_key: user.secret().to_owned(),
        }),
        Some([]) => Err(AclError::EmptyPassword {
            user: user.name().to_owned(),
            metadata_key: user.secret().to_owned(),
        }),
        Some(bytes) => Ok(sha256_hex(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_known_vectors() {
        // FIPS 180-2 examples and the empty string.
        let cases: &[(&[u8], &str)] = &[
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(sha256_hex(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn escape_key_glob_escapes_exactly_the_glob_characters() {
        let cases = [
            ("ruach:stream:contact", "ruach:stream:contact"),
            ("a*b", r"a\*b"),
            ("a?b", r"a\?b"),
            ("[ab]", r"\[ab\]"),
            (r"a\b", r"a\\b"),
            (r"*?[]\", r"\*\?\[\]\\"),
            ("a^b-c!d{e}f%g~h\"i'j", "a^b-c!d{e}f%g~h\"i'j"),
        ];
        for (key, want) in cases {
            assert_eq!(escape_key_glob(key), want, "key {key:?}");
        }
    }
}
