//! `disk.raw` (GPT + FAT32 ESP) and `image.tar.gz`, checked with the host's
//! own tools: gdisk (`sgdisk`), util-linux (`sfdisk`), dosfstools
//! (`fsck.fat`), mtools and GNU tar.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::type_complexity
)]

use image_formats::gpt::GptError;
use image_formats::{fat, gcetar, gpt};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

const PAYLOAD_LEN: usize = 300_000;

fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| (i * 7 % 253) as u8).collect()
}

fn esp_image() -> Vec<u8> {
    let params = fat::FatParams {
        size: fat::ESP_SIZE,
        hidden_sectors: 2048,
        volume_id: 0xC0FF_EE00,
        mtime: 1_700_000_000,
    };
    fat::build(
        &[("EFI/BOOT/BOOTX64.EFI", &payload())],
        "APPLIANCE",
        &params,
    )
    .unwrap()
}

fn layout(disk_size: u64) -> gpt::Layout {
    gpt::Layout::new(disk_size, fat::ESP_SIZE, &[1u8; 32]).unwrap()
}

fn build_disk(dir: &Path, disk_size: u64) -> PathBuf {
    let disk = dir.join("disk.raw");
    gpt::write_disk(&disk, &layout(disk_size), &esp_image()).unwrap();
    disk
}

#[test]
fn gpt_and_fat_pass_the_host_tools() {
    let s = tempfile::tempdir().unwrap();
    let disk = build_disk(s.path(), gpt::GIB);
    let d = disk.to_str().unwrap();
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), gpt::GIB);

    let v = run("sgdisk", &["-v", d]);
    assert!(v.contains("No problems found"), "{v}");
    let dump = run("sfdisk", &["-d", d]);
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains(
            "start=        2048, size=      131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        ),
        "{dump}"
    );

    // The ESP alone, as the host tools want a filesystem image.
    let esp = gpt::read_esp(&disk).unwrap();
    let esp_path = s.path().join("esp.img");
    std::fs::write(&esp_path, &esp).unwrap();
    let e = esp_path.to_str().unwrap();
    let fsck = run("fsck.fat", &["-n", "-v", e]);
    assert!(fsck.contains("32 bit entries"), "{fsck}");
    assert!(!fsck.to_lowercase().contains("dirty"), "{fsck}");
    let listing = run("mdir", &["-i", e, "::/EFI/BOOT"]);
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    assert!(
        listing.contains(&PAYLOAD_LEN.to_string()) || listing.contains("300 000"),
        "{listing}"
    );
    let out = Command::new("mtype")
        .args(["-i", e, "::/EFI/BOOT/BOOTX64.EFI"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, payload(), "mtype reads back what was written");
    let label = run("mlabel", &["-i", e, "-s", "::"]);
    assert!(label.contains("APPLIANCE"), "{label}");
}

#[test]
fn disk_is_deterministic_and_sparse() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let da = build_disk(a.path(), gpt::GIB);
    let db = build_disk(b.path(), gpt::GIB);
    assert_eq!(std::fs::read(&da).unwrap(), std::fs::read(&db).unwrap());
    let blocks = run("du", &["-k", da.to_str().unwrap()]);
    let kib: u64 = blocks.split_whitespace().next().unwrap().parse().unwrap();
    assert!(kib < 8 * 1024, "disk.raw should be sparse, uses {kib} KiB");
}

/// A small disk in memory, as the fuzz target sees one.
const SMALL: u64 = 80 << 20;

fn small_disk() -> Vec<u8> {
    let mut disk = Cursor::new(vec![0u8; SMALL as usize]);
    gpt::write_disk_to(&mut disk, &layout(SMALL), &esp_image()).unwrap();
    disk.into_inner()
}

#[test]
fn in_memory_and_file_disks_are_the_same_bytes() {
    let s = tempfile::tempdir().unwrap();
    let file = build_disk(s.path(), SMALL);
    let mem = small_disk();
    assert_eq!(std::fs::read(file).unwrap(), mem);
    let esp = gpt::read_esp_from(&mut Cursor::new(&mem)).unwrap();
    assert_eq!(&esp[..], &esp_image()[..]);
}

#[test]
fn damaged_tables_fail_with_the_reason() {
    let last = SMALL / 512 - 1;
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, &str); 8] = [
        ("mbr signature", |d| d[510] = 0, "GPT: no MBR signature"),
        ("mbr type", |d| d[450] = 0x83, "GPT: MBR is not protective"),
        (
            "primary signature",
            |d| d[512] = b'X',
            "GPT: no signature at LBA 1",
        ),
        (
            "primary crc",
            |d| d[512 + 60] ^= 1,
            "GPT: header CRC mismatch at LBA 1",
        ),
        (
            "primary array",
            |d| d[1024 + 40] ^= 1,
            "GPT: partition array CRC mismatch",
        ),
        (
            "backup crc",
            |d| {
                let at = d.len() - 512 + 60;
                d[at] ^= 1;
            },
            "GPT: header CRC mismatch at LBA",
        ),
        ("odd size", |d| d.truncate(d.len() - 1), "GPT: bad size"),
        ("tiny", |d| d.truncate(4096), "GPT: bad size (4096 bytes)"),
    ];
    for (name, damage, want) in cases {
        let mut d = small_disk();
        damage(&mut d);
        let err = gpt::read_esp_from(&mut Cursor::new(&d)).unwrap_err();
        assert!(err.to_string().starts_with(want), "{name}: {err}");
    }
    // Both tables valid on their own but different: the backup names another
    // ESP. Rebuild the backup header's CRCs so only the comparison fails.
    let mut d = small_disk();
    let l = layout(SMALL);
    let mut other = l.clone();
    other.esp_last -= 1;
    let at = ((last - 32) * 512) as usize;
    d[at..at + 128 * 128].copy_from_slice(&other.entries());
    d[at + 128 * 128..at + 128 * 128 + 512].copy_from_slice(&other.header(false));
    assert!(matches!(
        gpt::read_esp_from(&mut Cursor::new(&d)),
        Err(GptError::TablesDiffer)
    ));
}

