//! The whole pipeline, step by step — pinned inputs, the sandboxed Valkey
//! build, our own binaries, the kernel module subset, then
//! [`assemble`](crate::assemble::assemble) into the output directory — behind
//! one [`BuildConfig`].
//!
//! Every step prints what it does and how long it took; a failing step names
//! the input or tool that is missing.

use crate::assemble::{self, AssembleInputs, AssembleOptions};
use crate::error::{bail, Context, Result, Tool};
use crate::fetch::{self, Cache};
use crate::kmod;
use crate::manifest::{Manifest, Pin, Profile};
use crate::pins::Pins;
use crate::sandbox::Isolation;
use crate::{symver, valkey};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Everything one image build needs: which appliance (`spec`), from which
/// pinned inputs (`sources`), into which directory (`out`), with which input
/// cache (`cache`), in which `profile`, and where our own binaries come from.
/// Nothing else is read from a fixed path, so another spec builds with no
/// code change.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The appliance spec (`appliance.toml`), copied into the image as
    /// [`image_layout::SPEC_PATH`] and rendered into the server config.
    pub spec: PathBuf,
    /// The pinned inputs (`sources.toml`): kernel, C library, GCC runtime,
    /// UKI stub, Valkey source.
    pub sources: PathBuf,
    /// The output directory (replaced; it may hold only what a build writes).
    pub out: PathBuf,
    /// The input cache: fetched packages, unpacked trees, the Valkey build.
    pub cache: PathBuf,
    /// `production` or `test`.
    pub profile: Profile,
    /// `/init` and the Valkey modules.
    pub binaries: Binaries,
    /// Every timestamp in every output ([`source_date_epoch`] finds it).
    pub source_date_epoch: u64,
    /// Build Valkey without namespaces (only when they cannot be made).
    pub no_sandbox: bool,
}

/// Where `/init` and the Valkey modules come from.
#[derive(Debug, Clone)]
pub enum Binaries {
    /// Built here with `cargo build --release` in this source tree (the
    /// workspace root), into `target/image-build/` there.
    Workspace(PathBuf),
    /// Already built, e.g. by another CI job.
    Prebuilt(OwnBinaries),
}

/// The spec a workspace builds unless told otherwise, relative to its root.
pub const WORKSPACE_SPEC: &str = "image/appliance.toml";
/// The pins a workspace builds from unless told otherwise.
pub const WORKSPACE_SOURCES: &str = "image/sources.toml";

impl BuildConfig {
    /// The in-tree appliance of the workspace at `root`: its
    /// [`WORKSPACE_SPEC`] and [`WORKSPACE_SOURCES`], the input cache
    /// [`fetch::DEFAULT_CACHE`], our binaries built there, the sandbox on,
    /// and SOURCE_DATE_EPOCH from the environment or HEAD's commit time.
    pub fn in_workspace(root: &Path, profile: Profile, out: &Path) -> Result<BuildConfig> {
        Ok(BuildConfig {
            spec: root.join(WORKSPACE_SPEC),
            sources: root.join(WORKSPACE_SOURCES),
            out: out.to_path_buf(),
            cache: root.join(fetch::DEFAULT_CACHE),
            profile,
            binaries: Binaries::Workspace(root.to_path_buf()),
            source_date_epoch: source_date_epoch(Some(root))?,
            no_sandbox: false,
        })
    }
}

/// Where a profile's image goes in a workspace unless told otherwise.
pub fn default_out(root: &Path, profile: Profile) -> PathBuf {
    match profile {
        Profile::Production => root.join("target/appliance"),
        Profile::Test => root.join("target/appliance-test"),
    }
}

/// Times one step and prints it.
pub fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {what}");
    let start = Instant::now();
    let result = f().with_context(|| format!("step `{what}` failed"));
    println!("<== {what}: {:.1}s", start.elapsed().as_secs_f64());
    result
}

/// `SOURCE_DATE_EPOCH` from the environment, else the commit time of HEAD in
/// `checkout`, so two builds of one commit carry the same timestamps.
pub fn source_date_epoch(checkout: Option<&Path>) -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number"));
    }
    let Some(root) = checkout else {
        bail!("set SOURCE_DATE_EPOCH: no checkout to read a commit time from");
    };
    let out = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .output()
        .map_err(|e| crate::Error::spawn(GIT, e))
        .context("cannot run git to read the commit time (set SOURCE_DATE_EPOCH instead)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("git log gave no commit time ({text:?}); set SOURCE_DATE_EPOCH"))
}

