//! `cargo xtask e2e`: boots built images under QEMU (TCG, `restrict=on`)
//! and checks from outside what a user and an attacker would see. Each case
//! is named and prints `[PASS] <name> (<secs>s)` or `[FAIL] <name>: <why>`;
//! the last line is `<n> passed, <m> failed`; any failure exits non-zero.
//!
//! One VM of the production image serves the cases that can share it
//! (ready, acl-wall, no-lua, two-processes, firewall, bgsave, guard-attacks,
//! guard-flood, then
//! power-button restarts it on the same data disk, then no-cleartext scans
//! the disks); each `intrude-<step>` case (one per step of the test-only
//! intruder module, see [`intrusion`]) boots its own VM of the test-profile
//! image; each fail-closed metadata case boots its own VM. Images are never modified:
//! every run works on a sparse copy of `data.raw` in a private temporary
//! directory.

mod abuse;
mod disks;
mod guard;
mod intrusion;
mod metadata;
mod shared;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use appliance_spec::Spec;
use host_tools::{ensure_tools, Tool};
use vm_harness::resp::{Conn, Value};
use vm_harness::standin::{Mode, Password, State};
use vm_harness::{
    free_port, matchers, plan_boot, testnet, BootMode, ConsoleSinks, DataCopy, Forward, ImageFiles,
    Network, QemuSpec, TempDir, TestNet, Vm, VmDir,
};

use appliance_image::Profile;

/// What inspecting a data disk needs.
const DISK_TOOLS: [Tool; 2] = [
    Tool {
        file: "debugfs",
        package: "e2fsprogs",
    },
    Tool {
        file: "e2fsck",
        package: "e2fsprogs",
    },
];

/// Bounded waits (TCG on a shared 2-core machine is slow; these are upper
/// bounds, not expectations).
pub const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a halting boot may take to print its FATAL line.
pub const FATAL_TIMEOUT: Duration = Duration::from_secs(180);
/// One command's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Every case except the intrusion cases, in the order they run; the
/// `intrude-<step>` cases ([`intrusion::case_names`]) follow them (see
/// [`all_cases`]).
pub const CASES: [&str; 27] = [
    "ready",
    "acl-wall",
    "no-lua",
    "two-processes",
    "firewall",
    "bgsave",
    "guard-attacks",
    "guard-flood",
    "power-button",
    "no-cleartext",
    "secret-line-ending",
    "abuse-amplify",
    "abuse-bulks",
    "abuse-slots",
    "abuse-trickle",
    "abuse-guessing",
    "abuse-rewrites",
    "abuse-disk-fill",
    "secret-control-char",
    "secret-short-admin",
    "secret-same",
    "metadata-missing-key",
    "metadata-wrong-header",
    "metadata-oversized",
    "metadata-never-answers",
    "disk-interfaces",
    "disk-label-fatal",
];

/// Every case name, in the order they run: [`CASES`], then one
/// `intrude-<step>` case per step of the intruder module.
pub fn all_cases() -> Vec<String> {
    CASES
        .iter()
        .map(|c| (*c).to_owned())
        .chain(intrusion::case_names())
        .collect()
}

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The production image directory.
    pub image: PathBuf,
    /// The test-profile image directory (the intruder module, the test
    /// hooks).
    pub test_image: PathBuf,
    /// Run only these cases.
    pub only: Vec<String>,
    /// Boot with `-kernel/-initrd` instead of OVMF.
    pub boot: BootMode,
    /// Keep console logs in this directory.
    pub logs: Option<PathBuf>,
    /// Words added to every boot's kernel command line (direct boots).
    pub append: Option<String>,
}

/// The usage of `cargo xtask e2e` (printed by `--help`).
pub const USAGE: &str = "\
usage: cargo xtask e2e [--only NAME]... [--direct] [--image DIR] [--test-image DIR] [--logs DIR]

  --only NAME       run one case (repeatable); `--only list` prints the names
  --direct          boot with -kernel/-initrd (faster) instead of OVMF + disk.raw
  --image DIR       production image (default target/appliance)
  --test-image DIR  test-profile image, with the intruder module (default target/appliance-test)
  --logs DIR        keep every VM's console log there (default: a temp dir, removed)
  --append WORDS    add WORDS to every boot's kernel command line (implies --direct: a UEFI
                    boot's command line is inside the UKI); with --image pointing at a test
                    image, `--append appliance.test_seccomp=log` measures the syscall allowlist
";

