//! Reloading the configuration without a restart: what changes, what
//! survives, and what a refused reload leaves in place.

use crate::support::*;
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

/// Keep-alive clients send throughout five reloads that each change the
/// routes: not one request fails, and the route added last answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let up = Upstream::echo("up").await;
    let base = auth_config(&up.url(), "");
    let (gw, path) = Gateway::start_reloadable(&base).await;
    let t = token("reloader", "orders:read");
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let url: hyper::Uri = gw.url("/api/orders").parse().expect("uri");
        let t = t.clone();
        clients.push(tokio::spawn(async move {
            // One client each: its pooled connection is kept alive across
            // the reloads.
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::get(url.clone())
                    .header("authorization", format!("Bearer {t}"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                        status == StatusCode::OK
                    }
                    Err(_) => false,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    eventually("traffic flowing", Duration::from_secs(10), || {
        let n = sent.load(Ordering::Relaxed);
        async move { n > 50 }
    })
    .await;
    for i in 0..5 {
        let extra = format!(
            "\n[[route]]\nprefix = \"/added-{i}/\"\nupstream = \"{}\"\nauth = \"none\"\n",
            up.url()
        );
        write_config_file(&path, &format!("{base}{extra}"));
        let before = sent.load(Ordering::Relaxed);
        let got = reload(&gw).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(got.json()["reloaded"], true);
        eventually("traffic after the reload", Duration::from_secs(10), || {
            let n = sent.load(Ordering::Relaxed);
            async move { n > before + 20 }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "of {} requests",
        sent.load(Ordering::Relaxed)
    );
    assert!(
        up.accepted() < 40,
        "keep-alive connections survived: {} accepted",
        up.accepted()
    );
    assert_eq!(get(&gw.url("/added-4/x"), &[]).await.status, StatusCode::OK);
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("revgate_config_reloads_total{result=\"success\"} 5"),
        "{metrics}"
    );
    // The route's counters went on across reloads rather than restarting.
    let forwarded: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("revgate_requests_total{route=\"/api/\",outcome=\"forwarded\"} ")
        })
        .and_then(|v| v.parse().ok())
        .expect("api route counter");
    assert!(
        forwarded >= sent.load(Ordering::Relaxed) as u64,
        "{forwarded}"
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
