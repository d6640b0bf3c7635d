//! The engine: keeps a table of the processes in scope, feeds it from a
//! snapshot, events and periodic rescans, asks the policy, and hands halts and
//! notes to the enforcer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::model::{
    Incomplete, Liveness, Partial, ProcEvent, ProcInfo, Read, SourceEvent, Unreadable,
};
use crate::policy::{Decision, History, OnEventLoss, Policy, Reason, Scope, SealOn};
use crate::traits::{AlarmReport, Enforcer, EventSource, ProcessSource};

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
    /// An [`Alarm`](crate::Alarm)'s report.
    Alarm,
}

impl fmt::Display for DetectedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DetectedBy::Snapshot => "snapshot",
            DetectedBy::Event => "event",
            DetectedBy::Rescan => "rescan",
            DetectedBy::Seal => "seal",
            DetectedBy::EventLoss => "event loss",
            DetectedBy::Alarm => "alarm",
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

/// How many times, in all, a live process that was never read completely
/// is read before it is judged unknown (the first read and the re-reads
/// through [`ProcessSource::reread`]).
///
/// Three, because of what can make a live task's record unreadable for a
/// moment. Gone, zombie and exiting are settled by the re-check the source
/// makes through the process's own files (they are final states and are
/// not re-read). What is left is a task whose state the re-check read as
/// running: in the kernel that is a thread-group leader that is gone while
/// another thread of its process is inside `execve` (the exec'ing thread
/// takes over the pid, `de_thread`), or a process with no memory of its own
/// outside exit (a usermode helper before its exec: nothing to wait for).
/// One re-read after a yield lets an `execve` in flight finish; a second
/// covers one that had to wait for its other threads to die. A record
/// still unreadable after that stays unreadable, so more re-reads only
/// lengthen the scan: the bound keeps one unreadable process's cost to
/// three reads of `stat`, `status` and `exe` per verdict, so no process
/// can stall the governor by staying unreadable.
pub const MAX_READ_ATTEMPTS: u32 = 3;

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
    /// Incomplete reads of processes in scope (see [`Read::Incomplete`]).
    pub incomplete: u64,
    /// Re-reads of processes never read completely, before a verdict.
    pub rereads: u64,
    /// Reports of alarms.
    pub alarms: u64,
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
    /// This process was never read completely and is alive: `info` is
    /// what could be read, and the policy judges it as unknown.
    unread: Option<Unreadable>,
    /// When the engine first saw this process: its age when the source
    /// has no clock, or its start time is not its own.
    first_seen: Instant,
    /// `info.start_time` is this process's own. It is not for a fork whose
    /// child could not be read: that record is its parent's copy, and the
    /// parent's start time would make the child as old as its parent.
    own_start_time: bool,
}

impl Entry {
    fn new(info: ProcInfo) -> Self {
        Self {
            info,
            history: History::default(),
            reported: false,
            noted: false,
            unread: None,
            first_seen: Instant::now(),
            own_start_time: true,
        }
    }

    /// A process met for the first time in an incomplete read: one that
    /// has exited runs no code (judged as a zombie); a live one is unknown.
    fn from_incomplete(inc: &Incomplete) -> Self {
        if inc.liveness.has_exited() {
            return Self::new(inc.partial.as_exited());
        }
        Self {
            unread: Some(inc.what),
            ..Self::new(inc.partial.as_unknown())
        }
    }

    /// Whether `read` is of the process this entry describes (a different
    /// start time is another process with the same pid). A record whose
    /// start time is not its own takes any read of its pid.
    fn same_process(&self, read: &Read) -> bool {
        if !self.own_start_time {
            return !matches!(read, Read::Gone);
        }
        match read {
            Read::Complete(p) => p.start_time == self.info.start_time,
            Read::Incomplete(i) => i
                .partial
                .start_time
                .is_none_or(|t| t == self.info.start_time),
            Read::Gone => false,
        }
    }
}

/// A complete record of a zombie (a fake source may give one): what the
/// kernel shows of a zombie is an incomplete read, so it is treated as one.
fn normalize(read: Read) -> Read {
    match read {
        Read::Complete(p) if p.zombie && p.exe.is_none() => Read::Incomplete(Incomplete {
            what: Unreadable::Exe,
            liveness: Liveness::Zombie,
            partial: Partial::of(&p),
        }),
        other => other,
    }
}