impl Options {
    /// Parses the arguments after `e2e`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let root = crate::run::workspace_root();
        let mut o = Options {
            image: root.join("target/appliance"),
            test_image: root.join("target/appliance-test"),
            only: Vec::new(),
            boot: BootMode::Uefi,
            logs: None,
            append: None,
        };
        let mut args = crate::Args::new(args, USAGE);
        while let Some(a) = args.next_flag() {
            match a {
                "--only" => o.only.push(args.value(a)?),
                "--direct" => o.boot = BootMode::Direct,
                "--image" => o.image = PathBuf::from(args.value(a)?),
                "--test-image" => o.test_image = PathBuf::from(args.value(a)?),
                "--logs" => o.logs = Some(PathBuf::from(args.value(a)?)),
                "--append" => {
                    o.append = Some(args.value(a)?);
                    o.boot = BootMode::Direct;
                }
                "-h" | "--help" => bail!("{USAGE}"),
                other => return Err(args.unknown(other)),
            }
        }
        let all = all_cases();
        for name in &o.only {
            if name != "list" && !all.contains(name) {
                bail!("no case named `{name}`; cases: {}", all.join(", "));
            }
        }
        Ok(o)
    }
}

/// Entry of `cargo xtask e2e`.
pub fn main(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let all = all_cases();
    if opts.only.iter().any(|n| n == "list") {
        for c in &all {
            println!("{c}");
        }
        return Ok(());
    }
    ensure_tools(&vm_harness::BOOT_TOOLS, "to boot the image under QEMU")?;
    ensure_tools(&DISK_TOOLS, "to inspect the data disk")?;
    ensure_tools(&testnet::TOOLS, "for the many-address test network")?;
    raise_fd_limit();
    let selected: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|c| opts.only.is_empty() || opts.only.iter().any(|o| o == c))
        .collect();
    let direct = opts.boot == BootMode::Direct;
    let wants = [
        (
            Profile::Production,
            &opts.image,
            selected.iter().any(|c| !c.starts_with(intrusion::PREFIX)),
        ),
        (
            Profile::Test,
            &opts.test_image,
            selected.iter().any(|c| c.starts_with(intrusion::PREFIX)),
        ),
    ];
    for (profile, dir, wanted) in wants {
        if wanted {
            let image = ImageFiles::new(dir);
            // The intrusion cases boot the test image directly, always.
            let direct = direct || profile == Profile::Test;
            // A failed build shows again in every case that needs the image.
            if let Err(e) = crate::run::ensure_image(profile, &image, direct) {
                println!("xtask: no {} image: {e:#}", profile.as_str());
            }
        }
    }
    let mut ctx = Ctx::new(opts)?;
    let mut report = Report::default();
    for name in selected {
        let start = Instant::now();
        let result = run_case(&mut ctx, name);
        report.record(name, start.elapsed(), result);
    }
    ctx.shutdown_shared();
    println!("{} passed, {} failed", report.passed, report.failed);
    if report.failed > 0 {
        bail!("{} e2e case(s) failed", report.failed);
    }
    Ok(())
}

fn run_case(ctx: &mut Ctx, name: &str) -> Result<Vec<String>> {
    match name {
        "ready" => shared::ready(ctx),
        "acl-wall" => shared::acl_wall(ctx),
        "no-lua" => shared::no_lua(ctx),
        "two-processes" => shared::two_processes(ctx),
        "firewall" => shared::firewall(ctx),
        "bgsave" => shared::bgsave(ctx),
        "guard-attacks" => guard::guard_attacks(ctx),
        "guard-flood" => guard::guard_flood(ctx),
        "power-button" => shared::power_button(ctx),
        "no-cleartext" => shared::no_cleartext(ctx),
        "metadata-missing-key" => metadata::fail_closed(
            ctx,
            Mode::MissingKey(vm_harness::standin::VISITOR_KEY.into()),
        ),
        "metadata-wrong-header" => metadata::fail_closed(ctx, Mode::WrongHeader),
        "metadata-oversized" => metadata::fail_closed(ctx, Mode::Oversized),
        "metadata-never-answers" => metadata::fail_closed(ctx, Mode::NeverAnswers),
        "secret-line-ending" => secret_line_ending(ctx),
        "abuse-amplify" => on_net_vm(ctx, abuse::amplify),
        "abuse-bulks" => on_net_vm(ctx, abuse::bulks),
        "abuse-slots" => on_net_vm(ctx, abuse::slots),
        "abuse-trickle" => on_net_vm(ctx, abuse::trickle),
        "abuse-guessing" => on_net_vm(ctx, abuse::guessing),
        "abuse-rewrites" => on_net_vm(ctx, abuse::rewrites),
        "abuse-disk-fill" => disk_fill(ctx),
        "secret-control-char" => metadata::fail_closed(ctx, Mode::ControlChar),
        "secret-short-admin" => metadata::fail_closed(ctx, Mode::ShortAdmin),
        "secret-same" => metadata::fail_closed(ctx, Mode::SameSecrets),
        "disk-interfaces" => disks::disk_interfaces(ctx),
        "disk-label-fatal" => disks::disk_label_fatal(ctx),
        other => match intrusion::step_for(other) {
            Some(step) => intrusion::step_case(ctx, step),
            None => bail!("no case `{other}`"),
        },
    }
}

