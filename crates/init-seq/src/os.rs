//! The trait for the syscalls init makes itself, and the plain values it
//! takes. The network, the firewall and the metadata server are not here:
//! the boot takes them behind their own crates' traits ([`crate::Machine`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syscall_filter::Filter;

use crate::InitError;

#[cfg(target_os = "linux")]
pub mod linux;

/// What init does to the machine itself: mounts, modules, sysctls, files,
/// block devices, the governor's fork, the privilege drop, Landlock, the
/// syscall filter, the exec, sync and halt.
///
/// The real implementation is `os::linux::LinuxOs`; the recording fake is
/// `fake::FakeOs` (feature `fake`). The sequence gets one passed in (in a
/// [`crate::Machine`]), never picks one itself. Every method that can fail
/// returns [`InitError`], whose variants never carry a secret.
pub trait Os {
    /// The boot sequence is entering step `name`. Only for observers (the fake
    /// records it); the default does nothing.
    fn enter_step(&mut self, name: &str) {
        let _ = name;
    }

    /// Writes one line (no newline included) to the console.
    fn console(&mut self, line: &str);

    /// Our pid.
    fn getpid(&mut self) -> u32;

    /// The whole content of a (small) file.
    fn read_file(&mut self, path: &Path) -> Result<Vec<u8>, InitError>;

    /// `mount(2)`.
    fn mount(&mut self, mount: &Mount) -> Result<(), InitError>;

    /// Loads one kernel module file with `finit_module(2)`. A module that is
    /// already loaded (`EEXIST`) is success.
    fn load_module(&mut self, path: &Path) -> Result<(), InitError>;

