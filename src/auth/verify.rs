//! The first steps of verification: structure and base64, header `alg` in the
//! allow-list — and the signature check with `jsonwebtoken`, one
//! [`Validation`] per allowed algorithm, built once.
//!
//! The `Validation`s pin the algorithm and check nothing else: the claim
//! checks (`exp`, `nbf`, `iat`, `iss`, `aud`) are done afterwards by
//! `claims.rs`, in the documented order, with one leeway and an injectable clock.

use crate::response::Reject;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The description for a token that is not three base64url parts with a
/// JSON header.
pub(crate) const MALFORMED: Reject = Reject::InvalidToken("malformed token");
/// `alg` is `none`, unknown or not in `jwt.algorithms`.
pub(crate) const ALG_NOT_ALLOWED: Reject = Reject::InvalidToken("token algorithm not allowed");
/// The key chosen for the token (by `kid`, or the HMAC secret) cannot verify
/// its `alg`: an HMAC alg with an asymmetric key or the reverse, or another
/// curve or key type.
pub(crate) const ALG_KEY_MISMATCH: Reject =
    Reject::InvalidToken("token algorithm does not match the key");

/// What the protected header tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Checks the token's shape and reads its header; refuses an `alg` that is
/// not allowed (`none` never is).
pub(crate) fn parse_header(token: &str, allowed: &[Algorithm]) -> Result<TokenHeader, Reject> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    // An empty signature is left to the alg check (`alg: none` tokens have
    // one) and then to the signature check.
    if header.is_empty() || payload.is_empty() || !is_b64url(payload) || !is_b64url(signature) {
        return Err(MALFORMED);
    }
    let json = URL_SAFE_NO_PAD.decode(header).map_err(|_| MALFORMED)?;
    let raw: RawHeader = serde_json::from_slice(&json).map_err(|_| MALFORMED)?;
    let alg = crate::config::parse_algorithm(&raw.alg)
        .filter(|a| allowed.contains(a))
        .ok_or(ALG_NOT_ALLOWED)?;
    Ok(TokenHeader { alg, kid: raw.kid })
}

/// Unpadded base64url text of a length that can decode (RFC 7515 §2).
fn is_b64url(part: &str) -> bool {
    part.len() % 4 != 1
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Signature verification with one pinned [`Validation`] per algorithm.
pub(crate) struct Verifier {
    validations: Vec<(Algorithm, Validation)>,
}

impl Verifier {
    /// Builds the validations for the allowed algorithms.
    pub(crate) fn new(algorithms: &[Algorithm]) -> Verifier {
        let validations = algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                // Claims are checked by `claims.rs`, in the documented order.
                v.required_spec_claims.clear();
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                v.leeway = 0;
                (alg, v)
            })
            .collect();
        Verifier { validations }
    }

    /// Checks the signature of `token` (whose header said `alg`) with `key`
    /// and returns its claims, not yet checked.
    pub(crate) fn signature(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
    ) -> Result<Map<String, Value>, Reject> {
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or(ALG_NOT_ALLOWED)?;
        jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| reject(e.kind()))
    }
}

/// A `jsonwebtoken` failure as a 401 description.
fn reject(kind: &ErrorKind) -> Reject {
    match kind {
        ErrorKind::InvalidSignature => Reject::InvalidToken("invalid signature"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => ALG_KEY_MISMATCH,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => MALFORMED,
        // `ErrorKind` is non-exhaustive; nothing else is expected here.
        _ => Reject::InvalidToken("invalid token"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Algorithm] = &[Algorithm::HS256, Algorithm::RS256, Algorithm::EdDSA];

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(r#"{"exp":1}"#))
    }

    #[test]
    fn header_alg_and_kid_are_read() {
        let t = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        assert_eq!(
            parse_header(&t, ALL),
            Ok(TokenHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            })
        );
    }

    #[test]
    fn none_and_unlisted_algorithms_are_refused() {
        for alg in ["none", "None", "NONE", "RS512", "HS384", "ES256K", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#));
            assert_eq!(parse_header(&t, ALL), Err(ALG_NOT_ALLOWED), "{alg}");
        }
        // An unsigned token as RFC 7519 §6.1 shows it: empty signature.
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":1}"#));
        assert_eq!(parse_header(&unsigned, ALL), Err(ALG_NOT_ALLOWED));
    }

    #[test]
    fn bad_structure_and_base64_are_malformed() {
        let good_payload = b64(r#"{"exp":1}"#);
        let good_header = b64(r#"{"alg":"HS256"}"#);
        for t in [
            String::new(),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            format!(".{good_payload}.sig"),
            format!("{good_header}..sig"),
            format!("{good_header}.{good_payload}=.sig"),
            format!("{good_header}.{good_payload}.s+g"),
            format!("{good_header}.a.sig"),
            format!("!!!.{good_payload}.sig"),
            format!("{}.{good_payload}.sig", b64("not json")),
            format!("{}.{good_payload}.sig", b64(r#"{"alg":5}"#)),
            format!("{}.{good_payload}.sig", b64(r#"{"alg":"HS256","kid":1}"#)),
        ] {
            assert_eq!(parse_header(&t, ALL), Err(MALFORMED), "{t:?}");
        }
    }

    #[test]
    fn key_of_another_family_is_a_mismatch() {
        let v = Verifier::new(&[Algorithm::RS256]);
        let secret = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef").expect("key");
        let t = token(r#"{"alg":"RS256"}"#);
        assert_eq!(
            v.signature(&t, Algorithm::RS256, &secret).err(),
            Some(ALG_KEY_MISMATCH)
        );
        // An alg without a validation is never verified.
        assert_eq!(
            v.signature(&t, Algorithm::HS256, &secret).err(),
            Some(ALG_NOT_ALLOWED)
        );
    }
}
