//! The nf_tables netlink messages: the batch that replaces our table, and
//! the parser for the kernel's acknowledgements. Pure bytes in, bytes out;
//! netlink's own framing (headers, attributes, lengths, `NLMSG_ERROR`) is
//! `nlwire`'s, and the socket lives in `os/linux.rs`.
//!
//! The encoding mirrors what `nft` 1.0 sends for the text of
//! [`crate::render_nft`] (checked against `nft --debug=netlink,mnl`), so
//! `nft list` prints the two identically. Layouts are those of
//! `linux/netfilter/nf_tables.h` and `linux/netfilter/nfnetlink.h`.
#![forbid(unsafe_code)]

use nlwire::message::{
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST,
};
use nlwire::{AttrWriter, Builder, Message, WireError};

use crate::ir::{self, Action, Hook, Match, Meter, Rule, TABLE};
use crate::policy::{Phase, Policy, RateLimit};
use crate::FirewallError;

mod readback;
pub use readback::{
    encode_rule_dump, expected_rules, parse_rule_dump, verify_rules, DumpedRule, ReadBack, RuleDump,
};

// nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

// nf_tables.h: message types
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;

// Attributes, by object.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_SET_ID: u16 = 2;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFTA_DYNSET_EXPR: u16 = 7;
const NFTA_LIMIT_RATE: u16 = 1;
const NFTA_LIMIT_UNIT: u16 = 2;
const NFTA_LIMIT_BURST: u16 = 3;
const NFTA_LIMIT_TYPE: u16 = 4;
const NFTA_LIMIT_FLAGS: u16 = 5;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFTA_CONNLIMIT_COUNT: u16 = 1;
const NFTA_CONNLIMIT_FLAGS: u16 = 2;

// Values.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_IIF: u32 = 4;
const NFT_META_OIF: u32 = 5;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
const NFT_DYNSET_OP_ADD: u32 = 0;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
/// `ct count over N`: match when the count exceeds N.
const NFT_CONNLIMIT_F_INV: u32 = 1;
const NFT_LIMIT_PKTS: u32 = 0;
const NFT_LIMIT_F_INV: u32 = 1;
/// nft's datatype id for `ipv4_addr` (`TYPE_IPADDR`, src/datatype.h).
const NFT_TYPE_IPADDR: u32 = 7;
/// nftnl set userdata: TLV type of the key byte order, and "big endian".
const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = 0;
const BYTEORDER_BIG_ENDIAN: u32 = 2;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const ICMP_ECHO: u8 = 8;
const LOOPBACK_IFINDEX: u32 = 1;

/// One message of an encoded batch, for matching the kernel's replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    /// The netlink sequence number it was sent with.
    pub seq: u32,
    /// What it does, for error messages (`"add rule to chain input"`).
    pub what: String,
}

/// An encoded transaction: the bytes to send in one `sendto`, and the
/// messages the kernel must acknowledge one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// BATCH_BEGIN, the nf_tables messages, BATCH_END.
    pub bytes: Vec<u8>,
    /// The nf_tables messages (not BEGIN/END), in order, each sent with
    /// `NLM_F_ACK`.
    pub messages: Vec<BatchMessage>,
}

