//! The guard's decision table: every shape an append-only user might send.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use stream_guard::{judge, judge_under, AppendOnly, ConfigError, GuardConfig, Refusal, Verdict};

const VISITOR: &[u8] = b"ruachtov-ai-visitors";
const KEY: &str = "ruach:stream:contact";

fn config() -> GuardConfig {
    GuardConfig::from_args(&[
        "append-only",
        "ruachtov-ai-visitors",
        KEY,
        "admin",
        "admin",
        "data-dir",
        "/data",
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
    const BASE: [&str; 7] = ["append-only", "u", "k", "admin", "a", "data-dir", "/d"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = BASE.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let cases: &[(Vec<&str>, ConfigError)] = &[
        (BASE[..5].to_vec(), ConfigError::Missing("data-dir")),
        (
            vec!["append-only", "u", "k", "data-dir", "/d"],
            ConfigError::Missing("admin"),
        ),
        (with(&["admin", "b"]), ConfigError::Repeated("admin")),
        (with(&["data-dir", "/e"]), ConfigError::Repeated("data-dir")),
        (
            vec!["append-only", "u", "k", "admin", "u", "data-dir", "/d"],
            ConfigError::AdminIsAppendOnly("u".into()),
        ),
        (
            vec!["append-only", "u", "k", "admin", "a", "data-dir", "data"],
            ConfigError::OutOfRange("data-dir", "data".into(), "an absolute path"),
        ),
        (
            with(&["memory-refuse-percent", "100"]),
            ConfigError::OutOfRange("memory-refuse-percent", "100".into(), "1-99"),
        ),
        (
            with(&["memory-refuse-percent", "0"]),
            ConfigError::BadNumber("memory-refuse-percent", "0".into()),
        ),
        (
            with(&["auth-sources", "1048577"]),
            ConfigError::OutOfRange("auth-sources", "1048577".into(), "1-1048576"),
        ),
        (
            with(&["disk-reserve", "-1"]),
            ConfigError::BadNumber("disk-reserve", "-1".into()),
        ),
        (
            with(&["auth-timeout", "+5"]),
            ConfigError::BadNumber("auth-timeout", "+5".into()),
        ),
        (
            with(&["command-timeout"]),
            ConfigError::MissingValue("command-timeout"),
        ),
        (
            with(&["admin-reserved-slots", "0"]),
            ConfigError::BadNumber("admin-reserved-slots", "0".into()),
        ),
        (
            with(&["auth-failures-per-minute", "ten"]),
            ConfigError::BadNumber("auth-failures-per-minute", "ten".into()),
        ),
    ];
    for (args, want) in cases {
        assert_eq!(GuardConfig::from_args(args).as_ref(), Err(want), "{args:?}");
        assert!(!want.to_string().is_empty());
    }
    let two = GuardConfig::from_args(&[
        "append-only",
        "a",
        "k1",
        "append-only",
        "b",
        "k2",
        "admin",
        "root",
        "data-dir",
        "/d",
    ])
    .unwrap();
    assert_eq!(
        judge(&two, Some(b"b"), &words("XADD k2 * f v")),
        Verdict::Pass
    );
    assert_eq!(
        judge(&two, Some(b"b"), &words("XADD k1 * f v")),
        Verdict::Refuse(Refusal::OtherKey)
    );
}

#[test]
fn defaults_and_every_knob() {
    let c =
        GuardConfig::from_args(&["append-only", "u", "k", "admin", "a", "data-dir", "/d"]).unwrap();
    assert_eq!(
        c,
        GuardConfig::new(
            vec![AppendOnly {
                user: b"u".to_vec(),
                key: b"k".to_vec()
            }],
            b"a".to_vec(),
            b"/d".to_vec()
        )
    );
    assert_eq!(
        (
            c.disk_reserve,
            c.memory_refuse_percent,
            c.auth_failures_per_minute,
            c.auth_sources
        ),
        (16 * 1024 * 1024, 90, 10, 4096)
    );
    assert_eq!(
        (c.auth_timeout, c.command_timeout, c.admin_reserved_slots),
        (10, 30, 32)
    );
    let args: Vec<String> = c
        .to_args()
        .into_iter()
        .map(|a| String::from_utf8(a).unwrap())
        .collect();
    assert_eq!(
        args.join(" "),
        "append-only u k admin a data-dir /d max-pairs 16 max-bytes 4096 disk-reserve 16777216 \
         memory-refuse-percent 90 auth-failures-per-minute 10 auth-sources 4096 auth-timeout 10 \
         command-timeout 30 admin-reserved-slots 32"
    );
}

#[test]
fn low_space_refuses_only_well_formed_visitor_xadds() {
    let config = config();
    let ok = words("XADD ruach:stream:contact * f v");
    for refusal in [Refusal::DiskLow, Refusal::MemoryLow] {
        assert_eq!(
            judge_under(&config, Some(refusal), Some(VISITOR), &ok),
            Verdict::Refuse(refusal)
        );
        // A malformed one keeps its own reason.
        assert_eq!(
            judge_under(
                &config,
                Some(refusal),
                Some(VISITOR),
                &words("XADD ruach:stream:contact 1-1 f v")
            ),
            Verdict::Refuse(Refusal::ExplicitId)
        );
        // The admin and internal clients are never refused for space.
        assert_eq!(
            judge_under(&config, Some(refusal), Some(b"admin"), &ok),
            Verdict::Pass
        );
        assert_eq!(
            judge_under(&config, Some(refusal), None, &ok),
            Verdict::Pass
        );
        assert_eq!(
            judge_under(&config, Some(refusal), Some(VISITOR), &words("PING")),
            Verdict::Pass
        );
    }
    assert_eq!(
        Refusal::DiskLow.command_name(),
        "STREAM-GUARD-REFUSED:disk-low"
    );
    assert_eq!(
        Refusal::MemoryLow.command_name(),
        "STREAM-GUARD-REFUSED:memory-low"
    );
    assert_eq!(
        judge_under(&config, None, Some(VISITOR), &ok),
        Verdict::Pass
    );
}

fn word() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..12)
}

fn any_config() -> impl Strategy<Value = GuardConfig> {
    (
        prop::collection::vec((word(), word()), 1..4),
        word(),
        word(),
        (
            1usize..1_000_000,
            1usize..1_000_000,
            1u64..u64::MAX,
            1u8..=99,
        ),
        (
            1u32..u32::MAX,
            1usize..=1_048_576,
            1u32..u32::MAX,
            1u32..u32::MAX,
            1u32..u32::MAX,
        ),
    )
        .prop_filter_map(
            "distinct users, admin not among them",
            |(users, admin, dir, a, b)| {
                let mut seen = std::collections::HashSet::new();
                if !users.iter().all(|(u, _)| seen.insert(u.clone())) || seen.contains(&admin) {
                    return None;
                }
                let mut data_dir = b"/".to_vec();
                data_dir.extend(dir);
                let users = users
                    .into_iter()
                    .map(|(user, key)| AppendOnly { user, key })
                    .collect();
                let mut c = GuardConfig::new(users, admin, data_dir);
                (
                    c.max_pairs,
                    c.max_bytes,
                    c.disk_reserve,
                    c.memory_refuse_percent,
                ) = a;
                (
                    c.auth_failures_per_minute,
                    c.auth_sources,
                    c.auth_timeout,
                    c.command_timeout,
                    c.admin_reserved_slots,
                ) = b;
                Some(c)
            },
        )
}

proptest! {
    /// The load arguments say exactly the configuration.
    #[test]
    fn args_round_trip(c in any_config()) {
        prop_assert_eq!(GuardConfig::from_args(&c.to_args()), Ok(c));
    }

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
