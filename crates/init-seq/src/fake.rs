//! Recording fakes for the boot's tests. [`FakeOs`] is init's own syscalls:
//! every call is kept, in order, as a typed [`Call`]; any call, or the first
//! call of a named step, can be made to fail. [`FakeMachine`] puts it beside
//! the leaf crates' own fakes (netconf's `FakeNetwork`, pf-rules'
//! `FakeFirewall`, metadata-fetch's `FakeMetadata`), which record their
//! calls into the same journal, so one record holds every call in order;
//! those are failed through their own fakes' injection.
//!
//! [`FakeMachine::reference`] is a machine on which the seed-000 boot
//! succeeds: the reference spec, three modules, 2 GiB of RAM, a boot disk
//! and a data disk ([`FakeOs::reference`]), a DHCP server leasing
//! [`REFERENCE_LEASE`], a firewall that takes every phase, and a metadata
//! server with the test secrets [`TEST_ADMIN_PASS`] and [`TEST_VISITOR_PASS`].
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use appliance_spec::REFERENCE_TOML;
use metadata_fetch::fake::FakeMetadata;
use netconf::fake::FakeNetwork;
use netconf::Lease;
use pf_rules::fake::FakeFirewall;

use crate::os::{BlockDevice, Exec, LandlockRules, Mount, Os, Owner, LANDLOCK_ABI};
use crate::parse::{EXT4_SUPERBLOCK_LEN, EXT4_SUPERBLOCK_OFFSET};
use crate::plan::{MODULES_ORDER_PATH, SPEC_PATH};
use crate::{BootOptions, Fatal, Governor, InitError, Machine};
use syscall_filter::Filter;

/// The admin password [`FakeMachine::reference`]'s metadata server serves
/// for `redis-admin-pass`.
pub const TEST_ADMIN_PASS: &str = "fake-admin-Zq8v1-cleartext";
/// The visitor password [`FakeMachine::reference`]'s metadata server serves
/// for `redis-visitor-pass`.
pub const TEST_VISITOR_PASS: &str = "fake-visitor-Kp3x9-cleartext";
/// The lease [`FakeMachine::reference`]'s DHCP server gives: GCE's shape, a
/// /32 with the router outside it.
pub const REFERENCE_LEASE: Lease = Lease {
    address: Ipv4Addr::new(10, 128, 0, 7),
    prefix_len: 32,
    router: Some(Ipv4Addr::new(10, 128, 0, 1)),
    mtu: Some(1460),
    lease_secs: Some(86_400),
    server_id: Ipv4Addr::new(10, 128, 0, 1),
};
/// The module order [`FakeOs::reference`] serves.
pub const REFERENCE_MODULES_ORDER: &str = "\
/lib/modules/6.1.0-cloud-amd64/kernel/drivers/virtio/virtio.ko
/lib/modules/6.1.0-cloud-amd64/kernel/drivers/virtio/virtio_ring.ko
/lib/modules/6.1.0-cloud-amd64/kernel/drivers/net/virtio_net.ko
";
/// The pid an injected `getpid` failure answers.
pub const NOT_PID1: u32 = 4242;
/// The pid [`FakeOs::fork_governor`] answers.
pub const GOVERNOR_PID: u32 = 2;