/// Encodes the transaction that replaces `table inet appliance` with the
/// ruleset for `policy` in `phase`: create the table if missing, delete
/// it, create it again with its set, chains and rules. The kernel applies
/// the batch all or nothing.
///
/// Sequence numbers start at `first_seq` (BATCH_BEGIN) and go up by one.
pub fn encode_batch(policy: &Policy, phase: Phase, first_seq: u32) -> Result<Batch, FirewallError> {
    let rs = ir::ruleset(policy, phase);
    let mut enc = BatchEncoder {
        builder: Builder::with_capacity(8192),
        messages: Vec::new(),
        seq: first_seq,
    };
    enc.control(NFNL_MSG_BATCH_BEGIN)?;

    enc.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, "declare table", |m| {
        m.c_str(NFTA_TABLE_NAME, TABLE);
        m.be_u32(NFTA_TABLE_FLAGS, 0);
    })?;
    enc.message(NFT_MSG_DELTABLE, 0, "delete table", |m| {
        m.c_str(NFTA_TABLE_NAME, TABLE);
    })?;
    enc.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, "add table", |m| {
        m.c_str(NFTA_TABLE_NAME, TABLE);
        m.be_u32(NFTA_TABLE_FLAGS, 0);
    })?;
    for chain in &rs.chains {
        let what = format!("add chain {}", chain.hook.name());
        enc.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, &what, |m| {
            m.c_str(NFTA_CHAIN_TABLE, TABLE);
            m.c_str(NFTA_CHAIN_NAME, chain.hook.name());
            m.c_str(NFTA_CHAIN_TYPE, "filter");
            m.be_u32(NFTA_CHAIN_POLICY, NF_DROP);
            m.nested(NFTA_CHAIN_HOOK, |m| {
                m.be_u32(NFTA_HOOK_HOOKNUM, hook_number(chain.hook));
                m.be_u32(NFTA_HOOK_PRIORITY, 0);
            })
        })?;
    }
    for set in &rs.meters {
        let name = set.meter.set_name();
        let what = format!("add set {name}");
        enc.message(NFT_MSG_NEWSET, NLM_F_CREATE, &what, |m| {
            m.c_str(NFTA_SET_TABLE, TABLE);
            m.c_str(NFTA_SET_NAME, name);
            let flags = match set.timeout_secs {
                Some(_) => NFT_SET_TIMEOUT | NFT_SET_EVAL,
                None => NFT_SET_EVAL,
            };
            m.be_u32(NFTA_SET_FLAGS, flags);
            m.be_u32(NFTA_SET_KEY_TYPE, NFT_TYPE_IPADDR);
            m.be_u32(NFTA_SET_KEY_LEN, 4);
            // The rules refer to the set by this id: it only exists by
            // name once the transaction commits.
            m.be_u32(NFTA_SET_ID, set.meter.set_id());
            m.nested(NFTA_SET_DESC, |m| {
                m.be_u32(NFTA_SET_DESC_SIZE, set.size);
            });
            if let Some(secs) = set.timeout_secs {
                m.be_u64(NFTA_SET_TIMEOUT, u64::from(secs) * 1000);
            }
            let mut udata = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
            udata.extend_from_slice(&BYTEORDER_BIG_ENDIAN.to_ne_bytes());
            m.bytes(NFTA_SET_USERDATA, &udata);
        })?;
    }
    for chain in &rs.chains {
        for (i, rule) in chain.rules.iter().enumerate() {
            let what = format!("add rule #{} to chain {}", i + 1, chain.hook.name());
            enc.message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, &what, |m| {
                m.c_str(NFTA_RULE_TABLE, TABLE);
                m.c_str(NFTA_RULE_CHAIN, chain.hook.name());
                m.nested(NFTA_RULE_EXPRESSIONS, |m| {
                    for expr in rule_exprs(rule) {
                        m.nested(NFTA_LIST_ELEM, |m| encode_expr(m, &expr));
                    }
                })
            })?;
        }
    }
    enc.control(NFNL_MSG_BATCH_END)?;
    Ok(Batch {
        bytes: enc.builder.into_bytes(),
        messages: enc.messages,
    })
}

fn hook_number(hook: Hook) -> u32 {
    match hook {
        Hook::Input => NF_INET_LOCAL_IN,
        Hook::Forward => NF_INET_FORWARD,
        Hook::Output => NF_INET_LOCAL_OUT,
    }
}

/// One nf_tables expression, all loading into and comparing register 1 as
/// nft does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Meta(u32),
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Bitwise {
        mask: u32,
    },
    CtState,
    DynsetLimitOver(RateLimit),
    DynsetCountOver(u32),
    /// `ip saddr != @set` (always inverted: see `Match::SourceNotInMeter`).
    LookupNot(Meter),
    ConnlimitOver(u32),
    Verdict(u32),
}

fn eq(data: &[u8]) -> Expr {
    Expr::Cmp {
        op: NFT_CMP_EQ,
        data: data.to_vec(),
    }
}

