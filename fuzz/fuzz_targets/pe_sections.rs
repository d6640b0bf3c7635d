//! The PE section reader `verify` checks the UKI with must never panic, its
//! sections are slices of the input, and a section our writer appends reads
//! back with its bytes and the file's other sections unchanged.
//!
//! Each input is tried twice: as it is, and with the MZ/PE signatures, the
//! PE32+ magic and power-of-two alignments in place, so the fuzzer spends
//! its time on section tables.
#![no_main]

use image_formats::pe::{add_sections, sections};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    let Ok(secs) = sections(data) else {
        return;
    };
    let base = data.as_ptr() as usize;
    for s in &secs {
        let start = s.data.as_ptr() as usize;
        assert!(s.data.is_empty() || (start >= base && start + s.data.len() <= base + data.len()));
    }
    if let Ok(out) = add_sections(data, &[(".fuzz", b"payload")]) {
        let again = sections(&out).expect("our own output parses");
        assert_eq!(again.len(), secs.len() + 1);
        for (a, b) in secs.iter().zip(&again) {
            assert_eq!(a.name, b.name);
        }
        let added = again.last().expect("one section added");
        assert_eq!(
            (added.name.as_str(), added.data),
            (".fuzz", &b"payload"[..])
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() < 0x400 {
        return;
    }
    let mut pe = data.to_vec();
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    pe[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    pe[coff + 2] %= 8; // NumberOfSections (low byte)
    pe[coff + 3] = 0;
    pe[coff + 16..coff + 18].copy_from_slice(&0xF0u16.to_le_bytes()); // SizeOfOptionalHeader
    let opt = coff + 20;
    pe[opt..opt + 2].copy_from_slice(&0x20Bu16.to_le_bytes());
    let sa = 1u32 << (pe[opt + 32] % 13);
    let fa = 1u32 << (pe[opt + 36] % 10);
    pe[opt + 32..opt + 36].copy_from_slice(&sa.to_le_bytes());
    pe[opt + 36..opt + 40].copy_from_slice(&fa.to_le_bytes());
    pe[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes()); // SizeOfHeaders
    check(&pe);
});
