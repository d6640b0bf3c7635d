//! Parser tests on bytes a real kernel sent, malformed-input tables, and
//! build-then-walk round trips.
//!
//! The fixtures were captured on Linux 6.12 (x86_64, little-endian) from an
//! `NETLINK_ROUTE` socket in a fresh network namespace (`unshare -n`), with
//! `NETLINK_CAP_ACK` and `NETLINK_EXT_ACK` on, by sending the request named
//! above each one and printing the datagram received.

use proptest::prelude::*;

use crate::attr::{NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLMSGERR_ATTR_MSG};
use crate::build::{attributes, message, Builder};
use crate::message::{
    NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_MULTI, NLM_F_REQUEST,
};
use crate::{align, attrs, messages, ErrorReply, Header, Message, WireError};

/// The end of an `RTM_GETLINK` dump (sequence 1).
#[rustfmt::skip]
const DONE: [u8; 20] = [
    0x14, 0x00, 0x00, 0x00, // nlmsg_len 20
    0x03, 0x00,             // nlmsg_type NLMSG_DONE
    0x02, 0x00,             // nlmsg_flags NLM_F_MULTI
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq 1
    0x1f, 0x29, 0x00, 0x00, // nlmsg_pid: our port id, 10527
    0x00, 0x00, 0x00, 0x00, // status 0: the dump is complete
];

/// The acknowledgement of `RTM_NEWLINK` (set `lo` up, `NLM_F_ACK`, seq 2).
#[rustfmt::skip]
const ACK: [u8; 36] = [
    0x24, 0x00, 0x00, 0x00, // nlmsg_len 36
    0x02, 0x00,             // NLMSG_ERROR
    0x00, 0x01,             // NLM_F_CAPPED: the request's payload is not echoed
    0x02, 0x00, 0x00, 0x00, // seq 2
    0x1f, 0x29, 0x00, 0x00, // our port id
    0x00, 0x00, 0x00, 0x00, // error 0: an acknowledgement
    0x20, 0x00, 0x00, 0x00, // the request's header: nlmsg_len 32,
    0x10, 0x00, 0x05, 0x00, //   RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
    0x02, 0x00, 0x00, 0x00, //   seq 2,
    0x00, 0x00, 0x00, 0x00, //   port 0
];

/// `RTM_NEWADDR` 10.0.0.1/24 on interface 99, which does not exist.
#[rustfmt::skip]
const NO_DEVICE: [u8; 64] = [
    0x40, 0x00, 0x00, 0x00, // nlmsg_len 64
    0x02, 0x00,             // NLMSG_ERROR
    0x00, 0x03,             // NLM_F_CAPPED | NLM_F_ACK_TLVS
    0x03, 0x00, 0x00, 0x00, // seq 3
    0x1f, 0x29, 0x00, 0x00, // our port id
    0xed, 0xff, 0xff, 0xff, // error -19: ENODEV
    0x20, 0x00, 0x00, 0x00, // the request's header: 32 bytes,
    0x14, 0x00, 0x05, 0x05, //   RTM_NEWADDR, REQUEST | ACK | REPLACE | CREATE,
    0x03, 0x00, 0x00, 0x00, //   seq 3,
    0x00, 0x00, 0x00, 0x00, //   port 0
    0x1b, 0x00, 0x01, 0x00, // NLMSGERR_ATTR_MSG, 27 bytes:
    b'i', b'p', b'v', b'4', b':', b' ', b'D', b'e', b'v', b'i', b'c', b'e',
    b' ', b'n', b'o', b't', b' ', b'f', b'o', b'u', b'n', b'd', 0x00,
    0x00,                   // padding
];

