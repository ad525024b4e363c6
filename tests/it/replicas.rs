//! Replicas sharing revocations through Redis (`store = "redis"`), and what
//! they do when Redis loses data, fills up, evicts or hangs.
//! Each test starts its own redis-server on a free port (skipped with a
//! notice where redis-server is absent, unless REVGATE_REQUIRE_REDIS=1).

use crate::support::*;
use hyper::StatusCode;
use revgate::revocation::redis::testing::RedisServer;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a revocation may take to reach another replica in these tests.
/// The contract is 100 ms (measured in `benches/`); tests only bound it
/// loosely so a loaded CI machine does not flake.
const PROPAGATION: Duration = Duration::from_secs(5);
/// Reconnect and resync after a Redis outage.
const RECOVERY: Duration = Duration::from_secs(15);

fn config(upstream: &str, redis_url: &str, mode: &str) -> String {
    auth_config(
        upstream,
        &format!("store = \"redis\"\nredis_url = \"{redis_url}\"\non_store_down = \"{mode}\""),
    )
}

async fn replica(upstream: &Upstream, redis_url: &str, mode: &str) -> Gateway {
    let gw = Gateway::start(&config(&upstream.url(), redis_url, mode)).await;
    wait_ready(&gw, true).await;
    gw
}

async fn wait_ready(gw: &Gateway, ready: bool) {
    let want = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    eventually(
        &format!("/readyz answers {want}"),
        RECOVERY,
        || async move { get(&gw.admin_url("/readyz"), &[]).await.status == want },
    )
    .await;
}

