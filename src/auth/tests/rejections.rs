//! Every way a token is refused, with its description: structure, alg
//! allow-list, alg/key confusion, key selection, signature, claims, and what
//! the client sees.

use super::*;
use http_body_util::BodyExt;
use hyper::header::WWW_AUTHENTICATE;

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
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&body).expect("json body");
    assert_eq!(
        body,
        json!({"error": "invalid_token", "error_description": "token expired"})
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
