//! The netlink loader against the real kernel, inside throwaway network
//! namespaces: what it loads must be what `nft -f` of the rendered text
//! loads, as `nft list` prints both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use appliance_spec::Spec;
use common::{in_netns, nft_list_in, run, spec_with, Netns, TempFile};
use pf_rules::{render_nft, Firewall, NetlinkFirewall, Phase, Policy};

fn policies() -> Vec<Policy> {
    vec![
        Policy::from_spec(&Spec::reference().unwrap()).unwrap(),
        Policy::from_spec(&spec_with(&[
            ("icmp_echo = true", "icmp_echo = false"),
            ("port = 6379", "port = 443"),
            ("conn_rate_per_source = 20", "conn_rate_per_source = 7"),
            ("conn_burst_per_source = 40", "conn_burst_per_source = 100"),
            ("http://169.254.169.254/", "http://10.1.2.3:8080/"),
        ]))
        .unwrap(),
    ]
}

fn apply_in(ns: &str, policy: &Policy, phase: Phase) {
    let policy = policy.clone();
    in_netns(ns, move || NetlinkFirewall::new().apply(&policy, phase))
        .unwrap_or_else(|e| panic!("netlink apply {phase:?}: {e}"));
}

/// What `nft -f` of the rendered text leaves in a fresh namespace.
fn listed_via_nft(policy: &Policy, phase: Phase) -> String {
    let ns = Netns::new();
    let file = TempFile::with_text(&render_nft(policy, phase));
    run(Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "-f"])
        .arg(&file.0));
    nft_list_in(&ns.name)
}

#[test]
fn netlink_loads_what_nft_loads() {
    for policy in policies() {
        for phase in Phase::ALL {
            let ns = Netns::new();
            apply_in(&ns.name, &policy, phase);
            assert_eq!(
                nft_list_in(&ns.name),
                listed_via_nft(&policy, phase),
                "{phase:?}"
            );
        }
    }
}

#[test]
fn sealed_replaces_boot_and_nothing_else() {
    let policy = &policies()[0];
    let ns = Netns::new();
    run(Command::new("ip").args(["netns", "exec", &ns.name, "nft", "add table ip other"]));
    apply_in(&ns.name, policy, Phase::Boot);
    assert!(nft_list_in(&ns.name).contains("169.254.169.254"));
    // Twice, to show the replace works on an existing table too.
    apply_in(&ns.name, policy, Phase::Sealed);
    apply_in(&ns.name, policy, Phase::Sealed);
    assert_eq!(nft_list_in(&ns.name), listed_via_nft(policy, Phase::Sealed));
    let all = run(Command::new("ip").args(["netns", "exec", &ns.name, "nft", "list", "tables"]));
    assert_eq!(
        String::from_utf8(all.stdout).unwrap(),
        "table ip other\ntable inet appliance\n"
    );
}
