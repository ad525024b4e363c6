//! The verified-token cache: the exact token string -> its verified claims,
//! so that a repeated RS256/ES256/EdDSA token costs a hash lookup instead of
//! a signature check.
//!
//! Only tokens that passed every check go in, and never one whose `nbf` is
//! still ahead (it verified only thanks to the leeway; it must be checked
//! again). Each entry expires by itself at the token's `exp` + leeway
//! (moka's per-entry expiry), and a hit re-checks `exp` against the caller's
//! clock anyway, so a cached token is never served past its lifetime.
//! Revocation is not cached here: the gateway checks it on every request.

use super::claims::Claims;
use crate::revocation::{Clock, SystemClock};
use moka::sync::Cache;
use moka::Expiry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bounded cache of verified tokens. Cloning shares the entries.
#[derive(Clone)]
pub(crate) struct TokenCache {
    entries: Cache<Box<str>, Arc<Claims>>,
    leeway: u64,
    hits: Arc<AtomicU64>,
}

/// Per-entry lifetime: until `exp + leeway`, measured from insertion.
struct UntilExp {
    leeway: u64,
}

impl Expiry<Box<str>, Arc<Claims>> for UntilExp {
    fn expire_after_create(
        &self,
        _token: &Box<str>,
        claims: &Arc<Claims>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let end = claims.exp.saturating_add(self.leeway);
        Some(Duration::from_secs(end.saturating_sub(SystemClock.now())))
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; `None` when `capacity` is 0.
    pub(crate) fn new(capacity: u64, leeway: u64) -> Option<TokenCache> {
        if capacity == 0 {
            return None;
        }
        let entries = Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilExp { leeway })
            .build();
        Some(TokenCache {
            entries,
            leeway,
            hits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The claims of `token` if it is cached and not expired at `now`.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Arc<Claims>> {
        let claims = self.entries.get(token)?;
        if now > claims.exp.saturating_add(self.leeway) {
            self.entries.invalidate(token);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(claims)
    }

    /// Remembers a token that verified at `now`, unless its `nbf` is ahead.
    pub(crate) fn insert(&self, token: &str, claims: &Arc<Claims>, now: u64) {
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return;
        }
        self.entries.insert(token.into(), Arc::clone(claims));
    }

    /// Drops every entry (after a key rotation: a removed key's tokens must
    /// be verified again, and fail).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Cache hits so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Entries held (after pending maintenance has run).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_now() -> u64 {
        SystemClock.now()
    }
    use crate::auth::claims::ClaimPolicy;
    use serde_json::json;

    fn claims(exp: u64, nbf: Option<u64>) -> Arc<Claims> {
        let mut v = json!({"exp": exp, "sub": "s"});
        if let Some(nbf) = nbf {
            v["nbf"] = json!(nbf);
        }
        let serde_json::Value::Object(map) = v else {
            unreachable!()
        };
        let policy = ClaimPolicy {
            time: crate::revocation::Policy {
                leeway: 1_000_000,
                max_token_lifetime: 1_000_000,
            },
            issuer: None,
            audience: vec![],
        };
        Arc::new(Claims::check(map, "t", &policy, unix_now()).expect("claims"))
    }

    #[test]
    fn capacity_zero_is_off() {
        assert!(TokenCache::new(0, 30).is_none());
    }

    #[test]
    fn hit_then_expired_by_the_callers_clock() {
        let now = unix_now();
        let cache = TokenCache::new(10, 30).expect("cache");
        cache.insert("a", &claims(now + 100, None), now);
        assert!(cache.get("a", now).is_some());
        assert!(cache.get("a", now + 130).is_some(), "inside the leeway");
        assert!(cache.get("a", now + 131).is_none(), "expired");
        assert!(cache.get("a", now).is_none(), "an expired hit is dropped");
        assert_eq!(cache.hits(), 2);
    }

    #[test]
    fn entries_expire_by_themselves() {
        let now = unix_now();
        let cache = TokenCache::new(10, 0).expect("cache");
        // exp already reached: the per-entry expiry is zero.
        cache.insert("old", &claims(now.saturating_sub(5), None), now);
        cache.insert("new", &claims(now + 3600, None), now);
        // Read moka directly: no `exp` re-check of ours in between.
        assert!(cache.entries.get("old").is_none());
        assert!(cache.entries.get("new").is_some());
    }

    #[test]
    fn future_nbf_is_not_cached() {
        let now = unix_now();
        let cache = TokenCache::new(10, 30).expect("cache");
        cache.insert("early", &claims(now + 100, Some(now + 10)), now);
        assert!(cache.get("early", now).is_none());
        cache.insert("ok", &claims(now + 100, Some(now)), now);
        assert!(cache.get("ok", now).is_some());
        cache.clear();
        assert!(cache.get("ok", now).is_none());
    }
}
