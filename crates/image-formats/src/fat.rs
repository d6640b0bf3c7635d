//! The EFI System Partition's filesystem: a FAT32 writer for a handful of files
//! with 8.3 names, and a reader used by `verify` to read them back.
//!
//! Why FAT32 with 512-byte clusters on a 64 MiB partition: the UEFI spec names
//! FAT32 for system partitions (firmware must read FAT12/16 too, but FAT32 is
//! what every firmware is tested with), and FAT32 needs at least 65525 data
//! clusters, which 64 MiB only reaches with one sector per cluster (~129k).
//!
//! Deterministic: files are laid out contiguously in path order, every
//! timestamp is SOURCE_DATE_EPOCH, the volume id is given by the caller. No
//! long file names: every component must already be a valid upper-case 8.3
//! name (`EFI`, `BOOT`, `BOOTX64.EFI`).
//!
//! The reader is pure over `&[u8]`, checks lengths first and bounds every
//! cluster-chain walk (and visits each directory once), so a corrupt image
//! yields an error, never a panic or an endless walk.

use std::collections::{BTreeMap, BTreeSet};

/// Why a filesystem could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatError {
    /// The size is not whole sectors.
    #[error("FAT: size {0} is not a multiple of 512")]
    Unaligned(u64),
    /// More sectors than a 32-bit count (or than memory) holds.
    #[error("FAT: filesystem too large ({0} bytes)")]
    TooLarge(u64),
    /// Not even room for the reserved sectors and two FATs.
    #[error("FAT: filesystem too small ({0} bytes)")]
    TooSmall(u64),
    /// Too few data clusters for FAT32.
    #[error("FAT: {0} clusters is too few for FAT32 (needs {FAT32_MIN_CLUSTERS})")]
    TooFewClusters(u32),
    /// The files need more clusters than the filesystem has.
    #[error("FAT: files do not fit in {0} clusters")]
    Full(u32),
    /// A cluster number or offset overflowed while writing.
    #[error("FAT: write outside the filesystem")]
    OutsideFilesystem,
    /// A file of this many bytes does not fit FAT's 32-bit size field.
    #[error("FAT: file over 4 GiB ({0} bytes)")]
    FileTooLarge(usize),
    /// A path component is not a plain upper-case 8.3 name.
    #[error("FAT: `{0}` is not an upper-case 8.3 name")]
    NotShortName(String),
    /// The volume label has other characters or is over 11 bytes.
    #[error("FAT: bad volume label {0:?}")]
    BadLabel(String),
    /// An empty path.
    #[error("FAT: empty path")]
    EmptyPath,
    /// A directory component of `path` is a file.
    #[error("FAT: `{component}` in `{path}` is a file")]
    FileInPath {
        /// The component.
        component: String,
        /// The whole path.
        path: String,
    },
    /// The same path twice.
    #[error("FAT: `{0}` given twice")]
    Duplicate(String),
    /// The image ends inside a structure.
    #[error("FAT: truncated")]
    Truncated,
    /// No `55 AA` at the end of the boot sector.
    #[error("FAT: no boot signature")]
    NoBootSignature,
    /// A sector size other than 512.
    #[error("FAT: sector size {0} unsupported")]
    SectorSize(usize),
    /// Sectors per cluster not a power of two.
    #[error("FAT: bad sectors per cluster {0}")]
    SectorsPerCluster(usize),
    /// No FAT32 FAT size or no FATs.
    #[error("FAT: not FAT32")]
    NotFat32,
    /// The reserved sectors and FATs exceed the filesystem.
    #[error("FAT: bad geometry")]
    BadGeometry,
    /// The boot sector claims more sectors than the image has.
    #[error("FAT: image shorter than the filesystem")]
    ShortImage,
    /// A cluster chain longer than the cluster count.
    #[error("FAT: cluster chain loops")]
    ChainLoops,
    /// A chain ends in a free, reserved or bad cluster value.
    #[error("FAT: broken cluster chain at {0:#x}")]
    BrokenChain(u32),
    /// A chain names a cluster beyond the image.
    #[error("FAT: cluster outside the image")]
    ClusterOutside,
    /// A file's size exceeds its chain.
    #[error("FAT: file longer than its clusters")]
    FileLongerThanClusters,
    /// No such file.
    #[error("FAT: `{0}` not found")]
    NotFound(String),
    /// The path names a directory.
    #[error("FAT: `{0}` is a directory")]
    IsADirectory(String),
    /// A path component is a file.
    #[error("FAT: `{0}` is not a directory")]
    NotADirectory(String),
    /// Directories deeper than any ESP needs.
    #[error("FAT: directories nested too deep")]
    TooDeep,
    /// Two directory entries lead to one directory (a loop or cross-link).
    #[error("FAT: directory at cluster {0:#x} reached twice")]
    DirectoryTwice(u32),
}

