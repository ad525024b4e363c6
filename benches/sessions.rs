//! The per-request revocation check, `Revocations::check`, for tokens that
//! carry a `sid`, with 0 and 1M revoked sessions: a token whose session is
//! live (the common case), one whose session is revoked, and a token
//! without `sid` as the baseline.
//!
//! `cargo bench --bench sessions -- --warm-up-time 1 --measurement-time 3`
//!
//! Method: sessions are revoked through `Revocations::revoke_session`
//! (memory only), then housekeeping runs so the measured state is settled.
//! Probes cycle through 65,536 pre-built claims so the table is not all in
//! CPU cache. Single-threaded: no contention is measured.

use criterion::{criterion_group, criterion_main, Criterion};
use revgate::auth::Claims;
use revgate::config::{OnStoreDown, RevocationConfig, StoreKind};
use revgate::revocation::{Policy, RevocationKey, Revocations, TokenKeys, Via};
use revgate::telemetry::metrics::Metrics;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PROBES: usize = 1 << 16;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Verified claims of a token with `jti` and, when given, `sid`.
fn claims(jti: &str, sid: Option<&str>) -> Claims {
    Claims {
        sub: Some("alice@example.com".into()),
        jti: Some(jti.into()),
        sid: sid.map(Into::into),
        exp: now() + 3600,
        nbf: None,
        iat: Some(now()),
        scopes: Vec::new(),
        revocation: TokenKeys::from(RevocationKey::from_jti(jti)),
        session: sid.map(RevocationKey::from_sid),
        fingerprint: None,
        log_plain: true,
        raw: Default::default(),
    }
}

fn filled(rt: &tokio::runtime::Runtime, n: usize) -> Arc<Revocations> {
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
        for i in 0..n {
            r.revoke_session(&format!("revoked-session-{i}"), Via::Admin)
                .await
                .expect("revoke");
        }
        r.run_pending_tasks();
        r
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let live: Vec<Claims> = (0..PROBES)
        .map(|i| claims(&format!("jti-{i}"), Some(&format!("live-session-{i}"))))
        .collect();
    let no_sid: Vec<Claims> = (0..PROBES)
        .map(|i| claims(&format!("jti-{i}"), None))
        .collect();
    let mut group = c.benchmark_group("check_sid");
    for n in [0usize, 1_000_000] {
        let r = filled(&rt, n);
        let mut i = 0usize;
        group.bench_function(format!("no_sid/{n}"), |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                black_box(r.check(black_box(&no_sid[i])))
            })
        });
        group.bench_function(format!("live_sid/{n}"), |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                black_box(r.check(black_box(&live[i])))
            })
        });
        if n > 0 {
            let revoked: Vec<Claims> = (0..PROBES)
                .map(|i| {
                    let s = format!("revoked-session-{}", i * (n / PROBES));
                    claims(&format!("jti-r-{i}"), Some(&s))
                })
                .collect();
            group.bench_function(format!("revoked_sid/{n}"), |b| {
                b.iter(|| {
                    i = (i + 1) & (PROBES - 1);
                    black_box(r.check(black_box(&revoked[i])))
                })
            });
            assert!(revoked.iter().all(|c| r.check(c)));
        }
        assert!(!live.iter().any(|c| r.check(c)));
        drop(r);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
