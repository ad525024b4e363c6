//! Revocations pushed by the identity provider: back-channel logout and
//! RFC 8935 security events, against a small fake identity provider
//! written here. It signs access tokens, logout tokens and SETs with its own
//! key (ES256, kid `ec256-1`) and serves its JWKS over HTTP to the
//! gateway's `jwt.jwks_url`, as Keycloak's realm `certs` endpoint does.

use crate::support::*;
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use revgate::idp::{
    BACKCHANNEL_LOGOUT_EVENT, CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED,
    RISC_CREDENTIAL_COMPROMISE,
};
use revgate::revocation::redis::testing::RedisServer;
use revgate::revocation::RevocationKey;
use serde_json::{json, Value};
use std::time::Duration;

const ISSUER: &str = "https://idp.test/realms/demo";
const AUDIENCE: &str = "revgate-client";
const LOGOUT_PATH: &str = "/auth/backchannel-logout";
const EVENTS_PATH: &str = "/auth/events";
const PUSH_TOKEN: &str = "push-token-for-tests-0123456789";

/// The fake identity provider: its key and its JWKS endpoint.
struct FakeIdp {
    jwks: Upstream,
    key: EncodingKey,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl FakeIdp {
    async fn start() -> FakeIdp {
        let jwks = String::from_utf8(fixture("jwks.json")).expect("utf-8");
        let server = Upstream::with(move |_req| {
            let jwks = jwks.clone();
            async move {
                let mut resp = text(StatusCode::OK, &jwks);
                resp.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                resp
            }
        })
        .await;
        FakeIdp {
            jwks: server,
            key: EncodingKey::from_ec_pem(&fixture("ec256.pem")).expect("ec key"),
        }
    }

    /// The realm's `certs` URL.
    fn jwks_url(&self) -> String {
        format!(
            "{}/realms/demo/protocol/openid-connect/certs",
            self.jwks.url()
        )
    }

    fn sign(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec256-1".into());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// An access token of `sub` in session `sid`.
    fn access_token(&self, sub: &str, sid: Option<&str>) -> String {
        let mut c = json!({
            "iss": ISSUER, "sub": sub, "jti": unique("at"), "iat": now(), "exp": now() + 600,
            "scope": "orders:read",
        });
        if let Some(sid) = sid {
            c["sid"] = json!(sid);
        }
        self.sign(Some("JWT"), &c)
    }
}

/// The claims of a valid logout token for `sub` and/or `sid`.
fn logout_claims(sub: Option<&str>, sid: Option<&str>) -> Value {
    let mut c = json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 120,
        "jti": unique("lt"),
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    });
    if let Some(sub) = sub {
        c["sub"] = json!(sub);
    }
    if let Some(sid) = sid {
        c["sid"] = json!(sid);
    }
    c
}

/// The claims of a SET carrying one event about `subject`.
fn set_claims(event: &str, subject: Value) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "jti": unique("set"),
        "events": { event: { "subject": subject } },
    })
}

fn config(idp: &FakeIdp, upstream: &str, revocation: &str, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[jwt]
algorithms = ["ES256"]
jwks_url = "{jwks}"
issuer = "{ISSUER}"
backchannel_audience = "{AUDIENCE}"
leeway = "0s"

[revocation]
{revocation}

[endpoints]
backchannel_logout = "{LOGOUT_PATH}"
security_events = "{EVENTS_PATH}"
{extra}

[[route]]
prefix = "/api/"
upstream = "{upstream}"
auth = "required"
"#,
        jwks = idp.jwks_url(),
    )
}

async fn start(idp: &FakeIdp, up: &Upstream) -> Gateway {
    Gateway::start(&config(idp, &up.url(), "", "")).await
}

async fn backchannel_logout(gw: &Gateway, logout_token: &str) -> Got {
    send(
        "POST",
        &gw.url(LOGOUT_PATH),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("logout_token={logout_token}"),
    )
    .await
}

async fn push(gw: &Gateway, set: &str, auth: Option<&str>) -> Got {
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/secevent+jwt")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    send("POST", &gw.url(EVENTS_PATH), &headers, set).await
}

async fn status(gw: &Gateway, token: &str) -> StatusCode {
    get_with(&gw.url("/api/x"), token).await.status
}

