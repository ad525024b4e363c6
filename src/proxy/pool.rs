//! Upstream connections: one pool of idle HTTP/1.1 connections per upstream
//! authority, each connection carrying one request at a time.
//!
//! Built on `hyper::client::conn::http1` rather than hyper-util's pooled
//! client, whose per-request hand-offs (a checkout future, a spawned task
//! returning the connection when it is ready again) cost more than the rest
//! of the gateway's request path together. A connection is not a task of
//! its own either: its hyper `Connection` future (the "driver") is polled by
//! whoever holds it, the request future while waiting for the response head
//! and then the response body, so a forwarded request never leaves the
//! client connection's task. A connection goes back to its pool from the
//! response body itself, on its last frame:
//!
//! - checkout pops the most recently used idle connection (LIFO keeps the
//!   fewest connections warm), dropping those idle past `idle_timeout` or
//!   closed by the upstream; with none left it connects.
//! - a request that could not be written on a pooled connection (the upstream
//!   closed it meanwhile) is retried on the next one: hyper hands the
//!   unsent request back.
//! - a request that was written on a connection idle for [`STALE_AFTER`] or
//!   more, and got no response because the upstream closed the connection
//!   at that moment (its keep-alive timeout fired as ours was sent), is
//!   sent once more on a new connection if it is idempotent and has no
//!   body, as nginx's `proxy_next_upstream error` does. Its head is copied
//!   only in that case, so busy connections pay nothing for it.
//! - a response body read to its end returns the connection; one dropped
//!   early, or a timed-out request, drops it (hyper closes it: the response
//!   left on the wire would desync the next one).
//! - upgraded (101) connections never come back: their driver is spawned to
//!   hand the socket over to the tunnel.
//! - an idle connection is polled once when checked out (and by the reaper),
//!   which is when a close by the upstream is noticed.
//! - after the response head, the connection moves only as fast as the
//!   response body is read: a request body still being uploaded then (an
//!   upstream that answered early) waits for the client to read, and once
//!   the response has ended it is finished on a task of its own.

use crate::proxy::client_body::ClientBody;
use crate::proxy::DEFAULT_CONNECT_TIMEOUT;
use crate::tls::UpstreamTls;
use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderValue;
use hyper::http::uri::Authority;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Port used when an `http://` upstream names none.
const DEFAULT_HTTP_PORT: u16 = 80;
/// Port used when an `https://` upstream names none.
const DEFAULT_HTTPS_PORT: u16 = 443;

/// A pooled connection idle this long may be closed by the upstream while
/// our request is on its way; see the module documentation.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// The body sent upstream: the client's, or none (a retried request).
pub type UpstreamBody = Either<ClientBody, Empty<Bytes>>;

/// A connection's hyper `Connection` future: reads and writes its socket
/// when polled, ends when the connection closes.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One upstream connection: where requests go in, and what moves them.
struct Conn {
    sender: SendRequest<UpstreamBody>,
    /// `None` once the connection has ended: a finished driver is dropped at
    /// once, which is what makes hyper hand back a request it never wrote
    /// and fail one it did.
    driver: Option<Driver>,
}

impl Conn {
    /// Polls the driver with `cx`; false once the connection has ended.
    fn poll_driver(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = &mut self.driver else {
            return false;
        };
        if driver.as_mut().poll(cx).is_ready() {
            self.driver = None;
            return false;
        }
        true
    }

    /// Polls the driver once without a waker (the caller is about to poll
    /// it properly, or will drop it). False if the connection has ended.
    fn poll_quietly(&mut self) -> bool {
        self.poll_driver(&mut Context::from_waker(Waker::noop()))
    }

