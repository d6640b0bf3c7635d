//! The boot sequence as data: a [`Plan`] of named [`Step`]s, built and
//! validated from the spec and the image's module order before anything is
//! done to the machine.
#![forbid(unsafe_code)]

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use appliance_spec::{is_valid_metadata_key, Spec};
use pf_rules::{Phase, Policy};
use syscall_filter::Filter;

use crate::os::{FsAccess, FsRule, LandlockRules, Mount, MountFlags, Owner};
use crate::InitError;

/// Where init reads the spec and the module load order inside the image,
/// and the data disk's ext4 label: the image layout the builder writes.
pub use image_layout::{DATA_LABEL, MODULES_ORDER_PATH, SPEC_PATH};
/// How long the network gets to come up with a lease.
pub const NETWORK_DEADLINE: Duration = Duration::from_secs(30);
/// Scans for the data disk (disks may appear after init starts: NVMe and
/// SCSI probing are asynchronous) ...
pub const DATA_DISK_ATTEMPTS: u32 = 40;
/// ... and the pause between two scans: 10 s in all.
pub const DATA_DISK_INTERVAL: Duration = Duration::from_millis(250);
/// The governor's `oom_score_adj`: `OOM_SCORE_ADJ_MIN`, which the
/// out-of-memory killer never chooses. Without the governor the machine
/// would serve unguarded, so it must outlive any memory shortage; PID 1 (the
/// server) is never chosen either, being the global init, which leaves a
/// server fork (an AOF rewrite or `BGSAVE` child) as the only candidate.
pub const GOVERNOR_OOM_SCORE_ADJ: i32 = -1000;
/// The kernel's global TCP buffer limit, set from the memory budget.
pub const TCP_MEM_KEY: &str = "net.ipv4.tcp_mem";

/// One hardening sysctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted key.
    pub key: &'static str,
    /// Value written.
    pub value: &'static str,
    /// Whether a kernel without this key fails the boot. A key is optional
    /// when its absence means the feature it restricts is not built in (no
    /// kexec, no SysRq, no modules: as good as switched off) or when it
    /// depends on a build option or a newer kernel.
    pub required: bool,
}

const fn required(key: &'static str, value: &'static str) -> Sysctl {
    Sysctl {
        key,
        value,
        required: true,
    }
}

const fn optional(key: &'static str, value: &'static str) -> Sysctl {
    Sysctl {
        key,
        value,
        required: false,
    }
}

