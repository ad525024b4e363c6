//! A Bloom filter in front of the revoked-key table and the watermarks: the hot path's answer for the
//! common case, "never revoked", in one atomic load from a small array.
//!
//! Why: a lookup that misses in a large table costs at least one dependent
//! cache miss into memory the size of the blocklist (the revoked-key table
//! in `table.rs` is about 50 MB at 1M entries; one dependent DRAM access
//! costs 350-450 ns on our 2-core VM), and the watermarks' moka cache costs
//! more (a boxed bucket, then the `Arc`'d key). The filter is a blocked Bloom
//! filter: a key maps to one 64-bit word and sets 4 bits in it; if any is
//! clear the key is certainly absent, otherwise the table (or, for a
//! subject, the watermark cache) is asked. Sized to the live entries (16-32
//! bits each, so 1M entries take 2 MiB), not to the capacity.
//!
//! Bits are never cleared: an expired or lifted entry only leaves a false
//! positive behind. The filter is rebuilt from the caches when it gets too
//! full or too stale, and the new one is swapped in with `arc-swap` (readers
//! never lock).
//!
//! Invariant (no false negatives): a key's bits are set before its entry
//! enters a cache. Adds and rebuilds take `writers`, so a rebuild sees every
//! entry added before it, and every add after it lands in the new filter.

use arc_swap::ArcSwap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Keys a filter is built for at least (8 KiB).
const MIN_KEYS: u64 = 4096;

/// Keys per word a filter is built for: 16 bits per key, about 0.5% false
/// positives (2 MiB for 1M entries).
const KEYS_PER_WORD: u64 = 4;

/// Keys per word at which the filter is rebuilt larger (about 3% false
/// positives): twice the build load, so rebuilds come at each doubling.
const FULL_KEYS_PER_WORD: u64 = 8;

/// One blocked Bloom filter, fixed in size.
pub(crate) struct Bits {
    words: Box<[AtomicU64]>,
    mask: u64,
}

impl Bits {
    /// Room for `keys` keys at [`KEYS_PER_WORD`] (rounded up to a power of
    /// two words).
    fn for_keys(keys: u64) -> Self {
        let n = keys
            .max(MIN_KEYS)
            .div_ceil(KEYS_PER_WORD)
            .next_power_of_two();
        Bits {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
        }
    }

    /// Low bits pick the word, four 6-bit fields of the high bits the bits.
    #[inline]
    fn locate(&self, h: u64) -> (&AtomicU64, u64) {
        let word = &self.words[(h & self.mask) as usize];
        let bits = (1u64 << ((h >> 40) & 63))
            | (1u64 << ((h >> 46) & 63))
            | (1u64 << ((h >> 52) & 63))
            | (1u64 << ((h >> 58) & 63));
        (word, bits)
    }

    #[inline]
    fn may_contain(&self, h: u64) -> bool {
        let (word, bits) = self.locate(h);
        word.load(Ordering::Acquire) & bits == bits
    }

    fn add(&self, h: u64) {
        let (word, bits) = self.locate(h);
        word.fetch_or(bits, Ordering::AcqRel);
    }

    fn words(&self) -> u64 {
        self.mask + 1
    }
}

/// The filter in force, with what it takes to replace it.
pub(crate) struct Filter {
    current: ArcSwap<Bits>,
    /// Taken by adds (around the cache insert) and by rebuilds.
    writers: Mutex<()>,
    /// Keys added to the current bits (including those it was built with).
    added: AtomicU64,
    /// Entries that left the caches since the current bits were built.
    removed: AtomicU64,
    /// Seed of the subject-string hash, random per process.
    seed: u64,
}

/// Proof that the writer lock is held: adds need it.
pub(crate) struct WriteGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Filter {
    /// An empty filter.
    pub(crate) fn new() -> Self {
        Filter {
            current: ArcSwap::from_pointee(Bits::for_keys(0)),
            writers: Mutex::new(()),
            added: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            seed: std::collections::hash_map::RandomState::new()
                .hash_one(0x0072_6576_6761_7465_u64),
        }
    }

    /// The filter hash of a revocation key (a digest: fold and mix).
    #[inline]
    pub(crate) fn hash_key(key: u128) -> u64 {
        fmix64((key as u64) ^ ((key >> 64) as u64).rotate_left(32))
    }

