//! A real exchange: dnsmasq in one network namespace, our client in another,
//! joined by a veth pair. Each test builds its own namespaces (unique names,
//! private 10.204.x.0/24 addresses) and a guard removes them, and stops
//! dnsmasq, even when the test fails. Needs root and `ip` and `dnsmasq`.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use netconf::{Lease, NetconfError};
use serde_json::Value;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// An address on the server's loopback, outside every leased prefix: only a
/// working default route reaches it.
const BEYOND_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 204, 250, 1);

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Two namespaces, a veth pair between them, maybe a dnsmasq; all removed
/// on drop.
struct Lab {
    server_ns: String,
    client_ns: String,
    server_if: String,
    client_if: String,
    subnet: u8,
    dnsmasq: Option<Child>,
    log: PathBuf,
}

impl Lab {
    /// `tag` makes the names unique among this run's tests, the pid among
    /// concurrent runs; `subnet` picks 10.204.<subnet>.0/24.
    fn new(tag: char, subnet: u8) -> Self {
        let id = format!("{}{tag}", std::process::id());
        let lab = Self {
            server_ns: format!("netconf-test-{id}-srv"),
            client_ns: format!("netconf-test-{id}-cli"),
            server_if: format!("nc{id}s"),
            client_if: format!("nc{id}c"),
            subnet,
            dnsmasq: None,
            log: std::env::temp_dir().join(format!("netconf-test-{id}-dnsmasq.log")),
        };
        assert!(lab.server_if.len() <= 15, "interface name too long");
        run("ip", &["netns", "add", &lab.server_ns]);
        run("ip", &["netns", "add", &lab.client_ns]);
        run(
            "ip",
            &[
                "link",
                "add",
                &lab.server_if,
                "netns",
                &lab.server_ns,
                "type",
                "veth",
                "peer",
                "name",
                &lab.client_if,
                "netns",
                &lab.client_ns,
            ],
        );
        let server_cidr = format!("{}/24", lab.server_address());
        let s = &lab.server_ns;
        run(
            "ip",
            &["-n", s, "addr", "add", &server_cidr, "dev", &lab.server_if],
        );
        run(
            "ip",
            &[
                "-n",
                s,
                "addr",
                "add",
                &format!("{BEYOND_ROUTER}/32"),
                "dev",
                "lo",
            ],
        );
        run("ip", &["-n", s, "link", "set", "lo", "up"]);
        run("ip", &["-n", s, "link", "set", &lab.server_if, "up"]);
        lab
    }

    fn server_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 204, self.subnet, 1)
    }

    fn start_dnsmasq(&mut self, extra: &[String]) {
        let net = format!("10.204.{}", self.subnet);
        let mut args = vec![
            "netns".to_owned(),
            "exec".to_owned(),
            self.server_ns.clone(),
            DNSMASQ.to_owned(),
            "--no-daemon".to_owned(),
            "--log-dhcp".to_owned(),
            "--port=0".to_owned(),
            format!("--interface={}", self.server_if),
            "--bind-interfaces".to_owned(),
            "--leasefile-ro".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--pid-file=".to_owned(),
            format!("--dhcp-option=option:router,{net}.1"),
            "--dhcp-option=option:mtu,1400".to_owned(),
        ];
        args.extend(extra.iter().cloned());
        let log = File::create(&self.log).unwrap();
        // `ip netns exec` execs dnsmasq in place, so this PID is dnsmasq's.
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.dnsmasq = Some(child);
    }

    /// Runs `f` on a thread that has entered `ns`: a network namespace is a
    /// per-thread attribute, so the rest of the test process stays put.
    fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/var/run/netns/{ns}");
        thread::spawn(move || {
            let file = File::open(path).unwrap();
            // SAFETY: a valid namespace fd for the duration of the call;
            // setns(CLONE_NEWNET) changes only the calling thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    fn in_client<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        Self::in_ns(&self.client_ns, f)
    }

    fn client_ip(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j", "-n", &self.client_ns];
        full.extend_from_slice(args);
        serde_json::from_str(&run("ip", &full)).unwrap()
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Proves the routes carry traffic: a TCP listener in the server
    /// namespace on `address`, one connection from the client namespace.
    fn assert_reachable(&self, address: Ipv4Addr) {
        let listener = Self::in_ns(&self.server_ns, move || {
            TcpListener::bind((address, 0)).unwrap()
        });
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"pong").unwrap();
        });
        let reply = self.in_client(move || {
            let mut stream =
                TcpStream::connect_timeout(&(address, port).into(), Duration::from_secs(5))
                    .unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            reply
        });
        server.join().unwrap();
        assert_eq!(reply, "pong");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("dnsmasq log:\n{}", self.dnsmasq_log());
        }
        let _ = std::fs::remove_file(&self.log);
        // Deleting a namespace destroys its end of the veth, and with it the
        // peer; the explicit link delete covers a pair left in the root
        // namespace by a failed setup.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.server_if])
            .stderr(Stdio::null())
            .output();
    }
}

