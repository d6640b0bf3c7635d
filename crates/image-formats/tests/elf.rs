//! ELF reads on real files from the host, each compared with binutils'
//! `readelf`/`objcopy` reading the same file, and on small hand-built files
//! for what real files never show (missing tables, offsets outside the file).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use image_formats::elf::{self, ElfDeps, ElfError, VersionNeed};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Dynamic executables, a shared library and a static-pie binary, all from
/// packages the build host has anyway (coreutils, libc6, binutils, gdisk).
const HOST_FILES: [&str; 6] = [
    "/bin/true",
    "/usr/bin/ls",
    "/usr/bin/objdump",
    "/usr/sbin/sgdisk",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/sbin/ldconfig",
];

fn readelf(args: &[&str], file: &str) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("readelf (package binutils)");
    assert!(out.status.success(), "readelf {args:?} {file}");
    String::from_utf8(out.stdout).unwrap()
}

/// `[...]` of a `readelf` line such as `(NEEDED) Shared library: [libc.so.6]`.
fn bracketed(line: &str) -> Option<String> {
    let start = line.find('[')? + 1;
    let end = line[start..].find(']')? + start;
    Some(line[start..end].to_owned())
}

fn readelf_deps(file: &str) -> (Option<String>, Vec<String>) {
    let needed = readelf(&["-W", "-d"], file)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(bracketed)
        .collect();
    let interp = readelf(&["-W", "-l"], file)
        .lines()
        .find(|l| l.contains("Requesting program interpreter"))
        .and_then(|l| {
            let start = l.find(": ")? + 2;
            Some(l[start..].trim_end_matches(']').to_owned())
        });
    (interp, needed)
}

fn readelf_version_needs(file: &str) -> Vec<VersionNeed> {
    let text = readelf(&["-W", "-V"], file);
    let Some(start) = text.find("Version needs section") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut library = String::new();
    for line in text[start..].lines().skip(2) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "File:") {
            library = words[i + 1].to_owned();
        } else if let Some(i) = words.iter().position(|w| *w == "Name:") {
            out.push(VersionNeed {
                library: library.clone(),
                version: words[i + 1].to_owned(),
            });
        } else if !line.trim().is_empty() {
            break;
        }
    }
    out
}

