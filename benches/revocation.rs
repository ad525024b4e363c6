//! The per-request revocation check, `Revocations::is_revoked`, with 0, 100k
//! and 1M live revocations: a hit, a miss, and a miss whose subject is looked
//! up among 1,000 logout-all watermarks of other subjects; `miss_no_jti` is
//! a miss for a token without `jti` while the legacy-key window is open (its
//! signing-input key and its whole-token key are both probed).
//!
//! `cargo bench --bench revocation -- --warm-up-time 1 --measurement-time 3`
//!
//! Method: the blocklist is filled through the public async API (memory
//! only), then housekeeping is run so the measured state is settled.
//! Probes cycle through 65,536 pre-computed keys so the table is not all in
//! CPU cache; keys are uniformly random 128-bit values, as the real ones
//! (SHA-256 digests) are. Single-threaded: no contention is measured.

use criterion::{criterion_group, criterion_main, Criterion};
use revgate::config::{OnStoreDown, RevocationConfig, StoreKind};
use revgate::revocation::{Policy, RevocationKey, Revocations, TokenKeys};
use revgate::telemetry::metrics::Metrics;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PROBES: usize = 1 << 16;
const WATERMARKS: usize = 1000;

/// SplitMix64: a fast deterministic stream of well-mixed numbers.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn key(&mut self) -> RevocationKey {
        RevocationKey((u128::from(self.next()) << 64) | u128::from(self.next()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn filled(rt: &tokio::runtime::Runtime, n: usize) -> (Arc<Revocations>, Vec<RevocationKey>) {
    let cfg = RevocationConfig {
        store: StoreKind::Local,
        path: None,
        capacity: 4_000_000,
        redis_url: None,
        redis_prefix: "revgate:".into(),
        on_store_down: OnStoreDown::Deny,
        max_staleness: revgate::config::DEFAULT_MAX_STALENESS,
    };
    let day = Duration::from_secs(86_400);
    rt.block_on(async {
        let metrics = Arc::new(Metrics::new(Vec::new()));
        let r = Revocations::open(&cfg, Policy::new(Duration::from_secs(30), day), metrics)
            .await
            .expect("open");
        let mut rng = SplitMix(42);
        let exp = now() + 3600;
        let mut hits = Vec::with_capacity(PROBES);
        for i in 0..n {
            let k = rng.key();
            r.revoke(k, exp).await.expect("revoke");
            if hits.len() < PROBES && i % (n / PROBES).max(1) == 0 {
                hits.push(k);
            }
        }
        for i in 0..WATERMARKS {
            r.revoke_subject(&format!("user-{i}"), now())
                .await
                .expect("watermark");
        }
        r.run_pending_tasks();
        (r, hits)
    })
}

fn bench(c: &mut Criterion) {
    // Current-thread runtime: the housekeeping task only runs inside
    // `block_on`, never during a measurement.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = SplitMix(7);
    let misses: Vec<RevocationKey> = (0..PROBES).map(|_| rng.key()).collect();
    let mut group = c.benchmark_group("is_revoked");
    for n in [0usize, 100_000, 1_000_000] {
        let (r, hits) = filled(&rt, n);
        let mut i = 0usize;
        group.bench_function(format!("miss/{n}"), |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                black_box(r.is_revoked(black_box(misses[i]), None, None))
            })
        });
        group.bench_function(format!("miss_with_sub/{n}"), |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                black_box(r.is_revoked(
                    black_box(misses[i]),
                    Some(black_box("alice@example.com")),
                    Some(1),
                ))
            })
        });
        let mut l = 0usize;
        group.bench_function(format!("miss_no_jti/{n}"), |b| {
            b.iter(|| {
                l = (l + 1) & (PROBES - 1);
                let keys = TokenKeys {
                    key: misses[l],
                    legacy: Some(misses[(l + 1) & (PROBES - 1)]),
                };
                black_box(r.is_revoked(black_box(keys), None, None))
            })
        });
        let subs: Vec<String> = (0..1024)
            .map(|i| format!("subject-{i}@example.com"))
            .collect();
        let mut k = 0usize;
        group.bench_function(format!("miss_with_subs/{n}"), |b| {
            b.iter(|| {
                k = (k + 1) & 1023;
                black_box(r.is_revoked(black_box(misses[k]), Some(subs[k].as_str()), Some(1)))
            })
        });
        if !hits.is_empty() {
            let mut j = 0usize;
            group.bench_function(format!("hit/{n}"), |b| {
                b.iter(|| {
                    j = (j + 1) % hits.len();
                    black_box(r.is_revoked(black_box(hits[j]), None, None))
                })
            });
        }
        assert!(hits.iter().all(|k| r.is_revoked(*k, None, None)));
        assert!(!misses.iter().any(|k| r.is_revoked(*k, None, None)));
        drop(r);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
