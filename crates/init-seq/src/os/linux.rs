//! The real Linux [`Os`]: the syscalls init makes itself. The network, the
//! firewall and the metadata client are the other crates' own Linux
//! implementations, which `main` passes in beside this one.
//!
//! `unsafe` appears only here, at the syscall edge, one `// SAFETY:` comment
//! per block; raw return codes go through `check`.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use nix::mount::MsFlags;
use nix::unistd::{ForkResult, Gid, Uid};
use syscall_filter::linux::InstallFlags;
use syscall_filter::Filter;

use crate::os::{BlockDevice, Exec, FsAccess, GovernorLink, LandlockRules, Mount, Os, Owner};
use crate::parse::MODULE_SUFFIXES;
use crate::InitError;

/// Files read whole are small `/proc` files and the image's own text files;
/// anything larger is not what we expect.
const MAX_READ: u64 = 1 << 20;

/// `MODULE_INIT_COMPRESSED_FILE` (Linux 5.17): the kernel decompresses.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)`: a block device's size in
/// bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// `EXT4_IOC_RESIZE_FS` = `_IOW('f', 16, __u64)`: grow a mounted ext4
/// filesystem to the given block count.
const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The Landlock ABI whose rights the domain handles ([`crate::LANDLOCK_ABI`]),
/// every one a hard requirement: a kernel that lacks one fails the step.
const LANDLOCK_ABI: ABI = ABI::V6;

/// `LANDLOCK_CREATE_RULESET_VERSION`: `landlock_create_ruleset` answers the
/// ABI version instead of creating a ruleset.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Init's own syscalls, for real.
#[derive(Debug, Default)]
pub struct LinuxOs {
    /// Init's end of the link to the governor, from the fork until the
    /// syscall filter's listener is handed over (or init halts).
    governor_link: Option<OwnedFd>,
}

impl LinuxOs {
    /// Nothing is opened until a step needs it.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Converts a raw `-1`-and-errno return into a `Result`.
fn check(op: &'static str, ret: libc::c_long) -> Result<libc::c_long, InitError> {
    if ret < 0 {
        Err(InitError::syscall(op, io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

fn errno(error: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(error as i32)
}

fn cstring(path: &Path) -> Result<CString, InitError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| InitError::io("path", path, io::Error::from(io::ErrorKind::InvalidInput)))
}

/// `/dev/<name>` for a kernel block device name; `None` for a name that
/// could leave `/dev` (empty, dotted, with a slash).
fn dev_node(name: &[u8]) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with(b".") || name.contains(&b'/') {
        return None;
    }
    Some(Path::new("/dev").join(OsStr::from_bytes(name)))
}

/// `/proc/sys/...` for a dotted key; the key's characters are checked so it
/// can only name a file below `/proc/sys`.
fn sysctl_path(key: &str) -> Result<PathBuf, InitError> {
    let valid = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        && key.split('.').all(|part| !part.is_empty());
    if !valid {
        return Err(InitError::plan(
            format!("sysctl key {key:?}"),
            "not a valid key",
        ));
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

impl Os for LinuxOs {
    fn console(&mut self, line: &str) {
        // One write per line so concurrent writers (the governor) do not
        // interleave inside it. A console that cannot be written to leaves
        // nothing better to do.
        let mut text = String::with_capacity(line.len().saturating_add(1));
        text.push_str(line);
        text.push('\n');
        let _ = io::stderr().write_all(text.as_bytes());
    }

    fn getpid(&mut self) -> u32 {
        std::process::id()
    }

    fn read_file(&mut self, path: &Path) -> Result<Vec<u8>, InitError> {
        let file = File::open(path).map_err(|e| InitError::io("open", path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_READ.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| InitError::io("read", path, e))?;
        if bytes.len() as u64 > MAX_READ {
            return Err(InitError::io(
                "read",
                path,
                io::Error::new(io::ErrorKind::InvalidData, "larger than 1 MiB"),
            ));
        }
        Ok(bytes)
    }

    fn mount(&mut self, mount: &Mount) -> Result<(), InitError> {
        let mut flags = MsFlags::empty();
        flags.set(MsFlags::MS_NOSUID, mount.flags.nosuid);
        flags.set(MsFlags::MS_NODEV, mount.flags.nodev);
        flags.set(MsFlags::MS_NOEXEC, mount.flags.noexec);
        nix::mount::mount(
            Some(mount.source.as_str()),
            &mount.target,
            Some(mount.fstype.as_str()),
            flags,
            mount.data.as_deref(),
        )
        .map_err(|e| InitError::io("mount", &mount.target, errno(e)))
    }

    fn load_module(&mut self, path: &Path) -> Result<(), InitError> {
        let file = File::open(path).map_err(|e| InitError::io("open", path, e))?;
        let name = path.as_os_str().as_bytes();
        let compressed = MODULE_SUFFIXES
            .iter()
            .skip(1)
            .any(|suffix| name.ends_with(suffix.as_bytes()));
        let flags = if compressed {
            MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        let params = c"";
        // SAFETY: finit_module reads the open descriptor and a NUL-terminated
        // parameter string that outlives the call; it writes no user memory.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                file.as_raw_fd(),
                params.as_ptr(),
                flags,
            )
        };
        if ret < 0 {
            let error = io::Error::last_os_error();
            // Built in, or loaded already (a dependency of an earlier one).
            if error.raw_os_error() == Some(libc::EEXIST) {
                return Ok(());
            }
            return Err(InitError::io("finit_module", path, error));
        }
        Ok(())
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), InitError> {
        let path = sysctl_path(key)?;
        let mut file = match OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(InitError::SysctlAbsent {
                    key: key.to_owned(),
                })
            }
            Err(e) => return Err(InitError::io("open", &path, e)),
        };
        file.write_all(value.as_bytes())
            .map_err(|e| InitError::io("write", &path, e))?;
        drop(file);
        // The kernel may clamp or ignore a value; only what it reports counts.
        let now = self.read_file(&path)?;
        let now = String::from_utf8_lossy(&now);
        // Multi-value sysctls (`tcp_mem`) read back tab-separated.
        if !now.split_whitespace().eq(value.split_whitespace()) {
            return Err(InitError::SysctlMismatch {
                key: key.to_owned(),
                wanted: value.to_owned(),
                got: now.trim().chars().take(64).collect(),
            });
        }
        Ok(())
    }

    fn mkdir(&mut self, path: &Path, owner: Owner) -> Result<(), InitError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| InitError::io("mkdir", path, e))?;
        self.set_owner(path, owner)
    }

