//! `disk.raw`: a GPT disk (protective MBR, primary and backup headers and
//! partition arrays with their CRC32s) holding one EFI System Partition.
//!
//! Written as a sparse file of the full disk size (GCE wants a multiple of
//! 1 GiB); only the non-zero 64 KiB blocks of the ESP are written. The disk
//! and partition GUIDs are derived from the ESP's SHA-256, so the same content
//! always gives the same disk and a different content a different one.
//!
//! The parser reads back what a firmware would trust (both headers, both CRCs,
//! the partition array). [`parse_header`] is pure over byte slices;
//! [`read_esp_from`] and [`write_disk_to`] work on any `Read + Seek` /
//! `Write + Seek` (a `Cursor` in tests and the fuzz target), and
//! [`read_esp`] / [`write_disk`] are their thin wrappers over a file path:
//! the only file I/O here, because a 1 GiB sparse disk is read and written by
//! seeking, never held in memory.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::fat::SECTOR;

/// Why a disk could not be laid out, written or read back.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// A size is not a multiple of the sector size.
    #[error("GPT: sizes must be multiples of 512 (disk {disk_size}, ESP {esp_size})")]
    Unaligned {
        /// Disk size in bytes.
        disk_size: u64,
        /// ESP size in bytes.
        esp_size: u64,
    },
    /// The disk is too small for the ESP and the two partition tables.
    #[error("GPT: a {disk_size}-byte disk cannot hold a {esp_size}-byte ESP")]
    DiskTooSmall {
        /// Disk size in bytes.
        disk_size: u64,
        /// ESP size in bytes.
        esp_size: u64,
    },
    /// The filesystem image does not fit the partition.
    #[error("GPT: ESP image larger than the partition ({image} > {partition} bytes)")]
    EspTooLarge {
        /// Image size in bytes.
        image: u64,
        /// Partition size in bytes.
        partition: u64,
    },
    /// A header or table ends early.
    #[error("GPT: truncated")]
    Truncated,
    /// The disk's size is not whole sectors or too small for two tables.
    #[error("GPT: bad size ({0} bytes)")]
    BadDiskSize(u64),
    /// Sector 0 lacks the `55 AA` boot signature.
    #[error("GPT: no MBR signature")]
    NoMbrSignature,
    /// Sector 0's first partition is not of type `0xEE`.
    #[error("GPT: MBR is not protective")]
    NotProtective,
    /// No `EFI PART` at this LBA.
    #[error("GPT: no signature at LBA {0}")]
    NoSignature(u64),
    /// A header size other than 92.
    #[error("GPT: header size {0}")]
    HeaderSize(usize),
    /// The header's CRC32 does not match.
    #[error("GPT: header CRC mismatch at LBA {0}")]
    HeaderCrc(u64),
    /// The header's `MyLBA` is not where it was found.
    #[error("GPT: header at LBA {0} names another LBA")]
    WrongLba(u64),
    /// Entry count times entry size is not the array read.
    #[error("GPT: partition array size")]
    ArraySize,
    /// The partition array's CRC32 does not match the header's.
    #[error("GPT: partition array CRC mismatch")]
    ArrayCrc,
    /// Primary and backup tables disagree.
    #[error("GPT: primary and backup partition tables differ")]
    TablesDiffer,
    /// The first partition's type is not the ESP's.
    #[error("GPT: first partition is not an EFI System Partition")]
    NotEsp,
    /// The ESP's LBAs are reversed or beyond the disk.
    #[error("GPT: ESP outside the disk")]
    EspOutside,
    /// Reading or writing the disk failed.
    #[error("GPT: {op}{}", crate::at_path(path))]
    Io {
        /// What was being done (`create`, `write`, `read`, ...).
        op: &'static str,
        /// The disk file (empty for an in-memory disk).
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> GptError + 'a {
    move |source| GptError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// GCE imports only disks whose size is a multiple of this.
pub const GIB: u64 = 1024 * 1024 * 1024;
/// First LBA of the ESP: 1 MiB, the usual alignment.
pub const ESP_FIRST_LBA: u64 = 2048;
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;
const ARRAY_SECTORS: u64 = 32;
const ARRAY_BYTES: usize = ENTRIES * ENTRY_SIZE;
const HEADER_SIZE: usize = 92;

/// The EFI System Partition type GUID, C12A7328-F81F-11D2-BA4B-00A0C93EC93B,
/// in GPT's mixed-endian byte order.
pub const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
];

