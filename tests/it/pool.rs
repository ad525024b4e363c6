//! Upstream connection reuse: keep-alive, connections the upstream closes,
//! idle expiry, and responses the client abandons.

use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::StatusCode;
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

/// An upstream that answers one request per connection and then closes it
/// without saying so (no `Connection: close`), as a server whose keep-alive
/// timeout just fired does.
async fn one_shot_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
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
