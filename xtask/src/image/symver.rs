//! ELF symbol versions: what a binary needs from each library
//! (`DT_VERNEED`, e.g. `libc.so.6` `GLIBC_2.34`) and what a library defines
//! (`DT_VERDEF`).
//!
//! The image's binaries are compiled on the build host but run with the
//! pinned C library and GCC runtime; [`missing_versions`] names every need
//! the pinned libraries do not define, so a host newer than the pinned
//! release fails the build instead of the boot. Pure: parsers take the
//! file's bytes, check every offset, never panic.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{ensure, Context, Result};

const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
/// `VER_FLG_BASE`: the definition that names the file itself.
const VER_FLG_BASE: u16 = 1;

fn rd<const N: usize>(b: &[u8], at: u64) -> Result<[u8; N]> {
    let at = usize::try_from(at)?;
    b.get(at..at.checked_add(N).context("ELF: offset overflow")?)
        .and_then(|s| s.try_into().ok())
        .context("ELF: truncated")
}

fn u16_at(b: &[u8], at: u64) -> Result<u16> {
    Ok(u16::from_le_bytes(rd(b, at)?))
}

fn u32_at(b: &[u8], at: u64) -> Result<u32> {
    Ok(u32::from_le_bytes(rd(b, at)?))
}

fn u64_at(b: &[u8], at: u64) -> Result<u64> {
    Ok(u64::from_le_bytes(rd(b, at)?))
}

fn cstr(b: &[u8], at: u64) -> Result<String> {
    let tail = b
        .get(usize::try_from(at)?..)
        .context("ELF: string outside the file")?;
    let end = tail
        .iter()
        .position(|&c| c == 0)
        .context("ELF: unterminated string")?;
    Ok(String::from_utf8_lossy(tail.get(..end).unwrap_or_default()).into_owned())
}

/// The dynamic section's entries and a virtual-address-to-offset map.
struct Dynamic {
    entries: Vec<(u64, u64)>,
    loads: Vec<(u64, u64, u64)>,
}

impl Dynamic {
    fn parse(b: &[u8]) -> Result<Option<Dynamic>> {
        ensure!(b.starts_with(b"\x7fELF"), "ELF: no magic");
        ensure!(
            b.get(4) == Some(&2) && b.get(5) == Some(&1),
            "ELF: not 64-bit little-endian"
        );
        let phoff = u64_at(b, 0x20)?;
        let phentsize = u64::from(u16_at(b, 0x36)?);
        let phnum = u64::from(u16_at(b, 0x38)?);
        let mut loads = Vec::new();
        let mut dynamic = None;
        for i in 0..phnum {
            let ph = phoff
                .checked_add(i.checked_mul(phentsize).context("ELF: overflow")?)
                .context("ELF: overflow")?;
            let p_type = u32_at(b, ph)?;
            let offset = u64_at(b, ph + 8)?;
            let vaddr = u64_at(b, ph + 16)?;
            let filesz = u64_at(b, ph + 32)?;
            match p_type {
                PT_LOAD => loads.push((vaddr, offset, filesz)),
                PT_DYNAMIC => dynamic = Some((offset, filesz)),
                _ => {}
            }
        }
        let Some((off, size)) = dynamic else {
            return Ok(None);
        };
        let mut entries = Vec::new();
        for i in 0..size / 16 {
            let at = off.checked_add(i * 16).context("ELF: overflow")?;
            let tag = u64_at(b, at)?;
            if tag == DT_NULL {
                break;
            }
            entries.push((tag, u64_at(b, at + 8)?));
        }
        Ok(Some(Dynamic { entries, loads }))
    }

    fn get(&self, tag: u64) -> Option<u64> {
        self.entries
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| *v)
    }

    /// The file offset of virtual address `vaddr`.
    fn offset(&self, vaddr: u64) -> Result<u64> {
        let (v, o, _) = self
            .loads
            .iter()
            .find(|(v, _, sz)| *v <= vaddr && vaddr < v.saturating_add(*sz))
            .context("ELF: address outside every PT_LOAD")?;
        Ok(vaddr - v + o)
    }
}

