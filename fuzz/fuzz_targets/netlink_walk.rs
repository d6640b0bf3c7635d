//! The shared netlink walker (nlwire): any bytes walk as messages and, to
//! any depth, as attributes without a panic, and whatever walks cleanly
//! walks the same after being built again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nlwire::message::NLMSG_ERROR;
use nlwire::{attrs, messages, Attr, AttrWriter, Builder};

/// (type with flags, payload) of each attribute, or `None` if the list has
/// a framing error.
fn walk(bytes: &[u8]) -> Option<Vec<(u16, Vec<u8>)>> {
    attrs(bytes)
        .map(|a| {
            a.ok()
                .map(|a: Attr<'_>| (a.raw_kind(), a.payload().to_vec()))
        })
        .collect()
}

/// Reads every attribute as a nest and every fixed-size value, to a depth.
fn walk_deep(bytes: &[u8], depth: u8) {
    if depth == 0 {
        return;
    }
    for attr in attrs(bytes) {
        let Ok(attr) = attr else { break };
        let _ = (
            attr.u8(),
            attr.u16(),
            attr.be_u32(),
            attr.u64(),
            attr.to_string_lossy(),
        );
        walk_deep(attr.payload(), depth - 1);
    }
}

fuzz_target!(|data: &[u8]| {
    walk_deep(data, 6);
    if let Some(list) = walk(data) {
        let mut builder = Builder::new();
        builder
            .message(0x10, 0, 1, &[], |w: &mut AttrWriter<'_>| {
                for (kind, payload) in &list {
                    w.bytes(*kind, payload);
                }
            })
            .expect("a walked list fits a message");
        let again: Vec<_> = messages(builder.as_bytes()).collect();
        assert_eq!(again.len(), 1);
        let message = again[0].as_ref().expect("built message walks");
        assert_eq!(walk(message.payload), Some(list));
    }
    for m in messages(data) {
        let Ok(m) = m else { break };
        assert!(m.payload.len() + 16 <= data.len());
        let _ = m.done_status();
        if m.header.kind == NLMSG_ERROR {
            if let Ok(reply) = m.error() {
                let _ = reply.message();
                walk_deep(reply.ext_ack, 4);
            }
        }
        walk_deep(m.payload, 6);
        // Rebuilt with the payload as its family header, it walks the same.
        let rebuilt = nlwire::build::message(
            m.header.kind,
            m.header.flags,
            m.header.seq,
            m.payload,
            |_| {},
        )
        .expect("a walked message fits a message");
        let back = nlwire::Message::parse(&rebuilt).expect("rebuilt message walks");
        assert_eq!(
            (back.header.kind, back.header.flags, back.header.seq),
            (m.header.kind, m.header.flags, m.header.seq)
        );
        assert_eq!(&back.payload[..m.payload.len()], m.payload);
    }
});
