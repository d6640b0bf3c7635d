//! The nftables ruleset as data: one table, two meter sets, three base
//! chains. Both the nft text renderer and the netlink encoder read this, so
//! the two can only differ in syntax.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use crate::policy::{Egress, Phase, Policy, RateLimit};

/// The table name (family `inet`).
pub(crate) const TABLE: &str = "appliance";

/// A per-source meter: a dynamic set of IPv4 source addresses, each element
/// with a stateful expression of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meter {
    /// A token bucket per source (`limit`): new connections per second.
    Rate,
    /// A connection count per source (`ct count`): connections held now.
    Count,
}

impl Meter {
    pub(crate) fn set_name(self) -> &'static str {
        match self {
            Meter::Rate => "ratelimit4",
            Meter::Count => "connlimit4",
        }
    }

    /// The set's id within a netlink batch (rules refer to a set created in
    /// the same transaction by id), 1-based as nft numbers them.
    pub(crate) fn set_id(self) -> u32 {
        match self {
            Meter::Rate => 1,
            Meter::Count => 2,
        }
    }
}

/// `ct state` bits (`enum ip_conntrack_status` in the kernel's nft_ct view).
pub(crate) const CT_INVALID: u32 = 1;
pub(crate) const CT_ESTABLISHED: u32 = 2;
pub(crate) const CT_RELATED: u32 = 4;
pub(crate) const CT_NEW: u32 = 8;

/// A netfilter hook of the `inet` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Input,
    Forward,
    Output,
}

impl Hook {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
        }
    }
}

/// One condition of a rule; a rule matches when all of its conditions do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Arrived on loopback (ifindex 1 in every namespace).
    IifLoopback,
    /// Leaves on loopback.
    OifLoopback,
    /// Any IPv6 packet.
    Ipv6,
    /// Connection-tracking state is any of these `CT_*` bits.
    CtState(u32),
    /// TCP to this port.
    TcpDport(u16),
    /// UDP with exactly these ports.
    UdpPorts { sport: u16, dport: u16 },
    /// ICMPv4 echo-request.
    IcmpEchoRequest,
    /// IPv4 to this address.
    Ipv4Daddr(Ipv4Addr),
    /// The IPv4 source has no element in the meter's set (`ip saddr !=
    /// @set`). An inverted lookup never runs the element's expression; a
    /// plain lookup would (and match only a source over its limit).
    SourceNotInMeter(Meter),
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Accept,
    Drop,
    /// Charge the IPv4 source's bucket in the rate meter; drop if it is
    /// empty.
    DropOverSourceLimit(RateLimit),
    /// Count the connection in the IPv4 source's element of the count
    /// meter; drop if the source then holds more than this many.
    DropOverSourceConnections(u32),
    /// Count the connection in the rule's own list; drop if more than this
    /// many connections passed this rule and are still open.
    DropOverConnections(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) matches: Vec<Match>,
    pub(crate) action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) hook: Hook,
    pub(crate) rules: Vec<Rule>,
}

/// One meter's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MeterSet {
    pub(crate) meter: Meter,
    /// Elements at most; a source that finds the set full is not metered,
    /// and the rule after the meter drops it.
    pub(crate) size: u32,
    /// Element timeout in seconds (refreshed on every update), or none: a
    /// count element must live as long as its source holds connections, and
    /// the kernel's set gc removes it once the count is zero.
    pub(crate) timeout_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ruleset {
    pub(crate) meters: Vec<MeterSet>,
    pub(crate) chains: Vec<Chain>,
}

fn rule(matches: &[Match], action: Action) -> Rule {
    Rule {
        matches: matches.to_vec(),
        action,
    }
}

/// The Linux ruleset for `policy` in `phase`.
pub(crate) fn ruleset(policy: &Policy, phase: Phase) -> Ruleset {
    let port = policy.server_port;
    let mut input = vec![
        rule(&[Match::IifLoopback], Action::Accept),
        rule(&[Match::Ipv6], Action::Drop),
        rule(&[Match::CtState(CT_INVALID)], Action::Drop),
        rule(
            &[Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            Action::Accept,
        ),
    ];
    // New connections to the server port: each meter, then the drop of a
    // source the meter could not hold (its set full: the dynset expression
    // breaks its rule, which would otherwise let the source through
    // unmetered), then the global cap, then accept.
    let new_to_port = [Match::TcpDport(port), Match::CtState(CT_NEW)];
    let not_in = |meter| {
        rule(
            &[
                Match::TcpDport(port),
                Match::CtState(CT_NEW),
                Match::SourceNotInMeter(meter),
            ],
            Action::Drop,
        )
    };
    input.extend([
        rule(
            &new_to_port,
            Action::DropOverSourceLimit(policy.new_connections),
        ),
        not_in(Meter::Rate),
        rule(
            &new_to_port,
            Action::DropOverSourceConnections(policy.connections.per_source),
        ),
        not_in(Meter::Count),
        rule(
            &new_to_port,
            Action::DropOverConnections(policy.connections.total),
        ),
        rule(&new_to_port, Action::Accept),
    ]);
    if policy.icmp_echo {
        input.push(rule(&[Match::IcmpEchoRequest], Action::Accept));
    }
    let mut output = vec![
        rule(&[Match::OifLoopback], Action::Accept),
        rule(&[Match::Ipv6], Action::Drop),
        rule(
            &[Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            Action::Accept,
        ),
    ];
    for egress in policy.egress(phase) {
        match egress {
            Egress::DhcpClient => {
                input.push(rule(
                    &[Match::UdpPorts {
                        sport: 67,
                        dport: 68,
                    }],
                    Action::Accept,
                ));
                output.push(rule(
                    &[Match::UdpPorts {
                        sport: 68,
                        dport: 67,
                    }],
                    Action::Accept,
                ));
            }
            Egress::Tcp(to) => output.push(rule(
                &[
                    Match::Ipv4Daddr(*to.ip()),
                    Match::TcpDport(to.port()),
                    Match::CtState(CT_NEW),
                ],
                Action::Accept,
            )),
        }
    }
    Ruleset {
        meters: vec![
            MeterSet {
                meter: Meter::Rate,
                size: policy.meter_size,
                timeout_secs: Some(policy.new_connections.refill_seconds().saturating_add(1)),
            },
            MeterSet {
                meter: Meter::Count,
                size: policy.meter_size,
                timeout_secs: None,
            },
        ],
        chains: vec![
            Chain {
                hook: Hook::Input,
                rules: input,
            },
            Chain {
                hook: Hook::Forward,
                rules: Vec::new(),
            },
            Chain {
                hook: Hook::Output,
                rules: output,
            },
        ],
    }
}