/// A version-4-shaped GUID derived from `label` and `seed` (deterministic).
pub fn derived_guid(label: &str, seed: &[u8]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(label.as_bytes())
        .chain_update([0u8])
        .chain_update(seed)
        .finalize();
    let mut g = [0u8; 16];
    g.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    // Mixed-endian: the version nibble is the high nibble of byte 7.
    g[7] = (g[7] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// Formats a GUID stored in GPT byte order.
pub fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
    )
}

/// The layout of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Disk size in bytes.
    pub disk_size: u64,
    /// ESP first LBA.
    pub esp_first: u64,
    /// ESP last LBA (inclusive).
    pub esp_last: u64,
    /// Disk GUID.
    pub disk_guid: [u8; 16],
    /// ESP unique GUID.
    pub esp_guid: [u8; 16],
}

impl Layout {
    /// Lays out a disk of `disk_size` bytes with an ESP of `esp_size` bytes,
    /// GUIDs derived from `seed` (the ESP's content hash).
    pub fn new(disk_size: u64, esp_size: u64, seed: &[u8]) -> Result<Layout, GptError> {
        let s = SECTOR as u64;
        if disk_size % s != 0 || esp_size % s != 0 {
            return Err(GptError::Unaligned {
                disk_size,
                esp_size,
            });
        }
        let sectors = disk_size / s;
        let esp_sectors = esp_size / s;
        // `ESP_FIRST_LBA + esp_sectors - 1`; an empty ESP is refused too.
        let esp_last = ESP_FIRST_LBA + esp_sectors.max(1) - 1;
        if esp_sectors == 0 || esp_last >= sectors.saturating_sub(2 + ARRAY_SECTORS) {
            return Err(GptError::DiskTooSmall {
                disk_size,
                esp_size,
            });
        }
        Ok(Layout {
            disk_size,
            esp_first: ESP_FIRST_LBA,
            esp_last,
            disk_guid: derived_guid("appliance disk", seed),
            esp_guid: derived_guid("appliance esp", seed),
        })
    }

    fn last_lba(&self) -> u64 {
        self.disk_size / SECTOR as u64 - 1
    }

    /// The 512-byte protective MBR.
    pub fn protective_mbr(&self) -> [u8; SECTOR] {
        let mut m = [0u8; SECTOR];
        let size = u32::try_from(self.last_lba()).unwrap_or(u32::MAX);
        // One partition of type 0xEE covering the disk from LBA 1; CHS fields
        // are the conventional "beyond CHS" values.
        let entry: [u8; 16] = {
            let mut e = [0u8; 16];
            e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
            e[4] = 0xEE;
            e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
            e[8..12].copy_from_slice(&1u32.to_le_bytes());
            e[12..16].copy_from_slice(&size.to_le_bytes());
            e
        };
        m[446..462].copy_from_slice(&entry);
        m[510] = 0x55;
        m[511] = 0xAA;
        m
    }

