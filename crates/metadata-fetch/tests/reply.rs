//! The pure reply check: a table of replies and verdicts, then properties over
//! arbitrary replies (never panics, accepts only what it promises, round-trips
//! what it accepts, never quotes the body).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use metadata_fetch::{check_reply, FetchError, Reply, ValueProblem, MAX_VALUE_LEN};
use proptest::prelude::*;

const KEY: &str = "redis-visitor-pass";
const FLAVOR: (&[u8], &[u8]) = (b"Metadata-Flavor", b"Google");

type Header<'a> = (&'a [u8], &'a [u8]);
/// (status, headers, body, verdict)
type Case<'a> = (u16, Vec<Header<'a>>, &'a [u8], Result<Vec<u8>, FetchError>);

fn check(status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> Result<Vec<u8>, FetchError> {
    check_reply(
        KEY,
        &Reply {
            status,
            headers,
            body,
        },
    )
    .map(|secret| secret.expose().to_vec())
}

fn missing() -> FetchError {
    FetchError::Missing(KEY.to_owned())
}

fn not_metadata(reason: &'static str) -> FetchError {
    FetchError::NotMetadataServer {
        key: KEY.to_owned(),
        reason,
    }
}

fn bad(problem: ValueProblem) -> FetchError {
    FetchError::BadValue {
        key: KEY.to_owned(),
        problem,
    }
}

fn status(variant: fn(String, u16) -> FetchError, code: u16) -> FetchError {
    variant(KEY.to_owned(), code)
}

fn server_error(key: String, status: u16) -> FetchError {
    FetchError::ServerError { key, status }
}

fn redirect(key: String, status: u16) -> FetchError {
    FetchError::Redirect { key, status }
}

fn other(key: String, status: u16) -> FetchError {
    FetchError::Status { key, status }
}

#[test]
fn verdicts() {
    let big = vec![b'a'; MAX_VALUE_LEN];
    let bigger = vec![b'a'; MAX_VALUE_LEN + 1];
    let no_flavor = "no Metadata-Flavor header";
    let twice = "more than one Metadata-Flavor header";
    let wrong = "Metadata-Flavor is not \"Google\"";
    let cases: Vec<Case<'_>> = vec![
        (200, vec![FLAVOR], b"pw", Ok(b"pw".to_vec())),
        (
            200,
            vec![(b"metadata-flavor", b"Google")],
            b"pw",
            Ok(b"pw".to_vec()),
        ),
        (
            200,
            vec![(b"METADATA-FLAVOR", b"Google")],
            b" p w\n",
            Ok(b" p w\n".to_vec()),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"2")],
            b"pw",
            Ok(b"pw".to_vec()),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"2"), (b"content-length", b"2")],
            b"pw",
            Ok(b"pw".to_vec()),
        ),
        (200, vec![FLAVOR], &big, Ok(big.clone())),
        (
            200,
            vec![FLAVOR],
            "pässwörd".as_bytes(),
            Ok("pässwörd".as_bytes().to_vec()),
        ),
        (200, vec![], b"pw", Err(not_metadata(no_flavor))),
        (
            200,
            vec![(b"Metadata-Flavour", b"Google")],
            b"pw",
            Err(not_metadata(no_flavor)),
        ),
        (200, vec![FLAVOR, FLAVOR], b"pw", Err(not_metadata(twice))),
        (
            200,
            vec![(b"Metadata-Flavor", b"google")],
            b"pw",
            Err(not_metadata(wrong)),
        ),
        (
            200,
            vec![(b"Metadata-Flavor", b"Google ")],
            b"pw",
            Err(not_metadata(wrong)),
        ),
        (
            200,
            vec![(b"Metadata-Flavor", b"")],
            b"pw",
            Err(not_metadata(wrong)),
        ),
        (404, vec![FLAVOR], b"pw", Err(missing())),
        (404, vec![], b"pw", Err(not_metadata(no_flavor))),
        (500, vec![], b"pw", Err(status(server_error, 500))),
        (503, vec![FLAVOR], b"pw", Err(status(server_error, 503))),
        (599, vec![FLAVOR], b"", Err(status(server_error, 599))),
        (301, vec![FLAVOR], b"", Err(status(redirect, 301))),
        (
            302,
            vec![FLAVOR, (b"Location", b"http://evil/")],
            b"",
            Err(status(redirect, 302)),
        ),
        (
            302,
            vec![(b"Location", b"http://evil/")],
            b"",
            Err(not_metadata(no_flavor)),
        ),
        (0, vec![FLAVOR], b"pw", Err(status(other, 0))),
        (100, vec![FLAVOR], b"pw", Err(status(other, 100))),
        (204, vec![FLAVOR], b"", Err(status(other, 204))),
        (403, vec![FLAVOR], b"pw", Err(status(other, 403))),
        (600, vec![FLAVOR], b"pw", Err(status(other, 600))),
        (200, vec![FLAVOR], b"", Err(bad(ValueProblem::Empty))),
        (200, vec![FLAVOR], &bigger, Err(bad(ValueProblem::TooLarge))),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"4097")],
            b"",
            Err(bad(ValueProblem::TooLarge)),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"18446744073709551615")],
            b"pw",
            Err(bad(ValueProblem::TooLarge)),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"18446744073709551616")],
            b"pw",
            Err(bad(ValueProblem::LengthMismatch)),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"3")],
            b"pw",
            Err(bad(ValueProblem::LengthMismatch)),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"+2")],
            b"pw",
            Err(bad(ValueProblem::LengthMismatch)),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"")],
            b"pw",
            Err(bad(ValueProblem::LengthMismatch)),
        ),
        (
            200,
            vec![FLAVOR, (b"Content-Length", b"2"), (b"Content-Length", b"3")],
            b"pw",
            Err(bad(ValueProblem::LengthMismatch)),
        ),
        (
            200,
            vec![FLAVOR],
            b"p\xffw",
            Err(bad(ValueProblem::NotUtf8)),
        ),
        (
            200,
            vec![FLAVOR],
            b"\xed\xa0\x80",
            Err(bad(ValueProblem::NotUtf8)),
        ),
    ];
    for (status, headers, body, verdict) in cases {
        assert_eq!(
            check(status, &headers, body),
            verdict,
            "{status} {headers:?} {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn retryable_errors_are_5xx_and_transport_only() {
    assert!(status(server_error, 503).is_retryable());
    assert!(FetchError::Transport {
        key: KEY.to_owned(),
        reason: "connection refused".to_owned()
    }
    .is_retryable());
    for error in [
        missing(),
        not_metadata("x"),
        status(redirect, 302),
        status(other, 403),
        bad(ValueProblem::Empty),
    ] {
        assert!(!error.is_retryable(), "{error:?}");
    }
}

fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"Metadata-Flavor".to_vec()),
        Just(b"metadata-flavor".to_vec()),
        Just(b"Content-Length".to_vec()),
        Just(b"Location".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"Google".to_vec()),
        "[0-9]{1,5}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn status_code() -> impl Strategy<Value = u16> {
    prop_oneof![Just(200u16), Just(404), Just(302), Just(503), any::<u16>()]
}

