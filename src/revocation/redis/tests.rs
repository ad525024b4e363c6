//! Against real `redis-server` children (see `testing.rs`): two stores on one
//! Redis play two replicas. No fixed sleeps: every wait polls a condition
//! with a deadline.

use super::testing::{wait_until, RedisServer};
use super::*;
use crate::revocation::RevocationKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long any propagation may take in a test (the contract is 100 ms;
/// this is generous for a loaded CI machine).
const WAIT: Duration = Duration::from_secs(10);

/// A replica's local blocklist, as the gateway would keep it.
#[derive(Default)]
struct Model {
    revoked: HashMap<RevocationKey, u64>,
    watermarks: HashMap<String, (u64, u64)>,
    applied: u64,
}

#[derive(Clone, Default)]
struct Replica(Arc<Mutex<Model>>);

impl Replica {
    fn apply_fn(&self) -> Arc<dyn Fn(Record) + Send + Sync> {
        let model = self.0.clone();
        Arc::new(move |record| {
            let mut m = model.lock().expect("test value");
            m.applied += 1;
            match record {
                Record::Revoke { key, expires_at } => {
                    let e = m.revoked.entry(key).or_insert(0);
                    *e = (*e).max(expires_at);
                }
                Record::Watermark {
                    sub,
                    at,
                    expires_at,
                } => {
                    let e = m.watermarks.entry(sub.into()).or_insert((0, 0));
                    *e = (e.0.max(at), e.1.max(expires_at));
                }
                Record::Lift { key } => {
                    m.revoked.remove(&key);
                }
            }
        })
    }
    /// What the replica holds, as the gateway's write-back would see it.
    fn held_fn(&self) -> Arc<dyn Fn() -> Vec<Record> + Send + Sync> {
        let model = self.0.clone();
        Arc::new(move || {
            let m = model.lock().expect("test value");
            let revoked = m.revoked.iter().map(|(key, expires_at)| Record::Revoke {
                key: *key,
                expires_at: *expires_at,
            });
            let watermarks = m
                .watermarks
                .iter()
                .map(|(sub, (at, expires_at))| Record::Watermark {
                    sub: sub.as_str().into(),
                    at: *at,
                    expires_at: *expires_at,
                });
            revoked.chain(watermarks).collect()
        })
    }
    fn revoked(&self, key: RevocationKey) -> bool {
        self.0
            .lock()
            .expect("test value")
            .revoked
            .contains_key(&key)
    }
    fn watermark(&self, sub: &str) -> Option<(u64, u64)> {
        self.0
            .lock()
            .expect("test value")
            .watermarks
            .get(sub)
            .copied()
    }
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(Vec::new()))
}

fn later(secs: u64) -> u64 {
    crate::revocation::Clock::now(&crate::revocation::SystemClock) + secs
}

fn revoke(jti: &str) -> (RevocationKey, Record) {
    let key = RevocationKey::from_jti(jti);
    (
        key,
        Record::Revoke {
            key,
            expires_at: later(600),
        },
    )
}

async fn store(url: &str) -> Arc<RedisStore> {
    RedisStore::connect(url, "t:", metrics())
        .await
        .expect("connect")
}

async fn follow(store: &Arc<RedisStore>) -> (Replica, watch::Receiver<SyncState>) {
    let replica = Replica::default();
    let rx = store.spawn_follower(replica.apply_fn());
    (replica, rx)
}

async fn follow_writing_back(store: &Arc<RedisStore>) -> (Replica, watch::Receiver<SyncState>) {
    let replica = Replica::default();
    let rx = store.spawn_follower_writing_back(replica.apply_fn(), replica.held_fn());
    (replica, rx)
}

async fn live(store: &RedisStore) {
    assert!(
        wait_until(WAIT, || store.state() == SyncState::Live).await,
        "never became live: {:?}",
        store.state()
    );
}

