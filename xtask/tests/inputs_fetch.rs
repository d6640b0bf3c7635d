//! Fetch logic against a fake apt: cache hits never call apt, hashes are
//! checked on every use, stale pins stop with the versions and the re-pin
//! command, and `pins --update` follows the metapackage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use sha2::{Digest, Sha256};
use xtask::image::fetch::{fetch_deb, fetch_source, hex, updated_pins, Cache, FakeApt, TempDir};
use xtask::image::pins::{DebPin, Pins, SourcePin};

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn pin(ver: &str, bytes: &[u8]) -> DebPin {
    DebPin {
        package: "foo".into(),
        version: ver.into(),
        sha256: sha(bytes),
    }
}

fn apt_with_foo() -> FakeApt {
    let mut apt = FakeApt::default();
    apt.debs.insert(
        "foo".into(),
        vec![
            ("1.0-1".into(), b"deb one".to_vec(), String::new()),
            ("1.0-2".into(), b"deb two".to_vec(), String::new()),
        ],
    );
    apt
}

#[test]
fn second_fetch_is_a_cache_hit_without_apt() {
    let dir = TempDir::new("inputs-fetch").unwrap();
    let cache = Cache::new(dir.path());
    let mut apt = apt_with_foo();
    let p = pin("1.0-1", b"deb one");
    let got = fetch_deb(&p, &cache, &mut apt, "").unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b"deb one");
    assert_eq!(apt.calls, ["deb_candidates foo", "download_deb foo=1.0-1"]);
    let mut offline = FakeApt::default();
    assert_eq!(fetch_deb(&p, &cache, &mut offline, "").unwrap(), got);
    assert!(offline.calls.is_empty());
    // A corrupted cache entry is noticed and fetched again.
    std::fs::write(&got, b"tampered").unwrap();
    let again = fetch_deb(&p, &cache, &mut apt, "").unwrap();
    assert_eq!(std::fs::read(again).unwrap(), b"deb one");
}

#[test]
fn stale_pin_names_versions_and_the_repin_command() {
    let dir = TempDir::new("inputs-fetch").unwrap();
    let cache = Cache::new(dir.path());
    let err = fetch_deb(
        &pin("0.9-1", b"gone"),
        &cache,
        &mut apt_with_foo(),
        " (hint)",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pinned foo 0.9-1 is not available"), "{err}");
    assert!(err.contains("available: 1.0-2, 1.0-1) (hint)"), "{err}");
    assert!(err.contains("cargo xtask pins --update"), "{err}");
}

#[test]
fn a_different_file_under_the_pinned_version_is_refused() {
    let dir = TempDir::new("inputs-fetch").unwrap();
    let cache = Cache::new(dir.path());
    let err = fetch_deb(
        &pin("1.0-1", b"what we pinned"),
        &cache,
        &mut apt_with_foo(),
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("refusing"), "{err}");
}

#[test]
fn source_fetch_keeps_only_the_verified_orig_tarball() {
    let dir = TempDir::new("inputs-fetch").unwrap();
    let cache = Cache::new(dir.path());
    let mut apt = FakeApt::default();
    apt.sources.insert(
        "valkey".into(),
        vec![(
            "9.1.2-1".into(),
            vec![
                ("valkey_9.1.2-1.dsc".into(), b"dsc".to_vec()),
                ("valkey_9.1.2.orig.tar.gz".into(), b"orig".to_vec()),
            ],
        )],
    );
    let mut p = SourcePin {
        package: "valkey".into(),
        version: "9.1.2-1".into(),
        upstream_version: "9.1.2".into(),
        orig_sha256: sha(b"orig"),
        upstream_tarball_sha256: None,
        suites: vec!["sid".into()],
    };
    let got = fetch_source(&p, &cache, &mut apt).unwrap();
    assert!(got.ends_with("valkey_9.1.2.orig.tar.gz"));
    assert_eq!(std::fs::read(&got).unwrap(), b"orig");
    // Content-addressed: a hit needs only the hash. A stale pin shows on a miss.
    p.version = "9.1.1-1".into();
    let empty = TempDir::new("inputs-fetch").unwrap();
    let err = fetch_source(&p, &Cache::new(empty.path()), &mut apt)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pinned source valkey 9.1.1-1 is not in suites sid")
            && err.contains("available: 9.1.2-1"),
        "{err}"
    );
}

#[test]
fn update_follows_the_metapackage_and_newest_versions() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../image/sources.toml"
    ))
    .unwrap();
    let cur = Pins::from_toml_str(&text).unwrap();
    let mut apt = FakeApt::default();
    apt.debs.insert(
        "linux-image-cloud-amd64".into(),
        vec![
            (
                "6.1.192-2".into(),
                b"m1".to_vec(),
                "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)".into(),
            ),
            (
                "6.1.200-1".into(),
                b"m2".to_vec(),
                "linux-image-6.1.0-60-cloud-amd64 (= 6.1.200-1)".into(),
            ),
        ],
    );
    apt.debs.insert(
        "linux-image-6.1.0-60-cloud-amd64".into(),
        vec![("6.1.200-1".into(), b"kernel".to_vec(), String::new())],
    );
    apt.debs.insert(
        "systemd-boot-efi".into(),
        vec![
            ("252.39-1~deb12u2".into(), b"s1".to_vec(), String::new()),
            ("252.40-1~deb12u1".into(), b"s2".to_vec(), String::new()),
        ],
    );
    apt.sources.insert(
        "valkey".into(),
        vec![
            (
                "9.1.2-1".into(),
                vec![("valkey_9.1.2.orig.tar.gz".into(), b"a".to_vec())],
            ),
            (
                "9.1.3+dfsg-1".into(),
                vec![("valkey_9.1.3+dfsg.orig.tar.xz".into(), b"b".to_vec())],
            ),
        ],
    );
    let next = updated_pins(&cur, &mut apt).unwrap();
    assert_eq!(next.kernel.package, "linux-image-6.1.0-60-cloud-amd64");
    assert_eq!(
        (next.kernel.version.as_str(), next.kernel.sha256.clone()),
        ("6.1.200-1", sha(b"kernel"))
    );
    assert_eq!(next.kernel.modules, cur.kernel.modules);
    assert_eq!(
        (next.stub.version.as_str(), next.stub.sha256.clone()),
        ("252.40-1~deb12u1", sha(b"s2"))
    );
    assert_eq!(next.valkey.version, "9.1.3+dfsg-1");
    assert_eq!(next.valkey.upstream_version, "9.1.3");
    assert_eq!(next.valkey.orig_sha256, sha(b"b"));
    // The recorded upstream hash belonged to 9.1.2: it must not be carried over.
    assert_eq!(next.valkey.upstream_tarball_sha256, None);
    let rendered = next.render();
    assert!(
        rendered.contains("Not compared with the upstream release tarball"),
        "{rendered}"
    );
    assert_eq!(Pins::from_toml_str(&rendered).unwrap(), next);
    let diff = xtask::image::pins::line_diff(&text, &rendered);
    assert!(
        diff.contains("-version = \"6.1.192-2\"\n") && diff.contains("+version = \"6.1.200-1\"\n"),
        "{diff}"
    );
}