pub(crate) fn rule_exprs(rule: &Rule) -> Vec<Expr> {
    let mut out = Vec::new();
    let l4 = |out: &mut Vec<Expr>, proto: u8| {
        out.push(Expr::Meta(NFT_META_L4PROTO));
        out.push(eq(&[proto]));
    };
    let ipv4 = |out: &mut Vec<Expr>| {
        out.push(Expr::Meta(NFT_META_NFPROTO));
        out.push(eq(&[NFPROTO_IPV4]));
    };
    for m in &rule.matches {
        match *m {
            Match::IifLoopback | Match::OifLoopback => {
                let key = if *m == Match::IifLoopback {
                    NFT_META_IIF
                } else {
                    NFT_META_OIF
                };
                out.push(Expr::Meta(key));
                out.push(eq(&LOOPBACK_IFINDEX.to_ne_bytes()));
            }
            Match::Ipv6 => {
                out.push(Expr::Meta(NFT_META_NFPROTO));
                out.push(eq(&[NFPROTO_IPV6]));
            }
            Match::CtState(bits) => {
                out.push(Expr::CtState);
                out.push(Expr::Bitwise { mask: bits });
                out.push(Expr::Cmp {
                    op: NFT_CMP_NEQ,
                    data: 0u32.to_ne_bytes().to_vec(),
                });
            }
            Match::TcpDport(port) => {
                l4(&mut out, IPPROTO_TCP);
                out.push(Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 2,
                    len: 2,
                });
                out.push(eq(&port.to_be_bytes()));
            }
            Match::UdpPorts { sport, dport } => {
                l4(&mut out, IPPROTO_UDP);
                // Both ports in one 4-byte load, as nft merges them.
                out.push(Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 0,
                    len: 4,
                });
                let mut ports = sport.to_be_bytes().to_vec();
                ports.extend_from_slice(&dport.to_be_bytes());
                out.push(eq(&ports));
            }
            Match::IcmpEchoRequest => {
                ipv4(&mut out);
                l4(&mut out, IPPROTO_ICMP);
                out.push(Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 0,
                    len: 1,
                });
                out.push(eq(&[ICMP_ECHO]));
            }
            Match::Ipv4Daddr(ip) => {
                ipv4(&mut out);
                out.push(Expr::Payload {
                    base: NFT_PAYLOAD_NETWORK_HEADER,
                    offset: 16,
                    len: 4,
                });
                out.push(eq(&ip.octets()));
            }
            Match::SourceNotInMeter(meter) => {
                ipv4(&mut out);
                out.push(ipv4_saddr());
                out.push(Expr::LookupNot(meter));
            }
        }
    }
    match rule.action {
        Action::Accept => out.push(Expr::Verdict(NF_ACCEPT)),
        Action::Drop => out.push(Expr::Verdict(NF_DROP)),
        Action::DropOverSourceLimit(limit) => {
            ipv4(&mut out);
            out.push(ipv4_saddr());
            out.push(Expr::DynsetLimitOver(limit));
            out.push(Expr::Verdict(NF_DROP));
        }
        Action::DropOverSourceConnections(max) => {
            ipv4(&mut out);
            out.push(ipv4_saddr());
            out.push(Expr::DynsetCountOver(max));
            out.push(Expr::Verdict(NF_DROP));
        }
        Action::DropOverConnections(max) => {
            out.push(Expr::ConnlimitOver(max));
            out.push(Expr::Verdict(NF_DROP));
        }
    }
    out
}

/// `ip saddr` into register 1.
fn ipv4_saddr() -> Expr {
    Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset: 12,
        len: 4,
    }
}

