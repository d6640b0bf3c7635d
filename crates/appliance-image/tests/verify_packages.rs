//! `verify` against the pinned packages: an image assembled from small fake
//! kernel, C library and GCC runtime packages (real `.deb` files made with
//! `dpkg-deb --build`, kept in an input cache by their SHA-256, as
//! `cargo xtask image` keeps the real ones) passes; a library or module that
//! is not the package's, a library no package has, and a cached `.deb` whose
//! hash is not the pinned one each fail on their line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use appliance_image::assemble::{assemble, AssembleInputs, AssembleOptions};
use appliance_image::fetch::sha256_file;
use appliance_image::manifest::{Pin, Profile};
use appliance_image::verify::{unzstd, verify_with, VerifyOptions};
use image_formats::cpio::{self, Archive, S_IFCHR, S_IFDIR, S_IFMT};
use image_layout::ModulesOrder;
use tempfile::TempDir;

const EPOCH: u64 = 1_700_000_000;

/// The initramfs as editable entries: (path, mode, data, rdev).
type Entries = Vec<(String, u32, Vec<u8>, (u32, u32))>;
/// One tampering case: what, the edit, the check that must fail, its text.
type Case = (
    &'static str,
    Box<dyn Fn(&mut Entries)>,
    &'static str,
    &'static str,
);
const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const KVER: &str = "9.9.9-test";

/// A minimal ELF64 header (no program headers) of the given type, plus a tail.
fn fake_elf(e_type: u16, tail: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
    h[0x12..0x14].copy_from_slice(&0x3Eu16.to_le_bytes());
    h[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(tail);
    h
}

fn put(root: &Path, rel: &str, data: &[u8]) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p
}

/// Builds `name_version_amd64.deb` from `tree` and files it in the cache's
/// `debs/<sha256>/`; returns the pin.
fn deb(cache: &Path, tree: &Path, name: &str, version: &str) -> Pin {
    put(
        tree,
        "DEBIAN/control",
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: test <test@example.invalid>\nDescription: fake\n"
        )
        .as_bytes(),
    );
    let out = tree.with_extension("deb");
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(tree)
        .arg(&out)
        .output()
        .expect("dpkg-deb (package dpkg)");
    assert!(status.status.success(), "{status:?}");
    let sha = sha256_file(&out).unwrap();
    let dir = cache.join("debs").join(&sha);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&out, dir.join(format!("{name}_{version}_amd64.deb"))).unwrap();
    Pin {
        name: name.into(),
        version: version.into(),
        sha256: sha,
    }
}

struct Fixture {
    _scratch: TempDir,
    cache: PathBuf,
    image: PathBuf,
}

/// The host's loader and C library stand in for the pinned package's; the
/// server is the host's `/usr/bin/true` (dynamic, needs `libc.so.6`).
fn fixture() -> Fixture {
    let scratch = tempfile::Builder::new()
        .prefix("verify-packages-")
        .tempdir()
        .unwrap();
    let s = scratch.path().to_path_buf();
    let cache = s.join("cache");

    let kernel_tree = s.join("kernel");
    let vmlinuz = put(
        &kernel_tree,
        &format!("boot/vmlinuz-{KVER}"),
        b"MZ fake kernel",
    );
    let mods = format!("usr/lib/modules/{KVER}/kernel/drivers");
    let virtio = put(
        &kernel_tree,
        &format!("{mods}/virtio.ko"),
        &fake_elf(1, b"v"),
    );
    let net = put(
        &kernel_tree,
        &format!("{mods}/net/virtio_net.ko"),
        &fake_elf(1, b"n"),
    );
    let kernel_pin = deb(
        &cache,
        &kernel_tree,
        &format!("linux-image-{KVER}"),
        "9.9.9-1",
    );

    let libc_tree = s.join("libc");
    let libdir = libc_tree.join("usr/lib/x86_64-linux-gnu");
    for lib in ["ld-linux-x86-64.so.2", "libc.so.6"] {
        put(
            &libc_tree,
            &format!("usr/lib/x86_64-linux-gnu/{lib}"),
            &std::fs::read(Path::new("/lib/x86_64-linux-gnu").join(lib)).unwrap(),
        );
    }
    let libc_pin = deb(&cache, &libc_tree, "libc6", "2.99-1");
    let gcc_tree = s.join("gcc");
    put(&gcc_tree, "usr/lib/x86_64-linux-gnu/libgcc_s.so.1", b"gcc");
    let gcc_pin = deb(&cache, &gcc_tree, "libgcc-s1", "99-1");

    let d = s.join("in");
    let inputs = AssembleInputs {
        kernel: vmlinuz,
        modules: vec![virtio, net],
        modules_order: ModulesOrder::from_file_names(&["virtio.ko", "virtio_net.ko"]).unwrap(),
        server: PathBuf::from("/usr/bin/true"),
        init: put(&d, "init", &fake_elf(3, b"init")),
        stream_guard: Some(put(&d, "guard.so", &fake_elf(3, b"guard"))),
        intruder: None,
        spec: put(
            &d,
            "appliance.toml",
            appliance_spec::REFERENCE_TOML.as_bytes(),
        ),
        stub: PathBuf::from(STUB),
        lib_dirs: vec![libdir],
        pins: vec![kernel_pin, libc_pin, gcc_pin],
    };
    let image = s.join("appliance");
    let opts = AssembleOptions {
        disk_size: 36 << 20,
        data_size: 16 << 20,
        esp_size: 34 << 20,
        ..AssembleOptions::new(Profile::Production, EPOCH)
    };
    assemble(&inputs, &image, &opts).unwrap();
    Fixture {
        _scratch: scratch,
        cache,
        image,
    }
}