/// A logout for a session refuses every token of that session, and only
/// those: another session of the same user and tokens without `sid` go on.
#[tokio::test]
async fn backchannel_logout_revokes_the_session_and_only_it() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;
    let s1 = unique("sid");
    let (a1, a2) = (
        idp.access_token("alice", Some(&s1)),
        idp.access_token("alice", Some(&s1)),
    );
    let other_session = idp.access_token("alice", Some(&unique("sid")));
    let no_session = idp.access_token("alice", None);
    for t in [&a1, &a2, &other_session, &no_session] {
        assert_eq!(status(&gw, t).await, StatusCode::OK);
    }

    let lt = idp.sign(Some("logout+jwt"), &logout_claims(Some("alice"), Some(&s1)));
    let got = backchannel_logout(&gw, &lt).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.header("cache-control"), "no-store");

    for t in [&a1, &a2] {
        let got = get_with(&gw.url("/api/x"), t).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED);
        assert_eq!(got.json()["error_description"], "token revoked");
    }
    assert_eq!(status(&gw, &other_session).await, StatusCode::OK);
    assert_eq!(status(&gw, &no_session).await, StatusCode::OK);
    // A token of that session issued afterwards is refused too.
    assert_eq!(
        status(&gw, &idp.access_token("alice", Some(&s1))).await,
        StatusCode::UNAUTHORIZED
    );
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains(
            "revgate_idp_events_total{endpoint=\"backchannel_logout\",result=\"accepted\"} 1"
        ),
        "{metrics}"
    );
}

/// A logout token with `sub` and no `sid` logs the user out of everything:
/// every token of the subject issued so far is refused.
#[tokio::test]
async fn backchannel_logout_by_sub_revokes_every_token_of_the_subject() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;
    let bob = [
        idp.access_token("bob", Some(&unique("sid"))),
        idp.access_token("bob", None),
    ];
    let carol = idp.access_token("carol", None);
    let lt = idp.sign(Some("logout+jwt"), &logout_claims(Some("bob"), None));
    assert_eq!(backchannel_logout(&gw, &lt).await.status, StatusCode::OK);
    for t in &bob {
        assert_eq!(status(&gw, t).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status(&gw, &carol).await, StatusCode::OK);
}

/// A logout by `sub` revokes the tokens issued up to the logout (the
/// logout token's `iat`), not up to its delivery: a token of a session
/// begun since survives, and so a late or replayed delivery (another
/// replica, or a `jti` evicted from the replay cache) cannot log the user
/// out of it.
#[tokio::test]
async fn backchannel_logout_by_sub_revokes_up_to_the_logout_not_its_delivery() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;
    let issued_at = |iat: u64| {
        idp.sign(
            Some("JWT"),
            &json!({
                "iss": ISSUER, "sub": "grace", "jti": unique("at"), "iat": iat,
                "exp": now() + 600, "scope": "orders:read",
            }),
        )
    };
    let (before, since) = (issued_at(now() - 120), issued_at(now() - 30));
    let mut claims = logout_claims(Some("grace"), None);
    claims["iat"] = json!(now() - 60);
    let lt = idp.sign(Some("logout+jwt"), &claims);
    assert_eq!(backchannel_logout(&gw, &lt).await.status, StatusCode::OK);
    assert_eq!(status(&gw, &before).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&gw, &since).await, StatusCode::OK);
}

