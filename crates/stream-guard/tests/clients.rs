//! Which connections the sweep closes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use stream_guard::clients::{
    sweep, Auth, Candidate, ClientTable, CloseCounter, CloseReason, SweepLimits, Tracked,
};

const LIMITS: SweepLimits = SweepLimits {
    auth_timeout_ms: 10_000,
    command_timeout_ms: 30_000,
    reserved: 2,
};

fn c(id: u64, connected: u64, last: Option<u64>, auth: Auth) -> Candidate {
    Candidate {
        id,
        tracked: Tracked {
            connected_ms: connected,
            last_command_ms: last,
        },
        auth,
    }
}

#[test]
fn timeouts() {
    let now = 100_000;
    let clients = [
        c(1, 95_000, None, Auth::None),         // 5 s, unauthenticated: kept
        c(2, 90_000, None, Auth::None),         // 10 s: auth timeout
        c(3, 90_000, Some(91_000), Auth::None), // commands, but no AUTH: auth timeout
        c(4, 0, Some(70_001), Auth::Other),     // idle 29.999 s: kept
        c(5, 0, Some(70_000), Auth::Other),     // idle 30 s: command timeout
        c(6, 0, None, Auth::Admin),             // the admin, idle forever: kept
        c(7, 0, None, Auth::Other),             // authenticated, never completed a command
    ];
    let mut got = sweep(&LIMITS, now, 1000, &clients);
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(
        got,
        [
            (2, CloseReason::AuthTimeout),
            (3, CloseReason::AuthTimeout),
            (5, CloseReason::CommandTimeout),
            (7, CloseReason::CommandTimeout),
        ]
    );
}

#[test]
fn the_admins_slots_are_kept_idlest_first() {
    let now = 10_000;
    // maxclients 6, 2 reserved: at most 3 connections (below 4) after the sweep.
    let clients = [
        c(1, 0, Some(9_000), Auth::Other),
        c(2, 0, Some(1_000), Auth::Other), // idlest
        c(3, 0, None, Auth::Admin),
        c(4, 5_000, None, Auth::None), // idle since its connect at 5 s
        c(5, 0, Some(5_000), Auth::Other), // ties with 4: lower id first
    ];
    let got = sweep(&LIMITS, now, 6, &clients);
    assert_eq!(
        got,
        [(2, CloseReason::AdminSlots), (4, CloseReason::AdminSlots)]
    );
    // Below the line: nothing to do.
    assert!(sweep(&LIMITS, now, 7, &clients[..3]).is_empty());
    // Timeouts count toward the line: 4 connections, one timed out, line 3.
    let with_stale = [
        clients[0],
        clients[1],
        clients[2],
        c(9, 0, None, Auth::None),
    ];
    assert_eq!(
        sweep(&LIMITS, now, 6, &with_stale),
        [(9, CloseReason::AuthTimeout)]
    );
    assert_eq!(
        sweep(&LIMITS, now, 5, &with_stale),
        [(9, CloseReason::AuthTimeout), (2, CloseReason::AdminSlots)]
    );
    // Only admins: nobody is closed, whatever the count.
    let admins: Vec<Candidate> = (0..10).map(|i| c(i, 0, None, Auth::Admin)).collect();
    assert!(sweep(&LIMITS, now, 4, &admins).is_empty());
}

#[test]
fn the_table_follows_the_events() {
    let mut t = ClientTable::new();
    t.connected(1, 0);
    t.connected(2, 5);
    t.command(2, 7);
    t.command(99, 8); // unknown: ignored
    assert_eq!(t.len(), 2);
    let mut all: Vec<_> = t.iter().collect();
    all.sort_by_key(|(id, _)| *id);
    assert_eq!(all[1].1.last_command_ms, Some(7));
    assert_eq!(all[0].1.last_activity_ms(), 0);
    t.disconnected(1);
    t.disconnected(1);
    assert_eq!(t.len(), 1);
    assert!(t.take_overflow().is_empty());
}

#[test]
fn the_close_report_is_bounded_and_exact() {
    let mut r = CloseCounter::new(32);
    assert_eq!(r.report(0), None);
    r.closed(CloseReason::AuthTimeout, 100);
    r.closed(CloseReason::AuthTimeout, 100);
    r.closed(CloseReason::CommandTimeout, 200);
    r.closed(CloseReason::AdminSlots, 300);
    assert_eq!(
        r.report(2_000).unwrap().log_line(),
        "stream-guard: closed 4 connections in the last 2 s (2 auth timeout, 1 command timeout, 1 to keep 32 slots for the admin)"
    );
    r.closed(CloseReason::AdminSlots, 2_100);
    assert_eq!(r.report(11_999), None);
    assert_eq!(r.report(12_000).unwrap().closed, 1);
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![Just(Auth::None), Just(Auth::Admin), Just(Auth::Other)]
}

proptest! {
    /// The sweep never closes an admin, closes each connection at most once,
    /// closes every timed-out one, and leaves fewer than maxclients - reserved
    /// unless only admins remain above that line.
    #[test]
    fn sweep_invariants(
        raw in prop::collection::vec((0u64..60_000, prop::option::of(0u64..60_000), auth()), 0..40),
        maxclients in 1u64..50,
    ) {
        let now = 60_000;
        let clients: Vec<Candidate> = raw
            .iter()
            .enumerate()
            .map(|(i, (conn, last, a))| c(i as u64, *conn, last.map(|l| l.max(*conn)), *a))
            .collect();
        let closing = sweep(&LIMITS, now, maxclients, &clients);
        let mut ids: Vec<u64> = closing.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), closing.len());
        for cl in &clients {
            let closed = ids.binary_search(&cl.id).is_ok();
            if cl.auth == Auth::Admin {
                prop_assert!(!closed);
                continue;
            }
            let timed_out = (cl.auth == Auth::None && now - cl.tracked.connected_ms >= LIMITS.auth_timeout_ms)
                || now - cl.tracked.last_activity_ms() >= LIMITS.command_timeout_ms;
            if timed_out { prop_assert!(closed); }
        }
        let left = clients.len() as u64 - closing.len() as u64;
        let admins = clients.iter().filter(|c| c.auth == Auth::Admin).count() as u64;
        let line = maxclients.saturating_sub(LIMITS.reserved);
        prop_assert!(left < line || left == admins);
    }
}
