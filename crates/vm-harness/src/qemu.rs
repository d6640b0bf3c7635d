//! The QEMU command line: one pure builder ([`QemuSpec::args`]),
//! snapshot-tested.
//!
//! Invariants:
//! - Every command line carries `-netdev user,...,restrict=on` (the guest
//!   reaches only the forwards set here: a `hostfwd` to 127.0.0.1 and the
//!   metadata `guestfwd` to a program on stdin/stdout), or the test
//!   network's tap, which QEMU opens inside that network's own namespace.
//! - TCG only: no `-enable-kvm`, no `accel=kvm` (KVM does not work on these
//!   machines, and results must not depend on it).

use std::path::{Path, PathBuf};

use host_tools::Tool;

use crate::{Error, Result};

/// OVMF's code, read-only, shared by every run.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// OVMF's variable store template; every run gets its own copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// The guest's server port (the spec's; the reference deployment's 6379).
pub const GUEST_SERVER_PORT: u16 = 6379;
/// The metadata server address the guest asks.
pub const METADATA_ADDR: &str = "169.254.169.254:80";
/// The user network: link-local, so a `guestfwd` to 169.254.169.254 is
/// inside it (QEMU refuses guest forwards outside the user network).
pub const USER_NET: &str = "net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15";

/// What booting needs on the host.
pub const BOOT_TOOLS: [Tool; 3] = [
    Tool {
        file: "qemu-system-x86_64",
        package: "qemu-system-x86",
    },
    Tool {
        file: OVMF_CODE,
        package: "ovmf",
    },
    Tool {
        file: OVMF_VARS,
        package: "ovmf",
    },
];

/// How the guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// As on GCE: OVMF, then the UKI on the disk's ESP.
    Uefi {
        /// `disk.raw` (GPT + ESP); attached read-only.
        disk: PathBuf,
        /// OVMF code (read-only pflash).
        ovmf_code: PathBuf,
        /// This run's copy of the OVMF variable store (writable pflash).
        ovmf_vars: PathBuf,
    },
    /// Faster: QEMU loads the kernel and initramfs itself.
    Direct {
        /// `vmlinuz`.
        kernel: PathBuf,
        /// `initramfs.cpio.zst`.
        initrd: PathBuf,
        /// The kernel command line (the UKI's).
        cmdline: String,
    },
}

/// How the boot and data disks are attached: GCE gives virtio-SCSI or NVMe
/// (by machine type); virtio-blk is QEMU's usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskInterface {
    /// One `virtio-scsi-pci` controller, each disk a `scsi-hd` on it
    /// (`/dev/sda`, `/dev/sdb`, ...), as on most GCE machine types.
    Scsi,
    /// One `nvme` controller per disk (`/dev/nvme0n1`, ...), as on GCE's
    /// newer machine types.
    Nvme,
    /// One `virtio-blk-pci` per disk (`/dev/vda`, ...).
    #[default]
    Virtio,
}

impl DiskInterface {
    /// Every interface, in the order `--disk-interface` lists them.
    pub const ALL: [DiskInterface; 3] = [
        DiskInterface::Scsi,
        DiskInterface::Nvme,
        DiskInterface::Virtio,
    ];

    /// The name `--disk-interface` takes.
    pub fn name(self) -> &'static str {
        match self {
            DiskInterface::Scsi => "scsi",
            DiskInterface::Nvme => "nvme",
            DiskInterface::Virtio => "virtio",
        }
    }

    /// Parses `scsi`, `nvme` or `virtio`.
    pub fn parse(text: &str) -> Result<DiskInterface> {
        DiskInterface::ALL
            .into_iter()
            .find(|i| i.name() == text)
            .ok_or_else(|| Error::UnknownDiskInterface(text.to_owned()))
    }

    /// The `-device` arguments attaching drive `drive` (a boot disk when
    /// `boot`), after the controller [`DiskInterface::controller`] adds.
    fn device(self, drive: &str, boot: bool) -> String {
        let mut device = match self {
            DiskInterface::Scsi => format!("scsi-hd,drive={drive},bus=scsi0.0"),
            // The serial is the drive id: at most 20 characters, unique.
            DiskInterface::Nvme => format!("nvme,serial={drive},drive={drive}"),
            DiskInterface::Virtio => format!("virtio-blk-pci,drive={drive}"),
        };
        if boot {
            device.push_str(",bootindex=0");
        }
        device
    }

    /// The controller every disk of this interface hangs off, if one.
    fn controller(self) -> Option<&'static str> {
        match self {
            DiskInterface::Scsi => Some("virtio-scsi-pci,id=scsi0"),
            DiskInterface::Nvme | DiskInterface::Virtio => None,
        }
    }
}

