//! The revocation policy's arithmetic, in one place: how long a revocation
//! and a logout-all watermark must hold, how long a token may live, and how
//! long keys written by previous builds are still checked.
//!
//! Everything here follows from two numbers of `[jwt]`, `leeway` and
//! `max_token_lifetime`, and from what verification accepts:
//!
//! - a token is accepted while `now <= exp + leeway`;
//! - its `iat` may be up to `leeway` ahead of our clock (an issuer whose
//!   clock runs ahead);
//! - its lifetime, `exp - iat` (or `exp - now` without `iat`), is at most
//!   `max_token_lifetime + leeway` ([`Policy::lifetime_ok`]).
//!
//! Hence [`Policy::horizon`]: a token acceptable at or before `t` is refused
//! as expired from `t + max_token_lifetime + 3 * leeway + 1` on (its `iat` is
//! at most `t + leeway`, its `exp` at most `leeway` more than
//! `iat + max_token_lifetime`, and it is accepted `leeway` past `exp`).

use crate::config::{JwtConfig, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LIFETIME};
use std::time::Duration;

/// `leeway` and `max_token_lifetime` in seconds, and what follows from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// The longest a token may live (`exp - iat`), in seconds, before the
    /// leeway.
    pub max_token_lifetime: u64,
}

impl Policy {
    /// A policy from the two durations.
    pub fn new(leeway: Duration, max_token_lifetime: Duration) -> Policy {
        Policy {
            leeway: leeway.as_secs(),
            max_token_lifetime: max_token_lifetime.as_secs(),
        }
    }

    /// The policy of `[jwt]`, or the defaults without one (the admin API can
    /// still revoke by `jti` and `sub`).
    pub fn from_config(jwt: Option<&JwtConfig>) -> Policy {
        match jwt {
            Some(j) => Policy::new(j.leeway, j.max_token_lifetime),
            None => Policy::new(DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LIFETIME),
        }
    }

    /// Whether a token expiring at `exp`, issued at `iat` (if it says), lives
    /// no longer than `max_token_lifetime + leeway`, judged at `now`. Without
    /// `iat` its remaining life, `exp - now`, is what is bounded.
    pub fn lifetime_ok(&self, exp: u64, iat: Option<u64>, now: u64) -> bool {
        let lifetime = exp.saturating_sub(iat.unwrap_or(now));
        lifetime <= self.max_token_lifetime.saturating_add(self.leeway)
    }

    /// When the revocation of a token expiring at `exp` may leave: the first
    /// second in which the token is refused as expired anyway (a token is
    /// accepted while `now <= exp + leeway`, an entry holds while
    /// `now < expires_at`, hence the `+ 1`).
    pub fn revocation_expiry(&self, exp: u64) -> u64 {
        exp.saturating_add(self.leeway).saturating_add(1)
    }

    /// A logout-all at `now`: the watermark `at` and when it may leave.
    ///
    /// `at` is `now + leeway`: a token issued just before the logout-all by
    /// an issuer whose clock is up to `leeway` ahead carries an `iat` up to
    /// `now + leeway`, and verification accepts it, so the watermark must
    /// cover it. The price: a token issued in the `leeway` seconds after a
    /// logout-all is refused too (the user logs in again a little later).
    /// The watermark leaves at [`Policy::horizon`]`(now)`, once every token
    /// it covers is refused as expired anyway.
    pub fn watermark(&self, now: u64) -> (u64, u64) {
        (now.saturating_add(self.leeway), self.horizon(now))
    }

    /// How long a watermark at `at` must live past it: `at` already carries
    /// one leeway (see [`Policy::watermark`]), so `max_token_lifetime +
    /// 2 * leeway + 1` brings it to [`Policy::horizon`] of the logout-all.
    pub fn watermark_ttl(&self) -> u64 {
        self.max_token_lifetime
            .saturating_add(self.leeway.saturating_mul(2))
            .saturating_add(1)
    }

    /// When the revocation of a session (`sid`) made at `now` may leave:
    /// [`Policy::horizon`]`(now)`. The session's tokens acceptable now were
    /// issued at most `leeway` ahead of `now` and live at most
    /// `max_token_lifetime + leeway`, accepted `leeway` past `exp`, so none of
    /// them outlives the record: it holds `max_token_lifetime` plus the
    /// leeways.
    pub fn session_expiry(&self, now: u64) -> u64 {
        self.horizon(now)
    }

    /// The first second from which every token that was acceptable at or
    /// before `t` is refused as expired: `t + max_token_lifetime +
    /// 3 * leeway + 1` (see the module doc). A revocation by `jti` without
    /// an explicit expiry lives until `horizon(now)`; keys written by an
    /// earlier build before `t` matter until `horizon(t)`.
    pub fn horizon(&self, t: u64) -> u64 {
        t.saturating_add(self.max_token_lifetime)
            .saturating_add(self.leeway.saturating_mul(3))
            .saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        leeway: 30,
        max_token_lifetime: 3600,
    };

    #[test]
    fn lifetime_is_bounded_by_max_plus_leeway() {
        let iat = 1_000;
        assert!(P.lifetime_ok(iat + 3630, Some(iat), 0));
        assert!(!P.lifetime_ok(iat + 3631, Some(iat), 0));
        // Without iat: the remaining life at `now`.
        assert!(P.lifetime_ok(5_000 + 3630, None, 5_000));
        assert!(!P.lifetime_ok(5_000 + 3631, None, 5_000));
        assert!(!P.lifetime_ok(u64::MAX, Some(iat), 0));
        // An iat after exp is a zero lifetime, not an overflow.
        assert!(P.lifetime_ok(10, Some(20), 0));
    }

    #[test]
    fn revocation_holds_through_the_last_accepted_second() {
        assert_eq!(P.revocation_expiry(100), 131);
        assert_eq!(P.revocation_expiry(u64::MAX), u64::MAX);
    }

    /// The watermark covers the `iat` of every token issued before it by an
    /// issuer up to `leeway` ahead, and lives until the last such token is
    /// refused as expired.
    #[test]
    fn watermark_covers_skewed_iat_for_the_whole_life_of_its_tokens() {
        let now = 1_000_000;
        let (at, expires_at) = P.watermark(now);
        assert_eq!(at, now + 30);
        assert_eq!(expires_at, at + P.watermark_ttl());
        // The longest-lived token it covers: iat = at, exp = iat + max + leeway,
        // accepted through exp + leeway.
        let last_accepted = at + 3600 + 30 + 30;
        assert!(P.lifetime_ok(at + 3630, Some(at), now));
        assert_eq!(expires_at, last_accepted + 1);
        assert_eq!(expires_at, P.horizon(now));
    }
}
