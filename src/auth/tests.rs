//! Tests across the auth module: fixture tokens from an independent encoder
//! (PyJWT, `tests/fixtures/mint_fixtures.py`), the RFC 7515 example, token
//! sources, the token cache and minting. Beside this file: `tests/rejections.rs`
//! (every 401 and alg confusion), `tests/props.rs` (property tests) and
//! `tests/jwks_url.rs` (a local JWKS server).

mod jwks_url;
mod props;
mod rejections;

use super::*;
use crate::config::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub(super) const ISSUER: &str = "https://idp.example";

pub(super) fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

pub(super) fn token(name: &str) -> String {
    let text = std::fs::read_to_string(fixture(&format!("tokens/{name}.jwt"))).expect("token");
    text.trim().to_string()
}

pub(super) fn hmac_secret() -> Vec<u8> {
    std::fs::read(fixture("keys/hmac.secret"))
        .expect("secret")
        .trim_ascii_end()
        .to_vec()
}

/// A `[jwt]` like the fixtures expect: issuer and audience set, 30 s leeway,
/// cache off, keys to be filled in by each test.
pub(super) fn config(algorithms: &[Algorithm]) -> JwtConfig {
    JwtConfig {
        algorithms: algorithms.to_vec(),
        hmac_secret: None,
        public_key_file: None,
        jwks_file: None,
        jwks_url: None,
        signing_key_file: None,
        issuer: Some(ISSUER.to_string()),
        audience: vec!["api".to_string()],
        leeway: Duration::from_secs(30),
        // The fixtures live from 2023 to 2100.
        max_token_lifetime: Duration::from_secs(100 * 365 * 24 * 3600),
        sources: vec![TokenSource::Authorization],
        cache_capacity: 0,
        cache_max_bytes: crate::config::DEFAULT_TOKEN_CACHE_MAX_BYTES,
        cache_max_token_bytes: 4096,
        forward_claims: false,
    }
}