#[test]
fn missing_disk_names_the_file() {
    let err = gpt::read_esp(Path::new("/nonexistent/disk.raw")).unwrap_err();
    assert_eq!(err.to_string(), "GPT: open /nonexistent/disk.raw");
}

fn tar_disk() -> Vec<u8> {
    let mut content = vec![0u8; 3 << 20];
    content[12345] = 7;
    content[(2 << 20) + 1] = 9;
    content
}

#[test]
fn gce_tar_is_one_gnu_member_and_deterministic() {
    let s = tempfile::tempdir().unwrap();
    let raw = s.path().join("disk.raw");
    let content = tar_disk();
    std::fs::write(&raw, &content).unwrap();
    let t1 = s.path().join("a.tar.gz");
    let t2 = s.path().join("b.tar.gz");
    gcetar::write(&raw, &t1, 1_700_000_000).unwrap();
    gcetar::write(&raw, &t2, 1_700_000_000).unwrap();
    assert_eq!(std::fs::read(&t1).unwrap(), std::fs::read(&t2).unwrap());
    gcetar::member_matches(&t1, &raw).unwrap();

    let list = run("tar", &["--numeric-owner", "-tvzf", t1.to_str().unwrap()]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with("-rw-r--r-- 0/0"), "{list}");
    assert!(list.trim_end().ends_with(" disk.raw"), "{list}");
    assert!(list.contains("2023-11-14"), "{list}");
    let x = s.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(
        "tar",
        &["-xzf", t1.to_str().unwrap(), "-C", x.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(x.join("disk.raw")).unwrap(), content);
    // gzip header: no timestamp, no name.
    let gz = std::fs::read(&t1).unwrap();
    assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0], "FLG and MTIME are zero");

    // Different content is caught.
    let mut other = content.clone();
    other[0] = 1;
    std::fs::write(s.path().join("other.raw"), &other).unwrap();
    assert!(matches!(
        gcetar::member_matches(&t1, &s.path().join("other.raw")),
        Err(gcetar::GceTarError::Differs(_))
    ));
}

/// The tar stream is exactly GNU tar's: the same archive `tar
/// --format=oldgnu` makes of the same file, byte for byte (header
/// checksum formatting, record padding and all).
#[test]
fn gce_tar_stream_equals_gnu_tar_oldgnu() {
    let s = tempfile::tempdir().unwrap();
    for (len, mtime) in [(0usize, 0u64), (1, 1), (511, 86_400), (512, 1_700_000_000)]
        .into_iter()
        .chain([(tar_disk().len() + 7, 1_700_000_000)])
    {
        let mut content = tar_disk();
        content.resize(len, 3);
        std::fs::write(s.path().join("disk.raw"), &content).unwrap();
        let ours = gcetar::write_archive(
            &content[..],
            len as u64,
            mtime,
            Vec::new(),
            Path::new("disk.raw"),
        )
        .unwrap();
        let gnu = Command::new("tar")
            .args(["--format=oldgnu", "--owner=root:0", "--group=root:0"])
            .arg(format!("--mtime=@{mtime}"))
            .args(["--mode=0644", "-cf", "-", "disk.raw"])
            .current_dir(s.path())
            .output()
            .expect("GNU tar");
        assert!(gnu.status.success());
        assert!(ours == gnu.stdout, "{len} bytes: differs from GNU tar");
    }
}

#[test]
fn gce_tar_with_a_second_member_or_a_bad_header_is_refused() {
    let s = tempfile::tempdir().unwrap();
    let content = b"disk".to_vec();
    let raw = s.path().join("disk.raw");
    std::fs::write(&raw, &content).unwrap();
    let tar = gcetar::write_archive(&content[..], 4, 0, Vec::new(), &raw).unwrap();
    let gz = |t: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, t).unwrap();
        e.finish().unwrap()
    };
    let check = |t: &[u8]| gcetar::check_member(&gz(t)[..], &content[..], 4, &raw);
    check(&tar).unwrap();

    let mut second = tar.clone();
    second[1024..1536].copy_from_slice(&gcetar::header("evil", 0, 0).unwrap());
    let mut bad_sum = tar.clone();
    bad_sum[0] = b'D';
    let mut not_file = tar.clone();
    not_file[156] = b'5';
    resum(&mut not_file[..512]);
    let mut renamed = tar.clone();
    renamed[..8].copy_from_slice(b"data.raw");
    resum(&mut renamed[..512]);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "second member",
            second,
            "tar: data after the disk.raw member",
        ),
        ("checksum", bad_sum, "tar: header checksum mismatch"),
        ("type", not_file, "tar: first member is not a regular file"),
        ("name", renamed, "tar: member is \"data.raw\", not disk.raw"),
        ("empty", Vec::new(), "tar: no header"),
    ];
    for (name, t, want) in cases {
        let err = check(&t).unwrap_err();
        assert_eq!(err.to_string(), want, "{name}");
    }
}

/// Recomputes a tar header's checksum after a test changed a field.
fn resum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}
