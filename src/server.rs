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
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            forwarded_for: crate::proxy::headers::peer_value(addr.ip()),
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
}

impl ConnSettings {
    /// HTTP/1.1 and h2c, with a header read timeout and a read buffer bound
    /// just above `max_header_bytes` (the exact limit is checked per request).
    pub fn new(server: &ServerConfig) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout)
            .max_buf_size((server.max_header_bytes + 4096).max(MIN_BUF_SIZE))
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
        }
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
        let client = Peer::new(peer);
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(handler.call(req, client).await) }
        });
        let conn = settings
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
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
