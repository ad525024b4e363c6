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
//!
//! Bounded twice, by one moka weigher: each entry weighs its estimated
//! bytes (the token, its claims as parsed, moka's own bookkeeping), at least
//! `max_bytes / capacity`, and the weights sum to at most `max_bytes`. So
//! the cache never holds more than about `max_bytes` of tokens, nor more
//! than `capacity` of them. A token longer than `max_token_bytes` is not
//! cached at all (as Envoy's `jwt_max_token_size`): a few huge tokens cannot
//! push out many ordinary ones.

use super::claims::{Claims, RawClaims};
use crate::revocation::{Clock, SystemClock};
use moka::sync::Cache;
use moka::Expiry;
use serde_json::{Map, Value};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bounded cache of verified tokens. Cloning shares the entries.
#[derive(Clone)]
pub(crate) struct TokenCache {
    entries: Cache<Box<str>, Arc<Claims>>,
    leeway: u64,
    max_token_bytes: usize,
    hits: Arc<AtomicU64>,
}

/// The cache's bounds, from `[jwt]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheBounds {
    /// Most tokens held (`jwt.cache_capacity`); 0 turns the cache off.
    pub(crate) capacity: u64,
    /// Most bytes held, by the estimate of [`weight`] (`jwt.cache_max_bytes`).
    pub(crate) max_bytes: u64,
    /// Longer tokens are not cached (`jwt.cache_max_token_bytes`).
    pub(crate) max_token_bytes: usize,
}

/// What moka keeps per entry besides key and value (its key `Arc`, hash-map
/// slot, access-order and expiry-timer nodes): an upper estimate.
const ENTRY_OVERHEAD: usize = 256;
/// A `serde_json` object member besides its key and value bytes: the key's
/// `String` and the `Value` in a B-tree node (11 slots, about 70% full),
/// and the allocator's header for the key.
const MEMBER_OVERHEAD: usize = (size_of::<String>() + size_of::<Value>()) * 10 / 7 + 16;
/// An allocator's header and rounding per heap block.
const ALLOC_OVERHEAD: usize = 16;
/// One B-tree node of a `serde_json` map: 11 key and value slots, its
/// length and parent link, the allocator's header.
const NODE_BYTES: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16 + ALLOC_OVERHEAD;

/// The estimated bytes an entry holds: the token (the key), the claims and
/// everything they own, moka's bookkeeping.
pub(crate) fn entry_bytes(token: &str, claims: &Claims) -> usize {
    let strings = [claims.sub.as_ref(), claims.jti.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| s.capacity() + ALLOC_OVERHEAD)
        .sum::<usize>();
    let scopes = claims.scopes.capacity() * size_of::<String>()
        + claims
            .scopes
            .iter()
            .map(|s| s.capacity() + ALLOC_OVERHEAD)
            .sum::<usize>();
    let fingerprint = claims
        .fingerprint
        .as_ref()
        .map_or(0, |f| f.len() + ALLOC_OVERHEAD);
    ENTRY_OVERHEAD
        + token.len()
        + ALLOC_OVERHEAD
        + size_of::<Claims>()
        + 2 * size_of::<usize>()
        + ALLOC_OVERHEAD
        + strings
        + scopes
        + fingerprint
        + claims_bytes(&claims.raw)
}

/// The payload's JSON text and, when verification built it (some route
/// forwards claims), its claims map. Without such a route nothing builds
/// the map while the token is cached.
fn claims_bytes(raw: &RawClaims) -> usize {
    raw.json().len() + ALLOC_OVERHEAD + raw.built_map().map_or(0, object_bytes)
}

fn object_bytes(map: &Map<String, Value>) -> usize {
    let members: usize = map.iter().map(|(k, v)| k.capacity() + value_bytes(v)).sum();
    // A map of up to 11 members is one whole B-tree leaf, however few.
    members + (map.len() * MEMBER_OVERHEAD).max(NODE_BYTES)
}