/// One `hostfwd`: 127.0.0.1:`host` to guest port `guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Loopback port on the host.
    pub host: u16,
    /// TCP port in the guest.
    pub guest: u16,
}

/// Everything that makes up one QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSpec {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Boot path.
    pub boot: Boot,
    /// The data disk (`data.raw` or a copy), the disk after the boot disk.
    pub data_disk: Option<PathBuf>,
    /// More writable disks after the data disk (a second disk with the
    /// data label, which the guest must refuse).
    pub extra_disks: Vec<PathBuf>,
    /// How every disk is attached.
    pub disk_interface: DiskInterface,
    /// Host-to-guest TCP forwards.
    pub forwards: Vec<Forward>,
    /// The program QEMU runs for each guest connection to
    /// [`METADATA_ADDR`], with its arguments, space-separated.
    pub metadata_cmd: Option<String>,
    /// The HMP monitor's unix socket.
    pub monitor: PathBuf,
    /// Guest RAM.
    pub memory_mib: u32,
    /// Guest vCPUs.
    pub cpus: u32,
    /// Instead of the user network: the tap device of the e2e test network
    /// in this namespace (QEMU runs inside it; see [`crate::testnet`]).
    /// `forwards` and `metadata_cmd` must then be empty: the namespace's
    /// clients reach the guest directly and it serves the metadata itself.
    pub tap_netns: Option<String>,
}

impl QemuSpec {
    /// A spec with the defaults: 1024 MiB, 2 vCPUs, nothing attached.
    pub fn new(boot: Boot, monitor: PathBuf) -> QemuSpec {
        QemuSpec {
            qemu: PathBuf::from("qemu-system-x86_64"),
            boot,
            data_disk: None,
            extra_disks: Vec::new(),
            disk_interface: DiskInterface::default(),
            forwards: Vec::new(),
            metadata_cmd: None,
            monitor,
            memory_mib: 1024,
            cpus: 2,
            tap_netns: None,
        }
    }

