//! The spec's promises: the reference deployment parses; every bad value is
//! refused with an error naming its field and value; unknown fields are refused.

use appliance_spec::{
    is_valid_metadata_key, is_valid_stream_key, is_valid_user_name, Forks, OnEventLoss, Spec,
    SpecError, User, REFERENCE_TOML,
};
use proptest::prelude::*;

#[test]
fn reference_spec_is_seed_000() {
    let spec = Spec::reference().unwrap();
    assert_eq!(spec.name(), "patchworks");
    assert_eq!(spec.server().port(), 6379);
    assert_ne!(spec.server().uid(), 0);
    assert_eq!(spec.admin().name(), "admin");
    assert_eq!(spec.admin().secret(), "redis-admin-pass");
    assert_eq!(spec.visitors().len(), 1);
    assert_eq!(spec.visitors()[0].user().name(), "ruachtov-ai-visitors");
    assert_eq!(spec.visitors()[0].user().secret(), "redis-visitor-pass");
    assert_eq!(spec.visitors()[0].stream(), "ruach:stream:contact");
    assert_eq!(spec.governor().rescan_interval_ms(), 500);
    assert_eq!(spec.firewall().conn_max_per_source(), 32);
    assert_eq!(spec.firewall().conn_max_total(), 4096);
    assert_eq!(spec.firewall().meter_size(), 65536);
    assert_eq!(spec.governor().on_event_loss(), OnEventLoss::Halt);
    assert_eq!(spec.server().forks(), Forks::Bounded);
    assert_eq!(spec.governor().max_child_seconds(), 600);
    let names: Vec<&str> = spec.users().map(User::name).collect();
    assert_eq!(names, ["admin", "ruachtov-ai-visitors"]);
}

/// Replaces the first occurrence of `from` in the reference spec.
fn mutated(from: &str, to: &str) -> String {
    assert!(REFERENCE_TOML.contains(from), "fixture lost {from:?}");
    REFERENCE_TOML.replacen(from, to, 1)
}