async fn wait_status(gw: &Gateway, token: &str, want: StatusCode) {
    eventually(
        &format!("token answered {want}"),
        PROPAGATION,
        || async move { get_with(&gw.url("/api/x"), token).await.status == want },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_refused_by_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let b = replica(&up, &redis.url(), "deny").await;

    let t = token("alice", "orders:read");
    assert_eq!(get_with(&b.url("/api/x"), &t).await.status, StatusCode::OK);
    assert_eq!(
        post_with(&a.url("/auth/logout"), &t).await.status,
        StatusCode::OK
    );
    wait_status(&b, &t, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        get_with(&b.url("/api/x"), &t).await.json()["error_description"],
        "token revoked"
    );

    // Logout-all on B reaches A.
    let t1 = token("bob", "orders:read");
    let t2 = token("bob", "orders:read");
    assert_eq!(
        post_with(&b.url("/auth/logout-all"), &t1).await.status,
        StatusCode::OK
    );
    wait_status(&a, &t2, StatusCode::UNAUTHORIZED).await;

    // An admin lift on A reaches B.
    let jti = unique("lift");
    let t3 = hs256(&claims("carol", &jti, "orders:read"));
    let body = json!({"jti": jti, "expires_at": now() + 600}).to_string();
    assert_eq!(
        admin(&a, "POST", "/admin/revocations", &body).await.status,
        StatusCode::OK
    );
    wait_status(&b, &t3, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        admin(&a, "DELETE", &format!("/admin/revocations/{jti}"), "")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    wait_status(&b, &t3, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_later_sees_everything() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let revoked: Vec<String> = (0..20).map(|_| token("dora", "orders:read")).collect();
    for t in &revoked {
        assert_eq!(
            post_with(&a.url("/auth/logout"), t).await.status,
            StatusCode::OK
        );
    }
    let all = token("eve", "orders:read");
    // Issued before the logout-all, so its iat is at or before the watermark.
    let eve_other = token("eve", "orders:read");
    assert_eq!(
        post_with(&a.url("/auth/logout-all"), &all).await.status,
        StatusCode::OK
    );

    let c = replica(&up, &redis.url(), "deny").await;
    // Ready means caught up: no polling needed from here on.
    for t in &revoked {
        assert_eq!(
            get_with(&c.url("/api/x"), t).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        get_with(&c.url("/api/x"), &eve_other).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_with(&c.url("/api/x"), &token("frank", "orders:read"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_with_deny_answers_503_until_resynced() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let revoked = token("gus", "orders:read");
    assert_eq!(
        post_with(&a.url("/auth/logout"), &revoked).await.status,
        StatusCode::OK
    );
    wait_status(&a, &revoked, StatusCode::UNAUTHORIZED).await;

    redis.kill();
    wait_ready(&a, false).await;
    let valid = token("hal", "orders:read");
    let got = get_with(&a.url("/api/x"), &valid).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
    assert!(!got.header("retry-after").is_empty());
    // Routes without auth keep working.
    assert_eq!(get(&a.url("/open"), &[]).await.status, StatusCode::OK);
    // Nothing is acknowledged that was not stored.
    assert_eq!(
        post_with(&a.url("/auth/logout"), &valid).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let metrics = get(&a.admin_url("/metrics"), &[]).await.body;
    assert!(
        !metrics.contains("revgate_store_down_denied_total 0"),
        "{metrics}"
    );

    redis.restart_empty();
    wait_ready(&a, true).await;
    assert_eq!(
        get_with(&a.url("/api/x"), &valid).await.status,
        StatusCode::OK
    );
    // What this replica held survives Redis losing its data.
    assert_eq!(
        get_with(&a.url("/api/x"), &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_with(&a.url("/auth/logout"), &valid).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_with_allow_serves_from_memory() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "allow").await;
    let revoked = token("ida", "orders:read");
    assert_eq!(
        post_with(&a.url("/auth/logout"), &revoked).await.status,
        StatusCode::OK
    );
    wait_status(&a, &revoked, StatusCode::UNAUTHORIZED).await;
    redis.save();

    redis.kill();
    wait_ready(&a, false).await;
    let valid = token("jon", "orders:read");
    assert_eq!(
        get_with(&a.url("/api/x"), &valid).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&a.url("/api/x"), &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_with(&a.url("/auth/logout"), &valid).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Restarted with its data: a new replica sees the old revocation.
    redis.restart();
    wait_ready(&a, true).await;
    let b = replica(&up, &redis.url(), "allow").await;
    assert_eq!(
        get_with(&b.url("/api/x"), &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_replica_catches_up_on_reconnect() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut conn = redis.connection();
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "replica-b",
                "on",
                ">b-password",
                "~*",
                "&*",
                "+@all",
            ][..],
        )
        .query(&mut conn)
        .expect("ACL SETUSER");
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let b_url = format!("redis://replica-b:b-password@127.0.0.1:{}/0", redis.port());
    let b = replica(&up, &b_url, "deny").await;

    // Cut B off: disable its user and kill its connections.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "replica-b", "off"][..])
        .query(&mut conn)
        .expect("ACL off");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "replica-b"][..])
        .query(&mut conn)
        .expect("CLIENT KILL");
    wait_ready(&b, false).await;
    let missed: Vec<String> = (0..10).map(|_| token("kai", "orders:read")).collect();
    for t in &missed {
        assert_eq!(
            post_with(&a.url("/auth/logout"), t).await.status,
            StatusCode::OK
        );
    }
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "replica-b", "on"][..])
        .query(&mut conn)
        .expect("ACL on");
    wait_ready(&b, true).await;
    for t in &missed {
        assert_eq!(
            get_with(&b.url("/api/x"), t).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_on_one_replica_while_another_restarts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let mut b = replica(&up, &redis.url(), "deny").await;
    let valid = token("lou", "orders:read");
    let url = a.url("/api/x");
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..300 {
            statuses.push(get_with(&url, &valid).await.status);
        }
        statuses
    });
    let revoked = token("mia", "orders:read");
    assert_eq!(
        post_with(&a.url("/auth/logout"), &revoked).await.status,
        StatusCode::OK
    );
    b.shutdown();
    let _ = (&mut b.task).await;
    let b2 = replica(&up, &redis.url(), "deny").await;
    assert_eq!(
        get_with(&b2.url("/api/x"), &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );
    let statuses = load.await.expect("load task");
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "A must serve throughout: {statuses:?}"
    );
}

/// Pins a fixed bug: a replica reported ready (and answered from an empty
/// blocklist) before its first catch-up with the shared store.
#[tokio::test]
async fn a_replica_is_not_ready_before_its_first_catch_up() {
    let up = Upstream::echo("up").await;
    let dead = closed_port().await;
    let gw = Gateway::start(&config(&up.url(), &format!("redis://{dead}/0"), "deny")).await;
    assert_eq!(
        get(&gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let got = get_with(&gw.url("/api/x"), &token("zed", "orders:read")).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
}

/// A rolling upgrade over Redis, both ways round: a replica of the previous
/// build keys a token without `jti` by the whole token. Its revocation (made
/// here through the store API under that legacy key) is refused by a replica
/// of this build; and this build's logout of such a token is written under
/// the legacy key too, so the previous build's replicas refuse it as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_honours_whole_token_keys_both_ways() {
    use revgate::revocation::redis::RedisStore;
    use revgate::revocation::{Record, RevocationKey};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let new = replica(&up, &redis.url(), "deny").await;
    let metrics = Arc::new(revgate::telemetry::Metrics::new(Vec::new()));
    let old = RedisStore::connect(&redis.url(), "revgate:", metrics)
        .await
        .expect("connect");
    let seen: Arc<Mutex<HashSet<RevocationKey>>> = Arc::default();
    let log = Arc::clone(&seen);
    let _state = old.spawn_follower(Arc::new(move |record| {
        if let Record::Revoke { key, .. } = record {
            log.lock().expect("lock").insert(key);
        }
    }));
    let no_jti = |sub: &str| {
        hs256(&json!({"sub": sub, "scope": "orders:read", "iat": now(), "exp": now() + 600}))
    };

    // Old -> new: the previous build's whole-token key is honoured.
    let by_old = no_jti("old-build-user");
    assert_eq!(
        get_with(&new.url("/api/x"), &by_old).await.status,
        StatusCode::OK
    );
    old.persist(&Record::Revoke {
        key: RevocationKey::legacy_from_token(&by_old),
        expires_at: now() + 601,
    })
    .await
    .expect("legacy revoke");
    wait_status(&new, &by_old, StatusCode::UNAUTHORIZED).await;

    // New -> old: the logout is also written under the whole-token key.
    let by_new = no_jti("new-build-user");
    let got = post_with(&new.url("/auth/logout"), &by_new).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let legacy = RevocationKey::legacy_from_token(&by_new);
    eventually(
        "the old build sees the whole-token key",
        PROPAGATION,
        || {
            let seen = Arc::clone(&seen);
            async move { seen.lock().expect("lock").contains(&legacy) }
        },
    )
    .await;
    old.shutdown();
}

/// Revokes `n` fresh tokens and one subject on `gw`; returns the revoked
/// tokens (the subject's included, minted before its logout-all).
async fn revoke_some(gw: &Gateway, sub: &str, n: usize) -> Vec<String> {
    let mut revoked: Vec<String> = (0..n).map(|_| token(sub, "orders:read")).collect();
    for t in &revoked {
        assert_eq!(
            post_with(&gw.url("/auth/logout"), t).await.status,
            StatusCode::OK
        );
    }
    let all_sub = format!("{sub}-all");
    let before = token(&all_sub, "orders:read");
    let logout_all = token(&all_sub, "orders:read");
    assert_eq!(
        post_with(&gw.url("/auth/logout-all"), &logout_all)
            .await
            .status,
        StatusCode::OK
    );
    revoked.push(before);
    revoked
}

/// Polls `gw`'s `/metrics` until `name` reaches `want`.
async fn wait_counter(gw: &Gateway, name: &str, want: u64) {
    eventually(&format!("{name} >= {want}"), RECOVERY, || async move {
        let body = get(&gw.admin_url("/metrics"), &[]).await.body;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .is_some_and(|v| v >= want)
    })
    .await;
}

async fn assert_all_refused(gw: &Gateway, tokens: &[String]) {
    let mut accepted = 0;
    for t in tokens {
        if get_with(&gw.url("/api/x"), t).await.status != StatusCode::UNAUTHORIZED {
            accepted += 1;
        }
    }
    assert_eq!(
        accepted,
        0,
        "{accepted} of {} revoked tokens accepted",
        tokens.len()
    );
}

/// Pins a fixed bug: Redis restarted empty, then a replica started afterwards
/// accepted every earlier revocation and watermark. The live replica now
/// finds the new dataset and writes back what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_then_a_late_replica_refuses_every_earlier_revocation() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let revoked = revoke_some(&a, "restart", 30).await;

    redis.restart_empty();
    // 30 revocations and one watermark written back by A.
    wait_counter(&a, "revgate_store_written_back_total", 31).await;
    wait_ready(&a, true).await;
    let late = replica(&up, &redis.url(), "deny").await;
    assert_all_refused(&late, &revoked).await;
    assert_all_refused(&a, &revoked).await;
    assert_eq!(
        get_with(&late.url("/api/x"), &token("restart-fresh", "orders:read"))
            .await
            .status,
        StatusCode::OK
    );
}

/// Pins a fixed bug: `FLUSHALL` under live connections (nothing disconnects)
/// lost every revocation for replicas started afterwards. The heartbeat
/// carries the dataset id, so the live replica notices and writes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushall_then_a_late_replica_refuses_every_earlier_revocation() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let revoked = revoke_some(&a, "flush", 30).await;

    redis.flushall();
    wait_counter(&a, "revgate_store_written_back_total", 31).await;
    let late = replica(&up, &redis.url(), "deny").await;
    assert_all_refused(&late, &revoked).await;
}

/// Pins a fixed bug: with `maxmemory-policy allkeys-lru` a late replica
/// accepted most acknowledged revocations (Redis had evicted them). Such a
/// Redis is now refused at start: one line naming the policy, exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_refused_at_start_with_exit_2() {
    let Some(redis) = RedisServer::builder()
        .arg("--maxmemory")
        .arg("20mb")
        .arg("--maxmemory-policy")
        .arg("allkeys-lru")
        .start()
    else {
        return;
    };
    let dir = temp_dir("evicting-redis");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[revocation]\nstore = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        ),
    )
    .expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_revgate"))
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run revgate");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for revgate") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("revgate kept running on an evicting Redis");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("maxmemory-policy") && err.contains("allkeys-lru"),
        "{err}"
    );

    // A Redis switched to an evicting policy while the gateway runs keeps
    // it not ready from its next reconnect on.
    let mut conn = redis.connection();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction"][..])
        .query(&mut conn)
        .expect("CONFIG SET");
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "volatile-lru"][..])
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
        .query(&mut conn)
        .expect("CLIENT KILL");
    wait_ready(&a, false).await;
    let got = get_with(&a.url("/api/x"), &token("evict", "orders:read")).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
}

