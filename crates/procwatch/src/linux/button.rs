//! The ACPI power button as an evdev device.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::parse::input::{parse_input_events, InputLayout};

/// The name the kernel's ACPI `button` driver gives the device.
pub const POWER_BUTTON_NAME: &str = "Power Button";

/// Finds `/dev/input/eventN` nodes whose device name (from
/// `<sys_class_input>/eventN/device/name`) is "Power Button". ACPI often
/// registers two (fixed-feature and PNP0C0C); both are returned.
pub fn find_power_buttons(sys_class_input: &Path, dev_input: &Path) -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(sys_class_input) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"event"))
        .filter(|e| {
            fs::read(e.path().join("device").join("name"))
                .map(|n| n.trim_ascii_end() == POWER_BUTTON_NAME.as_bytes())
                .unwrap_or(false)
        })
        .map(|e| dev_input.join(e.file_name()))
        .collect();
    found.sort();
    found
}

/// An open power-button device.
#[derive(Debug)]
pub struct PowerButton {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

/// What reading the button gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonRead {
    /// Nothing relevant (other keys, releases, nothing pending).
    Idle,
    /// At least one press.
    Pressed,
    /// The device is gone (end of file): stop watching it.
    Gone,
}

impl PowerButton {
    /// Opens the device non-blocking.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| Error::Device {
                op: "open power button",
                path: path.to_path_buf(),
                source,
            })?;
        let layout = InputLayout::NATIVE;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            buf: vec![0u8; layout.record_len().saturating_mul(64)],
        })
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what is pending.
    pub fn read(&mut self) -> Result<ButtonRead, Error> {
        let mut result = ButtonRead::Idle;
        loop {
            match self.file.read(&mut self.buf) {
                Ok(0) => return Ok(ButtonRead::Gone),
                Ok(n) => {
                    let bytes = self.buf.get(..n).unwrap_or_default();
                    if parse_input_events(bytes, InputLayout::NATIVE)
                        .iter()
                        .any(|e| e.is_power_press())
                    {
                        result = ButtonRead::Pressed;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(result),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Device {
                        op: "read power button",
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }
}

impl AsRawFd for PowerButton {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
