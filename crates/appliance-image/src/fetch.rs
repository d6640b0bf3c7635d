//! Fetching the pinned inputs: from the local cache, or through the host's apt.
//!
//! Every file is checked against its pinned SHA-256 on every use, cache hit or
//! download. A cache hit never starts apt (the second run works offline). On a
//! miss, apt runs with a *temporary* configuration (its own source list, lists
//! and cache directories, passed with `-o`). Two kinds exist:
//!
//! - the host's own suites ([`HostApt::host`]): the host's binary `deb`
//!   entries copied, plus one `deb-src` entry for the Valkey suites reusing the
//!   mirror URI and key the host already has (the UKI stub, the Valkey source);
//! - a named release ([`HostApt::release`], e.g. `trixie trixie-security`):
//!   binary entries for those suites only, amd64 only, on the host's archive
//!   and security mirror URIs with the host's archive keyring, and an empty
//!   package status, so apt offers exactly what those suites hold (the kernel,
//!   the C library).
//!
//! Nothing under `/etc/apt` or `/var/lib/apt` is written, and no mirror host
//! name is written into the repository.
//!
//! apt sits behind [`PackageSource`] (one configuration) and [`Archives`]
//! (which configuration a pin is looked up in), so the stale-pin and
//! hash-mismatch paths are tested with [`FakeApt`], without a mirror.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{bail, err, Context, Result};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::pins::{compare_debian_versions, DebPin, LibPin, Pins, SourcePin};

/// Default cache directory, relative to the workspace root.
pub const DEFAULT_CACHE: &str = "target/appliance-cache";

/// Where the UKI stub lives inside the `systemd-boot-efi` package.
pub const STUB_PATH: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// The local cache of fetched and derived inputs. Entries are keyed by content
/// hash, written to a temporary name and renamed into place, so an interrupted
/// run never leaves a half-written entry behind.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created on first write).
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A sub-directory of the cache, created if missing.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        Ok(d)
    }
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&h.finalize()))
}

