//! Listeners, connection handling and graceful shutdown.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind
//! port 0 and stop the gateway when they like.

use crate::body::GatewayBody;
use crate::config::ServerConfig;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    /// Serves one request from `peer`.
    fn call(
        &self,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<GatewayBody>> + Send;
}

/// The client end of a connection, as each of its requests needs it.
/// Cloning it costs one reference count.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client's IP as an `X-Forwarded-For` value, built once per
    /// connection rather than per request.
    pub forwarded_for: HeaderValue,
    /// Whether the connection is TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        Peer {
            addr,
            forwarded_for: crate::proxy::headers::peer_value(addr.ip()),
            tls,
        }
    }
}

/// hyper's smallest allowed HTTP/1 read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// Connection settings shared by both listeners.
#[derive(Clone)]
pub struct ConnSettings {
    builder: auto::Builder<TokioExecutor>,
    limit: Arc<Semaphore>,
    /// From accept to the first request head.
    header_read_timeout: Duration,
    /// From the end of the last response to the next request head.
    idle_timeout: Duration,
    /// The listener's TLS server; `None`: cleartext.
    tls: Option<Arc<crate::tls::Acceptor>>,
}

impl ConnSettings {
    /// HTTP/1.1 and h2c, with a read buffer bound just above
    /// `max_header_bytes` (the exact limit is checked per request).
    ///
    /// hyper's own HTTP/1 `header_read_timeout` is not set: it arms a new
    /// boxed timer for every request head (an allocation and a timer-wheel
    /// insert and removal per request), and [`idle_bounded`] already closes
    /// a connection whose next head is not complete within
    /// `header_read_timeout`, from accept and from the end of each response.
    pub fn new(server: &ServerConfig) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .max_buf_size((server.max_header_bytes + 4096).max(MIN_BUF_SIZE))
            // Responses keep hyper's queued `writev`, not one flat buffer
            // (`writev(false)`, as the upstream client has): flattening
            // copies each body chunk, up to an upstream read of ~400 KB,
            // into a buffer that keeps its largest size for the life of the
            // keep-alive connection (450 KB an idle connection after a 1 MB
            // download). A small head and body are joined for one `write`
            // by `tls::Stream` instead (docs/benchmarks.md, "Flat writes").
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes * 2).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        ConnSettings {
            builder,
            limit: Arc::new(Semaphore::new(server.max_connections)),
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            tls: None,
        }
    }
}

impl ConnSettings {
    /// The same protocol settings with a connection limit of their own, so
    /// one listener's clients cannot starve another's.
    pub fn with_limit(&self, max_connections: usize) -> Self {
        ConnSettings {
            builder: self.builder.clone(),
            limit: Arc::new(Semaphore::new(max_connections)),
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            tls: self.tls.clone(),
        }
    }

    /// The same settings, serving TLS with `tls` (or cleartext with `None`).
    /// The handshake runs on each connection's task, within its
    /// `header_read_timeout` from accept.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::Acceptor>>) -> Self {
        self.tls = tls;
        self
    }
}

/// Connections the admin listener serves at once, apart from the main
/// listener's limit: probes, scrapes and operators need only a few.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Accepts connections on `listener` and serves them with `handler` until
/// `stop` flips to true; every connection is registered with `graceful`.
pub async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    settings: ConnSettings,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        // Backpressure: at max_connections we stop accepting; new clients
        // wait in the kernel backlog instead of costing us memory.
        let permit = tokio::select! {
            p = settings.limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let client = Peer::new(peer, settings.tls.is_some());
        let activity = Arc::new(Activity::new());
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let client = client.clone();
            let guard = requests.begin(req.version() == hyper::Version::HTTP_2);
            async move {
                let resp = handler.call(req, client).await;
                Ok::<_, Infallible>(resp.map(|body| Tracked {
                    body,
                    _guard: guard,
                }))
            }
        });
        let conn = settings
            .builder
            .serve_connection_with_upgrades(
                TokioIo::new(crate::tls::Stream::new(stream, settings.tls.as_deref())),
                service,
            )
            .into_owned();
        let conn = graceful.watch(conn);
        let (header_read_timeout, idle_timeout) =
            (settings.header_read_timeout, settings.idle_timeout);
        tokio::spawn(async move {
            let conn = std::pin::pin!(conn);
            let bounded = idle_bounded(conn, &activity, header_read_timeout, idle_timeout);
            match bounded.await {
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error")
                }
                Some(Ok(())) => {}
                None => tracing::debug!(%peer, "idle connection closed"),
            }
            drop(permit);
        });
    }
}

