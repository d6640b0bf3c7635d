use super::*;
use proptest::prelude::*;

const XID: u32 = 0x5eed_c0de;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// The fixed BOOTP part of a server reply to `XID`/`MAC`, field by field.
fn reply_header() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend([0x02, 0x01, 0x06, 0x00]); // op BOOTREPLY, htype ethernet, hlen 6, hops 0
    p.extend([0x5e, 0xed, 0xc0, 0xde]); // xid
    p.extend([0x00, 0x00]); // secs
    p.extend([0x80, 0x00]); // flags: broadcast, echoed from the request
    p.extend([0, 0, 0, 0]); // ciaddr
    p.extend([10, 204, 1, 50]); // yiaddr: the address offered
    p.extend([10, 204, 1, 1]); // siaddr: dnsmasq names itself as next server
    p.extend([0, 0, 0, 0]); // giaddr: no relay
    p.extend(MAC); // chaddr ...
    p.extend([0; 10]); // ... padded to 16 bytes
    p.extend([0; 64]); // sname
    p.extend([0; 128]); // file
    p.extend([99, 130, 83, 99]); // magic cookie
    assert_eq!(p.len(), 240);
    p
}

/// An OFFER as dnsmasq sends it for `--dhcp-range=10.204.1.50,10.204.1.150,
/// 255.255.255.0,1h --dhcp-option=option:mtu,1400`, built by hand from the
/// field layout of RFC 2131 and the option order dnsmasq uses.
fn dnsmasq_offer() -> Vec<u8> {
    let mut p = reply_header();
    p.extend([53, 1, 2]); // message type OFFER
    p.extend([54, 4, 10, 204, 1, 1]); // server identifier
    p.extend([51, 4, 0x00, 0x00, 0x0e, 0x10]); // lease time 3600 s
    p.extend([58, 4, 0x00, 0x00, 0x07, 0x08]); // renewal T1 1800 s (not used)
    p.extend([59, 4, 0x00, 0x00, 0x0c, 0x4e]); // rebinding T2 3150 s (not used)
    p.extend([1, 4, 255, 255, 255, 0]); // subnet mask /24
    p.extend([28, 4, 10, 204, 1, 255]); // broadcast address (not used)
    p.extend([3, 4, 10, 204, 1, 1]); // router
    p.extend([26, 2, 0x05, 0x78]); // interface MTU 1400
    p.push(255); // end
    p
}

/// The same exchange's ACK.
fn dnsmasq_ack() -> Vec<u8> {
    let mut p = dnsmasq_offer();
    p[242] = 5; // message type ACK
    p
}

/// An ACK shaped like Google Compute Engine's: a /32, a router outside it,
/// MTU 1460, one-day lease, plus options this client ignores.
fn gce_ack() -> Vec<u8> {
    let mut p = reply_header();
    p[16..20].copy_from_slice(&[10, 128, 0, 7]); // yiaddr
    p[20..24].copy_from_slice(&[0, 0, 0, 0]); // siaddr
    p.extend([53, 1, 5]); // message type ACK
    p.extend([54, 4, 169, 254, 169, 254]); // server identifier: the metadata server
    p.extend([51, 4, 0x00, 0x01, 0x51, 0x80]); // lease time 86400 s
    p.extend([1, 4, 255, 255, 255, 255]); // subnet mask /32
    p.extend([3, 4, 10, 128, 0, 1]); // router, outside the /32
    p.extend([6, 4, 169, 254, 169, 254]); // DNS server (ignored)
    p.extend([12, 4, b'v', b'a', b'l', b'k']); // host name (ignored)
    p.extend([15, 13]); // domain name (ignored) ...
    p.extend(b"c.example.int");
    p.extend([26, 2, 0x05, 0xb4]); // interface MTU 1460
    p.extend([121, 8, 32, 10, 128, 0, 1, 0, 0, 0, 0]); // classless routes (ignored)
    p.push(255); // end
    p
}

