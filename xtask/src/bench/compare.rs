//! `cargo xtask bench compare`: the appliance beside the machine it
//! replaces. Builds (or takes from its cache) a stock Debian 12 guest with the
//! appliance's kernel package and Debian's redis-server ([`guest`]), boots it
//! and the appliance under the same QEMU settings (TCG, 1024 MiB, 2 vCPUs,
//! direct kernel boot, a restricted user network with loopback-only
//! forwards), and prints one Markdown table ([`report`]). Asserts nothing
//! about the numbers; not part of `cargo xtask ci`.

pub mod guest;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use host_tools::ensure_tools;
use vm_harness::qemu::GUEST_SERVER_PORT;
use vm_harness::resp::{Conn, Value};
use vm_harness::standin::{self, Mode, State};
use vm_harness::{
    copy_sparse, free_port, matchers, monitor_command, Boot, BootMode, ConsoleSinks, Forward,
    ImageFiles, QemuSpec, Vm, VmDir,
};

use crate::e2e::{ReadyProbe, Session};
use report::{FileCounts, IdleBlock, Row};

/// How long a boot may take to its first acknowledged XADD: the Debian
/// guest boots systemd under TCG in about a minute on this class of machine;
/// ten minutes means it is stuck, not slow.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// How long after its first XADD the Debian guest may take to print its idle
/// block: the script waits 60 s after multi-user.target, which can come
/// after redis-server is up; five minutes more means it will not come.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The appliance's seal comes within seconds of its first XADD; two
/// minutes means it did not seal.
const SEAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Idle, for the appliance: this long after its seal table (the Debian
/// guest's script waits the same 60 s after multi-user.target).
const IDLE_AFTER: Duration = Duration::from_secs(60);

/// Each client read: a TCG guest with `appendfsync always` answers within
/// milliseconds; 30 s means the server is gone.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream the Debian guest is written to (its server has no ACL).
const DEBIAN_STREAM: &str = "bench:stream";

/// The usage of `cargo xtask bench compare` (printed by `--help`).
pub const USAGE: &str = "\
usage: cargo xtask bench compare [--runs N] [--image DIR] [--xadds N] [--cache DIR]

  --runs N       boots of each machine for the time to the first XADD
                 (default 3, interleaved; the median is shown)
  --image DIR    appliance image directory (default target/appliance)
  --xadds N      XADDs per throughput measurement (default 2000)
  --cache DIR    where the Debian guest is built and kept
                 (default target/bench-compare)
";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    runs: usize,
    image: PathBuf,
    xadds: usize,
    cache: PathBuf,
}

fn parse(args: &[String]) -> Result<Options> {
    let root = crate::run::workspace_root();
    let mut o = Options {
        runs: 3,
        image: root.join("target/appliance"),
        xadds: 2000,
        cache: root.join("target/bench-compare"),
    };
    let mut args = crate::Args::new(args, USAGE);
    while let Some(a) = args.next_flag() {
        match a {
            "--runs" => o.runs = args.parse(a)?,
            "--image" => o.image = PathBuf::from(args.value(a)?),
            "--xadds" => o.xadds = args.parse(a)?,
            "--cache" => o.cache = PathBuf::from(args.value(a)?),
            other => return Err(args.unknown(other)),
        }
    }
    if o.runs == 0 || o.xadds == 0 {
        bail!("--runs and --xadds must be positive");
    }
    Ok(o)
}

/// What one machine measured.
#[derive(Debug, Default)]
struct Measured {
    ready: Vec<Duration>,
    processes: Option<u64>,
    listening: Option<u64>,
    guest_mem_used: Option<u64>,
    guest_mem_not_free: Option<u64>,
    nonzero_ram: Option<u64>,
    server_rss: Option<u64>,
    qemu_rss: Option<u64>,
    seq: Option<f64>,
    piped: Option<f64>,
}

