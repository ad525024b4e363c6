//! The revoked-key table: 128-bit [`super::RevocationKey`]s to their
//! `expires_at`, in flat open-addressing arrays.
//!
//! Why not moka, which holds the subject watermarks and the verified-token
//! cache: moka keeps, per entry, a reference-counted value entry, nodes in its
//! access-order and write-order deques and a timer-wheel node for per-entry
//! expiry, about 370 resident bytes per revocation at 1M entries. Here an
//! entry is one 24-byte slot (key as two `u64`s, so no 16-byte alignment
//! padding, and `expires_at`), at a load between 3/8 and 3/4: 32-64 bytes
//! per entry.
//!
//! - 64 shards, each a power-of-two `Vec` of slots behind a `RwLock`: lookups
//!   share a shard, writes to different shards do not contend.
//! - Linear probing from the key's low bits (keys are SHA-256 digests, so
//!   their bits are uniform; the shard comes from the high bits).
//! - Removal shifts the rest of the probe run back (no tombstones), so a
//!   lookup never walks past dead slots.
//! - Expiry is judged by the caller's clock in [`Table::sweep`], which skips
//!   a shard until its earliest `expires_at` has passed, and shrinks a shard
//!   left mostly empty.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Slots a shard starts with once it holds anything.
const MIN_SLOTS: usize = 16;

/// `expires_at` of an empty slot. A revocation never expires at the epoch,
/// so [`Table::upsert_later`] stores at least 1.
const EMPTY: u64 = 0;

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: [u64; 2],
    expires_at: u64,
}

const VACANT: Slot = Slot {
    key: [0, 0],
    expires_at: EMPTY,
};

fn split(key: u128) -> [u64; 2] {
    [key as u64, (key >> 64) as u64]
}

fn join(key: [u64; 2]) -> u128 {
    u128::from(key[0]) | (u128::from(key[1]) << 64)
}

/// What [`Table::upsert_later`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upsert {
    /// A new entry.
    Inserted,
    /// The entry was there; its `expires_at` is now this (the later one).
    Present(u64),
}

#[derive(Debug)]
struct Shard {
    /// Empty (no allocation) or a power of two long.
    slots: Vec<Slot>,
    len: usize,
    /// No entry expires before this second (`u64::MAX` when empty).
    next_expiry: u64,
}

