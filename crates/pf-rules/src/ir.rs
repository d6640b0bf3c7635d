//! The nftables ruleset as data: one table, one meter set, three base
//! chains. Both the nft text renderer and the netlink encoder read this, so
//! the two can only differ in syntax.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use crate::policy::{Egress, Phase, Policy, RateLimit};

/// The table name (family `inet`).
pub(crate) const TABLE: &str = "appliance";
/// The per-source meter on new connections to the server port.
pub(crate) const METER_SET: &str = "ratelimit4";
/// Sources remembered at once. When full, new sources are not limited (the
/// kernel cannot add them), so it is sized well above any honest load; a
/// short element timeout keeps a spoofed-SYN flood from filling it quickly.
pub(crate) const METER_SIZE: u32 = 65535;

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
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Accept,
    Drop,
    /// Charge the IPv4 source's bucket in the meter set; drop if it is empty.
    DropOverSourceLimit(RateLimit),
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

/// The meter set backing the per-source limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MeterSet {
    /// Element timeout, seconds; refreshed on every packet of the source.
    pub(crate) timeout_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ruleset {
    pub(crate) meter: MeterSet,
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
        rule(
            &[Match::TcpDport(port), Match::CtState(CT_NEW)],
            Action::DropOverSourceLimit(policy.new_connections),
        ),
        rule(
            &[Match::TcpDport(port), Match::CtState(CT_NEW)],
            Action::Accept,
        ),
    ];
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
        meter: MeterSet {
            timeout_secs: policy.new_connections.refill_seconds().saturating_add(1),
        },
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
