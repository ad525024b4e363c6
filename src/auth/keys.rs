//! Public verification keys: loading them from a PEM file or a JWKS document,
//! and choosing the one that verifies a given token (`kid` + `alg`).
//!
//! Every key knows its [`KeyKind`], and a kind verifies only its own
//! algorithms: an RSA key never checks an `ES256` signature, a P-384 key never
//! an `ES256` one, and no public key ever serves as an HMAC secret (HMAC tokens
//! are checked with the configured secret alone, see `verify.rs`).
//!
//! `jsonwebtoken` parses the PEM and JWK forms; each key is then held as the
//! [`SigKey`] that `ring` verifies with, checked once here (an RSA modulus
//! under 2048 bits is refused at load, not on every request).

use super::verify::SigKey;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What a public key is; decides which algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// RSA: RS256/384/512 and PS256/384/512.
    Rsa,
    /// EC on P-256: ES256.
    EcP256,
    /// EC on P-384: ES384.
    EcP384,
    /// Ed25519: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind may verify `alg`.
    pub(crate) fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// One public key, ready to verify.
pub(crate) struct PublicKey {
    /// `None` for a PEM key: it serves every `kid`.
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) kind: KeyKind,
    pub(crate) key: SigKey,
}

impl PublicKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// Why no key could be chosen for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyMiss {
    /// The token's `kid` names no key in the set (a refetch may help).
    UnknownKid,
    /// Keys exist for this `kid` (or, without `kid`, at all) but none of them
    /// verifies the token's `alg`.
    AlgMismatch,
    /// No `kid`, and more than one key could verify the token.
    Ambiguous,
}

/// An immutable set of public keys; replaced whole when a JWKS is refetched.
pub(crate) struct KeySet {
    keys: Vec<Arc<PublicKey>>,
    /// SHA-256 of the document the set was built from: tells a refetch that
    /// changed nothing from one that rotated keys.
    digest: [u8; 32],
}

impl KeySet {
    /// A set without keys (no asymmetric algorithm configured).
    pub(crate) fn empty() -> Self {
        KeySet {
            keys: Vec::new(),
            digest: [0; 32],
        }
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The digest of the source document.
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Loads one public key from PEM (`BEGIN PUBLIC KEY` or
    /// `BEGIN RSA PUBLIC KEY`): RSA, EC P-256/P-384 or Ed25519.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<KeySet, String> {
        if pem.windows(7).any(|w| w == b"PRIVATE") {
            return Err("holds a private key; give the public key \
                 (`openssl pkey -in key.pem -pubout`)"
                .to_string());
        }
        let (kind, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (KeyKind::Rsa, rsa_key(&key)?)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            ec_key(key.try_get_as_bytes().unwrap_or_default())
                .ok_or("is an EC key on a curve other than P-256 or P-384")?
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            match key.try_get_as_bytes() {
                Ok(bytes) if bytes.len() == 32 => (KeyKind::Ed25519, SigKey::Ed25519(bytes.into())),
                _ => return Err("is not an Ed25519 public key".to_string()),
            }
        } else {
            return Err("is not a PEM RSA, EC (P-256/P-384) or Ed25519 public key".to_string());
        };
        Ok(KeySet {
            keys: vec![Arc::new(PublicKey {
                kid: None,
                alg: None,
                kind,
                key,
            })],
            digest: Sha256::digest(pem).into(),
        })
    }

    /// Parses a JWKS document (RFC 7517). Keys that cannot verify signatures
    /// (`use` other than `sig`, symmetric `oct` keys, unknown types, curves or
    /// algorithms, malformed members) are skipped and reported in the second
    /// value; a document without any usable key is an error.
    pub(crate) fn from_jwks(json: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| format!("is not valid JSON: {e}"))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("is not a JWKS: no \"keys\" array".to_string());
        };
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match jwk(entry) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "holds no usable signature key ({})",
                if skipped.is_empty() {
                    "the key list is empty".to_string()
                } else {
                    skipped.join("; ")
                }
            ));
        }
        let set = KeySet {
            keys,
            digest: Sha256::digest(json).into(),
        };
        Ok((set, skipped))
    }

    /// The key that verifies a token signed with `alg` carrying `kid`.
    ///
    /// With a `kid`: the first key of that id (or a key without id, as a PEM
    /// key is) that accepts `alg`. Without: the only key that accepts `alg`;
    /// if several do, the token must say which.
    pub(crate) fn select(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<&Arc<PublicKey>, KeyMiss> {
        match kid {
            Some(kid) => {
                let mut named = false;
                for key in &self.keys {
                    if key.kid.as_deref().is_none_or(|k| k == kid) {
                        named = true;
                        if key.accepts(alg) {
                            return Ok(key);
                        }
                    }
                }
                Err(if named {
                    KeyMiss::AlgMismatch
                } else {
                    KeyMiss::UnknownKid
                })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    (Some(_), Some(_)) => Err(KeyMiss::Ambiguous),
                    (None, _) => Err(KeyMiss::AlgMismatch),
                }
            }
        }
    }

    /// Whether some key carries this `kid` (whatever its kind).
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// An uncompressed SEC1 point and its curve, told by its length.
fn ec_key(point: &[u8]) -> Option<(KeyKind, SigKey)> {
    match (point.first(), point.len()) {
        (Some(4), 65) => Some((KeyKind::EcP256, SigKey::EcP256(point.into()))),
        (Some(4), 97) => Some((KeyKind::EcP384, SigKey::EcP384(point.into()))),
        _ => None,
    }
}