/// `RTM_NEWLINK` on `lo` with a 2-byte `IFLA_MTU` (it needs 4).
#[rustfmt::skip]
const BAD_POLICY: [u8; 120] = [
    0x78, 0x00, 0x00, 0x00, // nlmsg_len 120
    0x02, 0x00,             // NLMSG_ERROR
    0x00, 0x03,             // NLM_F_CAPPED | NLM_F_ACK_TLVS
    0x04, 0x00, 0x00, 0x00, // seq 4
    0x1f, 0x29, 0x00, 0x00, // our port id
    0xde, 0xff, 0xff, 0xff, // error -34: ERANGE
    0x28, 0x00, 0x00, 0x00, // the request's header: 40 bytes,
    0x10, 0x00, 0x05, 0x00, //   RTM_NEWLINK, REQUEST | ACK,
    0x04, 0x00, 0x00, 0x00, //   seq 4,
    0x00, 0x00, 0x00, 0x00, //   port 0
    0x27, 0x00, 0x01, 0x00, // NLMSGERR_ATTR_MSG, 39 bytes:
    b'A', b't', b't', b'r', b'i', b'b', b'u', b't', b'e', b' ', b'f', b'a',
    b'i', b'l', b'e', b'd', b' ', b'p', b'o', b'l', b'i', b'c', b'y', b' ',
    b'v', b'a', b'l', b'i', b'd', b'a', b't', b'i', b'o', b'n', 0x00,
    0x00,                   // padding
    0x08, 0x00, 0x02, 0x00, // NLMSGERR_ATTR_OFFS:
    0x20, 0x00, 0x00, 0x00, //   the bad attribute is at byte 32 of the request
    0x24, 0x00, 0x04, 0x80, // NLMSGERR_ATTR_POLICY, NLA_F_NESTED, 36 bytes:
    0x0c, 0x00, 0x04, 0x00, //   NL_POLICY_TYPE_ATTR_MIN_VALUE_U 0 (u64)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x0c, 0x00, 0x05, 0x00, //   NL_POLICY_TYPE_ATTR_MAX_VALUE_U u32::MAX (u64)
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
    0x08, 0x00, 0x01, 0x00, //   NL_POLICY_TYPE_ATTR_TYPE: NL_ATTR_TYPE_U32
    0x04, 0x00, 0x00, 0x00,
];

/// The first message of an `RTM_GETADDR` dump after `lo` was set up:
/// 127.0.0.1/8.
#[rustfmt::skip]
const LO_ADDRESS: [u8; 76] = [
    0x4c, 0x00, 0x00, 0x00, // nlmsg_len 76
    0x14, 0x00,             // RTM_NEWADDR
    0x02, 0x00,             // NLM_F_MULTI
    0x05, 0x00, 0x00, 0x00, // seq 5
    0x1a, 0x2a, 0x00, 0x00, // our port id
    0x02, 0x08, 0x80, 0xfe, // ifaddrmsg: AF_INET, /8, IFA_F_PERMANENT, RT_SCOPE_HOST
    0x01, 0x00, 0x00, 0x00, //   ifa_index 1
    0x08, 0x00, 0x01, 0x00, // IFA_ADDRESS
    0x7f, 0x00, 0x00, 0x01, //   127.0.0.1
    0x08, 0x00, 0x02, 0x00, // IFA_LOCAL
    0x7f, 0x00, 0x00, 0x01, //   127.0.0.1
    0x07, 0x00, 0x03, 0x00, // IFA_LABEL, 3 bytes
    b'l', b'o', 0x00, 0x00, //   "lo", NUL, padding
    0x08, 0x00, 0x08, 0x00, // IFA_FLAGS
    0x80, 0x00, 0x00, 0x00, //   IFA_F_PERMANENT
    0x14, 0x00, 0x06, 0x00, // IFA_CACHEINFO, 16 bytes: preferred, valid
    0xff, 0xff, 0xff, 0xff, //   (forever), created, updated (hundredths
    0xff, 0xff, 0xff, 0xff, //   of a second since boot)
    0x09, 0x79, 0x08, 0x00,
    0x09, 0x79, 0x08, 0x00,
];

