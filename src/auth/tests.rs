//! Tests across the auth module: fixture tokens from an independent encoder
//! (PyJWT, `tests/fixtures/mint_fixtures.py`), the RFC 7515 example, every
//! rejection, alg confusion, the token cache, minting, and property tests.
//! JWKS URL behaviour is in `tests/jwks_url.rs` beside this file.

mod jwks_url;

use super::*;
use crate::config::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::header::WWW_AUTHENTICATE;
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
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

fn hmac_secret() -> Vec<u8> {
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
        max_token_lifetime: Duration::from_secs(24 * 3600),
        sources: vec![TokenSource::Authorization],
        cache_capacity: 0,
    }
}

fn hmac_config() -> JwtConfig {
    JwtConfig {
        hmac_secret: Some(Secret::new(hmac_secret())),
        ..config(&[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
    }
}

fn jwks_config() -> JwtConfig {
    use Algorithm::*;
    JwtConfig {
        jwks_file: Some(fixture("keys/jwks.json")),
        ..config(&[
            RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ])
    }
}

fn pem_config(alg: Algorithm, file: &str) -> JwtConfig {
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

fn now() -> u64 {
    cache::unix_now()
}

/// Signs `claims` with the fixture HMAC secret (our encoder; the
/// independent one made the fixture tokens).
fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(&hmac_secret()).expect("key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("encode")
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn valid_claims() -> Value {
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
            c.revocation_key,
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
        c.raw.get("http://example.com/is_root"),
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
async fn structure_and_base64_failures() {
    let a = auth(&hmac_config()).await;
    for t in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!.!.!",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "e30.e30.e30",
    ] {
        assert_eq!(why(a.verify(t).await), "malformed token", "{t:?}");
    }
    // Valid header and signature, payload not JSON.
    let key = EncodingKey::from_secret(&hmac_secret()).expect("key");
    let msg = format!("{}.{}", b64(r#"{"alg":"HS256"}"#), b64("not json"));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, Algorithm::HS256).expect("sign");
    assert_eq!(
        why(a.verify(&format!("{msg}.{sig}")).await),
        "malformed token"
    );
}

#[tokio::test]
async fn alg_none_and_unlisted_algs_are_refused() {
    let a = auth(&hmac_config()).await;
    let payload = b64(&valid_claims().to_string());
    for alg in ["none", "None", "nOnE"] {
        let t = format!("{}.{payload}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)));
        assert_eq!(
            why(a.verify(&t).await),
            "token algorithm not allowed",
            "{alg}"
        );
    }
    // RS384 is a real algorithm, but not in this allow-list.
    let a = auth(&pem_config(Algorithm::RS256, "rsa.pub.pem")).await;
    assert_eq!(
        why(a.verify(&token("RS384")).await),
        "token algorithm not allowed"
    );
    assert_eq!(
        why(a.verify(&token("HS256")).await),
        "token algorithm not allowed"
    );
}

/// The classic confusion attack: an HS256 token whose "secret" is the
/// issuer's RSA public key, which any attacker has.
#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let public_pem = std::fs::read(fixture("keys/rsa.pub.pem")).expect("pem");
    let forge = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        let key = EncodingKey::from_secret(&public_pem).expect("key");
        jsonwebtoken::encode(&header, &valid_claims(), &key).expect("encode")
    };
    // RS256 only: HS256 is not even allowed.
    let a = auth(&pem_config(Algorithm::RS256, "rsa.pub.pem")).await;
    assert_eq!(
        why(a.verify(&forge(None)).await),
        "token algorithm not allowed"
    );
    // Both allowed: HS256 is checked against the HMAC secret only.
    let both = JwtConfig {
        hmac_secret: Some(Secret::new(hmac_secret())),
        public_key_file: Some(fixture("keys/rsa.pub.pem")),
        ..config(&[Algorithm::HS256, Algorithm::RS256])
    };
    let a = auth(&both).await;
    assert_eq!(why(a.verify(&forge(None)).await), "invalid signature");
    // With a JWKS, a kid naming the RSA key is refused outright.
    let both_jwks = JwtConfig {
        public_key_file: None,
        jwks_file: Some(fixture("keys/jwks.json")),
        ..both
    };
    let a = auth(&both_jwks).await;
    assert_eq!(
        why(a.verify(&forge(Some("rsa-1"))).await),
        "token algorithm does not match the key"
    );
    // Genuine tokens of both kinds still pass.
    assert_eq!(why(a.verify(&token("HS256")).await), "accepted");
    assert_eq!(why(a.verify(&token("RS256")).await), "accepted");
}

#[tokio::test]
async fn key_selection_failures() {
    let a = auth(&jwks_config()).await;
    // Signed by a key the JWKS file does not publish.
    assert_eq!(why(a.verify(&token("RS256-rsa2")).await), "unknown key id");
    // An ES256 header pointing at the RSA key's kid.
    let es = token("ES256");
    let (_, rest) = es.split_once('.').expect("dots");
    let relabelled = format!("{}.{rest}", b64(r#"{"alg":"ES256","kid":"rsa-1"}"#));
    assert_eq!(
        why(a.verify(&relabelled).await),
        "token algorithm does not match the key"
    );
    // The P-256 key of an ES384 PEM config cannot verify ES256.
    let a = auth(&JwtConfig {
        public_key_file: Some(fixture("keys/ec384.pub.pem")),
        ..config(&[Algorithm::ES256, Algorithm::ES384])
    })
    .await;
    assert_eq!(
        why(a.verify(&token("ES256")).await),
        "token algorithm does not match the key"
    );
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let a = auth(&jwks_config()).await;
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        let t = token(alg);
        let (msg, sig) = t.rsplit_once('.').expect("dots");
        // Swap the first signature character for another base64url one.
        let first = if sig.starts_with('A') { "B" } else { "A" };
        let forged = format!("{msg}.{first}{}", &sig[1..]);
        assert_eq!(why(a.verify(&forged).await), "invalid signature", "{alg}");
        // A valid signature of another message.
        let other = token("RS256-rsa2");
        let (_, other_sig) = other.rsplit_once('.').expect("dots");
        let r = why(a.verify(&format!("{msg}.{other_sig}")).await);
        assert_eq!(r, "invalid signature", "{alg}");
    }
    let a = auth(&hmac_config()).await;
    let wrong_secret =
        EncodingKey::from_secret(b"another secret that is long enough!!").expect("key");
    let t = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &valid_claims(),
        &wrong_secret,
    )
    .expect("encode");
    assert_eq!(why(a.verify(&t).await), "invalid signature");
}

#[tokio::test]
async fn claim_failures_and_leeway() {
    let a = auth(&hmac_config()).await;
    let n = now();
    let with = |k: &str, v: Value| {
        let mut c = valid_claims();
        c[k] = v;
        hs256(&c)
    };
    let mut no_exp = valid_claims();
    no_exp.as_object_mut().map(|m| m.remove("exp"));
    assert_eq!(
        why(a.verify(&hs256(&no_exp)).await),
        "token has no exp claim"
    );
    assert_eq!(
        why(a.verify(&with("exp", json!(n - 120))).await),
        "token expired"
    );
    assert_eq!(
        why(a.verify(&with("exp", json!(n - 10))).await),
        "accepted",
        "leeway"
    );
    assert_eq!(
        why(a.verify(&with("nbf", json!(n + 120))).await),
        "token not yet valid"
    );
    assert_eq!(
        why(a.verify(&with("nbf", json!(n + 10))).await),
        "accepted",
        "leeway"
    );
    assert_eq!(
        why(a.verify(&with("iss", json!("https://evil"))).await),
        "invalid issuer"
    );
    assert_eq!(
        why(a.verify(&with("aud", json!("other"))).await),
        "invalid audience"
    );
    assert_eq!(
        why(a.verify(&with("aud", json!(["x", "api"]))).await),
        "accepted"
    );
    // Exact leeway edges, with the clock pinned.
    let t = with("exp", json!(n));
    assert_eq!(why(a.verify_at(&t, n + 30).await), "accepted");
    assert_eq!(why(a.verify_at(&t, n + 31).await), "token expired");
}

/// What a client sees for each failure: 401, `invalid_token`, the
/// description in body and header, and never the token.
#[tokio::test]
async fn rejections_render_per_rfc6750() {
    let a = auth(&hmac_config()).await;
    let expired = {
        let mut c = valid_claims();
        c["exp"] = json!(now() - 3600);
        hs256(&c)
    };
    let reject = a.verify(&expired).await.expect_err("rejected");
    let resp = reject.into_response();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers()[WWW_AUTHENTICATE],
        "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"token expired\""
    );
    let mut h = HeaderMap::new();
    h.insert(
        hyper::header::AUTHORIZATION,
        "Token abc".parse().expect("value"),
    );
    let reject = a.extract(&h, &Uri::from_static("/")).expect_err("rejected");
    assert_eq!(reject.status().as_u16(), 400);
    let resp = reject.into_response();
    let header = resp.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap_or_default();
    assert!(header.contains("error=\"invalid_request\""), "{header}");
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
    assert_eq!(c.raw["tier"], json!(3));
    assert_eq!(c.raw["iss"], json!(ISSUER));
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

/// One runtime for the property tests (proptest bodies are synchronous).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn assert_401(r: Result<Arc<Claims>, Reject>) -> Result<(), TestCaseError> {
    if let Err(reject) = r {
        prop_assert!(matches!(reject, Reject::InvalidToken(_)), "{reject:?}");
        prop_assert_eq!(reject.status().as_u16(), 401);
    } else {
        prop_assert!(false, "an arbitrary token was accepted");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary text as a token: never a panic, always 401.
    #[test]
    fn arbitrary_tokens_are_401(token in ".{0,300}") {
        let both = JwtConfig {
            hmac_secret: Some(Secret::new(hmac_secret())),
            ..jwks_config()
        };
        let mut cfg = both;
        cfg.algorithms.push(Algorithm::HS256);
        block_on(async {
            let a = auth(&cfg).await;
            assert_401(a.verify(&token).await)
        })?;
    }

    /// Well-formed shape with an allowed alg and arbitrary payload and
    /// signature bytes: reaches the signature check, still always 401.
    #[test]
    fn arbitrary_payloads_and_signatures_are_401(
        alg in prop::sample::select(vec!["HS256", "RS256", "ES256", "ES384", "EdDSA", "PS512"]),
        kid in prop::option::of(prop::sample::select(vec!["rsa-1", "ec256-1", "ed-1", "zz"])),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        signature in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut cfg = jwks_config();
        cfg.hmac_secret = Some(Secret::new(hmac_secret()));
        cfg.algorithms.push(Algorithm::HS256);
        let header = match kid {
            Some(k) => json!({"alg": alg, "kid": k}),
            None => json!({"alg": alg}),
        };
        let t = format!(
            "{}.{}.{}",
            b64(&header.to_string()),
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&signature)
        );
        block_on(async {
            let a = auth(&cfg).await;
            assert_401(a.verify(&t).await)
        })?;
    }

    /// Arbitrary bytes as the Authorization header, then verification of
    /// whatever was extracted: 400, 401 or no token; never a panic.
    #[test]
    fn arbitrary_authorization_is_400_or_401(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let Ok(value) = hyper::header::HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let mut h = HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, value);
        block_on(async {
            let a = auth(&hmac_config()).await;
            match a.extract(&h, &Uri::from_static("/")) {
                Ok(None) => Ok(()),
                Ok(Some(t)) => assert_401(a.verify(&t).await),
                Err(r) => {
                    prop_assert_eq!(r.status().as_u16(), 400);
                    Ok(())
                }
            }
        })?;
    }
}