pub(crate) fn encode_expr(m: &mut AttrWriter<'_>, expr: &Expr) {
    let name = match expr {
        Expr::Meta(_) => "meta",
        Expr::Cmp { .. } => "cmp",
        Expr::Payload { .. } => "payload",
        Expr::Bitwise { .. } => "bitwise",
        Expr::CtState => "ct",
        Expr::DynsetLimitOver(_) | Expr::DynsetCountOver(_) => "dynset",
        Expr::LookupNot(_) => "lookup",
        Expr::ConnlimitOver(_) => "connlimit",
        Expr::Verdict(_) => "immediate",
    };
    m.c_str(NFTA_EXPR_NAME, name);
    m.nested(NFTA_EXPR_DATA, |m| match expr {
        Expr::Meta(key) => {
            m.be_u32(NFTA_META_KEY, *key);
            m.be_u32(NFTA_META_DREG, NFT_REG_1);
        }
        Expr::Cmp { op, data } => {
            m.be_u32(NFTA_CMP_SREG, NFT_REG_1);
            m.be_u32(NFTA_CMP_OP, *op);
            m.nested(NFTA_CMP_DATA, |m| {
                m.bytes(NFTA_DATA_VALUE, data);
            })
        }
        Expr::Payload { base, offset, len } => {
            m.be_u32(NFTA_PAYLOAD_DREG, NFT_REG_1);
            m.be_u32(NFTA_PAYLOAD_BASE, *base);
            m.be_u32(NFTA_PAYLOAD_OFFSET, *offset);
            m.be_u32(NFTA_PAYLOAD_LEN, *len);
        }
        Expr::Bitwise { mask } => {
            m.be_u32(NFTA_BITWISE_SREG, NFT_REG_1);
            m.be_u32(NFTA_BITWISE_DREG, NFT_REG_1);
            m.be_u32(NFTA_BITWISE_LEN, 4);
            m.nested(NFTA_BITWISE_MASK, |m| {
                m.bytes(NFTA_DATA_VALUE, &mask.to_ne_bytes());
            });
            m.nested(NFTA_BITWISE_XOR, |m| {
                m.bytes(NFTA_DATA_VALUE, &0u32.to_ne_bytes());
            })
        }
        Expr::CtState => {
            m.be_u32(NFTA_CT_KEY, NFT_CT_STATE);
            m.be_u32(NFTA_CT_DREG, NFT_REG_1);
        }
        Expr::DynsetLimitOver(limit) => {
            m.be_u32(NFTA_DYNSET_SREG_KEY, NFT_REG_1);
            m.be_u32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
            m.c_str(NFTA_DYNSET_SET_NAME, Meter::Rate.set_name());
            m.be_u32(NFTA_DYNSET_SET_ID, Meter::Rate.set_id());
            m.nested(NFTA_DYNSET_EXPR, |m| {
                m.c_str(NFTA_EXPR_NAME, "limit");
                m.nested(NFTA_EXPR_DATA, |m| {
                    m.be_u64(NFTA_LIMIT_RATE, u64::from(limit.per_second));
                    m.be_u64(NFTA_LIMIT_UNIT, 1);
                    m.be_u32(NFTA_LIMIT_BURST, limit.burst);
                    m.be_u32(NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS);
                    m.be_u32(NFTA_LIMIT_FLAGS, NFT_LIMIT_F_INV);
                })
            })
        }
        Expr::DynsetCountOver(max) => {
            m.be_u32(NFTA_DYNSET_SREG_KEY, NFT_REG_1);
            m.be_u32(NFTA_DYNSET_OP, NFT_DYNSET_OP_ADD);
            m.c_str(NFTA_DYNSET_SET_NAME, Meter::Count.set_name());
            m.be_u32(NFTA_DYNSET_SET_ID, Meter::Count.set_id());
            m.nested(NFTA_DYNSET_EXPR, |m| {
                m.c_str(NFTA_EXPR_NAME, "connlimit");
                m.nested(NFTA_EXPR_DATA, |m| {
                    encode_connlimit(m, *max);
                })
            })
        }
        Expr::LookupNot(meter) => {
            m.be_u32(NFTA_LOOKUP_SREG, NFT_REG_1);
            m.c_str(NFTA_LOOKUP_SET, meter.set_name());
            m.be_u32(NFTA_LOOKUP_SET_ID, meter.set_id());
            m.be_u32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
        }
        Expr::ConnlimitOver(max) => {
            encode_connlimit(m, *max);
        }
        Expr::Verdict(code) => {
            m.be_u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            m.nested(NFTA_IMMEDIATE_DATA, |m| {
                m.nested(NFTA_DATA_VERDICT, |m| {
                    m.be_u32(NFTA_VERDICT_CODE, *code);
                })
            })
        }
    })
}

fn encode_connlimit(m: &mut AttrWriter<'_>, max: u32) {
    m.be_u32(NFTA_CONNLIMIT_COUNT, max);
    m.be_u32(NFTA_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
}

struct BatchEncoder {
    builder: Builder,
    messages: Vec<BatchMessage>,
    seq: u32,
}

impl BatchEncoder {
    fn next_seq(&mut self) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        seq
    }

    /// BATCH_BEGIN / BATCH_END: addressed to the nf_tables subsystem, not
    /// acknowledged on their own.
    fn control(&mut self, ty: u16) -> Result<(), FirewallError> {
        let seq = self.next_seq();
        let [res_hi, res_lo] = NFNL_SUBSYS_NFTABLES.to_be_bytes();
        let nfgenmsg = [NFPROTO_UNSPEC, 0, res_hi, res_lo];
        self.builder
            .message(ty, NLM_F_REQUEST, seq, &nfgenmsg, |_| {})
            .map_err(wire_error)
    }

    fn message(
        &mut self,
        msg: u16,
        flags: u16,
        what: &str,
        body: impl FnOnce(&mut AttrWriter<'_>),
    ) -> Result<(), FirewallError> {
        let seq = self.next_seq();
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg;
        // struct nfgenmsg: family, version (NFNETLINK_V0), res_id 0.
        let nfgenmsg = [NFPROTO_INET, 0, 0, 0];
        self.builder
            .message(ty, NLM_F_REQUEST | NLM_F_ACK | flags, seq, &nfgenmsg, body)
            .map_err(wire_error)?;
        self.messages.push(BatchMessage {
            seq,
            what: what.to_owned(),
        });
        Ok(())
    }
}

/// A framing error as the crate's: too large while building, malformed
/// while parsing.
pub(crate) fn wire_error(error: WireError) -> FirewallError {
    match error {
        WireError::TooLarge { what, .. } => FirewallError::TooLarge(what),
        other => FirewallError::MalformedReply(other.detail()),
    }
}

/// One reply from the kernel to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// The message with this sequence number was accepted.
    Ack {
        /// Its sequence number.
        seq: u32,
    },
    /// The message with this sequence number was refused.
    Error {
        /// Its sequence number.
        seq: u32,
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ack text, if it sent one.
        message: Option<String>,
    },
}

