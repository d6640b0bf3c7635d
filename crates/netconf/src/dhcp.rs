//! DHCPv4 messages (RFC 2131, options from RFC 2132): the two requests a
//! client sends and the three replies it understands, and the [`Lease`] an
//! ACK yields.
//!
//! Only what a boot-time client needs: DISCOVER and REQUEST out; OFFER, ACK
//! and NAK in. Decoding checks every length before reading, honours option
//! overload (option 52: more options in the `file` and `sname` fields) and
//! concatenates split options (RFC 3396), and never panics.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;

use crate::NetconfError;

/// UDP port DHCP servers listen on.
pub const SERVER_PORT: u16 = 67;
/// UDP port DHCP clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// The smallest DHCP message every host must accept (RFC 2131 §2), and the
/// size BOOTP relays expect a request to be padded to (RFC 1542 §3.3 asks for
/// at least 300 bytes; 300 is what clients send).
const MIN_MESSAGE_SIZE: u16 = 576;
const MIN_REQUEST_LEN: usize = 300;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// Ask the server to broadcast its replies: until the lease is applied the
/// interface has no address a unicast reply could be delivered to.
const FLAG_BROADCAST: u16 = 0x8000;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Offsets into the fixed BOOTP header (RFC 2131 §2, figure 1).
const XID_AT: usize = 4;
const FLAGS_AT: usize = 10;
const YIADDR_AT: usize = 16;
const SIADDR_AT: usize = 20;
const CHADDR_AT: usize = 28;
const SNAME_AT: usize = 44;
const FILE_AT: usize = 108;
const COOKIE_AT: usize = 236;
const OPTIONS_AT: usize = 240;

/// Option codes (RFC 2132).
pub mod option {
    /// Padding, no length byte.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers, in order of preference.
    pub const ROUTER: u8 = 3;
    /// Interface MTU.
    pub const INTERFACE_MTU: u8 = 26;
    /// Requested IP address.
    pub const REQUESTED_ADDRESS: u8 = 50;
    /// Lease time in seconds.
    pub const LEASE_TIME: u8 = 51;
    /// Option overload: more options in `file` (1), `sname` (2) or both (3).
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Maximum DHCP message size the client accepts.
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// End of options, no length byte.
    pub const END: u8 = 255;
}

/// What the client asks the server for, in this order.
const PARAMETERS_REQUESTED: [u8; 5] = [
    option::SUBNET_MASK,
    option::ROUTER,
    option::INTERFACE_MTU,
    option::LEASE_TIME,
    option::SERVER_ID,
];

/// MTUs outside this range are ignored: below 576 IPv4 itself breaks, above
/// 9000 no cloud NIC goes, so such a value is a mistake or an attack.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9000;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// Client looks for servers.
    Discover = 1,
    /// Server offers an address.
    Offer = 2,
    /// Client asks for the offered address.
    Request = 3,
    /// Server grants the lease.
    Ack = 5,
    /// Server refuses the request.
    Nak = 6,
}

/// A client identifier (option 61), already checked to be 2..=255 bytes long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(Vec<u8>);

impl ClientId {
    /// A client identifier from raw bytes (type byte first).
    ///
    /// # Errors
    /// [`NetconfError::BadClientId`] unless 2..=255 bytes long.
    pub fn new(bytes: Vec<u8>) -> Result<Self, NetconfError> {
        if (2..=255).contains(&bytes.len()) {
            Ok(Self(bytes))
        } else {
            Err(NetconfError::BadClientId { len: bytes.len() })
        }
    }

    /// The conventional identifier: hardware type 1 then the MAC.
    #[must_use]
    pub fn from_mac(mac: [u8; 6]) -> Self {
        let mut bytes = vec![HTYPE_ETHERNET];
        bytes.extend_from_slice(&mac);
        Self(bytes)
    }

    /// The identifier's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Who the client is, identically in every message of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientParams {
    /// The interface's hardware address (`chaddr`).
    pub mac: [u8; 6],
    /// Option 61, if the client sends one.
    pub client_id: Option<ClientId>,
    /// Option 57: the largest DHCP message the client accepts (raised to 576
    /// if lower). A reply larger than the link MTU would arrive fragmented,
    /// which a packet socket does not reassemble, so callers pass the MTU.
    pub max_message_size: u16,
}

