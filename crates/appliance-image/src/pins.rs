//! `image/sources.toml`: the pinned inputs of the image, each with a version and
//! the SHA-256 of the exact file that is used.
//!
//! Parsing is strict (unknown fields are errors, hashes must be 64 lowercase hex
//! digits) because a typo in a pin must never silently fall back to "whatever the
//! mirror has today". The file is also *rendered* by [`Pins::render`]:
//! `cargo xtask pins --update` rewrites it from the struct, so the comments live
//! in the renderer and a test keeps the committed file equal to
//! `render(parse(file))`.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::{bail, Context, Result};
use serde::Deserialize;

/// Location of the pin file, relative to the workspace root.
pub const SOURCES_TOML: &str = "image/sources.toml";

/// The one schema version this code understands. 2: the kernel names its
/// suites, and the runtime libraries of the image's dynamic binaries are
/// pinned (`[libc]`, `[libgcc]`).
const SCHEMA: u32 = 2;

/// All pinned inputs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// File format version; must be 1.
    pub schema: u32,
    /// The Debian cloud kernel image package.
    pub kernel: KernelPin,
    /// The C library the server runs with (`libc6`, amd64).
    pub libc: LibPin,
    /// GCC's runtime library (`libgcc-s1`, amd64): `/init` and the
    /// stream-guard module, built by Rust for the GNU target, need
    /// `libgcc_s.so.1` for unwinding.
    pub libgcc: LibPin,
    /// Debian's `systemd-boot-efi` (for `linuxx64.efi.stub`).
    pub stub: DebPin,
    /// The Valkey source.
    pub valkey: SourcePin,
}

/// A binary `.deb` package fetched with `apt-get download`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebPin {
    /// Binary package name.
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// SHA-256 of the `.deb` file.
    pub sha256: String,
}

/// The kernel package, the metapackage it was resolved from, and the module subset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPin {
    /// The metapackage `pins --update` follows (e.g. `linux-image-cloud-amd64`).
    pub metapackage: String,
    /// The concrete image package (e.g. `linux-image-6.1.0-56-cloud-amd64`).
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// SHA-256 of the `.deb` file.
    pub sha256: String,
    /// The Debian suites searched for it (binary entries on the host's
    /// mirrors), e.g. `["trixie", "trixie-security"]`.
    pub suites: Vec<String>,
    /// Modules the image loads (their dependencies are added at build time).
    pub modules: Vec<String>,
}

