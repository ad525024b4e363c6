//! The load generator: closed-loop HTTP/1.1 keep-alive load, like wrk.
//!
//! One task per connection, each sending its next request only when the
//! previous answer has been read in full, so the number of connections is
//! exact and the offered load follows the server (no coordinated-omission
//! correction: latencies are those each request saw). Every latency in the
//! measured window goes into the task's HDR histogram; the histograms are
//! merged at the end.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout_at, Instant};

/// Highest latency the histograms track: far above any sane answer.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant figures kept by the histograms (0.1% resolution).
const SIGFIGS: u8 = 3;
/// How long requests still in flight when the window closes may take before
/// they are abandoned and the run ends.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed connect, so a dead server is not hammered in a loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What to send, where, and what answer counts as a success.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address (always a loopback address).
    pub addr: SocketAddr,
    /// Origin-form request target (`/path?query`).
    pub path: Uri,
    /// Every request header, `Host` included.
    pub headers: HeaderMap,
    /// The status a correct answer has; anything else is an error.
    pub expect: StatusCode,
    /// Values of one header taken in turn, one per request (distinct
    /// tokens, say); empty: every request the same.
    pub rotate: Rotation,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1, one request
    /// in flight per connection (closed loop, as over HTTP/1.1).
    pub h2: bool,
}

/// One header whose value changes with every request, cycling through a
/// fixed list.
#[derive(Debug, Default)]
pub struct Rotation {
    name: Option<HeaderName>,
    values: Vec<HeaderValue>,
    next: AtomicUsize,
}

impl Clone for Rotation {
    fn clone(&self) -> Rotation {
        Rotation {
            name: self.name.clone(),
            values: self.values.clone(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Rotation {
    /// `name` set to each of `values` in turn.
    pub fn new(name: HeaderName, values: Vec<HeaderValue>) -> Rotation {
        Rotation {
            name: Some(name),
            values,
            next: AtomicUsize::new(0),
        }
    }

    fn apply(&self, headers: &mut HeaderMap) {
        if let (Some(name), false) = (&self.name, self.values.is_empty()) {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.values.len();
            headers.insert(name.clone(), self.values[i].clone());
        }
    }
}

impl Target {
    /// A GET of `path` on `addr` with `headers` (a `Host` is added).
    pub fn new(
        addr: SocketAddr,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        expect: StatusCode,
    ) -> Result<Target, String> {
        let path: Uri = path
            .parse()
            .map_err(|_| format!("{path:?} is not a request path"))?;
        let mut map = HeaderMap::new();
        let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
        map.insert(HOST, host);
        for (name, value) in headers {
            map.insert(name.clone(), value.clone());
        }
        Ok(Target {
            addr,
            path,
            headers: map,
            expect,
            rotate: Rotation::default(),
            h2: false,
        })
    }

    /// Parses `http://127.0.0.1:8080/path`. Only loopback hosts are accepted:
    /// the bench never sends traffic off the machine.
    pub fn from_url(
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        expect: StatusCode,
    ) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("target {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "target {url:?}: only http:// is supported (plain HTTP/1.1)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("target {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addrs: Vec<SocketAddr> = (authority.host().trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| format!("target {url:?}: cannot resolve the host: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("target {url:?}: the host resolves to nothing"))?;
        if !addrs.iter().all(|a| is_loopback(a.ip())) {
            return Err(format!(
                "target {url:?}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
            ));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut target = Target::new(addr, path, headers, expect)?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
        target.headers.insert(HOST, host);
        Ok(target)
    }

    /// HTTP/2 with prior knowledge: the authority goes in `:authority`
    /// (from an absolute URI), not in a `Host` header.
    pub fn into_h2(mut self) -> Result<Target, String> {
        let authority = match self.headers.remove(HOST) {
            Some(h) => h.to_str().map_err(|e| e.to_string())?.to_string(),
            None => self.addr.to_string(),
        };
        let pq = self.path.path_and_query().map_or("/", |p| p.as_str());
        self.path = format!("http://{authority}{pq}")
            .parse()
            .map_err(|_| format!("cannot build an h2 URI for {authority}{pq}"))?;
        self.h2 = true;
        Ok(self)
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.path.clone();
        *req.headers_mut() = self.headers.clone();
        if self.h2 {
            *req.version_mut() = hyper::Version::HTTP_2;
        }
        self.rotate.apply(req.headers_mut());
        req
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Why a request did not count as a success.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// An answer with another status than expected.
    Status(u16),
    /// Connect, write, read or protocol failure.
    Transport(String),
    /// No answer before the run's hard stop.
    Timeout,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(s) => write!(f, "status {s}"),
            ErrorKind::Transport(e) => write!(f, "transport: {e}"),
            ErrorKind::Timeout => f.write_str("no answer before the hard stop"),
        }
    }
}

/// The result of one run.
pub struct Measurement {
    /// Latency of every successful request in the window, in microseconds.
    pub histogram: Histogram<u64>,
    /// Failed requests (and failed connects) in the window, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Length of the measured window.
    pub window: Duration,
}

impl Measurement {
    fn empty(window: Duration) -> Measurement {
        Measurement {
            histogram: new_histogram(),
            errors: BTreeMap::new(),
            window,
        }
    }

    /// Successful requests in the window.
    pub fn requests(&self) -> u64 {
        self.histogram.len()
    }

    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.requests() as f64 / self.window.as_secs_f64()
    }

    /// Failed requests in the window.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency at quantile `q` (0..=1), in milliseconds; 0 without samples.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    /// Highest latency, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    /// Mean latency, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        self.histogram.mean() / 1000.0
    }

    fn merge(&mut self, other: Measurement) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS).expect("valid histogram bounds")
}

/// The phases of a run, shared by every connection task.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Requests started from here on are measured.
    measure_from: Instant,
    /// No request starts from here on; answers after it are not counted.
    end: Instant,
    /// Requests still in flight are abandoned here.
    hard_stop: Instant,
}