/// Encodes a DHCPDISCOVER.
#[must_use]
pub fn encode_discover(params: &ClientParams, xid: u32, secs: u16) -> Vec<u8> {
    encode_request_message(params, xid, secs, MessageType::Discover, None)
}

/// Encodes a DHCPREQUEST for the address `requested` offered by `server_id`
/// (the SELECTING state of RFC 2131 §4.3.2).
#[must_use]
pub fn encode_request(
    params: &ClientParams,
    xid: u32,
    secs: u16,
    requested: Ipv4Addr,
    server_id: Ipv4Addr,
) -> Vec<u8> {
    encode_request_message(
        params,
        xid,
        secs,
        MessageType::Request,
        Some((requested, server_id)),
    )
}

fn encode_request_message(
    params: &ClientParams,
    xid: u32,
    secs: u16,
    message_type: MessageType,
    selected: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut out = bootp_header(BOOTREQUEST, xid, secs, Ipv4Addr::UNSPECIFIED, params.mac);
    put_option(&mut out, option::MESSAGE_TYPE, &[message_type as u8]);
    if let Some(client_id) = &params.client_id {
        put_option(&mut out, option::CLIENT_ID, client_id.as_bytes());
    }
    if let Some((requested, server_id)) = selected {
        put_option(&mut out, option::REQUESTED_ADDRESS, &requested.octets());
        put_option(&mut out, option::SERVER_ID, &server_id.octets());
    }
    put_option(
        &mut out,
        option::PARAMETER_REQUEST_LIST,
        &PARAMETERS_REQUESTED,
    );
    let max_size = params.max_message_size.max(MIN_MESSAGE_SIZE);
    put_option(&mut out, option::MAX_MESSAGE_SIZE, &max_size.to_be_bytes());
    out.push(option::END);
    if out.len() < MIN_REQUEST_LEN {
        out.resize(MIN_REQUEST_LEN, option::PAD);
    }
    out
}

/// Encodes a server's reply. The client never sends one; the fakes, tests and
/// fuzz seeds use it to speak for a server. A NAK carries only the server id.
#[must_use]
pub fn encode_reply(message_type: MessageType, lease: &Lease, xid: u32, mac: [u8; 6]) -> Vec<u8> {
    let your_address = match message_type {
        MessageType::Nak => Ipv4Addr::UNSPECIFIED,
        _ => lease.address,
    };
    let mut out = bootp_header(BOOTREPLY, xid, 0, your_address, mac);
    put_option(&mut out, option::MESSAGE_TYPE, &[message_type as u8]);
    put_option(&mut out, option::SERVER_ID, &lease.server_id.octets());
    if message_type != MessageType::Nak {
        put_option(&mut out, option::SUBNET_MASK, &lease.netmask().octets());
        if let Some(router) = lease.router {
            put_option(&mut out, option::ROUTER, &router.octets());
        }
        if let Some(mtu) = lease.mtu {
            put_option(&mut out, option::INTERFACE_MTU, &mtu.to_be_bytes());
        }
        if let Some(secs) = lease.lease_secs {
            put_option(&mut out, option::LEASE_TIME, &secs.to_be_bytes());
        }
    }
    out.push(option::END);
    if out.len() < MIN_REQUEST_LEN {
        out.resize(MIN_REQUEST_LEN, option::PAD);
    }
    out
}

fn bootp_header(op: u8, xid: u32, secs: u16, your_address: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_REQUEST_LEN);
    out.extend_from_slice(&[op, HTYPE_ETHERNET, HLEN_ETHERNET, 0]);
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&FLAG_BROADCAST.to_be_bytes());
    out.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets()); // ciaddr
    out.extend_from_slice(&your_address.octets()); // yiaddr
    out.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets()); // siaddr
    out.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets()); // giaddr
    out.extend_from_slice(&mac);
    out.resize(SNAME_AT, 0); // rest of chaddr
    out.resize(COOKIE_AT, 0); // sname, file
    out.extend_from_slice(&MAGIC_COOKIE);
    out
}