/// What a test expects of one message.
#[derive(Debug, PartialEq)]
struct Summary {
    kind: u16,
    flags: u16,
    seq: u32,
    payload_len: usize,
    errno: Option<i32>,
    text: Option<String>,
    /// (type, nested flag, payload length) of each attribute after the
    /// family header (or of the extended ack).
    attrs: Vec<(u16, bool, usize)>,
}

fn summary(message: &Message<'_>, fixed: usize) -> Summary {
    let (errno, text, list) = if message.header.kind == NLMSG_ERROR {
        let reply = message.error().unwrap();
        (Some(reply.errno), reply.message(), reply.ext_ack)
    } else {
        (None, None, message.payload.get(fixed..).unwrap_or_default())
    };
    Summary {
        kind: message.header.kind,
        flags: message.header.flags,
        seq: message.header.seq,
        payload_len: message.payload.len(),
        errno,
        text,
        attrs: attrs(list)
            .map(|a| a.map(|a| (a.kind(), a.is_nested(), a.payload().len())))
            .collect::<Result<_, _>>()
            .unwrap(),
    }
}

#[test]
fn kernel_messages_parse() {
    let cases: [(&str, &[u8], usize, Summary); 5] = [
        (
            "dump end",
            &DONE,
            4,
            Summary {
                kind: NLMSG_DONE,
                flags: NLM_F_MULTI,
                seq: 1,
                payload_len: 4,
                errno: None,
                text: None,
                attrs: vec![],
            },
        ),
        (
            "ack",
            &ACK,
            0,
            Summary {
                kind: NLMSG_ERROR,
                flags: NLM_F_CAPPED,
                seq: 2,
                payload_len: 20,
                errno: Some(0),
                text: None,
                attrs: vec![],
            },
        ),
        (
            "error with text",
            &NO_DEVICE,
            0,
            Summary {
                kind: NLMSG_ERROR,
                flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
                seq: 3,
                payload_len: 48,
                errno: Some(19),
                text: Some("ipv4: Device not found".to_owned()),
                attrs: vec![(NLMSGERR_ATTR_MSG, false, 23)],
            },
        ),
        (
            "error with text, offset and nested policy",
            &BAD_POLICY,
            0,
            Summary {
                kind: NLMSG_ERROR,
                flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
                seq: 4,
                payload_len: 104,
                errno: Some(34),
                text: Some("Attribute failed policy validation".to_owned()),
                attrs: vec![(1, false, 35), (2, false, 4), (4, true, 32)],
            },
        ),
        (
            "address",
            &LO_ADDRESS,
            8,
            Summary {
                kind: 20,
                flags: NLM_F_MULTI,
                seq: 5,
                payload_len: 60,
                errno: None,
                text: None,
                attrs: vec![
                    (1, false, 4),
                    (2, false, 4),
                    (3, false, 3),
                    (8, false, 4),
                    (6, false, 16),
                ],
            },
        ),
    ];
    for (name, bytes, fixed, want) in cases {
        let all: Vec<_> = messages(bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 1, "{name}");
        assert_eq!(summary(&all[0], fixed), want, "{name}");
    }
}

