//! Engine and policy rules, table-driven over fake sources.

use std::time::Duration;

use crate::fake::{
    Call, FailCalls, FakeEventSource, FakeMachine, FakeProcessSource, RecordingEnforcer,
};
use crate::render::render_verdict;
use crate::*;

const SERVER: &str = "/usr/bin/valkey-server";
const INIT: &str = "/init";
const SERVER_UID: u32 = 999;
const GOVERNOR: u32 = 50;

fn policy(loss: OnEventLoss) -> Policy {
    Policy::single_server(
        SERVER,
        SERVER_UID,
        GOVERNOR,
        loss,
        Duration::from_millis(500),
    )
}

fn server(pid: u32, ppid: u32) -> ProcInfo {
    ProcInfo::new(pid, ppid, SERVER_UID, SERVER)
}

/// The sealed appliance: kthreadd and a worker, the server as PID 1, the
/// governor.
fn sealed_table() -> Vec<ProcInfo> {
    vec![
        server(1, 0),
        ProcInfo::kernel_thread(2, 0, "kthreadd"),
        ProcInfo::kernel_thread(3, 2, "rcu_gp"),
        ProcInfo::new(GOVERNOR, 1, 0, INIT),
    ]
}

/// Before the seal: init is PID 1, running as root.
fn boot_table() -> Vec<ProcInfo> {
    vec![
        ProcInfo::new(1, 0, 0, INIT),
        ProcInfo::kernel_thread(2, 0, "kthreadd"),
        ProcInfo::new(GOVERNOR, 1, 0, INIT),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    /// The process table now shows this process (what /proc would show).
    Proc(ProcInfo),
    /// The process is gone from the table.
    Gone(u32),
    Ev(ProcEvent),
    Lost,
    Rescan,
    /// The table lists this pid, and reading it gives this.
    Listed(u32, Read),
    /// The next single read of this pid (an event's read, a re-read) gives
    /// this.
    Then(u32, Read),
    /// The source's clock now reads this many ticks since boot.
    Clock(u64),
    /// An alarm named [`ALARM`] reports (pid, what, halt).
    Alarm(u32, &'static str, bool),
}

use Step::*;

fn fork(parent: u32, child: u32) -> Step {
    Ev(ProcEvent::Fork {
        parent_pid: parent,
        parent_tgid: parent,
        child_pid: child,
        child_tgid: child,
    })
}

fn exec(pid: u32) -> Step {
    Ev(ProcEvent::Exec { pid, tgid: pid })
}

type Halt = (Option<u32>, Reason, DetectedBy);
type Note = (u32, DetectedBy);
/// name, steps, expected halts, expected notes.
type SealedCase = (&'static str, Vec<Step>, Vec<Halt>, Vec<Note>);
/// name, initial table, steps, sealed at the end, expected halts.
type SealCase = (&'static str, Vec<ProcInfo>, Vec<Step>, bool, Vec<Halt>);

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    halts: Vec<Halt>,
    notes: Vec<Note>,
}

/// The alarm of [`Step::Alarm`].
const ALARM: &str = "test-alarm";

fn run_case(initial: Vec<ProcInfo>, loss: OnEventLoss, steps: &[Step]) -> (Seen, Stats) {
    let (engine, stats) = run_engine(policy(loss), initial, steps);
    (seen(&engine), stats)
}

fn run_engine(
    policy: Policy,
    initial: Vec<ProcInfo>,
    steps: &[Step],
) -> (Engine<FakeProcessSource, RecordingEnforcer>, Stats) {
    let source = FakeProcessSource::with(initial);
    let mut engine = Engine::new(policy, source, RecordingEnforcer::default());
    engine.start().unwrap();
    for step in steps {
        match step {
            Proc(p) => engine.source_mut().insert(p.clone()),
            Gone(pid) => engine.source_mut().remove(*pid),
            Ev(ev) => engine.handle(&SourceEvent::Event(ev.clone())).unwrap(),
            Lost => engine.handle(&SourceEvent::Lost).unwrap(),
            Rescan => engine.rescan().unwrap(),
            Listed(pid, read) => engine.source_mut().insert_read(*pid, read.clone()),
            Then(pid, read) => engine.source_mut().script(*pid, read.clone()),
            Clock(ticks) => engine.source_mut().clock = Some(*ticks),
            Alarm(pid, what, halt) => {
                let report = AlarmReport {
                    pid: *pid,
                    what: (*what).to_owned(),
                    halt: *halt,
                };
                engine.handle_alarm(ALARM, &report).unwrap();
            }
        }
    }
    let stats = engine.stats();
    (engine, stats)
}

fn seen(engine: &Engine<FakeProcessSource, RecordingEnforcer>) -> Seen {
    let e = engine.enforcer();
    let halts = e
        .halts
        .iter()
        .map(|v| match &v.decision {
            Decision::Halt(r) => (v.process.as_ref().map(|p| p.pid), r.clone(), v.path),
            other => panic!("halt with {other:?}"),
        })
        .collect();
    let notes = e
        .notes
        .iter()
        .map(|v| (v.process.as_ref().map_or(0, |p| p.pid), v.path))
        .collect();
    Seen { halts, notes }
}

fn uid_change(from: (u32, u32), to: (u32, u32)) -> Reason {
    Reason::UidChange {
        from_uid: from.0,
        from_euid: from.1,
        to_uid: to.0,
        to_euid: to.1,
    }
}

#[test]
fn sealed_rules_table() {
    use DetectedBy::{Event, Rescan as ByRescan};
    let sh = |pid, ppid| ProcInfo::new(pid, ppid, SERVER_UID, "/bin/sh");
    let mut uid0 = server(100, 1);
    uid0.uid = 0;
    uid0.euid = 0;
    let mut zombie = ProcInfo::new(140, 1, SERVER_UID, "/x");
    zombie.exe = None;
    zombie.zombie = true;
    #[rustfmt::skip]
    let cases: Vec<SealedCase> = vec![
        ("idle appliance", vec![Rescan], vec![], vec![]),
        ("BGSAVE fork allowed and logged",
            vec![Proc(server(100, 1)), fork(1, 100)], vec![], vec![(100, Event)]),
        ("BGSAVE fork logged once across rescans",
            vec![Proc(server(100, 1)), fork(1, 100), Rescan, Rescan], vec![], vec![(100, Event)]),
        ("BGSAVE fork seen only by rescan",
            vec![Proc(server(100, 1)), Rescan], vec![], vec![(100, ByRescan)]),
        ("fork then exec halts",
            vec![Proc(server(100, 1)), fork(1, 100), Proc(sh(100, 1)), exec(100)],
            vec![(Some(100), Reason::ExecAfterSeal, Event)], vec![(100, Event)]),
        ("exec of the server binary itself halts",
            vec![Proc(server(100, 1)), fork(1, 100), exec(100)],
            vec![(Some(100), Reason::ExecAfterSeal, Event)], vec![(100, Event)]),
        ("a fork already running another image than its parent is an exec",
            vec![Proc(sh(101, 1)), fork(1, 101)], vec![(Some(101), Reason::ExecAfterSeal, Event)], vec![]),
        ("ppid 1 with another exe halts (the seed's hole), event",
            vec![Proc(sh(104, 1)), Ev(ProcEvent::Uid { pid: 104, tgid: 104, ruid: SERVER_UID, euid: SERVER_UID })],
            vec![(Some(104), Reason::Unlisted, Event)], vec![]),
        ("ppid 1 with another exe halts (the seed's hole), rescan",
            vec![Proc(sh(101, 1)), Rescan], vec![(Some(101), Reason::Unlisted, ByRescan)], vec![]),
        ("a halt is reported once",
            vec![Proc(sh(101, 1)), Rescan, Rescan], vec![(Some(101), Reason::Unlisted, ByRescan)], vec![]),
        ("new thread of the server is not a process",
            vec![Ev(ProcEvent::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 120, child_tgid: 1 }),
                 Ev(ProcEvent::Exit { pid: 120, tgid: 1 }), Rescan], vec![], vec![]),
        ("thread of a fork is not a process",
            vec![Proc(server(100, 1)), fork(1, 100),
                 Ev(ProcEvent::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 121, child_tgid: 100 })],
            vec![], vec![(100, Event)]),
        ("uid change of a fork to 0 halts",
            vec![Proc(server(100, 1)), fork(1, 100), Ev(ProcEvent::Uid { pid: 100, tgid: 100, ruid: 0, euid: 0 })],
            vec![(Some(100), uid_change((999, 999), (0, 0)), Event)], vec![(100, Event)]),
        ("uid change of the server halts",
            vec![Ev(ProcEvent::Uid { pid: 1, tgid: 1, ruid: 999, euid: 0 })],
            vec![(Some(1), uid_change((999, 999), (999, 0)), Event)], vec![]),
        ("uid event without a change is allowed",
            vec![Ev(ProcEvent::Uid { pid: 1, tgid: 1, ruid: 999, euid: 999 })], vec![], vec![]),
        ("uid change of the governor is allowed",
            vec![Ev(ProcEvent::Uid { pid: GOVERNOR, tgid: GOVERNOR, ruid: 5, euid: 5 })], vec![], vec![]),
        ("uid change missed by events, caught by rescan",
            vec![Proc(server(100, 1)), fork(1, 100), Proc(uid0.clone()), Rescan],
            vec![(Some(100), uid_change((999, 999), (0, 0)), ByRescan)], vec![(100, Event)]),
        ("exec missed by events, caught by rescan",
            vec![Proc(sh(1, 0)), Rescan], vec![(Some(1), Reason::ExecAfterSeal, ByRescan)], vec![]),
        ("ptrace attach halts, naming the tracer",
            vec![Proc(server(100, 1)), fork(1, 100),
                 Ev(ProcEvent::Ptrace { pid: 1, tgid: 1, tracer_pid: 100, tracer_tgid: 100 })],
            vec![(Some(100), Reason::PtraceAttach { traced: 1, tracer: 100 }, Event)], vec![(100, Event)]),
        ("ptrace detach is not an attach",
            vec![Ev(ProcEvent::Ptrace { pid: 1, tgid: 1, tracer_pid: 0, tracer_tgid: 0 })], vec![], vec![]),
        ("kernel thread fork allowed",
            vec![Proc(ProcInfo::kernel_thread(130, 2, "kworker/0:1")), fork(2, 130)], vec![], vec![]),
        ("a fork of the governor halts",
            vec![Proc(ProcInfo::new(131, GOVERNOR, 0, INIT)), fork(GOVERNOR, 131)],
            vec![(Some(131), Reason::Unlisted, Event)], vec![]),
        ("a grandchild of the server halts",
            vec![Proc(server(100, 1)), fork(1, 100), Proc(server(101, 100)), fork(100, 101)],
            vec![(Some(101), Reason::Unlisted, Event)], vec![(100, Event)]),
        ("a fork running as another uid halts",
            vec![Proc(ProcInfo::new(102, 1, 0, SERVER)), fork(1, 102)],
            vec![(Some(102), Reason::Unlisted, Event)], vec![]),
        ("a fork gone before it is read is judged as its parent's copy",
            vec![fork(1, 103)], vec![], vec![(103, Event)]),
        ("exit then rescan forgets the fork",
            vec![Proc(server(100, 1)), fork(1, 100), Ev(ProcEvent::Exit { pid: 100, tgid: 100 }), Gone(100), Rescan],
            vec![], vec![(100, Event)]),
        ("comm change is recorded, not judged",
            vec![Ev(ProcEvent::Comm { pid: 1, tgid: 1, comm: b"bio_aof".to_vec() })], vec![], vec![]),
        ("unknown zombie is only noted",
            vec![Proc(zombie), Rescan], vec![], vec![(140, ByRescan)]),
        ("lost events under Halt halt",
            vec![Lost], vec![(None, Reason::EventsLost, DetectedBy::EventLoss)], vec![]),
    ];
    for (name, steps, halts, notes) in cases {
        let (seen, _) = run_case(sealed_table(), OnEventLoss::Halt, &steps);
        assert_eq!(seen, Seen { halts, notes }, "case: {name}");
    }
}

/// What a source reads of a process it cannot read completely: the
/// server's uids and name, no exe, unless the row says otherwise.
fn part(pid: u32, ppid: u32) -> Partial {
    Partial {
        ppid: Some(ppid),
        uids: Some((SERVER_UID, SERVER_UID)),
        comm: b"valkey-server".to_vec(),
        start_time: Some(0),
        ..Partial::new(pid)
    }
}

fn incomplete(what: Unreadable, liveness: Liveness, partial: Partial) -> Read {
    Read::Incomplete(Incomplete {
        what,
        liveness,
        partial,
    })
}

/// A task past `exit_mm`: `PF_EXITING`, its exe link unreadable.
fn exiting(pid: u32) -> Read {
    incomplete(Unreadable::Exe, Liveness::Exiting, part(pid, 1))
}

fn zombie(pid: u32) -> Read {
    incomplete(Unreadable::Exe, Liveness::Zombie, part(pid, 1))
}

/// Alive (not exiting, no other state to explain it), exe unreadable.
fn unreadable(pid: u32) -> Read {
    incomplete(Unreadable::Exe, Liveness::Running, part(pid, 1))
}

/// name, steps, expected halts, expected notes, expected re-reads.
type UnreadableCase = (&'static str, Vec<Step>, Vec<Halt>, Vec<Note>, u64);

/// Every state in which a process cannot be read completely: only what is
/// really unknown (new, alive, still unreadable after the bounded re-reads)
/// halts; what is known keeps its identity unless a readable fact
/// contradicts it; what is gone is dropped.
#[test]
fn unreadable_records_table() {
    use DetectedBy::{Event, Rescan as ByRescan};
    let sh = |pid, ppid| ProcInfo::new(pid, ppid, SERVER_UID, "/bin/sh");
    let known_child = || vec![Proc(server(100, 1)), fork(1, 100)];
    let with = |mut steps: Vec<Step>, more: Vec<Step>| {
        steps.extend(more);
        steps
    };
    let retries = u64::from(MAX_READ_ATTEMPTS - 1);
    let reused = || {
        let mut p = sh(100, 1);
        p.start_time = 7;
        p
    };
    #[rustfmt::skip]
    let cases: Vec<UnreadableCase> = vec![
        ("listed, gone when read: dropped",
            vec![Listed(100, Read::Gone), Rescan], vec![], vec![], 0),
        ("known child gone when read: dropped",
            with(known_child(), vec![Listed(100, Read::Gone), Rescan, Rescan]), vec![], vec![(100, Event)], 0),
        // The field's halt: the AOF-rewrite child, allowed by the event
        // path, read by the rescan while exiting (its exe link gone).
        ("known child exiting, exe unreadable: keeps its identity",
            with(known_child(), vec![Listed(100, exiting(100)), Rescan, Rescan]), vec![], vec![(100, Event)], 0),
        ("known child a zombie: keeps its identity",
            with(known_child(), vec![Listed(100, zombie(100)), Rescan]), vec![], vec![(100, Event)], 0),
        ("known child alive, status unreadable: keeps its identity",
            with(known_child(), vec![
                Listed(100, incomplete(Unreadable::Status, Liveness::Running, Partial { uids: None, ..part(100, 1) })),
                Rescan, Rescan]),
            vec![], vec![(100, Event)], 0),
        ("known child, state unreadable too: keeps its identity",
            with(known_child(), vec![
                Listed(100, incomplete(Unreadable::Stat, Liveness::Unknown, Partial::new(100))), Rescan]),
            vec![], vec![(100, Event)], 0),
        ("known kernel thread read in part: still a kernel thread",
            vec![Listed(3, incomplete(Unreadable::Stat, Liveness::Unknown, Partial::new(3))), Rescan],
            vec![], vec![], 0),
        ("known child exiting, a readable uid contradicts it: judged",
            with(known_child(), vec![
                Listed(100, incomplete(Unreadable::Exe, Liveness::Exiting, Partial { uids: Some((0, 0)), ..part(100, 1) })),
                Rescan]),
            vec![(Some(100), uid_change((999, 999), (0, 0)), ByRescan)], vec![(100, Event)], 0),
        ("known child read in part, a readable exe contradicts it: a missed exec",
            with(known_child(), vec![
                Listed(100, incomplete(Unreadable::Status, Liveness::Running, Partial { exe: Some("/bin/sh".into()), ..part(100, 1) })),
                Rescan]),
            vec![(Some(100), Reason::ExecAfterSeal, ByRescan)], vec![(100, Event)], 0),
        ("pid reused by another process (another start time): judged as new",
            with(known_child(), vec![Proc(reused()), Rescan]),
            vec![(Some(100), Reason::Unlisted, ByRescan)], vec![(100, Event)], 0),
        ("pid reused, the new process unreadable: not given the old identity",
            with(known_child(), vec![
                Listed(100, incomplete(Unreadable::Exe, Liveness::Running, Partial { start_time: Some(7), ..part(100, 1) })),
                Rescan]),
            vec![(Some(100), Reason::Unreadable(Unreadable::Exe), ByRescan)], vec![(100, Event)], retries),
        ("never seen, a zombie: only noted",
            vec![Listed(140, zombie(140)), Rescan], vec![], vec![(140, ByRescan)], 0),
        ("never seen, exiting: runs no code, only noted",
            vec![Listed(141, exiting(141)), Rescan], vec![], vec![(141, ByRescan)], 0),
        ("never seen, alive, exe unreadable after every re-read: halts as unknown",
            vec![Listed(150, unreadable(150)), Rescan],
            vec![(Some(150), Reason::Unreadable(Unreadable::Exe), ByRescan)], vec![], retries),
        ("never seen, alive, nothing readable: halts as unknown",
            vec![Listed(151, incomplete(Unreadable::Stat, Liveness::Unknown, Partial::new(151))), Rescan],
            vec![(Some(151), Reason::Unreadable(Unreadable::Stat), ByRescan)], vec![], retries),
        ("a halt on an unknown process is reported once, re-read once",
            vec![Listed(150, unreadable(150)), Rescan, Rescan],
            vec![(Some(150), Reason::Unreadable(Unreadable::Exe), ByRescan)], vec![], retries),
        ("never seen, readable again on the re-read: judged on the record (allowed)",
            vec![Listed(152, unreadable(152)), Then(152, Read::Complete(server(152, 1))), Rescan],
            vec![], vec![(152, ByRescan)], 1),
        ("never seen, readable again on the last re-read: judged on the record (forbidden)",
            vec![Listed(153, unreadable(153)), Then(153, unreadable(153)), Then(153, Read::Complete(sh(153, 1))), Rescan],
            vec![(Some(153), Reason::Unlisted, ByRescan)], vec![], 2),
        ("never seen, gone on the re-read: dropped",
            vec![Listed(154, unreadable(154)), Then(154, Read::Gone), Rescan], vec![], vec![], 1),
        ("never seen, a zombie on the re-read: only noted",
            vec![Listed(155, unreadable(155)), Then(155, zombie(155)), Rescan], vec![], vec![(155, ByRescan)], 1),
        ("fork, the child exiting before it is read: its parent's copy",
            vec![Then(103, exiting(103)), fork(1, 103)], vec![], vec![(103, Event)], 0),
        // The parent's copy must not carry the parent's start time: the
        // child's own (readable) one says it is the same process.
        ("fork, the child exiting, its start time not its parent's: its parent's copy",
            vec![Then(103, incomplete(Unreadable::Exe, Liveness::Exiting, Partial { start_time: Some(9), ..part(103, 1) })),
                 fork(1, 103)],
            vec![], vec![(103, Event)], 0),
        ("fork, the child a zombie before it is read: its parent's copy",
            vec![Then(103, incomplete(Unreadable::Exe, Liveness::Zombie, Partial { start_time: Some(9), ..part(103, 1) })),
                 fork(1, 103)],
            vec![], vec![(103, Event)], 0),
        ("fork, the child read in part shows another exe: the exec raced ahead",
            vec![Then(104, incomplete(Unreadable::Status, Liveness::Running, Partial { exe: Some("/bin/sh".into()), ..part(104, 1) })),
                 fork(1, 104)],
            vec![(Some(104), Reason::ExecAfterSeal, Event)], vec![], 0),
        ("fork, then the rescan reads the child exiting: no halt",
            vec![Proc(server(105, 1)), fork(1, 105), Listed(105, exiting(105)), Rescan, Ev(ProcEvent::Exit { pid: 105, tgid: 105 }),
                 Gone(105), Rescan],
            vec![], vec![(105, Event)], 0),
        ("exec of a known child, its new image unreadable: still an exec",
            with(known_child(), vec![Then(100, exiting(100)), exec(100)]),
            vec![(Some(100), Reason::ExecAfterSeal, Event)], vec![(100, Event)], 0),
        ("uid event of a pid never seen and gone: dropped",
            vec![Ev(ProcEvent::Uid { pid: 160, tgid: 160, ruid: 0, euid: 0 })], vec![], vec![], 1),
        ("uid event of a pid never seen, alive and unreadable: halts",
            vec![Listed(161, unreadable(161)), Ev(ProcEvent::Uid { pid: 161, tgid: 161, ruid: 0, euid: 0 })],
            vec![(Some(161), Reason::Unreadable(Unreadable::Exe), Event)], vec![], retries),
    ];
    for (name, steps, halts, notes, rereads) in cases {
        let (seen, stats) = run_case(sealed_table(), OnEventLoss::Halt, &steps);
        assert_eq!(seen, Seen { halts, notes }, "case: {name}");
        assert_eq!(stats.rereads, rereads, "case: {name}");
    }
}

/// Before the seal nothing is judged, so nothing is re-read; at the seal a
/// process still unreadable is.
#[test]
fn unreadable_before_the_seal_is_judged_at_the_seal() {
    let steps = [Listed(150, unreadable(150)), Rescan];
    let (seen, stats) = run_case(boot_table(), OnEventLoss::Halt, &steps);
    assert_eq!((seen.halts.len(), stats.rereads), (0, 0));
    let steps = [
        Listed(150, unreadable(150)),
        Rescan,
        Proc(server(1, 0)),
        exec(1),
    ];
    let (seen, stats) = run_case(boot_table(), OnEventLoss::Halt, &steps);
    assert_eq!(
        seen.halts,
        vec![(
            Some(150),
            Reason::Unreadable(Unreadable::Exe),
            DetectedBy::Seal
        )]
    );
    assert_eq!(stats.rereads, u64::from(MAX_READ_ATTEMPTS - 1));
}

#[test]
fn lost_events_under_rescan_rescan() {
    let (seen, stats) = run_case(sealed_table(), OnEventLoss::Rescan, &[Lost]);
    assert_eq!(
        seen,
        Seen {
            halts: vec![],
            notes: vec![]
        }
    );
    assert_eq!((stats.scans, stats.lost), (2, 1));
    // The rescan is what finds an intruder the lost events hid.
    let sh = ProcInfo::new(101, 1, SERVER_UID, "/bin/sh");
    let (seen, _) = run_case(sealed_table(), OnEventLoss::Rescan, &[Proc(sh), Lost]);
    assert_eq!(
        seen.halts,
        vec![(Some(101), Reason::Unlisted, DetectedBy::Rescan)]
    );
}

#[test]
fn lost_events_before_seal_rescan_even_under_halt() {
    let (seen, stats) = run_case(boot_table(), OnEventLoss::Halt, &[Lost]);
    assert!(seen.halts.is_empty());
    assert_eq!(stats.scans, 2);
}

#[test]
fn seal_rules_table() {
    let sh = ProcInfo::new(77, 1, 0, "/bin/sh");
    #[rustfmt::skip]
    let cases: Vec<SealCase> = vec![
        ("nothing judged before the seal",
            boot_table(), vec![Proc(sh.clone()), fork(1, 77), exec(77), Rescan], false, vec![]),
        ("PID 1 execs the server: sealed by the event",
            boot_table(), vec![Proc(server(1, 0)), exec(1)], true, vec![]),
        ("PID 1 execs the server: sealed by a rescan",
            boot_table(), vec![Proc(server(1, 0)), Rescan], true, vec![]),
        // Seen on the appliance: the 500 ms rescan noticed the exec before
        // its event was read. That event is the seal, not an exec after it.
        ("the seal's own exec event arrives after a rescan sealed",
            boot_table(), vec![Proc(server(1, 0)), Rescan, exec(1)], true, vec![]),
        ("a second exec of PID 1 after that halts",
            boot_table(), vec![Proc(server(1, 0)), Rescan, exec(1), exec(1)], true,
            vec![(Some(1), Reason::ExecAfterSeal, DetectedBy::Event)]),
        ("a second exec of PID 1 after an event seal halts",
            boot_table(), vec![Proc(server(1, 0)), exec(1), exec(1)], true,
            vec![(Some(1), Reason::ExecAfterSeal, DetectedBy::Event)]),
        ("PID 1 execs another binary: not sealed",
            boot_table(), vec![Proc(ProcInfo::new(1, 0, SERVER_UID, "/bin/sh")), exec(1)], false, vec![]),
        ("PID 1 execs the server as root: not sealed",
            boot_table(), vec![Proc(ProcInfo::new(1, 0, 0, SERVER)), exec(1)], false, vec![]),
        ("a process present before the seal halts at the seal",
            { let mut t = boot_table(); t.push(sh.clone()); t },
            vec![Proc(server(1, 0)), exec(1)], true, vec![(Some(77), Reason::Unlisted, DetectedBy::Seal)]),
        ("after the seal, enforcement is on",
            boot_table(), vec![Proc(server(1, 0)), exec(1), Proc(sh.clone()), fork(1, 77)], true,
            vec![(Some(77), Reason::ExecAfterSeal, DetectedBy::Event)]),
    ];
    for (name, initial, steps, sealed, halts) in cases {
        let source = FakeProcessSource::with(initial.clone());
        let mut engine = Engine::new(
            policy(OnEventLoss::Halt),
            source,
            RecordingEnforcer::default(),
        );
        engine.start().unwrap();
        assert!(!engine.is_sealed(), "case: {name}");
        let (seen, _) = run_case(initial, OnEventLoss::Halt, &steps);
        assert_eq!(seen.halts, halts, "case: {name}");
        // Replay to read the seal state.
        for step in &steps {
            match step {
                Proc(p) => engine.source_mut().insert(p.clone()),
                Gone(pid) => engine.source_mut().remove(*pid),
                Ev(ev) => engine.handle(&SourceEvent::Event(ev.clone())).unwrap(),
                Lost => engine.handle(&SourceEvent::Lost).unwrap(),
                Rescan => engine.rescan().unwrap(),
                _ => unreachable!(),
            }
        }
        assert_eq!(engine.is_sealed(), sealed, "case: {name}");
    }
}

#[test]
fn seal_on_start_judges_the_first_snapshot() {
    let mut p = policy(OnEventLoss::Halt);
    p.seal_on = SealOn::Start;
    let mut table = sealed_table();
    table.push(ProcInfo::new(66, 1, 0, "/bin/sh"));
    let mut engine = Engine::new(
        p,
        FakeProcessSource::with(table),
        RecordingEnforcer::default(),
    );
    engine.start().unwrap();
    let halts = &engine.enforcer().halts;
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0].path, DetectedBy::Snapshot);
    assert_eq!(halts[0].process.as_ref().unwrap().pid, 66);
}

