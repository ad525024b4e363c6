//! Property tests: hostile input as an `Authorization` header or as a token
//! never panics and always ends in 400, 401 or no token.

use super::*;
use proptest::prelude::*;

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