/// Runs a connection until it ends, or until it has had no request in
/// flight for too long: `header_read_timeout` from accept until the first
/// request head (so a socket that never sends a byte is closed too), then,
/// from the end of each response, the shorter of `idle_timeout` and
/// `header_read_timeout` over HTTP/1 (the next head, trickled or not, must
/// be complete by then) and `idle_timeout` over HTTP/2 (whose streams
/// multiplex: an idle h2 connection sends pings, not heads). `None`: closed
/// for idleness (the connection is dropped, which closes the socket; no
/// request was in flight).
async fn idle_bounded<C, E>(
    mut conn: std::pin::Pin<&mut C>,
    activity: &Activity,
    header_read_timeout: Duration,
    idle_timeout: Duration,
) -> Option<Result<(), E>>
where
    C: Future<Output = Result<(), E>>,
{
    let start = tokio::time::Instant::now();
    // Wake at the earlier of the two bounds: a first request may have come
    // and gone by then, and the idle bound then applies.
    let sleep = tokio::time::sleep_until(start + header_read_timeout.min(idle_timeout));
    let mut sleep = std::pin::pin!(sleep);
    loop {
        tokio::select! {
            r = conn.as_mut() => return Some(r),
            () = sleep.as_mut() => {
                let now = tokio::time::Instant::now();
                let next = match activity.idle_since(start) {
                    // Busy: look again once the shortest bound could have
                    // passed since the response ends.
                    None => now + header_read_timeout.min(idle_timeout),
                    Some((since, served)) => {
                        let limit = match served {
                            Served::No => header_read_timeout,
                            Served::Http1 => idle_timeout.min(header_read_timeout),
                            Served::Http2 => idle_timeout,
                        };
                        let deadline = since + limit;
                        if deadline <= now {
                            return None;
                        }
                        deadline
                    }
                };
                sleep.as_mut().reset(next);
            }
        }
    }
}

/// Whether a connection has served a request yet, and over which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    No,
    Http1,
    Http2,
}

/// What one connection is doing, for its idle bound: requests in flight
/// (counted until their response body is done) and when the last ended.
struct Activity {
    in_flight: AtomicUsize,
    /// Set by the first HTTP/2 request (an h2c connection).
    h2: AtomicBool,
    /// Milliseconds from the connection's start to the end of its last
    /// response; `u64::MAX` before any request.
    idle_since_ms: AtomicU64,
    origin: std::time::Instant,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(u64::MAX),
            origin: std::time::Instant::now(),
        }
    }

    /// A request has arrived (over HTTP/2 if `h2`); the guard marks its
    /// response's end.
    fn begin(self: &Arc<Self>, h2: bool) -> ActivityGuard {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActivityGuard(self.clone())
    }

    /// `None` while a request is in flight; else since when the connection
    /// has been idle and what it has served.
    fn idle_since(&self, start: tokio::time::Instant) -> Option<(tokio::time::Instant, Served)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.idle_since_ms.load(Ordering::Acquire) {
            u64::MAX => Some((start, Served::No)),
            ms => {
                let served = if self.h2.load(Ordering::Relaxed) {
                    Served::Http2
                } else {
                    Served::Http1
                };
                Some((start + Duration::from_millis(ms), served))
            }
        }
    }
}

/// Ends one request's activity when dropped (with its response body).
struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its request's [`ActivityGuard`].
    struct Tracked {
        #[pin]
        body: GatewayBody,
        _guard: ActivityGuard,
    }
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Stops accepting (the caller has flipped the accept loops' stop flag and
/// awaited them) and gives in-flight requests up to `grace` to finish.
pub async fn drain(graceful: GracefulShutdown, grace: Duration) {
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(grace = ?grace, "shutdown grace elapsed; closing remaining connections")
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
