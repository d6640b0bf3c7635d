//! The concurrent-connection caps in force between two namespaces: a client
//! namespace with many source addresses, the sealed ruleset in the server
//! namespace (loaded by `nft -f` and by `NetlinkFirewall`), a server that
//! holds every connection until its client closes.
//!
//! Tiny meters (4 sources) show what a full meter does: the kernel cannot
//! add a new source, the meter's rule does not match, and without the rule
//! after it that source would be let in unmetered
//! (`without_the_fallback_a_full_meter_fails_open` shows the kernel doing
//! exactly that); with it, the source is dropped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use appliance_spec::Spec;
use common::*;
use pf_rules::{render_nft, ConnLimit, Firewall, NetlinkFirewall, Phase, Policy, RateLimit};

const PORT: u16 = 6379;
/// A dropped SYN is retransmitted after 1 s; 1.5 s sees one retransmit go
/// unanswered too.
const TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy)]
enum Loader {
    NftText,
    Netlink,
}

fn policy(per_source: u32, total: u32, meter_size: u32, rate: RateLimit) -> Policy {
    let mut p = Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    p.connections = ConnLimit { per_source, total };
    p.meter_size = meter_size;
    p.new_connections = rate;
    p
}

/// A bucket no test here empties: only the concurrent caps act.
const GENEROUS: RateLimit = RateLimit {
    per_second: 100,
    burst: 100,
};

fn load(net: &NetnsPair, policy: &Policy, loader: Loader) {
    match loader {
        Loader::NftText => {
            let file = TempFile::with_text(&render_nft(policy, Phase::Sealed));
            net.nft_load_server(&file.0);
        }
        Loader::Netlink => {
            let policy = policy.clone();
            in_netns(&net.server, move || {
                NetlinkFirewall::new().apply(&policy, Phase::Sealed)
            })
            .unwrap();
        }
    }
}

fn connect(net: &NetnsPair, from: Ipv4Addr) -> std::io::Result<socket2::Socket> {
    let to = SocketAddrV4::new(SERVER_IP, PORT);
    in_netns(&net.client, move || connect_from(from, to, TIMEOUT))
}

fn connect_ok(net: &NetnsPair, from: Ipv4Addr, what: &str) -> socket2::Socket {
    connect(net, from).unwrap_or_else(|e| panic!("{what} (from {from}): {e}"))
}

/// No SYN-ACK at all: the attempt times out (a RST would be "refused").
fn assert_dropped(net: &NetnsPair, from: Ipv4Addr, what: &str) {
    match connect(net, from) {
        Ok(_) => panic!("{what} (from {from}): connected through the cap"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::TimedOut,
            "{what} (from {from}): not silently dropped: {e}"
        ),
    }
}

/// Retries a connection until it succeeds, for at most `within`; the
/// elapsed time on success.
fn connect_within(
    net: &NetnsPair,
    from: Ipv4Addr,
    within: Duration,
) -> (socket2::Socket, Duration) {
    let start = Instant::now();
    loop {
        match connect(net, from) {
            Ok(s) => return (s, start.elapsed()),
            Err(e) if start.elapsed() < within => {
                assert_eq!(e.kind(), ErrorKind::TimedOut, "from {from}: {e}");
            }
            Err(e) => panic!("from {from}: no connection within {within:?}: {e}"),
        }
    }
}

