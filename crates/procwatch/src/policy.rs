//! The policy as plain data, and the pure rules that turn a process (and
//! what the engine knows of its history) into a [`Decision`].
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{ProcInfo, Unreadable};
use crate::render::escape_bytes;

/// The verdict on one process or event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Expected; nothing to say.
    Allow,
    /// Expected but worth a console line (a server fork, for instance).
    AllowLogged(Reason),
    /// Not allowed: the enforcer halts the machine.
    Halt(Reason),
}

impl Decision {
    /// Whether this decision halts the machine.
    pub fn is_halt(&self) -> bool {
        matches!(self, Decision::Halt(_))
    }
}

/// Why a decision was taken; rendered on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A child allowed by the named [`ChildRule`].
    AllowedChild {
        /// The rule's label.
        rule: String,
    },
    /// A process never seen alive that has exited (a zombie, or a task
    /// exiting whose memory is gone): it runs no code, so it is only noted.
    Zombie,
    /// No rule allows this process.
    Unlisted,
    /// A process never read completely, alive, still unreadable after the
    /// engine's bounded re-reads: what it is cannot be known.
    Unreadable(Unreadable),
    /// The root process does not run the declared executable or uid.
    RootMismatch,
    /// A process called `execve` after the seal.
    ExecAfterSeal,
    /// A process executed since it was forked, so it is no plain fork.
    ExecutedSinceFork,
    /// A process changed uid after the seal.
    UidChange {
        /// Real uid before.
        from_uid: u32,
        /// Effective uid before.
        from_euid: u32,
        /// Real uid after.
        to_uid: u32,
        /// Effective uid after.
        to_euid: u32,
    },
    /// A tracer attached to a process after the seal.
    PtraceAttach {
        /// The traced process.
        traced: u32,
        /// The tracing process.
        tracer: u32,
    },
    /// The event source lost events and the policy says halt.
    EventsLost,
    /// More live processes matched a [`ChildRule`] than its
    /// [`ChildRule::max_alive`]: the one named is the newest.
    TooManyChildren {
        /// The rule's label.
        rule: String,
        /// How many were alive, the newcomer included.
        alive: u32,
        /// The rule's bound.
        max: u32,
    },
    /// A live process matching a [`ChildRule`] has lived longer than its
    /// [`ChildRule::max_lifetime`].
    ChildTooOld {
        /// The rule's label.
        rule: String,
        /// How long it had lived when judged.
        age: Duration,
        /// The rule's bound.
        max: Duration,
    },
    /// An [`Alarm`](crate::Alarm) reported something (a kernel mechanism
    /// beside the process table fired).
    Alarm {
        /// The alarm's name.
        source: String,
        /// What it reported.
        what: String,
    },
}

/// Seconds for a console line: whole seconds as an integer, anything else
/// to the millisecond.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.3}", d.as_secs_f64())
    }
}

/// Text an alarm supplied, escaped like a process field, and with `[`
/// escaped too: the line's reason ends at the first ` [`.
fn escape_reason(text: &str) -> String {
    escape_bytes(text.as_bytes(), false).replace('[', "\\x5b")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::AllowedChild { rule } => write!(f, "allowed child ({rule})"),
            Reason::Zombie => f.write_str("exited (zombie or exiting) before seen alive"),
            Reason::Unlisted => f.write_str("process not allowed by policy"),
            Reason::Unreadable(what) => {
                write!(f, "unknown process ({what} unreadable)")
            }
            Reason::RootMismatch => f.write_str("root process is not the declared server"),
            Reason::ExecAfterSeal => f.write_str("exec after seal"),
            Reason::ExecutedSinceFork => f.write_str("child executed a new image"),
            Reason::UidChange {
                from_uid,
                from_euid,
                to_uid,
                to_euid,
            } => write!(
                f,
                "uid change after seal ({from_uid}/{from_euid} -> {to_uid}/{to_euid})"
            ),
            Reason::PtraceAttach { traced, tracer } => {
                write!(
                    f,
                    "ptrace attach after seal (pid {tracer} traces pid {traced})"
                )
            }
            Reason::EventsLost => f.write_str("process events lost"),
            Reason::TooManyChildren { rule, alive, max } => write!(
                f,
                "too many children of rule \"{}\": {alive} alive, at most {max}",
                escape_reason(rule)
            ),
            Reason::ChildTooOld { rule, age, max } => write!(
                f,
                "child of rule \"{}\" older than {} s: alive {} s",
                escape_reason(rule),
                seconds(*max),
                seconds(Duration::from_millis(
                    u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
                ))
            ),
            Reason::Alarm { source, what } => write!(
                f,
                "alarm from {}: {}",
                escape_reason(source),
                escape_reason(what)
            ),
        }
    }
}

