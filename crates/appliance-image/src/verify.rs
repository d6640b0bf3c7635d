//! `appliance-image verify` (`cargo xtask verify`): an offline audit of a built image (design §10),
//! one `[OK]`/`[FAIL]` line per property, seed-002 style.
//!
//! It trusts nothing the build said about itself except as a claim to check:
//! the manifest's hashes are recomputed, the initramfs is unpacked with the
//! strict reader (no second archive may hide after the trailer), the UKI's
//! sections and the ESP's file are compared with the files they were made
//! from, and the server config is re-rendered from the spec and compared.
#![forbid(unsafe_code)]

use crate::error::{bail, ensure, err, Context, Result};
use appliance_spec::Spec;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::assemble::{ESP_BOOT_PATH, OUTPUTS};
use crate::fetch::{lib_dirs, sha256_file, temp_dir_in};
use crate::kmod::{self, Compression};
use crate::manifest::{hash_file, sha256_hex, Manifest, Pin, Profile};
use crate::valkey::LUA_MARKER;
use crate::valkey_conf::{self, ModuleLoad};
use image_formats::cpio::{self, S_IFCHR, S_IFDIR, S_IFREG};
use image_formats::elf::{self, contains_bytes, dynamic_deps, is_elf};
use image_formats::{fat, gcetar, gpt, pe};
use image_layout::{
    CONSOLE, DATA_LABEL, INIT_PATH, INTRUDER_PATH, LIB_DIR, LIB_PREFIXES, MODULES_DIR, SPEC_PATH,
    STREAM_GUARD_PATH,
};

/// The string a test-profile init carries (the `test-hooks` feature).
pub const TEST_HOOKS_MARKER: &[u8] = b"appliance-test-hooks-v1";
/// The string compiled into the test-only intruder module.
pub const INTRUDER_MARKER: &[u8] = intruder::MARKER.as_bytes();
/// The UKI size goal.
pub const UKI_MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Decompressed initramfs bigger than this is refused (a zstd bomb).
const MAX_INITRAMFS: u64 = 1 << 30;

/// File names that must not appear anywhere in the initramfs.
const FORBIDDEN_NAMES: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "ash",
    "zsh",
    "ksh",
    "mksh",
    "csh",
    "tcsh",
    "fish",
    "busybox",
    "toybox",
    "sshd",
    "ssh",
    "dropbear",
    "telnetd",
    "login",
    "getty",
    "agetty",
    "su",
    "sudo",
    "apt",
    "apt-get",
    "dpkg",
    "rpm",
    "yum",
    "dnf",
    "apk",
    "pip",
    "pip3",
    "python",
    "python3",
    "perl",
    "ruby",
    "lua",
    "luajit",
    "node",
    "tclsh",
    "php",
    "gdb",
    "strace",
    "nc",
    "socat",
    "curl",
    "wget",
    "cron",
    "crond",
    "valkey-cli",
    "redis-cli",
];

/// Byte strings that betray a shell, remote login, package manager or
/// interpreter inside any file.
const FORBIDDEN_CONTENT: &[(&[u8], &str)] = &[
    (b"BusyBox v", "BusyBox"),
    (b"OpenSSH_", "OpenSSH"),
    (b"dropbear_", "Dropbear"),
    (b"Py_Initialize", "a Python interpreter"),
    (b"perl_construct", "a Perl interpreter"),
    (b"lua_newstate", "a Lua interpreter"),
    (b"dpkg-deb", "dpkg"),
];

/// Collects the report lines.
struct Report<'w> {
    out: &'w mut dyn Write,
    failed: bool,
}

impl Report<'_> {
    fn line(&mut self, ok: bool, check: &str, detail: impl std::fmt::Display) -> Result<()> {
        self.failed |= !ok;
        let tag = if ok { "[OK]  " } else { "[FAIL]" };
        writeln!(self.out, "{tag} {check}: {detail}")?;
        Ok(())
    }

    fn result(&mut self, check: &str, r: Result<String>) -> Result<()> {
        match r {
            Ok(detail) => self.line(true, check, detail),
            Err(e) => self.line(false, check, format!("{e:#}")),
        }
    }
}

