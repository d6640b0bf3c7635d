//! Running a program under a notifying filter and recording every call it
//! makes that the filter would refuse.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{
    install, recv_fd, send_fd, sys, sys_retry, InstallFlags, Listener, Readiness, Received,
};
use crate::{compile, Error, Filter, Recorder, Response};

/// How long one wait for a notification lasts before `keep_going` is
/// asked again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Serves `listener` until no process uses its filter any more (or
/// `keep_going` says stop, asked at least every 50 ms): records every
/// notified call in `recorder` and lets it run
/// ([`Response::Continue`]). A call whose thread died meanwhile is
/// recorded and skipped.
pub fn record_and_continue(
    listener: &Listener,
    recorder: &mut Recorder,
    mut keep_going: impl FnMut() -> bool,
) -> Result<(), Error> {
    loop {
        match listener.wait(Some(POLL_INTERVAL))? {
            Readiness::Notification => {
                if let Received::Notification(n) = listener.recv()? {
                    recorder.record(&n);
                    listener.respond(n.id, Response::Continue)?;
                }
            }
            Readiness::Hangup => return Ok(()),
            Readiness::TimedOut => {}
        }
        if !keep_going() {
            return Ok(());
        }
    }
}

/// How a traced program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it (SIGSYS: a `KillProcess` answer).
    Signaled(i32),
}

impl ChildExit {
    fn from_wait_status(status: libc::c_int) -> Self {
        if libc::WIFSIGNALED(status) {
            ChildExit::Signaled(libc::WTERMSIG(status))
        } else {
            ChildExit::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// The outcome of [`run_traced`].
#[derive(Debug)]
pub struct Traced {
    /// Every notified call.
    pub recorder: Recorder,
    /// How the program ended.
    pub exit: ChildExit,
}

/// Exit statuses of the child before `execve`, and what each means.
const CHILD_STEPS: &[(i32, &str)] = &[
    (120, "prctl(PR_SET_PDEATHSIG)"),
    (121, "parent gone before the child started"),
    (122, "prctl(PR_SET_NO_NEW_PRIVS)"),
    (123, "install the filter"),
    (124, "send the listener"),
];
/// The child's status when `execve` itself failed (after the listener was
/// handed over, so the parent sees the attempt in the record).
const EXEC_FAILED: i32 = 127;

/// Runs `path` with `argv` and `envp` under `filter` (made to allow the
/// listener's handoff) and records every call the filter notifies, letting
/// each run. The child sets `PR_SET_PDEATHSIG(SIGKILL)` and `no_new_privs`,
/// installs the filter with a new listener, sends the listener to this
/// process over a socket pair and execs; this process serves the listener
/// until the filter has no user left (the program and anything it forked
/// have exited), then reaps the child.
///
/// To record everything, pass `Filter::new(Action::Notify)`; to check a
/// draft allowlist, pass `draft.with_refusals_as(Action::Notify)`.
pub fn run_traced(
    path: &CStr,
    argv: &[CString],
    envp: &[CString],
    filter: &Filter,
) -> Result<Traced, Error> {
    run_traced_reporting(path, argv, envp, filter, &mut |_| {})
}

/// [`run_traced`], calling `on_new` with the recorder each time a call
/// signature not seen before was recorded: a caller that may be killed
/// before the traced program ends (a test harness stopping a server with
/// SIGKILL) writes what it has so far.
///
/// # Errors
///
/// As [`run_traced`].
pub fn run_traced_reporting(
    path: &CStr,
    argv: &[CString],
    envp: &[CString],
    filter: &Filter,
    on_new: &mut dyn FnMut(&Recorder),
) -> Result<Traced, Error> {
    // A stream pair, close-on-exec.
    let (parent_end, child_end) = UnixStream::pair().map_err(|source| Error::Os {
        op: "socketpair",
        source,
    })?;
    let child_sock = u32::try_from(child_end.as_raw_fd())
        .map_err(|_| Error::FdPassing("negative descriptor"))?;
    // Everything the child needs is made before fork: it may only make
    // async-signal-safe calls afterwards.
    let program = compile(&filter.with_listener_handoff(child_sock))?;
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };

    // SAFETY: the child runs only `child_main`, which makes raw system
    // calls and never returns; the parent continues normally.
    let pid = unsafe { libc::fork() };
    sys(i64::from(pid), "fork")?;
    if pid == 0 {
        child_main(
            parent,
            child_end.as_fd(),
            &program,
            path,
            &argv_ptrs,
            &envp_ptrs,
        );
    }
    drop(child_end);

    let listener = match recv_fd(parent_end.as_fd()).and_then(Listener::from_fd) {
        Ok(l) => l,
        Err(e) => {
            let status = wait(pid, 0)?.unwrap_or(0);
            return match setup_step(status) {
                Some(step) => Err(Error::ChildSetup { step, status }),
                None => Err(e),
            };
        }
    };
    drop(parent_end);

    let mut recorder = Recorder::new();
    let mut status = None;
    loop {
        match listener.wait(Some(POLL_INTERVAL))? {
            Readiness::Notification => {
                if let Received::Notification(n) = listener.recv()? {
                    let before = recorder.signatures();
                    recorder.record(&n);
                    listener.respond(n.id, Response::Continue)?;
                    if recorder.signatures() > before {
                        on_new(&recorder);
                    }
                }
            }
            Readiness::Hangup => break,
            Readiness::TimedOut => {}
        }
        if status.is_none() {
            status = wait(pid, libc::WNOHANG)?;
        }
    }
    let status = match status {
        Some(s) => s,
        None => wait(pid, 0)?.unwrap_or(0),
    };
    Ok(Traced {
        recorder,
        exit: ChildExit::from_wait_status(status),
    })
}

fn setup_step(status: libc::c_int) -> Option<&'static str> {
    if !libc::WIFEXITED(status) {
        return None;
    }
    let code = libc::WEXITSTATUS(status);
    CHILD_STEPS
        .iter()
        .find(|&&(c, _)| c == code)
        .map(|&(_, step)| step)
}

/// `waitpid`; `None` when WNOHANG found the child still running.
fn wait(pid: libc::pid_t, options: libc::c_int) -> Result<Option<libc::c_int>, Error> {
    let mut status = 0;
    let ret = sys_retry("waitpid(traced child)", || {
        // SAFETY: waitpid writes the status through a valid pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, options) };
        i64::from(ret)
    })?;
    Ok((ret != 0).then_some(status))
}

/// The child between `fork` and `execve`: raw, async-signal-safe calls and
/// no allocation.
fn child_main(
    parent: libc::pid_t,
    sock: std::os::fd::BorrowedFd<'_>,
    program: &crate::Program,
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    let exit = |code: i32| -> ! {
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(code) }
    };
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        exit(120);
    }
    // The parent may have died before PDEATHSIG was armed.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        exit(121);
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        exit(122);
    }
    let listener = match install(
        program,
        InstallFlags {
            new_listener: true,
            ..InstallFlags::default()
        },
    ) {
        Ok(Some(l)) => l,
        _ => exit(123),
    };
    if send_fd(sock, listener.as_fd()).is_err() {
        exit(124);
    }
    // The listener and the socket are close-on-exec: no `close` needed.
    // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings and
    // null-terminated pointer arrays that live until the call; on success
    // execve does not return.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    exit(EXEC_FAILED)
}
