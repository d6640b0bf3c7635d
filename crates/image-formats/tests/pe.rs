//! The UKI writer on systemd-boot's real stub (package systemd-boot-efi),
//! read back by our parser and by binutils' `objdump` and `objcopy`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::type_complexity
)]

use image_formats::pe;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const OSREL: &str = "NAME=\"Appliance\"\nID=appliance\nVERSION_ID=1\n";
const CMDLINE: &str = "console=ttyS0,115200n8 panic=-1";

fn stub() -> Vec<u8> {
    std::fs::read(STUB).unwrap_or_else(|e| panic!("{STUB} (package systemd-boot-efi): {e}"))
}

#[test]
fn sections_are_appended_aligned_and_read_back() {
    let stub = stub();
    let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let initrd = vec![0x28, 0xB5, 0x2F, 0xFD, 1, 2, 3];
    let efi = pe::build_uki(&stub, OSREL, CMDLINE, &initrd, &kernel).unwrap();
    assert_eq!(
        efi,
        pe::build_uki(&stub, OSREL, CMDLINE, &initrd, &kernel).unwrap()
    );

    let secs = pe::sections(&efi).unwrap();
    let before = pe::sections(&stub).unwrap();
    assert_eq!(
        &secs[..before.len()],
        &before[..],
        "the stub's own sections are untouched"
    );
    let added: Vec<(&str, &[u8])> = secs[before.len()..]
        .iter()
        .map(|s| (s.name.as_str(), s.data))
        .collect();
    assert_eq!(
        added,
        vec![
            (".osrel", OSREL.as_bytes()),
            (".cmdline", CMDLINE.as_bytes()),
            (".initrd", initrd.as_slice()),
            (".linux", kernel.as_slice()),
        ]
    );
    for w in secs.windows(2) {
        assert!(
            w[0].virtual_address + w[0].virtual_size <= w[1].virtual_address,
            "{} overlaps {}",
            w[0].name,
            w[1].name
        );
    }
    for s in &secs[before.len()..] {
        assert_eq!(s.virtual_address % 4096, 0, "{} is page aligned", s.name);
    }

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("appliance.efi");
    std::fs::write(&path, &efi).unwrap();
    let out = std::process::Command::new("objdump")
        .arg("-h")
        .arg(&path)
        .output()
        .expect("objdump (package binutils)");
    let dump = std::process::Command::new("objcopy")
        .args(["-O", "binary", "--only-section=.linux"])
        .arg(&path)
        .arg(dir.join("linux.bin"))
        .status()
        .unwrap();
    let extracted = std::fs::read(dir.join("linux.bin")).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pei-x86-64"), "{text}");
    for name in [".osrel", ".cmdline", ".initrd", ".linux"] {
        assert!(text.contains(name), "objdump misses {name}:\n{text}");
    }
    assert!(dump.success());
    assert_eq!(extracted, kernel, "objcopy extracts the kernel we put in");
}

#[test]
fn a_stub_that_already_has_a_linux_section_is_refused() {
    let stub = stub();
    let once = pe::add_sections(&stub, &[(".linux", b"k")]).unwrap();
    assert_eq!(
        pe::add_sections(&once, &[(".linux", b"k")]),
        Err(pe::PeError::Duplicate(".linux".into()))
    );
}