impl KernelPin {
    /// The kernel package as a plain [`DebPin`].
    #[must_use]
    pub fn deb(&self) -> DebPin {
        DebPin {
            package: self.package.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// A runtime library package of a Debian release (the C library, GCC's
/// runtime) whose files go into the image instead of the build host's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibPin {
    /// Binary package name (`libc6`, `libgcc-s1`).
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// SHA-256 of the amd64 `.deb` file.
    pub sha256: String,
    /// The Debian suites searched for it (binary entries on the host's mirrors).
    pub suites: Vec<String>,
}

impl LibPin {
    /// The package as a plain [`DebPin`].
    #[must_use]
    pub fn deb(&self) -> DebPin {
        DebPin {
            package: self.package.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// A Debian source package of which only the upstream (`.orig`) tarball is used.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePin {
    /// Source package name.
    pub package: String,
    /// Exact Debian source version (e.g. `9.1.2-1`).
    pub version: String,
    /// The upstream version the tarball contains.
    pub upstream_version: String,
    /// SHA-256 of Debian's `.orig.tar.*` file.
    pub orig_sha256: String,
    /// SHA-256 of the upstream release tarball of `upstream_version`, when a
    /// human recorded it; equal to `orig_sha256` when Debian did not repack.
    #[serde(default)]
    pub upstream_tarball_sha256: Option<String>,
    /// Suites searched, in order, for the pinned version.
    pub suites: Vec<String>,
}

impl Pins {
    /// Parses and validates the text of `sources.toml`.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let pins: Self = toml::from_str(text).context("sources.toml: invalid TOML or schema")?;
        pins.validate()?;
        Ok(pins)
    }

    /// Reads and validates a `sources.toml` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_toml_str(&text).with_context(|| format!("in {}", path.display()))
    }

    fn validate(&self) -> Result<()> {
        if self.schema != SCHEMA {
            bail!(
                "sources.toml: schema {} is not supported (expected {SCHEMA})",
                self.schema
            );
        }
        let k = &self.kernel;
        check_name("kernel.metapackage", &k.metapackage)?;
        check_name("kernel.package", &k.package)?;
        check_version("kernel.version", &k.version)?;
        check_sha256("kernel.sha256", &k.sha256)?;
        check_suites("kernel.suites", &k.suites)?;
        if k.modules.is_empty() {
            bail!("sources.toml: kernel.modules is empty");
        }
        for m in &k.modules {
            if m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!("sources.toml: kernel.modules: `{m}` is not a module name");
            }
        }
        for (table, l) in [("libc", &self.libc), ("libgcc", &self.libgcc)] {
            check_name(&format!("{table}.package"), &l.package)?;
            check_version(&format!("{table}.version"), &l.version)?;
            check_sha256(&format!("{table}.sha256"), &l.sha256)?;
            check_suites(&format!("{table}.suites"), &l.suites)?;
        }
        check_name("stub.package", &self.stub.package)?;
        check_version("stub.version", &self.stub.version)?;
        check_sha256("stub.sha256", &self.stub.sha256)?;
        let v = &self.valkey;
        check_name("valkey.package", &v.package)?;
        check_version("valkey.version", &v.version)?;
        check_version("valkey.upstream_version", &v.upstream_version)?;
        if !v.version.starts_with(&v.upstream_version) {
            bail!(
                "sources.toml: valkey.version `{}` does not contain upstream_version `{}`",
                v.version,
                v.upstream_version
            );
        }
        check_sha256("valkey.orig_sha256", &v.orig_sha256)?;
        if let Some(up) = &v.upstream_tarball_sha256 {
            check_sha256("valkey.upstream_tarball_sha256", up)?;
        }
        check_suites("valkey.suites", &v.suites)?;
        Ok(())
    }

    /// Renders the file `cargo xtask pins --update` writes.
    #[must_use]
    pub fn render(&self) -> String {
        let mut o = String::new();
        let k = &self.kernel;
        let l = &self.libc;
        let s = &self.stub;
        let v = &self.valkey;
        let _ = writeln!(
            o,
            "# Pinned inputs of `cargo xtask image`. Every file is checked against its\n\
             # SHA-256 on every use (cache hit or download). Fetched only through the\n\
             # host's apt (the mirror already configured on the build machine; no host\n\
             # name is written here). Re-pin with `cargo xtask pins --update`, which\n\
             # rewrites this file and prints the diff.\n\
             schema = {SCHEMA}\n\
             \n\
             # Debian's cloud kernel: the image package `metapackage` depended on when\n\
             # pinned, from `suites` (a temporary apt configuration of binary entries\n\
             # on the host's mirror URIs, checked with the host's Debian archive\n\
             # keyring, amd64 only). `modules` are loaded at boot; their `depends=`\n\
             # closure is added; a name built into this kernel is reported, not loaded.\n\
             [kernel]\n\
             metapackage = {}\n\
             package = {}\n\
             version = {}\n\
             sha256 = {}\n\
             suites = {}",
            quote(&k.metapackage),
            quote(&k.package),
            quote(&k.version),
            quote(&k.sha256),
            quote_list(&k.suites),
        );
        let _ = writeln!(o, "modules = [");
        for m in &k.modules {
            let _ = writeln!(o, "    {},", quote(m));
        }
        let _ = writeln!(o, "]");
        let _ = writeln!(
            o,
            "\n\
             # The C library (amd64), fetched like the kernel: the loader, `libc.so.6`\n\
             # and `libm.so.6`, as the image's binaries need them, come from this\n\
             # package, never from the build host.\n\
             [libc]\n\
             package = {}\n\
             version = {}\n\
             sha256 = {}\n\
             suites = {}",
            quote(&l.package),
            quote(&l.version),
            quote(&l.sha256),
            quote_list(&l.suites),
        );
        let g = &self.libgcc;
        let _ = writeln!(
            o,
            "\n\
             # GCC's runtime (amd64), fetched like the kernel: `libgcc_s.so.1`, which\n\
             # `/init` and the stream-guard module (Rust, GNU target) need.\n\
             [libgcc]\n\
             package = {}\n\
             version = {}\n\
             sha256 = {}\n\
             suites = {}",
            quote(&g.package),
            quote(&g.version),
            quote(&g.sha256),
            quote_list(&g.suites),
        );
        let _ = writeln!(
            o,
            "\n\
             # systemd-boot's UKI stub, `usr/lib/systemd/boot/efi/linuxx64.efi.stub`,\n\
             # from the host's own apt suites.\n\
             [stub]\n\
             package = {}\n\
             version = {}\n\
             sha256 = {}",
            quote(&s.package),
            quote(&s.version),
            quote(&s.sha256),
        );
        let (identity, upstream_line) = match &v.upstream_tarball_sha256 {
            Some(up) if *up == v.orig_sha256 => (
                "# Debian's orig tarball is byte-identical to the upstream release tarball\n\
                 # (not repacked): `orig_sha256` equals `upstream_tarball_sha256`.",
                format!("upstream_tarball_sha256 = {}\n", quote(up)),
            ),
            Some(up) => (
                "# Debian REPACKED the upstream release tarball: `orig_sha256` is the hash\n\
                 # of Debian's orig tarball, which differs from `upstream_tarball_sha256`.",
                format!("upstream_tarball_sha256 = {}\n", quote(up)),
            ),
            None => (
                "# Not compared with the upstream release tarball: `orig_sha256` is the hash\n\
                 # of Debian's orig tarball only.",
                String::new(),
            ),
        };
        let _ = writeln!(
            o,
            "\n\
             # Valkey, built with `make BUILD_LUA=no MALLOC=libc`. Fetched with\n\
             # `apt-get source --download-only` from the suites below; only the orig\n\
             # tarball is used (no Debian patches).\n\
             {identity}\n\
             [valkey]\n\
             package = {}\n\
             version = {}\n\
             upstream_version = {}\n\
             orig_sha256 = {}\n\
             {upstream_line}\
             suites = {}",
            quote(&v.package),
            quote(&v.version),
            quote(&v.upstream_version),
            quote(&v.orig_sha256),
            quote_list(&v.suites),
        );
        o
    }
}

fn quote(s: &str) -> String {
    // Validated values contain no quote or backslash; toml's own escaping keeps
    // the renderer total for unvalidated input anyway.
    toml::Value::String(s.to_owned()).to_string()
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|x| quote(x)).collect();
    format!("[{}]", quoted.join(", "))
}