    fn write_file(&mut self, path: &Path, contents: &[u8], owner: Owner) -> Result<(), InitError> {
        // Created 0600 at most and owned by root until the content is in and
        // the owner and final mode are set.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| InitError::io("create", path, e))?;
        file.write_all(contents)
            .map_err(|e| InitError::io("write", path, e))?;
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
            .map_err(|e| InitError::io("fchown", path, e))?;
        file.set_permissions(fs::Permissions::from_mode(owner.mode))
            .map_err(|e| InitError::io("fchmod", path, e))?;
        file.sync_all().map_err(|e| InitError::io("fsync", path, e))
    }

    fn set_owner(&mut self, path: &Path, owner: Owner) -> Result<(), InitError> {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
            .map_err(|e| InitError::io("lchown", path, e))?;
        let meta = fs::symlink_metadata(path).map_err(|e| InitError::io("lstat", path, e))?;
        if meta.file_type().is_symlink() {
            return Err(InitError::io(
                "chmod",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "is a symlink"),
            ));
        }
        fs::set_permissions(path, fs::Permissions::from_mode(owner.mode))
            .map_err(|e| InitError::io("chmod", path, e))
    }

    fn block_devices(&mut self) -> Result<Vec<BlockDevice>, InitError> {
        let sys = Path::new("/sys/class/block");
        let mut devices = Vec::new();
        for entry in fs::read_dir(sys).map_err(|e| InitError::io("readdir", sys, e))? {
            let entry = entry.map_err(|e| InitError::io("readdir", sys, e))?;
            let name = entry.file_name();
            let Some(path) = dev_node(name.as_bytes()) else {
                continue;
            };
            let entry_path = entry.path();
            // A partition's entry has a `partition` file, and its sysfs
            // directory sits inside its disk's (`.../block/sda/sda1`).
            let partition_of = if entry_path.join("partition").exists() {
                let target = fs::read_link(&entry_path)
                    .map_err(|e| InitError::io("readlink", &entry_path, e))?;
                let disk = target
                    .parent()
                    .and_then(Path::file_name)
                    .and_then(|disk| dev_node(disk.as_bytes()));
                Some(disk.ok_or_else(|| {
                    InitError::io(
                        "readlink",
                        &entry_path,
                        io::Error::new(io::ErrorKind::InvalidData, "a partition without a disk"),
                    )
                })?)
            } else {
                None
            };
            devices.push(BlockDevice { path, partition_of });
        }
        devices.sort();
        Ok(devices)
    }

    fn block_device_size(&mut self, path: &Path) -> Result<u64, InitError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| InitError::io("open", path, e))?;
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which
        // points at a live, writable u64 for the whole call.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
        if ret < 0 {
            return Err(InitError::io(
                "ioctl(BLKGETSIZE64)",
                path,
                io::Error::last_os_error(),
            ));
        }
        Ok(size)
    }

    fn resize_ext4(&mut self, mount_point: &Path, blocks: u64) -> Result<(), InitError> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(mount_point)
            .map_err(|e| InitError::io("open", mount_point, e))?;
        // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 through the pointer, which
        // points at a live u64 for the whole call; it writes no user memory.
        let ret =
            unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &blocks as *const u64) };
        if ret < 0 {
            return Err(InitError::io(
                "ioctl(EXT4_IOC_RESIZE_FS)",
                mount_point,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, InitError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| InitError::io("open", path, e))?;
        let mut bytes = vec![0u8; len];
        let mut filled = 0usize;
        while let Some(rest) = bytes.get_mut(filled..) {
            if rest.is_empty() {
                break;
            }
            let at = offset.saturating_add(filled as u64);
            match file.read_at(rest, at) {
                Ok(0) => break,
                Ok(n) => filled = filled.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(InitError::io("read", path, e)),
            }
        }
        bytes.truncate(filled);
        Ok(bytes)
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn fork_governor(
        &mut self,
        governor: &mut dyn FnMut(GovernorLink) -> i32,
    ) -> Result<u32, InitError> {
        // Both ends close on exec: the server inherits neither.
        let (ours, theirs) = UnixStream::pair().map_err(|e| InitError::syscall("socketpair", e))?;
        // SAFETY: the boot sequence forks only after checking that this
        // process has one thread, so no lock can be held by a thread that
        // does not exist in the child.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Parent { child }) => {
                drop(theirs);
                self.governor_link = Some(OwnedFd::from(ours));
                u32::try_from(child.as_raw()).map_err(|_| {
                    InitError::syscall("fork", io::Error::from(io::ErrorKind::InvalidData))
                })
            }
            Ok(ForkResult::Child) => {
                // The governor opens what it needs itself; it inherits no
                // descriptor but the console and its end of the link.
                drop(ours);
                let link = OwnedFd::from(theirs);
                let _ = close_except(link.as_raw_fd());
                let code = governor(Some(link));
                // SAFETY: _exit ends the child without running the parent's
                // destructors or atexit handlers twice.
                unsafe { libc::_exit(code) }
            }
            Err(e) => Err(InitError::syscall("fork", errno(e))),
        }
    }

    fn set_oom_score_adj(&mut self, pid: u32, value: i32) -> Result<(), InitError> {
        let path = PathBuf::from(format!("/proc/{pid}/oom_score_adj"));
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| InitError::io("open", &path, e))?;
        file.write_all(value.to_string().as_bytes())
            .map_err(|e| InitError::io("write", &path, e))?;
        drop(file);
        let now = self.read_file(&path)?;
        let now = String::from_utf8_lossy(&now);
        if now.trim() == value.to_string() {
            Ok(())
        } else {
            Err(InitError::io(
                "read back",
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "reads {:?}",
                        now.trim().chars().take(16).collect::<String>()
                    ),
                ),
            ))
        }
    }

    fn drop_bounding_set(&mut self) -> Result<(), InitError> {
        let last = last_capability()?;
        for cap in 0..=last {
            // SAFETY: prctl with integer arguments only.
            let ret =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            check("prctl(PR_CAPBSET_DROP)", ret.into())?;
        }
        // SAFETY: prctl with integer arguments only.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        check("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", ret.into())?;
        Ok(())
    }

    fn clear_groups(&mut self) -> Result<(), InitError> {
        nix::unistd::setgroups(&[]).map_err(|e| InitError::syscall("setgroups", errno(e)))
    }

    fn setgid(&mut self, gid: u32) -> Result<(), InitError> {
        let gid = Gid::from_raw(gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| InitError::syscall("setresgid", errno(e)))
    }

    fn setuid(&mut self, uid: u32) -> Result<(), InitError> {
        let uid = Uid::from_raw(uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| InitError::syscall("setresuid", errno(e)))
    }

    fn geteuid(&mut self) -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn set_no_new_privs(&mut self) -> Result<(), InitError> {
        // SAFETY: prctl with integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
        check("prctl(PR_SET_NO_NEW_PRIVS)", ret.into())?;
        Ok(())
    }

    fn clear_capabilities(&mut self) -> Result<(), InitError> {
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let empty = [CapData::default(); 2];
        // SAFETY: the header and the two-element data array are live,
        // correctly laid out (repr(C)) for _LINUX_CAPABILITY_VERSION_3.
        let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, empty.as_ptr()) };
        check("capset", ret)?;
        let mut now = [CapData::default(); 2];
        // SAFETY: as above; capget writes two CapData into `now`.
        let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, now.as_mut_ptr()) };
        check("capget", ret)?;
        if now != empty {
            return Err(InitError::syscall(
                "capset",
                io::Error::other("capability sets still not empty"),
            ));
        }
        Ok(())
    }

    fn landlock_abi(&mut self) -> u32 {
        // SAFETY: with a null attribute pointer, size 0 and the VERSION flag
        // the kernel reads and writes no memory and creates no descriptor; it
        // returns the ABI version or fails (ENOSYS, EOPNOTSUPP).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        u32::try_from(ret).unwrap_or(0)
    }

    fn landlock(&mut self, rules: &LandlockRules) -> Result<(), InitError> {
        apply_landlock(rules)
    }

    fn close_fds(&mut self) -> Result<(), InitError> {
        match &self.governor_link {
            Some(link) => close_except(link.as_raw_fd()),
            None => close_from(3),
        }
    }

    fn install_syscall_filter(&mut self, filter: &Filter) -> Result<usize, InitError> {
        let seccomp = |e: syscall_filter::Error| InitError::Seccomp {
            reason: e.to_string(),
        };
        let link = self
            .governor_link
            .take()
            .ok_or_else(|| InitError::Seccomp {
                reason: "no link to the governor to hand the listener over".to_owned(),
            })?;
        let socket = u32::try_from(link.as_raw_fd()).map_err(|_| InitError::Seccomp {
            reason: "the governor link has a negative descriptor".to_owned(),
        })?;
        let program =
            syscall_filter::compile(&filter.with_listener_handoff(socket)).map_err(seccomp)?;
        let flags = InstallFlags {
            new_listener: true,
            // A signal to a server thread blocked in a refused call must
            // not restart the call and notify it twice.
            wait_killable_recv: true,
            ..InstallFlags::default()
        };
        let listener = syscall_filter::linux::install(&program, flags)
            .map_err(seccomp)?
            .ok_or_else(|| InitError::Seccomp {
                reason: "the kernel gave no notification listener".to_owned(),
            })?;
        // Allowed by the hand-over rule the filter was given above.
        syscall_filter::linux::send_fd(link.as_fd(), listener.as_fd()).map_err(seccomp)?;
        // Init's copies go now: a listener left in a filtered process would
        // outlive the governor's.
        drop(listener);
        drop(link);
        Ok(program.len())
    }

    fn exec(&mut self, exec: &Exec) -> Result<(), InitError> {
        let path = cstring(&exec.path)?;
        let to_c = |items: &[String]| -> Result<Vec<CString>, InitError> {
            items
                .iter()
                .map(|s| {
                    CString::new(s.as_bytes()).map_err(|_| {
                        InitError::io(
                            "execve",
                            &exec.path,
                            io::Error::from(io::ErrorKind::InvalidInput),
                        )
                    })
                })
                .collect()
        };
        let argv = to_c(&exec.argv)?;
        let env = to_c(&exec.env)?;
        match nix::unistd::execve(&path, &argv, &env) {
            Err(e) => Err(InitError::io("execve", &exec.path, errno(e))),
            Ok(never) => match never {},
        }
    }

    fn sync(&mut self) {
        nix::unistd::sync();
    }

    fn halt(&mut self) {
        // After the privilege drop init may not power off: closing its end
        // of the link tells the governor, which then does (it waits for the
        // listener and finds the link closed instead).
        self.governor_link = None;
        // Power off rather than RB_HALT_SYSTEM: both stop the machine for
        // good, but only a power-off tells the hypervisor (QEMU exits, a cloud
        // instance shows as stopped). See ARCHITECTURE.md, "Halting".
        // reboot(2) does not return on success. If it fails (not allowed),
        // PID 1 must still not exit: an exiting init panics the kernel, and a
        // panic may reboot into the same failure; stay stopped instead.
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn last_capability() -> Result<u32, InitError> {
    let path = Path::new("/proc/sys/kernel/cap_last_cap");
    let text = fs::read_to_string(path).map_err(|e| InitError::io("read", path, e))?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&last| last < 64)
        .ok_or(InitError::Proc {
            file: "/proc/sys/kernel/cap_last_cap",
            reason: "not a capability number below 64",
        })
}

