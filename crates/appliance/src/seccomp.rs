//! The governor's end of the server's syscall filter: it receives the
//! filter's notification listener from init, lets init's one `execve` of the
//! server through, and turns every other notified call into a halt (or, on a
//! test image measuring the allowlist, into a console note and a continued
//! call).
//!
//! The decision is [`Decider::decide`], pure and tested; [`SeccompAlarm`]
//! is the `procwatch` alarm that feeds it from the listener.

use std::collections::BTreeSet;

/// What the governor does with notified calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every notified call but init's first `execve` halts the machine.
    Enforce,
    /// TEST IMAGES ONLY (`appliance.test_seccomp=log`): every notified call
    /// is continued, and each distinct call is noted once, so the allowlist
    /// can be measured under the real workload.
    Log,
}

/// The governor's answer to one notified call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it run (init's exec of the server).
    Continue,
    /// Let it run and say so once (log mode).
    ContinueAndNote(String),
    /// Halt the machine; the call never returns.
    Halt(String),
}

/// The facts of a notified call the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The calling task, in the governor's PID namespace.
    pub pid: u32,
    /// The syscall's name (`nr:N` when the table has none).
    pub name: String,
    /// The console description (`pid 1 syscall clone(56) flags=...`).
    pub line: String,
    /// The argument signature noted once in log mode (name plus the
    /// arguments that tell uses apart: flags, families, protections).
    pub signature: String,
}

/// Remembers what one governor has let through.
#[derive(Debug)]
pub struct Decider {
    mode: Mode,
    /// The pid whose first `execve` is init's exec of the server.
    init_pid: u32,
    exec_continued: bool,
    noted: BTreeSet<String>,
}

/// At most this many distinct calls are noted in log mode; past it the
/// governor notes once that it stops noting (the console is not a sink for
/// an unbounded stream).
pub const MAX_NOTES: usize = 512;

impl Decider {
    /// A decider for `mode`; `init_pid` is init's pid (1).
    pub fn new(mode: Mode, init_pid: u32) -> Self {
        Self {
            mode,
            init_pid,
            exec_continued: false,
            noted: BTreeSet::new(),
        }
    }

    /// Whether init's exec of the server has been let through.
    pub fn exec_continued(&self) -> bool {
        self.exec_continued
    }

    /// Decides one call. The first `execve` by init is continued: nothing
    /// but init runs under the filter before it (the filter is installed by
    /// init as its last step), so "first, by that pid" is exact, and the
    /// path behind the pointer is never read (it could change under us).
    pub fn decide(&mut self, call: &Call) -> Decision {
        if !self.exec_continued && call.name == "execve" && call.pid == self.init_pid {
            self.exec_continued = true;
            return Decision::Continue;
        }
        match self.mode {
            Mode::Enforce => Decision::Halt(format!("refused {}", call.line)),
            Mode::Log => {
                if self.noted.contains(&call.signature) {
                    return Decision::Continue;
                }
                if self.noted.len() >= MAX_NOTES {
                    return Decision::Continue;
                }
                self.noted.insert(call.signature.clone());
                if self.noted.len() == MAX_NOTES {
                    return Decision::ContinueAndNote(format!(
                        "would refuse {} (the last one noted: {MAX_NOTES} distinct calls)",
                        call.signature
                    ));
                }
                Decision::ContinueAndNote(format!("would refuse {}", call.signature))
            }
        }
    }
}

