//! The disk and memory refusal rule: when it starts, when it ends, and that
//! each start and end is exactly one change (one console line).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use stream_guard::space::{
    xadd_cost, Change, DiskSample, MemorySample, SpaceGuard, ACCEPTED_PREFIX, REFUSED_PREFIX,
};
use stream_guard::Refusal;

const MIB: u64 = 1024 * 1024;

fn disk(free: u64, aof: u64) -> Result<DiskSample, String> {
    Ok(DiskSample {
        free_bytes: free,
        aof_bytes: aof,
    })
}

fn mem(used: u64, max: u64) -> Option<MemorySample> {
    Some(MemorySample {
        used_bytes: used,
        max_bytes: max,
    })
}

/// (free, aof) samples in order, and whether visitors are refused after each.
const DISK_STEPS: &[(u64, u64, bool)] = &[
    (100 * MIB, 10 * MIB, false),
    (27 * MIB, 10 * MIB, false), // 27 >= 10 + 16
    (26 * MIB, 10 * MIB, false), // exactly aof + reserve: not below
    (26 * MIB - 1, 10 * MIB, true),
    (27 * MIB, 10 * MIB, true),     // above the line, inside the gap
    (30 * MIB - 1, 10 * MIB, true), // one byte short of aof + reserve * 5/4
    (30 * MIB, 10 * MIB, false),    // clear
    (29 * MIB, 10 * MIB, false),    // back in the gap: still accepting
    (29 * MIB, 14 * MIB, true),     // the AOF grew past the line
    (40 * MIB, 2 * MIB, false),     // the admin trimmed and compacted
];

#[test]
fn disk_rule_with_hysteresis() {
    let mut g = SpaceGuard::new(16 * MIB, 90);
    let mut refused = false;
    for (i, (free, aof, want)) in DISK_STEPS.iter().enumerate() {
        let changes = g.sample(disk(*free, *aof), mem(0, 0));
        assert_eq!(
            g.refusal().is_some(),
            *want,
            "step {i}: {free} free, {aof} aof"
        );
        // Exactly one change on each transition, none otherwise.
        assert_eq!(
            changes.len(),
            usize::from(refused != *want),
            "step {i}: {changes:?}"
        );
        refused = *want;
        if *want {
            assert_eq!(g.refusal(), Some(Refusal::DiskLow));
        }
    }
}

#[test]
fn log_lines_are_exact() {
    let mut g = SpaceGuard::new(16 * MIB, 90);
    let c = g.sample(disk(20 * MIB, 5 * MIB), None);
    assert_eq!(
        c[0].log_line(),
        format!(
            "stream-guard: visitor writes refused: disk free {} bytes < aof {} + reserve {} bytes",
            20 * MIB,
            5 * MIB,
            16 * MIB
        )
    );
    let c = g.sample(disk(100, 0), None);
    assert!(c.is_empty());
    let c = g.sample(disk(100 * MIB, 5 * MIB), None);
    assert_eq!(
        c[0].log_line(),
        format!(
            "stream-guard: visitor writes accepted again: disk free {} bytes, aof {} bytes",
            100 * MIB,
            5 * MIB
        )
    );
    let c = g.sample(disk(100 * MIB, 0), mem(91, 100));
    assert_eq!(
        c[0].log_line(),
        "stream-guard: visitor writes refused: memory used 91 bytes > 90% of maxmemory 100 bytes"
    );
    let c = g.sample(disk(100 * MIB, 0), mem(85, 100));
    assert_eq!(
        c[0].log_line(),
        "stream-guard: visitor writes accepted again: memory used 85 bytes, maxmemory 100 bytes"
    );
    let c = g.sample(Err("statvfs /data: gone".into()), None);
    assert_eq!(
        c[0].log_line(),
        "stream-guard: visitor writes refused: disk not measurable: statvfs /data: gone"
    );
    assert!(c[0].log_line().starts_with(REFUSED_PREFIX));
    assert!(Change::DiskAccepted { free: 1, aof: 0 }
        .log_line()
        .starts_with(ACCEPTED_PREFIX));
}

/// (used, max) samples and whether visitors are refused after each (90 %).
const MEMORY_STEPS: &[(u64, u64, bool)] = &[
    (0, 1000, false),
    (900, 1000, false), // exactly 90 %: not above
    (901, 1000, true),
    (860, 1000, true), // 86 %: inside the 5-point gap
    (851, 1000, true),
    (850, 1000, false), // 85 %: clear
    (899, 1000, false),
    (5000, 0, false), // no maxmemory: no memory rule
];

