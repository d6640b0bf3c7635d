//! The initramfs cpio writer and reader: round trips, determinism, and a
//! reader that refuses (never panics on) arbitrary bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::type_complexity
)]

use image_formats::cpio::{parse, Archive, CpioError, S_IFCHR, S_IFDIR, S_IFREG};
use proptest::prelude::*;

fn sample() -> Archive {
    let mut a = Archive::new();
    a.add_file("/init", 0o755, b"\x7fELF init".to_vec())
        .unwrap();
    a.add_file("/etc/valkey/valkey.conf", 0o644, b"port 6379\n".to_vec())
        .unwrap();
    a.add_file("/etc/empty", 0o644, Vec::new()).unwrap();
    a.add_dir("/data", 0o755).unwrap();
    a.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
    a
}

#[test]
fn round_trip_keeps_every_field() {
    let bytes = sample().write(1_700_000_000).unwrap();
    assert_eq!(bytes.len() % 4, 0);
    let entries = parse(&bytes).unwrap();
    let table: Vec<(&str, u32, u32, &[u8], (u32, u32))> = entries
        .iter()
        .map(|e| (e.name, e.mode, e.nlink, e.data, e.rdev))
        .collect();
    let want: Vec<(&str, u32, u32, &[u8], (u32, u32))> = vec![
        ("data", S_IFDIR | 0o755, 2, b"", (0, 0)),
        ("dev", S_IFDIR | 0o755, 2, b"", (0, 0)),
        ("dev/console", S_IFCHR | 0o600, 1, b"", (5, 1)),
        ("etc", S_IFDIR | 0o755, 3, b"", (0, 0)),
        ("etc/empty", S_IFREG | 0o644, 1, b"", (0, 0)),
        ("etc/valkey", S_IFDIR | 0o755, 2, b"", (0, 0)),
        (
            "etc/valkey/valkey.conf",
            S_IFREG | 0o644,
            1,
            b"port 6379\n",
            (0, 0),
        ),
        ("init", S_IFREG | 0o755, 1, b"\x7fELF init", (0, 0)),
    ];
    assert_eq!(table, want);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            (e.uid, e.gid, e.mtime, e.dev),
            (0, 0, 1_700_000_000, (0, 0))
        );
        assert_eq!(
            e.ino,
            u32::try_from(i).unwrap() + 1,
            "inodes follow path order"
        );
    }
}

#[test]
fn insertion_order_does_not_matter() {
    let mut b = Archive::new();
    b.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
    b.add_dir("/data", 0o755).unwrap();
    b.add_file("/etc/empty", 0o644, Vec::new()).unwrap();
    b.add_file("/etc/valkey/valkey.conf", 0o644, b"port 6379\n".to_vec())
        .unwrap();
    b.add_file("/init", 0o755, b"\x7fELF init".to_vec())
        .unwrap();
    assert_eq!(sample().write(7).unwrap(), b.write(7).unwrap());
}

#[test]
fn gnu_cpio_reads_our_archive() {
    let bytes = sample().write(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.cpio");
    std::fs::write(&file, &bytes).unwrap();
    let out = std::process::Command::new("cpio")
        .args(["-t", "-v", "--quiet", "-F"])
        .arg(&file)
        .output()
        .expect("cpio (package cpio) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("dev/console"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("crw-------") && l.contains("5,")),
        "{listing}"
    );
}

#[test]
fn malformed_archives_are_refused() {
    let good = sample().write(0).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[5] = b'2';
    let mut bad_hex = good.clone();
    bad_hex[10] = b'g';
    let cases: Vec<(&str, Vec<u8>, CpioError)> = vec![
        ("empty", vec![], CpioError::Truncated(0)),
        ("short header", good[..50].to_vec(), CpioError::Truncated(0)),
        ("crc format", bad_magic, CpioError::BadMagic(0)),
        ("hex", bad_hex, CpioError::BadHex(6)),
        (
            "no trailer",
            good[..good.len() - 124].to_vec(),
            CpioError::Truncated(good.len() - 124),
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(parse(&input), Err(want), "{name}");
    }
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_.-]{1,12}", 1..4)
        .prop_filter("no dot components", |v| {
            v.iter().all(|c| c != "." && c != "..")
        })
        .prop_map(|v| v.join("/"))
}

proptest! {
    #[test]
    fn any_archive_round_trips(
        files in prop::collection::btree_map(arb_path(), prop::collection::vec(any::<u8>(), 0..300), 0..12),
        mtime in any::<u32>(),
    ) {
        let mut a = Archive::new();
        let mut added = Vec::new();
        for (p, d) in &files {
            if a.add_file(p, 0o644, d.clone()).is_ok() {
                added.push((p.clone(), d.clone()));
            }
        }
        let bytes = a.write(mtime).unwrap();
        let entries = parse(&bytes).unwrap();
        prop_assert_eq!(entries.len(), a.len());
        for (p, d) in added {
            let e = entries.iter().find(|e| e.name == p).unwrap();
            prop_assert_eq!(e.data, d.as_slice());
            prop_assert_eq!(e.mode, S_IFREG | 0o644);
        }
        let mut names: Vec<&str> = entries.iter().map(|e| e.name).collect();
        let sorted = { let mut s = names.clone(); s.sort_unstable(); s };
        prop_assert_eq!(&names, &sorted);
        names.dedup();
        prop_assert_eq!(names.len(), entries.len());
    }

    #[test]
    fn parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&data);
    }

    #[test]
    fn parser_never_panics_on_mutated_archives(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = sample().write(0).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let c = cut.index(bytes.len() + 1);
        let _ = parse(&bytes[..c]);
    }
}
