//! Booting the appliance under QEMU: the command line (one pure builder,
//! snapshot-tested), the running VM (console capture with host-side
//! timestamps, the HMP monitor on a unix socket, clean stop by PID), and the
//! small host helpers the run, e2e and bench commands share (private
//! temporary directories, free loopback ports, sparse disk copies, host
//! tools).
//!
//! Invariants:
//! - Every QEMU command line carries `-netdev user,...,restrict=on`: the
//!   guest reaches only the forwards set here (a `hostfwd` to 127.0.0.1 and
//!   the metadata `guestfwd` to a program on stdin/stdout).
//! - TCG only: no `-enable-kvm`, no `accel=kvm` (KVM does not work on these
//!   machines, and results must not depend on it).
//! - A [`Vm`] kills its QEMU by PID and waits for it when dropped; nothing
//!   else is ever killed.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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
            .with_context(|| format!("no disk interface `{text}`; scsi, nvme or virtio"))
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
        for p in &paths {
            if p.to_string_lossy().contains(',') {
                bail!("QEMU cannot take a path with a comma: {}", p.display());
            }
        }
        if self.tap_netns.is_some() && (!self.forwards.is_empty() || self.metadata_cmd.is_some()) {
            bail!("a tap network takes no user-network forwards or metadata program");
        }
        if let Some(cmd) = &self.metadata_cmd {
            if cmd.contains(',') {
                bail!("the metadata command must not contain a comma: {cmd}");
            }
        }
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| (*s).to_owned()));
        push(&["-nodefaults", "-machine", "q35", "-accel", "tcg"]);
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

/// A private temporary directory (0700), removed with everything in it on
/// drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/xtask-<prefix>-<random>`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let mut rnd = [0u8; 8];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut rnd))
            .context("read /dev/urandom")?;
        let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("xtask-{prefix}-{suffix}"));
        fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A loopback port nobody listens on right now (the kernel picks it; QEMU
/// binds it a moment later, so a race is possible but harmless: QEMU then
/// fails to start and says so).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Copies a disk image keeping its holes (`data.raw` is mostly empty).
pub fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .context("run cp")?;
    if !status.success() {
        bail!("cp {} {} failed: {status}", from.display(), to.display());
    }
    Ok(())
}

/// A host program, the Debian package that has it, and why it is needed.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// A program name (looked up in `PATH`) or an absolute file path.
    pub file: &'static str,
    /// Its Debian package.
    pub package: &'static str,
}

/// What booting needs.
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

/// What the e2e test network needs (namespaces, bridge and tap; DHCP).
pub const NET_TOOLS: [Tool; 2] = [
    Tool {
        file: "ip",
        package: "iproute2",
    },
    Tool {
        file: "dnsmasq",
        package: "dnsmasq-base",
    },
];
/// What inspecting a data disk needs.
pub const DISK_TOOLS: [Tool; 2] = [
    Tool {
        file: "debugfs",
        package: "e2fsprogs",
    },
    Tool {
        file: "e2fsck",
        package: "e2fsprogs",
    },
];

fn tool_present(file: &str) -> bool {
    if file.starts_with('/') {
        return Path::new(file).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(file).is_file())
}

/// Makes sure the tools are there: as root on Debian, installs the missing
/// packages with apt-get (one line says what and why); otherwise stops with
/// the exact install line.
pub fn ensure_tools(tools: &[Tool], why: &str) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|t| !tool_present(t.file))
        .map(|t| t.package)
        .collect();
    missing.dedup();
    install_packages(&missing, why)
}

/// The Debian packages the build and the tests need (`.ci/packages`, which
/// `.ci/run` installs too): names, in order.
pub fn ci_packages() -> Vec<&'static str> {
    parse_package_list(include_str!("../../.ci/packages"))
}

