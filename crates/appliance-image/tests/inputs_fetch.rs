//! Fetch logic against a fake apt: cache hits never call apt, hashes are
//! checked on every use, stale pins stop with the versions and the re-pin
//! command, and `pins --update` follows the metapackage. The kernel and the C
//! library are looked up in their release's suites only, never the host's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use appliance_image::fetch::{
    fetch_deb, fetch_kernel, fetch_lib, fetch_source, hex, updated_pins, Cache, FakeApt,
    FakeArchives,
};
use appliance_image::pins::{DebPin, Pins, SourcePin};
use sha2::{Digest, Sha256};

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
    let dir = tempfile::Builder::new()
        .prefix("inputs-fetch-")
        .tempdir()
        .unwrap();
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
    let dir = tempfile::Builder::new()
        .prefix("inputs-fetch-")
        .tempdir()
        .unwrap();
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
    let dir = tempfile::Builder::new()
        .prefix("inputs-fetch-")
        .tempdir()
        .unwrap();
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
    let dir = tempfile::Builder::new()
        .prefix("inputs-fetch-")
        .tempdir()
        .unwrap();
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
    let empty = tempfile::Builder::new()
        .prefix("inputs-fetch-")
        .tempdir()
        .unwrap();
    let err = fetch_source(&p, &Cache::new(empty.path()), &mut apt)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pinned source valkey 9.1.1-1 is not in suites sid")
            && err.contains("available: 9.1.2-1"),
        "{err}"
    );
}

fn committed_pins() -> (String, Pins) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../image/sources.toml"
    ))
    .unwrap();
    let pins = Pins::from_toml_str(&text).unwrap();
    (text, pins)
}