/// `cargo xtask bench compare`.
pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let all = Instant::now();
    ensure_tools(&vm_harness::BOOT_TOOLS, "to boot both machines under QEMU")?;
    let image = ImageFiles::new(&o.image);
    let missing = image.missing(true);
    if !missing.is_empty() {
        bail!(
            "no appliance image at {} (missing {}): run `cargo xtask image` first",
            image.dir().display(),
            missing.join(", ")
        );
    }
    let t = Instant::now();
    std::fs::create_dir_all(&o.cache)?;
    let (pins, kernel) = crate::run::pinned_kernel()?;
    let guest = guest::ensure(
        &o.cache,
        &pins.kernel.package,
        &pins.kernel.version,
        &kernel.deb,
    )?;
    println!(
        "debian guest ready in {:.1}s: {}",
        t.elapsed().as_secs_f64(),
        guest.dir.display()
    );
    let same_kernel = std::fs::read(&guest.kernel)? == std::fs::read(image.file("vmlinuz"))?;
    println!(
        "kernel: {} {} in both; vmlinuz bytes {}",
        pins.kernel.package,
        pins.kernel.version,
        if same_kernel {
            "identical"
        } else {
            "DIFFERENT"
        }
    );

    let t = Instant::now();
    let appliance_files = appliance_files(&image)?;
    println!(
        "offline counts {:.1}s: appliance initramfs {} regular files, Debian root {} regular files",
        t.elapsed().as_secs_f64(),
        appliance_files.regular,
        guest.files.regular
    );

    let mut a = Measured::default();
    let mut d = Measured::default();
    for i in 0..o.runs {
        let first = i == 0;
        let last = i + 1 == o.runs;
        let t = Instant::now();
        boot_appliance(&image, &o, first, last, &mut a)
            .with_context(|| format!("appliance run {}", i + 1))?;
        println!(
            "appliance run {}: first XADD at {:.2}s (run took {:.1}s)",
            i + 1,
            a.ready.last().map_or(0.0, Duration::as_secs_f64),
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        boot_debian(&guest, &o, first, last, &mut d)
            .with_context(|| format!("debian run {}", i + 1))?;
        println!(
            "debian run {}: first XADD at {:.2}s (run took {:.1}s)",
            i + 1,
            d.ready.last().map_or(0.0, Duration::as_secs_f64),
            t.elapsed().as_secs_f64()
        );
    }

    let (disk, disk_alloc) = guest::sizes(&image.file("disk.raw"))?;
    let (gdisk, gdisk_alloc) = guest::sizes(&guest.disk)?;
    let tar = guest::sizes(&image.file("image.tar.gz")).ok().map(|s| s.0);
    let gtar = guest::sizes(&guest.tar_gz).ok().map(|s| s.0);
    let boot_files =
        |k: &Path, i: &Path| -> Result<u64> { Ok(guest::sizes(k)?.0 + guest::sizes(i)?.0) };
    let kinit = boot_files(&image.file("vmlinuz"), &image.file("initramfs.cpio.zst"))?;
    let gkinit = boot_files(&guest.kernel, &guest.initrd)?;
    let median = |v: &[Duration]| crate::bench::stats(v).map(|s| s.0);
    let n = o.runs;
    let rows = vec![
        Row {
            ratio: a.processes.zip(d.processes).and_then(|(x, y)| report::ratio(x as f64, y as f64)),
            ..Row::text(
                "userspace processes at idle (appliance: its seal table; Debian: ps, no kernel threads)",
                &opt(a.processes),
                &opt(d.processes),
            )
        },
        Row::counts(
            "executables on the root filesystem (regular files with an x bit)",
            appliance_files.executables,
            guest.files.executables,
        ),
        Row::counts(
            "setuid/setgid files",
            appliance_files.setid,
            guest.files.setid,
        ),
        Row {
            ratio: a.listening.zip(d.listening).and_then(|(x, y)| report::ratio(x as f64, y as f64)),
            ..Row::text(
                "listening sockets, TCP+UDP (appliance: its spec, the server port; Debian: ss -ltnu)",
                &opt(a.listening),
                &opt(d.listening),
            )
        },
        Row::bytes(
            "memory used at idle: guest MemTotal - MemAvailable",
            None,
            d.guest_mem_used,
        ),
        Row::bytes(
            "memory at idle: non-zero guest RAM (appliance, init_on_free=1) / MemTotal - MemFree (Debian)",
            a.nonzero_ram,
            d.guest_mem_not_free,
        ),
        Row::bytes(
            "server RSS at idle (INFO used_memory_rss)",
            a.server_rss,
            d.server_rss,
        ),
        Row::bytes("QEMU process RSS on the host at idle", a.qemu_rss, d.qemu_rss),
        Row::bytes("boot disk image, apparent size", Some(disk), Some(gdisk)),
        Row::bytes("boot disk image, allocated", Some(disk_alloc), Some(gdisk_alloc)),
        Row::bytes("disk image as GCE tar.gz", tar, gtar),
        Row::bytes("kernel + initramfs (direct boot)", Some(kinit), Some(gkinit)),
        Row::seconds(
            &format!("QEMU start -> first acknowledged XADD (median of {n})"),
            median(&a.ready),
            median(&d.ready),
        ),
        Row::rates("XADD throughput, sequential", a.seq, d.seq),
        Row::rates("XADD throughput, pipelined x100", a.piped, d.piped),
    ];
    println!();
    println!("{}", report::render(&rows));
    println!(
        "QEMU for both: TCG, -m 1024 -smp 2, q35, -kernel/-initrd, one virtio-blk disk \
         (appliance: data.raw; Debian: its root), virtio-net on -netdev user,restrict=on \
         with hostfwd to 127.0.0.1 only, virtio-rng; {} XADDs per throughput figure; \
         whole run {:.0}s",
        o.xadds,
        all.elapsed().as_secs_f64()
    );
    Ok(())
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Executables and setuid/setgid files in the appliance's root filesystem:
/// its initramfs (the machine has no other root).
fn appliance_files(image: &ImageFiles) -> Result<FileCounts> {
    let cpio = crate::e2e::initramfs(image)?;
    let mut counts = FileCounts::default();
    for e in image_formats::cpio::parse(&cpio)? {
        counts.add(e.mode);
    }
    Ok(counts)
}

/// `VmRSS` of a process, bytes.
fn qemu_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no VmRSS in QEMU's status")
}

