//! The netlink reply parser (pf-rules) reads bytes from the kernel: it must
//! never panic, and every outcome it reports must carry a plausible errno.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pf_rules::{parse_acks, AckOutcome};

fuzz_target!(|data: &[u8]| {
    if let Ok(outcomes) = parse_acks(data) {
        for o in outcomes {
            if let AckOutcome::Error { errno, .. } = o {
                assert_ne!(errno, 0);
            }
        }
    }
});
