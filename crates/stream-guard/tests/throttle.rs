//! The AUTH throttle: sources, the token bucket, the table-full fallback and
//! the bounded report.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use stream_guard::throttle::{AuthThrottle, Source, REFUSED_MESSAGE};

#[test]
fn sources_are_v4_hosts_and_v6_slash_64s() {
    let cases: &[(&str, bool, Source)] = &[
        ("127.0.0.1", false, Source::V4([127, 0, 0, 1])),
        ("203.0.113.9", false, Source::V4([203, 0, 113, 9])),
        ("::ffff:203.0.113.9", false, Source::V4([203, 0, 113, 9])),
        (
            "2001:db8:1:2:3:4:5:6",
            false,
            Source::V6([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]),
        ),
        (
            "2001:db8:1:2:ffff::1",
            false,
            Source::V6([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]),
        ),
        ("::1", false, Source::V6([0; 8])),
        ("/run/valkey.sock", true, Source::Local),
        ("127.0.0.1", true, Source::Local),
        ("", false, Source::Local),
        ("not an address", false, Source::Local),
        ("127.0.0.1:6379", false, Source::Local),
    ];
    for (addr, unix, want) in cases {
        assert_eq!(
            Source::from_addr(addr, *unix),
            *want,
            "{addr:?} unix={unix}"
        );
    }
}

const A: Source = Source::V4([192, 0, 2, 1]);
const B: Source = Source::V4([192, 0, 2, 2]);

#[test]
fn a_source_gets_its_burst_then_one_per_refill() {
    let mut t = AuthThrottle::new(10, 16);
    for i in 0..10 {
        assert!(t.allows(A, 0), "attempt {i} within the burst");
        t.failed(A, 0);
    }
    assert!(!t.allows(A, 0), "the 11th is refused");
    assert!(t.allows(B, 0), "another source is not affected");
    // 10 a minute: one more attempt every 6 s.
    assert!(!t.allows(A, 5_999));
    assert!(t.allows(A, 6_000));
    t.failed(A, 6_000);
    assert!(!t.allows(A, 6_001));
    // Refused attempts do not drain the bucket.
    for ms in (6_001..12_000).step_by(100) {
        assert!(!t.allows(A, ms));
    }
    assert!(t.allows(A, 12_000));
    // A full minute refills the whole burst, not more.
    let mut n = 0;
    while t.allows(A, 600_000) {
        t.failed(A, 600_000);
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn a_full_table_shares_one_bucket_for_the_rest() {
    let mut t = AuthThrottle::new(2, 3);
    let tracked: Vec<Source> = (1..=3).map(|i| Source::V4([10, 0, 0, i])).collect();
    for s in &tracked {
        t.failed(*s, 0);
    }
    assert_eq!(t.tracked(), 3);
    // Untracked sources now share one bucket of 2.
    let newcomers: Vec<Source> = (1..=5).map(|i| Source::V4([10, 0, 1, i])).collect();
    assert!(t.allows(newcomers[0], 0));
    t.failed(newcomers[0], 0);
    assert!(t.allows(newcomers[1], 0));
    t.failed(newcomers[1], 0);
    for s in &newcomers {
        assert!(
            !t.allows(*s, 0),
            "{s:?}: the shared bucket is empty (fail closed)"
        );
    }
    assert_eq!(t.tracked(), 3, "the table never grows past its bound");
    // Tracked sources keep their own buckets.
    assert!(t.allows(tracked[0], 0));
    // Buckets that refilled are pruned and their places freed.
    t.prune(60_000);
    assert_eq!(t.tracked(), 0);
    assert!(t.allows(newcomers[4], 60_000));
}

#[test]
fn the_report_is_bounded_and_exact() {
    let mut t = AuthThrottle::new(1, 16);
    assert_eq!(t.report(0), None, "nothing happened: no line");
    t.failed(A, 100);
    t.failed(B, 200);
    t.failed(B, 300);
    assert!(!t.allows(A, 400));
    let r = t.report(500).unwrap();
    assert_eq!(
        r.log_line(),
        "stream-guard: auth failures: 3 in the last 1 s from 2 addresses, 1 refused by the throttle"
    );
    // Another failure right after: no line before 10 s have passed.
    t.failed(A, 1_000);
    for ms in (600..10_500).step_by(250) {
        assert_eq!(t.report(ms), None, "{ms}");
    }
    let r = t.report(10_500).unwrap();
    assert_eq!(
        (r.failures, r.seconds, r.addresses, r.refused),
        (1, 10, 1, 0)
    );
    assert_eq!(t.report(30_000), None, "quiet again: no line");
    assert!(REFUSED_MESSAGE.starts_with("too many failed AUTH attempts from this address"));
}

proptest! {
    /// Over any schedule, a source's failures admitted in any window of
    /// `w` ms never exceed burst + rate * w (one source, or all the
    /// untracked ones together).
    #[test]
    fn failures_stay_within_budget(steps in prop::collection::vec((0u64..3_000, 0u8..8), 1..300)) {
        let per_minute = 10u64;
        let mut t = AuthThrottle::new(10, 2);
        let mut now = 0u64;
        let mut admitted: Vec<u64> = Vec::new();
        let mut admitted_0: Vec<u64> = vec![0];
        // Sources 0 and 1 fill the table (no pruning here); 2..8 then share
        // the fallback bucket.
        t.failed(Source::V4([10, 0, 0, 0]), 0);
        t.failed(Source::V4([10, 0, 0, 1]), 0);
        for (dt, who) in steps {
            now += dt;
            let s = Source::V4([10, 0, 0, who]);
            if t.allows(s, now) {
                t.failed(s, now);
                match who {
                    0 => admitted_0.push(now),
                    1 => {}
                    _ => admitted.push(now),
                }
            }
        }
        prop_assert_eq!(t.tracked(), 2);
        // Burst plus one minute's refill.
        for list in [&admitted, &admitted_0] {
            for (i, start) in list.iter().enumerate() {
                let in_window = list[i..].iter().take_while(|t| **t < start + 60_000).count() as u64;
                prop_assert!(in_window <= 2 * per_minute, "{} in a minute", in_window);
            }
        }
    }
}
