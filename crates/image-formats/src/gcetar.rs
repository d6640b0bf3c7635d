//! `image.tar.gz`: the format GCE imports — a GNU tar whose only member is
//! `disk.raw`, gzip-compressed.
//!
//! Deterministic: fixed mtime (SOURCE_DATE_EPOCH), uid/gid 0, owner names
//! `root`, mode 0644, zeros up to a whole 10 KiB record; the gzip header has
//! mtime 0, no file name, OS "unknown". No sparse-file entries: the zero runs
//! compress to almost nothing anyway. The tar stream is byte for byte what
//! `tar --format=oldgnu --owner=root:0 --group=root:0 --mode=0644
//! --mtime=@EPOCH` writes (a test checks it against the host's GNU tar),
//! which is why this is our own 40-line header writer and not the `tar`
//! crate: that crate formats the header checksum differently (see the
//! crate README).
//!
//! The reader ([`check_member`]) is strict: exactly one regular member
//! named `disk.raw` with a valid header checksum, equal to the disk, then
//! only zeros (a second member would be a second disk).
//!
//! The cores work on `Read`/`Write`; [`write`] and [`member_matches`] are
//! thin wrappers over files.

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const BLOCK: usize = 512;
const RECORD: u64 = 20 * BLOCK as u64;
/// The member name GCE requires.
pub const MEMBER: &str = "disk.raw";

