//! ELF symbol versions: what a binary needs from each library
//! (`.gnu.version_r`, e.g. `libc.so.6` `GLIBC_2.34`) against what the
//! libraries define (`.gnu.version_d`), both read by
//! [`image_formats::elf`].
//!
//! The image's binaries are compiled on the build host but run with the
//! pinned C library and GCC runtime; [`missing_versions`] names every need
//! the pinned libraries do not define, so a host newer than the pinned
//! release fails the build instead of the boot.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use image_formats::elf::{version_defs, version_needs};

use crate::error::{Context, Result};

/// Each need of `binaries` (name, bytes) that `libraries` (file name,
/// bytes) do not define, as `binary: library version`. A need of a library
/// that is not among `libraries` is reported too.
pub fn missing_versions(
    binaries: &[(&str, &[u8])],
    libraries: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>> {
    let mut defs: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, bytes) in libraries {
        let versions =
            version_defs(bytes).with_context(|| format!("versions defined by {name}"))?;
        defs.insert(name, versions.into_iter().collect());
    }
    let mut missing = Vec::new();
    for (who, bytes) in binaries {
        for need in version_needs(bytes).with_context(|| format!("versions {who} needs"))? {
            if !defs
                .get(need.library.as_str())
                .is_some_and(|d| d.contains(&need.version))
            {
                missing.push(format!("{who}: {} {}", need.library, need.version));
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// The build host's own files stand in for the pinned packages: its
    /// `true` and its C library agree; held to another library under the C
    /// library's name, every glibc version `true` needs is named.
    #[test]
    fn a_version_the_library_lacks_is_named() {
        let tool = host("/usr/bin/true");
        let libc = host("/lib/x86_64-linux-gnu/libc.so.6");
        let defs = version_defs(&libc).unwrap();
        assert!(defs.iter().any(|d| d == "GLIBC_2.2.5"), "{defs:?}");
        assert!(
            !defs.iter().any(|d| d == "libc.so.6"),
            "the base entry is left out"
        );
        let agree: BTreeMap<String, Vec<u8>> = [("libc.so.6".to_owned(), libc)].into();
        assert_eq!(
            missing_versions(&[("true", &tool)], &agree).unwrap(),
            Vec::<String>::new()
        );
        let gcc = host("/lib/x86_64-linux-gnu/libgcc_s.so.1");
        let wrong: BTreeMap<String, Vec<u8>> = [("libc.so.6".to_owned(), gcc)].into();
        let missing = missing_versions(&[("true", &tool)], &wrong).unwrap();
        assert!(
            missing.contains(&"true: libc.so.6 GLIBC_2.2.5".to_owned()),
            "{missing:?}"
        );
        let none = BTreeMap::new();
        assert!(!missing_versions(&[("true", &tool)], &none)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let good = host("/usr/bin/true");
        for cut in [0, 4, 40, 100, 200, good.len() / 2] {
            let bytes = good.get(..cut).unwrap();
            let _ = missing_versions(&[("cut", bytes)], &BTreeMap::new());
        }
        assert!(missing_versions(&[("x", b"not an elf")], &BTreeMap::new()).is_err());
    }
}
