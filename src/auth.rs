//! Bearer tokens: finding them in a request and verifying them.
//!
//! [`Authenticator`] is built once from `[jwt]` (keys loaded and prepared
//! for `ring` and `aws-lc-rs`) and shared by every request. Verification, in this order: structure and base64, `alg` in the
//! allow-list, key by `kid`, signature, `exp`, `nbf`, `iss`, `aud`. Revocation
//! comes after, in the gateway.
//!
//! | file | job |
//! |---|---|
//! | `extract.rs` | the token sources (`Authorization`, other headers, cookie, query) |
//! | `verify.rs` | token shape, header `alg`, the signature check (`aws-lc-rs` for RSA, `ring` for the rest), the payload |
//! | `keys.rs` | public keys from PEM or JWKS, and choosing one by `kid` and `alg` |
//! | `jwks.rs` | `jwks_url`: fetch, background refresh, rate-limited refetch |
//! | `claims.rs` | [`Claims`] and the time, issuer and audience checks |
//! | `cache.rs` | the verified-token cache |
//! | `mint.rs` | `revgate mint` |
//!
//! Locks: the only ones are in `jwks.rs` (the current key set of a
//! `jwks_url`, and its fetch bookkeeping); both are `std` locks held for a
//! pointer copy or a flag, never across I/O. The token cache is moka's.
//!
//! A token is never logged whole: log its `jti` or
//! [`crate::revocation::token_fingerprint`].

mod cache;
mod claims;
pub(crate) mod extract;
mod jwks;
mod keys;
mod mint;
#[cfg(test)]
mod tests;
mod verify;

pub use claims::{Claims, RawClaims};
pub use extract::{Credential, MAX_SOURCES};
pub use jwks::{
    JWKS_FETCH_TIMEOUT, JWKS_MAX_BYTES, JWKS_MIN_REFETCH_INTERVAL, JWKS_REFRESH_INTERVAL,
};
pub use mint::{mint, parse_claim, MintError, MintRequest, DEFAULT_MINT_TTL};

use crate::config::{is_hmac, Algorithm, ConfigError, JwtConfig, TokenSource};
use crate::response::Reject;
use crate::revocation::{Clock, SystemClock};
use cache::{CacheBounds, TokenCache};
use claims::ClaimPolicy;
use hyper::header::HeaderMap;
use hyper::Uri;
use jwks::{JwksTiming, RemoteJwks};
use keys::{KeyMiss, KeySet, PublicKey};
use std::borrow::Cow;
use std::sync::Arc;
pub(crate) use verify::MALFORMED as MALFORMED_TOKEN;
use verify::{HmacKeys, KeyRef, TokenHeader, ALG_KEY_MISMATCH};

/// Extracts and verifies bearer tokens; built once, shared by all requests.
pub struct Authenticator {
    sources: Vec<TokenSource>,
    algorithms: Vec<Algorithm>,
    /// The HMAC secret: the only key HS* tokens are ever checked with.
    hmac: Option<HmacKeys>,
    /// The public keys: the only keys the other algorithms are checked with.
    keys: PublicKeys,
    policy: ClaimPolicy,
    cache: Option<TokenCache>,
    /// Some route forwards claims: build each token's claims map at
    /// verification, before the cache weighs the entry.
    claim_map: bool,
}

/// Where the public keys come from.
enum PublicKeys {
    /// `public_key_file`, `jwks_file`, or none: loaded once.
    Fixed(Arc<KeySet>),
    /// `jwks_url`: refreshed while running.
    Remote(Arc<RemoteJwks>),
}

impl PublicKeys {
    fn current(&self) -> Arc<KeySet> {
        match self {
            PublicKeys::Fixed(set) => Arc::clone(set),
            PublicKeys::Remote(remote) => remote.current(),
        }
    }
}

impl Authenticator {
    /// Loads the keys (HMAC secret; PEM public key — RSA, EC P-256/P-384 or
    /// Ed25519; JWKS file; or JWKS URL, fetched now), builds one validation
    /// per allowed algorithm, and starts the JWKS refresh task when
    /// `jwks_url` is set (it needs a Tokio runtime). A key that cannot be
    /// loaded is a [`ConfigError`] naming its key, e.g.
    /// `jwt.public_key_file: ...`.
    pub async fn new(cfg: &JwtConfig) -> Result<Arc<Authenticator>, ConfigError> {
        Self::with_timing(cfg, JwksTiming::default()).await
    }