#[test]
fn descendants_scope_ignores_the_rest_of_the_machine() {
    let mut p = policy(OnEventLoss::Halt);
    p.scope = Scope::Descendants(1000);
    p.root = RootRule {
        pid: 1000,
        exe: SERVER.into(),
        uid: SERVER_UID,
    };
    p.seal_on = SealOn::Start;
    p.governor_pid = None;
    let table = vec![
        ProcInfo::new(1, 0, 0, "/sbin/init"),
        ProcInfo::new(500, 1, 0, "/usr/sbin/sshd"),
        server(1000, 1),
        ProcInfo::new(1001, 1000, SERVER_UID, SERVER),
    ];
    let mut engine = Engine::new(
        p,
        FakeProcessSource::with(table),
        RecordingEnforcer::default(),
    );
    engine.start().unwrap();
    assert_eq!(engine.len(), 2);
    engine
        .source_mut()
        .insert(ProcInfo::new(501, 500, 0, "/bin/bash"));
    engine
        .handle(&SourceEvent::Event(ProcEvent::Fork {
            parent_pid: 500,
            parent_tgid: 500,
            child_pid: 501,
            child_tgid: 501,
        }))
        .unwrap();
    engine
        .handle(&SourceEvent::Event(ProcEvent::Exec {
            pid: 501,
            tgid: 501,
        }))
        .unwrap();
    engine.rescan().unwrap();
    assert!(engine.enforcer().halts.is_empty());
    engine
        .source_mut()
        .insert(ProcInfo::new(1002, 1001, SERVER_UID, "/bin/sh"));
    engine.rescan().unwrap();
    assert_eq!(engine.enforcer().halts.len(), 1);
    assert_eq!(
        engine.enforcer().halts[0].process.as_ref().unwrap().pid,
        1002
    );
}