fn check_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !ok {
        bail!("sources.toml: {field} = `{v}` is not a Debian package or suite name");
    }
    Ok(())
}

fn check_suites(field: &str, suites: &[String]) -> Result<()> {
    if suites.is_empty() {
        bail!("sources.toml: {field} is empty");
    }
    for s in suites {
        check_name(field, s)?;
    }
    Ok(())
}

fn check_version(field: &str, v: &str) -> Result<()> {
    let ok = v.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b));
    if !ok {
        bail!("sources.toml: {field} = `{v}` is not a Debian version");
    }
    Ok(())
}

fn check_sha256(field: &str, v: &str) -> Result<()> {
    if !is_sha256_hex(v) {
        bail!("sources.toml: {field} must be 64 lowercase hex digits, got `{v}`");
    }
    Ok(())
}

/// True for exactly 64 lowercase hexadecimal digits.
#[must_use]
pub fn is_sha256_hex(v: &str) -> bool {
    v.len() == 64
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Compares two Debian version strings the way `dpkg --compare-versions` does
/// (epoch, then upstream and revision with `~` sorting before everything).
#[must_use]
pub fn compare_debian_versions(a: &str, b: &str) -> Ordering {
    let (ea, ra) = split_epoch(a);
    let (eb, rb) = split_epoch(b);
    ea.cmp(&eb).then_with(|| {
        let (ua, da) = split_revision(ra);
        let (ub, db) = split_revision(rb);
        compare_part(ua, ub).then_with(|| compare_part(da, db))
    })
}

fn split_epoch(v: &str) -> (u64, &str) {
    match v.split_once(':') {
        Some((e, rest)) => (e.parse().unwrap_or(0), rest),
        None => (0, v),
    }
}

fn split_revision(v: &str) -> (&str, &str) {
    match v.rsplit_once('-') {
        Some((u, r)) => (u, r),
        None => (v, ""),
    }
}

fn char_order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix, compared with dpkg's character order.
        let na = a.iter().take_while(|c| !c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| !c.is_ascii_digit()).count();
        let (pa, ra) = a.split_at(na);
        let (pb, rb) = b.split_at(nb);
        for i in 0..na.max(nb) {
            let ord = char_order(pa.get(i).copied()).cmp(&char_order(pb.get(i).copied()));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        // Digit run, compared numerically (leading zeros ignored).
        let da = ra.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = rb.iter().take_while(|c| c.is_ascii_digit()).count();
        let (ga, ra) = ra.split_at(da);
        let (gb, rb) = rb.split_at(db);
        let ga = trim_zeros(ga);
        let gb = trim_zeros(gb);
        let ord = ga.len().cmp(&gb.len()).then_with(|| ga.cmp(gb));
        if ord != Ordering::Equal {
            return ord;
        }
        a = ra;
        b = rb;
    }
    Ordering::Equal
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    d.get(n..).unwrap_or_default()
}

