//! The IPv4 and UDP headers around a DHCP message.
//!
//! Before it has a lease the interface has no address, so the client cannot
//! use a UDP socket reliably: the kernel's reverse-path filter (on in a
//! hardened boot) drops the server's reply as a martian. It talks through a
//! packet socket instead and builds and strips these two headers itself.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use crate::dhcp::{CLIENT_PORT, SERVER_PORT};
use crate::NetconfError;

const IPV4_HEADER_LEN: usize = 20;
const IPV4_HEADER_LEN_U16: u16 = 20;
const UDP_HEADER_LEN: usize = 8;
const PROTO_UDP: u8 = 17;
const TTL: u8 = 64;
/// More-fragments flag and fragment offset: either set means a fragment.
const FRAGMENT_MASK: u16 = 0x3FFF;

/// Wraps a DHCP message in UDP (68 to 67) and IPv4 (0.0.0.0 to
/// 255.255.255.255) headers, both checksums computed.
///
/// # Errors
/// [`NetconfError::Oversized`] if the datagram would exceed 65535 bytes.
pub fn build_client_broadcast(payload: &[u8]) -> Result<Vec<u8>, NetconfError> {
    let oversized = || NetconfError::Oversized { len: payload.len() };
    let udp_len =
        u16::try_from(payload.len().saturating_add(UDP_HEADER_LEN)).map_err(|_| oversized())?;
    let total_len = udp_len
        .checked_add(IPV4_HEADER_LEN_U16)
        .ok_or_else(oversized)?;
    let source = Ipv4Addr::UNSPECIFIED;
    let destination = Ipv4Addr::BROADCAST;

    let mut out = Vec::with_capacity(usize::from(total_len));
    out.extend_from_slice(&[0x45, 0]); // version 4, 5 words; TOS 0
    out.extend_from_slice(&total_len.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // id 0, no fragmentation flags
    out.extend_from_slice(&[TTL, PROTO_UDP, 0, 0]); // checksum filled below
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&destination.octets());
    let ip_checksum = internet_checksum(&[&out]);
    if let Some(field) = out.get_mut(10..12) {
        field.copy_from_slice(&ip_checksum.to_be_bytes());
    }

    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&SERVER_PORT.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let udp_checksum = match udp_checksum(source, destination, &udp) {
        // RFC 768: a computed zero is sent as all ones; zero means "none".
        0 => 0xFFFF,
        sum => sum,
    };
    if let Some(field) = udp.get_mut(6..8) {
        field.copy_from_slice(&udp_checksum.to_be_bytes());
    }
    out.extend_from_slice(&udp);
    Ok(out)
}

/// The UDP payload of an IPv4 datagram to the DHCP client port.
///
/// The UDP checksum is deliberately not verified: on virtual NICs and veth
/// the sender's checksum is often left to offload and a packet socket sees it
/// unfinished. The DHCP decoder checks the payload's structure instead.
///
/// # Errors
/// [`NetconfError::NotDhcpDatagram`] for anything else: not IPv4, bad header
/// checksum, a fragment, not UDP, another port, inconsistent lengths.
pub fn parse_client_datagram(frame: &[u8]) -> Result<&[u8], NetconfError> {
    let reject = |reason| NetconfError::NotDhcpDatagram { reason };
    let Some(fixed_header) = frame.get(..IPV4_HEADER_LEN) else {
        return Err(reject("shorter than an IPv4 header"));
    };
    let &[version_ihl, _, len_hi, len_lo, _, _, frag_hi, frag_lo, _, protocol, ..] = fixed_header
    else {
        return Err(reject("shorter than an IPv4 header"));
    };
    if version_ihl >> 4 != 4 {
        return Err(reject("not IPv4"));
    }
    let header_len = usize::from(version_ihl & 0x0F) * 4;
    let total_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if header_len < IPV4_HEADER_LEN || total_len < header_len || total_len > frame.len() {
        return Err(reject("inconsistent IPv4 lengths"));
    }
    // Link-layer padding may follow the datagram; the IPv4 length rules.
    let datagram = frame
        .get(..total_len)
        .ok_or(reject("inconsistent IPv4 lengths"))?;
    let (header, udp) = datagram
        .split_at_checked(header_len)
        .ok_or(reject("inconsistent IPv4 lengths"))?;
    if internet_checksum(&[header]) != 0 {
        return Err(reject("bad IPv4 header checksum"));
    }
    if u16::from_be_bytes([frag_hi, frag_lo]) & FRAGMENT_MASK != 0 {
        return Err(reject("IPv4 fragment"));
    }
    if protocol != PROTO_UDP {
        return Err(reject("not UDP"));
    }
    let &[_, _, port_hi, port_lo, udp_len_hi, udp_len_lo, ..] = udp else {
        return Err(reject("shorter than a UDP header"));
    };
    if u16::from_be_bytes([port_hi, port_lo]) != CLIENT_PORT {
        return Err(reject("not to the DHCP client port"));
    }
    let udp_len = usize::from(u16::from_be_bytes([udp_len_hi, udp_len_lo]));
    if udp_len < UDP_HEADER_LEN || udp_len > udp.len() {
        return Err(reject("inconsistent UDP length"));
    }
    udp.get(UDP_HEADER_LEN..udp_len)
        .ok_or(reject("inconsistent UDP length"))
}

