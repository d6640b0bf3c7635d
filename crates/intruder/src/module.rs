//! The Valkey glue: registers `INTRUDER.STEP` in the `@write` ACL category
//! (the admin holds `+@write`, a visitor holds `-@all +ping +xadd`), parses
//! the arguments, logs the step on the console, runs it and replies with
//! the outcome. Kept thin: parsing and reply text are in [`crate::steps`],
//! the syscalls in `attack`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

use valkey_module::{
    raw, valkey_module, Context, Status, ValkeyError, ValkeyResult, ValkeyString, ValkeyValue,
};

use crate::attack;
use crate::steps::{parse_args, STEPS};
use crate::{COMMAND, MARKER, STEP_LINE};

/// Logs `message` verbatim (as a `%s` argument: the text is never a
/// format) at `notice`, which the image's server prints on the console.
fn log(level: &CStr, message: &str) {
    // SAFETY: reading a function pointer the server exported before OnLoad.
    let Some(log) = (unsafe { raw::RedisModule_Log }) else {
        return;
    };
    let Ok(text) = CString::new(message.replace('\0', "?")) else {
        return;
    };
    // SAFETY: a null context is accepted by RedisModule_Log; the format is
    // a constant "%s" with one C string.
    unsafe {
        log(
            std::ptr::null_mut(),
            level.as_ptr(),
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    };
}

fn init(ctx: &Context, args: &[ValkeyString]) -> Status {
    if !args.is_empty() {
        log(
            c"warning",
            "intruder: refusing to load: the module takes no arguments",
        );
        return Status::Err;
    }
    // Module commands belong to no ACL category unless given one, and the
    // admin's rules grant categories, not this command by name.
    let Ok(name) = CString::new(COMMAND) else {
        return Status::Err;
    };
    if ctx.set_acl_category(name.as_ptr(), c"write".as_ptr()) == Status::Err {
        log(
            c"warning",
            "intruder: refusing to load: cannot put INTRUDER.STEP into @write",
        );
        return Status::Err;
    }
    log(
        c"notice",
        &format!(
            "{MARKER}: TEST IMAGE ONLY: {COMMAND} <step> loaded with {} steps (callable by @write users)",
            STEPS.len()
        ),
    );
    Status::Ok
}

fn step(_ctx: &Context, args: Vec<ValkeyString>) -> ValkeyResult {
    let words: Vec<&[u8]> = args.iter().skip(1).map(ValkeyString::as_slice).collect();
    let request = parse_args(&words).map_err(|e| ValkeyError::String(e.to_string()))?;
    let name = request.step.name;
    log(
        c"notice",
        &format!("{STEP_LINE}{name}: {}", request.step.does),
    );
    match attack::perform(&request) {
        Ok(outcome) => {
            let reply = outcome.reply();
            log(c"notice", &format!("{STEP_LINE}{name}: {reply}"));
            Ok(ValkeyValue::SimpleString(reply))
        }
        Err(trouble) => {
            log(
                c"warning",
                &format!("{STEP_LINE}{name}: could not run: {trouble}"),
            );
            Err(ValkeyError::String(format!("intruder: {trouble}")))
        }
    }
}

valkey_module! {
    name: "intruder",
    version: 1,
    allocator: (valkey_module::alloc::ValkeyAlloc, valkey_module::alloc::ValkeyAlloc),
    data_types: [],
    init: init,
    commands: [
        ["intruder.step", step, "write", 0, 0, 0],
    ],
}