/// The abuse cases hold well over a thousand sockets at once: lift the
/// soft descriptor limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Pass/fail counts and the printed lines.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

impl Report {
    /// Prints one case's result (notes indented under a PASS).
    pub fn record(&mut self, name: &str, took: Duration, result: Result<Vec<String>>) {
        match result {
            Ok(notes) => {
                self.passed += 1;
                println!("[PASS] {name} ({:.1}s)", took.as_secs_f64());
                for n in notes {
                    println!("       {n}");
                }
            }
            Err(why) => {
                self.failed += 1;
                let why = format!("{why:#}");
                let mut lines = why.lines();
                println!("[FAIL] {name}: {}", lines.next().unwrap_or(""));
                for l in lines {
                    println!("       {l}");
                }
            }
        }
    }
}

/// What every case can reach: options, the images' specs, the shared VM.
pub struct Ctx {
    opts: Options,
    image: ImageFiles,
    test_image: ImageFiles,
    /// The link directories of `--append`, kept while the images are used.
    _appended: Vec<TempDir>,
    passwords: (Password, Password),
    logs: LogDir,
    shared: Shared,
    net: NetVm,
}

/// A VM several cases share: booted (and ready) on first use; a failed
/// boot is kept, and every later case that needs the VM fails at once.
#[derive(Default)]
struct SharedVm {
    session: Option<Session>,
    boot_error: Option<String>,
}

/// The VM in `slot(ctx)`, booted with `boot` if no case has tried yet;
/// `what` names it in errors.
fn shared_vm<'a>(
    ctx: &'a mut Ctx,
    what: &str,
    slot: fn(&mut Ctx) -> &mut SharedVm,
    boot: fn(&mut Ctx) -> Result<Session>,
) -> Result<&'a mut Session> {
    if let Some(e) = &slot(ctx).boot_error {
        let first = e.lines().next().unwrap_or_default();
        bail!("{what} did not come up (details above): {first}");
    }
    if slot(ctx).session.is_none() {
        let booted = boot(ctx);
        let vm = slot(ctx);
        match booted {
            Ok(s) => vm.session = Some(s),
            Err(e) => {
                let text = format!("{e:#}");
                vm.boot_error = Some(text.clone());
                bail!("{what} did not come up: {text}");
            }
        }
    }
    slot(ctx).session.as_mut().context("no shared VM")
}

/// The production VM on the test network that the abuse cases share, and
/// its data disk.
#[derive(Default)]
struct NetVm {
    data: Option<DataCopy>,
    vm: SharedVm,
}

/// Client addresses on the test network: the admin, the well-behaved
/// visitor, and enough attackers for the widest case.
const NET_CLIENTS: u16 = 128;
/// The small data disk of abuse-disk-fill.
const SMALL_DISK: u64 = 128 << 20;

/// Runs `case` on the shared test-network VM (booted on first use).
fn on_net_vm(ctx: &mut Ctx, case: fn(&mut Session) -> Result<Vec<String>>) -> Result<Vec<String>> {
    let s = ctx.net_vm()?;
    case(s)
}

/// The test-network VM's stand-in serves every secret followed by a
/// newline, as `--metadata-from-file` sends a text file; its boot shows
/// that the passwords as typed (without it) work.
fn secret_line_ending(ctx: &mut Ctx) -> Result<Vec<String>> {
    let s = ctx.net_vm()?;
    let mut admin = s.admin_conn()?;
    let (name, stream) = s.visitor()?;
    let (name, stream) = (name.to_owned(), stream.to_owned());
    let mut v = s.connect(Source::Visitor, REPLY_TIMEOUT)?;
    v.auth(&name, s.state.visitor_pass.expose())?;
    let id = xadd(&mut v, &stream, "line-ending")?;
    let mut wrong = s.connect(Source::Visitor, REPLY_TIMEOUT)?;
    let with_newline = format!("{}\n", s.state.visitor_pass.expose());
    match wrong.cmd(&["AUTH", &name, &with_newline])? {
        v if v.error().is_some_and(|e| e.starts_with("WRONGPASS")) => {}
        other => bail!("AUTH with the trailing newline answered {other:?}"),
    }
    let (len, _) = stream_tail(&mut admin, &stream)?;
    Ok(vec![format!(
        "the stand-in served both secrets with a trailing \\n; admin and visitor AUTH with the typed          passwords; XADD {id} acknowledged (XLEN {len}); the value with the newline is WRONGPASS"
    )])
}

