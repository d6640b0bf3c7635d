//! Reading our table back from the kernel: the rule dump request, the
//! parser for its replies, and the rule-by-rule comparison with what
//! [`super::encode_batch`] loads. Pure bytes; the socket is in `os/linux.rs`.
//!
//! The comparison is of expressions, not of whole messages: the kernel adds
//! attributes of its own to a dumped rule (handle, position, generation
//! id) and to some expressions (defaults such as bitwise's operation or a
//! dynset's timeout and flags). So every attribute we send must come back
//! with the same value, recursively, and the kernel's extras are ignored;
//! the only attributes we send that the kernel never reports are the
//! batch-local set ids of dynset and lookup (it reports the set by name,
//! which is compared).
#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};

use nlwire::message::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_DUMP, NLM_F_REQUEST};

use super::{
    encode_expr, rule_exprs, wire_error, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NFTA_DYNSET_SET_ID,
    NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_LIST_ELEM, NFTA_LOOKUP_SET_ID, NFTA_RULE_CHAIN,
    NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE, NFT_MSG_GETRULE, NFT_MSG_NEWRULE,
};
use crate::ir::{self, TABLE};
use crate::nft::render_nft;
use crate::policy::{Phase, Policy};
use crate::FirewallError;

/// One rule of our table: its chain and the payload of its
/// `NFTA_RULE_EXPRESSIONS` attribute (a list of `NFTA_LIST_ELEM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedRule {
    /// The chain's name.
    pub chain: String,
    /// The expression list, as attribute bytes.
    pub exprs: Vec<u8>,
}

/// What one datagram of a rule dump held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleDump {
    /// Rules of `table inet appliance`, in the kernel's order.
    pub rules: Vec<DumpedRule>,
    /// The dump ended (`NLMSG_DONE`) in this datagram.
    pub done: bool,
}

/// The ruleset in force was read back and found equal to the rendered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Rules compared (all of them, every chain).
    pub rules: usize,
    /// SHA-256 (lowercase hex) of [`render_nft`] for the policy and phase:
    /// the text whose rules the kernel was found to hold, one by one.
    pub sha256: String,
}

