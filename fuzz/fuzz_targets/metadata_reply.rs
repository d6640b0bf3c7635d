//! The metadata reply check must never panic, whatever the server sends; and
//! whatever it accepts must be exactly the body, a 200 reply from the metadata
//! server, 1 to 4096 bytes of UTF-8. What init then does to an accepted
//! value (`init_seq::secrets::clean`: one trailing line ending stripped in
//! place, control characters and emptiness refused) must not panic either,
//! and what it keeps is the body minus at most that line ending.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use metadata_fetch::{check_reply, Reply, MAX_VALUE_LEN};

/// Header names the check cares about, so the fuzzer need not guess them.
const NAMES: [&[u8]; 4] = [
    b"Metadata-Flavor",
    b"metadata-flavor",
    b"Content-Length",
    b"Location",
];
const VALUES: [&[u8]; 3] = [b"Google", b"google", b"2"];

fn pick<'a>(u: &mut Unstructured<'a>, known: &[&'static [u8]]) -> Result<&'a [u8]> {
    let choice = u.int_in_range(0..=known.len())?;
    match known.get(choice) {
        Some(k) => Ok(k),
        None => {
            let len = u.int_in_range(0..=24)?;
            u.bytes(len)
        }
    }
}

fn decode<'a>(u: &mut Unstructured<'a>) -> Result<(u16, Vec<(&'a [u8], &'a [u8])>)> {
    let status = if u.arbitrary()? { 200 } else { u.arbitrary()? };
    let count = u.int_in_range(0..=4)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((pick(u, &NAMES)?, pick(u, &VALUES)?));
    }
    Ok((status, headers))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((status, headers)) = decode(&mut u) else {
        return;
    };
    let body = u.take_rest();
    let reply = Reply {
        status,
        headers: &headers,
        body,
    };
    match check_reply("redis-admin-pass", &reply) {
        Ok(secret) => {
            assert_eq!(status, 200);
            assert_eq!(secret.expose(), body);
            assert!(!body.is_empty() && body.len() <= MAX_VALUE_LEN);
            assert!(secret.as_str().is_some());
            let flavors: Vec<_> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"metadata-flavor"))
                .collect();
            assert_eq!(flavors.len(), 1);
            assert_eq!(flavors[0].1, b"Google");
            let mut secret = secret;
            let kept = init_seq::secrets::stripped_len(body);
            match init_seq::secrets::clean(&mut secret) {
                Ok(()) => {
                    assert_eq!(secret.expose(), &body[..kept]);
                    assert!(!secret.is_empty());
                    assert!(secret.expose().iter().all(|&b| b >= 0x20 && b != 0x7f));
                }
                Err(_) => {
                    let kept = &body[..kept];
                    assert!(kept.is_empty() || kept.iter().any(|&b| b < 0x20 || b == 0x7f));
                }
            }
        }
        Err(error) => {
            // The error depends on the body's length and UTF-8 validity only,
            // never on its bytes: the same verdict for a stand-in body of the
            // same shape.
            let filler = if std::str::from_utf8(body).is_ok() { b'x' } else { 0xff };
            let stand_in = vec![filler; body.len()];
            let again = check_reply(
                "redis-admin-pass",
                &Reply {
                    body: &stand_in,
                    ..reply
                },
            );
            assert_eq!(again.err(), Some(error));
        }
    }
});