/// Revoke, watermark and lift made on A are applied by B's follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_watermark_and_lift_propagate() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = store(&server.url()).await;
    let b = store(&server.url()).await;
    let (on_b, _rx) = follow(&b).await;
    live(&b).await;

    let (k1, r1) = revoke("j1");
    a.persist(&r1).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k1)).await, "revoke");

    let exp = later(3600);
    a.persist(&Record::Watermark {
        sub: "alice".into(),
        at: 1000,
        expires_at: exp,
    })
    .await
    .expect("test value");
    assert!(
        wait_until(WAIT, || on_b.watermark("alice") == Some((1000, exp))).await,
        "watermark"
    );

    a.persist(&Record::Lift { key: k1 })
        .await
        .expect("test value");
    assert!(wait_until(WAIT, || !on_b.revoked(k1)).await, "lift");

    // Redis holds the record with its own expiry.
    let mut conn = server.connection();
    let ttl: i64 = redis::cmd("TTL")
        .arg("t:wm:alice")
        .query(&mut conn)
        .expect("test value");
    assert!(ttl > 3500 && ttl <= 3600, "ttl {ttl}");
    let rev: Option<String> = redis::cmd("GET")
        .arg(format!("t:rev:{k1}"))
        .query(&mut conn)
        .expect("test value");
    assert_eq!(rev, None, "a lift deletes the revocation");

    b.shutdown();
    assert!(wait_until(WAIT, || b.state() == SyncState::Down).await);
}

/// A replica started after records were written loads all of them,
/// lifts included, before it reports live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replica_sees_everything() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = store(&server.url()).await;
    let mut keys = Vec::new();
    for i in 0..2500 {
        let (k, r) = revoke(&format!("late-{i}"));
        a.persist(&r).await.expect("test value");
        keys.push(k);
    }
    a.persist(&Record::Watermark {
        sub: "bob".into(),
        at: 7,
        expires_at: later(100),
    })
    .await
    .expect("test value");
    // The lifted key is revoked on a replica that never saw the lift (as
    // after a restart from its own durable store): the tombstone lifts it.
    let lifted = keys[0];
    a.persist(&Record::Lift { key: lifted })
        .await
        .expect("test value");

    let b = store(&server.url()).await;
    let on_b = Replica::default();
    on_b.0
        .lock()
        .expect("test value")
        .revoked
        .insert(lifted, later(100));
    let _rx = b.spawn_follower(on_b.apply_fn());
    live(&b).await;
    // Live means caught up: no waiting needed now.
    for k in &keys[1..] {
        assert!(on_b.revoked(*k));
    }
    assert!(!on_b.revoked(lifted));
    assert_eq!(on_b.watermark("bob").map(|w| w.0), Some(7));
    assert_eq!(b.stats().full_resyncs, 1);
}

/// Redis killed: the follower goes down and persist fails (never an
/// acknowledged but unstored revocation); Redis back empty: resync, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted_empty() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let m = metrics();
    let a = RedisStore::connect(&server.url(), "t:", m.clone())
        .await
        .expect("test value");
    let b = store(&server.url()).await;
    let (on_b, _rx) = follow(&b).await;
    live(&b).await;
    let (k1, r1) = revoke("before");
    a.persist(&r1).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k1)).await);

    server.kill();
    assert!(wait_until(WAIT, || b.state() == SyncState::Down).await);
    assert!(b.metrics.get(Counter::StoreDisconnects) >= 1);
    let (k2, r2) = revoke("during");
    assert!(matches!(
        a.persist(&r2).await,
        Err(RedisError::Unavailable(_))
    ));
    assert!(m.get(Counter::StoreErrors) >= 1);

    server.restart_empty();
    live(&b).await;
    assert!(b.stats().full_resyncs >= 2, "{:?}", b.stats());
    // What Redis lost, B still holds.
    assert!(on_b.revoked(k1));
    // Writes work again (A reconnects on demand) and propagate.
    let deadline = std::time::Instant::now() + WAIT;
    while a.persist(&r2).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "persist never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wait_until(WAIT, || on_b.revoked(k2)).await);
}

/// Redis restarted from a snapshot older than its last writes: the log was
/// rolled back past B's position, so B does a full resync, writes back
/// what the snapshot lacks (a late replica sees it, which it did not
/// before replicas wrote back after a data loss), and follows new writes
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_data() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let a = store(&server.url()).await;
    let b = store(&server.url()).await;
    let (on_b, _rx) = follow_writing_back(&b).await;
    live(&b).await;
    let (k1, r1) = revoke("saved");
    a.persist(&r1).await.expect("test value");
    server.save();
    let (k2, r2) = revoke("unsaved");
    a.persist(&r2).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k1) && on_b.revoked(k2)).await);

    server.restart();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("t:rev:{k1}"))
        .query(&mut server.connection())
        .expect("test value");
    assert!(exists, "the snapshot was loaded");
    assert!(wait_until(WAIT, || b.stats().full_resyncs >= 2).await);
    live(&b).await;

    // B writes back the record the snapshot lacks; a late replica sees both.
    assert!(wait_until(WAIT, || b.stats().written_back >= 1).await);
    assert_eq!(b.stats().data_losses, 1, "{:?}", b.stats());
    let c = store(&server.url()).await;
    let (on_c, _rxc) = follow(&c).await;
    live(&c).await;
    assert!(on_c.revoked(k1) && on_c.revoked(k2));
    assert!(on_b.revoked(k1) && on_b.revoked(k2));

    let (k3, r3) = revoke("after");
    let deadline = std::time::Instant::now() + WAIT;
    while a.persist(&r3).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "persist never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wait_until(WAIT, || on_b.revoked(k3) && on_c.revoked(k3)).await);
}

