//! `manifest.json`: what an image is made of, hashed. Every output file, every
//! initramfs entry, the input pins and the profile.
//!
//! Deterministic: fields in declaration order, lists sorted by name, no
//! timestamps beyond SOURCE_DATE_EPOCH, which is itself an input.
#![forbid(unsafe_code)]

use crate::error::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Format version of the manifest.
pub const SCHEMA: u32 = 1;

/// Which image this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// What ships.
    Production,
    /// What `cargo xtask e2e` boots; may carry test-only features.
    Test,
}

impl Profile {
    /// `production` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Production => "production",
            Profile::Test => "test",
        }
    }
}

/// A pinned input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Package or artifact name.
    pub name: String,
    /// Pinned version.
    pub version: String,
    /// SHA-256 of the fetched artifact, lowercase hex.
    pub sha256: String,
}

/// An output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name in the output directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// An initramfs entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitramfsEntry {
    /// Absolute path inside the image.
    pub path: String,
    /// `st_mode` in octal, e.g. `100755`.
    pub mode: String,
    /// Body size in bytes (0 for directories and device nodes).
    pub size: u64,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The build profile.
    pub profile: Profile,
    /// SOURCE_DATE_EPOCH used for every timestamp.
    pub source_date_epoch: u64,
    /// The kernel command line baked into the UKI.
    pub cmdline: String,
    /// Output files, sorted by name (the manifest itself excluded).
    pub files: Vec<FileEntry>,
    /// Initramfs entries, sorted by path.
    pub initramfs: Vec<InitramfsEntry>,
    /// Input pins, sorted by name.
    pub pins: Vec<Pin>,
}

impl Manifest {
    /// Sorts every list so equal content always serialises equally.
    pub fn normalise(&mut self) {
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        self.initramfs.sort_by(|a, b| a.path.cmp(&b.path));
        self.pins.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Result<String> {
        let mut m = self.clone();
        m.normalise();
        let mut s = serde_json::to_string_pretty(&m)?;
        s.push('\n');
        Ok(s)
    }

    /// Parses `manifest.json`.
    pub fn from_json(text: &[u8]) -> Result<Manifest> {
        serde_json::from_slice(text).context("manifest.json is not a valid manifest")
    }

    /// The entry for an output file.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and SHA-256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((size, hex(&h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_order() {
        let mut m = Manifest {
            schema: SCHEMA,
            profile: Profile::Test,
            source_date_epoch: 1,
            cmdline: "console=ttyS0".into(),
            files: vec![
                FileEntry {
                    name: "b".into(),
                    size: 1,
                    sha256: sha256_hex(b"b"),
                },
                FileEntry {
                    name: "a".into(),
                    size: 1,
                    sha256: sha256_hex(b"a"),
                },
            ],
            initramfs: vec![],
            pins: vec![],
        };
        let json = m.to_json().unwrap();
        assert!(json.find("\"a\"").unwrap() < json.find("\"b\"").unwrap());
        assert!(json.contains("\"profile\": \"test\""));
        m.normalise();
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
    }
}
