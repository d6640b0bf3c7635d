//! The real inputs, end to end: fetch the pinned kernel, stub and Valkey source
//! through the host's apt (or the cache), build Valkey in the sandbox, and
//! compute the module load order. The cache is `target/appliance-cache/`
//! (override with `XTASK_CACHE`), so only the first run downloads and compiles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::Instant;

use appliance_image::fetch::{fetch_all, Cache};
use appliance_image::kmod::module_subset;
use appliance_image::pins::Pins;
use appliance_image::sandbox::Isolation;
use appliance_image::valkey;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn fetch_build_and_order_modules() {
    let pins = Pins::load(&workspace().join("image/sources.toml")).unwrap();
    let cache = Cache::new(
        std::env::var_os("XTASK_CACHE")
            .map_or_else(|| workspace().join("target/appliance-cache"), PathBuf::from),
    );
    let t = Instant::now();
    let inputs = fetch_all(&pins, &cache).unwrap();
    println!("fetch: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(inputs.kernel.kver, "6.12.118+deb13-cloud-amd64");
    assert!(inputs.kernel.vmlinuz.is_file() && inputs.stub.is_file());

    let t = Instant::now();
    let built = valkey::build(
        &inputs.valkey_orig,
        &pins.valkey.orig_sha256,
        &cache,
        Isolation::detect(false).unwrap(),
        valkey::SOURCE_DATE_EPOCH,
    )
    .unwrap();
    println!(
        "valkey: {:.1}s, {} bytes, sha256 {}",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&built.server).unwrap().len(),
        built.sha256
    );
    println!("EVAL reply: {}", built.eval_reply);
    assert!(built.eval_reply.contains("scripting engine"));
    let log = std::fs::read_to_string(&built.log).unwrap();
    assert!(
        log.contains("[proof] no `luaL_newstate`")
            && log.contains("[proof] EVAL \"return 1\" 0 -> -ERR"),
        "{log}"
    );

    let t = Instant::now();
    let subset = module_subset(
        &inputs.kernel.modules_dir,
        &inputs.kernel.kver,
        &pins.kernel.modules,
    )
    .unwrap();
    println!("modules: {:.2}s", t.elapsed().as_secs_f64());
    let names: Vec<&str> = subset.modules.iter().map(|m| m.name.as_str()).collect();
    println!("load order ({}): {}", names.len(), names.join(" "));
    println!(
        "built in: {:?}; softdeps not loaded: {:?}",
        subset.builtin, subset.soft_skipped
    );
    let total: u64 = subset
        .modules
        .iter()
        .map(|m| std::fs::metadata(&m.path).unwrap().len())
        .sum();
    println!("module bytes: {total}");
    print!("{}", subset.modules_order().unwrap());
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    for (before, after) in [
        ("net_failover", "virtio_net"),
        ("nf_conntrack", "nft_ct"),
        ("nf_tables", "nft_limit"),
        ("nf_conncount", "nft_connlimit"),
        ("scsi_mod", "sd_mod"),
    ] {
        assert!(
            pos(before) < pos(after),
            "{before} must load before {after}"
        );
    }
    for m in &subset.modules {
        for d in &m.depends {
            assert!(
                pos(d) < pos(&m.name) || subset.builtin.contains(d),
                "{d} before {}",
                m.name
            );
        }
    }
    assert!(
        subset.builtin.is_empty(),
        "every wanted module is a module in this kernel: {:?}",
        subset.builtin
    );
}