/// B is cut off (its connections killed and its user disabled) while A
/// writes; when B gets back in, it replays what it missed from the log,
/// without a full resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_replica_catches_up_from_the_log() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut admin = server.connection();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "b", "on", ">pw-b", "~*", "&*", "+@all"])
        .query(&mut admin)
        .expect("test value");
    let b_url = format!("redis://b:pw-b@127.0.0.1:{}/0", server.port());
    let a = store(&server.url()).await;
    let b = store(&b_url).await;
    let (on_b, _rx) = follow(&b).await;
    live(&b).await;
    let (k0, r0) = revoke("seen");
    a.persist(&r0).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k0)).await);

    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "b", "off"])
        .query(&mut admin)
        .expect("test value");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "b"])
        .query(&mut admin)
        .expect("test value");
    assert!(wait_until(WAIT, || b.state() == SyncState::Down).await);

    let mut missed = Vec::new();
    for i in 0..50 {
        let (k, r) = revoke(&format!("missed-{i}"));
        a.persist(&r).await.expect("test value");
        missed.push(k);
    }
    a.persist(&Record::Lift { key: k0 })
        .await
        .expect("test value");
    assert!(
        on_b.revoked(k0),
        "B is cut off: it cannot have seen the lift"
    );

    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "b", "on"])
        .query(&mut admin)
        .expect("test value");
    live(&b).await;
    for k in &missed {
        assert!(on_b.revoked(*k));
    }
    assert!(!on_b.revoked(k0));
    let stats = b.stats();
    assert_eq!(stats.full_resyncs, 1, "{stats:?}");
    assert_eq!(stats.incremental_catch_ups, 1, "{stats:?}");
}

/// Garbage written straight into Redis, in the keyspace and in the log, is
/// skipped and counted; valid records around it still apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_skipped_and_counted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = server.connection();
    let hex = RevocationKey::from_jti("x").to_string();
    for (k, v) in [
        ("t:rev:zzz".to_string(), "1999999999"),
        (format!("t:rev:{hex}"), "soon"),
        ("t:wm:bob".to_string(), "12"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(v)
            .query(&mut conn)
            .expect("test value");
    }
    let a = store(&server.url()).await;
    let (k1, r1) = revoke("good-1");
    a.persist(&r1).await.expect("test value");

    let m = metrics();
    let b = RedisStore::connect(&server.url(), "t:", m.clone())
        .await
        .expect("test value");
    let (on_b, _rx) = follow(&b).await;
    live(&b).await;
    assert!(on_b.revoked(k1));
    assert_eq!(m.get(Counter::MalformedRecords), 3);

    for fields in [
        &["t", "r", "k", "nothex", "e", "5"][..],
        &["t", "?"],
        &["x", "y"],
    ] {
        let _: String = redis::cmd("XADD")
            .arg("t:log")
            .arg("*")
            .arg(fields)
            .query(&mut conn)
            .expect("test value");
    }
    let (k2, r2) = revoke("good-2");
    a.persist(&r2).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k2)).await);
    assert_eq!(m.get(Counter::MalformedRecords), 6);
    assert_eq!(b.state(), SyncState::Live);
}

/// A password in the URL works; a wrong or missing one is a start-up error
/// that does not quote the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_in_the_url() {
    let Some(server) = RedisServer::builder().password("s3cret-pw").start() else {
        return;
    };
    let a = store(&server.url()).await;
    let b = store(&server.url()).await;
    let (on_b, _rx) = follow(&b).await;
    live(&b).await;
    let (k, r) = revoke("pw");
    a.persist(&r).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k)).await);

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/0", server.port());
    let err = RedisStore::connect(&wrong, "t:", metrics())
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Auth { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("revocation.redis_url"), "{text}");
    assert!(!text.contains("wrong-pw"), "{text}");

    let none = format!("redis://127.0.0.1:{}/0", server.port());
    let err = RedisStore::connect(&none, "t:", metrics())
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Auth { .. }), "{err}");
}

