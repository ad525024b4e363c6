//! Attacks on the gateway's one promise (the upstream sees exactly what was
//! checked), each reproduced against the real gateway in front of a real
//! upstream: a raw-socket upstream that answers 101, one that answers before
//! reading the body, one that percent-decodes paths the way nginx does.

use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any single step may take before a test fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// Sends raw bytes on a new connection and reads until the gateway closes
/// it (requests carry `Connection: close`) or the deadline passes.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    parse_head(response).0
}

/// Reads from `s` until it is closed by the peer; false if still open at
/// the deadline.
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(deadline, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// A raw-socket upstream: reads each request head, records it (lower-cased)
/// and answers with what `answer` returns for it, keeping the connection
/// open and reading (and discarding) whatever else arrives.
struct RawUpstream {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    /// Connections that have ended (EOF or error) so far.
    closed: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawUpstream {
    async fn start(answer: fn(&str) -> String) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (heads2, closed2) = (heads.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (heads, closed) = (heads2.clone(), closed2.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            buf.drain(..end + 4);
                            heads.lock().expect("lock").push(head.clone());
                            if s.write_all(answer(&head).as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                    closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        RawUpstream {
            addr,
            heads,
            closed,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }

    fn closed(&self) -> usize {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An h2c-speaking upstream: switches to h2c whenever asked, else 200.
fn h2c_upstream(head: &str) -> String {
    if head.contains("\r\nupgrade: h2c") {
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".into()
    } else {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain".into()
    }
}

const H2C_REQUEST: &[u8] = b"GET /public/x HTTP/1.1\r\nHost: x\r\n\
    Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
    HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";

/// Pins the h2c smuggling tunnel: an `Upgrade: h2c` on an open route used to
/// be tunnelled to an h2c upstream, whose HTTP/2 requests then reached any
/// route without a token. Now the upgrade is stripped and the request is
/// served as plain HTTP/1.1.
#[tokio::test]
async fn h2c_upgrade_is_stripped_not_tunnelled() {
    let up = RawUpstream::start(h2c_upstream).await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(H2C_REQUEST).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("plain"), "{answer}");
    let head = &up.heads()[0];
    assert!(!head.contains("upgrade"), "{head}");
    assert!(!head.contains("http2-settings"), "{head}");
}

/// Pins: any `Upgrade` value used to be tunnelled; only `websocket` is now.
#[tokio::test]
async fn unknown_upgrade_is_stripped() {
    let up = RawUpstream::start(|head| {
        if head.contains("\r\nupgrade:") {
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n".into()
        } else {
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into()
        }
    })
    .await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: foo/1\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert!(!up.heads()[0].contains("upgrade"));
}

/// Pins: an upstream answering 101 to a request that asked for no upgrade
/// (or for another protocol than it switched to) used to have its 101
/// passed on; now it is a broken upstream, 502.
#[tokio::test]
async fn unasked_switching_protocols_is_502() {
    let up = RawUpstream::start(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".into()
    })
    .await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 502, "{got}");
    let got = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 502, "{got}");
}

/// An upstream that reads the path as nginx does (every escape decoded
/// once, `\\` as `/`, then `.`/`..` resolved and `//` merged) and serves
/// protected content for `/api/`.
async fn decoding_upstream() -> Upstream {
    Upstream::with(|req| async move {
        if nginx_view(req.uri().path()).starts_with("/api/") {
            text(StatusCode::OK, "protected content")
        } else {
            text(StatusCode::OK, "public content")
        }
    })
    .await
}

fn nginx_view(path: &str) -> String {
    let b = path.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                decoded.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        decoded.push(b[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}/", out.join("/"))
}

/// Pins path confusion: `//api/x`, `/%61pi/x`, `/api%2fx` and
/// `/public/..%2fapi/x` used to take the open route untouched, and a
/// decoding upstream served `/api/` content without a token. Now they are
/// routed by their normalised path (401 without a token) or refused (400).
#[tokio::test]
async fn path_confusion_never_reaches_protected_content() {
    let up = decoding_upstream().await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    for (path, status) in [
        ("//api/x", 401),
        ("/%61pi/x", 401),
        ("/%61%70%69/x", 401),
        ("/./api/x", 401),
        ("/api%2fx", 400),
        ("/api%2Fx", 400),
        ("/public/..%2fapi/x", 400),
        ("/public/%2e%2e/api/x", 401),
        ("/public/..;/api/x", 400),
        ("/public/..%5capi/x", 400),
        ("/public%00/x", 400),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let got = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&got), status, "{path}: {got}");
        assert!(!got.contains("protected content"), "{path}: {got}");
    }
    assert_eq!(up.count(), 0);
}

/// Pins: the upstream receives the normalised path, not the client's.
#[tokio::test]
async fn upstream_receives_the_normalised_path() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = raw(
        gw.addr,
        b"GET //public//a/./b/%7Ec/%3bd/../e?q=%2e%2e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert_eq!(up.last().uri, "/public/a/b/~c/e?q=%2e%2e");
}

/// Pins underscore headers: `X_Auth_Subject` used to be forwarded on every
/// route, and a CGI/WSGI upstream reads it as `HTTP_X_AUTH_SUBJECT`, the
/// verified subject. Dropped by default; refused with `reject`.
#[tokio::test]
async fn underscore_headers_never_reach_upstream() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = get(&gw.url("/public/x"), &[("x_auth_subject", "admin")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(!up.last().headers.contains_key("x_auth_subject"));
    let t = token("alice", "orders:read");
    let (k, v) = bearer(&t);
    let got = get(
        &gw.url("/api/x"),
        &[(k, &v), ("X_Auth_Subject", "admin"), ("x-other", "1")],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.last();
    assert!(!seen.headers.contains_key("x_auth_subject"));
    assert_eq!(seen.headers["x-auth-subject"], "alice");
    assert_eq!(seen.headers["x-other"], "1");

    let strict = Gateway::start(&format!(
        "[server]\nunderscores_in_headers = \"reject\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let before = up.count();
    let got = get(&strict.url("/public/x"), &[("x_auth_subject", "admin")]).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json()["error"], "invalid_request");
    assert_eq!(up.count(), before);
}

fn base64url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// Pins two credentials: a valid `Authorization` plus a cookie holding
/// another (revoked, or `alg=none`) token used to pass with the unverified
/// cookie forwarded. Different tokens in two sources are now 400.
#[tokio::test]
async fn two_different_credentials_are_refused() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let mine = token("alice", "orders:read");
    let theirs = token("bob", "orders:read");
    let logout = post_with(&gw.url("/auth/logout"), &theirs).await;
    assert_eq!(logout.status, StatusCode::OK);
    let unsigned = format!(
        "{}.{}.",
        base64url(r#"{"alg":"none","typ":"JWT"}"#),
        base64url(&serde_json::json!({"sub": "root", "exp": now() + 600}).to_string())
    );
    let (k, v) = bearer(&mine);
    for other in [&theirs, &unsigned] {
        let cookie = format!("access_token={other}");
        let got = get(&gw.url("/api/x"), &[(k, &v), ("cookie", &cookie)]).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{}", got.body);
        assert_eq!(got.json()["error"], "invalid_request");
        let got = get(&gw.url(&format!("/api/x?access_token={other}")), &[(k, &v)]).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{}", got.body);
    }
    assert_eq!(up.count(), 0);
}

/// Pins: a token source other than the verified one never reaches the
/// upstream, also when it repeats the same token.
#[tokio::test]
async fn unused_token_sources_are_stripped() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let t = token("alice", "orders:read");
    let (k, v) = bearer(&t);
    let cookie = format!("a=1; access_token={t}; b=2");
    let got = get(
        &gw.url(&format!("/api/x?x=1&access_token={t}&y=2")),
        &[(k, &v), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let seen = up.last();
    assert_eq!(seen.uri, "/api/x?x=1&y=2");
    assert_eq!(seen.headers["cookie"], "a=1; b=2");
    assert_eq!(seen.headers["authorization"], v.as_str());
}

/// Pins idle sockets on the main listener: `header_read_timeout` used to
/// start at the first byte, so connections that never sent one stayed open
/// forever and, at `max_connections`, made the listener unreachable.
#[tokio::test]
async fn silent_connections_are_closed_from_accept() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nmax_connections = 4\nheader_read_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    for s in &mut silent {
        assert!(
            closed_within(s, DEADLINE).await,
            "a connection that sends nothing must be closed"
        );
    }
    let got = tokio::time::timeout(DEADLINE, get(&gw.url("/public/x"), &[]))
        .await
        .expect("the listener serves again once silent sockets are closed");
    assert_eq!(got.status, StatusCode::OK);
}

/// Pins idle sockets on the admin listener: 64 silent connections (its
/// limit) used to make `/healthz` unreachable.
#[tokio::test]
async fn silent_connections_cannot_starve_healthz() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nheader_read_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let admin = gw.admin.expect("admin listener");
    let mut silent = Vec::new();
    for _ in 0..revgate::server::ADMIN_MAX_CONNECTIONS {
        silent.push(TcpStream::connect(admin).await.expect("connect"));
    }
    let got = tokio::time::timeout(DEADLINE, get(&gw.admin_url("/healthz"), &[]))
        .await
        .expect("/healthz answers once silent sockets are closed");
    assert_eq!(got.status, StatusCode::OK);
}

/// Pins `idle_timeout`: a keep-alive connection with nothing in flight is
/// closed after it, even when `header_read_timeout` is longer.
#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nheader_read_timeout = \"30s\"\nidle_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.expect("answered");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut s, DEADLINE).await,
        "an idle keep-alive connection must be closed after idle_timeout"
    );
}

/// Pins the header bound on keep-alive connections: after a response, the
/// next request head must be complete within `header_read_timeout`, even
/// when `idle_timeout` is longer, so a client cannot hold a served
/// connection by trickling its next head (the bound is the gateway's own
/// since hyper's per-request header timer was turned off).
#[tokio::test]
async fn trickled_second_head_is_cut_at_header_read_timeout() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"30s\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.expect("answered");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"GET /public/y HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut s, DEADLINE).await,
        "a second head trickled past header_read_timeout must be cut"
    );
    assert_eq!(up.count(), 1);
}