/// (what changes, replacement, field the error must name, value it must show)
const INVALID: &[(&str, &str, &str, &str)] = &[
    (
        "name = \"patchworks\"",
        "name = \"patch works\"",
        "appliance.name",
        "patch works",
    ),
    (
        "binary = \"/usr/bin/valkey-server\"",
        "binary = \"usr/bin/valkey-server\"",
        "server.binary",
        "usr/bin/valkey-server",
    ),
    (
        "binary = \"/usr/bin/valkey-server\"",
        "binary = \"/usr/../bin/sh\"",
        "server.binary",
        "/usr/../bin/sh",
    ),
    (
        "data_dir = \"/data\"",
        "data_dir = \"/\"",
        "server.data_dir",
        "\"/\"",
    ),
    (
        "acl_file = \"/run/valkey/users.acl\"",
        "acl_file = \"/run/valkey/users acl\"",
        "server.acl_file",
        "users acl",
    ),
    ("port = 6379", "port = 0", "server.port", "0"),
    ("uid = 6379", "uid = 0", "server.uid", "0"),
    ("gid = 6379", "gid = 0", "server.gid", "0"),
    ("uid = 6379", "uid = 4294967295", "server.uid", "4294967295"),
    (
        "base_url = \"http://169.254.169.254/computeMetadata/v1/instance/attributes/\"",
        "base_url = \"https://169.254.169.254/\"",
        "metadata.base_url",
        "https://169.254.169.254/",
    ),
    (
        "base_url = \"http://169.254.169.254/computeMetadata/v1/instance/attributes/\"",
        "base_url = \"http://169.254.169.254/computeMetadata\"",
        "metadata.base_url",
        "computeMetadata",
    ),
    (
        "deadline_ms = 20000",
        "deadline_ms = 0",
        "metadata.deadline_ms",
        "0",
    ),
    ("attempts = 5", "attempts = 0", "metadata.attempts", "0"),
    (
        "name = \"admin\"",
        "name = \"default\"",
        "users[0].name",
        "default",
    ),
    (
        "name = \"admin\"",
        "name = \">admin\"",
        "users[0].name",
        ">admin",
    ),
    (
        "name = \"admin\"",
        "name = \"ad min\"",
        "users[0].name",
        "ad min",
    ),
    (
        "name = \"admin\"",
        "name = \"ruachtov-ai-visitors\"",
        "users[1].name",
        "ruachtov-ai-visitors",
    ),
    (
        "secret = \"redis-admin-pass\"",
        "secret = \"redis-visitor-pass\"",
        "users[1].secret",
        "redis-visitor-pass",
    ),
    (
        "secret = \"redis-admin-pass\"",
        "secret = \"redis admin\"",
        "users[0].secret",
        "redis admin",
    ),
    (
        "stream = \"ruach:stream:contact\"",
        "stream = \"ruach stream\"",
        "users[1].stream",
        "ruach stream",
    ),
    (
        "stream = \"ruach:stream:contact\"",
        "stream = \"\"",
        "users[1].stream",
        "\"\"",
    ),
    (
        "role = \"append-only\"",
        "role = \"admin\"",
        "users[1].stream",
        "ruach:stream:contact",
    ),
    (
        "conn_rate_per_source = 20",
        "conn_rate_per_source = 0",
        "firewall.conn_rate_per_source",
        "0",
    ),
    (
        "conn_burst_per_source = 40",
        "conn_burst_per_source = 10",
        "firewall.conn_burst_per_source",
        "10",
    ),
    (
        "conn_max_per_source = 32",
        "conn_max_per_source = 0",
        "firewall.conn_max_per_source",
        "0",
    ),
    (
        "conn_max_per_source = 32",
        "conn_max_per_source = 1000",
        "firewall.conn_max_per_source",
        "1000",
    ),
    (
        "conn_max_total = 4096",
        "conn_max_total = 65537",
        "firewall.conn_max_total",
        "65537",
    ),
    (
        "conn_max_total = 4096",
        "conn_max_total = 31",
        "firewall.conn_max_total",
        "31",
    ),
    (
        "meter_size = 65536",
        "meter_size = 999",
        "firewall.meter_size",
        "999",
    ),
    (
        "meter_size = 65536",
        "meter_size = 262145",
        "firewall.meter_size",
        "262145",
    ),
    (
        "maxclients = 1000",
        "maxclients = 0",
        "limits.maxclients",
        "0",
    ),
    (
        "proto_max_bulk_len = 1048576",
        "proto_max_bulk_len = 65536",
        "limits.proto_max_bulk_len",
        "65536",
    ),
    (
        "client_query_buffer_limit = 1048576",
        "client_query_buffer_limit = 1024",
        "limits.client_query_buffer_limit",
        "1024",
    ),
    (
        "xadd_max_pairs = 16",
        "xadd_max_pairs = 0",
        "limits.xadd_max_pairs",
        "0",
    ),
    (
        "xadd_max_bytes = 4096",
        "xadd_max_bytes = 2000000",
        "limits.xadd_max_bytes",
        "2000000",
    ),
    (
        "rescan_interval_ms = 500",
        "rescan_interval_ms = 1",
        "governor.rescan_interval_ms",
        "1",
    ),
    (
        "max_child_seconds = 600",
        "max_child_seconds = 0",
        "governor.max_child_seconds",
        "0",
    ),
    (
        "max_child_seconds = 600",
        "max_child_seconds = 86401",
        "governor.max_child_seconds",
        "86401",
    ),
];

#[test]
fn invalid_values_are_refused_naming_field_and_value() {
    for (from, to, field, value) in INVALID {
        let err = Spec::from_toml_str(&mutated(from, to)).expect_err(to);
        let text = err.to_string();
        assert_eq!(err.field(), Some(*field), "{to}: {text}");
        assert!(
            text.contains(field),
            "{to}: error `{text}` does not name {field}"
        );
        assert!(
            text.contains(value),
            "{to}: error `{text}` does not show {value}"
        );
    }
}

#[test]
fn admin_is_required_and_unique() {
    let no_admin = mutated("role = \"admin\"", "role = \"append-only\"\nstream = \"s\"");
    let err = Spec::from_toml_str(&no_admin).unwrap_err();
    assert_eq!(err.field(), Some("users"), "{err}");

    let two_admins = format!(
        "{REFERENCE_TOML}\n[[users]]\nname = \"root2\"\nrole = \"admin\"\nsecret = \"other\"\n"
    );
    let err = Spec::from_toml_str(&two_admins).unwrap_err();
    assert_eq!(err.field(), Some("users[2].role"), "{err}");

    let visitor_without_stream = mutated("stream = \"ruach:stream:contact\"", "");
    let err = Spec::from_toml_str(&visitor_without_stream).unwrap_err();
    assert_eq!(err.field(), Some("users[1].stream"), "{err}");
}

/// (where an unknown field is added, the name the error must mention)
const UNKNOWN: &[(&str, &str, &str)] = &[
    ("[server]", "[server]\nshell = \"/bin/sh\"", "shell"),
    ("[appliance]", "[appliance]\nssh = true", "ssh"),
    ("[governor]", "[governor]\nallow_all = true", "allow_all"),
    (
        "role = \"admin\"",
        "role = \"admin\"\npassword = \"x\"",
        "password",
    ),
    ("[limits]", "[cron]\njob = 1\n[limits]", "cron"),
];