/// Why an archive could not be written or does not match its disk.
#[derive(Debug, thiserror::Error)]
pub enum GceTarError {
    /// A member name that does not fit the 100-byte header field.
    #[error("tar: name {0} too long")]
    NameTooLong(String),
    /// The disk's length changed while it was archived.
    #[error("tar: {} changed while being read ({read} bytes read, {size} expected)", path.display())]
    Changed {
        /// The disk.
        path: PathBuf,
        /// Bytes read.
        read: u64,
        /// Bytes the header announced.
        size: u64,
    },
    /// The archive is shorter than one header.
    #[error("tar: no header")]
    NoHeader(#[source] io::Error),
    /// The header's checksum does not add up.
    #[error("tar: header checksum mismatch")]
    Checksum,
    /// The first member is a link, directory, sparse file, ...
    #[error("tar: first member is not a regular file")]
    NotRegularFile,
    /// The size field is neither octal nor base-256.
    #[error("tar: bad size")]
    BadSize,
    /// The member has another name.
    #[error("tar: member is {0:?}, not {MEMBER}")]
    WrongName(String),
    /// The member and the disk differ in length.
    #[error("tar: member is {size} bytes, {} is not", path.display())]
    SizeMismatch {
        /// The member's size.
        size: u64,
        /// The disk it was compared with.
        path: PathBuf,
    },
    /// The archive ends inside the member.
    #[error("tar: member truncated")]
    Truncated(#[source] io::Error),
    /// The member's bytes differ from the disk's.
    #[error("tar: member differs from {}", .0.display())]
    Differs(PathBuf),
    /// Something other than zeros follows the member.
    #[error("tar: data after the disk.raw member")]
    TrailingData,
    /// Reading or writing a file (or the gzip stream) failed.
    #[error("tar: {op}{}", crate::at_path(path))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file, if any.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> GceTarError + 'a {
    move |source| GceTarError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

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
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], GceTarError> {
    ensure!(name.len() < 100, GceTarError::NameTooLong(name.to_owned()));
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

/// Writes tar(`disk` as `disk.raw`, `size` bytes) to `out`, padded with zeros
/// to a whole record, and returns `out`. `path` only names the disk in errors.
pub fn write_archive<R: Read, W: Write>(
    mut disk: R,
    size: u64,
    mtime: u64,
    mut out: W,
    path: &Path,
) -> Result<W, GceTarError> {
    let write = |e| io_err("write", path)(e);
    out.write_all(&header(MEMBER, size, mtime)?)
        .map_err(write)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = disk.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        out.write_all(buf.get(..n).unwrap_or_default())
            .map_err(write)?;
        copied += n as u64;
    }
    ensure!(
        copied == size,
        GceTarError::Changed {
            path: path.to_path_buf(),
            read: copied,
            size
        }
    );
    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    let end = padded + BLOCK as u64 + 2 * BLOCK as u64;
    let total = end.div_ceil(RECORD) * RECORD;
    // The block padding, the two end blocks and the record fill: under
    // 12 KiB, so the conversion cannot fail.
    let fill = u16::try_from(total - BLOCK as u64 - size).unwrap_or(u16::MAX);
    out.write_all(&vec![0u8; usize::from(fill)])
        .map_err(write)?;
    Ok(out)
}

/// Writes `out` = gzip(tar(`disk` as `disk.raw`)).
pub fn write(disk: &Path, out: &Path, mtime: u64) -> Result<(), GceTarError> {
    let src = File::open(disk).map_err(io_err("open", disk))?;
    let size = src.metadata().map_err(io_err("stat", disk))?.len();
    let dst = File::create(out).map_err(io_err("create", out))?;
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(BufWriter::new(dst), Compression::default());
    let gz = write_archive(src, size, mtime, gz, disk)?;
    let w = gz.finish().map_err(io_err("write", out))?;
    let f = w
        .into_inner()
        .map_err(|e| io_err("write", out)(e.into_error()))?;
    f.sync_all().map_err(io_err("sync", out))
}

/// Reads `image.tar.gz` back: checks there is exactly one member named
/// `disk.raw`, followed only by zeros, whose content equals the file `raw`
/// (compared, not hashed: cheaper, and as strong). A thin wrapper over
/// [`check_member`].
pub fn member_matches(path: &Path, raw: &Path) -> Result<(), GceTarError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    let disk = File::open(raw).map_err(io_err("open", raw))?;
    let len = disk.metadata().map_err(io_err("stat", raw))?.len();
    check_member(io::BufReader::new(f), disk, len, raw).map_err(|e| match e {
        // A read error of the archive names the archive, one of the disk
        // names the disk; `check_member` marks the latter with `raw`.
        GceTarError::Io {
            op,
            path: p,
            source,
        } if p.as_os_str().is_empty() => GceTarError::Io {
            op,
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Checks a gzip-compressed GCE archive read from `tar_gz` against a disk
/// of `raw_len` bytes read from `raw` (`raw_path` names it in errors): one
/// regular member `disk.raw` with a valid header checksum, the same bytes,
/// then only zeros.
pub fn check_member<A: Read, D: Read>(
    tar_gz: A,
    mut raw: D,
    raw_len: u64,
    raw_path: &Path,
) -> Result<(), GceTarError> {
    let here = Path::new("");
    let mut r = GzDecoder::new(tar_gz);
    let mut h = [0u8; BLOCK];
    r.read_exact(&mut h).map_err(GceTarError::NoHeader)?;
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
        GceTarError::Checksum
    );
    ensure!(h[156] == b'0' || h[156] == 0, GceTarError::NotRegularFile);
    let name: String = h[..100]
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| char::from(b))
        .collect();
    let mut size_field = [0u8; 12];
    size_field.copy_from_slice(&h[124..136]);
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
        u64::from_str_radix(&s, 8).map_err(|_| GceTarError::BadSize)?
    };
    ensure!(name == MEMBER, GceTarError::WrongName(name));
    ensure!(
        raw_len == size,
        GceTarError::SizeMismatch {
            size,
            path: raw_path.to_path_buf()
        }
    );
    let mut remaining = size;
    let mut buf = vec![0u8; 1 << 20];
    let mut want_buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let (Some(chunk), Some(expected)) = (buf.get_mut(..want), want_buf.get_mut(..want)) else {
            break;
        };
        r.read_exact(chunk).map_err(GceTarError::Truncated)?;
        raw.read_exact(expected).map_err(io_err("read", raw_path))?;
        ensure!(
            chunk == expected,
            GceTarError::Differs(raw_path.to_path_buf())
        );
        remaining -= want as u64;
    }
    // Whatever follows (padding, end-of-archive blocks) must be zeros: a
    // second member would be a second disk.
    loop {
        let n = r.read(&mut buf).map_err(io_err("read", here))?;
        if n == 0 {
            break;
        }
        ensure!(
            buf.get(..n).unwrap_or_default().iter().all(|&b| b == 0),
            GceTarError::TrailingData
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

    #[test]
    fn long_names_are_refused() {
        assert!(header(&"x".repeat(99), 0, 0).is_ok());
        assert!(matches!(
            header(&"x".repeat(100), 0, 0),
            Err(GceTarError::NameTooLong(_))
        ));
    }
}
