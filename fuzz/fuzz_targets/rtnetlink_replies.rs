//! netconf's rtnetlink reply parser (link dumps, acks) over the shared
//! walker: never panics, and every link it reads has a name without NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netconf::netlink::{parse_replies, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(replies) = parse_replies(data) {
        for reply in replies {
            if let Response::Link(link) = reply.response {
                assert!(!link.name.contains('\0'));
            }
        }
    }
});