/// Each validation step of the specification refuses its own token with
/// 400 `invalid_request`, `Cache-Control: no-store`, and revokes nothing.
#[tokio::test]
async fn backchannel_logout_refuses_each_invalid_logout_token() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;
    let sid = unique("sid");
    let victim = idp.access_token("alice", Some(&sid));
    let good = || logout_claims(Some("alice"), Some(&sid));
    let with = |k: &str, v: Value| {
        let mut c = good();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good();
        c.as_object_mut().expect("object").remove(k);
        c
    };
    let tampered = {
        let t = idp.sign(Some("logout+jwt"), &good());
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        parts[1] = b64.encode(with("sid", json!("another")).to_string());
        parts.join(".")
    };
    let mut neither = good();
    neither.as_object_mut().expect("object").remove("sub");
    neither.as_object_mut().expect("object").remove("sid");
    let hs256_token = hs256(&good());
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad signature", tampered, "invalid signature"),
        (
            "alg not allowed",
            hs256_token,
            "token algorithm not allowed",
        ),
        (
            "wrong iss",
            idp.sign(None, &with("iss", json!("https://evil.test"))),
            "iss is not the configured issuer",
        ),
        (
            "wrong aud",
            idp.sign(None, &with("aud", json!("some-other-client"))),
            "aud does not name jwt.backchannel_audience",
        ),
        (
            "no events",
            idp.sign(None, &without("events")),
            "events is missing",
        ),
        (
            "events member not an object",
            idp.sign(
                None,
                &with("events", json!({ BACKCHANNEL_LOGOUT_EVENT: true })),
            ),
            "the back-channel logout event is not a JSON object",
        ),
        (
            "other event",
            idp.sign(None, &with("events", json!({ "urn:other": {} }))),
            "events has no back-channel logout event",
        ),
        (
            "nonce",
            idp.sign(None, &with("nonce", json!("n-0S6_WzA2Mj"))),
            "a logout token must not contain nonce",
        ),
        (
            "neither sub nor sid",
            idp.sign(None, &neither),
            "neither sub nor sid is present",
        ),
        (
            "expired",
            idp.sign(None, &with("exp", json!(now() - 10))),
            "logout token expired",
        ),
        ("no iat", idp.sign(None, &without("iat")), "iat is missing"),
        ("no jti", idp.sign(None, &without("jti")), "jti is missing"),
        (
            "typ JWT",
            idp.sign(Some("JWT"), &good()),
            "typ is not logout+jwt",
        ),
        (
            "typ of an access token",
            idp.sign(Some("at+jwt"), &good()),
            "typ is not logout+jwt",
        ),
    ];
    for (what, token, why) in cases {
        let got = backchannel_logout(&gw, &token).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{what}: {}", got.body);
        assert_eq!(got.header("cache-control"), "no-store", "{what}");
        assert_eq!(got.json()["error"], "invalid_request", "{what}");
        assert_eq!(got.json()["error_description"], why, "{what}");
    }
    // The form itself.
    for (body, why) in [
        ("", "the logout_token parameter is required"),
        ("logout_token=", "the logout_token parameter is required"),
        (
            "logout_token=a.b.c&logout_token=a.b.c",
            "the logout_token parameter is repeated",
        ),
    ] {
        let got = send("POST", &gw.url(LOGOUT_PATH), &[], body).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(got.json()["error_description"], why);
    }
    let huge = format!("logout_token={}", "a".repeat(17 * 1024));
    let got = send("POST", &gw.url(LOGOUT_PATH), &[], &huge).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.header("cache-control"), "no-store");
    assert_eq!(
        status(&gw, &victim).await,
        StatusCode::OK,
        "nothing revoked"
    );

    // `typ` is compared case-insensitively, with or without `application/`.
    let lt = idp.sign(Some("Application/Logout+JWT"), &good());
    assert_eq!(backchannel_logout(&gw, &lt).await.status, StatusCode::OK);
    assert_eq!(status(&gw, &victim).await, StatusCode::UNAUTHORIZED);
    // The same logout token again: its jti was seen.
    let got = backchannel_logout(&gw, &lt).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.json()["error_description"],
        "logout token replayed (its jti was seen before)"
    );
    // A GET is not a logout.
    let got = get(&gw.url(LOGOUT_PATH), &[]).await;
    assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(got.header("cache-control"), "no-store");
}

/// With a durable local store, a session logged out at the identity
/// provider stays revoked across a restart.
#[tokio::test]
async fn a_session_revocation_survives_a_restart() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let dir = temp_dir("idp-restart");
    let revocation = format!("path = \"{}\"", dir.display());
    let cfg = config(&idp, &up.url(), &revocation, "");
    let sid = unique("sid");
    let t = idp.access_token("alice", Some(&sid));
    {
        let mut gw = Gateway::start(&cfg).await;
        let lt = idp.sign(None, &logout_claims(None, Some(&sid)));
        assert_eq!(backchannel_logout(&gw, &lt).await.status, StatusCode::OK);
        assert_eq!(status(&gw, &t).await, StatusCode::UNAUTHORIZED);
        gw.shutdown();
        let _ = (&mut gw.task).await;
    }
    let gw = Gateway::start(&cfg).await;
    assert_eq!(status(&gw, &t).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&gw, &idp.access_token("alice", Some(&unique("sid")))).await,
        StatusCode::OK
    );
}

/// `endpoints.logout_revokes = "session"`: a logout at the gateway ends the
/// caller's whole session; with the default only its token.
#[tokio::test]
async fn logout_revokes_session_ends_every_token_of_the_session() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let session =
        Gateway::start(&config(&idp, &up.url(), "", "logout_revokes = \"session\"")).await;
    let token_only = start(&idp, &up).await;
    for (gw, sibling_after) in [
        (&session, StatusCode::UNAUTHORIZED),
        (&token_only, StatusCode::OK),
    ] {
        let sid = unique("sid");
        let (t1, t2) = (
            idp.access_token("dora", Some(&sid)),
            idp.access_token("dora", Some(&sid)),
        );
        let got = post_with(&gw.url("/auth/logout"), &t1).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(status(gw, &t1).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(gw, &t2).await, sibling_after);
        if sibling_after == StatusCode::UNAUTHORIZED {
            assert_eq!(got.json()["sid"], sid.as_str());
        }
    }
}