proptest! {
    #[test]
    fn never_panics_and_accepts_only_good_values(
        status in status_code(),
        headers in prop::collection::vec((header_name(), header_value()), 0..5),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), MAX_VALUE_LEN - 2..MAX_VALUE_LEN + 3),
        ],
    ) {
        let headers: Vec<(&[u8], &[u8])> =
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
        if let Ok(value) = check(status, &headers, &body) {
            prop_assert_eq!(status, 200);
            prop_assert_eq!(&value, &body);
            prop_assert!(!value.is_empty() && value.len() <= MAX_VALUE_LEN);
            prop_assert!(std::str::from_utf8(&value).is_ok());
            let flavors: Vec<_> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"metadata-flavor"))
                .collect();
            prop_assert_eq!(flavors.len(), 1);
            prop_assert_eq!(flavors[0].1, b"Google");
        }
    }

    #[test]
    fn accepted_values_round_trip(value in "\\PC{1,1024}") {
        prop_assume!(value.len() <= MAX_VALUE_LEN);
        let length = value.len().to_string();
        let headers: [(&[u8], &[u8]); 2] = [FLAVOR, (b"Content-Length", length.as_bytes())];
        let secret = check_reply(KEY, &Reply { status: 200, headers: &headers, body: value.as_bytes() })
            .unwrap();
        prop_assert_eq!(secret.as_str(), Some(value.as_str()));
        prop_assert_eq!(format!("{secret:?}"), format!("Secret(<redacted, {} bytes>)", value.len()));
    }

    #[test]
    fn errors_never_quote_the_body(
        status in status_code(),
        headers in prop::collection::vec((header_name(), header_value()), 0..4),
        tail in prop::collection::vec(any::<u8>(), 0..5000),
    ) {
        let mut body = b"SENTINEL-".to_vec();
        body.extend_from_slice(&tail);
        let headers: Vec<(&[u8], &[u8])> =
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
        if let Err(error) = check(status, &headers, &body) {
            let shown = format!("{error} {error:?}");
            prop_assert!(!shown.contains("SENTINEL"), "{}", shown);
        }
    }
}
