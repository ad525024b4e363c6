//! `jwt.jwks_url` against a local JWKS server whose answer the tests change:
//! rotation, the unknown-kid fetch limit, failed fetches keeping the keys.

use super::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A JWKS endpoint on 127.0.0.1 that counts its requests.
struct JwksServer {
    url: Uri,
    answer: Arc<Mutex<(StatusCode, Bytes)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: &str) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new((StatusCode::OK, Bytes::from(body.to_string()))));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (Arc::clone(&answer), Arc::clone(&hits));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (a, h) = (Arc::clone(&a), Arc::clone(&h));
                let service = service_fn(move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = a.lock().expect("answer").clone();
                    let mut resp = Response::new(Full::new(body));
                    *resp.status_mut() = status;
                    async move { Ok::<_, Infallible>(resp) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json")
                .parse()
                .expect("url"),
            answer,
            hits,
        }
    }

    fn serve(&self, status: StatusCode, body: impl Into<Bytes>) {
        *self.answer.lock().expect("answer") = (status, body.into());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn jwks(name: &str) -> String {
    std::fs::read_to_string(fixture(&format!("keys/{name}"))).expect("jwks")
}

fn url_config(url: &Uri) -> JwtConfig {
    JwtConfig {
        jwks_url: Some(url.clone()),
        ..config(&[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
    }
}

fn timing(min_refetch: Duration, refresh_every: Duration) -> JwksTiming {
    JwksTiming {
        refresh_every,
        min_refetch,
        timeout: Duration::from_secs(5),
        max_bytes: 64 * 1024,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// A token whose header names `kid`; its signature is never reached.
fn with_kid(kid: &str) -> String {
    format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "RS256", "kid": kid}).to_string()),
        b64(r#"{"exp":4102444800}"#)
    )
}

/// Polls `done` until it holds or 10 s pass.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rotation_is_picked_up_on_an_unknown_kid() {
    let server = JwksServer::start(&jwks("jwks.json")).await;
    let cfg = JwtConfig {
        cache_capacity: 100,
        ..url_config(&server.url)
    };
    let a = Authenticator::with_timing(&cfg, timing(HOUR, HOUR))
        .await
        .expect("start");
    assert_eq!(server.hits(), 1, "fetched once at start");
    assert_eq!(why(a.verify(&token("RS256")).await), "accepted");
    assert_eq!(why(a.verify(&token("EdDSA")).await), "accepted");

    // The issuer rotates to a new key; the first token with its kid refetches.
    server.serve(StatusCode::OK, jwks("jwks-rotated.json"));
    assert_eq!(why(a.verify(&token("RS256-rsa2")).await), "accepted");
    assert_eq!(server.hits(), 2);
    assert_eq!(a.jwks_fetches(), 2);
    // The retired key's tokens are refused, even though one was cached.
    assert_eq!(why(a.verify(&token("RS256")).await), "unknown key id");
    // ...and asking again within the window does not refetch.
    assert_eq!(why(a.verify(&token("RS256")).await), "unknown key id");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_fetch() {
    let server = JwksServer::start(&jwks("jwks.json")).await;
    let a = Authenticator::with_timing(&url_config(&server.url), timing(HOUR, HOUR))
        .await
        .expect("start");
    assert_eq!(server.hits(), 1);
    // 200 concurrent requests, each with a different made-up kid.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let a = Arc::clone(&a);
            tokio::spawn(async move { why(a.verify(&with_kid(&format!("evil-{i}"))).await) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), "unknown key id");
    }
    assert_eq!(server.hits(), 2, "one shared refetch for the whole flood");
    // Later ones inside the window: no fetch at all.
    for i in 0..50 {
        assert_eq!(
            why(a.verify(&with_kid(&format!("late-{i}"))).await),
            "unknown key id"
        );
    }
    assert_eq!(server.hits(), 2);
    // Known keys are unaffected.
    assert_eq!(why(a.verify(&token("ES256")).await), "accepted");
}

#[tokio::test]
async fn concurrent_requests_for_a_new_kid_share_one_fetch() {
    let server = JwksServer::start(&jwks("jwks.json")).await;
    let a = Authenticator::with_timing(&url_config(&server.url), timing(HOUR, HOUR))
        .await
        .expect("start");
    server.serve(StatusCode::OK, jwks("jwks-rotated.json"));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let a = Arc::clone(&a);
            tokio::spawn(async move { why(a.verify(&token("RS256-rsa2")).await) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), "accepted");
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn failed_fetches_keep_the_old_keys() {
    let server = JwksServer::start(&jwks("jwks.json")).await;
    // Refetch allowed at once, background refresh every 20 ms.
    let a = Authenticator::with_timing(
        &url_config(&server.url),
        timing(Duration::ZERO, Duration::from_millis(20)),
    )
    .await
    .expect("start");
    for (status, body) in [
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"oops"),
        ),
        (StatusCode::OK, Bytes::from_static(b"<html>not json</html>")),
        (StatusCode::OK, Bytes::from_static(br#"{"keys":[]}"#)),
        // Larger than max_bytes.
        (StatusCode::OK, Bytes::from(vec![b' '; 100 * 1024])),
    ] {
        server.serve(status, body);
        let seen = server.hits();
        eventually("two failed background fetches", || {
            server.hits() >= seen + 2
        })
        .await;
        // An unknown kid triggers a failed on-demand fetch too.
        assert_eq!(why(a.verify(&with_kid("new")).await), "unknown key id");
        assert_eq!(why(a.verify(&token("RS256")).await), "accepted", "{status}");
    }
    // Once the endpoint recovers, refreshes go on.
    server.serve(StatusCode::OK, jwks("jwks-rotated.json"));
    eventually("the rotated keys", || {
        a.keys.current().has_kid("rsa-2") && !a.keys.current().has_kid("rsa-1")
    })
    .await;
    assert_eq!(why(a.verify(&token("RS256-rsa2")).await), "accepted");
}

#[tokio::test]
async fn an_unreachable_jwks_url_fails_start_naming_the_key() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url: Uri = format!("http://{addr}/jwks.json").parse().expect("url");
    let err = Authenticator::with_timing(&url_config(&url), timing(HOUR, HOUR))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("jwt.jwks_url: http://"), "{err}");

    let server = JwksServer::start("{}").await;
    let err = Authenticator::with_timing(&url_config(&server.url), timing(HOUR, HOUR))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no \"keys\" array"), "{err}");
}