/// The admin API revokes a session by `{"sid"}`; introspection sees it.
#[tokio::test]
async fn admin_revokes_a_session() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;
    let sid = unique("sid");
    let t = idp.access_token("erin", Some(&sid));
    let got = admin(
        &gw,
        "POST",
        "/admin/revocations",
        &json!({ "sid": sid }).to_string(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.json()["sid"], sid.as_str());
    assert!(got.json()["expires_at"].as_u64().unwrap_or(0) > now() + 3600);
    assert_eq!(status(&gw, &t).await, StatusCode::UNAUTHORIZED);
    let got = admin(
        &gw,
        "POST",
        "/admin/introspect",
        &json!({ "token": t }).to_string(),
    )
    .await;
    assert_eq!(got.json()["revoked"], true);
    let got = admin(
        &gw,
        "POST",
        "/admin/revocations",
        &json!({ "sid": "" }).to_string(),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
}

/// RFC 8935 push: each CAEP/RISC event and subject format revokes what it
/// names; a SET already acted on is acknowledged again without effect.
#[tokio::test]
async fn security_events_revoke_sessions_subjects_and_tokens() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;

    let sid = unique("sid");
    let in_session = idp.access_token("frank", Some(&sid));
    let set = idp.sign(
        Some("secevent+jwt"),
        &set_claims(CAEP_SESSION_REVOKED, json!({"format": "opaque", "id": sid})),
    );
    let got = push(&gw, &set, None).await;
    assert_eq!(got.status, StatusCode::ACCEPTED, "{}", got.body);
    assert_eq!(status(&gw, &in_session).await, StatusCode::UNAUTHORIZED);
    // The same SET again: deduplicated by jti, still 202.
    assert_eq!(push(&gw, &set, None).await.status, StatusCode::ACCEPTED);

    let disabled = idp.access_token("grace", None);
    let set = idp.sign(
        None,
        &set_claims(
            RISC_ACCOUNT_DISABLED,
            json!({"format": "iss_sub", "iss": ISSUER, "sub": "grace"}),
        ),
    );
    assert_eq!(push(&gw, &set, None).await.status, StatusCode::ACCEPTED);
    assert_eq!(status(&gw, &disabled).await, StatusCode::UNAUTHORIZED);

    let jti = unique("at");
    let compromised = idp.sign(
        None,
        &json!({"iss": ISSUER, "sub": "heidi", "jti": jti, "iat": now(), "exp": now() + 600}),
    );
    let sibling = idp.access_token("heidi", None);
    let set = idp.sign(
        None,
        &set_claims(
            RISC_CREDENTIAL_COMPROMISE,
            json!({"format": "jwt_id", "iss": ISSUER, "jti": jti}),
        ),
    );
    assert_eq!(push(&gw, &set, None).await.status, StatusCode::ACCEPTED);
    assert_eq!(status(&gw, &compromised).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&gw, &sibling).await, StatusCode::OK);

    // A complex subject with a session.
    let sid2 = unique("sid");
    let t = idp.access_token("ivan", Some(&sid2));
    let subject = json!({
        "format": "complex",
        "user": {"format": "iss_sub", "iss": ISSUER, "sub": "ivan"},
        "session": {"format": "opaque", "id": sid2},
    });
    let set = idp.sign(None, &set_claims(CAEP_SESSION_REVOKED, subject));
    assert_eq!(push(&gw, &set, None).await.status, StatusCode::ACCEPTED);
    assert_eq!(status(&gw, &t).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&gw, &idp.access_token("ivan", None)).await,
        StatusCode::OK
    );

    let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
    for (result, n) in [("accepted", 4), ("duplicate", 1)] {
        let line = format!(
            "revgate_idp_events_total{{endpoint=\"security_events\",result=\"{result}\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

/// Each refusal of the push receiver has its RFC 8935 error code.
#[tokio::test]
async fn security_events_refusals_carry_rfc8935_error_codes() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let extra = format!("\n[events]\npush_token = \"{PUSH_TOKEN}\"\n");
    let gw = Gateway::start(&config(&idp, &up.url(), "", &extra)).await;
    let sid = unique("sid");
    let victim = idp.access_token("judy", Some(&sid));
    let good = || set_claims(CAEP_SESSION_REVOKED, json!({"format": "opaque", "id": sid}));
    let with = |k: &str, v: Value| {
        let mut c = good();
        c[k] = v;
        c
    };
    let tampered = {
        let t = idp.sign(None, &good());
        let (head, _) = t.rsplit_once('.').expect("jws");
        format!("{head}.{}", "A".repeat(86))
    };
    let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
        (
            "no push token",
            idp.sign(None, &good()),
            None,
            "authentication_failed",
        ),
        (
            "wrong push token",
            idp.sign(None, &good()),
            Some("wrong-token-0123456789abcdef"),
            "authentication_failed",
        ),
        ("bad signature", tampered, Some(PUSH_TOKEN), "invalid_key"),
        (
            "not a JWT",
            "hello".to_owned(),
            Some(PUSH_TOKEN),
            "invalid_request",
        ),
        (
            "wrong iss",
            idp.sign(None, &with("iss", json!("https://evil.test"))),
            Some(PUSH_TOKEN),
            "invalid_issuer",
        ),
        (
            "wrong aud",
            idp.sign(None, &with("aud", json!("api"))),
            Some(PUSH_TOKEN),
            "invalid_audience",
        ),
        (
            "no events",
            idp.sign(None, &with("events", json!(null))),
            Some(PUSH_TOKEN),
            "invalid_request",
        ),
        (
            "no exp, iat older than max_token_lifetime",
            idp.sign(None, &with("iat", json!(now() - 25 * 3600))),
            Some(PUSH_TOKEN),
            "invalid_request",
        ),
        (
            "typ JWT",
            idp.sign(Some("JWT"), &good()),
            Some(PUSH_TOKEN),
            "invalid_request",
        ),
    ];
    for (what, set, auth, code) in cases {
        let got = push(&gw, &set, auth).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{what}: {}", got.body);
        assert_eq!(got.json()["err"], code, "{what}: {}", got.body);
        assert!(got.json()["description"].is_string(), "{what}");
        assert_eq!(got.header("cache-control"), "no-store", "{what}");
    }
    // The media type is required.
    let bearer = format!("Bearer {PUSH_TOKEN}");
    let got = send(
        "POST",
        &gw.url(EVENTS_PATH),
        &[
            ("content-type", "application/jwt"),
            ("authorization", &bearer),
        ],
        &idp.sign(None, &good()),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json()["err"], "invalid_request");
    assert_eq!(
        status(&gw, &victim).await,
        StatusCode::OK,
        "nothing revoked"
    );

    let got = push(&gw, &idp.sign(None, &good()), Some(PUSH_TOKEN)).await;
    assert_eq!(got.status, StatusCode::ACCEPTED, "{}", got.body);
    assert_eq!(status(&gw, &victim).await, StatusCode::UNAUTHORIZED);
}