/// abuse-disk-fill: its own VM on a small data disk.
fn disk_fill(ctx: &mut Ctx) -> Result<Vec<String>> {
    ctx.require(&ctx.image, "production image")?;
    let dir = vm_harness::temp_dir("e2e-small-disk")?;
    let disk = dir.path().join("data.raw");
    appliance_image::ext4::write(&disk, SMALL_DISK, 0)?;
    let log = ctx.logs.path().join("disk-fill.console.log");
    let mut s = Session::boot_on_net(
        &ctx.image,
        ctx.opts.boot,
        &disk,
        ctx.state(Mode::Normal),
        log,
        NET_CLIENTS,
    )?;
    let (at, _) = s.wait_ready(ReadyProbe::VisitorXadd)?;
    let mut notes = vec![format!(
        "booted on a {} MiB data disk, ready after {:.1}s",
        SMALL_DISK >> 20,
        at.as_secs_f64()
    )];
    let result = abuse::disk_fill(&mut s);
    let _ = s.vm.monitor("system_powerdown");
    let _ = s.vm.wait_exit(Duration::from_secs(60));
    let _ = s.vm.stop();
    notes.extend(result?);
    Ok(notes)
}

/// Where console logs go.
enum LogDir {
    Temp(TempDir),
    Kept(PathBuf),
}

impl LogDir {
    fn path(&self) -> &Path {
        match self {
            LogDir::Temp(t) => t.path(),
            LogDir::Kept(p) => p,
        }
    }
}

/// The VM most cases share, its data disk, and what was acknowledged on it.
#[derive(Default)]
struct Shared {
    data: Option<DataCopy>,
    vm: SharedVm,
    acked: Acked,
    /// Console logs of every shared boot (scanned by no-cleartext).
    console_logs: Vec<PathBuf>,
    /// Set once power-button ran (the disk then holds a clean shutdown).
    stopped_cleanly: bool,
}

/// Acknowledged XADDs on one data disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acked {
    /// How many.
    pub count: u64,
    /// The last acknowledged ID.
    pub last_id: Option<String>,
}

impl Ctx {
    fn new(opts: Options) -> Result<Ctx> {
        let logs = match &opts.logs {
            Some(p) => {
                std::fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
                LogDir::Kept(p.clone())
            }
            None => LogDir::Temp(vm_harness::temp_dir("e2e-logs")?),
        };
        let mut image = ImageFiles::new(&opts.image);
        let mut test_image = ImageFiles::new(&opts.test_image);
        let mut appended = Vec::new();
        if let Some(words) = &opts.append {
            for files in [&mut image, &mut test_image] {
                let (dir, with) = files.with_extra_cmdline(words)?;
                *files = with;
                appended.push(dir);
            }
        }
        Ok(Ctx {
            image,
            test_image,
            _appended: appended,
            opts,
            passwords: (Password::generate()?, Password::generate()?),
            logs,
            shared: Shared::default(),
            net: NetVm::default(),
        })
    }

    fn state(&self, mode: Mode) -> State {
        State {
            mode,
            admin_pass: self.passwords.0.clone(),
            visitor_pass: self.passwords.1.clone(),
        }
    }

    fn require(&self, image: &ImageFiles, what: &str) -> Result<()> {
        let missing = image.missing(self.opts.boot == BootMode::Direct);
        if !missing.is_empty() {
            bail!(
                "no {what} at {} (missing {}); build it there first with `cargo xtask image`",
                image.dir().display(),
                missing.join(", "),
            );
        }
        Ok(())
    }

    /// The shared production VM, booted (and ready) on first use.
    fn shared(&mut self) -> Result<&mut Session> {
        shared_vm(
            self,
            "the shared VM",
            |c| &mut c.shared.vm,
            Ctx::boot_shared,
        )
    }

    /// The next boot's console log on the shared data disk (no-cleartext
    /// scans them all).
    fn next_shared_log(&mut self) -> PathBuf {
        let n = self.shared.console_logs.len();
        let log = self.logs.path().join(format!("shared-{n}.console.log"));
        self.shared.console_logs.push(log.clone());
        log
    }