/// A known process (last read completely as `known`) read incompletely now:
/// it keeps its identity, corrected by what could be read, and is marked
/// exited if it has.
fn settled(known: &ProcInfo, inc: &Incomplete) -> ProcInfo {
    let mut p = inc.partial.over(known);
    p.zombie = known.zombie || inc.liveness.has_exited();
    p
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
        let snapshot: Vec<Read> = self.source.snapshot()?.into_iter().map(normalize).collect();
        let in_scope = self.scope_filter(&snapshot);
        let mut old = std::mem::take(&mut self.table);
        let mut missed: Vec<(u32, Decision)> = Vec::new();
        for read in snapshot {
            let Some(pid) = read.pid().filter(|&pid| in_scope(pid)) else {
                continue;
            };
            if matches!(read, Read::Incomplete(_)) {
                self.stats.incomplete += 1;
            }
            let known = old.remove(&pid).filter(|k| k.same_process(&read));
            let entry = match (known, read) {
                (Some(mut known), Read::Complete(now)) if known.unread.is_none() => {
                    self.update_known(&mut known, now, &mut missed);
                    known.own_start_time = true;
                    known
                }
                // Known, read in part now (exiting, a zombie, a file that
                // failed): it keeps the identity it had when last read
                // completely, unless what could be read contradicts it.
                (Some(mut known), Read::Incomplete(inc)) if known.unread.is_none() => {
                    let now = settled(&known.info, &inc);
                    self.update_known(&mut known, now, &mut missed);
                    known.own_start_time |= inc.partial.start_time.is_some();
                    known
                }
                (_, Read::Gone) => continue,
                // New, or known only as unreadable so far.
                (known, read) => {
                    let mut entry = match &read {
                        Read::Complete(p) => Entry::new(p.clone()),
                        Read::Incomplete(inc) => Entry::from_incomplete(inc),
                        Read::Gone => continue,
                    };
                    if let Some(k) = known {
                        entry.reported = k.reported;
                        entry.noted = k.noted;
                        entry.first_seen = k.first_seen;
                    }
                    entry
                }
            };
            self.table.insert(pid, entry);
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
        // One child too many halts before the others are noted.
        for rule in 0..self.policy.children.len() {
            self.census(rule, path)?;
        }
        let pids: Vec<u32> = self.table.keys().copied().collect();
        for pid in pids {
            if !self.settle(pid) {
                continue;
            }
            let Some(entry) = self.table.get(&pid) else {
                continue;
            };
            if entry.reported {
                continue;
            }
            let decision = self.decide(entry);
            self.deliver(pid, decision, path)?;
        }
        Ok(())
    }

    /// Judges the processes alive now that child rule `rule` allows against
    /// its [`ChildRule::max_alive`](crate::ChildRule::max_alive): beyond
    /// it, the newest halt. Before a halt each is read again, so a process
    /// whose exit the engine has not handled yet (its exit event still
    /// queued behind the next fork's, a rescan that read it just before it
    /// exited) is not counted.
    fn census(&mut self, rule: usize, path: DetectedBy) -> Result<(), Error> {
        let Some(max) = self.policy.children.get(rule).and_then(|r| r.max_alive) else {
            return Ok(());
        };
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let mut alive = self.alive_under(rule);
        if alive.len() <= max {
            return Ok(());
        }
        alive.retain(|&pid| self.confirm_alive(pid));
        let count = u32::try_from(alive.len()).unwrap_or(u32::MAX);
        for pid in alive.into_iter().skip(max) {
            let decision = self.policy.judge_alive(rule, count);
            self.deliver(pid, decision, path)?;
        }
        Ok(())
    }

    /// The live processes child rule `rule` allows, oldest first (a fork
    /// whose start time could not be read is the newest).
    fn alive_under(&self, rule: usize) -> Vec<u32> {
        let mut alive: Vec<(u64, u32)> = self
            .table
            .values()
            .filter(|e| self.live_child_rule(e) == Some(rule))
            .map(|e| {
                let start = if e.own_start_time {
                    e.info.start_time
                } else {
                    u64::MAX
                };
                (start, e.info.pid)
            })
            .collect();
        alive.sort_unstable();
        alive.into_iter().map(|(_, pid)| pid).collect()
    }

    /// The child rule (index) this entry is a live, allowed child of.
    fn live_child_rule(&self, e: &Entry) -> Option<usize> {
        let p = &e.info;
        let special = p.pid == self.policy.root.pid
            || self.policy.governor_pid == Some(p.pid)
            || (p.kernel_thread && self.policy.allow_kernel_threads);
        if special || p.zombie || e.unread.is_some() || e.history.execs > 0 {
            return None;
        }
        let parent_child = self.is_allowed_child(p.ppid);
        self.policy.matching_child_index(p, parent_child)
    }

    /// Whether `pid`, as the table knows it, is alive now, read again
    /// through the source. One gone, or another process with its pid, is
    /// dropped from the table; one exited is marked so. When the read
    /// fails, it counts as alive (fail closed).
    fn confirm_alive(&mut self, pid: u32) -> bool {
        let Ok(read) = self.source.process(pid).map(normalize) else {
            return true;
        };
        let Some(entry) = self.table.get_mut(&pid) else {
            return false;
        };
        if !entry.same_process(&read) {
            self.table.remove(&pid);
            return false;
        }
        match read {
            Read::Complete(p) => !p.zombie,
            Read::Incomplete(inc) if inc.liveness.has_exited() => {
                entry.info.zombie = true;
                false
            }
            Read::Incomplete(_) => true,
            Read::Gone => false,
        }
    }

    /// How long the process of `entry` has lived: from its start time, on
    /// the source's clock, or else since the engine first saw it.
    fn age(&self, entry: &Entry) -> Duration {
        let from_start = entry
            .own_start_time
            .then(|| self.source.age_of(entry.info.start_time))
            .flatten();
        from_start.unwrap_or_else(|| entry.first_seen.elapsed())
    }

    /// A known process read again (`now`): a changed exe is a missed exec,
    /// and missed changes are judged.
    fn update_known(&self, known: &mut Entry, now: ProcInfo, missed: &mut Vec<(u32, Decision)>) {
        if let Some(d) = self.missed_change(known, &now) {
            missed.push((now.pid, d));
        }
        if now.exe.is_some() && now.exe != known.info.exe {
            known.history.execs = known.history.execs.saturating_add(1);
        }
        known.info = now;
    }

    /// Before a verdict on a process never read completely, reads it again
    /// through the source (the same process, see
    /// [`ProcessSource::reread`]), up to [`MAX_READ_ATTEMPTS`] reads in all.
    /// Returns whether the process is still in the table (a process gone
    /// is dropped: its exit is no offence).
    fn settle(&mut self, pid: u32) -> bool {
        match self.table.get(&pid) {
            None => return false,
            Some(e) if e.unread.is_none() || e.reported => return true,
            Some(_) => {}
        }
        for _ in 1..MAX_READ_ATTEMPTS {
            // Let a task in the middle of `execve` or exit run.
            std::thread::yield_now();
            self.stats.rereads += 1;
            let Ok(read) = self.source.reread(pid).map(normalize) else {
                continue;
            };
            let settled = match &read {
                Read::Gone => {
                    self.table.remove(&pid);
                    return false;
                }
                Read::Complete(p) => Entry::new(p.clone()),
                Read::Incomplete(inc) if inc.liveness.has_exited() => Entry::from_incomplete(inc),
                Read::Incomplete(_) => continue,
            };
            let first_seen = self.table.get(&pid).map(|e| e.first_seen);
            let settled = Entry {
                first_seen: first_seen.unwrap_or(settled.first_seen),
                ..settled
            };
            self.table.insert(pid, settled);
            return true;
        }
        true
    }

    /// The policy's verdict on an entry's current state.
    fn decide(&self, entry: &Entry) -> Decision {
        if let Some(what) = entry.unread {
            return self.policy.judge_unreadable(&entry.info, what);
        }
        let parent_child = self.is_allowed_child(entry.info.ppid);
        let mut history = entry.history;
        let p = &entry.info;
        // Only a child can be too old; the clock is read for user
        // processes other than the root and the governor.
        if self.policy.bounds_lifetimes()
            && !p.kernel_thread
            && !p.zombie
            && p.pid != self.policy.root.pid
            && self.policy.governor_pid != Some(p.pid)
        {
            history.age = Some(self.age(entry));
        }
        self.policy.judge_process(p, history, parent_child)
    }

    /// A rescan sees a known process with another exe or uid: an event was
    /// missed. Judged as the event would have been.
    fn missed_change(&self, known: &Entry, now: &ProcInfo) -> Option<Decision> {
        // A zombie or exiting process shows what it had: its uid is its
        // last one, and an exe it no longer shows is kept (see `settled`).
        if !self.sealed || known.reported {
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
    fn scope_filter(&self, snapshot: &[Read]) -> impl Fn(u32) -> bool {
        let members: Option<std::collections::HashSet<u32>> = match self.policy.scope {
            Scope::Machine => None,
            Scope::Descendants(root) => {
                // A parent that could not be read is the one last known.
                let parent_of = |r: &Read| match r {
                    Read::Complete(p) => Some(p.ppid),
                    Read::Incomplete(i) => i
                        .partial
                        .ppid
                        .or_else(|| self.table.get(&i.partial.pid).map(|e| e.info.ppid)),
                    Read::Gone => None,
                };
                let parent: HashMap<u32, u32> = snapshot
                    .iter()
                    .filter_map(|r| Some((r.pid()?, parent_of(r)?)))
                    .collect();
                let mut set = std::collections::HashSet::new();
                for r in snapshot {
                    let Some(pid) = r.pid() else {
                        continue;
                    };
                    let tracked = self.table.get(&pid).is_some_and(|e| e.same_process(r));
                    if tracked || descends_from(pid, root, &parent) {
                        set.insert(pid);
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
            e.unread.is_none()
                && e.history.execs == 0
                && self.policy.matching_child(&e.info, true).is_some()
        })
    }

    fn in_scope(&self, tgid: u32) -> bool {
        match self.policy.scope {
            Scope::Machine => true,
            Scope::Descendants(root) => tgid == root || self.table.contains_key(&tgid),
        }
    }

    /// Fresh details of `pid` from the source, for an event: a complete
    /// read; or what the table knew of it, corrected by what could be read;
    /// or, for a process never read completely, what could be read, with
    /// the part that could not (`Some`: the policy judges it as unknown).
    fn fresh_info(&mut self, pid: u32, fallback_ppid: u32) -> (ProcInfo, Option<Unreadable>) {
        let read = self.source.process(pid).map(normalize);
        let known = self
            .table
            .get(&pid)
            .filter(|e| e.unread.is_none())
            .map(|e| e.info.clone());
        self.resolve(pid, read, known, fallback_ppid)
    }

    /// What an event's read of `pid` means, given `known`, the last
    /// complete record of that process (or its parent's copy, for a fork).
    fn resolve(
        &mut self,
        pid: u32,
        read: Result<Read, Error>,
        known: Option<ProcInfo>,
        fallback_ppid: u32,
    ) -> (ProcInfo, Option<Unreadable>) {
        if matches!(read, Ok(Read::Incomplete(_))) {
            self.stats.incomplete += 1;
        }
        match (read, known) {
            (Ok(Read::Complete(p)), _) => (p, None),
            (Ok(Read::Incomplete(inc)), Some(k))
                if inc.partial.start_time.is_none_or(|t| t == k.start_time) =>
            {
                (settled(&k, &inc), None)
            }
            (Ok(Read::Incomplete(inc)), _) => {
                let entry = Entry::from_incomplete(&inc);
                (entry.info, entry.unread)
            }
            // Gone (or the source failed): what was known, if anything.
            (Ok(Read::Gone) | Err(_), Some(k)) => (k, None),
            (Ok(Read::Gone) | Err(_), None) => (
                ProcInfo::unknown(pid, fallback_ppid),
                Some(Unreadable::Stat),
            ),
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
                // A child gone, exiting or otherwise read in part was a fork
                // of its parent, so it had the parent's identity; what could
                // be read of it corrects that (an exec that raced ahead of
                // this read shows its exe).
                let parent_copy = self
                    .table
                    .get(&parent_tgid)
                    .filter(|e| e.unread.is_none())
                    .map(|parent| ProcInfo {
                        pid: child_tgid,
                        ppid: parent_tgid,
                        zombie: false,
                        ..parent.info.clone()
                    });
                let read = self.source.process(child_tgid).map(normalize);
                let own_start_time = match &read {
                    Ok(Read::Complete(_)) => true,
                    Ok(Read::Incomplete(inc)) => inc.partial.start_time.is_some(),
                    Ok(Read::Gone) | Err(_) => false,
                };
                // The copy is of this child: it has the child's start time.
                let parent_copy = parent_copy.map(|mut copy| {
                    if let Ok(Read::Incomplete(inc)) = &read {
                        copy.start_time = inc.partial.start_time.unwrap_or(copy.start_time);
                    }
                    copy
                });
                let (info, unread) = self.resolve(child_tgid, read, parent_copy, parent_tgid);
                // The child already runs another image than its parent: the
                // exec raced ahead of this read. Judge it as the exec it is.
                let execd = unread.is_none() && parent_exe.is_some_and(|pe| pe != info.exe);
                let mut entry = Entry::new(info);
                entry.unread = unread;
                entry.own_start_time = own_start_time;
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
                let (info, unread) = self.fresh_info(tgid, 0);
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
                entry.unread = unread;
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
                let decision = if self.policy.sealed.halt_on_exec {
                    let parent_child = self.is_allowed_child(ppid);
                    let Some(entry) = self.table.get(&tgid) else {
                        return Ok(());
                    };
                    self.policy.judge_exec(&entry.info, history, parent_child)
                } else {
                    // Without the exec rule an exec is judged by what it
                    // became (`judge_exec` then is `judge_process`).
                    if !self.settle(tgid) {
                        return Ok(());
                    }
                    let Some(entry) = self.table.get(&tgid) else {
                        return Ok(());
                    };
                    self.decide(entry)
                };
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
                    let (info, unread) = self.fresh_info(tgid, 0);
                    let mut entry = Entry::new(info);
                    entry.unread = unread;
                    self.table.insert(tgid, entry);
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
                    let (info, unread) = self.fresh_info(tracer_tgid, 0);
                    let mut entry = Entry::new(info);
                    entry.unread = unread;
                    self.table.insert(tracer_tgid, entry);
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
        if !self.sealed || !self.settle(pid) {
            return Ok(());
        }
        let Some(entry) = self.table.get(&pid) else {
            return Ok(());
        };
        let decision = self.decide(entry);
        // A new allowed child may be one too many: counted before it is
        // noted, so a halt comes first.
        if !decision.is_halt() {
            if let Some(rule) = self.live_child_rule(entry) {
                self.census(rule, DetectedBy::Event)?;
            }
        }
        self.deliver(pid, decision, DetectedBy::Event)
    }

    /// Handles one report of the alarm named `source`: the policy's
    /// verdict (see [`Policy::judge_alarm`]) goes to the enforcer at once,
    /// before or after the seal, with the process the report names as
    /// read now (what the table knows of it if it cannot be read; still a
    /// halt if nothing can be read).
    pub fn handle_alarm(&mut self, source: &str, report: &AlarmReport) -> Result<(), Error> {
        self.stats.alarms += 1;
        let decision = self.policy.judge_alarm(source, report);
        let read = self.source.process(report.pid).map(normalize);
        let known = self
            .table
            .get(&report.pid)
            .filter(|e| e.unread.is_none())
            .map(|e| e.info.clone());
        let (process, _) = self.resolve(report.pid, read, known, 0);
        let verdict = Verdict {
            decision,
            process: Some(process),
            path: DetectedBy::Alarm,
        };
        match verdict.decision {
            Decision::Halt(_) => {
                self.stats.halts += 1;
                self.enforcer.halt(&verdict)
            }
            Decision::AllowLogged(_) => {
                self.stats.notes += 1;
                self.enforcer.note(&verdict);
                Ok(())
            }
            Decision::Allow => Ok(()),
        }
    }

    fn deliver(&mut self, pid: u32, decision: Decision, path: DetectedBy) -> Result<(), Error> {
        let Some(entry) = self.table.get_mut(&pid) else {
            return Ok(());
        };
        match decision {
            Decision::Allow => Ok(()),
            Decision::AllowLogged(_) => {
                // Once halted, a process is not also noted as allowed.
                if entry.noted || entry.reported {
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
