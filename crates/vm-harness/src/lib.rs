//! Booting an appliance image under QEMU and looking at it from outside:
//! what `cargo xtask run`, the e2e cases and the benchmarks share.
//!
//! - [`qemu`]: the QEMU command line, one pure builder ([`QemuSpec`]),
//!   snapshot-tested;
//! - [`vm`]: a running QEMU ([`Vm`]): console capture with host-side
//!   timestamps, stderr, the HMP monitor, stop by PID;
//! - [`console`]: the captured console as lines, and waiting for one;
//! - [`matchers`]: the console lines of init, the governor, the guard and
//!   the kernel, parsed (pure);
//! - [`image`]: a built image directory's files ([`ImageFiles`]), known by
//!   name only;
//! - [`plan`]: a VM's private directory ([`VmDir`]) and the QEMU spec for
//!   booting an image on a data disk ([`plan_boot`]);
//! - [`standin`]: the GCE metadata stand-in (modes for the fail-closed
//!   cases, a 0600 state file, a request log);
//! - [`testnet`]: a private guest network with many client addresses in a
//!   network namespace of its own;
//! - [`resp`]: a small RESP2 client that shows exactly what came back;
//! - [`host`]: private temporary directories, free loopback ports, sparse
//!   disk copies.
//!
//! Deliberately absent: building images (the builder's; only the file
//! names of its output are known here), the e2e cases and their verdicts,
//! and any knowledge of the appliance's spec beyond the guest's server port.
//!
//! The metadata stand-in is not a binary of this crate. QEMU runs the
//! `guestfwd` program once per guest connection, so it must be an
//! executable that exists for as long as the VM runs; a binary here would
//! not be built by `cargo run -p xtask` (cargo builds only the libraries
//! of dependencies), so each run would need a nested `cargo build` and a
//! way to find its output. Instead the program that boots the VM is the
//! stand-in too: [`standin::guestfwd_command`] copies `/proc/self/exe`
//! into the VM's directory and QEMU runs the copy with
//! [`standin::SUBCOMMAND`], which that program hands to [`standin::main`]
//! (xtask's `main`, and the `e2e_standin` test's own `main`). The copy
//! also survives a rebuild of the original during the run.
//!
//! Invariants:
//! - Every QEMU command line carries `-netdev user,...,restrict=on`, or
//!   the test network's tap with QEMU inside that network's namespace; the
//!   user network forwards only from 127.0.0.1, and the metadata address is
//!   only ever answered by the stand-in (a `guestfwd` program, or a
//!   listener inside the test namespace): nothing here opens a connection
//!   to 169.254.169.254 from the host.
//! - TCG only: no `-enable-kvm`, no `accel=kvm`.
//! - A [`Vm`] kills its QEMU by PID and waits for it when dropped; a
//!   [`TestNet`] removes its namespace and stops its dnsmasq (by PID) when
//!   dropped; nothing else is ever killed.
//! - No secret on a command line: the stand-in's passwords travel in a
//!   0600 state file, and [`standin::Password`] never shows in `Debug`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod console;
mod error;
pub mod host;
pub mod image;
pub mod matchers;
pub mod plan;
pub mod qemu;
pub mod resp;
pub mod standin;
pub mod testnet;
pub mod vm;

pub use console::{Console, ConsoleSinks, Line};
pub use error::{Error, Result};
pub use host::{copy_sparse, free_port, temp_dir, TempDir};
pub use image::{DataCopy, ImageFiles};
pub use plan::{plan_boot, BootMode, Network, VmDir, APPLIANCE_DISK_INTERFACE};
pub use qemu::{Boot, DiskInterface, Forward, QemuSpec, BOOT_TOOLS};
pub use testnet::TestNet;
pub use vm::{monitor_command, Vm};