/// A line diff of two texts (`-` removed, `+` added, two-space context),
/// printed by `pins --update`.
#[must_use]
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table; the files are tens of lines.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            let v = if a.get(i) == b.get(j) {
                lcs.get(i + 1)
                    .and_then(|r| r.get(j + 1))
                    .copied()
                    .unwrap_or(0)
                    + 1
            } else {
                let down = lcs.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                let right = lcs.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), _) if j >= b.len() || at(i + 1, j) >= at(i, j + 1) => {
                let _ = writeln!(out, "-{x}");
                i += 1;
            }
            (_, Some(y)) => {
                let _ = writeln!(out, "+{y}");
                j += 1;
            }
            (Some(x), None) => {
                let _ = writeln!(out, "-{x}");
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_version_order() {
        let table = [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0-1", "1.0-2", Ordering::Less),
            ("1.0~rc1-1", "1.0-1", Ordering::Less),
            ("9.1.2-1", "9.1.10-1", Ordering::Less),
            ("1:1.0", "2.0", Ordering::Greater),
            ("6.1.192-2", "6.1.176-1", Ordering::Greater),
            ("252.39-1~deb12u2", "252.38-1~deb12u1", Ordering::Greater),
            ("252.39-1~deb12u2", "252.39-1", Ordering::Less),
            ("1.0+dfsg-1", "1.0-1", Ordering::Greater),
            ("1.0a", "1.0+", Ordering::Less),
            ("01.0", "1.0", Ordering::Equal),
        ];
        for (a, b, want) in table {
            assert_eq!(compare_debian_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_debian_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn diff_marks_changed_lines() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(d, "-b\n+B\n+d\n");
        assert_eq!(line_diff("x\n", "x\n"), "");
    }
}
