//! Builds and audits the appliance image: from an appliance spec
//! (`appliance.toml`) and pinned inputs (`sources.toml`) to a bootable,
//! byte-reproducible set of files (the UKI, the GCE disk and its archive, the
//! data disk, the manifest), and the offline audit that holds a built image
//! to its spec and pins.
//!
//! One entry point builds: [`build`] with a [`BuildConfig`] `{ spec,
//! sources, out, cache, profile, .. }`; nothing is read from a fixed path, so
//! another appliance spec builds with no code change. The pipeline, in
//! order: [`pins`] (the pinned inputs, strictly parsed), [`fetch`] (from the
//! cache, or through the host's apt with a temporary configuration),
//! [`valkey`] (the server built without Lua inside [`sandbox`], a fresh mount
//! and network namespace), our own binaries (`cargo build` in a workspace,
//! or prebuilt), [`kmod`] (the kernel module subset and its load order),
//! [`symver`] (the pinned libraries define every symbol version the
//! binaries need), [`valkey_conf`] (the server config rendered from the
//! spec), then [`assemble`] (initramfs, UKI, disks, archives) and
//! [`manifest`]. [`verify`] audits a built image; [`gce`] renders the
//! commands that deploy it. [`cli`] is the command line of the
//! `appliance-image` binary and of `cargo xtask image|verify|pins|gce`.
//!
//! Invariants:
//! - Outputs are a function of the inputs and SOURCE_DATE_EPOCH: two builds
//!   of one commit are byte-identical (CI compares them).
//! - Every fetched file is checked against its pinned SHA-256 on every use;
//!   the image's loader and libraries are the pinned packages' files, never
//!   the build host's.
//! - Foreign code (the Valkey build) runs only inside [`sandbox`] unless the
//!   operator gives the sandbox up explicitly (`--no-sandbox`).
//! - Paths inside the image come from `image_layout`, which init reads too.
//!
//! Deliberately not here: the byte formats (cpio, GPT, FAT, PE, the GCE tar,
//! ELF reads are `image_formats`'), booting the image (the VM harness), and
//! installing host packages (the caller's: a missing tool is
//! [`Error::MissingTools`]).

pub mod assemble;
pub mod build;
pub mod cli;
mod error;
pub mod ext4;
pub mod fetch;
pub mod gce;
pub mod kmod;
pub mod manifest;
pub mod pins;
pub mod sandbox;
pub mod symver;
pub mod uki;
pub mod valkey;
pub mod valkey_conf;
pub mod verify;

pub use build::{build, source_date_epoch, Binaries, BuildConfig, OwnBinaries, IMAGE_TOOLS};
pub use error::{missing_tools, require_tools, Error, Result, Tool};
pub use manifest::{Manifest, Profile};
pub use verify::{verify, verify_with, VerifyOptions};