#[test]
fn unknown_fields_are_refused() {
    for (from, to, name) in UNKNOWN {
        let err = Spec::from_toml_str(&mutated(from, to)).unwrap_err();
        assert!(matches!(err, SpecError::Syntax(_)), "{err}");
        assert!(
            err.to_string().contains(name),
            "`{err}` does not name {name}"
        );
    }
}

#[test]
fn unknown_role_and_loss_policy_are_refused() {
    let err = Spec::from_toml_str(&mutated("role = \"append-only\"", "role = \"superuser\""))
        .unwrap_err();
    assert!(err.to_string().contains("superuser"), "{err}");
    let err = Spec::from_toml_str(&mutated(
        "on_event_loss = \"halt\"",
        "on_event_loss = \"ignore\"",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("ignore"), "{err}");
    let ok = Spec::from_toml_str(&mutated(
        "on_event_loss = \"halt\"",
        "on_event_loss = \"rescan\"",
    ))
    .unwrap();
    assert_eq!(ok.governor().on_event_loss(), OnEventLoss::Rescan);
}

/// Characters that mean something in an ACL rule or on an ACL file line.
const ACL_SYNTAX: &[char] = &[
    ' ', '\t', '\n', '\r', '\0', '>', '<', '#', '~', '&', '%', '+', '@', '!', '^', '*',
];

proptest! {
    #[test]
    fn user_names_never_carry_acl_syntax(name in "\\PC{0,80}") {
        if is_valid_user_name(&name) {
            prop_assert!(!name.is_empty() && name.len() <= 64);
            prop_assert!(!name.contains(ACL_SYNTAX));
            prop_assert!(!name.starts_with('-'));
            prop_assert_ne!(name.as_str(), "default");
        }
    }

    #[test]
    fn plausible_user_names_are_accepted(name in "[a-z0-9][a-z0-9._-]{0,63}") {
        prop_assume!(name != "default");
        prop_assert!(is_valid_user_name(&name));
    }

    #[test]
    fn stream_keys_are_printable_without_space(key in "\\PC{0,300}") {
        if is_valid_stream_key(&key) {
            prop_assert!(!key.is_empty() && key.len() <= 256);
            prop_assert!(key.bytes().all(|b| (0x21..0x7f).contains(&b)));
        }
    }

    #[test]
    fn metadata_keys_are_url_safe(key in "\\PC{0,80}") {
        if is_valid_metadata_key(&key) {
            prop_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    /// Any user name placed in the file is either accepted (and then valid) or
    /// refused with an error that names `users[0].name`.
    #[test]
    fn any_admin_name_is_validated(name in "[ -~]{0,70}") {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        let text = mutated("name = \"admin\"", &format!("name = \"{escaped}\""));
        match Spec::from_toml_str(&text) {
            Ok(spec) => prop_assert!(is_valid_user_name(spec.admin().name())),
            Err(err) => {
                prop_assert!(!is_valid_user_name(&name) || name == "ruachtov-ai-visitors");
                prop_assert!(err.field().is_some_and(|f| f.ends_with(".name")), "{}", err);
            }
        }
    }

    /// The connection caps are accepted exactly inside their bounds, which
    /// are relative to `limits.maxclients`.
    #[test]
    fn connection_caps_are_bounded_by_maxclients(
        maxclients in 2u32..5000,
        per_source in 0u32..6000,
        total in 0u32..6000,
        meter in 0u32..300_000,
    ) {
        let text = mutated("maxclients = 1000", &format!("maxclients = {maxclients}"))
            .replacen("conn_max_per_source = 32", &format!("conn_max_per_source = {per_source}"), 1)
            .replacen("conn_max_total = 4096", &format!("conn_max_total = {total}"), 1)
            .replacen("meter_size = 65536", &format!("meter_size = {meter}"), 1);
        let ok = (1..maxclients).contains(&per_source)
            && (per_source..=meter).contains(&total)
            && (maxclients..=262_144).contains(&meter);
        match Spec::from_toml_str(&text) {
            Ok(spec) => {
                prop_assert!(ok);
                prop_assert_eq!(spec.firewall().conn_max_per_source(), per_source);
                prop_assert_eq!(spec.firewall().conn_max_total(), total);
                prop_assert_eq!(spec.firewall().meter_size(), meter);
            }
            Err(err) => {
                prop_assert!(!ok, "{}", err);
                prop_assert!(err.field().is_some_and(|f| f.starts_with("firewall.")), "{}", err);
            }
        }
    }

    /// Whatever the TOML text, parsing returns; it never panics.
    #[test]
    fn parser_never_panics(text in "\\PC{0,400}") {
        let _ = Spec::from_toml_str(&text);
    }
}

#[test]
fn reference_guard_table() {
    let spec = Spec::reference().unwrap();
    let g = spec.guard();
    assert_eq!(
        [
            g.disk_reserve_bytes(),
            u64::from(g.memory_refuse_percent()),
            u64::from(g.auth_failures_per_minute()),
            u64::from(g.auth_sources()),
            u64::from(g.auth_timeout_seconds()),
            u64::from(g.command_timeout_seconds()),
            u64::from(g.admin_reserved_slots()),
        ],
        [16 * 1024 * 1024, 90, 10, 4096, 10, 30, 32]
    );
}

/// `[guard]` field, a bad value, and a good edge value.
const GUARD_BOUNDS: &[(&str, &str, &str)] = &[
    ("disk_reserve_bytes", "1048575", "1048576"),
    ("disk_reserve_bytes", "1099511627777", "1099511627776"),
    ("memory_refuse_percent", "0", "1"),
    ("memory_refuse_percent", "100", "99"),
    ("auth_failures_per_minute", "0", "1"),
    ("auth_failures_per_minute", "601", "600"),
    ("auth_sources", "15", "16"),
    ("auth_sources", "1048577", "1048576"),
    ("auth_timeout_seconds", "0", "1"),
    ("auth_timeout_seconds", "301", "300"),
    ("command_timeout_seconds", "0", "1"),
    ("command_timeout_seconds", "86401", "86400"),
    ("admin_reserved_slots", "0", "1"),
    // limits.maxclients is 1000 in the reference.
    ("admin_reserved_slots", "1000", "999"),
];

/// The reference with one `[guard]` field set to `value`.
fn with_guard(field: &str, value: &str) -> String {
    let line = REFERENCE_TOML
        .lines()
        .find(|l| l.starts_with(&format!("{field} = ")));
    assert!(line.is_some(), "fixture lost guard.{field}");
    let line = line.unwrap_or_default();
    mutated(line, &format!("{field} = {value}"))
}

#[test]
fn guard_fields_are_bounded() {
    for (field, bad, good) in GUARD_BOUNDS {
        let err = Spec::from_toml_str(&with_guard(field, bad)).unwrap_err();
        let name = format!("guard.{field}");
        assert_eq!(err.field(), Some(name.as_str()), "{field} = {bad}: {err}");
        assert!(err.to_string().contains(bad), "`{err}` does not show {bad}");
        Spec::from_toml_str(&with_guard(field, good))
            .unwrap_or_else(|e| panic!("{field} = {good} refused: {e}"));
    }
    let err = Spec::from_toml_str(&mutated("[guard]", "[guard]\nlua = true")).unwrap_err();
    assert!(err.to_string().contains("lua"), "{err}");
    let missing = mutated("auth_sources = 4096", "");
    let err = Spec::from_toml_str(&missing).unwrap_err();
    assert!(err.to_string().contains("auth_sources"), "{err}");
}

/// `[server] forks`: "bounded" (the reference) or "never" (strict mode);
/// anything else, or nothing, is refused naming the field.
#[test]
fn forks_mode_is_bounded_or_never() {
    let strict = Spec::from_toml_str(&mutated("forks = \"bounded\"", "forks = \"never\"")).unwrap();
    assert_eq!(strict.server().forks(), Forks::Never);
    // The bound is still read (and validated) in strict mode, unused.
    assert_eq!(strict.governor().max_child_seconds(), 600);
    for (to, name) in [
        ("forks = \"sometimes\"", "sometimes"),
        ("forks = true", "forks"),
        ("", "forks"),
    ] {
        let err = Spec::from_toml_str(&mutated("forks = \"bounded\"", to)).unwrap_err();
        assert!(matches!(err, SpecError::Syntax(_)), "{to}: {err}");
        assert!(
            err.to_string().contains(name),
            "{to}: `{err}` does not name {name}"
        );
    }
    let err = Spec::from_toml_str(&mutated("max_child_seconds = 600", "")).unwrap_err();
    assert!(err.to_string().contains("max_child_seconds"), "{err}");
}

/// `governor.max_child_seconds` is accepted exactly from 1 s to a day.
#[test]
fn max_child_seconds_edges() {
    for (value, ok) in [(1, true), (86_400, true), (0, false), (86_401, false)] {
        let text = mutated(
            "max_child_seconds = 600",
            &format!("max_child_seconds = {value}"),
        );
        match Spec::from_toml_str(&text) {
            Ok(spec) => {
                assert!(ok, "{value} accepted");
                assert_eq!(spec.governor().max_child_seconds(), value);
            }
            Err(err) => {
                assert!(!ok, "{value} refused: {err}");
                assert_eq!(err.field(), Some("governor.max_child_seconds"), "{err}");
            }
        }
    }
}
