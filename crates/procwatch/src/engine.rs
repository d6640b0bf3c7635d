//! The engine: keeps a table of the processes in scope, feeds it from a
//! snapshot, events and periodic rescans, asks the policy, and hands halts and
//! notes to the enforcer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Instant;

use crate::error::Error;
use crate::model::{ProcEvent, ProcInfo, SourceEvent};
use crate::policy::{Decision, History, OnEventLoss, Policy, Reason, Scope, SealOn};
use crate::traits::{Enforcer, EventSource, ProcessSource};

/// Which path of the engine produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedBy {
    /// The first snapshot.
    Snapshot,
    /// A process event, as it happened.
    Event,
    /// A periodic (or loss-triggered) full rescan.
    Rescan,
    /// The full judgement at the seal.
    Seal,
    /// The event source lost events.
    EventLoss,
}

impl fmt::Display for DetectedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DetectedBy::Snapshot => "snapshot",
            DetectedBy::Event => "event",
            DetectedBy::Rescan => "rescan",
            DetectedBy::Seal => "seal",
            DetectedBy::EventLoss => "event loss",
        })
    }
}

/// A verdict handed to the enforcer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Halt` or `AllowLogged` (plain `Allow` is never handed on).
    pub decision: Decision,
    /// The offender (or the logged process); `None` for lost events.
    pub process: Option<ProcInfo>,
    /// The path that saw it.
    pub path: DetectedBy,
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled (including threads and out-of-scope ones).
    pub events: u64,
    /// Full scans (snapshot, rescans, seal).
    pub scans: u64,
    /// Lost-event reports.
    pub lost: u64,
    /// Halts handed to the enforcer.
    pub halts: u64,
    /// Notes handed to the enforcer.
    pub notes: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    info: ProcInfo,
    history: History,
    /// A halt was already handed on for this process: do not repeat it on
    /// every rescan.
    reported: bool,
    /// A note was already handed on for this process.
    noted: bool,
}

impl Entry {
    fn new(info: ProcInfo) -> Self {
        Self {
            info,
            history: History::default(),
            reported: false,
            noted: false,
        }
    }
}

/// The governor engine over a process source and an enforcer.
#[derive(Debug)]
pub struct Engine<P, E> {
    policy: Policy,
    source: P,
    enforcer: E,
    /// By pid: ordered, so scans judge in pid order without sorting.
    table: BTreeMap<u32, Entry>,
    sealed: bool,
    started: bool,
    /// Exec events seen for the root pid. The seal is the root's exec into
    /// the server; a rescan can notice it before its event is read, and that
    /// one event must then not count as an exec after the seal.
    root_exec_events: u32,
    stats: Stats,
}

impl<P: ProcessSource, E: Enforcer> Engine<P, E> {
    /// An engine that has seen nothing yet; call [`Engine::start`] (or
    /// [`Engine::run`]) next.
    pub fn new(policy: Policy, source: P, enforcer: E) -> Self {
        Self {
            policy,
            source,
            enforcer,
            table: BTreeMap::new(),
            sealed: false,
            started: false,
            root_exec_events: 0,
            stats: Stats::default(),
        }
    }

    /// The initial snapshot. With [`SealOn::Start`] it seals first, so the
    /// snapshot is judged.
    pub fn start(&mut self) -> Result<(), Error> {
        self.started = true;
        if self.policy.seal_on == SealOn::Start {
            self.sealed = true;
        }
        self.scan(DetectedBy::Snapshot)
    }

    /// A full rescan now.
    pub fn rescan(&mut self) -> Result<(), Error> {
        self.scan(DetectedBy::Rescan)
    }

    /// Handles one event from the event source.
    pub fn handle(&mut self, event: &SourceEvent) -> Result<(), Error> {
        match event {
            SourceEvent::Lost => self.on_lost(),
            SourceEvent::Event(ev) => {
                self.stats.events += 1;
                self.on_event(ev)
            }
        }
    }

    /// Runs: the initial snapshot (unless started), then events from
    /// `events` and a rescan every `policy.rescan_interval`, while
    /// `keep_going` says so (checked after each wait, which is bounded by
    /// the rescan interval).
    pub fn run<S: EventSource>(
        &mut self,
        events: &mut S,
        mut keep_going: impl FnMut(&Self) -> bool,
    ) -> Result<(), Error> {
        if !self.started {
            self.start()?;
        }
        let mut buf = Vec::new();
        let mut next_scan = Instant::now() + self.policy.rescan_interval;
        while keep_going(self) {
            let now = Instant::now();
            if now >= next_scan {
                self.rescan()?;
                next_scan = Instant::now() + self.policy.rescan_interval;
                continue;
            }
            events.wait(next_scan.saturating_duration_since(now), &mut buf)?;
            for ev in buf.drain(..) {
                self.handle(&ev)?;
            }
        }
        Ok(())
    }