/// `used_memory_rss` from `INFO memory`.
fn server_rss(c: &mut Conn) -> Result<u64> {
    let info = c
        .cmd(&["INFO", "memory"])?
        .text()
        .context("INFO memory did not answer text")?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory_rss:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no used_memory_rss in INFO memory")
}

/// Non-zero 4 KiB pages of the guest's RAM, dumped with the monitor's
/// `pmemsave` (the guest stops while QEMU writes the file).
fn nonzero_ram(monitor: &Path, dir: &Path, ram: u64) -> Result<u64> {
    let dump = dir.join("ram.dump");
    let out = monitor_command(
        monitor,
        // Hex size and a quoted name: HMP reads `1073741824 /tmp/..` as a
        // division.
        &format!("pmemsave 0 {ram:#x} \"{}\"", dump.display()),
        Duration::from_secs(120),
    )?;
    if !out.trim().is_empty() {
        bail!("pmemsave: {out}");
    }
    let f = std::fs::File::open(&dump).with_context(|| format!("open {}", dump.display()))?;
    let (nonzero, total) = report::nonzero_pages(std::io::BufReader::new(f))?;
    let _ = std::fs::remove_file(&dump);
    if total * report::PAGE as u64 != ram {
        bail!("pmemsave wrote {total} pages, not {ram} bytes");
    }
    Ok(nonzero * report::PAGE as u64)
}

/// `n` XADDs one round trip at a time, then `n` pipelined in batches of
/// 100: rates per second.
fn throughput(c: &mut Conn, stream: &str, n: usize) -> Result<(f64, f64)> {
    let (seq, piped) = crate::bench::xadd_timings(c, stream, n)?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    Ok((rate(seq), rate(piped)))
}

