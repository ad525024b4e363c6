//! The key a revocation is stored under.
//!
//! A token's revocation key is its `jti` when present, else the SHA-256 of
//! its JWS signing input (`header.payload`, the first two segments). Not the
//! whole token: a signature can be re-encoded without the key (ECDSA's
//! `(r, n-s)` verifies as well as `(r, s)`), and the holder of a revoked
//! token must not be able to make it new. In memory and on disk we keep a
//! 128-bit digest of that key (SHA-256, truncated, with a domain tag so the
//! kinds can never collide): 16 bytes per entry whatever the length of the
//! `jti`, and collision-resistant far beyond any blocklist's size.
//!
//! A revoked session (`sid`) is a key of its own kind (tag `sid\0`) in the
//! same table: it is persisted, replicated, written back and expired exactly
//! as a revoked `jti` is, and checked through the same Bloom filter, so a
//! request whose `sid` was never revoked costs one filter probe.
//!
//! Builds before this one keyed a token without `jti` by the SHA-256 of the
//! whole token (tag `tok\0`). That key cannot be turned into the new one
//! without the token, so stored entries are not migrated: [`TokenKeys`]
//! carries both, computed once at verification, and the blocklist checks
//! the legacy one while such entries may still matter (see
//! `Revocations`' legacy window).

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

    /// The key of a revoked session: every token whose `sid` claim is `sid`
    /// is refused while it lives. Its own domain tag, so a session can never
    /// collide with a `jti` or a token key of the same text.
    pub fn from_sid(sid: &str) -> Self {
        Self::digest(b"sid\0", sid.as_bytes())
    }

    /// The key of a token without `jti`: derived from its signing input,
    /// `header.payload` (everything before the last `.`), so any encoding of
    /// its signature gives the same key.
    pub fn from_signing_input(token: &str) -> Self {
        let signing_input = token.rsplit_once('.').map_or(token, |(si, _)| si);
        Self::digest(b"jws\0", signing_input.as_bytes())
    }

    /// The key earlier builds gave a token without `jti`: derived from the
    /// whole token, signature included.
    pub fn legacy_from_token(token: &str) -> Self {
        Self::digest(b"tok\0", token.as_bytes())
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

/// The keys a verified token is revoked under, computed once at
/// verification and kept with its claims (also in the verified-token cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenKeys {
    /// Where a revocation of this token is recorded: its `jti`, else its
    /// signing input.
    pub key: RevocationKey,
    /// For a token without `jti`: the key earlier builds recorded it under
    /// (the whole token), still checked during the legacy window.
    pub legacy: Option<RevocationKey>,
}

impl TokenKeys {
    /// The keys of `token`, whose claims carry `jti` (or not).
    pub fn for_token(jti: Option<&str>, token: &str) -> Self {
        match jti {
            Some(j) => TokenKeys {
                key: RevocationKey::from_jti(j),
                legacy: None,
            },
            None => TokenKeys {
                key: RevocationKey::from_signing_input(token),
                legacy: Some(RevocationKey::legacy_from_token(token)),
            },
        }
    }
}

impl From<RevocationKey> for TokenKeys {
    /// The keys of a token revoked under `key` alone (a `jti`).
    fn from(key: RevocationKey) -> Self {
        TokenKeys { key, legacy: None }
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
        assert_ne!(
            RevocationKey::from_jti("x"),
            RevocationKey::legacy_from_token("x")
        );
        assert_ne!(
            RevocationKey::from_jti("x"),
            RevocationKey::from_signing_input("x")
        );
        assert_ne!(RevocationKey::from_sid("x"), RevocationKey::from_jti("x"));
        assert_ne!(
            RevocationKey::from_sid("x"),
            RevocationKey::from_signing_input("x")
        );
        let k = RevocationKey::from_jti("abc");
        assert_eq!(RevocationKey::from_bytes(k.to_bytes()), k);
    }

    /// A token without `jti` is keyed by `header.payload`: re-encoding its
    /// signature gives the same key; another payload does not.
    #[test]
    fn key_ignores_the_signature_encoding() {
        let a = TokenKeys::for_token(None, "aGVhZA.cGF5bG9hZA.c2lnMQ");
        let b = TokenKeys::for_token(None, "aGVhZA.cGF5bG9hZA.c2lnMg");
        let c = TokenKeys::for_token(None, "aGVhZA.cGF5bG9hZB.c2lnMQ");
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        // The legacy key is the old whole-token digest, signature included.
        assert_ne!(a.legacy, b.legacy);
        assert_eq!(
            a.legacy,
            Some(RevocationKey::legacy_from_token("aGVhZA.cGF5bG9hZA.c2lnMQ"))
        );
        // With a jti, only the jti counts.
        let j = TokenKeys::for_token(Some("j1"), "aGVhZA.cGF5bG9hZA.c2lnMQ");
        assert_eq!(j.key, RevocationKey::from_jti("j1"));
        assert_eq!(j.legacy, None);
    }

    #[test]
    fn fingerprint_is_12_hex_digits() {
        let f = token_fingerprint("eyJhbGciOi.x.y");
        assert_eq!(f.len(), 12);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
