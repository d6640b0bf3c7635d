//! Pure parsers for the few pieces of outside input the boot sequence reads:
//! an ext4 superblock (from a block device nobody vouches for), two `/proc`
//! files and the image's module load order. Each takes bytes or text, checks
//! lengths before every access and returns an error instead of panicking.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use image_layout::ModulesOrder;

use crate::InitError;

/// Byte offset of the ext2/3/4 superblock on the device.
pub const EXT4_SUPERBLOCK_OFFSET: u64 = 1024;
/// Bytes of the superblock that [`ext4_superblock`] needs (the whole block).
pub const EXT4_SUPERBLOCK_LEN: usize = 1024;

/// `s_magic`, little endian, at 0x38 of the superblock.
const EXT4_MAGIC: u16 = 0xEF53;
const MAGIC_AT: usize = 0x38;
/// `s_log_block_size` at 0x18: block size is `1024 << s_log_block_size`.
const LOG_BLOCK_SIZE_AT: usize = 0x18;
/// `s_uuid`, 16 bytes at 0x68.
const UUID_AT: usize = 0x68;
/// `s_volume_name`, 16 bytes at 0x78, NUL padded (not terminated when full).
const VOLUME_NAME_AT: usize = 0x78;
const VOLUME_NAME_LEN: usize = 16;
/// The largest block size ext4 supports is 64 KiB (`1024 << 6`).
const MAX_LOG_BLOCK_SIZE: u32 = 6;
/// `s_blocks_count_lo` at 0x04: the low 32 bits of the block count.
const BLOCKS_COUNT_LO_AT: usize = 0x04;
/// `s_feature_incompat` at 0x60.
const FEATURE_INCOMPAT_AT: usize = 0x60;
/// `EXT4_FEATURE_INCOMPAT_64BIT`: block numbers have 64 bits, and
/// `s_blocks_count_hi` counts.
const INCOMPAT_64BIT: u32 = 0x80;
/// `s_blocks_count_hi` at 0x150: the high 32 bits (64bit filesystems only).
const BLOCKS_COUNT_HI_AT: usize = 0x150;

/// What the boot sequence needs from an ext2/3/4 superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Superblock {
    /// The volume label, up to 16 bytes, without NUL padding.
    pub label: Vec<u8>,
    /// The filesystem UUID.
    pub uuid: [u8; 16],
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks in the filesystem (`s_blocks_count`, both halves on a 64bit
    /// filesystem).
    pub blocks_count: u64,
    /// Whether block numbers have 64 bits (`INCOMPAT_64BIT`); without it a
    /// filesystem cannot grow past 2^32 blocks.
    pub is_64bit: bool,
}

impl Ext4Superblock {
    /// The filesystem's size in bytes (saturating).
    pub fn size_bytes(&self) -> u64 {
        self.blocks_count.saturating_mul(u64::from(self.block_size))
    }
}