fn mib(n: u64) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Decompresses exactly one zstd frame, refusing trailing bytes.
pub fn unzstd(compressed: &[u8]) -> Result<Vec<u8>> {
    let mut input = compressed;
    let mut out = Vec::new();
    {
        let dec =
            ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| err!("zstd: {e}"))?;
        dec.take(MAX_INITRAMFS + 1)
            .read_to_end(&mut out)
            .context("zstd: corrupt stream")?;
    }
    ensure!(out.len() as u64 <= MAX_INITRAMFS, "zstd: output over 1 GiB");
    ensure!(
        input.is_empty(),
        "zstd: {} bytes after the frame",
        input.len()
    );
    Ok(out)
}

/// What to hold the image to beyond its own manifest.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Require `disk.raw` to be a multiple of 1 GiB (GCE's import rule).
    /// Only small test images built by the test suite turn this off.
    pub gce_disk_sizes: bool,
    /// The input cache of `cargo xtask image`: when given, the pinned kernel
    /// and C library packages are read from it (found by their pinned
    /// SHA-256, which is checked again) and the image's kernel, modules,
    /// loader and libraries are compared with their files. Only the test
    /// suite's small images, made of fake inputs, leave it out.
    pub input_cache: Option<PathBuf>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            gce_disk_sizes: true,
            input_cache: None,
        }
    }
}

/// Audits the image in `dir` against the repository's spec text with the
/// default options. Writes the report to `out`; returns whether every check
/// passed.
pub fn verify(dir: &Path, repo_spec: &str, out: &mut dyn Write) -> Result<bool> {
    verify_with(dir, repo_spec, &VerifyOptions::default(), out)
}

/// [`verify`] with explicit options.
pub fn verify_with(
    dir: &Path,
    repo_spec: &str,
    opts: &VerifyOptions,
    out: &mut dyn Write,
) -> Result<bool> {
    let mut r = Report { out, failed: false };
    let manifest = match fs::read(dir.join("manifest.json"))
        .context("cannot read manifest.json")
        .and_then(|b| Manifest::from_json(&b))
    {
        Ok(m) => m,
        Err(e) => {
            r.line(false, "manifest", format!("{e:#}"))?;
            return Ok(false);
        }
    };
    r.line(
        true,
        "manifest",
        format!("profile {}", manifest.profile.as_str()),
    )?;

    // Every file the manifest names, and nothing else.
    let listed: BTreeSet<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
    let mut present = BTreeSet::new();
    for e in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name != "manifest.json" {
            present.insert(name);
        }
    }
    let expected: BTreeSet<String> = OUTPUTS
        .iter()
        .filter(|n| **n != "manifest.json")
        .map(|n| (*n).to_string())
        .collect();
    r.line(
        listed == present && listed == expected,
        "files",
        if listed == present && listed == expected {
            format!("{} files, as listed", listed.len())
        } else {
            format!("manifest lists {listed:?}, directory holds {present:?}, expected {expected:?}")
        },
    )?;
    for f in &manifest.files {
        let check = format!("hash {}", f.name);
        let res = hash_file(&dir.join(&f.name)).and_then(|(size, sha)| {
            ensure!(
                size == f.size && sha == f.sha256,
                "manifest says {} bytes sha256 {}, file is {size} bytes sha256 {sha}",
                f.size,
                f.sha256
            );
            Ok(format!("{size} bytes"))
        });
        r.result(&check, res)?;
    }

    // The initramfs, unpacked strictly.
    let zst = fs::read(dir.join("initramfs.cpio.zst")).unwrap_or_default();
    let cpio_bytes = match unzstd(&zst) {
        Ok(b) => b,
        Err(e) => {
            r.line(false, "initramfs readable", format!("{e:#}"))?;
            return Ok(false);
        }
    };
    let entries = match cpio::parse(&cpio_bytes) {
        Ok(e) => e,
        Err(e) => {
            r.line(false, "initramfs readable", e)?;
            return Ok(false);
        }
    };
    r.line(
        true,
        "initramfs readable",
        format!("{} entries", entries.len()),
    )?;
    initramfs_checks(&mut r, &manifest, &entries, repo_spec)?;
    module_checks(&mut r, &entries)?;
    if let Some(cache) = &opts.input_cache {
        package_checks(&mut r, dir, &manifest, &entries, cache)?;
    }
    image_checks(&mut r, dir, &manifest, &zst, opts)?;
    size_checks(&mut r, dir, &entries)?;
    Ok(!r.failed)
}