/// The first word of every line that is neither blank nor a `#` comment.
pub fn parse_package_list(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// Makes sure the Debian packages are installed (asked of `dpkg-query`);
/// installs the missing ones like [`ensure_tools`].
pub fn ensure_packages(packages: &[&str], why: &str) -> Result<()> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev} ${Package}\\n"])
        .args(packages)
        .output()
        .context("run dpkg-query (is this Debian?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ii"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|name| name.split(':').next().unwrap_or(name))
        .collect();
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect();
    install_packages(&missing, why)
}

/// As root on Debian: `apt-get update`, then `apt-get install` of
/// `packages`, saying what and why; elsewhere stops with the exact lines.
fn install_packages(packages: &[&str], why: &str) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let line = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/etc/debian_version").exists() {
        bail!(
            "missing host packages ({}) {why}; install them with:\n  sudo apt-get update && sudo {line}",
            packages.join(", ")
        );
    }
    println!("xtask: installing {} ({why})", packages.join(" "));
    // A fresh machine may have no package lists yet.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("apt-get update -q && {line}"))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("run apt-get")?;
    if !status.success() {
        bail!("`apt-get update -q && {line}` failed: {status}");
    }
    Ok(())
}

/// One console line with the time it arrived, counted from QEMU's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Arrival time since the VM was started.
    pub at: Duration,
    /// The text, without `\r\n`, invalid UTF-8 replaced.
    pub text: String,
}

#[derive(Debug, Default)]
struct ConsoleLog {
    lines: Vec<Line>,
    closed: bool,
}

/// The serial console of a VM: every line so far, and a way to wait for one.
#[derive(Debug, Clone, Default)]
pub struct Console {
    inner: Arc<(Mutex<ConsoleLog>, Condvar)>,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, ConsoleLog> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a line (the capture thread, or a test).
    pub fn push(&self, at: Duration, text: String) {
        self.lock().lines.push(Line { at, text });
        self.inner.1.notify_all();
    }

    /// Marks the end of output (QEMU exited).
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.1.notify_all();
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lock().lines.clone()
    }

    /// How many lines so far.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// No lines yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether QEMU's output ended.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits up to `timeout` for a line at index `from` or later matching
    /// `pred`; returns its index and the line. `None` on timeout or when the
    /// output ended without one.
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, Line)> {
        let deadline = Instant::now() + timeout;
        let mut log = self.lock();
        let mut next = from;
        loop {
            while let Some(line) = log.lines.get(next) {
                if pred(&line.text) {
                    return Some((next, line.clone()));
                }
                next = next.saturating_add(1);
            }
            if log.closed {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            log = match self.inner.1.wait_timeout(log, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The last `n` lines as text, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.lock();
        let start = log.lines.len().saturating_sub(n);
        log.lines
            .iter()
            .skip(start)
            .map(|l| format!("    [{:7.2}] {}", l.at.as_secs_f64(), l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Splits a byte stream into console lines (`\n`-terminated, `\r` dropped).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes, returns the lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => out.push(self.take()),
                b'\r' => {}
                _ => self.partial.push(b),
            }
        }
        out
    }

    /// The unterminated rest, if any (at end of stream).
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        line
    }
}

/// Where a VM's console goes besides the in-memory [`Console`].
#[derive(Debug, Clone, Default)]
pub struct ConsoleSinks {
    /// Echo every byte to this process's stdout (`cargo xtask run`).
    pub echo: bool,
    /// Append every byte to this file.
    pub log_file: Option<PathBuf>,
}

/// A running QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    started: Instant,
    console: Console,
    monitor: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
    exit: Option<ExitStatus>,
}

