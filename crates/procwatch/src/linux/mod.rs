//! Linux backends: `/proc`, the proc connector, `reboot(2)`, the ACPI power
//! button, `/dev/watchdog`, and the governor loop that wires them.
//!
//! Unsafe code is confined to this module's syscall wrappers, one
//! `// SAFETY:` comment per block.

mod button;
mod connector;
mod machine;
mod procfs;
mod sys;

use std::convert::Infallible;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use button::{find_power_buttons, ButtonRead, PowerButton, POWER_BUTTON_NAME};
pub use connector::{ProcConnector, DEFAULT_RCVBUF};
pub use machine::{LinuxHalt, LinuxMachine, StopMode};
pub use procfs::{ProcFs, ReadStats, DEFAULT_CMDLINE_LIMIT};

use crate::engine::Engine;
use crate::error::Error;
use crate::policy::Policy;
use crate::traits::{Alarm, AlarmReport, Machine, MachineEnforcer};

/// Where the power button is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerButtons {
    /// Look for "Power Button" devices under a sysfs input class directory
    /// and open them from a devices directory.
    Discover {
        /// `/sys/class/input`.
        sys_class_input: PathBuf,
        /// `/dev/input`.
        dev_input: PathBuf,
    },
    /// Open exactly these nodes.
    Paths(Vec<PathBuf>),
    /// No power-button handling.
    Disabled,
}

/// Knobs of [`run_governor`] beside the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernorConfig {
    /// The procfs mount.
    pub proc_root: PathBuf,
    /// Bytes of command line kept per process.
    pub cmdline_limit: usize,
    /// Receive buffer of the connector socket.
    pub rcvbuf: usize,
    /// Power-button devices.
    pub power_buttons: PowerButtons,
    /// How often to pet the watchdog (`None`: never; the machine decides
    /// whether a watchdog is open at all).
    pub watchdog_interval: Option<Duration>,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            cmdline_limit: DEFAULT_CMDLINE_LIMIT,
            rcvbuf: DEFAULT_RCVBUF,
            power_buttons: PowerButtons::Discover {
                sys_class_input: PathBuf::from("/sys/class/input"),
                dev_input: PathBuf::from("/dev/input"),
            },
            // softdog's default timeout is 60 s.
            watchdog_interval: Some(Duration::from_secs(10)),
        }
    }
}

