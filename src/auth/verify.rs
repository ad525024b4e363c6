//! The first steps of verification: structure and base64, header `alg` in the
//! allow-list, the signature check (with `ring`), and decoding the claims.
//!
//! `jsonwebtoken` loads the keys and mints tokens; verification is ours, in
//! one pass: the header and the payload are each decoded and parsed once,
//! the signature is decoded into a stack buffer and checked against a key
//! prepared at load ([`SigKey`], [`HmacKeys`]): by `aws-lc-rs` for RSA
//! ([`RsaKey`]), by `ring` for the others. The claim checks (`exp`,
//! `nbf`, `iat`, `iss`, `aud`) follow in `claims.rs`, in the documented
//! order, with one leeway and an injectable clock.
//!
//! ECDSA signatures are checked as the standard says, so `(r, n-s)`
//! verifies as well as `(r, s)`: the revocation key (the SHA-256 of the
//! signing input) is what makes the two the same token.

use crate::response::Reject;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use ring::{hmac, signature};
use serde::Deserialize;
use std::borrow::Cow;

/// The description for a token that is not three base64url parts with a
/// JSON header (and, once the signature verified, a JSON object payload).
pub(crate) const MALFORMED: Reject = Reject::InvalidToken("malformed token");
/// `alg` is `none`, unknown or not in `jwt.algorithms`.
pub(crate) const ALG_NOT_ALLOWED: Reject = Reject::InvalidToken("token algorithm not allowed");
/// The key chosen for the token (by `kid`, or the HMAC secret) cannot verify
/// its `alg`: an HMAC alg with an asymmetric key or the reverse, or another
/// curve or key type.
pub(crate) const ALG_KEY_MISMATCH: Reject =
    Reject::InvalidToken("token algorithm does not match the key");
/// The signature does not verify with the chosen key.
pub(crate) const BAD_SIGNATURE: Reject = Reject::InvalidToken("invalid signature");

/// The longest signature any supported key makes: RSA-8192, 1024 bytes.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// What the protected header tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

/// A token whose shape and header checked out, its signature not yet.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    pub(crate) header: TokenHeader,
    /// `header.payload`: what the signature signs.
    signing_input: &'a str,
    /// The payload, still base64url.
    payload: &'a str,
    /// The signature, still base64url.
    signature: &'a str,
}

/// The header members we read. Strings borrow from the decoded header
/// unless they hold escapes.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    /// Read only so that a non-string `typ` is malformed, as before.
    #[serde(default, borrow, rename = "typ")]
    _typ: Option<Cow<'a, str>>,
    #[serde(default)]
    b64: Option<bool>,
    #[serde(default, borrow)]
    crit: Option<Vec<Cow<'a, str>>>,
}

impl RawHeader<'_> {
    /// RFC 7515 §4.1.11 and RFC 7797: no critical extension is supported
    /// but `b64`, and only as `true` (the default). `b64: false` would mean
    /// an unencoded payload, which this gateway never verifies.
    fn extensions_ok(&self) -> bool {
        if self.b64 == Some(false) {
            return false;
        }
        match &self.crit {
            None => true,
            Some(crit) => crit.len() == 1 && crit[0] == "b64" && self.b64.is_some(),
        }
    }
}

/// Checks the token's shape and reads its header; refuses an `alg` that is
/// not allowed (`none` never is).
pub(crate) fn parse<'a>(token: &'a str, allowed: &[Algorithm]) -> Result<Token<'a>, Reject> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
    let (header, payload) = signing_input.split_once('.').ok_or(MALFORMED)?;
    // An empty signature is left to the alg check (`alg: none` tokens have
    // one) and then to the signature check.
    if header.is_empty()
        || payload.is_empty()
        || !is_b64url(header)
        || !is_b64url(payload)
        || !is_b64url(signature)
    {
        return Err(MALFORMED);
    }
    // Headers are small: decoded on the stack, a larger one on the heap.
    let mut buf = [0u8; 256];
    let heap;
    let json = if header.len() <= 340 {
        let n = URL_SAFE_NO_PAD
            .decode_slice(header, &mut buf)
            .map_err(|_| MALFORMED)?;
        &buf[..n]
    } else {
        heap = URL_SAFE_NO_PAD.decode(header).map_err(|_| MALFORMED)?;
        &heap[..]
    };
    let raw: RawHeader = serde_json::from_slice(json).map_err(|_| MALFORMED)?;
    if !raw.extensions_ok() {
        return Err(MALFORMED);
    }
    let alg = crate::config::parse_algorithm(&raw.alg)
        .filter(|a| allowed.contains(a))
        .ok_or(ALG_NOT_ALLOWED)?;
    Ok(Token {
        header: TokenHeader {
            alg,
            kid: raw.kid.map(Cow::into_owned),
        },
        signing_input,
        payload,
        signature,
    })
}