impl Vm {
    /// Starts QEMU for `spec` in its own process group (a terminal's Ctrl-C
    /// reaches only xtask, which then stops QEMU itself).
    pub fn spawn(spec: &QemuSpec, sinks: &ConsoleSinks) -> Result<Vm> {
        let args = spec.args()?;
        let mut cmd = match &spec.tap_netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&spec.qemu);
                c
            }
            None => Command::new(&spec.qemu),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", spec.qemu.display()))?;
        let console = Console::default();
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let stderr_pipe = child.stderr.take().context("QEMU stderr")?;
        let mut log_file = match &sinks.log_file {
            Some(p) => Some(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("open {}", p.display()))?,
            ),
            None => None,
        };
        let echo = sinks.echo;
        let sink = console.clone();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut splitter = LineSplitter::default();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = buf.get(..n).unwrap_or_default();
                if echo {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(chunk);
                    let _ = out.flush();
                }
                if let Some(f) = log_file.as_mut() {
                    let _ = f.write_all(chunk);
                }
                for line in splitter.feed(chunk) {
                    sink.push(started.elapsed(), line);
                }
            }
            if let Some(line) = splitter.finish() {
                sink.push(started.elapsed(), line);
            }
            sink.close();
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr_pipe);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if let Ok(mut buf) = err_sink.lock() {
                    buf.extend_from_slice(&line);
                }
                line.clear();
            }
        });
        Ok(Vm {
            child,
            started,
            console,
            monitor: spec.monitor.clone(),
            stderr,
            exit: None,
        })
    }

    /// The QEMU process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The console.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// What QEMU wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// QEMU's exit status, if it has exited.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().context("wait for QEMU")?;
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one HMP command on the monitor socket and returns its output.
    pub fn monitor(&self, command: &str) -> Result<String> {
        monitor_command(&self.monitor, command, Duration::from_secs(10))
    }

    /// Stops QEMU: `quit` on the monitor, then SIGKILL by PID if it is still
    /// there after 5 s. Waits for it either way.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        let _ = self.monitor("quit");
        if let Some(status) = self.wait_exit(Duration::from_secs(5))? {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL to QEMU's PID, then wait.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        let _ = self.child.kill();
        let status = self.child.wait().context("wait for QEMU")?;
        self.exit = Some(status);
        Ok(status)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// One HMP command over the monitor socket: waits for the `(qemu) ` prompt,
/// sends the command, returns what QEMU printed before the next prompt (or
/// before it closed the socket, as after `quit`).
pub fn monitor_command(socket: &Path, command: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("connect to monitor {}", socket.display()))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    read_to_prompt(&mut stream)?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let out = read_to_prompt(&mut stream)?;
    // The terminal echo of the command comes first; drop it.
    let text = String::from_utf8_lossy(&out).into_owned();
    let text = text.replace('\r', "");
    let body = text
        .split_once('\n')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    Ok(body.trim_end_matches("(qemu) ").trim_end().to_owned())
}

fn read_to_prompt(stream: &mut UnixStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if out.ends_with(b"(qemu) ") {
            return Ok(out);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e).context("read from QEMU monitor"),
        }
    }
}

/// The files of a built image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl ImageFiles {
    /// `dir/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The kernel command line the UKI carries (`appliance.cmdline` when
    /// the assembly wrote it, else the builder's constant).
    pub fn cmdline(&self) -> String {
        fs::read_to_string(self.file("appliance.cmdline"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| appliance_image::uki::CMDLINE.to_owned())
    }

    /// The same image with `extra` words added to its kernel command line,
    /// in a temporary directory of links (kept while the [`TempDir`] lives).
    /// Only a direct boot reads it: a UEFI boot's command line is inside the
    /// UKI. A test image reads its `appliance.test_*` hooks from there.
    pub fn with_extra_cmdline(&self, extra: &str) -> Result<(TempDir, ImageFiles)> {
        let dir = TempDir::new("image-cmdline")?;
        // Links to absolute paths: a relative --image would dangle.
        let source = fs::canonicalize(&self.dir)
            .with_context(|| format!("no image directory {}", self.dir.display()))?;
        for entry in fs::read_dir(&source).with_context(|| format!("list {}", source.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            if name == "appliance.cmdline" {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), dir.path().join(&name))
                .with_context(|| format!("link {:?} into {}", name, dir.path().display()))?;
        }
        fs::write(
            dir.path().join("appliance.cmdline"),
            format!("{} {}", self.cmdline(), extra.trim()),
        )?;
        let image = ImageFiles {
            dir: dir.path().to_path_buf(),
        };
        Ok((dir, image))
    }

    /// The files missing for a boot (`direct`: kernel + initramfs; else the
    /// disk) plus the data disk.
    pub fn missing(&self, direct: bool) -> Vec<&'static str> {
        let needed: &[&'static str] = if direct {
            &["vmlinuz", "initramfs.cpio.zst", "data.raw"]
        } else {
            &["disk.raw", "data.raw"]
        };
        needed
            .iter()
            .copied()
            .filter(|f| !self.file(f).is_file())
            .collect()
    }
}

