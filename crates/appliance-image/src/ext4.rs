//! `data.raw`: an empty ext4 filesystem labelled `appliance-data`, made with
//! the host's `mkfs.ext4` (e2fsprogs).
//!
//! Byte-identical across runs (checked by a test): the UUID and the directory
//! hash seed are derived from the label and SOURCE_DATE_EPOCH, every
//! timestamp comes from `E2FSPROGS_FAKE_TIME`, and `MKE2FS_CONFIG` points at
//! a path that does not exist so the host's `/etc/mke2fs.conf` cannot change
//! the features (mke2fs then uses its built-in profile). Different e2fsprogs
//! versions may still differ; the manifest records the result's hash.
#![forbid(unsafe_code)]

use crate::error::{ensure, Context, Result};
use std::fs::File;
use std::path::Path;
use std::process::Command;

use image_formats::gpt::{derived_guid, guid_string};

/// The label init looks for.
pub use image_layout::DATA_LABEL as LABEL;

/// Writes an empty ext4 filesystem of `size` bytes (sparse) to `out`.
pub fn write(out: &Path, size: u64, source_date_epoch: u64) -> Result<()> {
    ensure!(
        size >= 16 << 20,
        "ext4: {size} bytes is too small for a data disk"
    );
    let seed = source_date_epoch.to_le_bytes();
    let uuid = guid_string(&derived_guid("appliance-data uuid", &seed)).to_lowercase();
    let hash_seed = guid_string(&derived_guid("appliance-data hash", &seed)).to_lowercase();
    {
        let f = File::create(out).with_context(|| format!("create {}", out.display()))?;
        f.set_len(size)?;
    }
    let no_config = out.with_extension("no-mke2fs.conf");
    let result = Command::new("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", source_date_epoch.to_string())
        .env("MKE2FS_CONFIG", &no_config)
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "0",
        ])
        .args(["-L", LABEL, "-U", &uuid])
        .arg("-E")
        .arg(format!("hash_seed={hash_seed},root_owner=0:0,nodiscard"))
        .arg(out)
        .output();
    let output = result.map_err(|e| {
        crate::Error::spawn(
            crate::Tool {
                file: "mkfs.ext4",
                package: "e2fsprogs",
            },
            e,
        )
    })?;
    ensure!(
        output.status.success(),
        "ext4: mkfs.ext4 failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
