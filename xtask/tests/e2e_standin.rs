//! The metadata stand-in for real, through QEMU's
//! `guestfwd=tcp:169.254.169.254:80-cmd:<program>` under `restrict=on`:
//! a guest (the pinned kernel, the virtio-net modules in their computed
//! order, and `fixtures/metadata_probe.c` as `/init`) asks the metadata
//! address three times and tries to reach the host; the console shows what
//! came back. The kernel runs with `module.sig_enforce=1`, as the image's: the
//! package's compressed modules load (the kernel decompresses, then checks
//! their signature), and a copy with one byte changed is refused.
//!
//! `harness = false`: this binary is also the guestfwd program. Run with
//! `__metadata-standin --state <file>` it is the stand-in
//! (`vm_harness::standin::main`), exactly as the xtask binary is, and QEMU
//! gets the same program line (`vm_harness::standin::guestfwd_command`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use appliance_image::kmod::{decompress, module_subset};
use host_tools::{ensure_tools, Tool};
use image_formats::cpio::Archive;
use vm_harness::standin::{self, Mode, State};
use vm_harness::{Boot, ConsoleSinks, QemuSpec, Vm, VmDir, BOOT_TOOLS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(standin::SUBCOMMAND) {
        if let Err(e) = standin::main(&args[1..]) {
            eprintln!("stand-in: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo test` passes harness flags (e.g. --nocapture); nothing to filter.
    let start = Instant::now();
    stand_in_answers_the_guest_through_guestfwd();
    println!(
        "test stand_in_answers_the_guest_through_guestfwd ... ok ({:.1}s)",
        start.elapsed().as_secs_f64()
    );
}

/// The unpacked pinned kernel package: (`vmlinuz`, its modules directory, kver).
fn kernel_tree() -> (PathBuf, PathBuf, String) {
    let (_, kernel) = xtask::run::pinned_kernel().unwrap();
    (kernel.vmlinuz, kernel.modules_dir, kernel.kver)
}

fn build_probe(out: &Path) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metadata_probe.c");
    let status = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .expect("gcc (package build-essential) builds the probe");
    assert!(status.success(), "gcc failed");
}

/// A module whose signature does not match its content.
const TAMPERED: &str = "/m/tampered.ko.xz";

fn initramfs(dir: &Path, modules_dir: &Path, kver: &str) -> PathBuf {
    let probe = dir.join("probe");
    build_probe(&probe);
    let subset = module_subset(
        modules_dir,
        kver,
        &["virtio_net".to_owned(), "virtio_pci".to_owned()],
    )
    .unwrap();
    let mut a = Archive::new();
    a.add_dir("/dev", 0o755).unwrap();
    a.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
    a.add_file("/init", 0o755, std::fs::read(&probe).unwrap())
        .unwrap();
    let mut order = String::new();
    for m in &subset.modules {
        let path = format!("/m/{}", m.path.file_name().unwrap().to_string_lossy());
        a.add_file(&path, 0o644, std::fs::read(&m.path).unwrap())
            .unwrap();
        order.push_str(&path);
        order.push('\n');
    }
    // Signature enforcement: the first module with one byte of its code
    // changed (so its appended signature no longer matches), compressed
    // again the way the package stores modules.
    let first = subset.modules.first().unwrap();
    let mut object = decompress(&std::fs::read(&first.path).unwrap(), first.compression).unwrap();
    object[0x100] ^= 0xff;
    let mut tampered = Vec::new();
    lzma_rs::xz_compress(&mut object.as_slice(), &mut tampered).unwrap();
    a.add_file(TAMPERED, 0o644, tampered).unwrap();
    order.push_str(TAMPERED);
    order.push('\n');
    a.add_file("/modules.order", 0o644, order.into_bytes())
        .unwrap();
    let out = dir.join("probe.cpio");
    std::fs::write(&out, a.write(0).unwrap()).unwrap();
    out
}

/// The text between `PROBE-BEGIN name` and `PROBE-END name`.
/// A kernel log line: `[` then a seconds.micros timestamp then `]`.
fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    stamp.split_once('.').is_some_and(|(s, us)| {
        !s.is_empty()
            && !us.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && us.bytes().all(|b| b.is_ascii_digit())
    })
}

fn section(lines: &[String], name: &str) -> String {
    let begin = format!("PROBE-BEGIN {name}");
    let end = format!("PROBE-END {name}");
    let from = lines
        .iter()
        .position(|l| l.contains(&begin))
        .unwrap_or_else(|| panic!("no {begin} on the console:\n{}", lines.join("\n")));
    // The kernel prints on the same console whenever it likes (the probe once
    // had "tsc: Refined TSC clocksource calibration" land inside a reply), so
    // its timestamped lines are not part of any section.
    lines[from + 1..]
        .iter()
        .take_while(|l| !l.contains(&end))
        .filter(|l| !is_kernel_line(l))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

fn stand_in_answers_the_guest_through_guestfwd() {
    ensure_tools(&BOOT_TOOLS, "to boot under QEMU").unwrap();
    ensure_tools(
        &[Tool {
            file: "gcc",
            package: "build-essential",
        }],
        "to build the guest probe",
    )
    .unwrap();
    let (vmlinuz, modules, kver) = kernel_tree();
    let vm_dir = VmDir::new("standin-test").unwrap();
    let initrd = initramfs(vm_dir.path(), &modules, &kver);
    let state = State::generate(Mode::Normal).unwrap();
    state.write(&vm_dir.state_file()).unwrap();
    let mut spec = QemuSpec::new(
        Boot::Direct {
            kernel: vmlinuz,
            initrd,
            cmdline: "console=ttyS0,115200n8 panic=-1 module.sig_enforce=1".to_owned(),
        },
        vm_dir.monitor(),
    );
    spec.metadata_cmd = Some(standin::guestfwd_command(&vm_dir.state_file()).unwrap());
    let mut vm = Vm::spawn(&spec, &ConsoleSinks::default()).unwrap();
    let exit = vm.wait_exit(Duration::from_secs(240)).unwrap();
    let lines: Vec<String> = vm.console().lines().into_iter().map(|l| l.text).collect();
    assert!(
        exit.is_some_and(|s| s.success()),
        "the probe did not power off ({exit:?}); QEMU stderr: {}\n{}",
        vm.stderr_text(),
        lines.join("\n")
    );

    // Every signed module loaded; the tampered one was refused by its
    // signature (EKEYREJECTED), not for its format.
    let modules: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("PROBE module "))
        .collect();
    assert!(modules.len() >= 2, "{}", lines.join("\n"));
    for line in &modules {
        println!("{line}");
        if line.contains(TAMPERED) {
            assert!(line.ends_with("Key was rejected by service"), "{line}");
        } else {
            assert!(line.ends_with(": ok"), "{line}");
        }
    }

    let admin = section(&lines, "admin");
    assert!(admin.starts_with("HTTP/1.1 200 OK"), "{admin}");
    assert!(admin.contains("Metadata-Flavor: Google"), "{admin}");
    assert!(admin.ends_with(state.admin_pass.expose()), "{admin}");
    let unknown = section(&lines, "unknown");
    assert!(unknown.starts_with("HTTP/1.1 404 Not Found"), "{unknown}");
    let noflavor = section(&lines, "noflavor");
    assert!(noflavor.starts_with("HTTP/1.1 403 Forbidden"), "{noflavor}");
    assert!(!noflavor.contains(state.admin_pass.expose()));
    // restrict=on: the host itself is out of reach.
    let host = lines
        .iter()
        .find(|l| l.contains("PROBE host-connect:"))
        .unwrap_or_else(|| panic!("no host-connect line:\n{}", lines.join("\n")));
    assert!(!host.contains("CONNECTED"), "{host}");

    let log = standin::read_log(&vm_dir.state_file());
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].ends_with("/redis-admin-pass -> 200"), "{log:?}");
    assert!(log[1].ends_with("/nope -> 404"), "{log:?}");
    assert!(log[2].ends_with("-> 403"), "{log:?}");
    println!("host-connect from the guest: {host}");
}
