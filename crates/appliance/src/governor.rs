//! The governor child's entry point.

use std::path::Path;

use appliance_spec::Spec;
use init_seq::GovernorLink;
use procwatch::linux::{run_governor_with_alarms, GovernorConfig, LinuxMachine, StopMode};
use procwatch::{Alarm, Machine};

use crate::governor_policy;
use crate::seccomp::{receive_listener, Mode, SeccompAlarm, LISTENER_WAIT};

/// Init's pid: the process whose first `execve` (of the server) the
/// governor lets through.
const INIT_PID: u32 = 1;

/// The softdog device; the image loads the `softdog` module.
const WATCHDOG: &str = "/dev/watchdog";

/// Runs in the child init forks (step 11): builds the policy with its own pid,
/// receives the server's syscall filter listener from init over `link`, and
/// runs procwatch's Linux governor with the filter as an alarm until it
/// halts the machine. Returns only if the governor could not run; it halts
/// the machine first, since an unguarded appliance must not keep serving.
/// A link closed before the listener arrives means init failed after the
/// fork (where it can no longer power off itself): the governor does.
pub fn governor_main(spec: &Spec, link: GovernorLink) -> i32 {
    let mut machine = match open_machine() {
        Ok(machine) => machine,
        Err(reason) => return give_up(stopping_machine(), &reason),
    };
    #[allow(unused_mut)] // Only the test hooks change it.
    let mut policy = governor_policy(spec, std::process::id());
    #[allow(unused_mut)]
    let mut mode = Some(Mode::Enforce);
    #[cfg(feature = "test-hooks")]
    {
        let marker = crate::test_hooks::TEST_HOOKS_MARKER;
        if let Some(secs) = crate::test_hooks::max_child_seconds() {
            for rule in &mut policy.children {
                rule.max_lifetime = Some(std::time::Duration::from_secs(secs));
            }
            machine.console_line(&format!(
                "appliance: {marker}: server forks may live {secs} s (not {})",
                spec.governor().max_child_seconds()
            ));
        }
        match crate::test_hooks::seccomp_hook() {
            Some(crate::test_hooks::SeccompHook::Off) => mode = None,
            Some(crate::test_hooks::SeccompHook::Log | crate::test_hooks::SeccompHook::Record) => {
                mode = Some(Mode::Log);
                machine.console_line(&format!(
                    "appliance: {marker}: syscall filter in log mode: refusals continued and noted"
                ));
            }
            None => {}
        }
    }
    machine.console_line(&format!(
        "appliance: governor pid {} watching (server {} uid {}, rescan every {} ms)",
        std::process::id(),
        spec.server().binary(),
        spec.server().uid(),
        spec.governor().rescan_interval_ms()
    ));
    let mut alarms: Vec<Box<dyn Alarm>> = Vec::new();
    if let Some(mode) = mode {
        let Some(link) = link else {
            return give_up(machine, "no link to init for the syscall filter listener");
        };
        let listener = match receive_listener(&link, LISTENER_WAIT) {
            Ok(listener) => listener,
            Err(reason) => return give_up(machine, &reason),
        };
        drop(link);
        #[allow(unused_mut)]
        let mut alarm = SeccompAlarm::new(listener, mode, INIT_PID);
        // Benchmark mode: the server must start while the governor idles,
        // so init's exec is let through first.
        #[cfg(feature = "test-hooks")]
        if crate::test_hooks::governor_delay().is_some() {
            match alarm.serve_until_exec() {
                Ok(reports) if reports.iter().all(|r| !r.halt) => {}
                Ok(reports) => {
                    let what: Vec<&str> = reports.iter().map(|r| r.what.as_str()).collect();
                    return give_up(machine, &what.join("; "));
                }
                Err(error) => return give_up(machine, &error.to_string()),
            }
        }
        alarms.push(Box::new(alarm));
    }
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
    match run_governor_with_alarms(policy, machine, &GovernorConfig::default(), alarms) {
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
