//! The Valkey glue: load arguments -> [`GuardConfig`], and a command filter that
//! asks [`judge`] about every command and renames refused ones. Kept thin: every
//! decision is in [`crate::policy`].
#![allow(unsafe_code)]

use crate::policy::{judge, GuardConfig, Verdict};
use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use valkey_module::{
    raw, valkey_module, CommandFilterCtx, Context, RedisModuleCommandFilterCtx, Status,
    ValkeyString, VALKEYMODULE_CMDFILTER_NOSELF,
};

static CONFIG: std::sync::OnceLock<GuardConfig> = std::sync::OnceLock::new();

/// A detached context, only used to look up a client's user name from inside
/// the filter (which runs on the main thread and gets no context of its own).
static LOOKUP_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(ptr::null_mut());

fn preload(ctx: &Context, args: &[ValkeyString]) -> Status {
    let args: Vec<&[u8]> = args.iter().map(ValkeyString::as_slice).collect();
    match GuardConfig::from_args(&args) {
        Ok(config) => {
            ctx.log_notice(&format!(
                "stream-guard: guarding {} append-only user(s), at most {} pairs and {} bytes per XADD",
                config.users.len(),
                config.max_pairs,
                config.max_bytes
            ));
            // A second load in the same process keeps the first configuration.
            let _ = CONFIG.set(config);
            Status::Ok
        }
        Err(err) => {
            ctx.log_warning(&format!("stream-guard: refusing to load: {err}"));
            Status::Err
        }
    }
}

fn init(ctx: &Context, _args: &[ValkeyString]) -> Status {
    // SAFETY: reading a function pointer the server exported before OnLoad.
    let Some(get_detached) = (unsafe { raw::RedisModule_GetDetachedThreadSafeContext }) else {
        ctx.log_warning("stream-guard: the server lacks GetDetachedThreadSafeContext");
        return Status::Err;
    };
    // SAFETY: `ctx.ctx` is the live module context handed to OnLoad; the
    // detached context it returns lives as long as the module.
    let detached = unsafe { get_detached(ctx.ctx) };
    if detached.is_null() {
        return Status::Err;
    }
    LOOKUP_CTX.store(detached, Ordering::Release);
    Status::Ok
}

/// The argument at `pos` as bytes, valid while the filter runs.
fn arg<'a>(filter: &CommandFilterCtx, pos: c_int) -> &'a [u8] {
    let s = filter.arg_get(pos);
    if s.is_null() {
        return &[];
    }
    ValkeyString::string_as_slice(s)
}

/// The ACL user name of client `id`, or `None` for clients without one.
fn with_user_name<R>(id: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    let ctx = LOOKUP_CTX.load(Ordering::Acquire);
    // SAFETY: reading the server's exported function pointers, set before OnLoad.
    let (lookup, free) = unsafe {
        (
            raw::RedisModule_GetClientUserNameById,
            raw::RedisModule_FreeString,
        )
    };
    let (Some(lookup), Some(free)) = (lookup, free) else {
        return f(None);
    };
    if ctx.is_null() {
        return f(None);
    }
    // SAFETY: `ctx` is our detached context; the filter runs on the main thread,
    // where client lookups are allowed. The returned string is ours to free.
    let name = unsafe { lookup(ctx, id) };
    if name.is_null() {
        return f(None);
    }
    let result = f(Some(ValkeyString::string_as_slice(name)));
    // SAFETY: `name` came from the lookup above with the same context and is not
    // used after this point.
    unsafe { free(ctx, name) };
    result
}

fn guard_filter(raw_ctx: *mut RedisModuleCommandFilterCtx) {
    let filter = CommandFilterCtx::new(raw_ctx);
    let argc = filter.args_count();
    if argc < 1 || !arg(&filter, 0).eq_ignore_ascii_case(b"xadd") {
        return;
    }
    // Without a configuration every append-only decision would be a guess: a
    // module that failed preload is never loaded, so this is unreachable in
    // practice, but refusing nothing here would be failing open.
    let Some(config) = CONFIG.get() else {
        return;
    };
    let argv: Vec<&[u8]> = (0..argc).map(|i| arg(&filter, i)).collect();
    let verdict = with_user_name(filter.get_client_id(), |user| judge(config, user, &argv));
    if let Verdict::Refuse(refusal) = verdict {
        // Drop every argument so nothing of the visitor's is echoed back, then
        // rename the command: the server answers "unknown command" and runs
        // nothing.
        for pos in (1..argc).rev() {
            filter.arg_delete(pos);
        }
        filter.arg_replace(0, &refusal.command_name());
    }
}

valkey_module! {
    name: "stream-guard",
    version: 1,
    allocator: (valkey_module::alloc::ValkeyAlloc, valkey_module::alloc::ValkeyAlloc),
    data_types: [],
    preload: preload,
    init: init,
    commands: [],
    filters: [
        [guard_filter, VALKEYMODULE_CMDFILTER_NOSELF]
    ],
}
