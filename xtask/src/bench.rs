//! `cargo xtask bench boot`: how long the appliance takes from QEMU's start
//! to its first acknowledged XADD (median of N boots under TCG), beside the
//! floor for the same kernel (an `/init` that powers off at once), and the
//! visitor's XADD throughput in one booted VM. Prints a table; asserts
//! nothing about the numbers.
//!
//! The floor's `/init` is a 144-byte static x86-64 ELF written here (one
//! `reboot(RB_POWER_OFF)` system call), so the floor needs no compiler and
//! measures only the kernel and QEMU.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use host_tools::ensure_tools;
use image_formats::cpio::Archive;
use vm_harness::resp::{Conn, Value};
use vm_harness::standin::{Mode, State};
use vm_harness::{Boot, BootMode, ConsoleSinks, ImageFiles, QemuSpec, Vm, VmDir};

use crate::e2e::{ReadyProbe, Session};

pub mod compare;

/// Where the floor ELF is loaded.
const FLOOR_BASE: u64 = 0x40_0000;
const ELF_HEADER_LEN: u16 = 64;
const PROGRAM_HEADER_LEN: u16 = 56;

/// `LINUX_REBOOT_CMD_POWER_OFF`: QEMU exits.
pub const RB_POWER_OFF: u32 = 0x4321_fedc;
/// `LINUX_REBOOT_CMD_HALT`: the CPUs stop, QEMU keeps running.
pub const RB_HALT_SYSTEM: u32 = 0xcdef_0123;

/// The floor's kernel command line when the image has none to lend.
const FLOOR_CMDLINE: &str = "console=ttyS0,115200n8 panic=-1";

/// `reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd)`, then spin if it
/// ever returns (PID 1 must not exit).
fn reboot_code(cmd: u32) -> [u8; 24] {
    let c = cmd.to_le_bytes();
    [
        0xb8, 0xa9, 0x00, 0x00, 0x00, // mov eax, 169 (SYS_reboot)
        0xbf, 0xad, 0xde, 0xe1, 0xfe, // mov edi, 0xfee1dead
        0xbe, 0x69, 0x19, 0x12, 0x28, // mov esi, 672274793
        0xba, c[0], c[1], c[2], c[3], // mov edx, cmd
        0x0f, 0x05, // syscall
        0xeb, 0xfe, // jmp .
    ]
}

/// The floor `/init`: a minimal static ELF64 executable with one loadable
/// segment, calling `reboot(RB_POWER_OFF)`.
pub fn floor_init_elf() -> Vec<u8> {
    reboot_elf(RB_POWER_OFF)
}

