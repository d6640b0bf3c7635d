//! ELF reads: what the image builder and `verify` ask of a binary, a shared
//! library or a kernel module, over the `object` crate's ELF parser.
//!
//! - [`dynamic_deps`]: the interpreter (`PT_INTERP`) and `DT_NEEDED` names of
//!   a dynamic executable or library, found through the program headers only
//!   (as the loader finds them), so they are read from section-stripped files
//!   too.
//! - [`modinfo`]: the `key=value` entries of a kernel module's `.modinfo`
//!   section (`depends=`, `softdep=`, ...).
//! - [`version_needs`]: the symbol versions a file needs from each library
//!   (`.gnu.version_r`, e.g. `libc.so.6` `GLIBC_2.34`), [`version_defs`]
//!   the versions a library defines (`.gnu.version_d`), and [`max_version`]
//!   to find the newest one of a family.
//! - [`has_symbol`] (a name in `.symtab` or `.dynsym`) and [`contains_bytes`]
//!   (a byte string anywhere in the file: what survives stripping).
//!
//! Only little-endian ELF64 files are read (the appliance is x86-64); anything
//! else is an error, never a panic. `object` is built with its `unaligned`
//! feature because ELF files are read in place from cpio bodies, which are
//! only 4-byte aligned.

use object::elf::{self, FileHeader64};
use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _, SectionHeader as _};
use object::read::StringTable;
use object::LittleEndian;

type Header = FileHeader64<LittleEndian>;

