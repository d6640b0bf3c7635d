//! The rendered nftables text, checked by the real `nft` inside a throwaway
//! network namespace (`unshare -n`): nothing on the host changes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use appliance_spec::Spec;
use common::{run, spec_with, TempFile};
use pf_rules::{render_nft, Phase, Policy};

fn in_fresh_netns(script: &str) -> String {
    let out = run(Command::new("unshare").args(["-n", "sh", "-ec", script]));
    String::from_utf8(out.stdout).unwrap()
}

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

#[test]
fn nft_accepts_every_rendering() {
    for policy in policies() {
        for phase in Phase::ALL {
            let file = TempFile::with_text(&render_nft(&policy, phase));
            in_fresh_netns(&format!("nft -c -f {}", file.0.display()));
        }
    }
}

#[test]
fn loading_twice_and_switching_phase_leaves_only_the_last() {
    let policy = &policies()[0];
    let boot = TempFile::with_text(&render_nft(policy, Phase::Boot));
    let sealed = TempFile::with_text(&render_nft(policy, Phase::Sealed));
    // Another table must survive our loads untouched.
    let listed = in_fresh_netns(&format!(
        "nft add table inet other; nft add chain inet other c; \
         nft -f {b}; nft -f {b}; nft -f {s}; nft -f {s}; nft list ruleset",
        b = boot.0.display(),
        s = sealed.0.display()
    ));
    assert_eq!(
        listed.matches("table inet appliance").count(),
        1,
        "{listed}"
    );
    assert!(listed.contains("table inet other"), "{listed}");
    assert!(
        !listed.contains("169.254.169.254"),
        "boot rules survived:\n{listed}"
    );
    assert!(
        listed.contains("tcp dport 6379 ct state new accept"),
        "{listed}"
    );
}

#[test]
fn nft_lists_what_we_rendered() {
    // The body is written the way `nft list` prints it, so the snapshot reads
    // exactly like the kernel's view.
    for policy in policies() {
        for phase in Phase::ALL {
            let text = render_nft(&policy, phase);
            let file = TempFile::with_text(&text);
            let listed = in_fresh_netns(&format!(
                "nft -f {}; nft list table inet appliance",
                file.0.display()
            ));
            let body = &text[text.find("table inet appliance {").unwrap()..];
            assert_eq!(listed, body, "{phase:?}");
        }
    }
}