/// Closes every descriptor from `first` on.
/// Closes every descriptor above 2 but `keep`.
fn close_except(keep: RawFd) -> Result<(), InitError> {
    let keep = libc::c_uint::try_from(keep).map_err(|_| {
        InitError::syscall("close_range", io::Error::from(io::ErrorKind::InvalidInput))
    })?;
    if keep > 3 {
        close_range(3, keep - 1)?;
    }
    if keep >= 3 {
        close_from(keep.saturating_add(1))
    } else {
        close_from(3)
    }
}

fn close_from(first: libc::c_uint) -> Result<(), InitError> {
    close_range(first, libc::c_uint::MAX)
}

fn close_range(first: libc::c_uint, last: libc::c_uint) -> Result<(), InitError> {
    // SAFETY: close_range only closes descriptors; nothing in this process
    // uses one above 2 after this point (the caller is about to exec or to
    // hand over to the governor, which opens its own).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    check("close_range", ret)?;
    Ok(())
}

fn landlock_error(error: impl std::fmt::Display) -> InitError {
    InitError::Landlock {
        reason: error.to_string(),
    }
}

fn fs_access(access: FsAccess) -> BitFlags<AccessFs> {
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    match access {
        FsAccess::ReadExecute => read | AccessFs::Execute,
        FsAccess::Read => read,
        FsAccess::ReadWrite => {
            AccessFs::from_all(LANDLOCK_ABI)
                & !(AccessFs::Execute
                    | AccessFs::MakeChar
                    | AccessFs::MakeBlock
                    | AccessFs::MakeFifo
                    | AccessFs::MakeSock
                    | AccessFs::MakeSym
                    | AccessFs::IoctlDev)
        }
    }
}