/// A separate events issuer: SETs are verified with `[events]` keys and
/// must name `events.issuer`; the `[jwt]` issuer is refused there.
#[tokio::test]
async fn a_separate_events_issuer_has_its_own_keys() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let jwks_file = format!(
        "{}/tests/fixtures/keys/jwks.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let extra = format!(
        "\n[events]\nissuer = \"https://ssf.test\"\nalgorithms = [\"ES256\"]\njwks_file = \"{jwks_file}\"\n"
    );
    let gw = Gateway::start(&config(&idp, &up.url(), "", &extra)).await;
    let sid = unique("sid");
    let t = idp.access_token("ken", Some(&sid));
    let mut claims = set_claims(CAEP_SESSION_REVOKED, json!({"format": "opaque", "id": sid}));
    let got = push(&gw, &idp.sign(None, &claims), None).await;
    assert_eq!(got.json()["err"], "invalid_issuer", "{}", got.body);
    claims["iss"] = json!("https://ssf.test");
    let got = push(&gw, &idp.sign(None, &claims), None).await;
    assert_eq!(got.status, StatusCode::ACCEPTED, "{}", got.body);
    assert_eq!(status(&gw, &t).await, StatusCode::UNAUTHORIZED);
}

/// A back-channel logout delivered to replica A is refused by replica B;
/// after Redis loses its data, A writes the session back, so a replica
/// started afterwards refuses it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_on_one_replica_is_refused_by_the_other() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let revocation = format!("store = \"redis\"\nredis_url = \"{}\"", redis.url());
    let cfg = config(&idp, &up.url(), &revocation, "");
    let a = Gateway::start(&cfg).await;
    wait_readyz(&a, StatusCode::OK).await;
    let b = Gateway::start(&cfg).await;
    wait_readyz(&b, StatusCode::OK).await;
    let sid = unique("sid");
    let t = idp.access_token("leo", Some(&sid));
    assert_eq!(status(&b, &t).await, StatusCode::OK);

    let lt = idp.sign(Some("logout+jwt"), &logout_claims(Some("leo"), Some(&sid)));
    assert_eq!(backchannel_logout(&a, &lt).await.status, StatusCode::OK);
    // A answered once the record was in Redis: B sees it within the
    // propagation bound.
    let (on_b, token) = (&b, &t);
    eventually(
        "B refuses the session",
        Duration::from_secs(5),
        || async move { status(on_b, token).await == StatusCode::UNAUTHORIZED },
    )
    .await;

    redis.restart_empty();
    // Both replicas hold the session and write it back; the first write
    // wins and the other finds it there, so either may count it.
    let (on_a, on_b) = (a.admin_url("/metrics"), b.admin_url("/metrics"));
    let (on_a, on_b) = (&on_a, &on_b);
    eventually(
        "A or B wrote the session back",
        Duration::from_secs(15),
        || async move { written_back(on_a).await + written_back(on_b).await >= 1 },
    )
    .await;
    wait_readyz(&a, StatusCode::OK).await;
    let late = Gateway::start(&cfg).await;
    wait_readyz(&late, StatusCode::OK).await;
    assert_eq!(status(&late, &t).await, StatusCode::UNAUTHORIZED);
}

