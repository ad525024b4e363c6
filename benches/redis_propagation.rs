//! Replication through Redis, measured on the module itself (no HTTP):
//! two `RedisStore`s on one private `redis-server` (loopback) play replicas
//! A and B.
//!
//! * propagation delay: from `persist` returning on A to B's `apply` being
//!   called for that record; one record in flight at a time, then a burst
//!   of back-to-back writes;
//! * persisted records per second with 1 and 64 concurrent writers;
//! * time for a replica started late to load 100k entries (full resync).
//!
//! Run: `cargo bench --bench redis_propagation`.
//! `REVGATE_BENCH_RESYNC=1000000` sets how many entries the late replica
//! loads (default 100,000; what the writes above left is topped up by
//! pipelined `SET`s straight into Redis, which is much faster than
//! `persist`); `REVGATE_BENCH_ONLY=resync` skips everything else.
//! Caveats: one machine, Redis
//! on loopback (a network adds its round trip to every figure), other work
//! sharing the cores.

use revgate::revocation::redis::testing::RedisServer;
use revgate::revocation::redis::{Record, RedisStore, SyncState};
use revgate::revocation::RevocationKey;
use revgate::telemetry::Metrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

const PROPAGATION: usize = 2_000;
const BURST: usize = 5_000;
const SEQUENTIAL: usize = 5_000;
const CONCURRENT_WRITERS: usize = 64;
const CONCURRENT: usize = 25_600;
/// Default entries a late replica loads (`REVGATE_BENCH_RESYNC`).
const RESYNC: usize = 100_000;

/// When B applied each record, in ns since `base` (0: not yet).
struct Arrivals {
    base: Instant,
    at: Vec<AtomicU64>,
    notify: Notify,
    offset: u128,
}

impl Arrivals {
    fn new(n: usize, offset: u128) -> Arc<Self> {
        Arc::new(Arrivals {
            base: Instant::now(),
            at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            notify: Notify::new(),
            offset,
        })
    }
    fn record(&self, r: Record) {
        if let Record::Revoke { key, .. } = r {
            if let Some(i) = key.0.checked_sub(self.offset) {
                if let Some(slot) = self.at.get(i as usize) {
                    let ns = self.base.elapsed().as_nanos() as u64;
                    let _ =
                        slot.compare_exchange(0, ns.max(1), Ordering::AcqRel, Ordering::Acquire);
                    self.notify.notify_one();
                }
            }
        }
    }
    fn get(&self, i: usize) -> u64 {
        self.at[i].load(Ordering::Acquire)
    }
    fn since_base(&self, t: Instant) -> u64 {
        t.duration_since(self.base).as_nanos() as u64
    }
}

fn revoke(key: u128) -> Record {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Record::Revoke {
        key: RevocationKey(key),
        expires_at: now + 3600,
    }
}

fn summary(name: &str, mut ns: Vec<i64>) {
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p).round() as usize] as f64 / 1e3;
    let early = ns.iter().filter(|v| **v < 0).count();
    println!(
        "{name}: n={} p50={:.0} us p99={:.0} us max={:.0} us (applied before persist returned: {early})",
        ns.len(),
        q(0.5),
        q(0.99),
        q(1.0),
    );
}

async fn store(url: &str) -> Arc<RedisStore> {
    RedisStore::connect(url, "bench:", Arc::new(Metrics::new(Vec::new())))
        .await
        .expect("connect")
}

async fn live(s: &RedisStore) {
    let mut rx = s.subscribe();
    tokio::time::timeout(
        Duration::from_secs(120),
        rx.wait_for(|st| *st == SyncState::Live),
    )
    .await
    .expect("live in time")
    .expect("state channel");
}

async fn run() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    println!(
        "redis_propagation: redis-server on 127.0.0.1:{}",
        server.port()
    );
    let resync: usize = std::env::var("REVGATE_BENCH_RESYNC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RESYNC);
    let only_resync = std::env::var("REVGATE_BENCH_ONLY").is_ok_and(|v| v == "resync");
    let a = store(&url).await;
    let b = store(&url).await;
    let total = PROPAGATION + BURST;
    let arrivals = Arrivals::new(total, 0);
    let sink = arrivals.clone();
    b.spawn_follower(Arc::new(move |r| sink.record(r)));
    live(&b).await;
    if !only_resync {
        writes(&a, &arrivals).await;
    }
    let c = resync_late(&server, &url, resync).await;
    a.shutdown();
    b.shutdown();
    c.shutdown();
}