    pub(crate) async fn with_timing(
        cfg: &JwtConfig,
        timing: JwksTiming,
    ) -> Result<Arc<Authenticator>, ConfigError> {
        let leeway = cfg.leeway.as_secs();
        let bounds = CacheBounds {
            capacity: cfg.cache_capacity,
            max_bytes: cfg.cache_max_bytes,
            max_token_bytes: cfg.cache_max_token_bytes,
        };
        let cache = TokenCache::new(bounds, leeway);
        let hmac = match &cfg.hmac_secret {
            Some(secret) if secret.expose().is_empty() => {
                return Err(ConfigError::invalid("jwt.hmac_secret", "is empty"))
            }
            Some(secret) => Some(HmacKeys::new(secret.expose())),
            None => None,
        };
        let keys = if let Some(path) = &cfg.public_key_file {
            let key = "jwt.public_key_file";
            let pem = read(key, path)?;
            let set = KeySet::from_pem(&pem)
                .map_err(|m| ConfigError::invalid(key, format!("{}: {m}", path.display())))?;
            PublicKeys::Fixed(Arc::new(set))
        } else if let Some(path) = &cfg.jwks_file {
            let key = "jwt.jwks_file";
            let json = read(key, path)?;
            let (set, skipped) = KeySet::from_jwks(&json)
                .map_err(|m| ConfigError::invalid(key, format!("{}: {m}", path.display())))?;
            for why in skipped {
                tracing::warn!(file = %path.display(), "jwt.jwks_file: key skipped: {why}");
            }
            PublicKeys::Fixed(Arc::new(set))
        } else if let Some(url) = &cfg.jwks_url {
            let remote = RemoteJwks::start(url.clone(), timing, cache.clone())
                .await
                .map_err(|m| ConfigError::invalid("jwt.jwks_url", format!("{url}: {m}")))?;
            PublicKeys::Remote(remote)
        } else {
            PublicKeys::Fixed(Arc::new(KeySet::empty()))
        };
        Ok(Arc::new(Authenticator {
            sources: cfg.sources.clone(),
            algorithms: cfg.algorithms.clone(),
            hmac,
            keys,
            policy: ClaimPolicy {
                time: crate::revocation::Policy::from_config(Some(cfg)),
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
            },
            cache,
            claim_map: cfg.forward_claims,
        }))
    }