/// Parses one datagram of netlink replies (`NLMSG_ERROR` acks and errors;
/// `NOOP` and `DONE` are skipped; anything else is malformed here). Never
/// panics: every length is checked before use.
pub fn parse_acks(bytes: &[u8]) -> Result<Vec<AckOutcome>, FirewallError> {
    let mut out = Vec::new();
    for m in nlwire::messages(bytes) {
        let m = m.map_err(wire_error)?;
        match m.header.kind {
            NLMSG_NOOP | NLMSG_DONE => {}
            NLMSG_ERROR => out.push(parse_error(&m)?),
            _ => return Err(FirewallError::MalformedReply("unexpected message type")),
        }
    }
    Ok(out)
}

/// An acknowledgement or a refusal, named by the sequence number of the
/// request it answers (from the echoed request header, which the kernel
/// always sends).
fn parse_error(m: &Message<'_>) -> Result<AckOutcome, FirewallError> {
    let reply = m.error().map_err(wire_error)?;
    let request = reply
        .request
        .ok_or(FirewallError::MalformedReply("truncated original header"))?;
    if reply.is_ack() {
        return Ok(AckOutcome::Ack { seq: request.seq });
    }
    Ok(AckOutcome::Error {
        seq: request.seq,
        errno: reply.errno,
        message: reply.message(),
    })
}

/// Where a batch stands given the replies so far.
#[derive(Debug)]
pub enum AckStatus {
    /// Every message acknowledged: the transaction committed.
    Complete,
    /// Some messages have no reply yet.
    Pending,
    /// A message was refused (the first refusal, in batch order); the
    /// kernel rolled the whole transaction back.
    Failed(FirewallError),
}