async fn writes(a: &Arc<RedisStore>, arrivals: &Arc<Arrivals>) {
    let total = PROPAGATION + BURST;

    // 1. One record in flight: persist on A, wait for B's apply.
    let mut delays = Vec::with_capacity(PROPAGATION);
    let mut write_to_apply = Vec::with_capacity(PROPAGATION);
    for i in 0..PROPAGATION {
        let start = Instant::now();
        a.persist(&revoke(i as u128)).await.expect("persist");
        let returned = arrivals.since_base(Instant::now());
        while arrivals.get(i) == 0 {
            let _ =
                tokio::time::timeout(Duration::from_millis(50), arrivals.notify.notified()).await;
        }
        let applied = arrivals.get(i);
        delays.push(applied as i64 - returned as i64);
        write_to_apply.push(applied as i64 - arrivals.since_base(start) as i64);
    }
    summary(
        "propagation, persist returned on A -> apply on B (1 in flight)",
        delays,
    );
    summary(
        "propagation, persist called on A -> apply on B (1 in flight)",
        write_to_apply,
    );

    // 2. A burst of back-to-back writes from one writer.
    let mut returned = Vec::with_capacity(BURST);
    for i in PROPAGATION..total {
        a.persist(&revoke(i as u128)).await.expect("persist");
        returned.push(arrivals.since_base(Instant::now()));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (PROPAGATION..total).any(|i| arrivals.get(i) == 0) {
        assert!(Instant::now() < deadline, "burst not applied in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let burst = (PROPAGATION..total)
        .zip(&returned)
        .map(|(i, r)| arrivals.get(i) as i64 - *r as i64)
        .collect();
    summary(
        "propagation, persist returned on A -> apply on B (burst, 1 writer)",
        burst,
    );

    // 3. Throughput.
    let start = Instant::now();
    for i in 0..SEQUENTIAL {
        a.persist(&revoke(1_000_000 + i as u128))
            .await
            .expect("persist");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "persist, 1 writer: {SEQUENTIAL} records in {secs:.2} s = {:.0} records/s",
        SEQUENTIAL as f64 / secs
    );
    let start = Instant::now();
    let per = CONCURRENT / CONCURRENT_WRITERS;
    let tasks: Vec<_> = (0..CONCURRENT_WRITERS)
        .map(|w| {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let key = 2_000_000 + (w * per + i) as u128;
                    a.persist(&revoke(key)).await.expect("persist");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "persist, {CONCURRENT_WRITERS} writers: {CONCURRENT} records in {secs:.2} s = {:.0} records/s",
        CONCURRENT as f64 / secs
    );
}

/// Phase 4, a late replica's full load of `n` entries: tops the keyspace up with
/// pipelined `SET .. EXAT` (the layout `persist` writes), then times a fresh
/// store from `spawn_follower` to `Live`.
async fn resync_late(server: &RedisServer, url: &str, n: usize) -> Arc<RedisStore> {
    let mut conn = server.connection();
    let have: usize = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let fill = Instant::now();
    let mut i = have;
    while i < n {
        let mut pipe = redis::pipe();
        for k in i..(i + 10_000).min(n) {
            pipe.cmd("SET")
                .arg(format!("bench:rev:{:032x}", 100_000_000 + k as u128))
                .arg(exp)
                .arg("EXAT")
                .arg(exp)
                .ignore();
        }
        let _: () = pipe.query(&mut conn).expect("fill");
        i = (i + 10_000).min(n);
    }
    println!(
        "filled Redis to {n} keys in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let c = store(url).await;
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let start = Instant::now();
    c.spawn_follower(Arc::new(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    }));
    live(&c).await;
    println!(
        "full resync of a late replica: {} records applied in {:.0} ms",
        count.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64() * 1e3
    );
    c
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
