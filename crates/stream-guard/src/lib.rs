//! stream-guard: a Valkey module (to become a `cdylib`) whose command filter lets
//! an append-only user's `XADD` through only as `XADD <key> * field value ...`
//! within the spec's size limits (design §6, issue 7).
//!
//! ACLs cannot restrict a command's arguments: `+xadd` alone lets a visitor trim
//! the stream to nothing (`MAXLEN 0`) or exhaust its ID space (an explicit
//! maximal ID). This crate will close that gap. It deliberately does nothing
//! else: other users and other commands pass untouched, and it never rewrites a
//! command, only refuses it.
//!
//! Not built yet: this file holds only the crate's purpose (issue 7).
#![forbid(unsafe_code)]
