//! Upstream connection reuse: keep-alive, connections the upstream closes,
//! idle expiry, and responses the client abandons.

use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn route(upstream: &str, server: &str) -> String {
    format!("[server]\n{server}\n[[route]]\nprefix = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n")
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&route(&up.url(), "")).await;
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/x"), &[]).await.status, StatusCode::OK);
    }
    // HEAD and 204 answers have no body to read: their connection comes
    // back as soon as the head is in.
    assert_eq!(
        send("HEAD", &gw.url("/x"), &[], "").await.status,
        StatusCode::OK
    );
    assert_eq!(get(&gw.url("/x"), &[]).await.status, StatusCode::OK);
    assert_eq!(up.count(), 22);
    assert_eq!(
        up.accepted(),
        1,
        "every request after the first reuses the connection"
    );
}

#[tokio::test]
async fn no_keep_alive_when_idle_per_host_is_zero() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&route(&up.url(), "upstream_idle_per_host = 0")).await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/x"), &[]).await.status, StatusCode::OK);
    }
    assert_eq!(up.accepted(), 3);
}

/// Reads one request head (the tests' requests have no body); false when the
/// connection closed first.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// An upstream that answers one request per connection and then closes it
/// without saying so (no `Connection: close`), as a server whose keep-alive
/// timeout just fired does.
async fn one_shot_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropping `s` closes the connection.
            });
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn connections_the_upstream_closed_are_not_used() {
    let (url, _task) = one_shot_upstream().await;
    let gw = Gateway::start(&route(&url, "")).await;
    for i in 0..30 {
        let got = get(&gw.url("/x"), &[]).await;
        assert_eq!(got.status, StatusCode::OK, "request {i}: {}", got.body);
        assert_eq!(got.body, "ok");
    }
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&route(&up.url(), "upstream_idle_timeout = \"200ms\"")).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, StatusCode::OK);
    assert_eq!(up.accepted(), 1);
    eventually(
        "the idle upstream connection is closed",
        Duration::from_secs(10),
        || async { up.open() == 0 },
    )
    .await;
    // And the next request opens a new one.
    assert_eq!(get(&gw.url("/x"), &[]).await.status, StatusCode::OK);
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn an_abandoned_response_does_not_poison_the_pool() {
    // The first request streams a body that never ends; the client reads the
    // head and hangs up. The connection still has that body on the wire, so
    // it must not serve the next request.
    let up = Upstream::with(|req| async move {
        if req.uri().path() == "/endless" {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                loop {
                    let frame = Frame::data(Bytes::from_static(b"more "));
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            hyper::Response::new(BodyExt::boxed(ChannelBody(rx)))
        } else {
            text(StatusCode::OK, "clean")
        }
    })
    .await;
    let gw = Gateway::start(&route(&up.url(), "")).await;

    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 64];
    let n = s.read(&mut head).await.expect("read");
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    drop(s);

    for _ in 0..5 {
        let got = get(&gw.url("/clean"), &[]).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, "clean");
    }
    assert_eq!(
        up.accepted(),
        2,
        "one connection for the endless body, one reused after"
    );
}

/// An upstream that answers the first request on each connection and, on
/// the second, reads it and closes the connection without answering: what a
/// client sees when the upstream's keep-alive timeout fires just as its
/// request arrives.
async fn closes_on_second_request() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for n in 0.. {
                    if !read_head(&mut s).await || n > 0 {
                        return;
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn idempotent_request_on_a_stale_connection_is_retried_once() {
    let (url, accepted) = closes_on_second_request().await;
    let gw = Gateway::start(&route(&url, "")).await;
    assert_eq!(get(&gw.url("/a"), &[]).await.status, StatusCode::OK);
    // Idle long enough for the connection to count as possibly stale: this
    // wait is the condition under test, not synchronisation.
    tokio::time::sleep(revgate::proxy::pool::STALE_AFTER + Duration::from_millis(100)).await;
    let got = get(&gw.url("/b"), &[]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "retried on a new connection"
    );

    // A request with a body is not sent twice: the upstream may have acted
    // on it.
    tokio::time::sleep(revgate::proxy::pool::STALE_AFTER + Duration::from_millis(100)).await;
    let got = send("POST", &gw.url("/c"), &[], "payload").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