/// Unreachable at start: a store in state Down, failing writes fast, that
/// goes live by itself once Redis appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_start_then_redis_appears() {
    if !testing::available() {
        let _ = RedisServer::start(); // prints the skip notice or panics
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("test value")
        .local_addr()
        .expect("test value")
        .port();
    let url = format!("redis://:pw@127.0.0.1:{port}/0");
    let a = RedisStore::connect(&url, "t:", metrics())
        .await
        .expect("test value");
    assert_eq!(a.state(), SyncState::Down);
    let (_k, r) = revoke("early");
    let started = std::time::Instant::now();
    let err = a.persist(&r).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!err.to_string().contains(":pw@"), "{err}");
    let (on_a, _rx) = follow(&a).await;

    let Some(_server) = RedisServer::builder().port(port).password("pw").start() else {
        return;
    };
    live(&a).await;
    let deadline = std::time::Instant::now() + WAIT;
    while a.persist(&r).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "persist never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wait_until(WAIT, || on_a.revoked(RevocationKey::from_jti("early"))).await);
}

/// `rediss://` against a TLS-only redis-server whose CA we trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_url_works() {
    let Some(server) = RedisServer::builder().tls().password("tls-pw").start() else {
        return;
    };
    assert!(server.url().starts_with("rediss://"));
    let options = || RedisOptions {
        tls_root_cert_pem: server.ca_pem().map(<[u8]>::to_vec),
        ..RedisOptions::default()
    };
    let a = RedisStore::connect_with(&server.url(), "t:", metrics(), options())
        .await
        .expect("test value");
    let b = RedisStore::connect_with(&server.url(), "t:", metrics(), options())
        .await
        .expect("test value");
    let (on_b, _rx) = follow(&b).await;
    live(&b).await;
    let (k, r) = revoke("tls");
    a.persist(&r).await.expect("test value");
    assert!(wait_until(WAIT, || on_b.revoked(k)).await);

    // Without our CA the server's certificate is not trusted: Down, not a panic.
    let c = store(&server.url()).await;
    assert_eq!(c.state(), SyncState::Down);
}

#[tokio::test]
async fn bad_urls_are_config_errors_naming_the_key() {
    for url in ["http://:pw@host/", "redis://:pw@/", "not a url"] {
        let err = RedisStore::connect(url, "t:", metrics()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, RedisError::InvalidUrl { .. }),
            "{url}: {text}"
        );
        assert!(text.starts_with("revocation.redis_url"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
    }
}

#[tokio::test]
async fn invalid_records_are_refused_before_any_io() {
    // Nothing listens on port 1: validation must fail first.
    let s = RedisStore::connect("redis://127.0.0.1:1/0", "t:", metrics())
        .await
        .expect("test value");
    let long = "x".repeat(MAX_SUB_LEN + 1);
    for record in [
        Record::Watermark {
            sub: "".into(),
            at: 1,
            expires_at: later(5),
        },
        Record::Watermark {
            sub: long.into(),
            at: 1,
            expires_at: later(5),
        },
        Record::Revoke {
            key: RevocationKey(1),
            expires_at: MAX_UNIX + 1,
        },
    ] {
        assert!(matches!(
            s.persist(&record).await,
            Err(RedisError::InvalidRecord(_))
        ));
    }
    // Already expired: nothing to store, acknowledged without I/O.
    s.persist(&Record::Revoke {
        key: RevocationKey(1),
        expires_at: 5,
    })
    .await
    .expect("test value");
}

/// Writes made while a late replica is scanning the keyspace are not lost:
/// the replica replays the log from the tail it noted before the scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_full_resync_are_not_lost() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = store(&server.url()).await;
    let keys: Vec<RevocationKey> = (0..6000)
        .map(|i| RevocationKey::from_jti(&format!("busy-{i}")))
        .collect();
    for k in &keys[..3000] {
        a.persist(&Record::Revoke {
            key: *k,
            expires_at: later(600),
        })
        .await
        .expect("test value");
    }
    let writer = {
        let a = a.clone();
        let rest = keys[3000..].to_vec();
        tokio::spawn(async move {
            for k in rest {
                a.persist(&Record::Revoke {
                    key: k,
                    expires_at: later(600),
                })
                .await
                .expect("test value");
            }
        })
    };
    // A small batch makes the scan take many round trips, overlapping the writes.
    let options = RedisOptions {
        batch: 50,
        ..RedisOptions::default()
    };
    let c = RedisStore::connect_with(&server.url(), "t:", metrics(), options)
        .await
        .expect("test value");
    let (on_c, _rx) = follow(&c).await;
    writer.await.expect("test value");
    assert!(
        wait_until(WAIT, || keys.iter().all(|k| on_c.revoked(*k))).await,
        "missing {} of {}",
        keys.iter().filter(|k| !on_c.revoked(**k)).count(),
        keys.len()
    );
    assert_eq!(c.stats().full_resyncs, 1);
}

