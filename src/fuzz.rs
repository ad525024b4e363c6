//! Fuzz targets for every parser that reads untrusted bytes, run as
//! property tests (libFuzzer would rebuild the whole dependency tree with
//! sanitizer instrumentation; these run with the ordinary test build).
//!
//! Each target replays its committed corpus (`fuzz/corpus/<target>/`) on
//! every `cargo test`, then feeds generated inputs: arbitrary bytes and
//! corpus entries with random bytes spliced in. `REVGATE_FUZZ_CASES` sets
//! how many (default 256 per target), e.g. for a long run:
//!
//! ```sh
//! REVGATE_FUZZ_CASES=200000 cargo test --release --lib fuzz::
//! ```
//!
//! A target fails on a panic or a broken invariant; proptest then shrinks
//! the input and prints it: add it to the corpus with the fix.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::PathBuf;

/// The corpus of one target.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    let inputs: Vec<Vec<u8>> = entries
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(!inputs.is_empty(), "corpus {} is empty", dir.display());
    inputs
}

fn cases() -> u32 {
    std::env::var("REVGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Replays the corpus, then runs generated inputs through `target`.
fn fuzz(name: &str, target: impl Fn(&[u8])) {
    let seeds = corpus(name);
    for seed in &seeds {
        target(seed);
    }
    let spliced = (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    )
        .prop_map(|(mut seed, edits)| {
            for (at, byte) in edits {
                let i = at.index(seed.len() + 1);
                seed.insert(i, byte);
            }
            seed
        });
    let inputs = prop_oneof![prop::collection::vec(any::<u8>(), 0..256), spliced];
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&inputs, |input| {
        target(&input);
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz target {name}: {e}");
    }
}

/// Threat: a request path that the gateway routes one way and an upstream
/// reads another (encoded dots and slashes, merged slashes, overlong
/// escapes), or one that panics the normaliser.
fn path_target(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = crate::path::normalize(path) else {
        return;
    };
    assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
    for bad in ["//", "/./", "/../", "%2F", "%2f", "%5C", "%5c", "%00", "\\"] {
        assert!(!normal.contains(bad), "{path:?} -> {normal:?} has {bad:?}");
    }
    assert!(
        !normal.ends_with("/.") && !normal.ends_with("/.."),
        "{normal:?}"
    );
    assert!(
        matches!(
            crate::path::normalize(&normal),
            Ok(std::borrow::Cow::Borrowed(_))
        ),
        "{path:?} -> {normal:?} is not a fixed point"
    );
    if path.parse::<hyper::http::uri::PathAndQuery>().is_ok() && !path.contains('?') {
        assert!(
            normal.parse::<hyper::http::uri::PathAndQuery>().is_ok(),
            "{path:?} -> {normal:?} is no longer a valid target"
        );
    }
}

/// Threat: a request carrying one credential for the gateway and another
/// for the upstream (two sources, repeated cookies or parameters, odd
/// `Authorization` forms), or input that panics extraction. Input: the
/// `Authorization` value, the `Cookie` value and the query, split by 0xFF.
fn token_target(data: &[u8]) {
    use crate::config::TokenSource;
    use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE};
    let mut parts = data.split(|b| *b == 0xFF);
    let (auth, cookie, query) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut headers = HeaderMap::new();
    for (name, value) in [(AUTHORIZATION, auth), (COOKIE, cookie)] {
        if !value.is_empty() {
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return;
            };
            headers.insert(name, value);
        }
    }
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(uri) = format!("/p?{query}").parse::<hyper::Uri>() else {
        return;
    };
    let sources = [
        TokenSource::Authorization,
        TokenSource::Cookie("access_token".into()),
        TokenSource::Query("access_token".into()),
    ];
    let found = match crate::auth::extract::extract(&sources, &headers, &uri) {
        Ok(found) => found,
        Err(reject) => {
            assert_eq!(reject.status().as_u16(), 400, "{reject:?}");
            return;
        }
    };
    let Some(credential) = found else { return };
    assert!(!credential.token.is_empty());
    assert_ne!(credential.present & (1 << credential.source), 0);
    let (token, used, present) = (
        credential.token.into_owned(),
        credential.source,
        credential.present,
    );
    // After stripping, the upstream's view holds the verified token once.
    let mut stripped = headers.clone();
    let new_uri = crate::auth::extract::strip_unused(&sources, used, present, &mut stripped, &uri)
        .unwrap_or_else(|r| panic!("strip failed: {r:?}"));
    let uri = new_uri.unwrap_or(uri);
    let again = crate::auth::extract::extract(&sources, &stripped, &uri)
        .unwrap_or_else(|r| panic!("stripped request refused: {r:?}"))
        .unwrap_or_else(|| panic!("stripped request lost its token"));
    assert_eq!(again.token, token);
    assert_eq!(again.source, used);
    assert_eq!(again.present, 1 << used, "another source still holds it");
}

/// Threat: an RFC 7009 form that revokes one token while the caller meant
/// another (a repeated `token`), or one that panics the form parser.
fn revoke_form_target(data: &[u8]) {
    match crate::endpoints::revoke_form_token(data) {
        Ok(token) => {
            assert!(!token.is_empty());
            let tokens = form_urlencoded::parse(data)
                .filter(|(k, _)| k == "token")
                .count();
            assert_eq!(tokens, 1);
        }
        Err(reject) => assert_eq!(reject.status().as_u16(), 400),
    }
}

/// Threat: an admin API body (from a compromised or buggy operator tool)
/// that panics the JSON parser or exhausts its stack with nesting.
fn admin_json_target(data: &[u8]) {
    let _ = serde_json::from_slice::<crate::admin::api::RevokeBody>(data);
    let _ = serde_json::from_slice::<crate::admin::api::IntrospectBody>(data);
}

#[test]
fn fuzz_path_normalisation() {
    fuzz("path", path_target);
}

#[test]
fn fuzz_token_extraction() {
    fuzz("token", token_target);
}

#[test]
fn fuzz_revoke_form() {
    fuzz("revoke_form", revoke_form_target);
}

#[test]
fn fuzz_admin_json() {
    fuzz("admin_json", admin_json_target);
}