/// Lowercase hex of bytes.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Fails unless `path` hashes to `want`.
pub fn verify_sha256(path: &Path, want: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if got != want {
        bail!("{}: sha256 is {got}, pinned {want}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// deb822 (apt's `.sources` files and apt-cache output), pure.

/// One deb822 paragraph: fields in file order. A multi-line value keeps its
/// continuation lines verbatim (leading space included) after a `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stanza {
    /// `(name, value)` in order.
    pub fields: Vec<(String, String)>,
}

impl Stanza {
    /// The value of a field (names are case-insensitive).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A whitespace-separated list field.
    #[must_use]
    pub fn words(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    }
}

/// Splits deb822 text into paragraphs. Comment lines are skipped; a line that is
/// neither `Name: value`, a continuation nor blank is ignored (apt-cache output
/// may carry notes).
#[must_use]
pub fn parse_deb822(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with('#') {
        } else if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.fields.last_mut() {
                v.push('\n');
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    out
}

/// Renders paragraphs back to deb822 text.
#[must_use]
pub fn render_deb822(stanzas: &[Stanza]) -> String {
    let mut o = String::new();
    for s in stanzas {
        for (k, v) in &s.fields {
            if v.is_empty() || v.starts_with('\n') {
                let _ = writeln!(o, "{k}:{v}");
            } else {
                let _ = writeln!(o, "{k}: {v}");
            }
        }
        o.push('\n');
    }
    o
}

/// Converts one-line `sources.list` entries to deb822 paragraphs.
#[must_use]
pub fn parse_one_line_sources(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = line;
        let Some((ty, r)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        if ty != "deb" && ty != "deb-src" {
            continue;
        }
        rest = r.trim_start();
        let mut fields = vec![("Types".to_owned(), ty.to_owned())];
        if let Some(r) = rest.strip_prefix('[') {
            let Some((opts, r)) = r.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some((k, v)) = opt.split_once('=') {
                    let key = match k {
                        "signed-by" => "Signed-By",
                        "arch" => "Architectures",
                        "trusted" => "Trusted",
                        _ => continue,
                    };
                    fields.push((key.to_owned(), v.replace(',', " ")));
                }
            }
            rest = r.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let comps: Vec<&str> = words.collect();
        fields.push(("URIs".to_owned(), uri.to_owned()));
        fields.push(("Suites".to_owned(), suite.to_owned()));
        if !comps.is_empty() {
            fields.push(("Components".to_owned(), comps.join(" ")));
        }
        out.push(Stanza { fields });
    }
    out
}

/// The host's enabled binary (`deb`) sources, re-typed as `deb` only.
#[must_use]
pub fn binary_sources(all: &[Stanza]) -> Vec<Stanza> {
    all.iter()
        .filter(|s| s.words("Types").iter().any(|t| t == "deb"))
        .filter(|s| {
            !s.get("Enabled")
                .is_some_and(|e| e.eq_ignore_ascii_case("no"))
        })
        .map(|s| Stanza {
            fields: s
                .fields
                .iter()
                .map(|(k, v)| {
                    if k.eq_ignore_ascii_case("Types") {
                        (k.clone(), "deb".to_owned())
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect(),
        })
        .collect()
}

/// The host's main archive entry (the first binary source with a suite that is
/// neither a `-security` suite nor a path), or its security entry (the first
/// with a `-security` suite).
fn host_archive_entry(binary: &[Stanza], security: bool) -> Option<&Stanza> {
    binary.iter().find(|s| {
        s.words("Suites")
            .iter()
            .any(|x| x.ends_with("-security") == security && !x.contains('/'))
    })
}

fn first_uri(entry: &Stanza) -> Result<String> {
    entry
        .words("URIs")
        .into_iter()
        .next()
        .ok_or_else(|| err!("host apt entry without URIs"))
}

/// A `deb-src` paragraph for `suites` that reuses the URI and key of the host's
/// main archive entry: the first binary source with a suite that is not a
/// `-security` suite.
pub fn source_entry_from_host(binary: &[Stanza], suites: &[String]) -> Result<Stanza> {
    let main = host_archive_entry(binary, false)
        .ok_or_else(|| err!("no Debian archive entry in the host's apt sources"))?;
    let mut fields = vec![
        ("Types".to_owned(), "deb-src".to_owned()),
        ("URIs".to_owned(), first_uri(main)?),
        ("Suites".to_owned(), suites.join(" ")),
        ("Components".to_owned(), "main".to_owned()),
    ];
    if let Some(key) = main.get("Signed-By") {
        fields.push(("Signed-By".to_owned(), key.to_owned()));
    }
    Ok(Stanza { fields })
}

/// Debian's archive keyring, used for a release entry when the host's entry
/// names no `Signed-By` (apt then trusts its global keyrings, which the
/// temporary configuration must not widen).
pub const DEBIAN_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The only architecture the image runs.
pub const ARCH: &str = "amd64";

/// Binary `deb` paragraphs for a release's `suites`: a `-security` suite on the
/// URI of the host's security entry, every other suite on the URI of its main
/// archive entry; each with that entry's `Signed-By` (or
/// [`DEBIAN_ARCHIVE_KEYRING`]), component `main`, [`ARCH`] only. One
/// paragraph per URI, suites in the order given.
pub fn release_entries(binary: &[Stanza], suites: &[String]) -> Result<Vec<Stanza>> {
    let mut out: Vec<Stanza> = Vec::new();
    for suite in suites {
        let security = suite.ends_with("-security");
        let host = host_archive_entry(binary, security).ok_or_else(|| {
            err!(
                "suite {suite}: the host's apt sources have no {} entry to take the mirror URI from",
                if security { "-security" } else { "Debian archive" }
            )
        })?;
        let uri = first_uri(host)?;
        let key = host.get("Signed-By").unwrap_or(DEBIAN_ARCHIVE_KEYRING);
        if let Some(entry) = out
            .iter_mut()
            .find(|e| e.get("URIs") == Some(uri.as_str()) && e.get("Signed-By") == Some(key))
        {
            if let Some((_, v)) = entry.fields.iter_mut().find(|(k, _)| k == "Suites") {
                v.push(' ');
                v.push_str(suite);
            }
            continue;
        }
        out.push(Stanza {
            fields: vec![
                ("Types".to_owned(), "deb".to_owned()),
                ("URIs".to_owned(), uri),
                ("Suites".to_owned(), suite.clone()),
                ("Components".to_owned(), "main".to_owned()),
                ("Architectures".to_owned(), ARCH.to_owned()),
                ("Signed-By".to_owned(), key.to_owned()),
            ],
        });
    }
    if out.is_empty() {
        bail!("no suites given");
    }
    Ok(out)
}

/// Reads the host's apt sources (`/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.{list,sources}`, the files apt itself reads).
pub fn host_sources() -> Result<Vec<Stanza>> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        out.extend(parse_one_line_sources(&text));
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir("/etc/apt/sources.list.d") {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        let text = match ext {
            "list" | "sources" => std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read {}", f.display()))?,
            _ => continue,
        };
        if ext == "list" {
            out.extend(parse_one_line_sources(&text));
        } else {
            out.extend(parse_deb822(&text));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Package sources.

/// One version of a binary package as apt offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebCandidate {
    /// Debian version.
    pub version: String,
    /// SHA-256 of the `.deb`, from the signed index.
    pub sha256: String,
    /// The raw `Depends:` field.
    pub depends: String,
}

/// One version of a source package as apt offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCandidate {
    /// Debian source version.
    pub version: String,
    /// `(file name, sha256)` of each file of the source package.
    pub files: Vec<(String, String)>,
}

impl SourceCandidate {
    /// The `.orig.tar.*` file, if the package has one.
    #[must_use]
    pub fn orig(&self) -> Option<&(String, String)> {
        self.files.iter().find(|(n, _)| n.contains(".orig.tar."))
    }
}

/// What the fetch step needs from a package manager.
pub trait PackageSource {
    /// Every version of binary package `pkg` the sources offer (may be empty).
    fn deb_candidates(&mut self, pkg: &str) -> Result<Vec<DebCandidate>>;
    /// Downloads `pkg=version` into `dir`; returns the file.
    fn download_deb(&mut self, pkg: &str, version: &str, dir: &Path) -> Result<PathBuf>;
    /// Every version of source package `pkg` the sources offer (may be empty).
    fn source_candidates(&mut self, pkg: &str) -> Result<Vec<SourceCandidate>>;
    /// Downloads the files of source package `pkg=version` into `dir`.
    fn download_source(&mut self, pkg: &str, version: &str, dir: &Path) -> Result<()>;
}

/// Parses `apt-cache show` output.
#[must_use]
pub fn parse_show(text: &str) -> Vec<DebCandidate> {
    parse_deb822(text)
        .into_iter()
        .filter_map(|s| {
            Some(DebCandidate {
                version: s.get("Version")?.to_owned(),
                sha256: s.get("SHA256")?.to_owned(),
                depends: s.get("Depends").unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// Parses `apt-cache showsrc` output.
#[must_use]
pub fn parse_showsrc(text: &str) -> Vec<SourceCandidate> {
    parse_deb822(text)
        .into_iter()
        .filter_map(|s| {
            let version = s.get("Version")?.to_owned();
            let files = s
                .get("Checksums-Sha256")?
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    let (sha, _size, name) = (w.next()?, w.next()?, w.next()?);
                    Some((name.to_owned(), sha.to_owned()))
                })
                .collect();
            Some(SourceCandidate { version, files })
        })
        .collect()
}

/// Finds `name (= version)` for the first dependency named `linux-image-*`.
#[must_use]
pub fn kernel_dependency(depends: &str) -> Option<(String, String)> {
    depends.split(',').find_map(|d| {
        let d = d.trim();
        let (name, rest) = d.split_once(' ').unwrap_or((d, ""));
        if !name.starts_with("linux-image-") {
            return None;
        }
        let ver = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
        Some((name.to_owned(), ver.to_owned()))
    })
}

/// Which suites a temporary apt configuration holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AptSuites {
    /// The host's binary entries plus `deb-src` for these suites.
    Host { source_suites: Vec<String> },
    /// Binary entries for these release suites only.
    Release { suites: Vec<String> },
}

/// The host's apt with a temporary configuration, set up on first use.
pub struct HostApt {
    suites: AptSuites,
    root: Option<TempDir>,
}

impl HostApt {
    /// The host's own suites, plus `deb-src` entries for `source_suites`. A
    /// lazy handle: nothing runs and nothing is read until a method needs apt.
    #[must_use]
    pub fn host(source_suites: &[String]) -> Self {
        Self {
            suites: AptSuites::Host {
                source_suites: source_suites.to_vec(),
            },
            root: None,
        }
    }

    /// Only the binary packages of a Debian release's `suites` (e.g. `trixie
    /// trixie-security`), through the host's mirrors (see
    /// [`release_entries`]). Lazy like [`HostApt::host`].
    #[must_use]
    pub fn release(suites: &[String]) -> Self {
        Self {
            suites: AptSuites::Release {
                suites: suites.to_vec(),
            },
            root: None,
        }
    }

    fn opts(&self, root: &Path) -> Vec<String> {
        let mut o = vec![
            "-q".into(),
            format!(
                "-o=Dir::Etc::sourcelist={}",
                root.join("sources.list").display()
            ),
            format!(
                "-o=Dir::Etc::sourceparts={}",
                root.join("sources.list.d").display()
            ),
            format!("-o=Dir::State::Lists={}", root.join("lists").display()),
            format!("-o=Dir::Cache={}", root.join("cache").display()),
        ];
        if let AptSuites::Release { .. } = self.suites {
            // What the host has installed is no candidate of the release, and
            // the host's foreign architectures are not the image's.
            o.extend([
                format!("-o=Dir::State::status={}", root.join("status").display()),
                format!("-o=APT::Architecture={ARCH}"),
                format!("-o=APT::Architectures={ARCH}"),
            ]);
        }
        o
    }

    fn root(&mut self) -> Result<PathBuf> {
        if let Some(r) = &self.root {
            return Ok(r.path().to_path_buf());
        }
        let tmp = temp_dir_in(&std::env::temp_dir(), "appliance-apt")?;
        let r = tmp.path().to_path_buf();
        for d in ["sources.list.d", "lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(r.join(d))?;
        }
        let host = host_sources()?;
        let binary = binary_sources(&host);
        if binary.is_empty() {
            bail!("the host has no enabled `deb` entry in /etc/apt/sources.list{{,.d}}");
        }
        let (stanzas, what) = match &self.suites {
            AptSuites::Host { source_suites } => {
                let mut stanzas = binary.clone();
                stanzas.push(source_entry_from_host(&binary, source_suites)?);
                (
                    stanzas,
                    format!("host suites; deb-src suites: {}", source_suites.join(" ")),
                )
            }
            AptSuites::Release { suites } => (
                release_entries(&binary, suites)?,
                format!("suites {} only, {ARCH}", suites.join(" ")),
            ),
        };
        std::fs::write(r.join("sources.list"), "")?;
        std::fs::write(r.join("status"), "")?;
        std::fs::write(
            r.join("sources.list.d/xtask.sources"),
            render_deb822(&stanzas),
        )?;
        println!(
            "==> apt: update of a temporary apt configuration in {} (host mirrors; {what})",
            r.display(),
        );
        let start = Instant::now();
        let updated = run_capture(
            Command::new("apt-get").args(self.opts(&r)).arg("update"),
            None,
        );
        if let (Err(err), AptSuites::Release { suites }) = (&updated, &self.suites) {
            bail!(
                "{err:#}\nsuites {} could not be read; a NO_PUBKEY above means the host's \
                 keyring does not know that release's signing keys (upgrade \
                 debian-archive-keyring)",
                suites.join(" ")
            );
        }
        updated?;
        // apt-get update exits 0 when a suite is missing (it only warns).
        if let AptSuites::Release { suites } = &self.suites {
            let lists: Vec<String> = std::fs::read_dir(r.join("lists"))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            for suite in suites {
                let needle = format!("_dists_{suite}_");
                let index = format!("_binary-{ARCH}_Packages");
                if !lists
                    .iter()
                    .any(|l| l.contains(&needle) && l.contains(&index))
                {
                    bail!("the host's mirror has no package index for suite {suite}");
                }
            }
        }
        println!("<== apt update: {:.1}s", start.elapsed().as_secs_f64());
        self.root = Some(tmp);
        Ok(r)
    }
}

/// Which temporary apt configuration a pin is looked up in.
pub trait Archives {
    /// The host's own suites (and the Valkey `deb-src` suites).
    fn host(&mut self) -> &mut dyn PackageSource;
    /// Exactly the binary packages of a release's `suites`.
    fn release(&mut self, suites: &[String]) -> &mut dyn PackageSource;
}

/// The real [`Archives`]: one lazy [`HostApt`] per suite list asked for.
pub struct HostArchives {
    host: HostApt,
    releases: BTreeMap<Vec<String>, HostApt>,
}

impl HostArchives {
    /// Lazy: apt runs only when a pin is not in the cache.
    #[must_use]
    pub fn new(source_suites: &[String]) -> Self {
        Self {
            host: HostApt::host(source_suites),
            releases: BTreeMap::new(),
        }
    }
}

impl Archives for HostArchives {
    fn host(&mut self) -> &mut dyn PackageSource {
        &mut self.host
    }

    fn release(&mut self, suites: &[String]) -> &mut dyn PackageSource {
        self.releases
            .entry(suites.to_vec())
            .or_insert_with(|| HostApt::release(suites))
    }
}

/// An in-memory [`Archives`] for tests: the host's [`FakeApt`] and one per
/// release (keyed by the suites joined with a space). A release nobody set up
/// answers from an empty [`FakeApt`], so a pin looked up in the wrong place
/// shows as unavailable.
#[derive(Debug, Default)]
pub struct FakeArchives {
    /// The host's suites.
    pub host: FakeApt,
    /// Releases, by `suites.join(" ")`.
    pub releases: BTreeMap<String, FakeApt>,
}

impl Archives for FakeArchives {
    fn host(&mut self) -> &mut dyn PackageSource {
        &mut self.host
    }

    fn release(&mut self, suites: &[String]) -> &mut dyn PackageSource {
        self.releases.entry(suites.join(" ")).or_default()
    }
}

impl PackageSource for HostApt {
    fn deb_candidates(&mut self, pkg: &str) -> Result<Vec<DebCandidate>> {
        let r = self.root()?;
        // `apt-cache show` fails for unknown names: that is "no candidates".
        let out = Command::new("apt-cache")
            .args(self.opts(&r))
            .args(["show", pkg])
            .output()
            .context("cannot run apt-cache (is apt installed?)")?;
        Ok(parse_show(&String::from_utf8_lossy(&out.stdout)))
    }

    fn download_deb(&mut self, pkg: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        let r = self.root()?;
        run_capture(
            Command::new("apt-get")
                .args(self.opts(&r))
                .arg("download")
                .arg(format!("{pkg}={version}")),
            Some(dir),
        )?;
        single_file(dir, ".deb")
    }

    fn source_candidates(&mut self, pkg: &str) -> Result<Vec<SourceCandidate>> {
        let r = self.root()?;
        let out = Command::new("apt-cache")
            .args(self.opts(&r))
            .args(["showsrc", pkg])
            .output()
            .context("cannot run apt-cache (is apt installed?)")?;
        Ok(parse_showsrc(&String::from_utf8_lossy(&out.stdout)))
    }

    fn download_source(&mut self, pkg: &str, version: &str, dir: &Path) -> Result<()> {
        let r = self.root()?;
        run_capture(
            Command::new("apt-get")
                .args(self.opts(&r))
                .args(["source", "--download-only"])
                .arg(format!("{pkg}={version}")),
            Some(dir),
        )
    }
}

/// One version of a fake source package: (version, [(file name, bytes)]).
pub type FakeSourceVersion = (String, Vec<(String, Vec<u8>)>);

/// An in-memory package source for tests: candidates and file contents.
#[derive(Debug, Default)]
pub struct FakeApt {
    /// Binary packages: name -> [(version, file bytes, depends)].
    pub debs: BTreeMap<String, Vec<(String, Vec<u8>, String)>>,
    /// Source packages: name -> versions.
    pub sources: BTreeMap<String, Vec<FakeSourceVersion>>,
    /// Every call, in order, e.g. `download_deb foo=1`.
    pub calls: Vec<String>,
}

impl PackageSource for FakeApt {
    fn deb_candidates(&mut self, pkg: &str) -> Result<Vec<DebCandidate>> {
        self.calls.push(format!("deb_candidates {pkg}"));
        Ok(self
            .debs
            .get(pkg)
            .map(|v| {
                v.iter()
                    .map(|(ver, bytes, dep)| DebCandidate {
                        version: ver.clone(),
                        sha256: hex(&Sha256::digest(bytes)),
                        depends: dep.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn download_deb(&mut self, pkg: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        self.calls.push(format!("download_deb {pkg}={version}"));
        let (_, bytes, _) = self
            .debs
            .get(pkg)
            .and_then(|v| v.iter().find(|(ver, _, _)| ver == version))
            .ok_or_else(|| err!("E: Version '{version}' for '{pkg}' was not found"))?;
        let p = dir.join(format!("{pkg}_{version}_amd64.deb"));
        std::fs::write(&p, bytes)?;
        Ok(p)
    }

    fn source_candidates(&mut self, pkg: &str) -> Result<Vec<SourceCandidate>> {
        self.calls.push(format!("source_candidates {pkg}"));
        Ok(self
            .sources
            .get(pkg)
            .map(|v| {
                v.iter()
                    .map(|(ver, files)| SourceCandidate {
                        version: ver.clone(),
                        files: files
                            .iter()
                            .map(|(n, b)| (n.clone(), hex(&Sha256::digest(b))))
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn download_source(&mut self, pkg: &str, version: &str, dir: &Path) -> Result<()> {
        self.calls.push(format!("download_source {pkg}={version}"));
        let (_, files) = self
            .sources
            .get(pkg)
            .and_then(|v| v.iter().find(|(ver, _)| ver == version))
            .ok_or_else(|| err!("E: Can not find version '{version}' of package '{pkg}'"))?;
        for (n, b) in files {
            std::fs::write(dir.join(n), b)?;
        }
        Ok(())
    }
}

fn run_capture(cmd: &mut Command, cwd: Option<&Path>) -> Result<()> {
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn single_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(suffix))
        {
            found.push(p);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one *{suffix} in {}, found {}",
            dir.display(),
            found.len()
        ),
    }
}

/// A fresh directory under `parent` (created if missing), removed with
/// everything in it when the handle drops.
pub(crate) fn temp_dir_in(parent: &Path, prefix: &str) -> Result<TempDir> {
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory under {}",
                parent.display()
            )
        })
}

// ---------------------------------------------------------------------------
// Fetching.

/// Versions on offer, newest first, for an error message.
fn offered(mut versions: Vec<String>) -> String {
    versions.sort_by(|a, b| compare_debian_versions(b, a));
    versions.dedup();
    if versions.is_empty() {
        "none".to_owned()
    } else {
        versions.join(", ")
    }
}

/// Returns the cached, verified `.deb` of `pin`, downloading it on a miss.
/// `hint` adds a line to the stale-pin error (e.g. where the metapackage points now).
pub fn fetch_deb(
    pin: &DebPin,
    cache: &Cache,
    apt: &mut dyn PackageSource,
    hint: &str,
) -> Result<PathBuf> {
    let dir = cache.dir("debs")?.join(&pin.sha256);
    if let Ok(p) = single_file(&dir, ".deb") {
        if sha256_file(&p)? == pin.sha256 {
            println!(
                "    cache hit: {} {} ({})",
                pin.package,
                pin.version,
                p.display()
            );
            return Ok(p);
        }
        println!(
            "    cache entry {} has the wrong hash; fetching again",
            p.display()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    let offer = apt.deb_candidates(&pin.package)?;
    let Some(cand) = offer.iter().find(|c| c.version == pin.version) else {
        bail!(
            "pinned {} {} is not available from the host's apt sources (available: {}){hint}\n\
             re-pin with `cargo xtask pins --update` (rewrites {} with new versions and hashes)",
            pin.package,
            pin.version,
            offered(offer.iter().map(|c| c.version.clone()).collect()),
            crate::pins::SOURCES_TOML,
        );
    };
    if cand.sha256 != pin.sha256 {
        bail!(
            "{} {}: the mirror's index says sha256 {}, pinned {}; refusing (a re-pin must be deliberate)",
            pin.package,
            pin.version,
            cand.sha256,
            pin.sha256
        );
    }
    let tmp = temp_dir_in(&cache.dir("tmp")?, "deb")?;
    let got = apt.download_deb(&pin.package, &pin.version, tmp.path())?;
    verify_sha256(&got, &pin.sha256)?;
    let name = got
        .file_name()
        .ok_or_else(|| err!("download without a file name"))?;
    let stage = tmp.path().join("entry");
    std::fs::create_dir(&stage)?;
    std::fs::rename(&got, stage.join(name))?;
    std::fs::rename(&stage, &dir).with_context(|| format!("cannot store {}", dir.display()))?;
    single_file(&dir, ".deb")
}

/// Returns the cached, verified orig tarball of `pin`, downloading on a miss.
pub fn fetch_source(
    pin: &SourcePin,
    cache: &Cache,
    apt: &mut dyn PackageSource,
) -> Result<PathBuf> {
    let dir = cache.dir("src")?.join(&pin.orig_sha256);
    if let Ok(p) = single_file(&dir, "") {
        if sha256_file(&p)? == pin.orig_sha256 {
            println!(
                "    cache hit: {} {} ({})",
                pin.package,
                pin.version,
                p.display()
            );
            return Ok(p);
        }
        println!(
            "    cache entry {} has the wrong hash; fetching again",
            p.display()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    let offer = apt.source_candidates(&pin.package)?;
    let Some(cand) = offer.iter().find(|c| c.version == pin.version) else {
        bail!(
            "pinned source {} {} is not in suites {} of the host's mirror (available: {})\n\
             re-pin with `cargo xtask pins --update` (rewrites {} with new versions and hashes)",
            pin.package,
            pin.version,
            pin.suites.join(", "),
            offered(offer.iter().map(|c| c.version.clone()).collect()),
            crate::pins::SOURCES_TOML,
        );
    };
    let (orig_name, orig_sha) = cand
        .orig()
        .ok_or_else(|| err!("{} {} has no orig tarball", pin.package, pin.version))?;
    if *orig_sha != pin.orig_sha256 {
        bail!(
            "{} {}: the mirror's index says {orig_name} has sha256 {orig_sha}, pinned {}; refusing",
            pin.package,
            pin.version,
            pin.orig_sha256
        );
    }
    let tmp = temp_dir_in(&cache.dir("tmp")?, "src")?;
    apt.download_source(&pin.package, &pin.version, tmp.path())?;
    let got = tmp.path().join(orig_name);
    verify_sha256(&got, &pin.orig_sha256)?;
    let stage = tmp.path().join("entry");
    std::fs::create_dir(&stage)?;
    std::fs::rename(&got, stage.join(orig_name))?;
    std::fs::rename(&stage, &dir).with_context(|| format!("cannot store {}", dir.display()))?;
    single_file(&dir, "")
}

/// Unpacks a verified `.deb` into `cache/unpacked/<sha256>/` (once) with
/// `dpkg-deb -x`, returning the tree.
pub fn unpack_deb(deb: &Path, sha256: &str, cache: &Cache) -> Result<PathBuf> {
    let dir = cache.dir("unpacked")?.join(sha256);
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = temp_dir_in(&cache.dir("tmp")?, "unpack")?;
    let stage = tmp.path().join("tree");
    run_capture(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&stage),
        None,
    )
    .context("cannot unpack (dpkg-deb is in the `dpkg` package)")?;
    std::fs::rename(&stage, &dir).with_context(|| format!("cannot store {}", dir.display()))?;
    Ok(dir)
}

/// The unpacked kernel package.
#[derive(Debug, Clone)]
pub struct KernelInputs {
    /// The verified `.deb`.
    pub deb: PathBuf,
    /// Root of the unpacked package.
    pub tree: PathBuf,
    /// Kernel release, e.g. `6.12.118+deb13-cloud-amd64`.
    pub kver: String,
    /// `boot/vmlinuz-<kver>`.
    pub vmlinuz: PathBuf,
    /// `boot/config-<kver>`.
    pub config: PathBuf,
    /// `lib/modules/<kver>` (Debian 12) or `usr/lib/modules/<kver>` (Debian
    /// 13, merged `/usr`).
    pub modules_dir: PathBuf,
}

/// An unpacked runtime library package (the C library, GCC's runtime).
#[derive(Debug, Clone)]
pub struct LibInputs {
    /// The verified `.deb`.
    pub deb: PathBuf,
    /// Root of the unpacked package.
    pub tree: PathBuf,
}

/// Where a library package keeps its shared objects: `usr/lib/x86_64-linux-gnu`
/// (Debian 13) or `lib/x86_64-linux-gnu` (Debian 12), whichever it has. Only
/// real directories of the package: the loader's `lib64` entry is a symlink
/// whose target, followed outside the tree, would be the build host's file.
#[must_use]
pub fn lib_dirs(tree: &Path) -> Vec<PathBuf> {
    ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| tree.join(d))
        .filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_dir()))
        .collect()
}

/// Everything the image is built from, fetched and verified.
#[derive(Debug, Clone)]
pub struct FetchedInputs {
    /// The kernel.
    pub kernel: KernelInputs,
    /// The C library.
    pub libc: LibInputs,
    /// GCC's runtime library.
    pub libgcc: LibInputs,
    /// The verified `systemd-boot-efi` `.deb`.
    pub stub_deb: PathBuf,
    /// `linuxx64.efi.stub` from it.
    pub stub: PathBuf,
    /// The verified Valkey orig tarball.
    pub valkey_orig: PathBuf,
}

/// Fetches (or takes from the cache) and verifies every pinned input, using the
/// host's apt only on a cache miss.
pub fn fetch_all(pins: &Pins, cache: &Cache) -> Result<FetchedInputs> {
    fetch_all_with(pins, cache, &mut HostArchives::new(&pins.valkey.suites))
}

/// The pinned kernel package alone, fetched (or from the cache) and unpacked.
pub fn fetch_kernel(
    pins: &Pins,
    cache: &Cache,
    archives: &mut dyn Archives,
) -> Result<KernelInputs> {
    let kpin = pins.kernel.deb();
    let apt = archives.release(&pins.kernel.suites);
    let kdeb = match fetch_deb(&kpin, cache, apt, "") {
        Ok(deb) => deb,
        Err(err) => return Err(err.context(metapackage_now(&pins.kernel.metapackage, apt))),
    };
    let ktree = unpack_deb(&kdeb, &kpin.sha256, cache)?;
    kernel_inputs(kdeb, ktree)
}

/// A pinned runtime library package, fetched (or from the cache) and
/// unpacked.
pub fn fetch_lib(lib: &LibPin, cache: &Cache, archives: &mut dyn Archives) -> Result<LibInputs> {
    let pin = lib.deb();
    let deb = fetch_deb(&pin, cache, archives.release(&lib.suites), "")?;
    let tree = unpack_deb(&deb, &pin.sha256, cache)?;
    if lib_dirs(&tree).is_empty() {
        bail!(
            "{} {} has no usr/lib/x86_64-linux-gnu (is it an amd64 library package?)",
            pin.package,
            pin.version
        );
    }
    Ok(LibInputs { deb, tree })
}

/// [`fetch_all`] with explicit package sources.
pub fn fetch_all_with(
    pins: &Pins,
    cache: &Cache,
    archives: &mut dyn Archives,
) -> Result<FetchedInputs> {
    let start = Instant::now();
    println!(
        "==> fetch: kernel {} {} ({})",
        pins.kernel.package,
        pins.kernel.version,
        pins.kernel.suites.join(" ")
    );
    let kernel = fetch_kernel(pins, cache, archives)?;
    let mut libs = Vec::new();
    for lib in [&pins.libc, &pins.libgcc] {
        println!(
            "==> fetch: library {} {} ({})",
            lib.package,
            lib.version,
            lib.suites.join(" ")
        );
        libs.push(fetch_lib(lib, cache, archives)?);
    }
    let [libc, libgcc] =
        <[LibInputs; 2]>::try_from(libs).map_err(|_| err!("two library packages expected"))?;
    println!(
        "==> fetch: stub {} {}",
        pins.stub.package, pins.stub.version
    );
    let stub_deb = fetch_deb(&pins.stub, cache, archives.host(), "")?;
    let stree = unpack_deb(&stub_deb, &pins.stub.sha256, cache)?;
    let stub = stree.join(STUB_PATH);
    if !stub.is_file() {
        bail!(
            "{} {} has no {STUB_PATH}",
            pins.stub.package,
            pins.stub.version
        );
    }
    println!(
        "==> fetch: source {} {}",
        pins.valkey.package, pins.valkey.version
    );
    let valkey_orig = fetch_source(&pins.valkey, cache, archives.host())?;
    println!("<== fetch: {:.1}s", start.elapsed().as_secs_f64());
    Ok(FetchedInputs {
        kernel,
        libc,
        libgcc,
        stub_deb,
        stub,
        valkey_orig,
    })
}

/// Where the kernel metapackage points now, for the stale-pin message.
fn metapackage_now(meta: &str, apt: &mut dyn PackageSource) -> String {
    let mut offer = apt.deb_candidates(meta).unwrap_or_default();
    offer.sort_by(|a, b| compare_debian_versions(&b.version, &a.version));
    match offer.first().and_then(|c| kernel_dependency(&c.depends)) {
        Some((pkg, ver)) => {
            format!("cannot fetch the pinned kernel; `{meta}` now depends on {pkg} {ver}")
        }
        None => format!("cannot fetch the pinned kernel; `{meta}` is not offered either"),
    }
}

fn kernel_inputs(deb: PathBuf, tree: PathBuf) -> Result<KernelInputs> {
    // Debian 13's packages follow merged /usr; Debian 12's do not.
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for base in ["lib/modules", "usr/lib/modules"] {
        let mods = tree.join(base);
        let Ok(rd) = std::fs::read_dir(&mods) else {
            continue;
        };
        for e in rd {
            let e = e?;
            if let Ok(kver) = e.file_name().into_string() {
                found.push((kver, e.path()));
            }
        }
    }
    found.sort();
    let (kver, modules_dir) = match found.as_slice() {
        [(kver, dir)] => (kver.clone(), dir.clone()),
        _ => bail!(
            "expected one kernel release under {}/{{,usr/}}lib/modules, found {:?}",
            tree.display(),
            found.iter().map(|(k, _)| k).collect::<Vec<_>>()
        ),
    };
    let vmlinuz = tree.join(format!("boot/vmlinuz-{kver}"));
    let config = tree.join(format!("boot/config-{kver}"));
    for f in [&vmlinuz, &config] {
        if !f.is_file() {
            bail!("kernel package lacks {}", f.display());
        }
    }
    Ok(KernelInputs {
        deb,
        modules_dir,
        tree,
        kver,
        vmlinuz,
        config,
    })
}

/// The newest version `apt` offers of `pkg`.
fn newest_deb(apt: &mut dyn PackageSource, pkg: &str) -> Result<DebCandidate> {
    let mut c = apt.deb_candidates(pkg)?;
    c.sort_by(|a, b| compare_debian_versions(&b.version, &a.version));
    c.into_iter()
        .next()
        .ok_or_else(|| err!("apt offers no version of {pkg}"))
}

/// Resolves fresh pins from what the package sources offer now: the kernel
/// package the metapackage depends on (newest across the kernel's suites),
/// the newest C library and GCC runtime in their suites, the newest stub in the host's suites,
/// the newest Valkey source in the configured suites. Module list and suites
/// are kept.
pub fn updated_pins(cur: &Pins, archives: &mut dyn Archives) -> Result<Pins> {
    let release = archives.release(&cur.kernel.suites);
    let meta = newest_deb(release, &cur.kernel.metapackage)
        .with_context(|| format!("in suites {}", cur.kernel.suites.join(" ")))?;
    let (kpkg, kver) = kernel_dependency(&meta.depends).ok_or_else(|| {
        err!(
            "{} {} depends on no linux-image-* (= version)",
            cur.kernel.metapackage,
            meta.version
        )
    })?;
    let kcand = release
        .deb_candidates(&kpkg)?
        .into_iter()
        .find(|c| c.version == kver)
        .ok_or_else(|| {
            err!(
                "{kpkg} {kver} (from {}) is not offered",
                cur.kernel.metapackage
            )
        })?;
    let libc = newest_deb(archives.release(&cur.libc.suites), &cur.libc.package)
        .with_context(|| format!("in suites {}", cur.libc.suites.join(" ")))?;
    let libgcc = newest_deb(archives.release(&cur.libgcc.suites), &cur.libgcc.package)
        .with_context(|| format!("in suites {}", cur.libgcc.suites.join(" ")))?;
    let host = archives.host();
    let stub = newest_deb(host, &cur.stub.package)?;
    let mut srcs = host.source_candidates(&cur.valkey.package)?;
    srcs.sort_by(|a, b| compare_debian_versions(&b.version, &a.version));
    let src = srcs.into_iter().next().ok_or_else(|| {
        err!(
            "no version of source {} in {}",
            cur.valkey.package,
            cur.valkey.suites.join(", ")
        )
    })?;
    let (_, orig_sha) = src
        .orig()
        .cloned()
        .ok_or_else(|| err!("{} {} has no orig tarball", cur.valkey.package, src.version))?;
    let upstream = upstream_of(&src.version);
    let mut next = cur.clone();
    next.kernel.package = kpkg;
    next.kernel.version = kcand.version;
    next.kernel.sha256 = kcand.sha256;
    next.libc.version = libc.version;
    next.libc.sha256 = libc.sha256;
    next.libgcc.version = libgcc.version;
    next.libgcc.sha256 = libgcc.sha256;
    next.stub.version = stub.version;
    next.stub.sha256 = stub.sha256;
    // A human-recorded upstream hash only stays meaningful for the same release.
    if upstream != cur.valkey.upstream_version {
        next.valkey.upstream_tarball_sha256 = None;
    }
    next.valkey.version = src.version;
    next.valkey.upstream_version = upstream;
    next.valkey.orig_sha256 = orig_sha;
    Ok(next)
}

/// The upstream part of a Debian version (no epoch, no revision, no `+dfsg`-style repack suffix).
#[must_use]
pub fn upstream_of(version: &str) -> String {
    let v = version.split_once(':').map_or(version, |(_, r)| r);
    let v = v.rsplit_once('-').map_or(v, |(u, _)| u);
    let v = v.split_once("+dfsg").map_or(v, |(u, _)| u);
    v.split_once("+ds").map_or(v, |(u, _)| u).to_owned()
}

/// `cargo xtask pins --update`: re-pins `sources` from the host's apt and
/// returns the diff (empty when nothing changed). The file is rewritten only
/// when it changed.
pub fn update_pins_file(sources: &Path) -> Result<String> {
    let old_text = std::fs::read_to_string(sources)
        .with_context(|| format!("cannot read {}", sources.display()))?;
    let cur = Pins::from_toml_str(&old_text)?;
    let next = updated_pins(&cur, &mut HostArchives::new(&cur.valkey.suites))?;
    let new_text = next.render();
    let diff = crate::pins::line_diff(&old_text, &new_text);
    if !diff.is_empty() {
        std::fs::write(sources, &new_text)
            .with_context(|| format!("cannot write {}", sources.display()))?;
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://other.example/x
Suites: stable
Enabled: no
";

    #[test]
    fn deb_src_reuses_the_host_archive_entry() {
        let bin = binary_sources(&parse_deb822(HOST));
        assert_eq!(bin.len(), 2);
        let src = source_entry_from_host(&bin, &["sid".into(), "testing".into()]).unwrap();
        assert_eq!(
            render_deb822(&[src]),
            "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: sid testing\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        );
    }

    #[test]
    fn release_entries_reuse_the_host_mirrors_and_keyring() {
        let bin = binary_sources(&parse_deb822(HOST));
        let suites = ["trixie".to_owned(), "trixie-security".to_owned()];
        let entries = release_entries(&bin, &suites).unwrap();
        assert_eq!(
            render_deb822(&entries),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\nComponents: main\n\
             Architectures: amd64\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: http://mirror.example/debian-security\nSuites: trixie-security\n\
             Components: main\nArchitectures: amd64\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        );
        // Suites on one mirror share a paragraph, in the order given.
        let both = ["trixie-updates".to_owned(), "trixie".to_owned()];
        let entries = release_entries(&bin, &both).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].get("Suites"), Some("trixie-updates trixie"));
        // A host entry without Signed-By still gets the archive keyring, never
        // apt's global trust.
        let unsigned = parse_one_line_sources("deb http://m.example/debian bookworm main\n");
        let entries = release_entries(&unsigned, &["trixie".to_owned()]).unwrap();
        assert_eq!(entries[0].get("Signed-By"), Some(DEBIAN_ARCHIVE_KEYRING));
        let err = release_entries(&unsigned, &suites).unwrap_err().to_string();
        assert_eq!(
            err,
            "suite trixie-security: the host's apt sources have no -security entry to take the mirror URI from"
        );
        assert!(release_entries(&bin, &[]).is_err());
    }

    #[test]
    fn one_line_sources_become_stanzas() {
        let s = parse_one_line_sources(
            "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n\
             deb-src http://m.example/debian bookworm main\nbogus line\ndeb\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("Signed-By"), Some("/k.gpg"));
        assert_eq!(s[0].get("Architectures"), Some("amd64"));
        assert_eq!(s[0].get("Components"), Some("main contrib"));
        assert_eq!(binary_sources(&s).len(), 1);
    }

    #[test]
    fn inline_keys_survive_a_round_trip() {
        let text = "Types: deb\nURIs: http://m.example/d\nSuites: x\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n\n";
        let s = parse_deb822(text);
        assert_eq!(render_deb822(&s), text);
    }

    #[test]
    fn showsrc_and_show_parse() {
        let src = parse_showsrc(
            "Package: valkey\nVersion: 9.1.2-1\nChecksums-Sha256:\n aa 2251 valkey_9.1.2-1.dsc\n bb 4418246 valkey_9.1.2.orig.tar.gz\n\n",
        );
        assert_eq!(
            src[0].orig(),
            Some(&("valkey_9.1.2.orig.tar.gz".to_owned(), "bb".to_owned()))
        );
        let show = parse_show("Package: m\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\nSHA256: cc\n");
        assert_eq!(
            kernel_dependency(&show[0].depends),
            Some((
                "linux-image-6.1.0-56-cloud-amd64".to_owned(),
                "6.1.192-2".to_owned()
            ))
        );
    }

    #[test]
    fn upstream_versions() {
        for (v, u) in [
            ("9.1.2-1", "9.1.2"),
            ("1:9.1.2+dfsg-3", "9.1.2"),
            ("9.1.2", "9.1.2"),
            ("8.0.1+ds1-2~bpo12+1", "8.0.1"),
        ] {
            assert_eq!(upstream_of(v), u);
        }
    }
}
