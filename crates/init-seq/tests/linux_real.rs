//! The Linux `Os` against the real kernel, and the leaf crates' Linux parts
//! as `main` wires them into the boot (the firewall loader, the metadata
//! client through its connector), everything that can run on a
//! development machine without harming it: each case that changes process
//! state (credentials, Landlock, namespaces) runs in a forked child, which a
//! plain `main` (no test harness threads) makes safe. Needs root.
//!
//! What cannot run here (the mounts on `/`, `kernel.*` sysctls, loading a real
//! module, DHCP on a real NIC, `reboot(HALT)`) is exercised by the QEMU boot.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use appliance_spec::{Spec, REFERENCE_TOML};
    use init_seq::os::linux::LinuxOs;
    use init_seq::parse::{
        ext4_superblock, thread_count, EXT4_SUPERBLOCK_LEN, EXT4_SUPERBLOCK_OFFSET,
    };
    use init_seq::plan::HARDENING_SYSCTLS;
    use init_seq::{Action, Exec, InitError, LandlockRules, Mount, Os, Owner, Plan};
    use metadata_fetch::Connector;
    use nix::sched::CloneFlags;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::ForkResult;
    use pf_rules::Firewall;

    type Case = fn() -> Result<(), String>;

    pub(crate) fn main() {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        // Order matters only for the last one, which starts threads.
        let cases: &[(&str, Case)] = &[
            (
                "ext4 label on a real mkfs.ext4 image",
                ext4_label_from_real_image,
            ),
            ("block devices are listed", block_devices_listed),
            ("ext4 grown online on a loop device", grow_on_a_loop_device),
            ("thread count and governor fork", fork_governor_runs_entry),
            (
                "governor exempt from the OOM killer after the fork",
                governor_oom_score_adj,
            ),
            (
                "file creation with owner and mode",
                files_with_owner_and_mode,
            ),
            (
                "privilege drop empties every capability set",
                privilege_drop,
            ),
            ("landlock: the plan's rules, then exec", landlock_then_exec),
            (
                "pseudo-filesystem mounts in a mount namespace",
                mounts_in_namespace,
            ),
            (
                "net sysctls in a network namespace",
                net_sysctls_in_namespace,
            ),
            (
                "hardening table against this kernel",
                hardening_table_keys_exist,
            ),
            (
                "firewall phases in a network namespace",
                firewall_in_namespace,
            ),
            ("finit_module refuses a non-module", module_load_error),
            ("close_fds and exec", close_fds_then_exec),
            (
                "seccomp: the plan's filter, its listener handed to the governor, then exec",
                syscall_filter_handoff_then_exec,
            ),
            (
                "metadata fetch, then back to one thread",
                metadata_fetch_and_close,
            ),
        ];
        let mut failed = 0;
        for (name, case) in cases {
            match case() {
                Ok(()) => println!("test {name} ... ok"),
                Err(reason) => {
                    println!("test {name} ... FAILED: {reason}");
                    failed += 1;
                }
            }
        }
        println!(
            "\ntest result: {}. {} passed; {failed} failed",
            if failed == 0 { "ok" } else { "FAILED" },
            cases.len() - failed
        );
        if failed > 0 {
            std::process::exit(1);
        }
    }

    /// Runs `f` in a forked child; its error text comes back on stderr and
    /// as a non-zero exit.
    fn in_child(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        // SAFETY: this test binary has no harness threads; every case that
        // starts a thread joins or reaps it before returning.
        match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
            ForkResult::Child => {
                let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    Ok(Ok(())) => 0,
                    Ok(Err(reason)) => {
                        eprintln!("    child: {reason}");
                        1
                    }
                    Err(_) => 2,
                };
                // SAFETY: leave the child without running the parent's
                // destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                match waitpid(child, None).map_err(|e| e.to_string())? {
                    WaitStatus::Exited(_, 0) => Ok(()),
                    other => Err(format!("child ended with {other:?}")),
                }
            }
        }
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("init-seq-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ensure(ok: bool, what: impl Into<String>) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(what.into())
        }
    }

    fn ext4_label_from_real_image() -> Result<(), String> {
        let scratch = Scratch::new("ext4");
        let mut os = LinuxOs::new();
        for (file, label) in [
            ("data.raw", "appliance-data"),
            ("other.raw", "something-else"),
        ] {
            let image = scratch.path(file);
            let status = Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", label])
                .arg(&image)
                .arg("8M")
                .status()
                .map_err(|e| format!("mkfs.ext4: {e}"))?;
            ensure(status.success(), format!("mkfs.ext4 failed: {status}"))?;
            let bytes = os
                .read_at(&image, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_LEN)
                .map_err(|e| e.to_string())?;
            let sb = ext4_superblock(&bytes).ok_or("no ext4 superblock")?;
            ensure(
                sb.label == label.as_bytes(),
                format!("label {:?}", sb.label),
            )?;
            ensure(sb.block_size >= 1024, "block size")?;
        }
        // An unformatted device is not ext4, and a short read is no error.
        let blank = scratch.path("blank.raw");
        fs::write(&blank, vec![0u8; 4096]).unwrap();
        let bytes = os
            .read_at(&blank, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_LEN)
            .unwrap();
        ensure(ext4_superblock(&bytes).is_none(), "zeros parsed as ext4")?;
        let bytes = os.read_at(&blank, 4000, 1024).unwrap();
        ensure(
            bytes.len() == 96,
            format!("short read gave {}", bytes.len()),
        )
    }

    fn block_devices_listed() -> Result<(), String> {
        let devices = LinuxOs::new().block_devices().map_err(|e| e.to_string())?;
        let node = |d: &Path| d.starts_with("/dev") && d.components().count() == 3;
        ensure(
            devices
                .iter()
                .all(|d| node(&d.path) && d.partition_of.as_deref().is_none_or(node)),
            format!("{devices:?}"),
        )?;
        // Every partition's disk is listed too, and is not a partition.
        for d in &devices {
            if let Some(disk) = &d.partition_of {
                let listed = devices.iter().find(|x| &x.path == disk);
                ensure(
                    listed.is_some_and(|x| x.partition_of.is_none()),
                    format!("{d:?}: disk not listed as a whole disk"),
                )?;
            }
        }
        let mut sorted = devices.clone();
        sorted.sort();
        ensure(sorted == devices, "not sorted")
    }

    /// A loop device, detached on drop.
    struct Loop(PathBuf);

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }

    fn tool(program: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        ensure(
            out.status.success(),
            format!(
                "{program} {args:?}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `Block count:` from `dumpe2fs -h`.
    fn dumpe2fs_blocks(device: &str) -> Result<u64, String> {
        let text = tool("dumpe2fs", &["-h", device])?;
        text.lines()
            .find_map(|l| l.strip_prefix("Block count:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or(format!("no block count in dumpe2fs -h {device}"))
    }

    /// The data disk's growth for real: a 64 MiB ext4 (mkfs.ext4, 4 KiB
    /// blocks as `data.raw`) on a 192 MiB loop device, mounted in a private
    /// mount namespace, grown online by `grow_data_filesystem`; dumpe2fs and
    /// df see 192 MiB, the file written before is intact, a second call does
    /// nothing, and e2fsck finds the result clean.
    fn grow_on_a_loop_device() -> Result<(), String> {
        const MIB: u64 = 1 << 20;
        let scratch = Scratch::new("grow");
        let image = scratch.path("data.raw");
        fs::File::create(&image)
            .and_then(|f| f.set_len(192 * MIB))
            .map_err(|e| e.to_string())?;
        let image_s = image.display().to_string();
        tool(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-m",
                "0",
                "-L",
                "appliance-data",
                &image_s,
                "64M",
            ],
        )?;
        let device = tool("losetup", &["--find", "--show", &image_s])?;
        let device = Loop(PathBuf::from(device.trim()));
        let dev_s = device.0.display().to_string();
        ensure(dumpe2fs_blocks(&dev_s)? == 16_384, "mkfs made 64 MiB")?;
        let mnt = scratch.path("mnt");
        fs::create_dir(&mnt).unwrap();
        let dev = device.0.clone();
        in_child(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            let mut os = LinuxOs::new();
            ensure(
                os.block_device_size(&dev).map_err(|e| e.to_string())? == 192 * MIB,
                "BLKGETSIZE64",
            )?;
            os.mount(&Mount {
                source: dev.display().to_string(),
                target: mnt.clone(),
                fstype: "ext4".into(),
                flags: init_seq::MountFlags::ALL,
                data: None,
            })
            .map_err(|e| e.to_string())?;
            let entry = mnt.join("appendonly.aof");
            fs::write(&entry, b"*3\r\n$4\r\nXADD\r\n").unwrap();
            let result = init_seq::grow_data_filesystem(&mut os, &dev, &mnt);
            if !has_cap_sys_resource() {
                // The kernel's own check (ext4_resize_begin: capable
                // (CAP_SYS_RESOURCE)) refuses, and that is a boot-stopping
                // error naming the ioctl, with the filesystem untouched.
                let refused = matches!(
                    &result,
                    Err(InitError::Io { op: "ioctl(EXT4_IOC_RESIZE_FS)", source, .. })
                        if source.raw_os_error() == Some(libc::EPERM)
                );
                ensure(refused, format!("without CAP_SYS_RESOURCE: {result:?}"))?;
                println!(
                    "    NOTE: this machine withholds CAP_SYS_RESOURCE (CapEff bit 24), so the kernel refuses \
                     EXT4_IOC_RESIZE_FS here; checked: the refusal is an error and nothing changed. \
                     The growth itself runs for real in `cargo xtask e2e --only disk-interfaces`."
                );
                return nix::mount::umount(&mnt).map_err(|e| e.to_string());
            }
            let grown = result.map_err(|e| e.to_string())?;
            ensure(
                grown == Some((64 * MIB, 192 * MIB)),
                format!("grown {grown:?}"),
            )?;
            let stat = nix::sys::statvfs::statvfs(&mnt).map_err(|e| e.to_string())?;
            let total = stat.blocks() * stat.fragment_size();
            // statfs leaves out the filesystem's own metadata.
            ensure(
                total > 180 * MIB && total <= 192 * MIB,
                format!("statvfs total {total}"),
            )?;
            let df = tool("df", &["-B1", "--output=size", &mnt.display().to_string()])?;
            let df: u64 = df.lines().nth(1).unwrap_or("").trim().parse().unwrap_or(0);
            ensure(df == total, format!("df says {df}, statvfs {total}"))?;
            ensure(
                fs::read(&entry).unwrap() == b"*3\r\n$4\r\nXADD\r\n",
                "the earlier file changed",
            )?;
            // Filling its disk now: nothing to do, nothing asked.
            let again =
                init_seq::grow_data_filesystem(&mut os, &dev, &mnt).map_err(|e| e.to_string())?;
            ensure(again.is_none(), format!("second growth {again:?}"))?;
            nix::mount::umount(&mnt).map_err(|e| e.to_string())
        })?;
        let want = if has_cap_sys_resource() {
            49_152
        } else {
            16_384
        };
        ensure(dumpe2fs_blocks(&dev_s)? == want, "dumpe2fs after growth")?;
        tool("e2fsck", &["-fn", &dev_s]).map(|_| ())
    }

    fn fork_governor_runs_entry() -> Result<(), String> {
        let mut os = LinuxOs::new();
        let status = os.read_file(Path::new("/proc/self/status")).unwrap();
        ensure(
            thread_count(&status).unwrap() == 1,
            "test main is not single-threaded",
        )?;
        // A second thread is seen (and would stop the boot's fork).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv().ok());
        let status = os.read_file(Path::new("/proc/self/status")).unwrap();
        let threads = thread_count(&status).unwrap();
        tx.send(()).unwrap();
        helper.join().unwrap();
        ensure(threads == 2, format!("{threads} threads with a helper"))?;

        let pid = os
            .fork_governor(&mut |_link| 7)
            .map_err(|e| e.to_string())?;
        let status =
            waitpid(nix::unistd::Pid::from_raw(pid as i32), None).map_err(|e| e.to_string())?;
        ensure(
            status == WaitStatus::Exited(nix::unistd::Pid::from_raw(pid as i32), 7),
            format!("governor child: {status:?}"),
        )
    }

    /// What the boot does right after the fork: init writes the child's
    /// `oom_score_adj` and the child itself sees it. Lowering a score needs
    /// `CAP_SYS_RESOURCE`, which the appliance's init has (the kernel starts
    /// it with every capability); a machine whose root lacks it (a
    /// container) runs the same path with a raised score instead, and shows
    /// that -1000 is refused rather than ignored.
    fn governor_oom_score_adj() -> Result<(), String> {
        const CAP_SYS_RESOURCE: u32 = 24;
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let effective = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap();
        let can_lower = effective & (1 << CAP_SYS_RESOURCE) != 0;
        let value = if can_lower {
            init_seq::plan::GOVERNOR_OOM_SCORE_ADJ
        } else {
            println!(
                "    (no CAP_SYS_RESOURCE here: checking with 500, and that -1000 is refused)"
            );
            500
        };
        let mut os = LinuxOs::new();
        let want = value.to_string();
        let pid = os
            .fork_governor(&mut |_link| {
                for _ in 0..500 {
                    let adj = fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
                    if adj.trim() == want {
                        // At -1000 the kernel reports a badness of 0: never chosen.
                        let score = fs::read_to_string("/proc/self/oom_score").unwrap_or_default();
                        return if value != -1000 || score.trim() == "0" {
                            0
                        } else {
                            3
                        };
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                2
            })
            .map_err(|e| e.to_string())?;
        let child = nix::unistd::Pid::from_raw(pid as i32);
        let set = os.set_oom_score_adj(pid, value);
        let refused = (!can_lower).then(|| os.set_oom_score_adj(pid, -1000));
        let status = waitpid(child, None).map_err(|e| e.to_string())?;
        set.map_err(|e| e.to_string())?;
        ensure(
            status == WaitStatus::Exited(child, 0),
            format!("governor child did not see {value}: {status:?}"),
        )?;
        if let Some(refused) = refused {
            ensure(
                matches!(&refused, Err(InitError::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied),
                format!("-1000 without CAP_SYS_RESOURCE: {refused:?}"),
            )?;
        }
        // A process that is gone is an error, not a silent success.
        let gone = os.set_oom_score_adj(pid, value);
        ensure(
            matches!(gone, Err(InitError::Io { .. })),
            format!("{gone:?}"),
        )
    }

    fn files_with_owner_and_mode() -> Result<(), String> {
        let scratch = Scratch::new("files");
        let mut os = LinuxOs::new();
        let dir = scratch.path("valkey");
        let file = dir.join("users.acl");
        let dir_owner = Owner {
            uid: 6379,
            gid: 6379,
            mode: 0o500,
        };
        let file_owner = Owner {
            uid: 6379,
            gid: 6379,
            mode: 0o400,
        };
        os.mkdir(&dir, dir_owner).map_err(|e| e.to_string())?;
        os.write_file(&file, b"user default off\n", file_owner)
            .map_err(|e| e.to_string())?;
        let meta = fs::metadata(&dir).unwrap();
        ensure(
            meta.mode() & 0o7777 == 0o500 && meta.uid() == 6379 && meta.gid() == 6379,
            "dir owner/mode",
        )?;
        let meta = fs::metadata(&file).unwrap();
        ensure(
            meta.mode() & 0o7777 == 0o400 && meta.uid() == 6379 && meta.gid() == 6379,
            format!("file mode {:o} uid {}", meta.mode(), meta.uid()),
        )?;
        // Never an existing file, never through a symlink, never an existing dir.
        ensure(
            os.write_file(&file, b"x", file_owner).is_err(),
            "overwrote an existing file",
        )?;
        let link = scratch.path("link.acl");
        std::os::unix::fs::symlink(scratch.path("target"), &link).unwrap();
        ensure(
            os.write_file(&link, b"x", file_owner).is_err(),
            "followed a symlink",
        )?;
        ensure(
            !scratch.path("target").exists(),
            "created the symlink's target",
        )?;
        ensure(
            os.mkdir(&dir, dir_owner).is_err(),
            "mkdir of an existing dir",
        )?;

        // The data directory, given to the server.
        let data = scratch.path("data");
        fs::create_dir(&data).unwrap();
        os.set_owner(
            &data,
            Owner {
                uid: 6379,
                gid: 6379,
                mode: 0o700,
            },
        )
        .map_err(|e| e.to_string())?;

        // After the drop the server reads its ACL and writes its data.
        let (file_c, data_c) = (file.clone(), data.clone());
        in_child(move || {
            let mut os = LinuxOs::new();
            os.clear_groups().map_err(|e| e.to_string())?;
            os.setgid(6379).map_err(|e| e.to_string())?;
            os.setuid(6379).map_err(|e| e.to_string())?;
            let acl = fs::read(&file_c).map_err(|e| format!("server cannot read its ACL: {e}"))?;
            ensure(acl == b"user default off\n", "ACL content")?;
            ensure(
                fs::write(&file_c, b"x").is_err(),
                "server could rewrite its ACL",
            )?;
            fs::write(data_c.join("dump.rdb"), b"REDIS")
                .map_err(|e| format!("server cannot write data: {e}"))
        })
    }

    /// `/proc/self/status` fields as a map.
    /// Whether this process holds CAP_SYS_RESOURCE (bit 24 of `CapEff:`),
    /// which the kernel asks of an online ext4 resize.
    fn has_cap_sys_resource() -> bool {
        status_fields()
            .get("CapEff")
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 24) != 0)
    }

    fn status_fields() -> std::collections::BTreeMap<String, String> {
        fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }

    fn privilege_drop() -> Result<(), String> {
        in_child(|| {
            let mut os = LinuxOs::new();
            let step = |r: Result<(), InitError>| r.map_err(|e| e.to_string());
            step(os.drop_bounding_set())?;
            step(os.clear_groups())?;
            step(os.setgid(65534))?;
            step(os.setuid(65534))?;
            ensure(os.geteuid() == 65534, "euid after the drop")?;
            step(os.set_no_new_privs())?;
            step(os.clear_capabilities())?;
            let status = status_fields();
            for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                ensure(
                    status.get(field).map(String::as_str) == Some("0000000000000000"),
                    format!("{field} = {:?}", status.get(field)),
                )?;
            }
            ensure(
                status.get("NoNewPrivs").map(String::as_str) == Some("1"),
                "NoNewPrivs",
            )?;
            ensure(
                status
                    .get("Uid")
                    .map(|v| v.split_whitespace().all(|u| u == "65534"))
                    == Some(true),
                format!("Uid {:?}", status.get("Uid")),
            )?;
            ensure(
                status
                    .get("Gid")
                    .map(|v| v.split_whitespace().all(|g| g == "65534"))
                    == Some(true),
                format!("Gid {:?}", status.get("Gid")),
            )?;
            ensure(
                status.get("Groups").map(String::as_str) == Some(""),
                "Groups",
            )?;
            // And it cannot get root back.
            ensure(os.setuid(0).is_err(), "setuid(0) after the drop succeeded")
        })
    }

    /// A spec whose server is `/usr/bin/echo`, with config, ACL and data in
    /// scratch places, laid out by the real plan.
    fn scratch_plan(scratch: &Scratch, run_dir: &Path, port: u16) -> Plan {
        let config = scratch.path("valkey.conf");
        fs::write(&config, "port 0\n").unwrap();
        let data = scratch.path("data");
        fs::create_dir(&data).unwrap();
        let toml = REFERENCE_TOML
            .replace("\"/usr/bin/valkey-server\"", "\"/usr/bin/echo\"")
            .replace(
                "\"/etc/valkey/valkey.conf\"",
                &format!("{:?}", config.display().to_string()),
            )
            .replace(
                "\"/run/valkey/users.acl\"",
                &format!("{:?}", run_dir.join("users.acl").display().to_string()),
            )
            .replace(
                "data_dir = \"/data\"",
                &format!("data_dir = {:?}", data.display().to_string()),
            )
            .replace("port = 6379", &format!("port = {port}"));
        Plan::new(Spec::from_toml_str(&toml).unwrap(), "").unwrap()
    }

    fn landlock_then_exec() -> Result<(), String> {
        let scratch = Scratch::new("landlock");
        // The ACL directory must be /run/<dir>; make one and remove it after.
        let run_dir = PathBuf::from(format!("/run/init-seq-test-{}", std::process::id()));
        let _run = RunDir(run_dir.clone());
        let (allowed_port, other_port) = (47_379, 47_380);
        let plan = scratch_plan(&scratch, &run_dir, allowed_port);
        let mut os = LinuxOs::new();
        let server = plan.spec().server().clone();
        os.mkdir(
            &run_dir,
            Owner {
                uid: server.uid(),
                gid: server.gid(),
                mode: 0o500,
            },
        )
        .map_err(|e| e.to_string())?;
        os.write_file(
            &run_dir.join("users.acl"),
            b"acl\n",
            Owner {
                uid: server.uid(),
                gid: server.gid(),
                mode: 0o400,
            },
        )
        .map_err(|e| e.to_string())?;
        let data = PathBuf::from(server.data_dir());
        os.set_owner(
            &data,
            Owner {
                uid: server.uid(),
                gid: server.gid(),
                mode: 0o700,
            },
        )
        .map_err(|e| e.to_string())?;
        let outside = scratch.path("outside");
        fs::create_dir(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o755)).unwrap();

        let rules: LandlockRules = plan
            .steps()
            .iter()
            .find_map(|s| match &s.action {
                Action::Landlock(rules) => Some(rules.clone()),
                _ => None,
            })
            .unwrap();
        let config = PathBuf::from(server.config());
        in_child(move || {
            let mut os = LinuxOs::new();
            let step = |r: Result<(), InitError>| r.map_err(|e| e.to_string());
            // The plan's step-12 tail, in the plan's order.
            step(os.drop_bounding_set())?;
            step(os.clear_groups())?;
            step(os.setgid(server.gid()))?;
            step(os.setuid(server.uid()))?;
            ensure(os.geteuid() != 0, "still root")?;
            step(os.set_no_new_privs())?;
            step(os.clear_capabilities())?;
            // A process outside the domain with the server's own uid (so the
            // permission checks Landlock adds are the only ones that can
            // say no): forked before Landlock, it listens on an abstract
            // unix socket until its pipe closes (close_fds, at the latest).
            let stranger = OutsideProcess::start()?;
            ensure(
                nix::sys::signal::kill(stranger.pid, None).is_ok(),
                "signal the outside process before Landlock",
            )?;
            UnixStream::connect_addr(&stranger.addr)
                .map_err(|e| format!("connect to the outside socket before Landlock: {e}"))?;
            let abi = os.landlock_abi();
            ensure(
                abi >= init_seq::LANDLOCK_ABI,
                format!(
                    "this kernel has Landlock ABI {abi}, the test needs {}",
                    init_seq::LANDLOCK_ABI
                ),
            )?;
            ensure(
                rules.required_abi() == init_seq::LANDLOCK_ABI,
                "the plan's rules need ABI 6",
            )?;
            step(os.landlock(&rules))?;

            // Write: only beneath the data directory.
            fs::write(data.join("appendonly.aof"), b"*1\r\n")
                .map_err(|e| format!("write in data dir: {e}"))?;
            let denied = fs::write(outside.join("x"), b"x");
            ensure(
                denied.as_ref().err().map(std::io::Error::raw_os_error) == Some(Some(libc::EACCES)),
                format!("write outside the data dir: {denied:?}"),
            )?;
            // Read: its config and ACL, not the rest of the system.
            fs::read(&config).map_err(|e| format!("read config: {e}"))?;
            fs::read(run_dir.join("users.acl")).map_err(|e| format!("read ACL: {e}"))?;
            ensure(
                fs::read("/etc/hostname").is_err() && fs::read("/etc/passwd").is_err(),
                "read /etc",
            )?;
            // Execute: only the server binary.
            let other = Command::new("/bin/true").status();
            ensure(
                other.as_ref().err().map(std::io::Error::raw_os_error) == Some(Some(libc::EACCES)),
                format!("exec /bin/true: {other:?}"),
            )?;
            let allowed = Command::new("/usr/bin/echo")
                .arg("-n")
                .status()
                .map_err(|e| e.to_string())?;
            ensure(allowed.success(), "the server binary does not run")?;
            // Network (Landlock ABI 4+): bind the server port only, connect nowhere.
            match TcpListener::bind(("127.0.0.1", allowed_port)) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {}
                Err(e) => return Err(format!("bind server port: {e}")),
            }
            let other_bind = TcpListener::bind(("127.0.0.1", other_port));
            ensure(
                other_bind
                    .as_ref()
                    .err()
                    .and_then(std::io::Error::raw_os_error)
                    == Some(libc::EACCES),
                format!("bind another port: {other_bind:?}"),
            )?;
            let connect =
                TcpStream::connect_timeout(&"127.0.0.1:9".parse().unwrap(), Duration::from_secs(1));
            ensure(
                connect
                    .as_ref()
                    .err()
                    .and_then(std::io::Error::raw_os_error)
                    == Some(libc::EACCES),
                format!("connect out: {connect:?}"),
            )?;
            let listener = TcpListener::bind(("127.0.0.1", allowed_port));
            if let Ok(listener) = &listener {
                let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                let own = TcpStream::connect_timeout(
                    &format!("127.0.0.1:{port}").parse().unwrap(),
                    Duration::from_secs(1),
                );
                ensure(
                    own.as_ref().err().and_then(std::io::Error::raw_os_error) == Some(libc::EACCES),
                    format!("connect to its own port: {own:?}"),
                )?;
            }
            // Scopes (ABI 6): no signal to, and no abstract unix socket of, a
            // process outside the domain.
            let killed = nix::sys::signal::kill(stranger.pid, None);
            ensure(
                killed == Err(nix::errno::Errno::EPERM),
                format!("signal the outside process: {killed:?}"),
            )?;
            let abstract_connect = UnixStream::connect_addr(&stranger.addr);
            ensure(
                abstract_connect
                    .as_ref()
                    .err()
                    .and_then(std::io::Error::raw_os_error)
                    == Some(libc::EPERM),
                format!("connect to the outside abstract socket: {abstract_connect:?}"),
            )?;
            // And the exec itself, as the boot's last call.
            step(os.close_fds())?;
            step(os.exec(&Exec {
                path: PathBuf::from("/usr/bin/echo"),
                argv: vec!["echo".into(), "-n".into()],
                env: Vec::new(),
            }))?;
            Err("exec returned".into())
        })
    }

    /// A child forked before Landlock: it holds an abstract unix socket
    /// listening and waits until the pipe from its parent closes.
    struct OutsideProcess {
        pid: nix::unistd::Pid,
        addr: SocketAddr,
        _hold: std::os::fd::OwnedFd,
    }

    impl OutsideProcess {
        fn start() -> Result<OutsideProcess, String> {
            let name = format!("init-seq-landlock-{}", std::process::id());
            let addr =
                SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())?;
            let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
            let (hold_r, hold_w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
            // SAFETY: the caller is a forked test child without other threads.
            match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
                ForkResult::Child => {
                    drop(ready_r);
                    drop(hold_w);
                    let listener = UnixListener::bind_addr(&addr);
                    let _ =
                        nix::unistd::write(&ready_w, if listener.is_ok() { b"y" } else { b"n" });
                    let mut byte = [0u8; 1];
                    let _ = nix::unistd::read(hold_r.as_raw_fd(), &mut byte);
                    drop(listener);
                    // SAFETY: leave without running the parent's destructors.
                    unsafe { libc::_exit(0) }
                }
                ForkResult::Parent { child } => {
                    drop(ready_w);
                    drop(hold_r);
                    let mut byte = [0u8; 1];
                    let n = nix::unistd::read(ready_r.as_raw_fd(), &mut byte)
                        .map_err(|e| e.to_string())?;
                    ensure(n == 1 && byte == *b"y", "the outside process has no socket")?;
                    Ok(OutsideProcess {
                        pid: child,
                        addr,
                        _hold: hold_w,
                    })
                }
            }
        }
    }

    struct RunDir(PathBuf);

    impl Drop for RunDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mountinfo_options(target: &Path) -> Option<String> {
        let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let target = target.display().to_string();
        // Fields: id parent major:minor root mountpoint options ... - fstype source superoptions
        text.lines().rev().find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            (fields.get(4) == Some(&target.as_str())).then(|| {
                format!(
                    "{} | {}",
                    fields[5],
                    fields.get(dash + 3).copied().unwrap_or("")
                )
            })
        })
    }

    fn mounts_in_namespace() -> Result<(), String> {
        let scratch = Scratch::new("mounts");
        let plan = Plan::new(Spec::reference().unwrap(), "").unwrap();
        let mounts: Vec<Mount> = plan
            .steps()
            .iter()
            .filter_map(|s| match &s.action {
                Action::Mount(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        ensure(mounts.len() == 4, "four pseudo-filesystems")?;
        let root = scratch.0.clone();
        in_child(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            let mut os = LinuxOs::new();
            for mount in &mounts {
                // The plan's mount, moved under the scratch root.
                let target = root.join(mount.target.strip_prefix("/").unwrap());
                fs::create_dir_all(&target).unwrap();
                let moved = Mount {
                    target: target.clone(),
                    ..mount.clone()
                };
                os.mount(&moved).map_err(|e| e.to_string())?;
                let options = mountinfo_options(&target)
                    .ok_or(format!("{} not mounted", target.display()))?;
                let (flags, super_options) = options.split_once(" | ").unwrap();
                let flags: Vec<&str> = flags.split(',').collect();
                for (wanted, name) in [
                    (mount.flags.nosuid, "nosuid"),
                    (mount.flags.nodev, "nodev"),
                    (mount.flags.noexec, "noexec"),
                ] {
                    ensure(
                        flags.contains(&name) == wanted,
                        format!("{}: {options}", mount.target.display()),
                    )?;
                }
                if mount.fstype == "proc" {
                    ensure(
                        super_options.contains("hidepid=invisible")
                            || super_options.contains("hidepid=2"),
                        format!("proc options {super_options}"),
                    )?;
                }
                if mount.fstype == "tmpfs" {
                    ensure(
                        super_options.contains("size=16384k"),
                        format!("tmpfs options {super_options}"),
                    )?;
                }
            }
            Ok(())
        })
    }

    fn net_sysctls_in_namespace() -> Result<(), String> {
        in_child(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let mut os = LinuxOs::new();
            let mut written = 0;
            for sysctl in HARDENING_SYSCTLS
                .iter()
                .filter(|s| s.key.starts_with("net.ipv"))
            {
                match os.write_sysctl(sysctl.key, sysctl.value) {
                    Ok(()) => written += 1,
                    Err(InitError::SysctlAbsent { .. }) if !sysctl.required => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            ensure(written >= 13, format!("only {written} net sysctls written"))?;
            let absent = os.write_sysctl("net.ipv4.no_such_key", "1");
            ensure(
                matches!(absent, Err(InitError::SysctlAbsent { .. })),
                format!("{absent:?}"),
            )?;
            // A multi-value sysctl reads back tab-separated: still a match.
            os.write_sysctl("net.ipv4.tcp_rmem", "4096 131072 6291456")
                .map_err(|e| e.to_string())?;
            let now = fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap();
            ensure(
                now == "4096\t131072\t6291456\n",
                format!("tcp_rmem reads {now:?}"),
            )?;
            // The kernel reports "1" for "01": only what it reports counts.
            let reread = os.write_sysctl("net.ipv4.tcp_syncookies", "01");
            ensure(
                matches!(reread, Err(InitError::SysctlMismatch { .. })),
                format!("{reread:?}"),
            )?;
            let bad = os.write_sysctl("net/../../kernel/x", "1");
            ensure(
                matches!(bad, Err(InitError::Plan { .. })),
                format!("{bad:?}"),
            )
        })
    }

    fn hardening_table_keys_exist() -> Result<(), String> {
        // Read-only: writing kernel.* here would harden (and in part
        // irreversibly lock) the development machine.
        for sysctl in HARDENING_SYSCTLS.iter().filter(|s| s.required) {
            let path = Path::new("/proc/sys").join(sysctl.key.replace('.', "/"));
            ensure(
                path.exists(),
                format!("required sysctl {} absent on this kernel", sysctl.key),
            )?;
        }
        Ok(())
    }

    fn firewall_in_namespace() -> Result<(), String> {
        let plan = Plan::new(Spec::reference().unwrap(), "").unwrap();
        let policy = plan.policy().clone();
        in_child(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            // What `main` passes the boot as its firewall.
            let mut firewall = pf_rules::NetlinkFirewall::new();
            let firewall: &mut dyn Firewall = &mut firewall;
            for phase in [pf_rules::Phase::Boot, pf_rules::Phase::Sealed] {
                firewall.apply(&policy, phase).map_err(|e| e.to_string())?;
                let out = Command::new("nft")
                    .args(["list", "table"])
                    .args(pf_rules::NFT_TABLE.split(' '))
                    .output()
                    .map_err(|e| format!("nft: {e}"))?;
                let text = String::from_utf8_lossy(&out.stdout);
                ensure(out.status.success(), format!("{phase:?}: nft list failed"))?;
                let metadata_open = text.contains("169.254.169.254");
                ensure(
                    metadata_open == (phase == pf_rules::Phase::Boot),
                    format!("{phase:?}: metadata egress open = {metadata_open}:\n{text}"),
                )?;
            }
            // The boot reads the seal back before it goes on.
            let read_back = firewall
                .verify(&policy, pf_rules::Phase::Sealed)
                .map_err(|e| e.to_string())?;
            ensure(
                read_back == pf_rules::ReadBack::expected(&policy, pf_rules::Phase::Sealed),
                format!("sealed read-back {read_back:?}"),
            )
        })
    }

    fn module_load_error() -> Result<(), String> {
        let scratch = Scratch::new("module");
        let module = scratch.path("not_a_module.ko");
        fs::write(&module, b"this is not an ELF object").unwrap();
        match LinuxOs::new().load_module(&module) {
            Err(InitError::Io {
                op: "finit_module",
                ref path,
                ..
            }) if *path == module => Ok(()),
            other => Err(format!("{other:?}")),
        }?;
        match LinuxOs::new().load_module(&scratch.path("missing.ko")) {
            Err(InitError::Io { op: "open", .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }

    fn close_fds_then_exec() -> Result<(), String> {
        in_child(|| {
            let file = fs::File::open("/proc/self/status").unwrap();
            let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
            ensure(fd > 2, "fd")?;
            let mut os = LinuxOs::new();
            os.close_fds().map_err(|e| e.to_string())?;
            // SAFETY: F_GETFD on a number; no memory involved.
            let ret = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            ensure(ret == -1, "descriptor survived close_fds")?;
            let missing = os.exec(&Exec {
                path: PathBuf::from("/nonexistent/server"),
                argv: vec!["server".into()],
                env: Vec::new(),
            });
            ensure(
                matches!(missing, Err(InitError::Io { op: "execve", .. })),
                format!("{missing:?}"),
            )?;
            os.exec(&Exec {
                path: PathBuf::from("/bin/true"),
                argv: vec!["true".into()],
                env: Vec::new(),
            })
            .map_err(|e| e.to_string())?;
            Err("exec returned".into())
        })
    }

    /// The end of the boot as the appliance runs it, with `/bin/true` for
    /// the server: init forks a "governor" (here: a small supervisor that
    /// receives the listener over the link, continues the first `execve`,
    /// and records every later notified call, continuing them too), keeps
    /// the link through `close_fds`, installs the plan's filter, hands the
    /// listener over and execs. The supervisor must see init's `execve`
    /// first, and `/bin/true` must run to a clean exit under the filter:
    /// the handoff works and glibc's start-up passes the allowlist.
    fn syscall_filter_handoff_then_exec() -> Result<(), String> {
        use syscall_filter::linux::{recv_fd, Listener, Readiness, Received};
        use syscall_filter::Response;
        let scratch = Scratch::new("seccomp");
        let verdict = scratch.path("verdict");
        let verdict_in_child = verdict.clone();
        // The child is "init": it becomes /bin/true, so its clean exit is
        // the server's; the supervisor writes its verdict to a file.
        in_child(move || {
            let spec = Spec::from_toml_str(REFERENCE_TOML).map_err(|e| e.to_string())?;
            let filter = init_seq::seccomp::server_filter(spec.server().forks())
                .map_err(|e| e.to_string())?;
            let mut os = LinuxOs::new();
            let init = std::process::id();
            os.fork_governor(&mut |link| {
                let verdict = (|| -> Result<(), String> {
                    let link = link.ok_or("no link")?;
                    let fd = recv_fd(std::os::fd::AsFd::as_fd(&link)).map_err(|e| e.to_string())?;
                    let listener = Listener::from_fd(fd).map_err(|e| e.to_string())?;
                    let mut first = None;
                    let mut others = Vec::new();
                    loop {
                        match listener.wait(Some(Duration::from_secs(20))) {
                            Ok(Readiness::Notification) => {}
                            Ok(Readiness::Hangup) => break,
                            other => return Err(format!("listener: {other:?}")),
                        }
                        let Ok(Received::Notification(n)) = listener.recv() else {
                            continue;
                        };
                        let name = syscall_filter::call_name(&n.data);
                        if first.is_none() {
                            first = Some((n.pid, name));
                        } else {
                            others.push(name);
                        }
                        let _ = listener.respond(n.id, Response::Continue);
                    }
                    ensure(
                        others.is_empty(),
                        format!("/bin/true under the filter also called {others:?}"),
                    )?;
                    ensure(
                        first == Some((init, "execve".to_owned())),
                        format!("first notified call {first:?}, want init's execve"),
                    )
                })();
                let text = match verdict {
                    Ok(()) => "ok".to_owned(),
                    Err(reason) => reason,
                };
                i32::from(fs::write(&verdict_in_child, text).is_err())
            })
            .map_err(|e| e.to_string())?;
            os.set_no_new_privs().map_err(|e| e.to_string())?;
            os.close_fds().map_err(|e| e.to_string())?;
            let instructions = os
                .install_syscall_filter(&filter)
                .map_err(|e| e.to_string())?;
            ensure(instructions > 100, format!("{instructions} instructions"))?;
            os.exec(&Exec {
                path: PathBuf::from("/bin/true"),
                argv: vec!["true".into()],
                env: Vec::new(),
            })
            .map_err(|e| e.to_string())?;
            Err("exec returned".into())
        })?;
        for _ in 0..200 {
            if let Ok(text) = fs::read_to_string(&verdict) {
                return ensure(text == "ok", format!("supervisor: {text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the supervisor wrote no verdict within 10 s".into())
    }

    /// A metadata server stand-in in a child process: answers `count`
    /// requests with `value` and the GCE header.
    fn serve_metadata(
        listener: TcpListener,
        value: &'static str,
        count: usize,
    ) -> nix::unistd::Pid {
        // SAFETY: single-threaded here (see in_child).
        match unsafe { nix::unistd::fork() }.unwrap() {
            ForkResult::Child => {
                for _ in 0..count {
                    let Ok((mut conn, _)) = listener.accept() else {
                        break;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
                        value.len()
                    );
                    let _ = conn.write_all(reply.as_bytes());
                }
                // SAFETY: leave the child without the parent's destructors.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => child,
        }
    }

    fn metadata_fetch_and_close() -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = serve_metadata(listener, "s3cret-value", 2);
        let spec = appliance_spec::SpecBuilder::reference()
            .set(
                "metadata.base_url",
                format!("http://127.0.0.1:{port}/computeMetadata/v1/instance/attributes/"),
            )
            .set("metadata.deadline_ms", 5000)
            .set("metadata.attempts", 2)
            .build()
            .unwrap();
        let metadata = spec.metadata();
        let mut os = LinuxOs::new();
        // What `main` passes the boot as its metadata connector; the boot
        // opens the client at the first fetch and drops it in `metadata
        // close`.
        let connector: &dyn Connector = &metadata_fetch::GceConnector;
        let result = (|| {
            let client = connector.connect(metadata).map_err(|e| e.to_string())?;
            for key in ["redis-admin-pass", "redis-visitor-pass"] {
                let secret = client.fetch(key).map_err(|e| e.to_string())?;
                ensure(secret.expose() == b"s3cret-value", "value")?;
            }
            drop(client);
            // The boot's fork needs one thread again once the client is gone.
            let status = os.read_file(Path::new("/proc/self/status")).unwrap();
            let threads = thread_count(&status).unwrap();
            ensure(
                threads == 1,
                format!("{threads} threads after the client was dropped"),
            )
        })();
        let _ = nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(server, None);
        result
    }
}