/// What to do when the event source reports lost events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEventLoss {
    /// Halt the machine (fail closed).
    Halt,
    /// Rescan the full process table and carry on.
    Rescan,
}

/// When enforcement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealOn {
    /// When the root process is seen running [`RootRule::exe`] (it execs the
    /// server). Before that, processes are tracked but not judged.
    RootExec,
    /// From the first snapshot on.
    Start,
}

/// Which processes the policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every process on the machine (an appliance).
    Machine,
    /// The given process and its descendants (tests; watching one service on
    /// a general-purpose host).
    Descendants(u32),
}

/// The process everything else hangs off (PID 1 on an appliance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRule {
    /// Its pid.
    pub pid: u32,
    /// The executable it must run once sealed.
    pub exe: PathBuf,
    /// The real and effective uid it must run as once sealed.
    pub uid: u32,
}

/// A kind of allowed child: a plain fork (no exec) of the root or of another
/// allowed child, running the given executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRule {
    /// Names the rule in log lines ("bgsave/aof-rewrite fork").
    pub label: String,
    /// The executable the child runs (it is a fork, so the parent's).
    pub exe: PathBuf,
    /// The uids the child may run as (real and effective) when forked.
    pub uids: Vec<u32>,
    /// The uids it may then switch to, once, with setuid (an nginx worker
    /// dropping root); empty for none. A switch away from these halts.
    pub setuid_to: Vec<u32>,
    /// Whether the child may itself have children matching the rules (a
    /// grandchild of the root); otherwise its parent must be the root.
    pub nested: bool,
    /// Whether an allowed child gets a console line.
    pub log: bool,
    /// At most this many live processes matching this rule at once; one
    /// more halts (naming the newest). A process that has exited (a
    /// zombie, or one exiting) is not alive. `None`: no bound.
    pub max_alive: Option<u32>,
    /// A live process matching this rule that has lived longer than this
    /// halts. Its age is measured from its start time in the process
    /// table, so a child first seen late is judged by its real age.
    /// `None`: no bound.
    pub max_lifetime: Option<Duration>,
}

impl ChildRule {
    /// Whether a child of this rule that has lived `age` is past its
    /// [`ChildRule::max_lifetime`] (an unknown age never is).
    pub fn is_too_old(&self, age: Option<Duration>) -> bool {
        matches!((age, self.max_lifetime), (Some(age), Some(max)) if age > max)
    }
}

/// What halts once sealed, beside processes no rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRules {
    /// Any `execve` anywhere halts.
    pub halt_on_exec: bool,
    /// Any uid change of a process other than the governor halts, unless it
    /// moves a child to one of its rule's `setuid_to` uids.
    pub halt_on_uid_change: bool,
    /// Any ptrace attach halts.
    pub halt_on_ptrace_attach: bool,
}

/// The whole policy: plain data, built by the caller (from a spec file, a
/// config, a test table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The root process.
    pub root: RootRule,
    /// The governor's own pid: always allowed.
    pub governor_pid: Option<u32>,
    /// Whether kernel threads (`PF_KTHREAD`) are allowed.
    pub allow_kernel_threads: bool,
    /// Allowed children.
    pub children: Vec<ChildRule>,
    /// Extra halts once sealed.
    pub sealed: SealedRules,
    /// When enforcement starts.
    pub seal_on: SealOn,
    /// What lost events do (after the seal; before it they always rescan).
    pub on_event_loss: OnEventLoss,
    /// Interval of the full rescan beside the event stream.
    pub rescan_interval: Duration,
    /// Which processes are covered.
    pub scope: Scope,
}

