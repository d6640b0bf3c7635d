//! Parser tests: fixtures written here (real kernel text, hostile names,
//! truncations), round trips, and properties.

use proptest::prelude::*;

use crate::model::ProcEvent;
use crate::parse::connector::{
    control_message, encode_event, parse_datagram, parse_proc_event, Message,
};
use crate::parse::input::{
    encode_input_event, parse_input_events, InputEvent, InputLayout, EV_KEY, KEY_POWER,
};
use crate::parse::proc::{
    bounded_cmdline, encode_dirents, first_dirent_name, parse_dirent_pids, parse_stat, parse_status,
};

/// `/proc/self/stat` of a `cat` on Linux 6.1, fields 1..52.
const CAT_STAT: &[u8] = b"4242 (cat) R 4100 4242 4100 34816 4242 4194304 98 0 0 0 0 0 0 0 20 0 1 0 123456 5844992 250 18446744073709551615 94 95 96 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 97 98 99 100 101 102 103 0\n";

/// kthreadd: flags 0x208040 (PF_KTHREAD | PF_NOFREEZE | PF_FORKNOEXEC).
const KTHREADD_STAT: &[u8] = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 1 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

fn stat_line(pid: u32, comm: &[u8], state: u8, ppid: u32, flags: u64, start: u64) -> Vec<u8> {
    let mut v = format!("{pid} (").into_bytes();
    v.extend_from_slice(comm);
    v.extend_from_slice(
        format!(") {} {ppid} 1 1 0 -1 {flags} 0 0 0 0 7 8 0 0 20 0 3 0 {start} 100 10 18446744073709551615\n", char::from(state))
            .as_bytes(),
    );
    v
}

#[test]
fn stat_fixtures() {
    let s = parse_stat(CAT_STAT).unwrap();
    assert_eq!(
        (s.pid, s.comm.as_slice(), s.state, s.ppid),
        (4242, &b"cat"[..], b'R', 4100)
    );
    assert_eq!(
        (s.flags, s.utime, s.stime, s.num_threads, s.start_time),
        (4_194_304, 0, 0, 1, 123_456)
    );
    assert!(!s.is_kernel_thread());
    let k = parse_stat(KTHREADD_STAT).unwrap();
    assert!(k.is_kernel_thread());
    assert_eq!((k.pid, k.ppid, k.stime), (2, 0, 3));
}

#[test]
fn stat_hostile_comm_table() {
    let cases: &[&[u8]] = &[
        b"a b",
        b")",
        b") R 1 2 3",
        b"x) S 1 1 1 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1",
        b"new\nline",
        b"((((",
        b"))))",
        b"",
        b"\xff\xfe\x01",
        b"evil) Z 0",
    ];
    for &comm in cases {
        let line = stat_line(77, comm, b'S', 1, 0, 99);
        let s = parse_stat(&line).unwrap_or_else(|e| panic!("{comm:?}: {e}"));
        assert_eq!(s.comm, comm, "{comm:?}");
        assert_eq!(
            (s.pid, s.ppid, s.state, s.flags, s.start_time),
            (77, 1, b'S', 0, 99),
            "{comm:?}"
        );
        assert!(
            !s.is_kernel_thread(),
            "a name cannot fake PF_KTHREAD: {comm:?}"
        );
    }
}

#[test]
fn stat_truncated_and_garbage_are_errors() {
    for cut in 0..CAT_STAT.len() {
        let truncated = &CAT_STAT[..cut];
        // Cutting before starttime is an error; never a panic.
        let r = parse_stat(truncated);
        let starttime_end = CAT_STAT.windows(7).position(|w| w == b"123456 ").unwrap() + 6;
        if cut <= starttime_end + 1 {
            assert!(r.is_err(), "cut at {cut} parsed: {r:?}");
        }
    }
    for bad in [
        &b""[..],
        b"(",
        b")(",
        b"1 (x)",
        b"x (y) S 1",
        b"1 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1",
        b"1 (x) S -1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1",
    ] {
        assert!(parse_stat(bad).is_err(), "{bad:?}");
    }
}

const STATUS: &[u8] = b"Name:\tvalkey-server\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\nNgid:\t0\nPid:\t1\nPPid:\t0\nTracerPid:\t0\nUid:\t999\t999\t999\t999\nGid:\t999\t999\t999\t999\nFDSize:\t64\nGroups:\t\nVmPeak:\t  140000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    9000 kB\nThreads:\t7\nSigQ:\t0/7823\n";