/// Matches replies to the batch's messages. A refusal of anything (even of
/// the batch as a whole, which the kernel reports under BATCH_BEGIN's
/// sequence number) fails the batch.
pub fn ack_status(messages: &[BatchMessage], replies: &[AckOutcome]) -> AckStatus {
    let first_error = replies
        .iter()
        .filter_map(|r| match r {
            AckOutcome::Error {
                seq,
                errno,
                message,
            } => Some((*seq, *errno, message)),
            AckOutcome::Ack { .. } => None,
        })
        .min_by_key(|(seq, _, _)| *seq);
    if let Some((seq, errno, message)) = first_error {
        let what = messages
            .iter()
            .find(|m| m.seq == seq)
            .map_or_else(|| "the batch".to_owned(), |m| m.what.clone());
        let what = match message {
            Some(text) if !text.is_empty() => format!("{what} ({text})"),
            _ => what,
        };
        return AckStatus::Failed(FirewallError::Refused { seq, what, errno });
    }
    let acked = |seq: u32| {
        replies
            .iter()
            .any(|r| matches!(r, AckOutcome::Ack { seq: s } if *s == seq))
    };
    if messages.iter().all(|m| acked(m.seq)) {
        AckStatus::Complete
    } else {
        AckStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use nlwire::message::{NLM_F_ACK_TLVS, NLM_F_CAPPED};

    use super::*;

    fn reference() -> Policy {
        Policy::from_spec(&appliance_spec::Spec::reference().unwrap()).unwrap()
    }

    /// Splits a batch into (type, flags, seq, payload) per message.
    fn messages(bytes: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
        nlwire::messages(bytes)
            .map(|m| {
                let m = m.unwrap();
                assert_eq!(m.header.len % 4, 0, "message not padded");
                (
                    m.header.kind,
                    m.header.flags,
                    m.header.seq,
                    m.payload.to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn batch_is_framed_by_begin_and_end() {
        let batch = encode_batch(&reference(), Phase::Sealed, 100).unwrap();
        let msgs = messages(&batch.bytes);
        assert_eq!(msgs.first().unwrap().0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs.last().unwrap().0, NFNL_MSG_BATCH_END);
        // BEGIN's nfgenmsg: AF_UNSPEC, v0, res_id = NFNL_SUBSYS_NFTABLES (BE).
        assert_eq!(msgs[0].3, [0, 0, 0, 10]);
        let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
        assert_eq!(
            seqs,
            (100..100 + u32::try_from(msgs.len()).unwrap()).collect::<Vec<_>>()
        );
        // Every inner message asks for an ack and is listed for checking.
        let inner = &msgs[1..msgs.len() - 1];
        assert_eq!(inner.len(), batch.messages.len());
        for (m, listed) in inner.iter().zip(&batch.messages) {
            assert_ne!(m.1 & NLM_F_ACK, 0);
            assert_eq!(m.2, listed.seq);
            assert_eq!(m.3[0], NFPROTO_INET);
        }
        let types: Vec<u16> = inner.iter().map(|m| m.0 & 0xff).collect();
        assert_eq!(
            &types[..8],
            [
                NFT_MSG_NEWTABLE,
                NFT_MSG_DELTABLE,
                NFT_MSG_NEWTABLE,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWSET,
                NFT_MSG_NEWSET
            ]
        );
        assert!(types[8..].iter().all(|t| *t == NFT_MSG_NEWRULE));
        // Sealed: input has 11 rules (with ICMP), forward none, output 3.
        assert_eq!(types.len() - 8, 14);
    }

    /// The set messages, byte for byte as `nft --debug=mnl` showed them for
    /// the seed-000 text (nft 1.0.6).
    #[test]
    fn set_messages_match_nft() {
        let batch = encode_batch(&reference(), Phase::Sealed, 0).unwrap();
        let msgs = messages(&batch.bytes);
        let sets: Vec<_> = msgs
            .iter()
            .filter(|m| m.0 & 0xff == NFT_MSG_NEWSET)
            .collect();
        assert_eq!(sets.len(), 2);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[1u8, 0, 0, 0][..],                                     // nfgenmsg: inet
            &[14, 0, 1, 0], b"appliance\0", &[0, 0],                 // SET_TABLE
            &[15, 0, 2, 0], b"ratelimit4\0", &[0],                   // SET_NAME
            &[8, 0, 3, 0, 0, 0, 0, 0x30],                            // SET_FLAGS timeout|eval
            &[8, 0, 4, 0, 0, 0, 0, 7],                               // SET_KEY_TYPE ipv4_addr
            &[8, 0, 5, 0, 0, 0, 0, 4],                               // SET_KEY_LEN
            &[8, 0, 10, 0, 0, 0, 0, 1],                              // SET_ID
            &[12, 0, 9, 0x80, 8, 0, 1, 0, 0, 1, 0, 0],               // SET_DESC { SIZE 65536 }
            &[12, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0xb8],           // SET_TIMEOUT 3000 ms
            &[10, 0, 13, 0, 0, 4, 2, 0, 0, 0, 0, 0],                 // SET_USERDATA byteorder BE
        ]
        .concat();
        assert_eq!(sets[0].3, want);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[1u8, 0, 0, 0][..],                                     // nfgenmsg: inet
            &[14, 0, 1, 0], b"appliance\0", &[0, 0],                 // SET_TABLE
            &[15, 0, 2, 0], b"connlimit4\0", &[0],                   // SET_NAME
            &[8, 0, 3, 0, 0, 0, 0, 0x20],                            // SET_FLAGS eval
            &[8, 0, 4, 0, 0, 0, 0, 7],                               // SET_KEY_TYPE ipv4_addr
            &[8, 0, 5, 0, 0, 0, 0, 4],                               // SET_KEY_LEN
            &[8, 0, 10, 0, 0, 0, 0, 2],                              // SET_ID
            &[12, 0, 9, 0x80, 8, 0, 1, 0, 0, 1, 0, 0],               // SET_DESC { SIZE 65536 }
            &[10, 0, 13, 0, 0, 4, 2, 0, 0, 0, 0, 0],                 // SET_USERDATA byteorder BE
        ]
        .concat();
        assert_eq!(sets[1].3, want);
    }

    /// The new expressions, byte for byte as `nft --debug=mnl` sent them
    /// (nft 1.0.6): the count meter's dynset, the inverted lookup, and the
    /// rule-level connlimit.
    #[test]
    fn count_meter_expressions_match_nft() {
        let encoded = |expr: Expr| nlwire::build::attributes(|m| encode_expr(m, &expr)).unwrap();
        #[rustfmt::skip]
        let dynset: Vec<u8> = [
            &[11u8, 0, 1, 0][..], b"dynset\0", &[0],                 // EXPR_NAME
            &[84, 0, 2, 0x80],                                       // EXPR_DATA
            &[8, 0, 4, 0, 0, 0, 0, 1],                               // SREG_KEY 1
            &[8, 0, 3, 0, 0, 0, 0, 0],                               // OP add
            &[15, 0, 1, 0], b"connlimit4\0", &[0],                   // SET_NAME
            &[8, 0, 2, 0, 0, 0, 0, 2],                               // SET_ID
            &[40, 0, 7, 0x80],                                       // EXPR
            &[14, 0, 1, 0], b"connlimit\0", &[0, 0],
            &[20, 0, 2, 0x80], &[8, 0, 1, 0, 0, 0, 0, 32], &[8, 0, 2, 0, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(encoded(Expr::DynsetCountOver(32)), dynset);
        #[rustfmt::skip]
        let lookup: Vec<u8> = [
            &[11u8, 0, 1, 0][..], b"lookup\0", &[0],                 // EXPR_NAME
            &[44, 0, 2, 0x80],                                       // EXPR_DATA
            &[8, 0, 2, 0, 0, 0, 0, 1],                               // SREG 1
            &[15, 0, 1, 0], b"ratelimit4\0", &[0],                   // SET
            &[8, 0, 4, 0, 0, 0, 0, 1],                               // SET_ID
            &[8, 0, 5, 0, 0, 0, 0, 1],                               // FLAGS inv
        ]
        .concat();
        assert_eq!(encoded(Expr::LookupNot(Meter::Rate)), lookup);
        #[rustfmt::skip]
        let connlimit: Vec<u8> = [
            &[14u8, 0, 1, 0][..], b"connlimit\0", &[0, 0],           // EXPR_NAME
            &[20, 0, 2, 0x80],                                       // EXPR_DATA
            &[8, 0, 1, 0, 0, 0, 0x03, 0xe8],                         // COUNT 1000
            &[8, 0, 2, 0, 0, 0, 0, 1],                               // FLAGS inv (over)
        ]
        .concat();
        assert_eq!(encoded(Expr::ConnlimitOver(1000)), connlimit);
    }

    /// The loopback rule, byte for byte as nft sends it.
    #[test]
    fn loopback_rule_matches_nft() {
        let batch = encode_batch(&reference(), Phase::Sealed, 0).unwrap();
        let msgs = messages(&batch.bytes);
        let rule = msgs.iter().find(|m| m.0 & 0xff == NFT_MSG_NEWRULE).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[1u8, 0, 0, 0][..],
            &[14, 0, 1, 0], b"appliance\0", &[0, 0],                 // RULE_TABLE
            &[10, 0, 2, 0], b"input\0", &[0, 0],                     // RULE_CHAIN
            &[132, 0, 4, 0x80],                                      // RULE_EXPRESSIONS
            &[36, 0, 1, 0x80], &[9, 0, 1, 0], b"meta\0", &[0, 0, 0], // meta
            &[20, 0, 2, 0x80], &[8, 0, 2, 0, 0, 0, 0, 4], &[8, 0, 1, 0, 0, 0, 0, 1],
            &[44, 0, 1, 0x80], &[8, 0, 1, 0], b"cmp\0",              // cmp eq 1
            &[32, 0, 2, 0x80], &[8, 0, 1, 0, 0, 0, 0, 1], &[8, 0, 2, 0, 0, 0, 0, 0],
            &[12, 0, 3, 0x80, 8, 0, 1, 0], &1u32.to_ne_bytes(),
            &[48, 0, 1, 0x80], &[14, 0, 1, 0], b"immediate\0", &[0, 0], // accept
            &[28, 0, 2, 0x80], &[8, 0, 1, 0, 0, 0, 0, 0],
            &[16, 0, 2, 0x80], &[12, 0, 2, 0x80], &[8, 0, 1, 0, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(rule.3, want);
    }

    #[test]
    fn boot_adds_dhcp_and_metadata_rules() {
        let sealed = encode_batch(&reference(), Phase::Sealed, 0).unwrap();
        let boot = encode_batch(&reference(), Phase::Boot, 0).unwrap();
        assert_eq!(boot.messages.len(), sealed.messages.len() + 3);
        let metadata = [169u8, 254, 169, 254];
        assert!(boot.bytes.windows(4).any(|w| w == metadata));
        assert!(!sealed.bytes.windows(4).any(|w| w == metadata));
    }

    fn ack(seq: u32, error: i32, flags: u16, extra: &[u8]) -> Vec<u8> {
        let mut body = error.to_ne_bytes().to_vec();
        // The original header (16 bytes; only its seq matters here).
        body.extend_from_slice(&16u32.to_ne_bytes());
        body.extend_from_slice(&0x0a06u16.to_ne_bytes());
        body.extend_from_slice(&0u16.to_ne_bytes());
        body.extend_from_slice(&seq.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(extra);
        let mut msg = u32::try_from(16 + body.len())
            .unwrap()
            .to_ne_bytes()
            .to_vec();
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&4242u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn acks_and_errors_parse() {
        let mut tlv = vec![12, 0, 1, 0];
        tlv.extend_from_slice(b"no such\0");
        let bytes = [
            ack(5, 0, NLM_F_CAPPED, &[]),
            ack(6, -2, NLM_F_CAPPED | NLM_F_ACK_TLVS, &tlv),
        ]
        .concat();
        assert_eq!(
            parse_acks(&bytes).unwrap(),
            vec![
                AckOutcome::Ack { seq: 5 },
                AckOutcome::Error {
                    seq: 6,
                    errno: 2,
                    message: Some("no such".to_owned())
                }
            ]
        );
    }

    #[test]
    fn truncated_replies_are_errors_not_panics() {
        let full = ack(5, -1, 0, &[]);
        for cut in 0..full.len() {
            let _ = parse_acks(&full[..cut]);
        }
        assert!(parse_acks(&full[..10]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_acks_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_acks(&bytes);
        }

        #[test]
        fn acks_round_trip(seqs in proptest::collection::vec(1u32.., 1..20), errno in 1i32..4096) {
            let mut bytes = Vec::new();
            for (i, seq) in seqs.iter().enumerate() {
                let error = if i % 2 == 0 { 0 } else { -errno };
                bytes.extend(ack(*seq, error, NLM_F_CAPPED, &[]));
            }
            let parsed = parse_acks(&bytes).unwrap();
            proptest::prop_assert_eq!(parsed.len(), seqs.len());
            for (i, (p, seq)) in parsed.iter().zip(&seqs).enumerate() {
                let want = if i % 2 == 0 {
                    AckOutcome::Ack { seq: *seq }
                } else {
                    AckOutcome::Error { seq: *seq, errno, message: None }
                };
                proptest::prop_assert_eq!(p, &want);
            }
        }
    }

    #[test]
    fn ack_status_table() {
        let msgs = vec![
            BatchMessage {
                seq: 2,
                what: "a".into(),
            },
            BatchMessage {
                seq: 3,
                what: "b".into(),
            },
        ];
        let err = |seq, errno| AckOutcome::Error {
            seq,
            errno,
            message: None,
        };
        let cases: Vec<(Vec<AckOutcome>, &str)> = vec![
            (vec![], "pending"),
            (vec![AckOutcome::Ack { seq: 2 }], "pending"),
            (
                vec![AckOutcome::Ack { seq: 3 }, AckOutcome::Ack { seq: 2 }],
                "complete",
            ),
            (vec![AckOutcome::Ack { seq: 2 }, err(3, 22)], "failed b"),
            (vec![err(3, 2), err(2, 22)], "failed a"),
            (vec![err(1, 22)], "failed the batch"),
        ];
        for (replies, want) in cases {
            let got = match ack_status(&msgs, &replies) {
                AckStatus::Complete => "complete".to_owned(),
                AckStatus::Pending => "pending".to_owned(),
                AckStatus::Failed(FirewallError::Refused { what, .. }) => format!("failed {what}"),
                AckStatus::Failed(e) => format!("other {e}"),
            };
            assert_eq!(got, want, "{replies:?}");
        }
    }
}
