//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why a boot step failed. The boot sequence prints it as the reason of the
/// one `appliance: FATAL <step>: <reason>` console line.
///
/// No variant can hold a secret: the only secret-bearing inputs are metadata
/// values, and the errors that come near them ([`metadata_fetch::FetchError`],
/// [`acl_render::AclError`]) name keys and users, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// Not started as PID 1: refusing to touch the machine.
    #[error("running as pid {pid}, not 1: this program is the appliance's init and refuses to run anywhere else")]
    NotPid1 {
        /// Our pid.
        pid: u32,
    },
    /// The spec in the image does not parse or validate.
    #[error("{path}: {source}")]
    Spec {
        /// Where the spec was read from.
        path: PathBuf,
        /// Why it was rejected (boxed: a TOML error is large).
        source: Box<appliance_spec::SpecError>,
    },
    /// A line of the module load order is unusable.
    #[error("module order line {line}: {reason}")]
    ModulesOrder {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The spec is well formed, but something in it cannot be booted safely.
    #[error("{what}: {reason}")]
    Plan {
        /// The field or value concerned.
        what: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The firewall policy could not be built or loaded.
    #[error("firewall: {0}")]
    Firewall(#[from] pf_rules::FirewallError),
    /// A `/proc` file did not say what it should.
    #[error("{file}: {reason}")]
    Proc {
        /// The file.
        file: &'static str,
        /// What is wrong with its content.
        reason: &'static str,
    },
    /// A file operation failed (`op` is the syscall or action).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done: `read`, `mkdir`, `mount`, `finit_module`, ...
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// An optional sysctl does not exist on this kernel (the boot sequence
    /// skips it); for a required one this is fatal.
    #[error("sysctl {key} does not exist on this kernel")]
    SysctlAbsent {
        /// The key, dotted.
        key: String,
    },
    /// The kernel reports another value than the one written.
    #[error("sysctl {key} reads {got:?} after writing {wanted:?}")]
    SysctlMismatch {
        /// The key, dotted.
        key: String,
        /// The value written.
        wanted: String,
        /// What the kernel reports (at most 64 characters).
        got: String,
    },
    /// The network could not be brought up.
    #[error("network: {reason}")]
    Network {
        /// netconf's error, as text (it never holds a secret).
        reason: String,
    },
    /// A boot secret could not be fetched.
    #[error(transparent)]
    Fetch(#[from] metadata_fetch::FetchError),
    /// The ACL file could not be rendered.
    #[error(transparent)]
    Acl(#[from] acl_render::AclError),
    /// RAM is too small for the memory budget of the spec's limits.
    #[error("MemTotal is {mem_total} bytes; at least {minimum} are needed for the spec's limits")]
    MemoryTooSmall {
        /// MemTotal in bytes.
        mem_total: u64,
        /// The least MemTotal accepted.
        minimum: u64,
    },
    /// A fetched secret is unusable. Names the metadata key, never the
    /// value or its length.
    #[error("metadata key {key:?}: {problem}")]
    SecretRefused {
        /// The metadata key.
        key: String,
        /// What is wrong with its value.
        problem: crate::secrets::SecretProblem,
    },
    /// No block device carries an ext4 filesystem with the data label.
    #[error("no block device holds an ext4 filesystem labelled {label:?} (looked at {devices} device(s), {attempts} time(s)); never formatting one")]
    DataDiskNotFound {
        /// The label looked for.
        label: String,
        /// Devices seen in the last scan.
        devices: usize,
        /// Scans made.
        attempts: u32,
    },
    /// More than one block device carries the data label: refusing to guess.
    #[error("several block devices hold an ext4 filesystem labelled {label:?}: {devices:?}")]
    DataDiskAmbiguous {
        /// The label looked for.
        label: String,
        /// The devices that have it.
        devices: Vec<PathBuf>,
    },
    /// Init has more than one thread, so forking is unsafe.
    #[error("init has {threads} threads, must be 1 before fork (a forked child can inherit locks held by threads that no longer exist)")]
    NotSingleThreaded {
        /// `Threads:` from `/proc/self/status`.
        threads: u64,
    },
    /// A process-level syscall failed.
    #[error("{op}: {source}")]
    Syscall {
        /// The syscall.
        op: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
    /// Seed 003: the effective uid is still 0 after the privilege drop.
    #[error("effective uid is 0 after dropping privileges to uid {target_uid}: refusing to run the server as root")]
    StillRoot {
        /// The uid we tried to become.
        target_uid: u32,
    },
    /// Landlock could not be applied, or the kernel enforces none of it.
    #[error("landlock: {reason}")]
    Landlock {
        /// Why.
        reason: String,
    },
    /// The server's syscall filter could not be built or installed.
    #[error("seccomp: {reason}")]
    Seccomp {
        /// Why.
        reason: String,
    },
    /// The kernel's Landlock ABI is below what the server's domain needs:
    /// the boot stops rather than enforce part of it.
    #[error(
        "the kernel has Landlock ABI {found} (0: not built in or not enabled), the policy needs \
         {needed} (file truncate and device ioctl rights, TCP bind and connect rules, signal and \
         abstract unix socket scopes)"
    )]
    LandlockAbi {
        /// What the running kernel offers.
        found: u32,
        /// What the rules need.
        needed: u32,
    },
    /// A failure injected into the recording fake.
    #[error("injected failure at call #{index} ({call})")]
    Injected {
        /// Index of the failed call in the fake's record.
        index: usize,
        /// The call, as recorded.
        call: String,
    },
}

impl InitError {
    pub(crate) fn plan(what: impl Into<String>, reason: &'static str) -> Self {
        InitError::Plan {
            what: what.into(),
            reason,
        }
    }

    /// `op` failed on `path` with the last OS error (`errno`).
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        InitError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The syscall `op` failed with `source`.
    pub fn syscall(op: &'static str, source: io::Error) -> Self {
        InitError::Syscall { op, source }
    }
}
