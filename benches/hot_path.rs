//! The per-request auth work: extract the bearer token from the headers and
//! verify it, for HS256, RS256, ES256 and EdDSA, with the verified-token
//! cache off and on.
//!
//! Tokens are the PyJWT-minted fixtures (`tests/fixtures/tokens/`), keys the
//! fixture PEMs. `verify` never waits on anything for a known key, so the
//! future is polled once with a no-op waker: the figures are the work itself,
//! without a runtime's scheduling.
//!
//! `path_normalize`: the per-request path normalisation, on a clean path
//! and on one that needs work.
//!
//! Run: `cargo bench --bench hot_path [-- --warm-up-time 1 --measurement-time 3]`.

use criterion::{criterion_group, criterion_main, Criterion};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::Uri;
use revgate::auth::Authenticator;
use revgate::config::{Algorithm, JwtConfig, Secret, TokenSource};
use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn config(alg: Algorithm, cache_capacity: u64) -> JwtConfig {
    let (hmac_secret, public_key_file) = match alg {
        Algorithm::HS256 => {
            let secret = std::fs::read(fixture("keys/hmac.secret")).expect("secret");
            (Some(Secret::new(secret.trim_ascii_end())), None)
        }
        Algorithm::RS256 => (None, Some(fixture("keys/rsa.pub.pem"))),
        Algorithm::ES256 => (None, Some(fixture("keys/ec256.pub.pem"))),
        _ => (None, Some(fixture("keys/ed25519.pub.pem"))),
    };
    JwtConfig {
        algorithms: vec![alg],
        hmac_secret,
        public_key_file,
        jwks_file: None,
        jwks_url: None,
        signing_key_file: None,
        issuer: Some("https://idp.example".into()),
        audience: vec!["api".into()],
        leeway: Duration::from_secs(30),
        // The fixtures live from 2023 to 2100.
        max_token_lifetime: Duration::from_secs(100 * 365 * 24 * 3600),
        sources: vec![TokenSource::Authorization],
        cache_capacity,
        cache_max_bytes: revgate::config::DEFAULT_TOKEN_CACHE_MAX_BYTES,
        cache_max_token_bytes: 4096,
    }
}

/// Polls a future that must complete without waiting.
fn now_or_never<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("verify waited on I/O in the bench"),
    }
}

fn authenticator(cfg: &JwtConfig) -> Arc<Authenticator> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(Authenticator::new(cfg))
        .expect("authenticator")
}

fn hot_path(c: &mut Criterion) {
    let uri = Uri::from_static("/api/orders?page=2");
    let mut group = c.benchmark_group("extract_verify");
    for (alg, name) in [
        (Algorithm::HS256, "HS256"),
        (Algorithm::RS256, "RS256"),
        (Algorithm::ES256, "ES256"),
        (Algorithm::EdDSA, "EdDSA"),
    ] {
        let token = std::fs::read_to_string(fixture(&format!("tokens/{name}.jwt")))
            .expect("token")
            .trim()
            .to_string();
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers.insert("accept", HeaderValue::from_static("application/json"));
        for (cache, capacity) in [("cache_off", 0), ("cache_on", 10_000)] {
            let auth = authenticator(&config(alg, capacity));
            group.bench_function(format!("{name}/{cache}"), |b| {
                b.iter(|| {
                    let token = auth
                        .extract(black_box(&headers), black_box(&uri))
                        .expect("extract")
                        .expect("a token");
                    let claims = now_or_never(auth.verify(&token)).expect("verifies");
                    black_box(claims.revocation)
                })
            });
        }
    }
    group.finish();
}

/// The check this gateway ran on every path before the single normaliser
/// (dot segments only), kept as the baseline for `path_normalize`.
fn dot_segment_check_before(path: &str) -> bool {
    path.split('/').any(|seg| {
        seg == "."
            || seg.eq_ignore_ascii_case("%2e")
            || (matches!(seg.len(), 2 | 4 | 6)
                && seg.to_ascii_lowercase().replace("%2e", ".") == "..")
    })
}

/// Path normalisation per request: a clean path (returned borrowed, no
/// allocation) against the dot-segment check it replaced, and a path that
/// needs every kind of work.
fn path_normalize(c: &mut Criterion) {
    let clean = "/api/orders/12345/items";
    let dirty = "//api/./orders/%61b/../12345//%7Eitems/%3b";
    let mut group = c.benchmark_group("path_normalize");
    group.bench_function("clean/before", |b| {
        b.iter(|| black_box(dot_segment_check_before(black_box(clean))))
    });
    group.bench_function("clean", |b| {
        b.iter(|| {
            let normal = revgate::path::normalize(black_box(clean)).expect("normal");
            assert!(matches!(normal, std::borrow::Cow::Borrowed(_)));
            black_box(normal.len())
        })
    });
    group.bench_function("needs_work", |b| {
        b.iter(|| {
            black_box(
                revgate::path::normalize(black_box(dirty))
                    .expect("normal")
                    .len(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path, path_normalize);
criterion_main!(benches);