/// One recorded call: to the [`Os`] ([`FakeOs`] records these), or, in a
/// [`FakeMachine`], to one of the leaf fakes (the last three variants, each
/// the leaf fake's own record).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// The sequence entered a step (not a syscall: a marker).
    Step(String),
    /// A console line.
    Console(String),
    /// `getpid`.
    Getpid,
    /// Read a whole file.
    ReadFile(PathBuf),
    /// `mount`.
    Mount(Mount),
    /// `finit_module`.
    LoadModule(PathBuf),
    /// A sysctl write.
    WriteSysctl {
        /// Dotted key.
        key: String,
        /// Value.
        value: String,
    },
    /// `mkdir` with owner and mode.
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// Owner and mode.
        owner: Owner,
    },
    /// A file created with owner and mode.
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Owner and mode.
        owner: Owner,
        /// Its content (lossy UTF-8).
        contents: String,
    },
    /// Owner and mode set on an existing path.
    SetOwner {
        /// The path.
        path: PathBuf,
        /// Owner and mode.
        owner: Owner,
    },
    /// The block device list.
    BlockDevices,
    /// A block device's size asked for.
    BlockDeviceSize(PathBuf),
    /// An online ext4 resize.
    ResizeExt4 {
        /// The mount point whose filesystem grows.
        mount_point: PathBuf,
        /// The block count asked for.
        blocks: u64,
    },
    /// A positioned read.
    ReadAt {
        /// The file or device.
        path: PathBuf,
        /// Offset.
        offset: u64,
        /// Length asked for.
        len: usize,
    },
    /// A pause.
    Sleep(Duration),
    /// The governor fork.
    ForkGovernor,
    /// `oom_score_adj` written for a process.
    SetOomScoreAdj {
        /// The process.
        pid: u32,
        /// The value.
        value: i32,
    },
    /// Bounding and ambient capability sets emptied.
    DropBoundingSet,
    /// `setgroups(0, NULL)`.
    ClearGroups,
    /// `setresgid`.
    Setgid(u32),
    /// `setresuid`.
    Setuid(u32),
    /// `geteuid`.
    Geteuid,
    /// `PR_SET_NO_NEW_PRIVS`.
    SetNoNewPrivs,
    /// `capset` with empty sets.
    ClearCapabilities,
    /// The kernel's Landlock ABI asked for.
    LandlockAbi,
    /// Landlock applied.
    Landlock(LandlockRules),
    /// Descriptors above 2 closed.
    CloseFds,
    /// The syscall filter installed and its listener handed over.
    SyscallFilter(Filter),
    /// `execve`.
    Exec(Exec),
    /// `sync`.
    Sync,
    /// The machine halted.
    Halt,
    /// netconf's `FakeNetwork` was asked to bring the network up.
    Network(netconf::fake::NetworkCall),
    /// pf-rules' `FakeFirewall` was asked to load or read back a phase.
    Firewall(pf_rules::fake::Call),
    /// metadata-fetch's `FakeMetadata` was connected to, asked for a key,
    /// or its connection was dropped.
    Metadata(metadata_fetch::fake::Call),
}

