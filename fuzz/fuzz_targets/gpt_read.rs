//! The GPT reader `verify` trusts must never panic on any disk, and an ESP
//! it returns lies inside the disk in whole sectors.
//!
//! Raw inputs rarely get past the size and CRC checks, so each input is also
//! applied as byte edits to a valid small disk from our own writer, with the
//! CRCs recomputed when the first byte says so: the fuzzer then reaches the
//! LBA, array-size, primary/backup and ESP-range checks. The disk is held
//! sparse (its zero run is not copied per input) to keep runs fast.
#![no_main]

use image_formats::gpt;
use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::LazyLock;

const SECTOR: usize = 512;
const ESP_SECTORS: u64 = 64;
const SECTORS: u64 = 2048 + ESP_SECTORS + 64;
const ARRAY: usize = 128 * 128;
/// MBR, primary header, primary array.
const HEAD: usize = 2 * SECTOR + ARRAY;
/// Backup array and header.
const TAIL: usize = ARRAY + SECTOR;

/// (head, ESP, tail) of a valid disk.
static VALID: LazyLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
    let len = (SECTORS as usize) * SECTOR;
    let esp = vec![0xAB; ESP_SECTORS as usize * SECTOR];
    let layout = gpt::Layout::new(len as u64, esp.len() as u64, b"fuzz").expect("layout");
    let mut disk = Cursor::new(vec![0u8; len]);
    gpt::write_disk_to(&mut disk, &layout, &esp).expect("write");
    let d = disk.into_inner();
    (d[..HEAD].to_vec(), esp, d[len - TAIL..].to_vec())
});

/// A disk that is `head`, zeros, `esp` at LBA 2048, zeros, `tail`.
struct Sparse<'a> {
    head: &'a [u8],
    esp: &'a [u8],
    tail: &'a [u8],
    pos: u64,
}

impl Sparse<'_> {
    fn len() -> u64 {
        SECTORS * SECTOR as u64
    }
    fn byte(&self, at: u64) -> u8 {
        let esp_start = 2048 * SECTOR as u64;
        let tail_start = Self::len() - TAIL as u64;
        let pick = |b: &[u8], off: u64| b.get(off as usize).copied().unwrap_or(0);
        if at < HEAD as u64 {
            pick(self.head, at)
        } else if at >= tail_start {
            pick(self.tail, at - tail_start)
        } else if at >= esp_start {
            pick(self.esp, at - esp_start)
        } else {
            0
        }
    }
}

impl Read for Sparse<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min((Self::len().saturating_sub(self.pos)) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = self.byte(self.pos + i as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Sparse<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => Self::len().saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

fn check<R: Read + Seek>(mut disk: R, len: u64) {
    if let Ok(esp) = gpt::read_esp_from(&mut disk) {
        assert!(!esp.is_empty() && esp.len() % SECTOR == 0);
        assert!(esp.len() as u64 <= len);
    }
}

/// Recomputes the array CRC, then the header CRC.
fn reseal(header: &mut [u8], array: &[u8]) {
    header[88..92].copy_from_slice(&crc32fast::hash(array).to_le_bytes());
    header[16..20].fill(0);
    let crc = crc32fast::hash(&header[..92]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    check(Cursor::new(data), data.len() as u64);
    if let (Some(h), Some(a)) = (data.get(..SECTOR), data.get(SECTOR..)) {
        let _ = gpt::parse_header(h, a, 1);
    }

    let Some((&flags, edits)) = data.split_first() else {
        return;
    };
    let (head, esp, tail) = &*VALID;
    let (mut head, mut tail) = (head.clone(), tail.clone());
    // Edits: (region, offset, value) triples over the MBR's partition table,
    // both headers and the first entries of both arrays.
    for e in edits.chunks_exact(3) {
        let off = usize::from(e[1]);
        match e[0] % 5 {
            0 => head[446 + off % 66] = e[2],
            1 => head[SECTOR + off % 92] = e[2],
            2 => tail[ARRAY + off % 92] = e[2],
            3 => head[2 * SECTOR + off] = e[2],
            _ => tail[off] = e[2],
        }
    }
    if flags & 1 != 0 {
        let (h, a) = head.split_at_mut(2 * SECTOR);
        reseal(&mut h[SECTOR..], a);
        let (a, h) = tail.split_at_mut(ARRAY);
        reseal(h, a);
    }
    let disk = Sparse {
        head: &head,
        esp,
        tail: &tail,
        pos: 0,
    };
    check(disk, Sparse::len());
});