    /// The filter hash of a subject: 8 bytes per step, seeded per process so
    /// collisions cannot be precomputed (they would only cost a table lookup).
    #[inline]
    pub(crate) fn hash_str(&self, s: &str) -> u64 {
        let mut h = self.seed ^ (s.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut chunks = s.as_bytes().chunks_exact(8);
        for c in &mut chunks {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(c);
            h = mix(h, u64::from_le_bytes(buf));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            h = mix(h, u64::from_le_bytes(buf));
        }
        fmix64(h)
    }

    /// False: the key is certainly absent. True: it may be present.
    #[inline]
    pub(crate) fn may_contain(&self, h: u64) -> bool {
        self.current.load().may_contain(h)
    }

    /// Takes the writer lock; hold it across the add and the cache insert.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        WriteGuard(self.writers.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Marks `h` as possibly present.
    pub(crate) fn add(&self, _writing: &WriteGuard<'_>, h: u64) {
        self.current.load().add(h);
        self.added.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that an entry left a cache (its bits go stale).
    pub(crate) fn note_removed(&self, n: u64) {
        self.removed.fetch_add(n, Ordering::AcqRel);
    }

    /// Whether the filter is too full (false positives climb) or too stale
    /// (at least as many left entries as live ones).
    pub(crate) fn needs_rebuild(&self) -> bool {
        let added = self.added.load(Ordering::Acquire);
        let removed = self.removed.load(Ordering::Acquire);
        let words = self.current.load().words();
        added > words * FULL_KEYS_PER_WORD || (removed >= MIN_KEYS && removed * 2 >= added.max(1))
    }

    /// Builds a new filter from `live` (about `count` hashes of the entries
    /// in the caches) and swaps it in. Adds wait meanwhile.
    pub(crate) fn rebuild(&self, count: u64, live: impl FnOnce(&mut dyn FnMut(u64))) {
        let _writing = self.write();
        let bits = Bits::for_keys(count);
        let mut n = 0u64;
        live(&mut |h| {
            bits.add(h);
            n += 1;
        });
        self.current.store(std::sync::Arc::new(bits));
        self.added.store(n, Ordering::Release);
        self.removed.store(0, Ordering::Release);
    }

    /// Bytes held by the current bits.
    pub(crate) fn bytes(&self) -> u64 {
        self.current.load().words() * 8
    }

    /// Whether no bit is set (tests).
    #[cfg(test)]
    pub(crate) fn is_clear(&self) -> bool {
        self.current
            .load()
            .words
            .iter()
            .all(|w| w.load(Ordering::Acquire) == 0)
    }
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31)
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn keys(range: std::ops::Range<u128>) -> Vec<u64> {
        range.map(|k| Filter::hash_key(k * 7919)).collect()
    }

    #[test]
    fn added_keys_are_always_found() {
        let f = Filter::new();
        let hs = keys(0..50_000); // far past the initial size
        {
            let w = f.write();
            for h in &hs {
                f.add(&w, *h);
            }
        }
        assert!(hs.iter().all(|h| f.may_contain(*h)), "false negative");
        assert!(f.needs_rebuild(), "overfull filter not flagged");
    }

    #[test]
    fn rebuild_keeps_live_keys_and_drops_stale_ones() {
        let f = Filter::new();
        let hs = keys(0..20_000);
        {
            let w = f.write();
            for h in &hs {
                f.add(&w, *h);
            }
        }
        for _ in 0..15_000 {
            f.note_removed(1);
        }
        assert!(f.needs_rebuild(), "stale filter not flagged");
        let live = hs[15_000..].to_vec();
        f.rebuild(live.len() as u64, |add| live.iter().for_each(|h| add(*h)));
        assert!(!f.needs_rebuild());
        assert!(live.iter().all(|h| f.may_contain(*h)), "false negative");
        let stale = hs[..15_000].iter().filter(|h| f.may_contain(**h)).count();
        assert!(stale < 150, "{stale} stale keys still pass");
        f.rebuild(0, |_| {});
        assert!(f.is_clear());
    }

    #[test]
    fn few_false_positives_at_build_size() {
        let f = Filter::new();
        let hs = keys(0..100_000);
        f.rebuild(hs.len() as u64, |add| hs.iter().for_each(|h| add(*h)));
        let probes = keys(1_000_000..1_100_000);
        let fp = probes.iter().filter(|h| f.may_contain(**h)).count();
        // About 3 keys per word after rounding up: ~0.3%.
        assert!(fp < 1000, "{fp} false positives in 100k");
    }

    #[test]
    fn adds_racing_a_rebuild_are_never_lost() {
        let f = Arc::new(Filter::new());
        let hs = Arc::new(keys(0..20_000));
        // The "cache": what a rebuild reads, appended under the writer lock.
        let cache = Arc::new(Mutex::new(Vec::new()));
        let (f2, hs2, cache2) = (Arc::clone(&f), Arc::clone(&hs), Arc::clone(&cache));
        let adder = std::thread::spawn(move || {
            for h in hs2.iter() {
                let w = f2.write();
                f2.add(&w, *h);
                cache2
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(*h);
            }
        });
        for _ in 0..50 {
            let snapshot = cache.lock().unwrap_or_else(PoisonError::into_inner).clone();
            // A rebuild reads the cache under the writer lock, as the
            // blocklist's does.
            f.rebuild(snapshot.len() as u64, |add| {
                cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .for_each(|h| add(*h))
            });
        }
        assert!(adder.join().is_ok());
        assert!(hs.iter().all(|h| f.may_contain(*h)), "an add was lost");
    }

    #[test]
    fn string_hash_is_seeded_and_spread() {
        let f = Filter::new();
        assert_eq!(f.hash_str("alice"), f.hash_str("alice"));
        assert_ne!(f.hash_str("alice"), f.hash_str("alicf"));
        assert_ne!(f.hash_str(""), f.hash_str("\0"));
        assert_ne!(f.hash_str("12345678"), f.hash_str("123456789"));
    }
}