/// Waits until `gw`'s `/readyz` answers `want` (with `store = "redis"`,
/// 200: connected to Redis and caught up).
async fn wait_readyz(gw: &Gateway, want: StatusCode) {
    let url = gw.admin_url("/readyz");
    eventually(
        &format!("/readyz answers {want}"),
        Duration::from_secs(15),
        || {
            let url = url.clone();
            async move { get(&url, &[]).await.status == want }
        },
    )
    .await;
}

/// The key prefix of the tests below that read Redis themselves.
const REDIS_PREFIX: &str = "idp-test:";

/// A gateway's config on the shared store `redis`, keys under
/// [`REDIS_PREFIX`], with this `on_store_down`.
fn redis_config(idp: &FakeIdp, up: &Upstream, redis: &RedisServer, on_down: &str) -> String {
    let revocation = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{REDIS_PREFIX}\"\non_store_down = \"{on_down}\"",
        redis.url()
    );
    config(idp, &up.url(), &revocation, "")
}

/// The Redis key of the revocation of session `sid`:
/// `{prefix}rev:{key as 32 hex}` (`src/revocation/redis/codec.rs`).
fn session_key(sid: &str) -> String {
    format!("{REDIS_PREFIX}rev:{}", RevocationKey::from_sid(sid))
}

/// The session record in Redis (its value, the expiry in UNIX seconds) and
/// the change log's last entry (`[field, value, ...]`), read at once.
fn read_redis(conn: &mut redis::Connection, sid: &str) -> (Option<String>, Vec<String>) {
    let record: Option<String> = redis::cmd("GET")
        .arg(session_key(sid))
        .query(conn)
        .expect("GET");
    let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(format!("{REDIS_PREFIX}log"))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(conn)
        .expect("XREVRANGE");
    (
        record,
        last.into_iter().next().map(|(_, f)| f).unwrap_or_default(),
    )
}

/// How long Redis holds back writes while a logout is delivered: well
/// under the gateway's 1 s Redis response timeout.
const WRITE_PAUSE_MS: u64 = 300;