/// Parses the superblock of an ext2/3/4 filesystem: `bytes` start at device
/// offset [`EXT4_SUPERBLOCK_OFFSET`]. `None` when it is not one (too short,
/// wrong magic, impossible block size): the caller is scanning every block
/// device, and most of them are something else.
pub fn ext4_superblock(bytes: &[u8]) -> Option<Ext4Superblock> {
    if bytes.len() < EXT4_SUPERBLOCK_LEN {
        return None;
    }
    let magic = u16::from_le_bytes(array_at::<2>(bytes, MAGIC_AT)?);
    if magic != EXT4_MAGIC {
        return None;
    }
    let log_block_size = u32::from_le_bytes(array_at::<4>(bytes, LOG_BLOCK_SIZE_AT)?);
    if log_block_size > MAX_LOG_BLOCK_SIZE {
        return None;
    }
    let name = array_at::<VOLUME_NAME_LEN>(bytes, VOLUME_NAME_AT)?;
    let label_len = name.iter().position(|&b| b == 0).unwrap_or(VOLUME_NAME_LEN);
    let incompat = u32::from_le_bytes(array_at::<4>(bytes, FEATURE_INCOMPAT_AT)?);
    let is_64bit = incompat & INCOMPAT_64BIT != 0;
    let lo = u32::from_le_bytes(array_at::<4>(bytes, BLOCKS_COUNT_LO_AT)?);
    let hi = if is_64bit {
        u32::from_le_bytes(array_at::<4>(bytes, BLOCKS_COUNT_HI_AT)?)
    } else {
        0
    };
    Some(Ext4Superblock {
        label: name.get(..label_len)?.to_vec(),
        uuid: array_at::<16>(bytes, UUID_AT)?,
        block_size: 1024u32 << log_block_size,
        blocks_count: u64::from(hi) << 32 | u64::from(lo),
        is_64bit,
    })
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn mem_total_bytes(meminfo: &[u8]) -> Result<u64, InitError> {
    let text = std::str::from_utf8(meminfo).map_err(|_| InitError::Proc {
        file: "/proc/meminfo",
        reason: "not UTF-8",
    })?;
    let value = field(text, "MemTotal:").ok_or(InitError::Proc {
        file: "/proc/meminfo",
        reason: "no MemTotal line",
    })?;
    let kib = value
        .strip_suffix(" kB")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or(InitError::Proc {
            file: "/proc/meminfo",
            reason: "MemTotal is not `<number> kB`",
        })?;
    kib.checked_mul(1024).ok_or(InitError::Proc {
        file: "/proc/meminfo",
        reason: "MemTotal overflows",
    })
}

/// `Threads` from `/proc/self/status`.
pub fn thread_count(status: &[u8]) -> Result<u64, InitError> {
    // The process name line may hold anything but a newline; the kernel escapes
    // it, and we only look at lines that start with the field we want anyway.
    let text = String::from_utf8_lossy(status);
    field(&text, "Threads:")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or(InitError::Proc {
            file: "/proc/self/status",
            reason: "no `Threads: <number>` line",
        })
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
}

/// Suffixes `finit_module` accepts (the image layout's).
pub use image_layout::MODULE_SUFFIXES;

/// The image's module load order ([`image_layout::MODULES_ORDER_PATH`],
/// written by the image builder through the same [`ModulesOrder`] type):
/// one absolute module file path per line, in load order. A bad line is an
/// [`InitError::ModulesOrder`] naming it.
pub fn modules_order(text: &str) -> Result<Vec<PathBuf>, InitError> {
    ModulesOrder::parse(text)
        .map(ModulesOrder::into_paths)
        .map_err(|e| InitError::ModulesOrder {
            line: e.line,
            reason: e.reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock as `mkfs.ext4 -L appliance-data` leaves it, reduced to the
    /// fields the parser reads.
    fn superblock(label: &[u8], magic: u16, log_block_size: u32) -> Vec<u8> {
        let mut sb = vec![0u8; EXT4_SUPERBLOCK_LEN];
        sb[LOG_BLOCK_SIZE_AT..LOG_BLOCK_SIZE_AT + 4].copy_from_slice(&log_block_size.to_le_bytes());
        sb[MAGIC_AT..MAGIC_AT + 2].copy_from_slice(&magic.to_le_bytes());
        sb[UUID_AT..UUID_AT + 16].copy_from_slice(&[0xab; 16]);
        sb[VOLUME_NAME_AT..VOLUME_NAME_AT + label.len()].copy_from_slice(label);
        sb
    }

    #[test]
    fn ext4_superblock_table() {
        type Case = (&'static str, Vec<u8>, Option<&'static [u8]>);
        let cases: &[Case] = &[
            (
                "labelled",
                superblock(b"appliance-data", 0xEF53, 2),
                Some(b"appliance-data"),
            ),
            (
                "full 16 bytes, no NUL",
                superblock(b"0123456789abcdef", 0xEF53, 0),
                Some(b"0123456789abcdef"),
            ),
            ("no label", superblock(b"", 0xEF53, 2), Some(b"")),
            (
                "wrong magic",
                superblock(b"appliance-data", 0xEF52, 2),
                None,
            ),
            (
                "block size too large",
                superblock(b"appliance-data", 0xEF53, 7),
                None,
            ),
            (
                "truncated",
                superblock(b"appliance-data", 0xEF53, 2)[..1023].to_vec(),
                None,
            ),
            ("empty", Vec::new(), None),
        ];
        for (name, bytes, want) in cases {
            let got = ext4_superblock(bytes);
            assert_eq!(got.as_ref().map(|s| s.label.as_slice()), *want, "{name}");
        }
        let sb = ext4_superblock(&superblock(b"x", 0xEF53, 2)).unwrap();
        assert_eq!(sb.block_size, 4096);
        assert_eq!(sb.uuid, [0xab; 16]);
    }

    #[test]
    fn ext4_block_count_halves() {
        // (incompat flags, lo, hi, blocks_count): the high half counts only
        // on a 64bit filesystem (elsewhere those bytes mean nothing).
        let cases: &[(u32, u32, u32, u64, bool)] = &[
            (0, 262_144, 0, 262_144, false),
            (0, 262_144, 7, 262_144, false),
            (INCOMPAT_64BIT, 262_144, 0, 262_144, true),
            (INCOMPAT_64BIT | 0x2c2, 5, 1, (1 << 32) + 5, true),
            (INCOMPAT_64BIT, u32::MAX, u32::MAX, u64::MAX, true),
        ];
        for &(incompat, lo, hi, want, is_64bit) in cases {
            let mut sb = superblock(b"appliance-data", 0xEF53, 2);
            sb[FEATURE_INCOMPAT_AT..FEATURE_INCOMPAT_AT + 4]
                .copy_from_slice(&incompat.to_le_bytes());
            sb[BLOCKS_COUNT_LO_AT..BLOCKS_COUNT_LO_AT + 4].copy_from_slice(&lo.to_le_bytes());
            sb[BLOCKS_COUNT_HI_AT..BLOCKS_COUNT_HI_AT + 4].copy_from_slice(&hi.to_le_bytes());
            let got = ext4_superblock(&sb).unwrap();
            assert_eq!(
                (got.blocks_count, got.is_64bit),
                (want, is_64bit),
                "{incompat:#x} {lo} {hi}"
            );
            assert_eq!(got.size_bytes(), want.saturating_mul(4096));
        }
    }

    #[test]
    fn mem_total_table() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            (
                "MemTotal:        2030348 kB\nMemFree: 1 kB\n",
                Ok(2_030_348 * 1024),
            ),
            ("MemFree: 1 kB\nMemTotal: 4 kB\n", Ok(4096)),
            ("MemFree: 1 kB\n", Err("no MemTotal line")),
            ("MemTotal: lots kB\n", Err("MemTotal is not `<number> kB`")),
            ("MemTotal: 12\n", Err("MemTotal is not `<number> kB`")),
            (
                "MemTotal: 18446744073709551615 kB\n",
                Err("MemTotal overflows"),
            ),
        ];
        for (text, want) in cases {
            let got = mem_total_bytes(text.as_bytes()).map_err(|e| match e {
                InitError::Proc { reason, .. } => reason,
                other => panic!("{other}"),
            });
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn thread_count_reads_the_threads_line_only() {
        let status = b"Name:\tThreads: 9\nUmask:\t0022\nThreads:\t1\nSigQ:\t0/1\n";
        assert_eq!(thread_count(status).unwrap(), 1);
        assert_eq!(thread_count(b"Threads:\t3\n").unwrap(), 3);
        assert!(thread_count(b"Name:\tx\n").is_err());
        assert!(thread_count(b"Threads:\t\n").is_err());
    }

    #[test]
    fn modules_order_table() {
        let ok = "# written by cargo xtask image\n/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko\n\n/lib/modules/x/virtio_ring.ko.xz\n";
        assert_eq!(
            modules_order(ok).unwrap(),
            vec![
                PathBuf::from("/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko"),
                PathBuf::from("/lib/modules/x/virtio_ring.ko.xz"),
            ]
        );
        assert_eq!(modules_order("").unwrap(), Vec::<PathBuf>::new());
        let bad: &[(&str, usize, &str)] = &[
            ("virtio.ko", 1, "not an absolute path"),
            ("/a.ko\n/b c.ko", 2, "a character outside [A-Za-z0-9._+/-]"),
            (
                "/lib/../etc/x.ko",
                1,
                "an empty, `.` or `..` path component",
            ),
            ("/lib//x.ko", 1, "an empty, `.` or `..` path component"),
            (
                "/lib/x.so",
                1,
                "not a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz)",
            ),
            ("/a.ko\n/a.ko", 2, "listed twice"),
        ];
        for (text, line, reason) in bad {
            match modules_order(text) {
                Err(InitError::ModulesOrder { line: l, reason: r }) => {
                    assert_eq!((l, r), (*line, *reason), "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200)) {
            let _ = ext4_superblock(&bytes);
            let _ = mem_total_bytes(&bytes);
            let _ = thread_count(&bytes);
            let _ = modules_order(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn label_round_trips(label in proptest::collection::vec(1u8..=255, 0..=16)) {
            let sb = superblock(&label, 0xEF53, 2);
            proptest::prop_assert_eq!(ext4_superblock(&sb).map(|s| s.label), Some(label));
        }
    }
}
