//! The kernel module `.modinfo` reader must never panic on any file; what it
//! returns must be well-formed (no empty or comma-bearing dependency names).
#![no_main]

use libfuzzer_sys::fuzz_target;
use appliance_image::kmod::parse_modinfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = parse_modinfo(data) {
        for d in info.depends() {
            assert!(!d.is_empty() && !d.contains(',') && !d.contains('-'));
        }
        let _ = info.softdeps();
        for (k, _) in &info.entries {
            assert!(!k.contains('\0'));
        }
    }
});