/// Why an ELF file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// The file does not start with `\x7fELF`.
    #[error("ELF: no magic")]
    NotElf,
    /// Another class or byte order than little-endian ELF64.
    #[error("ELF: not 64-bit little-endian")]
    NotElf64Le,
    /// A header, table or string lies outside the file (`object`'s reason).
    #[error("ELF: {0}")]
    Malformed(#[from] object::read::Error),
    /// A segment's file range lies outside the file.
    #[error("ELF: {0} segment outside the file")]
    SegmentOutside(&'static str),
    /// `DT_NEEDED` entries but no string table to name them.
    #[error("ELF: DT_NEEDED without DT_STRTAB")]
    NoStringTable,
    /// The dynamic string table is in no loaded segment.
    #[error("ELF: DT_STRTAB outside every PT_LOAD")]
    StringTableOutside,
    /// A string offset points outside its table or the string is unterminated.
    #[error("ELF: bad {0} string")]
    BadString(&'static str),
    /// No section of this name.
    #[error("no {0} section")]
    NoSection(&'static str),
    /// More version records than the file has room for: they overlap.
    #[error("ELF: version records overlap")]
    VersionLoop,
}

fn malformed(what: &'static str) -> impl FnOnce(()) -> ElfError {
    move |()| ElfError::BadString(what)
}

/// Whether `data` starts with the ELF magic.
#[must_use]
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

fn header(data: &[u8]) -> Result<(&Header, LittleEndian), ElfError> {
    if !is_elf(data) {
        return Err(ElfError::NotElf);
    }
    // e_ident[EI_CLASS] = ELFCLASS64, e_ident[EI_DATA] = ELFDATA2LSB.
    if data.get(4) != Some(&elf::ELFCLASS64.0) || data.get(5) != Some(&elf::ELFDATA2LSB.0) {
        return Err(ElfError::NotElf64Le);
    }
    let h = Header::parse(data)?;
    Ok((h, h.endian()?))
}

/// `e_type`: [`ET_REL`] (a kernel module), [`ET_EXEC`], [`ET_DYN`] (a
/// shared object or PIE), ...
pub fn elf_type(data: &[u8]) -> Result<u16, ElfError> {
    let (h, e) = header(data)?;
    Ok(h.e_type(e).0)
}

/// `e_type` of a relocatable file (a kernel module).
pub const ET_REL: u16 = elf::ET_REL.0;
/// `e_type` of a fixed-address executable.
pub const ET_EXEC: u16 = elf::ET_EXEC.0;
/// `e_type` of a shared object or position-independent executable.
pub const ET_DYN: u16 = elf::ET_DYN.0;

/// What an ELF file needs from the dynamic linker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfDeps {
    /// `e_type`: 1 relocatable, 2 executable, 3 shared object / PIE.
    pub elf_type: u16,
    /// `PT_INTERP`, if any.
    pub interp: Option<String>,
    /// `DT_NEEDED` names, in file order.
    pub needed: Vec<String>,
}

/// The interpreter and `DT_NEEDED` list of a little-endian ELF64 file, read
/// through its program headers. A file without `PT_DYNAMIC` (a static binary,
/// a kernel module) needs nothing. Non-UTF-8 names are replaced lossily.
pub fn dynamic_deps(data: &[u8]) -> Result<ElfDeps, ElfError> {
    let (h, e) = header(data)?;
    let segments = h.program_headers(e, data)?;
    let mut interp = None;
    let mut dynamic: &[elf::Dyn64<LittleEndian>] = &[];
    for p in segments {
        if let Some(i) = p.interpreter(e, data)? {
            interp = Some(String::from_utf8_lossy(i).into_owned());
        }
        if p.p_type(e) == elf::PT_DYNAMIC {
            let outside = |()| ElfError::SegmentOutside("PT_DYNAMIC");
            let bytes = p.data(e, data).map_err(outside)?;
            // Whole entries only; a ragged tail is ignored.
            let count = bytes.len() / std::mem::size_of::<elf::Dyn64<LittleEndian>>();
            dynamic = object::pod::slice_from_bytes(bytes, count)
                .map(|(entries, _)| entries)
                .map_err(outside)?;
        }
    }
    let mut names = Vec::new();
    let (mut strtab, mut strsz) = (None, None);
    for d in dynamic {
        let tag = d.d_tag(e);
        if tag == elf::DT_NULL {
            break;
        } else if tag == elf::DT_NEEDED {
            names.push(d.d_val(e));
        } else if tag == elf::DT_STRTAB {
            strtab = Some(d.d_val(e));
        } else if tag == elf::DT_STRSZ {
            strsz = Some(d.d_val(e));
        }
    }
    let mut needed = Vec::with_capacity(names.len());
    if !names.is_empty() {
        let vaddr = strtab.ok_or(ElfError::NoStringTable)?;
        let table = loaded_bytes(h, e, data, vaddr)?;
        // DT_STRSZ bounds the table when present; the segment always does.
        let len = strsz.map_or(table.len() as u64, |s| s.min(table.len() as u64));
        let strings = StringTable::new(table, 0, len);
        for n in names {
            let off = u32::try_from(n).map_err(|_| ElfError::BadString("DT_NEEDED"))?;
            let name = strings.get(off).map_err(malformed("DT_NEEDED"))?;
            needed.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(ElfDeps {
        elf_type: h.e_type(e).0,
        interp,
        needed,
    })
}

/// The file bytes from virtual address `vaddr` to the end of the `PT_LOAD`
/// segment's file image that contains it.
fn loaded_bytes<'a>(
    h: &Header,
    e: LittleEndian,
    data: &'a [u8],
    vaddr: u64,
) -> Result<&'a [u8], ElfError> {
    for p in h.program_headers(e, data)? {
        let (start, size) = (p.p_vaddr(e), p.p_filesz(e));
        if p.p_type(e) == elf::PT_LOAD && start <= vaddr && vaddr < start.saturating_add(size) {
            let seg = p
                .data(e, data)
                .map_err(|()| ElfError::SegmentOutside("PT_LOAD"))?;
            let skip = usize::try_from(vaddr - start).map_err(|_| ElfError::StringTableOutside)?;
            return seg.get(skip..).ok_or(ElfError::StringTableOutside);
        }
    }
    Err(ElfError::StringTableOutside)
}

/// The bytes of the first section named `name`, if the file has one (empty
/// for a `SHT_NOBITS` section).
pub fn section_data<'a>(data: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    let (h, e) = header(data)?;
    let sections = h.sections(e, data)?;
    match sections.section_by_name(e, name.as_bytes()) {
        Some((_, s)) => Ok(Some(s.data(e, data)?)),
        None => Ok(None),
    }
}

/// The `key=value` entries of a kernel module's `.modinfo` section, in file
/// order (keys repeat: `alias`, `parm`, `softdep`). See [`split_modinfo`].
pub fn modinfo(data: &[u8]) -> Result<Vec<(String, String)>, ElfError> {
    let body = section_data(data, ".modinfo")?.ok_or(ElfError::NoSection(".modinfo"))?;
    Ok(split_modinfo(body))
}

/// Splits a `.modinfo` body: NUL-separated `key=value` strings; padding
/// (empty strings) and entries without `=` are skipped; non-UTF-8 bytes are
/// replaced.
#[must_use]
pub fn split_modinfo(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == 0)
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// One symbol version a file needs: `library` (`vn_file`, e.g. `libc.so.6`)
/// must define `version` (`vna_name`, e.g. `GLIBC_2.34`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionNeed {
    /// The library's `DT_NEEDED` name.
    pub library: String,
    /// The version name.
    pub version: String,
}

/// Every `.gnu.version_r` requirement, in file order. A file without the
/// section (static, or no versioned symbols) needs none.
pub fn version_needs(data: &[u8]) -> Result<Vec<VersionNeed>, ElfError> {
    let (h, e) = header(data)?;
    let sections = h.sections(e, data)?;
    let Some((mut files, link)) = sections.gnu_verneed(e, data)? else {
        return Ok(Vec::new());
    };
    let strings = sections.strings(e, data, link)?;
    // Each record is at least 16 bytes, so a table in this file cannot
    // hold more; records that point back into each other would.
    let limit = data.len() / 16;
    let mut out = Vec::new();
    while let Some((need, mut aux)) = files.next()? {
        let library = need
            .file(e, strings)
            .map_err(|_| ElfError::BadString("vn_file"))?;
        let library = String::from_utf8_lossy(library).into_owned();
        while let Some(a) = aux.next()? {
            let version = a
                .name(e, strings)
                .map_err(|_| ElfError::BadString("vna_name"))?;
            out.push(VersionNeed {
                library: library.clone(),
                version: String::from_utf8_lossy(version).into_owned(),
            });
            if out.len() > limit {
                return Err(ElfError::VersionLoop);
            }
            if a.vna_next.get(e) == 0 {
                break;
            }
        }
    }
    Ok(out)
}

