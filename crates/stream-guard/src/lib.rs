//! stream-guard: a Valkey module whose command filter lets an append-only user's
//! `XADD` through only as `XADD <key> * <field> <value> [<field> <value> ...]`
//! within the spec's size limits (design §6, issue 7).
//!
//! ACLs cannot restrict a command's arguments: `+xadd` alone lets a visitor trim
//! the stream to nothing (`MAXLEN 0`) or exhaust its ID space (an explicit
//! maximal ID). This crate closes that gap and does nothing else: users that are
//! not append-only, and every command other than `XADD`, pass untouched. It never
//! edits a command it lets through; a refused command is replaced by an unknown
//! command named `STREAM-GUARD-REFUSED:<reason>`, so the server answers with an
//! error and nothing runs.
//!
//! The decision is the pure function [`judge`] over the user name and the
//! argument vector ([`policy`]); the Valkey glue (feature `module`) only reads
//! the arguments, asks [`judge`], and rewrites on refusal.
//!
//! Invariants:
//! - An append-only user's `XADD` runs only if [`judge`] returned
//!   [`Verdict::Pass`]; every other shape is refused before execution.
//! - A module loaded with arguments it does not understand refuses to load, so
//!   the server does not start with a guard it did not configure (fail closed).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod policy;

#[cfg(feature = "module")]
mod module;

pub use policy::{judge, ConfigError, GuardConfig, Refusal, Verdict};