impl Call {
    /// Whether this is a real call (not a step marker).
    pub fn is_syscall(&self) -> bool {
        !matches!(self, Call::Step(_))
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Step(name) => write!(f, "== {name}"),
            Call::Console(line) => write!(f, "console {line:?}"),
            Call::Getpid => f.write_str("getpid"),
            Call::ReadFile(path) => write!(f, "read_file {}", path.display()),
            Call::Mount(mount) => write!(f, "mount {mount}"),
            Call::LoadModule(path) => write!(f, "finit_module {}", path.display()),
            Call::WriteSysctl { key, value } => write!(f, "sysctl {key} = {value}"),
            Call::Mkdir { path, owner } => write!(f, "mkdir {} {owner}", path.display()),
            Call::WriteFile {
                path,
                owner,
                contents,
            } => write!(f, "write_file {} {owner} {contents:?}", path.display()),
            Call::SetOwner { path, owner } => write!(f, "set_owner {} {owner}", path.display()),
            Call::BlockDevices => f.write_str("block_devices"),
            Call::BlockDeviceSize(path) => write!(f, "blkgetsize64 {}", path.display()),
            Call::ResizeExt4 {
                mount_point,
                blocks,
            } => write!(
                f,
                "ext4 resize {} to {blocks} blocks",
                mount_point.display()
            ),
            Call::ReadAt { path, offset, len } => {
                write!(f, "read_at {} offset {offset} len {len}", path.display())
            }
            Call::Sleep(duration) => write!(f, "sleep {} ms", duration.as_millis()),
            Call::ForkGovernor => f.write_str("fork_governor"),
            Call::SetOomScoreAdj { pid, value } => write!(f, "oom_score_adj {pid} = {value}"),
            Call::DropBoundingSet => f.write_str("drop_bounding_set"),
            Call::ClearGroups => f.write_str("setgroups []"),
            Call::Setgid(gid) => write!(f, "setresgid {gid}"),
            Call::Setuid(uid) => write!(f, "setresuid {uid}"),
            Call::Geteuid => f.write_str("geteuid"),
            Call::SetNoNewPrivs => f.write_str("prctl no_new_privs"),
            Call::ClearCapabilities => f.write_str("capset empty"),
            Call::LandlockAbi => f.write_str("landlock_create_ruleset version"),
            Call::Landlock(rules) => {
                f.write_str("landlock")?;
                for rule in &rules.fs {
                    let optional = if rule.if_exists { "?" } else { "" };
                    write!(f, " {}{optional}:{}", rule.path.display(), rule.access)?;
                }
                write!(
                    f,
                    " bind_tcp:{:?} connect_tcp:{:?} scoped:{}",
                    rules.bind_tcp, rules.connect_tcp, rules.scoped
                )
            }
            Call::CloseFds => f.write_str("close_fds 3.."),
            Call::SyscallFilter(filter) => {
                write!(f, "seccomp default {:?}:", filter.default)?;
                for rule in &filter.rules {
                    write!(f, " {}", rule.syscall.name())?;
                    if !rule.when.is_empty() {
                        f.write_str("[")?;
                        for (i, c) in rule.when.iter().enumerate() {
                            if i > 0 {
                                f.write_str(" & ")?;
                            }
                            write!(f, "arg{} {:?}", c.arg, c.test)?;
                        }
                        f.write_str("]")?;
                    }
                    if rule.action != syscall_filter::Action::Allow {
                        write!(f, "={:?}", rule.action)?;
                    }
                }
                Ok(())
            }
            Call::Exec(exec) => write!(
                f,
                "execve {} {:?} env {:?}",
                exec.path.display(),
                exec.argv,
                exec.env
            ),
            Call::Sync => f.write_str("sync"),
            Call::Halt => f.write_str("halt"),
            Call::Network(netconf::fake::NetworkCall::BringUp { deadline }) => {
                write!(f, "network bring_up deadline {} s", deadline.as_secs())
            }
            Call::Firewall(pf_rules::fake::Call::Apply { phase, .. }) => {
                write!(f, "firewall apply {}", phase.name())
            }
            Call::Firewall(pf_rules::fake::Call::Verify { phase, .. }) => {
                write!(f, "firewall verify {}", phase.name())
            }
            Call::Metadata(metadata_fetch::fake::Call::Connect(metadata)) => write!(
                f,
                "metadata connect {} deadline {} ms attempts {}",
                metadata.base_url(),
                metadata.deadline_ms(),
                metadata.attempts()
            ),
            Call::Metadata(metadata_fetch::fake::Call::Fetch { key }) => {
                write!(f, "metadata fetch {key}")
            }
            Call::Metadata(metadata_fetch::fake::Call::Close) => f.write_str("metadata close"),
        }
    }
}

/// When the fake fails a call.
enum Failure {
    /// The call with this index in the record.
    Call(usize),
    /// The first call made in the step with this name. The three calls that
    /// cannot fail fail their check instead: `getpid` answers [`NOT_PID1`],
    /// `geteuid` and `landlock_abi` answer 0.
    Step(String),
    /// Every call the predicate picks.
    When(Box<dyn Fn(&Call) -> bool>),
}

/// Where the calls go: [`FakeOs`]'s own, shared with the leaf fakes'
/// observers in a [`FakeMachine`].
type Journal = Arc<Mutex<Vec<Call>>>;

/// The recording fake of init's own syscalls. Build one with [`FakeOs::new`]
/// or [`FakeOs::reference`], adjust it with the `with_*`/`fail_*` methods,
/// put it in a [`FakeMachine`] and boot that, then read [`FakeOs::calls`].
pub struct FakeOs {
    journal: Journal,
    failures: Vec<Failure>,
    step_failure_pending: bool,
    pid: u32,
    euid: u32,
    euid_override: Option<u32>,
    landlock_abi: u32,
    files: BTreeMap<PathBuf, Vec<u8>>,
    devices: BTreeMap<PathBuf, FakeDevice>,
    /// Mount point -> device, for the ext4 mounts made.
    mounted: BTreeMap<PathBuf, PathBuf>,
    absent_sysctls: BTreeSet<String>,
    resize_shortfall: u64,
    listings: usize,
}

/// One fake block device.
#[derive(Debug, Clone)]
struct FakeDevice {
    /// Its bytes from offset 1024 on.
    superblock: Vec<u8>,
    /// Its size, bytes.
    size: u64,
    /// The whole disk, for a partition.
    partition_of: Option<PathBuf>,
    /// The first device listing (0-based) that shows it.
    listed_from: usize,
}

