//! The Linux proc connector's wire format: netlink header, connector
//! header, `struct proc_event` (include/uapi/linux/cn_proc.h). Host byte
//! order, as netlink is. The netlink framing is `nlwire`'s; the connector
//! header and the events are ours.

use nlwire::message::{Header, HEADER_LEN, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};

use crate::error::Error;
use crate::model::ProcEvent;

/// `CN_IDX_PROC`.
pub const CN_IDX_PROC: u32 = 1;
/// `CN_VAL_PROC`.
pub const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN`.
pub const PROC_CN_MCAST_LISTEN: u32 = 1;
/// `PROC_CN_MCAST_IGNORE`.
pub const PROC_CN_MCAST_IGNORE: u32 = 2;

const CN_MSG_LEN: usize = 20;
/// `what`, `cpu`, `timestamp_ns` before the event union.
const PROC_EVENT_HDR: usize = 16;

const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_UID: u32 = 0x4;
const PROC_EVENT_GID: u32 = 0x40;
const PROC_EVENT_PTRACE: u32 = 0x100;
const PROC_EVENT_COMM: u32 = 0x200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

const WHAT: &str = "proc connector message";

/// What one received datagram held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A process event.
    Event(ProcEvent),
    /// Not for us (another connector, a no-op): skipped.
    Ignored,
    /// The kernel reports an overrun: events were lost.
    Overrun,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([*s.first()?, *s.get(1)?]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let a: [u8; 4] = s.try_into().ok()?;
    Some(u32::from_ne_bytes(a))
}

fn framing(error: nlwire::WireError) -> Error {
    Error::parse(WHAT, error.detail())
}

/// Parses every netlink message in one datagram, in order.
pub fn parse_datagram(bytes: &[u8]) -> Result<Vec<Message>, Error> {
    nlwire::messages(bytes)
        .map(|m| parse_message(&m.map_err(framing)?))
        .collect()
}

/// Parses one netlink message (header included, exactly `nlmsg_len` bytes).
pub fn parse_netlink_message(msg: &[u8]) -> Result<Message, Error> {
    parse_message(&nlwire::Message::parse(msg).map_err(framing)?)
}

fn parse_message(msg: &nlwire::Message<'_>) -> Result<Message, Error> {
    match msg.header.kind {
        NLMSG_NOOP => return Ok(Message::Ignored),
        NLMSG_OVERRUN => return Ok(Message::Overrun),
        NLMSG_ERROR => return Err(Error::parse(WHAT, "netlink error message")),
        // The connector sends its messages as NLMSG_DONE.
        NLMSG_DONE => {}
        _ => return Ok(Message::Ignored),
    }
    let cn = msg.payload;
    let idx = u32_at(cn, 0).ok_or(Error::parse(WHAT, "short connector header"))?;
    let val = u32_at(cn, 4).ok_or(Error::parse(WHAT, "short connector header"))?;
    let data_len = u16_at(cn, 16).ok_or(Error::parse(WHAT, "short connector header"))?;
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) {
        return Ok(Message::Ignored);
    }
    let data = cn
        .get(CN_MSG_LEN..CN_MSG_LEN.saturating_add(usize::from(data_len)))
        .ok_or(Error::parse(WHAT, "connector length exceeds message"))?;
    parse_proc_event(data).map(Message::Event)
}

/// Parses a `struct proc_event`.
pub fn parse_proc_event(ev: &[u8]) -> Result<ProcEvent, Error> {
    let what = u32_at(ev, 0).ok_or(Error::parse(WHAT, "short proc_event"))?;
    let field = |i: usize| -> Result<u32, Error> {
        u32_at(ev, PROC_EVENT_HDR.saturating_add(i.saturating_mul(4)))
            .ok_or(Error::parse(WHAT, "proc_event shorter than its kind"))
    };
    Ok(match what {
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent_pid: field(0)?,
            parent_tgid: field(1)?,
            child_pid: field(2)?,
            child_tgid: field(3)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: field(0)?,
            tgid: field(1)?,
        },
        // process_pid, process_tgid, ruid, euid
        PROC_EVENT_UID => ProcEvent::Uid {
            pid: field(0)?,
            tgid: field(1)?,
            ruid: field(2)?,
            euid: field(3)?,
        },
        PROC_EVENT_GID => ProcEvent::Gid {
            pid: field(0)?,
            tgid: field(1)?,
        },
        PROC_EVENT_PTRACE => ProcEvent::Ptrace {
            pid: field(0)?,
            tgid: field(1)?,
            tracer_pid: field(2)?,
            tracer_tgid: field(3)?,
        },
        PROC_EVENT_COMM => {
            let (pid, tgid) = (field(0)?, field(1)?);
            let start = PROC_EVENT_HDR.saturating_add(8);
            let raw = ev
                .get(start..start.saturating_add(16))
                .ok_or(Error::parse(WHAT, "short comm event"))?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            ProcEvent::Comm {
                pid,
                tgid,
                comm: raw.get(..end).unwrap_or_default().to_vec(),
            }
        }
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: field(0)?,
            tgid: field(1)?,
        },
        PROC_EVENT_NONE => ProcEvent::Other { what },
        other => ProcEvent::Other { what: other },
    })
}

/// The datagram that subscribes (`PROC_CN_MCAST_LISTEN`) or unsubscribes
/// (`PROC_CN_MCAST_IGNORE`): netlink header, connector header, the op.
pub fn control_message(op: u32, seq: u32, port: u32) -> [u8; 40] {
    let mut m = [0u8; 40];
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = m.get_mut(off..off.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    };
    let header = Header {
        len: 40,
        kind: NLMSG_DONE,
        flags: 0,
        seq,
        port,
    };
    put(0, &header.to_bytes());
    put(16, &CN_IDX_PROC.to_ne_bytes()); // cn_msg.id.idx
    put(20, &CN_VAL_PROC.to_ne_bytes()); // cn_msg.id.val
    put(24, &seq.to_ne_bytes()); // cn_msg.seq
    put(28, &0u32.to_ne_bytes()); // cn_msg.ack
    put(32, &4u16.to_ne_bytes()); // cn_msg.len
    put(34, &0u16.to_ne_bytes()); // cn_msg.flags
    put(36, &op.to_ne_bytes()); // the op
    m
}

/// Builds the datagram the kernel would send for `ev` (tests, fuzz seeds,
/// round trips). `Other` events carry only their code.
pub fn encode_event(ev: &ProcEvent) -> Vec<u8> {
    let (what, fields, comm): (u32, [u32; 6], Option<&[u8]>) = match ev {
        ProcEvent::Fork {
            parent_pid,
            parent_tgid,
            child_pid,
            child_tgid,
        } => (
            PROC_EVENT_FORK,
            [*parent_pid, *parent_tgid, *child_pid, *child_tgid, 0, 0],
            None,
        ),
        ProcEvent::Exec { pid, tgid } => (PROC_EVENT_EXEC, [*pid, *tgid, 0, 0, 0, 0], None),
        ProcEvent::Uid {
            pid,
            tgid,
            ruid,
            euid,
        } => (PROC_EVENT_UID, [*pid, *tgid, *ruid, *euid, 0, 0], None),
        ProcEvent::Gid { pid, tgid } => (PROC_EVENT_GID, [*pid, *tgid, 0, 0, 0, 0], None),
        ProcEvent::Ptrace {
            pid,
            tgid,
            tracer_pid,
            tracer_tgid,
        } => (
            PROC_EVENT_PTRACE,
            [*pid, *tgid, *tracer_pid, *tracer_tgid, 0, 0],
            None,
        ),
        ProcEvent::Comm { pid, tgid, comm } => (
            PROC_EVENT_COMM,
            [*pid, *tgid, 0, 0, 0, 0],
            Some(comm.as_slice()),
        ),
        ProcEvent::Exit { pid, tgid } => (PROC_EVENT_EXIT, [*pid, *tgid, 0, 0, 0, 0], None),
        ProcEvent::Other { what } => (*what, [0; 6], None),
    };
    let mut ev_bytes = Vec::with_capacity(40);
    ev_bytes.extend_from_slice(&what.to_ne_bytes());
    ev_bytes.extend_from_slice(&0u32.to_ne_bytes()); // cpu
    ev_bytes.extend_from_slice(&0u64.to_ne_bytes()); // timestamp_ns
    match comm {
        Some(c) => {
            ev_bytes.extend_from_slice(&fields[0].to_ne_bytes());
            ev_bytes.extend_from_slice(&fields[1].to_ne_bytes());
            let mut name = [0u8; 16];
            for (d, s) in name.iter_mut().zip(c.iter()) {
                *d = *s;
            }
            ev_bytes.extend_from_slice(&name);
        }
        None => {
            for f in fields {
                ev_bytes.extend_from_slice(&f.to_ne_bytes());
            }
        }
    }
    let total = HEADER_LEN + CN_MSG_LEN + ev_bytes.len();
    let mut m = Vec::with_capacity(total);
    let header = Header {
        len: u32::try_from(total).unwrap_or(u32::MAX),
        kind: NLMSG_DONE,
        ..Header::default()
    };
    m.extend_from_slice(&header.to_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(
        &u16::try_from(ev_bytes.len())
            .unwrap_or(u16::MAX)
            .to_ne_bytes(),
    );
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&ev_bytes);
    m
}