#[test]
fn status_fixtures() {
    let s = parse_status(STATUS).unwrap();
    assert_eq!(s.uids, [999; 4]);
    assert_eq!(s.threads, Some(7));
    assert_eq!(s.vm_hwm_kib, Some(9876));
    // The kernel escapes a newline in Name as "\n" (two characters), so a
    // hostile name cannot start a line; and only the first Uid line counts.
    let hostile = b"Name:\tx\\nUid:\t0\t0\t0\t0\nUid:\t5\t6\t7\t8\nUid:\t0\t0\t0\t0\n";
    assert_eq!(parse_status(hostile).unwrap().uids, [5, 6, 7, 8]);
    let kthread = b"Name:\tkthreadd\nUid:\t0\t0\t0\t0\nThreads:\t1\n";
    assert_eq!(parse_status(kthread).unwrap().vm_hwm_kib, None);
}

#[test]
fn status_truncated_and_garbage_are_errors() {
    let uid_end = STATUS.windows(4).position(|w| w == b"Gid:").unwrap();
    for cut in 0..uid_end - 1 {
        assert!(parse_status(&STATUS[..cut]).is_err(), "cut at {cut}");
    }
    for bad in [
        &b"Uid:\t1\t2\n"[..],
        b"Uid:\tx\t0\t0\t0\n",
        b"Uid:\t99999999999\t0\t0\t0\n",
        b"Uid:\t-1\t0\t0\t0\n",
    ] {
        assert!(parse_status(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn status_name_state_ppid() {
    let s = parse_status(STATUS).unwrap();
    assert_eq!(s.name.as_deref(), Some(&b"valkey-server"[..]));
    assert_eq!((s.state, s.ppid), (Some(b'S'), Some(0)));
    // What Linux 6.18 printed for a shell that wrote "a\\b\nc\td e" to its
    // own comm: the backslash doubled, the newline as "\n", the tab and
    // the space as they are.
    let real = b"Name:\ta\\\\b\\nc\td e\nState:\tZ (zombie)\nPPid:\t5618\nUid:\t0\t0\t0\t0\n";
    let s = parse_status(real).unwrap();
    assert_eq!(s.name.as_deref(), Some(&b"a\\b\nc\td e"[..]));
    assert_eq!((s.state, s.ppid), (Some(b'Z'), Some(5618)));
    // An empty name is a name.
    let empty = b"Name:\t\nUid:\t0\t0\t0\t0\n";
    assert_eq!(parse_status(empty).unwrap().name.as_deref(), Some(&b""[..]));
    for bad in [
        &b"Name:x\nUid:\t0\t0\t0\t0\n"[..],
        b"State:\tSS (x)\nUid:\t0\t0\t0\t0\n",
        b"PPid:\t-3\nUid:\t0\t0\t0\t0\n",
        b"PPid:\t\nUid:\t0\t0\t0\t0\n",
    ] {
        assert!(parse_status(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn status_nspid_levels() {
    use crate::parse::proc::NsPid;
    // (line, parsed, mount in the process's own PID namespace)
    let cases: &[(&[u8], Option<NsPid>, bool)] = &[
        // The initial namespace, read through its own /proc.
        (
            b"NSpid:\t812\n",
            Some(NsPid {
                outer: 812,
                inner: 812,
                levels: 1,
            }),
            true,
        ),
        // A process in a child namespace, read through the parent's /proc:
        // 4711 there, 1 in its own.
        (
            b"NSpid:\t4711\t1\n",
            Some(NsPid {
                outer: 4711,
                inner: 1,
                levels: 2,
            }),
            false,
        ),
        // Three levels whose ends happen to agree are still three levels.
        (
            b"NSpid:\t7\t9\t7\n",
            Some(NsPid {
                outer: 7,
                inner: 7,
                levels: 3,
            }),
            false,
        ),
        // Kernels before 4.1 have no NSpid line.
        (b"Pid:\t5\n", None, false),
    ];
    for &(line, want, same) in cases {
        let text = [b"Uid:\t0\t0\t0\t0\n".as_slice(), line].concat();
        let got = parse_status(&text).unwrap().ns_pid;
        assert_eq!(got, want, "{line:?}");
        assert_eq!(got.is_some_and(|n| n.same_namespace()), same, "{line:?}");
    }
    for bad in [&b"NSpid:\n"[..], b"NSpid:\t1\tx\n", b"NSpid:\t-1\n"] {
        let text = [b"Uid:\t0\t0\t0\t0\n".as_slice(), bad].concat();
        assert!(parse_status(&text).is_err(), "{bad:?}");
    }
}

#[test]
fn dirents_yield_numeric_names() {
    let names: [&[u8]; 8] = [
        b".",
        b"..",
        b"1",
        b"self",
        b"4194304",
        b"12a",
        b"99999999999",
        b"2",
    ];
    let buf = encode_dirents(names);
    let mut pids = Vec::new();
    parse_dirent_pids(&buf, &mut pids).unwrap();
    // "12a" is no pid; 99999999999 does not fit a pid.
    assert_eq!(pids, [1, 4_194_304, 2]);
    // Every cut inside a record is an error, never a panic or a guess.
    let first = encode_dirents([&b"1"[..]]).len();
    for cut in 1..first {
        let mut pids = Vec::new();
        assert!(
            parse_dirent_pids(&buf[..cut], &mut pids).is_err(),
            "cut at {cut}"
        );
    }
    // A record length shorter than the header, or a name with no NUL.
    let mut bad = encode_dirents([&b"1"[..]]);
    bad[16..18].copy_from_slice(&18u16.to_ne_bytes());
    assert!(parse_dirent_pids(&bad, &mut Vec::new()).is_err());
    let mut no_nul = encode_dirents([&b"1234567"[..]]);
    no_nul.iter_mut().skip(19).for_each(|b| *b = b'7');
    assert!(parse_dirent_pids(&no_nul, &mut Vec::new()).is_err());
    // The first record's name, as the listing's layout check reads it.
    assert_eq!(
        first_dirent_name(&encode_dirents([&b"self"[..], b"1"])),
        Some(&b"self"[..])
    );
    assert_eq!(first_dirent_name(&buf), Some(&b"."[..]));
    assert_eq!(first_dirent_name(&[]), None);
    assert_eq!(first_dirent_name(&no_nul), None);
    assert_eq!(first_dirent_name(&buf[..first - 1]), None);
}

#[test]
fn cmdline_is_bounded() {
    assert_eq!(bounded_cmdline(b"a\0b\0", 3), b"a\0b");
    assert_eq!(bounded_cmdline(b"a\0", 100), b"a\0");
    assert_eq!(bounded_cmdline(b"", 0), b"");
}

#[test]
fn connector_round_trip_table() {
    let events = [
        ProcEvent::Fork {
            parent_pid: 1,
            parent_tgid: 1,
            child_pid: 100,
            child_tgid: 100,
        },
        ProcEvent::Fork {
            parent_pid: 1,
            parent_tgid: 1,
            child_pid: 101,
            child_tgid: 1,
        },
        ProcEvent::Exec {
            pid: 100,
            tgid: 100,
        },
        ProcEvent::Uid {
            pid: 100,
            tgid: 100,
            ruid: 0,
            euid: 0,
        },
        ProcEvent::Gid {
            pid: 100,
            tgid: 100,
        },
        ProcEvent::Ptrace {
            pid: 1,
            tgid: 1,
            tracer_pid: 100,
            tracer_tgid: 100,
        },
        ProcEvent::Comm {
            pid: 5,
            tgid: 5,
            comm: b"bio_aof".to_vec(),
        },
        ProcEvent::Comm {
            pid: 5,
            tgid: 5,
            comm: b"a) b\ncdefghijkl".to_vec(),
        },
        ProcEvent::Exit {
            pid: 100,
            tgid: 100,
        },
        ProcEvent::Other { what: 0 },
        ProcEvent::Other { what: 0x80 },
    ];
    for ev in events {
        let bytes = encode_event(&ev);
        assert_eq!(bytes.len(), 16 + 20 + 40, "{ev:?}");
        assert_eq!(
            parse_datagram(&bytes).unwrap(),
            vec![Message::Event(ev.clone())]
        );
        // Every truncation is an error or a shorter reading, never a panic.
        for cut in 0..bytes.len() {
            assert!(
                parse_datagram(&bytes[..cut]).is_err() || cut == 0,
                "{ev:?} cut {cut}"
            );
        }
    }
}

#[test]
fn connector_rejects_and_skips() {
    let mut other_connector = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 });
    other_connector[16] = 9; // cn_msg.id.idx
    assert_eq!(
        parse_datagram(&other_connector).unwrap(),
        vec![Message::Ignored]
    );
    let mut overrun = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 });
    overrun[4] = 4;
    assert_eq!(parse_datagram(&overrun).unwrap(), vec![Message::Overrun]);
    let mut error = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 });
    error[4] = 2;
    assert!(parse_datagram(&error).is_err());
    let mut long_len = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 });
    long_len[0] = 200;
    assert!(parse_datagram(&long_len).is_err());
    let mut long_cn = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 });
    long_cn[32] = 200; // cn_msg.len beyond the message
    assert!(parse_datagram(&long_cn).is_err());
    // A fork event whose payload stops after the parent: an error.
    assert!(parse_proc_event(&[
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0
    ])
    .is_err());
    // Two messages in one datagram.
    let mut two = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 });
    two.extend(encode_event(&ProcEvent::Exit { pid: 2, tgid: 2 }));
    assert_eq!(parse_datagram(&two).unwrap().len(), 2);
}

