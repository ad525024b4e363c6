//! Whether the revocation store can be trusted right now: read by `/readyz`
//! and by the `on_store_down` gate of authenticated routes, written by the
//! store itself (the Redis follower's sync state; whether the local store
//! takes writes).

use std::sync::atomic::{AtomicBool, Ordering};

/// Health of the revocation store, owned by [`super::Revocations`]: `ok`
/// unless the store said otherwise (a shared store that is unreachable,
/// catching up or stale).
#[derive(Debug)]
pub struct StoreHealth {
    ok: AtomicBool,
    /// The store has been usable at least once since start, so the
    /// blocklist in memory was complete at some point (what
    /// `on_store_down = "allow"` needs before it serves from memory).
    synced_once: AtomicBool,
    /// The durable local store takes writes (false from a write error until
    /// it has recovered by itself).
    writes_ok: AtomicBool,
}

impl StoreHealth {
    /// Healthy unless told otherwise.
    pub fn new() -> Self {
        StoreHealth {
            ok: AtomicBool::new(true),
            synced_once: AtomicBool::new(true),
            writes_ok: AtomicBool::new(true),
        }
    }

    /// Not usable, and never synced, until the store first says it is (a
    /// shared store before its first catch-up).
    pub fn until_first_sync(&self) {
        self.synced_once.store(false, Ordering::Release);
        self.ok.store(false, Ordering::Release);
    }

    /// Records whether the store is usable.
    pub fn set_ok(&self, ok: bool) {
        if ok {
            self.synced_once.store(true, Ordering::Release);
        }
        self.ok.store(ok, Ordering::Release);
    }

    /// Whether the store has been usable at least once since start.
    pub fn synced_once(&self) -> bool {
        self.synced_once.load(Ordering::Acquire)
    }

    /// Whether the store is usable: the blocklist in memory is current (the
    /// `on_store_down` gate).
    pub fn is_ok(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }

    /// Records whether the durable local store takes writes. A local store
    /// that cannot write still holds every acknowledged record in memory, so
    /// this affects `/readyz` only, not the gate.
    pub fn set_writes_ok(&self, ok: bool) {
        self.writes_ok.store(ok, Ordering::Release);
    }

    /// What `/readyz` answers: the blocklist is current and revocations can
    /// be made durable.
    pub fn is_ready(&self) -> bool {
        self.is_ok() && self.writes_ok.load(Ordering::Acquire)
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

    /// A store that cannot write is not ready, but its memory still answers
    /// checks (the gate stays open).
    #[test]
    fn failing_writes_make_it_unready_but_keep_it_ok() {
        let h = StoreHealth::new();
        h.set_writes_ok(false);
        assert!(h.is_ok());
        assert!(!h.is_ready());
        h.set_writes_ok(true);
        assert!(h.is_ready());
    }

    #[test]
    fn healthy_until_told_otherwise() {
        let h = StoreHealth::new();
        assert!(h.is_ok());
        h.set_ok(false);
        assert!(!h.is_ok());
        h.set_ok(true);
        assert!(h.is_ok());
    }

    /// `on_store_down = "allow"` relies on this: never synced until the
    /// first `ok`, and synced for good after it.
    #[test]
    fn synced_once_only_after_the_first_ok() {
        let h = StoreHealth::new();
        h.until_first_sync();
        assert!(!h.is_ok() && !h.synced_once());
        h.set_ok(false);
        assert!(!h.synced_once());
        h.set_ok(true);
        h.set_ok(false);
        assert!(!h.is_ok() && h.synced_once());
    }
}