/// Makes `redis` full: 4 MB of junk, then `maxmemory` below what it uses
/// (noeviction), so every write is refused with OOM.
fn fill_until_oom(redis: &RedisServer) {
    let mut conn = redis.connection();
    let value = "x".repeat(1024 * 1024);
    for i in 0..4 {
        let _: () = redis::cmd("SET")
            .arg(format!("junk:{i}"))
            .arg(&value)
            .query(&mut conn)
            .expect("SET junk");
    }
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "2mb"][..])
        .query(&mut conn)
        .expect("CONFIG SET maxmemory");
    let probe: redis::RedisResult<()> = redis::cmd("SET").arg("probe").arg("1").query(&mut conn);
    let e = probe.expect_err("a full Redis refuses writes");
    assert!(e.to_string().contains("OOM"), "{e}");
}

/// Pins a fixed bug: on a full Redis (noeviction) a new or restarted replica
/// never became ready, as its catch-up began with a write. Catch-up now
/// only reads: the new replica is ready and refuses what was revoked; only
/// writes get 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_lets_a_new_replica_become_ready_and_only_writes_get_503() {
    let Some(redis) = RedisServer::builder()
        .arg("--maxmemory-policy")
        .arg("noeviction")
        .start()
    else {
        return;
    };
    let up = Upstream::echo("up").await;
    let a = replica(&up, &redis.url(), "deny").await;
    let revoked = revoke_some(&a, "full", 10).await;
    fill_until_oom(&redis);

    let b = replica(&up, &redis.url(), "deny").await;
    assert_all_refused(&b, &revoked).await;
    let fresh = token("full-fresh", "orders:read");
    assert_eq!(
        get_with(&b.url("/api/x"), &fresh).await.status,
        StatusCode::OK
    );
    for gw in [&a, &b] {
        let got = post_with(&gw.url("/auth/logout"), &fresh).await;
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
    }
    // Nothing was acknowledged, so nothing is refused.
    assert_eq!(
        get_with(&b.url("/api/x"), &fresh).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&b.admin_url("/readyz"), &[]).await.status,
        StatusCode::OK
    );
}

