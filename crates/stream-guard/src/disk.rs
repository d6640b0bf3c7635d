//! Reading the AOF's size: the one piece of file-system I/O the guard does
//! besides `statvfs` (which needs `libc`, and lives in the module glue). Kept
//! out of the pure cores and out of the `module` feature so it is tested on
//! real directories.
#![forbid(unsafe_code)]

use std::path::Path;

/// The directory under the server's `dir` that holds the AOF (the server's
/// default `appenddirname`, which the rendered config does not change).
pub const AOF_DIR: &str = "appendonlydir";

/// Most entries read from the AOF directory. The server keeps a manifest, one
/// base file and a few increment files there (a rewrite deletes the old
/// ones), so a directory with more is not the server's doing; stopping there
/// bounds the work of one timer tick, and the caller counts the disk as
/// unmeasurable (fail closed).
pub const MAX_AOF_ENTRIES: usize = 1024;

/// Total size in bytes of the regular files in `data_dir/appendonlydir`; 0
/// when the directory does not exist (AOF off, or not written yet).
pub fn aof_bytes(data_dir: &Path) -> Result<u64, String> {
    let dir = data_dir.join(AOF_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut total: u64 = 0;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_AOF_ENTRIES {
            return Err(format!(
                "more than {MAX_AOF_ENTRIES} entries in {}",
                dir.display()
            ));
        }
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        match entry.metadata() {
            Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
            Ok(_) => {}
            // Deleted between the listing and the stat: a rewrite finishing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot stat {}: {e}", entry.path().display())),
        }
    }
    Ok(total)
}