impl FakeDevice {
    fn new(superblock: &[u8], partition_of: Option<PathBuf>) -> Self {
        let size = crate::parse::ext4_superblock(superblock)
            .map(|sb| sb.size_bytes())
            .filter(|&size| size > 0)
            .unwrap_or(1 << 30);
        FakeDevice {
            superblock: superblock.to_vec(),
            size,
            partition_of,
            listed_from: 0,
        }
    }
}

impl fmt::Debug for FakeOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOs")
            .field("calls", &self.journal().len())
            .finish_non_exhaustive()
    }
}

impl Default for FakeOs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeOs {
    /// An empty machine: PID 1, root, no files, no devices, no secrets.
    pub fn new() -> Self {
        FakeOs {
            journal: Journal::default(),
            failures: Vec::new(),
            step_failure_pending: false,
            pid: 1,
            euid: 0,
            euid_override: None,
            landlock_abi: LANDLOCK_ABI,
            files: BTreeMap::new(),
            devices: BTreeMap::new(),
            mounted: BTreeMap::new(),
            absent_sysctls: BTreeSet::new(),
            resize_shortfall: 0,
            listings: 0,
        }
    }

    /// The seed-000 machine's own part (in [`FakeMachine::reference`], the
    /// boot succeeds end to end).
    pub fn reference() -> Self {
        FakeOs::new()
            .with_file(SPEC_PATH, REFERENCE_TOML)
            .with_file(MODULES_ORDER_PATH, REFERENCE_MODULES_ORDER)
            .with_file(
                "/proc/meminfo",
                "MemTotal:        2097152 kB\nMemFree:         1048576 kB\n",
            )
            .with_file("/proc/self/status", "Name:\tinit\nThreads:\t1\n")
            .with_device("/dev/vda", &[0u8; EXT4_SUPERBLOCK_LEN])
            .with_device("/dev/vdb", &ext4_superblock_bytes(b"appliance-data"))
    }