/// Pins a fixed bug: `on_store_down = "allow"` served every revoked token with
/// 200 on a replica started while Redis was down, having never loaded the
/// blocklist. Before its first catch-up it now answers like `deny`.
#[tokio::test]
async fn allow_before_the_first_sync_answers_like_deny() {
    let up = Upstream::echo("up").await;
    let dead = closed_port().await;
    let gw = Gateway::start(&config(&up.url(), &format!("redis://{dead}/0"), "allow")).await;
    assert_eq!(
        get(&gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let got = get_with(&gw.url("/api/x"), &token("early", "orders:read")).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
    assert!(!got.header("retry-after").is_empty());
    assert_eq!(get(&gw.url("/open"), &[]).await.status, StatusCode::OK);
}

/// A TCP proxy that forwards both ways until frozen; frozen, it stops
/// forwarding without closing anything (a silent partition).
struct HangingProxy {
    addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl HangingProxy {
    async fn start(target: std::net::SocketAddr) -> HangingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, f.clone()));
                tokio::spawn(pump(sr, cw, f.clone()));
            }
        });
        HangingProxy { addr, frozen, task }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Drop for HangingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`; once `frozen`, drops what it reads and holds both
/// halves open forever (until the runtime ends).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Pins a fixed bug: with the Redis connection hung (packets stop, nothing
/// closes) a `deny` replica served a token revoked elsewhere for 2 s. Its
/// heartbeat now has a deadline: it answers 503 within
/// `revocation.max_staleness` plus a margin, and recovers once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_connection_turns_a_deny_replica_503_within_max_staleness() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const MAX_STALENESS: Duration = Duration::from_millis(300);
    // Before the heartbeat deadline a hung connection went unnoticed for
    // 1-2 s (the XREAD block plus its response timeout).
    const MARGIN: Duration = Duration::from_millis(700);
    let up = Upstream::echo("up").await;
    let target = format!("127.0.0.1:{}", redis.port()).parse().expect("addr");
    let proxy = HangingProxy::start(target).await;
    let a = Gateway::start(&auth_config(
        &up.url(),
        &format!(
            "store = \"redis\"\nredis_url = \"redis://{}/0\"\non_store_down = \"deny\"\nmax_staleness = \"300ms\"",
            proxy.addr
        ),
    ))
    .await;
    wait_ready(&a, true).await;
    let b = replica(&up, &redis.url(), "deny").await;
    let t = token("hung", "orders:read");
    assert_eq!(get_with(&a.url("/api/x"), &t).await.status, StatusCode::OK);

    proxy.freeze(true);
    let frozen_at = std::time::Instant::now();
    assert_eq!(
        post_with(&b.url("/auth/logout"), &t).await.status,
        StatusCode::OK
    );
    let status = loop {
        let got = get_with(&a.url("/api/x"), &t).await.status;
        if got != StatusCode::OK || frozen_at.elapsed() > MAX_STALENESS + MARGIN {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = frozen_at.elapsed();
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "after {took:?} the hung replica still answers from stale state"
    );
    assert!(took <= MAX_STALENESS + MARGIN, "503 only after {took:?}");
    assert_eq!(
        get(&a.admin_url("/readyz"), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Redis answers again: the replica reconnects, catches up, refuses.
    proxy.freeze(false);
    wait_ready(&a, true).await;
    assert_eq!(
        get_with(&a.url("/api/x"), &t).await.status,
        StatusCode::UNAUTHORIZED
    );
}
