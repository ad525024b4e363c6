//! The proxy core: routing, forwarding, limits, streaming, upgrades, shutdown.

use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn none_route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[route]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\nauth = \"none\"\n{extra}\n"
    )
}

#[tokio::test]
async fn longest_prefix_wins() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let c = Upstream::echo("c").await;
    let gw = Gateway::start(&format!(
        "{}{}{}",
        none_route("/", &a.url(), ""),
        none_route("/api/admin/", &c.url(), ""),
        none_route("/api/", &b.url(), ""),
    ))
    .await;
    assert_eq!(get(&gw.url("/x"), &[]).await.body, "ok from a");
    assert_eq!(get(&gw.url("/api/orders"), &[]).await.body, "ok from b");
    assert_eq!(
        get(&gw.url("/api/admin/users?q=1"), &[]).await.body,
        "ok from c"
    );
    assert_eq!(c.last().uri, "/api/admin/users?q=1");
}

#[tokio::test]
async fn strip_prefix_rewrites_path() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&none_route("/svc/", &up.url(), "strip_prefix = true")).await;
    let got = get(&gw.url("/svc/items/7?full=1"), &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.last().uri, "/items/7?full=1");
}

#[tokio::test]
async fn no_route_is_404_json() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&none_route("/api/", &up.url(), "")).await;
    let got = get(&gw.url("/other"), &[]).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.json()["error"], "not_found");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn upstream_down_is_502() {
    let dead = closed_port().await;
    let gw = Gateway::start(&none_route("/", &format!("http://{dead}"), "")).await;
    let got = get(&gw.url("/x"), &[]).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.json()["error"], "bad_gateway");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let up = Upstream::with(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        text(StatusCode::OK, "late")
    })
    .await;
    let gw = Gateway::start(&none_route("/", &up.url(), "timeout = \"200ms\"")).await;
    let got = get(&gw.url("/slow"), &[]).await;
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(got.json()["error"], "gateway_timeout");
}

#[tokio::test]
async fn request_timeout_bounds_every_route() {
    let up = Upstream::with(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        text(StatusCode::OK, "late")
    })
    .await;
    let gw = Gateway::start(&format!(
        "[server]\nrequest_timeout = \"200ms\"\n{}",
        none_route("/", &up.url(), "")
    ))
    .await;
    assert_eq!(
        get(&gw.url("/"), &[]).await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
}

