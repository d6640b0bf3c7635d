//! The DHCP client's view of outside input: a frame off the wire (IPv4/UDP
//! headers stripped by `frame`) and the DHCP reply inside it.
//!
//! The reply decoder is called with the xid and MAC found in the input
//! itself, so most inputs get past the "not our transaction" check and reach
//! the option parser and lease builder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netconf::{dhcp, frame};

fuzz_target!(|data: &[u8]| {
    let _ = frame::parse_client_datagram(data);
    let xid = data
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes);
    let mac = data
        .get(28..34)
        .and_then(|b| <[u8; 6]>::try_from(b).ok())
        .unwrap_or_default();
    if let Ok(dhcp::Reply::Ack(lease)) = dhcp::decode_reply(data, xid, mac) {
        // A decoded lease must survive its own encoding unchanged.
        let again = dhcp::encode_reply(dhcp::MessageType::Ack, &lease, xid, mac);
        assert_eq!(
            dhcp::decode_reply(&again, xid, mac).ok(),
            Some(dhcp::Reply::Ack(lease))
        );
        let _ = lease.to_string();
    }
});
