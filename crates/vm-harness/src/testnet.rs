//! A private guest network with many client addresses, for the e2e cases
//! that need distinct sources (per-source caps, the AUTH throttle, slot
//! floods from many addresses).
//!
//! QEMU's user network makes every host connection arrive from one address
//! (its gateway), so nothing per-source can be shown through it. Here the
//! guest's NIC is a tap device on a bridge inside a network namespace this
//! process creates; the bridge holds the gateway address, every test client
//! address and the metadata stand-in's address, dnsmasq hands the guest its
//! lease, and the stand-in answers on the bridge side. Test threads join the
//! namespace (`setns`, per thread) and bind their sockets to one client
//! address each.
//!
//! Invariants:
//! - Nothing in the namespace routes anywhere else: it has no link to the
//!   host's namespace and no default route. Packets to the metadata address
//!   end at a local listener in the namespace; every other address the guest
//!   could try is unreachable from it.
//! - The namespace, dnsmasq (by PID) and the stand-in thread are gone when
//!   the [`TestNet`] is dropped.
//! - `cargo xtask run` never uses this: it keeps the user network.

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use host_tools::Tool;

use crate::host::{temp_dir, TempDir};
use crate::{Error, Result};

/// What the test network needs on the host (namespaces, bridge and tap;
/// DHCP).
pub const TOOLS: [Tool; 2] = [
    Tool {
        file: "ip",
        package: "iproute2",
    },
    Tool {
        file: "dnsmasq",
        package: "dnsmasq-base",
    },
];

/// The bridge's (gateway's) address; the subnet is a /16.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The one address dnsmasq leases: the guest's.
pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 15);
/// The metadata server's address, held by the namespace's loopback.
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The tap device QEMU opens inside the namespace.
pub const TAP: &str = "tap0";
/// At most this many client addresses (10.213.1.1 upwards, 250 per /24).
pub const MAX_CLIENTS: u16 = 2500;
/// How long dnsmasq and the stand-in get to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespace, its DHCP server and its metadata stand-in.
#[derive(Debug)]
pub struct TestNet {
    name: String,
    clients: u16,
    dir: TempDir,
    dnsmasq: Option<Child>,
    stop: Arc<AtomicBool>,
    metadata: Option<JoinHandle<()>>,
}

/// The `i`-th client address (0-based): 10.213.1.1, ... 10.213.1.250,
/// 10.213.2.1, ...
pub fn client_addr(i: u16) -> Ipv4Addr {
    let block = u8::try_from(1 + i / 250).unwrap_or(u8::MAX);
    let host = u8::try_from(1 + i % 250).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 213, block, host)
}

fn ip(args: &[&str]) -> Result<()> {
    crate::host::run(Command::new("ip").args(args))
}

/// `ip -batch` of `lines` inside namespace `ns` (thousands of addresses in
/// one process instead of one each).
fn ip_batch(ns: &str, lines: &str, dir: &Path) -> Result<()> {
    let file = dir.join("ip.batch");
    std::fs::write(&file, lines).map_err(Error::file("write", &file))?;
    ip(&["-n", ns, "-batch", &file.display().to_string()])
}

/// Moves the calling thread into the namespace at `path` (network only).
pub fn enter_netns(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(Error::file("open", path))?;
    // Changes only this thread's network namespace.
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|errno| Error::file("setns into", path)(errno.into()))
}

impl TestNet {
    /// Creates the namespace with `clients` client addresses and starts
    /// dnsmasq and the metadata stand-in, which answers from `state_file`
    /// (read afresh for every request, as the guestfwd program does).
    pub fn create(clients: u16, state_file: &Path) -> Result<TestNet> {
        if clients > MAX_CLIENTS {
            return Err(Error::TooManyClients {
                asked: clients,
                max: MAX_CLIENTS,
            });
        }
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "apl-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = temp_dir("e2e-net")?;
        ip(&["netns", "add", &name])?;
        let mut net = TestNet {
            name,
            clients,
            dir,
            dnsmasq: None,
            stop: Arc::new(AtomicBool::new(false)),
            metadata: None,
        };
        net.lay_out()?;
        net.start_dnsmasq()?;
        net.start_metadata(state_file.to_path_buf())?;
        Ok(net)
    }

    fn lay_out(&self) -> Result<()> {
        let mut batch = String::new();
        batch.push_str("link set lo up\n");
        batch.push_str(&format!("addr add {METADATA}/32 dev lo\n"));
        batch.push_str("link add br0 type bridge\n");
        batch.push_str(&format!("addr add {GATEWAY}/16 dev br0\n"));
        for i in 0..self.clients {
            batch.push_str(&format!("addr add {}/16 dev br0\n", client_addr(i)));
        }
        batch.push_str(&format!("tuntap add dev {TAP} mode tap\n"));
        batch.push_str(&format!("link set {TAP} master br0\n"));
        batch.push_str(&format!("link set {TAP} up\n"));
        batch.push_str("link set br0 up\n");
        ip_batch(&self.name, &batch, self.dir.path())
    }

