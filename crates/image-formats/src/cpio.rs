//! The initramfs archive: a `newc` cpio writer that is deterministic by
//! construction, and a strict reader used by `verify` and the fuzz target.
//!
//! Writer invariants: entries sorted by path (a parent always precedes its
//! children), every parent directory present, uid/gid 0, one fixed mtime,
//! inode numbers 1.. in path order, `nlink` 1 for non-directories (so the
//! kernel never treats two entries as hard links of each other), dev 0.
//!
//! The reader is pure over `&[u8]`, checks every length before slicing and
//! never panics. It is stricter than the kernel on purpose: the kernel unpacks
//! concatenated archives, so anything but zero padding after `TRAILER!!!`
//! is an error here — a verifier must account for every byte the kernel reads.

use std::collections::BTreeMap;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;

/// What an entry is, with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file and its content.
    File(Vec<u8>),
    /// A character device node (e.g. `/dev/console` = 5:1).
    CharDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// One entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    perm: u32,
    node: Node,
}

/// Why an archive could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpioError {
    /// A path is empty, absolute after normalisation, has `.`/`..`/empty
    /// components, or contains a NUL byte.
    #[error("cpio: bad path {0:?}")]
    BadPath(String),
    /// Two entries with the same path, or a file under a non-directory.
    #[error("cpio: conflicting entry {0:?}")]
    Conflict(String),
    /// Permission bits outside `0o7777`.
    #[error("cpio: bad mode {1:o} for {0:?}")]
    BadMode(String, u32),
    /// A value does not fit the 8-hex-digit header field.
    #[error("cpio: {0:?} is too large for newc")]
    TooLarge(String),
    /// The input ends inside a header, name or body at this offset.
    #[error("cpio: truncated at offset {0}")]
    Truncated(usize),
    /// The header at this offset does not start with `070701`.
    #[error("cpio: bad magic at offset {0}")]
    BadMagic(usize),
    /// A header field at this offset is not 8 hex digits.
    #[error("cpio: bad header field at offset {0}")]
    BadHex(usize),
    /// The name at this offset is not NUL-terminated UTF-8.
    #[error("cpio: bad name at offset {0}")]
    BadName(usize),
    /// Non-zero bytes after the trailer, at this offset.
    #[error("cpio: data after the trailer at offset {0}")]
    TrailingData(usize),
    /// No `TRAILER!!!` entry.
    #[error("cpio: no TRAILER!!! entry")]
    NoTrailer,
}

/// An archive being built. Paths are stored without the leading `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    items: BTreeMap<String, Item>,
}

