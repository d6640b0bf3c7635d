//! `cargo xtask run`: boot the appliance locally, as on GCE (OVMF +
//! `disk.raw`, both disks on virtio-SCSI unless `--disk-interface` says
//! otherwise) or faster with `--direct` (`-kernel/-initrd`), with a
//! metadata stand-in and the server port forwarded to 127.0.0.1.
//!
//! The data disk is `target/run/data.raw`, created from the image's empty
//! `data.raw` on first use and kept across runs and image rebuilds (the
//! build output itself is never written to, so `verify` keeps matching its
//! manifest). Passwords are generated per run (printed once) unless given;
//! they reach the stand-in through a 0600 state file, never a command line.
//! Ctrl-C stops QEMU by PID and removes the temporary files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use appliance_image::Profile;
use host_tools::ensure_tools;
use vm_harness::resp::Conn;
use vm_harness::standin::{Mode, Password, State};
use vm_harness::{
    copy_sparse, free_port, plan_boot, BootMode, ConsoleSinks, DiskInterface, ImageFiles, Network,
    Vm, VmDir,
};

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// This checkout's pins (`image/sources.toml`) and the pinned kernel
/// package, fetched into the input cache (`target/appliance-cache`, or
/// `$XTASK_CACHE`) through the host's apt on a miss: what the boots without
/// an image (`bench compare`'s Debian guest, the QEMU plumbing tests) run.
pub fn pinned_kernel() -> Result<(
    appliance_image::pins::Pins,
    appliance_image::fetch::KernelInputs,
)> {
    use appliance_image::fetch::{fetch_kernel, Cache, HostArchives, DEFAULT_CACHE};
    let root = workspace_root();
    let pins = appliance_image::pins::Pins::load(&root.join("image/sources.toml"))?;
    let cache = Cache::new(
        std::env::var_os("XTASK_CACHE").map_or_else(|| root.join(DEFAULT_CACHE), PathBuf::from),
    );
    let kernel = fetch_kernel(&pins, &cache, &mut HostArchives::new(&pins.valkey.suites))?;
    Ok((pins, kernel))
}

/// Builds the image of `profile` into `out` (`cargo xtask image`, with the
/// default input cache and the sandbox).
pub fn build_image(profile: Profile, out: &Path) -> Result<()> {
    let config = appliance_image::BuildConfig::in_workspace(&workspace_root(), profile, out)?;
    appliance_image::build(&config)?;
    Ok(())
}

/// Builds the image unless every file a boot needs is there.
pub fn ensure_image(profile: Profile, image: &ImageFiles, direct: bool) -> Result<()> {
    if image.missing(direct).is_empty() {
        return Ok(());
    }
    build_image(profile, image.dir())?;
    let missing = image.missing(direct);
    if !missing.is_empty() {
        bail!("the image build left out {}", missing.join(", "));
    }
    Ok(())
}

/// `cargo xtask run` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Boot path.
    pub boot: BootMode,
    /// Image directory.
    pub image: PathBuf,
    /// The data disk to attach.
    pub data: PathBuf,
    /// Start from an empty data disk.
    pub fresh_data: bool,
    /// Loopback port for the server (`None`: a free one).
    pub port: Option<u16>,
    /// Given admin password.
    pub admin_pass: Option<String>,
    /// Given visitor password.
    pub visitor_pass: Option<String>,
    /// How the stand-in answers.
    pub mode: Mode,
    /// Guest RAM.
    pub memory_mib: u32,
    /// How the boot and data disks are attached.
    pub disk_interface: DiskInterface,
}

