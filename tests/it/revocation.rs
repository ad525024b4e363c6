//! Logout, logout-all, RFC 7009, the admin API, expiry and durability.

use crate::support::*;
use hyper::StatusCode;
use serde_json::json;
use std::time::Duration;

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    (up, gw)
}

fn assert_revoked(got: &Got) {
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{}", got.body);
    assert_eq!(got.json()["error"], "invalid_token");
    assert_eq!(got.json()["error_description"], "token revoked");
}

#[tokio::test]
async fn logout_revokes_this_token_everywhere() {
    let (_up, gw) = setup().await;
    let jti = unique("j");
    let t = hs256(&claims("alice", &jti, "orders:read"));
    let other = token("alice", "orders:read");
    assert_eq!(
        get_with(&gw.url("/api/orders"), &t).await.status,
        StatusCode::OK
    );

    let got = post_with(&gw.url("/auth/logout"), &t).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let body = got.json();
    assert_eq!(body["revoked"], true);
    assert_eq!(body["jti"], jti.as_str());
    assert!(body["expires_at"].as_u64().unwrap_or(0) >= now() + 3500);

    assert_revoked(&get_with(&gw.url("/api/orders"), &t).await);
    assert_revoked(&get_with(&gw.url("/private/x"), &t).await);
    assert_revoked(&get_with(&gw.url("/opt/x"), &t).await);
    assert_revoked(&post_with(&gw.url("/auth/logout"), &t).await);
    assert_revoked(&post_with(&gw.url("/auth/logout-all"), &t).await);
    // Another token of the same subject is unaffected.
    assert_eq!(
        get_with(&gw.url("/api/orders"), &other).await.status,
        StatusCode::OK
    );
    // The open route never looks at tokens.
    assert_eq!(get_with(&gw.url("/open"), &t).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_needs_a_valid_token_and_post() {
    let (_up, gw) = setup().await;
    assert_eq!(
        send("POST", &gw.url("/auth/logout"), &[], "").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_with(&gw.url("/auth/logout"), "x.y.z").await.status,
        StatusCode::UNAUTHORIZED
    );
    let got = get_with(&gw.url("/auth/logout"), &token("a", "")).await;
    assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn token_without_jti_is_revoked_by_hash() {
    let (_up, gw) = setup().await;
    let t = hs256(&json!({"sub": "bob", "scope": "orders:read", "iat": now(), "exp": now() + 600}));
    let got = post_with(&gw.url("/auth/logout"), &t).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert!(got.json()["jti"].is_null());
    assert_revoked(&get_with(&gw.url("/api/x"), &t).await);
}

#[tokio::test]
async fn logout_all_revokes_every_token_of_the_subject() {
    let (_up, gw) = setup().await;
    let a1 = token("carol", "orders:read");
    let a2 = token("carol", "orders:read");
    let no_iat = hs256(
        &json!({"sub": "carol", "jti": unique("j"), "scope": "orders:read", "exp": now() + 600}),
    );
    let other = token("dan", "orders:read");
    let got = post_with(&gw.url("/auth/logout-all"), &a1).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let body = got.json();
    assert_eq!(body["revoked"], true);
    assert_eq!(body["sub"], "carol");
    let before = body["before"].as_u64().expect("before");
    assert!(before >= now() - 5 && before <= now());
    assert_revoked(&get_with(&gw.url("/api/x"), &a1).await);
    assert_revoked(&get_with(&gw.url("/api/x"), &a2).await);
    assert_revoked(&get_with(&gw.url("/api/x"), &no_iat).await);
    assert_eq!(
        get_with(&gw.url("/api/x"), &other).await.status,
        StatusCode::OK
    );
    // A token issued in a later second is accepted (wait for the clock to
    // pass the watermark's second: iat may not lie in the future).
    eventually(
        "the clock passes the watermark second",
        Duration::from_secs(3),
        || async { now() > before },
    )
    .await;
    let later = hs256(
        &json!({"sub": "carol", "jti": unique("j"), "scope": "orders:read", "iat": now(), "exp": now() + 600}),
    );
    assert_eq!(
        get_with(&gw.url("/api/x"), &later).await.status,
        StatusCode::OK
    );
    let same_second = hs256(
        &json!({"sub": "carol", "jti": unique("j"), "scope": "orders:read", "iat": before, "exp": now() + 600}),
    );
    assert_revoked(&get_with(&gw.url("/api/x"), &same_second).await);
}

#[tokio::test]
async fn rfc7009_revoke_endpoint() {
    let (_up, gw) = setup().await;
    let t = token("erin", "orders:read");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let got = send(
        "POST",
        &gw.url("/auth/revoke"),
        &form,
        &format!("token={t}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.is_empty());
    assert_revoked(&get_with(&gw.url("/api/x"), &t).await);
    // Unknown, invalid or already revoked: still 200.
    for body in ["token=garbage", "token=a.b.c", &format!("token={t}")] {
        let got = send("POST", &gw.url("/auth/revoke"), &form, body).await;
        assert_eq!(got.status, StatusCode::OK, "{body}");
    }
    // No token parameter: 400 invalid_request.
    let got = send(
        "POST",
        &gw.url("/auth/revoke"),
        &form,
        "token_type_hint=access_token",
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json()["error"], "invalid_request");
    assert!(got
        .header("www-authenticate")
        .contains("error=\"invalid_request\""));
}

#[tokio::test]
async fn forged_token_sent_to_revoke_changes_nothing() {
    let (_up, gw) = setup().await;
    let jti = unique("victim");
    let real = hs256(&claims("frank", &jti, "orders:read"));
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("frank", &jti, "orders:read"),
        &jsonwebtoken::EncodingKey::from_secret(b"attacker-secret-attacker-secret-00")
            .expect("key"),
    )
    .expect("encode");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let got = send(
        "POST",
        &gw.url("/auth/revoke"),
        &form,
        &format!("token={forged}"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        admin(&gw, "GET", &format!("/admin/revocations/{jti}"), "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_with(&gw.url("/api/x"), &real).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    let (_up, gw) = setup().await;
    let got = send("POST", &gw.admin_url("/admin/revocations"), &[], "{}").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    let got = send(
        "GET",
        &gw.admin_url("/admin/revocations/x"),
        &[("authorization", "Bearer admin-token-for-tests-0123456780")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    // Health and metrics stay open.
    assert_eq!(
        get(&gw.admin_url("/healthz"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_api_without_configured_token_is_404() {
    let up = Upstream::echo("up").await;
    let cfg = auth_config(&up.url(), "").replace(&format!("token = \"{ADMIN_TOKEN}\"\n"), "");
    let gw = Gateway::start(&cfg).await;
    assert_eq!(
        admin(&gw, "GET", "/admin/revocations/x", "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin(&gw, "POST", "/admin/revocations", "{\"sub\":\"a\"}")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admin_revoke_get_lift_by_jti() {
    let (_up, gw) = setup().await;
    let jti = unique("adm");
    let t = hs256(&claims("gina", &jti, "orders:read"));
    let exp = now() + 3600;
    let got = admin(
        &gw,
        "POST",
        "/admin/revocations",
        &json!({"jti": jti, "expires_at": exp}).to_string(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_revoked(&get_with(&gw.url("/api/x"), &t).await);
    let got = admin(&gw, "GET", &format!("/admin/revocations/{jti}"), "").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json(), json!({"jti": jti, "expires_at": exp}));
    let got = admin(&gw, "DELETE", &format!("/admin/revocations/{jti}"), "").await;
    assert_eq!(got.status, StatusCode::NO_CONTENT);
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    assert_eq!(
        admin(&gw, "GET", &format!("/admin/revocations/{jti}"), "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin(&gw, "DELETE", &format!("/admin/revocations/{jti}"), "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admin_revoke_by_token_and_by_sub() {
    let (_up, gw) = setup().await;
    let t = token("hank", "orders:read");
    let got = admin(
        &gw,
        "POST",
        "/admin/revocations",
        &json!({"token": t}).to_string(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_revoked(&get_with(&gw.url("/api/x"), &t).await);
    let t2 = token("ivy", "orders:read");
    let got = admin(
        &gw,
        "POST",
        "/admin/revocations",
        &json!({"sub": "ivy"}).to_string(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_revoked(&get_with(&gw.url("/api/x"), &t2).await);
    // Bad bodies.
    for bad in [
        "",
        "{}",
        "not json",
        "{\"jti\":\"x\"}",
        "{\"jti\":\"x\",\"expires_at\":1}",
        "{\"token\":\"a.b.c\"}",
    ] {
        let got = admin(&gw, "POST", "/admin/revocations", bad).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", got.body);
    }
}

#[tokio::test]
async fn admin_introspect() {
    let (_up, gw) = setup().await;
    let jti = unique("intro");
    let t = hs256(&claims("jill", &jti, "orders:read"));
    let got = admin(
        &gw,
        "POST",
        "/admin/introspect",
        &json!({"token": t}).to_string(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let body = got.json();
    assert_eq!(body["active"], true);
    assert_eq!(body["revoked"], false);
    assert_eq!(body["sub"], "jill");
    assert_eq!(body["jti"], jti.as_str());
    post_with(&gw.url("/auth/logout"), &t).await;
    let body = admin(
        &gw,
        "POST",
        "/admin/introspect",
        &json!({"token": t}).to_string(),
    )
    .await
    .json();
    assert_eq!(body["active"], false);
    assert_eq!(body["revoked"], true);
    let body = admin(
        &gw,
        "POST",
        "/admin/introspect",
        &json!({"token": "x.y.z"}).to_string(),
    )
    .await
    .json();
    assert_eq!(body["active"], false);
}

#[tokio::test]
async fn revocations_expire_with_the_token() {
    let (_up, gw) = setup().await;
    let jti = unique("short");
    let t = hs256(
        &json!({"sub": "kim", "jti": jti, "scope": "orders:read", "iat": now(), "exp": now() + 2}),
    );
    let got = post_with(&gw.url("/auth/logout"), &t).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(
        admin(&gw, "GET", &format!("/admin/revocations/{jti}"), "")
            .await
            .status,
        StatusCode::OK
    );
    eventually(
        "the revocation leaves at exp",
        Duration::from_secs(10),
        || {
            let gw = &gw;
            let jti = jti.clone();
            async move {
                admin(gw, "GET", &format!("/admin/revocations/{jti}"), "")
                    .await
                    .status
                    == StatusCode::NOT_FOUND
            }
        },
    )
    .await;
}

#[tokio::test]
async fn full_blocklist_refuses_instead_of_forgetting() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "capacity = 3")).await;
    let tokens: Vec<String> = (0..4).map(|_| token("lee", "orders:read")).collect();
    for t in &tokens[..3] {
        assert_eq!(
            post_with(&gw.url("/auth/logout"), t).await.status,
            StatusCode::OK
        );
    }
    let got = post_with(&gw.url("/auth/logout"), &tokens[3]).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
    assert!(!got.header("retry-after").is_empty());
    for t in &tokens[..3] {
        assert_revoked(&get_with(&gw.url("/api/x"), t).await);
    }
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("revgate_revocation_store_full_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn restart_keeps_revocations_and_lifts() {
    let up = Upstream::echo("up").await;
    let dir = temp_dir("restart");
    let cfg = auth_config(
        &up.url(),
        &format!("path = {:?}", dir.join("store").display().to_string()),
    );
    let revoked = token("max", "orders:read");
    let lifted_jti = unique("lift");
    let lifted = hs256(&claims("max", &lifted_jti, "orders:read"));
    let watermarked = token("nina", "orders:read");
    {
        let mut gw = Gateway::start(&cfg).await;
        assert_eq!(
            post_with(&gw.url("/auth/logout"), &revoked).await.status,
            StatusCode::OK
        );
        assert_eq!(
            post_with(&gw.url("/auth/logout"), &lifted).await.status,
            StatusCode::OK
        );
        assert_eq!(
            post_with(&gw.url("/auth/logout-all"), &watermarked)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            admin(
                &gw,
                "DELETE",
                &format!("/admin/revocations/{lifted_jti}"),
                ""
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
        gw.shutdown();
        let _ = (&mut gw.task).await;
    }
    let gw = Gateway::start(&cfg).await;
    assert_revoked(&get_with(&gw.url("/api/x"), &revoked).await);
    assert_revoked(&get_with(&gw.url("/api/x"), &watermarked).await);
    assert_eq!(
        get_with(&gw.url("/api/x"), &lifted).await.status,
        StatusCode::OK
    );
}

/// Pins a fixed bug: in the last second of a token's life (`now == exp` with
/// no leeway) the token was still accepted but its revocation had already
/// left, so a logged-out token was forwarded for up to a second.
#[tokio::test]
async fn revocation_holds_through_the_tokens_last_second() {
    let (_up, gw) = setup().await;
    let exp = now() + 1;
    let t = hs256(
        &json!({"sub": "olga", "jti": unique("edge"), "scope": "orders:read", "iat": now(), "exp": exp}),
    );
    let got = post_with(&gw.url("/auth/logout"), &t).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.json()["expires_at"], exp + 1);
    eventually("the clock reaches exp", Duration::from_secs(3), || async {
        now() >= exp
    })
    .await;
    assert_eq!(
        get_with(&gw.url("/api/x"), &t).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Pins a fixed bug: a body trickled to an endpoint the gateway serves
/// itself held the connection forever; `server.request_timeout` bounds it.
#[tokio::test]
async fn trickled_endpoint_body_times_out() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nrequest_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(b"POST /auth/revoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered before the test's deadline")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
