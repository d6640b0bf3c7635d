//! Shared helpers for the namespace tests: throwaway network namespaces
//! joined by a veth pair, listeners and clients inside them, `nft` runs.
//! Everything a test creates is removed by a Drop guard, also on failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use appliance_spec::{Spec, REFERENCE_TOML};
use socket2::{Domain, Socket, Type};

/// The server end of the private /29 that exists only inside our namespaces.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
/// The client's default source address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
/// A second client address, to show the limit is per source.
pub const CLIENT_IP2: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 3);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short tag for names of this test's namespaces and links.
pub fn unique_tag() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}{}", std::process::id() % 100_000, n)
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Two namespaces, "server" and "client", joined by a veth pair and
/// addressed from 10.203.0.0/29. Dropping it deletes both namespaces (and
/// with them the veth pair and every rule loaded inside).
pub struct NetnsPair {
    pub server: String,
    pub client: String,
}

/// The `i`th client address (0-based) of [`NetnsPair::with_clients`]:
/// 10.203.0.2, 10.203.0.3, ...
pub fn client_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 203, 0, i.saturating_add(2))
}

impl NetnsPair {
    pub fn new() -> NetnsPair {
        NetnsPair::with_client_addrs(29, &[CLIENT_IP, CLIENT_IP2])
    }

    /// A pair whose client end has `count` addresses ([`client_ip`]), in a
    /// 10.203.0.0/24 that exists only inside the two namespaces.
    pub fn with_clients(count: u8) -> NetnsPair {
        assert!(count <= 250);
        let addrs: Vec<Ipv4Addr> = (0..count).map(client_ip).collect();
        NetnsPair::with_client_addrs(24, &addrs)
    }

    fn with_client_addrs(prefix: u8, clients: &[Ipv4Addr]) -> NetnsPair {
        let tag = unique_tag();
        let pair = NetnsPair {
            server: format!("pfr-s-{tag}"),
            client: format!("pfr-c-{tag}"),
        };
        ip(&["netns", "add", &pair.server]);
        // Guard exists from here on: a failure below still cleans up.
        let guard = pair;
        ip(&["netns", "add", &guard.client]);
        let (vs, vc) = (format!("pfs{tag}"), format!("pfc{tag}"));
        ip(&[
            "link",
            "add",
            &vs,
            "netns",
            &guard.server,
            "type",
            "veth",
            "peer",
            "name",
            &vc,
            "netns",
            &guard.client,
        ]);
        for (ns, link, addrs) in [
            (&guard.server, &vs, vec![SERVER_IP]),
            (&guard.client, &vc, clients.to_vec()),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            for a in addrs {
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{a}/{prefix}"),
                    "dev",
                    link,
                ]);
            }
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
        guard
    }

    /// `nft -f path` inside the server namespace.
    pub fn nft_load_server(&self, path: &std::path::Path) {
        run(Command::new("ip")
            .args(["netns", "exec", &self.server, "nft", "-f"])
            .arg(path));
    }

    pub fn nft_list_server(&self) -> String {
        nft_list_in(&self.server)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One namespace of its own (for load/readback tests).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let ns = Netns {
            name: format!("pfr-n-{}", unique_tag()),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `nft list table inet appliance` inside namespace `ns`.
pub fn nft_list_in(ns: &str) -> String {
    let out = run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "table",
        "inet",
        "appliance",
    ]));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `f` on a fresh thread that has joined namespace `ns` (setns moves
/// only the calling thread, so the test's other threads stay where they
/// are). Sockets made inside stay in `ns` wherever they are used later.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap();
        // SAFETY: setns on a valid, open namespace fd; it changes only this
        // thread's network namespace, which this thread owns until it ends.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// TCP listeners bound inside `ns` on every port. They are never accepted
/// from: the kernel completes handshakes into the backlog, which is all a
/// reachability test needs. Closed when the returned Vec is dropped.
pub fn listen_in(ns: &str, ip: Ipv4Addr, ports: &[u16]) -> Vec<TcpListener> {
    let ports = ports.to_vec();
    in_netns(ns, move || {
        ports
            .iter()
            .map(|p| TcpListener::bind(SocketAddrV4::new(ip, *p)).unwrap())
            .collect()
    })
}

/// One connection attempt from `ns`, from source `from`, with a timeout.
/// Returns the socket on success so the caller can hold it open.
pub fn connect_from(from: Ipv4Addr, to: SocketAddrV4, timeout: Duration) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from(SocketAddrV4::new(from, 0)).into())?;
    s.connect_timeout(&SocketAddr::from(to).into(), timeout)?;
    Ok(s)
}

/// Attempts connections from inside `ns`, all at once, one thread each.
pub fn connect_parallel_in(
    ns: &str,
    from: Ipv4Addr,
    to: SocketAddrV4,
    count: usize,
    timeout: Duration,
) -> Vec<io::Result<Socket>> {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let ns = ns.to_owned();
            std::thread::spawn(move || in_netns(&ns, move || connect_from(from, to, timeout)))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The reference spec with some lines replaced (each must exist).
pub fn spec_with(replacements: &[(&str, &str)]) -> Spec {
    let mut text = REFERENCE_TOML.to_owned();
    for (from, to) in replacements {
        assert!(text.contains(from), "reference spec has no {from:?}");
        text = text.replace(from, to);
    }
    Spec::from_toml_str(&text).unwrap()
}

/// A scratch file under Cargo's per-test tmp dir, removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn with_text(text: &str) -> TempFile {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("pf-rules-{}.nft", unique_tag()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A TCP server inside a namespace that accepts every connection and holds
/// it until the client closes (then closes its end too), as the real
/// server does: so a closed client connection really ends, in conntrack as
/// well. Stops when dropped.
pub struct HoldingServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HoldingServer {
    pub fn start(ns: &str, ip: Ipv4Addr, port: u16) -> HoldingServer {
        let listener = in_netns(ns, move || {
            let l = TcpListener::bind(SocketAddrV4::new(ip, port)).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let flag = flag.clone();
                        std::thread::spawn(move || {
                            use std::io::Read;
                            stream
                                .set_read_timeout(Some(Duration::from_millis(100)))
                                .unwrap();
                            let mut buf = [0u8; 64];
                            while !flag.load(Ordering::Relaxed) {
                                match stream.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(_) => {}
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        HoldingServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HoldingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The elements of set `set` of our table in namespace `ns`, as `nft`
/// prints them (addresses only).
pub fn set_elements(ns: &str, set: &str) -> Vec<Ipv4Addr> {
    let out = run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "set",
        "inet",
        "appliance",
        set,
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let body = &text[start + "elements = {".len()..];
    let body = &body[..body.find('}').unwrap()];
    body.split(',')
        .filter_map(|e| e.split_whitespace().next())
        .map(|a| a.parse().unwrap())
        .collect()
}
