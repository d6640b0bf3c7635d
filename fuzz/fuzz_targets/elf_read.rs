//! The ELF reads the image builder and `verify` make (a binary's interpreter
//! and libraries, a module's `.modinfo`, symbol versions, symbols) must never
//! panic or loop on any file, and what they return must be well-formed.
#![no_main]

use image_formats::elf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(deps) = elf::dynamic_deps(data) {
        assert!(elf::is_elf(data));
        assert_eq!(elf::elf_type(data), Ok(deps.elf_type));
        // Every name came from a NUL-terminated string in the file.
        for n in deps.needed.iter().chain(&deps.interp) {
            assert!(!n.contains('\0'));
        }
    }
    if let Ok(entries) = elf::modinfo(data) {
        for (k, _) in &entries {
            assert!(!k.contains('\0') && !k.contains('='));
        }
    }
    if let Ok(needs) = elf::version_needs(data) {
        assert!(needs.len() <= data.len() / 16 + 1);
        let _ = elf::max_version(&needs, "GLIBC_");
    }
    let _ = elf::has_symbol(data, "luaL_newstate");
    let _ = elf::section_data(data, ".interp");
});
