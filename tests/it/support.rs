//! Shared test support: a real gateway on an ephemeral port, mock upstreams
//! that count what they saw, and small HTTP helpers.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use revgate::app::App;
use revgate::config::Config;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;
type HandlerFn = dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<BoxBody>> + Send>>
    + Send
    + Sync;

/// What a mock upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: hyper::HeaderMap,
}

/// A mock upstream on 127.0.0.1:0 that records every request.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    /// Connections accepted, and those still open.
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Answers 200 with body "ok from <name>".
    pub async fn echo(name: &'static str) -> Upstream {
        Upstream::with(move |_req| async move { text(StatusCode::OK, &format!("ok from {name}")) })
            .await
    }

    /// Answers with whatever `f` returns.
    pub async fn with<F, Fut>(f: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<BoxBody>> + Send + 'static,
    {
        let handler: Arc<HandlerFn> = Arc::new(move |req| Box::pin(f(req)));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (seen2, count2) = (seen.clone(), count.clone());
        let (accepted2, open2) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted2.fetch_add(1, Ordering::SeqCst);
                open2.fetch_add(1, Ordering::SeqCst);
                let (handler, seen, count) = (handler.clone(), seen2.clone(), count2.clone());
                let open = open2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, seen, count) = (handler.clone(), seen.clone(), count.clone());
                        async move {
                            seen.lock().expect("lock").push(Seen {
                                method: req.method().to_string(),
                                uri: req.uri().to_string(),
                                headers: req.headers().clone(),
                            });
                            count.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(handler(req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            addr,
            seen,
            count,
            accepted,
            open,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Connections the upstream has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections the upstream holds open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
}

pub fn text(status: StatusCode, body: &str) -> Response<BoxBody> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r
}

pub fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A gateway running in-process on ephemeral ports.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
    pub app_metrics: Arc<revgate::telemetry::Metrics>,
    access_log: Option<revgate::telemetry::access_log::AccessLog>,
}

impl Gateway {
    /// Starts a gateway from TOML (listen addresses are replaced by port 0).
    /// The access log is off unless the TOML has an `[access_log]` section
    /// (it would write every test's requests to standard output).
    pub async fn start(toml: &str) -> Gateway {
        let toml = if toml.contains("[access_log]") {
            toml.to_owned()
        } else {
            format!("{toml}\n[access_log]\nenabled = false\n")
        };
        let config = Config::from_toml(&toml, "test").expect("test config must be valid");
        Gateway::start_config(config).await
    }

    /// Starts a gateway from a config file written with `toml` (the access
    /// log off unless it says otherwise), reloadable from that file.
    pub async fn start_reloadable(toml: &str) -> (Gateway, std::path::PathBuf) {
        let path = temp_dir("reload").join("gateway.toml");
        write_config_file(&path, toml);
        let config = Config::load(&path).expect("test config must be valid");
        let has_admin = config.admin.is_some();
        let app = App::build_reloadable(config, path.clone())
            .await
            .expect("gateway builds");
        (Gateway::start_app(app, has_admin).await, path)
    }

    pub async fn start_config(config: Config) -> Gateway {
        let has_admin = config.admin.is_some();
        let app = App::build(config).await.expect("gateway builds");
        Gateway::start_app(app, has_admin).await
    }

    async fn start_app(app: App, has_admin: bool) -> Gateway {
        let main = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = main.local_addr().expect("addr");
        let admin_listener = if has_admin {
            Some(TcpListener::bind("127.0.0.1:0").await.expect("bind admin"))
        } else {
            None
        };
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let metrics = app.metrics.clone();
        let access_log = app.access_log.clone();
        let task = tokio::spawn(app.run(main, admin_listener, async {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            admin,
            stop: Some(tx),
            task,
            app_metrics: metrics,
            access_log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The running gateway's access log, when it has one.
    pub fn access_log(&self) -> Option<&revgate::telemetry::access_log::AccessLog> {
        self.access_log.as_ref()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin.expect("admin listener configured"),
            path
        )
    }

    /// Signals shutdown; returns the task to await.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and reads the whole response.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client().request(req).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    send("GET", url, headers, "").await
}

/// One HTTP/1.1 connection to `addr`, outside any pool: it is never
/// replaced, so a request on it fails once the peer has closed it. Also
/// returns the task driving the connection, which ends when it does.
pub async fn connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

/// Sends `req` on `sender` (its URI in origin form, with a `Host` header)
/// once the connection is ready, and reads the whole response.
pub async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Got, hyper::Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Polls `f` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if f().await {
            return;
        }
        if Instant::now() > end {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// Parses "k: v" header lines of a raw HTTP/1 response head.
pub fn parse_head(head: &str) -> (u16, HashMap<String, String>) {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// The HMAC secret used by test configs.
pub const SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

/// A body fed frame by frame from a channel (for streaming tests).
pub struct ChannelBody(
    pub tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, hyper::Error>>,
);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx)
    }
}

/// Seconds since the UNIX epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 token signed with [`SECRET`] by jsonwebtoken directly (not by
/// the gateway's own minting code).
pub fn hs256(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("encode")
}

/// Standard claims: `sub`, `jti`, `iat` now, `exp` in an hour, `scope`.
pub fn claims(sub: &str, jti: &str, scope: &str) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "jti": jti, "scope": scope, "iat": now(), "exp": now() + 3600,
    })
}