/// What the engine knows of a process beyond its current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// `execve` calls seen since the engine first saw the process.
    pub execs: u32,
    /// How long the process has lived, when the engine measured it (it
    /// does for processes a rule with a [`ChildRule::max_lifetime`] may
    /// match).
    pub age: Option<Duration>,
}

/// Default rescan interval (the seed's poll interval).
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_millis(500);

impl Policy {
    /// The single-server appliance of design §5: the root (PID 1) runs
    /// `server_exe` as `server_uid` once sealed; the governor; kernel
    /// threads; plain forks of the server (BGSAVE, AOF rewrite) allowed and
    /// logged, one at a time (a server such as Valkey runs at most one
    /// such child), with no lifetime bound (the caller sets
    /// [`ChildRule::max_lifetime`] if it knows one); after the seal any
    /// exec, uid change or ptrace attach halts.
    pub fn single_server(
        server_exe: impl Into<PathBuf>,
        server_uid: u32,
        governor_pid: u32,
        on_event_loss: OnEventLoss,
        rescan_interval: Duration,
    ) -> Self {
        let server_exe = server_exe.into();
        Self {
            root: RootRule {
                pid: 1,
                exe: server_exe.clone(),
                uid: server_uid,
            },
            governor_pid: Some(governor_pid),
            allow_kernel_threads: true,
            children: vec![ChildRule {
                label: "server fork (BGSAVE/AOF rewrite)".to_owned(),
                exe: server_exe,
                uids: vec![server_uid],
                setuid_to: Vec::new(),
                nested: false,
                log: true,
                max_alive: Some(1),
                max_lifetime: None,
            }],
            sealed: SealedRules {
                halt_on_exec: true,
                halt_on_uid_change: true,
                halt_on_ptrace_attach: true,
            },
            seal_on: SealOn::RootExec,
            on_event_loss,
            rescan_interval,
            scope: Scope::Machine,
        }
    }

    /// Whether `p` is the root process running what it must once sealed.
    pub fn is_sealed_root(&self, p: &ProcInfo) -> bool {
        p.pid == self.root.pid
            && p.exe.as_deref() == Some(self.root.exe.as_path())
            && p.uid == self.root.uid
            && p.euid == self.root.uid
    }

    /// Judges a process's current state after the seal. `parent_allowed_child`
    /// tells whether the parent is itself an allowed child (for nested rules).
    pub fn judge_process(
        &self,
        p: &ProcInfo,
        history: History,
        parent_allowed_child: bool,
    ) -> Decision {
        if self.governor_pid == Some(p.pid) {
            return Decision::Allow;
        }
        if p.kernel_thread && self.allow_kernel_threads {
            return Decision::Allow;
        }
        if p.pid == self.root.pid {
            return if self.is_sealed_root(p) {
                Decision::Allow
            } else {
                Decision::Halt(Reason::RootMismatch)
            };
        }
        if p.zombie && p.exe.is_none() {
            return Decision::AllowLogged(Reason::Zombie);
        }
        match self.matching_child(p, parent_allowed_child) {
            Some(_) if history.execs > 0 => Decision::Halt(Reason::ExecutedSinceFork),
            Some(rule) if !p.zombie && rule.is_too_old(history.age) => {
                Decision::Halt(Reason::ChildTooOld {
                    rule: rule.label.clone(),
                    age: history.age.unwrap_or_default(),
                    max: rule.max_lifetime.unwrap_or_default(),
                })
            }
            Some(rule) if rule.log => Decision::AllowLogged(Reason::AllowedChild {
                rule: rule.label.clone(),
            }),
            Some(_) => Decision::Allow,
            None => Decision::Halt(Reason::Unlisted),
        }
    }

    /// Judges, after the seal, a live process that was never read
    /// completely (`what` could not be read): only the governor is
    /// allowed; anything else is unknown and fails closed.
    pub fn judge_unreadable(&self, p: &ProcInfo, what: Unreadable) -> Decision {
        if self.governor_pid == Some(p.pid) {
            Decision::Allow
        } else {
            Decision::Halt(Reason::Unreadable(what))
        }
    }

