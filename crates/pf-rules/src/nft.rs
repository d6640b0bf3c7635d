//! nftables text (`nft -f`) rendering.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::ir::{
    self, Action, Match, Meter, Ruleset, CT_ESTABLISHED, CT_INVALID, CT_NEW, CT_RELATED, TABLE,
};
use crate::policy::{Phase, Policy};

/// The one table this crate owns, as `nft` names it.
pub const NFT_TABLE: &str = "inet appliance";

/// Renders the policy for `phase` as an `nft -f` file.
///
/// The file replaces only `table inet appliance`: it first declares the table
/// (a no-op if it exists), then deletes it, then defines it afresh. `nft -f`
/// applies a file as one transaction, so loading it twice works and there is
/// no moment without our rules. It never says `flush ruleset`, which would
/// also wipe other tables (a container runtime's on a developer's host).
///
/// The body is laid out the way `nft list table inet appliance` prints it.
pub fn render_nft(policy: &Policy, phase: Phase) -> String {
    let rs = ir::ruleset(policy, phase);
    let mut out = String::new();
    // `let _ =`: writing to a String cannot fail.
    let _ = writeln!(out, "#!/usr/sbin/nft -f");
    let _ = writeln!(
        out,
        "# Appliance firewall, {} phase. Rendered by pf-rules; replaces only table {NFT_TABLE}.",
        phase.name()
    );
    let _ = writeln!(out, "table {NFT_TABLE}");
    let _ = writeln!(out, "delete table {NFT_TABLE}");
    out.push('\n');
    render_table(&mut out, &rs);
    out
}

fn render_table(out: &mut String, rs: &Ruleset) {
    let _ = writeln!(out, "table inet {TABLE} {{");
    for (i, set) in rs.meters.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "\tset {} {{", set.meter.set_name());
        let _ = writeln!(out, "\t\ttype ipv4_addr");
        let _ = writeln!(out, "\t\tsize {}", set.size);
        match set.timeout_secs {
            Some(secs) => {
                let _ = writeln!(out, "\t\tflags dynamic,timeout");
                let _ = writeln!(out, "\t\ttimeout {secs}s");
            }
            None => {
                let _ = writeln!(out, "\t\tflags dynamic");
            }
        }
        let _ = writeln!(out, "\t}}");
    }
    for chain in &rs.chains {
        out.push('\n');
        let name = chain.hook.name();
        let _ = writeln!(out, "\tchain {name} {{");
        let _ = writeln!(
            out,
            "\t\ttype filter hook {name} priority filter; policy drop;"
        );
        for rule in &chain.rules {
            let mut words: Vec<String> = rule.matches.iter().map(|m| match_text(*m)).collect();
            words.push(action_text(rule.action));
            let _ = writeln!(out, "\t\t{}", words.join(" "));
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
}

fn match_text(m: Match) -> String {
    match m {
        Match::IifLoopback => "iif \"lo\"".to_owned(),
        Match::OifLoopback => "oif \"lo\"".to_owned(),
        Match::Ipv6 => "meta nfproto ipv6".to_owned(),
        Match::CtState(bits) => format!("ct state {}", ct_state_names(bits)),
        Match::TcpDport(port) => format!("tcp dport {port}"),
        Match::UdpPorts { sport, dport } => format!("udp sport {sport} udp dport {dport}"),
        Match::IcmpEchoRequest => "icmp type echo-request".to_owned(),
        Match::Ipv4Daddr(ip) => format!("ip daddr {ip}"),
        Match::SourceNotInMeter(meter) => format!("ip saddr != @{}", meter.set_name()),
    }
}

fn ct_state_names(bits: u32) -> String {
    // nft's own order, so the text matches what `nft list` prints.
    let names = [
        (CT_INVALID, "invalid"),
        (CT_ESTABLISHED, "established"),
        (CT_RELATED, "related"),
        (CT_NEW, "new"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    set.join(",")
}

fn action_text(action: Action) -> String {
    match action {
        Action::Accept => "accept".to_owned(),
        Action::Drop => "drop".to_owned(),
        Action::DropOverSourceLimit(limit) => format!(
            "update @{} {{ ip saddr limit rate over {}/second burst {} packets }} drop",
            Meter::Rate.set_name(),
            limit.per_second,
            limit.burst
        ),
        Action::DropOverSourceConnections(max) => format!(
            "add @{} {{ ip saddr ct count over {max} }} drop",
            Meter::Count.set_name()
        ),
        Action::DropOverConnections(max) => format!("ct count over {max} drop"),
    }
}
