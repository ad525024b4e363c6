//! Durable revocations per second with 1 and with 64 concurrent clients, and
//! the start-up time of a store holding many entries.
//!
//! `cargo bench --bench revocation_durable`
//!
//! Each run opens a fresh local store under Cargo's target tmp directory and
//! has N tasks (on a 2-worker tokio runtime) call `Revocations::revoke` with
//! new keys in a loop for `REVGATE_BENCH_SECS` (default 3) seconds. Every
//! call returns only after its batch was fsync'd, so the figure is bounded by
//! the disk's fsync latency; group commit is what lets 64 clients go faster
//! than 1. Prints revocations/s, commits (fsyncs), records per commit and the
//! per-call latency (p50/p99/max) from an HDR histogram.
//!
//! Then the start-up row: a store is filled with `REVGATE_BENCH_STARTUP_ENTRIES`
//! (default 1,000,000) revocations by 1024 concurrent clients, closed, and
//! opened again; it prints the time `Revocations::open` took to read and
//! check the store and load every entry, and the store's size on disk.
//! `REVGATE_BENCH_STARTUP_ENTRIES=0` skips it.

use hdrhistogram::Histogram;
use revgate::config::{OnStoreDown, RevocationConfig, StoreKind};
use revgate::revocation::{Policy, RevocationKey, Revocations};
use revgate::telemetry::metrics::Metrics;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn config(dir: &std::path::Path) -> RevocationConfig {
    RevocationConfig {
        store: StoreKind::Local,
        path: Some(dir.to_path_buf()),
        capacity: 100_000_000,
        redis_url: None,
        redis_prefix: "revgate:".into(),
        on_store_down: OnStoreDown::Deny,
        max_staleness: revgate::config::DEFAULT_MAX_STALENESS,
    }
}

async fn open(dir: &std::path::Path) -> Result<Arc<Revocations>, String> {
    let metrics = Arc::new(Metrics::new(Vec::new()));
    Revocations::open(
        &config(dir),
        Policy::new(Duration::from_secs(30), Duration::from_secs(86_400)),
        metrics,
    )
    .await
    .map_err(|e| e.to_string())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

async fn startup(entries: u64) -> Result<(), String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("revocation-durable-startup");
    let _ = std::fs::remove_dir_all(&dir);
    let r = open(&dir).await?;
    let next = Arc::new(AtomicU64::new(0));
    let fill = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1024 {
        let (r, next) = (Arc::clone(&r), Arc::clone(&next));
        tasks.spawn(async move {
            let exp = now() + 3600;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= entries {
                    return Ok::<(), String>(());
                }
                r.revoke(RevocationKey::from_jti(&format!("startup-{n}")), exp)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let filled = fill.elapsed().as_secs_f64();
    r.close().await;
    drop(r);
    let started = Instant::now();
    let r = open(&dir).await?;
    let opened = started.elapsed().as_secs_f64();
    let held = r.len();
    r.close().await;
    println!(
        "startup entries={entries} open={opened:.2}s held={held} store_bytes={} (filled in {filled:.1}s, {:.0}/s with 1024 clients)",
        dir_bytes(&dir),
        entries as f64 / filled
    );
    let _ = std::fs::remove_dir_all(&dir);
    if held < entries {
        return Err(format!("only {held} of {entries} entries loaded"));
    }
    Ok(())
}

async fn run(clients: u64, secs: u64) -> Result<(), String> {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("revocation-durable-{clients}"));
    let _ = std::fs::remove_dir_all(&dir);
    let r = open(&dir).await?;
    let next = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (r, next, hist) = (Arc::clone(&r), Arc::clone(&next), Arc::clone(&hist));
        tasks.spawn(async move {
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let exp = now() + 3600;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                r.revoke(RevocationKey::from_jti(&format!("bench-{n}")), exp)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = local.record(t.elapsed().as_micros().max(1) as u64);
            }
            if let Ok(mut h) = hist.lock() {
                let _ = h.add(&local);
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = next.load(Ordering::Relaxed);
    let commits = r.durable_commits().max(1);
    r.close().await;
    let h = hist.lock().map_err(|e| e.to_string())?;
    println!(
        "clients={clients:<3} revocations={total:<7} {:>8.0}/s  commits={commits:<6} records/commit={:>6.1}  latency p50={}us p99={}us max={}us",
        total as f64 / elapsed,
        total as f64 / commits as f64,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() {
    let secs = std::env::var("REVGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    for clients in [1, 64] {
        if let Err(e) = rt.block_on(run(clients, secs)) {
            eprintln!("clients={clients}: {e}");
            std::process::exit(1);
        }
    }
    let entries = std::env::var("REVGATE_BENCH_STARTUP_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if entries > 0 {
        if let Err(e) = rt.block_on(startup(entries)) {
            eprintln!("startup: {e}");
            std::process::exit(1);
        }
    }
}
