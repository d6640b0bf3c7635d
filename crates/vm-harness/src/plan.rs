//! Planned boots of an appliance image: the private directory around one
//! VM ([`VmDir`]) and the QEMU spec for booting an image's files on a data
//! disk, on QEMU's restricted user network or on the test network
//! ([`plan_boot`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::host::{temp_dir, TempDir};
use crate::image::{ImageFiles, BOOT_DISK, INITRAMFS, KERNEL};
use crate::qemu::{
    Boot, DiskInterface, Forward, QemuSpec, GUEST_SERVER_PORT, OVMF_CODE, OVMF_VARS,
};
use crate::standin;
use crate::testnet::TestNet;
use crate::{Error, Result};

/// Everything one VM needs around it: a private directory holding the
/// monitor socket, the OVMF variables copy, the stand-in's state, log and
/// program copy, and the console log.
#[derive(Debug)]
pub struct VmDir {
    dir: TempDir,
}

impl VmDir {
    /// A new private directory (`xtask-<prefix>-<random>`, 0700).
    pub fn new(prefix: &str) -> Result<VmDir> {
        Ok(VmDir {
            dir: temp_dir(prefix)?,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The monitor socket path.
    pub fn monitor(&self) -> PathBuf {
        self.path().join("monitor.sock")
    }

    /// The stand-in state file.
    pub fn state_file(&self) -> PathBuf {
        self.path().join("standin.json")
    }

    /// The console log.
    pub fn console_log(&self) -> PathBuf {
        self.path().join("console.log")
    }

    /// A fresh copy of the OVMF variable store for one boot.
    pub fn ovmf_vars(&self) -> Result<PathBuf> {
        let to = self.path().join("OVMF_VARS.fd");
        fs::copy(OVMF_VARS, &to).map_err(Error::file("copy", OVMF_VARS))?;
        Ok(to)
    }
}

/// How the appliance's disks are attached in every planned boot: as most
/// GCE machine types attach persistent disks. `cargo xtask run
/// --disk-interface` and the `disk-interfaces` e2e case choose others.
pub const APPLIANCE_DISK_INTERFACE: DiskInterface = DiskInterface::Scsi;

/// How the guest boots in a [`plan_boot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// OVMF + disk.raw.
    Uefi,
    /// `-kernel/-initrd`.
    Direct,
}

/// Where a planned boot's network card is.
#[derive(Debug, Clone, Copy)]
pub enum Network<'a> {
    /// QEMU's user network, `restrict=on`: 127.0.0.1:`server_port`
    /// forwarded to the guest's server port, then the `extra` forwards; the
    /// metadata stand-in answers as QEMU's `guestfwd` program, reading the
    /// VM directory's state file.
    User {
        /// The loopback port forwarded to [`GUEST_SERVER_PORT`].
        server_port: u16,
        /// More forwards.
        extra: &'a [Forward],
    },
    /// The test network's tap, QEMU inside its namespace: no forwards, the
    /// namespace's clients reach the guest directly, and the network serves
    /// the metadata itself.
    Test(&'a TestNet),
}

/// A spec for booting `image` in `mode` with `data` attached (on
/// [`APPLIANCE_DISK_INTERFACE`]) on `network`, around `vm`.
pub fn plan_boot(
    image: &ImageFiles,
    mode: BootMode,
    data: &Path,
    vm: &VmDir,
    network: Network<'_>,
) -> Result<QemuSpec> {
    let mut spec = QemuSpec::new(boot_of(image, mode, vm)?, vm.monitor());
    spec.data_disk = Some(data.to_path_buf());
    spec.disk_interface = APPLIANCE_DISK_INTERFACE;
    match network {
        Network::User { server_port, extra } => {
            spec.forwards.push(Forward {
                host: server_port,
                guest: GUEST_SERVER_PORT,
            });
            spec.forwards.extend_from_slice(extra);
            spec.metadata_cmd = Some(standin::guestfwd_command(&vm.state_file())?);
        }
        Network::Test(net) => spec.tap_netns = Some(net.name().to_owned()),
    }
    Ok(spec)
}

fn boot_of(image: &ImageFiles, mode: BootMode, vm: &VmDir) -> Result<Boot> {
    Ok(match mode {
        BootMode::Uefi => Boot::Uefi {
            disk: image.file(BOOT_DISK),
            ovmf_code: PathBuf::from(OVMF_CODE),
            ovmf_vars: vm.ovmf_vars()?,
        },
        BootMode::Direct => Boot::Direct {
            kernel: image.file(KERNEL),
            initrd: image.file(INITRAMFS),
            cmdline: image.cmdline()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_user_network_boot() {
        let tmp = temp_dir("plan-test").unwrap();
        fs::write(tmp.path().join(crate::image::CMDLINE), "console=ttyS0\n").unwrap();
        let image = ImageFiles::new(tmp.path());
        let vm = VmDir::new("plan-test-vm").unwrap();
        let data = tmp.path().join("data.raw");
        let extra = [Forward { host: 2, guest: 22 }];
        let network = Network::User {
            server_port: 1,
            extra: &extra,
        };
        let spec = plan_boot(&image, BootMode::Direct, &data, &vm, network).unwrap();
        assert_eq!(
            spec.boot,
            Boot::Direct {
                kernel: image.file(KERNEL),
                initrd: image.file(INITRAMFS),
                cmdline: "console=ttyS0".into(),
            }
        );
        assert_eq!(spec.data_disk.as_deref(), Some(data.as_path()));
        assert_eq!(spec.disk_interface, APPLIANCE_DISK_INTERFACE);
        assert_eq!(
            spec.forwards,
            [
                Forward {
                    host: 1,
                    guest: GUEST_SERVER_PORT
                },
                extra[0]
            ]
        );
        assert_eq!(spec.monitor, vm.monitor());
        let cmd = spec.metadata_cmd.unwrap();
        assert!(cmd.starts_with(&vm.path().display().to_string()), "{cmd}");
        assert!(cmd.ends_with(&format!(
            " {} --state {}",
            standin::SUBCOMMAND,
            vm.state_file().display()
        )));
        assert!(spec.tap_netns.is_none());
    }
}
