//! The AUTH guessing throttle: a token bucket of failed AUTHs per source
//! address. Pure: the glue tells it of attempts and failures with the time,
//! and asks it whether a source may try at all.
//!
//! - A source is an IPv4 address (/32) or an IPv6 /64 (one customer's network:
//!   a single host can pick any address in its /64). IPv4-mapped IPv6 counts
//!   as IPv4. Unix-socket clients and addresses that do not parse share one
//!   source.
//! - Each bucket holds `per_minute` failures (the burst) and refills at
//!   `per_minute` a minute. A source whose bucket is empty is refused before
//!   its password is looked at; refused attempts do not drain the bucket, so a
//!   source regains one attempt every `60 / per_minute` seconds whatever it
//!   sends meanwhile.
//! - The table tracks at most `max_sources` sources. When it is full, every
//!   source not in it shares ONE extra bucket: an attacker spreading guesses
//!   over more addresses than the table holds gets the rate of one source in
//!   total, never an unmetered path (fail closed). The price is that during
//!   such an attack a newcomer may find the shared bucket empty; it recovers
//!   as buckets refill and full ones are pruned.
//! - A bucket that has refilled completely holds nothing a fresh one would
//!   not, so [`AuthThrottle::prune`] drops it and the table frees itself.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::report::RateWindow;

/// Where an AUTH comes from, as the throttle counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// One IPv4 address.
    V4([u8; 4]),
    /// One IPv6 /64 (the first 8 bytes).
    V6([u8; 8]),
    /// Unix socket, or an address that does not parse: one shared source.
    Local,
}

impl Source {
    /// The source of a client with peer address `addr` (as the server prints
    /// it, no port); `unix` for a unix-socket client.
    pub fn from_addr(addr: &str, unix: bool) -> Source {
        if unix {
            return Source::Local;
        }
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Source::V4(v4.octets()),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut prefix = [0u8; 8];
                    for (p, b) in prefix.iter_mut().zip(o.iter()) {
                        *p = *b;
                    }
                    Source::V6(prefix)
                }
            },
            Err(_) => Source::Local,
        }
    }
}

/// One failure, in bucket units: a bucket counts in 1/60000 of a failure so
/// that refilling `per_minute` failures per 60000 ms is `per_minute` units per
/// millisecond, in integers.
const UNIT: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u64,
    at_ms: u64,
}

impl Bucket {
    fn full(capacity: u64, now_ms: u64) -> Bucket {
        Bucket {
            units: capacity,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, per_minute: u64, capacity: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(per_minute))
            .min(capacity);
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// The counts of one report window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthReport {
    /// Failed AUTHs (the server said WRONGPASS).
    pub failures: u64,
    /// Seconds the window covers.
    pub seconds: u64,
    /// Distinct sources among the failures (counted up to `max_sources`).
    pub addresses: u64,
    /// Attempts the throttle refused before any password check.
    pub refused: u64,
}

impl AuthReport {
    /// The console line.
    pub fn log_line(&self) -> String {
        format!(
            "stream-guard: auth failures: {} in the last {} s from {} addresses, {} refused by the throttle",
            self.failures, self.seconds, self.addresses, self.refused
        )
    }
}

/// Seconds between two report lines at most once.
pub const REPORT_PERIOD_MS: u64 = 10_000;

/// The throttle's state.
#[derive(Debug, Clone)]
pub struct AuthThrottle {
    per_minute: u64,
    capacity: u64,
    max_sources: usize,
    table: HashMap<Source, Bucket>,
    shared: Bucket,
    window: RateWindow,
    failures: u64,
    refused: u64,
    seen: HashSet<Source>,
}

/// The error a refused AUTH gets. The server puts `-ERR ` before it, so the
/// client reads `ERR too many failed AUTH attempts from this address, retry later`.
pub const REFUSED_MESSAGE: &str = "too many failed AUTH attempts from this address, retry later";

impl AuthThrottle {
    /// `per_minute` failures a minute per source (and as burst), at most
    /// `max_sources` sources tracked one by one.
    pub fn new(per_minute: u32, max_sources: usize) -> AuthThrottle {
        let per_minute = u64::from(per_minute.max(1));
        let capacity = per_minute.saturating_mul(UNIT);
        AuthThrottle {
            per_minute,
            capacity,
            max_sources: max_sources.max(1),
            table: HashMap::new(),
            shared: Bucket::full(capacity, 0),
            window: RateWindow::new(REPORT_PERIOD_MS),
            failures: 0,
            refused: 0,
            seen: HashSet::new(),
        }
    }

    /// Sources tracked one by one right now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// The bucket `source` is metered by: its own, or the shared one when the
    /// table is full; `None` for an untracked source while the table has room
    /// (a fresh, full bucket).
    fn bucket(&mut self, source: Source) -> Option<&mut Bucket> {
        if self.table.contains_key(&source) {
            return self.table.get_mut(&source);
        }
        if self.table.len() >= self.max_sources {
            return Some(&mut self.shared);
        }
        None
    }

    /// May `source` attempt an AUTH now? A refusal is counted for the report.
    pub fn allows(&mut self, source: Source, now_ms: u64) -> bool {
        let (per_minute, capacity) = (self.per_minute, self.capacity);
        let allowed = match self.bucket(source) {
            None => true,
            Some(b) => {
                b.refill(per_minute, capacity, now_ms);
                b.units >= UNIT
            }
        };
        if !allowed {
            self.refused = self.refused.saturating_add(1);
            self.window.note(now_ms);
        }
        allowed
    }

    /// `source` failed an AUTH (wrong password, unknown or disabled user).
    pub fn failed(&mut self, source: Source, now_ms: u64) {
        let (per_minute, capacity) = (self.per_minute, self.capacity);
        match self.bucket(source) {
            Some(b) => {
                b.refill(per_minute, capacity, now_ms);
                b.units = b.units.saturating_sub(UNIT);
            }
            None => {
                let mut b = Bucket::full(capacity, now_ms);
                b.units = b.units.saturating_sub(UNIT);
                self.table.insert(source, b);
            }
        }
        self.failures = self.failures.saturating_add(1);
        if self.seen.len() < self.max_sources {
            self.seen.insert(source);
        }
        self.window.note(now_ms);
    }

    /// Drops the buckets that have refilled completely (a fresh bucket is
    /// the same); run from the timer.
    pub fn prune(&mut self, now_ms: u64) {
        let (per_minute, capacity) = (self.per_minute, self.capacity);
        self.table.retain(|_, b| {
            b.refill(per_minute, capacity, now_ms);
            b.units < capacity
        });
        self.shared.refill(per_minute, capacity, now_ms);
    }

    /// The report line's counts when one is due (at most one per
    /// [`REPORT_PERIOD_MS`], only while something happened); resets them.
    pub fn report(&mut self, now_ms: u64) -> Option<AuthReport> {
        let seconds = self.window.due(now_ms)?;
        let report = AuthReport {
            failures: self.failures,
            seconds,
            addresses: u64::try_from(self.seen.len()).unwrap_or(u64::MAX),
            refused: self.refused,
        };
        self.failures = 0;
        self.refused = 0;
        self.seen.clear();
        Some(report)
    }
}
