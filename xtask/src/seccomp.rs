//! `cargo xtask seccomp-trace`: the host half of measuring the server's
//! syscall allowlist. The image's own Valkey, module and pinned libraries
//! (extracted from the initramfs, run through the image's loader) serve the
//! stream-guard and acl-render real-server suites under the image's filter
//! with every refusal turned into a recorded, continued call
//! (`syscall-filter`'s `trace` example); the union of what would have been
//! refused is printed, and an empty union is the goal.
//!
//! The guest half is `cargo xtask e2e --image target/appliance-test
//! --append appliance.test_seccomp=log`: the governor notes each call the
//! filter would refuse (`would refuse ...`) and continues it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use image_layout::SPEC_PATH;
use vm_harness::ImageFiles;

/// Where the image keeps what the server runs with.
const SERVER: &str = "/usr/bin/valkey-server";
const MODULE: &str = "/usr/lib/valkey/stream-guard.so";
const LIB_DIR: &str = "/lib/x86_64-linux-gnu/";
const LOADER: &str = "ld-linux-x86-64.so.2";

/// The call the real-server suites make because of their own server
/// options, not the image's (`--unixsocket`): reported apart.
const HARNESS_ONLY: &str = "socket family=AF_UNIX ";

/// The usage of `cargo xtask seccomp-trace` (printed by `--help`).
pub const USAGE: &str = "\
usage: cargo xtask seccomp-trace [--image DIR] [--keep DIR] [--everything]

  --image DIR   production image whose server, module, libraries and filter are used
                (default target/appliance)
  --keep DIR    keep the per-server trace reports there (default: a temp dir, removed)
  --everything  record every call, not only what the filter would refuse (an empty
                allowlist but clone3's ENOSYS): what the server uses at all
";

/// Entry of `cargo xtask seccomp-trace`.
pub fn main(args: &[String]) -> Result<()> {
    let root = crate::run::workspace_root();
    let mut image = ImageFiles::new(root.join("target/appliance"));
    let mut keep = None;
    let mut everything = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--image" => {
                image = ImageFiles::new(PathBuf::from(
                    it.next().context("--image needs a directory")?,
                ))
            }
            "--keep" => {
                keep = Some(PathBuf::from(
                    it.next().context("--keep needs a directory")?,
                ))
            }
            "--everything" => everything = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => {
                return Err(crate::usage_error(
                    format!("unknown argument `{other}`"),
                    USAGE,
                ))
            }
        }
    }
    let tmp = vm_harness::temp_dir("seccomp-trace")?;
    let work = tmp.path();
    let traces = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => work.join("traces"),
    };
    std::fs::create_dir_all(&traces)?;
    let lib = work.join("lib");
    std::fs::create_dir_all(&lib)?;

    // The image's files, as the appliance runs them.
    let cpio = crate::e2e::initramfs(&image)?;
    let entries = image_formats::cpio::parse(&cpio)?;
    let mut found = BTreeMap::new();
    for e in &entries {
        let path = e.abs_path();
        let target = if path == SERVER {
            Some(work.join("valkey-server"))
        } else if path == MODULE {
            Some(work.join("stream-guard.so"))
        } else {
            path.strip_prefix(LIB_DIR).map(|name| lib.join(name))
        };
        if let Some(target) = target {
            std::fs::write(&target, e.data)?;
            set_mode(&target, 0o755)?;
            found.insert(path.to_owned(), target);
        }
    }
    for needed in [SERVER, MODULE] {
        if !found.contains_key(needed) {
            bail!("{needed} is not in {}", image.dir().display());
        }
    }
    if !lib.join(LOADER).is_file() {
        bail!("{LIB_DIR}{LOADER} is not in {}", image.dir().display());
    }

    // The image's filter, as init builds it from the image's spec.
    let spec_text = crate::e2e::initramfs_file(&image, SPEC_PATH)?;
    let spec = appliance_spec::Spec::from_toml_str(
        std::str::from_utf8(&spec_text).context("the image's spec is not UTF-8")?,
    )?;
    let mut filter = init_seq::seccomp::server_filter(spec.server().forks())?;
    if everything {
        filter.rules.retain(|r| r.syscall.name() == "clone3");
    }
    let filter_json = work.join("filter.json");
    std::fs::write(&filter_json, serde_json::to_string_pretty(&filter)?)?;

    // The tracer.
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-q", "-p", "syscall-filter", "--example", "trace"])
        .current_dir(&root)
        .status()
        .context("cargo build --example trace")?;
    if !status.success() {
        bail!("building syscall-filter's trace example failed ({status})");
    }
    let tracer = root.join("target/debug/examples/trace");

    // The server the suites start: the tracer around the image's loader
    // around the image's server.
    let wrapper = work.join("valkey-server-traced");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --out {}/trace-$$.txt --allow-file {} -- {} --library-path {} {} \"$@\"\n",
            tracer.display(),
            traces.display(),
            filter_json.display(),
            lib.join(LOADER).display(),
            lib.display(),
            work.join("valkey-server").display()
        ),
    )?;
    set_mode(&wrapper, 0o755)?;

    for (package, test) in [
        ("stream-guard", "real_valkey"),
        ("acl-render", "real_server"),
    ] {
        println!("==> {package} {test} under the filter (refusals recorded and continued)");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "-q", "-p", package, "--test", test])
            .current_dir(&root)
            .env("APPLIANCE_VALKEY_SERVER", &wrapper)
            .env("ACL_RENDER_SERVER", &wrapper)
            .env("STREAM_GUARD_MODULE", work.join("stream-guard.so"))
            .status()
            .with_context(|| format!("cargo test -p {package}"))?;
        if !status.success() {
            bail!("{package} {test} failed under the tracer ({status})");
        }
    }

    let (servers, mut refused) = merge_reports(&traces)?;
    // The stream-guard suite serves on a unix socket (`--unixsocket`, in its
    // own directory) beside TCP; the image's valkey.conf configures none.
    // Those calls are reported apart; the bare `socket` total goes too when
    // every socket call was one of them.
    let harness: Vec<(String, u64)> = refused
        .iter()
        .filter(|(call, _)| call.starts_with(HARNESS_ONLY))
        .map(|(c, n)| (c.clone(), *n))
        .collect();
    let harness_calls: u64 = harness.iter().map(|(_, n)| n).sum();
    for (call, count) in &harness {
        refused.remove(call);
        println!(
            "    (the suites' own --unixsocket, not the image's config: {call}, {count} calls)"
        );
    }
    if harness_calls > 0 && refused.get("socket") == Some(&harness_calls) {
        refused.remove("socket");
    }
    println!(
        "{servers} server runs traced; calls {}: {}",
        if everything {
            "made"
        } else {
            "the image's filter would refuse"
        },
        if refused.is_empty() { "none" } else { "" }
    );
    for (call, count) in &refused {
        println!("    {call:<70} {count:>8}");
    }
    if servers == 0 {
        bail!("no trace report was written: did the suites start the server?");
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Every report in `dir` merged: how many, and each call (or indented
/// argument signature) with its total count. The loader's own `execve` by
/// the wrapper is the one call expected, and left out: init's exec is the
/// one the governor lets through.
fn merge_reports(dir: &Path) -> Result<(usize, BTreeMap<String, u64>)> {
    let mut reports = 0;
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        reports += 1;
        let mut current = String::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (key, count) = match line.rsplit_once(' ') {
                Some((k, c)) => (k.trim_end(), c.trim().parse::<u64>().unwrap_or(0)),
                None => continue,
            };
            let key = if line.starts_with("    ") {
                format!("{current} {}", key.trim())
            } else {
                current = key.to_owned();
                key.to_owned()
            };
            if current == "execve" {
                continue;
            }
            *calls.entry(key).or_default() += count;
        }
    }
    Ok((reports, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_merge_by_call_and_signature() {
        let dir = vm_harness::temp_dir("seccomp-merge").unwrap();
        std::fs::write(
            dir.path().join("a.txt"),
            "# [..] exited\n# 2 distinct calls, 3 calls in all\nexecve                          1\nsocket                          2\n    family=AF_NETLINK                                              2\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.txt"),
            "# 1 distinct calls\nsocket                          1\n    family=AF_NETLINK                                              1\n",
        )
        .unwrap();
        let (n, calls) = merge_reports(dir.path()).unwrap();
        assert_eq!(n, 2);
        assert_eq!(calls.get("socket"), Some(&3));
        assert_eq!(calls.get("socket family=AF_NETLINK"), Some(&3));
        assert!(!calls.keys().any(|k| k.starts_with("execve")));
    }
}
