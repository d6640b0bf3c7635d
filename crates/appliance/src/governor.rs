//! The governor child's entry point.

use std::path::Path;

use appliance_spec::Spec;
use procwatch::linux::{run_governor, GovernorConfig, LinuxMachine, StopMode};
use procwatch::Machine;

use crate::governor_policy;

/// The softdog device; the image loads the `softdog` module.
const WATCHDOG: &str = "/dev/watchdog";

/// Runs in the child init forks (step 11): builds the policy with its own pid
/// and runs procwatch's Linux governor until it halts the machine. Returns
/// only if the governor could not run; it halts the machine first, since an
/// unguarded appliance must not keep serving.
pub fn governor_main(spec: &Spec) -> i32 {
    let mut machine = match open_machine() {
        Ok(machine) => machine,
        Err(reason) => return give_up(stopping_machine(), &reason),
    };
    let policy = governor_policy(spec, std::process::id());
    machine.console_line(&format!(
        "appliance: governor pid {} watching (server {} uid {}, rescan every {} ms)",
        std::process::id(),
        spec.server.binary,
        spec.server.uid,
        spec.governor.rescan_interval_ms
    ));
    // Benchmark mode (test images only): the governor idles, petting the
    // watchdog, so the server can be measured without it, then watches.
    #[cfg(feature = "test-hooks")]
    if let Some(secs) = crate::test_hooks::governor_delay() {
        let marker = crate::test_hooks::TEST_HOOKS_MARKER;
        machine.console_line(&format!(
            "appliance: {marker}: governor idle for {secs} s (benchmark)"
        ));
        for _ in 0..secs {
            let _ = machine.pet_watchdog();
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        machine.console_line(&format!(
            "appliance: {marker}: governor watching from now on"
        ));
    }
    match run_governor(policy, machine, &GovernorConfig::default()) {
        Ok(never) => match never {},
        Err(error) => give_up(stopping_machine(), &error.to_string()),
    }
}

/// The appliance stops by powering off (see ARCHITECTURE.md, "Halting"): the
/// hypervisor then knows the machine is down, and nothing restarts it.
fn stopping_machine() -> LinuxMachine {
    LinuxMachine::new().stopping_by(StopMode::PowerOff)
}

/// The machine, with the watchdog armed when the kernel offers one: from
/// then on a dead or stuck governor reboots the machine.
fn open_machine() -> Result<LinuxMachine, String> {
    if Path::new(WATCHDOG).exists() {
        LinuxMachine::with_watchdog(Path::new(WATCHDOG))
            .map(|m| m.stopping_by(StopMode::PowerOff))
            .map_err(|e| e.to_string())
    } else {
        let mut machine = stopping_machine();
        machine.console_line("appliance: governor: no /dev/watchdog, running without one");
        Ok(machine)
    }
}

fn give_up(mut machine: LinuxMachine, reason: &str) -> i32 {
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    machine.console_line(&format!("appliance: FATAL governor: {reason}"));
    machine.sync();
    let _ = machine.halt();
    1
}