/// Unpadded base64url text of a length that can decode (RFC 7515 §2).
/// (A `.` in a part fails here too: there are exactly three parts.)
fn is_b64url(part: &str) -> bool {
    part.len() % 4 != 1 && part.bytes().all(|b| B64URL[usize::from(b)])
}

/// The base64url alphabet as a table: one load per byte on the hot path
/// (the range checks it replaced were 8% of an HS256 verification).
static B64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        i += 1;
    }
    table
};

impl Token<'_> {
    /// Checks the signature with `key` (a public key chosen for the header's
    /// `alg` and `kid`, or the HMAC secret), then decodes the payload: the
    /// claims' JSON text, not yet parsed or checked.
    pub(crate) fn verify(&self, key: KeyRef<'_>) -> Result<String, Reject> {
        // Room for base64's decoded-length estimate, which rounds up.
        let mut buf = [0u8; MAX_SIGNATURE_BYTES + 3];
        let sig = decode_signature(self.signature, &mut buf)?;
        let msg = self.signing_input.as_bytes();
        let alg = self.header.alg;
        let ok = match key {
            KeyRef::Hmac(keys) => hmac::verify(keys.key(alg)?, msg, sig).is_ok(),
            KeyRef::Public(key) => key.verify(alg, msg, sig)?,
        };
        if !ok {
            return Err(BAD_SIGNATURE);
        }
        let json = URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| MALFORMED)?;
        String::from_utf8(json).map_err(|_| MALFORMED)
    }
}

/// The signature's bytes, in `buf`. Longer than any key's signature: it
/// cannot verify.
fn decode_signature<'b>(text: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Reject> {
    if text.len() > (MAX_SIGNATURE_BYTES * 4).div_ceil(3) {
        return Err(BAD_SIGNATURE);
    }
    let n = URL_SAFE_NO_PAD
        .decode_slice(text, buf)
        .map_err(|_| MALFORMED)?;
    Ok(&buf[..n])
}

/// The key a token is checked with.
#[derive(Clone, Copy)]
pub(crate) enum KeyRef<'k> {
    /// HS*: the configured secret.
    Hmac(&'k HmacKeys),
    /// Every other alg: one public key.
    Public(&'k SigKey),
}

/// The HMAC secret, keyed once for each hash (ring precomputes the inner
/// and outer pads).
pub(crate) struct HmacKeys {
    hs256: hmac::Key,
    hs384: hmac::Key,
    hs512: hmac::Key,
}

impl HmacKeys {
    /// Keys `secret` (not empty: config validation refuses that) for
    /// HS256, HS384 and HS512.
    pub(crate) fn new(secret: &[u8]) -> HmacKeys {
        HmacKeys {
            hs256: hmac::Key::new(hmac::HMAC_SHA256, secret),
            hs384: hmac::Key::new(hmac::HMAC_SHA384, secret),
            hs512: hmac::Key::new(hmac::HMAC_SHA512, secret),
        }
    }

    fn key(&self, alg: Algorithm) -> Result<&hmac::Key, Reject> {
        match alg {
            Algorithm::HS256 => Ok(&self.hs256),
            Algorithm::HS384 => Ok(&self.hs384),
            Algorithm::HS512 => Ok(&self.hs512),
            _ => Err(ALG_KEY_MISMATCH),
        }
    }
}

/// A public key in the form it is verified with, checked at load.
pub(crate) enum SigKey {
    /// An RSA key (modulus 2048 to 8192 bits), parsed once for each of
    /// the six RSA algorithms.
    Rsa(Box<RsaKey>),
    /// An uncompressed SEC1 point on P-256.
    EcP256(Box<[u8]>),
    /// An uncompressed SEC1 point on P-384.
    EcP384(Box<[u8]>),
    /// A 32-byte Ed25519 public key.
    Ed25519(Box<[u8]>),
}

impl SigKey {
    /// An RSA key from its modulus and exponent (big-endian), or why it is
    /// refused: RFC 7518 §3.3 asks for 2048 bits at least; 8192 is the
    /// most `ring` verifies.
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<SigKey, String> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = n
            .first()
            .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) {
            return Err(format!(
                "RSA modulus of {bits} bits; 2048 to 8192 bits are accepted"
            ));
        }
        // ring's range: odd, 3 to 2^33 - 1.
        let value = e.iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
        if e.len() > 5 || value % 2 == 0 || !(3..1 << 33).contains(&value) {
            return Err("RSA public exponent is not an odd number from 3 to 2^33-1".to_string());
        }
        RsaKey::new(n, e).map(|key| SigKey::Rsa(Box::new(key)))
    }

    /// Whether the signature of `msg` verifies; `Err` when this key cannot
    /// verify `alg` at all (key selection rules that out beforehand).
    fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> Result<bool, Reject> {
        use Algorithm::*;
        let ok = match self {
            SigKey::Rsa(key) => key
                .for_alg(alg)
                .ok_or(ALG_KEY_MISMATCH)?
                .verify_sig(msg, sig)
                .is_ok(),
            SigKey::EcP256(point) if alg == ES256 => {
                unparsed(&signature::ECDSA_P256_SHA256_FIXED, point, msg, sig)
            }
            SigKey::EcP384(point) if alg == ES384 => {
                unparsed(&signature::ECDSA_P384_SHA384_FIXED, point, msg, sig)
            }
            SigKey::Ed25519(key) if alg == EdDSA => unparsed(&signature::ED25519, key, msg, sig),
            _ => return Err(ALG_KEY_MISMATCH),
        };
        Ok(ok)
    }
}

