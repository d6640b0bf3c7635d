//! The build side of the appliance: everything `cargo xtask` does that is more
//! than running another program — pinned inputs, the sandboxed Valkey build, the
//! kernel module subset, the initramfs, UKI and disk writers, the manifest and
//! the offline verifier. A library so its parsers (cpio, `.modinfo`) can be
//! tested and fuzzed; the `xtask` binary only dispatches subcommands.
//!
//! This crate never runs on the appliance. It may use `anyhow` and print
//! progress, but parsers of outside input still take `&[u8]` and never panic.

pub mod bench;
pub mod e2e;
pub mod gce;
pub mod image;
pub mod packages;
pub mod run;
pub mod seccomp;
pub mod verify;
