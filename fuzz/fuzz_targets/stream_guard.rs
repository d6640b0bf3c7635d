//! The guard's decision over arbitrary argument vectors and load arguments:
//! never panics, whatever passes for the visitor is the one allowed shape,
//! load arguments that parse round-trip, and any address text gives a source.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stream_guard::throttle::Source;
use stream_guard::{judge, GuardConfig, Verdict};

const KEY: &[u8] = b"ruach:stream:contact";

fuzz_target!(|data: &[u8]| {
    // NUL-separated words; the first byte picks how the words are used.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let words: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
    if mode % 2 == 0 {
        // Whatever parses says exactly what it parsed.
        if let Ok(config) = GuardConfig::from_args(&words) {
            assert_eq!(GuardConfig::from_args(&config.to_args()), Ok(config));
        }
        // The throttle's source parser takes the server's address text.
        let _ = Source::from_addr(&String::from_utf8_lossy(rest), mode & 2 == 2);
        return;
    }
    let Ok(config) = GuardConfig::from_args(&[
        &b"append-only"[..],
        b"visitor",
        KEY,
        b"admin",
        b"admin",
        b"data-dir",
        b"/data",
        b"max-pairs",
        b"4",
        b"max-bytes",
        b"64",
    ]) else {
        return;
    };
    let mut argv = words;
    if let Some(first) = argv.first_mut() {
        if mode & 2 == 2 {
            *first = b"XADD";
        }
    }
    if judge(&config, Some(b"visitor"), &argv) == Verdict::Pass
        && argv
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"xadd"))
    {
        assert!(argv.len() >= 5 && (argv.len() - 3) % 2 == 0);
        assert_eq!(argv[1], KEY);
        assert_eq!(argv[2], b"*");
        assert!((argv.len() - 3) / 2 <= 4);
        assert!(argv[3..].iter().map(|a| a.len()).sum::<usize>() <= 64);
    }
});
