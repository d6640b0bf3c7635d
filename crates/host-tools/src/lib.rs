//! Host programs the build side needs, and what to do when one is missing.
//!
//! A [`Tool`] names a program (looked up in `PATH`, then `/usr/sbin` and
//! `/sbin`) or an absolute file, and the Debian package that has it.
//! [`ensure_tools`] and [`ensure_packages`] check what is there; as root on
//! Debian they install what is missing with one `apt-get install` line (and
//! say what and why), anywhere else they stop with that exact line for the
//! user to run.
//!
//! Shared by the image builder (which only names what is missing:
//! [`missing_tools`]), the VM harness (QEMU, OVMF, the test network's `ip`
//! and `dnsmasq`) and xtask (which installs), so none of them depends on
//! another for it.
//!
//! Deliberately absent: package lists (each caller names its own tools, and
//! `cargo xtask ci` reads `.ci/packages`), other package managers, and any
//! version check.
//!
//! Invariant: nothing is installed unless this process runs as root on
//! Debian; otherwise a missing tool is an error naming the install line.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// A host program, the Debian package that has it, and why it is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// A program name (looked up in `PATH`) or an absolute file path.
    pub file: &'static str,
    /// Its Debian package.
    pub package: &'static str,
}

/// What went wrong making sure of the host's tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Packages are missing and this process may not install them (not
    /// root, or not Debian).
    #[error(
        "missing host packages ({}) {why}; install them with:\n  sudo apt-get update && sudo {line}",
        packages.join(", ")
    )]
    Missing {
        /// The missing packages.
        packages: Vec<String>,
        /// Why they are needed (the caller's words).
        why: String,
        /// The `apt-get install` line that brings them.
        line: String,
    },
    /// `dpkg-query` could not be run.
    #[error("run dpkg-query (is this Debian?)")]
    Query(#[source] std::io::Error),
    /// `apt-get` could not be run.
    #[error("run apt-get")]
    Apt(#[source] std::io::Error),
    /// `apt-get update && apt-get install` failed.
    #[error("`apt-get update -q && {line}` failed: {status}")]
    Install {
        /// The install line.
        line: String,
        /// How it ended.
        status: ExitStatus,
    },
}

/// Whether `file` is there: an absolute path exists, or a program name is
/// a file in `PATH`, `/usr/sbin` or `/sbin`.
pub fn tool_present(file: &str) -> bool {
    if file.starts_with('/') {
        return Path::new(file).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(file).is_file())
}

/// The tools of `tools` that are not on this host.
#[must_use]
pub fn missing_tools(tools: &[Tool]) -> Vec<Tool> {
    tools
        .iter()
        .copied()
        .filter(|t| !tool_present(t.file))
        .collect()
}

/// Makes sure the tools are there: as root on Debian, installs the missing
/// packages with apt-get (one line says what and why); otherwise stops with
/// the exact install line.
pub fn ensure_tools(tools: &[Tool], why: &str) -> Result<(), Error> {
    let mut missing: Vec<&str> = missing_tools(tools).iter().map(|t| t.package).collect();
    missing.dedup();
    install_packages(&missing, why)
}

/// The first word of every line that is neither blank nor a `#` comment:
/// a package list such as `.ci/packages` (name, then why).
pub fn parse_package_list(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// Makes sure the Debian packages are installed (asked of `dpkg-query`);
/// installs the missing ones like [`ensure_tools`].
pub fn ensure_packages(packages: &[&str], why: &str) -> Result<(), Error> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev} ${Package}\\n"])
        .args(packages)
        .output()
        .map_err(Error::Query)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let missing = not_installed(packages, &text);
    install_packages(&missing, why)
}

/// The `packages` that `dpkg-query`'s `${db:Status-Abbrev} ${Package}`
/// output does not show as installed (`ii`); an architecture suffix
/// (`libc6:amd64`) names the same package.
fn not_installed<'a>(packages: &[&'a str], dpkg_query: &str) -> Vec<&'a str> {
    let installed: Vec<&str> = dpkg_query
        .lines()
        .filter(|l| l.starts_with("ii"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|name| name.split(':').next().unwrap_or(name))
        .collect();
    packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

/// As root on Debian: `apt-get update`, then `apt-get install` of
/// `packages`, saying what and why; elsewhere stops with the exact lines.
fn install_packages(packages: &[&str], why: &str) -> Result<(), Error> {
    if packages.is_empty() {
        return Ok(());
    }
    let line = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    let root = nix::unistd::geteuid().is_root();
    if !root || !Path::new("/etc/debian_version").exists() {
        return Err(Error::Missing {
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            why: why.to_owned(),
            line,
        });
    }
    println!("xtask: installing {} ({why})", packages.join(" "));
    // A fresh machine may have no package lists yet.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("apt-get update -q && {line}"))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(Error::Apt)?;
    if !status.success() {
        return Err(Error::Install { line, status });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_list_takes_first_words_and_skips_comments() {
        let text = "# header\n\nredis-server   why it is needed\n  # indented comment\nqemu-system-x86 boots\n";
        assert_eq!(
            parse_package_list(text),
            ["redis-server", "qemu-system-x86"]
        );
    }

    #[test]
    fn dpkg_query_output_table() {
        // (asked, dpkg-query's output, not installed)
        type Case<'a> = (&'a [&'a str], &'a str, &'a [&'a str]);
        let cases: [Case; 4] = [
            (&["a", "b"], "ii a\nii b\n", &[]),
            (&["a", "b"], "ii a\nun b\n", &["b"]),
            (&["libc6"], "ii libc6:amd64\n", &[]),
            (&["a"], "", &["a"]),
        ];
        for (asked, output, want) in cases {
            assert_eq!(not_installed(asked, output), want, "{output:?}");
        }
    }

    #[test]
    fn present_tools_need_nothing() {
        assert!(tool_present("/"));
        assert!(tool_present("sh"));
        assert!(!tool_present("/nonexistent/tool"));
        assert!(!tool_present("no-such-program-anywhere"));
        let gone = Tool {
            file: "/nonexistent/tool",
            package: "gone",
        };
        assert_eq!(missing_tools(&[gone, gone]), [gone, gone]);
        let tools = [Tool {
            file: "sh",
            package: "dash",
        }];
        ensure_tools(&tools, "for the test").unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn missing_names_the_install_line() {
        let e = Error::Missing {
            packages: vec!["qemu-system-x86".into(), "ovmf".into()],
            why: "to boot".into(),
            line: "apt-get install -y --no-install-recommends qemu-system-x86 ovmf".into(),
        };
        assert_eq!(
            e.to_string(),
            "missing host packages (qemu-system-x86, ovmf) to boot; install them with:\n  \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends qemu-system-x86 ovmf"
        );
    }
}
