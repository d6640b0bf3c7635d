//! `cargo xtask`: the project's automation, one binary with subcommands
//! (matklad's xtask pattern). `cargo xtask ci` runs exactly what CI runs.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use xtask::image::build::{self, ImageArgs};
use xtask::image::manifest::Profile;

const USAGE: &str = "\
usage: cargo xtask <command>

  ci                     what CI runs: fmt, clippy, deny, tests, image, verify,
                         reproducibility, end-to-end
  run [--direct] [...]   build the image if needed and boot it under QEMU (TCG),
                         with a metadata stand-in; prints how to connect
  e2e [--only NAME] [--direct]
                         boot test images and check them from outside
  bench boot             boot-time and throughput benchmark
  seccomp-trace          the server under its syscall filter through the real-server
                         suites, refusals recorded (the allowlist's host measurement)
  image [--test] [--out DIR] [--cache DIR] [--no-sandbox]
                         build the appliance image (default target/appliance)
  verify [DIR]           offline audit of a built image, one [OK]/[FAIL] per line
  pins --update          re-pin image/sources.toml to what apt offers now
  gce --project P --zone Z [--bucket B] [--name N] [--data-size GB] --dry-run
                         print the gcloud commands that deploy the image
  fuzz [--seconds N] [TARGET...]
                         run every fuzz target for N seconds each (default 60)
";

/// The repository root: xtask lives one level below it.
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn main() {
    if let Err(err) = run(std::env::args().skip(1).collect()) {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("ci") => ci(),
        Some("fuzz") => fuzz(args.collect()),
        Some("image") => build::image(&ImageArgs::parse(&root(), &args.collect::<Vec<_>>())?),
        Some("verify") => verify(args.collect()),
        Some("pins") => pins(args.collect()),
        Some("gce") => gce(args.collect()),
        Some("run") => xtask::run::run(&args.collect::<Vec<_>>()),
        Some("e2e") => xtask::e2e::main(&args.collect::<Vec<_>>()),
        Some("bench") => xtask::bench::main(&args.collect::<Vec<_>>()),
        Some("seccomp-trace") => xtask::seccomp::main(&args.collect::<Vec<_>>()),
        // Run by QEMU's guestfwd once per guest connection to the metadata
        // address: one HTTP exchange on stdin/stdout.
        Some(vm_harness::standin::SUBCOMMAND) => {
            Ok(vm_harness::standin::main(&args.collect::<Vec<_>>())?)
        }
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// Runs one command, echoing it, timing it, failing on a non-zero exit.
fn step(name: &str, program: &str, args: &[&str]) -> Result<()> {
    println!("==> {name}: {program} {}", args.join(" "));
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("{name}: cannot start `{program}`"))?;
    println!("<== {name}: {:.1}s", start.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn verify(args: Vec<String>) -> Result<()> {
    let dir = match args.as_slice() {
        [] => build::default_out(&root(), Profile::Production),
        [d] => PathBuf::from(d),
        _ => bail!("usage: cargo xtask verify [DIR]"),
    };
    let spec = std::fs::read_to_string(root().join("image/appliance.toml"))
        .context("cannot read image/appliance.toml")?;
    // The pinned packages the kernel and the C library are compared with.
    let opts = xtask::verify::VerifyOptions {
        input_cache: Some(root().join(xtask::image::fetch::DEFAULT_CACHE)),
        ..Default::default()
    };
    let ok = xtask::verify::verify_with(&dir, &spec, &opts, &mut std::io::stdout())?;
    if !ok {
        bail!(
            "verify: {} fails the audit (see the [FAIL] lines)",
            dir.display()
        );
    }
    Ok(())
}

fn pins(args: Vec<String>) -> Result<()> {
    if args != ["--update"] {
        bail!("usage: cargo xtask pins --update");
    }
    let diff = xtask::image::fetch::update_pins_file(&root().join("image/sources.toml"))?;
    if diff.is_empty() {
        println!("image/sources.toml: pins are current");
    } else {
        print!("{diff}");
    }
    Ok(())
}

fn gce(args: Vec<String>) -> Result<()> {
    let mut a = xtask::gce::GceArgs::example(&root());
    let mut dry_run = false;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--project" => a.project = value()?,
            "--zone" => a.zone = value()?,
            "--bucket" => a.bucket = value()?,
            "--name" => a.name = value()?,
            "--machine-type" => a.machine_type = value()?,
            "--data-size" => {
                let v = value()?;
                a.data_disk_gb = v
                    .strip_suffix("GB")
                    .unwrap_or(&v)
                    .parse()
                    .ok()
                    .filter(|gb| *gb >= xtask::gce::MIN_DATA_DISK_GB)
                    .with_context(|| {
                        format!(
                            "--data-size {v:?}: a whole number of GB, at least {}",
                            xtask::gce::MIN_DATA_DISK_GB
                        )
                    })?;
            }
            "--dry-run" => dry_run = true,
            other => bail!("gce: unknown argument `{other}`"),
        }
    }
    if a.project.is_empty() || a.zone.is_empty() {
        bail!("usage: cargo xtask gce --project P --zone Z --dry-run");
    }
    if a.bucket.is_empty() {
        a.bucket = format!("{}-appliance-images", a.project);
    }
    if !dry_run {
        bail!("gce: only --dry-run exists: this tool prints the commands and never runs gcloud");
    }
    for line in xtask::gce::commands(&a) {
        println!("{line}");
    }
    Ok(())
}

fn ci() -> Result<()> {
    let root = root();
    let total = Instant::now();
    // The README's quick start runs this on a fresh machine: bring what the
    // checks need (`.ci/run` installs the same list first).
    timed_ci("host packages", || {
        Ok(host_tools::ensure_packages(
            &xtask::packages::ci(),
            "for the build and the tests",
        )?)
    })?;
    timed_ci("cargo-deny", ensure_cargo_deny)?;
    step("fmt", "cargo", &["fmt", "--all", "--check"])?;
    step(
        "clippy",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The Valkey glue is behind a feature (it needs a running server's
    // allocator), so the workspace pass above does not see it.
    for module in ["stream-guard", "intruder"] {
        step(
            &format!("clippy {module} module"),
            "cargo",
            &[
                "clippy",
                "-p",
                module,
                "--features",
                "module",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    step(
        "deny",
        "cargo",
        &["deny", "check", "licenses", "bans", "sources"],
    )?;
    freebsd_check()?;

    // The production image first: it fetches the pinned inputs and builds the
    // pinned Valkey and the stream-guard module, which the tests below run.
    let production = build::default_out(&root, Profile::Production);
    timed_ci("image (production)", || {
        build::image(&ImageArgs::parse(
            &root,
            &["--out".into(), production.display().to_string()],
        )?)
    })?;
    timed_ci("verify (production)", || {
        verify(vec![production.display().to_string()])
    })?;
    timed_ci("reproducibility", || reproducibility(&root, &production))?;

    let cache = xtask::image::fetch::Cache::new(root.join(xtask::image::fetch::DEFAULT_CACHE));
    let (_, _, valkey) = build::pinned_valkey(&root, &cache, false)?;
    let module = root.join("target/image-build/module/release/libstream_guard.so");
    // The test image is built after the tests; its intruder module (the
    // same build, so cached for it) is needed by the module's own test.
    let intruder = root.join("target/image-build/module/release/libintruder.so");
    timed_ci("intruder module", || {
        build::cargo_release(
            &root,
            "intruder",
            &["module"],
            &root.join("target/image-build/module"),
        )
    })?;
    timed_ci("test", || {
        let status = Command::new("cargo")
            .args(["test", "--workspace"])
            .env("APPLIANCE_VALKEY_SERVER", &valkey.server)
            .env("STREAM_GUARD_MODULE", &module)
            .env("INTRUDER_MODULE", &intruder)
            .status()
            .context("cannot run cargo test")?;
        if !status.success() {
            bail!("cargo test failed ({status})");
        }
        Ok(())
    })?;

    let test_image = build::default_out(&root, Profile::Test);
    timed_ci("image (test)", || {
        build::image(&ImageArgs::parse(
            &root,
            &[
                "--test".into(),
                "--out".into(),
                test_image.display().to_string(),
            ],
        )?)
    })?;
    timed_ci("e2e", || xtask::e2e::main(&[]))?;
    println!(
        "ci: all stages passed in {:.0}s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo deny` for the licence, ban and source checks: installed with
/// `cargo install --locked` when missing.
fn ensure_cargo_deny() -> Result<()> {
    let present = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!(
        "xtask: installing cargo-deny (cargo install --locked cargo-deny), for `cargo deny check`"
    );
    let status = Command::new("cargo")
        .args(["install", "--locked", "cargo-deny"])
        .status()
        .context("run cargo install")?;
    if !status.success() {
        bail!("`cargo install --locked cargo-deny` failed ({status})");
    }
    Ok(())
}

/// Design §2: every Linux-only piece is behind `cfg(target_os = "linux")`, so
/// the appliance crates type-check for FreeBSD. Needs the target's standard
/// library; when rustup cannot provide it, says so and goes on (it is a
/// portability check, not a test of behaviour).
fn freebsd_check() -> Result<()> {
    const TARGET: &str = "x86_64-unknown-freebsd";
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    let available = installed
        || Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .is_ok_and(|s| s.success());
    if !available {
        println!("==> freebsd check: SKIPPED, rustup cannot install {TARGET} on this machine");
        return Ok(());
    }
    step(
        "freebsd check",
        "cargo",
        &[
            "check",
            "--workspace",
            "--exclude",
            "xtask",
            "--target",
            TARGET,
        ],
    )
}

fn timed_ci(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("==> {name}");
    let start = Instant::now();
    let result = f();
    println!("<== {name}: {:.1}s", start.elapsed().as_secs_f64());
    result.with_context(|| format!("{name} failed"))
}

/// Builds the same commit again in a fresh clone in another directory (sharing
/// only the input cache, i.e. the pinned downloads and the Valkey build) and
/// compares every output byte for byte.
fn reproducibility(root: &Path, first: &Path) -> Result<()> {
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output()
        .context("cannot run git status")?;
    if !dirty.stdout.is_empty() {
        bail!("the work tree has uncommitted changes; the clone would build another tree. Commit first.");
    }
    let clone = root.join("target/repro-clone");
    if clone.exists() {
        std::fs::remove_dir_all(&clone)
            .with_context(|| format!("cannot remove {}", clone.display()))?;
    }
    step(
        "clone",
        "git",
        &[
            "clone",
            "--quiet",
            "--no-hardlinks",
            &root.display().to_string(),
            &clone.display().to_string(),
        ],
    )?;
    let second = root.join("target/appliance-repro");
    let cache = root.join(xtask::image::fetch::DEFAULT_CACHE);
    let status = Command::new("cargo")
        .args(["xtask", "image", "--cache"])
        .arg(&cache)
        .arg("--out")
        .arg(&second)
        .current_dir(&clone)
        .status()
        .context("cannot run cargo xtask image in the clone")?;
    if !status.success() {
        bail!("the second build failed ({status})");
    }
    let mut names: Vec<String> = std::fs::read_dir(first)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut differ = Vec::new();
    for name in &names {
        let a = std::fs::read(first.join(name)).with_context(|| format!("cannot read {name}"))?;
        let b = std::fs::read(second.join(name)).unwrap_or_default();
        let same = a == b;
        println!(
            "    {} {name} ({} bytes)",
            if same { "same" } else { "DIFFERS" },
            a.len()
        );
        if !same {
            differ.push(name.clone());
        }
    }
    if !differ.is_empty() {
        bail!("two builds of one commit differ in {}", differ.join(", "));
    }
    println!(
        "    {} files byte-identical across {} and {}",
        names.len(),
        first.display(),
        second.display()
    );
    let _ = std::fs::remove_dir_all(&clone);
    Ok(())
}

/// The fuzz targets, in the order `cargo xtask fuzz` runs them.
fn fuzz_targets() -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir("fuzz")
        .output()
        .context(
            "cannot run `cargo +nightly fuzz list` (install with `cargo install cargo-fuzz`)",
        )?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn fuzz(args: Vec<String>) -> Result<()> {
    let mut seconds: u64 = 60;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds: `{v}` is not a number"))?;
            }
            _ => only.push(a),
        }
    }
    let targets = fuzz_targets()?;
    let chosen: Vec<&String> = targets
        .iter()
        .filter(|t| only.is_empty() || only.contains(t))
        .collect();
    if chosen.is_empty() {
        bail!("no fuzz target matches {only:?}; targets: {targets:?}");
    }
    let max_time = format!("-max_total_time={seconds}");
    for t in chosen {
        println!("==> fuzz {t}: {seconds}s");
        let start = Instant::now();
        let status = Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                t,
                "--",
                &max_time,
                "-print_final_stats=1",
            ])
            .current_dir("fuzz")
            .status()
            .with_context(|| format!("cannot start cargo fuzz for {t}"))?;
        println!("<== fuzz {t}: {:.1}s", start.elapsed().as_secs_f64());
        if !status.success() {
            bail!(
                "fuzz target {t} failed ({status}); the crash input is under fuzz/artifacts/{t}/"
            );
        }
    }
    Ok(())
}
