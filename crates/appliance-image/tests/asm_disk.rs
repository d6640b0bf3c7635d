//! `data.raw`, checked with the host's own tools (e2fsprogs). The boot disk's
//! formats (GPT, FAT32, the GCE tar) are tested in `crates/image-formats`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::type_complexity
)]

use appliance_image::ext4;
use std::path::PathBuf;
use std::process::Command;

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
