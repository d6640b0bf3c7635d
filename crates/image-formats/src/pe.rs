//! PE32+ sections: a reader, and a writer that appends sections to an EFI
//! stub — the one operation a Unified Kernel Image needs ([`build_uki`]:
//! systemd-boot's `linuxx64.efi.stub` with `.osrel`, `.cmdline`, `.initrd`
//! and `.linux` appended, as `ukify` does).
//!
//! A small PE writer instead of `objcopy`: it needs no host tool, its output is
//! a pure function of its inputs (objcopy may stamp PE timestamps), and the
//! same code parses the sections back for `verify`. The stub must have room
//! in its header area for four more section headers (systemd's stubs do).
//!
//! New sections go after the stub's last section, each at the next page
//! boundary (a multiple of `SectionAlignment`), raw data at `FileAlignment`;
//! `.linux` last (as `ukify` orders them).
//!
//! The reader is pure over `&[u8]`, checks every offset before slicing and
//! never panics on garbage (fuzz target `pe_sections`).

/// Why a PE file could not be read or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeError {
    /// A header or table ends early.
    #[error("PE: truncated")]
    Truncated,
    /// No `MZ` at offset 0.
    #[error("PE: no MZ signature")]
    NoMz,
    /// No `PE\0\0` where `e_lfanew` points.
    #[error("PE: no PE signature")]
    NoPe,
    /// The optional header's magic is not `0x20B`.
    #[error("PE: not PE32+")]
    NotPe32Plus,
    /// `SectionAlignment` or `FileAlignment` not a power of two.
    #[error("PE: bad alignment (section {section}, file {file})")]
    BadAlignment {
        /// `SectionAlignment`.
        section: u32,
        /// `FileAlignment`.
        file: u32,
    },
    /// An offset plus a size overflowed.
    #[error("PE: overflow")]
    Overflow,
    /// A section's raw data lies beyond the file.
    #[error("PE: section {0} outside the file")]
    SectionOutside(String),
    /// A new section's name is over 8 bytes.
    #[error("PE: section name {0} longer than 8 bytes")]
    NameTooLong(String),
    /// The stub already has a section of a name being added.
    #[error("PE: the stub already has a {0} section")]
    Duplicate(String),
    /// The header area cannot take this many more section headers.
    #[error("PE: no room in the stub's headers for {0} more sections")]
    NoRoom(usize),
    /// A header write would fall outside the file.
    #[error("PE: write outside the headers")]
    WriteOutside,
    /// A value does not fit its header field (a section over 4 GiB).
    #[error("PE: {0} does not fit its header field")]
    TooLarge(&'static str),
}

const SECTION_HEADER: usize = 40;
const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;

fn rd16(b: &[u8], at: usize) -> Result<u16, PeError> {
    let s: [u8; 2] = b
        .get(at..at.checked_add(2).ok_or(PeError::Overflow)?)
        .and_then(|s| s.try_into().ok())
        .ok_or(PeError::Truncated)?;
    Ok(u16::from_le_bytes(s))
}

fn rd32(b: &[u8], at: usize) -> Result<u32, PeError> {
    let s: [u8; 4] = b
        .get(at..at.checked_add(4).ok_or(PeError::Overflow)?)
        .and_then(|s| s.try_into().ok())
        .ok_or(PeError::Truncated)?;
    Ok(u32::from_le_bytes(s))
}