    fn boot_shared(&mut self) -> Result<Session> {
        self.require(&self.image, "production image")?;
        if self.shared.data.is_none() {
            self.shared.data = Some(self.image.fresh_data("e2e-shared-data")?);
        }
        let data = self.shared_data()?;
        let log = self.next_shared_log();
        let mut session = Session::boot(
            &self.image,
            self.opts.boot,
            &data,
            self.state(Mode::Normal),
            log,
        )?;
        let (_, id) = session.wait_ready(ReadyProbe::VisitorXadd)?;
        if let Some(id) = id {
            self.shared.acked.count += 1;
            self.shared.acked.last_id = Some(id);
        }
        Ok(session)
    }

    /// The test-network VM, booted (and ready) on first use.
    fn net_vm(&mut self) -> Result<&mut Session> {
        shared_vm(
            self,
            "the test-network VM",
            |c| &mut c.net.vm,
            Ctx::boot_net_vm,
        )
    }

    fn boot_net_vm(&mut self) -> Result<Session> {
        self.require(&self.image, "production image")?;
        let copy = self.image.fresh_data("e2e-net-data")?;
        let data = copy.disk();
        self.net.data = Some(copy);
        let log = self.logs.path().join("net.console.log");
        let mut session = Session::boot_on_net(
            &self.image,
            self.opts.boot,
            &data,
            self.state(Mode::LineEnding),
            log,
            NET_CLIENTS,
        )?;
        session.wait_ready(ReadyProbe::VisitorXadd)?;
        Ok(session)
    }

    fn shared_data(&self) -> Result<PathBuf> {
        Ok(self
            .shared
            .data
            .as_ref()
            .context("no shared data disk")?
            .disk())
    }

    /// Stops the shared VM if it runs: power button, then QEMU `quit`.
    fn shutdown_shared(&mut self) {
        for s in [self.net.vm.session.take(), self.shared.vm.session.take()]
            .into_iter()
            .flatten()
        {
            power_off(s);
        }
    }
}

/// Power button, up to 60 s for the guest to power off, then QEMU `quit`.
fn power_off(mut s: Session) {
    let _ = s.vm.monitor("system_powerdown");
    if s.vm
        .wait_exit(Duration::from_secs(60))
        .ok()
        .flatten()
        .is_none()
    {
        let _ = s.vm.stop();
    }
}

/// What proves a booted appliance ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyProbe {
    /// The visitor authenticates and one XADD is acknowledged (its ID is
    /// returned).
    VisitorXadd,
    /// The admin authenticates and PING answers (writes nothing).
    AdminPing,
}

/// One booted VM: QEMU, its private directory, its ports and passwords.
pub struct Session {
    /// QEMU.
    pub vm: Vm,
    /// Monitor socket, stand-in state, OVMF vars.
    pub dir: VmDir,
    /// The server's forwarded loopback port.
    pub port: u16,
    /// A loopback port forwarded to guest port 22 (nothing should answer).
    pub extra_port: u16,
    /// What the stand-in serves.
    pub state: State,
    /// The image's spec.
    pub spec: Spec,
    /// QEMU start -> first acknowledged XADD (or admin PING).
    pub ready_at: Option<Duration>,
    /// The console log file.
    pub console_log: PathBuf,
    /// Set when the guest is on the e2e test network (many client
    /// addresses) instead of the user network; `port` is then the guest's
    /// own server port.
    pub net: Option<TestNet>,
}

/// Who connects on the test network: each role has its own source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The admin (client address 0).
    Admin,
    /// The well-behaved visitor (client address 1).
    Visitor,
    /// Attacker address `n` (client address 2 + n).
    Attacker(u16),
}

impl Source {
    /// The client address index in [`testnet::client_addr`].
    pub fn index(self) -> u16 {
        match self {
            Source::Admin => 0,
            Source::Visitor => 1,
            Source::Attacker(n) => n.saturating_add(2),
        }
    }
}

/// Where a [`Session`]'s guest is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// QEMU's user network: the server and guest port 22 forwarded to free
    /// loopback ports; every client comes from the same address.
    User,
    /// A fresh test network with this many client addresses (see
    /// [`testnet`]).
    Test {
        /// Client addresses.
        clients: u16,
    },
}

impl Session {
    /// Boots `image` on `data` with the stand-in in `state.mode`.
    pub fn boot(
        image: &ImageFiles,
        mode: BootMode,
        data: &Path,
        state: State,
        console_log: PathBuf,
    ) -> Result<Session> {
        Session::start(image, mode, data, state, console_log, Net::User, |_| {})
    }