#[test]
fn memory_rule_with_hysteresis() {
    let mut g = SpaceGuard::new(MIB, 90);
    let mut refused = false;
    for (i, (used, max, want)) in MEMORY_STEPS.iter().enumerate() {
        let changes = g.sample(disk(u64::MAX / 2, 0), mem(*used, *max));
        assert_eq!(g.refusal().is_some(), *want, "step {i}");
        assert_eq!(
            changes.len(),
            usize::from(refused != *want),
            "step {i}: {changes:?}"
        );
        refused = *want;
        if *want {
            assert_eq!(g.refusal(), Some(Refusal::MemoryLow));
        }
    }
}

#[test]
fn an_unmeasurable_disk_refuses_until_measured_clear() {
    let mut g = SpaceGuard::new(MIB, 90);
    assert!(g.sample(disk(100 * MIB, 0), None).is_empty());
    assert_eq!(g.sample(Err("x".into()), None).len(), 1);
    assert_eq!(g.refusal(), Some(Refusal::DiskLow));
    assert!(g.sample(Err("x".into()), None).is_empty(), "one line only");
    assert_eq!(g.sample(disk(100 * MIB, 0), None).len(), 1);
    assert_eq!(g.refusal(), None);
}

#[test]
fn writes_between_samples_count() {
    let reserve = MIB;
    let mut g = SpaceGuard::new(reserve, 90);
    // 2 MiB free, 0 aof: each admitted byte costs twice (less free, more AOF).
    g.sample(disk(2 * MIB, 0), mem(0, 0));
    let cost = 4096;
    let mut admitted = 0u64;
    loop {
        let (r, changes) = g.admit(cost);
        match r {
            Ok(()) => {
                admitted += cost;
                assert!(changes.is_empty());
            }
            Err(refusal) => {
                assert_eq!(refusal, Refusal::DiskLow);
                assert_eq!(
                    changes.len(),
                    1,
                    "the write that crosses starts the refusal"
                );
                break;
            }
        }
        assert!(admitted < 2 * MIB, "never refused");
    }
    // free - admitted >= admitted + reserve held for every admitted write.
    assert!(2 * MIB - admitted >= admitted + reserve);
    assert!(2 * MIB - (admitted + cost) < admitted + cost + reserve);
    // Once refusing, admission answers at once and logs nothing more.
    let (r, changes) = g.admit(1);
    assert_eq!(r, Err(Refusal::DiskLow));
    assert!(changes.is_empty());
    // A fresh sample showing room ends the refusal.
    assert_eq!(g.sample(disk(10 * MIB, 0), mem(0, 0)).len(), 1);
    assert_eq!(g.admit(cost).0, Ok(()));
}

#[test]
fn xadd_cost_counts_every_argument() {
    let argv = ["XADD", "k", "*", "f", "v"];
    assert_eq!(xadd_cost(&argv), 64 + 5 * 16 + 4 + 1 + 1 + 1 + 1);
    assert_eq!(xadd_cost::<&str>(&[]), 64);
}

proptest! {
    /// Whatever the samples, the guard refuses exactly when the rule says and
    /// reports exactly one change per transition.
    #[test]
    fn transitions_match_state(steps in prop::collection::vec((0u64..64, 0u64..32, 0u64..120), 1..40)) {
        let reserve = 8;
        let mut g = SpaceGuard::new(reserve, 90);
        let (mut disk_low, mut memory_low) = (false, false);
        for (free, aof, used) in steps {
            let changes = g.sample(disk(free, aof), mem(used, 100));
            let was = (disk_low, memory_low);
            if disk_low { disk_low = free < aof + reserve + reserve / 4; } else { disk_low = free < aof + reserve; }
            if memory_low { memory_low = used > 85; } else { memory_low = used > 90; }
            let flips = usize::from(was.0 != disk_low) + usize::from(was.1 != memory_low);
            prop_assert_eq!(changes.len(), flips);
            let want = if disk_low { Some(Refusal::DiskLow) } else if memory_low { Some(Refusal::MemoryLow) } else { None };
            prop_assert_eq!(g.refusal(), want);
        }
    }
}

#[test]
fn aof_size_is_read_from_the_directory() {
    use stream_guard::disk::{aof_bytes, AOF_DIR, MAX_AOF_ENTRIES};
    let dir = std::env::temp_dir().join(format!("stream-guard-aof-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(aof_bytes(&dir), Ok(0), "no appendonlydir yet");
    let aof = dir.join(AOF_DIR);
    std::fs::create_dir(&aof).unwrap();
    std::fs::write(aof.join("appendonly.aof.1.base.rdb"), vec![0u8; 1000]).unwrap();
    std::fs::write(aof.join("appendonly.aof.1.incr.aof"), vec![0u8; 234]).unwrap();
    std::fs::create_dir(aof.join("subdir")).unwrap();
    assert_eq!(aof_bytes(&dir), Ok(1234));
    for i in 0..MAX_AOF_ENTRIES {
        std::fs::write(aof.join(format!("f{i}")), b"").unwrap();
    }
    let err = aof_bytes(&dir).unwrap_err();
    assert!(err.contains("more than 1024 entries"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
