//! The guard's decision table: every shape an append-only user might send.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use stream_guard::{judge, ConfigError, GuardConfig, Refusal, Verdict};

const VISITOR: &[u8] = b"ruachtov-ai-visitors";
const KEY: &str = "ruach:stream:contact";

fn config() -> GuardConfig {
    GuardConfig::from_args(&[
        "append-only",
        "ruachtov-ai-visitors",
        KEY,
        "max-pairs",
        "16",
        "max-bytes",
        "4096",
    ])
    .unwrap()
}

fn words(line: &str) -> Vec<String> {
    line.split(' ').map(String::from).collect()
}

/// (visitor's command, expected verdict)
const VISITOR_CASES: &[(&str, Option<Refusal>)] = &[
    ("XADD ruach:stream:contact * name ada", None),
    ("xadd ruach:stream:contact * name ada msg hello", None),
    ("XaDd ruach:stream:contact * MAXLEN 0", None), // a field named MAXLEN is only data
    // The two measured attacks.
    (
        "XADD ruach:stream:contact MAXLEN 0 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact 18446744073709551615-18446744073709551615 f v",
        Some(Refusal::ExplicitId),
    ),
    // Trimming and creation options in every spelling.
    (
        "XADD ruach:stream:contact maxlen 0 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact MaxLen ~ 0 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact MAXLEN = 1 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact MINID 0 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact minid ~ 99999999999999 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact NOMKSTREAM * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact nomkstream MAXLEN 0 * f v",
        Some(Refusal::Option),
    ),
    (
        "XADD ruach:stream:contact LIMIT 10 * f v",
        Some(Refusal::Option),
    ),
    // Explicit IDs of every form.
    (
        "XADD ruach:stream:contact 0-1 f v",
        Some(Refusal::ExplicitId),
    ),
    ("XADD ruach:stream:contact 1 f v", Some(Refusal::ExplicitId)),
    (
        "XADD ruach:stream:contact 1-* f v",
        Some(Refusal::ExplicitId),
    ),
    (
        "XADD ruach:stream:contact ** f v",
        Some(Refusal::ExplicitId),
    ),
    (
        "XADD ruach:stream:contact *-0 f v",
        Some(Refusal::ExplicitId),
    ),
    // Field lists.
    ("XADD ruach:stream:contact *", Some(Refusal::NoFields)),
    ("XADD ruach:stream:contact * f", Some(Refusal::OddFields)),
    (
        "XADD ruach:stream:contact * f v g",
        Some(Refusal::OddFields),
    ),
    ("XADD", Some(Refusal::NoFields)),
    ("XADD ruach:stream:contact", Some(Refusal::NoFields)),
    // Other keys, including near misses and glob lookalikes.
    ("XADD other * f v", Some(Refusal::OtherKey)),
    ("XADD RUACH:STREAM:CONTACT * f v", Some(Refusal::OtherKey)),
    ("XADD ruach:stream:contact2 * f v", Some(Refusal::OtherKey)),
    ("XADD ruach:stream:* * f v", Some(Refusal::OtherKey)),
    ("XADD ruach:stream:contac * f v", Some(Refusal::OtherKey)),
];

#[test]
fn visitor_shapes() {
    let config = config();
    for (line, expected) in VISITOR_CASES {
        let verdict = judge(&config, Some(VISITOR), &words(line));
        let want = expected.map_or(Verdict::Pass, Verdict::Refuse);
        assert_eq!(verdict, want, "{line}");
    }
}

#[test]
fn size_limits() {
    let config = config();
    let mut argv = words("XADD ruach:stream:contact *");
    for i in 0..16 {
        argv.push(format!("f{i}"));
        argv.push("v".into());
    }
    assert_eq!(
        judge(&config, Some(VISITOR), &argv),
        Verdict::Pass,
        "16 pairs"
    );
    argv.push("f16".into());
    argv.push("v".into());
    assert_eq!(
        judge(&config, Some(VISITOR), &argv),
        Verdict::Refuse(Refusal::TooManyPairs)
    );

    let exact = vec![
        "XADD".to_string(),
        KEY.into(),
        "*".into(),
        "f".into(),
        "v".repeat(4095),
    ];
    assert_eq!(
        judge(&config, Some(VISITOR), &exact),
        Verdict::Pass,
        "4096 bytes"
    );
    let over = vec![
        "XADD".to_string(),
        KEY.into(),
        "*".into(),
        "f".into(),
        "v".repeat(4096),
    ];
    assert_eq!(
        judge(&config, Some(VISITOR), &over),
        Verdict::Refuse(Refusal::TooLarge)
    );
}