/// An RSA public key as `aws-lc-rs` verifies it: parsed once per
/// algorithm at load, so a verification is the public-key operation alone.
/// `ring` (used for every other key) re-parses an RSA key and recomputes
/// its Montgomery constants on every verification, which made RS256 1.3-1.5x
/// `openssl speed rsa2048`'s verify time; parsed once, it is 1.1-1.2x
/// (docs/benchmarks.md, "First-sight verification").
pub(crate) struct RsaKey {
    /// RS256, RS384, RS512, PS256, PS384, PS512, in that order.
    parsed: [aws_lc_rs::signature::ParsedPublicKey; 6],
}

impl RsaKey {
    /// `n` and `e` big-endian without leading zeros, already range-checked.
    fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, String> {
        use aws_lc_rs::signature as lc;
        let components = lc::RsaPublicKeyComponents { n, e };
        let parse = |params: &'static lc::RsaParameters| {
            components
                .to_parsed_public_key(params)
                .map_err(|e| format!("RSA public key refused: {e}"))
        };
        Ok(RsaKey {
            parsed: [
                parse(&lc::RSA_PKCS1_2048_8192_SHA256)?,
                parse(&lc::RSA_PKCS1_2048_8192_SHA384)?,
                parse(&lc::RSA_PKCS1_2048_8192_SHA512)?,
                parse(&lc::RSA_PSS_2048_8192_SHA256)?,
                parse(&lc::RSA_PSS_2048_8192_SHA384)?,
                parse(&lc::RSA_PSS_2048_8192_SHA512)?,
            ],
        })
    }

    /// The key parsed for `alg`; `None` for an algorithm that is not RSA.
    fn for_alg(&self, alg: Algorithm) -> Option<&aws_lc_rs::signature::ParsedPublicKey> {
        use Algorithm::*;
        let i = match alg {
            RS256 => 0,
            RS384 => 1,
            RS512 => 2,
            PS256 => 3,
            PS384 => 4,
            PS512 => 5,
            _ => return None,
        };
        self.parsed.get(i)
    }
}