/// Builds one of our crates in release mode for the image, in a target
/// directory of its own, with paths remapped so the bytes do not depend on
/// where the repository is checked out.
pub fn cargo_release(
    root: &Path,
    package: &str,
    features: &[&str],
    target_dir: &Path,
) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release", "--locked", "-p", package])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .unwrap_or_else(|_| "/root/.cargo".into());
    cmd.env(
        "RUSTFLAGS",
        format!(
            "--remap-path-prefix={}=/appliance --remap-path-prefix={home}=/cargo",
            root.display()
        ),
    );
    let status = cmd
        .status()
        .map_err(|e| crate::Error::spawn(CARGO, e))
        .with_context(|| format!("cannot run cargo to build {package}"))?;
    if !status.success() {
        bail!("cargo build -p {package} failed ({status})");
    }
    Ok(())
}

const GIT: Tool = Tool {
    file: "git",
    package: "git",
};
const CARGO: Tool = Tool {
    file: "cargo",
    package: "cargo",
};

/// Our binaries for the image: `/init`, the stream-guard module and, for a
/// test image only, the intruder module.
#[derive(Debug, Clone)]
pub struct OwnBinaries {
    /// The `appliance` binary (with `test-hooks` in the test profile).
    pub init: PathBuf,
    /// `libstream_guard.so`.
    pub stream_guard: PathBuf,
    /// `libintruder.so`, built for the test profile only.
    pub intruder: Option<PathBuf>,
}

/// Builds [`OwnBinaries`] for `profile`.
pub fn own_binaries(root: &Path, profile: Profile) -> Result<OwnBinaries> {
    let (dir, features): (&str, &[&str]) = match profile {
        Profile::Production => ("target/image-build/production", &[]),
        Profile::Test => ("target/image-build/test", &["test-hooks"]),
    };
    let target = root.join(dir);
    timed(&format!("build /init ({profile:?})"), || {
        cargo_release(root, "appliance", features, &target)
    })?;
    // The module does not depend on the profile; one build serves both.
    let guard_target = root.join("target/image-build/module");
    timed("build the stream-guard module", || {
        cargo_release(root, "stream-guard", &["module"], &guard_target)
    })?;
    let intruder = match profile {
        Profile::Production => None,
        Profile::Test => {
            timed("build the intruder module (test image only)", || {
                cargo_release(root, "intruder", &["module"], &guard_target)
            })?;
            Some(guard_target.join("release/libintruder.so"))
        }
    };
    Ok(OwnBinaries {
        init: target.join("release/appliance"),
        stream_guard: guard_target.join("release/libstream_guard.so"),
        intruder,
    })
}

/// The pinned Valkey server, fetched and built (or taken from the cache),
/// with every other pinned input of `sources`.
pub fn pinned_valkey(
    sources: &Path,
    cache: &Cache,
    no_sandbox: bool,
) -> Result<(Pins, fetch::FetchedInputs, valkey::BuiltServer)> {
    let pins = Pins::load(sources)?;
    let fetched = timed("fetch pinned inputs", || fetch::fetch_all(&pins, cache))?;
    let isolation = Isolation::detect(no_sandbox)?;
    // Valkey's timestamps are a fixed constant, not the commit time, so every
    // commit shares one (cached) build.
    let built = timed("build Valkey without Lua", || {
        valkey::build(
            &fetched.valkey_orig,
            &pins.valkey.orig_sha256,
            cache,
            isolation,
            valkey::SOURCE_DATE_EPOCH,
        )
    })?;
    Ok((pins, fetched, built))
}

/// What building the image needs on the host, beyond the Rust toolchain.
pub const IMAGE_TOOLS: [Tool; 8] = [
    Tool {
        file: "make",
        package: "build-essential",
    },
    Tool {
        file: "cc",
        package: "build-essential",
    },
    Tool {
        file: "pkg-config",
        package: "pkg-config",
    },
    Tool {
        file: "strip",
        package: "binutils",
    },
    Tool {
        file: "mkfs.ext4",
        package: "e2fsprogs",
    },
    Tool {
        file: "dpkg-deb",
        package: "dpkg",
    },
    // Fetching a pinned input that is not in the cache.
    Tool {
        file: "apt-get",
        package: "apt",
    },
    // bindgen (valkey-module, for the stream-guard module) loads libclang.
    Tool {
        file: "/usr/lib/llvm-14/lib/libclang.so",
        package: "libclang-dev",
    },
];