/// The hardening sysctls written after the modules are loaded (step 4), in
/// order.
///
/// Required keys exist in every kernel this appliance targets (Debian 13's
/// cloud kernel, 6.12 LTS); optional ones depend on a build option (kexec,
/// Yama, BPF JIT, SysRq, IPv6). An absent optional key is one console line.
pub const HARDENING_SYSCTLS: &[Sysctl] = &[
    // Kernel pointers and the kernel log are for root's eyes only, and not even
    // root's for pointers.
    required("kernel.kptr_restrict", "2"),
    required("kernel.dmesg_restrict", "1"),
    // No replacing the running kernel, ever (one-way; absent without kexec).
    optional("kernel.kexec_load_disabled", "1"),
    // No BPF for unprivileged users (one-way at 1), and a hardened JIT.
    required("kernel.unprivileged_bpf_disabled", "1"),
    optional("net.core.bpf_jit_harden", "2"),
    // No ptrace at all (one-way at 3).
    optional("kernel.yama.ptrace_scope", "3"),
    // No perf events for anyone without CAP_PERFMON.
    required("kernel.perf_event_paranoid", "3"),
    // No magic SysRq from the serial console (absent when not built in), no
    // core dumps of setuid programs, full ASLR.
    optional("kernel.sysrq", "0"),
    required("fs.suid_dumpable", "0"),
    required("kernel.randomize_va_space", "2"),
    // Link and file-creation tricks in world-writable sticky directories.
    required("fs.protected_symlinks", "1"),
    required("fs.protected_hardlinks", "1"),
    required("fs.protected_fifos", "2"),
    required("fs.protected_regular", "2"),
    // Attack surface the server never uses: user namespaces, io_uring (2:
    // for every process, root included; 6.6 and later), unprivileged
    // userfaultfd, line discipline autoloading.
    required("user.max_user_namespaces", "0"),
    required("kernel.io_uring_disabled", "2"),
    required("vm.unprivileged_userfaultfd", "0"),
    required("dev.tty.ldisc_autoload", "0"),
    // No executable memfd (6.3 and later; it can only be raised): a
    // memfd_create without MFD_NOEXEC_SEAL fails, so no process, not even the
    // root governor outside Landlock, can build a program in memory and exec
    // it without a file. Nothing on the machine creates a memfd.
    required("vm.memfd_noexec", "2"),
    // Memory (see crate::budget). The budget bounds what is touched, and its
    // fork reserve covers a rewrite child's copy-on-write pages; mode 1
    // makes the fork itself never fail on commit accounting, which counts
    // the whole parent as if copied (Valkey's recommendation, and it warns
    // at start otherwise). Strict mode 2 would turn a shortfall into a
    // failed malloc, on which Valkey aborts: PID 1 would die and the kernel
    // panic, for a shortage the killer can end by killing the child.
    required("vm.overcommit_memory", "1"),
    // Should the out-of-memory killer run anyway, it kills (the governor
    // and PID 1 being exempt) a server fork, and the server retries the
    // rewrite later; with nothing killable the kernel panics and `panic=-1`
    // reboots. 0 keeps that order; 1 would panic even when the child could
    // have been killed.
    required("vm.panic_on_oom", "0"),
    // IPv4: strict reverse-path filtering, no redirects, no source routing,
    // SYN cookies under a SYN flood.
    required("net.ipv4.conf.all.rp_filter", "1"),
    required("net.ipv4.conf.default.rp_filter", "1"),
    required("net.ipv4.conf.all.accept_redirects", "0"),
    required("net.ipv4.conf.default.accept_redirects", "0"),
    required("net.ipv4.conf.all.secure_redirects", "0"),
    required("net.ipv4.conf.default.secure_redirects", "0"),
    required("net.ipv4.conf.all.send_redirects", "0"),
    required("net.ipv4.conf.default.send_redirects", "0"),
    required("net.ipv4.conf.all.accept_source_route", "0"),
    required("net.ipv4.conf.default.accept_source_route", "0"),
    required("net.ipv4.tcp_syncookies", "1"),
    required("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    required("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
    // IPv6 is dropped by the firewall; also ignore router advertisements and
    // redirects so nothing configures it behind our back.
    optional("net.ipv6.conf.all.accept_ra", "0"),
    optional("net.ipv6.conf.default.accept_ra", "0"),
    optional("net.ipv6.conf.all.accept_redirects", "0"),
    optional("net.ipv6.conf.default.accept_redirects", "0"),
];

/// The sysctl that closes module loading once the image's modules are in
/// (one-way). Absent only in a kernel without module support, where no module
/// can be loaded anyway; a module list for such a kernel fails at its first
/// `finit_module`.
pub const MODULES_DISABLED: Sysctl = optional("kernel.modules_disabled", "1");

/// What a step does. Steps that need values only known at boot (the secrets,
/// the memory budget, the governor's pid) get them from the running sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Mount a filesystem.
    Mount(Mount),
    /// Load one kernel module file.
    LoadModule(PathBuf),
    /// Write a sysctl.
    Sysctl(Sysctl),
    /// Read `MemTotal` and compute the memory budget
    /// ([`crate::budget::MemoryBudget`]).
    MemoryBudget,
    /// Write the kernel's TCP buffer limit from the memory budget.
    TcpMemory,
    /// Bring up the network.
    Network {
        /// Time allowed for a lease.
        deadline: Duration,
    },
    /// Load a firewall phase.
    Firewall(Phase),
    /// Fetch one boot secret.
    FetchSecret {
        /// The metadata key.
        key: String,
    },
    /// Drop the metadata client (and its thread).
    CloseMetadata,
    /// Strip one trailing line ending from every fetched secret and refuse
    /// unusable ones ([`crate::secrets`]).
    CheckSecrets,
    /// Render the ACL file from the secrets, write it, wipe the secrets.
    WriteAcl {
        /// The directory created for it.
        dir: PathBuf,
        /// The directory's owner and mode.
        dir_owner: Owner,
        /// The file.
        file: PathBuf,
        /// The file's owner and mode.
        file_owner: Owner,
    },
    /// Find the data disk by label, mount it, give its root to the server.
    DataDisk {
        /// The ext4 label.
        label: String,
        /// How the disk is mounted (source filled in when found).
        mount: Mount,
        /// Owner and mode of the filesystem's root once mounted.
        owner: Owner,
    },
    /// Check that init has exactly one thread.
    SingleThreaded,
    /// Fork the governor.
    ForkGovernor,
    /// Set the governor's `oom_score_adj`.
    GovernorOomScore(i32),
    /// Empty the capability bounding and ambient sets.
    DropBoundingSet,
    /// Clear supplementary groups.
    ClearGroups,
    /// Become `gid`.
    Setgid(u32),
    /// Become `uid`.
    Setuid(u32),
    /// Seed 003: refuse to go on if the effective uid is 0.
    RefuseRoot {
        /// The uid we should be now.
        uid: u32,
    },
    /// Set `no_new_privs`.
    NoNewPrivs,
    /// Empty the capability sets.
    ClearCapabilities,
    /// Apply the Landlock domain.
    Landlock(LandlockRules),
    /// Close inherited file descriptors above 2.
    CloseFds,
    /// Install the server's syscall filter ([`crate::seccomp`]) and hand its
    /// listener to the governor.
    SyscallFilter(Filter),
    /// Exec the server.
    Exec {
        /// The server binary.
        binary: PathBuf,
        /// Its arguments after `argv[0]`, before the boot-time ones.
        args: Vec<String>,
    },
}

