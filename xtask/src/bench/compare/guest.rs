//! The stock Debian 12 guest of `cargo xtask bench compare`: assembled with
//! `mmdebstrap` from the host's own apt sources (no mirror is named here),
//! Debian's `important` priority set plus systemd, sshd, cron, redis-server
//! and the appliance's pinned kernel package (initramfs-tools builds its
//! initrd inside the root). That package is Debian 13's, which no Debian 12
//! suite offers: its dependencies (kmod, initramfs-tools, linux-base >=
//! 4.12, all in Debian 12) come from the host's suites, then the verified
//! `.deb` from the image's input cache is copied in and installed with
//! `dpkg -i` (apt cannot hand dpkg a file outside the chroot). Then the
//! root is written to a sparse ext4 image with
//! `mkfs.ext4 -d`. Cached under `target/bench-compare/` by a key over
//! everything that decides its contents.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::report::FileCounts;
use host_tools::Tool;

/// The suite the host and the guest share.
const SUITE: &str = "bookworm";

/// mmdebstrap's variant: every `Priority: required` and `important`
/// package, what debootstrap installs by default on a stock machine.
const VARIANT: &str = "important";

/// What the seed's previous instance ran, besides the priority set.
/// (The priority set already brings ifupdown and isc-dhcp-client; the guest
/// takes its lease with systemd-networkd, which matches the NIC by pattern.)
const PACKAGES: [&str; 8] = [
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "cron",
    "redis-server",
    "procps",
    "iproute2",
    "initramfs-tools",
];

/// What the pinned (Debian 13) kernel package needs besides
/// `initramfs-tools` (in [`PACKAGES`]), installed from the Debian 12 suites
/// before it.
const KERNEL_DEPENDS: [&str; 2] = ["kmod", "linux-base"];

/// Size of the sparse root filesystem image: the root takes about 400 MiB;
/// 2 GiB leaves a stock machine's head room (logs, AOF) without costing
/// more than the allocated blocks.
const ROOT_IMAGE_BYTES: u64 = 2 << 30;

/// Bumped when anything below changes the guest in a way the key would not
/// see (the configuration texts are in the key themselves).
const RECIPE: &str = "bench-compare debian guest 2";

/// The guest's redis-server settings, appended to Debian's redis.conf
/// (later lines win). Listening on every address with a password, as a
/// stock server reachable from the network would; persistence as the
/// appliance's (`appendonly yes`, `appendfsync always`, no RDB snapshots) so
/// the XADD ratio compares the machines, not two durability settings.
const REDIS_CONF_TAIL: &str = "
# cargo xtask bench compare: reachable through QEMU's hostfwd, with a password,
# persisted like the appliance (every write fsynced to the AOF).
bind 0.0.0.0 -::
protected-mode yes
appendonly yes
appendfsync always
save \"\"
";

/// The measurement: once the machine has been idle 60 s past
/// multi-user.target, one block on the serial console. Part of the bench's
/// guest only.
const REPORT_SCRIPT: &str = "#!/bin/sh
# cargo xtask bench compare: one machine-readable block on the serial console
# once the machine has been idle for 60 s. This script and its children are
# not counted as the machine's processes (the host drops PID $$ and its
# children).
sleep 60
{
echo \"bench-compare: begin $$\"
ps -e -o pid=,ppid=,comm= | sed 's/^/bench-compare: ps /'
ss -ltnupH | sed 's/^/bench-compare: ss /'
grep -E '^(MemTotal|MemFree|MemAvailable):' /proc/meminfo | sed 's/^/bench-compare: mem /'
echo \"bench-compare: end\"
} > /dev/ttyS0 2>&1
";

const REPORT_UNIT: &str = "[Unit]
Description=cargo xtask bench compare: idle measurement on the serial console
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/bench-compare-report

[Install]
WantedBy=multi-user.target
";

/// DHCP on the virtio NIC whatever its predictable name (ifupdown needs
/// the name; systemd-networkd matches a pattern).
const NETWORK_UNIT: &str = "[Match]
Name=en* eth*

[Network]
DHCP=yes
";

const FSTAB: &str = "/dev/vda / ext4 errors=remount-ro 0 1\n";

/// The kernel command line of the Debian guest: root on the one virtio
/// disk, the console on the serial port, `panic=-1` so a failed boot ends
/// QEMU (`-no-reboot`) instead of hanging until the timeout.
pub const CMDLINE: &str = "root=/dev/vda ro console=ttyS0,115200n8 panic=-1";

/// Host tools the build needs.
pub const TOOLS: [Tool; 3] = [
    Tool {
        file: "mmdebstrap",
        package: "mmdebstrap",
    },
    Tool {
        file: "mkfs.ext4",
        package: "e2fsprogs",
    },
    Tool {
        file: "tar",
        package: "tar",
    },
];

