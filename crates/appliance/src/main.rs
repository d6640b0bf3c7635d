//! `/init`: the appliance's PID 1 until it execs the server.
//!
//! Everything happens in `init_seq::boot`; this only supplies the real
//! machine (init's own syscalls, and the network, firewall and metadata
//! client of their own crates) and the governor entry. PID 1 must never exit
//! (the kernel panics), so after a failure that did not halt the machine the
//! process waits forever; when not PID 1 it refuses and exits with status 1.
#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
fn main() {
    let mut os = init_seq::os::linux::LinuxOs::new();
    let mut network = netconf::linux::LinuxNetwork::new();
    let mut firewall = pf_rules::NetlinkFirewall::new();
    let machine = init_seq::Machine {
        os: &mut os,
        network: &mut network,
        firewall: &mut firewall,
        metadata: &metadata_fetch::GceConnector,
    };
    let result = init_seq::boot(
        machine,
        appliance::VERSION,
        &appliance::governor_main,
        &appliance::boot_options(),
    );
    if let Err(fatal) = result {
        if !fatal.halted {
            std::process::exit(1);
        }
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("appliance: init runs on Linux only");
    std::process::exit(1);
}