#[test]
fn kernel_values_read() {
    let done = Message::parse(&DONE).unwrap();
    assert_eq!(done.done_status(), 0);
    assert_eq!(done.header.port, 10527);

    let ack = Message::parse(&ACK).unwrap().error().unwrap();
    assert!(ack.is_ack());
    assert_eq!(
        ack.request,
        Some(Header {
            len: 32,
            kind: 16,
            flags: NLM_F_REQUEST | NLM_F_ACK,
            seq: 2,
            port: 0
        })
    );

    let policy = Message::parse(&BAD_POLICY).unwrap().error().unwrap();
    let offset = attrs(policy.ext_ack).find(2).unwrap().unwrap();
    assert_eq!(offset.u32(), Ok(32));
    let nested = attrs(policy.ext_ack).find(4).unwrap().unwrap();
    assert_eq!(nested.raw_kind(), 4 | NLA_F_NESTED);
    let inner: Vec<_> = nested.nested().collect::<Result<_, _>>().unwrap();
    assert_eq!(inner[0].u64(), Ok(0));
    assert_eq!(inner[1].u64(), Ok(u64::from(u32::MAX)));
    assert_eq!(inner[2].u32(), Ok(4));

    let address = Message::parse(&LO_ADDRESS).unwrap();
    let list = address.attrs_after(8).unwrap();
    let local = list.clone().find(2).unwrap().unwrap();
    assert_eq!(local.be_u32(), Ok(0x7f00_0001));
    assert_eq!(
        list.clone().find(3).unwrap().unwrap().to_string_lossy(),
        "lo"
    );
    assert_eq!(list.clone().find(8).unwrap().unwrap().u32(), Ok(0x80));
    assert_eq!(list.clone().find(99), Ok(None));
    assert_eq!(
        local.u64(),
        Err(WireError::AttrSize {
            kind: 2,
            what: "u64",
            need: 8,
            have: 4
        })
    );
    assert!(address.attrs_after(64).is_none());
}

#[test]
fn several_messages_in_one_datagram() {
    let datagram = [&LO_ADDRESS[..], &ACK, &DONE].concat();
    let kinds: Vec<u16> = messages(&datagram)
        .map(|m| m.unwrap().header.kind)
        .collect();
    assert_eq!(kinds, [20, NLMSG_ERROR, NLMSG_DONE]);
}

#[test]
fn malformed_framing_is_an_error() {
    let with_len = |len: u32| {
        let mut m = DONE.to_vec();
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m
    };
    let cases: Vec<(&str, Vec<u8>, WireError)> = vec![
        (
            "ten bytes",
            DONE[..10].to_vec(),
            WireError::ShortHeader { have: 10 },
        ),
        (
            "length below the header",
            with_len(8),
            WireError::MessageLength { len: 8, have: 20 },
        ),
        (
            "length past the datagram",
            with_len(24),
            WireError::MessageLength { len: 24, have: 20 },
        ),
        (
            "length of u32::MAX",
            with_len(u32::MAX),
            WireError::MessageLength {
                len: u32::MAX,
                have: 20,
            },
        ),
        (
            "a good message, then a short one",
            [&DONE[..], &DONE[..6]].concat(),
            WireError::ShortHeader { have: 6 },
        ),
    ];
    for (name, bytes, want) in cases {
        let got = messages(&bytes).find_map(Result::err);
        assert_eq!(got, Some(want), "{name}");
        // The walk ends at the error.
        assert!(
            messages(&bytes).skip_while(Result::is_ok).nth(1).is_none(),
            "{name}"
        );
    }

    let attr_cases: Vec<(&str, Vec<u8>, WireError)> = vec![
        (
            "two bytes",
            vec![8, 0],
            WireError::ShortAttrHeader { have: 2 },
        ),
        (
            "length 2",
            vec![2, 0, 1, 0],
            WireError::AttrLength { len: 2, have: 4 },
        ),
        (
            "length past the list",
            vec![12, 0, 1, 0, 0, 0, 0, 0],
            WireError::AttrLength { len: 12, have: 8 },
        ),
        (
            "good, then short",
            vec![5, 0, 1, 0, 7, 0, 0, 0, 4, 0],
            WireError::ShortAttrHeader { have: 2 },
        ),
    ];
    for (name, bytes, want) in attr_cases {
        assert_eq!(attrs(&bytes).find_map(Result::err), Some(want), "{name}");
    }

    assert_eq!(
        ErrorReply::parse(0, &[0xfe, 0xff]),
        Err(WireError::ShortError { have: 2 })
    );
    // An error code alone (no echoed header) still reads.
    let eperm = (-1i32).to_ne_bytes();
    let bare = ErrorReply::parse(NLM_F_ACK_TLVS, &eperm).unwrap();
    assert_eq!((bare.errno, bare.request, bare.ext_ack), (1, None, &[][..]));
}

