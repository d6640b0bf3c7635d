//! FreeBSD `pf.conf` rendering.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::policy::{Egress, Phase, Policy};

/// Renders the policy for `phase` as a FreeBSD `pf.conf`.
///
/// Every filter rule is `quick`, so the first match decides and the file
/// reads top to bottom like the nftables chains. Loopback is left out of
/// filtering (`set skip on lo0`); everything else not passed is dropped
/// without a reply.
///
/// The per-source limit becomes `max-src-conn-rate N/S` with `N` = the burst
/// and `S` = the seconds the bucket takes to refill: the same instant
/// allowance and a sustained rate no higher than the spec's. pf counts
/// connections once their handshake completes and kills the state of one
/// over the rate; there is deliberately no `overload <table>`, which would
/// ban a source (and everyone behind its NAT) until something expires the
/// table, and nothing on the appliance would.
///
/// The concurrent caps are the rule's state options: `max-src-conn N` per
/// source (pf counts a connection once its handshake completes), `max N`
/// states for the rule as a whole (half-open ones included), and
/// `max-src-nodes N` sources tracked at once, with `set limit src-nodes N`
/// for the table they live in. A new source beyond `max-src-nodes` gets no
/// state and so no connection: pf's source tracking fails closed, like the
/// nftables meters.
pub fn render_pf(policy: &Policy, phase: Phase) -> String {
    let mut out = String::new();
    let limit = policy.new_connections;
    // `let _ =`: writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# Appliance firewall, {} phase. Rendered by pf-rules; load with pfctl -f.",
        phase.name()
    );
    let _ = writeln!(out, "set block-policy drop");
    let _ = writeln!(out, "set limit src-nodes {}", policy.meter_size);
    let _ = writeln!(out, "set skip on lo0");
    let _ = writeln!(out, "scrub in all");
    let _ = writeln!(out, "block drop all");
    let _ = writeln!(out, "block drop quick inet6 all");
    let _ = writeln!(
        out,
        "pass in quick inet proto tcp from any to any port {} flags S/SA keep state \
         (max {}, source-track rule, max-src-nodes {}, max-src-conn {}, max-src-conn-rate {}/{})",
        policy.server_port,
        policy.connections.total,
        policy.meter_size,
        policy.connections.per_source,
        limit.burst,
        limit.refill_seconds()
    );
    if policy.icmp_echo {
        let _ = writeln!(
            out,
            "pass in quick inet proto icmp from any to any icmp-type echoreq keep state"
        );
    }
    for egress in policy.egress(phase) {
        match egress {
            Egress::DhcpClient => {
                let _ = writeln!(
                    out,
                    "pass out quick inet proto udp from any port 68 to any port 67 keep state"
                );
                // Offers and acks may come from an address the broadcast
                // request never went to: no state would match them.
                let _ = writeln!(
                    out,
                    "pass in quick inet proto udp from any port 67 to any port 68 no state"
                );
            }
            Egress::Tcp(to) => {
                let _ = writeln!(
                    out,
                    "pass out quick inet proto tcp from any to {} port {} flags S/SA keep state",
                    to.ip(),
                    to.port()
                );
            }
        }
    }
    out
}
