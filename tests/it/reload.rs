//! Reloading the configuration without a restart: what changes, what
//! survives, and what a refused reload leaves in place.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn reload(gw: &Gateway) -> Got {
    admin(gw, "POST", "/admin/reload", "").await
}

/// The value of the sample `name` (with its labels) in a Prometheus text
/// exposition.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `revgate_config_last_reload_success_timestamp_seconds` now.
async fn last_reload_success(gw: &Gateway) -> u64 {
    let text = get(&gw.admin_url("/metrics"), &[]).await.body;
    metric(
        &text,
        "revgate_config_last_reload_success_timestamp_seconds",
    )
    .unwrap_or_else(|| panic!("no reload timestamp in {text}"))
}

/// Waits until the system clock has passed UNIX second `t`.
async fn next_second_after(t: u64) {
    eventually("the next second", Duration::from_secs(3), || {
        let passed = now() > t;
        async move { passed }
    })
    .await;
}

/// `GET path` with token `t` on `sender`.
async fn get_on(
    sender: &mut SendRequest<Full<Bytes>>,
    path: &str,
    t: &str,
) -> Result<Got, hyper::Error> {
    let req = hyper::Request::get(path)
        .header("host", "gateway.test")
        .header("authorization", format!("Bearer {t}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send_on(sender, req).await
}

/// Keep-alive clients send throughout five reloads that each change the
/// routes, each on one connection it never replaces (a gateway that closed
/// keep-alive connections on reload fails their next request), while one
/// slow request is held at the upstream across a reload: not one request
/// fails, every connection is still open at the end, the slow request is
/// answered 200, and the route added last answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    const CLIENTS: usize = 4;
    let (release, gate) = tokio::sync::watch::channel(false);
    let held = Arc::new(AtomicBool::new(false));
    let held_up = held.clone();
    // Answers at once, except `/api/slow`, which waits for `release`.
    let up = Upstream::with(move |req| {
        let (mut gate, held) = (gate.clone(), held_up.clone());
        async move {
            if req.uri().path().ends_with("/slow") {
                held.store(true, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
            }
            text(StatusCode::OK, "ok from up")
        }
    })
    .await;
    let base = auth_config(&up.url(), "");
    let (gw, path) = Gateway::start_reloadable(&base).await;
    let t = token("reloader", "orders:read");
    let loaded_at = last_reload_success(&gw).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let sent: Vec<Arc<AtomicUsize>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for n in &sent {
        let (stop, sent, failed, t) = (stop.clone(), n.clone(), failed.clone(), t.clone());
        let (mut sender, driver) = connection(gw.addr).await;
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let got = get_on(&mut sender, "/api/orders", &t).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !matches!(&got, Ok(g) if g.status == StatusCode::OK) {
                    eprintln!("request {} failed: {got:?}", sent.load(Ordering::Relaxed));
                    failed.fetch_add(1, Ordering::Relaxed);
                    // The connection is never replaced: its client stops.
                    break;
                }
            }
            // Still this client's one connection, still open.
            !sender.is_closed() && !driver.is_finished()
        }));
    }
    let progressed = |floor: Vec<usize>| {
        let (sent, failed) = (sent.clone(), failed.clone());
        move || {
            let done = failed.load(Ordering::Relaxed) > 0
                || sent
                    .iter()
                    .zip(&floor)
                    .all(|(n, f)| n.load(Ordering::Relaxed) >= f + 10);
            async move { done }
        }
    };
    let counts = || -> Vec<usize> { sent.iter().map(|n| n.load(Ordering::Relaxed)).collect() };
    eventually(
        "traffic flowing",
        Duration::from_secs(10),
        progressed(vec![0; CLIENTS]),
    )
    .await;
    assert_eq!(failed.load(Ordering::Relaxed), 0, "before any reload");

    // A slow request, in flight at the upstream when the reload swaps.
    let mut slow = Some({
        let (mut sender, _driver) = connection(gw.addr).await;
        let t = t.clone();
        tokio::spawn(async move { get_on(&mut sender, "/api/slow", &t).await })
    });
    eventually(
        "the slow request at the upstream",
        Duration::from_secs(10),
        || {
            let there = held.load(Ordering::SeqCst);
            async move { there }
        },
    )
    .await;
    // The timestamp has whole seconds: reload in a later one than the start.
    next_second_after(loaded_at).await;

    for i in 0..5 {
        let extra = format!(
            "\n[[route]]\nprefix = \"/added-{i}/\"\nupstream = \"{}\"\nauth = \"none\"\n",
            up.url()
        );
        write_config_file(&path, &format!("{base}{extra}"));
        let before = counts();
        let got = reload(&gw).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(got.json()["reloaded"], true);
        // The first reload swapped with the slow request in flight.
        if let Some(slow) = slow.take() {
            assert!(!slow.is_finished(), "the slow request ended early");
            release.send_replace(true);
            let got = tokio::time::timeout(Duration::from_secs(10), slow)
                .await
                .expect("the slow request answered in time")
                .expect("slow request task");
            match got {
                Ok(got) => {
                    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
                    assert_eq!(got.body, "ok from up");
                }
                Err(e) => panic!("the slow request across the reload failed: {e}"),
            }
            let after = last_reload_success(&gw).await;
            assert!(after > loaded_at, "{after} after {loaded_at}");
        }
        // Every client sends on its connection after the reload.
        eventually(
            "traffic after the reload",
            Duration::from_secs(10),
            progressed(before),
        )
        .await;
        assert_eq!(failed.load(Ordering::Relaxed), 0, "after reload {i}");
    }
    stop.store(true, Ordering::Relaxed);
    for (i, c) in clients.into_iter().enumerate() {
        assert!(
            c.await.expect("client task"),
            "client {i}'s connection was closed"
        );
    }
    let total: usize = counts().iter().sum();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {total} requests");
    assert!(
        up.accepted() < 40,
        "keep-alive connections to the upstream survived: {} accepted",
        up.accepted()
    );
    assert_eq!(get(&gw.url("/added-4/x"), &[]).await.status, StatusCode::OK);
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
    let reloads = |result: &str| {
        metric(
            &metrics,
            &format!("revgate_config_reloads_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(reloads("success"), Some(5), "{metrics}");
    assert_eq!(reloads("error"), Some(0), "{metrics}");
    // The route's counters went on across reloads rather than restarting.
    let forwarded = metric(
        &metrics,
        "revgate_requests_total{route=\"/api/\",outcome=\"forwarded\"}",
    )
    .expect("api route counter");
    assert!(
        forwarded > total as u64,
        "{forwarded} of {total} and the slow one"
    );
}

/// Rotating the HMAC secret by reload: tokens signed with the old secret
/// get 401 afterwards, new ones pass; a revocation made before the reload
/// still holds.
#[tokio::test]
async fn reload_with_a_new_hmac_secret_refuses_old_tokens() {
    let up = Upstream::echo("up").await;
    let base = auth_config(&up.url(), "");
    let (gw, path) = Gateway::start_reloadable(&base).await;
    let old = token("rotor", "orders:read");
    let jti = unique("pre-reload");
    let revoked = hs256(&claims("rotor", &jti, "orders:read"));
    assert_eq!(
        post_with(&gw.url("/auth/logout"), &revoked).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&gw.url("/api/x"), &old).await.status,
        StatusCode::OK
    );
    let new_secret = "a-completely-different-secret-0123456789abcdef";
    write_config_file(&path, &base.replace(SECRET, new_secret));
    assert_eq!(reload(&gw).await.status, StatusCode::OK);
    // The verified-token cache went with the old keys.
    assert_eq!(
        get_with(&gw.url("/api/x"), &old).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("rotor", &unique("new"), "orders:read"),
        &jsonwebtoken::EncodingKey::from_secret(new_secret.as_bytes()).expect("key"),
    )
    .expect("sign");
    assert_eq!(
        get_with(&gw.url("/api/x"), &fresh).await.status,
        StatusCode::OK
    );
    // The revocation made before the reload is kept.
    let again = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("rotor", &jti, "orders:read"),
        &jsonwebtoken::EncodingKey::from_secret(new_secret.as_bytes()).expect("key"),
    )
    .expect("sign");
    assert_eq!(
        get_with(&gw.url("/api/x"), &again).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A config that does not validate, or that changes what only a restart
/// can: 409 naming the key, the running config stays, the error is counted.
#[tokio::test]
async fn refused_reload_keeps_the_running_config_and_names_the_key() {
    let up = Upstream::echo("up").await;
    let base = auth_config(&up.url(), "");
    let (gw, path) = Gateway::start_reloadable(&base).await;
    let t = token("keeper", "orders:read");
    // The timestamp has whole seconds: the refusals below come in a later
    // second than the start, so a refusal that set it would show.
    let loaded_at = last_reload_success(&gw).await;
    assert!(loaded_at > 0);
    next_second_after(loaded_at).await;
    write_config_file(
        &path,
        &base.replace("auth = \"required\"", "auth = \"sometimes\""),
    );
    let got = reload(&gw).await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert_eq!(got.json()["key"], "route[0].auth", "{}", got.body);
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    write_config_file(
        &path,
        &base.replace("[revocation]\n", "[revocation]\ncapacity = 7\n"),
    );
    let got = reload(&gw).await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert_eq!(got.json()["key"], "revocation.capacity", "{}", got.body);
    assert!(
        got.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("restart"),
        "{}",
        got.body
    );
    // Each `[revocation]` key is named on its own.
    write_config_file(
        &path,
        &base.replace("[revocation]\n", "[revocation]\nmax_staleness = \"5s\"\n"),
    );
    let got = reload(&gw).await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert_eq!(
        got.json()["key"],
        "revocation.max_staleness",
        "{}",
        got.body
    );
    assert!(
        got.json()["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("revocation.max_staleness: "),
        "{}",
        got.body
    );
    write_config_file(&path, "this is = not [ toml");
    assert_eq!(reload(&gw).await.status, StatusCode::CONFLICT);
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
    assert_eq!(
        metric(&metrics, "revgate_config_reloads_total{result=\"error\"}"),
        Some(4)
    );
    assert_eq!(
        metric(&metrics, "revgate_config_reloads_total{result=\"success\"}"),
        Some(0)
    );
    // A refused reload leaves the time of the last good one alone.
    assert_eq!(last_reload_success(&gw).await, loaded_at, "{metrics}");
    // Reload needs the admin token like every /admin/ path.
    let anon = send("POST", &gw.admin_url("/admin/reload"), &[], "").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}
