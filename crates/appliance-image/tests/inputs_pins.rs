//! `image/sources.toml`: the committed pins parse, and the file is exactly what
//! `cargo xtask pins --update` would render from them (so an update's diff only
//! shows real changes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use appliance_image::pins::Pins;

fn committed() -> (String, Pins) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/sources.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let pins = Pins::from_toml_str(&text).unwrap();
    (text, pins)
}

#[test]
fn committed_pins_are_rendered_canonically() {
    let (text, pins) = committed();
    // Like `INSTA_UPDATE=always`: accept the canonical text, then read the diff.
    if std::env::var_os("PINS_WRITE").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/sources.toml");
        std::fs::write(path, pins.render()).unwrap();
        return;
    }
    assert_eq!(
        text,
        pins.render(),
        "run once with PINS_WRITE=1 to write the canonical text"
    );
    assert_eq!(Pins::from_toml_str(&pins.render()).unwrap(), pins);
}

#[test]
fn committed_pins_match_the_design() {
    let (_, pins) = committed();
    assert_eq!(pins.valkey.upstream_version, "9.1.2");
    assert_eq!(
        pins.valkey.upstream_tarball_sha256.as_deref(),
        Some("8e8557da7426a51b4e0fb514a65ef6241dc7c85cb408243af389070abf379cec")
    );
    assert_eq!(pins.valkey.suites, ["sid", "testing", "stable-backports"]);
    // Debian 13's cloud kernel (6.12 LTS) and C library, from one release.
    assert!(
        pins.kernel.package.starts_with("linux-image-6.12.")
            && pins.kernel.package.ends_with("+deb13-cloud-amd64"),
        "{}",
        pins.kernel.package
    );
    assert_eq!(pins.kernel.suites, ["trixie", "trixie-security"]);
    assert_eq!(pins.libc.package, "libc6");
    assert!(
        pins.libc.version.contains("+deb13u"),
        "{}",
        pins.libc.version
    );
    assert_eq!(pins.libc.suites, pins.kernel.suites);
    assert_eq!(pins.libgcc.package, "libgcc-s1");
    assert_eq!(pins.libgcc.suites, pins.kernel.suites);
}

#[test]
fn invalid_pins_are_rejected_with_a_reason() {
    let (text, _) = committed();
    let table = [
        ("schema = 2", "schema = 1", "schema 1 is not supported"),
        (
            "[libc]\n",
            "[libc]\narch = \"i386\"\n",
            "unknown field `arch`",
        ),
        (
            "suites = [\"trixie\", \"trixie-security\"]\nmodules",
            "suites = []\nmodules",
            "kernel.suites is empty",
        ),
        (
            "package = \"libc6\"",
            "package = \"libc6:amd64\"",
            "libc.package = `libc6:amd64` is not a Debian package or suite name",
        ),
        ("[stub]\n", "[stub]\nurl = \"x\"\n", "unknown field `url`"),
        (
            "sha256 = \"8f2b",
            "sha256 = \"8F2B",
            "64 lowercase hex digits",
        ),
        (
            "version = \"9.1.2-1\"",
            "version = \"9.1.3-1\"",
            "does not contain upstream_version",
        ),
        (
            "version = \"6.12.118-1\"",
            "version = \"latest\"",
            "is not a Debian version",
        ),
        ("    \"gve\",\n", "    \"gve x\",\n", "is not a module name"),
        (
            "suites = [\"sid\", \"testing\", \"stable-backports\"]",
            "suites = []",
            "valkey.suites is empty",
        ),
        (
            "package = \"valkey\"",
            "package = \"Valkey\"",
            "not a Debian package or suite name",
        ),
    ];
    for (from, to, want) in table {
        assert!(text.contains(from), "fixture lacks `{from}`");
        let bad = text.replacen(from, to, 1);
        let err = format!("{:#}", Pins::from_toml_str(&bad).unwrap_err());
        assert!(err.contains(want), "`{to}`: got `{err}`, want `{want}`");
    }
}