/// Callers only pass values of at most 255 bytes: fixed-size fields, the
/// short parameter list and a length-checked [`ClientId`].
fn put_option(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    let len = u8::try_from(value.len()).unwrap_or(u8::MAX);
    out.push(code);
    out.push(len);
    out.extend_from_slice(value.get(..usize::from(len)).unwrap_or(value));
}

/// The options of one message, split instances of a code already joined
/// (RFC 3396), in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options(Vec<(u8, Vec<u8>)>);

impl Options {
    /// The value of option `code`, if present.
    #[must_use]
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, value)| value.as_slice())
    }

    fn append(&mut self, code: u8, value: &[u8]) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, existing)) => existing.extend_from_slice(value),
            None => self.0.push((code, value.to_vec())),
        }
    }

    /// Reads one options area: code, length, value triples; pads skipped; an
    /// END or the end of the area stops it (servers that omit END are common
    /// enough that a missing END is not worth refusing a lease over).
    fn parse_area(&mut self, area: &[u8]) -> Result<(), NetconfError> {
        let mut rest = area;
        while let Some((&code, after_code)) = rest.split_first() {
            match code {
                option::PAD => rest = after_code,
                option::END => return Ok(()),
                _ => {
                    let Some((&len, after_len)) = after_code.split_first() else {
                        return Err(NetconfError::Truncated {
                            what: "option length",
                            need: 1,
                            have: 0,
                        });
                    };
                    let Some((value, after_value)) = after_len.split_at_checked(usize::from(len))
                    else {
                        return Err(NetconfError::Truncated {
                            what: "option value",
                            need: usize::from(len),
                            have: after_len.len(),
                        });
                    };
                    self.append(code, value);
                    rest = after_value;
                }
            }
        }
        Ok(())
    }
}

/// A parsed BOOTP/DHCP message: the header fields a client looks at and all
/// options. Nothing is judged here beyond the framing; see [`decode_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 request, 2 reply.
    pub op: u8,
    /// Hardware type.
    pub htype: u8,
    /// Hardware address length.
    pub hlen: u8,
    /// Transaction id.
    pub xid: u32,
    /// Flags (broadcast bit).
    pub flags: u16,
    /// `yiaddr`: the address offered or granted.
    pub your_address: Ipv4Addr,
    /// `siaddr`: the next server (boot server), not the DHCP server id.
    pub next_server: Ipv4Addr,
    /// `chaddr`: the client hardware address field, all 16 bytes.
    pub client_hardware: [u8; 16],
    /// Every option, overloaded areas included.
    pub options: Options,
}

impl Message {
    /// Parses the framing of a BOOTP message with the DHCP magic cookie.
    ///
    /// # Errors
    /// [`NetconfError::Truncated`], [`NetconfError::BadMagicCookie`], or an
    /// option error for a truncated option or a bad overload value.
    pub fn parse(packet: &[u8]) -> Result<Self, NetconfError> {
        let Some((fixed, options_area)) = packet.split_at_checked(OPTIONS_AT) else {
            return Err(NetconfError::Truncated {
                what: "BOOTP header",
                need: OPTIONS_AT,
                have: packet.len(),
            });
        };
        let (header, cookie) = fixed.split_at(COOKIE_AT);
        if cookie != MAGIC_COOKIE {
            return Err(NetconfError::BadMagicCookie);
        }
        let mut options = Options::default();
        options.parse_area(options_area)?;
        // RFC 2131 §4.1: `file` is read before `sname`; the overload option
        // itself only counts where it may appear, in the options field.
        let overload = match options.get(option::OVERLOAD) {
            None => 0,
            Some(&[value @ 1..=3]) => value,
            Some(&[value]) => {
                return Err(NetconfError::BadOptionValue {
                    code: option::OVERLOAD,
                    value: u32::from(value),
                })
            }
            Some(other) => {
                return Err(NetconfError::BadOptionLength {
                    code: option::OVERLOAD,
                    len: other.len(),
                })
            }
        };
        if overload & 1 != 0 {
            options.parse_area(header.get(FILE_AT..COOKIE_AT).unwrap_or_default())?;
        }
        if overload & 2 != 0 {
            options.parse_area(header.get(SNAME_AT..FILE_AT).unwrap_or_default())?;
        }
        let byte = |at: usize| header.get(at).copied().unwrap_or_default();
        Ok(Self {
            op: byte(0),
            htype: byte(1),
            hlen: byte(2),
            xid: u32::from_be_bytes(array_at(header, XID_AT)),
            flags: u16::from_be_bytes(array_at(header, FLAGS_AT)),
            your_address: Ipv4Addr::from(array_at::<4>(header, YIADDR_AT)),
            next_server: Ipv4Addr::from(array_at::<4>(header, SIADDR_AT)),
            client_hardware: array_at(header, CHADDR_AT),
            options,
        })
    }
}