/// Every `(library file, version)` the binary needs, e.g.
/// `("libc.so.6", "GLIBC_2.34")`, in file order.
pub fn version_needs(b: &[u8]) -> Result<Vec<(String, String)>> {
    let Some(d) = Dynamic::parse(b)? else {
        return Ok(Vec::new());
    };
    let (Some(vaddr), Some(count)) = (d.get(DT_VERNEED), d.get(DT_VERNEEDNUM)) else {
        return Ok(Vec::new());
    };
    let strtab = d.offset(d.get(DT_STRTAB).context("ELF: no DT_STRTAB")?)?;
    let mut out = Vec::new();
    let mut at = d.offset(vaddr)?;
    for _ in 0..count {
        let aux_count = u16_at(b, at + 2)?;
        let file = cstr(b, strtab + u64::from(u32_at(b, at + 4)?))?;
        let mut aux = at + u64::from(u32_at(b, at + 8)?);
        for _ in 0..aux_count {
            let name = cstr(b, strtab + u64::from(u32_at(b, aux + 8)?))?;
            out.push((file.clone(), name));
            let next = u32_at(b, aux + 12)?;
            if next == 0 {
                break;
            }
            aux = aux.checked_add(u64::from(next)).context("ELF: overflow")?;
        }
        let next = u32_at(b, at + 12)?;
        if next == 0 {
            break;
        }
        at = at.checked_add(u64::from(next)).context("ELF: overflow")?;
    }
    Ok(out)
}

/// Every version the library defines (not its base entry, which names the
/// file), e.g. `GLIBC_2.2.5`.
pub fn version_defs(b: &[u8]) -> Result<BTreeSet<String>> {
    let Some(d) = Dynamic::parse(b)? else {
        return Ok(BTreeSet::new());
    };
    let (Some(vaddr), Some(count)) = (d.get(DT_VERDEF), d.get(DT_VERDEFNUM)) else {
        return Ok(BTreeSet::new());
    };
    let strtab = d.offset(d.get(DT_STRTAB).context("ELF: no DT_STRTAB")?)?;
    let mut out = BTreeSet::new();
    let mut at = d.offset(vaddr)?;
    for _ in 0..count {
        let flags = u16_at(b, at + 2)?;
        let aux = at + u64::from(u32_at(b, at + 12)?);
        if flags & VER_FLG_BASE == 0 {
            out.insert(cstr(b, strtab + u64::from(u32_at(b, aux)?))?);
        }
        let next = u32_at(b, at + 16)?;
        if next == 0 {
            break;
        }
        at = at.checked_add(u64::from(next)).context("ELF: overflow")?;
    }
    Ok(out)
}

