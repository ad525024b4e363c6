//! Replicas sharing revocations through Redis (SPEC §4, `store = "redis"`).
//! Each test starts its own redis-server on a free port (skipped with a
//! notice where redis-server is absent, unless REVGATE_REQUIRE_REDIS=1).

use crate::support::*;
use hyper::StatusCode;
use revgate::revocation::redis::testing::RedisServer;
use serde_json::json;
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