/// Warms TCG's translation of the server's paths up, then measures.
fn warm_then_measure(c: &mut Conn, stream: &str, n: usize) -> Result<(f64, f64)> {
    throughput(c, stream, (n / 2).max(1))?;
    throughput(c, stream, n)
}

fn boot_appliance(
    image: &ImageFiles,
    o: &Options,
    first: bool,
    last: bool,
    m: &mut Measured,
) -> Result<()> {
    let state = State::generate(Mode::Normal)?;
    let data = image.fresh_data("compare-appliance")?;
    let log = data.dir().join("console.log");
    let mut s = Session::boot(image, BootMode::Direct, &data.disk(), state, log)?;
    let (at, _) = s.wait_ready(ReadyProbe::VisitorXadd)?;
    m.ready.push(at);
    if first {
        let console = s.vm.console().clone();
        let (seal, seal_line) = console
            .wait_for(0, SEAL_TIMEOUT, |l| l.starts_with("procwatch: seal: end"))
            .with_context(|| format!("no seal table within {}s", SEAL_TIMEOUT.as_secs()))?;
        let lines = console.lines();
        let n = matchers::seal_end(&seal_line.text)
            .map(u64::from)
            .with_context(|| format!("cannot read the seal line {:?}", seal_line.text))?;
        let names: Vec<&str> = lines
            .iter()
            .take(seal)
            .filter_map(|l| l.text.strip_prefix("procwatch: seal: "))
            .collect();
        println!(
            "appliance at its seal: {n} userspace processes: {}",
            names.join("; ")
        );
        m.processes = Some(n);
        m.listening = Some(1);
        let idle_at = seal_line.at + IDLE_AFTER;
        let wait = idle_at.saturating_sub(s.vm.started().elapsed());
        std::thread::sleep(wait);
        s.check_alive()?;
        m.qemu_rss = Some(qemu_rss(s.vm.pid())?);
        let mut admin = s.admin_conn()?;
        m.server_rss = Some(server_rss(&mut admin)?);
        m.nonzero_ram = Some(nonzero_ram(
            &s.dir.monitor(),
            s.dir.path(),
            guest_ram_bytes(),
        )?);
    }
    if last {
        let (_, stream) = s.visitor()?;
        let stream = stream.to_owned();
        let mut c = s.visitor_conn()?;
        let (seq, piped) = warm_then_measure(&mut c, &stream, o.xadds)?;
        m.seq = Some(seq);
        m.piped = Some(piped);
    }
    s.check_alive()?;
    s.vm.stop()?;
    Ok(())
}

/// The guest RAM both machines get: [`QemuSpec::new`]'s default, which
/// `plan_boot` (the appliance) and [`boot_debian`] both keep.
fn guest_ram_bytes() -> u64 {
    let boot = Boot::Direct {
        kernel: PathBuf::new(),
        initrd: PathBuf::new(),
        cmdline: String::new(),
    };
    u64::from(QemuSpec::new(boot, PathBuf::new()).memory_mib) << 20
}

fn boot_debian(
    guest: &guest::Guest,
    o: &Options,
    first: bool,
    last: bool,
    m: &mut Measured,
) -> Result<()> {
    let dir = VmDir::new("compare-debian")?;
    let disk = dir.path().join("disk.raw");
    copy_sparse(&guest.disk, &disk)?;
    let mut spec = QemuSpec::new(
        Boot::Direct {
            kernel: guest.kernel.clone(),
            initrd: guest.initrd.clone(),
            cmdline: guest::CMDLINE.to_owned(),
        },
        dir.monitor(),
    );
    spec.data_disk = Some(disk);
    let port = free_port()?;
    spec.forwards = vec![
        Forward {
            host: port,
            guest: GUEST_SERVER_PORT,
        },
        Forward {
            host: free_port()?,
            guest: 22,
        },
    ];
    // The same network as the appliance's, metadata forward included
    // (nothing in the stock guest asks it).
    State::generate(Mode::Normal)?.write(&dir.state_file())?;
    spec.metadata_cmd = Some(standin::guestfwd_command(&dir.state_file())?);
    let log = dir.console_log();
    let mut vm = Vm::spawn(
        &spec,
        &ConsoleSinks {
            echo: false,
            log_file: Some(log.clone()),
        },
    )?;
    let result = debian_session(&mut vm, guest, port, o, first, last, m);
    if result.is_err() {
        let keep = guest.dir.join("last-failed-console.log");
        let _ = std::fs::copy(&log, &keep);
        eprintln!("debian console kept at {}", keep.display());
    }
    vm.stop()?;
    result
}

