//! Running a [`Plan`] over a [`Machine`]: fail closed at the first error.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use appliance_spec::Spec;
use metadata_fetch::{Connector, MetadataSource, Secret};
use netconf::{Lease, Network};
use pf_rules::{Firewall, Phase};

use crate::budget::MemoryBudget;
use crate::os::{BlockDevice, Exec, GovernorLink, Mount, Os, Owner};
use crate::parse::{
    ext4_superblock, mem_total_bytes, thread_count, Ext4Superblock, EXT4_SUPERBLOCK_LEN,
    EXT4_SUPERBLOCK_OFFSET,
};
use crate::plan::{
    Action, Plan, Step, DATA_DISK_ATTEMPTS, DATA_DISK_INTERVAL, MODULES_ORDER_PATH, SPEC_PATH,
    TCP_MEM_KEY,
};
use crate::InitError;

/// The machine the boot sequence acts on, in its parts: init's own
/// syscalls, and the network, the firewall and the metadata server behind
/// their own crates' traits. `main` passes the real ones
/// (`os::linux::LinuxOs`, `netconf::linux::LinuxNetwork`,
/// `pf_rules::NetlinkFirewall`, `metadata_fetch::GceConnector`); tests pass
/// `fake::FakeMachine`'s recording fakes.
pub struct Machine<'a> {
    /// Mounts, modules, sysctls, files, block devices, the fork, the
    /// privilege drop, Landlock, the syscall filter, the exec, the halt.
    pub os: &'a mut dyn Os,
    /// The NIC: links up, a DHCP lease, the lease applied.
    pub network: &'a mut dyn Network,
    /// Loads and reads back the nftables ruleset of each phase.
    pub firewall: &'a mut dyn Firewall,
    /// Opens the metadata client at the first fetch; the boot drops the
    /// client in the `metadata close` step, before it forks.
    pub metadata: &'a dyn Connector,
}

impl fmt::Debug for Machine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine").finish_non_exhaustive()
    }
}

/// What the forked governor runs: the spec, and its end of the link over
/// which init hands it the syscall filter's listener.
pub type Governor<'a> = dyn Fn(&Spec, GovernorLink) -> i32 + 'a;

/// Which syscall filter init installs before the exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterChoice {
    /// The plan's allowlist: always, in a production image.
    #[default]
    Server,
    /// TEST IMAGES ONLY: none (`appliance.test_seccomp=off`: the benchmark
    /// measures the filter's cost).
    None,
    /// TEST IMAGES ONLY: a filter that allows nothing but notifies every
    /// call (`appliance.test_seccomp=record`: with the governor continuing
    /// and noting each distinct call, it measures what the server uses).
    NotifyEverything,
}

/// Choices of the program init is part of, beside the spec.
#[derive(Debug, Clone, Copy)]
pub struct BootOptions {
    /// Which syscall filter is installed last, asked when that step runs
    /// (a test image reads its choice from `/proc/cmdline`, which is only
    /// mounted by then).
    pub syscall_filter: fn() -> FilterChoice,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            syscall_filter: || FilterChoice::Server,
        }
    }
}

/// Every console line init writes starts with this.
pub const CONSOLE_PREFIX: &str = "appliance:";

/// Name of the first step, the PID 1 check. It is the one step whose failure
/// does not halt: a program that is not PID 1 is not the machine's init, and
/// halting would take down whatever machine it was started on by mistake.
pub const STEP_PID1: &str = "pid1";
/// Name of the step that reads and validates the spec.
pub const STEP_SPEC: &str = "spec";
/// Name of the step that reads the module order and lays out the plan.
pub const STEP_PLAN: &str = "plan";

/// The step that failed and why. The boot sequence has already printed it,
/// synced and halted (unless `halted` is false: see [`STEP_PID1`]).
#[derive(Debug)]
pub struct Fatal {
    /// The failed step's name.
    pub step: String,
    /// Why it failed.
    pub error: InitError,
    /// Whether `sync` and `halt` were called.
    pub halted: bool,
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fatal_line(&self.step, &self.error))
    }
}

/// `appliance: FATAL <step>: <reason>`, on one line whatever the reason holds.
pub fn fatal_line(step: &str, error: &InitError) -> String {
    let reason: String = error
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{CONSOLE_PREFIX} FATAL {step}: {reason}")
}