fn udp_checksum(source: Ipv4Addr, destination: Ipv4Addr, udp: &[u8]) -> u16 {
    let udp_len = u16::try_from(udp.len()).unwrap_or(u16::MAX).to_be_bytes();
    let pseudo_header = [
        source.octets().as_slice(),
        destination.octets().as_slice(),
        &[0, PROTO_UDP],
        &udp_len,
    ]
    .concat();
    internet_checksum(&[&pseudo_header, udp])
}

/// RFC 1071: the ones' complement of the ones' complement sum of 16-bit
/// big-endian words; an odd final byte is padded with zero. Every part but
/// the last must have even length (true of the headers passed here).
#[must_use]
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for word in &mut words {
            if let &[hi, lo] = word {
                sum += u64::from(u16::from_be_bytes([hi, lo]));
            }
        }
        if let &[last] = words.remainder() {
            sum += u64::from(u16::from_be_bytes([last, 0]));
        }
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2 (complement 220d).
        assert_eq!(
            internet_checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d
        );
    }

    #[test]
    fn built_broadcast_has_valid_headers() {
        let payload = b"hello dhcp";
        let frame = build_client_broadcast(payload).unwrap();
        assert_eq!(frame.len(), 20 + 8 + payload.len());
        assert_eq!(&frame[..4], &[0x45, 0, 0, 38]);
        assert_eq!(frame[8], 64);
        assert_eq!(frame[9], 17);
        assert_eq!(&frame[12..16], &[0, 0, 0, 0]);
        assert_eq!(&frame[16..20], &[255, 255, 255, 255]);
        assert_eq!(internet_checksum(&[&frame[..20]]), 0);
        // Ports 68 -> 67 and length.
        assert_eq!(&frame[20..26], &[0, 68, 0, 67, 0, 18]);
        // The UDP checksum over pseudo-header + segment verifies to zero.
        assert_eq!(
            internet_checksum(&[
                &[0, 0, 0, 0, 255, 255, 255, 255, 0, 17, 0, 18],
                &frame[20..]
            ]),
            0
        );
    }

    /// A server reply frame: the same builder with the ports swapped, so the
    /// parser is tested against independently placed fields.
    fn reply_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = build_client_broadcast(payload).unwrap();
        frame[20..24].copy_from_slice(&[0, 67, 0, 68]);
        frame
    }

    #[test]
    fn parses_its_payload_and_ignores_link_padding() {
        let mut frame = reply_frame(b"offer");
        assert_eq!(parse_client_datagram(&frame).unwrap(), b"offer");
        frame.extend_from_slice(&[0; 17]);
        assert_eq!(parse_client_datagram(&frame).unwrap(), b"offer");
    }

    #[test]
    fn rejects_what_is_not_ours() {
        let good = reply_frame(b"offer");
        type Mutate = fn(&mut Vec<u8>);
        let cases: &[(&str, Mutate)] = &[
            ("shorter than an IPv4 header", |f| f.truncate(19)),
            ("not IPv4", |f| f[0] = 0x65),
            ("inconsistent IPv4 lengths", |f| f[0] = 0x44),
            ("inconsistent IPv4 lengths", |f| f[3] = 200),
            ("bad IPv4 header checksum", |f| f[8] = 1),
            ("IPv4 fragment", |f| {
                f[6] = 0x20;
                f[10..12].copy_from_slice(&[0, 0]);
                let sum = internet_checksum(&[&f[..20]]);
                f[10..12].copy_from_slice(&sum.to_be_bytes());
            }),
            ("not UDP", |f| {
                f[9] = 6;
                f[10..12].copy_from_slice(&[0, 0]);
                let sum = internet_checksum(&[&f[..20]]);
                f[10..12].copy_from_slice(&sum.to_be_bytes());
            }),
            ("not to the DHCP client port", |f| f[23] = 67),
            ("inconsistent UDP length", |f| f[25] = 7),
            ("inconsistent UDP length", |f| f[25] = 200),
        ];
        for (reason, mutate) in cases {
            let mut frame = good.clone();
            mutate(&mut frame);
            match parse_client_datagram(&frame) {
                Err(NetconfError::NotDhcpDatagram { reason: got }) => assert_eq!(got, *reason),
                other => panic!("{reason}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(frame in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_client_datagram(&frame);
        }

        #[test]
        fn round_trips_any_payload(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..1500)) {
            let frame = reply_frame(&payload);
            proptest::prop_assert_eq!(parse_client_datagram(&frame).unwrap(), &payload[..]);
        }
    }
}
