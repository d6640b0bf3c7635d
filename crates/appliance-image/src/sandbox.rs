//! One build step in a fresh mount and network namespace: seed 001's
//! one-jail-per-build, done with Linux namespaces.
//!
//! What the step's command sees:
//! - `/usr` (and `/bin`, `/lib`, ... as the host has them), a few `/etc` files
//!   the toolchain needs (`ld.so.cache`, `alternatives`, `passwd`, `group`), all
//!   read-only;
//! - each declared input read-only at `/in/<name>`;
//! - one writable output directory at `/out`;
//! - a private `/tmp` (a fresh scratch directory), `/dev/{null,zero,full,random,urandom}`,
//!   a fresh `/proc`;
//! - a network namespace whose only interface is loopback, brought up: there is
//!   no route, so any non-loopback connect fails with `ENETUNREACH` and no
//!   packet leaves.
//!
//! The command runs as `nobody` (65534) with no supplementary groups and
//! `no_new_privs`, so it cannot undo the read-only mounts. Nothing else of the
//! host file system (the repository, `/root`, `/home`, `/var`) is visible.
//!
//! Making namespaces needs root. Without root the step refuses unless the
//! caller passed `--no-sandbox` ([`Isolation::choose`]); then the command runs
//! directly on the host with host paths, and we say so.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{bail, Context, Result};

use tempfile::TempDir;

use crate::fetch::temp_dir_in;

/// The uid and gid a sandboxed command runs as.
pub const SANDBOX_ID: u32 = 65534;

/// How a step is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Fresh mount + network namespace (needs root).
    Namespaces,
    /// No isolation: `--no-sandbox` was given.
    Unsandboxed,
}

impl Isolation {
    /// The policy: namespaces when we can make them; without root, refuse
    /// unless the operator explicitly gave up the sandbox.
    pub fn choose(euid: u32, no_sandbox: bool) -> Result<Self> {
        match (euid, no_sandbox) {
            (_, true) => {
                println!(
                    "    WARNING: --no-sandbox: build steps run foreign code directly on this host, \
                     with network access and the whole file system visible"
                );
                Ok(Self::Unsandboxed)
            }
            (0, false) => Ok(Self::Namespaces),
            (uid, false) => bail!(
                "the Valkey build runs in a fresh mount + network namespace, which needs root \
                 (running as uid {uid}); run as root, or pass --no-sandbox to build without isolation"
            ),
        }
    }

    /// [`Isolation::choose`] for the current process.
    pub fn detect(no_sandbox: bool) -> Result<Self> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        Self::choose(euid, no_sandbox)
    }
}

/// One declared read-only input.
#[derive(Debug, Clone)]
struct Input {
    name: String,
    host: PathBuf,
}

/// A build step: declared inputs, one output directory, a private scratch.
#[derive(Debug)]
pub struct Step {
    name: String,
    isolation: Isolation,
    inputs: Vec<Input>,
    output: PathBuf,
    scratch: TempDir,
}

impl Step {
    /// A step writing to `output` (created if missing); scratch space (the
    /// future root and `/tmp`) is made under `scratch_parent` and removed on drop.
    pub fn new(
        name: &str,
        isolation: Isolation,
        output: &Path,
        scratch_parent: &Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let scratch = temp_dir_in(scratch_parent, "step")?;
        std::fs::create_dir(scratch.path().join("tmp"))?;
        Ok(Self {
            name: name.to_owned(),
            isolation,
            inputs: Vec::new(),
            output: output.to_path_buf(),
            scratch,
        })
    }

