//! The guard's decision: pure, no I/O, no allocation on the pass path.
#![forbid(unsafe_code)]

use std::fmt;

/// Default pairs per `XADD` when the module arguments do not say.
pub const DEFAULT_MAX_PAIRS: usize = 16;
/// Default bytes of fields and values per `XADD` when the arguments do not say.
pub const DEFAULT_MAX_BYTES: usize = 4096;

/// One append-only user and the one stream it may append to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOnly {
    /// ACL user name.
    pub user: Vec<u8>,
    /// The stream key, compared byte for byte.
    pub key: Vec<u8>,
}

/// The module's configuration, from its load arguments:
/// `append-only <user> <key> [append-only <user> <key> ...] [max-pairs N] [max-bytes N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// The guarded users.
    pub users: Vec<AppendOnly>,
    /// Most field/value pairs in one guarded `XADD`.
    pub max_pairs: usize,
    /// Most bytes of fields and values together in one guarded `XADD`.
    pub max_bytes: usize,
}

/// Why the load arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// An argument that is not a known keyword.
    UnknownArgument(String),
    /// A keyword without the values it needs.
    MissingValue(&'static str),
    /// A number that does not parse or is 0.
    BadNumber(&'static str, String),
    /// No `append-only` user: loading the guard would protect nothing.
    NoUsers,
    /// The same user named twice.
    DuplicateUser(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownArgument(a) => write!(f, "unknown argument {a:?}"),
            ConfigError::MissingValue(k) => write!(f, "`{k}` needs a value"),
            ConfigError::BadNumber(k, v) => write!(f, "`{k}` {v:?} is not a positive number"),
            ConfigError::NoUsers => write!(f, "no `append-only <user> <key>` given"),
            ConfigError::DuplicateUser(u) => write!(f, "user {u:?} is named twice"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn number(keyword: &'static str, value: Option<&[u8]>) -> Result<usize, ConfigError> {
    let value = value.ok_or(ConfigError::MissingValue(keyword))?;
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| ConfigError::BadNumber(keyword, lossy(value)))
}

impl GuardConfig {
    /// Parses the module's load arguments.
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Result<GuardConfig, ConfigError> {
        let mut config = GuardConfig {
            users: Vec::new(),
            max_pairs: DEFAULT_MAX_PAIRS,
            max_bytes: DEFAULT_MAX_BYTES,
        };
        let mut it = args.iter().map(AsRef::as_ref);
        while let Some(arg) = it.next() {
            match arg {
                b"append-only" => {
                    let user = it.next().ok_or(ConfigError::MissingValue("append-only"))?;
                    let key = it.next().ok_or(ConfigError::MissingValue("append-only"))?;
                    if config.users.iter().any(|u| u.user == user) {
                        return Err(ConfigError::DuplicateUser(lossy(user)));
                    }
                    config.users.push(AppendOnly {
                        user: user.to_vec(),
                        key: key.to_vec(),
                    });
                }
                b"max-pairs" => config.max_pairs = number("max-pairs", it.next())?,
                b"max-bytes" => config.max_bytes = number("max-bytes", it.next())?,
                other => return Err(ConfigError::UnknownArgument(lossy(other))),
            }
        }
        if config.users.is_empty() {
            return Err(ConfigError::NoUsers);
        }
        Ok(config)
    }

    fn rule_for(&self, user: &[u8]) -> Option<&AppendOnly> {
        self.users.iter().find(|u| u.user == user)
    }
}

/// Why an append-only user's `XADD` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `XADD` with no key, ID or field/value pair.
    NoFields,
    /// A key other than the user's stream.
    OtherKey,
    /// A trimming or creation option (`MAXLEN`, `MINID`, `LIMIT`, `NOMKSTREAM`)
    /// where the `*` ID must stand.
    Option,
    /// An explicit entry ID instead of `*`.
    ExplicitId,
    /// A field without a value.
    OddFields,
    /// More field/value pairs than the limit.
    TooManyPairs,
    /// More bytes of fields and values than the limit.
    TooLarge,
}

impl Refusal {
    /// The reason as the short word placed in the refused command's name.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NoFields => "no-fields",
            Refusal::OtherKey => "other-key",
            Refusal::Option => "option",
            Refusal::ExplicitId => "explicit-id",
            Refusal::OddFields => "odd-fields",
            Refusal::TooManyPairs => "too-many-pairs",
            Refusal::TooLarge => "too-large",
        }
    }

    /// The name the refused command is renamed to; the server answers it with
    /// "unknown command 'STREAM-GUARD-REFUSED:<code>'".
    pub fn command_name(self) -> String {
        format!("STREAM-GUARD-REFUSED:{}", self.code())
    }
}

/// The verdict on one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run it unchanged.
    Pass,
    /// Do not run it.
    Refuse(Refusal),
}

/// Judges one command from `user` (`None` when the server has no user for the
/// client: internal clients, which are never visitors).
///
/// `argv[0]` is the command name. Only `XADD` from an append-only user is
/// judged; everything else passes (the ACL decides whether it may run at all).
pub fn judge<A: AsRef<[u8]>>(config: &GuardConfig, user: Option<&[u8]>, argv: &[A]) -> Verdict {
    let Some(command) = argv.first() else {
        return Verdict::Pass;
    };
    if !command.as_ref().eq_ignore_ascii_case(b"xadd") {
        return Verdict::Pass;
    }
    let Some(rule) = user.and_then(|u| config.rule_for(u)) else {
        return Verdict::Pass;
    };
    match check_xadd(config, rule, argv) {
        Ok(()) => Verdict::Pass,
        Err(refusal) => Verdict::Refuse(refusal),
    }
}

/// `XADD <key> * <field> <value> [<field> <value> ...]`, nothing else.
fn check_xadd<A: AsRef<[u8]>>(
    config: &GuardConfig,
    rule: &AppendOnly,
    argv: &[A],
) -> Result<(), Refusal> {
    let (key, id, fields) = match argv {
        [_, key, id, fields @ ..] => (key.as_ref(), id.as_ref(), fields),
        _ => return Err(Refusal::NoFields),
    };
    if key != rule.key.as_slice() {
        return Err(Refusal::OtherKey);
    }
    if id != b"*" {
        let is_option = [&b"maxlen"[..], b"minid", b"limit", b"nomkstream"]
            .iter()
            .any(|o| id.eq_ignore_ascii_case(o));
        return Err(if is_option {
            Refusal::Option
        } else {
            Refusal::ExplicitId
        });
    }
    if fields.is_empty() {
        return Err(Refusal::NoFields);
    }
    if fields.len() % 2 != 0 {
        return Err(Refusal::OddFields);
    }
    if fields.len() / 2 > config.max_pairs {
        return Err(Refusal::TooManyPairs);
    }
    let bytes = fields
        .iter()
        .map(|f| f.as_ref().len())
        .fold(0usize, usize::saturating_add);
    if bytes > config.max_bytes {
        return Err(Refusal::TooLarge);
    }
    Ok(())
}
