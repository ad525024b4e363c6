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
//!
//! `REVGATE_BENCH_CPU=1 cargo bench --bench hot_path [-- cache_off]` runs
//! each case for 3 s and divides the thread's CPU time
//! (`/proc/thread-self/schedstat`) by the requests done, as `openssl speed`
//! divides by CPU time: on a shared machine wall-clock figures also measure
//! the neighbours.

use criterion::Criterion;
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
        forward_claims: false,
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

/// The cases: (name, authenticator, request headers), every algorithm with
/// the cache off and on.
fn cases() -> Vec<(String, Arc<Authenticator>, HeaderMap)> {
    let mut out = Vec::new();
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
            out.push((format!("{name}/{cache}"), auth, headers.clone()));
        }
    }
    out
}

/// One request's auth work.
fn extract_verify(auth: &Authenticator, headers: &HeaderMap, uri: &Uri) -> impl Copy {
    let token = auth
        .extract(black_box(headers), black_box(uri))
        .expect("extract")
        .expect("a token");
    let claims = now_or_never(auth.verify(&token)).expect("verifies");
    claims.revocation
}

fn hot_path(c: &mut Criterion) {
    let uri = Uri::from_static("/api/orders?page=2");
    let mut group = c.benchmark_group("extract_verify");
    for (name, auth, headers) in cases() {
        group.bench_function(name, |b| {
            b.iter(|| black_box(extract_verify(&auth, &headers, &uri)))
        });
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

/// This thread's CPU time so far, in nanoseconds (Linux; the kernel
/// updates it at each tick and context switch, hence the long runs).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux) for REVGATE_BENCH_CPU")
}

/// `REVGATE_BENCH_CPU=1`: as `openssl speed` does, run each case for 3 s
/// (after 0.5 s of warm-up) and divide the thread's CPU time by the
/// requests done. Arguments filter the cases by name.
fn cpu_time() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let uri = Uri::from_static("/api/orders?page=2");
    for (name, auth, headers) in cases() {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let run = |seconds: f64| {
            let (wall, cpu) = (std::time::Instant::now(), thread_cpu_ns());
            let mut n = 0u64;
            while wall.elapsed().as_secs_f64() < seconds {
                for _ in 0..16 {
                    black_box(extract_verify(&auth, &headers, &uri));
                }
                n += 16;
            }
            (n, thread_cpu_ns() - cpu, wall.elapsed().as_secs_f64())
        };
        run(0.5);
        let (n, cpu, wall) = run(3.0);
        println!(
            "extract_verify/{name}: {:.2} µs cpu per request ({n} in {:.2} s cpu, {wall:.2} s wall)",
            cpu as f64 / 1e3 / n as f64,
            cpu as f64 / 1e9,
        );
    }
}

fn main() {
    if std::env::var_os("REVGATE_BENCH_CPU").is_some_and(|v| v == "1") {
        cpu_time();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    hot_path(&mut c);
    path_normalize(&mut c);
    c.final_summary();
}
