//! Rate limiting for warnings that a fault repeats on every request (an
//! upstream that is down turns each request into one): the first one in a
//! window is logged with the count of those suppressed since the last one,
//! the rest are only counted. One atomic read on the suppressed path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// One limiter per call site, usually a `static`.
pub struct RateLimit {
    /// Milliseconds between two lines.
    every_ms: u64,
    /// UNIX milliseconds of the last line logged (0: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// At most one line every `every_ms` milliseconds.
    pub const fn new(every_ms: u64) -> Self {
        RateLimit {
            every_ms,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log now, mentioning the `n` occurrences suppressed since
    /// the last line. `None`: suppressed (counted).
    pub fn check(&self) -> Option<u64> {
        self.check_at(now_ms())
    }

    fn check_at(&self, now: u64) -> Option<u64> {
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now.saturating_sub(last) < self.every_ms {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        // One thread wins the window; the others count as suppressed.
        match self
            .last_ms
            .compare_exchange(last, now.max(1), Relaxed, Relaxed)
        {
            Ok(_) => Some(self.suppressed.swap(0, Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Relaxed);
                None
            }
        }
    }
}

fn now_ms() -> u64 {
    // Wall time is enough: a step backwards at worst logs one line early.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_suppressed() {
        let r = RateLimit::new(1000);
        assert_eq!(r.check_at(10_000), Some(0));
        for t in 10_001..10_500 {
            assert_eq!(r.check_at(t), None);
        }
        assert_eq!(r.check_at(10_999), None);
        assert_eq!(r.check_at(11_000), Some(500));
        assert_eq!(r.check_at(11_001), None);
        assert_eq!(r.check_at(20_000), Some(1));
    }
}
