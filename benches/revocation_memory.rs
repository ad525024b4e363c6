//! Resident memory per revoked entry at 1M entries.
//!
//! `cargo bench --bench revocation_memory`
//!
//! Each variant runs in a fresh child process (this binary re-executed) so
//! freed memory from one cannot hide another's. A child reads `VmRSS` from
//! `/proc/self/status` before and after inserting the entries (after
//! housekeeping has run) and prints the difference per entry. Variants:
//!
//! - `revocations`: the real `Revocations` blocklist (memory only): the
//!   revoked-key table and its Bloom filter.
//! - `moka_expiry`: a bare moka cache with per-entry expiry and an eviction
//!   listener, as the blocklist built it before the table replaced it.
//! - `moka_plain`: a bare unbounded moka cache without expiry.
//! - `hashmap`: `std::collections::HashMap<u128, u64>`, the floor.
//!
//! Entries: `REVGATE_BENCH_ENTRIES` (default 1,000,000).

use moka::sync::Cache;
use revgate::config::{OnStoreDown, RevocationConfig, StoreKind};
use revgate::revocation::{Policy, RevocationKey, Revocations};
use revgate::telemetry::metrics::Metrics;
use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VARIANTS: [&str; 4] = ["revocations", "moka_expiry", "moka_plain", "hashmap"];

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn key(i: u64) -> u128 {
    // Well-spread 128-bit keys, like the SHA-256 digests in production.
    let a = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
    let b = a.rotate_left(29).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (u128::from(a) << 64) | u128::from(b)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn entries() -> u64 {
    std::env::var("REVGATE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

struct UntilExp;

impl moka::Expiry<u128, u64> for UntilExp {
    fn expire_after_create(&self, _: &u128, v: &u64, _: std::time::Instant) -> Option<Duration> {
        Some(Duration::from_secs(v.saturating_sub(now())))
    }
}

fn child(variant: &str) {
    let n = entries();
    let exp = now() + 3600;
    let before = rss_bytes();
    let started = Instant::now();
    // Keep each structure alive until after the second reading.
    let keep: Box<dyn std::any::Any> = match variant {
        "revocations" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let cfg = RevocationConfig {
                store: StoreKind::Local,
                path: None,
                capacity: n * 2,
                redis_url: None,
                redis_prefix: "revgate:".into(),
                on_store_down: OnStoreDown::Deny,
                max_staleness: revgate::config::DEFAULT_MAX_STALENESS,
            };
            let r = rt.block_on(async {
                let m = Arc::new(Metrics::new(Vec::new()));
                let r = Revocations::open(
                    &cfg,
                    Policy::new(Duration::ZERO, Duration::from_secs(86_400)),
                    m,
                )
                .await
                .expect("open");
                for i in 0..n {
                    r.revoke(RevocationKey(key(i)), exp).await.expect("revoke");
                }
                r
            });
            r.run_pending_tasks();
            assert_eq!(r.len(), n);
            Box::new((rt, r))
        }
        "moka_expiry" => {
            let c: Cache<u128, u64> = Cache::builder()
                .expire_after(UntilExp)
                .eviction_listener(|_, _, _| {})
                .build();
            for i in 0..n {
                c.insert(key(i), exp);
            }
            c.run_pending_tasks();
            Box::new(c)
        }
        "moka_plain" => {
            let c: Cache<u128, u64> = Cache::builder().build();
            for i in 0..n {
                c.insert(key(i), exp);
            }
            c.run_pending_tasks();
            Box::new(c)
        }
        _ => {
            let mut m = HashMap::new();
            for i in 0..n {
                m.insert(key(i), exp);
            }
            Box::new(m)
        }
    };
    let elapsed = started.elapsed();
    let after = rss_bytes();
    black_box(&keep);
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{variant:<12} entries={n} rss_delta={:.1} MiB bytes/entry={per:.1} insert={:.0} ns/entry",
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
        elapsed.as_nanos() as f64 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--variant") {
        if let Some(v) = args.get(pos + 1) {
            child(v);
            return;
        }
    }
    // `cargo bench` passes `--bench`; run every variant in its own process.
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this executable: {e}");
            std::process::exit(1);
        }
    };
    for v in VARIANTS {
        match Command::new(&exe).args(["--variant", v]).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("variant {v} failed: {other:?}"),
        }
    }
}
