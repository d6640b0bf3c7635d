//! The guard's decision: pure, no I/O, no allocation on the pass path.
#![forbid(unsafe_code)]

use std::fmt;

/// Default pairs per `XADD` when the module arguments do not say.
pub const DEFAULT_MAX_PAIRS: usize = 16;
/// Default bytes of fields and values per `XADD` when the arguments do not say.
pub const DEFAULT_MAX_BYTES: usize = 4096;
/// Default free-space reserve beyond the AOF's size: room for the admin's own
/// writes (a trim, a compaction) after visitors are refused.
pub const DEFAULT_DISK_RESERVE: u64 = 16 * 1024 * 1024;
/// Default share of `maxmemory` past which visitor writes are refused.
pub const DEFAULT_MEMORY_REFUSE_PERCENT: u8 = 90;
/// Default failed AUTHs one source may make per minute (also its burst).
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 10;
/// Default number of sources the AUTH throttle tracks one by one.
pub const DEFAULT_AUTH_SOURCES: usize = 4096;
/// Most sources the throttle may track: each costs about 64 bytes, so this
/// caps the table at about 64 MiB whatever the arguments say.
pub const MAX_AUTH_SOURCES: usize = 1 << 20;
/// Default seconds a connection may stay unauthenticated.
pub const DEFAULT_AUTH_TIMEOUT: u32 = 10;
/// Default seconds a non-admin connection may go without completing a command.
pub const DEFAULT_COMMAND_TIMEOUT: u32 = 30;
/// Default connection slots kept free for the admin.
pub const DEFAULT_ADMIN_RESERVED_SLOTS: u32 = 32;

/// One append-only user and the one stream it may append to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOnly {
    /// ACL user name.
    pub user: Vec<u8>,
    /// The stream key, compared byte for byte.
    pub key: Vec<u8>,
}

