//! The firewall policy: what is allowed, independent of pf or nftables.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use appliance_spec::Spec;

use crate::FirewallError;

/// Where the boot sequence is. The firewall is applied twice: once before the
/// secrets are fetched, once after (design §4 steps 6 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Booting: DHCP and the metadata server are reachable.
    Boot,
    /// Sealed: nothing leaves the machine except replies.
    Sealed,
}

impl Phase {
    /// Both phases, in boot order.
    pub const ALL: [Phase; 2] = [Phase::Boot, Phase::Sealed];

    /// Lower-case name, as used in rendered comments and snapshot names.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Boot => "boot",
            Phase::Sealed => "sealed",
        }
    }
}

/// A token bucket on new connections from one source address: `burst`
/// connections at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained new connections per second.
    pub per_second: u32,
    /// Bucket size; the spec guarantees `burst >= per_second >= 1`.
    pub burst: u32,
}

impl RateLimit {
    /// Seconds an idle source takes to refill its bucket completely (at
    /// least 1). After that long an idle source is indistinguishable from a
    /// new one, which bounds how long a per-source entry must be remembered.
    pub fn refill_seconds(self) -> u32 {
        let rate = self.per_second.max(1);
        self.burst.div_ceil(rate).max(1)
    }
}

/// Caps on concurrent connections to the server port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimit {
    /// Connections one source address may hold at once; its next SYN is
    /// dropped silently.
    pub per_source: u32,
    /// Connections all sources together may hold at once.
    pub total: u32,
}

/// One kind of outbound connection the appliance itself may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// A DHCP client: UDP 68 -> 67 out, and the server's UDP 67 -> 68 replies
    /// in (they may come from an address the request never went to, so
    /// connection tracking alone does not let them in).
    DhcpClient,
    /// TCP to exactly one address and port.
    Tcp(SocketAddrV4),
}

/// The appliance's firewall policy. Build it with [`Policy::from_spec`].
///
/// Fixed by design rather than configurable: default drop without RST,
/// loopback allowed, replies to established connections allowed, IPv6
/// dropped except on loopback, no forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The server's TCP port: the only inbound service.
    pub server_port: u16,
    /// Per-source limit on new connections to the server port.
    pub new_connections: RateLimit,
    /// Caps on concurrent connections to the server port.
    pub connections: ConnLimit,
    /// Sources each per-source meter remembers at once. A new source that
    /// finds a meter full is dropped: the meters fail closed.
    pub meter_size: u32,
    /// Answer ICMP echo-request.
    pub icmp_echo: bool,
    /// The metadata server (address and port from `metadata.base_url`).
    pub metadata: SocketAddrV4,
}

impl Policy {
    /// Builds the policy from a validated spec.
    ///
    /// Fails if the metadata host is not an IPv4 literal: the boot firewall
    /// opens egress to one address, and nothing resolves names.
    pub fn from_spec(spec: &Spec) -> Result<Policy, FirewallError> {
        Ok(Policy {
            server_port: spec.server().port(),
            new_connections: RateLimit {
                per_second: spec.firewall().conn_rate_per_source(),
                burst: spec.firewall().conn_burst_per_source(),
            },
            connections: ConnLimit {
                per_source: spec.firewall().conn_max_per_source(),
                total: spec.firewall().conn_max_total(),
            },
            meter_size: spec.firewall().meter_size(),
            icmp_echo: spec.firewall().icmp_echo(),
            metadata: metadata_endpoint(spec.metadata().base_url())?,
        })
    }

    /// What the appliance may start outbound in `phase`.
    ///
    /// Sealed allows nothing, DHCP included: after the seal no process
    /// exists that could renew a lease (PID 1 is the server, the other is the
    /// governor), so the address from the boot lease is kept for the life of
    /// the machine (see the crate README).
    pub fn egress(&self, phase: Phase) -> Vec<Egress> {
        match phase {
            Phase::Boot => vec![Egress::DhcpClient, Egress::Tcp(self.metadata)],
            Phase::Sealed => Vec::new(),
        }
    }
}

/// `http://HOST[:PORT]/...` -> the IPv4 socket address. The spec has already
/// checked the scheme and that a host exists; this only insists the host is
/// an IPv4 literal.
fn metadata_endpoint(url: &str) -> Result<SocketAddrV4, FirewallError> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| FirewallError::MetadataUrl {
            url: url.to_owned(),
        })?;
    // An IPv6 literal ("[::1]:80") has colons inside brackets; it is refused
    // as a host, so splitting at the last colon is enough.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.starts_with('[') => (host, Some(port)),
        _ => (authority, None),
    };
    let ip: Ipv4Addr = host
        .parse()
        .map_err(|_| FirewallError::MetadataHostNotIpv4 {
            host: host.to_owned(),
        })?;
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(FirewallError::MetadataPort { port: p.to_owned() }),
        },
    };
    Ok(SocketAddrV4::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_endpoint_table() {
        let ok: &[(&str, &str)] = &[
            (
                "http://169.254.169.254/computeMetadata/v1/",
                "169.254.169.254:80",
            ),
            ("http://169.254.169.254:8080/x/", "169.254.169.254:8080"),
            ("http://10.0.0.1/", "10.0.0.1:80"),
        ];
        for (url, want) in ok {
            assert_eq!(metadata_endpoint(url).unwrap().to_string(), *want, "{url}");
        }
        let bad: &[&str] = &[
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://[fd00::1]/x/",
            "http://[fd00::1]:80/x/",
            "http://169.254.169.254:0/x/",
            "http://169.254.169.254:+80/x/",
            "http://169.254.169.254:99999/x/",
            "http://169.254.169/x/",
            "http://0x7f.0.0.1/x/",
            "https://169.254.169.254/",
            "http:///",
        ];
        for url in bad {
            assert!(metadata_endpoint(url).is_err(), "{url} accepted");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_ipv4_host_is_accepted(a: u8, b: u8, c: u8, d: u8, port in proptest::option::of(1u16..)) {
            let ip = Ipv4Addr::new(a, b, c, d);
            let url = match port {
                Some(p) => format!("http://{ip}:{p}/x/"),
                None => format!("http://{ip}/x/"),
            };
            let got = metadata_endpoint(&url).unwrap();
            proptest::prop_assert_eq!(got, SocketAddrV4::new(ip, port.unwrap_or(80)));
        }

        #[test]
        fn metadata_endpoint_never_panics(url in ".{0,64}") {
            let _ = metadata_endpoint(&url);
        }
    }

    #[test]
    fn refill_seconds_rounds_up() {
        let cases = [(20, 40, 2), (20, 20, 1), (3, 10, 4), (1, 1, 1)];
        for (per_second, burst, want) in cases {
            assert_eq!(RateLimit { per_second, burst }.refill_seconds(), want);
        }
    }

    #[test]
    fn reference_policy() {
        let spec = Spec::reference().unwrap();
        let p = Policy::from_spec(&spec).unwrap();
        assert_eq!(p.server_port, 6379);
        assert_eq!(
            p.new_connections,
            RateLimit {
                per_second: 20,
                burst: 40
            }
        );
        assert_eq!(
            p.connections,
            ConnLimit {
                per_source: 32,
                total: 4096
            }
        );
        assert_eq!(p.meter_size, 65536);
        assert!(p.icmp_echo);
        assert_eq!(p.metadata, "169.254.169.254:80".parse().unwrap());
        assert_eq!(p.egress(Phase::Sealed), Vec::new());
        assert_eq!(p.egress(Phase::Boot).len(), 2);
    }
}
