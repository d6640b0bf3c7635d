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

/// What `verify` finds in the namespace after loading `phase`.
fn verify_in(ns: &str, policy: &Policy, phase: Phase) -> Result<pf_rules::ReadBack, String> {
    let policy = policy.clone();
    in_netns(ns, move || {
        NetlinkFirewall::new()
            .verify(&policy, phase)
            .map_err(|e| e.to_string())
    })
}

#[test]
fn sealed_reads_back_equal_and_boot_does_not() {
    for policy in policies() {
        let ns = Netns::new();
        apply_in(&ns.name, &policy, Phase::Boot);
        let err = verify_in(&ns.name, &policy, Phase::Sealed).unwrap_err();
        assert!(
            err.contains("the sealed ruleset read back from the kernel differs at chain "),
            "{err}"
        );
        // The boot phase does read back as itself.
        verify_in(&ns.name, &policy, Phase::Boot).unwrap();

        apply_in(&ns.name, &policy, Phase::Sealed);
        let got = verify_in(&ns.name, &policy, Phase::Sealed).unwrap();
        assert_eq!(got, pf_rules::ReadBack::expected(&policy, Phase::Sealed));
        assert!(got.rules > 0);
    }
}

#[test]
fn what_nft_loads_reads_back_equal() {
    for policy in policies() {
        for phase in Phase::ALL {
            let ns = Netns::new();
            let file = TempFile::with_text(&render_nft(&policy, phase));
            run(Command::new("ip")
                .args(["netns", "exec", &ns.name, "nft", "-f"])
                .arg(&file.0));
            verify_in(&ns.name, &policy, phase).unwrap_or_else(|e| panic!("{phase:?}: {e}"));
        }
    }
}

#[test]
fn readback_without_our_table_fails() {
    let ns = Netns::new();
    let policy = &policies()[0];
    let err = verify_in(&ns.name, policy, Phase::Sealed).unwrap_err();
    assert!(err.contains("refused") || err.contains("differs"), "{err}");
}