/// One named step. The name is what a `FATAL` line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short, stable, human-readable name, e.g. `mount /proc`.
    pub name: String,
    /// What it does.
    pub action: Action,
}

impl Step {
    fn new(name: impl Into<String>, action: Action) -> Self {
        Step {
            name: name.into(),
            action,
        }
    }
}

/// The validated boot plan: every step from the first mount to the exec,
/// in order. Building one touches nothing.
#[derive(Debug, Clone)]
pub struct Plan {
    spec: Spec,
    policy: Policy,
    steps: Vec<Step>,
}

impl Plan {
    /// Validates `spec` and the module order `modules` (the text of
    /// [`MODULES_ORDER_PATH`]) and lays out the steps.
    ///
    /// # Errors
    ///
    /// [`InitError::ModulesOrder`] for a bad module line,
    /// [`InitError::Firewall`] when no firewall policy follows from the spec,
    /// [`InitError::Plan`] for a spec value that is well formed but unsafe to
    /// boot with (a root server uid, overlapping paths, ...).
    pub fn new(spec: Spec, modules: &str) -> Result<Plan, InitError> {
        let modules = crate::parse::modules_order(modules)?;
        check_spec(&spec)?;
        let policy = Policy::from_spec(&spec)?;
        let steps = lay_out(&spec, &modules)?;
        Ok(Plan {
            spec,
            policy,
            steps,
        })
    }

    /// The spec the plan was built from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The firewall policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// Paths the kernel owns or init mounts: the data disk may not go there.
const SYSTEM_DIRS: &[&str] = &["/proc", "/sys", "/dev", "/run"];

/// Re-checks what the plan relies on. Some of it the spec's validation
/// already refuses (a root uid or gid, a `..` or a space in a path, data on
/// `/`): those checks are defence in depth, kept on plain values so the unit
/// tests below can hand them what no [`Spec`] holds. The rest (where the ACL
/// file and the data disk may go) is the plan's alone.
fn check_spec(spec: &Spec) -> Result<(), InitError> {
    check_server(&ServerFields::of(spec))?;
    for user in spec.users() {
        check_secret_key(user.name(), user.secret())?;
    }
    Ok(())
}

/// The `[server]` values the plan checks, as plain values.
struct ServerFields<'s> {
    binary: &'s str,
    config: &'s str,
    acl_file: &'s str,
    data_dir: &'s str,
    uid: u32,
    gid: u32,
}

impl<'s> ServerFields<'s> {
    fn of(spec: &'s Spec) -> Self {
        let server = spec.server();
        ServerFields {
            binary: server.binary(),
            config: server.config(),
            acl_file: server.acl_file(),
            data_dir: server.data_dir(),
            uid: server.uid(),
            gid: server.gid(),
        }
    }
}