fn debian_session(
    vm: &mut Vm,
    guest: &guest::Guest,
    port: u16,
    o: &Options,
    first: bool,
    last: bool,
    m: &mut Measured,
) -> Result<()> {
    let connect = || -> Result<Conn> {
        let mut c = Conn::connect(port, REPLY_TIMEOUT)?;
        c.auth("default", &guest.password)?;
        Ok(c)
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::from("no attempt yet");
    let at = loop {
        if let Some(status) = vm.try_exit()? {
            bail!(
                "QEMU exited ({status}) before redis answered\n{}\n{}",
                vm.console().tail(20),
                vm.stderr_text().trim()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no XADD acknowledged within {}s (last attempt: {last_error})\n{}",
                READY_TIMEOUT.as_secs(),
                vm.console().tail(20)
            );
        }
        let attempt = (|| -> Result<()> {
            let mut c = Conn::connect(port, Duration::from_secs(3))?;
            c.auth("default", &guest.password)?;
            match c.cmd(&["XADD", DEBIAN_STREAM, "*", "n", "ready"])? {
                Value::Bulk(Some(_)) => Ok(()),
                other => bail!("XADD answered {other:?}"),
            }
        })();
        match attempt {
            Ok(()) => break vm.started().elapsed(),
            Err(e) => last_error = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    m.ready.push(at);
    if first {
        let console = vm.console().clone();
        let end = format!("{} end", report::MARK);
        console
            .wait_for(0, BLOCK_TIMEOUT, |l| l.trim_end().ends_with(&end))
            .with_context(|| {
                format!(
                    "no idle block within {}s of the first XADD\n{}",
                    BLOCK_TIMEOUT.as_secs(),
                    console.tail(20)
                )
            })?;
        let texts: Vec<String> = console.lines().into_iter().map(|l| l.text).collect();
        let block = report::parse_block(&texts)?;
        print_debian_block(&block);
        m.processes = Some(block.userspace().len() as u64);
        m.listening = Some(block.listening.len() as u64);
        m.guest_mem_used = Some(block.mem_used());
        m.guest_mem_not_free = Some(block.mem_not_free());
        m.qemu_rss = Some(qemu_rss(vm.pid())?);
        m.server_rss = Some(server_rss(&mut connect()?)?);
    }
    if last {
        let mut c = connect()?;
        let (seq, piped) = warm_then_measure(&mut c, DEBIAN_STREAM, o.xadds)?;
        m.seq = Some(seq);
        m.piped = Some(piped);
    }
    if let Some(status) = vm.try_exit()? {
        bail!("QEMU exited ({status}) during the measurement");
    }
    Ok(())
}

fn print_debian_block(b: &IdleBlock) {
    let names: Vec<&str> = b.userspace().iter().map(|p| p.comm.as_str()).collect();
    println!(
        "debian at idle: {} userspace processes: {}",
        names.len(),
        names.join(", ")
    );
    println!("debian at idle: {} listening sockets:", b.listening.len());
    for l in &b.listening {
        println!("  {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let a: Vec<String> = ["--runs", "1", "--xadds", "10"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = parse(&a).unwrap();
        assert_eq!((o.runs, o.xadds), (1, 10));
        assert!(parse(&["--runs".to_owned(), "0".to_owned()]).is_err());
        assert!(parse(&["--what".to_owned()]).is_err());
    }
}