fn addresses(link: &Value) -> Vec<(String, u64)> {
    link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_owned(),
                a["prefixlen"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn is_up(link: &Value) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn find_route<'a>(routes: &'a Value, dst: &str) -> Option<&'a Value> {
    routes.as_array().unwrap().iter().find(|r| r["dst"] == dst)
}

#[test]
fn leases_a_slash_24_from_dnsmasq_on_the_first_ethernet_link() {
    let mut lab = Lab::new('a', 1);
    lab.start_dnsmasq(&["--dhcp-range=10.204.1.50,10.204.1.150,255.255.255.0,1h".to_owned()]);

    let lease: Lease = lab
        .in_client(|| netconf::linux::bring_up(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("bring_up: {e}\n{}", lab.dnsmasq_log()));

    let address = lease.address.octets();
    assert_eq!(&address[..3], &[10, 204, 1], "{lease}");
    assert!((50..=150).contains(&address[3]), "{lease}");
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.router, Some(Ipv4Addr::new(10, 204, 1, 1)));
    assert_eq!(lease.mtu, Some(1400));
    assert_eq!(lease.lease_secs, Some(3600));
    assert_eq!(lease.server_id, lab.server_address());

    let link = &lab.client_ip(&["addr", "show", "dev", &lab.client_if])[0];
    assert_eq!(addresses(link), [(lease.address.to_string(), 24)]);
    assert_eq!(link["mtu"], 1400);
    assert!(is_up(link), "{link}");
    let lo = &lab.client_ip(&["link", "show", "dev", "lo"])[0];
    assert!(is_up(lo), "{lo}");

    let routes = lab.client_ip(&["route", "show"]);
    let default = find_route(&routes, "default").unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(default["gateway"], "10.204.1.1");
    assert_eq!(default["dev"], lab.client_if.as_str());
    assert_eq!(default["protocol"], "dhcp");
    assert!(find_route(&routes, "10.204.1.0/24").is_some(), "{routes}");

    lab.assert_reachable(lab.server_address());
    lab.assert_reachable(BEYOND_ROUTER);
}

#[test]
fn a_slash_32_lease_gets_an_on_link_route_to_its_gateway() {
    let mut lab = Lab::new('b', 2);
    // dnsmasq only serves a range on its interface's own subnet, so the /32
    // comes from overriding the mask option; the router stays 10.204.2.1,
    // outside every /32 it hands out, as on GCE.
    lab.start_dnsmasq(&[
        "--dhcp-range=10.204.2.50,10.204.2.150,255.255.255.0,1h".to_owned(),
        "--dhcp-option=option:netmask,255.255.255.255".to_owned(),
    ]);
    let interface = lab.client_if.clone();
    let lease = lab
        .in_client(move || netconf::linux::bring_up_on(&interface, Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("bring_up_on: {e}\n{}", lab.dnsmasq_log()));
    assert_eq!(lease.prefix_len, 32, "{lease}");
    assert_eq!(lease.router, Some(Ipv4Addr::new(10, 204, 2, 1)));

    let link = &lab.client_ip(&["addr", "show", "dev", &lab.client_if])[0];
    assert_eq!(addresses(link), [(lease.address.to_string(), 32)]);
    assert_eq!(link["mtu"], 1400);

    let routes = lab.client_ip(&["route", "show"]);
    let on_link = find_route(&routes, "10.204.2.1").unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(on_link["scope"], "link");
    assert_eq!(on_link["dev"], lab.client_if.as_str());
    let default = find_route(&routes, "default").unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(default["gateway"], "10.204.2.1");
    assert_eq!(default["dev"], lab.client_if.as_str());

    lab.assert_reachable(lab.server_address());
    lab.assert_reachable(BEYOND_ROUTER);
}

#[test]
fn no_server_means_a_timeout_after_the_link_came_up() {
    let lab = Lab::new('c', 3);
    let interface = lab.client_if.clone();
    let error = lab
        .in_client(move || netconf::linux::bring_up_on(&interface, Duration::from_secs(3)))
        .unwrap_err();
    assert!(
        matches!(error, NetconfError::Timeout { phase: "OFFER", .. }),
        "{error}"
    );
    let link = &lab.client_ip(&["link", "show", "dev", &lab.client_if])[0];
    assert!(is_up(link), "{link}");
    assert!(addresses(&lab.client_ip(&["addr", "show", "dev", &lab.client_if])[0]).is_empty());
}

#[test]
fn unknown_and_non_ethernet_links_are_refused() {
    let lab = Lab::new('d', 4);
    let error = lab
        .in_client(|| netconf::linux::bring_up_on("nosuch0", Duration::from_secs(1)))
        .unwrap_err();
    assert!(
        matches!(error, NetconfError::NoSuchLink(ref name) if name == "nosuch0"),
        "{error}"
    );
    let error = lab
        .in_client(|| netconf::linux::bring_up_on("lo", Duration::from_secs(1)))
        .unwrap_err();
    assert!(matches!(error, NetconfError::NoEthernetLink), "{error}");
}
