//! `GceMetadata` against a scripted local stand-in (127.0.0.1 only, never the
//! real metadata address): what it accepts, what it refuses, what it retries,
//! and that no error ever quotes the value.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::{Duration, Instant};

use metadata_fetch::{FetchError, GceConfig, GceMetadata, MetadataSource, Secret, ValueProblem};
use support::{ok, response, Reply, StandIn, PATH, PAUSE_AFTER};

const KEY: &str = "redis-admin-pass";
/// Every scripted body carries this, so a test can tell if it leaks.
const SECRET: &str = "hunter2-SENTINEL-do-not-print";

fn source(base_url: String, deadline: Duration, attempts: u32) -> GceMetadata {
    GceMetadata::new(GceConfig {
        base_url,
        deadline,
        attempts,
    })
    .unwrap()
}

fn assert_no_leak(result: &Result<Secret, FetchError>) {
    let shown = match result {
        Ok(secret) => format!("{secret:?} {secret:#?}"),
        Err(error) => format!("{error} {error:?} {error:#?}"),
    };
    assert!(!shown.contains(SECRET), "value leaked: {shown}");
    assert!(!shown.contains("SENTINEL"), "part of value leaked: {shown}");
}

#[derive(Debug)]
enum Expect {
    Value(Vec<u8>),
    Missing,
    NotMetadataServer,
    Status(u16),
    Bad(ValueProblem),
    /// Retryable failures until attempts ran out; `transport` says whether
    /// the last one was a transport error rather than a 5xx.
    GaveUp {
        attempts: u32,
        transport: bool,
    },
}

fn check(name: &str, result: &Result<Secret, FetchError>, expect: &Expect) {
    let ok = match (result, expect) {
        (Ok(secret), Expect::Value(value)) => secret.expose() == value.as_slice(),
        (Err(FetchError::Missing(key)), Expect::Missing) => key == KEY,
        (Err(FetchError::NotMetadataServer { key, .. }), Expect::NotMetadataServer) => key == KEY,
        (Err(FetchError::Status { status, .. }), Expect::Status(want)) => status == want,
        (Err(FetchError::BadValue { problem, .. }), Expect::Bad(want)) => problem == want,
        (
            Err(FetchError::GaveUp { attempts, last, .. }),
            Expect::GaveUp {
                attempts: want,
                transport,
            },
        ) => {
            attempts == want
                && match **last {
                    FetchError::Transport { .. } => *transport,
                    FetchError::ServerError { .. } => !*transport,
                    _ => false,
                }
        }
        _ => false,
    };
    assert!(ok, "{name}: expected {expect:?}, got {result:?}");
}

fn with_flavor(status_line: &str, body: &[u8]) -> Reply {
    response(status_line, &[("Metadata-Flavor", "Google")], body)
}

#[test]
fn scripted_replies() {
    let secret = SECRET.as_bytes().to_vec();
    let mut not_utf8 = secret.clone();
    not_utf8.push(0xff);
    let mut largest = secret.clone();
    largest.resize(4096, b'x');
    let mut too_large = secret.clone();
    too_large.resize(4097, b'x');
    let chunked_ok = format!(
        "HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SECRET}\r\n0\r\n\r\n",
        SECRET.len()
    );
    let unavailable = with_flavor("503 Service Unavailable", &secret);

    // (name, replies in connection order, expected outcome, requests seen)
    let cases: Vec<(&str, Vec<Reply>, Expect, usize)> = vec![
        ("value", vec![ok(&secret)], Expect::Value(secret.clone()), 1),
        (
            "value of 4096 bytes",
            vec![ok(&largest)],
            Expect::Value(largest.clone()),
            1,
        ),
        (
            "chunked value",
            vec![Reply::Raw(chunked_ok.into_bytes())],
            Expect::Value(secret.clone()),
            1,
        ),
        (
            "404",
            vec![with_flavor("404 Not Found", &secret)],
            Expect::Missing,
            1,
        ),
        (
            "404 without header",
            vec![response("404 Not Found", &[], &secret)],
            Expect::NotMetadataServer,
            1,
        ),
        (
            "no Metadata-Flavor",
            vec![response("200 OK", &[], &secret)],
            Expect::NotMetadataServer,
            1,
        ),
        (
            "Metadata-Flavor: google",
            vec![response(
                "200 OK",
                &[("Metadata-Flavor", "google")],
                &secret,
            )],
            Expect::NotMetadataServer,
            1,
        ),
        (
            "Metadata-Flavor: Google, Google",
            vec![response(
                "200 OK",
                &[("Metadata-Flavor", "Google, Google")],
                &secret,
            )],
            Expect::NotMetadataServer,
            1,
        ),
        (
            "Metadata-Flavor twice",
            vec![response(
                "200 OK",
                &[("Metadata-Flavor", "Google"), ("Metadata-Flavor", "Google")],
                &secret,
            )],
            Expect::NotMetadataServer,
            1,
        ),
        (
            "4097 bytes",
            vec![ok(&too_large)],
            Expect::Bad(ValueProblem::TooLarge),
            1,
        ),
        ("empty", vec![ok(b"")], Expect::Bad(ValueProblem::Empty), 1),
        (
            "not UTF-8",
            vec![ok(&not_utf8)],
            Expect::Bad(ValueProblem::NotUtf8),
            1,
        ),
        (
            "403",
            vec![with_flavor("403 Forbidden", &secret)],
            Expect::Status(403),
            1,
        ),
        (
            "503 then 200",
            vec![unavailable.clone(), ok(&secret)],
            Expect::Value(secret.clone()),
            2,
        ),
        (
            "503 always",
            vec![unavailable],
            Expect::GaveUp {
                attempts: 3,
                transport: false,
            },
            3,
        ),
        (
            "not HTTP",
            vec![Reply::Raw(format!("{SECRET}\r\n\r\n").into_bytes())],
            Expect::GaveUp {
                attempts: 3,
                transport: true,
            },
            3,
        ),
    ];

    for (name, script, expect, requests) in cases {
        let stand_in = StandIn::start(script);
        let result = source(stand_in.base_url(), Duration::from_secs(10), 3).fetch(KEY);
        check(name, &result, &expect);
        assert_no_leak(&result);
        assert_eq!(stand_in.requests(), requests, "{name}: requests");
        for conn in stand_in.conns() {
            let request = conn.request.to_ascii_lowercase();
            assert!(
                request.starts_with(&format!("get {PATH}{KEY} http/1.1\r\n").to_ascii_lowercase()),
                "{name}: {request}"
            );
            assert!(
                request.contains("\r\nmetadata-flavor: google\r\n"),
                "{name}: {request}"
            );
        }
    }
}