#[test]
fn control_message_layout() {
    let m = control_message(1, 7, 1234);
    assert_eq!(&m[0..4], &40u32.to_ne_bytes());
    assert_eq!(&m[4..6], &3u16.to_ne_bytes());
    assert_eq!(&m[12..16], &1234u32.to_ne_bytes());
    assert_eq!(&m[16..24], &[1, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&m[32..34], &4u16.to_ne_bytes());
    assert_eq!(&m[36..40], &1u32.to_ne_bytes());
}

#[test]
fn input_events_table() {
    let l = InputLayout::NATIVE;
    let press = InputEvent {
        kind: EV_KEY,
        code: KEY_POWER,
        value: 1,
    };
    let release = InputEvent { value: 0, ..press };
    let repeat = InputEvent { value: 2, ..press };
    let other_key = InputEvent { code: 115, ..press };
    let syn = InputEvent {
        kind: 0,
        code: 0,
        value: 0,
    };
    let cases = [
        (vec![press, syn], true),
        (vec![release, syn], false),
        (vec![repeat], false),
        (vec![other_key, syn], false),
        (vec![syn, release, press, syn, release], true),
    ];
    for (events, pressed) in cases {
        let bytes: Vec<u8> = events
            .iter()
            .flat_map(|e| encode_input_event(*e, l))
            .collect();
        let parsed = parse_input_events(&bytes, l);
        assert_eq!(parsed, events);
        assert_eq!(parsed.iter().any(InputEvent::is_power_press), pressed);
        // A trailing partial record is ignored.
        assert_eq!(
            parse_input_events(&bytes[..bytes.len() - 1], l).len(),
            events.len() - 1
        );
    }
    assert_eq!(InputLayout { time_len: 16 }.record_len(), 24);
}

proptest! {
    #[test]
    fn stat_round_trip(comm in proptest::collection::vec(any::<u8>(), 0..32), pid in 1u32.., ppid in 0u32.., flags in any::<u32>(), start in any::<u64>(), state in proptest::sample::select(b"RSDZTtXxKWPI".to_vec())) {
        let line = stat_line(pid, &comm, state, ppid, u64::from(flags), start);
        let s = parse_stat(&line).unwrap();
        prop_assert_eq!(s.comm, comm);
        prop_assert_eq!((s.pid, s.ppid, s.state, s.flags, s.start_time), (pid, ppid, state, u64::from(flags), start));
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_stat(&bytes);
        let _ = parse_status(&bytes);
        let _ = parse_datagram(&bytes);
        let _ = parse_proc_event(&bytes);
        let _ = parse_input_events(&bytes, InputLayout::NATIVE);
        let _ = parse_input_events(&bytes, InputLayout { time_len: 8 });
    }

    #[test]
    fn stat_with_mutations_never_panics(pos in 0usize..200, byte in any::<u8>()) {
        let mut v = CAT_STAT.to_vec();
        if pos < v.len() { v[pos] = byte; }
        let _ = parse_stat(&v);
    }

    #[test]
    fn status_name_round_trip(comm in proptest::collection::vec(1u8..=255, 0..16)) {
        // The kernel's escaping of Name: (fs/proc/array.c, proc_task_name).
        let mut escaped = Vec::new();
        for &b in &comm {
            match b {
                b'\n' => escaped.extend(b"\\n"),
                b'\\' => escaped.extend(b"\\\\"),
                _ => escaped.push(b),
            }
        }
        let text = [b"Name:\t".as_slice(), &escaped, b"\nUid:\t0\t0\t0\t0\n"].concat();
        prop_assert_eq!(parse_status(&text).unwrap().name, Some(comm));
    }

    #[test]
    fn status_uid_round_trip(uids in any::<[u32; 4]>(), name in "[ -~]{0,15}") {
        let text = format!("Name:\t{name}\nUid:\t{}\t{}\t{}\t{}\n", uids[0], uids[1], uids[2], uids[3]);
        prop_assert_eq!(parse_status(text.as_bytes()).unwrap().uids, uids);
    }
}
