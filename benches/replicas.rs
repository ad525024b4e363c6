//! Replicas through Redis, measured end to end over HTTP: two gateways
//! (A and B) in this process share one private `redis-server`.
//!
//! * propagation: from the 200 of `POST /auth/logout` on A to the first 401
//!   on B for that token, B being polled back to back over a keep-alive
//!   connection (resolution: one B round trip, ~0.1 ms here);
//! * durable revocations per second through Redis (logout on A) with 1 and
//!   64 concurrent clients.
//!
//! Run: `cargo bench --bench replicas` (REVGATE_BENCH_REVOCATIONS, default
//! 1000). Caveats: one machine, Redis on loopback, both gateways and the
//! clients sharing the cores.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use revgate::app::App;
use revgate::config::Config;
use revgate::revocation::redis::testing::RedisServer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "revgate-bench-replicas-secret-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn token(jti: &str) -> String {
    let claims = serde_json::json!({"sub": "bench", "jti": jti, "iat": now(), "exp": now() + 3600});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("encode")
}

fn config(redis_url: &str, upstream: SocketAddr) -> Config {
    let toml = format!(
        r#"
[jwt]
hmac_secret = "{SECRET}"
[revocation]
store = "redis"
redis_url = "{redis_url}"
[[route]]
prefix = "/"
upstream = "http://{upstream}"
"#
    );
    Config::from_toml(&toml, "bench").expect("bench config")
}

async fn gateway(redis_url: &str, upstream: SocketAddr) -> SocketAddr {
    let app = App::build(config(redis_url, upstream))
        .await
        .expect("gateway");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let health = app.revocations.health().clone();
    tokio::spawn(app.run(listener, None, std::future::pending()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health.is_ok() {
        assert!(Instant::now() < deadline, "replica did not become ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    addr
}

/// A keep-alive HTTP/1.1 connection.
struct Conn(
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    SocketAddr,
);

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Conn(send, addr)
    }
    async fn call(&mut self, method: &str, path: &str, token: &str) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bench")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::new())
            .expect("request");
        if self.0.ready().await.is_err() {
            *self = Conn::open(self.1).await;
        }
        let resp = self.0.send_request(req).await.expect("response");
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        status
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

async fn throughput(a: SocketAddr, clients: usize, per_client: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut conn = Conn::open(a).await;
                for i in 0..per_client {
                    let t = token(&format!("tp-{clients}-{c}-{i}"));
                    if conn.call("POST", "/auth/logout", &t).await == StatusCode::OK {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("REVGATE_BENCH_REVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let up = upstream().await;
        let a = gateway(&redis.url(), up).await;
        let b = gateway(&redis.url(), up).await;
        let mut on_a = Conn::open(a).await;
        let mut on_b = Conn::open(b).await;
        let mut delays_ms = Vec::with_capacity(n);
        for i in 0..n {
            let t = token(&format!("prop-{i}"));
            assert_eq!(on_b.call("GET", "/x", &t).await, StatusCode::OK);
            assert_eq!(on_a.call("POST", "/auth/logout", &t).await, StatusCode::OK);
            let acked = Instant::now();
            let deadline = acked + Duration::from_secs(5);
            loop {
                if on_b.call("GET", "/x", &t).await == StatusCode::UNAUTHORIZED {
                    delays_ms.push(acked.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                assert!(Instant::now() < deadline, "revocation {i} never reached B");
            }
        }
        delays_ms.sort_by(f64::total_cmp);
        println!(
            "propagation over HTTP, 200 on A -> first 401 on B: n={n} p50={:.3} ms p99={:.3} ms max={:.3} ms",
            pct(&delays_ms, 0.5),
            pct(&delays_ms, 0.99),
            delays_ms.last().copied().unwrap_or(0.0)
        );
        for clients in [1usize, 64] {
            let per = (4000 / clients).max(50);
            let rate = throughput(a, clients, per).await;
            println!("durable revocations through Redis (POST /auth/logout on A), {clients} client(s): {rate:.0}/s");
        }
    });
}