fn initramfs_checks(
    r: &mut Report<'_>,
    manifest: &Manifest,
    entries: &[cpio::Entry<'_>],
    repo_spec: &str,
) -> Result<()> {
    let by_path: BTreeMap<String, &cpio::Entry<'_>> =
        entries.iter().map(|e| (e.abs_path(), e)).collect();
    let file = |p: &str| {
        by_path
            .get(p)
            .filter(|e| e.file_type() == S_IFREG)
            .map(|e| e.data)
    };

    // Manifest <-> archive.
    let listed: Vec<(String, String, u64, String)> = manifest
        .initramfs
        .iter()
        .map(|e| (e.path.clone(), e.mode.clone(), e.size, e.sha256.clone()))
        .collect();
    let actual: Vec<(String, String, u64, String)> = entries
        .iter()
        .map(|e| {
            (
                e.abs_path(),
                format!("{:o}", e.mode),
                e.data.len() as u64,
                sha256_hex(e.data),
            )
        })
        .collect();
    let diff: Vec<&String> = actual
        .iter()
        .filter(|a| !listed.contains(a))
        .map(|a| &a.0)
        .chain(listed.iter().filter(|l| !actual.contains(l)).map(|l| &l.0))
        .collect();
    r.line(
        diff.is_empty() && by_path.len() == entries.len(),
        "initramfs matches manifest",
        if diff.is_empty() {
            format!("{} entries", entries.len())
        } else {
            format!("differs at {diff:?}")
        },
    )?;
    let bad_owner: Vec<String> = entries
        .iter()
        .filter(|e| e.uid != 0 || e.gid != 0)
        .map(|e| e.abs_path())
        .collect();
    r.line(
        bad_owner.is_empty(),
        "initramfs owned by root",
        if bad_owner.is_empty() {
            "every entry uid 0, gid 0".to_string()
        } else {
            format!("{bad_owner:?}")
        },
    )?;

    // The spec in the image is the repository's.
    let image_spec = file(SPEC_PATH);
    r.line(
        image_spec == Some(repo_spec.as_bytes()),
        "spec",
        match image_spec {
            None => format!("{SPEC_PATH} missing"),
            Some(s) if s == repo_spec.as_bytes() => format!("{SPEC_PATH} equals the repository's"),
            Some(_) => format!("{SPEC_PATH} differs from the repository's"),
        },
    )?;
    let spec = match Spec::from_toml_str(repo_spec) {
        Ok(s) => s,
        Err(e) => {
            r.line(false, "spec valid", e)?;
            return Ok(());
        }
    };
    let server_path = spec.server().binary();
    let init = file(INIT_PATH);
    let server = file(server_path);
    r.line(
        init.is_some_and(is_elf) && server.is_some_and(is_elf),
        "init and server present",
        format!("/init and {server_path} must be ELF files"),
    )?;

    // Which ELF files may exist: init, server, their interpreter and library
    // closure (resolved inside the image), the stream-guard module and the
    // kernel modules (relocatable objects, never executed).
    let mut may_exec: BTreeSet<String> = [INIT_PATH.to_string(), server_path.to_string()].into();
    let mut may_be_elf = may_exec.clone();
    let mut queue: Vec<&[u8]> = init.into_iter().chain(server).collect();
    let test_image = manifest.profile == Profile::Test;
    let modules = [Some(STREAM_GUARD_PATH), test_image.then_some(INTRUDER_PATH)];
    for path in modules.into_iter().flatten() {
        if let Some(m) = file(path) {
            // Valkey refuses to load a module file without execute
            // permission; the server maps it, nothing can execve it (it has
            // no entry point).
            may_exec.insert(path.into());
            may_be_elf.insert(path.into());
            queue.push(m);
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(bytes) = queue.pop() {
        let Ok(deps) = dynamic_deps(bytes) else {
            continue;
        };
        if let Some(i) = deps.interp {
            may_exec.insert(i.clone());
            may_be_elf.insert(i);
        }
        for n in deps.needed {
            let p = format!("{LIB_DIR}/{n}");
            if seen.insert(p.clone()) {
                may_be_elf.insert(p.clone());
                if let Some(b) = file(&p) {
                    queue.push(b);
                }
            }
        }
    }
    let module_prefix = format!("{MODULES_DIR}/");
    let mut bad_exec = Vec::new();
    let mut bad_elf = Vec::new();
    let mut scripts = Vec::new();
    let mut bad_names = Vec::new();
    let mut bad_content = Vec::new();
    let mut bad_types = Vec::new();
    for e in entries {
        let path = e.abs_path();
        let base = path.rsplit('/').next().unwrap_or_default();
        if FORBIDDEN_NAMES.contains(&base) || base.starts_with("python") || base.starts_with("lua")
        {
            bad_names.push(path.clone());
        }
        match e.file_type() {
            S_IFDIR => continue,
            S_IFCHR if path == CONSOLE && e.rdev == (5, 1) => continue,
            S_IFREG => {}
            other => {
                bad_types.push(format!("{path} (type {other:o})"));
                continue;
            }
        }
        if e.mode & 0o6000 != 0 || (e.is_executable() && !may_exec.contains(&path)) {
            bad_exec.push(path.clone());
        }
        if is_elf(e.data) {
            let is_module = path.starts_with(&module_prefix)
                && path.ends_with(".ko")
                && elf::elf_type(e.data) == Ok(elf::ET_REL);
            if !is_module && !may_be_elf.contains(&path) {
                bad_elf.push(path.clone());
            }
        }
        if e.data.starts_with(b"#!") {
            scripts.push(path.clone());
        }
        for (sig, what) in FORBIDDEN_CONTENT {
            if contains_bytes(e.data, sig) {
                bad_content.push(format!("{path} contains {what}"));
            }
        }
    }
    let list = |v: &Vec<String>, ok: String| if v.is_empty() { ok } else { format!("{v:?}") };
    r.line(
        bad_types.is_empty(),
        "only files, directories and /dev/console",
        list(&bad_types, "yes".into()),
    )?;
    r.line(
        bad_exec.is_empty(),
        "only init, server, its loader and the module executable",
        list(&bad_exec, format!("{may_exec:?}")),
    )?;
    r.line(
        bad_elf.is_empty(),
        "no other ELF binaries",
        list(&bad_elf, "init, server, their libraries, modules".into()),
    )?;
    r.line(
        bad_names.is_empty(),
        "no shell, sshd, package manager or interpreter (names)",
        list(&bad_names, "none".into()),
    )?;
    bad_content.extend(scripts.iter().map(|s| format!("{s} is a #! script")));
    r.line(
        bad_content.is_empty(),
        "no shell, sshd, package manager or interpreter (content)",
        list(&bad_content, "none".into()),
    )?;
    r.line(
        !server.is_some_and(|s| contains_bytes(s, LUA_MARKER)),
        "no luaL_newstate in the server",
        if server.is_some_and(|s| contains_bytes(s, LUA_MARKER)) {
            "the server embeds Lua"
        } else {
            "built without Lua"
        },
    )?;

    // The stream guard is what keeps a visitor's XADD to the one allowed
    // shape (issue 7): an image whose spec has visitors must carry it, and the
    // config must load it with the spec's users and limits.
    let guard = file(STREAM_GUARD_PATH);
    let guard_needed = !spec.visitors().is_empty();
    r.line(
        guard.is_some() || !guard_needed,
        "stream-guard module present",
        match (guard, guard_needed) {
            (Some(g), _) => format!("{STREAM_GUARD_PATH} ({} bytes)", g.len()),
            (None, true) => {
                format!("{STREAM_GUARD_PATH} missing, but the spec has append-only users")
            }
            (None, false) => "no append-only users, no guard needed".into(),
        },
    )?;
    let module = guard.map(|_| ModuleLoad::stream_guard(&spec));
    if let Some(m) = &module {
        let conf = file(spec.server().config()).unwrap_or_default();
        let loads = String::from_utf8_lossy(conf)
            .lines()
            .any(|l| l.starts_with("loadmodule ") && l.contains(&m.path));
        r.line(
            loads,
            "stream-guard loaded by the config",
            if loads {
                format!("{} has `loadmodule {}`", spec.server().config(), m.path)
            } else {
                format!("{} does not load {}", spec.server().config(), m.path)
            },
        )?;
    }
    // The config is exactly what the spec renders to (plus, in a test image
    // holding the intruder module, its loadmodule line).
    let mut want = valkey_conf::render(&spec, module.as_ref());
    let intruder = file(INTRUDER_PATH);
    if test_image && intruder.is_some() {
        valkey_conf::add_intruder(&mut want);
    }
    let have = file(spec.server().config());
    r.line(
        have == Some(want.as_bytes()),
        "server config as specified",
        if have == Some(want.as_bytes()) {
            format!("{} re-renders identically", spec.server().config())
        } else {
            format!(
                "{} differs from the spec's rendering",
                spec.server().config()
            )
        },
    )?;

    let marker = init.is_some_and(|i| contains_bytes(i, TEST_HOOKS_MARKER));
    let ok = test_image || !marker;
    r.line(
        ok,
        "no test features in a production image",
        match (manifest.profile, marker) {
            (Profile::Production, true) => "production image whose /init has test-hooks",
            (Profile::Production, false) => "production /init has no test-hooks",
            (Profile::Test, _) => "test image",
        },
    )?;

    // The intruder module is an attacker's foothold by design: a production
    // image must hold no trace of it (the file, its loadmodule line, or its
    // marker in any file).
    let conf = file(spec.server().config()).unwrap_or_default();
    let loads_intruder = String::from_utf8_lossy(conf)
        .lines()
        .any(|l| l.trim_start().starts_with("loadmodule") && l.contains("intruder"));
    let marked: Vec<String> = entries
        .iter()
        .filter(|e| contains_bytes(e.data, INTRUDER_MARKER))
        .map(|e| e.abs_path())
        .collect();
    let mut traces = Vec::new();
    if intruder.is_some() {
        traces.push(format!("{INTRUDER_PATH} present"));
    }
    if loads_intruder {
        traces.push(format!("{} loads it", spec.server().config()));
    }
    if !marked.is_empty() {
        traces.push(format!("its marker in {marked:?}"));
    }
    r.line(
        test_image || traces.is_empty(),
        "no intruder module in a production image",
        match (test_image, traces.is_empty()) {
            (false, true) => "no module file, no loadmodule line, no marker".to_owned(),
            (false, false) => format!("production image with the intruder: {}", traces.join("; ")),
            (true, true) => "test image without the intruder module".to_owned(),
            (true, false) => format!("test image: {}", traces.join("; ")),
        },
    )?;
    Ok(())
}

/// Every file under the modules directory is a kernel module: an ELF
/// relocatable object, stored plain or compressed (then looked at
/// decompressed, content checks included).
fn module_checks(r: &mut Report<'_>, entries: &[cpio::Entry<'_>]) -> Result<()> {
    let prefix = format!("{MODULES_DIR}/");
    let mut count = 0usize;
    let mut compressed = BTreeSet::new();
    let mut bad = Vec::new();
    for e in entries {
        let path = e.abs_path();
        if !path.starts_with(&prefix) || e.file_type() != S_IFREG {
            continue;
        }
        count += 1;
        let base = path.rsplit('/').next().unwrap_or_default();
        let Some((_, how)) = Compression::of(base) else {
            bad.push(format!("{path}: not a module file name"));
            continue;
        };
        if how != Compression::None {
            compressed.insert(format!("{how:?}"));
        }
        match kmod::decompress(e.data, how) {
            Ok(obj) if elf::elf_type(&obj) == Ok(elf::ET_REL) => {
                for (sig, what) in FORBIDDEN_CONTENT {
                    if contains_bytes(&obj, sig) {
                        bad.push(format!("{path} contains {what}"));
                    }
                }
            }
            Ok(_) => bad.push(format!("{path}: not an ELF relocatable object")),
            Err(err) => bad.push(format!("{path}: {err:#}")),
        }
    }
    r.line(
        bad.is_empty(),
        "kernel modules",
        if bad.is_empty() {
            let how: Vec<String> = compressed.into_iter().collect();
            format!(
                "{count} files, each an ELF relocatable object{}",
                if how.is_empty() {
                    String::new()
                } else {
                    format!(" (stored {}, read decompressed)", how.join(", "))
                }
            )
        } else {
            format!("{bad:?}")
        },
    )?;
    Ok(())
}

/// The pinned package `pin` from the input cache (its hash checked again),
/// unpacked into a fresh directory.
fn unpack_pinned(cache: &Path, pin: &Pin, into: &Path) -> Result<PathBuf> {
    let dir = cache.join("debs").join(&pin.sha256);
    let deb = fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "{} {} is not in {} (`cargo xtask image` fetches it)",
                pin.name,
                pin.version,
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("no .deb in {}", dir.display()))?;
    let sha = sha256_file(&deb)?;
    ensure!(
        sha == pin.sha256,
        "{} has sha256 {sha}, pinned {}",
        deb.display(),
        pin.sha256
    );
    let tree = into.join(&pin.sha256);
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .output()
        .context("cannot run dpkg-deb (package `dpkg`)")?;
    ensure!(
        out.status.success(),
        "dpkg-deb -x {} failed: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(tree)
}

/// Regular files (never symlinks) under `dir`, by file name.
fn files_by_name(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            files_by_name(&e.path(), out)?;
        } else if ft.is_file() {
            out.insert(e.file_name().to_string_lossy().into_owned(), e.path());
        }
    }
    Ok(())
}

