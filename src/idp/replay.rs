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
//! A delivery claims its `jti` before acting ([`ReplayCache::claim`], one
//! step under moka's per-key lock), so of two concurrent deliveries of one
//! token exactly one acts; a delivery whose action then fails gives the
//! claim back ([`ReplayCache::forget`]) so that the identity provider's
//! retry is acted on. A delivery refused as a replay while the first is
//! still acting is not retried by the identity provider; if the first then
//! fails, it answers 503 and that delivery's retry is the one acted on.
//!
//! Per replica: two replicas behind one load balancer each keep their own
//! cache, so a logout token replayed to the other replica is accepted there
//! once more. That replay can only repeat the revocation the first delivery
//! made (the same `sub`/`sid`, already shared through the store), never
//! lift or widen it.

use crate::revocation::{Clock, SystemClock};
use moka::ops::compute::{CompResult, Op};
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

impl UntilExpiry {
    fn until(until: u64) -> Option<Duration> {
        Some(Duration::from_secs(until.saturating_sub(SystemClock.now())))
    }
}

impl Expiry<u128, u64> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &u128,
        until: &u64,
        _created_at: Instant,
    ) -> Option<Duration> {
        UntilExpiry::until(*until)
    }

    /// A claim that replaces one past its time lives until its own `until`
    /// (moka's default would keep the old entry's expiry).
    fn expire_after_update(
        &self,
        _key: &u128,
        until: &u64,
        _updated_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        UntilExpiry::until(*until)
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

    /// Claims `jti` of `iss` until `until` (UNIX seconds): true for the
    /// caller that finds no live claim at `now` and records its own, false
    /// while another is live. Atomic: of concurrent claims of one `jti`
    /// exactly one gets true.
    pub fn claim(&self, iss: &str, jti: &str, until: u64, now: u64) -> bool {
        let result = self
            .seen
            .entry(key(iss, jti))
            .and_compute_with(|live| match live {
                Some(entry) if now < *entry.value() => Op::Nop,
                _ => Op::Put(until),
            });
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    /// Gives back a claim whose action failed, so that the same `jti` may be
    /// claimed again (the identity provider retries after a 503).
    pub fn forget(&self, iss: &str, jti: &str) {
        self.seen.invalidate(&key(iss, jti));
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
    fn claims_per_issuer_until_expiry() {
        let c = ReplayCache::new(10);
        let now = SystemClock.now();
        assert!(c.claim("https://idp", "j1", now + 60, now));
        assert!(!c.claim("https://idp", "j1", now + 60, now));
        assert!(c.claim("https://other", "j1", now + 60, now));
        assert!(c.claim("https://idp", "j2", now + 60, now));
        // Past its expiry it no longer counts, whatever moka still holds,
        // and the new claim holds until its own expiry.
        assert!(c.claim("https://idp", "j1", now + 120, now + 60));
        assert!(!c.claim("https://idp", "j1", now + 120, now + 60));
    }

    #[test]
    fn a_forgotten_claim_may_be_claimed_again() {
        let c = ReplayCache::new(10);
        let now = SystemClock.now();
        assert!(c.claim("https://idp", "j1", now + 60, now));
        c.forget("https://idp", "j1");
        assert!(c.claim("https://idp", "j1", now + 60, now));
        assert!(!c.claim("https://idp", "j1", now + 60, now));
    }

    /// Threads released together claim one `jti`: exactly one wins, in
    /// every round.
    #[test]
    fn of_concurrent_claims_exactly_one_wins() {
        const THREADS: usize = 8;
        let c = ReplayCache::new(1000);
        let now = SystemClock.now();
        for round in 0..50 {
            let jti = format!("j{round}");
            let start = std::sync::Barrier::new(THREADS);
            let won = std::thread::scope(|s| {
                let claims: Vec<_> = (0..THREADS)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            c.claim("https://idp", &jti, now + 60, now)
                        })
                    })
                    .collect();
                claims
                    .into_iter()
                    .map(|h| h.join())
                    .filter(|won| matches!(won, Ok(true)))
                    .count()
            });
            assert_eq!(won, 1, "round {round}");
        }
    }
}
