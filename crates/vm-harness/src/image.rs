//! The files of a built image directory, as a boot needs them. Only the
//! names the assembly writes are known here; how they are made is the
//! builder's business, and nothing here depends on it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::host::{copy_sparse, temp_dir, TempDir};
use crate::{Error, Result};

/// The kernel (`-kernel` of a direct boot).
pub const KERNEL: &str = "vmlinuz";
/// The initramfs (`-initrd` of a direct boot).
pub const INITRAMFS: &str = "initramfs.cpio.zst";
/// The boot disk (GPT + ESP with the UKI) of a UEFI boot.
pub const BOOT_DISK: &str = "disk.raw";
/// The empty data disk every boot starts from (a copy of it).
pub const DATA_DISK: &str = "data.raw";
/// The kernel command line the UKI carries, for a direct boot.
pub const CMDLINE: &str = "appliance.cmdline";

/// A built image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    dir: PathBuf,
}

impl ImageFiles {
    /// The image in `dir` (nothing is checked yet: see [`ImageFiles::missing`]).
    pub fn new(dir: impl Into<PathBuf>) -> ImageFiles {
        ImageFiles { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The kernel command line the UKI carries (`appliance.cmdline`, which
    /// the assembly writes beside it).
    pub fn cmdline(&self) -> Result<String> {
        let path = self.file(CMDLINE);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NoCmdline(self.dir.clone()))
            }
            Err(e) => Err(Error::file("read", path)(e)),
        }
    }

    /// The same image with `extra` words added to its kernel command line,
    /// in a temporary directory of links (kept while the [`TempDir`] lives).
    /// Only a direct boot reads it: a UEFI boot's command line is inside the
    /// UKI. A test image reads its `appliance.test_*` hooks from there.
    pub fn with_extra_cmdline(&self, extra: &str) -> Result<(TempDir, ImageFiles)> {
        let dir = temp_dir("image-cmdline")?;
        // Links to absolute paths: a relative --image would dangle.
        let source =
            fs::canonicalize(&self.dir).map_err(Error::file("no image directory", &self.dir))?;
        for entry in fs::read_dir(&source).map_err(Error::file("list", &source))? {
            let entry = entry.map_err(Error::file("list", &source))?;
            let name = entry.file_name();
            if name == CMDLINE {
                continue;
            }
            let link = dir.path().join(&name);
            std::os::unix::fs::symlink(entry.path(), &link)
                .map_err(Error::file("create link", link))?;
        }
        let cmdline = dir.path().join(CMDLINE);
        fs::write(&cmdline, format!("{} {}", self.cmdline()?, extra.trim()))
            .map_err(Error::file("write", cmdline))?;
        let image = ImageFiles::new(dir.path());
        Ok((dir, image))
    }

    /// A sparse copy of the image's empty data disk in a new private
    /// directory: boots write to copies, never to the image (so `verify`
    /// keeps matching its manifest).
    pub fn fresh_data(&self, prefix: &str) -> Result<DataCopy> {
        let copy = DataCopy {
            dir: temp_dir(prefix)?,
        };
        copy_sparse(&self.file(DATA_DISK), &copy.disk())?;
        Ok(copy)
    }

    /// The files missing for a boot (`direct`: kernel, initramfs and
    /// command line; else the boot disk) plus the data disk.
    pub fn missing(&self, direct: bool) -> Vec<&'static str> {
        let needed: &[&'static str] = if direct {
            &[KERNEL, INITRAMFS, CMDLINE, DATA_DISK]
        } else {
            &[BOOT_DISK, DATA_DISK]
        };
        needed
            .iter()
            .copied()
            .filter(|f| !self.file(f).is_file())
            .collect()
    }
}

/// A private copy of an image's data disk (`data.raw` in a 0700
/// directory, with room for the boot's other files), removed on drop.
#[derive(Debug)]
pub struct DataCopy {
    dir: TempDir,
}

impl DataCopy {
    /// The disk.
    pub fn disk(&self) -> PathBuf {
        self.dir.path().join(DATA_DISK)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(files: &[&str]) -> (TempDir, ImageFiles) {
        let tmp = temp_dir("image-test").unwrap();
        for f in files {
            fs::write(tmp.path().join(f), b"x").unwrap();
        }
        let image = ImageFiles::new(tmp.path());
        (tmp, image)
    }

    #[test]
    fn missing_files_per_boot_path() {
        let all = [KERNEL, INITRAMFS, CMDLINE, BOOT_DISK, DATA_DISK];
        // (files present, missing for UEFI, missing for direct)
        type Case<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (all.to_vec(), vec![], vec![]),
            (
                vec![],
                vec![BOOT_DISK, DATA_DISK],
                vec![KERNEL, INITRAMFS, CMDLINE, DATA_DISK],
            ),
            (
                vec![BOOT_DISK, DATA_DISK],
                vec![],
                vec![KERNEL, INITRAMFS, CMDLINE],
            ),
            (
                all.iter().copied().filter(|f| *f != KERNEL).collect(),
                vec![],
                vec![KERNEL],
            ),
        ];
        for (present, uefi, direct) in cases {
            let (_tmp, image) = image_with(&present);
            assert_eq!(image.missing(false), uefi, "{present:?}");
            assert_eq!(image.missing(true), direct, "{present:?}");
        }
    }

    #[test]
    fn fresh_data_is_a_private_copy() {
        let (tmp, image) = image_with(&[]);
        fs::write(tmp.path().join(DATA_DISK), b"empty ext4").unwrap();
        let copy = image.fresh_data("data-test").unwrap();
        assert_eq!(copy.disk(), copy.dir().join(DATA_DISK));
        fs::write(copy.disk(), b"written").unwrap();
        assert_eq!(fs::read(image.file(DATA_DISK)).unwrap(), b"empty ext4");
        let dir = copy.dir().to_path_buf();
        drop(copy);
        assert!(!dir.exists());
    }

    #[test]
    fn extra_cmdline_links_everything_else() {
        let (tmp, image) = image_with(&[KERNEL, DATA_DISK]);
        assert!(matches!(image.cmdline(), Err(Error::NoCmdline(_))));
        fs::write(tmp.path().join(CMDLINE), "console=ttyS0 panic=-1\n").unwrap();
        assert_eq!(image.cmdline().unwrap(), "console=ttyS0 panic=-1");
        let (links, with) = image.with_extra_cmdline(" appliance.test_x=1 ").unwrap();
        assert_eq!(with.dir(), links.path());
        assert_eq!(
            with.cmdline().unwrap(),
            "console=ttyS0 panic=-1 appliance.test_x=1"
        );
        assert_eq!(image.cmdline().unwrap(), "console=ttyS0 panic=-1");
        let kernel = fs::symlink_metadata(with.file(KERNEL)).unwrap();
        assert!(kernel.file_type().is_symlink());
        assert!(fs::read_link(with.file(KERNEL)).unwrap().is_absolute());
        assert!(with.file(DATA_DISK).is_file());
        let dir = links.path().to_path_buf();
        drop(links);
        assert!(!dir.exists());
        assert!(
            image.file(KERNEL).is_file(),
            "the image itself is untouched"
        );
    }
}
