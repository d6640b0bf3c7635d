//! `image.tar.gz`: the format GCE imports — a GNU tar whose only member is
//! `disk.raw`, gzip-compressed.
//!
//! Deterministic: fixed mtime (SOURCE_DATE_EPOCH), uid/gid 0, owner names
//! `root`, mode 0644; the gzip header has mtime 0, no file name, OS "unknown".
//! No sparse-file entries: the zero runs compress to almost nothing anyway.
#![forbid(unsafe_code)]

use anyhow::{ensure, Context, Result};
use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

const BLOCK: usize = 512;
const RECORD: u64 = 20 * BLOCK as u64;
/// The member name GCE requires.
pub const MEMBER: &str = "disk.raw";

/// A numeric header field: octal with a NUL when it fits, else GNU base-256.
fn numeric(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let octal = format!("{value:0digits$o}");
    if octal.len() <= digits {
        if let Some(d) = field.get_mut(..digits) {
            d.copy_from_slice(octal.as_bytes());
        }
        if let Some(last) = field.last_mut() {
            *last = 0;
        }
    } else {
        let bytes = value.to_be_bytes();
        field.fill(0);
        let n = field.len();
        if let Some(tail) = field.get_mut(n - 8..) {
            tail.copy_from_slice(&bytes);
        }
        if let Some(first) = field.first_mut() {
            *first |= 0x80;
        }
    }
}

/// The 512-byte old-GNU header of a regular file.
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK]> {
    ensure!(name.len() < 100, "tar: name {name} too long");
    let mut h = [0u8; BLOCK];
    if let Some(dst) = h.get_mut(..name.len()) {
        dst.copy_from_slice(name.as_bytes());
    }
    numeric(&mut h[100..108], 0o644);
    numeric(&mut h[108..116], 0);
    numeric(&mut h[116..124], 0);
    numeric(&mut h[124..136], size);
    numeric(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
    Ok(h)
}

/// Writes `out` = gzip(tar(`disk` as `disk.raw`)).
pub fn write(disk: &Path, out: &Path, mtime: u64) -> Result<()> {
    let mut src = File::open(disk).with_context(|| format!("open {}", disk.display()))?;
    let size = src.metadata()?.len();
    let dst = File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(BufWriter::new(dst), Compression::default());
    gz.write_all(&header(MEMBER, size, mtime)?)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        gz.write_all(buf.get(..n).unwrap_or_default())?;
        copied += n as u64;
    }
    ensure!(
        copied == size,
        "tar: {} changed while being read",
        disk.display()
    );
    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    let end = padded + BLOCK as u64 + 2 * BLOCK as u64;
    let total = end.div_ceil(RECORD) * RECORD;
    let zeros = vec![0u8; usize::try_from(total - BLOCK as u64 - size)?];
    gz.write_all(&zeros)?;
    let w = gz.finish()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Reads `image.tar.gz` back: checks there is exactly one member named
/// `disk.raw`, followed only by zeros, whose content equals the file `raw`
/// (compared, not hashed: cheaper, and as strong).
pub fn member_matches(path: &Path, raw: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut r = GzDecoder::new(std::io::BufReader::new(f));
    let mut h = [0u8; BLOCK];
    r.read_exact(&mut h).context("tar: no header")?;
    let stored: String = h[148..156]
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| char::from(b))
        .collect();
    let mut blank = h;
    blank[148..156].fill(b' ');
    let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
    ensure!(
        u32::from_str_radix(&stored, 8).ok() == Some(sum),
        "tar: header checksum mismatch"
    );
    ensure!(
        h[156] == b'0' || h[156] == 0,
        "tar: first member is not a regular file"
    );
    let name: String = h[..100]
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| char::from(b))
        .collect();
    let size_field: [u8; 12] = h[124..136].try_into()?;
    let size = if size_field[0] & 0x80 != 0 {
        size_field[4..]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    } else {
        let s: String = size_field
            .iter()
            .take_while(|&&b| b != 0 && b != b' ')
            .map(|&b| char::from(b))
            .collect();
        u64::from_str_radix(&s, 8).context("tar: bad size")?
    };
    ensure!(name == MEMBER, "tar: member is {name:?}, not {MEMBER}");
    let mut other = File::open(raw).with_context(|| format!("open {}", raw.display()))?;
    ensure!(
        other.metadata()?.len() == size,
        "tar: member is {size} bytes, {} is not",
        raw.display()
    );
    let mut remaining = size;
    let mut buf = vec![0u8; 1 << 20];
    let mut want_buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = usize::try_from(remaining.min(buf.len() as u64))?;
        let chunk = buf.get_mut(..want).context("tar")?;
        r.read_exact(chunk).context("tar: member truncated")?;
        let expected = want_buf.get_mut(..want).context("tar")?;
        other.read_exact(expected)?;
        ensure!(
            chunk == expected,
            "tar: member differs from {}",
            raw.display()
        );
        remaining -= want as u64;
    }
    // Whatever follows (padding, end-of-archive blocks) must be zeros: a
    // second member would be a second disk.
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ensure!(
            buf.get(..n).unwrap_or_default().iter().all(|&b| b == 0),
            "tar: data after the disk.raw member"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        let mut f = [0u8; 12];
        numeric(&mut f, 1 << 30);
        assert_eq!(&f, b"10000000000\0");
        numeric(&mut f, 1 << 40);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(1u64 << 40).to_be_bytes());
    }
}