fn lease_24() -> Lease {
    Lease {
        address: Ipv4Addr::new(10, 204, 1, 50),
        prefix_len: 24,
        router: Some(Ipv4Addr::new(10, 204, 1, 1)),
        mtu: Some(1400),
        lease_secs: Some(3600),
        server_id: Ipv4Addr::new(10, 204, 1, 1),
    }
}

#[test]
fn decodes_dnsmasq_offer() {
    assert_eq!(
        decode_reply(&dnsmasq_offer(), XID, MAC).unwrap(),
        Reply::Offer(Offer {
            address: Ipv4Addr::new(10, 204, 1, 50),
            server_id: Ipv4Addr::new(10, 204, 1, 1),
        })
    );
}

#[test]
fn decodes_dnsmasq_ack_into_lease() {
    assert_eq!(
        decode_reply(&dnsmasq_ack(), XID, MAC).unwrap(),
        Reply::Ack(lease_24())
    );
}

#[test]
fn decodes_gce_ack_into_slash_32_lease() {
    let Reply::Ack(lease) = decode_reply(&gce_ack(), XID, MAC).unwrap() else {
        panic!("not an ACK");
    };
    assert_eq!(
        lease,
        Lease {
            address: Ipv4Addr::new(10, 128, 0, 7),
            prefix_len: 32,
            router: Some(Ipv4Addr::new(10, 128, 0, 1)),
            mtu: Some(1460),
            lease_secs: Some(86400),
            server_id: Ipv4Addr::new(169, 254, 169, 254),
        }
    );
    assert!(!lease.router_in_prefix());
}

#[test]
fn decodes_nak() {
    let mut p = reply_header();
    p[16..20].copy_from_slice(&[0, 0, 0, 0]);
    p.extend([53, 1, 6, 54, 4, 10, 204, 1, 1, 255]);
    assert_eq!(
        decode_reply(&p, XID, MAC).unwrap(),
        Reply::Nak {
            server_id: Some(Ipv4Addr::new(10, 204, 1, 1))
        }
    );
}

#[test]
fn discover_layout() {
    let params = ClientParams {
        mac: MAC,
        client_id: None,
        max_message_size: 1460,
    };
    let d = encode_discover(&params, XID, 3);
    assert_eq!(d.len(), 300, "padded to the BOOTP minimum");
    let expected_fields: &[(usize, &[u8], &str)] = &[
        (0, &[1, 1, 6, 0], "op BOOTREQUEST, ethernet, hlen 6, hops"),
        (4, &[0x5e, 0xed, 0xc0, 0xde], "xid"),
        (8, &[0, 3], "secs"),
        (10, &[0x80, 0x00], "broadcast flag"),
        (12, &[0; 16], "ciaddr yiaddr siaddr giaddr"),
        (28, &MAC, "chaddr"),
        (34, &[0; 10], "chaddr padding"),
        (44, &[0; 192], "sname and file"),
        (236, &[99, 130, 83, 99], "magic cookie"),
        (240, &[53, 1, 1], "message type DISCOVER"),
        (243, &[55, 5, 1, 3, 26, 51, 54], "parameter request list"),
        (250, &[57, 2, 0x05, 0xb4], "max message size 1460"),
        (254, &[255], "end"),
        (255, &[0; 45], "padding"),
    ];
    for (at, bytes, what) in expected_fields {
        assert_eq!(&d[*at..*at + bytes.len()], *bytes, "{what}");
    }
}