/// With `store = "redis"` the 200 to a back-channel logout means the
/// session is already in Redis: read straight from Redis the moment the
/// answer arrives (no waiting, no retry), the record and its change-log
/// entry are there. Redis holds back every write (`CLIENT PAUSE .. WRITE`,
/// reads go on) while the logout is delivered, so a 200 sent before the
/// write completed would find nothing, however fast the write usually is.
/// The same gateway then refuses the session's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_answers_200_only_once_the_session_is_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&redis_config(&idp, &up, &redis, "deny")).await;
    wait_readyz(&gw, StatusCode::OK).await;
    let sid = unique("sid");
    let t = idp.access_token("mia", Some(&sid));
    assert_eq!(status(&gw, &t).await, StatusCode::OK);
    let mut conn = redis.connection();
    assert_eq!(read_redis(&mut conn, &sid).0, None, "not revoked yet");

    let lt = idp.sign(Some("logout+jwt"), &logout_claims(Some("mia"), Some(&sid)));
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(WRITE_PAUSE_MS)
        .arg("WRITE")
        .query(&mut conn)
        .expect("CLIENT PAUSE");
    let got = backchannel_logout(&gw, &lt).await;
    let (record, last_change) = read_redis(&mut conn, &sid);
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.header("cache-control"), "no-store");
    let record = record.unwrap_or_else(|| {
        panic!(
            "200 answered before the session was in Redis ({} absent)",
            session_key(&sid)
        )
    });
    let expires_at: u64 = record.parse().expect("the record is its expiry");
    assert!(expires_at > now(), "{expires_at}");
    let hex = RevocationKey::from_sid(&sid).to_string();
    let expires_at = expires_at.to_string();
    assert_eq!(
        last_change,
        ["t", "r", "k", &hex, "e", &expires_at],
        "the change log's last entry is the session's revocation"
    );

    let got = get_with(&gw.url("/api/x"), &t).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{}", got.body);
    assert_eq!(got.json()["error_description"], "token revoked");
}

/// While Redis is down a back-channel logout is not acknowledged: 503
/// `temporarily_unavailable` with `Retry-After` and `Cache-Control:
/// no-store`, as docs/reference.md documents, so the identity provider
/// retries. Both ways to it: with `on_store_down = "deny"` the gateway
/// refuses before trying (it knows Redis is down); with `"allow"` it tries
/// the write, which fails, and revokes nothing, not even in its own memory.
/// The identity provider's retry of that logout token once Redis is back is
/// acted on (never refused as a replay) and is in Redis when 200 arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_answers_503_while_redis_is_down() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let deny = Gateway::start(&redis_config(&idp, &up, &redis, "deny")).await;
    let allow = Gateway::start(&redis_config(&idp, &up, &redis, "allow")).await;
    for gw in [&deny, &allow] {
        wait_readyz(gw, StatusCode::OK).await;
    }
    let sid = unique("sid");
    let t = idp.access_token("noah", Some(&sid));
    let lt = idp.sign(Some("logout+jwt"), &logout_claims(Some("noah"), Some(&sid)));

    redis.kill();
    for gw in [&deny, &allow] {
        // Each has seen Redis go: the "deny" gate is closed, and "allow"
        // gets past it only to fail the write.
        wait_readyz(gw, StatusCode::SERVICE_UNAVAILABLE).await;
        let got = backchannel_logout(gw, &lt).await;
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
        assert_eq!(got.header("cache-control"), "no-store");
        assert_eq!(got.header("retry-after"), "1");
        assert_eq!(got.json()["error"], "temporarily_unavailable");
    }
    let metrics = get(&allow.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains(
            "revgate_idp_events_total{endpoint=\"backchannel_logout\",result=\"unavailable\"} 1\n"
        ),
        "the write was tried and failed: {metrics}"
    );
    assert_eq!(status(&allow, &t).await, StatusCode::OK, "nothing revoked");

    redis.restart_empty();
    wait_readyz(&allow, StatusCode::OK).await;
    // The identity provider retries until acknowledged: 503 while the
    // gateway reconnects its writer, never 400 (a replay).
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = backchannel_logout(&allow, &lt).await;
        if got.status == StatusCode::OK {
            break;
        }
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
        assert!(std::time::Instant::now() < end, "no 200 within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = redis.connection();
    assert!(read_redis(&mut conn, &sid).0.is_some(), "in Redis");
    assert_eq!(status(&allow, &t).await, StatusCode::UNAUTHORIZED);
}