/// Each need of `binaries` (name, bytes) that `libraries` (file name,
/// bytes) do not define, as `binary: library version`. A need of a library
/// that is not among `libraries` is reported too.
pub fn missing_versions(
    binaries: &[(&str, &[u8])],
    libraries: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>> {
    let mut defs: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, bytes) in libraries {
        defs.insert(
            name,
            version_defs(bytes).with_context(|| format!("versions defined by {name}"))?,
        );
    }
    let mut missing = Vec::new();
    for (who, bytes) in binaries {
        for (file, version) in
            version_needs(bytes).with_context(|| format!("versions {who} needs"))?
        {
            if !defs
                .get(file.as_str())
                .is_some_and(|d| d.contains(&version))
            {
                missing.push(format!("{who}: {file} {version}"));
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
// The fixtures are a few hundred bytes: their offsets fit every width.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// A dynamic ELF64 with one PT_LOAD (file offset = address) holding a
    /// string table, the version tables and the dynamic section.
    fn elf(needs: &[(&str, &[&str])], defs: &[(&str, u16)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut name = |s: &str| -> u32 {
            let at = strtab.len() as u32;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            at
        };
        let mut verneed = Vec::new();
        for (i, (file, versions)) in needs.iter().enumerate() {
            let last = i + 1 == needs.len();
            let size = 16 + 16 * versions.len() as u32;
            verneed.extend_from_slice(&1u16.to_le_bytes());
            verneed.extend_from_slice(&(versions.len() as u16).to_le_bytes());
            verneed.extend_from_slice(&name(file).to_le_bytes());
            verneed.extend_from_slice(&16u32.to_le_bytes());
            verneed.extend_from_slice(&(if last { 0 } else { size }).to_le_bytes());
            for (j, v) in versions.iter().enumerate() {
                let last = j + 1 == versions.len();
                verneed.extend_from_slice(&[0u8; 8]);
                verneed.extend_from_slice(&name(v).to_le_bytes());
                verneed.extend_from_slice(&(if last { 0u32 } else { 16 }).to_le_bytes());
            }
        }
        let mut verdef = Vec::new();
        for (i, (v, flags)) in defs.iter().enumerate() {
            let last = i + 1 == defs.len();
            verdef.extend_from_slice(&1u16.to_le_bytes());
            verdef.extend_from_slice(&flags.to_le_bytes());
            verdef.extend_from_slice(&(i as u16 + 1).to_le_bytes());
            verdef.extend_from_slice(&1u16.to_le_bytes());
            verdef.extend_from_slice(&0u32.to_le_bytes());
            verdef.extend_from_slice(&20u32.to_le_bytes());
            verdef.extend_from_slice(&(if last { 0u32 } else { 28 }).to_le_bytes());
            verdef.extend_from_slice(&name(v).to_le_bytes());
            verdef.extend_from_slice(&0u32.to_le_bytes());
        }
        // Layout: header 64, one program header pair (112), strtab, verneed,
        // verdef, dynamic.
        let strtab_at = 64 + 2 * 56;
        let verneed_at = strtab_at + strtab.len();
        let verdef_at = verneed_at + verneed.len();
        let dyn_at = verdef_at + verdef.len();
        let mut dynamic = Vec::new();
        let mut entry = |tag: u64, val: u64| {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&val.to_le_bytes());
        };
        entry(DT_STRTAB, strtab_at as u64);
        if !needs.is_empty() {
            entry(DT_VERNEED, verneed_at as u64);
            entry(DT_VERNEEDNUM, needs.len() as u64);
        }
        if !defs.is_empty() {
            entry(DT_VERDEF, verdef_at as u64);
            entry(DT_VERDEFNUM, defs.len() as u64);
        }
        entry(DT_NULL, 0);
        let total = dyn_at + dynamic.len();
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        let ph = |ty: u32, off: u64, size: u64| {
            let mut h = vec![0u8; 56];
            h[..4].copy_from_slice(&ty.to_le_bytes());
            h[8..16].copy_from_slice(&off.to_le_bytes());
            h[16..24].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        f.extend(ph(PT_LOAD, 0, total as u64));
        f.extend(ph(PT_DYNAMIC, dyn_at as u64, dynamic.len() as u64));
        f.extend(strtab);
        f.extend(verneed);
        f.extend(verdef);
        f.extend(dynamic);
        f
    }

    #[test]
    fn needs_and_definitions_are_read() {
        let bin = elf(
            &[
                ("libc.so.6", &["GLIBC_2.34", "GLIBC_2.2.5"]),
                ("libgcc_s.so.1", &["GCC_3.0"]),
            ],
            &[],
        );
        assert_eq!(
            version_needs(&bin).unwrap(),
            [
                ("libc.so.6".into(), "GLIBC_2.34".into()),
                ("libc.so.6".into(), "GLIBC_2.2.5".into()),
                ("libgcc_s.so.1".into(), "GCC_3.0".into()),
            ]
        );
        let lib = elf(
            &[],
            &[
                ("libc.so.6", VER_FLG_BASE),
                ("GLIBC_2.2.5", 0),
                ("GLIBC_2.34", 0),
            ],
        );
        assert_eq!(
            version_defs(&lib).unwrap(),
            ["GLIBC_2.2.5".to_owned(), "GLIBC_2.34".to_owned()].into()
        );
    }

    #[test]
    fn a_version_the_pinned_library_lacks_is_named() {
        let bin = elf(&[("libc.so.6", &["GLIBC_2.34", "GLIBC_2.42"])], &[]);
        let libs: BTreeMap<String, Vec<u8>> = [(
            "libc.so.6".to_owned(),
            elf(&[], &[("GLIBC_2.2.5", 0), ("GLIBC_2.34", 0)]),
        )]
        .into();
        assert_eq!(
            missing_versions(&[("valkey-server", &bin)], &libs).unwrap(),
            ["valkey-server: libc.so.6 GLIBC_2.42"]
        );
        let other = elf(&[("libm.so.6", &["GLIBC_2.29"])], &[]);
        assert_eq!(
            missing_versions(&[("x", &other)], &libs).unwrap(),
            ["x: libm.so.6 GLIBC_2.29"]
        );
    }

    #[test]
    fn the_hosts_own_binary_and_c_library_agree() {
        let tool = std::fs::read("/usr/bin/true").unwrap();
        let needs = version_needs(&tool).unwrap();
        assert!(
            needs.contains(&("libc.so.6".to_owned(), "GLIBC_2.2.5".to_owned())),
            "{needs:?}"
        );
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let defs = version_defs(&libc).unwrap();
        assert!(defs.contains("GLIBC_2.2.5") && defs.contains("GLIBC_PRIVATE"));
        let libs: BTreeMap<String, Vec<u8>> = [("libc.so.6".to_owned(), libc)].into();
        assert_eq!(
            missing_versions(&[("true", &tool)], &libs).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let good = elf(&[("libc.so.6", &["GLIBC_2.34"])], &[]);
        for cut in [0, 4, 40, 100, 200, good.len() - 1] {
            let _ = version_needs(&good[..cut]);
            let _ = version_defs(&good[..cut]);
        }
        assert!(version_needs(b"not an elf").is_err());
        // A static binary has no versions.
        let mut no_dyn = good.clone();
        no_dyn[64 + 56..64 + 60].copy_from_slice(&0u32.to_le_bytes());
        assert!(version_needs(&no_dyn).unwrap().is_empty());
    }
}