impl Shard {
    const fn new() -> Self {
        Shard {
            slots: Vec::new(),
            len: 0,
            next_expiry: u64::MAX,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    #[inline]
    fn home(key: [u64; 2], mask: usize) -> usize {
        key[0] as usize & mask
    }

    #[inline]
    fn find(&self, key: [u64; 2]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = Self::home(key, mask);
        loop {
            let slot = &self.slots[i];
            if slot.expires_at == EMPTY {
                return None;
            }
            if slot.key == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts a key known to be absent, with room known to be there.
    fn place(slots: &mut [Slot], slot: Slot) {
        let mask = slots.len() - 1;
        let mut i = Self::home(slot.key, mask);
        while slots[i].expires_at != EMPTY {
            i = (i + 1) & mask;
        }
        slots[i] = slot;
    }

    fn resize(&mut self, len: usize) {
        let mut slots = vec![VACANT; len];
        for slot in self.slots.iter().filter(|s| s.expires_at != EMPTY) {
            Self::place(&mut slots, *slot);
        }
        self.slots = slots;
    }

    fn upsert_later(&mut self, key: [u64; 2], expires_at: u64) -> Upsert {
        let expires_at = expires_at.max(1);
        if let Some(i) = self.find(key) {
            let slot = &mut self.slots[i];
            slot.expires_at = slot.expires_at.max(expires_at);
            return Upsert::Present(slot.expires_at);
        }
        // Grow past a load of 3/4.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        Self::place(&mut self.slots, Slot { key, expires_at });
        self.len += 1;
        self.next_expiry = self.next_expiry.min(expires_at);
        Upsert::Inserted
    }

    /// Empties slot `i` and shifts back the rest of its probe run.
    fn remove_at(&mut self, i: usize) {
        let mask = self.mask();
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot.expires_at == EMPTY {
                break;
            }
            // The entry at `j` may fill the hole if its home is not after
            // the hole (cyclically): its probe distance reaches back to it.
            let distance = j.wrapping_sub(Self::home(slot.key, mask)) & mask;
            if distance >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = slot;
                hole = j;
            }
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
    }

    fn remove(&mut self, key: [u64; 2]) -> Option<u64> {
        let i = self.find(key)?;
        let expires_at = self.slots[i].expires_at;
        self.remove_at(i);
        Some(expires_at)
    }

    /// Removes entries with `expires_at <= now`; returns how many.
    fn sweep(&mut self, now: u64) -> u64 {
        if now < self.next_expiry {
            return 0;
        }
        let mut removed = 0;
        let mut next = u64::MAX;
        let mut i = 0;
        while i < self.slots.len() {
            let exp = self.slots[i].expires_at;
            if exp != EMPTY && exp <= now {
                // Something from later in the run may move into `i`: look
                // at `i` again. Entries only ever move back, so none is
                // skipped.
                self.remove_at(i);
                removed += 1;
                continue;
            }
            if exp != EMPTY {
                next = next.min(exp);
            }
            i += 1;
        }
        self.next_expiry = next;
        // Shrink below a load of 1/8, to a load of at most 1/2.
        if self.len == 0 {
            self.slots = Vec::new();
        } else if self.len * 8 < self.slots.len() && self.slots.len() > MIN_SLOTS {
            self.resize((self.len * 2).next_power_of_two().max(MIN_SLOTS));
        }
        removed
    }
}

/// See the module documentation.
pub(crate) struct Table {
    shards: Box<[RwLock<Shard>]>,
}

impl Table {
    pub(crate) fn new() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect(),
        }
    }

    #[inline]
    fn shard_of(&self, key: [u64; 2]) -> &RwLock<Shard> {
        &self.shards[(key[1] >> (64 - SHARD_BITS)) as usize]
    }

    // A panic while a shard is held leaves it consistent for readers (every
    // mutation completes slot by slot), so poisoning is ignored.
    fn read(lock: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        lock.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(lock: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        lock.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored `expires_at` of `key`, live or not yet swept.
    #[inline]
    pub(crate) fn get(&self, key: u128) -> Option<u64> {
        let key = split(key);
        let shard = Self::read(self.shard_of(key));
        shard.find(key).map(|i| shard.slots[i].expires_at)
    }

    /// Inserts `key`, or moves its `expires_at` later (never earlier).
    pub(crate) fn upsert_later(&self, key: u128, expires_at: u64) -> Upsert {
        let key = split(key);
        Self::write(self.shard_of(key)).upsert_later(key, expires_at)
    }

    /// Removes `key`; its stored `expires_at` if it was there.
    pub(crate) fn remove(&self, key: u128) -> Option<u64> {
        let key = split(key);
        Self::write(self.shard_of(key)).remove(key)
    }

    /// Removes every entry with `expires_at <= now`, one shard at a time;
    /// returns how many left.
    pub(crate) fn sweep(&self, now: u64) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                if Self::read(s).next_expiry > now {
                    return 0;
                }
                Self::write(s).sweep(now)
            })
            .sum()
    }

    /// Calls `f` with every key held, one shard at a time.
    pub(crate) fn for_each_key(&self, mut f: impl FnMut(u128)) {
        for s in self.shards.iter() {
            let shard = Self::read(s);
            for slot in shard.slots.iter().filter(|s| s.expires_at != EMPTY) {
                f(join(slot.key));
            }
        }
    }

    /// Calls `f` with every key held and its `expires_at`, one shard at a
    /// time (under that shard's read lock: `f` must be quick).
    pub(crate) fn for_each_entry(&self, mut f: impl FnMut(u128, u64)) {
        for s in self.shards.iter() {
            let shard = Self::read(s);
            for slot in shard.slots.iter().filter(|s| s.expires_at != EMPTY) {
                f(join(slot.key), slot.expires_at);
            }
        }
    }

