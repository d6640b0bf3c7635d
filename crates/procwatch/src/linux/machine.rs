//! The real machine: console, `sync(2)`, `reboot(2)`, `/dev/watchdog`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::sys::cvt;
use crate::error::Error;
use crate::traits::{Machine, MachineEnforcer};

/// The production enforcer: console line, `sync()`, `reboot(RB_HALT_SYSTEM)`
/// (or `RB_POWER_OFF`, see [`StopMode`]).
pub type LinuxHalt = MachineEnforcer<LinuxMachine>;

/// How [`Machine::halt`] stops the machine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `reboot(RB_HALT_SYSTEM)`: the CPU stops; the VM stays "running".
    #[default]
    Halt,
    /// `reboot(RB_POWER_OFF)`: the CPU stops and the VM powers off, so the
    /// hypervisor (QEMU exits; a cloud instance shows as stopped) sees it.
    /// Neither mode ever restarts the machine.
    PowerOff,
}

/// The running Linux machine. The console is the process's stderr (the
/// governor inherits `/dev/console` from init).
#[derive(Debug, Default)]
pub struct LinuxMachine {
    watchdog: Option<File>,
    stop: StopMode,
}

impl LinuxMachine {
    /// A machine without a watchdog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same machine, stopping the given way when halted.
    pub fn stopping_by(mut self, stop: StopMode) -> Self {
        self.stop = stop;
        self
    }

    /// A machine that pets the watchdog device at `path` (`/dev/watchdog`).
    /// Opening it arms the watchdog: from now on the governor must pet it,
    /// and closing it without the magic character leaves it armed, so a dead
    /// governor reboots the machine.
    pub fn with_watchdog(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| Error::Device {
                op: "open watchdog",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            watchdog: Some(file),
            stop: StopMode::default(),
        })
    }
}

impl Machine for LinuxMachine {
    fn console_line(&mut self, line: &str) {
        let mut buf = Vec::with_capacity(line.len().saturating_add(1));
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // Nothing to do if the console is gone; the halt still follows.
        let _ = std::io::stderr().lock().write_all(&buf);
    }

    fn sync(&mut self) {
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }

    fn halt(&mut self) -> Result<(), Error> {
        if self.stop == StopMode::PowerOff {
            return self.power_off();
        }
        // SAFETY: reboot(2) with a valid command; returns only on failure.
        let ret = unsafe { libc::reboot(libc::RB_HALT_SYSTEM) };
        cvt(ret, "reboot(RB_HALT_SYSTEM)").map(|_| ())
    }

    fn power_off(&mut self) -> Result<(), Error> {
        // SAFETY: reboot(2) with a valid command; returns only on failure.
        let ret = unsafe { libc::reboot(libc::RB_POWER_OFF) };
        cvt(ret, "reboot(RB_POWER_OFF)").map(|_| ())
    }

    fn pet_watchdog(&mut self) -> Result<(), Error> {
        let Some(file) = self.watchdog.as_mut() else {
            return Ok(());
        };
        // Any byte but 'V' (the magic close character) pets it.
        file.write_all(b"\0").map_err(|source| Error::Os {
            op: "pet watchdog",
            source,
        })
    }
}