fn wr(b: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), PeError> {
    b.get_mut(at..at + bytes.len())
        .ok_or(PeError::WriteOutside)?
        .copy_from_slice(bytes);
    Ok(())
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Where the headers of a PE32+ image are.
#[derive(Debug, Clone, Copy)]
struct PeLayout {
    coff: usize,
    opt: usize,
    nsections: usize,
    table: usize,
    section_align: u32,
    file_align: u32,
    size_of_headers: u32,
}

impl PeLayout {
    fn parse(pe: &[u8]) -> Result<PeLayout, PeError> {
        ensure!(pe.get(..2) == Some(b"MZ".as_slice()), PeError::NoMz);
        let lfanew = rd32(pe, 0x3C)? as usize;
        ensure!(
            pe.get(lfanew..lfanew + 4) == Some(b"PE\0\0".as_slice()),
            PeError::NoPe
        );
        let coff = lfanew + 4;
        let nsections = usize::from(rd16(pe, coff + 2)?);
        let opt_size = usize::from(rd16(pe, coff + 16)?);
        let opt = coff + 20;
        ensure!(rd16(pe, opt)? == 0x20B, PeError::NotPe32Plus);
        let section_align = rd32(pe, opt + 32)?;
        let file_align = rd32(pe, opt + 36)?;
        ensure!(
            section_align.is_power_of_two() && file_align.is_power_of_two(),
            PeError::BadAlignment {
                section: section_align,
                file: file_align
            }
        );
        Ok(PeLayout {
            coff,
            opt,
            nsections,
            table: opt + opt_size,
            section_align,
            file_align,
            size_of_headers: rd32(pe, opt + 60)?,
        })
    }
}

/// A section as found in a PE file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    /// Name (up to 8 bytes, NULs trimmed).
    pub name: String,
    /// Relative virtual address.
    pub virtual_address: u32,
    /// Size in memory.
    pub virtual_size: u32,
    /// The section's bytes in the file, cut to the virtual size.
    pub data: &'a [u8],
}

/// Lists a PE32+ file's sections.
pub fn sections(pe: &[u8]) -> Result<Vec<Section<'_>>, PeError> {
    let l = PeLayout::parse(pe)?;
    let mut out = Vec::new();
    for i in 0..l.nsections {
        let h = l.table + i * SECTION_HEADER;
        let raw_name = pe.get(h..h + 8).ok_or(PeError::Truncated)?;
        let name = String::from_utf8_lossy(raw_name)
            .trim_end_matches('\0')
            .to_string();
        let vsize = rd32(pe, h + 8)?;
        let va = rd32(pe, h + 12)?;
        let raw_size = rd32(pe, h + 16)? as usize;
        let raw_ptr = rd32(pe, h + 20)? as usize;
        let len = raw_size.min(vsize as usize);
        let end = raw_ptr.checked_add(len).ok_or(PeError::Overflow)?;
        let Some(data) = pe.get(raw_ptr..end) else {
            return Err(PeError::SectionOutside(name));
        };
        out.push(Section {
            name,
            virtual_address: va,
            virtual_size: vsize,
            data,
        });
    }
    Ok(out)
}