    /// The partition entry array (128 entries of 128 bytes).
    pub fn entries(&self) -> Vec<u8> {
        let mut a = vec![0u8; ENTRIES * ENTRY_SIZE];
        let mut e = [0u8; ENTRY_SIZE];
        e[0..16].copy_from_slice(&ESP_TYPE);
        e[16..32].copy_from_slice(&self.esp_guid);
        e[32..40].copy_from_slice(&self.esp_first.to_le_bytes());
        e[40..48].copy_from_slice(&self.esp_last.to_le_bytes());
        for (slot, unit) in e[56..128]
            .chunks_exact_mut(2)
            .zip("EFI System Partition".encode_utf16())
        {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
        if let Some(first) = a.get_mut(..ENTRY_SIZE) {
            first.copy_from_slice(&e);
        }
        a
    }

    /// A header sector; `primary` selects which copy.
    pub fn header(&self, primary: bool) -> [u8; SECTOR] {
        let last = self.last_lba();
        let (my, alt, array) = if primary {
            (1, last, 2)
        } else {
            (last, 1, last - ARRAY_SECTORS)
        };
        let mut h = [0u8; SECTOR];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ARRAY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last - 1 - ARRAY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid);
        h[72..80].copy_from_slice(&array.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&self.entries()).to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// Writes `disk.raw`: the full-size sparse file with `esp` (a filesystem
/// image) in the ESP. A thin wrapper over [`write_disk_to`] that sizes the
/// file first (so the untouched runs stay holes) and syncs it at the end.
pub fn write_disk(path: &Path, layout: &Layout, esp: &[u8]) -> Result<(), GptError> {
    check_esp_fits(layout, esp)?;
    let mut f = File::create(path).map_err(io_err("create", path))?;
    f.set_len(layout.disk_size).map_err(io_err("size", path))?;
    write_disk_to(&mut f, layout, esp).map_err(on_path(path))?;
    f.sync_all().map_err(io_err("sync", path))
}

/// Names the file in an I/O error raised by a core that had no path.
fn on_path(path: &Path) -> impl FnOnce(GptError) -> GptError + '_ {
    move |e| match e {
        GptError::Io { op, source, .. } => GptError::Io {
            op,
            path: path.to_path_buf(),
            source,
        },
        other => other,
    }
}

fn check_esp_fits(layout: &Layout, esp: &[u8]) -> Result<(), GptError> {
    let partition = (layout.esp_last + 1).saturating_sub(layout.esp_first) * SECTOR as u64;
    let image = esp.len() as u64;
    if image > partition {
        return Err(GptError::EspTooLarge { image, partition });
    }
    Ok(())
}

/// Writes the protective MBR, both tables and the ESP's non-zero 64 KiB
/// blocks into `disk`, seeking over everything else (which must already read
/// as zeros: a fresh sparse file, or a zeroed buffer).
pub fn write_disk_to<W: Write + Seek>(
    disk: &mut W,
    layout: &Layout,
    esp: &[u8],
) -> Result<(), GptError> {
    check_esp_fits(layout, esp)?;
    write_blocks(disk, layout, esp).map_err(io_err("write", Path::new("")))
}

fn write_blocks<W: Write + Seek>(disk: &mut W, layout: &Layout, esp: &[u8]) -> io::Result<()> {
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&layout.protective_mbr())?;
    disk.write_all(&layout.header(true))?;
    disk.write_all(&layout.entries())?;
    const BLOCK: usize = 64 * 1024;
    let base = layout.esp_first * SECTOR as u64;
    for (i, chunk) in esp.chunks(BLOCK).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            disk.seek(SeekFrom::Start(base + (i * BLOCK) as u64))?;
            disk.write_all(chunk)?;
        }
    }
    let last = layout.last_lba();
    disk.seek(SeekFrom::Start((last - ARRAY_SECTORS) * SECTOR as u64))?;
    disk.write_all(&layout.entries())?;
    disk.write_all(&layout.header(false))?;
    disk.flush()
}

fn le32(b: &[u8], at: usize) -> Result<u32, GptError> {
    let s: [u8; 4] = b
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(GptError::Truncated)?;
    Ok(u32::from_le_bytes(s))
}

fn le64(b: &[u8], at: usize) -> Result<u64, GptError> {
    let s: [u8; 8] = b
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .ok_or(GptError::Truncated)?;
    Ok(u64::from_le_bytes(s))
}

/// Checks a header sector and its partition array; returns the first
/// partition's (type GUID, first LBA, last LBA).
pub fn parse_header(
    header: &[u8],
    array: &[u8],
    my_lba: u64,
) -> Result<([u8; 16], u64, u64), GptError> {
    if header.get(..8) != Some(b"EFI PART".as_slice()) {
        return Err(GptError::NoSignature(my_lba));
    }
    let size = le32(header, 12)? as usize;
    if size != HEADER_SIZE {
        return Err(GptError::HeaderSize(size));
    }
    let mut h = header
        .get(..HEADER_SIZE)
        .ok_or(GptError::Truncated)?
        .to_vec();
    let crc = le32(&h, 16)?;
    if let Some(c) = h.get_mut(16..20) {
        c.fill(0);
    }
    if crc32fast::hash(&h) != crc {
        return Err(GptError::HeaderCrc(my_lba));
    }
    if le64(header, 24)? != my_lba {
        return Err(GptError::WrongLba(my_lba));
    }
    let n = le32(header, 80)? as usize;
    let esz = le32(header, 84)? as usize;
    if n.checked_mul(esz) != Some(array.len()) {
        return Err(GptError::ArraySize);
    }
    if crc32fast::hash(array) != le32(header, 88)? {
        return Err(GptError::ArrayCrc);
    }
    let mut ty = [0u8; 16];
    ty.copy_from_slice(array.get(..16).ok_or(GptError::Truncated)?);
    Ok((ty, le64(array, 32)?, le64(array, 40)?))
}