    /// Whether enforcement has started.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The enforcer (a recorder in tests).
    pub fn enforcer(&self) -> &E {
        &self.enforcer
    }

    /// The enforcer, mutably (the governor loop reaches the machine through it).
    pub fn enforcer_mut(&mut self) -> &mut E {
        &mut self.enforcer
    }

    /// The process source.
    pub fn source_mut(&mut self) -> &mut P {
        &mut self.source
    }

    /// What the engine knows of `pid`, if it is in scope.
    pub fn process(&self, pid: u32) -> Option<&ProcInfo> {
        self.table.get(&pid).map(|e| &e.info)
    }

    /// How many processes are in scope.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no process is in scope.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn on_lost(&mut self) -> Result<(), Error> {
        self.stats.lost += 1;
        if self.sealed && self.policy.on_event_loss == OnEventLoss::Halt {
            let verdict = Verdict {
                decision: Decision::Halt(Reason::EventsLost),
                process: None,
                path: DetectedBy::EventLoss,
            };
            self.stats.halts += 1;
            return self.enforcer.halt(&verdict);
        }
        self.scan(DetectedBy::Rescan)
    }

    fn scan(&mut self, path: DetectedBy) -> Result<(), Error> {
        self.stats.scans += 1;
        let snapshot = self.source.snapshot()?;
        let in_scope = self.scope_filter(&snapshot);
        let mut old = std::mem::take(&mut self.table);
        let mut missed: Vec<(u32, Decision)> = Vec::new();
        for p in snapshot.into_iter().filter(|p| in_scope(p.pid)) {
            let entry = match old.remove(&p.pid) {
                Some(mut known) if known.info.start_time == p.start_time => {
                    if let Some(d) = self.missed_change(&known, &p) {
                        missed.push((p.pid, d));
                    }
                    if p.zombie && p.exe.is_none() {
                        // Keep what we knew alive; a zombie shows no exe.
                        known.info.zombie = true;
                    } else {
                        if p.exe.is_some() && p.exe != known.info.exe {
                            known.history.execs = known.history.execs.saturating_add(1);
                        }
                        known.info = p;
                    }
                    known
                }
                _ => Entry::new(p),
            };
            self.table.insert(entry.info.pid, entry);
        }
        let mut path = path;
        if !self.sealed && self.policy.seal_on == SealOn::RootExec {
            let root_ok = self
                .table
                .get(&self.policy.root.pid)
                .is_some_and(|e| self.policy.is_sealed_root(&e.info));
            if root_ok {
                self.sealed = true;
                path = DetectedBy::Seal;
            }
        }
        if !self.sealed {
            return Ok(());
        }
        if path == DetectedBy::Seal {
            let mut userspace: Vec<&ProcInfo> = self
                .table
                .values()
                .map(|e| &e.info)
                .filter(|p| !p.kernel_thread)
                .collect();
            userspace.sort_unstable_by_key(|p| p.pid);
            self.enforcer.sealed(&userspace);
        }
        for (pid, decision) in missed {
            self.deliver(pid, decision, path)?;
        }
        let pids: Vec<u32> = self.table.keys().copied().collect();
        for pid in pids {
            let Some(entry) = self.table.get(&pid) else {
                continue;
            };
            if entry.reported {
                continue;
            }
            let parent_child = self.is_allowed_child(entry.info.ppid);
            let decision = self
                .policy
                .judge_process(&entry.info, entry.history, parent_child);
            self.deliver(pid, decision, path)?;
        }
        Ok(())
    }

    /// A rescan sees a known process with another exe or uid: an event was
    /// missed. Judged as the event would have been.
    fn missed_change(&self, known: &Entry, now: &ProcInfo) -> Option<Decision> {
        if !self.sealed || known.reported || now.zombie {
            return None;
        }
        let parent_child = self.is_allowed_child(now.ppid);
        if now.exe.is_some() && now.exe != known.info.exe {
            let d = self.policy.judge_exec(now, known.history, parent_child);
            if d.is_halt() {
                return Some(d);
            }
        }
        if now.uid != known.info.uid || now.euid != known.info.euid {
            let d = self
                .policy
                .judge_uid_change(&known.info, now.uid, now.euid, parent_child);
            if d.is_halt() {
                return Some(d);
            }
        }
        None
    }

    /// A membership test for the policy's scope over a snapshot. Processes
    /// already tracked stay in scope even if reparented (a daemonizing
    /// descendant does not escape).
    fn scope_filter(&self, snapshot: &[ProcInfo]) -> impl Fn(u32) -> bool {
        let members: Option<std::collections::HashSet<u32>> = match self.policy.scope {
            Scope::Machine => None,
            Scope::Descendants(root) => {
                let parent: HashMap<u32, u32> = snapshot.iter().map(|p| (p.pid, p.ppid)).collect();
                let mut set = std::collections::HashSet::new();
                for p in snapshot {
                    let tracked = self
                        .table
                        .get(&p.pid)
                        .is_some_and(|e| e.info.start_time == p.start_time);
                    if tracked || descends_from(p.pid, root, &parent) {
                        set.insert(p.pid);
                    }
                }
                Some(set)
            }
        };
        move |pid| members.as_ref().is_none_or(|set| set.contains(&pid))
    }

    fn is_allowed_child(&self, pid: u32) -> bool {
        if pid == self.policy.root.pid {
            return false;
        }
        self.table.get(&pid).is_some_and(|e| {
            e.history.execs == 0 && self.policy.matching_child(&e.info, true).is_some()
        })
    }

    fn in_scope(&self, tgid: u32) -> bool {
        match self.policy.scope {
            Scope::Machine => true,
            Scope::Descendants(root) => tgid == root || self.table.contains_key(&tgid),
        }
    }

    /// Fresh details of `pid` from the source, or what the table knows, or a
    /// bare record (fails closed: no exe matches no rule).
    fn fresh_info(&mut self, pid: u32, fallback_ppid: u32) -> ProcInfo {
        if let Ok(Some(p)) = self.source.process(pid) {
            if !(p.zombie && p.exe.is_none()) {
                return p;
            }
        }
        match self.table.get(&pid) {
            Some(e) => e.info.clone(),
            None => ProcInfo::unknown(pid, fallback_ppid),
        }
    }

    fn on_event(&mut self, ev: &ProcEvent) -> Result<(), Error> {
        match *ev {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } => {
                if child_pid != child_tgid || !self.in_scope(parent_tgid) {
                    return Ok(());
                }
                let parent_exe = self.table.get(&parent_tgid).map(|e| e.info.exe.clone());
                let info = match self.source.process(child_tgid) {
                    Ok(Some(p)) if p.exe.is_some() => p,
                    _ => match self.table.get(&parent_tgid) {
                        // The child is gone or unreadable: it was a fork of
                        // its parent, so it had the parent's identity.
                        Some(parent) => ProcInfo {
                            pid: child_tgid,
                            ppid: parent_tgid,
                            ..parent.info.clone()
                        },
                        None => self.fresh_info(child_tgid, parent_tgid),
                    },
                };
                // The child already runs another image than its parent: the
                // exec raced ahead of this read. Judge it as the exec it is.
                let execd = parent_exe.is_some_and(|pe| pe != info.exe);
                let mut entry = Entry::new(info);
                if execd {
                    entry.history.execs = 1;
                }
                self.table.insert(child_tgid, entry);
                if execd && self.sealed {
                    let Some(entry) = self.table.get(&child_tgid) else {
                        return Ok(());
                    };
                    let parent_child = self.is_allowed_child(entry.info.ppid);
                    let decision = self
                        .policy
                        .judge_exec(&entry.info, entry.history, parent_child);
                    return self.deliver(child_tgid, decision, DetectedBy::Event);
                }
                self.judge_entry(child_tgid)
            }
            ProcEvent::Exec { tgid, .. } => {
                if !self.in_scope(tgid) {
                    return Ok(());
                }
                let info = self.fresh_info(tgid, 0);
                let is_root = tgid == self.policy.root.pid;
                if is_root {
                    self.root_exec_events = self.root_exec_events.saturating_add(1);
                }
                let first_root_exec = is_root && self.root_exec_events == 1;
                let entry = self
                    .table
                    .entry(tgid)
                    .or_insert_with(|| Entry::new(info.clone()));
                entry.history.execs = entry.history.execs.saturating_add(1);
                entry.info = info;
                if !self.sealed {
                    let root_execs_server = self.policy.seal_on == SealOn::RootExec
                        && tgid == self.policy.root.pid
                        && self.policy.is_sealed_root(&entry.info);
                    if root_execs_server {
                        self.sealed = true;
                        return self.scan(DetectedBy::Seal);
                    }
                    return Ok(());
                }
                // Sealed already, by a rescan that saw this very exec first:
                // the root's first exec event, landing in the sealed server,
                // is the seal itself. Any later root exec is judged.
                if first_root_exec
                    && self.policy.seal_on == SealOn::RootExec
                    && self.policy.is_sealed_root(&entry.info)
                {
                    // The rescan counted this exec too; count it once.
                    entry.history.execs = entry.history.execs.saturating_sub(1).max(1);
                    return Ok(());
                }
                let (history, ppid) = (entry.history, entry.info.ppid);
                let parent_child = self.is_allowed_child(ppid);
                let Some(entry) = self.table.get(&tgid) else {
                    return Ok(());
                };
                let decision = self.policy.judge_exec(&entry.info, history, parent_child);
                self.deliver(tgid, decision, DetectedBy::Event)
            }
            ProcEvent::Uid {
                tgid, ruid, euid, ..
            } => {
                if !self.in_scope(tgid) {
                    return Ok(());
                }
                if !self.table.contains_key(&tgid) {
                    // A process no event or scan introduced: judge it as
                    // found, then its uid change.
                    let info = self.fresh_info(tgid, 0);
                    self.table.insert(tgid, Entry::new(info));
                    self.judge_entry(tgid)?;
                }
                let parent_child = self
                    .table
                    .get(&tgid)
                    .is_some_and(|e| self.is_allowed_child(e.info.ppid));
                let Some(entry) = self.table.get_mut(&tgid) else {
                    return Ok(());
                };
                let before = entry.info.clone();
                entry.info.uid = ruid;
                entry.info.euid = euid;
                if !self.sealed {
                    return Ok(());
                }
                let decision = self
                    .policy
                    .judge_uid_change(&before, ruid, euid, parent_child);
                self.deliver(tgid, decision, DetectedBy::Event)
            }
            ProcEvent::Ptrace {
                tgid, tracer_tgid, ..
            } => {
                if tracer_tgid == 0 || !self.sealed {
                    return Ok(());
                }
                if !self.in_scope(tgid) && !self.in_scope(tracer_tgid) {
                    return Ok(());
                }
                let decision = self.policy.judge_ptrace_attach(tgid, tracer_tgid);
                // The tracer is the offender; name it if it can be read.
                let offender = if self.table.contains_key(&tracer_tgid) {
                    tracer_tgid
                } else if self.table.contains_key(&tgid) {
                    tgid
                } else {
                    let info = self.fresh_info(tracer_tgid, 0);
                    self.table.insert(tracer_tgid, Entry::new(info));
                    tracer_tgid
                };
                self.deliver(offender, decision, DetectedBy::Event)
            }
            ProcEvent::Comm {
                pid,
                tgid,
                ref comm,
            } => {
                if pid == tgid {
                    if let Some(e) = self.table.get_mut(&tgid) {
                        e.info.comm.clone_from(comm);
                    }
                }
                Ok(())
            }
            ProcEvent::Exit { pid, tgid } => {
                if pid == tgid {
                    self.table.remove(&tgid);
                }
                Ok(())
            }
            ProcEvent::Gid { .. } | ProcEvent::Other { .. } => Ok(()),
        }
    }

    fn judge_entry(&mut self, pid: u32) -> Result<(), Error> {
        if !self.sealed {
            return Ok(());
        }
        let Some(entry) = self.table.get(&pid) else {
            return Ok(());
        };
        let parent_child = self.is_allowed_child(entry.info.ppid);
        let decision = self
            .policy
            .judge_process(&entry.info, entry.history, parent_child);
        self.deliver(pid, decision, DetectedBy::Event)
    }

    fn deliver(&mut self, pid: u32, decision: Decision, path: DetectedBy) -> Result<(), Error> {
        let Some(entry) = self.table.get_mut(&pid) else {
            return Ok(());
        };
        match decision {
            Decision::Allow => Ok(()),
            Decision::AllowLogged(_) => {
                if entry.noted {
                    return Ok(());
                }
                entry.noted = true;
                let verdict = Verdict {
                    decision,
                    process: Some(entry.info.clone()),
                    path,
                };
                self.stats.notes += 1;
                self.enforcer.note(&verdict);
                Ok(())
            }
            Decision::Halt(_) => {
                if entry.reported {
                    return Ok(());
                }
                entry.reported = true;
                let verdict = Verdict {
                    decision,
                    process: Some(entry.info.clone()),
                    path,
                };
                self.stats.halts += 1;
                self.enforcer.halt(&verdict)
            }
        }
    }
}

/// Whether walking `pid`'s parent chain reaches `root` (bounded, so a
/// corrupt table with a cycle cannot loop).
fn descends_from(pid: u32, root: u32, parent: &HashMap<u32, u32>) -> bool {
    let mut cur = pid;
    for _ in 0..=parent.len() {
        if cur == root {
            return true;
        }
        match parent.get(&cur) {
            Some(&pp) if pp != cur && pp != 0 => cur = pp,
            _ => return false,
        }
    }
    false
}
