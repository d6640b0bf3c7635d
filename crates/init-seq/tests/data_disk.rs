//! The data disk over the recording fake: found by its label on each of the
//! disk layouts GCE and QEMU give (virtio-SCSI `sd*`, NVMe `nvme*n*`,
//! virtio-blk `vd*`, each beside a boot disk with its ESP partition), never
//! guessed between two, and grown online to fill its device.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use appliance_spec::Spec;
use init_seq::fake::{
    ext4_superblock_bytes, ext4_superblock_with_blocks, Call, FakeMachine, FakeOs,
};
use init_seq::{Fatal, InitError};

const LABEL: &[u8] = b"appliance-data";
const GIB: u64 = 1 << 30;

fn governor(_spec: &Spec, _link: init_seq::GovernorLink) -> i32 {
    panic!("the fake must not run the governor")
}

/// Boots `os` beside the reference network, firewall and metadata server;
/// returns it for its record (which holds theirs too).
fn boot_fake(os: FakeOs) -> (FakeOs, Result<(), Fatal>) {
    let mut machine = FakeMachine::around(os);
    let result = machine.boot("0.1.0-test", &governor, &init_seq::BootOptions::default());
    (machine.os, result)
}

/// The reference machine without its two virtio-blk disks.
fn bare() -> FakeOs {
    FakeOs::reference()
        .without_device("/dev/vda")
        .without_device("/dev/vdb")
}

/// Bytes 1024.. of a FAT ESP: the boot sector's tail and FAT data, no ext4
/// magic.
fn fat_esp() -> Vec<u8> {
    let mut bytes = vec![0u8; 1024];
    bytes[..8].copy_from_slice(b"\xf8\xff\xff\x0f\xff\xff\xff\x0f");
    bytes
}

/// Bytes 1024.. of a GPT disk: the partition entries (an ESP named "EFI").
fn gpt_entries() -> Vec<u8> {
    let mut bytes = vec![0u8; 1024];
    bytes[56..62].copy_from_slice(b"E\0F\0I\0");
    bytes
}

/// A boot disk `disk` with its ESP `esp` (GPT, as `disk.raw`).
fn with_boot_disk(os: FakeOs, disk: &str, esp: &str) -> FakeOs {
    os.with_device(disk, &gpt_entries())
        .with_partition(esp, disk, &fat_esp())
}

fn mounted_device(os: &FakeOs) -> Option<String> {
    os.calls().iter().find_map(|c| match c {
        Call::Mount(m) if m.fstype == "ext4" => Some(m.source.clone()),
        _ => None,
    })
}

