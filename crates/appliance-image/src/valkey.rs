//! Building `valkey-server` without Lua, in the sandbox, with proof.
//!
//! The build (`make BUILD_LUA=no MALLOC=libc ...`) is foreign code, so it runs
//! as a [`Step`]: the orig tarball read-only at `/in/valkey.tar`, the stripped
//! server written to `/out`, unpacked and compiled in the private `/tmp` under a
//! fixed path, with `SOURCE_DATE_EPOCH` set (Valkey's `mkreleasehdr.sh` then
//! takes the build id from it instead of the host name and clock).
//!
//! Proof, kept in the build log next to the binary: no `luaL_newstate` byte
//! string anywhere in the binary, and a quick start of the built server (itself
//! in a sandbox: its own network namespace, loopback only) where
//! `EVAL "return 1" 0` answers an error naming the missing scripting engine.
//!
//! Results are cached under `valkey-build/<key>/` where the key hashes the
//! source hash, the make flags, `SOURCE_DATE_EPOCH`, the compiler version and the
//! isolation, so later runs reuse the server (its hash is re-checked).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::error::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::fetch::{hex, sha256_file, Cache};
use crate::sandbox::{Isolation, Step};
use image_formats::elf::contains_bytes;

/// `make` variables of the build (besides `-j2`).
pub const MAKE_FLAGS: &[&str] = &[
    "BUILD_LUA=no",
    "MALLOC=libc",
    "USE_SYSTEMD=no",
    "BUILD_TLS=no",
];

/// The string whose absence proves Lua is not linked in.
pub const LUA_MARKER: &[u8] = b"luaL_newstate";

/// Bumped when the build recipe changes in a way the key does not see.
const RECIPE: &str = "valkey-build v1";

