//! The in-memory blocklist: revoked keys in a compact [`Table`], subject
//! watermarks in a moka cache with per-entry expiry, and our own capacity
//! accounting (moka is built without a size bound, so it never evicts a live
//! watermark; the table never evicts at all).
//!
//! - `revoked`: [`RevocationKey`] -> `expires_at` (see [`super::table`] for
//!   why not moka: 32-64 bytes an entry instead of about 370).
//! - `watermarks`: subject (`Box<str>`, looked up by `&str`) -> [`Watermark`].
//!
//! In front of both: a Bloom [`Filter`] sized to the live entries, so a key
//! that was never revoked is answered without taking a shard lock. Its bits
//! are set before an entry is stored (under the filter's writer lock, which
//! a rebuild also takes); housekeeping rebuilds it when too full or too
//! stale.
//!
//! Counters (atomics, no lock):
//! - `used`: entries held in both plus slots reserved by revocations still on
//!   their way to disk. A new entry needs a slot; at `capacity` none is given
//!   ([`StoreError::Full`]). Slots come back when housekeeping sweeps an
//!   expired revocation, a revocation is lifted, or moka's eviction listener
//!   sees a watermark expire.
//! - `watermarks_held`: never below the number of watermarks in memory (it
//!   goes up before the insert and down after the removal), so the hot path can
//!   skip the subject lookup while there are none.

use super::clock::Clock;
use super::filter::Filter;
use super::table::{Table, Upsert};
use super::{Record, RevocationKey, StoreError};
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;
use moka::Expiry;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest time an entry is kept by moka's timer, whatever its `expires_at`
/// says (an admin may send an absurd one): 100 years keeps moka's internal
/// instants far from overflow while outliving any process.
const MAX_ENTRY_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A logout-all record for one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermark {
    /// Tokens with `iat <= at` are revoked.
    pub(crate) at: u64,
    /// UNIX second at which the watermark leaves.
    pub(crate) expires_at: u64,
}

/// What applying a record changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A revocation is in force until this second (the later of the old and
    /// the new `expires_at`).
    Revoked { expires_at: u64 },
    /// The subject's watermark in force after the record.
    Watermark(Watermark),
    /// Whether a live revocation was removed.
    Lifted(bool),
}

/// One slot of capacity, taken before a new entry is written anywhere. It
/// goes back by itself when dropped, unless an entry now holds it.
pub(crate) struct Reservation {
    used: Arc<AtomicI64>,
    armed: bool,
}

impl Reservation {
    /// The slot now belongs to an entry in the cache.
    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.used.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// moka per-entry expiry of a watermark: it leaves at its `expires_at`,
/// read against our clock when it is written (moka then counts down on its
/// own clock). Lookups also check `expires_at` against our clock.
struct UntilExpiresAt(Arc<dyn Clock>);

impl UntilExpiresAt {
    fn remaining(&self, expires_at: u64) -> Duration {
        Duration::from_secs(expires_at.saturating_sub(self.0.now())).min(MAX_ENTRY_TTL)
    }
}

impl<K> Expiry<K, Watermark> for UntilExpiresAt {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Watermark,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.remaining(value.expires_at))
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Watermark,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.remaining(value.expires_at))
    }
}

/// The in-memory blocklist. Shared (`Arc`) by [`super::Revocations`] and the
/// durable store's writer thread, which applies records after each commit.
pub(crate) struct Blocklist {
    revoked: Table,
    watermarks: Cache<Box<str>, Watermark>,
    used: Arc<AtomicI64>,
    watermarks_held: Arc<AtomicI64>,
    filter: Arc<Filter>,
    capacity: u64,
    clock: Arc<dyn Clock>,
    /// The latest `expires_at` of any revocation ever applied (bounds the
    /// legacy-key window, see `legacy.rs`).
    latest_revocation: AtomicU64,
}