#[cfg(target_os = "linux")]
pub use linux::{receive_listener, SeccompAlarm, LISTENER_WAIT};

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::time::Duration;

    use procwatch::{Alarm, AlarmReport};
    use syscall_filter::linux::{recv_fd, Listener, Received, Responded};
    use syscall_filter::{describe_args, Notification, Response};

    use super::{Call, Decider, Decision, Mode};

    /// How long the governor waits for init to hand over the listener.
    /// Init's steps between the fork and the hand-over (the privilege drop,
    /// Landlock, closing descriptors) take milliseconds; a FATAL among them
    /// closes init's end at once. Below softdog's 60 s, since the watchdog
    /// is armed and not petted meanwhile.
    pub const LISTENER_WAIT: Duration = Duration::from_secs(30);

    /// Waits for init to send the filter's listener over `socket`.
    ///
    /// # Errors
    ///
    /// A one-line reason: init closed its end without sending (a FATAL
    /// step after the fork), the wait timed out, or what arrived is not a
    /// seccomp listener.
    pub fn receive_listener(socket: &OwnedFd, wait: Duration) -> Result<Listener, String> {
        let mut pfd = [nix::poll::PollFd::new(
            socket.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        loop {
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)) {
                Ok(0) => {
                    return Err(format!(
                        "init handed over no syscall filter listener within {} s",
                        wait.as_secs()
                    ))
                }
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("waiting for the syscall filter listener: {e}")),
            }
        }
        let fd = recv_fd(socket.as_fd()).map_err(|e| {
            format!("init ended before handing over the syscall filter listener ({e})")
        })?;
        Listener::from_fd(fd).map_err(|e| format!("what init handed over: {e}"))
    }

    /// The signature noted in log mode: the call's name and the arguments
    /// that tell its uses apart (what `describe_args` decodes).
    fn signature(n: &Notification) -> String {
        let mut s = syscall_filter::call_name(&n.data);
        for (name, value) in describe_args(n.data.nr, &n.data.args) {
            s.push(' ');
            s.push_str(name);
            s.push('=');
            s.push_str(&value);
        }
        s
    }

    /// The filter's listener as a `procwatch` alarm.
    pub struct SeccompAlarm {
        listener: Listener,
        decider: Decider,
    }

    impl SeccompAlarm {
        /// Serves `listener` in `mode`; init is pid `init_pid`.
        pub fn new(listener: Listener, mode: Mode, init_pid: u32) -> Self {
            Self {
                listener,
                decider: Decider::new(mode, init_pid),
            }
        }

        /// Serves notifications until init's exec has been let through,
        /// halting on anything else as [`Alarm::read`] would: for the
        /// benchmark's idle governor, which lets the server start before it
        /// watches. Reports are returned for the caller to act on.
        ///
        /// # Errors
        ///
        /// The listener failed or hung up.
        pub fn serve_until_exec(&mut self) -> Result<Vec<AlarmReport>, procwatch::Error> {
            let mut reports = Vec::new();
            while !self.decider.exec_continued() && reports.iter().all(|r: &AlarmReport| !r.halt) {
                self.read(&mut reports)?;
            }
            Ok(reports)
        }
    }

    fn os_error(op: &'static str, e: syscall_filter::Error) -> procwatch::Error {
        procwatch::Error::Os {
            op,
            source: std::io::Error::from_raw_os_error(e.errno().unwrap_or(libc::EIO)),
        }
    }

    impl Alarm for SeccompAlarm {
        fn name(&self) -> &str {
            "seccomp"
        }

        fn as_fd(&self) -> BorrowedFd<'_> {
            self.listener.as_fd()
        }

        fn read(&mut self, out: &mut Vec<AlarmReport>) -> Result<(), procwatch::Error> {
            let n = match self
                .listener
                .recv()
                .map_err(|e| os_error("seccomp notification receive", e))?
            {
                Received::Notification(n) => n,
                // The caller died before we read it: nothing to decide.
                Received::TargetGone => return Ok(()),
            };
            let call = Call {
                pid: n.pid,
                name: syscall_filter::call_name(&n.data),
                line: n.to_string(),
                signature: signature(&n),
            };
            let respond = |listener: &Listener| -> Result<(), procwatch::Error> {
                match listener
                    .respond(n.id, Response::Continue)
                    .map_err(|e| os_error("seccomp notification answer", e))?
                {
                    Responded::Delivered | Responded::TargetGone => Ok(()),
                }
            };
            match self.decider.decide(&call) {
                Decision::Continue => respond(&self.listener),
                Decision::ContinueAndNote(what) => {
                    out.push(AlarmReport {
                        pid: n.pid,
                        what,
                        halt: false,
                    });
                    respond(&self.listener)
                }
                // Never answered: the call stays blocked until power-off.
                Decision::Halt(what) => {
                    out.push(AlarmReport {
                        pid: n.pid,
                        what,
                        halt: true,
                    });
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(pid: u32, name: &str, signature: &str) -> Call {
        Call {
            pid,
            name: name.to_owned(),
            line: format!("pid {pid} syscall {name}(0)"),
            signature: signature.to_owned(),
        }
    }

    #[test]
    fn only_inits_first_exec_goes_through() {
        let mut d = Decider::new(Mode::Enforce, 1);
        // Another pid's exec before init's is no exec of the server.
        assert!(matches!(
            d.decide(&call(7, "execve", "execve")),
            Decision::Halt(_)
        ));
        assert_eq!(d.decide(&call(1, "execve", "execve")), Decision::Continue);
        assert!(d.exec_continued());
        // The server (PID 1 now) exec'ing again halts.
        assert_eq!(
            d.decide(&call(1, "execve", "execve")),
            Decision::Halt("refused pid 1 syscall execve(0)".to_owned())
        );
        assert!(matches!(
            d.decide(&call(1, "io_uring_setup", "io_uring_setup")),
            Decision::Halt(_)
        ));
    }

    #[test]
    fn log_mode_notes_each_signature_once_and_continues() {
        let mut d = Decider::new(Mode::Log, 1);
        assert_eq!(d.decide(&call(1, "execve", "execve")), Decision::Continue);
        assert_eq!(
            d.decide(&call(1, "connect", "connect")),
            Decision::ContinueAndNote("would refuse connect".to_owned())
        );
        assert_eq!(d.decide(&call(5, "connect", "connect")), Decision::Continue);
        assert!(matches!(
            d.decide(&call(1, "socket", "socket family=AF_NETLINK")),
            Decision::ContinueAndNote(_)
        ));
        // A second exec is noted like any call: it is not the one let
        // through by design.
        assert!(matches!(
            d.decide(&call(1, "execve", "execve")),
            Decision::ContinueAndNote(_)
        ));
    }

    #[test]
    fn log_mode_is_bounded() {
        let mut d = Decider::new(Mode::Log, 1);
        let mut notes = 0;
        for i in 0..(MAX_NOTES + 100) {
            let sig = format!("call{i}");
            if let Decision::ContinueAndNote(_) = d.decide(&call(1, "x", &sig)) {
                notes += 1;
            }
        }
        assert_eq!(notes, MAX_NOTES);
    }
}
