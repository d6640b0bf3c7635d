//! Assembly: already-fetched, already-built inputs -> every output under
//! `target/appliance/` (design §8), byte-identical for identical inputs.
//!
//! Each step runs in its own fresh scratch directory under `<out>.work/`,
//! reads only its declared inputs and hands back its outputs; the finished
//! set replaces `<out>` at the end, so a failed build never leaves a mix of
//! old and new files. Every step prints what it does and how long it took.
//!
//! The initramfs holds exactly: `/init`, the server binary and (if dynamic)
//! its ELF interpreter and libraries, the `stream-guard` module and its
//! libraries (and, in a test image only, the `intruder` module),
//! `/etc/valkey/valkey.conf`, `/etc/appliance.toml`,
//! `/etc/modules.order`, the kernel modules under `/lib/modules/`, the mount
//! points init uses, and `/dev/console` (the kernel opens it for init's
//! stdio before any devtmpfs exists). Nothing else.
#![forbid(unsafe_code)]

use appliance_spec::Spec;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{bail, ensure, Context, Result};
use crate::manifest::{hash_file, sha256_hex, FileEntry, InitramfsEntry, Manifest, Pin, Profile};
use crate::valkey_conf::{self, ModuleLoad};
use crate::{ext4, uki};
use image_formats::cpio::{self, Archive};
use image_formats::elf::{dynamic_deps, is_elf};
use image_formats::{fat, gcetar, gpt};
use image_layout::{
    ModulesOrder, CONSOLE, INIT_PATH, INTRUDER_PATH, LIB_DIR, MODULES_DIR, MODULES_ORDER_PATH,
    MOUNT_POINTS, SPEC_PATH, STREAM_GUARD_PATH,
};
/// The path of the UKI on the ESP: the removable-media default boot path.
pub const ESP_BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// Every file `assemble` writes into the output directory.
pub const OUTPUTS: [&str; 9] = [
    "appliance.efi",
    "data.raw",
    "data.tar.gz",
    "disk.raw",
    "image.tar.gz",
    "initramfs.cpio.zst",
    "manifest.json",
    "vmlinuz",
    "appliance.cmdline",
];

/// The inputs, already fetched and verified by the pins/fetch/build steps.
#[derive(Debug, Clone)]
pub struct AssembleInputs {
    /// The kernel image (`vmlinuz-*` from the pinned package).
    pub kernel: PathBuf,
    /// Kernel module files (`*.ko`), placed under [`MODULES_DIR`] by file name.
    pub modules: Vec<PathBuf>,
    /// The load order, stored as [`MODULES_ORDER_PATH`].
    pub modules_order: ModulesOrder,
    /// The server binary (`valkey-server`).
    pub server: PathBuf,
    /// The `init` binary (production or test profile build).
    pub init: PathBuf,
    /// The `stream-guard` Valkey module, when built.
    pub stream_guard: Option<PathBuf>,
    /// TEST IMAGES ONLY: the `intruder` Valkey module (`assemble` refuses
    /// it for a production image).
    pub intruder: Option<PathBuf>,
    /// The spec (`appliance.toml`), stored as [`SPEC_PATH`].
    pub spec: PathBuf,
    /// systemd-boot's `linuxx64.efi.stub`.
    pub stub: PathBuf,
    /// Directories to find the shared libraries of a dynamic server in.
    pub lib_dirs: Vec<PathBuf>,
    /// The input pins, recorded in the manifest.
    pub pins: Vec<Pin>,
}

/// Knobs that are not inputs.
#[derive(Debug, Clone, Copy)]
pub struct AssembleOptions {
    /// `production` or `test`.
    pub profile: Profile,
    /// Every timestamp in every output.
    pub source_date_epoch: u64,
    /// Size of `disk.raw` (GCE: a multiple of 1 GiB).
    pub disk_size: u64,
    /// Size of `data.raw`.
    pub data_size: u64,
    /// Size of the ESP (FAT32 needs at least ~33 MiB with 512-byte clusters).
    pub esp_size: u64,
}

