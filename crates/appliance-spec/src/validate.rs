//! Raw file shape -> [`Spec`]. Each check names the field and the value.

use crate::raw::{RawFirewall, RawForks, RawOnEventLoss, RawRole, RawSpec, RawUser};
use crate::{
    Firewall, Forks, Governor, Limits, Metadata, OnEventLoss, Server, Spec, SpecError, User,
    Visitor,
};

/// Longest user name, stream key or metadata key accepted.
const MAX_NAME_LEN: usize = 64;
const MAX_STREAM_KEY_LEN: usize = 256;
const MAX_PATH_LEN: usize = 256;
/// Largest per-source meter: each full meter element costs the kernel about
/// 100-200 bytes (see pf-rules' README), so 262144 sources stay under about
/// 64 MiB for both meters together, even when a flood fills them.
const MAX_METER_SIZE: u32 = 262_144;
/// Longest a server child may live: a day. A bound of more bounds nothing;
/// a machine whose rewrite takes that long needs another design.
const MAX_CHILD_SECONDS: u32 = 86_400;

/// A server user name: 1 to 64 characters from `[A-Za-z0-9._-]`, starting with
/// a letter or digit, and not `default` (the server's built-in user, which the
/// ACL file switches off). No spaces, control characters or ACL syntax
/// (`>`, `#`, `~`, `&`, `+`, `-`, `@` ...) can appear at the start, so the name
/// can never be read as a rule.
pub fn is_valid_user_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && first.is_ascii_alphanumeric()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "default"
}

/// A stream key: 1 to 256 printable ASCII characters, no space. Glob
/// characters are allowed here; the ACL renderer escapes them.
pub fn is_valid_stream_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_STREAM_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A metadata attribute name: 1 to 64 characters from `[A-Za-z0-9_-]`.
pub fn is_valid_metadata_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_NAME_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// An absolute path of plain components: no `.`/`..`, no empty components, no
/// whitespace or control characters, not `/` itself.
fn is_valid_abs_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    path.len() <= MAX_PATH_LEN
        && !rest.is_empty()
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && path.bytes().all(|b| b.is_ascii_graphic())
}

fn check<T: std::fmt::Debug>(
    ok: bool,
    field: &str,
    value: T,
    reason: &'static str,
) -> Result<(), SpecError> {
    if ok {
        Ok(())
    } else {
        Err(SpecError::invalid(field, value, reason))
    }
}

fn check_path(field: &str, value: &str) -> Result<(), SpecError> {
    check(
        is_valid_abs_path(value),
        field,
        value,
        "must be an absolute path of plain components (no `.`, `..`, spaces or control characters)",
    )
}

fn check_nonzero(field: &str, value: u64) -> Result<(), SpecError> {
    check(value > 0, field, value, "must be greater than 0")
}

