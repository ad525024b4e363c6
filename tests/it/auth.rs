//! Token verification on the request path (extract, verify, revocation, scopes, claim headers).

use crate::support::*;
use hyper::StatusCode;
use serde_json::json;

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    (up, gw)
}

#[tokio::test]
async fn valid_token_is_forwarded_with_claims() {
    let (up, gw) = setup().await;
    let t = token("alice", "orders:read profile");
    let got = get(
        &gw.url("/api/orders"),
        &[
            ("authorization", &format!("Bearer {t}")),
            ("x-auth-subject", "mallory"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let seen = up.last().headers;
    assert_eq!(
        seen["x-auth-subject"], "alice",
        "spoofed header replaced by the claim"
    );
    assert_eq!(seen.get_all("x-auth-subject").iter().count(), 1);
    assert_eq!(seen["x-auth-scope"], "orders:read profile");
    assert_eq!(seen["authorization"], format!("Bearer {t}"));
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let (_up, gw) = setup().await;
    let t = token("alice", "orders:read");
    let got = get(
        &gw.url("/api/x"),
        &[("authorization", &format!("bEaReR {t}"))],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_token_is_401_without_error_code() {
    let (up, gw) = setup().await;
    let got = get(&gw.url("/api/orders"), &[]).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.header("www-authenticate"), "Bearer realm=\"revgate\"");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn malformed_authorization_is_400() {
    let (up, gw) = setup().await;
    let t = token("alice", "orders:read");
    for bad in [
        "Basic dXNlcjpwYXNz".to_string(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {t} {t}"),
        t.clone(),
    ] {
        let got = get(&gw.url("/api/orders"), &[("authorization", &bad)]).await;
        assert_eq!(
            got.status,
            StatusCode::BAD_REQUEST,
            "for {bad:?}: {}",
            got.body
        );
        assert_eq!(got.json()["error"], "invalid_request");
        assert!(got
            .header("www-authenticate")
            .contains("error=\"invalid_request\""));
        assert!(!got.body.contains(&t), "the body never contains the token");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let (up, gw) = setup().await;
    let now = now();
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("alice", "j1", "orders:read"),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-123").expect("key"),
    )
    .expect("encode");
    let expired = hs256(&json!({"sub": "alice", "scope": "orders:read", "exp": now - 60}));
    let no_exp = hs256(&json!({"sub": "alice", "scope": "orders:read"}));
    let not_yet =
        hs256(&json!({"sub": "a", "scope": "orders:read", "exp": now + 600, "nbf": now + 300}));
    // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64url(&json!({"sub": "alice", "scope": "orders:read", "exp": now + 600}).to_string())
    );
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims("alice", "j2", "orders:read"),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("encode");
    for (what, t) in [
        ("wrong key", wrong_key.as_str()),
        ("expired", expired.as_str()),
        ("no exp", no_exp.as_str()),
        ("nbf in the future", not_yet.as_str()),
        ("alg none", none.as_str()),
        ("alg not allowed", hs384.as_str()),
        ("garbage", "not.a.jwt"),
        ("bad base64", "e30.e30.a~b"),
        ("bad json", "YWJj.YWJj.YWJj"),
    ] {
        let got = get_with(&gw.url("/api/orders"), t).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{what}: {}", got.body);
        assert_eq!(got.json()["error"], "invalid_token", "{what}");
        assert!(
            got.header("www-authenticate")
                .starts_with("Bearer realm=\"revgate\", error=\"invalid_token\""),
            "{what}"
        );
        assert!(
            !got.body.contains(t),
            "{what}: body never contains the token"
        );
    }
    assert_eq!(up.count(), 0);
}

/// An HS256 token over a payload given as JSON text (shapes `serde_json`
/// cannot build: a member twice, a number beyond an f64, a lone surrogate).
fn hs256_text(payload: &str) -> String {
    let input = format!(
        "{}.{}",
        base64url(r#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(payload)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    use base64::Engine;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref());
    format!("{input}.{sig}")
}

/// Signed tokens whose payload a claims map could not hold, or which name a
/// registered claim twice, are refused through the gateway (the claims are
/// read from the payload's text, not from a map); the same token with a
/// well-formed payload passes, so the refusal is the payload's.
#[tokio::test]
async fn signed_tokens_with_odd_payloads_are_refused() {
    let (up, gw) = setup().await;
    let exp = now() + 600;
    let base = format!(r#""scope":"orders:read","exp":{exp}"#);
    let ok = hs256_text(&format!(r#"{{"sub":"alice",{base}}}"#));
    let got = get_with(&gw.url("/api/orders"), &ok).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    for (what, payload) in [
        (
            "sub twice",
            format!(r#"{{"sub":"alice","sub":"admin",{base}}}"#),
        ),
        (
            "nbf beyond an f64",
            format!(r#"{{"sub":"alice","nbf":1e400,{base}}}"#),
        ),
        (
            "lone surrogate",
            format!(r#"{{"sub":"alice","name":"\ud800",{base}}}"#),
        ),
        (
            "scope unreadable",
            format!(r#"{{"sub":"alice","scp":"orders:read","scope":"\ud800","exp":{exp}}}"#),
        ),
        ("an array", format!(r#"[{exp}]"#)),
    ] {
        let got = get_with(&gw.url("/api/orders"), &hs256_text(&payload)).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{what}: {}", got.body);
        assert_eq!(got.json()["error_description"], "malformed token", "{what}");
    }
    assert_eq!(up.count(), 1);
}

fn base64url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn missing_scope_is_403() {
    let (up, gw) = setup().await;
    let got = get_with(&gw.url("/api/orders"), &token("alice", "profile")).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(got.json()["error"], "insufficient_scope");
    let h = got.header("www-authenticate");
    assert!(
        h.contains("error=\"insufficient_scope\"") && h.contains("scope=\"orders:read\""),
        "{h}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn scp_array_is_accepted() {
    let (_up, gw) = setup().await;
    let t = hs256(&json!({"sub": "a", "scp": ["orders:read"], "exp": now() + 600}));
    assert_eq!(
        get_with(&gw.url("/api/orders"), &t).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn pass_authorization_false_drops_header() {
    let (up, gw) = setup().await;
    let got = get_with(&gw.url("/private/x"), &token("alice", "")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(!up.last().headers.contains_key("authorization"));
}

#[tokio::test]
async fn cookie_and_query_sources() {
    let (up, gw) = setup().await;
    let t = token("carol", "orders:read");
    let got = get(
        &gw.url("/api/x"),
        &[("cookie", &format!("theme=dark; access_token={t}"))],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(up.last().headers["x-auth-subject"], "carol");
    let got = get(&gw.url(&format!("/api/x?access_token={t}")), &[]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    // The same token in two sources is one credential, taken from the
    // first source in configured order; the other never reaches upstream.
    let got = get(
        &gw.url("/api/x"),
        &[
            ("authorization", &format!("Bearer {t}")),
            ("cookie", &format!("theme=dark; access_token={t}")),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.last().headers["cookie"], "theme=dark");
    // Different tokens in two sources: refused (see tests/it/security.rs).
    let other = token("dave", "orders:read");
    let got = get(
        &gw.url("/api/x"),
        &[
            ("authorization", &format!("Bearer {other}")),
            ("cookie", &format!("access_token={t}")),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn optional_route() {
    let (up, gw) = setup().await;
    let got = get(&gw.url("/opt/x"), &[("x-auth-subject", "spoof")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(!up.last().headers.contains_key("x-auth-subject"));
    let got = get_with(&gw.url("/opt/x"), &token("erin", "")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.last().headers["x-auth-subject"], "erin");
    let got = get_with(&gw.url("/opt/x"), "bad.token.here").await;
    assert_eq!(
        got.status,
        StatusCode::UNAUTHORIZED,
        "a token that is present must be valid"
    );
}

/// Pins a fixed bug: a client's `Connection: x-auth-subject` made the hop-by-hop
/// filter delete the verified claim header after it was set.
#[tokio::test]
async fn connection_header_cannot_strip_claim_headers() {
    let (up, gw) = setup().await;
    let t = token("alice", "orders:read");
    let got = get(
        &gw.url("/api/x"),
        &[
            ("authorization", &format!("Bearer {t}")),
            ("connection", "x-auth-subject, x-auth-scope"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.last().headers["x-auth-subject"], "alice");
    assert_eq!(up.last().headers["x-auth-scope"], "orders:read");
}

/// A path that resolves into a protected route needs its token.
#[tokio::test]
async fn dot_segments_cannot_dodge_auth() {
    let (up, gw) = setup().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /open/../api/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(up.count(), 0);
}

/// Pins a fixed bug: `revgate_token_cache_hits_total` was exported but never
/// incremented. The second request with the same token is a cache hit. Also
/// checks the build and process metrics operators expect.
#[tokio::test]
async fn metrics_count_token_cache_hits_and_name_the_build() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let t = token("metrics-cache", "orders:read");
    for _ in 0..3 {
        assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    }
    let body = get(&gw.admin_url("/metrics"), &[]).await.body;
    assert!(body.contains("revgate_token_cache_hits_total 2"), "{body}");
    assert!(
        body.contains(&format!(
            "revgate_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    assert!(body.contains("process_resident_memory_bytes "), "{body}");
    assert!(body.contains("process_open_fds "), "{body}");
}

/// A number from the Prometheus text, for a metric without labels.
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Pins a fixed bug: the verified-token cache was bounded by entry count
/// only (200,000 distinct 8 KB tokens took 1.7 GiB). Through the gateway,
/// distinct 3 KB tokens fill a 64 KiB cache to its byte bound and no
/// further, and a token over `cache_max_token_bytes` is never cached.
#[tokio::test]
async fn token_cache_stays_within_cache_max_bytes() {
    let up = Upstream::echo("up").await;
    let toml = auth_config(&up.url(), "").replace(
        "leeway = \"0s\"\n",
        "leeway = \"0s\"\ncache_max_bytes = 65536\ncache_max_token_bytes = 4096\n",
    );
    let gw = Gateway::start(&toml).await;
    let padded = |size: usize| {
        let mut c = claims(&unique("big"), &unique("jti"), "orders:read");
        c["pad"] = serde_json::Value::from("p".repeat(size));
        hs256(&c)
    };
    for _ in 0..60 {
        let t = padded(2200);
        assert!((2800..4096).contains(&t.len()), "{}", t.len());
        assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    }
    let body = get(&gw.admin_url("/metrics"), &[]).await.body;
    let bytes = metric(&body, "revgate_token_cache_bytes");
    let entries = metric(&body, "revgate_token_cache_entries");
    assert!(bytes <= 65536.0, "{bytes} bytes held");
    assert!(bytes > 32768.0, "the cache is used: {bytes} bytes");
    assert!((4.0..=20.0).contains(&entries), "{entries} entries");

    // Over cache_max_token_bytes: verified each time, never a hit.
    let long = padded(4000);
    assert!(long.len() > 4096);
    let hits = metric(&body, "revgate_token_cache_hits_total");
    for _ in 0..2 {
        let got = get_with(&gw.url("/api/x"), &long).await;
        assert_eq!(got.status, StatusCode::OK);
    }
    let body = get(&gw.admin_url("/metrics"), &[]).await.body;
    assert_eq!(metric(&body, "revgate_token_cache_hits_total"), hits);
}