#[test]
fn host_binaries_match_readelf() {
    for file in HOST_FILES {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let deps = elf::dynamic_deps(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (interp, needed) = readelf_deps(file);
        let versions = readelf_version_needs(file);
        // The comparison is not vacuous: only the static binary needs nothing.
        let is_static = file == "/sbin/ldconfig";
        assert_eq!(needed.is_empty(), is_static, "{file}");
        assert_eq!(versions.is_empty(), is_static, "{file}");
        assert_eq!((&deps.interp, &deps.needed), (&interp, &needed), "{file}");
        assert_eq!(deps.elf_type, elf::ET_DYN, "{file}: PIE or shared object");
        assert_eq!(elf::version_needs(&bytes).unwrap(), versions, "{file}");
    }
}

#[test]
fn what_the_appliance_needs_from_true() {
    let bytes = std::fs::read("/bin/true").unwrap();
    let deps = elf::dynamic_deps(&bytes).unwrap();
    assert_eq!(deps.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
    assert_eq!(deps.needed, ["libc.so.6"]);
    let needs = elf::version_needs(&bytes).unwrap();
    let newest = elf::max_version(&needs, "GLIBC_").unwrap();
    assert_eq!(newest.library, "libc.so.6");
    assert!(newest.version.starts_with("GLIBC_2."), "{newest:?}");
    // A stripped binary still has its dynamic symbols.
    assert!(elf::has_symbol(&bytes, "exit").unwrap());
    assert!(!elf::has_symbol(&bytes, "luaL_newstate").unwrap());
    let static_pie = std::fs::read("/sbin/ldconfig").unwrap();
    let deps = elf::dynamic_deps(&static_pie).unwrap();
    assert_eq!((deps.interp, deps.needed), (None, vec![]));
}

fn objcopy_section(file: &Path, section: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("section.bin");
    let status = Command::new("objcopy")
        .arg(format!("--dump-section={section}={}", out.display()))
        .arg(file)
        .arg(dir.path().join("discard.o"))
        .status()
        .expect("objcopy (package binutils)");
    assert!(status.success(), "objcopy {section} {}", file.display());
    std::fs::read(out).unwrap()
}

/// A relocatable object with a `.modinfo` section, as a kernel module has,
/// compiled by the host's gcc.
#[test]
fn modinfo_of_a_gcc_built_object_matches_objcopy() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mod.c");
    std::fs::write(
        &src,
        "static const char info[] __attribute__((section(\".modinfo\"), used)) =\n\
         \"license=GPL\\0depends=virtio,virtio_ring\\0softdep=pre: crc32c\\0alias=virtio:d00000001v*\";\n\
         int init_module(void) { return 0; }\n",
    )
    .unwrap();
    let obj = dir.path().join("mod.o");
    let status = Command::new("gcc")
        .args(["-c", "-O2", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(status.success());
    let bytes = std::fs::read(&obj).unwrap();
    assert_eq!(elf::elf_type(&bytes), Ok(elf::ET_REL));
    assert_eq!(
        elf::section_data(&bytes, ".modinfo").unwrap().unwrap(),
        objcopy_section(&obj, ".modinfo")
    );
    let entries = elf::modinfo(&bytes).unwrap();
    let want: Vec<(String, String)> = [
        ("license", "GPL"),
        ("depends", "virtio,virtio_ring"),
        ("softdep", "pre: crc32c"),
        ("alias", "virtio:d00000001v*"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(entries, want);
    // A relocatable object has no program headers: it needs nothing.
    assert_eq!(
        elf::dynamic_deps(&bytes).unwrap(),
        ElfDeps {
            elf_type: elf::ET_REL,
            interp: None,
            needed: vec![]
        }
    );
    assert!(elf::has_symbol(&bytes, "init_module").unwrap());
}

/// Debian's signed modules from the image's input cache, when a build has
/// filled it (`cargo xtask image`): our `.modinfo` bytes are objcopy's.
#[test]
fn modinfo_of_cached_kernel_modules_matches_objcopy() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/appliance-cache/unpacked");
    let mut modules: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in read.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ko") {
                modules.push(p);
            }
        }
    }
    modules.sort();
    if modules.is_empty() {
        eprintln!("no target/appliance-cache: only the gcc-built object was checked");
        return;
    }
    for m in modules.iter().step_by(modules.len().div_ceil(12)) {
        let bytes = std::fs::read(m).unwrap();
        assert_eq!(
            elf::section_data(&bytes, ".modinfo").unwrap().unwrap(),
            objcopy_section(m, ".modinfo"),
            "{}",
            m.display()
        );
        let entries = elf::modinfo(&bytes).unwrap();
        assert!(
            entries.iter().any(|(k, _)| k == "depends"),
            "{}",
            m.display()
        );
    }
}

// ---- hand-built files -------------------------------------------------------

const BASE: u64 = 0x40_0000;

/// A dynamic ELF64: header, three program headers (PT_LOAD over the whole
/// file, PT_INTERP, PT_DYNAMIC), the interpreter, the dynamic table, the
/// string table. `dynamic` entries may name `STRTAB` as `None` to omit it.
fn dynamic_elf(needed: &[&str], with_strtab: bool, strtab_vaddr_shift: u64) -> Vec<u8> {
    let interp = b"/lib64/ld-linux-x86-64.so.2\0";
    let mut strtab = vec![0u8];
    let mut offsets = Vec::new();
    for n in needed {
        offsets.push(strtab.len() as u64);
        strtab.extend_from_slice(n.as_bytes());
        strtab.push(0);
    }
    let interp_off = 64 + 3 * 56;
    let dyn_off = interp_off + interp.len();
    let mut dynamic: Vec<(u64, u64)> = offsets.iter().map(|&o| (1, o)).collect();
    let dyn_len = (dynamic.len() + 3) * 16;
    let str_off = dyn_off + dyn_len;
    if with_strtab {
        dynamic.push((5, BASE + str_off as u64 + strtab_vaddr_shift));
    }
    dynamic.push((10, strtab.len() as u64));
    dynamic.push((0, 0));
    let total = str_off + strtab.len();

    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[0x10..0x12].copy_from_slice(&3u16.to_le_bytes());
    f[0x12..0x14].copy_from_slice(&0x3Eu16.to_le_bytes());
    f[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes()); // e_phnum
    let mut ph = |p_type: u32, off: usize, len: usize| {
        let mut p = [0u8; 56];
        p[..4].copy_from_slice(&p_type.to_le_bytes());
        p[8..16].copy_from_slice(&(off as u64).to_le_bytes());
        p[16..24].copy_from_slice(&(BASE + off as u64).to_le_bytes());
        p[32..40].copy_from_slice(&(len as u64).to_le_bytes());
        p[40..48].copy_from_slice(&(len as u64).to_le_bytes());
        f.extend_from_slice(&p);
    };
    ph(1, 0, total);
    ph(3, interp_off, interp.len());
    ph(2, dyn_off, dyn_len);
    f.extend_from_slice(interp);
    for (tag, val) in &dynamic {
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&val.to_le_bytes());
    }
    f.resize(str_off, 0);
    f.extend_from_slice(&strtab);
    f
}

