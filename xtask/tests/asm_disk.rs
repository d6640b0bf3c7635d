//! `disk.raw` (GPT + FAT32 ESP), `image.tar.gz` and `data.raw`, checked with
//! the host's own tools: mtools, dosfstools, gdisk, util-linux, tar, e2fsprogs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::type_complexity
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::image::{ext4, fat, gcetar, gpt};

struct Scratch(PathBuf);
impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("asm-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

fn build_disk(dir: &Path, disk_size: u64) -> PathBuf {
    let data = payload();
    let seed = [1u8; 32];
    let layout = gpt::Layout::new(disk_size, fat::ESP_SIZE, &seed).unwrap();
    let params = fat::FatParams {
        size: fat::ESP_SIZE,
        hidden_sectors: 2048,
        volume_id: 0xC0FF_EE00,
        mtime: 1_700_000_000,
    };
    let esp = fat::build(&[("EFI/BOOT/BOOTX64.EFI", &data)], "APPLIANCE", &params).unwrap();
    let disk = dir.join("disk.raw");
    gpt::write_disk(&disk, &layout, &esp).unwrap();
    disk
}

#[test]
fn gpt_and_fat_pass_the_host_tools() {
    let s = Scratch::new("tools");
    let disk = build_disk(&s.0, gpt::GIB);
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
    let esp_path = s.0.join("esp.img");
    std::fs::write(&esp_path, &esp).unwrap();
    let e = esp_path.to_str().unwrap();
    let fsck = run("fsck.fat", &["-n", "-v", e]);
    assert!(fsck.contains("32 bit entries"), "{fsck}");
    assert!(!fsck.to_lowercase().contains("dirty"), "{fsck}");
    let listing = run("mdir", &["-i", e, "::/EFI/BOOT"]);
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    assert!(
        listing.contains(&PAYLOAD_LEN.to_string().chars().collect::<String>())
            || listing.contains("300 000"),
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
    let a = Scratch::new("det-a");
    let b = Scratch::new("det-b");
    let da = build_disk(&a.0, gpt::GIB);
    let db = build_disk(&b.0, gpt::GIB);
    assert_eq!(std::fs::read(&da).unwrap(), std::fs::read(&db).unwrap());
    let blocks = run("du", &["-k", da.to_str().unwrap()]);
    let kib: u64 = blocks.split_whitespace().next().unwrap().parse().unwrap();
    assert!(kib < 8 * 1024, "disk.raw should be sparse, uses {kib} KiB");
}

#[test]
fn gce_tar_is_one_gnu_member_and_deterministic() {
    let s = Scratch::new("tar");
    let raw = s.0.join("disk.raw");
    let mut content = vec![0u8; 3 << 20];
    content[12345] = 7;
    content[(2 << 20) + 1] = 9;
    std::fs::write(&raw, &content).unwrap();
    let t1 = s.0.join("a.tar.gz");
    let t2 = s.0.join("b.tar.gz");
    gcetar::write(&raw, &t1, 1_700_000_000).unwrap();
    gcetar::write(&raw, &t2, 1_700_000_000).unwrap();
    assert_eq!(std::fs::read(&t1).unwrap(), std::fs::read(&t2).unwrap());
    gcetar::member_matches(&t1, &raw).unwrap();

    let list = run("tar", &["--numeric-owner", "-tvzf", t1.to_str().unwrap()]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with("-rw-r--r-- 0/0"), "{list}");
    assert!(list.trim_end().ends_with(" disk.raw"), "{list}");
    assert!(list.contains("2023-11-14"), "{list}");
    let x = s.0.join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(
        "tar",
        &["-xzf", t1.to_str().unwrap(), "-C", x.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(x.join("disk.raw")).unwrap(), content);
    // gzip header: no timestamp, no name.
    let gz = std::fs::read(&t1).unwrap();
    assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0], "FLG and MTIME are zero");

    // A second member, or different content, is caught.
    let mut other = content.clone();
    other[0] = 1;
    std::fs::write(s.0.join("other.raw"), &other).unwrap();
    assert!(gcetar::member_matches(&t1, &s.0.join("other.raw")).is_err());
}

#[test]
fn data_disk_is_labelled_ext4_and_byte_identical() {
    let a = Scratch::new("ext4-a");
    let b = Scratch::new("ext4-b");
    let (pa, pb) = (a.0.join("data.raw"), b.0.join("data.raw"));
    ext4::write(&pa, 64 << 20, 1_700_000_000).unwrap();
    ext4::write(&pb, 64 << 20, 1_700_000_000).unwrap();
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
    let info = run("dumpe2fs", &["-h", pa.to_str().unwrap()]);
    assert!(
        info.contains("Filesystem volume name:   appliance-data"),
        "{info}"
    );
    assert!(info.contains("Reserved block count:     0"), "{info}");
    let fsck = run("e2fsck", &["-n", "-f", pa.to_str().unwrap()]);
    assert!(
        fsck.contains("clean") || fsck.contains("0/") || fsck.contains("files"),
        "{fsck}"
    );
    ext4::write(&pb, 64 << 20, 1_700_000_001).unwrap();
    assert_ne!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
}