#[test]
fn the_last_message_and_attribute_need_no_padding() {
    // An attribute of 5 bytes ends the list without its 3 padding bytes.
    let list = [8, 0, 1, 0, 1, 2, 3, 4, 5, 0, 2, 0, 9];
    let got: Vec<_> = attrs(&list)
        .map(|a| a.unwrap().payload().to_vec())
        .collect();
    assert_eq!(got, [vec![1, 2, 3, 4], vec![9]]);
}

#[test]
fn every_cut_of_a_kernel_datagram_is_handled() {
    let datagram = [&LO_ADDRESS[..], &BAD_POLICY, &NO_DEVICE, &ACK, &DONE].concat();
    for cut in 0..datagram.len() {
        for m in messages(&datagram[..cut]) {
            let Ok(m) = m else { break };
            if m.header.kind == NLMSG_ERROR {
                let _ = m.error().map(|e| e.message());
            }
            walk_deep(m.payload, 0);
        }
    }
}

/// Reads every attribute as a nest, to any depth: never panics.
fn walk_deep(bytes: &[u8], depth: usize) {
    if depth > 8 {
        return;
    }
    for attr in attrs(bytes) {
        let Ok(attr) = attr else { break };
        let _ = (
            attr.u8(),
            attr.u16(),
            attr.be_u32(),
            attr.u64(),
            attr.to_string_lossy(),
        );
        walk_deep(attr.payload(), depth + 1);
    }
}

#[test]
fn builder_writes_what_the_kernel_reads() {
    // The request whose acknowledgement is `ACK`.
    let mut ifinfo = vec![0u8, 0, 0, 0];
    for field in [1u32, 1, 1] {
        ifinfo.extend(field.to_ne_bytes()); // index, flags IFF_UP, change IFF_UP
    }
    let request = message(16, NLM_F_REQUEST | NLM_F_ACK, 2, &ifinfo, |_| {}).unwrap();
    assert_eq!(request.len(), 32);
    assert_eq!(&request[..16], &ACK[20..36], "the header the kernel echoed");

    let nested = message(0x0a06, NLM_F_REQUEST, 7, &[1, 0, 0, 0], |w| {
        w.c_str(1, "appliance");
        w.nested(4, |w| {
            w.be_u32(1, 0x0102_0304);
            w.nested(2, |w| w.u8(3, 9));
        });
        w.be_u64(5, 1);
    })
    .unwrap();
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &[72u8, 0, 0, 0, 0x06, 0x0a, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0][..], // header
        &[1, 0, 0, 0],                                                  // family header
        &[14, 0, 1, 0], b"appliance\0", &[0, 0],                        // string, padded
        &[24, 0, 4, 0x80],                                              // nest
        &[8, 0, 1, 0, 1, 2, 3, 4],                                      //   big-endian u32
        &[12, 0, 2, 0x80], &[5, 0, 3, 0, 9, 0, 0, 0],                   //   nest { u8 }
        &[12, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 1],                         // big-endian u64
    ]
    .concat();
    assert_eq!(nested, want);
}

#[test]
fn oversized_parts_fail_and_leave_the_buffer_whole() {
    let mut builder = Builder::new();
    builder.message(16, 0, 1, &[], |w| w.u32(1, 1)).unwrap();
    let before = builder.clone();
    let big = vec![0u8; 70_000];
    assert_eq!(
        builder.message(16, 0, 2, &[], |w| w.bytes(1, &big)),
        Err(WireError::TooLarge {
            what: "attribute",
            len: 70_004
        })
    );
    assert_eq!(
        builder.message(16, 0, 2, &[], |w| w.nested(1, |w| {
            w.bytes(1, &big[..40_000]);
            w.bytes(2, &big[..40_000]);
        })),
        Err(WireError::TooLarge {
            what: "nested attribute",
            len: 80_012
        })
    );
    assert_eq!(builder, before);
    assert_eq!(
        attributes(|w| w.bytes(1, &big)),
        Err(WireError::TooLarge {
            what: "attribute",
            len: 70_004
        })
    );
}