/// Everything one VM needs around it: a private directory holding the
/// monitor socket, the OVMF variables copy, the stand-in state and log, and
/// the console log.
#[derive(Debug)]
pub struct VmDir {
    dir: TempDir,
}

impl VmDir {
    /// A new private directory.
    pub fn new(prefix: &str) -> Result<VmDir> {
        Ok(VmDir {
            dir: TempDir::new(prefix)?,
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
        fs::copy(OVMF_VARS, &to).with_context(|| format!("copy {OVMF_VARS}"))?;
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

/// The metadata program line for QEMU: a private copy of this very executable
/// (in the VM's directory, removed with it) with the hidden subcommand and the
/// state file. A copy, because QEMU starts the program once per guest
/// connection for as long as the VM runs, and a `cargo build` meanwhile (CI
/// runs `cargo test` before e2e in the same `cargo xtask ci`) replaces
/// `target/debug/xtask`, leaving this process's own path deleted.
pub fn standin_command(state_file: &Path) -> Result<String> {
    let dir = state_file
        .parent()
        .context("the stand-in state file has no directory")?;
    let exe = dir.join("xtask-standin");
    std::fs::copy("/proc/self/exe", &exe)
        .with_context(|| format!("cannot copy the xtask executable to {}", exe.display()))?;
    let line = format!(
        "{} __metadata-standin --state {}",
        exe.display(),
        state_file.display()
    );
    if line.contains(',') || exe.to_string_lossy().contains(' ') {
        bail!(
            "the xtask path cannot be passed to QEMU's guestfwd: {}",
            exe.display()
        );
    }
    Ok(line)
}

/// A spec for booting `image` with `data` attached, the server port
/// forwarded to `server_port` (and any `extra` forwards), the stand-in
/// reading `vm.state_file()`.
pub fn plan_boot(
    image: &ImageFiles,
    mode: BootMode,
    data: &Path,
    vm: &VmDir,
    server_port: u16,
    extra: &[Forward],
) -> Result<QemuSpec> {
    let mut spec = QemuSpec::new(boot_of(image, mode, vm)?, vm.monitor());
    spec.data_disk = Some(data.to_path_buf());
    spec.disk_interface = APPLIANCE_DISK_INTERFACE;
    spec.forwards.push(Forward {
        host: server_port,
        guest: GUEST_SERVER_PORT,
    });
    spec.forwards.extend_from_slice(extra);
    spec.metadata_cmd = Some(standin_command(&vm.state_file())?);
    Ok(spec)
}

/// A spec for booting `image` with `data` attached on the e2e test network
/// in namespace `netns` (see [`crate::testnet`]): no forwards, the
/// namespace's clients reach the guest's address directly.
pub fn plan_tap_boot(
    image: &ImageFiles,
    mode: BootMode,
    data: &Path,
    vm: &VmDir,
    netns: &str,
) -> Result<QemuSpec> {
    let mut spec = QemuSpec::new(boot_of(image, mode, vm)?, vm.monitor());
    spec.data_disk = Some(data.to_path_buf());
    spec.disk_interface = APPLIANCE_DISK_INTERFACE;
    spec.tap_netns = Some(netns.to_owned());
    Ok(spec)
}

fn boot_of(image: &ImageFiles, mode: BootMode, vm: &VmDir) -> Result<Boot> {
    Ok(match mode {
        BootMode::Uefi => Boot::Uefi {
            disk: image.file("disk.raw"),
            ovmf_code: PathBuf::from(OVMF_CODE),
            ovmf_vars: vm.ovmf_vars()?,
        },
        BootMode::Direct => Boot::Direct {
            kernel: image.file("vmlinuz"),
            initrd: image.file("initramfs.cpio.zst"),
            cmdline: image.cmdline(),
        },
    })
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
            assert!(joined.contains("-accel tcg"));
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
        assert!(spec.args().is_err());
        let mut spec = uefi_spec();
        spec.extra_disks = vec!["/tmp/a,b/twin.raw".into()];
        assert!(spec.args().is_err());
        let mut spec = uefi_spec();
        spec.metadata_cmd = Some("prog --x a,b".into());
        assert!(spec.args().is_err());
    }

    #[test]
    fn line_splitter_handles_crlf_and_partial_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"appliance: in"), Vec::<String>::new());
        assert_eq!(
            s.feed(b"it 0.1 starting\r\nnext\r"),
            vec!["appliance: init 0.1 starting"]
        );
        assert_eq!(
            s.feed(b"\n\xff\n"),
            vec!["next".to_owned(), "\u{fffd}".to_owned()]
        );
        assert_eq!(s.feed(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn console_wait_for_sees_old_and_new_lines() {
        let c = Console::default();
        c.push(Duration::from_secs(1), "a".into());
        let (i, l) = c.wait_for(0, Duration::ZERO, |t| t == "a").unwrap();
        assert_eq!((i, l.at), (0, Duration::from_secs(1)));
        assert!(c
            .wait_for(1, Duration::from_millis(10), |t| t == "a")
            .is_none());
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c2.push(Duration::from_secs(2), "b".into());
        });
        let (i, _) = c.wait_for(0, Duration::from_secs(5), |t| t == "b").unwrap();
        assert_eq!(i, 1);
        t.join().unwrap();
        c.close();
        let start = Instant::now();
        assert!(c
            .wait_for(0, Duration::from_secs(5), |t| t == "zzz")
            .is_none());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "closed console must not wait"
        );
    }