/// `N` bytes at `at`; the callers' offsets lie inside the 236-byte header
/// whose length was checked, so the zero fallback is never taken.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes
        .get(at..)
        .and_then(|tail| tail.get(..N))
        .and_then(|slice| <[u8; N]>::try_from(slice).ok())
        .unwrap_or([0; N])
}

/// An OFFER: an address and the server that offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The address offered (`yiaddr`).
    pub address: Ipv4Addr,
    /// The offering server (option 54), to be named in the REQUEST.
    pub server_id: Ipv4Addr,
}

/// A server's reply to this client's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// DHCPOFFER.
    Offer(Offer),
    /// DHCPACK, already checked into a lease.
    Ack(Lease),
    /// DHCPNAK: start over.
    Nak {
        /// The refusing server, if it said.
        server_id: Option<Ipv4Addr>,
    },
}

/// The configuration an ACK grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The interface address (`yiaddr`).
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask; 32 if the server sent none (with
    /// an on-link route to the router, a /32 works on any network).
    pub prefix_len: u8,
    /// The first router of option 3, if any (and not 0.0.0.0).
    pub router: Option<Ipv4Addr>,
    /// Option 26 if it lies in [`MTU_RANGE`]; otherwise the link keeps its MTU.
    pub mtu: Option<u16>,
    /// Option 51 in seconds; `u32::MAX` means infinite.
    pub lease_secs: Option<u32>,
    /// The granting server (option 54).
    pub server_id: Ipv4Addr,
}

impl Lease {
    /// The subnet mask for [`Lease::prefix_len`].
    #[must_use]
    pub fn netmask(&self) -> Ipv4Addr {
        mask_from_prefix(self.prefix_len)
    }

    /// Whether the router lies inside the leased prefix. When it does not
    /// (GCE hands out a /32), the router needs its own on-link route before a
    /// default route can point at it.
    #[must_use]
    pub fn router_in_prefix(&self) -> bool {
        let Some(router) = self.router else {
            return false;
        };
        let mask = u32::from(self.netmask());
        self.prefix_len < 32 && u32::from(router) & mask == u32::from(self.address) & mask
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)?;
        match self.router {
            Some(router) => write!(f, " via {router}")?,
            None => f.write_str(" no router")?,
        }
        match self.mtu {
            Some(mtu) => write!(f, " mtu {mtu}")?,
            None => f.write_str(" mtu unchanged")?,
        }
        match self.lease_secs {
            Some(u32::MAX) => f.write_str(" lease infinite")?,
            Some(secs) => write!(f, " lease {secs}s")?,
            None => f.write_str(" lease unspecified")?,
        }
        write!(f, " server {}", self.server_id)
    }
}

/// The mask with `prefix_len` leading ones (values above 32 count as 32).
#[must_use]
pub fn mask_from_prefix(prefix_len: u8) -> Ipv4Addr {
    let zeros = 32_u32.saturating_sub(u32::from(prefix_len));
    Ipv4Addr::from(u32::MAX.checked_shl(zeros).unwrap_or(0))
}

/// The prefix length of a contiguous, non-zero subnet mask.
///
/// # Errors
/// [`NetconfError::BadSubnetMask`] for a non-contiguous or all-zero mask.
pub fn prefix_from_mask(mask: Ipv4Addr) -> Result<u8, NetconfError> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    let prefix_len = u8::try_from(ones).map_err(|_| NetconfError::BadSubnetMask(mask))?;
    if prefix_len == 0 || u32::from(mask_from_prefix(prefix_len)) != bits {
        return Err(NetconfError::BadSubnetMask(mask));
    }
    Ok(prefix_len)
}