impl AssembleOptions {
    /// The defaults: 1 GiB boot disk (GCE's minimum), 1 GiB data disk.
    pub fn new(profile: Profile, source_date_epoch: u64) -> AssembleOptions {
        AssembleOptions {
            profile,
            source_date_epoch,
            disk_size: gpt::GIB,
            data_size: gpt::GIB,
            esp_size: fat::ESP_SIZE,
        }
    }
}

/// The shared objects `roots` need, transitively: image path -> (host path,
/// executable). The interpreter is executable (the kernel opens it for exec);
/// libraries are not (the interpreter maps them).
pub fn resolve_libraries(
    roots: &[&[u8]],
    lib_dirs: &[PathBuf],
) -> Result<BTreeMap<String, (PathBuf, bool)>> {
    let find = |name: &str| -> Result<PathBuf> {
        ensure!(
            !name.is_empty() && !name.contains('/'),
            "library name `{name}` is not a plain file name"
        );
        lib_dirs
            .iter()
            .map(|d| d.join(name))
            // Never through a symlink: one in a package tree can point at
            // the build host's own file.
            .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
            .with_context(|| format!("library `{name}` not found in {lib_dirs:?}"))
    };
    let mut out: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    let mut queue: Vec<Vec<u8>> = roots.iter().map(|r| r.to_vec()).collect();
    while let Some(bytes) = queue.pop() {
        if !is_elf(&bytes) {
            continue;
        }
        let deps = dynamic_deps(&bytes)?;
        if let Some(interp) = &deps.interp {
            if !out.contains_key(interp) {
                let base = Path::new(interp)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("bad interpreter path `{interp}`"))?;
                ensure!(
                    interp.starts_with('/'),
                    "interpreter `{interp}` is not absolute"
                );
                let host = find(base)?;
                out.insert(interp.clone(), (host, true));
            }
        }
        for name in deps.needed {
            let image_path = format!("{LIB_DIR}/{name}");
            if out.contains_key(&image_path) {
                continue;
            }
            let host = find(&name)?;
            queue.push(fs::read(&host).with_context(|| format!("read {}", host.display()))?);
            out.insert(image_path, (host, false));
        }
    }
    Ok(out)
}

// ---- steps ------------------------------------------------------------------

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// Runs `f` in a fresh scratch directory, printing the step and its duration.
fn step<T>(work: &Path, name: &str, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let dir = work.join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clean {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    println!("==> {name}");
    let start = Instant::now();
    let r = f(&dir).with_context(|| format!("step {name}"))?;
    println!("<== {name}: {:.1}s", start.elapsed().as_secs_f64());
    Ok(r)
}

/// Moves a step's output into the staging directory.
fn publish(from: &Path, staging: &Path, name: &str) -> Result<()> {
    fs::rename(from.join(name), staging.join(name))
        .with_context(|| format!("move {name} to {}", staging.display()))
}

/// The initramfs archive (uncompressed) and its entry list.
pub fn build_initramfs(inputs: &AssembleInputs, spec: &Spec, spec_text: &[u8]) -> Result<Archive> {
    let mut a = Archive::new();
    let server = read(&inputs.server)?;
    let init = read(&inputs.init)?;
    ensure!(
        is_elf(&init),
        "init {} is not an ELF file",
        inputs.init.display()
    );
    let guard = inputs.stream_guard.as_deref().map(read).transpose()?;
    let intruder = inputs.intruder.as_deref().map(read).transpose()?;

    let mut roots: Vec<&[u8]> = vec![&init, &server];
    roots.extend(guard.as_deref());
    roots.extend(intruder.as_deref());
    for (image_path, (host, exec)) in resolve_libraries(&roots, &inputs.lib_dirs)? {
        a.add_file(&image_path, if exec { 0o755 } else { 0o644 }, read(&host)?)?;
    }

    a.add_file(INIT_PATH, 0o755, init)?;
    a.add_file(spec.server().binary(), 0o755, server)?;
    let module = guard.map(|g| -> Result<ModuleLoad> {
        // 0755: Valkey refuses to load a module without execute permission.
        a.add_file(STREAM_GUARD_PATH, 0o755, g)?;
        Ok(ModuleLoad::stream_guard(spec))
    });
    let module = module.transpose()?;
    let mut conf = valkey_conf::render(spec, module.as_ref());
    if let Some(i) = intruder {
        a.add_file(INTRUDER_PATH, 0o755, i)?;
        valkey_conf::add_intruder(&mut conf);
    }
    a.add_file(spec.server().config(), 0o644, conf.into_bytes())?;
    a.add_file(SPEC_PATH, 0o644, spec_text.to_vec())?;
    a.add_file(
        MODULES_ORDER_PATH,
        0o644,
        inputs.modules_order.render().into_bytes(),
    )?;
    a.add_dir(MODULES_DIR, 0o755)?;
    for m in &inputs.modules {
        let name = m
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("bad module path {}", m.display()))?;
        a.add_file(&format!("{MODULES_DIR}/{name}"), 0o644, read(m)?)?;
    }
    for dir in MOUNT_POINTS.into_iter().chain([spec.server().data_dir()]) {
        a.add_dir(dir, 0o755)?;
    }
    a.add_char_dev(CONSOLE, 0o600, 5, 1)?;
    Ok(a)
}