#[tokio::test]
async fn oversized_header_section_is_431() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nmax_header_bytes = 2048\n{}",
        none_route("/", &up.url(), "")
    ))
    .await;
    let small = "a".repeat(1000);
    assert_eq!(
        get(&gw.url("/"), &[("x-pad", &small)]).await.status,
        StatusCode::OK
    );
    let big = "a".repeat(2100);
    let got = get(&gw.url("/"), &[("x-pad", &big)]).await;
    assert_eq!(got.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Many small headers add up too.
    let many: Vec<(String, String)> = (0..60)
        .map(|i| (format!("x-h{i}"), "v".repeat(30)))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        get(&gw.url("/"), &refs).await.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // Far beyond hyper's read buffer: still a 431, not a dropped connection.
    let huge = "a".repeat(64 * 1024);
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\nx-pad: {huge}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "got {head:?}");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let up = Upstream::with(|_req| async {
        let mut r = text(StatusCode::OK, "ok");
        r.headers_mut()
            .insert("connection", "x-upstream-private".parse().expect("v"));
        r.headers_mut()
            .insert("x-upstream-private", "1".parse().expect("v"));
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().expect("v"));
        r.headers_mut().insert("x-visible", "1".parse().expect("v"));
        r
    })
    .await;
    let gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    let got = get(
        &gw.url("/"),
        &[
            ("connection", "x-private, keep-alive"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.last().headers;
    for h in [
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !seen.contains_key(h),
            "{h} must not reach the upstream: {seen:?}"
        );
    }
    assert_eq!(seen["x-kept"], "yes");
    assert!(!got.headers.contains_key("x-upstream-private"));
    assert!(!got.headers.contains_key("keep-alive"));
    assert_eq!(got.header("x-visible"), "1");
}

#[tokio::test]
async fn forwarded_headers_are_set() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    get(
        &gw.url("/"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("host", "shop.example"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    let seen = up.last().headers;
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.example");
    assert_eq!(
        seen["host"],
        up.addr.to_string(),
        "Host is the upstream's, like nginx's default"
    );
    get(&gw.url("/"), &[]).await;
    assert_eq!(up.last().headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn spoofed_claim_headers_never_reach_upstream() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[jwt]\nhmac_secret = \"{SECRET}\"\n\
         [[route]]\nprefix = \"/api/\"\nupstream = \"{u}\"\nforward_claims = {{ sub = \"x-auth-subject\", scope = \"X-Auth-Scope\" }}\n\
         {open}",
        u = up.url(),
        open = none_route("/", &up.url(), ""),
    ))
    .await;
    let got = get(
        &gw.url("/public"),
        &[
            ("x-auth-subject", "admin"),
            ("x-auth-scope", "everything"),
            ("x-other", "kept"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.last().headers;
    assert!(!seen.contains_key("x-auth-subject"));
    assert!(!seen.contains_key("x-auth-scope"));
    assert_eq!(seen["x-other"], "kept");
}

#[tokio::test]
async fn request_body_reaches_upstream() {
    let up = Upstream::with(|req| async move {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        text(StatusCode::OK, &format!("got {} bytes", body.len()))
    })
    .await;
    let gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    let body = "x".repeat(300_000);
    let got = send("POST", &gw.url("/upload"), &[], &body).await;
    assert_eq!(got.body, "got 300000 bytes");
}

#[tokio::test]
async fn response_streams_chunk_by_chunk() {
    // The upstream sends one chunk, then waits until the test has received it
    // through the gateway before sending the second: a buffering proxy would
    // never deliver the first chunk and the test would time out.
    let (release_tx, release_rx) = tokio::sync::mpsc::channel::<()>(1);
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(release_rx));
    let up = Upstream::with(move |_req| {
        let release_rx = release_rx.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(4);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"first;"))))
                    .await;
                let _ = release_rx.lock().await.recv().await;
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"second"))))
                    .await;
            });
            hyper::Response::new(BodyExt::boxed(ChannelBody(rx)))
        }
    })
    .await;
    let gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    let resp = client()
        .request(
            hyper::Request::get(gw.url("/stream"))
                .body(http_body_util::Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("response headers arrive before the body is complete");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk must arrive while the upstream is still sending")
        .expect("frame")
        .expect("ok");
    assert_eq!(
        first.into_data().expect("data"),
        Bytes::from_static(b"first;")
    );
    release_tx.send(()).await.expect("release");
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(rest, Bytes::from_static(b"second"));
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let up = Upstream::with(|mut req| async move {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "");
        r.headers_mut()
            .insert("upgrade", "websocket".parse().expect("v"));
        r.headers_mut()
            .insert("connection", "Upgrade".parse().expect("v"));
        r.headers_mut().insert(
            "sec-websocket-accept",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().expect("v"),
        );
        r
    })
    .await;
    let gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("101 in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before 101: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let (status, headers) = parse_head(&String::from_utf8_lossy(&head));
    assert_eq!(status, 101);
    assert_eq!(
        headers.get("upgrade").map(String::as_str),
        Some("websocket")
    );
    assert_eq!(up.last().headers["upgrade"], "websocket");
    assert_eq!(
        up.last().headers["sec-websocket-key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );
    // A masked WebSocket text frame "hello", echoed back byte for byte.
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    s.write_all(&frame).await.expect("write frame");
    let mut echoed = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read echo");
    assert_eq!(echoed, frame);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let resp = client
        .request(
            hyper::Request::get(gw.url("/h2"))
                .body(http_body_util::Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("h2c response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(up.last().headers["x-forwarded-host"], gw.addr.to_string());
}

#[tokio::test]
async fn trickling_client_is_cut_off() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nheader_read_timeout = \"300ms\"\n{}",
        none_route("/", &up.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Never finish the header section: the gateway must close the connection.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue, // a 408 may precede the close
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client trickling headers must be disconnected"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn connection_limit_applies_backpressure() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nmax_connections = 1\n{}",
        none_route("/", &up.url(), "")
    ))
    .await;
    let mut first = TcpStream::connect(gw.addr).await.expect("connect");
    first
        .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.expect("first answered");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The first connection stays open (keep-alive): a second one waits.
    let second =
        tokio::spawn(async move { get(&format!("http://{}/2", gw.addr), &[]).await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second connection must wait while the limit is reached"
    );
    assert_eq!(up.count(), 1);
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("second served once the first closed")
        .expect("join");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_request() {
    let up = Upstream::with(|_req| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        text(StatusCode::OK, "finished")
    })
    .await;
    let mut gw = Gateway::start(&none_route("/", &up.url(), "")).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    eventually(
        "request reached the upstream",
        Duration::from_secs(5),
        || async { up.count() == 1 },
    )
    .await;
    gw.shutdown();
    let got = in_flight.await.expect("join");
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "finished");
    tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("gateway stops after draining")
        .expect("join");
    assert!(
        TcpStream::connect(gw.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn admin_health_and_readiness() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        none_route("/", &up.url(), "")
    ))
    .await;
    assert_eq!(
        get(&gw.admin_url("/healthz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::OK
    );
    get(&gw.url("/x"), &[]).await;
    let metrics = get(&gw.admin_url("/metrics"), &[]).await;
    assert!(
        metrics
            .body
            .contains("revgate_requests_total{route=\"/\",outcome=\"forwarded\"} 1"),
        "{}",
        metrics.body
    );
    assert_eq!(
        get(&gw.admin_url("/admin/revocations/x"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Pins a fixed bug: the main listener's connection limit also held back
/// the admin listener, so a flood hid /healthz, /readyz and /metrics.
#[tokio::test]
async fn admin_listener_has_its_own_connection_limit() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nmax_connections = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        none_route("/", &up.url(), "")
    ))
    .await;
    let mut held = TcpStream::connect(gw.addr).await.expect("connect");
    held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let _ = held.read(&mut buf).await.expect("answered");
    let got = tokio::time::timeout(Duration::from_secs(5), get(&gw.admin_url("/healthz"), &[]))
        .await
        .expect("admin answers while the main listener is at its limit");
    assert_eq!(got.status, StatusCode::OK);
}

/// Pins a fixed bug: `..` segments were routed unresolved, so
/// `/public/../api/x` took the open route to a protected path.
#[tokio::test]
async fn dot_segments_are_resolved_before_routing() {
    let open = Upstream::echo("open").await;
    let api = Upstream::echo("api").await;
    let gw = Gateway::start(&format!(
        "{}{}",
        none_route("/public/", &open.url(), ""),
        none_route("/api/", &api.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET /public/../api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).contains("ok from api"));
    assert_eq!(api.last().uri, "/api/x");
    assert_eq!(open.count(), 0);
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET /public/%2e%2e/%2E%2E/etc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"));
}