/// Boots the appliance: banner, PID 1 check, then the spec and the module
/// order are read from the image and validated into a [`Plan`], which
/// [`run`] carries out. `governor` is what the forked governor child runs.
///
/// With a real [`Os`] this returns only on failure (after halting, which
/// does not return either, so in practice never); with the fake, `Ok` means
/// the server was exec'd.
pub fn boot(
    machine: Machine<'_>,
    version: &str,
    governor: &Governor<'_>,
    options: &BootOptions,
) -> Result<(), Fatal> {
    let os = &mut *machine.os;
    os.console(&format!("{CONSOLE_PREFIX} init {version} starting"));
    os.enter_step(STEP_PID1);
    let pid = os.getpid();
    if pid != 1 {
        let error = InitError::NotPid1 { pid };
        os.console(&fatal_line(STEP_PID1, &error));
        return Err(Fatal {
            step: STEP_PID1.to_owned(),
            error,
            halted: false,
        });
    }
    let plan = match prepare(os) {
        Ok(plan) => plan,
        Err((step, error)) => return Err(die(os, step, error)),
    };
    run(machine, &plan, governor, options)
}

/// Reads and validates the spec and the module order: everything checked
/// before anything is done.
fn prepare(os: &mut dyn Os) -> Result<Plan, (&'static str, InitError)> {
    os.enter_step(STEP_SPEC);
    let spec = read_spec(os).map_err(|e| (STEP_SPEC, e))?;
    os.enter_step(STEP_PLAN);
    let modules = os
        .read_file(Path::new(MODULES_ORDER_PATH))
        .map_err(|e| (STEP_PLAN, e))?;
    let modules = String::from_utf8(modules)
        .map_err(|_| (STEP_PLAN, InitError::plan(MODULES_ORDER_PATH, "not UTF-8")))?;
    Plan::new(spec, &modules).map_err(|e| (STEP_PLAN, e))
}

fn read_spec(os: &mut dyn Os) -> Result<Spec, InitError> {
    let bytes = os.read_file(Path::new(SPEC_PATH))?;
    let text = String::from_utf8(bytes).map_err(|_| InitError::plan(SPEC_PATH, "not UTF-8"))?;
    Spec::from_toml_str(&text).map_err(|source| InitError::Spec {
        path: SPEC_PATH.into(),
        source: Box::new(source),
    })
}

/// Carries out `plan`'s steps in order; at the first failure prints the
/// `FATAL` line, syncs and halts.
pub fn run(
    mut machine: Machine<'_>,
    plan: &Plan,
    governor: &Governor<'_>,
    options: &BootOptions,
) -> Result<(), Fatal> {
    let mut state = State {
        secrets: Vec::new(),
        budget: None,
        governor_pid: None,
        metadata: MetadataClient::NotYet,
    };
    for step in plan.steps() {
        machine.os.enter_step(&step.name);
        if let Err(error) = execute(&mut machine, plan, step, &mut state, governor, options) {
            // Wipe the secrets (if any are still held) and close the
            // metadata client before saying anything.
            drop(state);
            return Err(die(machine.os, &step.name, error));
        }
    }
    Ok(())
}

fn die(os: &mut dyn Os, step: &str, error: InitError) -> Fatal {
    os.console(&fatal_line(step, &error));
    os.sync();
    os.halt();
    Fatal {
        step: step.to_owned(),
        error,
        halted: true,
    }
}

/// What earlier steps hand to later ones.
struct State<'m> {
    /// Fetched values by metadata key, until the ACL is written.
    secrets: Vec<(String, Secret)>,
    /// The memory budget, from `MemTotal`.
    budget: Option<MemoryBudget>,
    /// The governor's pid, once forked.
    governor_pid: Option<u32>,
    /// The metadata client, from the first fetch to `metadata close`.
    metadata: MetadataClient<'m>,
}

/// The metadata client's life: opened once, dropped once, never reopened.
enum MetadataClient<'m> {
    /// No fetch yet.
    NotYet,
    /// Open (the real one runs a thread).
    Open(Box<dyn MetadataSource + 'm>),
    /// Dropped, its thread joined: init may fork.
    Closed,
}

impl State<'_> {
    /// Drops every secret; [`Secret`] zeroizes its buffer on drop.
    fn wipe_secrets(&mut self) {
        self.secrets.clear();
    }
}

