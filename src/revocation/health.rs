//! Whether the revocation store can be trusted right now: read by `/readyz`
//! and by the `on_store_down` gate of authenticated routes, written by the
//! store itself (the Redis follower's sync state).

use std::sync::atomic::{AtomicBool, Ordering};

/// Health of the revocation store, owned by [`super::Revocations`]: `ok`
/// unless the store said otherwise (a shared store that is unreachable or
/// catching up).
#[derive(Debug)]
pub struct StoreHealth {
    ok: AtomicBool,
}

impl StoreHealth {
    /// Healthy unless told otherwise.
    pub fn new() -> Self {
        StoreHealth {
            ok: AtomicBool::new(true),
        }
    }

    /// Records whether the store is usable.
    pub fn set_ok(&self, ok: bool) {
        self.ok.store(ok, Ordering::Release);
    }

    /// Whether the store is usable: the blocklist in memory is current and
    /// writes can be made durable.
    pub fn is_ok(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_until_told_otherwise() {
        let h = StoreHealth::new();
        assert!(h.is_ok());
        h.set_ok(false);
        assert!(!h.is_ok());
        h.set_ok(true);
        assert!(h.is_ok());
    }
}