    /// The `-netdev` value. `restrict=on` always: without it the guest
    /// could open connections to the host and beyond.
    pub fn netdev(&self) -> String {
        if self.tap_netns.is_some() {
            return format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                crate::testnet::TAP
            );
        }
        let mut v = format!("user,id=n0,restrict=on,{USER_NET}");
        for f in &self.forwards {
            v.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
        }
        if let Some(cmd) = &self.metadata_cmd {
            v.push_str(&format!(",guestfwd=tcp:{METADATA_ADDR}-cmd:{cmd}"));
        }
        v
    }

    /// The arguments after the QEMU binary. Fails on a path QEMU's option
    /// syntax cannot carry (a comma).
    pub fn args(&self) -> Result<Vec<String>> {
        let mut paths: Vec<&Path> = vec![&self.monitor];
        match &self.boot {
            Boot::Uefi {
                disk,
                ovmf_code,
                ovmf_vars,
            } => paths.extend([disk.as_path(), ovmf_code, ovmf_vars]),
            Boot::Direct { kernel, initrd, .. } => paths.extend([kernel.as_path(), initrd]),
        }
        paths.extend(self.data_disk.as_deref());
        paths.extend(self.extra_disks.iter().map(PathBuf::as_path));
        if let Some(p) = paths.iter().find(|p| p.to_string_lossy().contains(',')) {
            return Err(Error::CommaInPath(p.to_path_buf()));
        }
        if self.tap_netns.is_some() && (!self.forwards.is_empty() || self.metadata_cmd.is_some()) {
            return Err(Error::TapWithUserForwards);
        }
        if let Some(cmd) = self.metadata_cmd.as_ref().filter(|c| c.contains(',')) {
            return Err(Error::CommaInMetadataCommand(cmd.clone()));
        }
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| (*s).to_owned()));
        // One host thread runs every vCPU (`thread=single`). With one thread
        // per vCPU, QEMU 7.2 once let a guest CPU run a kernel jump label
        // another CPU was patching (6.12 panicked in hash_conntrack_raw, in
        // interrupt, during a CI run); round-robin vCPUs make cross-CPU code
        // patching ordered. The guest still sees `cpus` CPUs.
        push(&[
            "-nodefaults",
            "-machine",
            "q35",
            "-accel",
            "tcg,thread=single",
        ]);
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        // A guest halt or power-off ends QEMU; a reboot (watchdog, panic=-1)
        // ends it too instead of looping, so a test sees every stop.
        push(&["-display", "none", "-no-reboot", "-serial", "stdio"]);
        let monitor = format!("unix:{},server=on,wait=off", self.monitor.display());
        push(&["-monitor", &monitor]);
        match &self.boot {
            Boot::Uefi {
                disk,
                ovmf_code,
                ovmf_vars,
            } => {
                let code = format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    ovmf_code.display()
                );
                let vars = format!("if=pflash,format=raw,unit=1,file={}", ovmf_vars.display());
                let boot = format!(
                    "file={},format=raw,if=none,id=boot,readonly=on",
                    disk.display()
                );
                push(&["-drive", &code, "-drive", &vars, "-drive", &boot]);
                if let Some(controller) = self.disk_interface.controller() {
                    push(&["-device", controller]);
                }
                push(&["-device", &self.disk_interface.device("boot", true)]);
            }
            Boot::Direct {
                kernel,
                initrd,
                cmdline,
            } => {
                let kernel = kernel.display().to_string();
                let initrd = initrd.display().to_string();
                push(&["-kernel", &kernel, "-initrd", &initrd, "-append", cmdline]);
            }
        }
        let data_disks: Vec<(String, &PathBuf)> = self
            .data_disk
            .iter()
            .map(|d| ("data".to_owned(), d))
            .chain(
                self.extra_disks
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (format!("data{}", i + 1), d)),
            )
            .collect();
        let has_boot_disk = matches!(self.boot, Boot::Uefi { .. });
        if !has_boot_disk && !data_disks.is_empty() {
            if let Some(controller) = self.disk_interface.controller() {
                push(&["-device", controller]);
            }
        }
        for (id, disk) in &data_disks {
            let drive = format!("file={},format=raw,if=none,id={id}", disk.display());
            push(&["-drive", &drive]);
            push(&["-device", &self.disk_interface.device(id, false)]);
        }
        let netdev = self.netdev();
        push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"]);
        push(&["-device", "virtio-rng-pci"]);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uefi_spec() -> QemuSpec {
        let mut spec = QemuSpec::new(
            Boot::Uefi {
                disk: "/img/disk.raw".into(),
                ovmf_code: OVMF_CODE.into(),
                ovmf_vars: "/tmp/vm/OVMF_VARS.fd".into(),
            },
            "/tmp/vm/monitor.sock".into(),
        );
        spec.data_disk = Some("/tmp/vm/data.raw".into());
        spec.forwards = vec![
            Forward {
                host: 40001,
                guest: 6379,
            },
            Forward {
                host: 40002,
                guest: 22,
            },
        ];
        spec.metadata_cmd = Some("/x/xtask __metadata-standin --state /tmp/vm/standin.json".into());
        spec
    }

    fn direct_spec() -> QemuSpec {
        QemuSpec::new(
            Boot::Direct {
                kernel: "/img/vmlinuz".into(),
                initrd: "/img/initramfs.cpio.zst".into(),
                cmdline: "console=ttyS0,115200n8 panic=-1".into(),
            },
            "/tmp/vm/monitor.sock".into(),
        )
    }

    #[test]
    fn uefi_command_line() {
        insta::assert_snapshot!(uefi_spec().args().unwrap().join("\n"));
    }

    #[test]
    fn uefi_command_line_scsi() {
        let mut spec = uefi_spec();
        spec.disk_interface = DiskInterface::Scsi;
        insta::assert_snapshot!(spec.args().unwrap().join("\n"));
    }

    #[test]
    fn uefi_command_line_nvme_with_a_second_data_disk() {
        let mut spec = uefi_spec();
        spec.disk_interface = DiskInterface::Nvme;
        spec.extra_disks = vec!["/tmp/vm/twin.raw".into()];
        insta::assert_snapshot!(spec.args().unwrap().join("\n"));
    }

    #[test]
    fn direct_command_line_scsi_data_disk() {
        let mut spec = direct_spec();
        spec.disk_interface = DiskInterface::Scsi;
        spec.data_disk = Some("/tmp/vm/data.raw".into());
        insta::assert_snapshot!(spec.args().unwrap().join("\n"));
    }

    #[test]
    fn disk_interfaces_attach_every_disk_once() {
        for interface in DiskInterface::ALL {
            assert_eq!(DiskInterface::parse(interface.name()).unwrap(), interface);
            let mut spec = uefi_spec();
            spec.disk_interface = interface;
            spec.extra_disks = vec!["/tmp/vm/a.raw".into(), "/tmp/vm/b.raw".into()];
            let args = spec.args().unwrap();
            let values = |flag: &str| -> Vec<String> {
                args.iter()
                    .zip(args.iter().skip(1))
                    .filter(|(f, _)| *f == flag)
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let drives: Vec<String> = values("-drive")
                .into_iter()
                .filter(|d| !d.starts_with("if=pflash"))
                .collect();
            assert_eq!(drives.len(), 4, "{interface:?}");
            // The boot disk stays read-only; the data disks are writable.
            assert!(drives[0].ends_with(",id=boot,readonly=on"));
            assert!(drives[1..].iter().all(|d| !d.contains("readonly")));
            let devices = values("-device");
            for id in ["boot", "data", "data1", "data2"] {
                let on = devices
                    .iter()
                    .filter(|d| d.split(',').any(|o| o == format!("drive={id}")))
                    .count();
                assert_eq!(on, 1, "{interface:?} {id}");
            }
            let boot_index = devices.iter().filter(|d| d.contains("bootindex=0")).count();
            assert_eq!(boot_index, 1);
            let controllers = devices
                .iter()
                .filter(|d| d.starts_with("virtio-scsi-pci"))
                .count();
            assert_eq!(controllers, usize::from(interface == DiskInterface::Scsi));
            assert!(devices
                .iter()
                .all(|d| !d.contains("virtio-blk") || interface == DiskInterface::Virtio));
        }
        assert!(DiskInterface::parse("ide").is_err());
    }

    #[test]
    fn direct_command_line() {
        insta::assert_snapshot!(direct_spec().args().unwrap().join("\n"));
    }

    #[test]
    fn every_command_line_is_restricted_and_tcg_only() {
        for spec in [uefi_spec(), direct_spec()] {
            let args = spec.args().unwrap();
            let netdevs: Vec<&String> = args
                .iter()
                .zip(args.iter().skip(1))
                .filter(|(flag, _)| *flag == "-netdev")
                .map(|(_, v)| v)
                .collect();
            assert_eq!(netdevs.len(), 1, "{args:?}");
            assert!(netdevs
                .iter()
                .all(|v| v.split(',').any(|o| o == "restrict=on")));
            let joined = args.join(" ");
            assert!(!joined.contains("kvm"), "{joined}");
            assert!(!joined.contains("-enable-kvm"));
            assert!(joined.contains("-accel tcg,thread=single"));
            let hostfwds: Vec<&str> = joined
                .split(',')
                .filter(|o| o.starts_with("hostfwd="))
                .collect();
            assert!(hostfwds
                .iter()
                .all(|h| h.starts_with("hostfwd=tcp:127.0.0.1:")));
            let mut unique = hostfwds.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), hostfwds.len());
        }
    }

    #[test]
    fn commas_in_paths_are_refused() {
        let mut spec = uefi_spec();
        spec.data_disk = Some("/tmp/a,b/data.raw".into());
        assert!(matches!(spec.args(), Err(Error::CommaInPath(p)) if p.ends_with("data.raw")));
        let mut spec = uefi_spec();
        spec.extra_disks = vec!["/tmp/a,b/twin.raw".into()];
        assert!(matches!(spec.args(), Err(Error::CommaInPath(p)) if p.ends_with("twin.raw")));
        let mut spec = uefi_spec();
        spec.metadata_cmd = Some("prog --x a,b".into());
        assert!(matches!(spec.args(), Err(Error::CommaInMetadataCommand(_))));
    }

    #[test]
    fn a_tap_network_takes_no_user_forwards() {
        let mut spec = uefi_spec();
        spec.tap_netns = Some("ns".into());
        assert!(matches!(spec.args(), Err(Error::TapWithUserForwards)));
        spec.forwards.clear();
        spec.metadata_cmd = None;
        let args = spec.args().unwrap();
        let netdev = args.iter().skip_while(|a| *a != "-netdev").nth(1).unwrap();
        assert_eq!(netdev, "tap,id=n0,ifname=tap0,script=no,downscript=no");
    }
}
