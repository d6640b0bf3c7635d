//! The GCE archive check `verify` runs must never panic on any gzip stream,
//! and it accepts only an archive whose one member equals the disk.
#![no_main]

use image_formats::gcetar::check_member;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Split the input: a disk, then the archive.
    let (disk, archive) =
        data.split_at(usize::from(data.first().copied().unwrap_or(0)).min(data.len()));
    if check_member(archive, disk, disk.len() as u64, Path::new("disk.raw")).is_ok() {
        assert!(!archive.is_empty());
    }
});
