use super::*;
use crate::dhcp::{encode_reply, MessageType};
use crate::fake::{FakeTransport, Incoming};

const XID: u32 = 0x0102_0304;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const DISCOVER: Option<u8> = Some(1);
const REQUEST: Option<u8> = Some(3);

fn lease() -> Lease {
    Lease {
        address: Ipv4Addr::new(10, 204, 3, 40),
        prefix_len: 24,
        router: Some(Ipv4Addr::new(10, 204, 3, 1)),
        mtu: Some(1400),
        lease_secs: Some(600),
        server_id: Ipv4Addr::new(10, 204, 3, 1),
    }
}

fn config(deadline_secs: u64) -> ClientConfig {
    ClientConfig::new(MAC, XID, Duration::from_secs(deadline_secs))
}

fn offer() -> Incoming {
    Incoming::Reply(MessageType::Offer, lease())
}

fn ack() -> Incoming {
    Incoming::Reply(MessageType::Ack, lease())
}

fn nak() -> Incoming {
    Incoming::Reply(MessageType::Nak, lease())
}

fn secs(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs(*s)).collect()
}

#[test]
fn discover_offer_request_ack() {
    let mut net = FakeTransport::new([offer(), ack()]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    assert_eq!(net.sent_types(), [DISCOVER, REQUEST]);
    let crate::fake::TransportCall::Send { bytes, xid, .. } = &net.calls()[2] else {
        panic!("third call is the REQUEST");
    };
    assert_eq!(*xid, XID);
    let request = dhcp::Message::parse(bytes).unwrap();
    assert_eq!(request.options.get(50), Some(&[10, 204, 3, 40][..]));
    assert_eq!(request.options.get(54), Some(&[10, 204, 3, 1][..]));
}

#[test]
fn lost_packets_are_retransmitted_with_backoff() {
    let mut net = FakeTransport::new([
        Incoming::Silence,
        Incoming::Silence,
        offer(),
        Incoming::Silence,
        ack(),
    ]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    assert_eq!(
        net.sent_types(),
        [DISCOVER, DISCOVER, DISCOVER, REQUEST, REQUEST]
    );
    // Doubling per retransmission, and reset for the REQUEST phase.
    assert_eq!(net.recv_timeouts(), secs(&[1, 2, 4, 1, 2]));
}

#[test]
fn secs_field_counts_time_since_start() {
    let mut net = FakeTransport::new([Incoming::Silence, Incoming::Silence, offer(), ack()]);
    obtain_lease(&mut net, &config(30)).unwrap();
    let secs_sent: Vec<u16> = net
        .calls()
        .iter()
        .filter_map(|call| match call {
            crate::fake::TransportCall::Send { bytes, .. } => {
                Some(u16::from_be_bytes([bytes[8], bytes[9]]))
            }
            crate::fake::TransportCall::Recv { .. } => None,
        })
        .collect();
    assert_eq!(secs_sent, [0, 1, 3, 3]);
}

#[test]
fn backoff_is_capped_and_the_deadline_is_exact() {
    let mut net = FakeTransport::new([]);
    let error = obtain_lease(&mut net, &config(30)).unwrap_err();
    assert!(
        matches!(
            error,
            NetconfError::Timeout {
                phase: "OFFER",
                naks: 0,
                ..
            }
        ),
        "{error:?}"
    );
    // 1 + 2 + 4 + 8 + 8 = 23, then the last wait is cut to the deadline.
    assert_eq!(net.recv_timeouts(), secs(&[1, 2, 4, 8, 8, 7]));
    assert_eq!(net.elapsed(), Duration::from_secs(30));
}

#[test]
fn replies_to_other_transactions_and_clients_are_ignored() {
    let other_xid = encode_reply(MessageType::Offer, &lease(), XID ^ 1, MAC);
    let other_mac = encode_reply(MessageType::Offer, &lease(), XID, [2; 6]);
    let mut net = FakeTransport::new([
        Incoming::Packet(other_xid),
        Incoming::Packet(other_mac),
        Incoming::Packet(b"garbage".to_vec()),
        Incoming::Packet(Vec::new()),
        offer(),
        ack(),
    ]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    // All of it arrived inside the first wait: one DISCOVER was enough.
    assert_eq!(net.sent_types(), [DISCOVER, REQUEST]);
}

#[test]
fn nak_restarts_with_a_new_transaction() {
    let mut net = FakeTransport::new([offer(), nak(), offer(), ack()]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    let xids: Vec<(Option<u8>, u32)> = net
        .calls()
        .iter()
        .filter_map(|call| match call {
            crate::fake::TransportCall::Send {
                message_type, xid, ..
            } => Some((*message_type, *xid)),
            crate::fake::TransportCall::Recv { .. } => None,
        })
        .collect();
    let second = next_xid(XID);
    assert_ne!(second, XID);
    assert_eq!(
        xids,
        [
            (DISCOVER, XID),
            (REQUEST, XID),
            (DISCOVER, second),
            (REQUEST, second)
        ]
    );
}

#[test]
fn naks_are_counted_in_the_timeout() {
    let script = [offer(), nak()].into_iter().cycle().take(6);
    let mut net = FakeTransport::new(script);
    net.latency = Duration::from_secs(1);
    let error = obtain_lease(&mut net, &config(10)).unwrap_err();
    assert!(
        matches!(error, NetconfError::Timeout { naks: 3, .. }),
        "{error:?}"
    );
}

#[test]
fn nak_from_another_server_is_ignored() {
    let other = Lease {
        server_id: Ipv4Addr::new(10, 204, 3, 2),
        ..lease()
    };
    let mut net = FakeTransport::new([offer(), Incoming::Reply(MessageType::Nak, other), ack()]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    assert_eq!(net.sent_types(), [DISCOVER, REQUEST]);
}

#[test]
fn nak_while_selecting_is_ignored() {
    let mut net = FakeTransport::new([nak(), offer(), ack()]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    assert_eq!(net.sent_types(), [DISCOVER, REQUEST]);
}

#[test]
fn ack_for_another_address_or_server_is_ignored() {
    let moved = Lease {
        address: Ipv4Addr::new(10, 204, 3, 41),
        ..lease()
    };
    let other_server = Lease {
        server_id: Ipv4Addr::new(10, 204, 3, 2),
        ..lease()
    };
    let mut net = FakeTransport::new([
        offer(),
        Incoming::Reply(MessageType::Ack, moved),
        Incoming::Reply(MessageType::Ack, other_server),
        ack(),
    ]);
    assert_eq!(obtain_lease(&mut net, &config(30)).unwrap(), lease());
    assert_eq!(net.sent_types(), [DISCOVER, REQUEST]);
}

#[test]
fn unanswered_requests_fall_back_to_discover() {
    let mut net = FakeTransport::new([
        offer(),
        Incoming::Silence,
        Incoming::Silence,
        Incoming::Silence,
        Incoming::Silence,
        offer(),
        ack(),
    ]);
    assert_eq!(obtain_lease(&mut net, &config(60)).unwrap(), lease());
    assert_eq!(
        net.sent_types(),
        [DISCOVER, REQUEST, REQUEST, REQUEST, REQUEST, DISCOVER, REQUEST]
    );
    assert_eq!(net.recv_timeouts(), secs(&[1, 1, 2, 4, 8, 1, 1]));
}

#[test]
fn request_phase_times_out_with_its_phase() {
    let mut net = FakeTransport::new([offer()]);
    let mut config = config(5);
    config.request_attempts = 100;
    let error = obtain_lease(&mut net, &config).unwrap_err();
    assert!(
        matches!(error, NetconfError::Timeout { phase: "ACK", .. }),
        "{error:?}"
    );
}

#[test]
fn transport_failures_are_errors() {
    for n in [0, 1, 2, 3] {
        let mut net = FakeTransport::new([offer(), ack()]);
        net.fail_call(n);
        let error = obtain_lease(&mut net, &config(30)).unwrap_err();
        assert!(
            matches!(error, NetconfError::Syscall { .. }),
            "{n}: {error:?}"
        );
    }
}

#[test]
fn zero_deadline_sends_once_and_gives_up() {
    let mut net = FakeTransport::new([offer(), ack()]);
    let error = obtain_lease(&mut net, &config(0)).unwrap_err();
    assert!(matches!(error, NetconfError::Timeout { .. }), "{error:?}");
    assert_eq!(net.recv_timeouts(), secs(&[]));
}