fn check(f: &Fixture) -> String {
    let opts = VerifyOptions {
        gce_disk_sizes: false,
        input_cache: Some(f.cache.clone()),
    };
    let mut out = Vec::new();
    verify_with(&f.image, appliance_spec::REFERENCE_TOML, &opts, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn line<'r>(report: &'r str, check: &str) -> &'r str {
    report
        .lines()
        .find(|l| l[7..].starts_with(check))
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{report}"))
}

/// Rewrites the image's initramfs through `f` (path, mode, data, rdev).
fn tamper(dir: &Path, f: impl FnOnce(&mut Entries)) {
    let path = dir.join("initramfs.cpio.zst");
    let bytes = unzstd(&std::fs::read(&path).unwrap()).unwrap();
    let mut entries: Entries = cpio::parse(&bytes)
        .unwrap()
        .iter()
        .map(|e| (e.abs_path(), e.mode, e.data.to_vec(), e.rdev))
        .collect();
    f(&mut entries);
    let mut a = Archive::new();
    for (p, mode, data, rdev) in entries {
        match mode & S_IFMT {
            S_IFDIR => a.add_dir(&p, mode & 0o7777).unwrap(),
            S_IFCHR => a.add_char_dev(&p, mode & 0o7777, rdev.0, rdev.1).unwrap(),
            _ => a.add_file(&p, mode & 0o7777, data).unwrap(),
        }
    }
    let cpio = a.write(u32::try_from(EPOCH).unwrap()).unwrap();
    let zst = ruzstd::encoding::compress_to_vec(
        cpio.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    std::fs::write(path, zst).unwrap();
}

const KERNEL: &str = "kernel from the pinned package";
const LIBS: &str = "loader and libraries from the pinned packages";

#[test]
fn the_pinned_packages_files_pass() {
    let f = fixture();
    let report = check(&f);
    assert!(!report.contains("[FAIL]"), "{report}");
    assert_eq!(
        line(&report, KERNEL),
        "[OK]   kernel from the pinned package: vmlinuz and 2 modules are linux-image-9.9.9-test 9.9.9-1's files"
    );
    assert_eq!(
        line(&report, LIBS),
        "[OK]   loader and libraries from the pinned packages: \
         /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, /lib/x86_64-linux-gnu/libc.so.6, \
         /lib64/ld-linux-x86-64.so.2 are files of libc6 2.99-1 and libgcc-s1 99-1"
    );
}

#[test]
fn anything_else_fails_on_its_line() {
    let cases: Vec<Case> = vec![
        (
            "a changed C library",
            Box::new(|e: &mut Entries| {
                let libc = e.iter_mut().find(|x| x.0.ends_with("/libc.so.6")).unwrap();
                libc.2.push(0);
            }),
            LIBS,
            "/lib/x86_64-linux-gnu/libc.so.6 differs from libc.so.6 in the pinned library packages",
        ),
        (
            "a library no package has",
            Box::new(|e: &mut Entries| {
                e.push((
                    "/lib/x86_64-linux-gnu/libhost.so.1".into(),
                    0o100_644,
                    b"from the build host".to_vec(),
                    (0, 0),
                ));
            }),
            LIBS,
            "/lib/x86_64-linux-gnu/libhost.so.1 is not in the pinned library packages",
        ),
        (
            "a changed module",
            Box::new(|e: &mut Entries| {
                let m = e.iter_mut().find(|x| x.0.ends_with("/virtio.ko")).unwrap();
                m.2.push(0);
            }),
            KERNEL,
            "/lib/modules/virtio.ko differs from virtio.ko in the kernel package",
        ),
    ];
    for (what, edit, check_name, want) in cases {
        let f = fixture();
        tamper(&f.image, edit);
        let report = check(&f);
        let l = line(&report, check_name);
        assert!(
            l.starts_with("[FAIL]") && l.contains(want),
            "{what}: {l}\n{report}"
        );
    }

    // A cached .deb that is not the pinned file.
    let f = fixture();
    let libc_dir = std::fs::read_dir(f.cache.join("debs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| {
            std::fs::read_dir(d).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("libc6_")
            })
        })
        .unwrap();
    let libc_deb = std::fs::read_dir(&libc_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&libc_deb).unwrap();
    bytes.push(0);
    std::fs::write(&libc_deb, bytes).unwrap();
    let report = check(&f);
    let l = line(&report, LIBS);
    assert!(
        l.starts_with("[FAIL]") && l.contains("pinned"),
        "tampered .deb: {l}"
    );
}