/// Heap bytes a JSON value owns beyond its own `Value` slot.
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity() + ALLOC_OVERHEAD,
        Value::Array(items) => {
            items.capacity() * size_of::<Value>()
                + ALLOC_OVERHEAD
                + items.iter().map(value_bytes).sum::<usize>()
        }
        Value::Object(map) => object_bytes(map),
    }
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
    /// A cache within `bounds`; `None` when its capacity is 0.
    pub(crate) fn new(bounds: CacheBounds, leeway: u64) -> Option<TokenCache> {
        if bounds.capacity == 0 {
            return None;
        }
        // Every entry weighs at least this, so at most `capacity` fit.
        let floor = (bounds.max_bytes / bounds.capacity).clamp(1, u64::from(u32::MAX));
        // moka hands the key over as it stores it.
        #[allow(clippy::borrowed_box)]
        let weigher = move |token: &Box<str>, claims: &Arc<Claims>| -> u32 {
            let bytes = u64::try_from(entry_bytes(token, claims)).unwrap_or(u64::MAX);
            u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
        };
        let entries = Cache::builder()
            .max_capacity(bounds.max_bytes)
            .weigher(weigher)
            .expire_after(UntilExp { leeway })
            .build();
        Some(TokenCache {
            entries,
            leeway,
            max_token_bytes: bounds.max_token_bytes,
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

    /// Remembers a token that verified at `now`, unless its `nbf` is ahead
    /// or it is longer than `max_token_bytes`.
    pub(crate) fn insert(&self, token: &str, claims: &Arc<Claims>, now: u64) {
        if claims.nbf.is_some_and(|nbf| nbf > now) || token.len() > self.max_token_bytes {
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

    /// The sum of the entries' weights, in estimated bytes (after pending
    /// maintenance has run).
    pub(crate) fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
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
        let policy = ClaimPolicy {
            time: crate::revocation::Policy {
                leeway: 1_000_000,
                max_token_lifetime: 1_000_000,
            },
            issuer: None,
            audience: vec![],
        };
        Arc::new(Claims::check(v.to_string(), "t", &policy, unix_now()).expect("claims"))
    }

    fn bounds(capacity: u64) -> CacheBounds {
        CacheBounds {
            capacity,
            max_bytes: 1 << 20,
            max_token_bytes: 4096,
        }
    }

    fn cache(capacity: u64, leeway: u64) -> TokenCache {
        TokenCache::new(bounds(capacity), leeway).expect("cache")
    }

    /// Claims of about `size` bytes of JSON, distinct per `i`.
    fn big_claims(i: usize, size: usize) -> Arc<Claims> {
        let now = unix_now();
        let v = json!({"exp": now + 3600, "sub": format!("s{i}"), "pad": "x".repeat(size)});
        let policy = ClaimPolicy {
            time: crate::revocation::Policy {
                leeway: 30,
                max_token_lifetime: 1_000_000,
            },
            issuer: None,
            audience: vec![],
        };
        Arc::new(Claims::check(v.to_string(), "t", &policy, now).expect("claims"))
    }

    #[test]
    fn capacity_zero_is_off() {
        assert!(TokenCache::new(bounds(0), 30).is_none());
    }

    /// Pins a fixed bug: the cache was bounded by entry count only, so 200,000
    /// distinct 8 KB tokens took 1.7 GiB. Now the weights (estimated bytes)
    /// never sum past `max_bytes`, however many large tokens arrive.
    #[test]
    fn large_tokens_stay_within_max_bytes() {
        let max_bytes = 256 * 1024;
        let cache = TokenCache::new(
            CacheBounds {
                capacity: 100_000,
                max_bytes,
                max_token_bytes: 8192,
            },
            30,
        )
        .expect("cache");
        let now = unix_now();
        let mut inserted = 0u64;
        for i in 0..2_000 {
            let token = format!("{i:08}{}", "t".repeat(5000));
            cache.insert(&token, &big_claims(i, 3000), now);
            inserted += entry_bytes(&token, &big_claims(i, 3000)) as u64;
        }
        let held = cache.weighted_bytes();
        assert!(inserted > 20 * max_bytes, "the test inserts far more");
        assert!(held <= max_bytes, "{held} bytes held, bound {max_bytes}");
        assert!(held > max_bytes / 2, "the cache is used: {held}");
        let len = cache.len();
        assert!((20..=32).contains(&len), "{len} entries of about 8 KB each");
    }

    /// `capacity` still bounds the entry count when entries are small.
    #[test]
    fn small_tokens_stay_within_capacity() {
        let cache = cache(50, 30);
        let now = unix_now();
        for i in 0..1_000 {
            cache.insert(&format!("tok{i}"), &big_claims(i, 1), now);
        }
        let len = cache.len();
        assert!((25..=50).contains(&len), "{len} entries, capacity 50");
    }

    #[test]
    fn tokens_over_max_token_bytes_are_not_cached() {
        let cache = cache(10, 30);
        let now = unix_now();
        let long = "t".repeat(4097);
        cache.insert(&long, &big_claims(0, 1), now);
        assert!(cache.get(&long, now).is_none());
        let short = "t".repeat(4096);
        cache.insert(&short, &big_claims(0, 1), now);
        assert!(cache.get(&short, now).is_some());
    }

    /// The estimate grows with what the claims hold: a padded claim and
    /// long strings weigh their bytes.
    /// A claims map built at verification (a route forwards claims) is
    /// weighed with its entry, a one-member map as a whole B-tree node.
    #[test]
    fn a_built_claims_map_is_weighed() {
        let claims = big_claims(0, 10);
        let without = entry_bytes("t", &claims);
        claims.raw.map();
        let with = entry_bytes("t", &claims);
        assert!(
            with >= without + NODE_BYTES,
            "{with} < {without} + {NODE_BYTES}"
        );
        let one: Map<String, Value> = serde_json::from_str(r#"{"a":0}"#).expect("valid");
        assert!(object_bytes(&one) >= NODE_BYTES);
    }

    #[test]
    fn entry_bytes_counts_token_and_claims() {
        let small = entry_bytes("t", &big_claims(0, 1));
        let big = entry_bytes(&"t".repeat(1000), &big_claims(0, 5000));
        assert!(big >= small + 5990, "{small} -> {big}");
        assert!(small >= ENTRY_OVERHEAD + size_of::<Claims>(), "{small}");
    }

    #[test]
    fn hit_then_expired_by_the_callers_clock() {
        let now = unix_now();
        let cache = cache(10, 30);
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
        let cache = cache(10, 0);
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
        let cache = cache(10, 30);
        cache.insert("early", &claims(now + 100, Some(now + 10)), now);
        assert!(cache.get("early", now).is_none());
        cache.insert("ok", &claims(now + 100, Some(now)), now);
        assert!(cache.get("ok", now).is_some());
        cache.clear();
        assert!(cache.get("ok", now).is_none());
    }
}