fn check_server(server: &ServerFields<'_>) -> Result<(), InitError> {
    if server.uid == 0 {
        return Err(InitError::plan(
            "server.uid = 0",
            "the server never runs as root",
        ));
    }
    if server.gid == 0 {
        return Err(InitError::plan(
            "server.gid = 0",
            "the server never runs in group root",
        ));
    }
    let fields = [
        ("server.binary", server.binary),
        ("server.config", server.config),
        ("server.acl_file", server.acl_file),
        ("server.data_dir", server.data_dir),
    ];
    for (field, path) in fields {
        check_path(field, path)?;
    }
    let data = Path::new(server.data_dir);
    if data == Path::new("/") {
        return Err(InitError::plan(
            "server.data_dir = \"/\"",
            "the data disk cannot be mounted on /",
        ));
    }
    if SYSTEM_DIRS.iter().any(|dir| data.starts_with(dir)) {
        return Err(InitError::plan(
            format!("server.data_dir = {:?}", server.data_dir),
            "the data disk cannot be mounted in /proc, /sys, /dev or /run",
        ));
    }
    // Anything under the data directory is writable by the server: its binary,
    // config or ACL there would let it rewrite its own rules.
    for (field, path) in &fields[..3] {
        if Path::new(path).starts_with(data) {
            return Err(InitError::plan(
                format!("{field} = {path:?}"),
                "must not be inside server.data_dir, which the server can write",
            ));
        }
    }
    acl_dir(server.acl_file)?;
    Ok(())
}

/// A user's metadata key goes into a URL: the spec checks it, and so does
/// the plan.
fn check_secret_key(user: &str, key: &str) -> Result<(), InitError> {
    if is_valid_metadata_key(key) {
        Ok(())
    } else {
        Err(InitError::plan(
            format!("metadata key {key:?} of user {user:?}"),
            "not a valid metadata key",
        ))
    }
}

/// An absolute, normalised path: no `.`/`..`/empty components, no trailing
/// `/`, printable ASCII without spaces (it is passed on a command line and
/// shown on the console).
fn check_path(field: &str, path: &str) -> Result<(), InitError> {
    let bad = |reason| InitError::plan(format!("{field} = {path:?}"), reason);
    if !path.starts_with('/') {
        return Err(bad("not an absolute path"));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("not printable ASCII without spaces"));
    }
    if path != "/"
        && path
            .split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad(
            "not normalised (empty, `.` or `..` component, or a trailing /)",
        ));
    }
    Ok(())
}

/// The ACL file's directory, which init creates fresh on the `/run` tmpfs:
/// the file must be `/run/<dir>/<file>`, so that creating and chowning the
/// directory can never touch one that already exists.
fn acl_dir(acl_file: &str) -> Result<PathBuf, InitError> {
    let path = Path::new(acl_file);
    let components: Vec<Component<'_>> = path.components().collect();
    match components.as_slice() {
        [Component::RootDir, Component::Normal(run), Component::Normal(_), Component::Normal(_)]
            if *run == "run" =>
        {
            path.parent().map(Path::to_path_buf).ok_or_else(|| {
                InitError::plan(
                    format!("server.acl_file = {acl_file:?}"),
                    "has no directory",
                )
            })
        }
        _ => Err(InitError::plan(
            format!("server.acl_file = {acl_file:?}"),
            "must be /run/<dir>/<file>: init creates <dir> fresh for it",
        )),
    }
}