    /// Declares a read-only input (file or directory) under a simple name.
    pub fn input(mut self, name: &str, host: &Path) -> Result<Self> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || name.starts_with('.')
        {
            bail!(
                "step {}: input name `{name}` must be a plain file name",
                self.name
            );
        }
        if !host.exists() {
            bail!(
                "step {}: input {} does not exist",
                self.name,
                host.display()
            );
        }
        self.inputs.push(Input {
            name: name.to_owned(),
            host: host.to_path_buf(),
        });
        Ok(self)
    }

    /// The isolation this step uses.
    #[must_use]
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// An input's path as the command sees it.
    #[must_use]
    pub fn input_path(&self, name: &str) -> PathBuf {
        match self.isolation {
            Isolation::Namespaces => Path::new("/in").join(name),
            Isolation::Unsandboxed => self
                .inputs
                .iter()
                .find(|i| i.name == name)
                .map_or_else(|| PathBuf::from("/nonexistent"), |i| i.host.clone()),
        }
    }

    /// The output directory as the command sees it.
    #[must_use]
    pub fn output_path(&self) -> PathBuf {
        match self.isolation {
            Isolation::Namespaces => PathBuf::from("/out"),
            Isolation::Unsandboxed => self.output.clone(),
        }
    }

    /// The private temporary directory as the command sees it.
    #[must_use]
    pub fn tmp_path(&self) -> PathBuf {
        match self.isolation {
            Isolation::Namespaces => PathBuf::from("/tmp"),
            Isolation::Unsandboxed => self.scratch.path().join("tmp"),
        }
    }

    /// A command that runs inside the step, with a small fixed environment
    /// (`PATH`, `HOME`/`TMPDIR` = the private tmp, `LC_ALL=C`, `TZ=UTC`) and the
    /// private tmp as working directory. Add variables with `.env()`.
    pub fn command(&self, program: &str) -> Result<Command> {
        let mut cmd = Command::new(program);
        let tmp = self.tmp_path();
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &tmp)
            .env("TMPDIR", &tmp)
            .env("LC_ALL", "C")
            .env("TZ", "UTC");
        match self.isolation {
            Isolation::Unsandboxed => {
                cmd.current_dir(&tmp);
            }
            Isolation::Namespaces => {
                let plan = self.prepare_root()?;
                linux::enter(&mut cmd, plan);
            }
        }
        Ok(cmd)
    }

    /// Hands the output directory back to root after the step (the command wrote
    /// it as `nobody`).
    pub fn reclaim_output(&self) -> Result<()> {
        if self.isolation == Isolation::Namespaces {
            chown_tree(&self.output, 0)?;
        }
        Ok(())
    }

    /// Creates the mount points on the host side (before any fork, so the child
    /// only makes syscalls) and returns the mount plan.
    fn prepare_root(&self) -> Result<linux::Plan> {
        let root = self.scratch.path().join("root");
        if root.exists() {
            bail!("step {}: one sandboxed command per step", self.name);
        }
        std::fs::create_dir(&root)?;
        let mut binds: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
        for top in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&host)?;
                std::os::unix::fs::symlink(target, root.join(top))?;
            } else if meta.is_dir() {
                std::fs::create_dir(root.join(top))?;
                binds.push((host, root.join(top), true));
            }
        }
        std::fs::create_dir(root.join("etc"))?;
        for f in [
            "ld.so.cache",
            "ld.so.conf",
            "ld.so.conf.d",
            "alternatives",
            "passwd",
            "group",
            "nsswitch.conf",
        ] {
            let host = Path::new("/etc").join(f);
            if host.exists() {
                mount_point(&host, &root.join("etc").join(f))?;
                binds.push((host, root.join("etc").join(f), true));
            }
        }
        std::fs::create_dir(root.join("dev"))?;
        for d in ["null", "zero", "full", "random", "urandom"] {
            let host = Path::new("/dev").join(d);
            std::fs::write(root.join("dev").join(d), b"")?;
            binds.push((host, root.join("dev").join(d), false));
        }
        std::fs::create_dir(root.join("in"))?;
        for i in &self.inputs {
            let at = root.join("in").join(&i.name);
            mount_point(&i.host, &at)?;
            binds.push((i.host.clone(), at, true));
        }
        std::fs::create_dir(root.join("out"))?;
        binds.push((self.output.clone(), root.join("out"), false));
        let tmp = self.scratch.path().join("tmp");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        chown_tree(&tmp, SANDBOX_ID)?;
        chown_tree(&self.output, SANDBOX_ID)?;
        std::fs::create_dir(root.join("tmp"))?;
        binds.push((tmp, root.join("tmp"), false));
        std::fs::create_dir(root.join("proc"))?;
        linux::Plan::new(&root, &binds, SANDBOX_ID)
    }
}

fn mount_point(host: &Path, at: &Path) -> Result<()> {
    if host.is_dir() {
        std::fs::create_dir(at)?;
    } else {
        std::fs::write(at, b"")?;
    }
    Ok(())
}

fn chown_tree(path: &Path, id: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(id), Some(id))
        .with_context(|| format!("cannot chown {}", path.display()))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), id)?;
        }
    }
    Ok(())
}

fn cstring(p: &OsStr) -> Result<CString> {
    CString::new(p.as_bytes())
        .with_context(|| format!("path with a NUL byte: {}", p.to_string_lossy()))
}

/// The syscall edge: everything here runs in the forked child between `fork`
/// and `exec`, so it only makes syscalls on data prepared before the fork (no
/// allocation, no locks).
mod linux {
    use std::ffi::CString;
    use std::io;
    use std::os::unix::process::CommandExt as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::error::Result;

    use super::cstring;

    struct Bind {
        source: CString,
        target: CString,
        read_only: bool,
    }

    /// Mounts to make, prepared before the fork.
    pub(super) struct Plan {
        root: CString,
        binds: Vec<Bind>,
        proc_target: CString,
        id: libc::uid_t,
    }

