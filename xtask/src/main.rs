//! `cargo xtask`: the project's automation, one binary with subcommands
//! (matklad's xtask pattern). `cargo xtask ci` runs exactly what CI runs.

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask <command>

  ci                  what CI runs: fmt, clippy, deny, tests
  fuzz [--seconds N]  run every fuzz target for N seconds each (default 60)
";

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

fn ci() -> Result<()> {
    step("fmt", "cargo", &["fmt", "--all", "--check"])?;
    step(
        "clippy",
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )?;
    step("deny", "cargo", &["deny", "check", "licenses", "bans", "sources"])?;
    step("test", "cargo", &["test", "--workspace"])?;
    Ok(())
}

/// The fuzz targets, in the order `cargo xtask fuzz` runs them.
fn fuzz_targets() -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir("fuzz")
        .output()
        .context("cannot run `cargo +nightly fuzz list` (install with `cargo install cargo-fuzz`)")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr));
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
                seconds = v.parse().with_context(|| format!("--seconds: `{v}` is not a number"))?;
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
            .args(["+nightly", "fuzz", "run", t, "--", &max_time, "-print_final_stats=1"])
            .current_dir("fuzz")
            .status()
            .with_context(|| format!("cannot start cargo fuzz for {t}"))?;
        println!("<== fuzz {t}: {:.1}s", start.elapsed().as_secs_f64());
        if !status.success() {
            bail!("fuzz target {t} failed ({status}); the crash input is under fuzz/artifacts/{t}/");
        }
    }
    Ok(())
}