    fn start_dnsmasq(&mut self) -> Result<()> {
        let log = self.dir.path().join("dnsmasq.log");
        let log_file = File::create(&log).map_err(Error::file("create", &log))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "dnsmasq"])
            .args([
                "--no-daemon",
                "--log-dhcp",
                "--port=0",
                "--interface=br0",
                "--bind-interfaces",
                "--leasefile-ro",
                "--conf-file=/dev/null",
                "--pid-file=",
                &format!("--dhcp-range={GUEST},{GUEST},255.255.0.0,1h"),
                &format!("--dhcp-option=option:router,{GATEWAY}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "dnsmasq".into(),
                source,
            })?;
        self.dnsmasq = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(c) = self.dnsmasq.as_mut() {
                if let Some(status) = c.try_wait().map_err(Error::io("wait for dnsmasq"))? {
                    return Err(Error::DnsmasqExited {
                        status,
                        log: std::fs::read_to_string(&log)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    });
                }
            }
            if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("DHCP, IP range")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::StartTimeout {
            what: "dnsmasq",
            within: START_TIMEOUT,
        })
    }

    fn start_metadata(&mut self, state_file: PathBuf) -> Result<()> {
        let path = self.path();
        let stop = Arc::clone(&self.stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let handle = std::thread::Builder::new()
            .name("e2e-metadata".into())
            .spawn(move || {
                let listener = enter_netns(&path).and_then(|()| {
                    let l = TcpListener::bind(SocketAddr::from((METADATA, 80)))
                        .and_then(|l| l.set_nonblocking(true).map(|()| l))
                        .map_err(Error::io("bind the metadata stand-in"))?;
                    Ok(l)
                });
                let listener = match listener {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state_file = state_file.clone();
                            let stop = Arc::clone(&stop);
                            std::thread::spawn(move || serve_one(&state_file, stream, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .map_err(Error::io("start the metadata thread"))?;
        self.metadata = Some(handle);
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(Error::StartTimeout {
                what: "the metadata stand-in",
                within: START_TIMEOUT,
            }),
        }
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind-mounted handle.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// How many client addresses exist.
    pub fn clients(&self) -> u16 {
        self.clients
    }

    /// Moves the calling thread into the namespace: its new sockets are
    /// inside from now on (sockets opened before keep their namespace).
    pub fn enter(&self) -> Result<()> {
        enter_netns(&self.path())
    }

    /// Runs `f` on a fresh thread inside the namespace and returns what it
    /// returned.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = self.path();
        std::thread::spawn(move || enter_netns(&path).map(|()| f()))
            .join()
            .map_err(|_| Error::ThreadPanicked)?
    }
}

/// Serves one stand-in connection; the guest hanging up (or the net being
/// torn down) ends it.
fn serve_one(state_file: &Path, stream: TcpStream, stop: &AtomicBool) {
    if stop.load(Ordering::Relaxed) {
        return;
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(input) = stream.try_clone() else {
        return;
    };
    let mut output = stream;
    let _ = crate::standin::serve_logged(state_file, input, &mut output);
    let _ = output.flush();
}

/// A TCP connection from `source` to `to`, made in the calling thread's
/// namespace (call [`TestNet::enter`] first for the test network).
pub fn connect_from(source: IpAddr, to: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let fail = |e| Error::Connect {
        from: Some(source),
        to,
        source: e,
    };
    let sock =
        Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    sock.bind(&SocketAddr::new(source, 0).into())
        .map_err(fail)?;
    sock.connect_timeout(&to.into(), timeout).map_err(fail)?;
    sock.set_tcp_nodelay(true).map_err(fail)?;
    Ok(sock.into())
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.metadata.take() {
            let _ = h.join();
        }
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_distinct_and_in_the_subnet() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..MAX_CLIENTS {
            let a = client_addr(i);
            assert!(seen.insert(a), "{a} twice");
            let o = a.octets();
            assert_eq!((o[0], o[1]), (10, 213));
            assert!(o[2] >= 1 && o[3] >= 1 && o[3] <= 250, "{a}");
            assert_ne!(a, GATEWAY);
            assert_ne!(a, GUEST);
        }
    }

    #[test]
    fn too_many_clients_are_refused_before_anything_is_made() {
        let err = TestNet::create(MAX_CLIENTS + 1, Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, Error::TooManyClients { .. }), "{err}");
    }

    /// The real thing (root): the namespace with its addresses comes up,
    /// one client address reaches another inside it, and dropping the net
    /// removes the namespace.
    #[test]
    fn clients_connect_from_their_own_addresses_inside_the_namespace() {
        host_tools::ensure_tools(&TOOLS, "for the test network").unwrap();
        let tmp = temp_dir("testnet-test").unwrap();
        let state = tmp.path().join("standin.json");
        let net = TestNet::create(3, &state).unwrap();
        assert_eq!(net.clients(), 3);
        let path = net.path();
        assert!(path.exists());
        let (from, to) = (client_addr(0), client_addr(2));
        let seen = net
            .within(move || -> Result<IpAddr> {
                let listener = TcpListener::bind((to, 0)).map_err(Error::io("bind"))?;
                let addr = listener.local_addr().map_err(Error::io("bind"))?;
                let _client = connect_from(IpAddr::V4(from), addr, Duration::from_secs(5))?;
                let (_, peer) = listener.accept().map_err(Error::io("accept"))?;
                Ok(peer.ip())
            })
            .unwrap()
            .unwrap();
        assert_eq!(seen, IpAddr::V4(from));
        // The host's own namespace has none of these addresses.
        let err = connect_from(
            IpAddr::V4(from),
            SocketAddr::from((to, 1)),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        drop(net);
        assert!(!path.exists(), "the namespace outlived its TestNet");
    }
}
