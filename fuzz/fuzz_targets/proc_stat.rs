//! The `/proc` parsers: `/proc/PID/stat`, `/proc/PID/status` (with its
//! escaped `Name:`), command lines and `getdents64` records never panic on
//! any bytes; what they accept is consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procwatch::parse::proc::{
    bounded_cmdline, first_dirent_name, parse_dirent_pids, parse_stat, parse_status,
};

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
        // Unescaping never lengthens the name.
        if let Some(name) = &status.name {
            assert!(name.len() <= data.len());
        }
        if let Some(ns) = status.ns_pid {
            assert!(ns.levels >= 1);
        }
    }
    let mut pids = Vec::new();
    if parse_dirent_pids(data, &mut pids).is_ok() {
        // Each record is at least 20 bytes and yields at most one pid.
        assert!(pids.len() * 20 <= data.len());
    }
    if let Some(name) = first_dirent_name(data) {
        assert!(name.len() + 20 <= data.len());
    }
    let limit = data.first().map_or(0, |&b| usize::from(b));
    assert!(bounded_cmdline(data, limit).len() <= limit);
});