#[test]
fn other_users_and_commands_pass() {
    let config = config();
    for line in [
        "XADD ruach:stream:contact MAXLEN 0 * f v",
        "XADD ruach:stream:contact 18446744073709551615-18446744073709551615 f v",
        "XADD any-key * f v",
    ] {
        assert_eq!(
            judge(&config, Some(b"admin"), &words(line)),
            Verdict::Pass,
            "admin: {line}"
        );
        assert_eq!(
            judge(&config, None, &words(line)),
            Verdict::Pass,
            "internal: {line}"
        );
    }
    for line in [
        "PING",
        "GET x",
        "XTRIM ruach:stream:contact MAXLEN 0",
        "XADDX k * f v",
    ] {
        // The ACL refuses these for the visitor; the guard only judges XADD.
        assert_eq!(
            judge(&config, Some(VISITOR), &words(line)),
            Verdict::Pass,
            "{line}"
        );
    }
    assert_eq!(judge::<&[u8]>(&config, Some(VISITOR), &[]), Verdict::Pass);
}

#[test]
fn refused_commands_get_a_telling_name() {
    assert_eq!(
        Refusal::ExplicitId.command_name(),
        "STREAM-GUARD-REFUSED:explicit-id"
    );
    assert_eq!(
        Refusal::Option.command_name(),
        "STREAM-GUARD-REFUSED:option"
    );
}

#[test]
fn configuration_is_checked() {
    let cases: &[(&[&str], ConfigError)] = &[
        (&[], ConfigError::NoUsers),
        (&["max-pairs", "4"], ConfigError::NoUsers),
        (
            &["append-only", "u"],
            ConfigError::MissingValue("append-only"),
        ),
        (
            &["append-only", "u", "k", "max-pairs"],
            ConfigError::MissingValue("max-pairs"),
        ),
        (
            &["append-only", "u", "k", "max-pairs", "0"],
            ConfigError::BadNumber("max-pairs", "0".into()),
        ),
        (
            &["append-only", "u", "k", "max-bytes", "x"],
            ConfigError::BadNumber("max-bytes", "x".into()),
        ),
        (
            &["append-only", "u", "k", "trim", "yes"],
            ConfigError::UnknownArgument("trim".into()),
        ),
        (
            &["append-only", "u", "k", "append-only", "u", "j"],
            ConfigError::DuplicateUser("u".into()),
        ),
    ];
    for (args, want) in cases {
        assert_eq!(GuardConfig::from_args(args).as_ref(), Err(want), "{args:?}");
        assert!(!want.to_string().is_empty());
    }
    let two =
        GuardConfig::from_args(&["append-only", "a", "k1", "append-only", "b", "k2"]).unwrap();
    assert_eq!(
        judge(&two, Some(b"b"), &words("XADD k2 * f v")),
        Verdict::Pass
    );
    assert_eq!(
        judge(&two, Some(b"b"), &words("XADD k1 * f v")),
        Verdict::Refuse(Refusal::OtherKey)
    );
}

proptest! {
    /// Whatever a visitor sends, a passed XADD has exactly the allowed shape.
    #[test]
    fn passed_xadds_have_the_one_shape(argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..12)) {
        let mut argv = argv;
        if let Some(first) = argv.first_mut() {
            *first = b"xadd".to_vec();
        }
        let config = config();
        if judge(&config, Some(VISITOR), &argv) == Verdict::Pass && !argv.is_empty() {
            prop_assert!(argv.len() >= 5);
            prop_assert_eq!(&argv[1], KEY.as_bytes());
            prop_assert_eq!(&argv[2], b"*");
            prop_assert_eq!((argv.len() - 3) % 2, 0);
        }
    }

    /// The allowed shape always passes when within limits.
    #[test]
    fn well_formed_xadds_pass(pairs in prop::collection::vec((".{0,20}", ".{0,20}"), 1..=16)) {
        let mut argv = vec!["XADD".to_string(), KEY.into(), "*".into()];
        for (f, v) in pairs {
            argv.push(f);
            argv.push(v);
        }
        let bytes: usize = argv[3..].iter().map(String::len).sum();
        prop_assume!(bytes <= 4096);
        prop_assert_eq!(judge(&config(), Some(VISITOR), &argv), Verdict::Pass);
    }
}