/// A token for `sub` with a unique jti and the given scope.
pub fn token(sub: &str, scope: &str) -> String {
    hs256(&claims(sub, &unique("jti"), scope))
}

/// A process-unique name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Writes a gateway config file, the access log off unless `toml` has an
/// `[access_log]` section.
pub fn write_config_file(path: &std::path::Path, toml: &str) {
    let text = if toml.contains("[access_log]") {
        toml.to_owned()
    } else {
        format!("{toml}\n[access_log]\nenabled = false\n")
    };
    std::fs::write(path, text).expect("write config");
}

/// A fresh empty directory under the target dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The admin token used by test configs.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

/// A config with `[jwt]` (HS256, [`SECRET`]), `[admin]` (port 0,
/// [`ADMIN_TOKEN`]), a protected `/api/` route (scope `orders:read`,
/// claims forwarded), an optional `/opt/` route and an open `/` route, all to
/// `upstream`; `extra` is appended (more sections or keys).
pub fn auth_config(upstream: &str, revocation: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[jwt]
algorithms = ["HS256"]
hmac_secret = "{SECRET}"
leeway = "0s"
sources = ["header:authorization", "cookie:access_token", "query:access_token"]

[revocation]
{revocation}

[[route]]
prefix = "/api/"
upstream = "{upstream}"
auth = "required"
scopes = ["orders:read"]
forward_claims = {{ sub = "x-auth-subject", scope = "x-auth-scope" }}

[[route]]
prefix = "/private/"
upstream = "{upstream}"
auth = "required"
pass_authorization = false

[[route]]
prefix = "/opt/"
upstream = "{upstream}"
auth = "optional"
forward_claims = {{ sub = "x-auth-subject" }}

[[route]]
prefix = "/"
upstream = "{upstream}"
auth = "none"
"#
    )
}

/// `Authorization: Bearer <t>` as a header pair.
pub fn bearer(t: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {t}"))
}

/// GET with a bearer token.
pub async fn get_with(url: &str, token: &str) -> Got {
    let (k, v) = bearer(token);
    get(url, &[(k, &v)]).await
}

/// POST with a bearer token and no body.
pub async fn post_with(url: &str, token: &str) -> Got {
    let (k, v) = bearer(token);
    send("POST", url, &[(k, &v)], "").await
}

/// A request to the admin API with the admin token.
pub async fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> Got {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    send(
        method,
        &gw.admin_url(path),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}