/// Decodes a server's reply to the transaction `xid` of the client with
/// hardware address `mac`.
///
/// # Errors
/// Any framing error of [`Message::parse`]; [`NetconfError::NotAReply`],
/// [`NetconfError::UnsupportedHardware`], [`NetconfError::WrongTransaction`]
/// or [`NetconfError::WrongHardwareAddress`] for a reply that is not ours; an
/// option error for a missing or malformed option the reply type needs.
pub fn decode_reply(packet: &[u8], xid: u32, mac: [u8; 6]) -> Result<Reply, NetconfError> {
    let message = Message::parse(packet)?;
    if message.op != BOOTREPLY {
        return Err(NetconfError::NotAReply { op: message.op });
    }
    if message.htype != HTYPE_ETHERNET || message.hlen != HLEN_ETHERNET {
        return Err(NetconfError::UnsupportedHardware {
            htype: message.htype,
            hlen: message.hlen,
        });
    }
    if message.xid != xid {
        return Err(NetconfError::WrongTransaction {
            expected: xid,
            got: message.xid,
        });
    }
    if message.client_hardware.get(..6) != Some(&mac[..]) {
        return Err(NetconfError::WrongHardwareAddress);
    }
    let options = &message.options;
    let message_type = match options.get(option::MESSAGE_TYPE) {
        Some(&[value]) => value,
        Some(other) => {
            return Err(NetconfError::BadOptionLength {
                code: option::MESSAGE_TYPE,
                len: other.len(),
            })
        }
        None => {
            return Err(NetconfError::MissingOption {
                code: option::MESSAGE_TYPE,
            })
        }
    };
    match message_type {
        t if t == MessageType::Offer as u8 => Ok(Reply::Offer(Offer {
            address: usable_address(message.your_address)?,
            server_id: required_address(options, option::SERVER_ID)?,
        })),
        t if t == MessageType::Ack as u8 => Ok(Reply::Ack(lease_from(&message)?)),
        t if t == MessageType::Nak as u8 => Ok(Reply::Nak {
            server_id: optional_address(options, option::SERVER_ID)?,
        }),
        other => Err(NetconfError::UnexpectedMessageType {
            message_type: other,
        }),
    }
}

fn lease_from(message: &Message) -> Result<Lease, NetconfError> {
    let options = &message.options;
    let prefix_len = match optional_address(options, option::SUBNET_MASK)? {
        Some(mask) => prefix_from_mask(mask)?,
        None => 32,
    };
    let router = match options.get(option::ROUTER) {
        None => None,
        Some(value) if !value.is_empty() && value.len() % 4 == 0 => {
            Some(Ipv4Addr::from(array_at::<4>(value, 0))).filter(|r| !r.is_unspecified())
        }
        Some(value) => {
            return Err(NetconfError::BadOptionLength {
                code: option::ROUTER,
                len: value.len(),
            })
        }
    };
    let mtu = match options.get(option::INTERFACE_MTU) {
        None => None,
        Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])).filter(|m| MTU_RANGE.contains(m)),
        Some(value) => {
            return Err(NetconfError::BadOptionLength {
                code: option::INTERFACE_MTU,
                len: value.len(),
            })
        }
    };
    let lease_secs = match options.get(option::LEASE_TIME) {
        None => None,
        Some(&[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
        Some(value) => {
            return Err(NetconfError::BadOptionLength {
                code: option::LEASE_TIME,
                len: value.len(),
            })
        }
    };
    Ok(Lease {
        address: usable_address(message.your_address)?,
        prefix_len,
        router,
        mtu,
        lease_secs,
        server_id: required_address(options, option::SERVER_ID)?,
    })
}

fn usable_address(address: Ipv4Addr) -> Result<Ipv4Addr, NetconfError> {
    if address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_loopback()
    {
        return Err(NetconfError::UnusableAddress(address));
    }
    Ok(address)
}

fn optional_address(options: &Options, code: u8) -> Result<Option<Ipv4Addr>, NetconfError> {
    match options.get(code) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(Ipv4Addr::new(a, b, c, d))),
        Some(value) => Err(NetconfError::BadOptionLength {
            code,
            len: value.len(),
        }),
    }
}

fn required_address(options: &Options, code: u8) -> Result<Ipv4Addr, NetconfError> {
    optional_address(options, code)?.ok_or(NetconfError::MissingOption { code })
}

#[cfg(test)]
mod tests;