/// Sector size; the only one written.
pub const SECTOR: usize = 512;
/// Size of the ESP this module is tuned for.
pub const ESP_SIZE: u64 = 64 * 1024 * 1024;
const RESERVED_SECTORS: u32 = 32;
const NUM_FATS: u32 = 2;
const FAT_ENTRIES_PER_SECTOR: u32 = 128;
const ROOT_CLUSTER: u32 = 2;
const FAT32_MIN_CLUSTERS: u32 = 65_525;
const END_OF_CHAIN: u32 = 0x0FFF_FFFF;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;

/// Parameters of the filesystem beyond its files.
#[derive(Debug, Clone, Copy)]
pub struct FatParams {
    /// Total size in bytes (multiple of 512).
    pub size: u64,
    /// Sectors before the filesystem on the disk (the partition's first LBA).
    pub hidden_sectors: u32,
    /// Volume serial number.
    pub volume_id: u32,
    /// Unix time for every timestamp (clamped to 1980..=2107).
    pub mtime: u64,
}

/// A DOS (date, time) pair for a Unix time.
pub fn dos_datetime(unix: u64) -> (u16, u16) {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    if y < 1980 {
        return ((1 << 5) | 1, 0);
    }
    if y > 2107 {
        return ((127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29);
    }
    // Every value was range-checked above or is < 86400, so these fit.
    let date = ((y - 1980) << 9) | (m << 5) | d;
    let time = ((secs / 3600) << 11) | (((secs / 60) % 60) << 5) | ((secs % 60) / 2);
    (
        u16::try_from(date).unwrap_or(0),
        u16::try_from(time).unwrap_or(0),
    )
}

/// Howard Hinnant's days-to-civil for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `BOOTX64.EFI` -> `BOOTX64 EFI` (11 bytes), refusing anything that is not
/// already a plain upper-case 8.3 name.
pub fn short_name(component: &str) -> Result<[u8; 11], FatError> {
    let (base, ext) = component.split_once('.').unwrap_or((component, ""));
    let ok_char = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
    ensure!(
        (1..=8).contains(&base.len())
            && ext.len() <= 3
            && base.bytes().chain(ext.bytes()).all(ok_char),
        FatError::NotShortName(component.to_owned())
    );
    let mut out = [b' '; 11];
    for (slot, b) in out.iter_mut().zip(base.bytes()) {
        *slot = b;
    }
    for (slot, b) in out.iter_mut().skip(8).zip(ext.bytes()) {
        *slot = b;
    }
    Ok(out)
}

#[derive(Debug)]
enum Node {
    Dir(BTreeMap<[u8; 11], Node>),
    File(Vec<u8>),
}

/// Geometry derived from the size.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    total_sectors: u32,
    fat_sectors: u32,
    clusters: u32,
}

impl Geometry {
    fn new(size: u64) -> Result<Geometry, FatError> {
        ensure!(size % SECTOR as u64 == 0, FatError::Unaligned(size));
        let total_sectors =
            u32::try_from(size / SECTOR as u64).map_err(|_| FatError::TooLarge(size))?;
        let mut fat_sectors = 1u32;
        loop {
            let data = total_sectors
                .checked_sub(RESERVED_SECTORS + NUM_FATS * fat_sectors)
                .ok_or(FatError::TooSmall(size))?;
            let need = (data + 2).div_ceil(FAT_ENTRIES_PER_SECTOR);
            if need <= fat_sectors {
                let clusters = data;
                ensure!(
                    clusters >= FAT32_MIN_CLUSTERS,
                    FatError::TooFewClusters(clusters)
                );
                return Ok(Geometry {
                    total_sectors,
                    fat_sectors,
                    clusters,
                });
            }
            fat_sectors = need;
        }
    }

