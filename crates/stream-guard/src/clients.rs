//! Connection slots: which connections the guard closes. Pure: the glue keeps
//! the table from the server's connect/disconnect events and the command
//! filter, and at each timer tick asks [`sweep`] which to close.
//!
//! A connection other than the admin's is closed when
//! - it has not authenticated `auth_timeout` s after connecting, or
//! - it has not completed a command for `command_timeout` s (counted from the
//!   connect when it never completed one). The command filter sees a command
//!   only once it has fully arrived, so a client trickling one byte a second
//!   never completes one, whatever the server's own `timeout` (which counts
//!   any byte) thinks;
//! - or the server is within `reserved` slots of `maxclients`: then the
//!   connections idle longest go first, until the count is below
//!   `maxclients - reserved`, so the admin can always connect and AUTH.
//!
//! Admin connections are never closed.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use crate::report::RateWindow;

/// Most connections the table tracks. The server admits at most
/// `maxclients` (1000 in the reference deployment, bounded by the file
/// descriptor limit), so this is only a backstop against missed events: a
/// connection that arrives when the table is full is closed at the next tick.
pub const MAX_TRACKED: usize = 65_536;

/// Most untracked connections remembered for closing.
const MAX_OVERFLOW: usize = 1024;

/// One tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// When it connected (ms on the guard's clock).
    pub connected_ms: u64,
    /// When it last completed a command, if ever.
    pub last_command_ms: Option<u64>,
}

impl Tracked {
    /// Its last sign of life: the last completed command, else the connect.
    pub fn last_activity_ms(&self) -> u64 {
        self.last_command_ms.unwrap_or(self.connected_ms)
    }
}

/// The connections the server has.
#[derive(Debug, Clone, Default)]
pub struct ClientTable {
    clients: HashMap<u64, Tracked>,
    overflow: Vec<u64>,
}

impl ClientTable {
    /// An empty table.
    pub fn new() -> ClientTable {
        ClientTable::default()
    }

    /// Connection `id` opened.
    pub fn connected(&mut self, id: u64, now_ms: u64) {
        if self.clients.len() >= MAX_TRACKED && !self.clients.contains_key(&id) {
            if self.overflow.len() < MAX_OVERFLOW {
                self.overflow.push(id);
            }
            return;
        }
        self.clients.insert(
            id,
            Tracked {
                connected_ms: now_ms,
                last_command_ms: None,
            },
        );
    }

    /// Connection `id` closed.
    pub fn disconnected(&mut self, id: u64) {
        self.clients.remove(&id);
        self.overflow.retain(|o| *o != id);
    }

    /// Connection `id` completed a command (the filter saw it).
    pub fn command(&mut self, id: u64, now_ms: u64) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.last_command_ms = Some(now_ms);
        }
    }

    /// Connections tracked (the admin's included).
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The tracked connections.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Tracked)> + '_ {
        self.clients.iter().map(|(id, t)| (*id, *t))
    }

    /// Untracked connections to close (taken: each is reported once).
    pub fn take_overflow(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.overflow)
    }
}

/// Who a connection is authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Not authenticated.
    None,
    /// As the admin.
    Admin,
    /// As any other user.
    Other,
}

/// One connection as the sweep sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The server's client id.
    pub id: u64,
    /// Connect and activity times.
    pub tracked: Tracked,
    /// Who it is.
    pub auth: Auth,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Not authenticated within `auth_timeout`.
    AuthTimeout,
    /// No completed command for `command_timeout`.
    CommandTimeout,
    /// Idle longest while the admin's slots were needed.
    AdminSlots,
}

/// The sweep's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepLimits {
    /// Seconds to authenticate.
    pub auth_timeout_ms: u64,
    /// Seconds without a completed command.
    pub command_timeout_ms: u64,
    /// Slots kept free for the admin.
    pub reserved: u64,
}

/// Which connections to close at `now_ms`, with the server's `maxclients`.
/// `clients` is every connection the server has (the admin's included).
/// Deterministic: ties go to the lower id.
pub fn sweep(
    limits: &SweepLimits,
    now_ms: u64,
    maxclients: u64,
    clients: &[Candidate],
) -> Vec<(u64, CloseReason)> {
    let mut closing: Vec<(u64, CloseReason)> = Vec::new();
    let mut keep: Vec<&Candidate> = Vec::new();
    for c in clients {
        if c.auth == Auth::Admin {
            continue;
        }
        let age = now_ms.saturating_sub(c.tracked.connected_ms);
        let idle = now_ms.saturating_sub(c.tracked.last_activity_ms());
        if c.auth == Auth::None && age >= limits.auth_timeout_ms {
            closing.push((c.id, CloseReason::AuthTimeout));
        } else if idle >= limits.command_timeout_ms {
            closing.push((c.id, CloseReason::CommandTimeout));
        } else {
            keep.push(c);
        }
    }
    let line = maxclients.saturating_sub(limits.reserved);
    let total = u64::try_from(clients.len()).unwrap_or(u64::MAX);
    let mut remaining = total.saturating_sub(u64::try_from(closing.len()).unwrap_or(u64::MAX));
    if remaining >= line {
        keep.sort_by_key(|c| (c.tracked.last_activity_ms(), c.id));
        for c in keep {
            if remaining < line {
                break;
            }
            closing.push((c.id, CloseReason::AdminSlots));
            remaining = remaining.saturating_sub(1);
        }
    }
    closing
}

/// The counts of one report window of closed connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReport {
    /// Connections closed.
    pub closed: u64,
    /// Seconds the window covers.
    pub seconds: u64,
    /// Of them, for the auth timeout.
    pub auth_timeout: u64,
    /// For the command timeout.
    pub command_timeout: u64,
    /// To keep the admin's slots.
    pub admin_slots: u64,
    /// The slots kept.
    pub reserved: u64,
}

impl CloseReport {
    /// The console line.
    pub fn log_line(&self) -> String {
        format!(
            "stream-guard: closed {} connections in the last {} s ({} auth timeout, {} command timeout, {} to keep {} slots for the admin)",
            self.closed, self.seconds, self.auth_timeout, self.command_timeout, self.admin_slots, self.reserved
        )
    }
}

/// Counts closes for a line at most every [`crate::throttle::REPORT_PERIOD_MS`].
#[derive(Debug, Clone)]
pub struct CloseCounter {
    window: RateWindow,
    counts: [u64; 3],
    reserved: u64,
}

impl CloseCounter {
    /// Counting for a guard keeping `reserved` slots.
    pub fn new(reserved: u64) -> CloseCounter {
        CloseCounter {
            window: RateWindow::new(crate::throttle::REPORT_PERIOD_MS),
            counts: [0; 3],
            reserved,
        }
    }

    /// One connection closed for `reason`.
    pub fn closed(&mut self, reason: CloseReason, now_ms: u64) {
        let [auth, command, slots] = &mut self.counts;
        let slot = match reason {
            CloseReason::AuthTimeout => auth,
            CloseReason::CommandTimeout => command,
            CloseReason::AdminSlots => slots,
        };
        *slot = slot.saturating_add(1);
        self.window.note(now_ms);
    }

    /// The line's counts when one is due; resets them.
    pub fn report(&mut self, now_ms: u64) -> Option<CloseReport> {
        let seconds = self.window.due(now_ms)?;
        let [auth_timeout, command_timeout, admin_slots] = std::mem::take(&mut self.counts);
        Some(CloseReport {
            closed: auth_timeout
                .saturating_add(command_timeout)
                .saturating_add(admin_slots),
            seconds,
            auth_timeout,
            command_timeout,
            admin_slots,
            reserved: self.reserved,
        })
    }
}
