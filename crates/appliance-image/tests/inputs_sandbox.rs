//! The build sandbox, for real (root): read-only inputs, a writable output,
//! loopback only, nothing else of the host visible.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use appliance_image::sandbox::{Isolation, Step};

#[test]
fn isolation_policy() {
    assert_eq!(Isolation::choose(0, false).unwrap(), Isolation::Namespaces);
    assert_eq!(Isolation::choose(0, true).unwrap(), Isolation::Unsandboxed);
    assert_eq!(
        Isolation::choose(1000, true).unwrap(),
        Isolation::Unsandboxed
    );
    let err = Isolation::choose(1000, false).unwrap_err().to_string();
    assert!(
        err.contains("needs root") && err.contains("--no-sandbox"),
        "{err}"
    );
}

/// Runs a bash script in the sandbox; returns (exit code, stdout+stderr).
fn run(step: &Step, script: &str) -> (i32, String) {
    let out = step
        .command("bash")
        .unwrap()
        .args(["-c", script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn sandbox_confines_writes_and_network() {
    assert_eq!(
        Isolation::detect(false).unwrap(),
        Isolation::Namespaces,
        "this test runs as root"
    );
    let work = tempfile::Builder::new()
        .prefix("inputs-sandbox-")
        .tempdir()
        .unwrap();
    let input = work.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("data"), b"original").unwrap();
    // World-writable, so only the read-only mount can stop the write.
    std::fs::set_permissions(
        input.join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let output = work.path().join("output");
    let step = Step::new("probe", Isolation::Namespaces, &output, work.path())
        .unwrap()
        .input("src", &input)
        .unwrap();
    let script = r#"
        echo "id: $(id -u):$(id -g)"
        echo overwrite > /in/src/data && echo "input write: ok" || true
        : > /in/src/new && echo "input create: ok" || true
        echo hello > /out/result && echo "output write: ok"
        echo scratch > /tmp/t && echo "tmp write: ok"
        (exec 3<>/dev/tcp/192.0.2.1/80) && echo "tcp 192.0.2.1: connected" || true
        (exec 3<>/dev/tcp/127.0.0.1/9) && echo "tcp loopback: connected" || true
        for p in /work /root /home /var /etc/shadow /etc/apt; do test -e "$p" && echo "visible: $p"; done
        echo "root: $(ls / | tr '\n' ' ')"
        tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sed 's/^/iface: /'
    "#;
    let (code, text) = run(&step, script);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("id: 65534:65534"), "{text}");
    // EROFS: both rewriting a declared input and creating a file next to it.
    assert!(
        text.contains("/in/src/data: Read-only file system"),
        "{text}"
    );
    assert!(
        text.contains("/in/src/new: Read-only file system"),
        "{text}"
    );
    assert!(
        !text.contains("input write: ok") && !text.contains("input create: ok"),
        "{text}"
    );
    assert!(
        text.contains("output write: ok") && text.contains("tmp write: ok"),
        "{text}"
    );
    // No route: connect fails locally, nothing is sent.
    assert!(text.contains("connect: Network is unreachable"), "{text}");
    assert!(!text.contains("tcp 192.0.2.1: connected"), "{text}");
    // Loopback is up: a closed port refuses (a down lo would be unreachable too).
    assert!(text.contains("connect: Connection refused"), "{text}");
    assert!(!text.contains("visible:"), "{text}");
    let root: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("root: "))
        .unwrap()
        .split_whitespace()
        .collect();
    let allowed = [
        "bin", "dev", "etc", "in", "lib", "lib32", "lib64", "libx32", "out", "proc", "sbin", "tmp",
        "usr",
    ];
    assert!(root.iter().all(|e| allowed.contains(e)), "{root:?}");
    assert!(
        ["in", "out", "tmp", "usr"].iter().all(|e| root.contains(e)),
        "{root:?}"
    );
    let ifaces: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("iface: "))
        .collect();
    assert_eq!(ifaces, ["lo"], "{text}");
    step.reclaim_output().unwrap();
    drop(step);
    assert_eq!(std::fs::read(input.join("data")).unwrap(), b"original");
    assert_eq!(std::fs::read(output.join("result")).unwrap(), b"hello\n");
    assert!(!Path::new(&input).join("new").exists());
}

#[test]
fn unsandboxed_steps_see_host_paths() {
    let work = tempfile::Builder::new()
        .prefix("inputs-nosandbox-")
        .tempdir()
        .unwrap();
    let output = work.path().join("out");
    let step = Step::new("plain", Isolation::Unsandboxed, &output, work.path())
        .unwrap()
        .input("me", work.path())
        .unwrap();
    assert_eq!(step.input_path("me"), work.path());
    assert_eq!(step.output_path(), output);
    let (code, text) = run(&step, &format!("echo x > {}/f", output.display()));
    assert_eq!(code, 0, "{text}");
    assert!(output.join("f").exists());
}