    impl Plan {
        pub(super) fn new(
            root: &Path,
            binds: &[(PathBuf, PathBuf, bool)],
            id: u32,
        ) -> Result<Self> {
            let mut out = Vec::new();
            for (s, t, ro) in binds {
                out.push(Bind {
                    source: cstring(s.as_os_str())?,
                    target: cstring(t.as_os_str())?,
                    read_only: *ro,
                });
            }
            Ok(Self {
                root: cstring(root.as_os_str())?,
                binds: out,
                proc_target: cstring(root.join("proc").as_os_str())?,
                id,
            })
        }
    }

    /// Writes a fixed message to stderr and returns the errno as an error;
    /// allocation-free, as required after fork.
    fn fail(what: &'static [u8]) -> io::Error {
        let err = io::Error::last_os_error();
        // SAFETY: writing a static buffer to fd 2; a failed write is harmless.
        unsafe {
            libc::write(2, b"sandbox setup failed: ".as_ptr().cast(), 22);
            libc::write(2, what.as_ptr().cast(), what.len());
            libc::write(2, b"\n".as_ptr().cast(), 1);
        }
        err
    }

    fn check(rc: libc::c_int, what: &'static [u8]) -> io::Result<()> {
        if rc < 0 {
            Err(fail(what))
        } else {
            Ok(())
        }
    }

    const NULL: *const libc::c_char = std::ptr::null();

    /// Arranges for `cmd` to enter the sandbox described by `plan` when spawned.
    pub(super) fn enter(cmd: &mut Command, plan: Plan) {
        let dot = c".";
        let slash = c"/";
        let proc_fs = c"proc";
        let lo = *b"lo\0";
        // SAFETY: the closure runs in the child after fork; it only makes raw
        // syscalls on memory prepared before the fork (the Plan and constants)
        // and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                check(
                    libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET),
                    b"unshare",
                )?;
                // Nothing we mount may propagate back to the host.
                check(
                    libc::mount(
                        NULL,
                        slash.as_ptr(),
                        NULL,
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ),
                    b"make / private",
                )?;
                // pivot_root needs the new root to be a mount point.
                check(
                    libc::mount(
                        plan.root.as_ptr(),
                        plan.root.as_ptr(),
                        NULL,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ),
                    b"bind new root",
                )?;
                for b in &plan.binds {
                    check(
                        libc::mount(
                            b.source.as_ptr(),
                            b.target.as_ptr(),
                            NULL,
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ),
                        b"bind mount",
                    )?;
                    if b.read_only {
                        check(
                            libc::mount(
                                NULL,
                                b.target.as_ptr(),
                                NULL,
                                libc::MS_REMOUNT
                                    | libc::MS_BIND
                                    | libc::MS_RDONLY
                                    | libc::MS_NOSUID
                                    | libc::MS_NODEV,
                                std::ptr::null(),
                            ),
                            b"read-only remount",
                        )?;
                    }
                }
                check(
                    libc::mount(
                        proc_fs.as_ptr(),
                        plan.proc_target.as_ptr(),
                        proc_fs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ),
                    b"mount /proc",
                )?;
                check(libc::chdir(plan.root.as_ptr()), b"chdir new root")?;
                check(
                    i32::try_from(libc::syscall(
                        libc::SYS_pivot_root,
                        dot.as_ptr(),
                        dot.as_ptr(),
                    ))
                    .unwrap_or(-1),
                    b"pivot_root",
                )?;
                check(
                    libc::umount2(dot.as_ptr(), libc::MNT_DETACH),
                    b"detach old root",
                )?;
                check(libc::chdir(slash.as_ptr()), b"chdir /")?;
                check(
                    libc::mount(
                        NULL,
                        slash.as_ptr(),
                        NULL,
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                        std::ptr::null(),
                    ),
                    b"read-only root",
                )?;
                // Loopback up; the new namespace has no other interface.
                let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                check(sock, b"socket")?;
                let mut req: libc::ifreq = std::mem::zeroed();
                for (dst, src) in req.ifr_name.iter_mut().zip(lo.iter()) {
                    *dst = *src as libc::c_char;
                }
                check(
                    libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req),
                    b"get lo flags",
                )?;
                req.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
                check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req), b"set lo up")?;
                libc::close(sock);
                check(libc::setgroups(0, std::ptr::null()), b"setgroups")?;
                check(libc::setgid(plan.id), b"setgid")?;
                check(libc::setuid(plan.id), b"setuid")?;
                check(
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                    b"no_new_privs",
                )?;
                check(libc::chdir(c"/tmp".as_ptr()), b"chdir /tmp")?;
                Ok(())
            });
        }
    }
}