/// The usage of `cargo xtask run` (printed by `--help`).
pub const USAGE: &str = "\
usage: cargo xtask run [--direct] [--port N] [--admin-pass P] [--visitor-pass P]
                       [--metadata-mode MODE] [--image DIR] [--data FILE] [--fresh-data] [--memory MIB]
                       [--disk-interface scsi|nvme|virtio]

  --direct             boot with -kernel/-initrd (about 2 s to /init) instead of OVMF + disk.raw
  --port N             forward 127.0.0.1:N to the server (default: a free port)
  --admin-pass P       redis-admin-pass to serve (default: generated, printed once)
  --visitor-pass P     redis-visitor-pass to serve (default: generated, printed once)
  --metadata-mode M    normal | missing-key[:KEY] | wrong-header | oversized | never-answers
  --image DIR          image directory (default target/appliance)
  --data FILE          data disk (default target/run/data.raw, kept across runs)
  --fresh-data         replace the data disk with the image's empty one first
  --memory MIB         guest RAM (default 1024)
  --disk-interface I   attach the boot and data disks as virtio-SCSI (`scsi`, the default, as on
                       most GCE machine types), NVMe (`nvme`, as on GCE's newer ones) or virtio-blk
                       (`virtio`); the data disk is found by its label either way. To try the growth
                       of the data filesystem, enlarge the disk file first: truncate -s 3G FILE

Ctrl-C stops the VM.
";

impl RunOptions {
    /// Parses the arguments after `run`.
    pub fn parse(args: &[String]) -> Result<RunOptions> {
        let root = workspace_root();
        let mut o = RunOptions {
            boot: BootMode::Uefi,
            image: root.join("target/appliance"),
            data: root.join("target/run/data.raw"),
            fresh_data: false,
            port: None,
            admin_pass: None,
            visitor_pass: None,
            mode: Mode::Normal,
            memory_mib: 1024,
            disk_interface: DiskInterface::Scsi,
        };
        let mut args = crate::Args::new(args, USAGE);
        while let Some(a) = args.next_flag() {
            match a {
                "--direct" => o.boot = BootMode::Direct,
                "--fresh-data" => o.fresh_data = true,
                "--port" => o.port = Some(args.parse(a)?),
                "--admin-pass" => o.admin_pass = Some(args.value(a)?),
                "--visitor-pass" => o.visitor_pass = Some(args.value(a)?),
                "--metadata-mode" => o.mode = Mode::parse(&args.value(a)?)?,
                "--image" => o.image = PathBuf::from(args.value(a)?),
                "--data" => o.data = PathBuf::from(args.value(a)?),
                "--memory" => o.memory_mib = args.parse(a)?,
                "--disk-interface" => o.disk_interface = DiskInterface::parse(&args.value(a)?)?,
                "-h" | "--help" => bail!("{USAGE}"),
                other => return Err(args.unknown(other)),
            }
        }
        for p in [&o.admin_pass, &o.visitor_pass].into_iter().flatten() {
            if p.is_empty() || p.len() > 4096 {
                bail!("a password must be 1 to 4096 bytes");
            }
        }
        Ok(o)
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to a flag so the main loop can stop QEMU and
/// clean up instead of dying with temporary files left behind.
fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        let ret = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if ret != 0 {
            return Err(std::io::Error::last_os_error()).context("sigaction");
        }
    }
    Ok(())
}

/// Entry of `cargo xtask run`.
pub fn run(args: &[String]) -> Result<()> {
    let o = RunOptions::parse(args)?;
    ensure_tools(&vm_harness::BOOT_TOOLS, "to boot the image under QEMU")?;
    let image = ImageFiles::new(&o.image);
    ensure_image(Profile::Production, &image, o.boot == BootMode::Direct)?;
    if o.fresh_data || !o.data.exists() {
        if let Some(parent) = o.data.parent() {
            std::fs::create_dir_all(parent)?;
        }
        copy_sparse(&image.file(vm_harness::image::DATA_DISK), &o.data)?;
        println!(
            "xtask: data disk {} (empty, from the image)",
            o.data.display()
        );
    } else {
        println!(
            "xtask: data disk {} (kept from earlier runs; --fresh-data to reset)",
            o.data.display()
        );
    }
    let spec = crate::e2e::image_spec(&image)?;
    let visitor = spec.visitors().first().context("the spec has no visitor")?;
    let state = State {
        mode: o.mode.clone(),
        admin_pass: match &o.admin_pass {
            Some(p) => Password::new(p.clone()),
            None => Password::generate()?,
        },
        visitor_pass: match &o.visitor_pass {
            Some(p) => Password::new(p.clone()),
            None => Password::generate()?,
        },
    };
    let dir = VmDir::new("run")?;
    state.write(&dir.state_file())?;
    let port = match o.port {
        Some(p) => p,
        None => free_port()?,
    };
    let network = Network::User {
        server_port: port,
        extra: &[],
    };
    let mut qspec = plan_boot(&image, o.boot, &o.data, &dir, network)?;
    qspec.memory_mib = o.memory_mib;
    qspec.disk_interface = o.disk_interface;
    let console_log = workspace_root().join("target/run/console.log");
    if let Some(parent) = console_log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&console_log);

    println!("xtask: metadata stand-in mode: {}", state.mode);
    println!("xtask: metadata passwords (generated ones are shown only here):");
    println!("  redis-admin-pass   = {}", state.admin_pass.expose());
    println!("  redis-visitor-pass = {}", state.visitor_pass.expose());
    println!("xtask: connect with:");
    println!(
        "  redis-cli -p {port} --user {} --pass {}",
        visitor.user().name(),
        state.visitor_pass.expose()
    );
    println!(
        "  redis-cli -p {port} --user {} --pass {}",
        spec.admin().name(),
        state.admin_pass.expose()
    );
    println!(
        "xtask: booting {} ({:?}, disks on {}, TCG); console below and in {}; Ctrl-C stops the VM",
        image.dir().display(),
        o.boot,
        o.disk_interface.name(),
        console_log.display()
    );

    catch_signals()?;
    let sinks = ConsoleSinks {
        echo: true,
        log_file: Some(console_log),
    };
    let mut vm = Vm::spawn(&qspec, &sinks)?;
    let mut ready_said = false;
    let mut next_probe = Instant::now();
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("\nxtask: stopping QEMU (pid {})", vm.pid());
            let status = vm.stop()?;
            println!("xtask: QEMU stopped ({status})");
            break;
        }
        if let Some(status) = vm.try_exit()? {
            println!("\nxtask: QEMU exited ({status})");
            let err = vm.stderr_text();
            if !err.trim().is_empty() {
                println!("xtask: QEMU said: {}", err.trim());
            }
            break;
        }
        if !ready_said && Instant::now() >= next_probe {
            next_probe = Instant::now() + Duration::from_secs(1);
            let ok = Conn::connect(port, Duration::from_millis(800))
                .and_then(|mut c| c.auth(visitor.user().name(), state.visitor_pass.expose()))
                .is_ok();
            if ok {
                ready_said = true;
                println!(
                    "\nxtask: server ready on 127.0.0.1:{port} ({:.1}s after QEMU start)",
                    vm.started().elapsed().as_secs_f64()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(vm);
    drop(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_options() {
        let o = RunOptions::parse(&args(&[
            "--direct",
            "--port",
            "7000",
            "--visitor-pass",
            "v",
            "--metadata-mode",
            "missing-key:redis-admin-pass",
        ]))
        .unwrap();
        assert_eq!(o.boot, BootMode::Direct);
        assert_eq!(o.port, Some(7000));
        assert_eq!(o.visitor_pass.as_deref(), Some("v"));
        assert_eq!(o.mode, Mode::MissingKey("redis-admin-pass".into()));
        assert!(o.data.ends_with("target/run/data.raw"));
        assert_eq!(o.disk_interface, DiskInterface::Scsi, "as on GCE");
        for (name, interface) in [
            ("scsi", DiskInterface::Scsi),
            ("nvme", DiskInterface::Nvme),
            ("virtio", DiskInterface::Virtio),
        ] {
            let o = RunOptions::parse(&args(&["--disk-interface", name])).unwrap();
            assert_eq!(o.disk_interface, interface);
        }
        for bad in [
            &["--port"][..],
            &["--port", "x"],
            &["--what"],
            &["--admin-pass", ""],
            &["--metadata-mode", "x"],
            &["--disk-interface"],
            &["--disk-interface", "ide"],
        ] {
            assert!(RunOptions::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn present_image_is_not_rebuilt() {
        let tmp = vm_harness::temp_dir("run-test").unwrap();
        for f in [
            "disk.raw",
            "data.raw",
            "vmlinuz",
            "initramfs.cpio.zst",
            "appliance.cmdline",
        ] {
            std::fs::write(tmp.path().join(f), b"x").unwrap();
        }
        let image = ImageFiles::new(tmp.path());
        assert!(image.missing(false).is_empty() && image.missing(true).is_empty());
        ensure_image(Profile::Production, &image, false).unwrap();
        ensure_image(Profile::Test, &image, true).unwrap();
    }
}
