//! `appliance.efi`: the Unified Kernel Image's contents — the kernel command
//! line and the os-release text — put into systemd-boot's stub by
//! [`image_formats::pe::build_uki`], which owns the PE layout.
#![forbid(unsafe_code)]

use image_formats::pe::{self, PeError};

/// The kernel command line. Why each word:
/// - `console=ttyS0,115200n8`: GCE's serial console and QEMU's `-serial`;
///   init's lines and the governor's halt line go there.
/// - `panic=-1 oops=panic`: a kernel in an unknown state reboots at once
///   rather than serving (PID 1 exiting panics too).
/// - `lockdown=integrity module.sig_enforce=1`: no unsigned module, no
///   `/dev/mem`, no kexec of an unsigned kernel, even for root; the image's
///   modules are Debian-signed.
/// - `lsm=landlock,lockdown,yama,integrity`: makes sure Landlock (init's last
///   sandbox step) and Yama (ptrace_scope) are active whatever the kernel's
///   default list.
/// - `slab_nomerge init_on_alloc=1 init_on_free=1 page_alloc.shuffle=1
///   randomize_kstack_offset=on vsyscall=none debugfs=off`: the KSPP
///   recommendations that cost little on a one-service VM.
///
/// Not `quiet`: the console is the only log. Not `init=`: the initramfs's
/// `/init` is the kernel's default.
pub const CMDLINE: &str = "console=ttyS0,115200n8 panic=-1 oops=panic \
lockdown=integrity module.sig_enforce=1 lsm=landlock,lockdown,yama,integrity \
slab_nomerge init_on_alloc=1 init_on_free=1 page_alloc.shuffle=1 \
randomize_kstack_offset=on vsyscall=none debugfs=off";

/// The `.osrel` text: identifies the image to the stub (and `bootctl`).
pub fn os_release(name: &str, version: &str) -> String {
    format!(
        "NAME=\"Appliance\"\nID=appliance\nPRETTY_NAME=\"Appliance {name}\"\nVERSION_ID={version}\n"
    )
}

/// Builds the UKI: `stub` + `.osrel`, `.cmdline`, `.initrd`, `.linux`.
pub fn build(
    stub: &[u8],
    osrel: &str,
    cmdline: &str,
    initrd: &[u8],
    linux: &[u8],
) -> Result<Vec<u8>, PeError> {
    pe::build_uki(stub, osrel, cmdline, initrd, linux)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_has_no_double_spaces_and_fits() {
        assert!(!CMDLINE.contains("  "));
        assert!(CMDLINE.len() < 2048);
    }
}
