//! The whole assembly on small fake inputs: two builds in different
//! directories are byte-identical, `verify` passes the result, and tampered
//! copies fail on the line that names the tampering.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::type_complexity
)]

use appliance_image::assemble::{assemble, AssembleInputs, AssembleOptions};
use appliance_image::manifest::{Pin, Profile};
use appliance_image::verify::{
    unzstd, verify_with, VerifyOptions, INTRUDER_MARKER, TEST_HOOKS_MARKER,
};
use image_formats::cpio::{self, Archive, S_IFCHR, S_IFDIR, S_IFMT};
use image_layout::ModulesOrder;
use std::path::{Path, PathBuf};

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const EPOCH: u64 = 1_700_000_000;

struct Scratch(PathBuf);
impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("asm-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal ELF64 header (no program headers) of the given type, plus a tail.
fn fake_elf(e_type: u16, tail: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1; // version
    h[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
    h[0x12..0x14].copy_from_slice(&0x3Eu16.to_le_bytes()); // x86-64
    h[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(tail);
    h
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn inputs(dir: &Path, server: Option<PathBuf>, lib_dirs: Vec<PathBuf>) -> AssembleInputs {
    let d = dir.join("in");
    std::fs::create_dir_all(&d).unwrap();
    AssembleInputs {
        kernel: write(&d, "vmlinuz", b"MZ fake kernel image"),
        modules: vec![
            write(&d, "virtio.ko", &fake_elf(1, b"virtio")),
            write(&d, "virtio_net.ko", &fake_elf(1, b"virtio_net")),
        ],
        modules_order: ModulesOrder::from_file_names(&["virtio.ko", "virtio_net.ko"]).unwrap(),
        server: server.unwrap_or_else(|| write(&d, "valkey-server", &fake_elf(3, b"valkey"))),
        init: write(&d, "init", &fake_elf(3, b"appliance init")),
        stream_guard: Some(write(&d, "stream-guard.so", &fake_elf(3, b"guard"))),
        intruder: None,
        spec: write(
            &d,
            "appliance.toml",
            appliance_spec::REFERENCE_TOML.as_bytes(),
        ),
        stub: PathBuf::from(STUB),
        lib_dirs,
        pins: vec![Pin {
            name: "valkey".into(),
            version: "9.1.2".into(),
            sha256: "8e8557da7426a51b4e0fb514a65ef6241dc7c85cb408243af389070abf379cec".into(),
        }],
    }
}

fn options() -> AssembleOptions {
    AssembleOptions {
        disk_size: 36 << 20,
        data_size: 16 << 20,
        esp_size: 34 << 20,
        ..AssembleOptions::new(Profile::Production, EPOCH)
    }
}

fn check(dir: &Path) -> (bool, String) {
    let mut out = Vec::new();
    let opts = VerifyOptions {
        gce_disk_sizes: false,
        ..VerifyOptions::default()
    };
    let ok = verify_with(dir, appliance_spec::REFERENCE_TOML, &opts, &mut out).unwrap();
    (ok, String::from_utf8(out).unwrap())
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn two_assemblies_are_byte_identical_and_verify() {
    let a = Scratch::new("a");
    let b = Scratch::new("b");
    let out_a = a.0.join("appliance");
    let out_b = b.0.join("nested").join("appliance");
    std::fs::create_dir_all(out_b.parent().unwrap()).unwrap();
    assemble(&inputs(&a.0, None, vec![]), &out_a, &options()).unwrap();
    assemble(&inputs(&b.0, None, vec![]), &out_b, &options()).unwrap();
    let (fa, fb) = (files(&out_a), files(&out_b));
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "appliance.cmdline",
            "appliance.efi",
            "data.raw",
            "data.tar.gz",
            "disk.raw",
            "image.tar.gz",
            "initramfs.cpio.zst",
            "manifest.json",
            "vmlinuz"
        ]
    );
    for ((n, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{n} differs between the two builds");
    }
    assert!(
        !a.0.join("appliance.work").exists(),
        "scratch directories are removed"
    );

    let (ok, report) = check(&out_a);
    println!("{report}");
    assert!(ok, "{report}");
    assert!(!report.contains("[FAIL]"), "{report}");
    for line in report.lines() {
        assert!(line.starts_with("[OK]"), "{line}");
    }

    // The initramfs holds exactly what the design lists.
    let zst = std::fs::read(out_a.join("initramfs.cpio.zst")).unwrap();
    let cpio_bytes = unzstd(&zst).unwrap();
    let listing: Vec<String> = cpio::parse(&cpio_bytes)
        .unwrap()
        .iter()
        .map(|e| format!("{:o} {}", e.mode, e.abs_path()))
        .collect();
    insta::assert_snapshot!(listing.join("\n"));

    // Rebuilding into an existing output directory replaces it.
    assemble(&inputs(&a.0, None, vec![]), &out_a, &options()).unwrap();
    assert_eq!(files(&out_a), fa);
}

/// Rewrites the image's initramfs through `f` (path, mode, data, rdev).
fn tamper_initramfs(dir: &Path, f: impl FnOnce(&mut Vec<(String, u32, Vec<u8>, (u32, u32))>)) {
    let path = dir.join("initramfs.cpio.zst");
    let bytes = unzstd(&std::fs::read(&path).unwrap()).unwrap();
    let mut entries: Vec<(String, u32, Vec<u8>, (u32, u32))> = cpio::parse(&bytes)
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn replace(entries: &mut [(String, u32, Vec<u8>, (u32, u32))], path: &str, data: Vec<u8>) {
    let e = entries.iter_mut().find(|e| e.0 == path).unwrap();
    e.2 = data;
}

#[test]
fn tampered_images_fail_on_the_right_line() {
    let s = Scratch::new("tamper");
    let good = s.0.join("good");
    assemble(&inputs(&s.0, None, vec![]), &good, &options()).unwrap();

    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &[&str])> = vec![
        (
            "shell added",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    e.push(("/bin/sh".into(), 0o100_755, fake_elf(3, b"dash"), (0, 0)));
                })
            }),
            &[
                "[FAIL] no shell, sshd, package manager or interpreter (names): [\"/bin/sh\"]",
                "[FAIL] only init, server, its loader and the module executable: [\"/bin/sh\"]",
                "[FAIL] no other ELF binaries: [\"/bin/sh\"]",
                "[FAIL] initramfs matches manifest",
                "[FAIL] hash initramfs.cpio.zst",
            ],
        ),
        (
            "test-profile init in a production manifest",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    let mut init = fake_elf(3, b"appliance init ");
                    init.extend_from_slice(TEST_HOOKS_MARKER);
                    replace(e, "/init", init);
                })
            }),
            &["[FAIL] no test features in a production image: production image whose /init has test-hooks"],
        ),
        (
            "intruder module in a production image",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    let mut module = fake_elf(3, b"intruder ");
                    module.extend_from_slice(INTRUDER_MARKER);
                    e.push(("/usr/lib/valkey/intruder.so".into(), 0o100_755, module, (0, 0)));
                })
            }),
            &[
                "[FAIL] no intruder module in a production image: production image with the intruder: /usr/lib/valkey/intruder.so present; its marker in [\"/usr/lib/valkey/intruder.so\"]",
                "[FAIL] only init, server, its loader and the module executable: [\"/usr/lib/valkey/intruder.so\"]",
            ],
        ),
        (
            "intruder loadmodule line in a production config",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    let conf = e.iter().find(|e| e.0 == "/etc/valkey/valkey.conf").unwrap().2.clone();
                    let mut conf = String::from_utf8(conf).unwrap();
                    conf.push_str("loadmodule \"/usr/lib/valkey/intruder.so\"\n");
                    replace(e, "/etc/valkey/valkey.conf", conf.into_bytes());
                })
            }),
            &[
                "[FAIL] no intruder module in a production image: production image with the intruder: /etc/valkey/valkey.conf loads it",
                "[FAIL] server config as specified",
            ],
        ),
        (
            "intruder marker inside another file",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    let mut guard = fake_elf(3, b"guard ");
                    guard.extend_from_slice(INTRUDER_MARKER);
                    replace(e, "/usr/lib/valkey/stream-guard.so", guard);
                })
            }),
            &["[FAIL] no intruder module in a production image: production image with the intruder: its marker in [\"/usr/lib/valkey/stream-guard.so\"]"],
        ),
        (
            "server with Lua",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    replace(e, "/usr/bin/valkey-server", fake_elf(3, b"valkey luaL_newstate"));
                })
            }),
            &["[FAIL] no luaL_newstate in the server: the server embeds Lua"],
        ),
        (
            "one byte of the initramfs changed",
            Box::new(|d| {
                let p = d.join("initramfs.cpio.zst");
                let mut b = std::fs::read(&p).unwrap();
                let i = b.len() / 2;
                b[i] ^= 0x01;
                std::fs::write(&p, b).unwrap();
            }),
            &["[FAIL] hash initramfs.cpio.zst"],
        ),
        (
            "second archive appended",
            Box::new(|d| {
                let p = d.join("initramfs.cpio.zst");
                let mut b = std::fs::read(&p).unwrap();
                let mut extra = Archive::new();
                extra.add_file("/bin/sh", 0o755, b"x".to_vec()).unwrap();
                b.extend(extra.write(0).unwrap());
                std::fs::write(&p, b).unwrap();
            }),
            &["[FAIL] hash initramfs.cpio.zst", "[FAIL] initramfs readable"],
        ),
        (
            "config edited",
            Box::new(|d| {
                tamper_initramfs(d, |e| {
                    let conf = e.iter().find(|e| e.0 == "/etc/valkey/valkey.conf").unwrap().2.clone();
                    let conf = String::from_utf8(conf).unwrap().replace("enable-debug-command no", "enable-debug-command yes");
                    replace(e, "/etc/valkey/valkey.conf", conf.into_bytes());
                })
            }),
            &["[FAIL] server config as specified"],
        ),
    ];
    for (i, (name, tamper, want)) in cases.iter().enumerate() {
        let d = s.0.join(format!("case{i}"));
        copy_dir(&good, &d);
        tamper(&d);
        let (ok, report) = check(&d);
        assert!(!ok, "{name}: verify passed a tampered image:\n{report}");
        for w in *want {
            assert!(
                report.lines().any(|l| l.starts_with(w)),
                "{name}: no line starting with {w:?} in:\n{report}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn a_test_image_carries_the_intruder_and_verifies() {
    let s = Scratch::new("test-profile");
    let out = s.0.join("appliance-test");
    let mut i = inputs(&s.0, None, vec![]);
    let mut init = fake_elf(3, b"appliance init ");
    init.extend_from_slice(TEST_HOOKS_MARKER);
    i.init = write(&s.0, "init-test", &init);
    let mut module = fake_elf(3, b"intruder ");
    module.extend_from_slice(INTRUDER_MARKER);
    i.intruder = Some(write(&s.0, "intruder.so", &module));
    let opts = AssembleOptions {
        profile: Profile::Test,
        ..options()
    };
    assemble(&i, &out, &opts).unwrap();
    let (ok, report) = check(&out);
    assert!(ok, "{report}");
    for want in [
        "[OK]   no test features in a production image: test image",
        "[OK]   no intruder module in a production image: test image: /usr/lib/valkey/intruder.so present; /etc/valkey/valkey.conf loads it; its marker in [\"/usr/lib/valkey/intruder.so\"]",
        "[OK]   server config as specified",
    ] {
        assert!(report.lines().any(|l| l.starts_with(want)), "no {want:?} in:\n{report}");
    }
    let bytes = unzstd(&std::fs::read(out.join("initramfs.cpio.zst")).unwrap()).unwrap();
    let entries = cpio::parse(&bytes).unwrap();
    let module_entry = entries
        .iter()
        .find(|e| e.abs_path() == "/usr/lib/valkey/intruder.so")
        .unwrap();
    assert_eq!(
        module_entry.mode & 0o7777,
        0o755,
        "Valkey loads only executable modules"
    );
    let conf = entries
        .iter()
        .find(|e| e.abs_path() == "/etc/valkey/valkey.conf")
        .unwrap();
    let conf = String::from_utf8(conf.data.to_vec()).unwrap();
    assert!(
        conf.ends_with("loadmodule \"/usr/lib/valkey/intruder.so\"\n"),
        "{conf}"
    );

    // The same inputs for a production image: refused before anything is
    // written.
    let refused = assemble(&i, &s.0.join("appliance"), &options()).unwrap_err();
    assert!(
        format!("{refused:#}").contains("test image only"),
        "{refused:#}"
    );
    assert!(!s.0.join("appliance").exists());
}

#[test]
fn a_dynamic_server_brings_its_loader_and_libraries() {
    let s = Scratch::new("dyn");
    let out = s.0.join("appliance");
    let libs = vec![
        PathBuf::from("/lib/x86_64-linux-gnu"),
        PathBuf::from("/usr/lib/x86_64-linux-gnu"),
    ];
    // Any small dynamic executable stands in for valkey-server.
    let server = PathBuf::from("/usr/bin/true");
    assemble(&inputs(&s.0, Some(server), libs), &out, &options()).unwrap();
    let (ok, report) = check(&out);
    assert!(ok, "{report}");
    let bytes = unzstd(&std::fs::read(out.join("initramfs.cpio.zst")).unwrap()).unwrap();
    let entries = cpio::parse(&bytes).unwrap();
    let mode = |p: &str| {
        entries
            .iter()
            .find(|e| e.abs_path() == p)
            .map(|e| e.mode & 0o7777)
    };
    assert_eq!(
        mode("/lib64/ld-linux-x86-64.so.2"),
        Some(0o755),
        "the loader is exec'd by the kernel"
    );
    assert_eq!(
        mode("/lib/x86_64-linux-gnu/libc.so.6"),
        Some(0o644),
        "libraries are only mapped"
    );
}
