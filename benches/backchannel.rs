//! Back-channel logout across replicas, end to end over HTTP: two gateways
//! (A and B) in this process share one private `redis-server`; the bench
//! plays the identity provider.
//!
//! For each of n sessions: a token with that `sid` is accepted by B; the
//! "identity provider" POSTs a signed logout token for the `sid` to A's
//! `endpoints.backchannel_logout`; B is then polled back to back over a
//! keep-alive connection until it refuses the token. Two figures: from the
//! start of the IdP's POST to the first 401 on B (what a user logging out
//! at the IdP sees), and from A's 200 to it (propagation alone).
//!
//! Run: `cargo bench --bench backchannel` (REVGATE_BENCH_SESSIONS, default
//! 500). Caveats: one machine, Redis on loopback, both gateways and the
//! clients sharing the cores.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use revgate::app::App;
use revgate::config::Config;
use revgate::revocation::redis::testing::RedisServer;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "revgate-bench-backchannel-secret-0123456789abc";
const ISSUER: &str = "https://idp.bench";
const AUDIENCE: &str = "revgate";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(typ: &str, claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let header = jsonwebtoken::Header {
        typ: Some(typ.into()),
        ..Default::default()
    };
    jsonwebtoken::encode(&header, claims, &key).expect("encode")
}

fn access_token(sid: &str) -> String {
    sign(
        "JWT",
        &serde_json::json!({"iss": ISSUER, "sub": "bench", "sid": sid, "iat": now(), "exp": now() + 3600}),
    )
}

fn logout_token(sid: &str, i: usize) -> String {
    let event = revgate::idp::BACKCHANNEL_LOGOUT_EVENT;
    sign(
        "logout+jwt",
        &serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 120,
            "jti": format!("bench-lt-{i}-{}", now()), "sid": sid,
            "events": { event: {} },
        }),
    )
}

fn config(redis_url: &str, upstream: SocketAddr) -> Config {
    let toml = format!(
        r#"
[jwt]
hmac_secret = "{SECRET}"
issuer = "{ISSUER}"
backchannel_audience = "{AUDIENCE}"
[revocation]
store = "redis"
redis_url = "{redis_url}"
[endpoints]
backchannel_logout = "/auth/backchannel-logout"
[access_log]
enabled = false
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
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
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

    async fn send(&mut self, req: Request<Full<Bytes>>) -> StatusCode {
        if self.0.ready().await.is_err() {
            *self = Conn::open(self.1).await;
        }
        let resp = self.0.send_request(req).await.expect("response");
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        status
    }

    async fn get(&mut self, token: &str) -> StatusCode {
        let req = Request::builder()
            .uri("/x")
            .header("host", "bench")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(req).await
    }

    async fn logout(&mut self, logout_token: &str) -> StatusCode {
        let req = Request::builder()
            .method("POST")
            .uri("/auth/backchannel-logout")
            .header("host", "bench")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!(
                "logout_token={logout_token}"
            ))))
            .expect("request");
        self.send(req).await
    }
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
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        ms.len(),
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0)
    );
}

fn main() {
    let n: usize = std::env::var("REVGATE_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
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
        let mut idp = Conn::open(a).await;
        let mut on_b = Conn::open(b).await;
        let (mut from_post, mut from_ack) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let sid = format!("bench-session-{i}-{}", now());
            let t = access_token(&sid);
            let lt = logout_token(&sid, i);
            assert_eq!(on_b.get(&t).await, StatusCode::OK);
            let posted = Instant::now();
            assert_eq!(idp.logout(&lt).await, StatusCode::OK);
            let acked = Instant::now();
            let deadline = acked + Duration::from_secs(5);
            loop {
                if on_b.get(&t).await == StatusCode::UNAUTHORIZED {
                    from_post.push(posted.elapsed().as_secs_f64() * 1e3);
                    from_ack.push(acked.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                assert!(Instant::now() < deadline, "session {i} never refused by B");
            }
        }
        summary(
            "back-channel logout, IdP POST to A -> first 401 on B",
            from_post,
        );
        summary("back-channel logout, 200 on A -> first 401 on B", from_ack);
    });
}