/// A built guest.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The cache directory.
    pub dir: PathBuf,
    /// `disk.raw`: the ext4 root filesystem (booted from a copy).
    pub disk: PathBuf,
    /// The kernel, copied out of the root's `/boot`.
    pub kernel: PathBuf,
    /// The initrd initramfs-tools built in the root.
    pub initrd: PathBuf,
    /// `disk.raw` in a GCE-style `tar.gz`.
    pub tar_gz: PathBuf,
    /// redis-server's `requirepass` (never printed).
    pub password: String,
    /// Counted on the root directory before it became an image.
    pub files: FileCounts,
}

/// The cache key: recipe, suite, variant, packages, kernel and every file
/// written into the root.
pub fn cache_key(kernel_package: &str, kernel_version: &str) -> String {
    let mut h = Sha256::new();
    for part in [RECIPE, SUITE, VARIANT, kernel_package, kernel_version]
        .into_iter()
        .chain(PACKAGES)
        .chain(KERNEL_DEPENDS)
        .chain([
            REDIS_CONF_TAIL,
            REPORT_SCRIPT,
            REPORT_UNIT,
            NETWORK_UNIT,
            FSTAB,
        ])
    {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host's apt source files, read at run time (mmdebstrap pastes each
/// into the guest's sources): the mirror stays the build machine's.
fn host_sources() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if fs::metadata(list).is_ok_and(|m| m.len() > 0) {
        files.push(list.to_path_buf());
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(entries) = fs::read_dir(dir) {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    if files.is_empty() {
        bail!("no apt sources on this host (/etc/apt/sources.list, /etc/apt/sources.list.d/)");
    }
    Ok(files)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        let tail = |b: &[u8]| {
            let t = String::from_utf8_lossy(b);
            let lines: Vec<&str> = t.lines().collect();
            lines
                .get(lines.len().saturating_sub(20)..)
                .unwrap_or_default()
                .join("\n")
        };
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
    Ok(())
}

fn write(root: &Path, path: &str, text: &str, mode: u32) -> Result<()> {
    let to = root.join(path.trim_start_matches('/'));
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    fs::write(&to, text).with_context(|| format!("write {}", to.display()))?;
    fs::set_permissions(&to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

fn enable(root: &Path, unit_path: &str, target: &str) -> Result<()> {
    let name = Path::new(unit_path)
        .file_name()
        .context("a unit path without a name")?;
    let wants = root.join(format!("etc/systemd/system/{target}.wants"));
    fs::create_dir_all(&wants)?;
    let link = wants.join(name);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(unit_path, &link).with_context(|| format!("enable {unit_path}"))
}

/// A 32-character hex password from /dev/urandom.
fn generate_password() -> Result<String> {
    use std::io::Read as _;
    let mut rnd = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut rnd))
        .context("read /dev/urandom")?;
    Ok(rnd.iter().map(|b| format!("{b:02x}")).collect())
}

/// Walks `root` without following symlinks, counting files by mode.
pub fn count_files(root: &Path) -> Result<FileCounts> {
    let mut counts = FileCounts::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                counts.add(meta.mode());
            }
        }
    }
    Ok(counts)
}

/// Bytes and allocated bytes of a file.
pub fn sizes(path: &Path) -> Result<(u64, u64)> {
    let m = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((m.len(), m.blocks() * 512))
}