#[test]
fn run_loop_serves_events_and_rescans() {
    let mut p = policy(OnEventLoss::Halt);
    p.rescan_interval = Duration::from_millis(1);
    let mut engine = Engine::new(
        p,
        FakeProcessSource::with(sealed_table()),
        RecordingEnforcer::default(),
    );
    let mut events = FakeEventSource::default();
    events.push(SourceEvent::Event(ProcEvent::Fork {
        parent_pid: 1,
        parent_tgid: 1,
        child_pid: 100,
        child_tgid: 100,
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    engine
        .run(&mut events, |e| {
            e.stats().scans < 4 && std::time::Instant::now() < deadline
        })
        .unwrap();
    assert!(engine.stats().scans >= 4);
    assert_eq!(engine.stats().events, 1);
    assert_eq!(engine.enforcer().notes.len(), 1);
}

#[test]
fn snapshot_failure_is_an_error() {
    let mut source = FakeProcessSource::with(sealed_table());
    source.fail_next_snapshot = true;
    let mut engine = Engine::new(
        policy(OnEventLoss::Halt),
        source,
        RecordingEnforcer::default(),
    );
    assert!(matches!(engine.start(), Err(Error::Injected("snapshot"))));
}

#[test]
fn enforcer_failure_propagates() {
    let enforcer = RecordingEnforcer {
        fail_halt: true,
        ..RecordingEnforcer::default()
    };
    let mut engine = Engine::new(
        policy(OnEventLoss::Halt),
        FakeProcessSource::with(sealed_table()),
        enforcer,
    );
    engine.start().unwrap();
    assert!(engine.handle(&SourceEvent::Lost).is_err());
}

fn hostile() -> ProcInfo {
    let mut p = ProcInfo::new(4242, 1, 0, "/tmp/x\ny");
    p.comm = b"a) b\nprocwatch: allow".to_vec();
    p.cmdline = b"sh\0-c\0echo \"hi\"\x1b[2J\0".to_vec();
    p
}

#[test]
fn machine_enforcer_halts_with_one_line_then_sync_then_halt() {
    let verdict = Verdict {
        decision: Decision::Halt(Reason::ExecAfterSeal),
        process: Some(hostile()),
        path: DetectedBy::Event,
    };
    let cases = [
        (FailCalls::default(), vec!["line", "sync", "halt"], true),
        (
            FailCalls {
                halt: true,
                ..FailCalls::default()
            },
            vec!["line", "sync", "halt", "line", "power_off"],
            true,
        ),
        (
            FailCalls {
                halt: true,
                power_off: true,
                ..FailCalls::default()
            },
            vec!["line", "sync", "halt", "line", "power_off"],
            false,
        ),
    ];
    for (fail, expected, ok) in cases {
        let mut enforcer = MachineEnforcer::new(FakeMachine {
            calls: vec![],
            fail,
        });
        assert_eq!(enforcer.halt(&verdict).is_ok(), ok);
        let calls: Vec<&str> = enforcer
            .machine()
            .calls
            .iter()
            .map(|c| match c {
                Call::ConsoleLine(l) => {
                    assert!(!l.contains('\n'));
                    "line"
                }
                Call::Sync => "sync",
                Call::Halt => "halt",
                Call::PowerOff => "power_off",
                Call::PetWatchdog => "pet",
            })
            .collect();
        assert_eq!(calls, expected);
    }
}

#[test]
fn console_lines_snapshot() {
    let lines: Vec<String> = [
        Verdict {
            decision: Decision::Halt(Reason::ExecAfterSeal),
            process: Some(hostile()),
            path: DetectedBy::Event,
        },
        Verdict {
            decision: Decision::AllowLogged(Reason::AllowedChild {
                rule: "server fork (BGSAVE/AOF rewrite)".into(),
            }),
            process: Some(server(100, 1)),
            path: DetectedBy::Event,
        },
        Verdict {
            decision: Decision::Halt(Reason::EventsLost),
            process: None,
            path: DetectedBy::EventLoss,
        },
        Verdict {
            decision: Decision::Halt(Reason::PtraceAttach {
                traced: 1,
                tracer: 100,
            }),
            process: Some(server(100, 1)),
            path: DetectedBy::Event,
        },
        Verdict {
            decision: Decision::Halt(Reason::Unlisted),
            process: Some(ProcInfo::kernel_thread(9, 2, "odd")),
            path: DetectedBy::Rescan,
        },
        Verdict {
            decision: Decision::Halt(Reason::Unreadable(Unreadable::Exe)),
            process: Some(part(150, 1).as_unknown()),
            path: DetectedBy::Rescan,
        },
        Verdict {
            decision: Decision::Halt(too_many(2)),
            process: Some(server(101, 1)),
            path: DetectedBy::Event,
        },
        Verdict {
            decision: Decision::Halt(Reason::ChildTooOld {
                rule: FORK_RULE.into(),
                age: Duration::from_micros(61_234_567),
                max: Duration::from_secs(60),
            }),
            process: Some(server(100, 1)),
            path: DetectedBy::Rescan,
        },
        Verdict {
            decision: Decision::Halt(Reason::ChildTooOld {
                rule: "r".into(),
                age: Duration::from_millis(2500),
                max: Duration::from_millis(1500),
            }),
            process: Some(server(100, 1)),
            path: DetectedBy::Rescan,
        },
        Verdict {
            decision: Decision::Halt(alarm("fork refused (clone3)")),
            process: Some(server(1, 0)),
            path: DetectedBy::Alarm,
        },
        // Alarm text is escaped: one line, and no ` [` to end the reason.
        Verdict {
            decision: Decision::AllowLogged(Reason::Alarm {
                source: "sec\\comp".into(),
                what: "x [event]: pid=1\nprocwatch: HALT \"y\"".into(),
            }),
            process: Some(ProcInfo::unknown(4000, 0)),
            path: DetectedBy::Alarm,
        },
    ]
    .iter()
    .map(render_verdict)
    .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn single_server_policy_is_design_section_5() {
    let p = policy(OnEventLoss::Halt);
    assert_eq!(p.root.pid, 1);
    assert_eq!(p.governor_pid, Some(GOVERNOR));
    assert!(p.allow_kernel_threads);
    assert_eq!(p.children.len(), 1);
    assert!(p.children[0].log && !p.children[0].nested);
    assert_eq!(
        (p.children[0].max_alive, p.children[0].max_lifetime),
        (Some(1), None)
    );
    assert_eq!(
        p.sealed,
        SealedRules {
            halt_on_exec: true,
            halt_on_uid_change: true,
            halt_on_ptrace_attach: true
        }
    );
    assert_eq!(p.seal_on, SealOn::RootExec);
    assert_eq!(p.scope, Scope::Machine);
}

#[test]
fn setuid_rules_table() {
    let nginx = "/usr/sbin/nginx";
    let mut p = policy(OnEventLoss::Halt);
    p.root = RootRule {
        pid: 1,
        exe: nginx.into(),
        uid: 0,
    };
    p.children = vec![ChildRule {
        label: "worker".into(),
        exe: nginx.into(),
        uids: vec![0],
        setuid_to: vec![33],
        nested: false,
        log: false,
        max_alive: None,
        max_lifetime: None,
    }];
    let worker = ProcInfo::new(10, 1, 0, nginx);
    let mut dropped = worker.clone();
    dropped.uid = 33;
    dropped.euid = 33;
    let cases = [
        ("worker drops to 33", &worker, (33, 33), false),
        (
            "worker drops only euid (could regain root)",
            &worker,
            (0, 33),
            true,
        ),
        ("worker switches to 34", &worker, (34, 34), true),
        ("dropped worker regains root", &dropped, (0, 0), true),
        (
            "master changes uid",
            &ProcInfo::new(1, 0, 0, nginx),
            (33, 33),
            true,
        ),
    ];
    for (name, before, (ruid, euid), halts) in cases {
        assert_eq!(
            p.judge_uid_change(before, ruid, euid, false).is_halt(),
            halts,
            "{name}"
        );
    }
    assert_eq!(
        p.judge_process(&dropped, History::default(), false),
        Decision::Allow
    );
}

/// The seal prints the userspace table once (e2e case "two processes" reads
/// it from the console), whichever path sealed.
#[test]
fn the_seal_prints_the_userspace_table_once() {
    for steps in [
        vec![Proc(server(1, 0)), exec(1), Rescan],
        vec![Proc(server(1, 0)), Rescan, exec(1), Rescan],
    ] {
        let source = FakeProcessSource::with(boot_table());
        let machine = FakeMachine {
            calls: vec![],
            fail: FailCalls::default(),
        };
        let mut engine = Engine::new(
            policy(OnEventLoss::Halt),
            source,
            MachineEnforcer::new(machine),
        );
        engine.start().unwrap();
        for step in &steps {
            match step {
                Proc(p) => engine.source_mut().insert(p.clone()),
                Ev(ev) => engine.handle(&SourceEvent::Event(ev.clone())).unwrap(),
                Rescan => engine.rescan().unwrap(),
                _ => unreachable!(),
            }
        }
        let lines: Vec<String> = engine
            .enforcer()
            .machine()
            .calls
            .iter()
            .filter_map(|c| match c {
                crate::fake::Call::ConsoleLine(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines,
            [
                format!("procwatch: seal: pid=1 ppid=0 uid={SERVER_UID}/{SERVER_UID} exe=\"{SERVER}\" comm=\"valkey-server\" cmdline=\"\""),
                format!("procwatch: seal: pid={GOVERNOR} ppid=1 uid=0/0 exe=\"{INIT}\" comm=\"init\" cmdline=\"\""),
                "procwatch: seal: end (2 userspace processes)".to_string(),
            ],
            "{steps:?}"
        );
    }
}

const FORK_RULE: &str = "server fork (BGSAVE/AOF rewrite)";
/// The appliance's bound in these cases: 60 s, 6000 fake clock ticks.
const BOUND_SECS: u64 = 60;
const BOUND_TICKS: u64 = BOUND_SECS * crate::fake::FAKE_TICKS_PER_SECOND;
/// The fake clock at the start of a case: 1000 s after boot.
const T0: u64 = 100_000;

/// The appliance's bounded policy: one server child at a time, living at
/// most [`BOUND_SECS`].
fn bounded_policy() -> Policy {
    let mut p = policy(OnEventLoss::Halt);
    p.children[0].max_alive = Some(1);
    p.children[0].max_lifetime = Some(Duration::from_secs(BOUND_SECS));
    p
}

/// A plain fork of the server by PID 1, started at `start` ticks.
fn child(pid: u32, start: u64) -> ProcInfo {
    let mut p = server(pid, 1);
    p.start_time = start;
    p
}

fn too_many(alive: u32) -> Reason {
    Reason::TooManyChildren {
        rule: FORK_RULE.into(),
        alive,
        max: 1,
    }
}

fn too_old(age_ticks: u64) -> Reason {
    Reason::ChildTooOld {
        rule: FORK_RULE.into(),
        age: Duration::from_millis(age_ticks * 10),
        max: Duration::from_secs(BOUND_SECS),
    }
}

/// Issue 12's forks of the server: at most one child at a time, living at
/// most the bound; the order of exit and fork events; late first
/// sightings; what a BGSAVE child never does.
#[test]
fn fork_bounds_table() {
    use DetectedBy::{Event, Rescan as ByRescan};
    let exit = |pid| Ev(ProcEvent::Exit { pid, tgid: pid });
    let born = |pid, start| vec![Proc(child(pid, start)), fork(1, pid)];
    let ended = |pid, liveness, start| {
        incomplete(
            Unreadable::Exe,
            liveness,
            Partial {
                start_time: Some(start),
                ..part(pid, 1)
            },
        )
    };
    let with = |mut steps: Vec<Step>, more: Vec<Step>| {
        steps.insert(0, Clock(T0));
        steps.extend(more);
        steps
    };
    #[rustfmt::skip]
    let cases: Vec<SealedCase> = vec![
        ("one child: allowed and logged",
            with(born(100, T0), vec![Rescan]), vec![], vec![(100, Event)]),
        ("a second concurrent child halts, naming the newcomer",
            with(born(100, T0), born(101, T0 + 50)),
            vec![(Some(101), too_many(2), Event)], vec![(100, Event)]),
        ("a third is one more still",
            with(born(100, T0), [born(101, T0 + 50), born(102, T0 + 60)].concat()),
            vec![(Some(101), too_many(2), Event), (Some(102), too_many(3), Event)], vec![(100, Event)]),
        ("the child exits, then the next fork: no halt",
            with(born(100, T0), vec![exit(100), Gone(100), Proc(child(101, T0 + 50)), fork(1, 101)]),
            vec![], vec![(100, Event), (101, Event)]),
        // The kernel sends a child's exit event before its parent can reap
        // it, so it comes first; should the table still hold the old child
        // (its exit not yet handled), the count reads it again.
        ("the next fork's event before the last child's exit event: no halt",
            with(born(100, T0), vec![Gone(100), Proc(child(101, T0 + 50)), fork(1, 101), exit(100)]),
            vec![], vec![(100, Event), (101, Event)]),
        ("the last child a zombie when the next fork comes: no halt",
            with(born(100, T0), vec![Listed(100, ended(100, Liveness::Zombie, T0)), Proc(child(101, T0 + 50)), fork(1, 101)]),
            vec![], vec![(100, Event), (101, Event)]),
        ("the last child exiting, read so by a rescan, when the next fork comes: no halt",
            with(born(100, T0), vec![Listed(100, ended(100, Liveness::Exiting, T0)), Rescan, Proc(child(101, T0 + 50)), fork(1, 101), Rescan]),
            vec![], vec![(100, Event), (101, Event)]),
        ("the table's last child is another process now (pid reused): no halt",
            with(born(100, T0), vec![Proc(ProcInfo::new(100, 2, 0, "/x")), Then(100, Read::Complete(child(100, T0 + 70))),
                Proc(child(101, T0 + 50)), fork(1, 101)]),
            vec![], vec![(100, Event), (101, Event)]),
        ("two children found by a rescan (events lost): the newer halts",
            with(vec![Proc(child(100, T0)), Proc(child(101, T0 + 50))], vec![Rescan, Rescan]),
            vec![(Some(101), too_many(2), ByRescan)], vec![(100, ByRescan)]),
        ("two children by a rescan, the newer with the lower pid (pid wrap): the newer halts",
            with(vec![Proc(child(100, T0 + 50)), Proc(child(101, T0))], vec![Rescan]),
            vec![(Some(100), too_many(2), ByRescan)], vec![(101, ByRescan)]),
        ("a child of the child (a grandchild) halts",
            with(born(100, T0), vec![Proc(ProcInfo { start_time: T0 + 50, ..server(101, 100) }), fork(100, 101)]),
            vec![(Some(101), Reason::Unlisted, Event)], vec![(100, Event)]),
        ("exec in the child halts",
            with(born(100, T0), vec![Proc(ProcInfo { start_time: T0, ..ProcInfo::new(100, 1, SERVER_UID, "/bin/sh") }), exec(100)]),
            vec![(Some(100), Reason::ExecAfterSeal, Event)], vec![(100, Event)]),
        ("uid change in the child halts",
            with(born(100, T0), vec![Ev(ProcEvent::Uid { pid: 100, tgid: 100, ruid: 0, euid: 0 })]),
            vec![(Some(100), uid_change((999, 999), (0, 0)), Event)], vec![(100, Event)]),
        ("a child at the bound is allowed",
            with(born(100, T0), vec![Clock(T0 + BOUND_TICKS), Rescan]), vec![], vec![(100, Event)]),
        ("a child older than the bound halts on the next rescan",
            with(born(100, T0), vec![Clock(T0 + BOUND_TICKS), Rescan, Clock(T0 + BOUND_TICKS + 1), Rescan, Rescan]),
            vec![(Some(100), too_old(BOUND_TICKS + 1), ByRescan)], vec![(100, Event)]),
        ("a child first seen late by a rescan is judged by its real age",
            with(vec![Proc(child(100, T0 - BOUND_TICKS - 100))], vec![Rescan]),
            vec![(Some(100), too_old(BOUND_TICKS + 100), ByRescan)], vec![]),
        ("a child first seen late by its fork event is judged by its real age",
            with(born(100, T0 - 2 * BOUND_TICKS), vec![]),
            vec![(Some(100), too_old(2 * BOUND_TICKS), Event)], vec![]),
        ("a child older than the bound that has exited (a zombie) is not judged",
            with(born(100, T0), vec![Listed(100, ended(100, Liveness::Zombie, T0)), Clock(T0 + 2 * BOUND_TICKS), Rescan]),
            vec![], vec![(100, Event)]),
        // Its record is its parent's copy: the server's start time (0)
        // would make it 1000 s old.
        ("a fork gone before it is read is not as old as its parent",
            with(vec![fork(1, 103)], vec![]), vec![], vec![(103, Event)]),
    ];
    for (name, steps, halts, notes) in cases {
        let (engine, _) = run_engine(bounded_policy(), sealed_table(), &steps);
        assert_eq!(seen(&engine), Seen { halts, notes }, "case: {name}");
    }
}

/// What a second child costs: the count reads the candidates again only
/// when the bound is exceeded.
#[test]
fn the_count_reads_again_only_beyond_the_bound() {
    let steps = [
        Clock(T0),
        Proc(child(100, T0)),
        fork(1, 100),
        Rescan,
        Rescan,
    ];
    let (mut engine, _) = run_engine(bounded_policy(), sealed_table(), &steps);
    // The fork event's read only.
    assert_eq!(engine.source_mut().reads.get(&100), Some(&1));
    assert_eq!(engine.stats().halts, 0);
    let steps = [
        Clock(T0),
        Proc(child(100, T0)),
        fork(1, 100),
        Proc(child(101, T0 + 1)),
        fork(1, 101),
    ];
    let (mut engine, _) = run_engine(bounded_policy(), sealed_table(), &steps);
    let reads = &engine.source_mut().reads;
    assert_eq!((reads.get(&100), reads.get(&101)), (Some(&2), Some(&2)));
    assert_eq!(engine.stats().halts, 1);
}

/// Without a clock in the source, a child's age counts from when the
/// engine first saw it: no false halt of a child first seen now.
#[test]
fn without_a_clock_age_counts_from_first_sight() {
    let steps = [Proc(child(100, 0)), fork(1, 100), Rescan];
    let (engine, _) = run_engine(bounded_policy(), sealed_table(), &steps);
    assert_eq!(seen(&engine).halts, vec![]);
    // A bound of 0 shows the age measured: the time since the fork event.
    let mut p = bounded_policy();
    p.children[0].max_lifetime = Some(Duration::ZERO);
    let (engine, _) = run_engine(p, sealed_table(), &[Proc(child(100, 0)), fork(1, 100)]);
    let halts = seen(&engine).halts;
    assert_eq!(halts.len(), 1, "{halts:?}");
    assert!(
        matches!(&halts[0].1, Reason::ChildTooOld { age, .. } if *age < Duration::from_secs(1)),
        "{halts:?}"
    );
}

/// "Two processes, forever": with no child rule, any new process halts,
/// a plain fork of the server included.
#[test]
fn strict_policy_halts_any_fork() {
    let mut p = policy(OnEventLoss::Halt);
    p.children.clear();
    let (engine, _) = run_engine(
        p.clone(),
        sealed_table(),
        &[Proc(child(100, 0)), fork(1, 100)],
    );
    assert_eq!(
        seen(&engine).halts,
        vec![(Some(100), Reason::Unlisted, DetectedBy::Event)]
    );
    let (engine, _) = run_engine(p, sealed_table(), &[Proc(child(100, 0)), Rescan]);
    assert_eq!(
        seen(&engine).halts,
        vec![(Some(100), Reason::Unlisted, DetectedBy::Rescan)]
    );
}

fn alarm(what: &str) -> Reason {
    Reason::Alarm {
        source: ALARM.into(),
        what: what.into(),
    }
}

/// Alarm reports halt at once, before the seal as after it, naming the
/// process as read now (or what is known of it, or an unknown one).
#[test]
fn alarms_table() {
    use DetectedBy::Alarm as ByAlarm;
    type AlarmCase = (&'static str, Vec<ProcInfo>, Vec<Step>, Vec<Halt>, Vec<Note>);
    #[rustfmt::skip]
    let cases: Vec<AlarmCase> = vec![
        ("an alarm before the seal halts",
            boot_table(), vec![Alarm(1, "fork refused", true)],
            vec![(Some(1), alarm("fork refused"), ByAlarm)], vec![]),
        ("an alarm after the seal halts",
            sealed_table(), vec![Alarm(1, "fork refused", true)],
            vec![(Some(1), alarm("fork refused"), ByAlarm)], vec![]),
        ("an alarm about a process that cannot be read still halts",
            sealed_table(), vec![Alarm(4000, "fork refused", true)],
            vec![(Some(4000), alarm("fork refused"), ByAlarm)], vec![]),
        ("each report is one verdict",
            sealed_table(), vec![Alarm(1, "a", true), Alarm(1, "b", true)],
            vec![(Some(1), alarm("a"), ByAlarm), (Some(1), alarm("b"), ByAlarm)], vec![]),
        ("a note is logged, not halted",
            sealed_table(), vec![Alarm(1, "would refuse fork", false)], vec![], vec![(1, ByAlarm)]),
        ("a note before the seal too",
            boot_table(), vec![Alarm(1, "would refuse fork", false)], vec![], vec![(1, ByAlarm)]),
    ];
    for (name, initial, steps, halts, notes) in cases {
        let (engine, stats) = run_engine(policy(OnEventLoss::Halt), initial, &steps);
        assert_eq!(seen(&engine), Seen { halts, notes }, "case: {name}");
        let reports = steps.iter().filter(|s| matches!(s, Alarm(..))).count();
        assert_eq!(
            stats.alarms,
            u64::try_from(reports).unwrap(),
            "case: {name}"
        );
    }
    // The verdict names the process as read now; one that cannot be read is
    // an unknown process with that pid.
    let (engine, _) = run_engine(
        policy(OnEventLoss::Halt),
        sealed_table(),
        &[Alarm(1, "x", true), Alarm(4000, "y", true)],
    );
    let halts = &engine.enforcer().halts;
    assert_eq!(halts[0].process, Some(server(1, 0)));
    assert_eq!(halts[1].process, Some(ProcInfo::unknown(4000, 0)));
}
