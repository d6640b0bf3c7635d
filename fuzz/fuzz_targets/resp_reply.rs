//! The e2e cases' RESP client reads whatever the appliance (or an attack
//! on it) sends back: the parser must never panic, must never claim more
//! bytes than it was given, and must give the same answer for a reply
//! whether or not more bytes follow it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_harness::resp::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((value, used))) = parse(data) else {
        return;
    };
    assert!(used > 0 && used <= data.len());
    let (head, _) = data.split_at(used);
    match parse(head) {
        Ok(Some((again, n))) => assert!(again == value && n == used),
        other => panic!("the reply alone parses as {other:?}"),
    }
});