/// Milliseconds for poll(2), rounded up so a wait never ends early.
pub(crate) fn timeout_ms(d: Duration) -> libc::c_int {
    let ms = d.as_micros().div_ceil(1000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

/// The governor: subscribes to the proc connector, takes the first snapshot,
/// then serves process events, rescans every `policy.rescan_interval`, pets
/// the watchdog and powers off on a power-button press. Verdicts go to a
/// [`MachineEnforcer`] over `machine`.
///
/// Returns only on a fatal error (the connector cannot be opened or read,
/// `/proc` cannot be listed, halting failed): the caller should then halt
/// itself; an armed watchdog reboots the machine if the governor exits.
///
/// [`run_governor_with_alarms`] with no alarms.
pub fn run_governor<M: Machine>(
    policy: Policy,
    machine: M,
    config: &GovernorConfig,
) -> Result<Infallible, Error> {
    run_governor_with_alarms(policy, machine, config, Vec::new())
}

/// [`run_governor`], also polling `alarms` beside the connector and the
/// power buttons: each report becomes a verdict at once
/// ([`Engine::handle_alarm`]: a halt even before the seal).
///
/// Also returns on an alarm's failure: its read failed, or its descriptor
/// hung up or failed with nothing to read ([`Error::AlarmGone`]), since
/// its reports could no longer arrive.
pub fn run_governor_with_alarms<M: Machine>(
    policy: Policy,
    machine: M,
    config: &GovernorConfig,
    mut alarms: Vec<Box<dyn Alarm>>,
) -> Result<Infallible, Error> {
    // Subscribe before the snapshot, so nothing falls between the two.
    let mut connector = ProcConnector::open(config.rcvbuf)?;
    let interval = policy.rescan_interval;
    let source = ProcFs::new(config.proc_root.clone(), config.cmdline_limit);
    let mut engine = Engine::new(policy, source, MachineEnforcer::new(machine));
    engine.start()?;

    let mut buttons = open_buttons(&config.power_buttons, engine.enforcer_mut().machine_mut());
    let mut next_scan = Instant::now() + interval;
    let mut next_pet = Instant::now();
    let mut events = Vec::new();
    let mut reports: Vec<AlarmReport> = Vec::new();
    let mut pet_failed = false;

    loop {
        let now = Instant::now();
        if now >= next_scan {
            engine.rescan()?;
            next_scan = Instant::now() + interval;
        }
        if let Some(pet) = config.watchdog_interval {
            if now >= next_pet {
                let machine = engine.enforcer_mut().machine_mut();
                match machine.pet_watchdog() {
                    Ok(()) => pet_failed = false,
                    Err(e) if !pet_failed => {
                        pet_failed = true;
                        machine.console_line(&format!("procwatch: {e}"));
                    }
                    Err(_) => {}
                }
                next_pet = Instant::now() + pet;
            }
        }
        let mut deadline = next_scan;
        if config.watchdog_interval.is_some() {
            deadline = deadline.min(next_pet);
        }
        let mut fds: Vec<libc::pollfd> = std::iter::once(connector.as_raw_fd())
            .chain(buttons.iter().map(AsRawFd::as_raw_fd))
            .chain(alarms.iter().map(|a| a.as_fd().as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(1);
        let ms = timeout_ms(deadline.saturating_duration_since(Instant::now()));
        // SAFETY: `fds` is a live array of `nfds` pollfd entries.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Os {
                op: "poll",
                source: e,
            });
        }
        let mut ready = fds.iter().map(|p| p.revents);
        if ready.next().is_some_and(|r| r != 0) {
            connector.drain(&mut events)?;
            for ev in events.drain(..) {
                engine.handle(&ev)?;
            }
        }
        let button_ready: Vec<bool> = ready.by_ref().take(buttons.len()).map(|r| r != 0).collect();
        // Alarms first: a halt they report must not wait for a button.
        for (alarm, revents) in alarms.iter_mut().zip(ready) {
            if revents == 0 {
                continue;
            }
            alarm.read(&mut reports)?;
            if reports.is_empty() && revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
            {
                return Err(Error::AlarmGone {
                    name: alarm.name().to_owned(),
                    detail: if revents & libc::POLLNVAL != 0 {
                        "descriptor not open"
                    } else if revents & libc::POLLERR != 0 {
                        "descriptor reports an error"
                    } else {
                        "descriptor hung up"
                    },
                });
            }
            for report in reports.drain(..) {
                engine.handle_alarm(alarm.name(), &report)?;
            }
        }
        let mut keep = Vec::with_capacity(buttons.len());
        for (mut button, is_ready) in buttons.into_iter().zip(button_ready) {
            if !is_ready {
                keep.push(button);
                continue;
            }
            let machine = engine.enforcer_mut().machine_mut();
            match button.read() {
                Ok(ButtonRead::Pressed) => {
                    machine.console_line("procwatch: power button pressed: sync and power off");
                    machine.sync();
                    if let Err(e) = machine.power_off() {
                        machine.console_line(&format!("procwatch: {e}"));
                    }
                    keep.push(button);
                }
                Ok(ButtonRead::Idle) => keep.push(button),
                Ok(ButtonRead::Gone) => machine.console_line(&format!(
                    "procwatch: power button {} gone",
                    button.path().display()
                )),
                Err(e) => machine.console_line(&format!("procwatch: {e}; no longer watched")),
            }
        }
        buttons = keep;
    }
}

fn open_buttons<M: Machine>(which: &PowerButtons, machine: &mut M) -> Vec<PowerButton> {
    let paths = match which {
        PowerButtons::Disabled => return Vec::new(),
        PowerButtons::Paths(p) => p.clone(),
        PowerButtons::Discover {
            sys_class_input,
            dev_input,
        } => find_power_buttons(sys_class_input, dev_input),
    };
    if paths.is_empty() {
        machine.console_line("procwatch: no power button found; power-button shutdown disabled");
    }
    paths
        .iter()
        .filter_map(|p| match PowerButton::open(p) {
            Ok(b) => Some(b),
            Err(e) => {
                machine.console_line(&format!("procwatch: {e}"));
                None
            }
        })
        .collect()
}
