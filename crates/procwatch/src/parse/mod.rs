//! Pure parsers of kernel output: `/proc/PID/{stat,status,cmdline}`, proc
//! connector netlink messages, evdev `input_event` records. They take bytes,
//! check lengths before every access and never panic.
#![forbid(unsafe_code)]

pub mod connector;
pub mod input;
pub mod proc;