    /// Boots `image` on `data` on a fresh test network with `clients`
    /// client addresses (see [`testnet`]).
    pub fn boot_on_net(
        image: &ImageFiles,
        mode: BootMode,
        data: &Path,
        state: State,
        console_log: PathBuf,
        clients: u16,
    ) -> Result<Session> {
        let net = Net::Test { clients };
        Session::start(image, mode, data, state, console_log, net, |_| {})
    }

    /// Boots `image` on `data` on `net`, with the stand-in in `state.mode`
    /// and the console logged to `console_log`; `adjust` may change the
    /// planned QEMU spec first (disk interface, more disks).
    pub fn start(
        image: &ImageFiles,
        mode: BootMode,
        data: &Path,
        state: State,
        console_log: PathBuf,
        net: Net,
        adjust: impl FnOnce(&mut QemuSpec),
    ) -> Result<Session> {
        let spec = image_spec(image)?;
        let dir = VmDir::new("e2e-vm")?;
        state.write(&dir.state_file())?;
        let (mut qspec, port, extra_port, net) = match net {
            Net::User => {
                let port = free_port()?;
                let extra_port = free_port()?;
                let extra = [Forward {
                    host: extra_port,
                    guest: 22,
                }];
                let network = Network::User {
                    server_port: port,
                    extra: &extra,
                };
                let qspec = plan_boot(image, mode, data, &dir, network)?;
                (qspec, port, extra_port, None)
            }
            Net::Test { clients } => {
                let net = TestNet::create(clients, &dir.state_file())?;
                let qspec = plan_boot(image, mode, data, &dir, Network::Test(&net))?;
                (qspec, spec.server().port(), 0, Some(net))
            }
        };
        adjust(&mut qspec);
        let sinks = ConsoleSinks {
            echo: false,
            log_file: Some(console_log.clone()),
        };
        let vm = Vm::spawn(&qspec, &sinks)?;
        Ok(Session {
            vm,
            dir,
            port,
            extra_port,
            state,
            spec,
            ready_at: None,
            console_log,
            net,
        })
    }