    /// Writes `value` to the sysctl `key` (dotted, as in `sysctl(8)`).
    /// [`InitError::SysctlAbsent`] when this kernel has no such key.
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), InitError>;

    /// Creates directory `path` (its parent must exist) with `owner`. Fails if
    /// it exists: directories made here are meant to be fresh.
    fn mkdir(&mut self, path: &Path, owner: Owner) -> Result<(), InitError>;

    /// Creates the new file `path` with `contents` and `owner` (never follows a
    /// symlink, never opens an existing file) and flushes it to its device.
    fn write_file(&mut self, path: &Path, contents: &[u8], owner: Owner) -> Result<(), InitError>;

    /// Sets the owner and mode of an existing `path` (not following a
    /// symlink).
    fn set_owner(&mut self, path: &Path, owner: Owner) -> Result<(), InitError>;

    /// Every block device node (whole disks and partitions), sorted by
    /// path, each partition with the whole disk it belongs to.
    fn block_devices(&mut self) -> Result<Vec<BlockDevice>, InitError>;

    /// The size in bytes of the block device `path` (`BLKGETSIZE64`).
    fn block_device_size(&mut self, path: &Path) -> Result<u64, InitError>;

    /// Grows the ext4 filesystem mounted at `mount_point` to `blocks`
    /// filesystem blocks, online (`EXT4_IOC_RESIZE_FS` on its root
    /// directory). The kernel may stop short of `blocks` when the last block
    /// group would be too small to hold its own metadata.
    fn resize_ext4(&mut self, mount_point: &Path, blocks: u64) -> Result<(), InitError>;

    /// Up to `len` bytes of `path` from byte `offset` (fewer at its end).
    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, InitError>;

    /// Waits.
    fn sleep(&mut self, duration: Duration);

    /// Forks. The child runs `governor` and exits with its return value (it
    /// never returns here); the parent gets the child's pid. The child is
    /// given its end of a unix socket pair (the real implementation; `None`
    /// elsewhere) over which [`Os::install_syscall_filter`] later sends the
    /// filter's notification listener; init keeps the other end until then.
    fn fork_governor(
        &mut self,
        governor: &mut dyn FnMut(GovernorLink) -> i32,
    ) -> Result<u32, InitError>;

    /// Writes `value` to `/proc/<pid>/oom_score_adj` and checks that the
    /// kernel reports it back.
    fn set_oom_score_adj(&mut self, pid: u32, value: i32) -> Result<(), InitError>;

    /// Empties the capability bounding set and the ambient set. Needs
    /// `CAP_SETPCAP`, so it runs before `setuid`.
    fn drop_bounding_set(&mut self) -> Result<(), InitError>;

    /// `setgroups(0, NULL)`: no supplementary groups.
    fn clear_groups(&mut self) -> Result<(), InitError>;

    /// `setresgid(gid, gid, gid)`.
    fn setgid(&mut self, gid: u32) -> Result<(), InitError>;

    /// `setresuid(uid, uid, uid)`.
    fn setuid(&mut self, uid: u32) -> Result<(), InitError>;

    /// The effective uid. The seam seed 003 asks for: the check after the
    /// privilege drop reads it through here so a test can answer 0.
    fn geteuid(&mut self) -> u32;

    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    fn set_no_new_privs(&mut self) -> Result<(), InitError>;

    /// Empties the permitted, effective and inheritable capability sets.
    fn clear_capabilities(&mut self) -> Result<(), InitError>;

    /// The running kernel's Landlock ABI version; 0 when Landlock is not
    /// built in or not enabled at boot.
    fn landlock_abi(&mut self) -> u32;

    /// Restricts this process and its future children with Landlock: every
    /// right of [`LandlockRules::required_abi`] is handled, and a kernel that
    /// cannot enforce one of them is an error, never a silent best effort.
    fn landlock(&mut self, rules: &LandlockRules) -> Result<(), InitError>;

    /// Closes every file descriptor above 2 but init's end of the governor
    /// link, so the server inherits only the console.
    fn close_fds(&mut self) -> Result<(), InitError>;

    /// Installs `filter` on this process (its future children and the
    /// server it execs inherit it), with a notification listener that goes
    /// to the governor over the link made at the fork; then closes init's
    /// copies of both. Needs `no_new_privs`. Returns the compiled program's
    /// length in instructions. From here on every call init makes passes the
    /// filter: only the hand-over itself is added to it.
    fn install_syscall_filter(&mut self, filter: &Filter) -> Result<usize, InitError>;

    /// Replaces this process with `exec`. A real implementation returns only
    /// on failure; the fake returns `Ok` to stand for "the server runs now".
    fn exec(&mut self, exec: &Exec) -> Result<(), InitError>;

    /// `sync(2)`.
    fn sync(&mut self);

    /// Halts the machine. A real implementation does not return; the fake
    /// does.
    fn halt(&mut self);
}

/// The governor's end of the link init hands the syscall filter's listener
/// over (a unix socket); `None` where there is none (the fake).
#[cfg(unix)]
pub type GovernorLink = Option<std::os::fd::OwnedFd>;
/// The governor's end of the link (no descriptors off unix).
#[cfg(not(unix))]
pub type GovernorLink = Option<()>;

/// One entry of the kernel's block device list (`/sys/class/block`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockDevice {
    /// The device node, `/dev/<name>`.
    pub path: PathBuf,
    /// For a partition, the node of the whole disk holding it (`/dev/sda`
    /// for `/dev/sda1`, `/dev/nvme0n1` for `/dev/nvme0n1p1`); `None` for a
    /// whole disk.
    pub partition_of: Option<PathBuf>,
}

/// Owner and mode of a file or directory the boot sequence creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Owning uid.
    pub uid: u32,
    /// Owning gid.
    pub gid: u32,
    /// Permission bits (no file type bits).
    pub mode: u32,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} {:04o}", self.uid, self.gid, self.mode)
    }
}

/// The three flags the boot sequence mounts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    /// `MS_NOSUID`.
    pub nosuid: bool,
    /// `MS_NODEV`.
    pub nodev: bool,
    /// `MS_NOEXEC`.
    pub noexec: bool,
}