fn execute<'m>(
    machine: &mut Machine<'m>,
    plan: &Plan,
    step: &Step,
    state: &mut State<'m>,
    governor: &Governor<'_>,
    options: &BootOptions,
) -> Result<(), InitError> {
    let os = &mut *machine.os;
    match &step.action {
        Action::Mount(mount) => os.mount(mount),
        Action::MemoryBudget => {
            let mem_total = mem_total_bytes(&os.read_file(Path::new("/proc/meminfo"))?)?;
            let budget = MemoryBudget::new(mem_total, plan.spec().limits()).map_err(|e| {
                InitError::MemoryTooSmall {
                    mem_total: e.mem_total,
                    minimum: e.minimum,
                }
            })?;
            os.console(&format!("{CONSOLE_PREFIX} {}", budget.console_text()));
            state.budget = Some(budget);
            Ok(())
        }
        Action::TcpMemory => {
            let budget = budget_of(state, "sysctl net.ipv4.tcp_mem")?;
            os.write_sysctl(TCP_MEM_KEY, &budget.tcp_mem())
        }
        Action::LoadModule(path) => os.load_module(path),
        Action::Sysctl(sysctl) => match os.write_sysctl(sysctl.key, sysctl.value) {
            Err(InitError::SysctlAbsent { key }) if !sysctl.required => {
                os.console(&format!(
                    "{CONSOLE_PREFIX} sysctl {key} absent on this kernel, skipped"
                ));
                Ok(())
            }
            other => other,
        },
        Action::Network { deadline } => {
            let lease = machine
                .network
                .bring_up(*deadline)
                .map_err(|e| InitError::Network {
                    reason: e.to_string(),
                })?;
            os.console(&format!(
                "{CONSOLE_PREFIX} network {}",
                lease_summary(&lease)
            ));
            Ok(())
        }
        Action::Firewall(phase) => {
            machine.firewall.apply(plan.policy(), *phase)?;
            os.console(&format!(
                "{CONSOLE_PREFIX} firewall {} phase loaded",
                phase.name()
            ));
            // The seal is the ruleset the server lives behind: check the
            // kernel holds it, rule by rule, and say which text it is.
            if *phase == Phase::Sealed {
                let read_back = machine.firewall.verify(plan.policy(), *phase)?;
                os.console(&format!(
                    "{CONSOLE_PREFIX} firewall {} ruleset read back sha256={} ({} rules match)",
                    phase.name(),
                    read_back.sha256,
                    read_back.rules
                ));
            }
            Ok(())
        }
        Action::FetchSecret { key } => {
            if matches!(state.metadata, MetadataClient::NotYet) {
                let connector: &'m dyn Connector = machine.metadata;
                state.metadata = MetadataClient::Open(connector.connect(plan.spec().metadata())?);
            }
            let MetadataClient::Open(client) = &state.metadata else {
                return Err(InitError::plan(
                    format!("fetch {key}"),
                    "metadata client already closed (plan out of order)",
                ));
            };
            let secret = client.fetch(key)?;
            state.secrets.push((key.clone(), secret));
            Ok(())
        }
        Action::CloseMetadata => {
            // Dropping the client joins its thread: the fork needs one.
            state.metadata = MetadataClient::Closed;
            Ok(())
        }
        Action::CheckSecrets => crate::secrets::check_secrets(plan.spec(), &mut state.secrets)
            .map_err(|(key, problem)| InitError::SecretRefused { key, problem }),
        Action::WriteAcl {
            dir,
            dir_owner,
            file,
            file_owner,
        } => {
            let rendered = acl_render::render(plan.spec(), |key| {
                state
                    .secrets
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, secret)| secret.expose())
            });
            // The cleartext is no longer needed, whatever happened.
            state.wipe_secrets();
            let text = rendered?;
            os.mkdir(dir, *dir_owner)?;
            os.write_file(file, text.as_bytes(), *file_owner)
        }
        Action::DataDisk {
            label,
            mount,
            owner,
        } => mount_data_disk(os, label, mount, *owner),
        Action::SingleThreaded => {
            let threads = thread_count(&os.read_file(Path::new("/proc/self/status"))?)?;
            if threads == 1 {
                Ok(())
            } else {
                Err(InitError::NotSingleThreaded { threads })
            }
        }
        Action::ForkGovernor => {
            let spec = plan.spec();
            let pid = os.fork_governor(&mut |link| governor(spec, link))?;
            os.console(&format!("{CONSOLE_PREFIX} governor started as pid {pid}"));
            state.governor_pid = Some(pid);
            Ok(())
        }
        Action::GovernorOomScore(value) => {
            let pid = state.governor_pid.ok_or_else(|| {
                InitError::plan(
                    "oom_score_adj",
                    "no governor forked before (plan out of order)",
                )
            })?;
            os.set_oom_score_adj(pid, *value)
        }
        Action::DropBoundingSet => os.drop_bounding_set(),
        Action::ClearGroups => os.clear_groups(),
        Action::Setgid(gid) => os.setgid(*gid),
        Action::Setuid(uid) => os.setuid(*uid),
        Action::RefuseRoot { uid } => {
            if os.geteuid() == 0 {
                Err(InitError::StillRoot { target_uid: *uid })
            } else {
                Ok(())
            }
        }
        Action::NoNewPrivs => os.set_no_new_privs(),
        Action::ClearCapabilities => os.clear_capabilities(),
        Action::Landlock(rules) => {
            let found = os.landlock_abi();
            let needed = rules.required_abi();
            if found < needed {
                return Err(InitError::LandlockAbi { found, needed });
            }
            os.landlock(rules)?;
            let newer = if found > needed {
                format!(" on a kernel with ABI {found}")
            } else {
                String::new()
            };
            os.console(&format!(
                "{CONSOLE_PREFIX} landlock ABI {needed} enforced{newer} ({})",
                rules.summary()
            ));
            Ok(())
        }
        Action::CloseFds => os.close_fds(),
        Action::SyscallFilter(filter) => {
            let everything;
            let filter = match (options.syscall_filter)() {
                FilterChoice::Server => filter,
                FilterChoice::None => {
                    os.console(&format!(
                        "{CONSOLE_PREFIX} TEST IMAGE: no syscall filter (appliance.test_seccomp=off)"
                    ));
                    return Ok(());
                }
                FilterChoice::NotifyEverything => {
                    everything = crate::seccomp::notify_everything()?;
                    os.console(&format!(
                        "{CONSOLE_PREFIX} TEST IMAGE: every syscall notified (appliance.test_seccomp=record)"
                    ));
                    &everything
                }
            };
            let allowed = crate::seccomp::allowed_syscalls(filter);
            let instructions = os.install_syscall_filter(filter)?;
            os.console(&format!(
                "{CONSOLE_PREFIX} seccomp filter installed: {allowed} syscalls allowed \
                 ({instructions} BPF instructions); any other call halts the machine \
                 through the governor"
            ));
            Ok(())
        }
        Action::Exec { binary, args } => {
            let budget = budget_of(state, "exec")?;
            let exec = server_exec(binary, args, &budget);
            os.console(&format!(
                "{CONSOLE_PREFIX} exec {} (maxmemory {} bytes)",
                binary.display(),
                budget.data
            ));
            os.exec(&exec)
        }
    }
}