    /// The server's address as a client reaches it: the guest on the test
    /// network, or QEMU's forward on loopback.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        match &self.net {
            Some(_) => std::net::SocketAddr::from((testnet::GUEST, self.port)),
            None => std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
        }
    }

    /// A connection from `source` (on the user network every source is the
    /// same loopback client). The calling thread must not have entered
    /// another namespace.
    pub fn connect(&self, source: Source, timeout: Duration) -> Result<Conn> {
        let Some(net) = &self.net else {
            return Ok(Conn::connect(self.port, timeout)?);
        };
        let from = std::net::IpAddr::V4(testnet::client_addr(source.index()));
        let to = self.server_addr();
        let stream = net.within(move || testnet::connect_from(from, to, timeout))??;
        Ok(Conn::from_stream(stream, timeout))
    }

    /// The visitor's name and stream from the spec.
    pub fn visitor(&self) -> Result<(&str, &str)> {
        let v = self
            .spec
            .visitors()
            .first()
            .context("the spec has no visitor")?;
        Ok((v.user().name(), v.stream()))
    }

    /// A visitor connection, authenticated.
    pub fn visitor_conn(&self) -> Result<Conn> {
        let (name, _) = self.visitor()?;
        let mut c = self.connect(Source::Visitor, REPLY_TIMEOUT)?;
        c.auth(name, self.state.visitor_pass.expose())?;
        Ok(c)
    }

    /// An admin connection, authenticated.
    pub fn admin_conn(&self) -> Result<Conn> {
        let mut c = self.connect(Source::Admin, REPLY_TIMEOUT)?;
        c.auth(self.spec.admin().name(), self.state.admin_pass.expose())?;
        Ok(c)
    }

    /// Fails with the reason when the boot is over: QEMU exited or init
    /// printed a FATAL line.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.vm.try_exit()? {
            bail!(
                "QEMU exited ({status}) before the server was ready\n{}\nQEMU stderr: {}",
                self.vm.console().tail(15),
                self.vm.stderr_text().trim()
            );
        }
        if let Some(line) = self.vm.console().lines().iter().find(|l| {
            matchers::fatal(&l.text).is_some()
                || matchers::halt_verdict(&l.text).is_some()
                || l.text.contains(matchers::KERNEL_HALTED)
                || l.text.contains("Kernel panic")
        }) {
            bail!(
                "the machine stopped: {}\n{}",
                line.text,
                self.vm.console().tail(10)
            );
        }
        Ok(())
    }

    /// Polls until `probe` succeeds; returns the time since QEMU's start
    /// (kept as `ready_at` too) and, for [`ReadyProbe::VisitorXadd`], the
    /// acknowledged ID.
    pub fn wait_ready(&mut self, probe: ReadyProbe) -> Result<(Duration, Option<String>)> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("no attempt yet");
        loop {
            self.check_alive()?;
            if Instant::now() >= deadline {
                bail!(
                    "not ready within {}s (last attempt: {last_error})\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.vm.console().tail(15)
                );
            }
            let attempt = match probe {
                ReadyProbe::VisitorXadd => self.try_visitor_xadd().map(Some),
                ReadyProbe::AdminPing => self.try_admin_ping().map(|()| None),
            };
            match attempt {
                Ok(id) => {
                    let at = self.vm.started().elapsed();
                    self.ready_at = Some(at);
                    return Ok((at, id));
                }
                Err(e) => last_error = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn try_visitor_xadd(&self) -> Result<String> {
        let (name, stream) = self.visitor()?;
        let mut c = self.connect(Source::Visitor, Duration::from_secs(3))?;
        c.auth(name, self.state.visitor_pass.expose())?;
        xadd(&mut c, stream, "ready")
    }

    fn try_admin_ping(&self) -> Result<()> {
        let mut c = self.connect(Source::Admin, Duration::from_secs(3))?;
        c.auth(self.spec.admin().name(), self.state.admin_pass.expose())?;
        match c.cmd(&["PING"])? {
            Value::Simple(p) if p == "PONG" => Ok(()),
            other => bail!("PING answered {other:?}"),
        }
    }

    /// `system_powerdown`, then waits for QEMU to exit by itself.
    pub fn power_button(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        self.vm.monitor("system_powerdown")?;
        Ok(self.vm.wait_exit(timeout)?)
    }
}

/// One visitor XADD of `{field: value}` with an auto ID; returns the ID.
pub fn xadd(c: &mut Conn, stream: &str, value: &str) -> Result<String> {
    match c.cmd(&["XADD", stream, "*", "e2e", value])? {
        Value::Bulk(Some(id)) => Ok(String::from_utf8_lossy(&id).into_owned()),
        other => bail!("XADD answered {other:?}"),
    }
}

/// `XLEN` and the last ID of `stream`, as the admin sees them.
pub fn stream_tail(c: &mut Conn, stream: &str) -> Result<(i64, Option<String>)> {
    let len = c
        .cmd(&["XLEN", stream])?
        .int()
        .context("XLEN did not answer an integer")?;
    let last = c.cmd(&["XREVRANGE", stream, "+", "-", "COUNT", "1"])?;
    let id = last
        .items()
        .and_then(|items| items.first())
        .and_then(Value::items)
        .and_then(|entry| entry.first())
        .and_then(Value::text);
    Ok((len, id))
}

/// Checks that a fresh boot on a data disk holds exactly what was
/// acknowledged.
pub fn check_acked(c: &mut Conn, stream: &str, acked: &Acked) -> Result<String> {
    let (len, last) = stream_tail(c, stream)?;
    let want = i64::try_from(acked.count).unwrap_or(i64::MAX);
    if len != want {
        bail!("XLEN {stream} is {len}, but {want} XADDs were acknowledged");
    }
    if last != acked.last_id {
        bail!(
            "last ID is {:?}, but the last acknowledged was {:?}",
            last,
            acked.last_id
        );
    }
    Ok(format!("XLEN {len}, last ID {}", last.unwrap_or_default()))
}

/// The initramfs of an image, decompressed.
pub fn initramfs(image: &ImageFiles) -> Result<Vec<u8>> {
    let zst = std::fs::read(image.file("initramfs.cpio.zst"))
        .with_context(|| format!("read {}", image.file("initramfs.cpio.zst").display()))?;
    Ok(appliance_image::verify::unzstd(&zst)?)
}

/// One file of the image's initramfs.
pub fn initramfs_file(image: &ImageFiles, path: &str) -> Result<Vec<u8>> {
    let cpio = initramfs(image)?;
    let entries = image_formats::cpio::parse(&cpio)?;
    entries
        .iter()
        .find(|e| e.abs_path() == path)
        .map(|e| e.data.to_vec())
        .ok_or_else(|| {
            anyhow!(
                "{path} is not in {}",
                image.file("initramfs.cpio.zst").display()
            )
        })
}

/// The spec baked into the image (`/etc/appliance.toml`).
pub fn image_spec(image: &ImageFiles) -> Result<Spec> {
    let text = initramfs_file(image, image_layout::SPEC_PATH)?;
    let text = String::from_utf8(text).context("the image's spec is not UTF-8")?;
    Ok(Spec::from_toml_str(&text)?)
}

/// Whether `needle` occurs in the file at `path` (streamed in chunks).
pub fn file_contains(path: &Path, needle: &[u8]) -> Result<bool> {
    Ok(file_contains_any(path, &[needle])?
        .first()
        .copied()
        .unwrap_or(false))
}

/// Which of `needles` occur in the file at `path`, in one pass.
pub fn file_contains_any(path: &Path, needles: &[&[u8]]) -> Result<Vec<bool>> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    reader_contains_any(f, needles)
}

