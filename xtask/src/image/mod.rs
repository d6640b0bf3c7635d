//! `cargo xtask image`: pinned inputs -> `target/appliance/`.
pub mod assemble;
pub mod build;
pub mod ext4;
pub mod fetch;
pub mod kmod;
pub mod manifest;
pub mod pins;
pub mod sandbox;
pub mod symver;
pub mod uki;
pub mod valkey;
pub mod valkey_conf;