fn load(dir: &Path) -> Result<Guest> {
    let password = fs::read_to_string(dir.join("redis.pass"))
        .context("read the cached guest's password")?
        .trim()
        .to_owned();
    let files: FileCounts = serde_json::from_slice(
        &fs::read(dir.join("files.json")).context("read the cached guest's files.json")?,
    )
    .context("parse files.json")?;
    Ok(Guest {
        dir: dir.to_path_buf(),
        disk: dir.join("disk.raw"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        tar_gz: dir.join("disk.tar.gz"),
        password,
        files,
    })
}

/// The cached guest for `key` under `cache`, built first if missing, with
/// the kernel package from `kernel_deb` (the pinned, verified file).
/// Prints how long each stage took.
pub fn ensure(
    cache: &Path,
    kernel_package: &str,
    kernel_version: &str,
    kernel_deb: &Path,
) -> Result<Guest> {
    let key = cache_key(kernel_package, kernel_version);
    let dir = cache.join(format!("debian-{key}"));
    if dir.join("complete").is_file() {
        println!("debian guest: cached at {}", dir.display());
        return load(&dir);
    }
    host_tools::ensure_tools(&TOOLS, "to build the stock Debian guest")?;
    let partial = cache.join(format!("debian-{key}.partial"));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial).with_context(|| format!("create {}", partial.display()))?;
    let root = partial.join("root");

    let t = Instant::now();
    let include: Vec<&str> = PACKAGES.iter().chain(&KERNEL_DEPENDS).copied().collect();
    let deb_name = kernel_deb
        .file_name()
        .and_then(|n| n.to_str())
        .context("the kernel package path has no file name")?;
    let in_root = format!("/tmp/{deb_name}");
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--quiet")
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", include.join(",")))
        .arg(format!(
            "--customize-hook=copy-in {} /tmp",
            kernel_deb.display()
        ))
        .arg(format!("--customize-hook=chroot \"$1\" dpkg -i {in_root}"))
        .arg(format!("--customize-hook=rm \"$1\"{in_root}"))
        .arg(SUITE)
        .arg(&root)
        .args(host_sources()?);
    run(&mut cmd, "mmdebstrap")?;
    println!(
        "debian guest: mmdebstrap ({VARIANT} + {} packages + {kernel_package}) {:.1}s",
        PACKAGES.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let password = generate_password()?;
    let conf = root.join("etc/redis/redis.conf");
    let mut text = fs::read_to_string(&conf).context("read the guest's redis.conf")?;
    text.push_str(REDIS_CONF_TAIL);
    text.push_str(&format!("requirepass {password}\n"));
    fs::write(&conf, text)?;
    write(&root, "/etc/hostname", "debian-bench\n", 0o644)?;
    write(&root, "/etc/fstab", FSTAB, 0o644)?;
    write(
        &root,
        "/etc/systemd/network/50-dhcp.network",
        NETWORK_UNIT,
        0o644,
    )?;
    enable(
        &root,
        "/lib/systemd/system/systemd-networkd.service",
        "multi-user.target",
    )?;
    write(
        &root,
        "/usr/local/sbin/bench-compare-report",
        REPORT_SCRIPT,
        0o755,
    )?;
    write(
        &root,
        "/etc/systemd/system/bench-compare-report.service",
        REPORT_UNIT,
        0o644,
    )?;
    enable(
        &root,
        "/etc/systemd/system/bench-compare-report.service",
        "multi-user.target",
    )?;
    let boot = root.join("boot");
    let vmlinuz = boot.join(format!(
        "vmlinuz-{}",
        kernel_package.trim_start_matches("linux-image-")
    ));
    let initrd = boot.join(format!(
        "initrd.img-{}",
        kernel_package.trim_start_matches("linux-image-")
    ));
    fs::copy(&vmlinuz, partial.join("vmlinuz"))
        .with_context(|| format!("copy {}", vmlinuz.display()))?;
    fs::copy(&initrd, partial.join("initrd.img"))
        .with_context(|| format!("copy {} (did initramfs-tools run?)", initrd.display()))?;
    let files = count_files(&root)?;
    fs::write(partial.join("files.json"), serde_json::to_vec(&files)?)?;
    println!(
        "debian guest: configured and counted ({} regular files) {:.1}s",
        files.regular,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let disk = partial.join("disk.raw");
    fs::File::create(&disk)?.set_len(ROOT_IMAGE_BYTES)?;
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "debian-root", "-d"])
            .arg(&root)
            .arg(&disk),
        "mkfs.ext4",
    )?;
    println!(
        "debian guest: mkfs.ext4 -d {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    run(
        Command::new("tar").current_dir(&partial).args([
            "--format=oldgnu",
            "-Sczf",
            "disk.tar.gz",
            "disk.raw",
        ]),
        "tar",
    )?;
    println!(
        "debian guest: disk.tar.gz {:.1}s",
        t.elapsed().as_secs_f64()
    );
    fs::remove_dir_all(&root).with_context(|| format!("remove {}", root.display()))?;
    let pass_file = partial.join("redis.pass");
    fs::write(&pass_file, format!("{password}\n"))?;
    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o600))?;
    fs::write(partial.join("complete"), "")?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir).with_context(|| format!("rename to {}", dir.display()))?;
    load(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_kernel() {
        let a = cache_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2");
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            cache_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2")
        );
        assert_ne!(
            a,
            cache_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-3")
        );
    }

    #[test]
    fn the_report_script_marks_every_line() {
        for line in REPORT_SCRIPT
            .lines()
            .filter(|l| l.contains("bench-compare:"))
        {
            assert!(
                line.contains(&format!("{} ", super::super::report::MARK)),
                "{line}"
            );
        }
    }

    #[test]
    fn counts_a_real_tree() {
        let dir = vm_harness::temp_dir("compare-count").unwrap();
        let p = dir.path();
        fs::create_dir(p.join("bin")).unwrap();
        write(p, "/bin/x", "", 0o755).unwrap();
        write(p, "/bin/su", "", 0o4755).unwrap();
        write(p, "/etc/conf", "", 0o644).unwrap();
        std::os::unix::fs::symlink("x", p.join("bin/y")).unwrap();
        let c = count_files(p).unwrap();
        assert_eq!((c.regular, c.executables, c.setid), (3, 2, 1));
    }
}