    fn data_offset(&self) -> usize {
        (RESERVED_SECTORS + NUM_FATS * self.fat_sectors) as usize * SECTOR
    }

    fn cluster_offset(&self, cluster: u32) -> usize {
        self.data_offset() + (cluster as usize - 2) * SECTOR
    }
}

struct Writer {
    img: Vec<u8>,
    geo: Geometry,
    next_cluster: u32,
    date: u16,
    time: u16,
}

impl Writer {
    fn put(&mut self, at: usize, bytes: &[u8]) -> Result<(), FatError> {
        let dst = self
            .img
            .get_mut(at..at + bytes.len())
            .ok_or(FatError::OutsideFilesystem)?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    /// Allocates a contiguous chain of `n` clusters; returns the first (0 for n = 0).
    fn alloc(&mut self, n: u32) -> Result<u32, FatError> {
        if n == 0 {
            return Ok(0);
        }
        let first = self.next_cluster;
        let end = first
            .checked_add(n)
            .ok_or(FatError::Full(self.geo.clusters))?;
        ensure!(
            end <= self.geo.clusters + 2,
            FatError::Full(self.geo.clusters)
        );
        for c in first..end {
            let next = if c + 1 == end { END_OF_CHAIN } else { c + 1 };
            self.set_fat(c, next)?;
        }
        self.next_cluster = end;
        Ok(first)
    }

    fn set_fat(&mut self, cluster: u32, value: u32) -> Result<(), FatError> {
        for fat in 0..NUM_FATS {
            let at = (RESERVED_SECTORS + fat * self.geo.fat_sectors) as usize * SECTOR
                + cluster as usize * 4;
            self.put(at, &value.to_le_bytes())?;
        }
        Ok(())
    }

    fn dirent(&self, name: &[u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e[14..16].copy_from_slice(&self.time.to_le_bytes());
        e[16..18].copy_from_slice(&self.date.to_le_bytes());
        e[18..20].copy_from_slice(&self.date.to_le_bytes());
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[22..24].copy_from_slice(&self.time.to_le_bytes());
        e[24..26].copy_from_slice(&self.date.to_le_bytes());
        e[26..28].copy_from_slice(&((cluster & 0xFFFF) as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    /// Writes directory `children` whose own cluster chain starts at `own`
    /// (already allocated, `slots` entries long), recursing into subdirectories.
    fn write_dir(
        &mut self,
        own: u32,
        parent: u32,
        is_root: bool,
        label: Option<&[u8; 11]>,
        children: &BTreeMap<[u8; 11], Node>,
    ) -> Result<(), FatError> {
        let mut entries: Vec<[u8; 32]> = Vec::new();
        if is_root {
            if let Some(l) = label {
                entries.push(self.dirent(l, ATTR_VOLUME_ID, 0, 0));
            }
        } else {
            entries.push(self.dirent(b".          ", ATTR_DIRECTORY, own, 0));
            entries.push(self.dirent(b"..         ", ATTR_DIRECTORY, parent, 0));
        }
        let mut subdirs = Vec::new();
        for (name, node) in children {
            match node {
                Node::File(data) => {
                    let size = u32::try_from(data.len())
                        .map_err(|_| FatError::FileTooLarge(data.len()))?;
                    let first = self.alloc(clusters_for(data.len()))?;
                    if first != 0 {
                        let at = self.geo.cluster_offset(first);
                        self.put(at, data)?;
                    }
                    entries.push(self.dirent(name, ATTR_ARCHIVE, first, size));
                }
                Node::Dir(grand) => {
                    let first = self.alloc(clusters_for(dir_bytes(grand.len() + 2)))?;
                    entries.push(self.dirent(name, ATTR_DIRECTORY, first, 0));
                    subdirs.push((first, grand));
                }
            }
        }
        let mut at = self.geo.cluster_offset(own);
        for e in &entries {
            self.put(at, e)?;
            at += 32;
        }
        // `..` of a child of the root points at cluster 0 by convention.
        let me = if is_root { 0 } else { own };
        for (first, grand) in subdirs {
            self.write_dir(first, me, false, None, grand)?;
        }
        Ok(())
    }
}

fn clusters_for(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(SECTOR)).unwrap_or(u32::MAX)
}

fn dir_bytes(entries: usize) -> usize {
    entries.max(1) * 32
}

/// Builds a FAT32 filesystem image holding `files` (paths like
/// `EFI/BOOT/BOOTX64.EFI`) and a volume `label` (upper-case, <= 11 bytes).
pub fn build(
    files: &[(&str, &[u8])],
    label: &str,
    params: &FatParams,
) -> Result<Vec<u8>, FatError> {
    let geo = Geometry::new(params.size)?;
    ensure!(
        label.len() <= 11
            && label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' '),
        FatError::BadLabel(label.to_owned())
    );
    let mut label11 = [b' '; 11];
    for (s, b) in label11.iter_mut().zip(label.bytes()) {
        *s = b;
    }

    let mut root: BTreeMap<[u8; 11], Node> = BTreeMap::new();
    for (path, data) in files {
        let comps: Vec<&str> = path.split('/').collect();
        let (leaf, dirs) = comps.split_last().ok_or(FatError::EmptyPath)?;
        let mut cur = &mut root;
        for d in dirs {
            let entry = cur
                .entry(short_name(d)?)
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            cur = match entry {
                Node::Dir(m) => m,
                Node::File(_) => {
                    return Err(FatError::FileInPath {
                        component: (*d).to_owned(),
                        path: (*path).to_owned(),
                    })
                }
            };
        }
        let name = short_name(leaf)?;
        ensure!(
            !cur.contains_key(&name),
            FatError::Duplicate((*path).to_owned())
        );
        cur.insert(name, Node::File(data.to_vec()));
    }

    let size = usize::try_from(params.size).map_err(|_| FatError::TooLarge(params.size))?;
    let (date, time) = dos_datetime(params.mtime);
    let mut w = Writer {
        img: vec![0u8; size],
        geo,
        next_cluster: ROOT_CLUSTER,
        date,
        time,
    };
    w.set_fat(0, 0x0FFF_FFF8)?;
    w.set_fat(1, END_OF_CHAIN)?;
    let root_first = w.alloc(clusters_for(dir_bytes(root.len() + 1)))?;
    w.write_dir(root_first, 0, true, Some(&label11), &root)?;

    let boot = boot_sector(&geo, params, &label11);
    let free = geo.clusters + 2 - w.next_cluster;
    let info = fsinfo_sector(free, w.next_cluster);
    for base in [0usize, 6] {
        w.put(base * SECTOR, &boot)?;
        w.put((base + 1) * SECTOR, &info)?;
    }
    Ok(w.img)
}

fn boot_sector(geo: &Geometry, params: &FatParams, label: &[u8; 11]) -> [u8; SECTOR] {
    let mut b = [0u8; SECTOR];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &[0xEB, 0x58, 0x90]);
    put(3, b"MSWIN4.1");
    put(11, &512u16.to_le_bytes());
    put(13, &[1]); // sectors per cluster
    put(14, &RESERVED_SECTORS.to_le_bytes()[..2]);
    put(16, &NUM_FATS.to_le_bytes()[..1]);
    put(21, &[0xF8]); // media: fixed disk
    put(24, &32u16.to_le_bytes()); // sectors per track (CHS, unused)
    put(26, &64u16.to_le_bytes()); // heads (CHS, unused)
    put(28, &params.hidden_sectors.to_le_bytes());
    put(32, &geo.total_sectors.to_le_bytes());
    put(36, &geo.fat_sectors.to_le_bytes());
    put(44, &ROOT_CLUSTER.to_le_bytes());
    put(48, &1u16.to_le_bytes()); // FSInfo sector
    put(50, &6u16.to_le_bytes()); // backup boot sector
    put(64, &[0x80, 0, 0x29]); // drive number, reserved, extended boot signature
    put(67, &params.volume_id.to_le_bytes());
    put(71, label);
    put(82, b"FAT32   ");
    put(510, &[0x55, 0xAA]);
    b
}

fn fsinfo_sector(free: u32, next_free: u32) -> [u8; SECTOR] {
    let mut b = [0u8; SECTOR];
    b[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    b[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    b[488..492].copy_from_slice(&free.to_le_bytes());
    b[492..496].copy_from_slice(&next_free.to_le_bytes());
    b[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    b
}

// ---- reader ----------------------------------------------------------------

fn le16(b: &[u8], at: usize) -> Result<u16, FatError> {
    let s = b
        .get(at..)
        .and_then(|s| s.first_chunk::<2>())
        .ok_or(FatError::Truncated)?;
    Ok(u16::from_le_bytes(*s))
}

fn le32(b: &[u8], at: usize) -> Result<u32, FatError> {
    let s = b
        .get(at..)
        .and_then(|s| s.first_chunk::<4>())
        .ok_or(FatError::Truncated)?;
    Ok(u32::from_le_bytes(*s))
}

/// A directory entry: 8.3 name, attributes, first cluster, size.
pub type DirEntry = ([u8; 11], u8, u32, u32);

/// A FAT32 filesystem image opened for reading.
#[derive(Debug)]
pub struct FatReader<'a> {
    img: &'a [u8],
    cluster_bytes: usize,
    fat_offset: usize,
    data_offset: usize,
    clusters: u32,
    root: u32,
}

impl<'a> FatReader<'a> {
    /// Parses the boot sector.
    pub fn new(img: &'a [u8]) -> Result<FatReader<'a>, FatError> {
        ensure!(le16(img, 510)? == 0xAA55, FatError::NoBootSignature);
        let bps = usize::from(le16(img, 11)?);
        ensure!(bps == SECTOR, FatError::SectorSize(bps));
        let spc = usize::from(*img.get(13).ok_or(FatError::Truncated)?);
        ensure!(spc.is_power_of_two(), FatError::SectorsPerCluster(spc));
        let reserved = usize::from(le16(img, 14)?);
        let fats = usize::from(*img.get(16).ok_or(FatError::Truncated)?);
        let total = le32(img, 32)? as usize;
        let fat_size = le32(img, 36)? as usize;
        ensure!(fat_size > 0 && fats > 0, FatError::NotFat32);
        let data_sectors = total
            .checked_sub(reserved + fats * fat_size)
            .ok_or(FatError::BadGeometry)?;
        let clusters = u32::try_from(data_sectors / spc).map_err(|_| FatError::BadGeometry)?;
        ensure!(total * SECTOR <= img.len(), FatError::ShortImage);
        Ok(FatReader {
            img,
            cluster_bytes: spc * SECTOR,
            fat_offset: reserved * SECTOR,
            data_offset: (reserved + fats * fat_size) * SECTOR,
            clusters,
            root: le32(img, 44)?,
        })
    }

    /// The cluster chain starting at `first`, bounded by the cluster count.
    fn chain(&self, first: u32) -> Result<Vec<u32>, FatError> {
        let mut out = Vec::new();
        let mut c = first;
        while (2..self.clusters + 2).contains(&c) {
            ensure!(out.len() < self.clusters as usize, FatError::ChainLoops);
            out.push(c);
            c = le32(self.img, self.fat_offset + c as usize * 4)? & 0x0FFF_FFFF;
        }
        ensure!(c >= 0x0FFF_FFF8, FatError::BrokenChain(c));
        Ok(out)
    }

    fn read_chain(&self, first: u32, len: Option<usize>) -> Result<Vec<u8>, FatError> {
        let mut out = Vec::new();
        if first == 0 {
            return Ok(out);
        }
        for c in self.chain(first)? {
            let at = self.data_offset + (c as usize - 2) * self.cluster_bytes;
            let s = self
                .img
                .get(at..at + self.cluster_bytes)
                .ok_or(FatError::ClusterOutside)?;
            out.extend_from_slice(s);
        }
        if let Some(n) = len {
            ensure!(n <= out.len(), FatError::FileLongerThanClusters);
            out.truncate(n);
        }
        Ok(out)
    }

    /// Directory entries (name, attr, first cluster, size), skipping deleted,
    /// `.`/`..` and long-name entries.
    pub fn list(&self, dir_cluster: u32) -> Result<Vec<DirEntry>, FatError> {
        let raw = self.read_chain(dir_cluster, None)?;
        let mut out = Vec::new();
        for e in raw.chunks_exact(32) {
            let Some(e) = e.first_chunk::<32>() else {
                break;
            };
            match e[0] {
                0 => break,
                0xE5 | b'.' => continue,
                _ => {}
            }
            let attr = e[11];
            if attr & 0x0F == 0x0F {
                continue;
            }
            let mut name = [0u8; 11];
            name.copy_from_slice(&e[..11]);
            let cluster = (u32::from(le16(e, 20)?) << 16) | u32::from(le16(e, 26)?);
            out.push((name, attr, cluster, le32(e, 28)?));
        }
        Ok(out)
    }

    /// Reads the file at `path` (8.3 components separated by `/`).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, FatError> {
        let comps: Vec<&str> = path.split('/').collect();
        let mut dir = self.root;
        for (i, comp) in comps.iter().enumerate() {
            let want = short_name(comp)?;
            let (_, attr, cluster, size) = self
                .list(dir)?
                .into_iter()
                .find(|(n, a, _, _)| *n == want && a & ATTR_VOLUME_ID == 0)
                .ok_or_else(|| FatError::NotFound(path.to_owned()))?;
            if i + 1 == comps.len() {
                ensure!(
                    attr & ATTR_DIRECTORY == 0,
                    FatError::IsADirectory(path.to_owned())
                );
                return self.read_chain(cluster, Some(size as usize));
            }
            ensure!(
                attr & ATTR_DIRECTORY != 0,
                FatError::NotADirectory((*comp).to_owned())
            );
            dir = cluster;
        }
        Err(FatError::EmptyPath)
    }

    /// Every file path in the filesystem, depth first.
    pub fn walk(&self) -> Result<Vec<String>, FatError> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root, String::new(), 0usize)];
        let mut seen = BTreeSet::new();
        while let Some((dir, prefix, depth)) = stack.pop() {
            ensure!(depth < 16, FatError::TooDeep);
            // Cluster 0 is an empty directory: nothing to read, nothing to loop.
            ensure!(dir == 0 || seen.insert(dir), FatError::DirectoryTwice(dir));
            for (name, attr, cluster, _) in self.list(dir)? {
                if attr & ATTR_VOLUME_ID != 0 {
                    continue;
                }
                let base = String::from_utf8_lossy(&name[..8]).trim_end().to_string();
                let ext = String::from_utf8_lossy(&name[8..]).trim_end().to_string();
                let n = if ext.is_empty() {
                    base
                } else {
                    format!("{base}.{ext}")
                };
                let full = if prefix.is_empty() {
                    n
                } else {
                    format!("{prefix}/{n}")
                };
                if attr & ATTR_DIRECTORY != 0 {
                    stack.push((cluster, full, depth + 1));
                } else {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> FatParams {
        FatParams {
            size: ESP_SIZE,
            hidden_sectors: 2048,
            volume_id: 0x1234_5678,
            mtime: 1_700_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let files: [(&str, &[u8]); 3] = [
            ("EFI/BOOT/BOOTX64.EFI", &big),
            ("EFI/BOOT/EMPTY", b""),
            ("README.TXT", b"hello"),
        ];
        let img = build(&files, "APPLIANCE", &params()).unwrap();
        let r = FatReader::new(&img).unwrap();
        for (p, d) in files {
            assert_eq!(r.read_file(p).unwrap(), d, "{p}");
        }
        assert_eq!(
            r.walk().unwrap(),
            ["EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/EMPTY", "README.TXT"]
        );
    }

    #[test]
    fn names_must_be_8_3_upper_case() {
        for bad in ["boot", "TOOLONGNAME", "A.EFIX", "", ".EFI", "A B"] {
            assert!(short_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(&short_name("BOOTX64.EFI").unwrap(), b"BOOTX64 EFI");
    }

    #[test]
    fn dos_dates() {
        let cases = [
            (0u64, (0x21u16, 0u16)),
            // 2023-11-14 22:13:20
            (
                1_700_000_000,
                ((43 << 9) | (11 << 5) | 14, (22 << 11) | (13 << 5) | 10),
            ),
        ];
        for (unix, want) in cases {
            assert_eq!(dos_datetime(unix), want, "{unix}");
        }
    }

    #[test]
    fn reader_survives_garbage() {
        let img = build(&[("A", b"x")], "", &params()).unwrap();
        for cut in [0, 100, 511, 512, 4096] {
            let _ = FatReader::new(&img[..cut]).and_then(|r| r.read_file("A"));
        }
    }
}