/// The module's configuration, from its load arguments:
///
/// ```text
/// append-only <user> <key> [append-only <user> <key> ...]
/// admin <user> data-dir <path>
/// [max-pairs N] [max-bytes N] [disk-reserve <bytes>] [memory-refuse-percent 1-99]
/// [auth-failures-per-minute N] [auth-sources N] [auth-timeout <s>]
/// [command-timeout <s>] [admin-reserved-slots N]
/// ```
///
/// `admin` and `data-dir` are required: without them the guard could neither
/// spare the admin nor watch the disk, and a guard that silently watches
/// nothing is failing open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// The guarded users.
    pub users: Vec<AppendOnly>,
    /// The admin's ACL user name: never refused, never disconnected.
    pub admin: Vec<u8>,
    /// The server's data directory (its `dir`), holding `appendonlydir`.
    pub data_dir: Vec<u8>,
    /// Most field/value pairs in one guarded `XADD`.
    pub max_pairs: usize,
    /// Most bytes of fields and values together in one guarded `XADD`.
    pub max_bytes: usize,
    /// Free bytes kept beyond the AOF's size before visitors are refused.
    pub disk_reserve: u64,
    /// Visitor writes are refused above this percentage of `maxmemory` (1-99).
    pub memory_refuse_percent: u8,
    /// Failed AUTHs per source per minute, and the burst.
    pub auth_failures_per_minute: u32,
    /// Sources tracked one by one; the rest share one bucket.
    pub auth_sources: usize,
    /// Seconds a connection may take to authenticate.
    pub auth_timeout: u32,
    /// Seconds a non-admin connection may go without completing a command.
    pub command_timeout: u32,
    /// Connection slots kept free for the admin below `maxclients`.
    pub admin_reserved_slots: u32,
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
    /// A number outside the keyword's range (keyword, value, range).
    OutOfRange(&'static str, String, &'static str),
    /// No `append-only` user: loading the guard would protect nothing.
    NoUsers,
    /// The same user named twice.
    DuplicateUser(String),
    /// A keyword that may appear once appeared twice.
    Repeated(&'static str),
    /// A required keyword (`admin`, `data-dir`) is missing.
    Missing(&'static str),
    /// The admin is also named as an append-only user.
    AdminIsAppendOnly(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownArgument(a) => write!(f, "unknown argument {a:?}"),
            ConfigError::MissingValue(k) => write!(f, "`{k}` needs a value"),
            ConfigError::BadNumber(k, v) => write!(f, "`{k}` {v:?} is not a positive number"),
            ConfigError::OutOfRange(k, v, range) => write!(f, "`{k}` {v:?} must be {range}"),
            ConfigError::NoUsers => write!(f, "no `append-only <user> <key>` given"),
            ConfigError::DuplicateUser(u) => write!(f, "user {u:?} is named twice"),
            ConfigError::Repeated(k) => write!(f, "`{k}` is given twice"),
            ConfigError::Missing(k) => write!(f, "`{k}` is required"),
            ConfigError::AdminIsAppendOnly(u) => {
                write!(f, "admin {u:?} is also named as an append-only user")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn number<T: std::str::FromStr + Default + PartialEq>(
    keyword: &'static str,
    value: Option<&[u8]>,
) -> Result<T, ConfigError> {
    let value = value.ok_or(ConfigError::MissingValue(keyword))?;
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<T>().ok())
        .filter(|n| *n != T::default())
        .ok_or_else(|| ConfigError::BadNumber(keyword, lossy(value)))
}

fn once<T>(slot: &mut Option<T>, keyword: &'static str, value: T) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(ConfigError::Repeated(keyword));
    }
    *slot = Some(value);
    Ok(())
}

impl GuardConfig {
    /// A configuration with every optional knob at its default.
    pub fn new(users: Vec<AppendOnly>, admin: Vec<u8>, data_dir: Vec<u8>) -> GuardConfig {
        GuardConfig {
            users,
            admin,
            data_dir,
            max_pairs: DEFAULT_MAX_PAIRS,
            max_bytes: DEFAULT_MAX_BYTES,
            disk_reserve: DEFAULT_DISK_RESERVE,
            memory_refuse_percent: DEFAULT_MEMORY_REFUSE_PERCENT,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE,
            auth_sources: DEFAULT_AUTH_SOURCES,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            admin_reserved_slots: DEFAULT_ADMIN_RESERVED_SLOTS,
        }
    }

    /// Parses the module's load arguments.
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Result<GuardConfig, ConfigError> {
        let mut users: Vec<AppendOnly> = Vec::new();
        let (mut admin, mut data_dir) = (None, None);
        let mut config = GuardConfig::new(Vec::new(), Vec::new(), Vec::new());
        let mut it = args.iter().map(AsRef::as_ref);
        while let Some(arg) = it.next() {
            match arg {
                b"append-only" => {
                    let user = it.next().ok_or(ConfigError::MissingValue("append-only"))?;
                    let key = it.next().ok_or(ConfigError::MissingValue("append-only"))?;
                    if users.iter().any(|u| u.user == user) {
                        return Err(ConfigError::DuplicateUser(lossy(user)));
                    }
                    users.push(AppendOnly {
                        user: user.to_vec(),
                        key: key.to_vec(),
                    });
                }
                b"admin" => {
                    let user = it.next().ok_or(ConfigError::MissingValue("admin"))?;
                    once(&mut admin, "admin", user.to_vec())?;
                }
                b"data-dir" => {
                    let dir = it.next().ok_or(ConfigError::MissingValue("data-dir"))?;
                    if !dir.starts_with(b"/") {
                        return Err(ConfigError::OutOfRange(
                            "data-dir",
                            lossy(dir),
                            "an absolute path",
                        ));
                    }
                    once(&mut data_dir, "data-dir", dir.to_vec())?;
                }
                b"max-pairs" => config.max_pairs = number("max-pairs", it.next())?,
                b"max-bytes" => config.max_bytes = number("max-bytes", it.next())?,
                b"disk-reserve" => config.disk_reserve = number("disk-reserve", it.next())?,
                b"memory-refuse-percent" => {
                    let value = it.next();
                    let p: u8 = number("memory-refuse-percent", value)?;
                    if p > 99 {
                        return Err(ConfigError::OutOfRange(
                            "memory-refuse-percent",
                            p.to_string(),
                            "1-99",
                        ));
                    }
                    config.memory_refuse_percent = p;
                }
                b"auth-failures-per-minute" => {
                    config.auth_failures_per_minute = number("auth-failures-per-minute", it.next())?
                }
                b"auth-sources" => {
                    let n: usize = number("auth-sources", it.next())?;
                    if n > MAX_AUTH_SOURCES {
                        return Err(ConfigError::OutOfRange(
                            "auth-sources",
                            n.to_string(),
                            "1-1048576",
                        ));
                    }
                    config.auth_sources = n;
                }
                b"auth-timeout" => config.auth_timeout = number("auth-timeout", it.next())?,
                b"command-timeout" => {
                    config.command_timeout = number("command-timeout", it.next())?
                }
                b"admin-reserved-slots" => {
                    config.admin_reserved_slots = number("admin-reserved-slots", it.next())?
                }
                other => return Err(ConfigError::UnknownArgument(lossy(other))),
            }
        }
        if users.is_empty() {
            return Err(ConfigError::NoUsers);
        }
        let admin = admin.ok_or(ConfigError::Missing("admin"))?;
        if users.iter().any(|u| u.user == admin) {
            return Err(ConfigError::AdminIsAppendOnly(lossy(&admin)));
        }
        config.users = users;
        config.admin = admin;
        config.data_dir = data_dir.ok_or(ConfigError::Missing("data-dir"))?;
        Ok(config)
    }

    /// The load arguments that [`GuardConfig::from_args`] reads back as this
    /// configuration (every knob spelled out, defaults included, so the
    /// rendered `valkey.conf` says what the guard does).
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let mut args: Vec<Vec<u8>> = Vec::new();
        for u in &self.users {
            args.extend([b"append-only".to_vec(), u.user.clone(), u.key.clone()]);
        }
        args.extend([b"admin".to_vec(), self.admin.clone()]);
        args.extend([b"data-dir".to_vec(), self.data_dir.clone()]);
        let numbers: [(&str, String); 9] = [
            ("max-pairs", self.max_pairs.to_string()),
            ("max-bytes", self.max_bytes.to_string()),
            ("disk-reserve", self.disk_reserve.to_string()),
            (
                "memory-refuse-percent",
                self.memory_refuse_percent.to_string(),
            ),
            (
                "auth-failures-per-minute",
                self.auth_failures_per_minute.to_string(),
            ),
            ("auth-sources", self.auth_sources.to_string()),
            ("auth-timeout", self.auth_timeout.to_string()),
            ("command-timeout", self.command_timeout.to_string()),
            (
                "admin-reserved-slots",
                self.admin_reserved_slots.to_string(),
            ),
        ];
        for (keyword, value) in numbers {
            args.extend([keyword.as_bytes().to_vec(), value.into_bytes()]);
        }
        args
    }

    fn rule_for(&self, user: &[u8]) -> Option<&AppendOnly> {
        self.users.iter().find(|u| u.user == user)
    }

    /// Whether `user` is one of the guarded append-only users.
    pub fn is_append_only(&self, user: &[u8]) -> bool {
        self.rule_for(user).is_some()
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
    /// The data disk is nearly full: the room left is kept for an AOF rewrite
    /// and the admin ([`crate::space`]).
    DiskLow,
    /// Used memory is past the refusal share of `maxmemory`.
    MemoryLow,
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
            Refusal::DiskLow => "disk-low",
            Refusal::MemoryLow => "memory-low",
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
    judge_under(config, None, user, argv)
}

/// [`judge`], while visitor writes are refused for `space` (the disk or
/// memory is low): a well-formed visitor `XADD` is then refused with that
/// reason. A malformed one keeps its own reason, so the visitor learns what
/// is wrong with the command first. Nothing about other users changes: the
/// admin is never refused by the guard.
pub fn judge_under<A: AsRef<[u8]>>(
    config: &GuardConfig,
    space: Option<Refusal>,
    user: Option<&[u8]>,
    argv: &[A],
) -> Verdict {
    let Some(command) = argv.first() else {
        return Verdict::Pass;
    };
    if !command.as_ref().eq_ignore_ascii_case(b"xadd") {
        return Verdict::Pass;
    }
    let Some(rule) = user.and_then(|u| config.rule_for(u)) else {
        return Verdict::Pass;
    };
    match (check_xadd(config, rule, argv), space) {
        (Ok(()), None) => Verdict::Pass,
        (Ok(()), Some(refusal)) | (Err(refusal), _) => Verdict::Refuse(refusal),
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
