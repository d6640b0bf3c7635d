//! The proc-connector (netlink) event parser, and the evdev input-event
//! parser: never panic; every parsed event encodes back to bytes that parse
//! to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procwatch::parse::connector::{encode_event, parse_datagram, Message};
use procwatch::parse::input::{parse_input_events, InputLayout};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = parse_datagram(data) {
        for m in messages {
            if let Message::Event(ev) = m {
                let again = parse_datagram(&encode_event(&ev)).expect("re-encoded event parses");
                assert_eq!(again, vec![Message::Event(ev)]);
            }
        }
    }
    for layout in [InputLayout::NATIVE, InputLayout { time_len: 8 }] {
        let events = parse_input_events(data, layout);
        assert_eq!(events.len(), data.len() / layout.record_len());
    }
});