pub(super) fn hmac_config() -> JwtConfig {
    JwtConfig {
        hmac_secret: Some(Secret::new(hmac_secret())),
        ..config(&[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
    }
}

pub(super) fn jwks_config() -> JwtConfig {
    use Algorithm::*;
    JwtConfig {
        jwks_file: Some(fixture("keys/jwks.json")),
        ..config(&[
            RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ])
    }
}

pub(super) fn pem_config(alg: Algorithm, file: &str) -> JwtConfig {
    JwtConfig {
        public_key_file: Some(fixture(&format!("keys/{file}"))),
        ..config(&[alg])
    }
}

pub(super) async fn auth(cfg: &JwtConfig) -> Arc<Authenticator> {
    Authenticator::new(cfg).await.expect("authenticator")
}

/// The description of an `InvalidToken` rejection, or what happened instead.
pub(super) fn why(result: Result<Arc<Claims>, Reject>) -> String {
    match result {
        Ok(_) => "accepted".to_string(),
        Err(Reject::InvalidToken(d)) => d.to_string(),
        Err(other) => format!("{other:?}"),
    }
}

pub(super) fn now() -> u64 {
    crate::revocation::Clock::now(&crate::revocation::SystemClock)
}

/// Signs `claims` with the fixture HMAC secret (our encoder; the
/// independent one made the fixture tokens).
pub(super) fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(&hmac_secret()).expect("key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("encode")
}

pub(super) fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

pub(super) fn valid_claims() -> Value {
    json!({"sub": "u", "iss": ISSUER, "aud": "api", "exp": now() + 600, "jti": "j"})
}

#[tokio::test]
async fn pyjwt_hmac_tokens_verify() {
    let a = auth(&hmac_config()).await;
    for alg in ["HS256", "HS384", "HS512"] {
        let c = a
            .verify(&token(alg))
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(c.sub.as_deref(), Some("fixture-user"));
        assert_eq!(c.jti.as_deref(), Some(format!("fixture-{alg}").as_str()));
        assert_eq!(c.scopes, ["orders:read", "orders:write"]);
        assert_eq!(c.exp, 4102444800);
        assert_eq!(c.iat, Some(1700000000));
        assert_eq!(
            c.revocation.key,
            crate::revocation::RevocationKey::from_jti(&format!("fixture-{alg}"))
        );
    }
}

#[tokio::test]
async fn pyjwt_asymmetric_tokens_verify_with_the_jwks_file() {
    let a = auth(&jwks_config()).await;
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        let c = a
            .verify(&token(alg))
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(c.sub.as_deref(), Some("fixture-user"), "{alg}");
    }
}

#[tokio::test]
async fn pyjwt_tokens_verify_with_pem_public_keys() {
    for (alg, file, name) in [
        (Algorithm::RS256, "rsa.pub.pem", "RS256"),
        (Algorithm::PS256, "rsa.pub.pem", "PS256"),
        (Algorithm::ES256, "ec256.pub.pem", "ES256"),
        (Algorithm::ES384, "ec384.pub.pem", "ES384"),
        (Algorithm::EdDSA, "ed25519.pub.pem", "EdDSA"),
    ] {
        let a = auth(&pem_config(alg, file)).await;
        assert_eq!(why(a.verify(&token(name)).await), "accepted", "{name}");
    }
}

/// RFC 7515 appendix A.1: the HS256 example. Its `exp` (1300819380) is long
/// past, so it is verified at a time before it, through the whole pipeline.
#[tokio::test]
async fn rfc7515_a1_hs256_example() {
    let key =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
        .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
        .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let cfg = JwtConfig {
        hmac_secret: Some(Secret::new(URL_SAFE_NO_PAD.decode(key).expect("key"))),
        issuer: Some("joe".into()),
        audience: vec![],
        ..config(&[Algorithm::HS256])
    };
    let a = auth(&cfg).await;
    let c = a
        .verify_at(token, 1300819000)
        .await
        .expect("RFC 7515 A.1 verifies");
    assert_eq!(
        c.raw.map().get("http://example.com/is_root"),
        Some(&Value::Bool(true))
    );
    // And it is expired today.
    assert_eq!(why(a.verify(token).await), "token expired");
    // One flipped signature bit: refused.
    let forged = token.replace("dBjftJeZ4CVP", "dBjftJeZ4CVQ");
    assert_eq!(
        why(a.verify_at(&forged, 1300819000).await),
        "invalid signature"
    );
}

#[tokio::test]
async fn extract_then_verify_from_cookie_and_query() {
    let cfg = JwtConfig {
        sources: vec![
            TokenSource::Authorization,
            TokenSource::Cookie("access_token".into()),
            TokenSource::Query("access_token".into()),
        ],
        ..hmac_config()
    };
    let a = auth(&cfg).await;
    let t = token("HS256");
    let mut h = HeaderMap::new();
    h.insert(
        hyper::header::COOKIE,
        format!("x=1; access_token={t}").parse().expect("v"),
    );
    let root = Uri::from_static("/");
    let found = a.extract(&h, &root).expect("ok").expect("token");
    assert_eq!(why(a.verify(&found).await), "accepted");
    let uri: Uri = format!("/orders?access_token={t}").parse().expect("uri");
    let empty = HeaderMap::new();
    let found = a.extract(&empty, &uri).expect("ok").expect("token");
    assert_eq!(why(a.verify(&found).await), "accepted");
    assert_eq!(
        a.extract(&HeaderMap::new(), &Uri::from_static("/")),
        Ok(None)
    );
}

#[tokio::test]
async fn cache_serves_repeat_tokens_until_exp() {
    let cfg = JwtConfig {
        cache_capacity: 100,
        ..pem_config(Algorithm::RS256, "rsa.pub.pem")
    };
    let a = auth(&cfg).await;
    let t = token("RS256");
    let first = a.verify(&t).await.expect("verifies");
    assert_eq!(a.cache_hits(), 0);
    let second = a.verify(&t).await.expect("verifies");
    assert_eq!(a.cache_hits(), 1);
    assert!(Arc::ptr_eq(&first, &second), "served from the cache");
    assert_eq!(a.cache_len(), 1);
    // Failed tokens never enter it.
    assert!(a.verify(&token("RS256-rsa2")).await.is_err());
    assert_eq!(a.cache_len(), 1);

    // A cached token past exp + leeway is not served: verified again, refused.
    let cfg = JwtConfig {
        cache_capacity: 100,
        ..hmac_config()
    };
    let a = auth(&cfg).await;
    let n = now();
    let mut c = valid_claims();
    c["exp"] = json!(n + 60);
    let t = hs256(&c);
    assert_eq!(why(a.verify_at(&t, n).await), "accepted");
    assert_eq!(why(a.verify_at(&t, n + 1).await), "accepted");
    assert_eq!(a.cache_hits(), 1);
    assert_eq!(why(a.verify_at(&t, n + 91).await), "token expired");
    assert_eq!(a.cache_hits(), 1);
    // Not yet valid (nbf ahead, inside the leeway): verified, not cached.
    let mut c = valid_claims();
    c["nbf"] = json!(n + 20);
    let t = hs256(&c);
    assert_eq!(why(a.verify_at(&t, n).await), "accepted");
    assert_eq!(why(a.verify_at(&t, n).await), "accepted");
    assert_eq!(a.cache_hits(), 1);
}

#[tokio::test]
async fn key_loading_failures_name_the_key() {
    let err = |cfg: JwtConfig| async move {
        match Authenticator::new(&cfg).await {
            Ok(_) => "loaded".to_string(),
            Err(e) => e.to_string(),
        }
    };
    let e = err(JwtConfig {
        public_key_file: Some(fixture("keys/missing.pem")),
        ..config(&[Algorithm::RS256])
    })
    .await;
    assert!(e.starts_with("jwt.public_key_file: cannot read"), "{e}");
    let e = err(pem_config(Algorithm::RS256, "rsa.pem")).await;
    assert!(
        e.starts_with("jwt.public_key_file:") && e.contains("private key"),
        "{e}"
    );
    let e = err(JwtConfig {
        jwks_file: Some(fixture("keys/rsa.pub.pem")),
        ..config(&[Algorithm::RS256])
    })
    .await;
    assert!(e.starts_with("jwt.jwks_file:") && e.contains("JSON"), "{e}");
}

/// With a route forwarding claims, the claims map is built at
/// verification, before the token cache weighs the entry; without one,
/// nothing builds it.
#[tokio::test]
async fn the_claims_map_is_built_before_caching_only_when_claims_are_forwarded() {
    let req = MintRequest::new("alice");
    for forward_claims in [false, true] {
        let cfg = JwtConfig {
            forward_claims,
            ..hmac_config()
        };
        let t = mint(&cfg, &req).expect("mint");
        let c = auth(&cfg).await.verify(&t).await.expect("verifies");
        assert_eq!(c.raw.built_map().is_some(), forward_claims);
    }
}

#[tokio::test]
async fn minted_tokens_verify() {
    let mut req = MintRequest::new("alice");
    req.scope = Some("orders:read orders:write".into());
    req.claims = vec![parse_claim("tier=3").expect("claim")];
    let cfg = hmac_config();
    let t = mint(&cfg, &req).expect("mint");
    let c = auth(&cfg).await.verify(&t).await.expect("verifies");
    assert_eq!(c.sub.as_deref(), Some("alice"));
    assert!(c.has_scopes(&["orders:read".into()]));
    assert_eq!(c.raw.map()["tier"], json!(3));
    assert_eq!(c.raw.map()["iss"], json!(ISSUER));
    assert_eq!(c.exp - c.iat.unwrap_or_default(), 15 * 60);
    assert_eq!(c.jti.as_ref().map(String::len), Some(32));

    // Private keys: the first allowed alg the key can sign.
    for (file, public, algs, expect) in [
        (
            "rsa.pem",
            "rsa.pub.pem",
            vec![Algorithm::ES256, Algorithm::PS384],
            Algorithm::PS384,
        ),
        (
            "ec384.pem",
            "ec384.pub.pem",
            vec![Algorithm::ES256, Algorithm::ES384],
            Algorithm::ES384,
        ),
        (
            "ec256.pem",
            "ec256.pub.pem",
            vec![Algorithm::ES256, Algorithm::ES384],
            Algorithm::ES256,
        ),
        (
            "ed25519.pem",
            "ed25519.pub.pem",
            vec![Algorithm::RS256, Algorithm::EdDSA],
            Algorithm::EdDSA,
        ),
    ] {
        let cfg = JwtConfig {
            signing_key_file: Some(fixture(&format!("keys/{file}"))),
            public_key_file: Some(fixture(&format!("keys/{public}"))),
            ..config(&algs)
        };
        let t = mint(&cfg, &MintRequest::new("bob")).expect(file);
        let header = jsonwebtoken::decode_header(&t).expect("header");
        assert_eq!(header.alg, expect, "{file}");
        assert_eq!(why(auth(&cfg).await.verify(&t).await), "accepted", "{file}");
    }
    // An explicit alg the key cannot sign, and no key at all.
    let cfg = JwtConfig {
        signing_key_file: Some(fixture("keys/ec256.pem")),
        ..config(&[Algorithm::ES256])
    };
    let req = MintRequest {
        alg: Some(Algorithm::RS256),
        ..MintRequest::new("c")
    };
    assert!(matches!(mint(&cfg, &req), Err(MintError::NoKey(_))));
    assert!(matches!(
        mint(&config(&[Algorithm::RS256]), &MintRequest::new("c")),
        Err(MintError::NoKey(_))
    ));
}

/// A token verified just before its expiry is refused by the second look
/// the request path takes after the revocation check, once the clock has
/// passed `exp` + leeway (the straddle where a watermark left between the
/// two clock readings).
#[tokio::test]
async fn a_token_expired_since_verification_is_refused_by_the_second_look() {
    let a = auth(&hmac_config()).await;
    let n = now();
    let mut c = valid_claims();
    c["exp"] = json!(n - 40);
    c["iat"] = json!(n - 100);
    let t = hs256(&c);
    // Verified as of a moment when it was still acceptable (leeway 30 s).
    let claims = a.verify_at(&t, n - 50).await.expect("accepted then");
    assert!(matches!(
        a.still_unexpired(&claims),
        Err(Reject::InvalidToken("token expired"))
    ));
    let mut c = valid_claims();
    c["exp"] = json!(n + 60);
    let claims = a.verify(&hs256(&c)).await.expect("accepted");
    assert!(a.still_unexpired(&claims).is_ok());
}