impl MountFlags {
    /// `nosuid,nodev,noexec`.
    pub const ALL: MountFlags = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: true,
    };
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ];
        let mut first = true;
        for (_, name) in names.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// One `mount(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device or pseudo-source (`proc`, `/dev/vdb`).
    pub source: String,
    /// Mount point.
    pub target: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Flags.
    pub flags: MountFlags,
    /// Filesystem-specific options, if any.
    pub data: Option<String>,
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} type {} ({}",
            self.source,
            self.target.display(),
            self.fstype,
            self.flags
        )?;
        if let Some(data) = &self.data {
            write!(f, ";{data}")?;
        }
        f.write_str(")")
    }
}

/// What the server may do beneath one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsAccess {
    /// Read and execute (the server binary, and nothing else).
    ReadExecute,
    /// Read files, list directories.
    Read,
    /// Everything but execute and creating device, fifo, socket or symlink
    /// nodes.
    ReadWrite,
}

impl fmt::Display for FsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsAccess::ReadExecute => "read+execute",
            FsAccess::Read => "read",
            FsAccess::ReadWrite => "read+write",
        })
    }
}

/// One Landlock filesystem rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsRule {
    /// The file or directory (a directory's rule covers what is beneath it).
    pub path: PathBuf,
    /// What is allowed.
    pub access: FsAccess,
    /// Skip the rule when `path` does not exist (library directories an image
    /// may not have); a missing required path is an error.
    pub if_exists: bool,
}

/// The Landlock domain the server runs in: every right of Landlock ABI
/// [`LANDLOCK_ABI`] is handled (so denied unless a rule allows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockRules {
    /// Filesystem rules.
    pub fs: Vec<FsRule>,
    /// TCP ports the server may bind; binding any other is denied.
    pub bind_tcp: Vec<u16>,
    /// TCP ports the server may connect to; empty: it connects nowhere.
    pub connect_tcp: Vec<u16>,
    /// Signals and abstract unix sockets scoped to the domain: the server
    /// can neither signal nor connect to the abstract socket of a process
    /// outside it (the governor, init's other children).
    pub scoped: bool,
}

/// The Landlock ABI whose rights the domain handles: 6 (Linux 6.12). Each
/// part of [`LandlockRules`] needs its own: file truncation (3) and ioctl on
/// device files (5) among the filesystem rights, TCP bind and connect (4),
/// the signal and abstract unix socket scopes (6).
pub const LANDLOCK_ABI: u32 = 6;

/// ABI of the filesystem rights handled (truncate: 3, ioctl on devices: 5).
const LANDLOCK_ABI_FS: u32 = 5;
/// ABI of the TCP rights.
const LANDLOCK_ABI_NET: u32 = 4;
/// ABI of the scopes.
const LANDLOCK_ABI_SCOPE: u32 = 6;

impl LandlockRules {
    /// The lowest Landlock ABI that enforces all of these rules; a kernel
    /// below it does not boot.
    pub fn required_abi(&self) -> u32 {
        // Connect is always restricted (to nothing, or to the listed ports),
        // so the TCP rights are always needed.
        let mut abi = LANDLOCK_ABI_FS.max(LANDLOCK_ABI_NET);
        if self.scoped {
            abi = abi.max(LANDLOCK_ABI_SCOPE);
        }
        abi
    }

    /// What the domain allows, for the console: `fs, net bind 6379 only,
    /// connect none, scoped signals and abstract unix sockets`.
    pub fn summary(&self) -> String {
        let ports = |ports: &[u16]| {
            if ports.is_empty() {
                "none".to_owned()
            } else {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!("{} only", list.join(", "))
            }
        };
        let mut text = format!(
            "fs, net bind {}, connect {}",
            ports(&self.bind_tcp),
            ports(&self.connect_tcp)
        );
        if self.scoped {
            text.push_str(", scoped signals and abstract unix sockets");
        }
        text
    }
}

/// An `execve(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// The program.
    pub path: PathBuf,
    /// `argv`, `argv[0]` included.
    pub argv: Vec<String>,
    /// The environment, `NAME=value` entries.
    pub env: Vec<String>,
}