/// The lease for the console: `10.128.0.7/32 via 10.128.0.1 mtu 1460 from
/// 169.254.169.254` (router and MTU only when the lease has them).
fn lease_summary(lease: &Lease) -> String {
    let mut summary = format!("{}/{}", lease.address, lease.prefix_len);
    if let Some(router) = lease.router {
        summary.push_str(&format!(" via {router}"));
    }
    if let Some(mtu) = lease.mtu {
        summary.push_str(&format!(" mtu {mtu}"));
    }
    summary.push_str(&format!(" from {}", lease.server_id));
    summary
}

/// The budget computed by the memory budget step.
fn budget_of(state: &State, step: &'static str) -> Result<MemoryBudget, InitError> {
    state.budget.ok_or_else(|| {
        InitError::plan(
            step,
            "memory budget not computed before (plan out of order)",
        )
    })
}

/// The server's command line: its config, then the memory budget's figures,
/// which the server applies after its config file: `maxmemory` with
/// `noeviction` (a full server refuses writes rather than dropping data),
/// `maxmemory-clients`, and the output buffer limits of all three classes as
/// one argument. The environment is empty.
fn server_exec(binary: &Path, args: &[String], budget: &MemoryBudget) -> Exec {
    let mut argv = vec![binary.display().to_string()];
    argv.extend(args.iter().cloned());
    argv.extend([
        "--maxmemory".to_owned(),
        budget.data.to_string(),
        "--maxmemory-policy".to_owned(),
        "noeviction".to_owned(),
        "--maxmemory-clients".to_owned(),
        budget.clients.to_string(),
        "--client-output-buffer-limit".to_owned(),
        budget.output_buffer_limits(),
    ]);
    Exec {
        path: binary.to_path_buf(),
        argv,
        env: Vec::new(),
    }
}

fn mount_data_disk(
    os: &mut dyn Os,
    label: &str,
    mount: &Mount,
    owner: Owner,
) -> Result<(), InitError> {
    let device = find_data_disk(os, label)?;
    os.console(&format!(
        "{CONSOLE_PREFIX} data disk {} labelled {label}",
        device.display()
    ));
    let mount = Mount {
        source: device.display().to_string(),
        ..mount.clone()
    };
    os.mount(&mount)?;
    grow_data_filesystem(os, &device, &mount.target)?;
    os.set_owner(&mount.target, owner)
}

