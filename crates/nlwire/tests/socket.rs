//! The socket against the real kernel, each test in a network namespace of
//! its own (made for the test's thread with `unshare(CLONE_NEWNET)`, gone
//! when the thread ends). Needs root.
#![cfg(target_os = "linux")]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use nlwire::build::message;
use nlwire::message::{
    NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use nlwire::socket::NETLINK_ROUTE;
use nlwire::{messages, Socket, SocketError, SocketOptions};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
/// `RTNLGRP_IPV4_IFADDR` (5) as a bind-time group mask.
const GROUP_IPV4_IFADDR: u32 = 1 << (5 - 1);

/// Runs `test` on a thread of its own in a fresh network namespace.
fn in_netns(test: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): run as root");
        test();
    })
    .join()
    .unwrap();
}

fn route_socket(options: SocketOptions) -> Socket {
    Socket::open(
        NETLINK_ROUTE,
        &SocketOptions {
            receive_timeout: options.receive_timeout.or(Some(Duration::from_secs(5))),
            ..options
        },
    )
    .unwrap()
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    for field in [index, flags, change] {
        out.extend(field.to_ne_bytes());
    }
    out
}

/// Sends `request` and returns the errno of its acknowledgement.
fn request(socket: &Socket, bytes: &[u8]) -> i32 {
    socket.send(bytes).unwrap();
    let mut buf = vec![0; 8192];
    let received = socket.recv(&mut buf).unwrap();
    assert_eq!(received.sender, 0, "the kernel answers");
    let reply = messages(&buf[..received.len]).next().unwrap().unwrap();
    assert_eq!(reply.header.kind, NLMSG_ERROR);
    reply.error().unwrap().errno
}

fn add_address(socket: &Socket, seq: u32, address: [u8; 4]) -> i32 {
    let mut ifaddr = vec![2, 32, 0, 0]; // AF_INET, /32, flags, scope
    ifaddr.extend(1u32.to_ne_bytes()); // lo
    let bytes = message(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        seq,
        &ifaddr,
        |w| w.bytes(IFA_LOCAL, &address),
    )
    .unwrap();
    request(socket, &bytes)
}

#[test]
fn requests_are_acknowledged_and_dumps_walk() {
    in_netns(|| {
        let socket = route_socket(SocketOptions {
            extended_acks: true,
            ..SocketOptions::default()
        });
        let up = message(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            1,
            &ifinfomsg(1, 1, 1),
            |_| {},
        )
        .unwrap();
        assert_eq!(request(&socket, &up), 0);
        assert_eq!(add_address(&socket, 2, [127, 0, 0, 2]), 0);
        // The same address again is refused, with the kernel's reason.
        assert_eq!(add_address(&socket, 3, [127, 0, 0, 2]), libc::EEXIST);

        let dump = message(
            RTM_GETADDR,
            NLM_F_REQUEST | NLM_F_DUMP,
            4,
            &[2, 0, 0, 0, 0, 0, 0, 0],
            |_| {},
        )
        .unwrap();
        socket.send(&dump).unwrap();
        let mut buf = vec![0; 32 * 1024];
        let mut found = Vec::new();
        'dump: loop {
            let received = socket.recv(&mut buf).unwrap();
            for m in messages(&buf[..received.len]) {
                let m = m.unwrap();
                if m.header.kind == NLMSG_DONE {
                    assert_eq!(m.done_status(), 0);
                    break 'dump;
                }
                let attrs = m.attrs_after(8).unwrap();
                let local = attrs.clone().find(IFA_LOCAL).unwrap().unwrap();
                let label = attrs.find(IFA_LABEL).unwrap().unwrap();
                found.push((local.payload().to_vec(), label.to_string_lossy()));
            }
        }
        found.sort();
        assert_eq!(
            found,
            [
                (vec![127, 0, 0, 1], "lo".to_owned()),
                (vec![127, 0, 0, 2], "lo".to_owned())
            ]
        );
    });
}

#[test]
fn a_datagram_larger_than_the_buffer_is_reported() {
    in_netns(|| {
        let socket = route_socket(SocketOptions::default());
        let dump = message(
            RTM_GETLINK,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            &ifinfomsg(0, 0, 0),
            |_| {},
        )
        .unwrap();
        socket.send(&dump).unwrap();
        let mut small = [0u8; 64];
        match socket.recv(&mut small) {
            Err(SocketError::Truncated { len, capacity: 64 }) => assert!(len > 64, "{len}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn nothing_queued_is_would_block() {
    in_netns(|| {
        let mut buf = [0u8; 64];
        let nonblocking = Socket::open(
            NETLINK_ROUTE,
            &SocketOptions {
                nonblocking: true,
                ..SocketOptions::default()
            },
        )
        .unwrap();
        assert!(matches!(
            nonblocking.recv(&mut buf),
            Err(SocketError::WouldBlock)
        ));
        assert!(!nonblocking
            .wait_readable(Duration::from_millis(20))
            .unwrap());

        let timed = route_socket(SocketOptions {
            receive_timeout: Some(Duration::from_millis(50)),
            ..SocketOptions::default()
        });
        assert!(matches!(timed.recv(&mut buf), Err(SocketError::WouldBlock)));
    });
}

/// A listener whose receive buffer fills up gets `ENOBUFS` as its own
/// error, and can go on receiving after it.
#[test]
fn an_overflowing_listener_sees_overrun() {
    in_netns(|| {
        let listener = Socket::open(
            NETLINK_ROUTE,
            &SocketOptions {
                groups: GROUP_IPV4_IFADDR,
                // The kernel's minimum: a few notifications fill it.
                receive_buffer: Some(0),
                nonblocking: true,
                ..SocketOptions::default()
            },
        )
        .unwrap();
        let socket = route_socket(SocketOptions::default());
        for i in 0..64u8 {
            assert_eq!(add_address(&socket, u32::from(i) + 1, [127, 1, 0, i]), 0);
        }
        assert!(listener.wait_readable(Duration::from_secs(1)).unwrap());
        let mut buf = vec![0; 8192];
        let mut overruns = 0;
        let mut received = 0;
        loop {
            match listener.recv(&mut buf) {
                Ok(r) => {
                    received += 1;
                    assert!(messages(&buf[..r.len]).all(|m| m.is_ok()));
                }
                Err(SocketError::Overrun) => overruns += 1,
                Err(SocketError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(overruns, 1, "one ENOBUFS for the whole overflow");
        assert!(
            received > 0 && received < 64,
            "{received} notifications kept"
        );
    });
}