impl Blocklist {
    /// An empty blocklist refusing new entries beyond `capacity`.
    pub(crate) fn new(capacity: u64, clock: Arc<dyn Clock>) -> Self {
        let used = Arc::new(AtomicI64::new(0));
        let watermarks_held = Arc::new(AtomicI64::new(0));
        let filter = Arc::new(Filter::new());
        let revoked = Table::new();
        let (u, w, f) = (
            Arc::clone(&used),
            Arc::clone(&watermarks_held),
            Arc::clone(&filter),
        );
        let watermarks = Cache::builder()
            .expire_after(UntilExpiresAt(Arc::clone(&clock)))
            .eviction_listener(move |_k: Arc<Box<str>>, _v, cause| {
                if release_on_removal(&u, cause) {
                    f.note_removed(1);
                    w.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .build();
        Blocklist {
            revoked,
            watermarks,
            used,
            watermarks_held,
            filter,
            capacity,
            clock,
            latest_revocation: AtomicU64::new(0),
        }
    }

    /// The clock expiry is judged by.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The hot-path check. No allocation, no I/O. The common case, a key
    /// never revoked and a subject without watermark, is answered by the
    /// filter without a lock; the table (a shard's read lock), moka and the
    /// clock are only consulted on a filter hit.
    #[inline]
    pub(crate) fn is_revoked(
        &self,
        key: RevocationKey,
        sub: Option<&str>,
        iat: Option<u64>,
    ) -> bool {
        if self.is_key_revoked(key) {
            return true;
        }
        match sub {
            Some(sub) if self.watermarks_held.load(Ordering::Acquire) > 0 => {
                self.filter.may_contain(self.filter.hash_str(sub))
                    && self
                        .watermark(sub)
                        .is_some_and(|w| iat.is_none_or(|iat| iat <= w.at))
            }
            _ => false,
        }
    }

    /// Whether `key` alone is revoked: the filter first, the table on a hit.
    #[inline]
    pub(crate) fn is_key_revoked(&self, key: RevocationKey) -> bool {
        self.filter.may_contain(Filter::hash_key(key.0)) && self.get(key).is_some()
    }

    /// The latest `expires_at` of any revocation applied so far (0 if none).
    pub(crate) fn latest_revocation_expiry(&self) -> u64 {
        self.latest_revocation.load(Ordering::Acquire)
    }

    /// Bytes held by the filter.
    pub(crate) fn filter_bytes(&self) -> u64 {
        self.filter.bytes()
    }

    /// Rebuilds the filter if it has become too full or too stale.
    pub(crate) fn maintain_filter(&self) {
        if self.filter.needs_rebuild() {
            self.rebuild_filter();
        }
    }

    /// Rebuilds the filter from the entries held. Revocations wait
    /// meanwhile (about 0.1-0.2 s per million entries).
    pub(crate) fn rebuild_filter(&self) {
        self.filter.rebuild(self.len(), |add| {
            self.revoked.for_each_key(|key| add(Filter::hash_key(key)));
            for (sub, _) in self.watermarks.iter() {
                add(self.filter.hash_str(&sub));
            }
        });
    }

    /// Every live revocation and watermark, as records (what a replica
    /// writes back to a shared store that lost them).
    pub(crate) fn live_records(&self) -> Vec<Record> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(self.len() as usize);
        self.revoked.for_each_entry(|key, expires_at| {
            if now < expires_at {
                out.push(Record::Revoke {
                    key: RevocationKey(key),
                    expires_at,
                });
            }
        });
        for (sub, w) in self.watermarks.iter() {
            if now < w.expires_at {
                out.push(Record::Watermark {
                    sub: Box::from(&**sub),
                    at: w.at,
                    expires_at: w.expires_at,
                });
            }
        }
        out
    }

    /// `expires_at` of a live revocation.
    pub(crate) fn get(&self, key: RevocationKey) -> Option<u64> {
        let now = self.clock.now();
        self.revoked.get(key.0).filter(|exp| now < *exp)
    }

    /// The live watermark of `sub`.
    pub(crate) fn watermark(&self, sub: &str) -> Option<Watermark> {
        let now = self.clock.now();
        self.watermarks.get(sub).filter(|w| now < w.expires_at)
    }

    /// Entries held plus slots reserved by writes in flight.
    pub(crate) fn len(&self) -> u64 {
        self.used.load(Ordering::Acquire).max(0) as u64
    }

    /// Takes a capacity slot for a new entry, or `Full`.
    pub(crate) fn reserve(&self) -> Result<Reservation, StoreError> {
        if let Some(r) = self.try_reserve() {
            return Ok(r);
        }
        // Expired entries keep their slot until housekeeping removes them;
        // run it before refusing.
        self.run_pending_tasks();
        self.try_reserve().ok_or(StoreError::Full)
    }

    fn try_reserve(&self) -> Option<Reservation> {
        let cap = i64::try_from(self.capacity).unwrap_or(i64::MAX);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < cap).then_some(u + 1)
            })
            .ok()
            .map(|_| Reservation {
                used: Arc::clone(&self.used),
                armed: true,
            })
    }

    /// A slot taken regardless of capacity: for records that are already
    /// durable elsewhere (loaded at start, or from a shared store) and must
    /// never be dropped.
    fn force_reserve(&self) -> Reservation {
        self.used.fetch_add(1, Ordering::AcqRel);
        Reservation {
            used: Arc::clone(&self.used),
            armed: true,
        }
    }

    /// Applies a record to memory only. A new entry takes `reservation`, or a
    /// slot beyond capacity when there is none (see [`Self::force_reserve`]).
    /// Revocations and watermarks only ever move later, never earlier.
    pub(crate) fn apply(&self, record: &Record, reservation: Option<Reservation>) -> Applied {
        match record {
            Record::Revoke { key, expires_at } => {
                let exp = *expires_at;
                self.latest_revocation.fetch_max(exp, Ordering::AcqRel);
                let slot = reservation.unwrap_or_else(|| self.force_reserve());
                // In the filter before the entry exists (see the module doc).
                let writing = self.filter.write();
                self.filter.add(&writing, Filter::hash_key(key.0));
                match self.revoked.upsert_later(key.0, exp) {
                    Upsert::Inserted => {
                        slot.keep();
                        Applied::Revoked { expires_at: exp }
                    }
                    Upsert::Present(expires_at) => Applied::Revoked { expires_at },
                }
            }
            Record::Watermark {
                sub,
                at,
                expires_at,
            } => {
                let new = Watermark {
                    at: *at,
                    expires_at: *expires_at,
                };
                let slot = reservation.unwrap_or_else(|| self.force_reserve());
                // Counted before the insert so the hot path never skips a
                // watermark that is in the cache.
                self.watermarks_held.fetch_add(1, Ordering::AcqRel);
                let writing = self.filter.write();
                self.filter.add(&writing, self.filter.hash_str(sub));
                let result = self
                    .watermarks
                    .entry(sub.clone())
                    .and_compute_with(|old| match old {
                        Some(e) => {
                            let o = *e.value();
                            let merged = Watermark {
                                at: o.at.max(new.at),
                                expires_at: o.expires_at.max(new.expires_at),
                            };
                            if merged == o {
                                Op::Nop
                            } else {
                                Op::Put(merged)
                            }
                        }
                        None => Op::Put(new),
                    });
                match result {
                    CompResult::Inserted(_) => {
                        slot.keep();
                        Applied::Watermark(new)
                    }
                    CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                        self.watermarks_held.fetch_sub(1, Ordering::AcqRel);
                        Applied::Watermark(e.into_value())
                    }
                    CompResult::StillNone(_) | CompResult::Removed(_) => {
                        self.watermarks_held.fetch_sub(1, Ordering::AcqRel);
                        Applied::Watermark(new)
                    }
                }
            }
            Record::Lift { key } => {
                let now = self.clock.now();
                let removed = self.revoked.remove(key.0);
                if removed.is_some() {
                    self.used.fetch_sub(1, Ordering::AcqRel);
                    self.filter.note_removed(1);
                }
                Applied::Lifted(removed.is_some_and(|exp| now < exp))
            }
        }
    }

    /// Housekeeping, now: revocations expired by our clock and watermarks
    /// expired by moka's leave and give their slots back. The gateway does
    /// this every second; tests and benches call it to observe a settled
    /// state.
    pub(crate) fn run_pending_tasks(&self) {
        let swept = self.revoked.sweep(self.clock.now());
        if swept > 0 {
            self.used
                .fetch_sub(i64::try_from(swept).unwrap_or(i64::MAX), Ordering::AcqRel);
            self.filter.note_removed(swept);
        }
        self.watermarks.run_pending_tasks();
    }

    /// Bytes of the revoked-key table's slot arrays.
    pub(crate) fn table_bytes(&self) -> u64 {
        self.revoked.bytes()
    }

    /// Whether the table still holds `key`, expired or not (tests only).
    #[cfg(test)]
    pub(crate) fn holds(&self, key: RevocationKey) -> bool {
        self.revoked.get(key.0).is_some()
    }
}

