//! The revocation policy against the one holding the token: a re-encoded
//! signature is the same revoked token, a token may not outlive the
//! logout-all records (`max_token_lifetime`), a logout-all covers tokens
//! issued by an issuer whose clock runs ahead, and revocations written by the
//! previous build (whole-token keys) keep refusing their tokens.

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Order of the P-256 group.
const P256_N: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
/// Order of the P-384 group.
const P384_N: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// `auth_config` with ES256/ES384 keys from the fixture JWKS and `jwt` keys
/// replaced or added (`extra_jwt`, e.g. `max_token_lifetime = "2s"`).
fn config(upstream: &str, revocation: &str, leeway: &str, extra_jwt: &str) -> String {
    auth_config(upstream, revocation)
        .replace(
            r#"algorithms = ["HS256"]"#,
            &format!(
                "algorithms = [\"HS256\", \"ES256\", \"ES384\"]\njwks_file = {:?}\n{extra_jwt}",
                fixture("keys/jwks.json").display().to_string()
            ),
        )
        .replace(r#"leeway = "0s""#, &format!("leeway = {leeway:?}"))
}

async fn start(revocation: &str, leeway: &str, extra_jwt: &str) -> (Upstream, Gateway) {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&config(&up.url(), revocation, leeway, extra_jwt)).await;
    (up, gw)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `n - s`, big-endian, same width.
fn order_minus(n: &[u8], s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; n.len()];
    let mut borrow = 0i16;
    for i in (0..n.len()).rev() {
        let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        (out[i], borrow) = if d < 0 {
            ((d + 256) as u8, 1)
        } else {
            (d as u8, 0)
        };
    }
    out
}

/// The same token with its ECDSA signature `(r, s)` rewritten as
/// `(r, n - s)`: equally valid, different bytes. Needs no key.
fn reencoded(token: &str, alg: &str) -> String {
    let n = hex(if alg == "ES256" { P256_N } else { P384_N });
    let (signing_input, sig) = token.rsplit_once('.').expect("three parts");
    let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64");
    assert_eq!(sig.len(), 2 * n.len(), "{alg} signature is r || s");
    let (r, s) = sig.split_at(n.len());
    let mut flipped = r.to_vec();
    flipped.extend(order_minus(&n, s));
    let out = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(flipped));
    assert_ne!(out, token);
    out
}

/// An ECDSA token without `jti` from the fixture keys.
fn ec_token(alg: &str, sub: &str) -> String {
    let (algorithm, kid, pem) = match alg {
        "ES256" => (jsonwebtoken::Algorithm::ES256, "ec256-1", "keys/ec256.pem"),
        _ => (jsonwebtoken::Algorithm::ES384, "ec384-1", "keys/ec384.pem"),
    };
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = Some(kid.into());
    let pem = std::fs::read(fixture(pem)).expect("fixture key");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("ec key");
    jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "scope": "orders:read", "iat": now(), "exp": now() + 600}),
        &key,
    )
    .expect("encode")
}

fn assert_refused(got: &Got, description: &str) {
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{}", got.body);
    assert_eq!(got.json()["error"], "invalid_token");
    assert_eq!(got.json()["error_description"], description);
}

/// How a token gets revoked in [`reencoded_signature_stays_revoked`].
#[derive(Debug, Clone, Copy)]
enum RevokedVia {
    Logout,
    Rfc7009,
    Admin,
}

async fn revoke_by(gw: &Gateway, how: RevokedVia, token: &str) {
    let got = match how {
        RevokedVia::Logout => post_with(&gw.url("/auth/logout"), token).await,
        RevokedVia::Rfc7009 => {
            send(
                "POST",
                &gw.url("/auth/revoke"),
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!("token={token}"),
            )
            .await
        }
        RevokedVia::Admin => {
            admin(
                gw,
                "POST",
                "/admin/revocations",
                &json!({ "token": token }).to_string(),
            )
            .await
        }
    };
    assert_eq!(got.status, StatusCode::OK, "{how:?}: {}", got.body);
}

