//! `cargo xtask image`: the whole pipeline, step by step — pinned inputs, the
//! sandboxed Valkey build, our own binaries, the kernel module subset, then
//! [`assemble`](super::assemble::assemble) into the output directory.
//!
//! Every step prints what it does and how long it took; a failing step names
//! the input or tool that is missing.

use super::assemble::{self, AssembleInputs, AssembleOptions};
use super::fetch::{self, Cache};
use super::kmod;
use super::manifest::{Pin, Profile};
use super::pins::Pins;
use super::sandbox::Isolation;
use super::{symver, valkey};
use anyhow::{bail, Context, Result};
use host_tools::{ensure_tools, Tool};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What `cargo xtask image` was asked for.
#[derive(Debug, Clone)]
pub struct ImageArgs {
    /// The repository root.
    pub root: PathBuf,
    /// `production` or `test`.
    pub profile: Profile,
    /// Output directory (default `target/appliance` or `target/appliance-test`).
    pub out: PathBuf,
    /// Input cache (default `target/appliance-cache`).
    pub cache: PathBuf,
    /// Build Valkey without namespaces (only when they cannot be made).
    pub no_sandbox: bool,
}

impl ImageArgs {
    /// Parses `cargo xtask image [--test] [--out DIR] [--cache DIR] [--no-sandbox]`.
    pub fn parse(root: &Path, args: &[String]) -> Result<ImageArgs> {
        let mut profile = Profile::Production;
        let mut out = None;
        let mut cache = root.join(fetch::DEFAULT_CACHE);
        let mut no_sandbox = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--test" => profile = Profile::Test,
                "--profile" => {
                    profile = match it.next().map(String::as_str) {
                        Some("production") => Profile::Production,
                        Some("test") => Profile::Test,
                        other => bail!("--profile takes `production` or `test`, not {other:?}"),
                    }
                }
                "--out" => out = Some(PathBuf::from(it.next().context("--out needs a directory")?)),
                "--cache" => cache = PathBuf::from(it.next().context("--cache needs a directory")?),
                "--no-sandbox" => no_sandbox = true,
                other => bail!("image: unknown argument `{other}`"),
            }
        }
        let out = out.unwrap_or_else(|| default_out(root, profile));
        Ok(ImageArgs {
            root: root.to_path_buf(),
            profile,
            out,
            cache,
            no_sandbox,
        })
    }
}

/// Where a profile's image goes unless `--out` says otherwise.
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

/// `SOURCE_DATE_EPOCH` from the environment, else the commit time of HEAD, so
/// two builds of one commit carry the same timestamps.
pub fn source_date_epoch(root: &Path) -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number"));
    }
    let out = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .output()
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
        .with_context(|| format!("cannot run cargo to build {package}"))?;
    if !status.success() {
        bail!("cargo build -p {package} failed ({status})");
    }
    Ok(())
}

/// Our binaries for the image: `/init`, the stream-guard module and, for a
/// test image only, the intruder module.
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

/// The pinned Valkey server, fetched and built (or taken from the cache).
pub fn pinned_valkey(
    root: &Path,
    cache: &Cache,
    no_sandbox: bool,
) -> Result<(Pins, fetch::FetchedInputs, valkey::BuiltServer)> {
    let pins = Pins::load(&root.join("image/sources.toml"))?;
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
pub const IMAGE_TOOLS: [Tool; 7] = [
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

/// `cargo xtask image`.
pub fn image(args: &ImageArgs) -> Result<()> {
    let total = Instant::now();
    ensure_tools(
        &IMAGE_TOOLS,
        "to build the image (Valkey, the stream-guard module, data.raw)",
    )?;
    let root = &args.root;
    let cache = Cache::new(&args.cache);
    let epoch = source_date_epoch(root)?;
    let (pins, fetched, built) = pinned_valkey(root, &cache, args.no_sandbox)?;
    let own = own_binaries(root, args.profile)?;

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
    // The assembler places modules under /lib/modules by file name; the order
    // file must name them there.
    let scratch = args.cache.join("scratch");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let order_path = scratch.join(format!("modules.order.{}", std::process::id()));
    let mut order = String::new();
    let mut module_files = Vec::new();
    for m in &subset.modules {
        let name = m
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("module path {} has no file name", m.path.display()))?;
        order.push_str(&format!("{}/{name}\n", assemble::MODULES_DIR));
        module_files.push(m.path.clone());
    }
    std::fs::write(&order_path, &order)
        .with_context(|| format!("cannot write {}", order_path.display()))?;

    let inputs = AssembleInputs {
        kernel: fetched.kernel.vmlinuz.clone(),
        modules: module_files,
        modules_order: order_path.clone(),
        server: built.server.clone(),
        init: own.init,
        stream_guard: Some(own.stream_guard),
        intruder: own.intruder,
        spec: root.join("image/appliance.toml"),
        stub: fetched.stub.clone(),
        // The pinned library packages' files, never the build host's: two
        // hosts with different glibc or GCC builds make the same image.
        lib_dirs: [&fetched.libc, &fetched.libgcc]
            .iter()
            .flat_map(|lib| fetch::lib_dirs(&lib.tree))
            .collect(),
        pins: vec![
            Pin {
                name: pins.kernel.package.clone(),
                version: pins.kernel.version.clone(),
                sha256: pins.kernel.sha256.clone(),
            },
            Pin {
                name: pins.libc.package.clone(),
                version: pins.libc.version.clone(),
                sha256: pins.libc.sha256.clone(),
            },
            Pin {
                name: pins.libgcc.package.clone(),
                version: pins.libgcc.version.clone(),
                sha256: pins.libgcc.sha256.clone(),
            },
            Pin {
                name: pins.stub.package.clone(),
                version: pins.stub.version.clone(),
                sha256: pins.stub.sha256.clone(),
            },
            Pin {
                name: pins.valkey.package.clone(),
                version: pins.valkey.version.clone(),
                sha256: pins.valkey.orig_sha256.clone(),
            },
        ],
    };
    let options = AssembleOptions::new(args.profile, epoch);
    let result = pinned_libraries(&inputs, &pins).and_then(|()| {
        timed(&format!("assemble into {}", args.out.display()), || {
            assemble::assemble(&inputs, &args.out, &options).map(|_| ())
        })
    });
    let _ = std::fs::remove_file(&order_path);
    result?;
    println!(
        "image ({:?}) ready in {} after {:.1}s; check it with `cargo xtask verify {}`",
        args.profile,
        args.out.display(),
        total.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