/// Fails, naming the packages, unless the pinned library packages have the
/// loader and every library the server, init and the stream-guard module
/// need, and define every symbol version those (compiled on this host) and
/// the libraries themselves need; prints what they take from them.
fn pinned_libraries(inputs: &AssembleInputs, pins: &Pins) -> Result<()> {
    let mut named = vec![
        ("valkey-server".to_owned(), read(&inputs.server)?),
        ("/init".to_owned(), read(&inputs.init)?),
    ];
    if let Some(guard) = &inputs.stream_guard {
        named.push(("the stream-guard module".to_owned(), read(guard)?));
    }
    let roots: Vec<&[u8]> = named.iter().map(|(_, b)| b.as_slice()).collect();
    let packages = format!(
        "{} {} and {} {}",
        pins.libc.package, pins.libc.version, pins.libgcc.package, pins.libgcc.version
    );
    let libs = assemble::resolve_libraries(&roots, &inputs.lib_dirs).with_context(|| {
        format!("the image takes its loader and libraries only from the pinned {packages}")
    })?;
    let names: Vec<&str> = libs.keys().map(String::as_str).collect();
    println!("    from {packages}: {}", names.join(", "));
    let mut by_file = BTreeMap::new();
    for (image_path, (host, _)) in &libs {
        let file = image_path.rsplit('/').next().unwrap_or(image_path);
        by_file.insert(file.to_owned(), read(host)?);
    }
    let mut binaries: Vec<(&str, &[u8])> = named
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    binaries.extend(by_file.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    let missing = symver::missing_versions(&binaries, &by_file)?;
    if !missing.is_empty() {
        bail!(
            "symbol versions the pinned {packages} do not define (a build host newer than \
             the pinned release?): {}",
            missing.join(", ")
        );
    }
    println!("    every symbol version needed is defined there");
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Builds the image `cfg` describes into `cfg.out` and returns its manifest.
pub fn build(cfg: &BuildConfig) -> Result<Manifest> {
    let total = Instant::now();
    crate::error::require_tools(
        &IMAGE_TOOLS,
        "to build the image (Valkey, the stream-guard module, data.raw)",
    )?;
    let cache = Cache::new(&cfg.cache);
    let (pins, fetched, built) = pinned_valkey(&cfg.sources, &cache, cfg.no_sandbox)?;
    let own = match &cfg.binaries {
        Binaries::Workspace(root) => own_binaries(root, cfg.profile)?,
        Binaries::Prebuilt(own) => own.clone(),
    };

    let subset = timed("kernel module subset", || {
        kmod::module_subset(
            &fetched.kernel.modules_dir,
            &fetched.kernel.kver,
            &pins.kernel.modules,
        )
    })?;
    if !subset.builtin.is_empty() {
        println!(
            "    built into the kernel (not loaded): {}",
            subset.builtin.join(", ")
        );
    }
    let config = std::fs::read_to_string(&fetched.kernel.config)
        .with_context(|| format!("cannot read {}", fetched.kernel.config.display()))?;
    kmod::check_compression(&subset, &config)?;

    let inputs = AssembleInputs {
        kernel: fetched.kernel.vmlinuz.clone(),
        modules: subset.modules.iter().map(|m| m.path.clone()).collect(),
        modules_order: subset.modules_order()?,
        server: built.server.clone(),
        init: own.init,
        stream_guard: Some(own.stream_guard),
        intruder: own.intruder,
        spec: cfg.spec.clone(),
        stub: fetched.stub.clone(),
        // The pinned library packages' files, never the build host's: two
        // hosts with different glibc or GCC builds make the same image.
        lib_dirs: [&fetched.libc, &fetched.libgcc]
            .iter()
            .flat_map(|lib| fetch::lib_dirs(&lib.tree))
            .collect(),
        pins: vec![
            pin(
                &pins.kernel.package,
                &pins.kernel.version,
                &pins.kernel.sha256,
            ),
            pin(&pins.libc.package, &pins.libc.version, &pins.libc.sha256),
            pin(
                &pins.libgcc.package,
                &pins.libgcc.version,
                &pins.libgcc.sha256,
            ),
            pin(&pins.stub.package, &pins.stub.version, &pins.stub.sha256),
            pin(
                &pins.valkey.package,
                &pins.valkey.version,
                &pins.valkey.orig_sha256,
            ),
        ],
    };
    let options = AssembleOptions::new(cfg.profile, cfg.source_date_epoch);
    pinned_libraries(&inputs, &pins)?;
    let manifest = timed(&format!("assemble into {}", cfg.out.display()), || {
        assemble::assemble(&inputs, &cfg.out, &options)
    })?;
    println!(
        "image ({:?}) ready in {} after {:.1}s; check it with `appliance-image verify {}`",
        cfg.profile,
        cfg.out.display(),
        total.elapsed().as_secs_f64(),
        cfg.out.display()
    );
    Ok(manifest)
}

fn pin(name: &str, version: &str, sha256: &str) -> Pin {
    Pin {
        name: name.to_owned(),
        version: version.to_owned(),
        sha256: sha256.to_owned(),
    }
}