#[test]
fn flags_and_alignment() {
    assert_eq!([0, 1, 4, 5, 8].map(align), [0, 4, 4, 8, 8]);
    assert_eq!(align(usize::MAX), usize::MAX & !3);
    let list = [4, 0, 1, 0xc0];
    let attr = attrs(&list).next().unwrap().unwrap();
    assert_eq!(attr.kind(), 1);
    assert!(attr.is_nested() && attr.is_net_byteorder());
    assert_eq!(attr.raw_kind(), 1 | NLA_F_NESTED | NLA_F_NET_BYTEORDER);
}

/// A tree of attributes for round trips.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(u16, Vec<u8>),
    Nest(u16, Vec<Node>),
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = (0u16..0x3fff, proptest::collection::vec(any::<u8>(), 0..24))
        .prop_map(|(kind, payload)| Node::Leaf(kind, payload));
    leaf.prop_recursive(3, 24, 4, |inner| {
        (0u16..0x3fff, proptest::collection::vec(inner, 0..4))
            .prop_map(|(kind, children)| Node::Nest(kind, children))
    })
}

fn write(w: &mut crate::AttrWriter<'_>, nodes: &[Node]) {
    for n in nodes {
        match n {
            Node::Leaf(kind, payload) => w.bytes(*kind, payload),
            Node::Nest(kind, children) => w.nested(*kind, |w| write(w, children)),
        }
    }
}

fn read(bytes: &[u8]) -> Vec<Node> {
    attrs(bytes)
        .map(|a| {
            let a = a.unwrap();
            if a.is_nested() {
                Node::Nest(a.kind(), read(a.payload()))
            } else {
                Node::Leaf(a.kind(), a.payload().to_vec())
            }
        })
        .collect()
}

type Spec = (u16, u16, u32, Vec<u8>, Vec<Node>);

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|mut f| {
            f.resize(align(f.len()), 0);
            f
        }),
        proptest::collection::vec(node(), 0..5),
    )
}

proptest! {
    #[test]
    fn build_then_walk_gives_the_same(specs in proptest::collection::vec(spec(), 1..5)) {
        let mut builder = Builder::new();
        for (kind, flags, seq, fixed, nodes) in &specs {
            builder.message(*kind, *flags, *seq, fixed, |w| write(w, nodes)).unwrap();
        }
        let walked: Vec<_> = messages(builder.as_bytes()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(walked.len(), specs.len());
        for (m, (kind, flags, seq, fixed, nodes)) in walked.iter().zip(&specs) {
            prop_assert_eq!(
                (m.header.kind, m.header.flags, m.header.seq, m.header.port),
                (*kind, *flags, *seq, 0)
            );
            prop_assert_eq!(&m.payload[..fixed.len()], &fixed[..]);
            prop_assert_eq!(&read(&m.payload[fixed.len()..]), nodes);
            prop_assert_eq!(usize::try_from(m.header.len).unwrap() % 4, 0);
        }
    }

    #[test]
    fn header_round_trips(len: u32, kind: u16, flags: u16, seq: u32, port: u32) {
        let header = Header { len, kind, flags, seq, port };
        prop_assert_eq!(Header::parse(&header.to_bytes()), Ok(header));
    }

    #[test]
    fn any_bytes_walk_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for m in messages(&bytes) {
            let Ok(m) = m else { break };
            prop_assert!(m.payload.len() + 16 <= bytes.len());
            let _ = m.done_status();
            let _ = m.error().map(|e| e.message());
            walk_deep(m.payload, 0);
        }
        walk_deep(&bytes, 0);
        let _ = ErrorReply::parse(NLM_F_ACK_TLVS, &bytes).map(|e| e.message());
    }
}