pub(crate) fn validate(raw: RawSpec) -> Result<Spec, SpecError> {
    check(
        is_valid_user_name(&raw.appliance.name) && raw.appliance.name.len() <= 63,
        "appliance.name",
        &raw.appliance.name,
        "must be 1-63 characters from [A-Za-z0-9._-], starting with a letter or digit",
    )?;

    let s = &raw.server;
    check_path("server.binary", &s.binary)?;
    check_path("server.config", &s.config)?;
    check_path("server.acl_file", &s.acl_file)?;
    check_path("server.data_dir", &s.data_dir)?;
    check(s.port != 0, "server.port", s.port, "must be 1-65535")?;
    check(
        s.uid != 0,
        "server.uid",
        s.uid,
        "the server never runs as root; pick a non-zero uid",
    )?;
    check(
        s.gid != 0,
        "server.gid",
        s.gid,
        "the server never runs as group root; pick a non-zero gid",
    )?;
    check(
        s.uid <= i32::MAX as u32,
        "server.uid",
        s.uid,
        "must fit in 31 bits (the kernel's (uid_t)-1 and beyond are reserved)",
    )?;
    check(
        s.gid <= i32::MAX as u32,
        "server.gid",
        s.gid,
        "must fit in 31 bits (the kernel's (gid_t)-1 and beyond are reserved)",
    )?;

    let m = &raw.metadata;
    check(
        is_valid_base_url(&m.base_url),
        "metadata.base_url",
        &m.base_url,
        "must be a plain http:// URL with a host, ending in `/`, no spaces, query or fragment",
    )?;
    check_nonzero("metadata.deadline_ms", m.deadline_ms.into())?;
    check(
        (1..=20).contains(&m.attempts),
        "metadata.attempts",
        m.attempts,
        "must be 1-20",
    )?;

    let (admin, visitors) = validate_users(&raw.users)?;

    let f = &raw.firewall;
    check_nonzero(
        "firewall.conn_rate_per_source",
        f.conn_rate_per_source.into(),
    )?;
    check(
        f.conn_burst_per_source >= f.conn_rate_per_source,
        "firewall.conn_burst_per_source",
        f.conn_burst_per_source,
        "must be at least conn_rate_per_source",
    )?;

    let l = &raw.limits;
    check_nonzero("limits.maxclients", l.maxclients.into())?;
    check_nonzero("limits.timeout", l.timeout.into())?;
    check(
        l.proto_max_bulk_len >= 1_048_576,
        "limits.proto_max_bulk_len",
        l.proto_max_bulk_len,
        "must be at least 1048576 (Valkey 9 refuses smaller)",
    )?;
    check(
        l.client_query_buffer_limit >= l.proto_max_bulk_len,
        "limits.client_query_buffer_limit",
        l.client_query_buffer_limit,
        "must be at least proto_max_bulk_len",
    )?;
    check(
        (1..=1024).contains(&l.xadd_max_pairs),
        "limits.xadd_max_pairs",
        l.xadd_max_pairs,
        "must be 1-1024",
    )?;
    check(
        l.xadd_max_bytes >= 2 && u64::from(l.xadd_max_bytes) <= l.proto_max_bulk_len,
        "limits.xadd_max_bytes",
        l.xadd_max_bytes,
        "must be at least 2 and at most proto_max_bulk_len",
    )?;

    // After limits: these bounds are relative to a valid maxclients.
    check_firewall_caps(f, l.maxclients)?;

    let g = &raw.governor;
    check(
        (10..=60_000).contains(&g.rescan_interval_ms),
        "governor.rescan_interval_ms",
        g.rescan_interval_ms,
        "must be 10-60000",
    )?;
    check(
        (1..=MAX_CHILD_SECONDS).contains(&g.max_child_seconds),
        "governor.max_child_seconds",
        g.max_child_seconds,
        "must be 1-86400 (seconds a BGSAVE or AOF-rewrite child may live; a day at most)",
    )?;

    let guard = crate::guard::validate(&raw.guard, l.maxclients)?;

    Ok(Spec {
        name: raw.appliance.name,
        server: Server {
            binary: raw.server.binary,
            config: raw.server.config,
            acl_file: raw.server.acl_file,
            data_dir: raw.server.data_dir,
            port: raw.server.port,
            uid: raw.server.uid,
            gid: raw.server.gid,
            forks: match raw.server.forks {
                RawForks::Bounded => Forks::Bounded,
                RawForks::Never => Forks::Never,
            },
        },
        metadata: Metadata {
            base_url: raw.metadata.base_url,
            deadline_ms: raw.metadata.deadline_ms,
            attempts: raw.metadata.attempts,
        },
        admin,
        visitors,
        firewall: Firewall {
            icmp_echo: f.icmp_echo,
            conn_rate_per_source: f.conn_rate_per_source,
            conn_burst_per_source: f.conn_burst_per_source,
            conn_max_per_source: f.conn_max_per_source,
            conn_max_total: f.conn_max_total,
            meter_size: f.meter_size,
        },
        limits: Limits {
            maxclients: l.maxclients,
            timeout: l.timeout,
            proto_max_bulk_len: l.proto_max_bulk_len,
            client_query_buffer_limit: l.client_query_buffer_limit,
            xadd_max_pairs: l.xadd_max_pairs,
            xadd_max_bytes: l.xadd_max_bytes,
        },
        governor: Governor {
            rescan_interval_ms: g.rescan_interval_ms,
            on_event_loss: match g.on_event_loss {
                RawOnEventLoss::Halt => OnEventLoss::Halt,
                RawOnEventLoss::Rescan => OnEventLoss::Rescan,
            },
            max_child_seconds: g.max_child_seconds,
        },
        guard,
    })
}

