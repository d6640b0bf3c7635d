//! The initramfs reader `cargo xtask verify` trusts must never panic, and
//! whatever it accepts must survive a rewrite by our own writer unchanged in
//! content: same paths, modes and bodies.
#![no_main]

use image_formats::cpio::{parse, Archive, S_IFCHR, S_IFDIR, S_IFMT, S_IFREG};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = parse(data) else {
        return;
    };
    for e in &entries {
        // Every body is a slice of the input.
        let start = e.data.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(start >= base && start + e.data.len() <= base + data.len());
    }
    // Rewrite what our writer can express; parse again; compare.
    let mut a = Archive::new();
    for e in &entries {
        let perm = e.mode & 0o7777;
        let ok = match e.mode & S_IFMT {
            S_IFDIR => a.add_dir(e.name, perm).is_ok(),
            S_IFREG => a.add_file(e.name, perm, e.data.to_vec()).is_ok(),
            S_IFCHR => a.add_char_dev(e.name, perm, e.rdev.0, e.rdev.1).is_ok(),
            _ => false,
        };
        if !ok {
            return;
        }
    }
    let bytes = a.write(0).expect("a built archive serialises");
    let again = parse(&bytes).expect("our own output parses");
    for e in &entries {
        let name = e.name.trim_start_matches('/');
        let f = again.iter().find(|x| x.name == name).expect("entry kept");
        if e.mode & S_IFMT != S_IFDIR {
            assert_eq!(f.mode, e.mode);
            assert_eq!(f.data, e.data);
        }
    }
});