    /// Entries held, live or not yet swept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.shards.iter().map(|s| Self::read(s).len as u64).sum()
    }

    /// Bytes of slot arrays allocated.
    pub(crate) fn bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| (Self::read(s).slots.capacity() * std::mem::size_of::<Slot>()) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Keys that share a shard and whose home slots all fall among the
    /// first 16: long probe runs, entries that must stay put when a hole
    /// opens before their home, and, while the shard has 16 slots, runs
    /// that wrap around the end.
    fn crowded(i: u64) -> u128 {
        u128::from((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) | (i << 20))
    }

    #[test]
    fn slots_take_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn insert_get_extend_remove() {
        let t = Table::new();
        assert_eq!(t.get(7), None);
        assert_eq!(t.upsert_later(7, 100), Upsert::Inserted);
        assert_eq!(t.get(7), Some(100));
        assert_eq!(t.upsert_later(7, 50), Upsert::Present(100));
        assert_eq!(t.upsert_later(7, 200), Upsert::Present(200));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(7), Some(200));
        assert_eq!(t.remove(7), None);
        assert_eq!(t.get(7), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn expires_at_zero_is_stored_as_a_past_second() {
        let t = Table::new();
        t.upsert_later(1, 0);
        assert_eq!(t.get(1), Some(1));
        assert_eq!(t.sweep(1), 1);
        assert_eq!(t.get(1), None);
    }

    #[test]
    fn sweep_removes_only_what_expired_and_skips_shards_not_due() {
        let t = Table::new();
        for i in 0..1000u64 {
            t.upsert_later(crowded(i), if i % 2 == 0 { 10 } else { 20 });
        }
        assert_eq!(t.sweep(9), 0);
        assert_eq!(t.sweep(10), 500);
        assert_eq!(t.len(), 500);
        for i in 0..1000u64 {
            let want = (i % 2 == 1).then_some(20);
            assert_eq!(t.get(crowded(i)), want, "key {i}");
        }
        assert_eq!(t.sweep(19), 0);
        assert_eq!(t.sweep(20), 500);
        assert_eq!(t.len(), 0);
        assert_eq!(t.bytes(), 0, "an empty shard gives its slots back");
    }

    #[test]
    fn shards_shrink_after_mass_expiry() {
        let t = Table::new();
        for i in 0..10_000u128 {
            t.upsert_later(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                10 + (i % 100) as u64,
            );
        }
        let full = t.bytes();
        t.sweep(108);
        assert_eq!(t.len(), 100);
        assert!(t.bytes() * 8 < full, "{} of {full} bytes kept", t.bytes());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u8, u8),
        Remove(u8),
        Sweep(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u8>()).prop_map(|(k, e)| Op::Upsert(k, e)),
            any::<u8>().prop_map(Op::Remove),
            any::<u8>().prop_map(Op::Sweep),
        ]
    }

    proptest! {
        /// Against a HashMap, with keys crowded into one shard so that probe
        /// runs wrap around and removals shift entries back.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..400)) {
            let t = Table::new();
            let mut model: HashMap<u128, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Upsert(k, e) => {
                        let (k, e) = (crowded(u64::from(k)), u64::from(e).max(1));
                        let got = t.upsert_later(k, e);
                        match model.get_mut(&k) {
                            Some(old) => {
                                *old = (*old).max(e);
                                prop_assert_eq!(got, Upsert::Present(*old));
                            }
                            None => {
                                model.insert(k, e);
                                prop_assert_eq!(got, Upsert::Inserted);
                            }
                        }
                    }
                    Op::Remove(k) => {
                        let k = crowded(u64::from(k));
                        prop_assert_eq!(t.remove(k), model.remove(&k));
                    }
                    Op::Sweep(now) => {
                        let now = u64::from(now);
                        let before = model.len();
                        model.retain(|_, e| *e > now);
                        prop_assert_eq!(t.sweep(now), (before - model.len()) as u64);
                    }
                }
                prop_assert_eq!(t.len(), model.len() as u64);
            }
            for k in 0..=255u64 {
                let k = crowded(k);
                prop_assert_eq!(t.get(k), model.get(&k).copied());
            }
            let mut keys = Vec::new();
            t.for_each_key(|k| keys.push(k));
            keys.sort_unstable();
            let mut want: Vec<u128> = model.keys().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(keys, want);
        }
    }
}
