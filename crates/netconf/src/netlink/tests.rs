use super::*;
use crate::fake::{FakeLinkOps, LinkCall};
use proptest::prelude::*;

fn u16s(v: u16) -> [u8; 2] {
    v.to_ne_bytes()
}
fn u32s(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

#[test]
fn set_up_request_bytes() {
    let mut expected = Vec::new();
    expected.extend(u32s(32)); // nlmsg_len: header 16 + ifinfomsg 16
    expected.extend(u16s(16)); // RTM_NEWLINK
    expected.extend(u16s(0x5)); // NLM_F_REQUEST | NLM_F_ACK
    expected.extend(u32s(7)); // sequence number
    expected.extend(u32s(0)); // port id
    expected.extend([0, 0]); // ifi_family AF_UNSPEC, pad
    expected.extend(u16s(0)); // ifi_type
    expected.extend(u32s(3)); // ifi_index
    expected.extend(u32s(1)); // ifi_flags IFF_UP
    expected.extend(u32s(1)); // ifi_change: only IFF_UP
    assert_eq!(request_set_up(7, 3), expected);
}

#[test]
fn mtu_request_bytes() {
    let request = request_set_mtu(1, 2, 1460);
    assert_eq!(request.len(), 40);
    assert_eq!(&request[..4], &u32s(40));
    assert_eq!(&request[24..28], &u32s(0), "flags untouched");
    assert_eq!(&request[28..32], &u32s(0), "change nothing but the MTU");
    // rta_len 8, IFLA_MTU, value.
    assert_eq!(
        &request[32..],
        [u16s(8), u16s(4)]
            .concat()
            .iter()
            .chain(&u32s(1460))
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn address_request_bytes() {
    let request = request_add_address(9, 2, Ipv4Addr::new(10, 204, 1, 50), 24);
    let mut expected = Vec::new();
    expected.extend(u32s(48)); // 16 + ifaddrmsg 8 + three 8-byte attributes
    expected.extend(u16s(20)); // RTM_NEWADDR
    expected.extend(u16s(0x505)); // REQUEST | ACK | REPLACE | CREATE
    expected.extend(u32s(9));
    expected.extend(u32s(0));
    expected.extend([2, 24, 0, 0]); // AF_INET, prefix 24, flags, scope universe
    expected.extend(u32s(2)); // ifa_index
    expected.extend([u16s(8), u16s(2)].concat()); // IFA_LOCAL
    expected.extend([10, 204, 1, 50]);
    expected.extend([u16s(8), u16s(1)].concat()); // IFA_ADDRESS
    expected.extend([10, 204, 1, 50]);
    expected.extend([u16s(8), u16s(4)].concat()); // IFA_BROADCAST
    expected.extend([10, 204, 1, 255]);
    assert_eq!(request, expected);

    let host = request_add_address(9, 2, Ipv4Addr::new(10, 128, 0, 7), 32);
    assert_eq!(host.len(), 40, "a /32 has no broadcast attribute");
}

#[test]
fn route_request_bytes() {
    let default = Route {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway: Some(Ipv4Addr::new(10, 128, 0, 1)),
        scope: RouteScope::Universe,
        interface: 2,
        preferred_source: Some(Ipv4Addr::new(10, 128, 0, 7)),
    };
    let mut expected = Vec::new();
    expected.extend(u32s(52)); // 16 + rtmsg 12 + three 8-byte attributes
    expected.extend(u16s(24)); // RTM_NEWROUTE
    expected.extend(u16s(0x505));
    expected.extend(u32s(4));
    expected.extend(u32s(0));
    // family, dst_len, src_len, tos, table main, proto dhcp, scope universe, unicast
    expected.extend([2, 0, 0, 0, 254, 16, 0, 1]);
    expected.extend(u32s(0)); // rtm_flags
    expected.extend([u16s(8), u16s(5)].concat()); // RTA_GATEWAY
    expected.extend([10, 128, 0, 1]);
    expected.extend([u16s(8), u16s(7)].concat()); // RTA_PREFSRC
    expected.extend([10, 128, 0, 7]);
    expected.extend([u16s(8), u16s(4)].concat()); // RTA_OIF
    expected.extend(u32s(2));
    assert_eq!(request_add_route(4, &default), expected);

    let on_link = Route {
        destination: Ipv4Addr::new(10, 128, 0, 1),
        prefix_len: 32,
        gateway: None,
        scope: RouteScope::Link,
        interface: 2,
        preferred_source: None,
    };
    let request = request_add_route(5, &on_link);
    assert_eq!(
        &request[16..24],
        &[2, 32, 0, 0, 254, 16, 253, 1],
        "scope link, /32"
    );
    assert_eq!(
        &request[28..36],
        &[[u16s(8), u16s(1)].concat(), vec![10, 128, 0, 1]].concat()[..],
        "RTA_DST"
    );
    assert_eq!(request.len(), 44);
}

/// An `RTM_NEWLINK` message as the kernel sends in a dump, attribute by
/// attribute (the real one has some thirty more; unknown ones are skipped).
fn newlink(seq: u32, index: u32, name: &str, link_type: u16, flags: u32, mac: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend([0, 0]); // family, pad
    payload.extend(u16s(link_type));
    payload.extend(u32s(index));
    payload.extend(u32s(flags));
    payload.extend(u32s(0)); // change
    let mut attr = |kind: u16, value: &[u8]| {
        payload.extend(u16s(u16::try_from(value.len() + 4).unwrap()));
        payload.extend(u16s(kind));
        payload.extend(value);
        while payload.len() % 4 != 0 {
            payload.push(0);
        }
    };
    let mut name_z = name.as_bytes().to_vec();
    name_z.push(0);
    attr(IFLA_IFNAME, &name_z);
    attr(IFLA_MTU, &u32s(1500));
    attr(0x8000 | 18, &[1, 2, 3, 4]); // a nested attribute (IFLA_LINKINFO), skipped
    attr(IFLA_ADDRESS, mac);
    let mut message = Vec::new();
    message.extend(u32s(u32::try_from(payload.len() + 16).unwrap()));
    message.extend(u16s(RTM_NEWLINK));
    message.extend(u16s(2)); // NLM_F_MULTI
    message.extend(u32s(seq));
    message.extend(u32s(4242));
    message.extend(payload);
    message
}

fn control(seq: u32, msg_type: u16, errno: i32) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend(u32s(if msg_type == NLMSG_ERROR { 36 } else { 20 }));
    message.extend(u16s(msg_type));
    message.extend(u16s(0));
    message.extend(u32s(seq));
    message.extend(u32s(0));
    message.extend((-errno).to_ne_bytes());
    if msg_type == NLMSG_ERROR {
        message.extend([0; 16]); // the request's header, echoed
    }
    message
}

fn link(index: u32, name: &str, link_type: u16, flags: u32) -> Link {
    Link {
        index,
        name: name.to_owned(),
        link_type,
        flags,
        mac: Some([0x52, 0x54, 0, 0, 0, u8::try_from(index).unwrap()]),
        mtu: Some(1500),
    }
}

#[test]
fn parses_a_link_dump() {
    let mut datagram = newlink(3, 1, "lo", ARPHRD_LOOPBACK, IFF_UP | IFF_LOOPBACK, &[0; 6]);
    datagram.extend(newlink(
        3,
        2,
        "ens4",
        ARPHRD_ETHER,
        0,
        &[0x52, 0x54, 0, 0, 0, 2],
    ));
    datagram.extend(control(3, NLMSG_DONE, 0));
    let replies = parse_replies(&datagram).unwrap();
    let lo = Link {
        mac: Some([0; 6]),
        ..link(1, "lo", ARPHRD_LOOPBACK, IFF_UP | IFF_LOOPBACK)
    };
    assert_eq!(
        replies,
        [
            Reply {
                seq: 3,
                response: Response::Link(lo)
            },
            Reply {
                seq: 3,
                response: Response::Link(link(2, "ens4", ARPHRD_ETHER, 0))
            },
            Reply {
                seq: 3,
                response: Response::Done
            },
        ]
    );
}

#[test]
fn parses_acks_and_errors() {
    let mut datagram = control(8, NLMSG_ERROR, 0);
    datagram.extend(control(9, NLMSG_ERROR, 1));
    assert_eq!(
        parse_replies(&datagram).unwrap(),
        [
            Reply {
                seq: 8,
                response: Response::Ack { errno: 0 }
            },
            Reply {
                seq: 9,
                response: Response::Ack { errno: 1 }
            },
        ]
    );
}

#[test]
fn rejects_malformed_replies() {
    let good = newlink(1, 2, "eth0", ARPHRD_ETHER, 0, &[1, 2, 3, 4, 5, 6]);
    type Mutate = fn(&mut Vec<u8>);
    let cases: &[(&str, Mutate)] = &[
        ("short message header", |m| m.truncate(10)),
        ("message length", |m| m[0] = 8),
        ("message length", |m| m[0] = m[0].wrapping_add(4)),
        ("short ifinfomsg", |m| {
            m.truncate(24);
            m[..4].copy_from_slice(&24_u32.to_ne_bytes());
        }),
        ("attribute length", |m| {
            m[32..34].copy_from_slice(&2_u16.to_ne_bytes())
        }),
        ("attribute length", |m| {
            m[32..34].copy_from_slice(&900_u16.to_ne_bytes())
        }),
        ("short error message", |m| {
            m.truncate(18);
            m[..4].copy_from_slice(&18_u32.to_ne_bytes());
            m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        }),
    ];
    for (what, mutate) in cases {
        let mut message = good.clone();
        mutate(&mut message);
        match parse_replies(&message) {
            Err(NetconfError::NetlinkMalformed { what: got }) => assert_eq!(got, *what),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn picks_the_first_ethernet_link_by_index() {
    let links = [
        link(4, "ens5", ARPHRD_ETHER, 0),
        link(1, "lo", ARPHRD_LOOPBACK, IFF_LOOPBACK),
        link(2, "sit0", 776, 0),
        link(3, "ens4", ARPHRD_ETHER, 0),
    ];
    assert_eq!(first_ethernet(&links).map(|l| l.index), Some(3));
    let no_mac = Link {
        mac: None,
        ..link(3, "ens4", ARPHRD_ETHER, 0)
    };
    assert_eq!(first_ethernet(&[no_mac]), None);
}

fn machine() -> FakeLinkOps {
    FakeLinkOps::new(vec![
        link(1, "lo", ARPHRD_LOOPBACK, IFF_LOOPBACK),
        link(2, "eth0", ARPHRD_ETHER, 0),
        link(3, "eth1", ARPHRD_ETHER, 0),
    ])
}

#[test]
fn brings_loopback_and_the_chosen_link_up() {
    /// Name asked for, link index or error variant, calls made.
    type Case = (
        Option<&'static str>,
        Result<u32, &'static str>,
        &'static [LinkCall],
    );
    let cases: &[Case] = &[
        (
            None,
            Ok(2),
            &[LinkCall::Links, LinkCall::SetUp(1), LinkCall::SetUp(2)],
        ),
        (
            Some("eth1"),
            Ok(3),
            &[LinkCall::Links, LinkCall::SetUp(1), LinkCall::SetUp(3)],
        ),
        (Some("eth9"), Err("NoSuchLink"), &[LinkCall::Links]),
        (Some("lo"), Err("NoEthernetLink"), &[LinkCall::Links]),
    ];
    for (name, expected, calls) in cases {
        let mut ops = machine();
        let got = bring_links_up(&mut ops, *name);
        match (expected, got) {
            (Ok(index), Ok(link)) => assert_eq!(link.index, *index),
            (Err(variant), Err(error)) => {
                assert!(format!("{error:?}").starts_with(variant), "{error:?}")
            }
            (expected, got) => panic!("{name:?}: expected {expected:?}, got {got:?}"),
        }
        assert_eq!(ops.calls(), *calls, "{name:?}");
    }
    let mut only_lo = FakeLinkOps::new(vec![link(1, "lo", ARPHRD_LOOPBACK, IFF_LOOPBACK)]);
    assert!(matches!(
        bring_links_up(&mut only_lo, None),
        Err(NetconfError::NoEthernetLink)
    ));
}

fn lease(prefix_len: u8, router: Option<[u8; 4]>, mtu: Option<u16>) -> Lease {
    Lease {
        address: Ipv4Addr::new(10, 128, 0, 7),
        prefix_len,
        router: router.map(Ipv4Addr::from),
        mtu,
        lease_secs: Some(3600),
        server_id: Ipv4Addr::new(169, 254, 169, 254),
    }
}

#[test]
fn lease_becomes_ordered_operations() {
    let me = Ipv4Addr::new(10, 128, 0, 7);
    let gw = Ipv4Addr::new(10, 128, 0, 1);
    let default = LinkCall::AddRoute(Route {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway: Some(gw),
        scope: RouteScope::Universe,
        interface: 2,
        preferred_source: Some(me),
    });
    let on_link = LinkCall::AddRoute(Route {
        destination: gw,
        prefix_len: 32,
        gateway: None,
        scope: RouteScope::Link,
        interface: 2,
        preferred_source: Some(me),
    });
    let cases: Vec<(&str, Lease, Vec<LinkCall>)> = vec![
        (
            "GCE: /32, router outside, on-link route first",
            lease(32, Some([10, 128, 0, 1]), Some(1460)),
            vec![
                LinkCall::SetMtu(2, 1460),
                LinkCall::AddAddress(2, me, 32),
                on_link.clone(),
                default.clone(),
            ],
        ),
        (
            "/24 with the router inside: the prefix route covers it",
            lease(24, Some([10, 128, 0, 1]), Some(1400)),
            vec![
                LinkCall::SetMtu(2, 1400),
                LinkCall::AddAddress(2, me, 24),
                default.clone(),
            ],
        ),
        (
            "no MTU: the link keeps its own",
            lease(24, Some([10, 128, 0, 1]), None),
            vec![LinkCall::AddAddress(2, me, 24), default.clone()],
        ),
        (
            "no router: address only",
            lease(20, None, None),
            vec![LinkCall::AddAddress(2, me, 20)],
        ),
    ];
    for (name, lease, expected) in cases {
        let mut ops = machine();
        apply_lease(&mut ops, 2, &lease).unwrap();
        assert_eq!(ops.calls(), expected, "{name}");
    }
    let mut outside = machine();
    apply_lease(&mut outside, 2, &lease(24, Some([10, 9, 0, 1]), None)).unwrap();
    assert!(matches!(
        outside.calls()[1],
        LinkCall::AddRoute(Route {
            scope: RouteScope::Link,
            ..
        })
    ));
}

#[test]
fn a_refused_operation_stops_the_rest() {
    for fail_at in 0..4 {
        let mut ops = machine();
        ops.fail_call(fail_at);
        let error =
            apply_lease(&mut ops, 2, &lease(32, Some([10, 128, 0, 1]), Some(1460))).unwrap_err();
        assert!(matches!(error, NetconfError::NetlinkRefused { .. }));
        assert_eq!(ops.calls().len(), fail_at + 1);
    }
}

proptest! {
    #[test]
    fn parser_never_panics(datagram in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_replies(&datagram);
    }

    #[test]
    fn link_dump_round_trips(index in 1_u32..1000, name in "[a-z][a-z0-9]{0,14}", mac in any::<[u8; 6]>()) {
        let message = newlink(5, index, &name, ARPHRD_ETHER, IFF_UP, &mac);
        let replies = parse_replies(&message).unwrap();
        let expected = Link { index, name, link_type: ARPHRD_ETHER, flags: IFF_UP, mac: Some(mac), mtu: Some(1500) };
        prop_assert_eq!(replies, vec![Reply { seq: 5, response: Response::Link(expected) }]);
    }
}