/// Pins a fixed bug: a logged-out ES256/ES384 token without `jti` was accepted
/// again once its signature was rewritten as `(r, n-s)` (the key hashed the
/// whole token). Through logout, RFC 7009 and the admin API, both ways round.
#[tokio::test]
async fn reencoded_ecdsa_signature_stays_revoked() {
    let (_up, gw) = start("", "0s", "").await;
    for alg in ["ES256", "ES384"] {
        for how in [RevokedVia::Logout, RevokedVia::Rfc7009, RevokedVia::Admin] {
            let t = ec_token(alg, &unique("ec"));
            let twin = reencoded(&t, alg);
            // Both encodings verify: the twin is the same token.
            for tok in [&t, &twin] {
                let got = get_with(&gw.url("/api/x"), tok).await;
                assert_eq!(got.status, StatusCode::OK, "{alg} {how:?}: {}", got.body);
            }
            revoke_by(&gw, how, &t).await;
            for tok in [&t, &twin] {
                assert_refused(&get_with(&gw.url("/api/x"), tok).await, "token revoked");
            }
            // Revoking the twin revokes the original just the same.
            let t2 = ec_token(alg, &unique("ec"));
            revoke_by(&gw, how, &reencoded(&t2, alg)).await;
            assert_refused(&get_with(&gw.url("/api/x"), &t2).await, "token revoked");
        }
    }
}