impl ReadBack {
    /// What a successful read-back of `policy` in `phase` reports, without
    /// a kernel: the rule count and the hash of the rendered text.
    pub fn expected(policy: &Policy, phase: Phase) -> ReadBack {
        let rules = ir::ruleset(policy, phase)
            .chains
            .iter()
            .map(|c| c.rules.len())
            .sum();
        ReadBack {
            rules,
            sha256: sha256_hex(render_nft(policy, phase).as_bytes()),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The request for every rule of `table inet appliance`
/// (`NFT_MSG_GETRULE`, `NLM_F_DUMP`, filtered by table in the kernel).
pub fn encode_rule_dump(seq: u32) -> Result<Vec<u8>, FirewallError> {
    nlwire::build::message(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        // struct nfgenmsg: inet, NFNETLINK_V0, res_id 0.
        &[NFPROTO_INET, 0, 0, 0],
        |m| m.c_str(NFTA_RULE_TABLE, TABLE),
    )
    .map_err(wire_error)
}

/// The rules we load for `policy` in `phase`, in load order.
pub fn expected_rules(policy: &Policy, phase: Phase) -> Result<Vec<DumpedRule>, FirewallError> {
    let rs = ir::ruleset(policy, phase);
    let mut out = Vec::new();
    for chain in &rs.chains {
        for rule in &chain.rules {
            let exprs = nlwire::build::attributes(|m| {
                for expr in rule_exprs(rule) {
                    m.nested(NFTA_LIST_ELEM, |m| encode_expr(m, &expr));
                }
            })
            .map_err(wire_error)?;
            out.push(DumpedRule {
                chain: chain.hook.name().to_owned(),
                exprs,
            });
        }
    }
    Ok(out)
}

/// Parses one datagram of a rule dump. Rules of other tables are skipped
/// (the kernel filters by table already); an error reply fails the dump.
/// Never panics: every length is checked before use.
pub fn parse_rule_dump(bytes: &[u8]) -> Result<RuleDump, FirewallError> {
    let mut out = RuleDump::default();
    for m in nlwire::messages(bytes) {
        let m = m.map_err(wire_error)?;
        match m.header.kind {
            NLMSG_NOOP => {}
            NLMSG_DONE | NLMSG_ERROR => {
                // DONE of a dump: 0 or a negative errno; ERROR: 0 is an ack.
                let errno = if m.header.kind == NLMSG_DONE {
                    m.done_status().saturating_neg()
                } else {
                    m.error().map_err(wire_error)?.errno
                };
                if errno != 0 {
                    return Err(FirewallError::Refused {
                        seq: m.header.seq,
                        what: "dump of the rules of table inet appliance".to_owned(),
                        errno,
                    });
                }
                if m.header.kind == NLMSG_DONE {
                    out.done = true;
                }
            }
            t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                // struct nfgenmsg, then the rule's attributes.
                let attrs = m
                    .attrs_after(4)
                    .ok_or(FirewallError::MalformedReply("truncated nfgenmsg"))?;
                let mut table = None;
                let mut chain = None;
                let mut exprs = None;
                for attr in attrs {
                    let attr = attr.map_err(wire_error)?;
                    match attr.kind() {
                        NFTA_RULE_TABLE => table = Some(attr.to_string_lossy()),
                        NFTA_RULE_CHAIN => chain = Some(attr.to_string_lossy()),
                        NFTA_RULE_EXPRESSIONS => exprs = Some(attr.payload().to_vec()),
                        _ => {}
                    }
                }
                let table = table.ok_or(FirewallError::MalformedReply("rule without table"))?;
                if table == TABLE {
                    out.rules.push(DumpedRule {
                        chain: chain.ok_or(FirewallError::MalformedReply("rule without chain"))?,
                        exprs: exprs.unwrap_or_default(),
                    });
                }
            }
            _ => return Err(FirewallError::MalformedReply("unexpected message type")),
        }
    }
    Ok(out)
}

fn c_string(payload: &[u8]) -> String {
    String::from_utf8_lossy(nlwire::c_str(payload)).into_owned()
}

/// Splits attribute bytes into (type without flag bits, payload).
fn attrs(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, FirewallError> {
    nlwire::attrs(bytes)
        .map(|a| a.map(|a| (a.kind(), a.payload())).map_err(wire_error))
        .collect()
}

/// Checks that the kernel holds exactly the rules of `policy` in `phase`:
/// the same number per chain, and each rule's expressions equal in order.
/// The first difference is an error naming the chain and the rule (1-based).
pub fn verify_rules(
    policy: &Policy,
    phase: Phase,
    dumped: &[DumpedRule],
) -> Result<ReadBack, FirewallError> {
    let expected = expected_rules(policy, phase)?;
    let mismatch = |chain: &str, rule: usize, detail: String| FirewallError::ReadBackMismatch {
        phase: phase.name(),
        chain: chain.to_owned(),
        rule,
        detail,
    };
    if let Some(stray) = dumped
        .iter()
        .find(|d| !expected.iter().any(|e| e.chain == d.chain))
    {
        return Err(mismatch(
            &stray.chain,
            1,
            "the kernel has rules in a chain we do not load".to_owned(),
        ));
    }
    let mut chains: Vec<&str> = Vec::new();
    for e in &expected {
        if !chains.contains(&e.chain.as_str()) {
            chains.push(&e.chain);
        }
    }
    for chain in chains {
        let want: Vec<&DumpedRule> = expected.iter().filter(|r| r.chain == chain).collect();
        let got: Vec<&DumpedRule> = dumped.iter().filter(|r| r.chain == chain).collect();
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            compare_rule(&w.exprs, &g.exprs).map_err(|d| mismatch(chain, i + 1, d))?;
        }
        if want.len() != got.len() {
            let first = want.len().min(got.len()) + 1;
            return Err(mismatch(
                chain,
                first,
                format!(
                    "the chain should hold {} rules, the kernel has {}",
                    want.len(),
                    got.len()
                ),
            ));
        }
    }
    Ok(ReadBack::expected(policy, phase))
}

fn compare_rule(want: &[u8], got: &[u8]) -> Result<(), String> {
    let want = attrs(want).map_err(|e| format!("our encoding: {e}"))?;
    let got = attrs(got).map_err(|e| format!("kernel's expressions: {e}"))?;
    if want.len() != got.len() {
        return Err(format!(
            "{} expressions expected, the kernel has {}",
            want.len(),
            got.len()
        ));
    }
    for (k, ((_, w), (_, g))) in want.iter().zip(&got).enumerate() {
        compare_expr(w, g).map_err(|d| format!("expression #{}: {d}", k + 1))?;
    }
    Ok(())
}

fn compare_expr(want: &[u8], got: &[u8]) -> Result<(), String> {
    let w = attrs(want).map_err(|e| e.to_string())?;
    let g = attrs(got).map_err(|e| e.to_string())?;
    let field = |list: &[(u16, &[u8])], ty: u16| {
        list.iter().find(|(t, _)| *t == ty).map(|(_, p)| p.to_vec())
    };
    let name = field(&w, NFTA_EXPR_NAME).unwrap_or_default();
    let got_name = field(&g, NFTA_EXPR_NAME).unwrap_or_default();
    let name = c_string(&name);
    if name != c_string(&got_name) {
        return Err(format!(
            "expected {name}, the kernel has {}",
            c_string(&got_name)
        ));
    }
    // The set id only names the set within our batch; the kernel reports
    // the set by name, which is compared.
    let skip: &[u16] = match name.as_str() {
        "dynset" => &[NFTA_DYNSET_SET_ID],
        "lookup" => &[NFTA_LOOKUP_SET_ID],
        _ => &[],
    };
    let want_data = field(&w, NFTA_EXPR_DATA).unwrap_or_default();
    let got_data = field(&g, NFTA_EXPR_DATA).unwrap_or_default();
    compare_attrs(&want_data, &got_data, skip).map_err(|d| format!("{name}: {d}"))
}

/// Every attribute of `want` is in `got` with the same value; nested ones
/// (by our own encoding's flag) recursively.
fn compare_attrs(want: &[u8], got: &[u8], skip: &[u16]) -> Result<(), String> {
    let got = attrs(got).map_err(|e| e.to_string())?;
    for attr in nlwire::attrs(want) {
        let attr = attr.map_err(|e| format!("our encoding: {e}"))?;
        let ty = attr.kind();
        if skip.contains(&ty) {
            continue;
        }
        let Some((_, other)) = got.iter().find(|(t, _)| *t == ty) else {
            return Err(format!("attribute {ty} missing"));
        };
        let payload = attr.payload();
        if attr.is_nested() {
            compare_attrs(payload, other, &[]).map_err(|d| format!("in attribute {ty}: {d}"))?;
        } else if payload != *other {
            return Err(format!(
                "attribute {ty} is {other:02x?}, expected {payload:02x?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Policy {
        Policy::from_spec(&appliance_spec::Spec::reference().unwrap()).unwrap()
    }

    /// A kernel-style NEWRULE reply for `rule`, with the extras the kernel
    /// adds (handle, position) around the expressions.
    fn reply(rule: &DumpedRule, table: &str, seq: u32) -> Vec<u8> {
        nlwire::build::message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE,
            0x2, // NLM_F_MULTI
            seq,
            &[NFPROTO_INET, 0, 0, 7],
            |m| {
                m.c_str(NFTA_RULE_TABLE, table);
                m.c_str(NFTA_RULE_CHAIN, &rule.chain);
                m.bytes(3, &42u64.to_be_bytes()); // NFTA_RULE_HANDLE
                m.nested(NFTA_RULE_EXPRESSIONS, |m| m.raw(&rule.exprs));
                m.bytes(6, &41u64.to_be_bytes()); // NFTA_RULE_POSITION
            },
        )
        .unwrap()
    }

    fn done(seq: u32, status: i32) -> Vec<u8> {
        nlwire::build::message(NLMSG_DONE, 0x2, seq, &status.to_ne_bytes(), |_| {}).unwrap()
    }

    #[test]
    fn dump_request_layout() {
        let req = encode_rule_dump(9).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &36u32.to_ne_bytes()[..],
            &0x0a07u16.to_ne_bytes(), &0x0301u16.to_ne_bytes(), // GETRULE, REQUEST|DUMP
            &9u32.to_ne_bytes(), &0u32.to_ne_bytes(),
            &[1, 0, 0, 0],                                       // nfgenmsg: inet
            &[14, 0, 1, 0], b"appliance\0", &[0, 0],             // RULE_TABLE
        ]
        .concat();
        assert_eq!(req, want);
    }

    #[test]
    fn dump_round_trips_and_verifies() {
        let policy = reference();
        let rules = expected_rules(&policy, Phase::Sealed).unwrap();
        let mut bytes: Vec<u8> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            bytes.extend(reply(r, TABLE, u32::try_from(i).unwrap()));
        }
        bytes.extend(reply(&rules[0], "other", 99));
        bytes.extend(done(100, 0));
        let dump = parse_rule_dump(&bytes).unwrap();
        assert!(dump.done);
        assert_eq!(dump.rules, rules);
        let rb = verify_rules(&policy, Phase::Sealed, &dump.rules).unwrap();
        assert_eq!(rb, ReadBack::expected(&policy, Phase::Sealed));
        assert_eq!(rb.rules, 14);
        assert_eq!(rb.sha256.len(), 64);
    }

    #[test]
    fn mismatches_name_chain_and_rule() {
        let policy = reference();
        let sealed = expected_rules(&policy, Phase::Sealed).unwrap();
        let boot = expected_rules(&policy, Phase::Boot).unwrap();
        let mut swapped = sealed.clone();
        swapped.swap(1, 2);
        let mut short = sealed.clone();
        short.pop();
        let mut stray = sealed.clone();
        stray.push(DumpedRule {
            chain: "prerouting".into(),
            exprs: sealed[0].exprs.clone(),
        });
        let cases: Vec<(&str, Vec<DumpedRule>, &str)> = vec![
            (
                "boot loaded",
                boot,
                "chain input rule #12: the chain should hold 11 rules, the kernel has 12",
            ),
            ("reordered", swapped, "chain input rule #2"),
            ("missing last", short, "chain output rule #3"),
            ("stray chain", stray, "chain prerouting"),
            ("empty", vec![], "chain input rule #1"),
        ];
        for (what, dumped, want) in cases {
            let err = verify_rules(&policy, Phase::Sealed, &dumped).unwrap_err();
            assert!(err.to_string().contains(want), "{what}: {err}");
        }
    }

    #[test]
    fn kernel_extras_are_ignored_but_values_are_not() {
        let policy = reference();
        let rules = expected_rules(&policy, Phase::Sealed).unwrap();
        // A bitwise with the kernel's extra NFTA_BITWISE_OP appended.
        let idx = rules
            .iter()
            .position(|r| r.exprs.windows(8).any(|w| w == b"bitwise\0"))
            .unwrap();
        let mut with_extra = rules.clone();
        let list = attrs(&rules[idx].exprs).unwrap();
        let exprs = nlwire::build::attributes(|m| {
            for (_, elem) in &list {
                m.nested(NFTA_LIST_ELEM, |m| {
                    for (ty, payload) in attrs(elem).unwrap() {
                        if ty == NFTA_EXPR_DATA && c_string(attrs(elem).unwrap()[0].1) == "bitwise"
                        {
                            m.nested(NFTA_EXPR_DATA, |m| {
                                m.raw(payload);
                                m.be_u32(6, 0); // NFTA_BITWISE_OP
                            });
                        } else if ty == NFTA_EXPR_DATA {
                            m.nested(ty, |m| m.raw(payload));
                        } else {
                            m.bytes(ty, payload);
                        }
                    }
                });
            }
        })
        .unwrap();
        with_extra[idx].exprs = exprs;
        verify_rules(&policy, Phase::Sealed, &with_extra).unwrap();

        // One flipped byte in the last attribute (the verdict) is caught.
        let mut flipped = rules.clone();
        let last = flipped[0].exprs.len() - 1;
        flipped[0].exprs[last] ^= 1;
        let err = verify_rules(&policy, Phase::Sealed, &flipped).unwrap_err();
        assert!(err.to_string().contains("chain input rule #1"), "{err}");
    }

    /// The meters' expressions are compared value by value too: a count
    /// cap, a lookup's inversion or a set name that differs is caught.
    #[test]
    fn meter_expression_values_are_compared() {
        let policy = reference();
        let rules = expected_rules(&policy, Phase::Sealed).unwrap();
        let find = |needle: &[u8]| {
            rules
                .iter()
                .position(|r| r.exprs.windows(needle.len()).any(|w| w == needle))
                .unwrap()
        };
        // (rule holding the bytes, bytes, replacement, rule # in input)
        let cases: [(&[u8], &[u8], usize); 3] = [
            // add @connlimit4 { ... ct count over 32 }: 32 -> 33.
            (&[8, 0, 1, 0, 0, 0, 0, 32], &[8, 0, 1, 0, 0, 0, 0, 33], 7),
            // ip saddr != @connlimit4: the inversion flag cleared.
            (
                b"connlimit4\0\0\x08\0\x04\0\0\0\0\x02\x08\0\x05\0\0\0\0\x01",
                b"connlimit4\0\0\x08\0\x04\0\0\0\0\x02\x08\0\x05\0\0\0\0\x00",
                8,
            ),
            // ct count over 4096 -> 4097.
            (
                &[8, 0, 1, 0, 0, 0, 0x10, 0x00],
                &[8, 0, 1, 0, 0, 0, 0x10, 0x01],
                9,
            ),
        ];
        for (from, to, rule) in cases {
            let idx = find(from);
            assert_eq!(idx + 1, rule, "{from:02x?}");
            let mut changed = rules.clone();
            let at = changed[idx]
                .exprs
                .windows(from.len())
                .position(|w| w == from)
                .unwrap();
            changed[idx].exprs[at..at + from.len()].copy_from_slice(to);
            let err = verify_rules(&policy, Phase::Sealed, &changed).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("chain input rule #{rule}")),
                "{err}"
            );
        }
    }

    #[test]
    fn dump_errors_and_truncation() {
        let err = parse_rule_dump(&done(3, -2)).unwrap_err();
        assert!(
            matches!(err, FirewallError::Refused { errno: 2, .. }),
            "{err}"
        );
        let rules = expected_rules(&reference(), Phase::Sealed).unwrap();
        let full = reply(&rules[3], TABLE, 1);
        for cut in 1..full.len() {
            assert!(parse_rule_dump(&full[..cut]).is_err(), "cut {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_rule_dump_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_rule_dump(&bytes);
        }

        #[test]
        fn verify_never_panics_on_garbage(
            exprs in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let policy = reference();
            let dumped = vec![DumpedRule { chain: "input".into(), exprs }];
            proptest::prop_assert!(verify_rules(&policy, Phase::Sealed, &dumped).is_err());
        }
    }
}