    /// The child rule that allows `p`, if any (ignoring exec history).
    pub fn matching_child(&self, p: &ProcInfo, parent_allowed_child: bool) -> Option<&ChildRule> {
        self.matching_child_index(p, parent_allowed_child)
            .and_then(|i| self.children.get(i))
    }

    /// The index in [`Policy::children`] of the rule that allows `p`, if
    /// any (ignoring exec history): the first that matches.
    pub fn matching_child_index(&self, p: &ProcInfo, parent_allowed_child: bool) -> Option<usize> {
        let exe = p.exe.as_deref()?;
        self.children.iter().position(|rule| {
            let parent_ok = p.ppid == self.root.pid || (rule.nested && parent_allowed_child);
            let uid_ok = |u: &u32| rule.uids.contains(u) || rule.setuid_to.contains(u);
            parent_ok && rule.exe == exe && uid_ok(&p.uid) && uid_ok(&p.euid)
        })
    }

    /// Judges the process that makes `alive` live processes matching the
    /// rule at `rule` (an index in [`Policy::children`]), itself included:
    /// beyond the rule's [`ChildRule::max_alive`] it halts.
    pub fn judge_alive(&self, rule: usize, alive: u32) -> Decision {
        match self.children.get(rule) {
            Some(r) if r.max_alive.is_some_and(|max| alive > max) => {
                Decision::Halt(Reason::TooManyChildren {
                    rule: r.label.clone(),
                    alive,
                    max: r.max_alive.unwrap_or_default(),
                })
            }
            _ => Decision::Allow,
        }
    }

    /// Whether any child rule bounds its children's lifetime (the engine
    /// then measures their age).
    pub fn bounds_lifetimes(&self) -> bool {
        self.children.iter().any(|r| r.max_lifetime.is_some())
    }

    /// Judges a report of an [`Alarm`](crate::Alarm) named `source`: it
    /// halts when the report says so, before or after the seal (the
    /// mechanism behind an alarm is the kernel's, and it has already
    /// acted); otherwise it is a logged note.
    pub fn judge_alarm(&self, source: &str, report: &crate::AlarmReport) -> Decision {
        let reason = Reason::Alarm {
            source: source.to_owned(),
            what: report.what.clone(),
        };
        if report.halt {
            Decision::Halt(reason)
        } else {
            Decision::AllowLogged(reason)
        }
    }

    /// Judges an `execve` by `p` after the seal.
    pub fn judge_exec(
        &self,
        p: &ProcInfo,
        history: History,
        parent_allowed_child: bool,
    ) -> Decision {
        if self.sealed.halt_on_exec {
            return Decision::Halt(Reason::ExecAfterSeal);
        }
        self.judge_process(p, history, parent_allowed_child)
    }

    /// Judges a uid change of `before` to (`ruid`, `euid`) after the seal.
    pub fn judge_uid_change(
        &self,
        before: &ProcInfo,
        ruid: u32,
        euid: u32,
        parent_allowed_child: bool,
    ) -> Decision {
        if self.governor_pid == Some(before.pid) || !self.sealed.halt_on_uid_change {
            return Decision::Allow;
        }
        if before.uid == ruid && before.euid == euid {
            return Decision::Allow;
        }
        let halt = Decision::Halt(Reason::UidChange {
            from_uid: before.uid,
            from_euid: before.euid,
            to_uid: ruid,
            to_euid: euid,
        });
        if before.pid == self.root.pid {
            return halt;
        }
        match self.matching_child(before, parent_allowed_child) {
            Some(rule) if rule.setuid_to.contains(&ruid) && rule.setuid_to.contains(&euid) => {
                Decision::Allow
            }
            _ => halt,
        }
    }

    /// Judges a ptrace attach of `tracer` to `traced` after the seal.
    pub fn judge_ptrace_attach(&self, traced: u32, tracer: u32) -> Decision {
        if self.sealed.halt_on_ptrace_attach {
            Decision::Halt(Reason::PtraceAttach { traced, tracer })
        } else {
            Decision::Allow
        }
    }
}
