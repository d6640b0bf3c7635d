//! Small host helpers every boot needs around it: private temporary
//! directories, free loopback ports, sparse disk copies.

use std::fs::Permissions;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::{Error, Result};

/// A private temporary directory, removed with everything in it on drop
/// (`tempfile`'s).
pub use tempfile::TempDir;

/// Creates `$TMPDIR/xtask-<prefix>-<random>`, mode 0700 (the stand-in's
/// state file with the passwords, disk copies and console logs go there).
pub fn temp_dir(prefix: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("xtask-{prefix}-"))
        .permissions(Permissions::from_mode(0o700))
        .tempdir()
        .map_err(Error::file(
            "create a temporary directory in",
            std::env::temp_dir(),
        ))
}

/// A loopback port nobody listens on right now (the kernel picks it; QEMU
/// binds it a moment later, so a race is possible but harmless: QEMU then
/// fails to start and says so).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind 127.0.0.1:0"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("bind 127.0.0.1:0"))?
        .port())
}

/// Copies a disk image keeping its holes (`data.raw` is mostly empty).
pub fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))
}

/// Runs a host program to its end; a failure carries its command line and
/// what it said on stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: cmd.get_program().into(),
        source,
    })?;
    if !out.status.success() {
        let words: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        return Err(Error::Failed {
            command: words.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn temp_dir_is_private_and_removed() {
        let d = temp_dir("qemu-test").unwrap();
        let p = d.path().to_path_buf();
        assert!(p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("xtask-qemu-test-"));
        fs::write(p.join("f"), b"x").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn free_ports_are_loopback_bindable() {
        let p = free_port().unwrap();
        assert!(p > 0);
        TcpListener::bind(("127.0.0.1", p)).unwrap();
    }

    #[test]
    fn sparse_copies_keep_content_and_holes() {
        let d = temp_dir("sparse-test").unwrap();
        let from = d.path().join("from.raw");
        let f = fs::File::create(&from).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        fs::OpenOptions::new()
            .write(true)
            .open(&from)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"label"))
            .unwrap();
        let to = d.path().join("to.raw");
        copy_sparse(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), fs::read(&from).unwrap());
        use std::os::unix::fs::MetadataExt;
        // 512-byte blocks: far less than the 64 MiB apparent size.
        assert!(fs::metadata(&to).unwrap().blocks() < 1024);
        let missing = copy_sparse(&d.path().join("nothing"), &to).unwrap_err();
        match &missing {
            Error::Failed {
                command, stderr, ..
            } => {
                assert!(command.starts_with("cp --sparse=always "), "{command}");
                assert!(command.ends_with("/to.raw"), "{command}");
                assert!(stderr.contains("nothing"), "{stderr}");
            }
            other => panic!("{other}"),
        }
    }
}