fn read_devices(os: &FakeOs) -> Vec<String> {
    os.calls()
        .iter()
        .filter_map(|c| match c {
            Call::ReadAt { path, .. } => Some(path.display().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn found_by_label_on_every_interface() {
    let sb = ext4_superblock_bytes(LABEL);
    // (interface, machine, the data disk, the devices whose superblock is
    // read: never a partitioned whole disk).
    let cases: Vec<(&str, FakeOs, &str, Vec<&str>)> = vec![
        (
            "virtio-scsi",
            with_boot_disk(bare(), "/dev/sda", "/dev/sda1").with_device("/dev/sdb", &sb),
            "/dev/sdb",
            vec!["/dev/sda1", "/dev/sdb", "/dev/sdb"],
        ),
        (
            "nvme",
            // nvme0c0n1 is a hidden multipath node: listed, but no /dev node.
            with_boot_disk(bare(), "/dev/nvme0n1", "/dev/nvme0n1p1")
                .with_device("/dev/nvme0c0n1", &[])
                .with_device("/dev/nvme1n1", &sb)
                .fail_when(
                    |c| matches!(c, Call::ReadAt { path, .. } if path.ends_with("nvme0c0n1")),
                ),
            "/dev/nvme1n1",
            vec![
                "/dev/nvme0c0n1",
                "/dev/nvme0n1p1",
                "/dev/nvme1n1",
                "/dev/nvme1n1",
            ],
        ),
        (
            "virtio-blk",
            with_boot_disk(bare(), "/dev/vda", "/dev/vda1").with_device("/dev/vdb", &sb),
            "/dev/vdb",
            vec!["/dev/vda1", "/dev/vdb", "/dev/vdb"],
        ),
        (
            "data disk partitioned, a stale superblock on the whole disk",
            with_boot_disk(bare(), "/dev/sda", "/dev/sda1")
                .with_device("/dev/sdb", &sb)
                .with_partition("/dev/sdb1", "/dev/sdb", &sb),
            "/dev/sdb1",
            vec!["/dev/sda1", "/dev/sdb1", "/dev/sdb1"],
        ),
    ];
    for (name, os, data, read) in cases {
        let (os, result) = boot_fake(os);
        result.unwrap_or_else(|f| panic!("{name}: {f}"));
        assert_eq!(mounted_device(&os).as_deref(), Some(data), "{name}");
        assert!(
            os.console_lines().contains(&format!(
                "appliance: data disk {data} labelled appliance-data"
            )),
            "{name}"
        );
        // The last read is the superblock of the mounted disk, for growth.
        assert_eq!(read_devices(&os), read, "{name}");
    }
}

#[test]
fn two_labelled_filesystems_or_none_are_fatal() {
    let sb = ext4_superblock_bytes(LABEL);
    let scsi = || with_boot_disk(bare(), "/dev/sda", "/dev/sda1");
    // (case, machine, the devices named).
    let cases: Vec<(&str, FakeOs, Vec<&str>)> = vec![
        (
            "two SCSI disks",
            scsi()
                .with_device("/dev/sdb", &sb)
                .with_device("/dev/sdc", &sb),
            vec!["/dev/sdb", "/dev/sdc"],
        ),
        (
            "two NVMe namespaces",
            with_boot_disk(bare(), "/dev/nvme0n1", "/dev/nvme0n1p1")
                .with_device("/dev/nvme1n1", &sb)
                .with_device("/dev/nvme2n1", &sb),
            vec!["/dev/nvme1n1", "/dev/nvme2n1"],
        ),
        (
            "a whole disk and another disk's partition",
            scsi()
                .with_device("/dev/sdb", &sb)
                .with_device("/dev/sdc", &[0u8; 1024])
                .with_partition("/dev/sdc1", "/dev/sdc", &sb),
            vec!["/dev/sdb", "/dev/sdc1"],
        ),
        (
            "two partitions of one disk",
            scsi()
                .with_device("/dev/sdb", &[0u8; 1024])
                .with_partition("/dev/sdb1", "/dev/sdb", &sb)
                .with_partition("/dev/sdb2", "/dev/sdb", &sb),
            vec!["/dev/sdb1", "/dev/sdb2"],
        ),
        (
            "a second disk still being probed at the first scan",
            scsi()
                .with_device("/dev/sdb", &sb)
                .with_late_device("/dev/sdc", &sb, 1),
            vec!["/dev/sdb", "/dev/sdc"],
        ),
    ];
    for (name, os, named) in cases {
        let (os, result) = boot_fake(os);
        let fatal = result.expect_err(name);
        assert_eq!(fatal.step, "data disk", "{name}");
        let devices: Vec<PathBuf> = named.iter().map(PathBuf::from).collect();
        assert!(
            matches!(&fatal.error, InitError::DataDiskAmbiguous { devices: d, .. } if *d == devices),
            "{name}: {}",
            fatal.error
        );
        let line = format!(
            "appliance: FATAL data disk: several block devices hold an ext4 filesystem labelled \"appliance-data\": {named:?}"
        );
        assert_eq!(os.console_lines().last(), Some(&line), "{name}");
        assert_eq!(mounted_device(&os), None, "{name}");
        assert_eq!(os.calls().last(), Some(&Call::Halt), "{name}");
    }

    // None: the ESP and a blank disk are no data disk.
    let (os, result) = boot_fake(scsi().with_device("/dev/sdb", &[0u8; 1024]));
    let fatal = result.unwrap_err();
    assert!(matches!(
        fatal.error,
        InitError::DataDiskNotFound { devices: 3, .. }
    ));
    assert_eq!(
        os.console_lines().last().map(String::as_str),
        Some("appliance: FATAL data disk: no block device holds an ext4 filesystem labelled \"appliance-data\" (looked at 3 device(s), 40 time(s)); never formatting one")
    );
}

#[test]
fn a_late_disk_is_waited_for() {
    let sb = ext4_superblock_bytes(LABEL);
    let os = with_boot_disk(bare(), "/dev/sda", "/dev/sda1").with_late_device("/dev/sdb", &sb, 3);
    let (os, result) = boot_fake(os);
    result.unwrap();
    assert_eq!(mounted_device(&os).as_deref(), Some("/dev/sdb"));
    let listings = os
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::BlockDevices))
        .count();
    // Listed at 0..=3 without it, then with it (3) and once more to settle (4).
    assert_eq!(listings, 5);
}

/// 4 KiB blocks.
fn blocks(bytes: u64) -> u64 {
    bytes / 4096
}

#[test]
fn the_filesystem_grows_to_fill_its_disk() {
    // (case, filesystem blocks, device bytes, kernel's shortfall, the
    // resize asked for, the console line).
    type Case = (&'static str, u64, u64, u64, Option<u64>, Option<String>);
    let grown = |from: u64, to: u64| {
        Some(format!(
            "appliance: data filesystem grown from {from} to {to} bytes"
        ))
    };
    let cases: Vec<Case> = vec![
        ("fills its disk", blocks(GIB), GIB, 0, None, None),
        (
            "less than a block more",
            blocks(GIB),
            GIB + 4095,
            0,
            None,
            None,
        ),
        (
            "a disk smaller than its filesystem",
            blocks(GIB),
            GIB / 2,
            0,
            None,
            None,
        ),
        (
            "1 GiB on 3 GiB",
            blocks(GIB),
            3 * GIB,
            0,
            Some(blocks(3 * GIB)),
            grown(GIB, 3 * GIB),
        ),
        (
            "one block more",
            blocks(GIB),
            GIB + 4096,
            0,
            Some(blocks(GIB) + 1),
            grown(GIB, GIB + 4096),
        ),
        (
            "the kernel leaves out a small last group",
            blocks(GIB),
            3 * GIB,
            100,
            Some(blocks(3 * GIB)),
            grown(GIB, 3 * GIB - 100 * 4096),
        ),
        (
            "the kernel finds nothing to add",
            blocks(GIB),
            GIB + 4 * 4096,
            4,
            Some(blocks(GIB) + 4),
            None,
        ),
    ];
    for (name, fs_blocks, device_bytes, shortfall, resize, line) in cases {
        let os = FakeOs::reference()
            .with_device("/dev/vdb", &ext4_superblock_with_blocks(LABEL, fs_blocks))
            .with_device_size("/dev/vdb", device_bytes)
            .with_resize_shortfall(shortfall);
        let (os, result) = boot_fake(os);
        result.unwrap_or_else(|f| panic!("{name}: {f}"));
        let asked: Vec<Call> = os
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::ResizeExt4 { .. }))
            .collect();
        let want: Vec<Call> = resize
            .map(|blocks| Call::ResizeExt4 {
                mount_point: "/data".into(),
                blocks,
            })
            .into_iter()
            .collect();
        assert_eq!(asked, want, "{name}");
        let lines: Vec<String> = os
            .console_lines()
            .into_iter()
            .filter(|l| l.contains("data filesystem"))
            .collect();
        assert_eq!(lines, line.iter().cloned().collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn growth_happens_after_the_mount_and_before_the_server() {
    let os = FakeOs::reference().with_device_size("/dev/vdb", 3 * GIB);
    let (os, result) = boot_fake(os);
    result.unwrap();
    let at = |what: &str, f: &dyn Fn(&Call) -> bool| {
        os.calls()
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("no {what}"))
    };
    let mount = at(
        "mount",
        &|c| matches!(c, Call::Mount(m) if m.fstype == "ext4"),
    );
    let resize = at("resize", &|c| matches!(c, Call::ResizeExt4 { .. }));
    let owner = at("set_owner", &|c| matches!(c, Call::SetOwner { .. }));
    let fork = at("fork", &|c| matches!(c, Call::ForkGovernor));
    let exec = at("exec", &|c| matches!(c, Call::Exec(_)));
    assert!(mount < resize && resize < owner && owner < fork && fork < exec);
}

#[test]
fn a_filesystem_without_64bit_block_numbers_grows_to_2_pow_32_blocks() {
    let mut sb = ext4_superblock_with_blocks(LABEL, blocks(GIB));
    // s_feature_incompat without INCOMPAT_64BIT.
    sb[0x60..0x64].copy_from_slice(&0u32.to_le_bytes());
    let os = FakeOs::reference()
        .with_device("/dev/vdb", &sb)
        .with_device_size("/dev/vdb", 20 << 40);
    let (os, result) = boot_fake(os);
    result.unwrap();
    assert!(os.calls().contains(&Call::ResizeExt4 {
        mount_point: "/data".into(),
        blocks: u64::from(u32::MAX),
    }));
}

#[test]
fn a_failed_resize_or_size_query_is_fatal() {
    for (name, pick) in [
        (
            "resize",
            (|c: &Call| matches!(c, Call::ResizeExt4 { .. })) as fn(&Call) -> bool,
        ),
        ("size", |c: &Call| matches!(c, Call::BlockDeviceSize(_))),
    ] {
        let os = FakeOs::reference()
            .with_device_size("/dev/vdb", 3 * GIB)
            .fail_when(pick);
        let (os, result) = boot_fake(os);
        let fatal = result.expect_err(name);
        assert_eq!(fatal.step, "data disk", "{name}");
        assert!(fatal.halted, "{name}");
        assert!(
            !os.calls().iter().any(|c| matches!(c, Call::Exec(_))),
            "{name}"
        );
    }
}