/// Whether `needle` occurs in what `r` yields.
pub fn reader_contains<R: Read>(r: R, needle: &[u8]) -> Result<bool> {
    Ok(reader_contains_any(r, &[needle])?
        .first()
        .copied()
        .unwrap_or(false))
}

/// Where `needle` starts in `hay`: scans for its first byte, then compares
/// (fast enough in a debug build for gigabyte disk images).
fn find(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return false;
    };
    let mut from = 0usize;
    while let Some(i) = hay
        .get(from..)
        .and_then(|h| h.iter().position(|&b| b == first))
    {
        let at = from + i;
        let end = at + 1 + rest.len();
        match hay.get(at + 1..end) {
            Some(tail) if tail == rest => return true,
            Some(_) => from = at + 1,
            None => return false,
        }
    }
    false
}

/// Which of `needles` occur in what `r` yields, in one pass.
pub fn reader_contains_any<R: Read>(mut r: R, needles: &[&[u8]]) -> Result<Vec<bool>> {
    let mut found = vec![false; needles.len()];
    let keep = needles
        .iter()
        .map(|n| n.len())
        .max()
        .unwrap_or(0)
        .saturating_sub(1);
    let mut buf = vec![0u8; 1 << 20];
    let mut window: Vec<u8> = Vec::with_capacity(buf.len() + keep);
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(found);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        let carried_zeros = window.iter().all(|&b| b == 0);
        if carried_zeros && chunk.iter().all(|&b| b == 0) {
            // A hole of a sparse disk: no needle (they are non-empty and
            // contain a non-zero byte, see the callers) can start here.
            window.clear();
            window.extend_from_slice(chunk.get(n.saturating_sub(keep)..).unwrap_or_default());
            continue;
        }
        window.extend_from_slice(chunk);
        for (hit, needle) in found.iter_mut().zip(needles) {
            if !*hit && find(&window, needle) {
                *hit = true;
            }
        }
        if found.iter().all(|&f| f) {
            return Ok(found);
        }
        let from = window.len().saturating_sub(keep);
        window.drain(..from);
    }
}

/// Runs a host command and returns its stdout, failing on a non-zero exit
/// unless `ok_codes` lists it.
pub fn host_command(program: &str, args: &[&str], ok_codes: &[i32]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    let code = out.status.code().unwrap_or(-1);
    if !out.status.success() && !ok_codes.contains(&code) {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let args: Vec<String> = ["--only", "ready", "--direct", "--image", "/i"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = Options::parse(&args).unwrap();
        assert_eq!(o.only, vec!["ready"]);
        assert_eq!(o.boot, BootMode::Direct);
        assert_eq!(o.image, PathBuf::from("/i"));
        assert!(Options::parse(&["--only".to_owned(), "nope".to_owned()]).is_err());
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
        assert!(Options::parse(&["--only".to_owned()]).is_err());
    }

    #[test]
    fn case_names_are_unique() {
        let mut names = all_cases();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(n, CASES.len() + intruder::STEPS.len());
    }

    #[test]
    fn reader_contains_finds_needles_across_chunks() {
        struct Chunky(Vec<u8>, usize);
        impl Read for Chunky {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let rest = &self.0[self.1..];
                let n = rest.len().min(3).min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                self.1 += n;
                Ok(n)
            }
        }
        let hay = b"xxxxsecretyyyy".to_vec();
        assert!(reader_contains(Chunky(hay.clone(), 0), b"secret").unwrap());
        assert!(!reader_contains(Chunky(hay, 0), b"secrets").unwrap());
        assert!(!reader_contains(Chunky(Vec::new(), 0), b"a").unwrap());
        assert!(!reader_contains(Chunky(b"abc".to_vec(), 0), b"").unwrap());
        let mut sparse = vec![0u8; 3 << 20];
        sparse[(2 << 20) - 2..(2 << 20) + 4].copy_from_slice(b"pw-one");
        sparse.extend_from_slice(b"ppw-two");
        let hits =
            reader_contains_any(sparse.as_slice(), &[b"pw-one", b"pw-two", b"pw-3"]).unwrap();
        assert_eq!(hits, vec![true, true, false]);
    }
}
