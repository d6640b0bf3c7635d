//! The client must leave no thread behind: init forks after fetching, and a
//! fork of a multi-threaded process can inherit locks held by threads that no
//! longer exist. The only test in this file, so no other test's threads come
//! and go while it counts.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use metadata_fetch::{Connector, GceConnector};
use support::{ok, StandIn};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn dropping_the_client_joins_its_threads() {
    let before = threads();
    let stand_in = StandIn::start(vec![ok(b"value")]);
    // Through the connector, as the boot sequence opens it: the boxed
    // client is what init drops before it forks.
    let spec = appliance_spec::SpecBuilder::reference()
        .set("metadata.base_url", stand_in.base_url())
        .set("metadata.deadline_ms", 10_000)
        .set("metadata.attempts", 1)
        .build()
        .unwrap();
    let source = GceConnector.connect(spec.metadata()).unwrap();
    let secret = source.fetch("redis-admin-pass").unwrap();
    assert_eq!(secret.expose(), b"value");
    // The stand-in's accept thread and reqwest's runtime thread at least.
    assert!(
        threads() >= before + 2,
        "{} threads, {before} before",
        threads()
    );
    drop(stand_in);
    assert!(
        threads() > before,
        "the client's runtime thread is gone too early"
    );
    drop(source);
    assert_eq!(threads(), before, "threads left behind by the client");
}