/// Every version a library defines in `.gnu.version_d` (e.g. `GLIBC_2.34`),
/// except its base entry, which names the file itself. A file without the
/// section defines none.
pub fn version_defs(data: &[u8]) -> Result<Vec<String>, ElfError> {
    let (h, e) = header(data)?;
    let sections = h.sections(e, data)?;
    let Some((mut defs, link)) = sections.gnu_verdef(e, data)? else {
        return Ok(Vec::new());
    };
    let strings = sections.strings(e, data, link)?;
    // Each record is at least 20 bytes; more than the file has room for
    // means records that point back into each other.
    let limit = data.len() / 20;
    let mut out = Vec::new();
    while let Some((def, mut aux)) = defs.next()? {
        let base = def.vd_flags.get(e).0 & elf::VER_FLG_BASE.0 != 0;
        // The first auxiliary record names the version; the others name
        // the versions it inherits from.
        if let (false, Some(a)) = (base, aux.next()?) {
            let name = a
                .name(e, strings)
                .map_err(|_| ElfError::BadString("vda_name"))?;
            out.push(String::from_utf8_lossy(name).into_owned());
        }
        if out.len() > limit {
            return Err(ElfError::VersionLoop);
        }
        if def.vd_next.get(e) == 0 {
            break;
        }
    }
    Ok(out)
}

/// The newest version named `<family><numbers>` (`family` = `"GLIBC_"`),
/// comparing the dot-separated numbers (`2.34` > `2.4`). Names with other
/// suffixes (`GLIBC_PRIVATE`) are skipped.
#[must_use]
pub fn max_version<'a>(needs: &'a [VersionNeed], family: &str) -> Option<&'a VersionNeed> {
    let numbers = |v: &str| -> Option<Vec<u32>> {
        v.strip_prefix(family)?
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    needs
        .iter()
        .filter_map(|n| Some((numbers(&n.version)?, n)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, n)| n)
}

/// Whether `.symtab` or `.dynsym` has a symbol named `name` (defined or
/// not). A stripped file has no `.symtab`; [`contains_bytes`] still finds
/// names that survive in string tables or data.
pub fn has_symbol(data: &[u8], name: &str) -> Result<bool, ElfError> {
    let (h, e) = header(data)?;
    let sections = h.sections(e, data)?;
    for kind in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
        let table = sections.symbols(e, data, kind)?;
        for sym in table.iter() {
            if table.symbol_name(e, sym).ok() == Some(name.as_bytes()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// True if `needle` (non-empty) occurs anywhere in `hay`: the check `verify`
/// and the Valkey build use for `luaL_newstate`, which finds a name in any
/// section, stripped or not.
#[must_use]
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_little_endian_elf64() {
        let cases: [(&[u8], ElfError); 4] = [
            (b"", ElfError::NotElf),
            (b"MZ\x90\0", ElfError::NotElf),
            (b"\x7fELF\x01\x01\x01\0", ElfError::NotElf64Le),
            (b"\x7fELF\x02\x02\x01\0", ElfError::NotElf64Le),
        ];
        for (input, want) in cases {
            assert_eq!(dynamic_deps(input), Err(want.clone()), "{input:?}");
            assert_eq!(modinfo(input), Err(want), "{input:?}");
        }
        assert!(matches!(
            dynamic_deps(b"\x7fELF\x02\x01\x01\0"),
            Err(ElfError::Malformed(_))
        ));
    }

    #[test]
    fn modinfo_splitting() {
        let body = b"license=GPL\0\0depends=a,b\0noequals\0x=y=z\0\xff=1\0";
        assert_eq!(
            split_modinfo(body),
            [
                ("license".into(), "GPL".into()),
                ("depends".into(), "a,b".into()),
                ("x".into(), "y=z".into()),
                ("\u{fffd}".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn newest_version_compares_numbers() {
        let need = |v: &str| VersionNeed {
            library: "libc.so.6".into(),
            version: v.into(),
        };
        let needs = [
            need("GLIBC_2.4"),
            need("GLIBC_2.34"),
            need("GLIBC_PRIVATE"),
            need("GLIBC_2.3.4"),
        ];
        assert_eq!(
            max_version(&needs, "GLIBC_").map(|n| n.version.as_str()),
            Some("GLIBC_2.34")
        );
        assert_eq!(max_version(&needs, "GCC_"), None);
    }

    #[test]
    fn byte_search() {
        assert!(contains_bytes(b"xxluaL_newstatexx", b"luaL_newstate"));
        assert!(!contains_bytes(b"luaL_newstat", b"luaL_newstate"));
        assert!(!contains_bytes(b"anything", b""));
    }
}
