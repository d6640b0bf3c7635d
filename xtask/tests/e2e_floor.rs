//! Real QEMU boots that need no appliance image: the pinned kernel (from
//! the image fetch cache, fetched through the host's apt on a miss) with a
//! one-syscall `/init`. They check the QEMU plumbing the e2e cases rely on:
//! the restricted user network and monitor come up, a guest power-off ends
//! QEMU, a guest halt does not (which is why the governor must power off),
//! and the monitor stops a VM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::Duration;

use host_tools::ensure_tools;
use vm_harness::{VmDir, BOOT_TOOLS};
use xtask::bench::{floor_boot, spawn_reboot_vm, RB_HALT_SYSTEM};

/// The pinned kernel's `vmlinuz`.
fn kernel() -> PathBuf {
    ensure_tools(&BOOT_TOOLS, "to boot under QEMU").unwrap();
    xtask::run::pinned_kernel().unwrap().1.vmlinuz
}

const CMDLINE: &str = "console=ttyS0,115200n8 panic=-1";

#[test]
fn power_off_ends_qemu_and_halt_does_not() {
    let kernel = kernel();

    let dir = VmDir::new("floor-test").unwrap();
    let (took, vm) = floor_boot(&kernel, CMDLINE, &dir).unwrap();
    let lines = vm.console().lines();
    assert!(
        lines.iter().any(|l| l.text.contains("reboot: Power down")),
        "{}",
        vm.console().tail(20)
    );
    println!(
        "floor boot (power off) under TCG: {:.2}s",
        took.as_secs_f64()
    );

    // RB_HALT_SYSTEM: the kernel says so, and QEMU keeps running.
    let dir = VmDir::new("halt-test").unwrap();
    let mut vm = spawn_reboot_vm(&kernel, CMDLINE, RB_HALT_SYSTEM, &dir).unwrap();
    let halted = vm.console().wait_for(0, Duration::from_secs(120), |l| {
        l.contains("reboot: System halted")
    });
    assert!(halted.is_some(), "{}", vm.console().tail(20));
    assert!(
        vm.wait_exit(Duration::from_secs(5)).unwrap().is_none(),
        "QEMU exited after a guest halt"
    );
    // The monitor answers and `quit` ends QEMU.
    let status = vm.monitor("info status").unwrap();
    assert!(status.contains("VM status"), "{status:?}");
    vm.stop().unwrap();
    assert!(vm.try_exit().unwrap().is_some());
}