/// Pins a fixed bug: `max_token_lifetime` was not enforced, so a token living
/// longer than the logout-all records was valid again once they expired.
/// Refused at verification (with or without `iat`, `exp = u64::MAX` too),
/// with its own description; a token at the limit passes.
#[tokio::test]
async fn token_living_longer_than_max_token_lifetime_is_refused() {
    let (_up, gw) = start("", "0s", r#"max_token_lifetime = "1h""#).await;
    const TOO_LONG: &str = "token lifetime exceeds max_token_lifetime";
    let iat = now();
    let at_limit =
        hs256(&json!({"sub": "a", "scope": "orders:read", "iat": iat, "exp": iat + 3600}));
    assert_eq!(
        get_with(&gw.url("/api/x"), &at_limit).await.status,
        StatusCode::OK
    );
    for claims in [
        json!({"sub": "a", "scope": "orders:read", "iat": iat, "exp": iat + 3601}),
        json!({"sub": "a", "scope": "orders:read", "iat": iat, "exp": iat + 480 * 3600}),
        json!({"sub": "a", "scope": "orders:read", "exp": u64::MAX}),
        json!({"sub": "a", "scope": "orders:read", "iat": iat, "exp": u64::MAX}),
        json!({"sub": "a", "scope": "orders:read", "exp": now() + 7200}),
    ] {
        let t = hs256(&claims);
        assert_refused(&get_with(&gw.url("/api/x"), &t).await, TOO_LONG);
        // Also where tokens are revoked: a token that cannot be accepted is
        // not recorded either.
        assert_refused(&post_with(&gw.url("/auth/logout"), &t).await, TOO_LONG);
    }
}

/// Pins a fixed bug: with `max_token_lifetime = "2s"`, a 1 h token got 401
/// after logout-all and 200 five seconds later. Now every token the
/// logout-all covered is refused on every request until it has expired
/// (polled across the watermark's own expiry), and the 1 h token is refused
/// from the start.
#[tokio::test]
async fn logout_all_holds_for_the_whole_life_of_every_token_it_covered() {
    let (_up, gw) = start("", "0s", r#"max_token_lifetime = "2s""#).await;
    let sub = unique("all");
    let iat = now();
    let long = hs256(&json!({"sub": sub, "scope": "orders:read", "iat": iat, "exp": iat + 3600}));
    assert_refused(
        &get_with(&gw.url("/api/x"), &long).await,
        "token lifetime exceeds max_token_lifetime",
    );
    let covered: Vec<String> = [
        json!({"sub": sub, "scope": "orders:read", "iat": iat, "exp": iat + 2}),
        json!({"sub": sub, "scope": "orders:read", "iat": iat, "jti": unique("j"), "exp": iat + 2}),
        json!({"sub": sub, "scope": "orders:read", "exp": now() + 2}),
    ]
    .iter()
    .map(hs256)
    .collect();
    let got = post_with(&gw.url("/auth/logout-all"), &covered[0]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut expired = vec![false; covered.len()];
    while expired.contains(&false) {
        assert!(std::time::Instant::now() < deadline, "tokens never expired");
        for (i, t) in covered.iter().enumerate() {
            let got = get_with(&gw.url("/api/x"), t).await;
            assert_eq!(
                got.status,
                StatusCode::UNAUTHORIZED,
                "token {i} came back: {}",
                got.body
            );
            match got.json()["error_description"].as_str() {
                Some("token revoked") => {}
                Some("token expired") => expired[i] = true,
                other => panic!("token {i}: unexpected {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pins a fixed bug: a token whose `iat` is 25 s ahead (its issuer's clock runs
/// ahead, inside the 30 s leeway) still passed after logout-all. The
/// watermark now covers `iat` up to `now + leeway`: the answer's `before`
/// says so, the skewed token is refused, and a token issued after `before`
/// is accepted.
#[tokio::test]
async fn logout_all_covers_tokens_from_an_issuer_clock_running_ahead() {
    let (_up, gw) = start("", "30s", "").await;
    let sub = unique("skew");
    let ahead =
        hs256(&json!({"sub": sub, "scope": "orders:read", "iat": now() + 25, "exp": now() + 600}));
    assert_eq!(
        get_with(&gw.url("/api/x"), &ahead).await.status,
        StatusCode::OK
    );
    let t0 = now();
    let got = post_with(&gw.url("/auth/logout-all"), &ahead).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let before = got.json()["before"].as_u64().expect("before");
    assert!(
        before >= t0 + 30 && before <= now() + 30,
        "before = now + leeway"
    );
    assert_refused(&get_with(&gw.url("/api/x"), &ahead).await, "token revoked");
    let at_edge =
        hs256(&json!({"sub": sub, "scope": "orders:read", "iat": before, "exp": now() + 600}));
    assert_refused(
        &get_with(&gw.url("/api/x"), &at_edge).await,
        "token revoked",
    );
    // The first second after the watermark, once the leeway admits it.
    eventually(
        "the clock admits iat = before + 1",
        Duration::from_secs(5),
        || async { now() + 30 > before },
    )
    .await;
    let later =
        hs256(&json!({"sub": sub, "scope": "orders:read", "iat": before + 1, "exp": now() + 600}));
    assert_eq!(
        get_with(&gw.url("/api/x"), &later).await.status,
        StatusCode::OK
    );
}

/// Revocations the previous build wrote (whole-token keys, through logout,
/// RFC 7009 and the admin API), in that build's store file
/// (`tests/fixtures/legacy-store-v1`, written by the last build that keyed
/// revocations by the whole token),
/// still refuse their tokens; a token that was never revoked passes.
#[tokio::test]
async fn revocations_stored_by_the_previous_build_still_refuse_their_tokens() {
    let src = fixture("legacy-store-v1");
    let dir = temp_dir("legacy-store");
    std::fs::copy(src.join("revocations.redb"), dir.join("revocations.redb")).expect("copy store");
    let tokens = std::fs::read_to_string(src.join("tokens.txt")).expect("tokens");
    let revocation = format!("store = \"local\"\npath = {:?}", dir.display().to_string());
    // The fixture tokens have no `iat` and expire in 2100.
    let (_up, gw) = start(&revocation, "0s", r#"max_token_lifetime = "700000h""#).await;
    let mut seen = 0;
    for line in tokens.lines() {
        let (name, token) = line.split_once(' ').expect("name token");
        let got = get_with(&gw.url("/api/x"), token).await;
        if name == "never-revoked" {
            assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        } else {
            assert_refused(&got, "token revoked");
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}