/// Waits until `set` has no element in the server namespace.
fn wait_empty(net: &NetnsPair, set: &str, within: Duration) {
    let start = Instant::now();
    while !set_elements(&net.server, set).is_empty() {
        assert!(
            start.elapsed() < within,
            "{set} still holds {:?} after {within:?}",
            set_elements(&net.server, set)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn concurrent_connections_are_capped_per_source() {
    capped_per_source(Loader::NftText);
}

#[test]
fn concurrent_connections_are_capped_per_source_via_netlink() {
    capped_per_source(Loader::Netlink);
}

fn capped_per_source(loader: Loader) {
    let net = NetnsPair::with_clients(2);
    let _server = HoldingServer::start(&net.server, SERVER_IP, PORT);
    load(&net, &policy(3, 100, 64, GENEROUS), loader);
    let (a, b) = (client_ip(0), client_ip(1));

    let mut held_a: Vec<_> = (0..3)
        .map(|i| connect_ok(&net, a, &format!("connection #{}", i + 1)))
        .collect();
    assert_dropped(&net, a, "connection #4 over the cap of 3");
    // Another source has its own count.
    let held_b: Vec<_> = (0..3)
        .map(|i| connect_ok(&net, b, &format!("second source #{}", i + 1)))
        .collect();
    assert_dropped(&net, b, "second source #4");

    // A closed connection frees its slot (the kernel forgets a closed
    // connection the next time it counts), and only that one.
    drop(held_a.pop());
    let (again, took) = connect_within(&net, a, Duration::from_secs(5));
    eprintln!("slot freed by a close, reused after {took:?}");
    held_a.push(again);
    assert_dropped(&net, a, "over the cap again after the reuse");
    drop((held_a, held_b));
}

#[test]
fn the_total_cap_bounds_all_sources_together() {
    let net = NetnsPair::with_clients(3);
    let _server = HoldingServer::start(&net.server, SERVER_IP, PORT);
    load(&net, &policy(3, 5, 64, GENEROUS), Loader::Netlink);
    let mut held_a: Vec<_> = (0..3)
        .map(|_| connect_ok(&net, client_ip(0), "a"))
        .collect();
    let _held_b: Vec<_> = (0..2)
        .map(|_| connect_ok(&net, client_ip(1), "b"))
        .collect();
    assert_dropped(&net, client_ip(1), "b's third, over the total of 5");
    assert_dropped(&net, client_ip(2), "a third source, over the total of 5");
    drop(held_a.pop());
    let (_c, took) = connect_within(&net, client_ip(2), Duration::from_secs(5));
    eprintln!("total slot freed by a close, reused after {took:?}");
}

#[test]
fn a_full_rate_meter_fails_closed() {
    let net = NetnsPair::with_clients(6);
    let _server = HoldingServer::start(&net.server, SERVER_IP, PORT);
    // A slow bucket: the rate meter remembers a source for 31 s, so four
    // sources fill it for the whole test.
    let slow = RateLimit {
        per_second: 1,
        burst: 30,
    };
    load(&net, &policy(8, 100, 4, slow), Loader::Netlink);
    for i in 0..4 {
        drop(connect_ok(&net, client_ip(i), "filling the rate meter"));
    }
    // The closed connections leave the count meter; the rate meter stays
    // full.
    wait_empty(&net, "connlimit4", Duration::from_secs(5));
    let known: Vec<Ipv4Addr> = (0..4).map(client_ip).collect();
    let mut in_rate = set_elements(&net.server, "ratelimit4");
    in_rate.sort();
    assert_eq!(in_rate, known);

    for i in [4, 5] {
        assert_dropped(&net, client_ip(i), "a new source, rate meter full");
    }
    // Dropped before the count meter: it never got a count element.
    assert!(set_elements(&net.server, "connlimit4").is_empty());
    // Known sources still work.
    let _a = connect_ok(&net, client_ip(0), "a known source, rate meter full");
    let _b = connect_ok(&net, client_ip(3), "another known source");
}

#[test]
fn a_full_count_meter_fails_closed() {
    full_count_meter(Loader::NftText);
}

#[test]
fn a_full_count_meter_fails_closed_via_netlink() {
    full_count_meter(Loader::Netlink);
}

fn full_count_meter(loader: Loader) {
    let net = NetnsPair::with_clients(6);
    let _server = HoldingServer::start(&net.server, SERVER_IP, PORT);
    // The generous bucket's elements lapse after 2 s, so once the four
    // sources stop connecting only the count meter is full.
    load(&net, &policy(2, 100, 4, GENEROUS), loader);
    let mut held: Vec<Vec<socket2::Socket>> = (0..4)
        .map(|i| vec![connect_ok(&net, client_ip(i), "filling the count meter")])
        .collect();
    wait_empty(&net, "ratelimit4", Duration::from_secs(8));
    assert_eq!(set_elements(&net.server, "connlimit4").len(), 4);

    for i in [4, 5] {
        assert_dropped(&net, client_ip(i), "a new source, count meter full");
        // It passed the rate meter; the count meter could not hold it.
        assert!(set_elements(&net.server, "ratelimit4").contains(&client_ip(i)));
        assert!(!set_elements(&net.server, "connlimit4").contains(&client_ip(i)));
    }
    // A known source still works, up to its own cap.
    held[0].push(connect_ok(&net, client_ip(0), "a known source's second"));
    assert_dropped(
        &net,
        client_ip(0),
        "a known source's third, over its cap of 2",
    );

    // When a source has closed everything, the kernel's set gc removes its
    // element and a new source gets the room.
    held[1].clear();
    let (_s, took) = connect_within(&net, client_ip(4), Duration::from_secs(8));
    eprintln!("count meter element freed, new source admitted after {took:?}");
    assert!(set_elements(&net.server, "connlimit4").contains(&client_ip(4)));
    drop(held);
}

/// Why the rule after each meter exists: without it, a source the full
/// count meter cannot hold is accepted unmetered, as many times as it likes.
#[test]
fn without_the_fallback_a_full_meter_fails_open() {
    let net = NetnsPair::with_clients(5);
    let _server = HoldingServer::start(&net.server, SERVER_IP, PORT);
    let p = policy(2, 100, 4, GENEROUS);
    let text: String = render_nft(&p, Phase::Sealed)
        .lines()
        .filter(|l| !l.contains("ip saddr != @"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, render_nft(&p, Phase::Sealed));
    let file = TempFile::with_text(&text);
    net.nft_load_server(&file.0);
    let _held: Vec<_> = (0..4)
        .map(|i| connect_ok(&net, client_ip(i), "filling both meters"))
        .collect();
    // Five connections from one new source, with a cap of 2: all get in.
    let unmetered: Vec<_> = (0..5)
        .map(|i| connect_ok(&net, client_ip(4), &format!("unmetered #{}", i + 1)))
        .collect();
    assert_eq!(unmetered.len(), 5);
    assert!(!set_elements(&net.server, "connlimit4").contains(&client_ip(4)));
}
