//! The sealed ruleset in force between two network namespaces joined by a
//! veth pair: what a client on the network actually sees.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use appliance_spec::Spec;
use common::*;
use pf_rules::{render_nft, Firewall, NetlinkFirewall, Phase, Policy};

const TIMEOUT: Duration = Duration::from_millis(1500);

fn connect_in(ns: &str, from: std::net::Ipv4Addr, port: u16) -> std::io::Result<socket2::Socket> {
    let to = SocketAddrV4::new(SERVER_IP, port);
    in_netns(ns, move || connect_from(from, to, TIMEOUT))
}

fn assert_dropped(result: std::io::Result<socket2::Socket>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: connected through the firewall"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::TimedOut,
            "{what}: not silently dropped: {e}"
        ),
    }
}

#[derive(Debug, Clone, Copy)]
enum Loader {
    NftText,
    Netlink,
}

fn load_sealed(net: &NetnsPair, policy: &Policy, loader: Loader) {
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

#[test]
fn sealed_lets_in_the_server_port_only_and_drops_silently() {
    sealed_reachability(Loader::NftText);
}

#[test]
fn sealed_via_netlink_lets_in_the_server_port_only() {
    sealed_reachability(Loader::Netlink);
}

#[test]
fn new_connections_are_limited_per_source() {
    rate_limit(Loader::NftText);
}

#[test]
fn new_connections_are_limited_per_source_via_netlink() {
    rate_limit(Loader::Netlink);
}

fn sealed_reachability(loader: Loader) {
    let net = NetnsPair::new();
    let _listeners = listen_in(&net.server, SERVER_IP, &[6379, 22, 25]);
    // Without rules everything connects: a later timeout is the firewall.
    for port in [6379, 22, 25] {
        connect_in(&net.client, CLIENT_IP, port).unwrap();
    }

    let policy = Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    load_sealed(&net, &policy, loader);

    connect_in(&net.client, CLIENT_IP, 6379).unwrap();
    assert_dropped(connect_in(&net.client, CLIENT_IP, 22), "port 22");
    assert_dropped(connect_in(&net.client, CLIENT_IP, 25), "port 25");

    // Nothing leaves the sealed server on its own initiative.
    let _client_listener = listen_in(&net.client, CLIENT_IP, &[80]);
    let to = SocketAddrV4::new(CLIENT_IP, 80);
    assert_dropped(
        in_netns(&net.server, move || connect_from(SERVER_IP, to, TIMEOUT)),
        "egress from sealed server",
    );
}

fn rate_limit(loader: Loader) {
    let net = NetnsPair::new();
    let _listeners = listen_in(&net.server, SERVER_IP, &[6379]);
    // A small bucket keeps the test short: 3 at once, then 1 per second.
    let spec = spec_with(&[
        ("conn_rate_per_source = 20", "conn_rate_per_source = 1"),
        ("conn_burst_per_source = 40", "conn_burst_per_source = 3"),
    ]);
    let policy = Policy::from_spec(&spec).unwrap();
    load_sealed(&net, &policy, loader);

    // The bucket's worth connects, one after the other.
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(connect_in(&net.client, CLIENT_IP, 6379).unwrap_or_else(|e| panic!("#{i}: {e}")));
    }
    // Then a burst from the same source: the bucket is empty, at most one
    // token (plus the SYN retransmit at 1 s) refills before the timeout.
    let to = SocketAddrV4::new(SERVER_IP, 6379);
    let burst = connect_parallel_in(&net.client, CLIENT_IP, to, 6, TIMEOUT);
    let failed: Vec<_> = burst.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.len() >= 3,
        "only {} of 6 over-limit connections failed",
        failed.len()
    );
    for e in &failed {
        assert_eq!(
            e.kind(),
            ErrorKind::TimedOut,
            "over-limit connection not dropped: {e}"
        );
    }
    // Another source has its own bucket.
    connect_in(&net.client, CLIENT_IP2, 6379).unwrap();
}