/// Host tools the build needs and the Debian package that installs each.
const TOOLS: &[(&str, &str)] = &[
    ("gcc", "gcc"),
    ("cc", "gcc"),
    ("make", "make"),
    ("pkg-config", "pkg-config"),
    ("strip", "binutils"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("bash", "bash"),
];

/// The `SOURCE_DATE_EPOCH` every Valkey build uses: fixed, so that the build
/// (minutes on two cores) is shared by every commit and every test.
pub const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;

/// A built server and where its evidence lives.
#[derive(Debug, Clone)]
pub struct BuiltServer {
    /// The stripped `valkey-server`.
    pub server: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// The build log (make output and the proofs).
    pub log: PathBuf,
    /// The exact `EVAL` error text the server answered.
    pub eval_reply: String,
}

/// Fails naming the apt package for every missing host tool.
pub fn check_tools() -> Result<()> {
    let mut missing = Vec::new();
    for (tool, pkg) in TOOLS {
        let found = ["/usr/local/bin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists());
        if !found {
            missing.push(format!("`{tool}` (apt-get install {pkg})"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the Valkey build needs host tools that are missing: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

fn compiler_id() -> Result<String> {
    let out = std::process::Command::new("gcc")
        .arg("--version")
        .output()
        .context("cannot run gcc")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// The cache key of a build.
#[must_use]
pub fn build_key(
    orig_sha256: &str,
    source_date_epoch: u64,
    compiler: &str,
    isolation: Isolation,
) -> String {
    let mut h = Sha256::new();
    let _ = write!(
        ByteSink(&mut h),
        "{RECIPE}\n{orig_sha256}\n{}\nSOURCE_DATE_EPOCH={source_date_epoch}\n{compiler}\n{isolation:?}\n",
        MAKE_FLAGS.join(" ")
    );
    hex(&h.finalize()).get(..24).unwrap_or_default().to_owned()
}

struct ByteSink<'a>(&'a mut Sha256);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Builds (or reuses) `valkey-server` from the verified orig tarball.
pub fn build(
    orig: &Path,
    orig_sha256: &str,
    cache: &Cache,
    isolation: Isolation,
    source_date_epoch: u64,
) -> Result<BuiltServer> {
    check_tools()?;
    let key = build_key(orig_sha256, source_date_epoch, &compiler_id()?, isolation);
    let dir = cache.dir("valkey-build")?.join(&key);
    let server = dir.join("valkey-server");
    let log = dir.join("build.log");
    let sha_file = dir.join("valkey-server.sha256");
    let reply_file = dir.join("eval-reply.txt");
    if let (Ok(want), Ok(reply)) = (
        std::fs::read_to_string(&sha_file),
        std::fs::read_to_string(&reply_file),
    ) {
        let sha256 = sha256_file(&server)?;
        if sha256 == want.trim() {
            scan_for_lua(&server)?;
            println!(
                "    cache hit: valkey-server {} ({})",
                sha256,
                server.display()
            );
            return Ok(BuiltServer {
                server,
                sha256,
                log,
                eval_reply: reply.trim().to_owned(),
            });
        }
        println!("    cached valkey-server has the wrong hash; building again");
    }
    let scratch = cache.dir("tmp")?;
    let stage = crate::fetch::temp_dir_in(&scratch, "valkey-out")?;
    let out_dir = stage.path().join("out");
    let stage_log = stage.path().join("build.log");
    let mut logf = std::fs::File::create(&stage_log)?;
    writeln!(
        logf,
        "# {RECIPE}; key {key}; source sha256 {orig_sha256}; isolation {isolation:?}"
    )?;

    // 1. compile + strip, sandboxed.
    let t = Instant::now();
    println!(
        "==> valkey: make -j2 {} valkey-server ({isolation:?})",
        MAKE_FLAGS.join(" ")
    );
    let step =
        Step::new("valkey-make", isolation, &out_dir, &scratch)?.input("valkey.tar", orig)?;
    let src = step.tmp_path().join("valkey-src");
    let script = format!(
        "set -eu\nmkdir {src}\ntar -xf {tar} --strip-components=1 -C {src}\ncd {src}/src\n\
         make -j2 {flags} valkey-server\nstrip --strip-all -o {out}/valkey-server valkey-server\n",
        src = src.display(),
        tar = step.input_path("valkey.tar").display(),
        flags = MAKE_FLAGS.join(" "),
        out = step.output_path().display(),
    );
    let status = step
        .command("sh")?
        .args(["-c", &script])
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf.try_clone()?)
        .status()
        .context("cannot start the sandboxed build")?;
    step.reclaim_output()?;
    drop(step);
    let built = out_dir.join("valkey-server");
    writeln!(
        logf,
        "# make + strip: {status} in {:.1}s",
        t.elapsed().as_secs_f64()
    )?;
    println!(
        "<== valkey make + strip: {:.1}s ({status})",
        t.elapsed().as_secs_f64()
    );
    if !status.success() || !built.is_file() {
        bail!(
            "the Valkey build failed ({status}); log: {}\n{}",
            stage_log.display(),
            tail(&stage_log, 30)
        );
    }

    // 2. proof: no Lua in the bytes.
    let t = Instant::now();
    let n = scan_for_lua(&built)?;
    writeln!(
        logf,
        "[proof] no `luaL_newstate` in valkey-server ({n} bytes scanned)"
    )?;
    println!(
        "<== valkey lua scan: {:.1}s (no `luaL_newstate` in {n} bytes)",
        t.elapsed().as_secs_f64()
    );

    // 3. proof: the server starts and has no scripting engine.
    let t = Instant::now();
    let reply = quick_start(&built, isolation, &scratch, &mut logf)?;
    println!(
        "<== valkey quick start: {:.1}s (EVAL -> {reply})",
        t.elapsed().as_secs_f64()
    );

    let sha256 = sha256_file(&built)?;
    writeln!(logf, "# valkey-server sha256 {sha256}")?;
    drop(logf);
    std::fs::write(out_dir.join("valkey-server.sha256"), format!("{sha256}\n"))?;
    std::fs::write(out_dir.join("eval-reply.txt"), format!("{reply}\n"))?;
    std::fs::rename(&stage_log, out_dir.join("build.log"))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&out_dir, &dir).with_context(|| format!("cannot store {}", dir.display()))?;
    Ok(BuiltServer {
        server,
        sha256,
        log,
        eval_reply: reply,
    })
}

fn scan_for_lua(server: &Path) -> Result<usize> {
    let bytes =
        std::fs::read(server).with_context(|| format!("cannot read {}", server.display()))?;
    if contains_bytes(&bytes, LUA_MARKER) {
        bail!(
            "{} contains `luaL_newstate`: Lua is linked in",
            server.display()
        );
    }
    Ok(bytes.len())
}

/// Starts the server on 127.0.0.1 (inside its own sandbox), sends `PING` and
/// `EVAL "return 1" 0` with bash's `/dev/tcp`, and returns the EVAL error line.
fn quick_start(
    server: &Path,
    isolation: Isolation,
    scratch: &Path,
    log: &mut std::fs::File,
) -> Result<String> {
    // A fresh network namespace has every port free; unsandboxed, ask the host.
    let port = match isolation {
        Isolation::Namespaces => 6379,
        Isolation::Unsandboxed => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let out = crate::fetch::temp_dir_in(scratch, "valkey-run")?;
    let step = Step::new("valkey-quick-start", isolation, out.path(), scratch)?
        .input("valkey-server", server)?;
    let script = format!(
        r#"set -u
{server} --bind 127.0.0.1 --port {port} --save '' --appendonly no --daemonize no --dir {tmp} --logfile {tmp}/server.log &
pid=$!
up=no
for i in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then up=yes; break; fi
  sleep 0.1
done
if [ $up = yes ]; then
  exec 3<>/dev/tcp/127.0.0.1/{port}
  printf '*1\r\n$4\r\nPING\r\n' >&3
  IFS= read -r -t 5 pong <&3 || pong='(no reply)'
  printf 'PING reply: %s\n' "$pong"
  printf '*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n' >&3
  IFS= read -r -t 5 reply <&3 || reply='(no reply)'
  printf 'EVAL reply: %s\n' "$reply"
  exec 3>&-
else
  echo 'server did not accept connections'
fi
kill $pid 2>/dev/null; wait $pid
echo '--- server log:'
cat {tmp}/server.log
"#,
        server = step.input_path("valkey-server").display(),
        tmp = step.tmp_path().display(),
    );
    let output = step
        .command("bash")?
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .context("cannot start the sandboxed quick start")?;
    step.reclaim_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    writeln!(
        log,
        "# quick start on 127.0.0.1:{port} ({isolation:?}):\n{}",
        text.replace('\r', "")
    )?;
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim_end_matches('\r').to_owned())
    };
    let pong = line("PING reply: ").unwrap_or_default();
    let reply = line("EVAL reply: ").unwrap_or_default();
    if pong != "+PONG" {
        bail!("the built server did not answer PING (got `{pong}`):\n{text}");
    }
    if !(reply.starts_with('-') && reply.contains("scripting engine")) {
        bail!("EVAL did not fail for lack of a scripting engine (got `{reply}`):\n{text}");
    }
    writeln!(log, "[proof] EVAL \"return 1\" 0 -> {reply}")?;
    Ok(reply)
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut o = String::new();
    for l in lines.iter().skip(lines.len().saturating_sub(n)) {
        let _ = writeln!(o, "{l}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_input() {
        let base = build_key("aa", 1, "gcc 12", Isolation::Namespaces);
        assert_eq!(base.len(), 24);
        for other in [
            build_key("ab", 1, "gcc 12", Isolation::Namespaces),
            build_key("aa", 2, "gcc 12", Isolation::Namespaces),
            build_key("aa", 1, "gcc 13", Isolation::Namespaces),
            build_key("aa", 1, "gcc 12", Isolation::Unsandboxed),
        ] {
            assert_ne!(base, other);
        }
    }
}