impl Clock {
    fn in_window(&self, started: Instant) -> bool {
        started >= self.measure_from && started < self.end
    }
}

/// Drives `plan.connections` closed-loop connections at `target`: warm-up,
/// then the measured window. Must run inside the generator's runtime.
pub async fn run(target: Arc<Target>, plan: Plan) -> Measurement {
    let start = Instant::now();
    let clock = Clock {
        measure_from: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
        hard_stop: start + plan.warmup + plan.duration + STOP_GRACE,
    };
    let tasks: Vec<_> = (0..plan.connections)
        .map(|_| tokio::spawn(connection(target.clone(), clock)))
        .collect();
    let mut total = Measurement::empty(plan.duration);
    for task in tasks {
        match task.await {
            Ok(m) => total.merge(m),
            Err(e) => {
                let kind = ErrorKind::Transport(format!("load task failed: {e}"));
                *total.errors.entry(kind).or_default() += 1;
            }
        }
    }
    total
}

/// What ended one keep-alive connection's request loop.
enum LoopEnd {
    /// The window closed (or the hard stop came): the task is done.
    Done,
    /// The connection broke: open a new one.
    Broken,
}

/// One connection (reopened if it breaks), sequential requests on it.
async fn connection(target: Arc<Target>, clock: Clock) -> Measurement {
    let mut m = Measurement::empty(clock.end - clock.measure_from);
    // When the request in flight started, if one is (for the hard stop).
    let mut in_flight = None;
    // One timer for the whole task rather than one per request.
    let run = timeout_at(
        clock.hard_stop,
        requests(&target, clock, &mut m, &mut in_flight),
    );
    if run.await.is_err() {
        if let Some(started) = in_flight {
            count_error(&mut m, clock, started, ErrorKind::Timeout);
        }
    }
    m
}

fn count_error(m: &mut Measurement, clock: Clock, at: Instant, kind: ErrorKind) {
    if clock.in_window(at) {
        *m.errors.entry(kind).or_default() += 1;
    }
}

