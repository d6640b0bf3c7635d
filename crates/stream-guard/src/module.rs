//! The Valkey glue: load arguments -> [`GuardConfig`]; a command filter that
//! asks [`judge_under`] about every command and renames refused ones; an AUTH
//! callback that asks the throttle; server events that feed the throttle and
//! the connection table; and a timer that samples the disk and memory and
//! sweeps connections. Kept thin: every decision is in the pure modules.
//!
//! Locking: all callbacks run on the server's main thread. The state lock is
//! never held while calling into the server (`CLIENT KILL` fires the
//! disconnect event synchronously, which takes the lock).
#![allow(unsafe_code)]

use crate::clients::{sweep, Auth, Candidate, ClientTable, CloseCounter, SweepLimits};
use crate::disk::aof_bytes;
use crate::policy::{judge, judge_under, GuardConfig, Verdict};
use crate::space::{xadd_cost, DiskSample, MemorySample, SpaceGuard};
use crate::throttle::{AuthThrottle, Source, REFUSED_MESSAGE};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use valkey_module::{
    raw, valkey_module, CommandFilterCtx, Context, RedisModuleCommandFilterCtx, Status,
    ValkeyString, VALKEYMODULE_CMDFILTER_NOSELF,
};

/// The timer's period. Each tick costs a `statvfs`, a listing of the AOF
/// directory (a handful of files), two INFO sections and one look-up per
/// connection (at most `maxclients`): tens of microseconds on the main
/// thread, so four a second is negligible. Between ticks the filter counts
/// every admitted write against the last sample, so the period bounds only
/// how late the admin's freed space is noticed and how late a timed-out
/// connection is closed (by at most 250 ms), not how far the reserve can be
/// spent.
const TICK: Duration = Duration::from_millis(250);

static CONFIG: std::sync::OnceLock<GuardConfig> = std::sync::OnceLock::new();
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
static STATE: Mutex<Option<State>> = Mutex::new(None);
/// A one-shot sweep is armed (a connect came in at the admin's line).
static SWEEP_ARMED: AtomicBool = AtomicBool::new(false);
/// The server's `maxclients` as last read (at load and every tick), so the
/// connect event need not ask the server.
static MAXCLIENTS: AtomicU64 = AtomicU64::new(0);

/// A detached context, used to look up a client's user name and to log from
/// callbacks that get no context of their own (the filter).
static LOOKUP_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(ptr::null_mut());

struct State {
    space: SpaceGuard,
    throttle: AuthThrottle,
    clients: ClientTable,
    closes: CloseCounter,
}

