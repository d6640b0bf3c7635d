//! `/proc/PID/stat` and `/proc/PID/status` parsers: never panic on any
//! bytes; what they accept is consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procwatch::parse::proc::{bounded_cmdline, parse_stat, parse_status};

fuzz_target!(|data: &[u8]| {
    if let Ok(stat) = parse_stat(data) {
        // The name sits inside the input, between '(' and the last ')'.
        assert!(stat.comm.len() + 4 <= data.len());
        assert!(data.windows(stat.comm.len().max(1)).any(|w| stat.comm.is_empty() || w == stat.comm.as_slice()));
    }
    if let Ok(status) = parse_status(data) {
        // Uid must have come from a complete line.
        assert!(data.contains(&b'\n'));
        let _ = status.uids;
    }
    let limit = data.first().map_or(0, |&b| usize::from(b));
    assert!(bounded_cmdline(data, limit).len() <= limit);
});