/// The PE checksum (the algorithm of `imagehlp!CheckSumMappedFile`).
fn pe_checksum(pe: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in pe.chunks(2).enumerate() {
        let at = i * 2;
        if at == checksum_at || at == checksum_at + 2 {
            continue;
        }
        let word = u64::from(chunk.first().copied().unwrap_or(0))
            | (u64::from(chunk.get(1).copied().unwrap_or(0)) << 8);
        sum += word;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum = (sum & 0xFFFF) + (sum >> 16);
    u32::try_from((sum & 0xFFFF) + pe.len() as u64).unwrap_or(0)
}

/// Appends `new` sections (name, bytes) to `stub`, in the given order.
pub fn add_sections(stub: &[u8], new: &[(&str, &[u8])]) -> Result<Vec<u8>, PeError> {
    let l = PeLayout::parse(stub)?;
    let existing = sections(stub)?;
    for (name, _) in new {
        ensure!(name.len() <= 8, PeError::NameTooLong((*name).to_owned()));
        ensure!(
            !existing.iter().any(|s| s.name == *name),
            PeError::Duplicate((*name).to_owned())
        );
    }
    let table_end = l.table + (l.nsections + new.len()) * SECTION_HEADER;
    let first_raw = (0..l.nsections)
        .map(|i| rd32(stub, l.table + i * SECTION_HEADER + 20))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|&p| p != 0)
        .min()
        .unwrap_or(l.size_of_headers) as usize;
    ensure!(
        table_end <= l.size_of_headers as usize && table_end <= first_raw,
        PeError::NoRoom(new.len())
    );

    // Page-align the new sections even when the stub's SectionAlignment is
    // smaller (systemd 252 uses 512): still a multiple of it, and the kernel
    // and initrd then start on a page as firmware allocates them.
    let sa = u64::from(l.section_align).max(4096);
    let fa = u64::from(l.file_align);
    let mut next_va = 0u64;
    for i in 0..l.nsections {
        let h = l.table + i * SECTION_HEADER;
        let end =
            u64::from(rd32(stub, h + 12)?) + u64::from(rd32(stub, h + 8)?.max(rd32(stub, h + 16)?));
        next_va = next_va.max(end);
    }
    next_va = align(next_va, sa);

    let mut out = stub.to_vec();
    out.resize(to_usize(align(out.len() as u64, fa))?, 0);
    let mut added_init_data = 0u64;
    for (i, (name, data)) in new.iter().enumerate() {
        let raw_ptr = out.len() as u64;
        let raw_size = align(data.len() as u64, fa);
        out.extend_from_slice(data);
        out.resize(to_usize(raw_ptr + raw_size)?, 0);

        let mut h = [0u8; SECTION_HEADER];
        if let Some(dst) = h.get_mut(..name.len()) {
            dst.copy_from_slice(name.as_bytes());
        }
        let vsize = u32::try_from(data.len()).map_err(|_| PeError::TooLarge("section size"))?;
        h[8..12].copy_from_slice(&vsize.to_le_bytes());
        h[12..16].copy_from_slice(&to_u32(next_va, "VirtualAddress")?.to_le_bytes());
        h[16..20].copy_from_slice(&to_u32(raw_size, "SizeOfRawData")?.to_le_bytes());
        h[20..24].copy_from_slice(&to_u32(raw_ptr, "PointerToRawData")?.to_le_bytes());
        h[36..40]
            .copy_from_slice(&(IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ).to_le_bytes());
        wr(&mut out, l.table + (l.nsections + i) * SECTION_HEADER, &h)?;

        next_va = align(next_va + u64::from(vsize), sa);
        added_init_data += raw_size;
    }
    let nsections = u16::try_from(l.nsections + new.len())
        .map_err(|_| PeError::TooLarge("NumberOfSections"))?;
    wr(&mut out, l.coff + 2, &nsections.to_le_bytes())?;
    let init_data = u64::from(rd32(&out, l.opt + 8)?) + added_init_data;
    wr(
        &mut out,
        l.opt + 8,
        &to_u32(init_data, "SizeOfInitializedData")?.to_le_bytes(),
    )?;
    wr(
        &mut out,
        l.opt + 56,
        &to_u32(next_va, "SizeOfImage")?.to_le_bytes(),
    )?;
    let checksum_at = l.opt + 64;
    wr(&mut out, checksum_at, &[0; 4])?;
    let sum = pe_checksum(&out, checksum_at);
    wr(&mut out, checksum_at, &sum.to_le_bytes())?;
    Ok(out)
}

fn to_u32(v: u64, field: &'static str) -> Result<u32, PeError> {
    u32::try_from(v).map_err(|_| PeError::TooLarge(field))
}

fn to_usize(v: u64) -> Result<usize, PeError> {
    usize::try_from(v).map_err(|_| PeError::TooLarge("file size"))
}

/// Builds a Unified Kernel Image: `stub` with `.osrel`, `.cmdline`,
/// `.initrd` and `.linux` appended in that order.
pub fn build_uki(
    stub: &[u8],
    osrel: &str,
    cmdline: &str,
    initrd: &[u8],
    linux: &[u8],
) -> Result<Vec<u8>, PeError> {
    add_sections(
        stub,
        &[
            (".osrel", osrel.as_bytes()),
            (".cmdline", cmdline.as_bytes()),
            (".initrd", initrd),
            (".linux", linux),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [&b""[..], b"MZ", &[0u8; 64], b"MZ\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xff\xff\xff\xff"] {
            assert!(sections(input).is_err());
            assert!(add_sections(input, &[(".x", b"y")]).is_err());
        }
    }
}