/// Reads `disk.raw`'s headers (both copies) and returns the ESP bytes. A thin
/// wrapper over [`read_esp_from`].
pub fn read_esp(path: &Path) -> Result<Vec<u8>, GptError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    read_esp_from(&mut f).map_err(on_path(path))
}

/// Reads a GPT disk's protective MBR and both headers and arrays, checks
/// them (signatures, CRCs, each header's own LBA, primary = backup, the first
/// partition is an ESP inside the disk) and returns the ESP's bytes.
pub fn read_esp_from<R: Read + Seek>(disk: &mut R) -> Result<Vec<u8>, GptError> {
    let here = Path::new("");
    let len = disk.seek(SeekFrom::End(0)).map_err(io_err("seek", here))?;
    let sectors = len / SECTOR as u64;
    if len % SECTOR as u64 != 0 || sectors <= 2 * (ARRAY_SECTORS + 1) + 1 {
        return Err(GptError::BadDiskSize(len));
    }
    let mut head = vec![0u8; 2 * SECTOR + ARRAY_BYTES];
    disk.seek(SeekFrom::Start(0))
        .and_then(|_| disk.read_exact(&mut head))
        .map_err(io_err("read", here))?;
    if head.get(510..512) != Some([0x55, 0xAA].as_slice()) {
        return Err(GptError::NoMbrSignature);
    }
    if head.get(450) != Some(&0xEE) {
        return Err(GptError::NotProtective);
    }
    let primary = parse_header(
        head.get(SECTOR..2 * SECTOR).ok_or(GptError::Truncated)?,
        head.get(2 * SECTOR..).ok_or(GptError::Truncated)?,
        1,
    )?;
    let mut tail = vec![0u8; SECTOR + ARRAY_BYTES];
    disk.seek(SeekFrom::Start(
        (sectors - 1 - ARRAY_SECTORS) * SECTOR as u64,
    ))
    .and_then(|_| disk.read_exact(&mut tail))
    .map_err(io_err("read", here))?;
    let split = ARRAY_BYTES;
    let backup = parse_header(
        tail.get(split..).ok_or(GptError::Truncated)?,
        tail.get(..split).ok_or(GptError::Truncated)?,
        sectors - 1,
    )?;
    if primary != backup {
        return Err(GptError::TablesDiffer);
    }
    let (ty, first, last) = primary;
    if ty != ESP_TYPE {
        return Err(GptError::NotEsp);
    }
    if first > last || last >= sectors {
        return Err(GptError::EspOutside);
    }
    // `last < sectors`, so the ESP is no larger than the disk just measured.
    let esp_len =
        usize::try_from((last - first + 1) * SECTOR as u64).map_err(|_| GptError::EspOutside)?;
    let mut esp = vec![0u8; esp_len];
    disk.seek(SeekFrom::Start(first * SECTOR as u64))
        .and_then(|_| disk.read_exact(&mut esp))
        .map_err(io_err("read", here))?;
    Ok(esp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_formatting_matches_the_esp_type() {
        assert_eq!(
            guid_string(&ESP_TYPE),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        let g = derived_guid("x", b"y");
        assert_eq!(guid_string(&g).as_bytes()[14], b'4');
        assert_eq!(g, derived_guid("x", b"y"));
        assert_ne!(g, derived_guid("x", b"z"));
    }

    #[test]
    fn headers_parse_back() {
        let l = Layout::new(GIB, 64 << 20, b"seed").unwrap();
        let p = parse_header(&l.header(true), &l.entries(), 1).unwrap();
        let b = parse_header(&l.header(false), &l.entries(), GIB / 512 - 1).unwrap();
        assert_eq!(p, (ESP_TYPE, 2048, 2048 + (64 << 20) / 512 - 1));
        assert_eq!(p, b);
        let mut bad = l.header(true);
        bad[60] ^= 1;
        assert!(parse_header(&bad, &l.entries(), 1).is_err());
    }
}