/// What the committed pins' release (trixie, trixie-security) and host
/// (bookworm) suites offer after a kernel, libc, stub and Valkey update.
fn archives_after_updates(cur: &Pins) -> FakeArchives {
    let mut release = FakeApt::default();
    release.debs.insert(
        "linux-image-cloud-amd64".into(),
        vec![
            (
                "6.12.118-1".into(),
                b"m1".to_vec(),
                "linux-image-6.12.118+deb13-cloud-amd64 (= 6.12.118-1)".into(),
            ),
            (
                "6.12.120-1".into(),
                b"m2".to_vec(),
                "linux-image-6.12.120+deb13-cloud-amd64 (= 6.12.120-1)".into(),
            ),
        ],
    );
    release.debs.insert(
        "linux-image-6.12.120+deb13-cloud-amd64".into(),
        vec![("6.12.120-1".into(), b"kernel".to_vec(), String::new())],
    );
    release.debs.insert(
        "libc6".into(),
        vec![
            ("2.41-12+deb13u5".into(), b"l1".to_vec(), String::new()),
            ("2.41-12+deb13u6".into(), b"l2".to_vec(), String::new()),
        ],
    );
    release.debs.insert(
        "libgcc-s1".into(),
        vec![("14.2.0-20".into(), b"g2".to_vec(), String::new())],
    );
    let mut host = FakeApt::default();
    // The host's own (older) C library and kernels are no candidates.
    host.debs.insert(
        "libc6".into(),
        vec![(
            "2.36-9+deb12u14".into(),
            b"host libc".to_vec(),
            String::new(),
        )],
    );
    host.debs.insert(
        "linux-image-cloud-amd64".into(),
        vec![(
            "6.1.200-1".into(),
            b"old meta".to_vec(),
            "linux-image-6.1.0-60-cloud-amd64 (= 6.1.200-1)".into(),
        )],
    );
    host.debs.insert(
        "systemd-boot-efi".into(),
        vec![
            ("252.39-1~deb12u2".into(), b"s1".to_vec(), String::new()),
            ("252.40-1~deb12u1".into(), b"s2".to_vec(), String::new()),
        ],
    );
    host.sources.insert(
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
    let mut archives = FakeArchives {
        host,
        ..FakeArchives::default()
    };
    assert_eq!(cur.kernel.suites, cur.libc.suites);
    assert_eq!(cur.kernel.suites, cur.libgcc.suites);
    archives
        .releases
        .insert(cur.kernel.suites.join(" "), release);
    archives
}

#[test]
fn update_follows_the_metapackage_and_newest_versions() {
    let (text, cur) = committed_pins();
    let mut archives = archives_after_updates(&cur);
    let next = updated_pins(&cur, &mut archives).unwrap();
    assert_eq!(
        next.kernel.package,
        "linux-image-6.12.120+deb13-cloud-amd64"
    );
    assert_eq!(
        (next.kernel.version.as_str(), next.kernel.sha256.clone()),
        ("6.12.120-1", sha(b"kernel"))
    );
    assert_eq!(next.kernel.modules, cur.kernel.modules);
    assert_eq!(next.kernel.suites, cur.kernel.suites);
    assert_eq!(
        (next.libc.version.as_str(), next.libc.sha256.clone()),
        ("2.41-12+deb13u6", sha(b"l2"))
    );
    assert_eq!(
        (next.libgcc.version.as_str(), next.libgcc.sha256.clone()),
        ("14.2.0-20", sha(b"g2"))
    );
    assert_eq!(
        (next.stub.version.as_str(), next.stub.sha256.clone()),
        ("252.40-1~deb12u1", sha(b"s2"))
    );
    assert_eq!(next.valkey.version, "9.1.3+dfsg-1");
    assert_eq!(next.valkey.upstream_version, "9.1.3");
    assert_eq!(next.valkey.orig_sha256, sha(b"b"));
    // The recorded upstream hash belonged to 9.1.2: it must not be carried over.
    assert_eq!(next.valkey.upstream_tarball_sha256, None);
    // The kernel and libc came from the release, the stub from the host.
    assert!(
        !archives
            .host
            .calls
            .iter()
            .any(|c| c.contains("linux-image") || c.contains("libc6") || c.contains("libgcc")),
        "{:?}",
        archives.host.calls
    );
    let rendered = next.render();
    assert!(
        rendered.contains("Not compared with the upstream release tarball"),
        "{rendered}"
    );
    assert_eq!(Pins::from_toml_str(&rendered).unwrap(), next);
    let diff = appliance_image::pins::line_diff(&text, &rendered);
    for line in [
        "-version = \"6.12.118-1\"\n",
        "+version = \"6.12.120-1\"\n",
        "-version = \"2.41-12+deb13u5\"\n",
        "+version = \"2.41-12+deb13u6\"\n",
    ] {
        assert!(diff.contains(line), "{line} missing from\n{diff}");
    }
}

#[test]
fn stale_kernel_and_libc_pins_name_the_release_versions() {
    let (_, mut cur) = committed_pins();
    cur.kernel.version = "6.12.100-1".into();
    cur.libc.version = "2.41-11".into();
    let dir = tempfile::Builder::new()
        .prefix("inputs-fetch-")
        .tempdir()
        .unwrap();
    let cache = Cache::new(dir.path());
    let mut archives = archives_after_updates(&cur);
    let err = format!(
        "{:#}",
        fetch_kernel(&cur, &cache, &mut archives).unwrap_err()
    );
    assert!(
        err.contains("`linux-image-cloud-amd64` now depends on linux-image-6.12.120+deb13-cloud-amd64 6.12.120-1")
            && err.contains("pinned linux-image-6.12.118+deb13-cloud-amd64 6.12.100-1 is not available")
            && err.contains("cargo xtask pins --update"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        fetch_lib(&cur.libc, &cache, &mut archives).unwrap_err()
    );
    assert!(
        err.contains("pinned libc6 2.41-11 is not available")
            && err.contains("(available: 2.41-12+deb13u6, 2.41-12+deb13u5)")
            && err.contains("cargo xtask pins --update"),
        "{err}"
    );
    // Nothing was asked of the host's suites.
    assert!(archives.host.calls.is_empty(), "{:?}", archives.host.calls);
}