/// A write connection killed under us (Redis restarted, `CLIENT KILL`) is
/// replaced on the next write, which succeeds: no needless 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_write_connection_is_replaced_transparently() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let m = metrics();
    let a = RedisStore::connect(&server.url(), "t:", m.clone())
        .await
        .expect("test value");
    let (_k, r) = revoke("first");
    a.persist(&r).await.expect("test value");
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal"])
        .query(&mut server.connection())
        .expect("test value");
    assert!(killed >= 1);
    let (k, r) = revoke("second");
    a.persist(&r).await.expect("test value");
    assert_eq!(m.get(Counter::StoreErrors), 0);
    let stored: bool = redis::cmd("EXISTS")
        .arg(format!("t:rev:{k}"))
        .query(&mut server.connection())
        .expect("test value");
    assert!(stored);
}

/// The write-back scripts: a record is stored and logged only when Redis
/// has nothing newer; a lift tombstone wins after a new dataset (it was made
/// after the loss) but not after a rollback; a watermark is never lowered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_back_never_shortens_and_respects_lifts_made_after_a_loss() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = server.connection();
    let (revoke_sha, watermark_sha): (String, String) = writeback::load_pipeline()
        .query(&mut conn)
        .expect("SCRIPT LOAD");
    let shas = writeback::Shas {
        revoke: revoke_sha,
        watermark: watermark_sha,
    };
    let (lifted, _) = revoke("lifted-after-the-loss");
    let (longer, _) = revoke("longer-in-redis");
    let (fresh, _) = revoke("fresh");
    let set = |key: String, value: String| {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut server.connection())
            .expect("SET");
    };
    set(format!("t:lift:{lifted}"), later(600).to_string());
    set(format!("t:rev:{longer}"), later(9000).to_string());
    set(
        "t:wm:sam".to_string(),
        format!("{} {}", later(100), later(9000)),
    );
    let records = [
        Record::Revoke {
            key: lifted,
            expires_at: later(600),
        },
        Record::Revoke {
            key: longer,
            expires_at: later(600),
        },
        Record::Revoke {
            key: fresh,
            expires_at: later(600),
        },
        Record::Watermark {
            sub: "sam".into(),
            at: later(50),
            expires_at: later(600),
        },
    ];
    let batch = |respect_lifts| writeback::Batch {
        prefix: "t:",
        minid: 0,
        maxlen: 1000,
        respect_lifts,
    };
    let done: Vec<i64> = writeback::pipeline(&records, &shas, &batch(true))
        .query(&mut conn)
        .expect("write-back");
    assert_eq!(done, vec![0, 0, 1, 0]);
    let get = |key: String| -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut server.connection())
            .expect("GET")
    };
    assert_eq!(get(format!("t:rev:{lifted}")), None);
    assert_eq!(
        get(format!("t:rev:{longer}")),
        Some(later(9000).to_string())
    );
    assert_eq!(get(format!("t:rev:{fresh}")), Some(later(600).to_string()));
    let logged: u64 = redis::cmd("XLEN")
        .arg("t:log")
        .query(&mut conn)
        .expect("XLEN");
    assert_eq!(logged, 1, "only what was stored is logged");
    // Written back again (a second replica): nothing new.
    let again: Vec<i64> = writeback::pipeline(&records, &shas, &batch(true))
        .query(&mut conn)
        .expect("write-back");
    assert_eq!(again, vec![0, 0, 0, 0]);
    // After a rollback the tombstone may be older than the revocation.
    let rolled_back: Vec<i64> = writeback::pipeline(&records[..1], &shas, &batch(false))
        .query(&mut conn)
        .expect("write-back");
    assert_eq!(rolled_back, vec![1]);
    assert_eq!(get(format!("t:lift:{lifted}")), None);
}