/// Eviction listener: an entry that left (expired or removed) frees its slot.
/// A replaced value keeps it. moka is built without a size bound, so
/// `RemovalCause::Size` never happens. Returns whether a slot was freed.
fn release_on_removal(used: &AtomicI64, cause: RemovalCause) -> bool {
    match cause {
        RemovalCause::Expired | RemovalCause::Explicit | RemovalCause::Size => {
            used.fetch_sub(1, Ordering::AcqRel);
            true
        }
        RemovalCause::Replaced => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::clock::ManualClock;

    const T: u64 = 1_700_000_000;

    fn list(capacity: u64) -> (Blocklist, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T));
        (Blocklist::new(capacity, clock.clone()), clock)
    }

    fn revoke(key: u128, expires_at: u64) -> Record {
        Record::Revoke {
            key: RevocationKey(key),
            expires_at,
        }
    }

    #[test]
    fn revoked_key_is_refused_until_expires_at_by_our_clock() {
        let (b, clock) = list(10);
        let k = RevocationKey(7);
        assert!(!b.is_revoked(k, None, None));
        b.apply(&revoke(7, T + 10), None);
        assert!(b.is_revoked(k, None, None));
        assert_eq!(b.get(k), Some(T + 10));
        clock.set(T + 9);
        assert!(b.is_revoked(k, None, None));
        clock.set(T + 10);
        assert!(!b.is_revoked(k, None, None));
        assert_eq!(b.get(k), None);
    }

    #[test]
    fn revocation_expiry_only_moves_later() {
        let (b, _) = list(10);
        b.apply(&revoke(1, T + 100), None);
        assert_eq!(
            b.apply(&revoke(1, T + 50), None),
            Applied::Revoked {
                expires_at: T + 100
            }
        );
        assert_eq!(b.get(RevocationKey(1)), Some(T + 100));
        b.apply(&revoke(1, T + 200), None);
        assert_eq!(b.get(RevocationKey(1)), Some(T + 200));
        b.run_pending_tasks();
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn reservation_is_returned_when_not_kept() {
        let (b, _) = list(2);
        let r = b.reserve().expect("slot");
        assert_eq!(b.len(), 1);
        drop(r);
        assert_eq!(b.len(), 0);
        // An update of an existing key hands its reservation back.
        b.apply(&revoke(1, T + 10), None);
        let r = b.reserve().expect("slot");
        b.apply(&revoke(1, T + 20), Some(r));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn lift_frees_the_slot() {
        let (b, _) = list(1);
        b.apply(&revoke(1, T + 10), Some(b.reserve().expect("slot")));
        assert!(matches!(b.reserve(), Err(StoreError::Full)));
        assert_eq!(
            b.apply(
                &Record::Lift {
                    key: RevocationKey(1)
                },
                None
            ),
            Applied::Lifted(true)
        );
        b.run_pending_tasks();
        assert_eq!(b.len(), 0);
        assert!(b.reserve().is_ok());
        assert_eq!(
            b.apply(
                &Record::Lift {
                    key: RevocationKey(1)
                },
                None
            ),
            Applied::Lifted(false)
        );
    }

    #[test]
    fn slots_balance_and_filter_rebuilds_after_updates_lifts_and_expiry() {
        // Revocations expire by our clock; watermarks leave moka by its
        // timer, which runs on real time.
        let clock = Arc::new(ManualClock::at_system_time());
        let now = clock.now();
        let b = Blocklist::new(10_000, clock.clone());
        for k in 0..1000u128 {
            b.apply(&revoke(k, now + 1), None);
            b.apply(&revoke(k, now + 2), None); // replaced
            b.apply(&revoke(k, now + 1), None); // unchanged
        }
        for i in 0..10u64 {
            let wm = |at| Record::Watermark {
                sub: format!("user-{i}").into(),
                at,
                expires_at: now + 1,
            };
            b.apply(&wm(now), None);
            b.apply(&wm(now - 1), None);
        }
        for k in 0..500u128 {
            b.apply(
                &Record::Lift {
                    key: RevocationKey(k),
                },
                None,
            );
        }
        assert!((500..1000u128).all(|k| b.is_revoked(RevocationKey(k), None, None)));
        assert!(b.is_revoked(RevocationKey(9999), Some("user-3"), None));
        b.run_pending_tasks();
        assert_eq!(b.len(), 510, "nothing expired yet by our clock");
        clock.set(now + 2);
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.len() > 0 && Instant::now() < deadline {
            b.run_pending_tasks();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(b.len(), 0, "entries left after expiry");
        assert!(!b.filter.is_clear());
        b.rebuild_filter();
        assert!(b.filter.is_clear(), "rebuild kept bits of gone entries");
        assert_eq!(b.watermarks_held.load(Ordering::Acquire), 0);
    }
}