/// Builds and enforces the ruleset. Every right of [`LANDLOCK_ABI`] is
/// handled (denied unless a rule grants it) as a hard requirement: a kernel
/// that cannot enforce one of them makes this fail, nothing is dropped
/// silently.
fn apply_landlock(rules: &LandlockRules) -> Result<(), InitError> {
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(landlock_error)?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))
        .map_err(landlock_error)?;
    let ruleset = if rules.scoped {
        ruleset
            .scope(Scope::from_all(LANDLOCK_ABI))
            .map_err(landlock_error)?
    } else {
        ruleset
    };
    let mut ruleset = ruleset.create().map_err(landlock_error)?;
    for rule in &rules.fs {
        if rule.if_exists && fs::symlink_metadata(&rule.path).is_err() {
            continue;
        }
        let fd = PathFd::new(&rule.path).map_err(|e| InitError::Landlock {
            reason: format!("{}: {e}", rule.path.display()),
        })?;
        // Directory rights on a file are refused under a hard requirement
        // (the kernel says EINVAL), so a file's rule keeps only file rights.
        let is_dir = fs::metadata(&rule.path).is_ok_and(|m| m.is_dir());
        let mut access = fs_access(rule.access);
        if !is_dir {
            access &= AccessFs::from_file(LANDLOCK_ABI);
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(landlock_error)?;
    }
    for port in &rules.bind_tcp {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::BindTcp))
            .map_err(landlock_error)?;
    }
    for port in &rules.connect_tcp {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(landlock_error)?;
    }
    let status = ruleset.restrict_self().map_err(landlock_error)?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(InitError::Landlock {
            reason: format!("the kernel enforces the domain only {:?}", status.ruleset),
        });
    }
    Ok(())
}
