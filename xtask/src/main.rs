//! `cargo xtask`: the project's automation, one binary with subcommands
//! (matklad's xtask pattern). `cargo xtask ci` runs exactly what CI runs.

use anyhow::{bail, Context, Result};
use appliance_image::cli::{self, Defaults, EXIT_FAILED, EXIT_OK, EXIT_USAGE, XTASK};
use appliance_image::{BuildConfig, Profile};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;
use xtask::UsageError;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

  ci                     what CI runs: fmt, clippy, deny, tests, image, verify,
                         reproducibility, end-to-end
  run [--direct] [...]   build the image if needed and boot it under QEMU (TCG),
                         with a metadata stand-in; prints how to connect
  e2e [--only NAME] [--direct]
                         boot test images and check them from outside
  bench boot             boot-time and throughput benchmark
  seccomp-trace          the server under its syscall filter through the real-server
                         suites, refusals recorded (the allowlist's host measurement)
  image [--test] [--spec FILE] [--out DIR] [--cache DIR] [--no-sandbox]
                         build the appliance image (default target/appliance)
  verify [DIR]           offline audit of a built image, one [OK]/[FAIL] per line
  pins --update          re-pin image/sources.toml to what apt offers now
  gce --project P --zone Z [--bucket B] [--name N] [--data-size GB] --dry-run
                         print the gcloud commands that deploy the image
  fuzz [--seconds N] [TARGET...]
                         run every fuzz target for N seconds each (default 60)

`cargo xtask <command> --help` describes each command. image, verify, pins and
gce are `appliance-image build|verify|pins|gce` with this checkout's defaults.
exit status: 0 done, 1 a failed step or an audit [FAIL], 2 a usage error,
3 a missing host tool (image, verify, pins, gce)
";

const CI_USAGE: &str = "\
usage: cargo xtask ci

Runs what CI runs, in order: host packages, cargo-deny, fmt, clippy (the
workspace and the Valkey modules), deny, the FreeBSD check, the production
image, verify, the reproducibility build, the tests, the test image, e2e.
";

const FUZZ_USAGE: &str = "\
usage: cargo xtask fuzz [--seconds N] [TARGET...]

Runs every fuzz target (or the named ones) for N seconds each (default 60)
with `cargo +nightly fuzz run`.
";

/// The repository root: xtask lives one level below it.
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The checkout `image`, `verify`, `pins` and `gce` take their defaults from.
fn defaults() -> Defaults {
    Defaults {
        checkout: Some(root()),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();
    ExitCode::from(dispatch(command.as_ref().and_then(|c| c.to_str()), rest))
}

/// Runs one command and returns the exit status.
fn dispatch(command: Option<&str>, rest: Vec<OsString>) -> u8 {
    let defaults = defaults();
    let strings = || -> Vec<String> {
        rest.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let result = match command {
        Some(name @ ("image" | "verify" | "pins" | "gce")) => {
            let parsed = cli::parse_command(XTASK, name, rest.clone(), &defaults);
            if let Ok(cli::Command::Build(_)) = &parsed {
                // A fresh machine gets what the build needs (as root on
                // Debian); appliance-image itself only names what is missing.
                if let Err(err) = install_image_tools() {
                    eprintln!("xtask: {err:#}");
                    return EXIT_FAILED;
                }
            }
            return cli::main(XTASK, parsed, &defaults);
        }
        None => {
            eprint!("{USAGE}");
            return EXIT_USAGE;
        }
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return EXIT_OK;
        }
        // The harness commands parse their own options; their help is here.
        Some(name) if wants_help(&rest) => match command_usage(name, &rest) {
            Some(usage) => {
                print!("{usage}");
                return EXIT_OK;
            }
            None => Err(xtask::usage_error(
                format!("unknown command `{name}`"),
                USAGE,
            )),
        },
        Some("ci") if rest.is_empty() => ci(),
        Some("ci") => Err(xtask::usage_error("ci takes no arguments", CI_USAGE)),
        Some("fuzz") => fuzz(rest),
        Some("run") => xtask::run::run(&strings()),
        Some("e2e") => xtask::e2e::main(&strings()),
        Some("bench") => xtask::bench::main(&strings()),
        Some("seccomp-trace") => xtask::seccomp::main(&strings()),
        // Run by QEMU's guestfwd once per guest connection to the metadata
        // address: one HTTP exchange on stdin/stdout.
        Some(vm_harness::standin::SUBCOMMAND) => {
            vm_harness::standin::main(&strings()).map_err(anyhow::Error::from)
        }
        Some(other) => Err(xtask::usage_error(
            format!("unknown command `{other}`"),
            USAGE,
        )),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(err) => {
            if let Some(usage) = err.downcast_ref::<UsageError>() {
                eprintln!("xtask: {usage}");
                return EXIT_USAGE;
            }
            eprintln!("xtask: {err:#}");
            match err.downcast_ref::<appliance_image::Error>() {
                Some(e) if e.missing_tools().is_some() => cli::EXIT_MISSING_TOOL,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// `-h` or `--help` among the options (before a `--`).
fn wants_help(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-h" || a == "--help")
}

/// The usage of a command that parses its own options.
fn command_usage(name: &str, args: &[OsString]) -> Option<&'static str> {
    Some(match name {
        "bench" if args.first().is_some_and(|a| a == "compare") => xtask::bench::compare::USAGE,
        "ci" => CI_USAGE,
        "fuzz" => FUZZ_USAGE,
        "run" => xtask::run::USAGE,
        "e2e" => xtask::e2e::USAGE,
        "bench" => xtask::bench::USAGE,
        "seccomp-trace" => xtask::seccomp::USAGE,
        _ => return None,
    })
}

/// Installs the packages of the image build's missing host tools.
fn install_image_tools() -> Result<()> {
    let mut packages: Vec<&str> = appliance_image::missing_tools(&appliance_image::IMAGE_TOOLS)
        .iter()
        .map(|t| t.package)
        .collect();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    Ok(host_tools::ensure_packages(
        &packages,
        "to build the image (Valkey, the stream-guard module, data.raw)",
    )?)
}

/// `cargo xtask image` with these arguments, as a step of `ci`.
fn image(args: &[&str]) -> Result<()> {
    let parsed = cli::parse_command(XTASK, "image", args.iter().map(OsString::from), &defaults())?;
    install_image_tools()?;
    cli::run(parsed, &defaults(), &mut std::io::stdout())?;
    Ok(())
}

/// `cargo xtask verify DIR`, as a step of `ci`.
fn verify(dir: &Path) -> Result<()> {
    let parsed = cli::parse_command(XTASK, "verify", [dir.as_os_str().to_owned()], &defaults())?;
    match cli::run(parsed, &defaults(), &mut std::io::stdout())? {
        cli::Outcome::Done => Ok(()),
        cli::Outcome::AuditFailed => bail!("{} fails the audit", dir.display()),
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
    let production = appliance_image::build::default_out(&root, Profile::Production);
    let production_arg = production.display().to_string();
    timed_ci("image (production)", || image(&["--out", &production_arg]))?;
    timed_ci("verify (production)", || verify(&production))?;
    timed_ci("reproducibility", || reproducibility(&root, &production))?;

    let config = BuildConfig::in_workspace(&root, Profile::Production, &production)?;
    let cache = appliance_image::fetch::Cache::new(&config.cache);
    let (_, _, valkey) = appliance_image::build::pinned_valkey(&config.sources, &cache, false)?;
    let module = root.join("target/image-build/module/release/libstream_guard.so");
    // The test image is built after the tests; its intruder module (the
    // same build, so cached for it) is needed by the module's own test.
    let intruder = root.join("target/image-build/module/release/libintruder.so");
    timed_ci("intruder module", || {
        appliance_image::build::cargo_release(
            &root,
            "intruder",
            &["module"],
            &root.join("target/image-build/module"),
        )?;
        Ok(())
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

    let test_image = appliance_image::build::default_out(&root, Profile::Test);
    let test_image_arg = test_image.display().to_string();
    timed_ci("image (test)", || {
        image(&["--test", "--out", &test_image_arg])
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

/// Crates that run only on the Linux build host: the image builder works in
/// Linux namespaces (unshare, pivot_root, bind mounts) and the harness drives
/// QEMU and `ip netns`. Design §2's portability promise is about the
/// appliance's own crates, which is what the FreeBSD check covers.
const LINUX_HOST_ONLY: &[&str] = &["xtask", "appliance-image", "vm-harness"];

/// Design §2: every Linux-only piece of the appliance is behind
/// `cfg(target_os = "linux")`, so its crates type-check for FreeBSD. Needs the
/// target's standard library; when rustup cannot provide it, says so and goes
/// on (it is a portability check, not a test of behaviour).
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
    let mut args = vec!["check", "--workspace", "--target", TARGET];
    for krate in LINUX_HOST_ONLY {
        args.extend(["--exclude", krate]);
    }
    step("freebsd check", "cargo", &args)
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
    let cache = root.join(appliance_image::fetch::DEFAULT_CACHE);
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
        .current_dir(root().join("fuzz"))
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

/// `cargo xtask fuzz [--seconds N] [TARGET...]`: the seconds per target and
/// the targets chosen (none: all).
fn parse_fuzz(args: Vec<OsString>) -> Result<(u64, Vec<String>), UsageError> {
    use lexopt::prelude::*;
    let parse = || -> Result<(u64, Vec<String>), lexopt::Error> {
        let mut seconds: u64 = 60;
        let mut only = Vec::new();
        let mut p = lexopt::Parser::from_args(args);
        while let Some(arg) = p.next()? {
            match arg {
                Long("seconds") => seconds = p.value()?.parse()?,
                Value(target) => only.push(target.string()?),
                _ => return Err(arg.unexpected()),
            }
        }
        Ok((seconds, only))
    };
    parse().map_err(|e| UsageError {
        message: e.to_string(),
        usage: FUZZ_USAGE,
    })
}

fn fuzz(args: Vec<OsString>) -> Result<()> {
    let (seconds, only) = parse_fuzz(args)?;
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
            .current_dir(root().join("fuzz"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments, then the seconds and targets or the usage error.
    type Case = (
        &'static [&'static str],
        Result<(u64, &'static [&'static str]), &'static str>,
    );

    #[test]
    fn fuzz_arguments() {
        let table: &[Case] = &[
            (&[], Ok((60, &[]))),
            (&["--seconds", "5", "cpio_read"], Ok((5, &["cpio_read"]))),
            (&["--seconds=7", "a", "b"], Ok((7, &["a", "b"]))),
            (
                &["--seconds"],
                Err("missing argument for option '--seconds'"),
            ),
            (
                &["--seconds", "x"],
                Err("cannot parse argument \"x\": invalid digit found in string"),
            ),
            (&["--minutes", "1"], Err("invalid option '--minutes'")),
        ];
        for (args, want) in table {
            let got = parse_fuzz(args.iter().map(OsString::from).collect());
            let got = got
                .as_ref()
                .map(|(s, t)| (*s, t.iter().map(String::as_str).collect::<Vec<_>>()))
                .map_err(|e| e.message.as_str());
            let want = want.map(|(s, t)| (s, t.to_vec()));
            assert_eq!(got, want, "{args:?}");
        }
    }

    #[test]
    fn help_is_found_before_a_double_dash() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_help(&args(&["--only", "x", "-h"])));
        assert!(wants_help(&args(&["--help"])));
        assert!(!wants_help(&args(&["--", "--help"])));
        for name in ["ci", "fuzz", "run", "e2e", "bench", "seccomp-trace"] {
            let usage = command_usage(name, &[]);
            assert!(
                usage.is_some_and(|u| u.starts_with("usage: cargo xtask")),
                "{name}"
            );
        }
        assert_eq!(command_usage("nope", &[]), None);
        let compare = command_usage("bench", &args(&["compare", "--help"]));
        assert_eq!(compare, Some(xtask::bench::compare::USAGE));
    }
}