    /// Answers `pid` to `getpid`.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = pid;
        self
    }

    /// Serves `contents` for `read_file(path)`.
    pub fn with_file(mut self, path: impl Into<PathBuf>, contents: impl AsRef<[u8]>) -> Self {
        self.files.insert(path.into(), contents.as_ref().to_vec());
        self
    }

    /// A whole disk whose bytes from offset 1024 are `superblock`, exactly
    /// as large as the filesystem it holds (if any; 1 GiB otherwise).
    pub fn with_device(mut self, path: impl Into<PathBuf>, superblock: &[u8]) -> Self {
        self.devices
            .insert(path.into(), FakeDevice::new(superblock, None));
        self
    }

    /// A partition of the whole disk `disk` (which must be added too for
    /// the listing to be consistent), holding `superblock`.
    pub fn with_partition(
        mut self,
        path: impl Into<PathBuf>,
        disk: impl Into<PathBuf>,
        superblock: &[u8],
    ) -> Self {
        self.devices
            .insert(path.into(), FakeDevice::new(superblock, Some(disk.into())));
        self
    }

    /// A whole disk holding `superblock` that shows up only from the
    /// `listing`-th device listing on (0-based): one still being probed.
    pub fn with_late_device(
        mut self,
        path: impl Into<PathBuf>,
        superblock: &[u8],
        listing: usize,
    ) -> Self {
        let mut device = FakeDevice::new(superblock, None);
        device.listed_from = listing;
        self.devices.insert(path.into(), device);
        self
    }

    /// Makes the device at `path` `bytes` large (a disk grown under its
    /// filesystem).
    pub fn with_device_size(mut self, path: impl AsRef<Path>, bytes: u64) -> Self {
        if let Some(device) = self.devices.get_mut(path.as_ref()) {
            device.size = bytes;
        }
        self
    }

    /// Makes the kernel stop an online resize `short_by` blocks before the
    /// count asked for (as it does when the last block group would be too
    /// small for its own metadata).
    pub fn with_resize_shortfall(mut self, short_by: u64) -> Self {
        self.resize_shortfall = short_by;
        self
    }

    /// Removes a block device.
    pub fn without_device(mut self, path: impl AsRef<Path>) -> Self {
        self.devices.remove(path.as_ref());
        self
    }

    /// Makes the sysctl `key` absent from this kernel.
    pub fn with_absent_sysctl(mut self, key: &str) -> Self {
        self.absent_sysctls.insert(key.to_owned());
        self
    }

    /// Answers `abi` when asked for the kernel's Landlock ABI (default
    /// [`LANDLOCK_ABI`], what the policy needs).
    pub fn with_landlock_abi(mut self, abi: u32) -> Self {
        self.landlock_abi = abi;
        self
    }

    /// Answers `euid` to every `geteuid` (the seed-003 seam); by default the
    /// fake answers the uid last set with `setuid`, 0 before that.
    pub fn with_euid(mut self, euid: u32) -> Self {
        self.euid_override = Some(euid);
        self
    }

    /// Fails the call recorded at `index` (step markers and the leaf fakes'
    /// calls count; `getpid` answers [`NOT_PID1`], `geteuid` and
    /// `landlock_abi` answer 0).
    pub fn fail_call(mut self, index: usize) -> Self {
        self.failures.push(Failure::Call(index));
        self
    }

    /// Fails the first call of the step named `step` (for `getpid` and
    /// `geteuid`, which cannot fail, the answer that fails their check).
    /// Only this fake's calls: a step that calls only a leaf fake (the
    /// network, a firewall phase, a fetch) fails through that fake.
    pub fn fail_step(mut self, step: &str) -> Self {
        self.failures.push(Failure::Step(step.to_owned()));
        self
    }

    /// Fails every call `predicate` picks.
    pub fn fail_when(mut self, predicate: impl Fn(&Call) -> bool + 'static) -> Self {
        self.failures.push(Failure::When(Box::new(predicate)));
        self
    }

    /// Every call so far, in order, step markers included (in a
    /// [`FakeMachine`], the leaf fakes' calls too).
    pub fn calls(&self) -> Vec<Call> {
        self.journal().clone()
    }

    /// The record as text, one call per line (what the snapshot tests keep).
    pub fn transcript(&self) -> String {
        let mut text = String::new();
        for call in self.journal().iter() {
            text.push_str(&call.to_string());
            text.push('\n');
        }
        text
    }

    /// Every console line, in order.
    pub fn console_lines(&self) -> Vec<String> {
        self.journal()
            .iter()
            .filter_map(|call| match call {
                Call::Console(line) => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle that appends to this fake's record, for the leaf fakes'
    /// observers.
    fn recorder(&self) -> Journal {
        Arc::clone(&self.journal)
    }

    fn record(&mut self, call: Call) {
        self.journal().push(call);
    }

    /// Records a fallible call and decides whether it fails.
    fn fallible(&mut self, call: Call) -> Result<(), InitError> {
        let index = self.journal().len();
        let fails = self.should_fail(index, &call);
        let text = fails.then(|| call.to_string());
        self.record(call);
        match text {
            Some(call) => Err(InitError::Injected { index, call }),
            None => Ok(()),
        }
    }

    fn should_fail(&mut self, index: usize, call: &Call) -> bool {
        let mut fails = self.failures.iter().any(|failure| match failure {
            Failure::Call(i) => *i == index,
            Failure::When(predicate) => predicate(call),
            Failure::Step(_) => false,
        });
        if self.step_failure_pending {
            self.step_failure_pending = false;
            fails = true;
        }
        fails
    }
}

fn not_found(op: &'static str, path: &Path) -> InitError {
    InitError::io(op, path, std::io::Error::from(std::io::ErrorKind::NotFound))
}

/// Blocks in the filesystem [`ext4_superblock_bytes`] describes: 1 GiB of
/// 4 KiB blocks, as `data.raw`.
pub const FAKE_EXT4_BLOCKS: u64 = 262_144;

/// Sets `s_blocks_count` (both halves) and the 64bit feature.
fn set_blocks_count(sb: &mut [u8], blocks: u64) {
    let halves = [
        (0x04, u32::try_from(blocks & 0xffff_ffff).unwrap_or(0)),
        (0x150, u32::try_from(blocks >> 32).unwrap_or(u32::MAX)),
    ];
    for (at, value) in halves {
        if let Some(dst) = sb.get_mut(at..at + 4) {
            dst.copy_from_slice(&value.to_le_bytes());
        }
    }
    if let Some(dst) = sb.get_mut(0x60..0x64) {
        let incompat = u32::from_le_bytes(dst.try_into().unwrap_or([0; 4])) | 0x80;
        dst.copy_from_slice(&incompat.to_le_bytes());
    }
}

/// A minimal ext4 superblock (the bytes from device offset 1024) with
/// `label`: the magic, a 4 KiB block size, the label, a 64bit filesystem of
/// [`FAKE_EXT4_BLOCKS`] blocks.
pub fn ext4_superblock_bytes(label: &[u8]) -> Vec<u8> {
    ext4_superblock_with_blocks(label, FAKE_EXT4_BLOCKS)
}

/// As [`ext4_superblock_bytes`], with `blocks` 4 KiB blocks.
pub fn ext4_superblock_with_blocks(label: &[u8], blocks: u64) -> Vec<u8> {
    let mut sb = vec![0u8; EXT4_SUPERBLOCK_LEN];
    set_blocks_count(&mut sb, blocks);
    let fields: [(usize, &[u8]); 3] = [
        (0x18, &2u32.to_le_bytes()),
        (0x38, &0xEF53u16.to_le_bytes()),
        (0x78, label),
    ];
    for (at, bytes) in fields {
        let end = at.saturating_add(bytes.len().min(16));
        if let (Some(dst), Some(src)) = (sb.get_mut(at..end), bytes.get(..end.saturating_sub(at))) {
            dst.copy_from_slice(src);
        }
    }
    sb
}

impl Os for FakeOs {
    fn enter_step(&mut self, name: &str) {
        self.record(Call::Step(name.to_owned()));
        self.step_failure_pending = self
            .failures
            .iter()
            .any(|failure| matches!(failure, Failure::Step(step) if step == name));
    }

    fn console(&mut self, line: &str) {
        self.record(Call::Console(line.to_owned()));
    }

    fn getpid(&mut self) -> u32 {
        let index = self.journal().len();
        let failed = self.should_fail(index, &Call::Getpid);
        self.record(Call::Getpid);
        if failed {
            NOT_PID1
        } else {
            self.pid
        }
    }

    fn read_file(&mut self, path: &Path) -> Result<Vec<u8>, InitError> {
        self.fallible(Call::ReadFile(path.to_path_buf()))?;
        self.files.get(path).cloned().ok_or_else(|| {
            InitError::io(
                "read",
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }

    fn mount(&mut self, mount: &Mount) -> Result<(), InitError> {
        self.fallible(Call::Mount(mount.clone()))?;
        if mount.fstype == "ext4" {
            self.mounted
                .insert(mount.target.clone(), PathBuf::from(&mount.source));
        }
        Ok(())
    }

    fn load_module(&mut self, path: &Path) -> Result<(), InitError> {
        self.fallible(Call::LoadModule(path.to_path_buf()))
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), InitError> {
        self.fallible(Call::WriteSysctl {
            key: key.to_owned(),
            value: value.to_owned(),
        })?;
        if self.absent_sysctls.contains(key) {
            return Err(InitError::SysctlAbsent {
                key: key.to_owned(),
            });
        }
        Ok(())
    }

    fn mkdir(&mut self, path: &Path, owner: Owner) -> Result<(), InitError> {
        self.fallible(Call::Mkdir {
            path: path.to_path_buf(),
            owner,
        })
    }

    fn write_file(&mut self, path: &Path, contents: &[u8], owner: Owner) -> Result<(), InitError> {
        self.fallible(Call::WriteFile {
            path: path.to_path_buf(),
            owner,
            contents: String::from_utf8_lossy(contents).into_owned(),
        })
    }

    fn set_owner(&mut self, path: &Path, owner: Owner) -> Result<(), InitError> {
        self.fallible(Call::SetOwner {
            path: path.to_path_buf(),
            owner,
        })
    }

    fn block_devices(&mut self) -> Result<Vec<BlockDevice>, InitError> {
        self.fallible(Call::BlockDevices)?;
        let listing = self.listings;
        self.listings = self.listings.saturating_add(1);
        Ok(self
            .devices
            .iter()
            .filter(|(_, device)| device.listed_from <= listing)
            .map(|(path, device)| BlockDevice {
                path: path.clone(),
                partition_of: device.partition_of.clone(),
            })
            .collect())
    }

    fn block_device_size(&mut self, path: &Path) -> Result<u64, InitError> {
        self.fallible(Call::BlockDeviceSize(path.to_path_buf()))?;
        self.devices
            .get(path)
            .map(|device| device.size)
            .ok_or_else(|| not_found("open", path))
    }

    /// Writes the new block count into the mounted device's superblock,
    /// less the configured shortfall, never shrinking it.
    fn resize_ext4(&mut self, mount_point: &Path, blocks: u64) -> Result<(), InitError> {
        self.fallible(Call::ResizeExt4 {
            mount_point: mount_point.to_path_buf(),
            blocks,
        })?;
        let shortfall = self.resize_shortfall;
        let device = self
            .mounted
            .get(mount_point)
            .and_then(|device| self.devices.get_mut(device))
            .ok_or_else(|| not_found("ioctl(EXT4_IOC_RESIZE_FS)", mount_point))?;
        let old = crate::parse::ext4_superblock(&device.superblock)
            .map(|sb| sb.blocks_count)
            .unwrap_or(0);
        let new = blocks.saturating_sub(shortfall).max(old);
        set_blocks_count(&mut device.superblock, new);
        Ok(())
    }

    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, InitError> {
        self.fallible(Call::ReadAt {
            path: path.to_path_buf(),
            offset,
            len,
        })?;
        let device = self
            .devices
            .get(path)
            .ok_or_else(|| not_found("read", path))?;
        // The fake stores a device from byte 1024 on.
        let start =
            usize::try_from(offset.saturating_sub(EXT4_SUPERBLOCK_OFFSET)).unwrap_or(usize::MAX);
        let bytes = device.superblock.get(start..).unwrap_or_default();
        Ok(bytes
            .get(..len.min(bytes.len()))
            .unwrap_or_default()
            .to_vec())
    }

    fn sleep(&mut self, duration: Duration) {
        self.record(Call::Sleep(duration));
    }

    fn fork_governor(
        &mut self,
        _governor: &mut dyn FnMut(crate::os::GovernorLink) -> i32,
    ) -> Result<u32, InitError> {
        self.fallible(Call::ForkGovernor)?;
        Ok(GOVERNOR_PID)
    }

    fn set_oom_score_adj(&mut self, pid: u32, value: i32) -> Result<(), InitError> {
        self.fallible(Call::SetOomScoreAdj { pid, value })
    }

    fn drop_bounding_set(&mut self) -> Result<(), InitError> {
        self.fallible(Call::DropBoundingSet)
    }

    fn clear_groups(&mut self) -> Result<(), InitError> {
        self.fallible(Call::ClearGroups)
    }

    fn setgid(&mut self, gid: u32) -> Result<(), InitError> {
        self.fallible(Call::Setgid(gid))
    }

    fn setuid(&mut self, uid: u32) -> Result<(), InitError> {
        self.fallible(Call::Setuid(uid))?;
        self.euid = uid;
        Ok(())
    }

    fn geteuid(&mut self) -> u32 {
        let index = self.journal().len();
        let failed = self.should_fail(index, &Call::Geteuid);
        self.record(Call::Geteuid);
        if failed {
            0
        } else {
            self.euid_override.unwrap_or(self.euid)
        }
    }

    fn set_no_new_privs(&mut self) -> Result<(), InitError> {
        self.fallible(Call::SetNoNewPrivs)
    }

    fn clear_capabilities(&mut self) -> Result<(), InitError> {
        self.fallible(Call::ClearCapabilities)
    }

    fn landlock_abi(&mut self) -> u32 {
        let index = self.journal().len();
        let failed = self.should_fail(index, &Call::LandlockAbi);
        self.record(Call::LandlockAbi);
        if failed {
            0
        } else {
            self.landlock_abi
        }
    }

    fn landlock(&mut self, rules: &LandlockRules) -> Result<(), InitError> {
        self.fallible(Call::Landlock(rules.clone()))
    }

    fn close_fds(&mut self) -> Result<(), InitError> {
        self.fallible(Call::CloseFds)
    }

    fn install_syscall_filter(&mut self, filter: &Filter) -> Result<usize, InitError> {
        self.fallible(Call::SyscallFilter(filter.clone()))?;
        syscall_filter::compile(filter)
            .map(|program| program.len())
            .map_err(|e| InitError::Seccomp {
                reason: e.to_string(),
            })
    }

    fn exec(&mut self, exec: &Exec) -> Result<(), InitError> {
        self.fallible(Call::Exec(exec.clone()))
    }

    fn sync(&mut self) {
        self.record(Call::Sync);
    }

    fn halt(&mut self) {
        self.record(Call::Halt);
    }
}

/// [`FakeOs`] beside the leaf crates' own fakes: the whole machine a boot
/// test runs on. The fields are public so a test can reach each fake's own
/// builders, failure injection and record; [`FakeMachine::parts`] wires the
/// leaf fakes' observers into the [`FakeOs`] journal, so
/// [`FakeMachine::calls`] holds every call in the order it was made.
#[derive(Debug)]
pub struct FakeMachine {
    /// Init's own syscalls, and the journal.
    pub os: FakeOs,
    /// netconf's fake: a link table and a scripted DHCP server.
    pub network: FakeNetwork,
    /// pf-rules' fake.
    pub firewall: FakeFirewall,
    /// metadata-fetch's fake.
    pub metadata: FakeMetadata,
}

impl FakeMachine {
    /// `os` beside the reference leaf fakes: a DHCP server leasing
    /// [`REFERENCE_LEASE`] on `eth0`, a firewall that takes every phase, a
    /// metadata server holding [`TEST_ADMIN_PASS`] and [`TEST_VISITOR_PASS`].
    pub fn around(os: FakeOs) -> Self {
        FakeMachine {
            os,
            network: FakeNetwork::serving(REFERENCE_LEASE),
            firewall: FakeFirewall::new(),
            metadata: FakeMetadata::new()
                .with_value("redis-admin-pass", TEST_ADMIN_PASS)
                .with_value("redis-visitor-pass", TEST_VISITOR_PASS),
        }
    }

    /// The seed-000 machine: the boot succeeds end to end.
    pub fn reference() -> Self {
        Self::around(FakeOs::reference())
    }

    /// With `os` changed by `change`.
    #[must_use]
    pub fn with_os(mut self, change: impl FnOnce(FakeOs) -> FakeOs) -> Self {
        self.os = change(self.os);
        self
    }

    /// With the network changed by `change`.
    #[must_use]
    pub fn with_network(mut self, change: impl FnOnce(FakeNetwork) -> FakeNetwork) -> Self {
        self.network = change(self.network);
        self
    }

    /// With the firewall changed by `change`.
    #[must_use]
    pub fn with_firewall(mut self, change: impl FnOnce(FakeFirewall) -> FakeFirewall) -> Self {
        self.firewall = change(self.firewall);
        self
    }

    /// With the metadata server changed by `change`.
    #[must_use]
    pub fn with_metadata(mut self, change: impl FnOnce(FakeMetadata) -> FakeMetadata) -> Self {
        self.metadata = change(self.metadata);
        self
    }

    /// The parts as the boot takes them, each leaf fake recording into the
    /// [`FakeOs`] journal from now on.
    pub fn parts(&mut self) -> Machine<'_> {
        let journal = self.os.recorder();
        self.network.set_observer(move |call| {
            push(&journal, Call::Network(call.clone()));
        });
        let journal = self.os.recorder();
        self.firewall.set_observer(move |call| {
            push(&journal, Call::Firewall(call.clone()));
        });
        let journal = self.os.recorder();
        self.metadata.set_observer(move |call| {
            push(&journal, Call::Metadata(call.clone()));
        });
        Machine {
            os: &mut self.os,
            network: &mut self.network,
            firewall: &mut self.firewall,
            metadata: &self.metadata,
        }
    }

    /// [`crate::boot`] on this machine.
    ///
    /// # Errors
    ///
    /// The boot's [`Fatal`].
    pub fn boot(
        &mut self,
        version: &str,
        governor: &Governor<'_>,
        options: &BootOptions,
    ) -> Result<(), Fatal> {
        crate::boot(self.parts(), version, governor, options)
    }

    /// Every call so far, in order ([`FakeOs::calls`]).
    pub fn calls(&self) -> Vec<Call> {
        self.os.calls()
    }

    /// The record as text ([`FakeOs::transcript`]).
    pub fn transcript(&self) -> String {
        self.os.transcript()
    }

    /// Every console line, in order ([`FakeOs::console_lines`]).
    pub fn console_lines(&self) -> Vec<String> {
        self.os.console_lines()
    }
}

fn push(journal: &Journal, call: Call) {
    journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(call);
}