fn unparsed(
    alg: &'static dyn signature::VerificationAlgorithm,
    key: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> bool {
    signature::UnparsedPublicKey::new(alg, key)
        .verify(msg, sig)
        .is_ok()
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
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

    fn header(t: &str) -> Result<TokenHeader, Reject> {
        parse(t, ALL).map(|t| t.header)
    }

    #[test]
    fn header_alg_and_kid_are_read() {
        let t = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        assert_eq!(
            header(&t),
            Ok(TokenHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            })
        );
        // A header too long for the stack buffer.
        let kid = "k".repeat(400);
        let t = token(&format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#));
        assert_eq!(header(&t).map(|h| h.kid), Ok(Some(kid)));
        // Escapes in a string: owned, same value.
        let t = token(r#"{"alg":"RS\u0032\u00356","kid":"k\/1"}"#);
        assert_eq!(
            header(&t),
            Ok(TokenHeader {
                alg: Algorithm::RS256,
                kid: Some("k/1".into())
            })
        );
    }

    #[test]
    fn none_and_unlisted_algorithms_are_refused() {
        for alg in ["none", "None", "NONE", "RS512", "HS384", "ES256K", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#));
            assert_eq!(header(&t), Err(ALG_NOT_ALLOWED), "{alg}");
        }
        // An unsigned token as RFC 7519 §6.1 shows it: empty signature.
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":1}"#));
        assert_eq!(header(&unsigned), Err(ALG_NOT_ALLOWED));
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
            format!("{}.{good_payload}.sig", b64(r#"{"alg":"HS256","typ":1}"#)),
        ] {
            assert_eq!(header(&t), Err(MALFORMED), "{t:?}");
        }
    }

    /// The critical-extension rules `jsonwebtoken` applied before
    /// verification moved here: only `b64`, only `true`.
    #[test]
    fn critical_extensions_are_refused() {
        for h in [
            r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"HS256","b64":false}"#,
            r#"{"alg":"HS256","b64":"yes"}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":["b64"]}"#,
            r#"{"alg":"HS256","b64":true,"crit":["b64","b64"]}"#,
        ] {
            assert_eq!(header(&token(h)), Err(MALFORMED), "{h}");
        }
        let ok = r#"{"alg":"HS256","b64":true,"crit":["b64"]}"#;
        assert!(header(&token(ok)).is_ok());
    }

    #[test]
    fn key_of_another_family_is_a_mismatch() {
        let hmac = HmacKeys::new(b"0123456789abcdef0123456789abcdef");
        let t = token(r#"{"alg":"RS256"}"#);
        let parsed = parse(&t, ALL).expect("parses");
        assert_eq!(
            parsed.verify(KeyRef::Hmac(&hmac)).err(),
            Some(ALG_KEY_MISMATCH)
        );
        let ed = SigKey::Ed25519(vec![0; 32].into());
        assert_eq!(
            parsed.verify(KeyRef::Public(&ed)).err(),
            Some(ALG_KEY_MISMATCH)
        );
    }

    #[test]
    fn overlong_signatures_fail_without_decoding() {
        let hmac = HmacKeys::new(b"secret");
        let long = "A".repeat(2000);
        let t = format!("{}.{}.{long}", b64(r#"{"alg":"HS256"}"#), b64("{}"));
        let parsed = parse(&t, ALL).expect("parses");
        assert_eq!(
            parsed.verify(KeyRef::Hmac(&hmac)).err(),
            Some(BAD_SIGNATURE)
        );
        // The longest signature (RSA-8192, 1024 bytes) decodes: it is
        // checked, not called malformed.
        let longest = "A".repeat(1366);
        let t = format!("{}.{}.{longest}", b64(r#"{"alg":"HS256"}"#), b64("{}"));
        let parsed = parse(&t, ALL).expect("parses");
        assert_eq!(
            parsed.verify(KeyRef::Hmac(&hmac)).err(),
            Some(BAD_SIGNATURE)
        );
    }

    #[test]
    fn rsa_keys_outside_the_accepted_sizes_are_refused() {
        let n2048 = [&[0u8][..], &[0xc5; 256]].concat();
        assert!(
            SigKey::rsa(&n2048, &[1, 0, 1]).is_ok(),
            "leading zero dropped"
        );
        let err = SigKey::rsa(&[0xc5; 128], &[1, 0, 1])
            .err()
            .unwrap_or_default();
        assert!(err.contains("1024 bits"), "{err}");
        assert!(SigKey::rsa(&[0xc5; 1025], &[1, 0, 1]).is_err());
        for e in [&[][..], &[1], &[2], &[1, 0, 0], &[2, 0, 0, 0, 1]] {
            assert!(SigKey::rsa(&n2048, e).is_err(), "{e:?}");
        }
        assert!(SigKey::rsa(&n2048, &[3]).is_ok());
    }
}