#[test]
fn hand_built_dynamic_files() {
    let good = dynamic_elf(&["libc.so.6", "libm.so.6"], true, 0);
    assert_eq!(
        elf::dynamic_deps(&good).unwrap(),
        ElfDeps {
            elf_type: elf::ET_DYN,
            interp: Some("/lib64/ld-linux-x86-64.so.2".into()),
            needed: vec!["libc.so.6".into(), "libm.so.6".into()],
        }
    );
    // Unaligned in memory, as a cpio body can be.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&good);
    assert_eq!(
        elf::dynamic_deps(&shifted[1..]).unwrap(),
        elf::dynamic_deps(&good).unwrap()
    );
    // No section headers at all: no version needs, no symbols, no .modinfo.
    assert_eq!(elf::version_needs(&good), Ok(vec![]));
    assert_eq!(elf::has_symbol(&good, "main"), Ok(false));
    assert_eq!(elf::modinfo(&good), Err(ElfError::NoSection(".modinfo")));

    let cases: Vec<(&str, Vec<u8>, ElfError)> = vec![
        (
            "no DT_STRTAB",
            dynamic_elf(&["libc.so.6"], false, 0),
            ElfError::NoStringTable,
        ),
        (
            "DT_STRTAB beyond the segment",
            dynamic_elf(&["libc.so.6"], true, 1 << 20),
            ElfError::StringTableOutside,
        ),
        ("truncated program headers", good[..100].to_vec(), {
            let e = elf::dynamic_deps(&good[..100]).unwrap_err();
            assert!(matches!(e, ElfError::Malformed(_)), "{e}");
            e
        }),
        (
            "truncated string table",
            good[..good.len() - 3].to_vec(),
            ElfError::SegmentOutside("PT_LOAD"),
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(elf::dynamic_deps(&input), Err(want), "{name}");
    }
}

proptest! {
    #[test]
    fn readers_never_panic_on_damaged_files(
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut f = dynamic_elf(&["libc.so.6", "libz.so.1"], true, 0);
        let i = pos.index(f.len());
        f[i] = byte;
        let f = &f[..cut.index(f.len() + 1)];
        let _ = elf::dynamic_deps(f);
        let _ = elf::version_needs(f);
        let _ = elf::modinfo(f);
        let _ = elf::has_symbol(f, "x");
    }

    #[test]
    fn readers_never_panic_on_noise(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut data = data;
        if data.len() >= 6 {
            data[..6].copy_from_slice(b"\x7fELF\x02\x01");
        }
        let _ = elf::dynamic_deps(&data);
        let _ = elf::version_needs(&data);
        let _ = elf::modinfo(&data);
    }
}