/// Normalises `/a/b` and `a/b` to `a/b`, rejecting anything ambiguous.
fn normalise(path: &str) -> Result<String, CpioError> {
    let rel = path.strip_prefix('/').unwrap_or(path);
    let bad = rel.is_empty()
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(rel.to_string())
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds a directory (and any missing parents, mode 0755). Adding an
    /// existing directory again only updates its mode.
    pub fn add_dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        let rel = normalise(path)?;
        self.ensure_parents(&rel)?;
        check_perm(&rel, perm)?;
        match self.items.get_mut(&rel) {
            Some(Item {
                node: Node::Dir,
                perm: p,
            }) => {
                *p = perm;
                Ok(())
            }
            Some(_) => Err(CpioError::Conflict(rel)),
            None => {
                self.items.insert(
                    rel,
                    Item {
                        perm,
                        node: Node::Dir,
                    },
                );
                Ok(())
            }
        }
    }

    /// Adds a regular file (parents created as directories, mode 0755).
    pub fn add_file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add_leaf(path, perm, Node::File(data))
    }

    /// Adds a character device node.
    pub fn add_char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.add_leaf(path, perm, Node::CharDev { major, minor })
    }

    fn add_leaf(&mut self, path: &str, perm: u32, node: Node) -> Result<(), CpioError> {
        let rel = normalise(path)?;
        check_perm(&rel, perm)?;
        self.ensure_parents(&rel)?;
        if self.items.contains_key(&rel) {
            return Err(CpioError::Conflict(rel));
        }
        self.items.insert(rel, Item { perm, node });
        Ok(())
    }

    fn ensure_parents(&mut self, rel: &str) -> Result<(), CpioError> {
        let mut end = 0;
        while let Some(pos) = rel.get(end..).and_then(|s| s.find('/')) {
            let parent = rel.get(..end + pos).unwrap_or_default();
            match self.items.get(parent) {
                Some(Item {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => return Err(CpioError::Conflict(parent.to_string())),
                None => {
                    self.items.insert(
                        parent.to_string(),
                        Item {
                            perm: 0o755,
                            node: Node::Dir,
                        },
                    );
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    /// Number of entries (the trailer not counted).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Serialises the archive. `mtime` is SOURCE_DATE_EPOCH (truncated to
    /// the 32-bit field; callers validate it).
    pub fn write(&self, mtime: u32) -> Result<Vec<u8>, CpioError> {
        let mut out = Vec::new();
        let mut ino: u32 = 0;
        for (path, item) in &self.items {
            ino = ino.saturating_add(1);
            let (mode, nlink, data, rmaj, rmin): (u32, u32, &[u8], u32, u32) = match &item.node {
                Node::Dir => (S_IFDIR | item.perm, 2 + self.subdirs(path), &[], 0, 0),
                Node::File(d) => (S_IFREG | item.perm, 1, d.as_slice(), 0, 0),
                Node::CharDev { major, minor } => (S_IFCHR | item.perm, 1, &[], *major, *minor),
            };
            let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(path.clone()))?;
            let header = Header {
                ino,
                mode,
                uid: 0,
                gid: 0,
                nlink,
                mtime,
                filesize: size,
                rdev_major: rmaj,
                rdev_minor: rmin,
            };
            write_entry(&mut out, &header, path, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        write_entry(&mut out, &trailer, TRAILER, &[])?;
        Ok(out)
    }

    fn subdirs(&self, dir: &str) -> u32 {
        let prefix = format!("{dir}/");
        let n = self
            .items
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, i)| {
                i.node == Node::Dir && p.get(prefix.len()..).is_some_and(|r| !r.contains('/'))
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

fn check_perm(path: &str, perm: u32) -> Result<(), CpioError> {
    if perm & !0o7777 != 0 {
        return Err(CpioError::BadMode(path.to_string(), perm));
    }
    Ok(())
}

struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn write_entry(out: &mut Vec<u8>, h: &Header, name: &str, data: &[u8]) -> Result<(), CpioError> {
    let namesize =
        u32::try_from(name.len() + 1).map_err(|_| CpioError::TooLarge(name.to_string()))?;
    out.extend_from_slice(MAGIC);
    for v in [
        h.ino,
        h.mode,
        h.uid,
        h.gid,
        h.nlink,
        h.mtime,
        h.filesize,
        0, // devmajor
        0, // devminor
        h.rdev_major,
        h.rdev_minor,
        namesize,
        0, // check (only used by the 070702 CRC format)
    ] {
        out.extend_from_slice(format!("{v:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

/// One parsed entry, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name exactly as stored (normally without a leading `/`).
    pub name: &'a str,
    /// Inode number.
    pub ino: u32,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time.
    pub mtime: u32,
    /// Device of the entry itself (major, minor).
    pub dev: (u32, u32),
    /// Device a device node refers to (major, minor).
    pub rdev: (u32, u32),
    /// The body (file content, symlink target).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// The file type bits.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Whether any execute bit is set.
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }

    /// The name as an absolute path (`/init`).
    pub fn abs_path(&self) -> String {
        format!("/{}", self.name.trim_start_matches('/'))
    }
}

fn hex_field(buf: &[u8], at: usize) -> Result<u32, CpioError> {
    let field = buf.get(at..at + 8).ok_or(CpioError::Truncated(at))?;
    let mut v: u32 = 0;
    for &c in field {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(CpioError::BadHex(at)),
        };
        v = (v << 4) | u32::from(d);
    }
    Ok(v)
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Parses a whole `newc` archive up to and including its trailer.
pub fn parse(buf: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
    let mut entries = Vec::new();
    let mut off = 0usize;
    loop {
        let header = buf
            .get(off..off.saturating_add(HEADER_LEN))
            .ok_or(CpioError::Truncated(off))?;
        if header.get(..6) != Some(MAGIC.as_slice()) {
            return Err(CpioError::BadMagic(off));
        }
        let field = |i: usize| hex_field(header, 6 + 8 * i).map_err(|e| relocate(e, off));
        let ino = field(0)?;
        let mode = field(1)?;
        let uid = field(2)?;
        let gid = field(3)?;
        let nlink = field(4)?;
        let mtime = field(5)?;
        let filesize = field(6)? as usize;
        let dev = (field(7)?, field(8)?);
        let rdev = (field(9)?, field(10)?);
        let namesize = field(11)? as usize;
        let name_start = off + HEADER_LEN;
        let name_end = name_start
            .checked_add(namesize)
            .ok_or(CpioError::Truncated(name_start))?;
        let name_bytes = buf
            .get(name_start..name_end)
            .ok_or(CpioError::Truncated(name_start))?;
        let (nul, name_bytes) = name_bytes
            .split_last()
            .ok_or(CpioError::BadName(name_start))?;
        if *nul != 0 || name_bytes.contains(&0) {
            return Err(CpioError::BadName(name_start));
        }
        let name = std::str::from_utf8(name_bytes).map_err(|_| CpioError::BadName(name_start))?;
        let data_start = align4(name_end).ok_or(CpioError::Truncated(name_end))?;
        let data_end = data_start
            .checked_add(filesize)
            .ok_or(CpioError::Truncated(data_start))?;
        let data = buf
            .get(data_start..data_end)
            .ok_or(CpioError::Truncated(data_start))?;
        let next = align4(data_end).ok_or(CpioError::Truncated(data_end))?;
        if name == TRAILER {
            let rest = buf.get(data_end..).unwrap_or_default();
            if let Some(pos) = rest.iter().position(|&b| b != 0) {
                return Err(CpioError::TrailingData(data_end + pos));
            }
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            dev,
            rdev,
            data,
        });
        if next > buf.len() {
            // Padding may be absent only at the very end, and the end must be
            // the trailer, which this entry is not.
            return Err(CpioError::NoTrailer);
        }
        off = next;
    }
}

fn relocate(e: CpioError, base: usize) -> CpioError {
    match e {
        CpioError::BadHex(o) => CpioError::BadHex(base + o),
        CpioError::Truncated(o) => CpioError::Truncated(base + o),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut a = Archive::new();
        a.add_file("/usr/bin/valkey-server", 0o755, b"x".to_vec())
            .unwrap();
        a.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
        let bytes = a.write(1).unwrap();
        let names: Vec<_> = parse(&bytes).unwrap().iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "usr",
                "usr/bin",
                "usr/bin/valkey-server"
            ]
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["", "/", "a//b", "a/../b", "./a", "a/\0"] {
            assert!(Archive::new().add_file(p, 0o644, vec![]).is_err(), "{p:?}");
        }
        let mut a = Archive::new();
        a.add_file("/a", 0o644, vec![]).unwrap();
        assert!(a.add_file("/a/b", 0o644, vec![]).is_err());
        assert!(a.add_file("/a", 0o644, vec![]).is_err());
        assert!(a.add_file("/b", 0o10644, vec![]).is_err());
    }

    #[test]
    fn data_after_trailer_is_refused_but_zero_padding_is_not() {
        let mut a = Archive::new();
        a.add_file("/init", 0o755, b"abc".to_vec()).unwrap();
        let mut bytes = a.write(0).unwrap();
        bytes.extend_from_slice(&[0; 512]);
        assert!(parse(&bytes).is_ok());
        let second = a.write(0).unwrap();
        bytes.extend_from_slice(&second);
        assert!(matches!(parse(&bytes), Err(CpioError::TrailingData(_))));
    }
}