/// An upstream that answers 200 at once, before reading any body.
fn early_answer(_head: &str) -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly".into()
}

/// Pins slow bodies: a body trickled after the upstream answered early used
/// to hold the client and the upstream connection for as long as the
/// client liked. With `body_read_timeout` both are closed.
#[tokio::test]
async fn trickled_body_after_an_early_answer_is_cut() {
    let up = RawUpstream::start(early_answer).await;
    let gw = Gateway::start(&format!(
        "[server]\nbody_read_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nA")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("early answer in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The client now stalls: both connections must be closed.
    assert!(
        closed_within(&mut s, DEADLINE).await,
        "the client connection must be closed once the body stalls"
    );
    eventually("the upstream connection is closed", DEADLINE, || async {
        up.closed() == 1
    })
    .await;
}

/// Pins: a body that stalls before the upstream answered is a 408.
#[tokio::test]
async fn trickled_body_before_an_answer_is_408() {
    let up = Upstream::with(|req| async move {
        let _ = req.into_body().collect().await;
        text(StatusCode::OK, "read it all")
    })
    .await;
    let gw = Gateway::start(&format!(
        "[server]\nbody_read_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nA")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// Pins: a malformed chunked body used to be a 502 (blamed on the
/// upstream); it is the client's fault, 400.
#[tokio::test]
async fn malformed_chunked_body_is_400() {
    let up = Upstream::with(|req| async move {
        let _ = req.into_body().collect().await;
        text(StatusCode::OK, "read it all")
    })
    .await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = raw(
        gw.addr,
        b"POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          zz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 400, "{got}");
}

/// Pins `Host` rules: an HTTP/1.1 request without `Host`, or with two, used
/// to be forwarded (nginx answers 400).
#[tokio::test]
async fn missing_or_repeated_host_is_400() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = raw(
        gw.addr,
        b"GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 400, "{got}");
    let got = raw(
        gw.addr,
        b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 400, "{got}");
    assert_eq!(up.count(), 0);
    // An absolute-form target's authority wins over Host.
    let got = raw(
        gw.addr,
        b"GET http://real.example/public/x HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert_eq!(up.last().headers["x-forwarded-host"], "real.example");
    assert_eq!(up.last().uri, "/public/x");
}

/// Pins: over HTTP/2 a `host` header naming another authority than
/// `:authority` used to be ignored silently; it is a 400.
#[tokio::test]
async fn h2_host_differing_from_authority_is_400() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let req = hyper::Request::get(gw.url("/public/x"))
        .header("host", "evil.example")
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("req");
    let resp = client.request(req).await.expect("h2c response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(up.count(), 0);
}

/// Pins: a repeated `token` in the RFC 7009 form used to answer 200 and
/// revoke nothing; it is a 400 `invalid_request`.
#[tokio::test]
async fn repeated_token_in_revoke_form_is_400() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let t = token("alice", "orders:read");
    let got = send(
        "POST",
        &gw.url("/auth/revoke"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={t}&token=other.token.x"),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json()["error"], "invalid_request");
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
}

/// Pins: a GET body is forwarded to the upstream, never dropped silently
/// (an upstream reading it must see what the gateway saw).
#[tokio::test]
async fn get_body_is_forwarded_not_dropped() {
    let up = Upstream::with(|req| async move {
        let body = req.into_body().collect().await.expect("body").to_bytes();
        text(
            StatusCode::OK,
            &format!("got {}", String::from_utf8_lossy(&body)),
        )
    })
    .await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let got = send("GET", &gw.url("/public/x"), &[], "payload").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "got payload");
}

/// Pins slow bodies on the admin listener: a JSON body trickled to the
/// admin API used to hold one of its few connections for as long as the
/// client liked; the request is bounded by `server.request_timeout` (408).
#[tokio::test]
async fn trickled_admin_body_is_408() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nrequest_timeout = \"300ms\"\n{}",
        auth_config(&up.url(), "")
    ))
    .await;
    let mut s = TcpStream::connect(gw.admin.expect("admin"))
        .await
        .expect("connect");
    let head = format!(
        "POST /admin/revocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