/// The block count to grow an ext4 filesystem of `sb`'s size to on a device
/// of `device_bytes`, or `None` when it already fills the device (to within
/// one block). A filesystem without 64-bit block numbers stops at 2^32
/// blocks, the most it can address.
fn grow_target(sb: &Ext4Superblock, device_bytes: u64) -> Option<u64> {
    let block_size = u64::from(sb.block_size);
    let mut device_blocks = device_bytes.checked_div(block_size)?;
    if !sb.is_64bit {
        device_blocks = device_blocks.min(u64::from(u32::MAX));
    }
    (device_blocks > sb.blocks_count).then_some(device_blocks)
}

fn mounted_superblock(os: &mut dyn Os, device: &Path) -> Result<Ext4Superblock, InitError> {
    let bytes = os.read_at(device, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_LEN)?;
    ext4_superblock(&bytes).ok_or_else(|| {
        InitError::io(
            "read",
            device,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no ext4 superblock on the mounted data disk",
            ),
        )
    })
}

/// Grows the ext4 filesystem on `device`, mounted at `target`, to fill the
/// device: online, through the kernel (never a format, never an offline
/// tool). Says so in one console line and returns the sizes before and
/// after, in bytes; a filesystem that fills its device is left alone,
/// silently (`None`).
pub fn grow_data_filesystem(
    os: &mut dyn Os,
    device: &Path,
    target: &Path,
) -> Result<Option<(u64, u64)>, InitError> {
    let before = mounted_superblock(os, device)?;
    let device_bytes = os.block_device_size(device)?;
    let Some(blocks) = grow_target(&before, device_bytes) else {
        return Ok(None);
    };
    os.resize_ext4(target, blocks)?;
    // What the kernel did, not what was asked: it may leave out a last block
    // group too small for its own metadata.
    let after = mounted_superblock(os, device)?;
    if after.blocks_count > before.blocks_count {
        os.console(&format!(
            "{CONSOLE_PREFIX} data filesystem grown from {} to {} bytes",
            before.size_bytes(),
            after.size_bytes()
        ));
        return Ok(Some((before.size_bytes(), after.size_bytes())));
    }
    Ok(None)
}

/// The candidates for the data disk among `devices`: every partition, and
/// every whole disk none of whose partitions is listed. A partitioned disk's
/// own first blocks are its partition table, whatever a stale superblock
/// behind it says, so a disk and its partition are never both counted.
fn data_disk_candidates(devices: &[BlockDevice]) -> Vec<&Path> {
    devices
        .iter()
        .filter(|device| {
            !devices
                .iter()
                .any(|other| other.partition_of.as_deref() == Some(device.path.as_path()))
        })
        .map(|device| device.path.as_path())
        .collect()
}

/// The one block device whose ext4 superblock carries `label`, waiting for
/// late devices. The device list is read until two scans one interval apart
/// agree, so a second disk that is still being probed is not missed; then two
/// devices with the label are an error (mounting the wrong one could serve
/// an attacker's data), and none means scanning on until the attempts run
/// out.
fn find_data_disk(os: &mut dyn Os, label: &str) -> Result<PathBuf, InitError> {
    let mut devices_seen = 0;
    let mut previous: Option<Vec<BlockDevice>> = None;
    for attempt in 1..=DATA_DISK_ATTEMPTS {
        let devices = os.block_devices()?;
        devices_seen = devices.len();
        if previous.as_ref() == Some(&devices) {
            let mut found = Vec::new();
            for device in data_disk_candidates(&devices) {
                // An unreadable device (an empty CD-ROM drive, a hidden NVMe
                // path without a node) is not ours; if the data disk itself
                // is unreadable we end up "not found", and halt.
                let Ok(bytes) = os.read_at(device, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_LEN)
                else {
                    continue;
                };
                if ext4_superblock(&bytes).is_some_and(|sb| sb.label == label.as_bytes()) {
                    found.push(device.to_path_buf());
                }
            }
            if found.len() > 1 {
                return Err(InitError::DataDiskAmbiguous {
                    label: label.to_owned(),
                    devices: found,
                });
            }
            if let Some(device) = found.pop() {
                return Ok(device);
            }
        }
        previous = Some(devices);
        if attempt < DATA_DISK_ATTEMPTS {
            os.sleep(DATA_DISK_INTERVAL);
        }
    }
    Err(InitError::DataDiskNotFound {
        label: label.to_owned(),
        devices: devices_seen,
        attempts: DATA_DISK_ATTEMPTS,
    })
}
