//! The byte formats of the appliance image, written and read back: the
//! initramfs ([`cpio`], `newc`), the boot disk's partition table ([`gpt`]) and
//! EFI System Partition filesystem ([`fat`], FAT32), the Unified Kernel Image
//! ([`pe`], PE32+ sections), the archive GCE imports ([`gcetar`], gzip'd GNU
//! tar), and the ELF reads the builder and `verify` make ([`elf`]: a
//! binary's interpreter, libraries and symbol versions, a module's
//! `.modinfo`).
//!
//! Writers are deterministic by construction: every output is a function of
//! the inputs and an explicit timestamp (SOURCE_DATE_EPOCH), with fixed
//! ordering, ownership, identifiers and padding, so two builds of one commit
//! are byte-identical. Readers are strict (they account for every byte a
//! firmware or kernel would read), check every length before slicing and
//! never panic on hostile input; each has a fuzz target.
//!
//! The functions are pure over byte slices and `Read`/`Write`/`Seek`. The few
//! that take a `&Path` ([`gpt::write_disk`], [`gpt::read_esp`],
//! [`gcetar::write`], [`gcetar::member_matches`]) are thin wrappers for a
//! gigabyte-sized disk that is written sparse and read by seeking, never held
//! in memory.
//!
//! Deliberately not here: fetching or unpacking inputs, running host tools
//! (`mkfs.ext4`, compilers), and the image's contents — which files go into
//! the initramfs, the kernel command line, the os-release text, the module
//! list. Those are `appliance-image`'s; this crate only knows how bytes are
//! laid out.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// `return Err(e)` unless `cond` holds: `anyhow::ensure!` for typed errors.
macro_rules! ensure {
    ($cond:expr, $err:expr $(,)?) => {
        if !$cond {
            return Err($err);
        }
    };
}

pub mod cpio;
pub mod elf;
pub mod fat;
pub mod gcetar;
pub mod gpt;
pub mod pe;

/// ` <path>` for an error message, or nothing for an in-memory stream.
fn at_path(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" {}", path.display())
    }
}