    /// Sends `req` and waits for the response head, driving the connection
    /// meanwhile.
    async fn send(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpstreamBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        std::future::poll_fn(|cx| {
            // An ended connection is dropped inside poll_driver, which
            // resolves the response: the request back if it was never
            // written, an error if it was.
            self.poll_driver(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {authority}: {source}")]
    Connect {
        authority: Authority,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(Authority),
    /// The TLS handshake failed: the certificate did not verify (its chain,
    /// its name, its dates) or the upstream speaks no TLS.
    #[error("TLS handshake with {authority}: {source}")]
    Tls {
        authority: Authority,
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Idle connections to one upstream authority.
pub struct Pool {
    authority: Authority,
    /// `Some` for an `https://` upstream: each new connection's handshake.
    tls: Option<UpstreamTls>,
    /// The `Host` header sent upstream, built once.
    host: HeaderValue,
    max_idle: usize,
    idle_timeout: Duration,
    /// Oldest at the front, most recently returned at the back.
    idle: Mutex<VecDeque<Idle>>,
    reaper_started: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    pub fn new(
        authority: Authority,
        tls: Option<UpstreamTls>,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        let host = HeaderValue::from_str(authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Arc::new(Pool {
            authority,
            tls,
            host,
            max_idle,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
            reaper_started: AtomicBool::new(false),
        })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The value of the `Host` header for this upstream.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The lock guards plain pushes and pops; a panic while held leaves
        // the deque consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` (origin-form URI, `Host` set) on a pooled or new
    /// connection. On success the connection travels with the response body.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        while let Some((mut conn, idle_for)) = self.checkout() {
            let replay = (idle_for >= STALE_AFTER)
                .then(|| replayable(&req))
                .flatten();
            match conn.send(req).await {
                Ok(resp) => return Ok((resp, self.lease(conn))),
                Err(mut e) => match (e.take_message(), replay) {
                    // Not written: the connection closed under us. Next one.
                    (Some(unsent), _) => req = unsent,
                    (None, Some(again)) => {
                        tracing::debug!(upstream = %self.authority, error = %e.error(), "stale upstream connection; retrying on a new one");
                        req = again;
                        break;
                    }
                    (None, None) => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: connecting (resolve, connect, handshake) is the rare path
        // and its state would enlarge every request's future.
        let mut conn = Box::pin(self.connect()).await?;
        match conn.send(req).await {
            Ok(resp) => Ok((resp, self.lease(conn))),
            Err(e) => Err(e.into_error().into()),
        }
    }

    fn lease(self: &Arc<Self>, conn: Conn) -> Lease {
        Lease {
            conn,
            pool: Arc::downgrade(self),
        }
    }

    /// The most recently used idle connection that is still usable, and how
    /// long it was idle.
    fn checkout(&self) -> Option<(Conn, Duration)> {
        let now = Instant::now();
        loop {
            let entry = {
                let mut idle = self.lock();
                let entry = idle.pop_back()?;
                if now.saturating_duration_since(entry.since) >= self.idle_timeout {
                    // Everything older is expired too.
                    idle.clear();
                    return None;
                }
                entry
            };
            let Idle { mut conn, since } = entry;
            // Nobody polled it while idle: this is when a close by the
            // upstream is noticed (outside the lock: it may read the socket).
            if conn.poll_quietly() && conn.sender.is_ready() {
                return Some((conn, now.saturating_duration_since(since)));
            }
        }
    }

    /// Takes a connection back after its response was read in full.
    fn checkin(self: &Arc<Self>, mut conn: Conn) {
        // Let the connection notice the end of the exchange.
        if !conn.poll_quietly() {
            return;
        }
        if conn.sender.is_ready() {
            self.push(conn);
            return;
        }
        // Still busy (the upstream answered before the request body was
        // all sent, say): drive it on a task of its own until it is ready
        // for the next request (then pool it) or ends.
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let ready = std::future::poll_fn(|cx| {
                if !conn.poll_driver(cx) {
                    return Poll::Ready(false);
                }
                conn.sender.poll_ready(cx).map(|r| r.is_ok())
            })
            .await;
            if ready {
                if let Some(pool) = pool.upgrade() {
                    pool.push(conn);
                }
            }
        });
    }

    /// Pools a connection known to be ready. At `max_idle` the oldest idle
    /// connection makes room: the one just used is the likeliest still open.
    fn push(&self, conn: Conn) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.lock();
        while idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Drops idle connections past `idle_timeout`, and those the upstream
    /// has closed (polling each lets it notice; outside the lock, as it may
    /// read and close sockets).
    fn reap(&self) {
        let now = Instant::now();
        let taken = std::mem::take(&mut *self.lock());
        let live: VecDeque<Idle> = taken
            .into_iter()
            .filter_map(|mut e| {
                let fresh = now.saturating_duration_since(e.since) < self.idle_timeout;
                (fresh && e.conn.poll_quietly()).then_some(e)
            })
            .collect();
        let mut idle = self.lock();
        // Connections returned meanwhile are newer: they stay at the back.
        let newer = std::mem::replace(&mut *idle, live);
        idle.extend(newer);
        while idle.len() > self.max_idle {
            idle.pop_front();
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<Conn, UpstreamError> {
        self.start_reaper();
        let host = self.authority.host();
        let default_port = match self.tls {
            Some(_) => DEFAULT_HTTPS_PORT,
            None => DEFAULT_HTTP_PORT,
        };
        let port = self.authority.port_u16().unwrap_or(default_port);
        // Brackets of an IPv6 literal are not part of the address.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let stream =
            tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, TcpStream::connect((host, port)))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout(self.authority.clone()))?
                .map_err(|source| UpstreamError::Connect {
                    authority: self.authority.clone(),
                    source,
                })?;
        // Small requests and responses go out at once, not after Nagle's
        // delay.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY on upstream connection");
        }
        let Some(tls) = &self.tls else {
            let (sender, conn) = client_builder().handshake(TokioIo::new(stream)).await?;
            return Ok(Conn {
                sender,
                driver: Some(Box::pin(conn.with_upgrades())),
            });
        };
        let tls_error = |source| UpstreamError::Tls {
            authority: self.authority.clone(),
            source,
        };
        let stream = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, tls.connect(stream))
            .await
            .map_err(|_| {
                tls_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no handshake within the connect timeout",
                ))
            })?
            .map_err(tls_error)?;
        let (sender, conn) = client_builder().handshake(TokioIo::new(stream)).await?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(conn.with_upgrades())),
        })
    }

    /// Starts, once, a task dropping idle connections that outlive
    /// `idle_timeout` while no request comes to find them. It holds the pool
    /// weakly and ends with it.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        let period = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.reap(),
                    None => return,
                }
            }
        });
    }
}

