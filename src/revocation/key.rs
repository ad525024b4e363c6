//! The key a revocation is stored under.
//!
//! SPEC: a token's revocation key is its `jti` when present, else the SHA-256
//! of the whole token. In memory and on disk we keep a 128-bit digest of that
//! key (SHA-256, truncated, with a domain tag so a `jti` can never collide
//! with a token hash): 16 bytes per entry whatever the length of the `jti`,
//! and collision-resistant far beyond any blocklist's size.

use sha2::{Digest, Sha256};
use std::fmt;

/// A compact, fixed-size revocation key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevocationKey(pub u128);

impl RevocationKey {
    /// The key of a token that carries a `jti`.
    pub fn from_jti(jti: &str) -> Self {
        Self::digest(b"jti\0", jti.as_bytes())
    }

    /// The key of a token without `jti`: derived from the whole token.
    pub fn from_token(token: &str) -> Self {
        Self::digest(b"tok\0", token.as_bytes())
    }

    /// `from_jti` when there is one, else `from_token`.
    pub fn for_token(jti: Option<&str>, token: &str) -> Self {
        match jti {
            Some(j) => Self::from_jti(j),
            None => Self::from_token(token),
        }
    }

    /// The key's 16 bytes, big-endian (the on-disk and wire form).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Inverse of [`RevocationKey::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RevocationKey(u128::from_be_bytes(bytes))
    }

    fn digest(tag: &[u8], input: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(tag);
        h.update(input);
        let out = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&out[..16]);
        RevocationKey(u128::from_be_bytes(first))
    }
}

impl fmt::Debug for RevocationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RevocationKey({:032x})", self.0)
    }
}

impl fmt::Display for RevocationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// First 12 hex digits of the token's SHA-256: how a token without `jti`
/// appears in logs (never the token itself).
pub fn token_fingerprint(token: &str) -> String {
    let out = Sha256::digest(token.as_bytes());
    out[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_and_token_keys_are_distinct_and_stable() {
        assert_eq!(RevocationKey::from_jti("a"), RevocationKey::from_jti("a"));
        assert_ne!(RevocationKey::from_jti("a"), RevocationKey::from_jti("b"));
        assert_ne!(RevocationKey::from_jti("x"), RevocationKey::from_token("x"));
        let k = RevocationKey::from_jti("abc");
        assert_eq!(RevocationKey::from_bytes(k.to_bytes()), k);
    }

    #[test]
    fn fingerprint_is_12_hex_digits() {
        let f = token_fingerprint("eyJhbGciOi.x.y");
        assert_eq!(f.len(), 12);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