/// An RSA key as `ring` takes it: modulus and exponent, from the PKCS#1
/// DER of a PEM key or from a JWK's `n` and `e`.
fn rsa_key(key: &DecodingKey) -> Result<SigKey, String> {
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => SigKey::rsa(n, e),
        DecodingKeyKind::SecretOrDer(der) => {
            let provider = jsonwebtoken::crypto::CryptoProvider::try_get_default()
                .ok_or("no RSA key parser in this build")?;
            let (n, e) = (provider.key_utils.rsa_pub_components_from_public_key)(der)
                .map_err(|e| format!("is not an RSA public key: {e}"))?;
            SigKey::rsa(&n, &e)
        }
    }
}

/// One JWK to a verification key, or why it is not one.
fn jwk(entry: &Value) -> Result<PublicKey, String> {
    let member = |name: &str| entry.get(name).and_then(Value::as_str);
    if let Some(usage) = member("use") {
        if usage != "sig" {
            return Err(format!("use {usage:?} is not \"sig\""));
        }
    }
    let alg = match member("alg") {
        None => None,
        Some(name) => Some(
            crate::config::parse_algorithm(name)
                .ok_or_else(|| format!("alg {name:?} is not a supported signature algorithm"))?,
        ),
    };
    if alg.is_some_and(crate::config::is_hmac) {
        return Err("symmetric keys are not taken from a JWKS".to_string());
    }
    let kid = match entry.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string".to_string()),
    };
    let required = |name: &str| member(name).ok_or_else(|| format!("{name:?} is missing"));
    let bad = |e: jsonwebtoken::errors::Error| format!("bad key material: {e}");
    let (kind, key) = match member("kty") {
        Some("RSA") => {
            let key =
                DecodingKey::from_rsa_components(required("n")?, required("e")?).map_err(bad)?;
            (KeyKind::Rsa, rsa_key(&key)?)
        }
        Some("EC") => {
            let kind = match member("crv") {
                Some("P-256") => KeyKind::EcP256,
                Some("P-384") => KeyKind::EcP384,
                other => return Err(format!("EC curve {other:?} is not P-256 or P-384")),
            };
            let key =
                DecodingKey::from_ec_components(required("x")?, required("y")?).map_err(bad)?;
            match key.try_get_as_bytes().ok().and_then(ec_key) {
                Some((of_point, key)) if of_point == kind => (kind, key),
                _ => return Err("EC coordinates have the wrong length for the curve".to_string()),
            }
        }
        Some("OKP") => {
            if member("crv") != Some("Ed25519") {
                return Err("OKP curve is not Ed25519".to_string());
            }
            let key = DecodingKey::from_ed_components(required("x")?).map_err(bad)?;
            match key.try_get_as_bytes() {
                Ok(bytes) if bytes.len() == 32 => (KeyKind::Ed25519, SigKey::Ed25519(bytes.into())),
                _ => return Err("Ed25519 key is not 32 bytes".to_string()),
            }
        }
        Some("oct") => return Err("symmetric keys are not taken from a JWKS".to_string()),
        other => return Err(format!("key type {other:?} is not supported")),
    };
    if alg.is_some_and(|a| !kind.accepts(a)) {
        return Err("alg does not fit the key type".to_string());
    }
    Ok(PublicKey {
        kid,
        alg,
        kind,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).expect("fixture key")
    }

    #[test]
    fn pem_keys_get_their_kind() {
        for (file, kind) in [
            ("rsa.pub.pem", KeyKind::Rsa),
            ("ec256.pub.pem", KeyKind::EcP256),
            ("ec384.pub.pem", KeyKind::EcP384),
            ("ed25519.pub.pem", KeyKind::Ed25519),
        ] {
            let set = KeySet::from_pem(&fixture(file)).expect(file);
            assert_eq!(set.len(), 1);
            assert_eq!(set.keys[0].kind, kind, "{file}");
        }
    }

    #[test]
    fn private_and_garbage_pem_are_refused() {
        let err = KeySet::from_pem(&fixture("rsa.pem"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("private key"), "{err}");
        assert!(KeySet::from_pem(b"not a key").is_err());
    }

    #[test]
    fn jwks_fixture_loads_every_key() {
        let (set, skipped) = KeySet::from_jwks(&fixture("jwks.json")).expect("jwks");
        assert_eq!(set.len(), 4);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert!(set.has_kid("ed-1"));
    }

    #[test]
    fn unusable_jwks_entries_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB","kid":"e"},
            {"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"},
            {"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"short"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}
        ]}"#;
        let (set, skipped) = KeySet::from_jwks(doc).expect("one usable key");
        assert_eq!(set.len(), 1);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(KeySet::from_jwks(br#"{"keys":[]}"#).is_err());
        assert!(KeySet::from_jwks(b"[]").is_err());
        assert!(KeySet::from_jwks(b"{").is_err());
    }

    #[test]
    fn selection_by_kid_and_alg() {
        let (set, _) = KeySet::from_jwks(&fixture("jwks.json")).expect("jwks");
        let pick = |alg, kid| set.select(alg, kid).map(|k| k.kind);
        assert_eq!(pick(Algorithm::RS256, Some("rsa-1")), Ok(KeyKind::Rsa));
        assert_eq!(pick(Algorithm::PS512, Some("rsa-1")), Ok(KeyKind::Rsa));
        assert_eq!(pick(Algorithm::ES384, Some("ec384-1")), Ok(KeyKind::EcP384));
        // The kid exists, but its key cannot verify this algorithm.
        assert_eq!(
            pick(Algorithm::ES256, Some("ec384-1")),
            Err(KeyMiss::AlgMismatch)
        );
        assert_eq!(
            pick(Algorithm::RS256, Some("ed-1")),
            Err(KeyMiss::AlgMismatch)
        );
        assert_eq!(
            pick(Algorithm::RS256, Some("nope")),
            Err(KeyMiss::UnknownKid)
        );
        // Without kid: the one key that fits.
        assert_eq!(pick(Algorithm::EdDSA, None), Ok(KeyKind::Ed25519));
    }

    #[test]
    fn pem_key_serves_any_kid_but_only_its_algorithms() {
        let set = KeySet::from_pem(&fixture("ec256.pub.pem")).expect("pem");
        assert!(set.select(Algorithm::ES256, Some("whatever")).is_ok());
        assert!(set.select(Algorithm::ES256, None).is_ok());
        assert_eq!(
            set.select(Algorithm::ES384, None).err(),
            Some(KeyMiss::AlgMismatch)
        );
    }

    #[test]
    fn ambiguous_without_kid() {
        let doc = fixture("jwks.json");
        let text = String::from_utf8(doc).expect("utf8");
        // Two RSA keys: a kid-less RS256 token cannot say which.
        let v: Value = serde_json::from_str(&text).expect("json");
        let rsa = v["keys"][0].clone();
        let mut other = rsa.clone();
        other["kid"] = Value::from("rsa-x");
        let both = serde_json::json!({"keys": [rsa, other]}).to_string();
        let (set, _) = KeySet::from_jwks(both.as_bytes()).expect("jwks");
        assert_eq!(
            set.select(Algorithm::RS256, None).err(),
            Some(KeyMiss::Ambiguous)
        );
    }

    #[test]
    fn jwk_alg_pins_the_algorithm() {
        let doc = fixture("jwks.json");
        let mut v: Value = serde_json::from_slice(&doc).expect("json");
        v["keys"][0]["alg"] = Value::from("PS256");
        let (set, _) = KeySet::from_jwks(v.to_string().as_bytes()).expect("jwks");
        assert!(set.select(Algorithm::PS256, Some("rsa-1")).is_ok());
        assert_eq!(
            set.select(Algorithm::RS256, Some("rsa-1")).err(),
            Some(KeyMiss::AlgMismatch)
        );
    }
}