fn module_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn lay_out(spec: &Spec, modules: &[PathBuf]) -> Result<Vec<Step>, InitError> {
    let server = spec.server();
    let mut steps = Vec::new();
    let run_tmpfs_options = format!("mode=0755,size={}", crate::budget::RUN_TMPFS_SIZE);

    // Step 2: the pseudo-filesystems. /proc hides other users' processes from
    // the server; the governor runs as root and still sees everything.
    let mounts = [
        ("proc", "/proc", "proc", MountFlags::ALL, Some("hidepid=2")),
        ("sysfs", "/sys", "sysfs", MountFlags::ALL, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags {
                nosuid: true,
                nodev: false,
                noexec: true,
            },
            Some("mode=0755"),
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::ALL,
            Some(run_tmpfs_options.as_str()),
        ),
    ];
    for (source, target, fstype, flags, data) in mounts {
        steps.push(Step::new(
            format!("mount {target}"),
            Action::Mount(Mount {
                source: source.to_owned(),
                target: PathBuf::from(target),
                fstype: fstype.to_owned(),
                flags,
                data: data.map(str::to_owned),
            }),
        ));
    }
    steps.push(Step::new("memory budget", Action::MemoryBudget));

    // Step 3: modules in the recorded order, then no more modules, ever.
    for module in modules {
        steps.push(Step::new(
            format!("module {}", module_name(module)),
            Action::LoadModule(module.clone()),
        ));
    }
    steps.push(Step::new(
        format!("sysctl {}", MODULES_DISABLED.key),
        Action::Sysctl(MODULES_DISABLED),
    ));

    // Step 4.
    for sysctl in HARDENING_SYSCTLS {
        steps.push(Step::new(
            format!("sysctl {}", sysctl.key),
            Action::Sysctl(*sysctl),
        ));
    }
    steps.push(Step::new(
        format!("sysctl {TCP_MEM_KEY}"),
        Action::TcpMemory,
    ));

    // Steps 5 and 6.
    steps.push(Step::new(
        "network",
        Action::Network {
            deadline: NETWORK_DEADLINE,
        },
    ));
    steps.push(Step::new("firewall boot", Action::Firewall(Phase::Boot)));

    // Step 7: each distinct key once, admin first.
    let mut keys: Vec<&str> = Vec::new();
    for user in spec.users() {
        if !keys.contains(&user.secret()) {
            keys.push(user.secret());
        }
    }
    for key in keys {
        steps.push(Step::new(
            format!("fetch {key}"),
            Action::FetchSecret {
                key: key.to_owned(),
            },
        ));
    }
    steps.push(Step::new("metadata close", Action::CloseMetadata));
    steps.push(Step::new("secrets", Action::CheckSecrets));

    // Step 8. The directory is the server's and readable only by it; the file
    // is read-only even for the server.
    let dir = acl_dir(server.acl_file())?;
    steps.push(Step::new(
        "acl",
        Action::WriteAcl {
            dir,
            dir_owner: Owner {
                uid: server.uid(),
                gid: server.gid(),
                mode: 0o500,
            },
            file: PathBuf::from(server.acl_file()),
            file_owner: Owner {
                uid: server.uid(),
                gid: server.gid(),
                mode: 0o400,
            },
        },
    ));

    // Step 9.
    steps.push(Step::new(
        "firewall sealed",
        Action::Firewall(Phase::Sealed),
    ));

    // Step 10.
    steps.push(Step::new(
        "data disk",
        Action::DataDisk {
            label: DATA_LABEL.to_owned(),
            mount: Mount {
                source: String::new(),
                target: PathBuf::from(server.data_dir()),
                fstype: "ext4".to_owned(),
                flags: MountFlags::ALL,
                data: None,
            },
            owner: Owner {
                uid: server.uid(),
                gid: server.gid(),
                mode: 0o700,
            },
        },
    ));

    // Step 11.
    steps.push(Step::new("threads", Action::SingleThreaded));
    steps.push(Step::new("fork governor", Action::ForkGovernor));
    steps.push(Step::new(
        "governor oom_score_adj",
        Action::GovernorOomScore(GOVERNOR_OOM_SCORE_ADJ),
    ));

    // Step 12. The bounding set needs CAP_SETPCAP, gone after setuid.
    steps.push(Step::new("bounding set", Action::DropBoundingSet));
    steps.push(Step::new("setgroups", Action::ClearGroups));
    steps.push(Step::new("setgid", Action::Setgid(server.gid())));
    steps.push(Step::new("setuid", Action::Setuid(server.uid())));
    steps.push(Step::new(
        "refuse root",
        Action::RefuseRoot { uid: server.uid() },
    ));
    steps.push(Step::new("no_new_privs", Action::NoNewPrivs));
    steps.push(Step::new("capabilities", Action::ClearCapabilities));
    steps.push(Step::new(
        "landlock",
        Action::Landlock(landlock_rules(spec)?),
    ));

    // Step 12, last: the syscall filter, after the descriptors are closed
    // (from here on init's own calls pass it too: only the hand-over, the
    // closes and the exec are left).
    steps.push(Step::new("close fds", Action::CloseFds));
    steps.push(Step::new(
        "seccomp",
        Action::SyscallFilter(crate::seccomp::server_filter(server.forks())?),
    ));

    // Step 13.
    steps.push(Step::new(
        "exec",
        Action::Exec {
            binary: PathBuf::from(server.binary()),
            args: vec![server.config().to_owned()],
        },
    ));
    Ok(steps)
}