#[test]
fn request_carries_selection_and_client_id() {
    let params = ClientParams {
        mac: MAC,
        client_id: Some(ClientId::from_mac(MAC)),
        max_message_size: 100, // raised to the legal minimum 576
    };
    let r = encode_request(
        &params,
        XID,
        0,
        Ipv4Addr::new(10, 204, 1, 50),
        Ipv4Addr::new(10, 204, 1, 1),
    );
    let m = Message::parse(&r).unwrap();
    assert_eq!((m.op, m.xid, m.flags), (1, XID, 0x8000));
    let cases: &[(u8, &[u8])] = &[
        (option::MESSAGE_TYPE, &[3]),
        (option::CLIENT_ID, &[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        (option::REQUESTED_ADDRESS, &[10, 204, 1, 50]),
        (option::SERVER_ID, &[10, 204, 1, 1]),
        (option::PARAMETER_REQUEST_LIST, &[1, 3, 26, 51, 54]),
        (option::MAX_MESSAGE_SIZE, &[0x02, 0x40]),
    ];
    for (code, value) in cases {
        assert_eq!(m.options.get(*code), Some(*value), "option {code}");
    }
}

#[test]
fn client_id_length_is_checked() {
    assert!(matches!(
        ClientId::new(vec![1]),
        Err(NetconfError::BadClientId { len: 1 })
    ));
    assert!(ClientId::new(vec![0; 255]).is_ok());
    assert!(matches!(
        ClientId::new(vec![0; 256]),
        Err(NetconfError::BadClientId { len: 256 })
    ));
}

#[test]
fn reply_round_trips_through_encoder_and_decoder() {
    let leases = [
        lease_24(),
        Lease {
            address: Ipv4Addr::new(10, 128, 0, 7),
            prefix_len: 32,
            router: Some(Ipv4Addr::new(10, 128, 0, 1)),
            mtu: Some(1460),
            lease_secs: Some(u32::MAX),
            server_id: Ipv4Addr::new(169, 254, 169, 254),
        },
        Lease {
            address: Ipv4Addr::new(192, 168, 7, 9),
            prefix_len: 16,
            router: None,
            mtu: None,
            lease_secs: None,
            server_id: Ipv4Addr::new(192, 168, 0, 1),
        },
    ];
    for lease in leases {
        let offer = encode_reply(MessageType::Offer, &lease, XID, MAC);
        assert_eq!(
            decode_reply(&offer, XID, MAC).unwrap(),
            Reply::Offer(Offer {
                address: lease.address,
                server_id: lease.server_id
            })
        );
        let ack = encode_reply(MessageType::Ack, &lease, XID, MAC);
        assert_eq!(decode_reply(&ack, XID, MAC).unwrap(), Reply::Ack(lease));
    }
}

/// Options appended to a reply header, each case's bytes and what decoding
/// must say.
#[test]
fn option_edge_cases() {
    type Check = fn(Result<Reply, NetconfError>) -> bool;
    let ack_with = |extra: &[u8]| {
        let mut p = reply_header();
        p.extend([53, 1, 5, 54, 4, 10, 204, 1, 1]);
        p.extend(extra);
        p
    };
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("no mask means /32", ack_with(&[255]), |r| match r {
            Ok(Reply::Ack(l)) => l.prefix_len == 32 && l.router.is_none(),
            _ => false,
        }),
        (
            "missing END is accepted",
            ack_with(&[1, 4, 255, 255, 0, 0]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.prefix_len == 16),
        ),
        (
            "pads are skipped",
            ack_with(&[0, 0, 1, 4, 255, 0, 0, 0, 0, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.prefix_len == 8),
        ),
        (
            "bytes after END are ignored",
            ack_with(&[255, 1, 99]),
            |r| matches!(r, Ok(Reply::Ack(_))),
        ),
        (
            "non-contiguous mask",
            ack_with(&[1, 4, 255, 0, 255, 0, 255]),
            |r| matches!(r, Err(NetconfError::BadSubnetMask(_))),
        ),
        ("zero mask", ack_with(&[1, 4, 0, 0, 0, 0, 255]), |r| {
            matches!(r, Err(NetconfError::BadSubnetMask(_)))
        }),
        (
            "mask of 3 bytes",
            ack_with(&[1, 3, 255, 255, 255, 255]),
            |r| matches!(r, Err(NetconfError::BadOptionLength { code: 1, len: 3 })),
        ),
        (
            "router list takes the first",
            ack_with(&[3, 8, 10, 0, 0, 1, 10, 0, 0, 2, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.router == Some(Ipv4Addr::new(10, 0, 0, 1))),
        ),
        (
            "router 0.0.0.0 is no router",
            ack_with(&[3, 4, 0, 0, 0, 0, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.router.is_none()),
        ),
        (
            "router of 5 bytes",
            ack_with(&[3, 5, 1, 2, 3, 4, 5, 255]),
            |r| matches!(r, Err(NetconfError::BadOptionLength { code: 3, len: 5 })),
        ),
        ("empty router", ack_with(&[3, 0, 255]), |r| {
            matches!(r, Err(NetconfError::BadOptionLength { code: 3, len: 0 }))
        }),
        (
            "MTU 575 ignored",
            ack_with(&[26, 2, 0x02, 0x3f, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.mtu.is_none()),
        ),
        (
            "MTU 576 kept",
            ack_with(&[26, 2, 0x02, 0x40, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.mtu == Some(576)),
        ),
        (
            "MTU 9000 kept",
            ack_with(&[26, 2, 0x23, 0x28, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.mtu == Some(9000)),
        ),
        (
            "MTU 9001 ignored",
            ack_with(&[26, 2, 0x23, 0x29, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.mtu.is_none()),
        ),
        ("MTU of 3 bytes", ack_with(&[26, 3, 5, 0, 0, 255]), |r| {
            matches!(r, Err(NetconfError::BadOptionLength { code: 26, len: 3 }))
        }),
        ("lease of 2 bytes", ack_with(&[51, 2, 0, 1, 255]), |r| {
            matches!(r, Err(NetconfError::BadOptionLength { code: 51, len: 2 }))
        }),
        ("option length missing", ack_with(&[1]), |r| {
            matches!(
                r,
                Err(NetconfError::Truncated {
                    what: "option length",
                    ..
                })
            )
        }),
        ("option value cut short", ack_with(&[1, 4, 255, 255]), |r| {
            matches!(
                r,
                Err(NetconfError::Truncated {
                    what: "option value",
                    need: 4,
                    have: 2
                })
            )
        }),
        (
            "split option is joined (RFC 3396)",
            ack_with(&[3, 2, 10, 0, 3, 2, 0, 9, 255]),
            |r| matches!(r, Ok(Reply::Ack(l)) if l.router == Some(Ipv4Addr::new(10, 0, 0, 9))),
        ),
        ("overload value 4", ack_with(&[52, 1, 4, 255]), |r| {
            matches!(r, Err(NetconfError::BadOptionValue { code: 52, value: 4 }))
        }),
        ("overload of 2 bytes", ack_with(&[52, 2, 1, 1, 255]), |r| {
            matches!(r, Err(NetconfError::BadOptionLength { code: 52, len: 2 }))
        }),
    ];
    for (name, packet, check) in cases {
        let result = decode_reply(&packet, XID, MAC);
        assert!(
            check(result),
            "{name}: {:?}",
            decode_reply(&packet, XID, MAC)
        );
    }
}

#[test]
fn overloaded_file_and_sname_fields_are_read() {
    let mut p = reply_header();
    // file (108..236) holds the message type and server id...
    p[108..120].copy_from_slice(&[53, 1, 5, 54, 4, 10, 204, 1, 1, 0, 0, 255]);
    // ...sname (44..108) the mask, read after file.
    p[44..51].copy_from_slice(&[1, 4, 255, 255, 255, 0, 255]);
    p.extend([52, 1, 3, 255]); // overload: both
    assert_eq!(
        decode_reply(&p, XID, MAC).unwrap(),
        Reply::Ack(Lease {
            router: None,
            mtu: None,
            lease_secs: None,
            ..lease_24()
        })
    );
    // Without the overload option those fields are a boot file name, not options.
    let p_plain = {
        let mut q = p.clone();
        q.truncate(240);
        q.extend([255]);
        q
    };
    assert!(matches!(
        decode_reply(&p_plain, XID, MAC),
        Err(NetconfError::MissingOption { code: 53 })
    ));
    // A truncated option inside an overloaded field is an error too.
    let mut bad = p.clone();
    bad[234..236].copy_from_slice(&[3, 9]);
    bad[108..120].fill(0);
    bad[108..117].copy_from_slice(&[53, 1, 5, 54, 4, 10, 204, 1, 1]);
    assert!(matches!(
        decode_reply(&bad, XID, MAC),
        Err(NetconfError::Truncated { .. })
    ));
}

#[test]
fn header_mismatches_are_rejected() {
    type Mutate = fn(&mut Vec<u8>);
    type Check = fn(&NetconfError) -> bool;
    let cases: &[(&str, Mutate, Check)] = &[
        (
            "shorter than the header",
            |p| p.truncate(239),
            |e| {
                matches!(
                    e,
                    NetconfError::Truncated {
                        what: "BOOTP header",
                        need: 240,
                        have: 239
                    }
                )
            },
        ),
        (
            "bad cookie",
            |p| p[236] = 98,
            |e| matches!(e, NetconfError::BadMagicCookie),
        ),
        (
            "a request",
            |p| p[0] = 1,
            |e| matches!(e, NetconfError::NotAReply { op: 1 }),
        ),
        (
            "token ring",
            |p| p[1] = 6,
            |e| matches!(e, NetconfError::UnsupportedHardware { htype: 6, hlen: 6 }),
        ),
        (
            "other xid",
            |p| p[7] = 0,
            |e| {
                matches!(
                    e,
                    NetconfError::WrongTransaction {
                        expected: XID,
                        got: 0x5eed_c000
                    }
                )
            },
        ),
        (
            "other MAC",
            |p| p[33] = 0,
            |e| matches!(e, NetconfError::WrongHardwareAddress),
        ),
        (
            "no message type",
            |p| p[240..243].fill(0),
            |e| matches!(e, NetconfError::MissingOption { code: 53 }),
        ),
        (
            "message type of 2 bytes",
            |p| p[241] = 2,
            |e| matches!(e, NetconfError::BadOptionLength { code: 53, len: 2 }),
        ),
        (
            "a DISCOVER from a server",
            |p| p[242] = 1,
            |e| matches!(e, NetconfError::UnexpectedMessageType { message_type: 1 }),
        ),
        (
            "offer without server id",
            |p| p[243] = 99,
            |e| matches!(e, NetconfError::MissingOption { code: 54 }),
        ),
        (
            "offer of 0.0.0.0",
            |p| p[16..20].fill(0),
            |e| matches!(e, NetconfError::UnusableAddress(_)),
        ),
        (
            "offer of a multicast address",
            |p| p[16] = 224,
            |e| matches!(e, NetconfError::UnusableAddress(_)),
        ),
    ];
    for (name, mutate, check) in cases {
        let mut p = dnsmasq_offer();
        mutate(&mut p);
        let error = decode_reply(&p, XID, MAC).expect_err(name);
        assert!(check(&error), "{name}: {error:?}");
    }
}

#[test]
fn masks_and_prefixes() {
    let cases: &[([u8; 4], Option<u8>)] = &[
        ([255, 255, 255, 255], Some(32)),
        ([255, 255, 255, 254], Some(31)),
        ([255, 255, 255, 0], Some(24)),
        ([255, 255, 240, 0], Some(20)),
        ([128, 0, 0, 0], Some(1)),
        ([0, 0, 0, 0], None),
        ([255, 0, 255, 0], None),
        ([255, 255, 255, 253], None),
        ([0, 0, 0, 255], None),
    ];
    for (mask, prefix) in cases {
        let mask = Ipv4Addr::from(*mask);
        assert_eq!(prefix_from_mask(mask).ok(), *prefix, "{mask}");
        if let Some(p) = prefix {
            assert_eq!(mask_from_prefix(*p), mask);
        }
    }
    assert_eq!(mask_from_prefix(0), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn router_in_prefix_cases() {
    let with = |prefix_len, router: [u8; 4]| Lease {
        prefix_len,
        router: Some(Ipv4Addr::from(router)),
        ..lease_24()
    };
    assert!(with(24, [10, 204, 1, 1]).router_in_prefix());
    assert!(!with(24, [10, 204, 2, 1]).router_in_prefix());
    assert!(!with(32, [10, 204, 1, 50]).router_in_prefix());
    assert!(with(31, [10, 204, 1, 51]).router_in_prefix());
    assert!(!Lease {
        router: None,
        ..lease_24()
    }
    .router_in_prefix());
}

#[test]
fn lease_display() {
    let cases = [
        (
            lease_24(),
            "10.204.1.50/24 via 10.204.1.1 mtu 1400 lease 3600s server 10.204.1.1",
        ),
        (
            Lease {
                router: None,
                mtu: None,
                lease_secs: None,
                ..lease_24()
            },
            "10.204.1.50/24 no router mtu unchanged lease unspecified server 10.204.1.1",
        ),
        (
            Lease {
                lease_secs: Some(u32::MAX),
                ..lease_24()
            },
            "10.204.1.50/24 via 10.204.1.1 mtu 1400 lease infinite server 10.204.1.1",
        ),
    ];
    for (lease, line) in cases {
        assert_eq!(lease.to_string(), line);
    }
}

fn arb_lease() -> impl Strategy<Value = Lease> {
    (
        1_u32..0xDFFF_FFFF,
        1_u8..=32,
        proptest::option::of(1_u32..0xDFFF_FFFF),
        proptest::option::of(MTU_RANGE),
        proptest::option::of(any::<u32>()),
        any::<u32>(),
    )
        .prop_filter_map("usable address", |(a, p, r, m, l, s)| {
            let address = Ipv4Addr::from(a);
            (!address.is_loopback()).then_some(Lease {
                address,
                prefix_len: p,
                router: r.map(Ipv4Addr::from),
                mtu: m,
                lease_secs: l,
                server_id: Ipv4Addr::from(s),
            })
        })
}

proptest! {
    #[test]
    fn decoder_never_panics_on_bytes(packet in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = decode_reply(&packet, XID, MAC);
    }

    /// Random option bytes behind a valid header reach the option parser
    /// and lease builder, which random whole packets rarely do.
    #[test]
    fn decoder_never_panics_on_options(options in proptest::collection::vec(any::<u8>(), 0..400),
                                       file in proptest::collection::vec(any::<u8>(), 128),
                                       sname in proptest::collection::vec(any::<u8>(), 64)) {
        let mut p = reply_header();
        p[44..108].copy_from_slice(&sname);
        p[108..236].copy_from_slice(&file);
        p.extend(options);
        let _ = decode_reply(&p, XID, MAC);
    }

    #[test]
    fn ack_round_trips(lease in arb_lease(), xid in any::<u32>(), mac in any::<[u8; 6]>()) {
        let packet = encode_reply(MessageType::Ack, &lease, xid, mac);
        prop_assert_eq!(decode_reply(&packet, xid, mac).unwrap(), Reply::Ack(lease));
    }

    #[test]
    fn requests_parse_back(xid in any::<u32>(), mac in any::<[u8; 6]>(), secs in any::<u16>(),
                           requested in any::<u32>(), server in any::<u32>()) {
        let params = ClientParams { mac, client_id: None, max_message_size: 1500 };
        let m = Message::parse(&encode_request(&params, xid, secs, requested.into(), server.into())).unwrap();
        prop_assert_eq!(m.xid, xid);
        prop_assert_eq!(&m.client_hardware[..6], &mac[..]);
        prop_assert_eq!(m.options.get(option::REQUESTED_ADDRESS), Some(&requested.to_be_bytes()[..]));
        prop_assert_eq!(m.options.get(option::SERVER_ID), Some(&server.to_be_bytes()[..]));
    }
}