fn initramfs_entries(cpio: &[u8]) -> Result<Vec<InitramfsEntry>> {
    Ok(cpio::parse(cpio)?
        .iter()
        .map(|e| InitramfsEntry {
            path: e.abs_path(),
            mode: format!("{:o}", e.mode),
            size: e.data.len() as u64,
            sha256: sha256_hex(e.data),
        })
        .collect())
}

/// Builds every output into `out` (replacing it). Returns the manifest.
pub fn assemble(inputs: &AssembleInputs, out: &Path, opts: &AssembleOptions) -> Result<Manifest> {
    let total = Instant::now();
    let mtime = u32::try_from(opts.source_date_epoch)
        .context("SOURCE_DATE_EPOCH does not fit the cpio's 32-bit mtime")?;
    ensure!(
        inputs.intruder.is_none() || opts.profile == Profile::Test,
        "the intruder module goes into a test image only, never into a {} image",
        opts.profile.as_str()
    );
    let spec_text = read(&inputs.spec)?;
    let spec =
        Spec::from_toml_str(std::str::from_utf8(&spec_text).context("the spec is not UTF-8")?)?;
    let out_name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("output directory has no name")?;
    let parent = out.parent().unwrap_or(Path::new("."));
    let work = parent.join(format!("{out_name}.work"));
    let staging = work.join("out");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clean {}", work.display()))?;
    }
    fs::create_dir_all(&staging)?;

    let (cpio, entries) = step(&work, "initramfs", |dir| {
        let archive = build_initramfs(inputs, &spec, &spec_text)?;
        let cpio = archive.write(mtime)?;
        // Level 19, single-threaded: deterministic, and the UKI must stay
        // under 20 MiB. (ruzstd, used to read it back, only compresses at
        // its fastest level.)
        let zst = zstd::bulk::compress(cpio.as_slice(), 19)?;
        fs::write(dir.join("initramfs.cpio.zst"), &zst)?;
        println!(
            "    {} entries, {} bytes, {} compressed",
            archive.len(),
            cpio.len(),
            zst.len()
        );
        publish(dir, &staging, "initramfs.cpio.zst")?;
        let entries = initramfs_entries(&cpio)?;
        Ok((zst, entries))
    })?;

    let kernel = step(&work, "kernel", |dir| {
        let k = read(&inputs.kernel)?;
        fs::write(dir.join("vmlinuz"), &k)?;
        fs::write(dir.join("appliance.cmdline"), format!("{}\n", uki::CMDLINE))?;
        publish(dir, &staging, "vmlinuz")?;
        publish(dir, &staging, "appliance.cmdline")?;
        Ok(k)
    })?;

    let efi = step(&work, "uki", |dir| {
        let stub = read(&inputs.stub)?;
        let osrel = uki::os_release(spec.name(), &opts.source_date_epoch.to_string());
        let efi = uki::build(&stub, &osrel, uki::CMDLINE, &cpio, &kernel)?;
        fs::write(dir.join("appliance.efi"), &efi)?;
        println!("    {} bytes", efi.len());
        publish(dir, &staging, "appliance.efi")?;
        Ok(efi)
    })?;

    step(&work, "disk", |dir| {
        let esp_size = opts.esp_size;
        let seed = sha2::Sha256::digest(&efi);
        let layout = gpt::Layout::new(opts.disk_size, esp_size, &seed)?;
        let params = fat::FatParams {
            size: esp_size,
            hidden_sectors: u32::try_from(layout.esp_first)?,
            volume_id: seed
                .first_chunk::<4>()
                .map_or(0, |b| u32::from_le_bytes(*b)),
            mtime: opts.source_date_epoch,
        };
        let esp = fat::build(&[(ESP_BOOT_PATH, &efi)], "APPLIANCE", &params)?;
        gpt::write_disk(&dir.join("disk.raw"), &layout, &esp)?;
        publish(dir, &staging, "disk.raw")
    })?;

    step(&work, "gce-tar", |dir| {
        gcetar::write(
            &staging.join("disk.raw"),
            &dir.join("image.tar.gz"),
            opts.source_date_epoch,
        )?;
        publish(dir, &staging, "image.tar.gz")
    })?;

    step(&work, "data-disk", |dir| {
        ext4::write(
            &dir.join("data.raw"),
            opts.data_size,
            opts.source_date_epoch,
        )?;
        gcetar::write(
            &dir.join("data.raw"),
            &dir.join("data.tar.gz"),
            opts.source_date_epoch,
        )?;
        publish(dir, &staging, "data.raw")?;
        publish(dir, &staging, "data.tar.gz")
    })?;

    let manifest = step(&work, "manifest", |_| {
        let mut files = Vec::new();
        for name in OUTPUTS.iter().filter(|n| **n != "manifest.json") {
            let (size, sha256) = hash_file(&staging.join(name))?;
            files.push(FileEntry {
                name: (*name).to_string(),
                size,
                sha256,
            });
        }
        let mut m = Manifest {
            schema: crate::manifest::SCHEMA,
            profile: opts.profile,
            source_date_epoch: opts.source_date_epoch,
            cmdline: uki::CMDLINE.to_string(),
            files,
            initramfs: entries,
            pins: inputs.pins.clone(),
        };
        m.normalise();
        fs::write(staging.join("manifest.json"), m.to_json()?)?;
        Ok(m)
    })?;

    replace_dir(&staging, out)?;
    fs::remove_dir_all(&work).with_context(|| format!("clean {}", work.display()))?;
    println!(
        "image ({}) in {}: {:.1}s",
        opts.profile.as_str(),
        out.display(),
        total.elapsed().as_secs_f64()
    );
    Ok(manifest)
}

/// Replaces `out` with `staging`, refusing to delete a directory holding
/// anything `assemble` did not write.
fn replace_dir(staging: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        for e in fs::read_dir(out)? {
            let e = e?;
            let name = e.file_name();
            let ok = name.to_str().is_some_and(|n| OUTPUTS.contains(&n));
            if !ok || !e.file_type()?.is_file() {
                bail!(
                    "{} holds {:?}, which assemble did not write; not replacing it",
                    out.display(),
                    name
                );
            }
        }
        fs::remove_dir_all(out).with_context(|| format!("remove {}", out.display()))?;
    }
    fs::rename(staging, out).with_context(|| format!("move the image to {}", out.display()))
}

use sha2::Digest as _;