/// What the server may touch: execute its own binary (and, if it is dynamic,
/// the loader that runs it) and nothing else, write
/// beneath the data directory and nowhere else, read its config, its ACL, the
/// libraries and module it loads, and the few kernel files it reads; bind
/// its own port and connect nowhere (it has no replicas and no cluster bus);
/// signal and reach abstract unix sockets only within its own domain.
fn landlock_rules(spec: &Spec) -> Result<LandlockRules, InitError> {
    let server = spec.server();
    let required = |path: &str, access| FsRule {
        path: PathBuf::from(path),
        access,
        if_exists: false,
    };
    let if_exists = |path: &str| FsRule {
        path: PathBuf::from(path),
        access: FsAccess::Read,
        if_exists: true,
    };
    let acl_dir = acl_dir(server.acl_file())?;
    Ok(LandlockRules {
        fs: vec![
            required(server.binary(), FsAccess::ReadExecute),
            required(server.config(), FsAccess::Read),
            FsRule {
                path: acl_dir,
                access: FsAccess::Read,
                if_exists: false,
            },
            required(server.data_dir(), FsAccess::ReadWrite),
            // The server seeds its hash functions from /dev/urandom and reads
            // its own memory use from /proc (hidepid shows it only itself).
            required("/dev/urandom", FsAccess::Read),
            required("/dev/null", FsAccess::Read),
            required("/proc", FsAccess::Read),
            if_exists("/sys/kernel/mm/transparent_hugepage"),
            if_exists("/etc/localtime"),
            // A dynamic server's loader: the kernel opens it for execution as
            // the binary's interpreter, so it needs the execute right too.
            // Running it directly gains nothing: it can only map files for
            // execution from mounts without noexec, and every writable place
            // (the data disk, /run) is noexec.
            FsRule {
                path: PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
                access: FsAccess::ReadExecute,
                if_exists: true,
            },
            // Its libc and the stream-guard module.
            if_exists("/lib"),
            if_exists("/lib64"),
            if_exists("/usr/lib"),
        ],
        bind_tcp: vec![server.port()],
        connect_tcp: Vec::new(),
        scoped: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use appliance_spec::SpecBuilder;

    /// Values the spec already refuses, so no [`Plan`] ever sees them: the
    /// plan's own check refuses them too. (Values the spec accepts but the
    /// plan refuses are tested through [`Plan::new`] in `tests/fake_boot.rs`.)
    #[test]
    fn the_plan_refuses_what_the_spec_refuses() {
        type Edit = fn(&mut ServerFields<'_>);
        type SpecEdit = fn(SpecBuilder) -> SpecBuilder;
        let cases: &[(&str, Edit, SpecEdit, &str)] = &[
            (
                "root uid",
                |s| s.uid = 0,
                |b| b.set("server.uid", 0),
                "server.uid = 0: the server never runs as root",
            ),
            (
                "root gid",
                |s| s.gid = 0,
                |b| b.set("server.gid", 0),
                "server.gid = 0: the server never runs in group root",
            ),
            (
                "data dir on /",
                |s| s.data_dir = "/",
                |b| b.set("server.data_dir", "/"),
                "server.data_dir = \"/\": the data disk cannot be mounted on /",
            ),
            (
                "dot-dot in a path",
                |s| s.binary = "/usr/bin/../../data/x",
                |b| b.set("server.binary", "/usr/bin/../../data/x"),
                "server.binary = \"/usr/bin/../../data/x\": not normalised (empty, `.` or `..` component, or a trailing /)",
            ),
            (
                "space in a path",
                |s| s.config = "/etc/valkey conf",
                |b| b.set("server.config", "/etc/valkey conf"),
                "server.config = \"/etc/valkey conf\": not printable ASCII without spaces",
            ),
        ];
        let reference = Spec::reference().unwrap();
        check_server(&ServerFields::of(&reference)).unwrap();
        for (what, edit, spec_edit, want) in cases {
            let mut server = ServerFields::of(&reference);
            edit(&mut server);
            let error = check_server(&server).unwrap_err();
            assert_eq!(error.to_string(), *want, "{what}");
            // The spec refuses the same value first, naming the same field.
            let err = spec_edit(SpecBuilder::reference()).build().unwrap_err();
            let field = want.split(' ').next();
            assert_eq!(err.field(), field, "{what}: {err}");
        }
    }

    #[test]
    fn the_plan_refuses_a_bad_metadata_key() {
        check_secret_key("admin", "redis-admin-pass").unwrap();
        let error = check_secret_key("admin", "../x").unwrap_err();
        assert_eq!(
            error.to_string(),
            "metadata key \"../x\" of user \"admin\": not a valid metadata key"
        );
        let err = SpecBuilder::reference()
            .set("users[0].secret", "../x")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Some("users[0].secret"), "{err}");
    }
}