/// Opens connections and runs the request loop on each until the window closes.
async fn requests(
    target: &Target,
    clock: Clock,
    m: &mut Measurement,
    in_flight: &mut Option<Instant>,
) {
    while Instant::now() < clock.end {
        let attempt = Instant::now();
        let stream = match TcpStream::connect(target.addr).await {
            Ok(s) => s,
            Err(e) => {
                count_error(
                    m,
                    clock,
                    attempt,
                    ErrorKind::Transport(format!("connect: {e}")),
                );
                sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if target.h2 {
            if let LoopEnd::Done = requests_h2(stream, target, clock, m, in_flight, attempt).await {
                return;
            }
            continue;
        }
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => {
                    let kind = ErrorKind::Transport(format!("handshake: {e}"));
                    count_error(m, clock, attempt, kind);
                    sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            };
        // The connection is driven in this same task (no extra task hop per
        // request); it ends once `sender`, moved into the loop, is dropped.
        let (m, in_flight) = (&mut *m, &mut *in_flight);
        let exchanges = async move {
            loop {
                if sender.ready().await.is_err() {
                    return LoopEnd::Broken;
                }
                let started = Instant::now();
                if started >= clock.end {
                    return LoopEnd::Done;
                }
                *in_flight = Some(started);
                let result = exchange(&mut sender, target).await;
                *in_flight = None;
                match result {
                    Ok(status) if status == target.expect => {
                        let done = Instant::now();
                        if clock.in_window(started) && done <= clock.end {
                            let us = (done - started).as_micros().max(1) as u64;
                            m.histogram.saturating_record(us);
                        }
                    }
                    Ok(status) => {
                        count_error(m, clock, started, ErrorKind::Status(status.as_u16()))
                    }
                    Err(e) => {
                        count_error(m, clock, started, ErrorKind::Transport(e.to_string()));
                        return LoopEnd::Broken;
                    }
                }
            }
        };
        let (_, end) = tokio::join!(conn, exchanges);
        if let LoopEnd::Done = end {
            return;
        }
    }
}

/// One request and its whole answer; the body is read and dropped.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    target: &Target,
) -> Result<StatusCode, hyper::Error> {
    let resp = sender.send_request(target.request()).await?;
    read_answer(resp).await
}

async fn read_answer(resp: hyper::Response<Incoming>) -> Result<StatusCode, hyper::Error> {
    let status = resp.status();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(status)
}

/// The request loop over one h2c connection: one stream at a time, the
/// connection driven in this task, as the HTTP/1.1 loop does.
async fn requests_h2(
    stream: TcpStream,
    target: &Target,
    clock: Clock,
    m: &mut Measurement,
    in_flight: &mut Option<Instant>,
    attempt: Instant,
) -> LoopEnd {
    let handshake = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    );
    let (mut sender, conn) = match handshake.await {
        Ok(pair) => pair,
        Err(e) => {
            let kind = ErrorKind::Transport(format!("h2 handshake: {e}"));
            count_error(m, clock, attempt, kind);
            sleep(RECONNECT_PAUSE).await;
            return LoopEnd::Broken;
        }
    };
    let exchanges = async move {
        loop {
            if sender.ready().await.is_err() {
                return LoopEnd::Broken;
            }
            let started = Instant::now();
            if started >= clock.end {
                return LoopEnd::Done;
            }
            *in_flight = Some(started);
            let result = match sender.send_request(target.request()).await {
                Ok(resp) => read_answer(resp).await,
                Err(e) => Err(e),
            };
            *in_flight = None;
            match result {
                Ok(status) if status == target.expect => {
                    let done = Instant::now();
                    if clock.in_window(started) && done <= clock.end {
                        let us = (done - started).as_micros().max(1) as u64;
                        m.histogram.saturating_record(us);
                    }
                }
                Ok(status) => count_error(m, clock, started, ErrorKind::Status(status.as_u16())),
                Err(e) => {
                    count_error(m, clock, started, ErrorKind::Transport(e.to_string()));
                    return LoopEnd::Broken;
                }
            }
        }
    };
    // The connection future ends once `sender` (moved into the loop) is
    // dropped; select, not join: an h2 connection may outlive its sender
    // until the server's GOAWAY.
    let mut conn = std::pin::pin!(conn);
    let mut exchanges = std::pin::pin!(exchanges);
    tokio::select! {
        end = &mut exchanges => end,
        _ = &mut conn => exchanges.await,
    }
}
