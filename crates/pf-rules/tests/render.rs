//! Snapshots of the seed-000 rulesets, and properties every rendering keeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use appliance_spec::Spec;
use pf_rules::{render_nft, render_pf, Phase, Policy};

fn reference() -> Policy {
    Policy::from_spec(&Spec::reference().unwrap()).unwrap()
}

#[test]
fn seed000_pf_boot() {
    insta::assert_snapshot!(render_pf(&reference(), Phase::Boot));
}

#[test]
fn seed000_pf_sealed() {
    insta::assert_snapshot!(render_pf(&reference(), Phase::Sealed));
}

#[test]
fn seed000_nft_boot() {
    insta::assert_snapshot!(render_nft(&reference(), Phase::Boot));
}

#[test]
fn seed000_nft_sealed() {
    insta::assert_snapshot!(render_nft(&reference(), Phase::Sealed));
}

#[test]
fn sealed_has_no_egress_of_its_own() {
    let p = reference();
    let nft = render_nft(&p, Phase::Sealed);
    let pf = render_pf(&p, Phase::Sealed);
    for (text, needles) in [
        (&nft, &["169.254.169.254", "udp", "dport 80"][..]),
        (&pf, &["169.254.169.254", "pass out", "udp"][..]),
    ] {
        for needle in needles {
            assert!(
                !text.contains(needle),
                "sealed ruleset mentions {needle}:\n{text}"
            );
        }
    }
}

#[test]
fn icmp_echo_follows_the_spec() {
    let text = appliance_spec::REFERENCE_TOML.replace("icmp_echo = true", "icmp_echo = false");
    let p = Policy::from_spec(&Spec::from_toml_str(&text).unwrap()).unwrap();
    for phase in Phase::ALL {
        assert!(!render_nft(&p, phase).contains("icmp"));
        assert!(!render_pf(&p, phase).contains("icmp"));
        assert!(render_nft(&reference(), phase).contains("icmp type echo-request accept"));
    }
}

#[test]
fn a_metadata_host_name_is_refused() {
    let text = appliance_spec::REFERENCE_TOML.replace(
        "http://169.254.169.254/",
        "http://metadata.google.internal/",
    );
    let err = Policy::from_spec(&Spec::from_toml_str(&text).unwrap()).unwrap_err();
    assert!(
        matches!(err, pf_rules::FirewallError::MetadataHostNotIpv4 { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("metadata.google.internal"));
}

#[test]
fn nft_text_replaces_only_our_table() {
    for phase in Phase::ALL {
        let text = render_nft(&reference(), phase);
        assert!(!text.contains("flush ruleset"));
        let tables: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("table "))
            .collect();
        assert_eq!(
            tables,
            [
                "table inet appliance",
                "delete table inet appliance",
                "table inet appliance {"
            ],
            "{phase:?}"
        );
    }
}

/// New connections to the server port pass both per-source meters, the
/// drop of a source a full meter could not hold, and the global cap, in
/// that order, before the one accept; the caps are the spec's.
#[test]
fn server_port_is_metered_and_fails_closed() {
    let text = appliance_spec::REFERENCE_TOML
        .replace("conn_max_per_source = 32", "conn_max_per_source = 7")
        .replace("conn_max_total = 4096", "conn_max_total = 900")
        .replace("meter_size = 65536", "meter_size = 4096");
    let p = Policy::from_spec(&Spec::from_toml_str(&text).unwrap()).unwrap();
    for phase in Phase::ALL {
        let nft = render_nft(&p, phase);
        let port_rules: Vec<&str> = nft
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("tcp dport 6379 ct state new "))
            .collect();
        assert_eq!(
            port_rules,
            [
                "update @ratelimit4 { ip saddr limit rate over 20/second burst 40 packets } drop",
                "ip saddr != @ratelimit4 drop",
                "add @connlimit4 { ip saddr ct count over 7 } drop",
                "ip saddr != @connlimit4 drop",
                "ct count over 900 drop",
                "accept",
            ],
            "{phase:?}"
        );
        assert_eq!(nft.matches("size 4096").count(), 2, "{nft}");
        let pf = render_pf(&p, phase);
        assert!(pf.contains("set limit src-nodes 4096\n"), "{pf}");
        assert!(
            pf.contains("keep state (max 900, source-track rule, max-src-nodes 4096, max-src-conn 7, max-src-conn-rate 40/2)"),
            "{pf}"
        );
    }
}