/// A copy of `req` to send again, if it may be: an idempotent method
/// (RFC 9110 section 9.2.2) and no body.
fn replayable(req: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    if !req.method().is_idempotent() || !req.body().is_end_stream() {
        return None;
    }
    let mut again = Request::new(Either::Right(Empty::new()));
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    Some(again)
}

/// A connection lent to one request. Back to the pool via
/// [`PooledBody`] once the response is read in full; dropped (closed)
/// otherwise.
pub struct Lease {
    conn: Conn,
    pool: Weak<Pool>,
}

impl Lease {
    fn release(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self.conn);
        }
    }

    /// Runs the connection to its end on a task of its own, for a 101: the
    /// driver hands the socket to `hyper::upgrade::on` (often it already
    /// has, and has ended).
    pub fn detach(self) {
        let Conn { sender, driver } = self.conn;
        let Some(driver) = driver else {
            return;
        };
        tokio::spawn(async move {
            let _sender = sender;
            if let Err(e) = driver.await {
                tracing::debug!(error = %e, "upgraded upstream connection ended");
            }
        });
    }

    /// Drives the connection: what the response body needs to arrive.
    fn poll_driver(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.poll_driver(cx)
    }
}

/// An upstream response body that returns its connection to the pool when
/// its last frame has been read.
pub struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    /// `lease` is `None` for a body whose connection must not be reused.
    pub fn new(body: Incoming, lease: Option<Lease>) -> Self {
        let mut pooled = PooledBody { body, lease };
        if pooled.body.is_end_stream() {
            pooled.release();
        }
        pooled
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Body for PooledBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        // The connection reads the body off the socket as it is driven, and
        // only reads on once the body has asked for more (polled Pending).
        // An ended connection has already sent the body its end or error.
        let mut polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_pending() {
            if let Some(lease) = &mut self.lease {
                if !lease.poll_driver(cx) {
                    self.lease = None;
                }
                polled = Pin::new(&mut self.body).poll_frame(cx);
            }
        }
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            // A broken body: the connection is not reusable.
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// hyper's HTTP/1 client for upstream connections. Each message goes out
/// as one flat buffer (`writev(false)`): a request head and a small body are
/// copied together and sent with one `write` rather than a `writev` of
/// several slices, 3-4% more requests/s a core (docs/benchmarks.md, "Flat
/// writes"). The buffer keeps its largest size while the connection lives;
/// that stays small because a request body's chunks are bounded by the
/// client side: its HTTP/1 read buffer (`max_header_bytes` + 4 KB, 8 KB at
/// least) or its HTTP/2 frames (16 KB). The client side alone: on the
/// server side a response's chunks would be the upstream's reads, up to
/// ~400 KB.
fn client_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.writev(false);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Conn` whose driver is `driver` (the real connection's is dropped).
    async fn conn_with(driver: Driver) -> Conn {
        let (io, _peer) = tokio::io::duplex(64);
        let (sender, _real) = http1::handshake::<_, UpstreamBody>(TokioIo::new(io))
            .await
            .expect("handshake");
        Conn {
            sender,
            driver: Some(driver),
        }
    }

    #[tokio::test]
    async fn a_finished_driver_is_never_polled_again() {
        // `Ready` panics when polled after completion, as hyper's upgradeable
        // connection does.
        let mut conn = conn_with(Box::pin(std::future::ready(Ok(())))).await;
        assert!(!conn.poll_quietly(), "the connection has ended");
        assert!(conn.driver.is_none());
        assert!(!conn.poll_quietly(), "and stays ended, without a poll");
        // Detaching an ended connection spawns nothing to poll it.
        let pool = Pool::new(
            "127.0.0.1:9".parse().expect("authority"),
            None,
            1,
            STALE_AFTER,
        );
        pool.lease(conn).detach();
    }

    #[tokio::test]
    async fn a_live_driver_keeps_the_connection() {
        let mut conn = conn_with(Box::pin(std::future::pending())).await;
        assert!(conn.poll_quietly());
        assert!(conn.driver.is_some());
    }
}
