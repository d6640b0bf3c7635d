//! The `[guard]` table: stream-guard's protection of the public port (disk and
//! memory refusal, the AUTH throttle, connection slots). Its own file so the
//! other tables' edits never touch it.

use serde::Deserialize;

use crate::SpecError;

/// The table as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    pub(crate) disk_reserve_bytes: u64,
    pub(crate) memory_refuse_percent: u8,
    pub(crate) auth_failures_per_minute: u32,
    pub(crate) auth_sources: u32,
    pub(crate) auth_timeout_seconds: u32,
    pub(crate) command_timeout_seconds: u32,
    pub(crate) admin_reserved_slots: u32,
}

/// What stream-guard enforces on the public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    disk_reserve_bytes: u64,
    memory_refuse_percent: u8,
    auth_failures_per_minute: u32,
    auth_sources: u32,
    auth_timeout_seconds: u32,
    command_timeout_seconds: u32,
    admin_reserved_slots: u32,
}

impl Guard {
    /// Free bytes kept on the data disk beyond the AOF's size before visitor
    /// writes are refused (room for the admin's trim and compaction). 1 MiB
    /// to 1 TiB.
    pub fn disk_reserve_bytes(&self) -> u64 {
        self.disk_reserve_bytes
    }

    /// Visitor writes are refused above this share of `maxmemory` (1-99).
    pub fn memory_refuse_percent(&self) -> u8 {
        self.memory_refuse_percent
    }

    /// Failed AUTHs per source address (IPv4 /32, IPv6 /64) per minute; also
    /// the burst (1-600).
    pub fn auth_failures_per_minute(&self) -> u32 {
        self.auth_failures_per_minute
    }

    /// Source addresses the throttle tracks one by one; the rest share one
    /// bucket (16 to 1048576).
    pub fn auth_sources(&self) -> u32 {
        self.auth_sources
    }

    /// Seconds a connection may stay unauthenticated (1-300).
    pub fn auth_timeout_seconds(&self) -> u32 {
        self.auth_timeout_seconds
    }

    /// Seconds a non-admin connection may go without completing a command
    /// (1-86400).
    pub fn command_timeout_seconds(&self) -> u32 {
        self.command_timeout_seconds
    }

    /// Connection slots below `limits.maxclients` kept free for the admin
    /// (at least 1, below `maxclients`).
    pub fn admin_reserved_slots(&self) -> u32 {
        self.admin_reserved_slots
    }
}

/// Smallest reserve: one command of the smallest `proto_max_bulk_len`
/// Valkey accepts (1 MiB), so the admin can always write at least once.
const MIN_DISK_RESERVE: u64 = 1 << 20;
/// Largest reserve: 1 TiB; more is a typo, not a reserve.
const MAX_DISK_RESERVE: u64 = 1 << 40;
/// Above 600 failures a minute (10 a second) the throttle throttles nothing.
const MAX_AUTH_FAILURES_PER_MINUTE: u32 = 600;
/// The module's own bound on the table (about 64 bytes an entry).
const MAX_AUTH_SOURCES: u32 = 1 << 20;
/// Fewer than 16 tracked sources would put nearly everyone in the shared
/// bucket.
const MIN_AUTH_SOURCES: u32 = 16;
const MAX_AUTH_TIMEOUT: u32 = 300;
const MAX_COMMAND_TIMEOUT: u32 = 86_400;

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

/// Validates the table against the server's `maxclients`.
pub(crate) fn validate(g: &RawGuard, maxclients: u32) -> Result<Guard, SpecError> {
    check(
        (MIN_DISK_RESERVE..=MAX_DISK_RESERVE).contains(&g.disk_reserve_bytes),
        "guard.disk_reserve_bytes",
        g.disk_reserve_bytes,
        "must be 1048576 (1 MiB) to 1099511627776 (1 TiB)",
    )?;
    check(
        (1..=99).contains(&g.memory_refuse_percent),
        "guard.memory_refuse_percent",
        g.memory_refuse_percent,
        "must be 1-99",
    )?;
    check(
        (1..=MAX_AUTH_FAILURES_PER_MINUTE).contains(&g.auth_failures_per_minute),
        "guard.auth_failures_per_minute",
        g.auth_failures_per_minute,
        "must be 1-600",
    )?;
    check(
        (MIN_AUTH_SOURCES..=MAX_AUTH_SOURCES).contains(&g.auth_sources),
        "guard.auth_sources",
        g.auth_sources,
        "must be 16-1048576",
    )?;
    check(
        (1..=MAX_AUTH_TIMEOUT).contains(&g.auth_timeout_seconds),
        "guard.auth_timeout_seconds",
        g.auth_timeout_seconds,
        "must be 1-300",
    )?;
    check(
        (1..=MAX_COMMAND_TIMEOUT).contains(&g.command_timeout_seconds),
        "guard.command_timeout_seconds",
        g.command_timeout_seconds,
        "must be 1-86400",
    )?;
    check(
        g.admin_reserved_slots >= 1 && g.admin_reserved_slots < maxclients,
        "guard.admin_reserved_slots",
        g.admin_reserved_slots,
        "must be at least 1 and less than limits.maxclients",
    )?;
    Ok(Guard {
        disk_reserve_bytes: g.disk_reserve_bytes,
        memory_refuse_percent: g.memory_refuse_percent,
        auth_failures_per_minute: g.auth_failures_per_minute,
        auth_sources: g.auth_sources,
        auth_timeout_seconds: g.auth_timeout_seconds,
        command_timeout_seconds: g.command_timeout_seconds,
        admin_reserved_slots: g.admin_reserved_slots,
    })
}