/// `revgate_store_written_back_total` of a replica's metrics page.
async fn written_back(metrics: &str) -> u64 {
    get(metrics, &[])
        .await
        .body
        .lines()
        .find_map(|l| {
            l.strip_prefix("revgate_store_written_back_total")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
}

/// A logout token or a SET is never accepted as an access token, even
/// when its `iss` and `aud` would pass the route's checks.
#[tokio::test]
async fn a_logout_token_is_not_an_access_token() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = start(&idp, &up).await;
    let mut lt = logout_claims(Some("mallory"), None);
    lt["exp"] = json!(now() + 60);
    let mut set = set_claims(CAEP_SESSION_REVOKED, json!({"format": "opaque", "id": "x"}));
    set["exp"] = json!(now() + 60);
    for claims in [lt, set] {
        let got = get_with(&gw.url("/api/x"), &idp.sign(None, &claims)).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{claims}");
        assert_eq!(
            got.json()["error_description"],
            "a security event or logout token is not an access token"
        );
    }
    assert_eq!(up.count(), 0);
}

/// Deliveries of one logout token and of one SET, `N` at once each (as an
/// identity provider retrying on a timeout may send them), three rounds
/// each: exactly one acts. The rest are replays: 400 for the logout token,
/// 202 without acting (counted `duplicate`) for the SET. A durable store
/// makes each action a write to disk, so the deliveries overlap; each is
/// sent on a connection opened beforehand, all released together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_token_act_once() {
    const N: usize = 16;
    const ROUNDS: usize = 3;
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let dir = temp_dir("idp-concurrent");
    let revocation = format!("path = \"{}\"", dir.display());
    let gw = Gateway::start(&config(&idp, &up.url(), &revocation, "")).await;

    /// Sends `N` copies of a request to `path` with `body`, released
    /// together; the answers.
    async fn all_at_once(
        gw: &Gateway,
        path: &str,
        content_type: &'static str,
        body: String,
    ) -> Vec<Got> {
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(N));
        let mut tasks = Vec::new();
        for _ in 0..N {
            let (mut sender, _driver) = connection(gw.addr).await;
            let req = hyper::Request::post(path)
                .header("host", "gateway.test")
                .header("content-type", content_type)
                .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
                .expect("request");
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                send_on(&mut sender, req).await.expect("answered")
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.expect("delivery task"));
        }
        got
    }

    for round in 0..ROUNDS {
        let sid = unique("sid");
        let lt = idp.sign(Some("logout+jwt"), &logout_claims(Some("olga"), Some(&sid)));
        let form = format!("logout_token={lt}");
        let got = all_at_once(&gw, LOGOUT_PATH, "application/x-www-form-urlencoded", form).await;
        let ok = got.iter().filter(|g| g.status == StatusCode::OK).count();
        assert_eq!(ok, 1, "round {round}: {got:?}");
        for g in got.iter().filter(|g| g.status != StatusCode::OK) {
            assert_eq!(g.status, StatusCode::BAD_REQUEST, "{g:?}");
            assert_eq!(
                g.json()["error_description"],
                "logout token replayed (its jti was seen before)"
            );
        }
        assert_eq!(
            status(&gw, &idp.access_token("olga", Some(&sid))).await,
            StatusCode::UNAUTHORIZED
        );

        let set = idp.sign(
            Some("secevent+jwt"),
            &set_claims(
                CAEP_SESSION_REVOKED,
                json!({"format": "opaque", "id": unique("sid")}),
            ),
        );
        let got = all_at_once(&gw, EVENTS_PATH, "application/secevent+jwt", set).await;
        assert!(
            got.iter().all(|g| g.status == StatusCode::ACCEPTED),
            "round {round}: {got:?}"
        );
        let metrics = get(&gw.admin_url("/metrics"), &[]).await.body;
        let rounds = round + 1;
        for (endpoint, result, n) in [
            ("backchannel_logout", "accepted", rounds),
            ("backchannel_logout", "rejected", rounds * (N - 1)),
            ("security_events", "accepted", rounds),
            ("security_events", "duplicate", rounds * (N - 1)),
        ] {
            let line = format!(
                "revgate_idp_events_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {n}\n"
            );
            assert!(
                metrics.contains(&line),
                "round {round}: {line} in {metrics}"
            );
        }
    }
}

/// A delivery the store could not record (503, here the store is full) is
/// not remembered as acted on: the identity provider's retry with the same
/// token is tried again (503 again, not refused as a replay), and so is a
/// SET's.
#[tokio::test]
async fn a_delivery_that_failed_is_not_a_replay() {
    let idp = FakeIdp::start().await;
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&config(&idp, &up.url(), "capacity = 1", "")).await;
    let first = idp.sign(None, &logout_claims(None, Some(&unique("sid"))));
    assert_eq!(backchannel_logout(&gw, &first).await.status, StatusCode::OK);
    let lt = idp.sign(None, &logout_claims(None, Some(&unique("sid"))));
    for attempt in 0..2 {
        let got = backchannel_logout(&gw, &lt).await;
        assert_eq!(
            got.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}: {}",
            got.body
        );
    }
    let set = idp.sign(
        None,
        &set_claims(
            CAEP_SESSION_REVOKED,
            json!({"format": "opaque", "id": unique("sid")}),
        ),
    );
    for attempt in 0..2 {
        let got = push(&gw, &set, None).await;
        assert_eq!(
            got.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}: {}",
            got.body
        );
    }
}