/// The image's kernel, modules, loader and libraries are the pinned
/// packages' files, byte for byte: nothing of the build host's slipped in.
fn package_checks(
    r: &mut Report<'_>,
    dir: &Path,
    manifest: &Manifest,
    entries: &[cpio::Entry<'_>],
    cache: &Path,
) -> Result<()> {
    let scratch = temp_dir_in(&std::env::temp_dir(), "appliance-verify")?;
    let compare = |what: &str, files: &[(String, &[u8])], package: &BTreeMap<String, PathBuf>| {
        let mut bad = Vec::new();
        for (path, data) in files {
            let base = path.rsplit('/').next().unwrap_or_default();
            match package.get(base).map(fs::read) {
                Some(Ok(want)) if want == *data => {}
                Some(Ok(_)) => bad.push(format!("{path} differs from {base} in the {what}")),
                Some(Err(e)) => bad.push(format!("{path}: {e}")),
                None => bad.push(format!("{path} is not in the {what}")),
            }
        }
        bad
    };

    let kernel = manifest
        .pins
        .iter()
        .find(|p| p.name.starts_with("linux-image-"));
    let res = kernel
        .context("the manifest pins no linux-image-* package")
        .and_then(|pin| {
            let tree = unpack_pinned(cache, pin, scratch.path())?;
            let mut package = BTreeMap::new();
            for base in ["lib/modules", "usr/lib/modules", "boot"] {
                if tree.join(base).is_dir() {
                    files_by_name(&tree.join(base), &mut package)?;
                }
            }
            let vmlinuz: Vec<&PathBuf> = package
                .iter()
                .filter(|(n, _)| n.starts_with("vmlinuz-"))
                .map(|(_, p)| p)
                .collect();
            let [vmlinuz] = vmlinuz.as_slice() else {
                bail!("the package holds {} vmlinuz files", vmlinuz.len());
            };
            ensure!(
                fs::read(vmlinuz)? == fs::read(dir.join("vmlinuz"))?,
                "vmlinuz differs from the package's {}",
                vmlinuz.display()
            );
            let prefix = format!("{MODULES_DIR}/");
            let modules: Vec<(String, &[u8])> = entries
                .iter()
                .filter(|e| e.file_type() == S_IFREG && e.abs_path().starts_with(&prefix))
                .map(|e| (e.abs_path(), e.data))
                .collect();
            let bad = compare("kernel package", &modules, &package);
            ensure!(bad.is_empty(), "{bad:?}");
            Ok(format!(
                "vmlinuz and {} modules are {} {}'s files",
                modules.len(),
                pin.name,
                pin.version
            ))
        });
    r.result("kernel from the pinned package", res)?;

    let res = (|| -> Result<String> {
        let mut package = BTreeMap::new();
        let mut names = Vec::new();
        for name in LIB_PACKAGES {
            let pin = manifest
                .pins
                .iter()
                .find(|p| p.name == name)
                .with_context(|| format!("the manifest pins no {name} package"))?;
            let tree = unpack_pinned(cache, pin, scratch.path())?;
            for d in lib_dirs(&tree) {
                files_by_name(&d, &mut package)?;
            }
            names.push(format!("{} {}", pin.name, pin.version));
        }
        let libs: Vec<(String, &[u8])> = entries
            .iter()
            .filter(|e| e.file_type() == S_IFREG)
            .map(|e| (e.abs_path(), e.data))
            .filter(|(p, _)| LIB_PREFIXES.iter().any(|d| p.starts_with(d)))
            .collect();
        ensure!(!libs.is_empty(), "no loader or library in the image");
        let bad = compare("pinned library packages", &libs, &package);
        ensure!(bad.is_empty(), "{bad:?}");
        let paths: Vec<&str> = libs.iter().map(|(p, _)| p.as_str()).collect();
        Ok(format!(
            "{} are files of {}",
            paths.join(", "),
            names.join(" and ")
        ))
    })();
    r.result("loader and libraries from the pinned packages", res)?;
    Ok(())
}

/// The runtime library packages of `[libc]` and `[libgcc]` in
/// `image/sources.toml`: every loader and library in the image is theirs.
pub const LIB_PACKAGES: [&str; 2] = ["libc6", "libgcc-s1"];

fn image_checks(
    r: &mut Report<'_>,
    dir: &Path,
    manifest: &Manifest,
    zst: &[u8],
    opts: &VerifyOptions,
) -> Result<()> {
    let efi = fs::read(dir.join("appliance.efi")).unwrap_or_default();
    let kernel = fs::read(dir.join("vmlinuz")).unwrap_or_default();
    let res = pe::sections(&efi).map_err(Into::into).and_then(|secs| {
        let get = |n: &str| secs.iter().find(|s| s.name == n).map(|s| s.data);
        ensure!(
            get(".linux") == Some(kernel.as_slice()),
            ".linux is not vmlinuz"
        );
        ensure!(
            get(".initrd") == Some(zst),
            ".initrd is not initramfs.cpio.zst"
        );
        ensure!(
            get(".cmdline") == Some(manifest.cmdline.as_bytes()),
            ".cmdline is not the manifest's"
        );
        Ok(format!(
            "kernel, initramfs and cmdline match ({})",
            manifest.cmdline
        ))
    });
    r.result("uki sections", res)?;

    let disk = dir.join("disk.raw");
    let res = gpt::read_esp(&disk).map_err(Into::into).and_then(|esp| {
        let fs = fat::FatReader::new(&esp)?;
        let files = fs.walk()?;
        ensure!(files == [ESP_BOOT_PATH], "ESP holds {files:?}");
        ensure!(
            fs.read_file(ESP_BOOT_PATH)? == efi,
            "{ESP_BOOT_PATH} is not appliance.efi"
        );
        Ok(format!(
            "GPT valid, ESP holds only {ESP_BOOT_PATH} = appliance.efi"
        ))
    });
    r.result("disk", res)?;

    for (tar, raw) in [("image.tar.gz", "disk.raw"), ("data.tar.gz", "data.raw")] {
        let res = gcetar::member_matches(&dir.join(tar), &dir.join(raw))
            .map(|()| format!("one member disk.raw = {raw}"))
            .map_err(Into::into);
        r.result(&format!("gce archive {tar}"), res)?;
    }

    if opts.gce_disk_sizes {
        let len = fs::metadata(dir.join("disk.raw")).map_or(0, |m| m.len());
        r.line(
            len > 0 && len % gpt::GIB == 0,
            "disk size importable by GCE",
            format!("{len} bytes (GCE needs a multiple of 1 GiB)"),
        )?;
    }

    let res = (|| -> Result<String> {
        let mut sb = [0u8; 1024];
        let mut f = fs::File::open(dir.join("data.raw"))?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1024))?;
        f.read_exact(&mut sb)?;
        ensure!(
            sb.get(56..58) == Some([0x53, 0xEF].as_slice()),
            "not ext2/3/4"
        );
        let label = sb.get(120..136).unwrap_or_default();
        let label = String::from_utf8_lossy(label)
            .trim_end_matches('\0')
            .to_string();
        ensure!(label == DATA_LABEL, "label is {label:?}");
        Ok(format!("ext4 labelled {label}"))
    })();
    r.result("data disk", res)?;
    Ok(())
}

