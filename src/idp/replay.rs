//! The `jti`s of logout tokens and SETs already acted on, so that a token
//! seen before is refused (Back-Channel Logout) or acknowledged without
//! acting again (SETs).
//!
//! One cache per process, kept across reloads. Bounded: at most
//! [`REPLAY_CAPACITY`] entries (moka evicts the least used past it; a
//! token evicted early and replayed only records again a revocation that is
//! already in force, which is idempotent). Each entry lives until the
//! token's own expiry (`exp` + leeway, or the SET's acceptance window),
//! measured on the system clock.
//!
//! Per replica: two replicas behind one load balancer each keep their own
//! cache, so a logout token replayed to the other replica is accepted there
//! once more. That replay can only repeat the revocation the first delivery
//! made (the same `sub`/`sid`, already shared through the store), never
//! lift or widen it.

use crate::revocation::{Clock, SystemClock};
use moka::sync::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// Most `jti`s remembered: about 100 bytes each in moka, 10 MB at most; far
/// more logouts than an identity provider sends within a token lifetime to
/// one gateway.
pub const REPLAY_CAPACITY: u64 = 100_000;

/// Which `jti`s have been seen, per issuer.
pub struct ReplayCache {
    /// Digest of `iss \0 jti` -> the UNIX second the entry may leave.
    seen: Cache<u128, u64>,
}

struct UntilExpiry;

impl Expiry<u128, u64> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &u128,
        until: &u64,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(until.saturating_sub(SystemClock.now())))
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::new(REPLAY_CAPACITY)
    }
}

impl ReplayCache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: u64) -> ReplayCache {
        ReplayCache {
            seen: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// Whether `jti` of `iss` was remembered and is still live at `now`.
    pub fn seen(&self, iss: &str, jti: &str, now: u64) -> bool {
        self.seen
            .get(&key(iss, jti))
            .is_some_and(|until| now < until)
    }

    /// Remembers `jti` of `iss` until `until` (UNIX seconds).
    pub fn remember(&self, iss: &str, jti: &str, until: u64) {
        self.seen.insert(key(iss, jti), until);
    }
}

fn key(iss: &str, jti: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(iss.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    let out = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&out[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_issuer_until_expiry() {
        let c = ReplayCache::new(10);
        let now = SystemClock.now();
        assert!(!c.seen("https://idp", "j1", now));
        c.remember("https://idp", "j1", now + 60);
        assert!(c.seen("https://idp", "j1", now));
        assert!(!c.seen("https://other", "j1", now));
        assert!(!c.seen("https://idp", "j2", now));
        // Past its expiry it no longer counts, whatever moka still holds.
        assert!(!c.seen("https://idp", "j1", now + 60));
    }
}
