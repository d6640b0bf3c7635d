//! The console matchers read lines a compromised guest could shape at will
//! (the governor escapes process names, but the kernel and the server print
//! what they like): none may panic, and a parsed process's fields come back
//! whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_harness::matchers;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let _ = matchers::fatal(&line);
    let _ = matchers::is_init_banner(&line);
    let _ = matchers::governor_pid(&line);
    let _ = matchers::seal_end(&line);
    let _ = matchers::firewall_readback(&line);
    for verdict in [
        matchers::halt_verdict(&line),
        matchers::allow_verdict(&line),
    ]
    .into_iter()
    .flatten()
    {
        assert!(line.contains(&verdict.reason));
    }
    if let Some(p) = matchers::seal_row(&line) {
        assert!(line.contains(&format!("pid={}", p.pid)));
    }
    let _ = matchers::parse_process(&line);
});
