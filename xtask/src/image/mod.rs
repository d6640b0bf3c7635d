//! `cargo xtask image`: pinned inputs -> `target/appliance/`.
