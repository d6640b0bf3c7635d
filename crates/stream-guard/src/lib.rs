//! stream-guard: the Valkey module that guards everything a public client can
//! do to the server (the visitor password is public, so the port is as exposed
//! as a web form). Its command filter lets an append-only user's `XADD` through
//! only as `XADD <key> * <field> <value> [<field> <value> ...]` within the
//! spec's size limits (design §6, issue 7), and only while the data disk and
//! memory have room ([`space`]); its AUTH callback throttles password guessing
//! per source address ([`throttle`]); its timer closes connections that do not
//! authenticate, never complete a command, or take the slots kept for the
//! admin ([`clients`]).
//!
//! ACLs cannot restrict a command's arguments: `+xadd` alone lets a visitor trim
//! the stream to nothing (`MAXLEN 0`) or exhaust its ID space (an explicit
//! maximal ID). This crate closes that gap and does nothing else: users that are
//! not append-only, and every command other than `XADD`, pass untouched. It never
//! edits a command it lets through; a refused command is replaced by an unknown
//! command named `STREAM-GUARD-REFUSED:<reason>`, so the server answers with an
//! error and nothing runs.
//!
//! Every decision is pure code in [`policy`], [`space`], [`throttle`] and
//! [`clients`]; the Valkey glue (feature `module`) only reads the server's
//! state, asks, and acts (renames a refused command, denies an AUTH, kills a
//! connection, logs a line).
//!
//! Invariants:
//! - An append-only user's `XADD` runs only if [`judge`] returned
//!   [`Verdict::Pass`]; every other shape is refused before execution.
//! - A module loaded with arguments it does not understand refuses to load, so
//!   the server does not start with a guard it did not configure (fail closed).
//! - The admin is never refused a command or disconnected by the guard.
//! - The guard never reads a password: the server checks it, and the guard
//!   counts the server's verdicts.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod clients;
pub mod disk;
pub mod policy;
pub mod report;
pub mod space;
pub mod throttle;

#[cfg(feature = "module")]
mod module;

pub use policy::{judge, judge_under, AppendOnly, ConfigError, GuardConfig, Refusal, Verdict};