/// The connection caps and meter size, relative to `limits.maxclients`.
fn check_firewall_caps(f: &RawFirewall, maxclients: u32) -> Result<(), SpecError> {
    check(
        f.conn_max_per_source >= 1 && f.conn_max_per_source < maxclients,
        "firewall.conn_max_per_source",
        f.conn_max_per_source,
        "must be at least 1 and below limits.maxclients (one source must not be able to hold every client slot)",
    )?;
    check(
        f.meter_size >= maxclients && f.meter_size <= MAX_METER_SIZE,
        "firewall.meter_size",
        f.meter_size,
        "must be at least limits.maxclients (every client may come from its own address) and at most 262144 (kernel memory)",
    )?;
    check(
        f.conn_max_total >= f.conn_max_per_source && f.conn_max_total <= f.meter_size,
        "firewall.conn_max_total",
        f.conn_max_total,
        "must be at least conn_max_per_source and at most meter_size",
    )?;
    Ok(())
}

fn is_valid_base_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !host.contains('@')
        && url.ends_with('/')
        && url.len() <= MAX_PATH_LEN
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

fn validate_users(users: &[RawUser]) -> Result<(User, Vec<Visitor>), SpecError> {
    let mut admin = None;
    let mut visitors = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let at = |f: &str| format!("users[{i}].{f}");
        check(
            is_valid_user_name(&u.name),
            &at("name"),
            &u.name,
            "must be 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit, and not `default`",
        )?;
        check(
            is_valid_metadata_key(&u.secret),
            &at("secret"),
            &u.secret,
            "must be a metadata key: 1-64 characters from [A-Za-z0-9_-]",
        )?;
        for earlier in users.iter().take(i) {
            check(
                earlier.name != u.name,
                &at("name"),
                &u.name,
                "duplicates an earlier user's name",
            )?;
            check(
                earlier.secret != u.secret,
                &at("secret"),
                &u.secret,
                "is already another user's secret; every user needs its own password",
            )?;
        }
        let user = User {
            name: u.name.clone(),
            secret: u.secret.clone(),
        };
        match (u.role, &u.stream) {
            (RawRole::Admin, Some(stream)) => {
                return Err(SpecError::invalid(
                    at("stream"),
                    stream,
                    "only append-only users have a stream; the admin may use every key",
                ))
            }
            (RawRole::Admin, None) => {
                if admin.is_some() {
                    return Err(SpecError::invalid(
                        at("role"),
                        "admin",
                        "there must be exactly one admin user",
                    ));
                }
                admin = Some(user);
            }
            (RawRole::AppendOnly, None) => {
                return Err(SpecError::invalid(
                    at("stream"),
                    "(missing)",
                    "an append-only user needs the stream key it may append to",
                ))
            }
            (RawRole::AppendOnly, Some(stream)) => {
                check(
                    is_valid_stream_key(stream),
                    &at("stream"),
                    stream,
                    "must be 1-256 printable ASCII characters without spaces",
                )?;
                visitors.push(Visitor {
                    user,
                    stream: stream.clone(),
                });
            }
        }
    }
    match admin {
        Some(admin) => Ok((admin, visitors)),
        None => Err(SpecError::invalid(
            "users",
            users.len(),
            "there must be exactly one admin user",
        )),
    }
}