fn size_checks(r: &mut Report<'_>, dir: &Path, entries: &[cpio::Entry<'_>]) -> Result<()> {
    let size = |n: &str| fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0);
    let entry = |p: &str| {
        entries
            .iter()
            .find(|e| e.abs_path() == p)
            .map_or(0, |e| e.data.len() as u64)
    };
    let modules: u64 = entries
        .iter()
        .filter(|e| e.abs_path().starts_with(&format!("{MODULES_DIR}/")))
        .map(|e| e.data.len() as u64)
        .sum();
    let spec_server = Spec::from_toml_str(
        std::str::from_utf8(
            entries
                .iter()
                .find(|e| e.abs_path() == SPEC_PATH)
                .map_or(&[][..], |e| e.data),
        )
        .unwrap_or_default(),
    )
    .map(|s| s.server().binary().to_owned())
    .unwrap_or_default();
    r.line(true, "size kernel", mib(size("vmlinuz")))?;
    r.line(true, "size modules", mib(modules))?;
    r.line(true, "size server", mib(entry(&spec_server)))?;
    r.line(true, "size init", mib(entry(INIT_PATH)))?;
    r.line(
        true,
        "size initramfs (compressed)",
        mib(size("initramfs.cpio.zst")),
    )?;
    let uki_size = size("appliance.efi");
    r.line(
        uki_size <= UKI_MAX_BYTES,
        "size uki",
        format!("{} (goal <= {})", mib(uki_size), mib(UKI_MAX_BYTES)),
    )?;
    Ok(())
}
