//! The legacy-key window: how long the keys earlier builds wrote for tokens
//! without `jti` (the SHA-256 of the whole token) are still checked.
//!
//! Such an entry matters only while its token can still be accepted. Every
//! one was written either before this process started or, in a rolling
//! upgrade over Redis, by a replica of the earlier build while this one runs:
//!
//! - a token with `iat` that was accepted when its entry was written at `w`
//!   is refused as expired from [`super::Policy::horizon`]`(w)` on, now that
//!   `max_token_lifetime` is enforced (a longer-lived token is refused
//!   anyway);
//! - an entry may say it lives longer than that (a token without `iat`, or
//!   with a lifetime the earlier build did not bound): its own `expires_at`
//!   says how long.
//!
//! So the window runs until the later of `horizon(start)` and the latest
//! `expires_at` of the revocations held when the blocklist is first complete
//! (loaded from disk at start, or the first Redis catch-up), and it is
//! extended by every revocation a replica receives from Redis afterwards
//! (one of them may come from an earlier-build replica). The file format is
//! not involved: entries are not marked, the bound comes from time alone.
//! While the window is open, checking a token without `jti` costs one more
//! filter probe; once it closes (noticed by housekeeping, every second) the
//! legacy key is ignored.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Until when legacy keys are checked, and whether that is now.
#[derive(Debug)]
pub(crate) struct LegacyWindow {
    until: AtomicU64,
    open: AtomicBool,
}

impl LegacyWindow {
    /// A window open until `until` (UNIX seconds).
    pub(crate) fn new(until: u64) -> Self {
        LegacyWindow {
            until: AtomicU64::new(until),
            open: AtomicBool::new(true),
        }
    }

    /// Moves the end to `until` if that is later (never earlier), and opens
    /// the window again if `until` is after `now`.
    pub(crate) fn extend(&self, until: u64, now: u64) {
        let before = self.until.fetch_max(until, Ordering::AcqRel);
        if until > before && now < until {
            self.open.store(true, Ordering::Release);
        }
    }

    /// Closes the window once `now` has reached its end (housekeeping).
    pub(crate) fn tick(&self, now: u64) {
        if now >= self.until.load(Ordering::Acquire) {
            self.open.store(false, Ordering::Release);
        }
    }

    /// Whether legacy keys are checked (one atomic load, the hot path).
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The end of the window (UNIX seconds).
    pub(crate) fn until(&self) -> u64 {
        self.until.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_at_its_end_and_reopens_when_extended() {
        let w = LegacyWindow::new(100);
        w.tick(99);
        assert!(w.is_open());
        w.tick(100);
        assert!(!w.is_open());
        // An earlier end changes nothing.
        w.extend(50, 100);
        assert!(!w.is_open());
        assert_eq!(w.until(), 100);
        w.extend(200, 150);
        assert!(w.is_open());
        assert_eq!(w.until(), 200);
        w.tick(199);
        assert!(w.is_open());
        w.tick(200);
        assert!(!w.is_open());
    }
}