/// A minimal static ELF64 `/init` that calls `reboot(cmd)`.
pub fn reboot_elf(cmd: u32) -> Vec<u8> {
    let code = reboot_code(cmd);
    let code_off = usize::from(ELF_HEADER_LEN + PROGRAM_HEADER_LEN);
    let total = (code_off + code.len()) as u64;
    let entry = FLOOR_BASE + code_off as u64;
    let mut e = Vec::with_capacity(code_off + code.len());
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    e.extend_from_slice(&1u32.to_le_bytes()); // e_version
    e.extend_from_slice(&entry.to_le_bytes()); // e_entry
    e.extend_from_slice(&u64::from(ELF_HEADER_LEN).to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&ELF_HEADER_LEN.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&PROGRAM_HEADER_LEN.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                  // The one PT_LOAD segment: the whole file, read + execute.
    e.extend_from_slice(&1u32.to_le_bytes()); // p_type: LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R+X
    e.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    e.extend_from_slice(&FLOOR_BASE.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&FLOOR_BASE.to_le_bytes()); // p_paddr
    e.extend_from_slice(&total.to_le_bytes()); // p_filesz
    e.extend_from_slice(&total.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    e.extend_from_slice(&code);
    e
}

/// The floor initramfs (uncompressed newc): `/init` and `/dev/console`.
pub fn floor_initramfs() -> Result<Vec<u8>> {
    reboot_initramfs(RB_POWER_OFF)
}

/// An initramfs whose `/init` calls `reboot(cmd)` at once.
pub fn reboot_initramfs(cmd: u32) -> Result<Vec<u8>> {
    let mut a = Archive::new();
    a.add_dir("/dev", 0o755)?;
    a.add_char_dev("/dev/console", 0o600, 5, 1)?;
    a.add_file("/init", 0o755, reboot_elf(cmd))?;
    Ok(a.write(0)?)
}

/// Starts `kernel` with an initramfs whose `/init` calls `reboot(cmd)`.
pub fn spawn_reboot_vm(
    kernel: &std::path::Path,
    cmdline: &str,
    cmd: u32,
    dir: &VmDir,
) -> Result<Vm> {
    let initrd = dir.path().join("reboot.cpio");
    std::fs::write(&initrd, reboot_initramfs(cmd)?)?;
    let spec = QemuSpec::new(
        Boot::Direct {
            kernel: kernel.to_path_buf(),
            initrd,
            cmdline: cmdline.to_owned(),
        },
        dir.monitor(),
    );
    Ok(Vm::spawn(&spec, &ConsoleSinks::default())?)
}

/// Boots `kernel` with the floor initramfs; returns QEMU start -> exit.
pub fn floor_boot(kernel: &std::path::Path, cmdline: &str, dir: &VmDir) -> Result<(Duration, Vm)> {
    let mut vm = spawn_reboot_vm(kernel, cmdline, RB_POWER_OFF, dir)?;
    match vm.wait_exit(Duration::from_secs(120))? {
        Some(status) if status.success() => Ok((vm.started().elapsed(), vm)),
        Some(status) => bail!(
            "floor QEMU exited with {status}: {}\n{}",
            vm.stderr_text().trim(),
            vm.console().tail(10)
        ),
        None => bail!(
            "the floor did not power off within 120 s\n{}",
            vm.console().tail(15)
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BenchOptions {
    runs: usize,
    boot: BootMode,
    image: PathBuf,
    kernel: Option<PathBuf>,
    xadds: usize,
    test_image: PathBuf,
    seccomp_only: bool,
}

/// The usage of `cargo xtask bench` (printed by `--help`).
pub const USAGE: &str = "\
usage: cargo xtask bench compare --help   (the appliance beside a stock Debian 12 guest)
       cargo xtask bench boot [--runs N] [--direct] [--image DIR] [--kernel FILE] [--xadds N]
                              [--seccomp-only]

  --runs N       boots per measurement (default 5; the median is shown)
  --direct       boot the appliance with -kernel/-initrd instead of OVMF + disk.raw
  --image DIR    image directory (default target/appliance)
  --kernel FILE  kernel for the floor (default: the image's vmlinuz)
  --xadds N      XADDs for the throughput rows (default 2000)
  --test-image DIR
                 test-profile image for the with/without-governor and
                 with/without-syscall-filter rows (default target/appliance-test)
  --seccomp-only only the with/without-syscall-filter rows
";

fn parse(args: &[String]) -> Result<BenchOptions> {
    let mut o = BenchOptions {
        runs: 5,
        boot: BootMode::Uefi,
        image: crate::run::workspace_root().join("target/appliance"),
        kernel: None,
        xadds: 2000,
        test_image: crate::run::workspace_root().join("target/appliance-test"),
        seccomp_only: false,
    };
    let mut args = crate::Args::new(args, USAGE);
    while let Some(a) = args.next_flag() {
        match a {
            "--runs" => o.runs = args.parse(a)?,
            "--direct" => o.boot = BootMode::Direct,
            "--image" => o.image = PathBuf::from(args.value(a)?),
            "--kernel" => o.kernel = Some(PathBuf::from(args.value(a)?)),
            "--xadds" => o.xadds = args.parse(a)?,
            "--test-image" => o.test_image = PathBuf::from(args.value(a)?),
            "--seccomp-only" => o.seccomp_only = true,
            other => return Err(args.unknown(other)),
        }
    }
    if o.runs == 0 || o.xadds == 0 {
        bail!("--runs and --xadds must be positive");
    }
    Ok(o)
}

/// Entry of `cargo xtask bench <what>`.
pub fn main(args: &[String]) -> Result<()> {
    match args.split_first() {
        Some((what, rest)) if what == "boot" => boot(rest),
        Some((what, rest)) if what == "compare" => compare::main(rest),
        _ => Err(crate::usage_error("bench needs `boot` or `compare`", USAGE)),
    }
}

/// Median, min, max of durations.
pub fn stats(samples: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len();
    if n == 0 {
        return None;
    }
    let median = if n % 2 == 1 {
        *s.get(n / 2)?
    } else {
        (*s.get(n / 2 - 1)? + *s.get(n / 2)?) / 2
    };
    Some((median, *s.first()?, *s.last()?))
}

fn row(name: &str, samples: &[Duration]) -> String {
    match stats(samples) {
        Some((med, min, max)) => format!(
            "{name:<52} {:>8.2}s {:>8.2}s {:>8.2}s {:>3}",
            med.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64(),
            samples.len()
        ),
        None => format!("{name:<52} {:>8}", "-"),
    }
}

/// `cargo xtask bench boot`.
pub fn boot(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    ensure_tools(&vm_harness::BOOT_TOOLS, "to boot the image under QEMU")?;
    if o.seccomp_only {
        for line in seccomp_cost(&o)? {
            println!("{line}");
        }
        return Ok(());
    }
    let image = ImageFiles::new(&o.image);
    let kernel = o.kernel.clone().unwrap_or_else(|| image.file("vmlinuz"));
    let cmdline = image.cmdline().unwrap_or_else(|e| {
        println!("floor: {e}; booting with `{FLOOR_CMDLINE}`");
        FLOOR_CMDLINE.to_owned()
    });

    let mut floor = Vec::new();
    for i in 0..o.runs {
        let dir = VmDir::new("bench-floor")?;
        let (took, _vm) = floor_boot(&kernel, &cmdline, &dir)?;
        println!("floor run {}: {:.2}s", i + 1, took.as_secs_f64());
        floor.push(took);
    }

    let missing = image.missing(o.boot == BootMode::Direct);
    let mut ready = Vec::new();
    let mut throughput: Vec<String> = Vec::new();
    if missing.is_empty() {
        let state = State::generate(Mode::Normal)?;
        for i in 0..o.runs {
            let data = image.fresh_data("bench-data")?;
            let log = data.dir().join("console.log");
            let mut s = Session::boot(&image, o.boot, &data.disk(), state.clone(), log)?;
            let (at, _) = s.wait_ready(ReadyProbe::VisitorXadd)?;
            println!("appliance run {}: {:.2}s", i + 1, at.as_secs_f64());
            ready.push(at);
            if i + 1 == o.runs {
                throughput = xadd_throughput(&s, o.xadds)?;
            }
            s.vm.stop()?;
        }
    } else {
        println!(
            "no image at {} (missing {}): appliance rows skipped",
            image.dir().display(),
            missing.join(", ")
        );
    }

    println!();
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>3}",
        "boot under TCG", "median", "min", "max", "n"
    );
    println!(
        "{}",
        row(
            "floor: kernel -> /init poweroff, QEMU exit (direct)",
            &floor
        )
    );
    println!(
        "{}",
        row(
            &format!("appliance: QEMU start -> first XADD ack ({:?})", o.boot),
            &ready
        )
    );
    println!();
    for line in throughput {
        println!("{line}");
    }
    println!();
    for line in governor_ratio(&o)? {
        println!("{line}");
    }
    println!();
    for line in seccomp_cost(&o)? {
        println!("{line}");
    }
    Ok(())
}

/// The syscall filter's cost, side by side in one run: the test image boots
/// (direct) alternately without the filter (`appliance.test_seccomp=off`)
/// and with it, `runs` times each, interleaved so the machine's drift falls
/// on both; each boot is timed to its first acknowledged XADD, then serves
/// `xadds` sequential and pipelined XADDs.
fn seccomp_cost(o: &BenchOptions) -> Result<Vec<String>> {
    let src = match test_image(o, "the syscall filter's cost") {
        Ok(image) => image,
        Err(note) => return Ok(vec![note]),
    };
    let (_off_dir, off) = src.with_extra_cmdline("appliance.test_seccomp=off")?;
    let state = State::generate(Mode::Normal)?;
    // Without, then with: boot times and (sequential, pipelined) elapsed.
    #[derive(Default)]
    struct Samples {
        boots: Vec<Duration>,
        seq: Vec<Duration>,
        piped: Vec<Duration>,
    }
    let mut samples = [Samples::default(), Samples::default()];
    for i in 0..o.runs {
        for ((with, image), into) in [(false, &off), (true, &src)]
            .into_iter()
            .zip(samples.iter_mut())
        {
            let data = src.fresh_data("bench-seccomp")?;
            let log = data.dir().join("console.log");
            let mut s = Session::boot(image, BootMode::Direct, &data.disk(), state.clone(), log)?;
            let filtered =
                s.vm.console()
                    .wait_for(0, Duration::from_secs(60), |l| {
                        l.contains("seccomp filter installed") || l.contains("no syscall filter")
                    })
                    .is_some_and(|(_, l)| l.text.contains("seccomp filter installed"));
            if filtered != with {
                bail!(
                    "boot {} with filter {with}: the console says otherwise",
                    i + 1
                );
            }
            let (at, _) = s.wait_ready(ReadyProbe::VisitorXadd)?;
            let (sq, pp) = measure_xadds(&s, o.xadds)?;
            println!(
                "seccomp run {} {}: ready {:.2}s, {:.0}/s sequential, {:.0}/s pipelined",
                i + 1,
                if with { "with filter" } else { "no filter" },
                at.as_secs_f64(),
                o.xadds as f64 / sq.as_secs_f64().max(1e-9),
                o.xadds as f64 / pp.as_secs_f64().max(1e-9),
            );
            into.boots.push(at);
            into.seq.push(sq);
            into.piped.push(pp);
            s.vm.stop()?;
        }
    }
    let median = |v: &[Duration]| stats(v).map_or(Duration::ZERO, |(m, _, _)| m);
    let rate = |d: Duration| o.xadds as f64 / d.as_secs_f64().max(1e-9);
    let [without, with] = &samples;
    let (b0, b1) = (median(&without.boots), median(&with.boots));
    let (s0, s1) = (rate(median(&without.seq)), rate(median(&with.seq)));
    let (p0, p1) = (rate(median(&without.piped)), rate(median(&with.piped)));
    Ok(vec![
        format!(
            "{:<52} {:>12} {:>12} {:>8}",
            "syscall filter (test image, direct, medians)", "without", "with", "ratio"
        ),
        format!(
            "{:<52} {:>11.2}s {:>11.2}s {:>8.3}",
            "QEMU start -> first XADD ack",
            b0.as_secs_f64(),
            b1.as_secs_f64(),
            b1.as_secs_f64() / b0.as_secs_f64().max(1e-9)
        ),
        format!(
            "{:<52} {:>10.0}/s {:>10.0}/s {:>8.3}",
            "visitor XADD, sequential",
            s0,
            s1,
            s1 / s0.max(1e-9)
        ),
        format!(
            "{:<52} {:>10.0}/s {:>10.0}/s {:>8.3}",
            "visitor XADD, pipelined x100",
            p0,
            p1,
            p1 / p0.max(1e-9)
        ),
        format!(
            "({} boots each, interleaved; {} XADDs per measurement)",
            o.runs, o.xadds
        ),
    ])
}

/// Seconds the test image's governor idles when asked on the command line.
const GOVERNOR_IDLE_SECS: u64 = 40;

/// Visitor XADD throughput without and then with the governor, in ONE VM
/// session. A sealed production image cannot stop its governor (killing it is
/// itself a halt condition and the softdog reboots), so this boots the test
/// image with `appliance.test_governor_delay=N` on the command line: its
/// governor (test feature only) idles N seconds, petting the watchdog, before
/// it starts watching. Measured while it idles, then after its seal table.
fn governor_ratio(o: &BenchOptions) -> Result<Vec<String>> {
    let src = match test_image(o, "visitor XADD with/without the governor") {
        Ok(image) => image,
        Err(note) => return Ok(vec![note]),
    };
    let (_delay_dir, image) = src.with_extra_cmdline(&format!(
        "appliance.test_governor_delay={GOVERNOR_IDLE_SECS}"
    ))?;
    let data = src.fresh_data("bench-governor")?;
    let log = data.dir().join("console.log");
    let state = State::generate(Mode::Normal)?;
    let mut s = Session::boot(&image, BootMode::Direct, &data.disk(), state, log)?;
    s.wait_ready(ReadyProbe::VisitorXadd)?;
    let console = s.vm.console();
    if console
        .wait_for(0, Duration::from_secs(10), |l| {
            l.contains("governor idle for")
        })
        .is_none()
    {
        bail!(
            "the test image's governor did not report its idle window: is it a test-profile image?"
        );
    }
    // TCG translates guest code the first time it runs: warm the server's
    // paths up first, or whichever half is measured first looks slower.
    measure_xadds(&s, o.xadds / 2)?;
    let (idle_seq, idle_piped) = measure_xadds(&s, o.xadds)?;
    if console
        .lines()
        .iter()
        .any(|l| l.text.contains("governor watching from now on"))
    {
        bail!("the governor's idle window ended during the measurement; raise GOVERNOR_IDLE_SECS or lower --xadds");
    }
    let wait = Duration::from_secs(GOVERNOR_IDLE_SECS + 30);
    if console
        .wait_for(0, wait, |l| l.starts_with("procwatch: seal: end"))
        .is_none()
    {
        bail!(
            "the governor did not seal within {} s after its idle window",
            wait.as_secs()
        );
    }
    let (run_seq, run_piped) = measure_xadds(&s, o.xadds)?;
    s.vm.stop()?;
    let n = o.xadds;
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let line = |what: &str, idle: Duration, running: Duration| {
        format!(
            "{:<52} {:>8.0}/s idle governor, {:>8.0}/s watching governor: ratio {:.3}",
            format!("visitor XADD {what} (same VM, test image, direct)"),
            rate(idle),
            rate(running),
            rate(running) / rate(idle).max(1e-9)
        )
    };
    Ok(vec![
        line("sequential", idle_seq, run_seq),
        line("pipelined x100", idle_piped, run_piped),
    ])
}

/// The test-profile image of `o`, or the table line saying `what` was not
/// measured without it.
fn test_image(o: &BenchOptions, what: &str) -> std::result::Result<ImageFiles, String> {
    let image = ImageFiles::new(&o.test_image);
    let missing = image.missing(true);
    if missing.is_empty() {
        return Ok(image);
    }
    Err(format!(
        "{what:<52} not measured: no test image at {} (missing {}; run `cargo xtask image --test`)",
        image.dir().display(),
        missing.join(", ")
    ))
}

/// `n` visitor XADDs one round trip at a time, then `n` pipelined in batches
/// of 100: the two elapsed times.
fn measure_xadds(s: &Session, n: usize) -> Result<(Duration, Duration)> {
    let (_, stream) = s.visitor()?;
    xadd_timings(&mut s.visitor_conn()?, stream, n)
}

/// `n` XADDs to `stream` one round trip at a time, then `n` pipelined in
/// batches of 100: the two elapsed times (`bench boot` and `bench compare`
/// measure throughput with this).
pub fn xadd_timings(c: &mut Conn, stream: &str, n: usize) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    for i in 0..n {
        match c.cmd(&["XADD", stream, "*", "n", &i.to_string()])? {
            Value::Bulk(Some(_)) => {}
            other => bail!("XADD answered {other:?}"),
        }
    }
    let seq = start.elapsed();
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(100);
        for i in 0..batch {
            c.send(&["XADD", stream, "*", "n", &i.to_string()])?;
        }
        for _ in 0..batch {
            match c.read_reply()? {
                Value::Bulk(Some(_)) => {}
                other => bail!("XADD answered {other:?}"),
            }
        }
        left -= batch;
    }
    Ok((seq, start.elapsed()))
}

/// Visitor XADDs in one VM: sequential (one round trip each) and pipelined
/// in batches of 100.
fn xadd_throughput(s: &Session, n: usize) -> Result<Vec<String>> {
    let (seq, piped) = measure_xadds(s, n)?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    Ok(vec![
        format!(
            "{:<52} {:>8.0}/s ({n} in {:.2}s)",
            "visitor XADD, governor running, sequential",
            rate(seq),
            seq.as_secs_f64()
        ),
        format!(
            "{:<52} {:>8.0}/s ({n} in {:.2}s)",
            "visitor XADD, governor running, pipelined x100",
            rate(piped),
            piped.as_secs_f64()
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_elf_is_well_formed() {
        let e = floor_init_elf();
        assert_eq!(e.len(), 64 + 56 + 24);
        assert_eq!(&e[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(e[24..32].try_into().unwrap());
        assert_eq!(entry, FLOOR_BASE + 120);
        let phoff = u64::from_le_bytes(e[32..40].try_into().unwrap());
        assert_eq!(phoff, 64);
        let filesz = u64::from_le_bytes(e[64 + 32..64 + 40].try_into().unwrap());
        assert_eq!(filesz, e.len() as u64);
        assert_eq!(&e[120..], &reboot_code(RB_POWER_OFF));
        assert_eq!(&e[120 + 16..120 + 20], &RB_POWER_OFF.to_le_bytes());
        assert_eq!(
            &reboot_elf(RB_HALT_SYSTEM)[120 + 16..120 + 20],
            &[0x23, 0x01, 0xef, 0xcd]
        );
    }

    #[test]
    fn floor_initramfs_parses() {
        let cpio = floor_initramfs().unwrap();
        let entries = image_formats::cpio::parse(&cpio).unwrap();
        let init = entries.iter().find(|e| e.abs_path() == "/init").unwrap();
        assert!(init.is_executable());
        assert_eq!(init.data, floor_init_elf().as_slice());
        assert!(entries.iter().any(|e| e.abs_path() == "/dev/console"));
    }

    #[test]
    fn stats_table() {
        let s = |v: &[u64]| {
            v.iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect::<Vec<_>>()
        };
        type Case = (Vec<Duration>, Option<(u64, u64, u64)>);
        let cases: Vec<Case> = vec![
            (s(&[3, 1, 2]), Some((2, 1, 3))),
            (s(&[4, 1, 2, 3]), Some((2, 1, 4))),
            (s(&[5]), Some((5, 5, 5))),
            (vec![], None),
        ];
        for (samples, want) in cases {
            let got = stats(&samples).map(|(a, b, c)| {
                (
                    u64::try_from(a.as_millis()).unwrap(),
                    u64::try_from(b.as_millis()).unwrap(),
                    u64::try_from(c.as_millis()).unwrap(),
                )
            });
            // 2.5 ms median of [1,2,3,4] truncates to 2.
            assert_eq!(got, want);
        }
    }

    #[test]
    fn parses_options() {
        let a: Vec<String> = ["--runs", "3", "--direct"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = parse(&a).unwrap();
        assert_eq!((o.runs, o.boot), (3, BootMode::Direct));
        assert!(parse(&["--runs".to_owned(), "0".to_owned()]).is_err());
        assert!(parse(&["--nope".to_owned()]).is_err());
    }
}