#[test]
fn redirects_are_refused_not_followed() {
    for status_line in [
        "301 Moved Permanently",
        "302 Found",
        "303 See Other",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let elsewhere = StandIn::start(vec![ok(SECRET.as_bytes())]);
        let location = format!("{}{KEY}", elsewhere.base_url());
        let stand_in = StandIn::start(vec![response(
            status_line,
            &[("Metadata-Flavor", "Google"), ("Location", &location)],
            b"",
        )]);
        let result = source(stand_in.base_url(), Duration::from_secs(10), 3).fetch(KEY);
        let status: u16 = status_line[..3].parse().unwrap();
        assert!(
            matches!(&result, Err(FetchError::Redirect { key, status: s }) if key == KEY && *s == status),
            "{status_line}: {result:?}"
        );
        assert_eq!(stand_in.finish().len(), 1, "{status_line}");
        assert_eq!(
            elsewhere.finish().len(),
            0,
            "{status_line}: redirect was followed"
        );
    }
}

#[test]
fn oversized_bodies_are_refused_without_reading_them() {
    let head = |extra: &str| {
        format!("HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\n{extra}\r\n").into_bytes()
    };
    let mib = 1 << 20;
    // (name, reply): none of these bodies fits in 4 KiB.
    let cases = [
        (
            "Content-Length 1 MiB",
            Reply::Stream {
                head: head(&format!("Content-Length: {mib}\r\n")),
                chunked: false,
                total: Some(mib),
            },
        ),
        (
            "chunked 1 MiB",
            Reply::Stream {
                head: head("Transfer-Encoding: chunked\r\n"),
                chunked: true,
                total: Some(mib),
            },
        ),
        (
            "chunked endless",
            Reply::Stream {
                head: head("Transfer-Encoding: chunked\r\n"),
                chunked: true,
                total: None,
            },
        ),
    ];
    for (name, reply) in cases {
        let stand_in = StandIn::start(vec![reply]);
        let deadline = Duration::from_secs(10);
        let start = Instant::now();
        let result = source(stand_in.base_url(), deadline, 3).fetch(KEY);
        let elapsed = start.elapsed();
        assert!(
            matches!(
                &result,
                Err(FetchError::BadValue {
                    problem: ValueProblem::TooLarge,
                    ..
                })
            ),
            "{name}: {result:?}"
        );
        assert!(elapsed < deadline, "{name}: took {elapsed:?}");
        // The stand-in pauses after PAUSE_AFTER bytes until the client hangs
        // up; a client reading the whole body would have kept listening.
        let conns = stand_in.finish();
        assert_eq!(conns.len(), 1, "{name}");
        let conn = &conns[0];
        assert!(conn.hung_up_early, "{name}: {conn:?}");
        assert!(conn.body_bytes_sent <= PAUSE_AFTER, "{name}: {conn:?}");
    }
}

#[test]
fn a_server_that_never_answers_fails_within_the_deadline() {
    let stand_in = StandIn::start(vec![Reply::Silent]);
    let deadline = Duration::from_millis(1500);
    let start = Instant::now();
    let result = source(stand_in.base_url(), deadline, 3).fetch(KEY);
    let elapsed = start.elapsed();
    assert!(
        matches!(&result, Err(FetchError::GaveUp { last, .. }) if matches!(**last, FetchError::Transport { .. })),
        "{result:?}"
    );
    // A bound, not a performance claim: the deadline plus scheduling slack.
    assert!(
        elapsed < deadline + Duration::from_secs(1),
        "took {elapsed:?}"
    );
    assert!(stand_in.requests() >= 1);
}

#[test]
fn connection_errors_are_retried_until_attempts_run_out() {
    // A port that was just free: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = source(format!("http://{addr}{PATH}"), Duration::from_secs(10), 3).fetch(KEY);
    check(
        "refused",
        &result,
        &Expect::GaveUp {
            attempts: 3,
            transport: true,
        },
    );
}