    #[test]
    fn temp_dir_is_private_and_removed() {
        let d = TempDir::new("qemu-test").unwrap();
        let p = d.path().to_path_buf();
        fs::write(p.join("f"), b"x").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn free_ports_are_loopback_bindable() {
        let p = free_port().unwrap();
        assert!(p > 0);
        TcpListener::bind(("127.0.0.1", p)).unwrap();
    }
}

#[cfg(test)]
mod package_list_tests {
    use super::{ci_packages, parse_package_list};

    #[test]
    fn package_list_takes_first_words_and_skips_comments() {
        let text = "# header\n\nredis-server   why it is needed\n  # indented comment\nqemu-system-x86 boots\n";
        assert_eq!(
            parse_package_list(text),
            ["redis-server", "qemu-system-x86"]
        );
    }

    #[test]
    fn ci_package_list_is_well_formed() {
        let pkgs = ci_packages();
        for needed in [
            "qemu-system-x86",
            "ovmf",
            "systemd-boot-efi",
            "redis-server",
            "nftables",
        ] {
            assert!(pkgs.contains(&needed), "{needed} missing from .ci/packages");
        }
        let mut sorted = pkgs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), pkgs.len(), "a package is listed twice");
        // Debian package names: lowercase letters, digits, + - . (no shell
        // syntax reaches apt-get from this file).
        for p in &pkgs {
            assert!(
                p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)),
                "{p}"
            );
        }
        // Every line names a reason.
        for line in include_str!("../../.ci/packages").lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                line.split_whitespace().count() > 1,
                "no reason given: {line}"
            );
        }
    }
}