fn state() -> MutexGuard<'static, Option<State>> {
    // A poisoned lock only means an earlier callback panicked; the state is
    // plain counters and stays usable (and panic = "abort" in release).
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Logs `message` verbatim (as a `%s` argument: the text is never a format).
fn log(level: &CStr, message: &str) {
    // SAFETY: reading a function pointer the server exported before OnLoad.
    let Some(log) = (unsafe { raw::RedisModule_Log }) else {
        return;
    };
    let Ok(text) = CString::new(message.replace('\0', "?")) else {
        return;
    };
    let ctx = LOOKUP_CTX.load(Ordering::Acquire);
    // SAFETY: `ctx` is null or our detached context; both are accepted by
    // RedisModule_Log. The format is a constant "%s" with one C string.
    unsafe { log(ctx, level.as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
}

fn notice(message: &str) {
    log(c"notice", message);
}

fn warning(message: &str) {
    log(c"warning", message);
}

fn preload(_ctx: &Context, args: &[ValkeyString]) -> Status {
    let args: Vec<&[u8]> = args.iter().map(ValkeyString::as_slice).collect();
    match GuardConfig::from_args(&args) {
        Ok(config) => {
            notice(&format!(
                "stream-guard: guarding {} append-only user(s), at most {} pairs and {} bytes per XADD; \
                 disk reserve {} bytes, memory refusal above {}%; at most {} failed AUTHs per minute per \
                 source over {} sources; auth timeout {} s, command timeout {} s, {} slots kept for the admin",
                config.users.len(),
                config.max_pairs,
                config.max_bytes,
                config.disk_reserve,
                config.memory_refuse_percent,
                config.auth_failures_per_minute,
                config.auth_sources,
                config.auth_timeout,
                config.command_timeout,
                config.admin_reserved_slots,
            ));
            // A second load in the same process keeps the first configuration.
            let _ = CONFIG.set(config);
            Status::Ok
        }
        Err(err) => {
            warning(&format!("stream-guard: refusing to load: {err}"));
            Status::Err
        }
    }
}

/// The server's event ids this module subscribes to.
const EVENT_CLIENT_CHANGE: u64 = 4;
/// `VALKEYMODULE_EVENT_AUTHENTICATION_ATTEMPT` (Valkey 9.1), absent from the
/// crate's bundled header.
const EVENT_AUTHENTICATION_ATTEMPT: u64 = 18;
const SUBEVENT_CLIENT_CONNECTED: u64 = 0;
/// `VALKEYMODULE_AUTH_RESULT_DENIED`.
const AUTH_RESULT_DENIED: c_int = 1;
const AUTH_HANDLED: c_int = 0;
/// `VALKEYMODULE_OK` as the API's functions return it.
const MODULE_OK: c_int = 0;
const AUTH_NOT_HANDLED: c_int = 1;
/// `VALKEYMODULE_CLIENTINFO_FLAG_UNIXSOCKET`.
const FLAG_UNIXSOCKET: u64 = 1 << 4;
/// `VALKEYMODULE_CLIENTINFO_FLAG_AUTHENTICATED` (Valkey 9.1).
const FLAG_AUTHENTICATED: u64 = 1 << 11;

/// `ValkeyModuleAuthenticationInfoV1`.
#[repr(C)]
struct AuthenticationInfo {
    version: u64,
    client_id: u64,
    username: *const c_char,
    module_name: *const c_char,
    result: c_int,
}

fn init(ctx: &Context, _args: &[ValkeyString]) -> Status {
    let Some(config) = CONFIG.get() else {
        return Status::Err;
    };
    // SAFETY: reading function pointers the server exported before OnLoad.
    let (get_detached, subscribe, register_auth) = unsafe {
        (
            raw::RedisModule_GetDetachedThreadSafeContext,
            raw::RedisModule_SubscribeToServerEvent,
            raw::RedisModule_RegisterAuthCallback,
        )
    };
    let (Some(get_detached), Some(subscribe), Some(register_auth)) =
        (get_detached, subscribe, register_auth)
    else {
        warning("stream-guard: the server lacks a module API the guard needs");
        return Status::Err;
    };
    // SAFETY: `ctx.ctx` is the live module context handed to OnLoad; the
    // detached context it returns lives as long as the module.
    let detached = unsafe { get_detached(ctx.ctx) };
    if detached.is_null() {
        return Status::Err;
    }
    LOOKUP_CTX.store(detached, Ordering::Release);
    START.get_or_init(Instant::now);

    *state() = Some(State {
        space: SpaceGuard::new(config.disk_reserve, config.memory_refuse_percent),
        throttle: AuthThrottle::new(config.auth_failures_per_minute, config.auth_sources),
        clients: ClientTable::new(),
        closes: CloseCounter::new(u64::from(config.admin_reserved_slots)),
    });

    let events: [(u64, raw::RedisModuleEventCallback); 2] = [
        (EVENT_CLIENT_CHANGE, Some(client_change)),
        (EVENT_AUTHENTICATION_ATTEMPT, Some(authentication_attempt)),
    ];
    for (id, callback) in events {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: the live OnLoad context, a valid event and a callback of
        // the server's callback type.
        if unsafe { subscribe(ctx.ctx, event, callback) } != MODULE_OK {
            warning(&format!(
                "stream-guard: cannot subscribe to server event {id}"
            ));
            return Status::Err;
        }
    }
    // SAFETY: the live OnLoad context and a callback of the server's type.
    unsafe { register_auth(ctx.ctx, Some(auth_callback)) };

    // The first sample before the server serves anyone.
    sample_space();
    read_maxclients();
    ctx.create_timer(TICK, tick, ());
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
    // SAFETY: `ctx` is our detached context; callers run on the main thread,
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

/// The client's info (flags, address), if it is still connected.
fn client_info(id: u64) -> Option<raw::RedisModuleClientInfo> {
    // SAFETY: reading a function pointer the server exported before OnLoad.
    let lookup = unsafe { raw::RedisModule_GetClientInfoById }?;
    let mut info = raw::RedisModuleClientInfo {
        version: 1,
        flags: 0,
        id: 0,
        addr: [0; 46],
        port: 0,
        db: 0,
    };
    // SAFETY: `info` is a V1 client-info struct with its version set, as the
    // API requires; it is written in place and outlives the call.
    let status = unsafe { lookup(ptr::addr_of_mut!(info).cast::<c_void>(), id) };
    (status == MODULE_OK).then_some(info)
}

fn source_of(info: &raw::RedisModuleClientInfo) -> Source {
    // The server NUL-terminates `addr`; reading stops at the array's end
    // regardless.
    let bytes: Vec<u8> = info
        .addr
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| c.to_ne_bytes()[0])
        .collect();
    let addr = String::from_utf8_lossy(&bytes);
    Source::from_addr(&addr, info.flags & FLAG_UNIXSOCKET != 0)
}

fn guard_filter(raw_ctx: *mut RedisModuleCommandFilterCtx) {
    let filter = CommandFilterCtx::new(raw_ctx);
    let id = filter.get_client_id();
    let now = now_ms();
    let argc = filter.args_count();
    let is_xadd = argc >= 1 && arg(&filter, 0).eq_ignore_ascii_case(b"xadd");
    if !is_xadd {
        if let Some(s) = state().as_mut() {
            s.clients.command(id, now);
        }
        return;
    }
    // Without a configuration every append-only decision would be a guess: a
    // module that failed preload is never loaded, so this is unreachable in
    // practice, but refusing nothing here would be failing open.
    let Some(config) = CONFIG.get() else {
        return;
    };
    let argv: Vec<&[u8]> = (0..argc).map(|i| arg(&filter, i)).collect();
    let user: Option<Vec<u8>> = with_user_name(id, |u| u.map(<[u8]>::to_vec));
    let user = user.as_deref();
    let mut changes = Vec::new();
    let mut verdict = judge(config, user, &argv);
    {
        let mut guard = state();
        let Some(s) = guard.as_mut() else {
            return;
        };
        s.clients.command(id, now);
        // Only a well-formed visitor XADD costs space; the admin never asks.
        if verdict == Verdict::Pass && user.is_some_and(|u| config.is_append_only(u)) {
            let (admitted, started) = s.space.admit(xadd_cost(&argv));
            changes = started;
            if let Err(refusal) = admitted {
                verdict = judge_under(config, Some(refusal), user, &argv);
            }
        }
    }
    for change in changes {
        notice(&change.log_line());
    }
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

/// Denies an AUTH (or HELLO ... AUTH) at once when its source is over its
/// failure budget; otherwise leaves the check to the server. The password is
/// never read.
unsafe extern "C" fn auth_callback(
    ctx: *mut raw::RedisModuleCtx,
    _username: *mut raw::RedisModuleString,
    _password: *mut raw::RedisModuleString,
    err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: reading function pointers the server exported before OnLoad.
    let (get_id, create) = unsafe { (raw::RedisModule_GetClientId, raw::RedisModule_CreateString) };
    let (Some(get_id), Some(create)) = (get_id, create) else {
        return AUTH_NOT_HANDLED;
    };
    // SAFETY: `ctx` is the context the server made for this callback; it
    // carries the authenticating client.
    let id = unsafe { get_id(ctx) };
    // A client the server cannot describe is metered as the shared local
    // source rather than not at all.
    let source = client_info(id).map_or(Source::Local, |info| source_of(&info));
    let now = now_ms();
    let allowed = state()
        .as_mut()
        .is_none_or(|s| s.throttle.allows(source, now));
    if allowed {
        return AUTH_NOT_HANDLED;
    }
    if !err.is_null() {
        // SAFETY: a string created without a context is not auto-freed; the
        // server takes it and frees it after replying. `err` is the server's
        // out-pointer for this call.
        unsafe {
            *err = create(
                ptr::null_mut(),
                REFUSED_MESSAGE.as_ptr().cast::<c_char>(),
                REFUSED_MESSAGE.len(),
            )
        };
    }
    AUTH_HANDLED
}

/// Counts the server's own AUTH verdicts: a failure decided by the server
/// (not by this module's throttle) drains the source's bucket.
unsafe extern "C" fn authentication_attempt(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: for this event the server passes a ValkeyModuleAuthenticationInfo
    // (version first); we read it only when it is at least V1.
    let info = unsafe { &*data.cast::<AuthenticationInfo>() };
    if info.version < 1 || info.result != AUTH_RESULT_DENIED || !info.module_name.is_null() {
        return;
    }
    let source = client_info(info.client_id).map_or(Source::Local, |i| source_of(&i));
    let now = now_ms();
    if let Some(s) = state().as_mut() {
        s.throttle.failed(source, now);
    }
}

unsafe extern "C" fn client_change(
    ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: for this event the server passes a ValkeyModuleClientInfo V1.
    let info = unsafe { &*data.cast::<raw::RedisModuleClientInfo>() };
    let now = now_ms();
    let at_line = {
        let mut guard = state();
        let Some(s) = guard.as_mut() else {
            return;
        };
        if subevent == SUBEVENT_CLIENT_CONNECTED {
            s.clients.connected(info.id, now);
            let reserved = CONFIG
                .get()
                .map_or(0, |c| u64::from(c.admin_reserved_slots));
            let connected = u64::try_from(s.clients.len()).unwrap_or(u64::MAX);
            connected >= MAXCLIENTS.load(Ordering::Acquire).saturating_sub(reserved)
        } else {
            s.clients.disconnected(info.id);
            false
        }
    };
    // At the admin's line, sweep now rather than at the next tick, so a
    // flood cannot take the reserved slots between two ticks.
    if at_line && !ctx.is_null() && !SWEEP_ARMED.swap(true, Ordering::AcqRel) {
        Context::new(ctx).create_timer(Duration::ZERO, sweep_now, ());
    }
}

/// Unsigned fields of one INFO section, all or nothing.
fn info_u64(section: &CStr, fields: &[&CStr]) -> Option<Vec<u64>> {
    // SAFETY: reading function pointers the server exported before OnLoad.
    let (get, field, free) = unsafe {
        (
            raw::RedisModule_GetServerInfo,
            raw::RedisModule_ServerInfoGetFieldUnsigned,
            raw::RedisModule_FreeServerInfo,
        )
    };
    let (get, field, free) = (get?, field?, free?);
    // SAFETY: a null context is allowed for GetServerInfo/FreeServerInfo;
    // `data` is freed below and not used after.
    let data = unsafe { get(ptr::null_mut(), section.as_ptr()) };
    if data.is_null() {
        return None;
    }
    let values: Option<Vec<u64>> = fields
        .iter()
        .map(|name| {
            let mut err: c_int = 0;
            // SAFETY: `data` is live; `err` is a valid out-pointer.
            let v = unsafe { field(data, name.as_ptr(), &mut err) };
            (err == 0).then_some(v)
        })
        .collect();
    // SAFETY: `data` came from GetServerInfo above with a null context.
    unsafe { free(ptr::null_mut(), data) };
    values
}

fn statvfs_free(dir: &Path) -> Result<u64, String> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn data_dir(config: &GuardConfig) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(&config.data_dir))
}

fn sample_space() {
    let Some(config) = CONFIG.get() else {
        return;
    };
    let dir = data_dir(config);
    let disk = statvfs_free(&dir).and_then(|free_bytes| {
        aof_bytes(&dir).map(|aof_bytes| DiskSample {
            free_bytes,
            aof_bytes,
        })
    });
    let memory = info_u64(c"memory", &[c"used_memory", c"maxmemory"]).and_then(|v| match v[..] {
        [used_bytes, max_bytes] => Some(MemorySample {
            used_bytes,
            max_bytes,
        }),
        _ => None,
    });
    let changes = state()
        .as_mut()
        .map(|s| s.space.sample(disk, memory))
        .unwrap_or_default();
    for change in changes {
        notice(&change.log_line());
    }
}

fn sweep_connections(ctx: &Context) {
    let Some(config) = CONFIG.get() else {
        return;
    };
    let now = now_ms();
    let (tracked, overflow) = match state().as_mut() {
        Some(s) => (
            s.clients.iter().collect::<Vec<_>>(),
            s.clients.take_overflow(),
        ),
        None => return,
    };
    let candidates: Vec<Candidate> = tracked
        .into_iter()
        .filter_map(|(id, tracked)| {
            let info = client_info(id)?;
            let auth = if info.flags & FLAG_AUTHENTICATED == 0 {
                Auth::None
            } else if with_user_name(id, |u| u == Some(config.admin.as_slice())) {
                Auth::Admin
            } else {
                Auth::Other
            };
            Some(Candidate { id, tracked, auth })
        })
        .collect();
    let maxclients = read_maxclients();
    let limits = SweepLimits {
        auth_timeout_ms: u64::from(config.auth_timeout).saturating_mul(1000),
        command_timeout_ms: u64::from(config.command_timeout).saturating_mul(1000),
        reserved: u64::from(config.admin_reserved_slots),
    };
    let closing = sweep(&limits, now, maxclients, &candidates);
    for id in overflow {
        kill(ctx, id);
    }
    for (id, _) in &closing {
        kill(ctx, *id);
    }
    let report = state().as_mut().and_then(|s| {
        for (_, reason) in &closing {
            s.closes.closed(*reason, now);
        }
        s.closes.report(now)
    });
    if let Some(report) = report {
        notice(&report.log_line());
    }
}

/// The server's `maxclients`, remembered for the connect event; 0 (every
/// non-admin connection is over the line) if the server does not say, so a
/// failed read closes connections rather than leaving the admin out.
fn read_maxclients() -> u64 {
    let maxclients = info_u64(c"clients", &[c"maxclients"])
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    MAXCLIENTS.store(maxclients, Ordering::Release);
    maxclients
}

fn kill(ctx: &Context, id: u64) {
    let id = id.to_string();
    if let Err(e) = ctx.call("CLIENT", &["KILL", "ID", id.as_str()][..]) {
        warning(&format!("stream-guard: cannot close connection {id}: {e}"));
    }
}

fn tick(ctx: &Context, (): ()) {
    // Re-armed first, so nothing below can stop the guard's clock.
    ctx.create_timer(TICK, tick, ());
    sample_space();
    let now = now_ms();
    let report = state().as_mut().and_then(|s| {
        s.throttle.prune(now);
        s.throttle.report(now)
    });
    if let Some(report) = report {
        notice(&report.log_line());
    }
    sweep_connections(ctx);
}

fn sweep_now(ctx: &Context, (): ()) {
    SWEEP_ARMED.store(false, Ordering::Release);
    sweep_connections(ctx);
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