    /// The request's one token ([`Authenticator::credential`]); `Ok(None)`
    /// when no source holds one.
    ///
    /// `Authorization` must be `Bearer <token>` (scheme case-insensitive,
    /// exactly one token, one header); another header may omit `Bearer `;
    /// `cookie:NAME` and `query:NAME` (percent-decoded) take the value as is,
    /// an empty one counting as absent. A malformed or repeated source, or
    /// different tokens in two sources, is `Err(Reject::InvalidRequest(..))`
    /// (400), never skipped.
    pub fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Option<Cow<'a, str>>, Reject> {
        Ok(self.credential(headers, uri)?.map(|c| c.token))
    }

    /// The request's one credential: the token, the source it came from
    /// and every source that held it. Different tokens in two sources are a
    /// 400 `invalid_request`.
    pub fn credential<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Option<Credential<'a>>, Reject> {
        extract::extract(&self.sources, headers, uri)
    }

    /// Removes every token source but `used` that held the credential
    /// (`present`, from [`Authenticator::credential`]) from the request
    /// sent upstream; the new target when the query changed.
    pub fn strip_unused_sources(
        &self,
        used: usize,
        present: u16,
        headers: &mut HeaderMap,
        uri: &Uri,
    ) -> Result<Option<Uri>, Reject> {
        extract::strip_unused(&self.sources, used, present, headers, uri)
    }

    /// Verifies `token` in this order: structure and base64, `alg` allowed
    /// (never `none`; an HMAC alg is checked with the HMAC secret only, other
    /// algs with the public keys only), key by `kid` (an unknown `kid` may
    /// trigger one shared, rate-limited JWKS refetch), signature, `exp`
    /// (required), `nbf`, `iat`, `iss`, `aud`, one leeway for all time claims.
    ///
    /// Any failure is `Reject::InvalidToken` (401) with a fixed description.
    /// Revocation is NOT checked here.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, Reject> {
        self.verify_at(token, SystemClock.now()).await
    }

    /// Whether a verified token is still unexpired now. The revocation
    /// check reads the clock after verification did: a request that
    /// straddles the second at which the token expires and its watermark
    /// (or revocation) leaves would pass both checks. Asked again after the
    /// revocation check, the token is refused as expired in that instant.
    pub fn still_unexpired(&self, claims: &Claims) -> Result<(), Reject> {
        if SystemClock.now() > claims.exp.saturating_add(self.policy.time.leeway) {
            return Err(Reject::InvalidToken("token expired"));
        }
        Ok(())
    }

    /// [`Authenticator::verify`] at a given time (UNIX seconds).
    pub(crate) async fn verify_at(&self, token: &str, now: u64) -> Result<Arc<Claims>, Reject> {
        if let Some(cache) = &self.cache {
            if let Some(claims) = cache.get(token, now) {
                return Ok(claims);
            }
        }
        let json = self.verify_payload(token).await?;
        let claims = Arc::new(Claims::check(json, token, &self.policy, now)?);
        if self.claim_map {
            claims.raw.map();
        }
        if let Some(cache) = &self.cache {
            cache.insert(token, &claims, now);
        }
        Ok(claims)
    }

    /// The first steps of [`Authenticator::verify`] only: structure, `alg`
    /// allowed, key by `kid`, signature; the claims as sent, none checked
    /// and nothing cached. For tokens that are not access tokens (logout
    /// tokens, Security Event Tokens), whose claims their receiver checks.
    pub(crate) async fn verify_signature(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Reject> {
        let json = self.verify_payload(token).await?;
        serde_json::from_str(&json).map_err(|_| MALFORMED_TOKEN)
    }

    /// Structure, `alg` allowed, key by `kid`, signature; then the payload's
    /// JSON text, not yet parsed.
    async fn verify_payload(&self, token: &str) -> Result<String, Reject> {
        let parsed = verify::parse(token, &self.algorithms)?;
        if is_hmac(parsed.header.alg) {
            parsed.verify(KeyRef::Hmac(self.hmac_key(&parsed.header)?))
        } else {
            let key = self.public_key(&parsed.header).await?;
            parsed.verify(KeyRef::Public(&key.key))
        }
    }

    /// `iss` every token verified here must carry, when configured.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.policy.issuer.as_deref()
    }

    /// The HMAC secret for an HS* token. A `kid` that names one of the
    /// public keys means the token wants an asymmetric key used as an HMAC
    /// secret: refused.
    fn hmac_key(&self, header: &TokenHeader) -> Result<&HmacKeys, Reject> {
        if let Some(kid) = &header.kid {
            if self.keys.current().has_kid(kid) {
                return Err(ALG_KEY_MISMATCH);
            }
        }
        self.hmac.as_ref().ok_or(ALG_KEY_MISMATCH)
    }

    /// The public key for an asymmetric token, refetching the JWKS once (as
    /// the rate limit allows) when the `kid` is unknown.
    async fn public_key(&self, header: &TokenHeader) -> Result<Arc<PublicKey>, Reject> {
        let kid = header.kid.as_deref();
        let miss = match self.keys.current().select(header.alg, kid) {
            Ok(key) => return Ok(Arc::clone(key)),
            Err(miss) => miss,
        };
        if let (KeyMiss::UnknownKid, PublicKeys::Remote(remote)) = (miss, &self.keys) {
            // Boxed: the fetch's state is large and rare; unboxed it would
            // enlarge every request's future (each is moved per request).
            if Box::pin(remote.refresh_for_unknown_kid()).await {
                return remote
                    .current()
                    .select(header.alg, kid)
                    .map(Arc::clone)
                    .map_err(key_miss);
            }
        }
        Err(key_miss(miss))
    }

    /// Verified-token cache hits since start (0 when the cache is off).
    pub fn cache_hits(&self) -> u64 {
        self.cache.as_ref().map_or(0, TokenCache::hits)
    }

    /// Tokens in the verified-token cache (0 when it is off).
    pub fn cache_len(&self) -> u64 {
        self.cache.as_ref().map_or(0, TokenCache::len)
    }

    /// Estimated bytes the verified-token cache holds (0 when it is off);
    /// at most `jwt.cache_max_bytes`.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, TokenCache::weighted_bytes)
    }

    /// JWKS fetches attempted since start (0 without `jwks_url`).
    pub fn jwks_fetches(&self) -> u64 {
        match &self.keys {
            PublicKeys::Fixed(_) => 0,
            PublicKeys::Remote(remote) => remote.fetches(),
        }
    }
}

fn key_miss(miss: KeyMiss) -> Reject {
    match miss {
        KeyMiss::UnknownKid => Reject::InvalidToken("unknown key id"),
        KeyMiss::AlgMismatch => ALG_KEY_MISMATCH,
        KeyMiss::Ambiguous => Reject::InvalidToken("token has no key id"),
    }
}

fn read(key: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))
}
