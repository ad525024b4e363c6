//! The access log: one line per request, written off the request path.
//!
//! The request path builds an [`Entry`] (plain values and reference-counted
//! handles: no formatting, no allocation) and hands it to a bounded queue
//! with `try_send`; it never waits. One writer thread formats the entries
//! every 20 ms and writes them in batches, without being woken by each request. When the
//! queue is full the entry is dropped and counted
//! (`revgate_access_log_dropped_total`): a slow disk costs log lines, never
//! latency.
//!
//! What a line holds: time, peer, method, path (never the query, where a
//! `query:` token source would put a token), status, route prefix, outcome,
//! body bytes sent, upstream and total latency, `sub`, and the token's
//! fingerprint (its `jti`, else the first 12 hex digits of its SHA-256).
//! Never a token or a secret.
//!
//! [`AccessLog::reopen`] (SIGUSR1, as nginx's `kill -USR1`, and every
//! reload) makes the writer open its file again by path, for logrotate.

use crate::auth::Claims;
use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::telemetry::Outcome;
use hyper::{Method, Uri};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The writer writes a batch once it grows past this.
const BATCH_BYTES: usize = 64 * 1024;

/// The writer drains the queue this often. It never blocks in `recv`: a
/// parked receiver would make every request's `try_send` a futex wake-up
/// (a syscall and a context switch per line, measured at 5-10% of
/// throughput); polling costs one wake-up per interval instead, and a line
/// reaches the file at most this late (nginx's `access_log ... flush=`).
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// A failing sink (disk full, closed stdout) is reported at most this often.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// One request, as the access log records it.
#[derive(Debug)]
pub struct Entry {
    pub peer: SocketAddr,
    pub method: Method,
    /// Only the path is written; the query never is.
    pub uri: Uri,
    pub status: u16,
    /// The matched route's prefix, or `None` (a gateway endpoint or no route).
    pub route: Option<Arc<str>>,
    pub outcome: Outcome,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// From sending the request upstream to its response headers.
    pub upstream: Option<Duration>,
    /// From the request's headers to the end of the response body.
    pub total: Duration,
    /// The verified token's claims, when one was verified.
    pub claims: Option<Arc<Claims>>,
}

/// A request's line in the making. Boxed once and recycled: the writer
/// hands every record back empty through a free list, so a logged request
/// costs neither an allocation nor a free on another thread (a box freed by
/// the writer thread cost about 850 instructions a request in callgrind).
pub struct Record {
    entry: Option<Entry>,
    /// When the request's headers arrived; the writer turns it into wall
    /// time, so the request path reads the clock once, not twice.
    start: Instant,
    /// The log it goes to; taken before the record is queued, so no record
    /// in the queue or the free list keeps the queue's sender alive.
    log: Option<AccessLog>,
}

impl Record {
    /// The entry being filled in.
    pub fn entry_mut(&mut self) -> Option<&mut Entry> {
        self.entry.as_mut()
    }

    /// Completes the line (its total latency runs from the request's
    /// start) and queues it; never blocks.
    pub fn finish(mut self: Box<Self>) {
        let Some(log) = self.log.take() else {
            return;
        };
        let total = self.start.elapsed();
        if let Some(e) = self.entry.as_mut() {
            e.total = total;
        }
        log.send(self);
    }
}

enum Msg {
    Entry(Box<Record>),
    /// Write everything queued so far, then answer.
    Flush(SyncSender<()>),
}

/// Handle to the access log; cheap to clone (one reference count), shared
/// by every request.
#[derive(Clone)]
pub struct AccessLog(Arc<Handle>);

struct Handle {
    tx: SyncSender<Msg>,
    /// Records the writer has emptied, for the next requests.
    free: crossbeam_channel::Receiver<Box<Record>>,
    shared: Arc<Shared>,
}

/// What the request side and the writer thread share. It holds no sender
/// of the queue: the writer stops once every [`AccessLog`] is gone.
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen: AtomicBool,
}

/// Records kept for reuse at most (a few hundred bytes each).
const FREE_RECORDS: usize = 1024;

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("access_log.path: cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("access_log: cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

impl AccessLog {
    /// Opens the sink and starts the writer thread; `Ok(None)` when the
    /// access log is off.
    pub fn start(config: &AccessLogConfig) -> Result<Option<AccessLog>, AccessLogError> {
        if !config.enabled {
            return Ok(None);
        }
        let sink = Sink::open(config.path.as_deref())?;
        let (tx, rx) = mpsc::sync_channel(config.buffer);
        let (free_tx, free) = crossbeam_channel::bounded(FREE_RECORDS.min(config.buffer.max(1)));
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        });
        let writer = Writer {
            sink,
            path: config.path.clone(),
            format: config.format,
            shared: shared.clone(),
            free: free_tx,
            clock: LineClock::new(),
            buf: String::with_capacity(BATCH_BYTES + 4096),
            last_error_report: None,
            errors_since_report: 0,
        };
        std::thread::Builder::new()
            .name("revgate-access-log".into())
            .spawn(move || writer.run(rx))
            .map_err(AccessLogError::Thread)?;
        Ok(Some(AccessLog(Arc::new(Handle { tx, free, shared }))))
    }

    /// A record for a request that started at `start`, to be completed by
    /// [`Record::finish`]: an emptied one when the writer has one to spare.
    pub fn record(&self, entry: Entry, start: Instant) -> Box<Record> {
        let log = Some(self.clone());
        match self.0.free.try_recv() {
            Ok(mut rec) => {
                rec.entry = Some(entry);
                rec.start = start;
                rec.log = log;
                rec
            }
            Err(_) => Box::new(Record {
                entry: Some(entry),
                start,
                log,
            }),
        }
    }

    /// Queues one finished entry as it is; never blocks.
    pub fn log(&self, entry: Entry) {
        self.send(Box::new(Record {
            entry: Some(entry),
            start: Instant::now(),
            log: None,
        }));
    }

    /// A full queue drops the record (counted).
    fn send(&self, rec: Box<Record>) {
        match self.0.tx.try_send(Msg::Entry(rec)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.0.shared.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Asks the writer to open its file again by path (after logrotate
    /// moved it). Standard output is left as it is.
    pub fn reopen(&self) {
        self.0.shared.reopen.store(true, Relaxed);
    }

    /// Waits (at most `timeout`) until every entry queued so far is written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::Flush(ack_tx);
        // The queue may be full: retry until the deadline rather than block.
        loop {
            match self.0.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.shared.dropped.load(Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.0.shared.written.load(Relaxed)
    }
}

enum Sink {
    Stdout(std::io::Stdout),
    File(File),
}

impl Sink {
    fn open(path: Option<&Path>) -> Result<Sink, AccessLogError> {
        match path {
            None => Ok(Sink::Stdout(std::io::stdout())),
            Some(p) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(Sink::File)
                .map_err(|source| AccessLogError::Open {
                    path: p.display().to_string(),
                    source,
                }),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Sink::File(f) => f.write_all(bytes),
        }
    }
}

struct Writer {
    sink: Sink,
    path: Option<PathBuf>,
    format: AccessLogFormat,
    shared: Arc<Shared>,
    /// Where emptied records go back for reuse.
    free: crossbeam_channel::Sender<Box<Record>>,
    /// Wall time of each record's start, and the second's text.
    clock: LineClock,
    /// The batch being formatted: lines are written straight into it.
    buf: String,
    last_error_report: Option<Instant>,
    errors_since_report: u64,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut acks = Vec::new();
        loop {
            let mut open = true;
            self.clock.anchor();
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        self.take(m, &mut acks);
                        if self.buf.len() >= BATCH_BYTES {
                            self.write_batch();
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.write_batch();
            for ack in acks.drain(..) {
                let _ = ack.try_send(());
            }
            self.maybe_reopen();
            if !open {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn take(&mut self, msg: Msg, acks: &mut Vec<SyncSender<()>>) {
        match msg {
            Msg::Entry(mut rec) => {
                if let Some(e) = rec.entry.take() {
                    let ms = self.clock.wall_ms(rec.start);
                    match self.format {
                        AccessLogFormat::Text => {
                            format_text(&mut self.buf, &e, &mut self.clock, ms)
                        }
                        AccessLogFormat::Json => {
                            format_json(&mut self.buf, &e, &mut self.clock, ms)
                        }
                    }
                    self.buf.push('\n');
                    self.shared.written.fetch_add(1, Relaxed);
                }
                // Emptied (its claims and URI released here), then reused;
                // freed when the free list is full.
                let _ = self.free.try_send(rec);
            }
            Msg::Flush(ack) => acks.push(ack),
        }
    }

    fn write_batch(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.sink.write_all(self.buf.as_bytes()) {
            self.report_error(&e);
        }
        self.buf.clear();
    }

    /// One warning per interval, with the count of failures it stands for.
    fn report_error(&mut self, e: &std::io::Error) {
        self.errors_since_report += 1;
        let due = self
            .last_error_report
            .is_none_or(|t| t.elapsed() >= ERROR_REPORT_INTERVAL);
        if due {
            tracing::warn!(
                error = %e,
                failed_writes = self.errors_since_report,
                "access log: write failed; lines are lost until it succeeds"
            );
            self.last_error_report = Some(Instant::now());
            self.errors_since_report = 0;
        }
    }

    fn maybe_reopen(&mut self) {
        if !self.shared.reopen.swap(false, Relaxed) {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        match Sink::open(Some(&path)) {
            Ok(sink) => {
                self.write_batch();
                self.sink = sink;
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(e) => tracing::warn!("{e}; still writing to the file opened before"),
        }
    }
}

/// The writer's clock: the wall time of a monotonic instant, from a pair of
/// readings taken together at each drain, and the text of the last second
/// written (lines come in time order, so most reuse it). One subtraction a
/// line instead of three `SystemTime` steps.
struct LineClock {
    /// Nanoseconds since the epoch at `mono`.
    wall_ns: u64,
    mono: Instant,
    second: (u64, String),
}

impl LineClock {
    fn new() -> Self {
        let mut clock = LineClock {
            wall_ns: 0,
            mono: Instant::now(),
            second: (u64::MAX, String::new()),
        };
        clock.anchor();
        clock
    }

    /// Takes a new pair of readings.
    fn anchor(&mut self) {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.mono = Instant::now();
        self.wall_ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
    }

    /// Milliseconds since the epoch at `at`.
    fn wall_ms(&self, at: Instant) -> u64 {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let ns = match self.mono.checked_duration_since(at) {
            Some(before) => self.wall_ns.saturating_sub(nanos(before)),
            None => self
                .wall_ns
                .saturating_add(nanos(at.saturating_duration_since(self.mono))),
        };
        ns / 1_000_000
    }

    /// RFC 3339 in UTC with milliseconds, of `ms` since the epoch.
    fn write(&mut self, out: &mut String, ms: u64) {
        let secs = ms / 1000;
        if self.second.0 != secs {
            self.second.1.clear();
            write_second(&mut self.second.1, secs);
            self.second.0 = secs;
        }
        out.push_str(&self.second.1);
        push_padded(out, ms % 1000, 3);
        out.push('Z');
    }
}

// Formatting is by hand rather than with `format!`, float formatting and a
// `serde_json::Value`: it runs once per request, and the generic machinery
// cost about 9,000 instructions a line (callgrind), a fifth of a whole
// forwarded request.

fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` zero-padded to `width` digits (at most 4).
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Milliseconds with three decimals, from whole microseconds.
fn push_ms(out: &mut String, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, us / 1000);
    out.push('.');
    push_padded(out, us % 1000, 3);
}

thread_local! {
    /// The writer's last IPv4 peer address as text: most lines come from
    /// a few clients (or one load balancer).
    static PEER: std::cell::RefCell<(Option<std::net::Ipv4Addr>, String)> =
        const { std::cell::RefCell::new((None, String::new())) };
}

fn push_v4(out: &mut String, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_u64(out, u64::from(*octet));
    }
}

fn push_peer(out: &mut String, peer: &SocketAddr) {
    match peer {
        SocketAddr::V4(v4) => {
            let ip = *v4.ip();
            let cached = PEER.with(|cell| {
                let Ok(mut cached) = cell.try_borrow_mut() else {
                    return false;
                };
                if cached.0 != Some(ip) {
                    cached.1.clear();
                    push_v4(&mut cached.1, ip);
                    cached.0 = Some(ip);
                }
                out.push_str(&cached.1);
                true
            });
            if !cached {
                push_v4(out, ip);
            }
            out.push(':');
            push_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `2026-12-01T20:51:03.123Z peer "GET /path" 200 route=/api/
/// outcome=forwarded bytes=12 upstream_ms=0.800 total_ms=1.000
/// sub="alice" token=...`; `-` for what is absent.
fn format_text(out: &mut String, e: &Entry, clock: &mut LineClock, ms: u64) {
    clock.write(out, ms);
    out.push(' ');
    push_peer(out, &e.peer);
    out.push_str(" \"");
    out.push_str(e.method.as_str());
    out.push(' ');
    push_escaped(out, e.uri.path());
    out.push_str("\" ");
    push_u64(out, u64::from(e.status));
    out.push_str(" route=");
    match &e.route {
        Some(r) => push_escaped(out, r),
        None => out.push('-'),
    }
    out.push_str(" outcome=");
    out.push_str(e.outcome.name());
    out.push_str(" bytes=");
    push_u64(out, e.bytes);
    out.push_str(" upstream_ms=");
    match e.upstream {
        Some(u) => push_ms(out, u),
        None => out.push('-'),
    }
    out.push_str(" total_ms=");
    push_ms(out, e.total);
    match e.claims.as_deref() {
        Some(c) => {
            // `log_plain`: checked once when the token was verified.
            let text = |out: &mut String, s: &str| match c.log_plain {
                true => out.push_str(s),
                false => push_escaped(out, s),
            };
            out.push_str(" sub=");
            match &c.sub {
                Some(s) => {
                    out.push('"');
                    text(out, s);
                    out.push('"');
                }
                None => out.push('-'),
            }
            out.push_str(" token=");
            text(out, c.log_id());
        }
        None => out.push_str(" sub=- token=-"),
    }
}

/// The same fields as one JSON object; `null` for what is absent.
fn format_json(out: &mut String, e: &Entry, clock: &mut LineClock, ms: u64) {
    out.push_str("{\"time\":\"");
    clock.write(out, ms);
    out.push_str("\",\"peer\":\"");
    push_peer(out, &e.peer);
    out.push_str("\",\"method\":");
    push_json_str(out, e.method.as_str());
    out.push_str(",\"path\":");
    push_json_str(out, e.uri.path());
    out.push_str(",\"status\":");
    push_u64(out, u64::from(e.status));
    out.push_str(",\"route\":");
    match &e.route {
        Some(r) => push_json_str(out, r),
        None => out.push_str("null"),
    }
    out.push_str(",\"outcome\":\"");
    out.push_str(e.outcome.name());
    out.push_str("\",\"bytes\":");
    push_u64(out, e.bytes);
    out.push_str(",\"upstream_ms\":");
    match e.upstream {
        Some(u) => push_ms(out, u),
        None => out.push_str("null"),
    }
    out.push_str(",\"total_ms\":");
    push_ms(out, e.total);
    let claims = e.claims.as_deref();
    // `log_plain` (checked at verification) implies no JSON escape either.
    let string = |out: &mut String, c: &Claims, s: &str| match c.log_plain {
        true => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        false => push_json_str(out, s),
    };
    out.push_str(",\"sub\":");
    match claims.and_then(|c| c.sub.as_deref().map(|s| (c, s))) {
        Some((c, sub)) => string(out, c, sub),
        None => out.push_str("null"),
    }
    out.push_str(",\"token\":");
    match claims {
        Some(c) => string(out, c, c.log_id()),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// Whether `s` can be written as it is in a text line and in a JSON string
/// (what a token's `sub` and `jti` are checked for once, at verification).
pub(crate) fn is_plain(s: &str) -> bool {
    !needs_escape(s)
}

/// Whether `s` needs escaping in a text line: quotes, backslashes, ASCII
/// controls, or anything outside ASCII (where Unicode controls live).
/// Eight bytes at a time: this scan ran over every path, route, `sub` and
/// fingerprint and was a fifth of the writer's cost byte by byte.
fn needs_escape(s: &str) -> bool {
    any_word(s.as_bytes(), |w| {
        has_less_than_0x20(w)
            | has_byte(w, b'"')
            | has_byte(w, b'\\')
            | has_byte(w, 0x7f)
            | (w & HIGH)
            != 0
    })
}

/// Whether a JSON string literal needs escapes: quotes, backslashes and
/// ASCII controls.
fn json_needs_escape(s: &str) -> bool {
    any_word(s.as_bytes(), |w| {
        has_less_than_0x20(w) | has_byte(w, b'"') | has_byte(w, b'\\') != 0
    })
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Non-zero when a byte of `w` is below 0x20. Exact as a yes/no: a borrow
/// can only mark a byte above one that is truly below 0x20, and a byte
/// from 0x80 up never sets its own high bit here (`!w` clears it).
fn has_less_than_0x20(w: u64) -> u64 {
    w.wrapping_sub(LOW * 0x20) & !w & HIGH
}

/// Non-zero when a byte of `w` equals `b`.
fn has_byte(w: u64, b: u8) -> u64 {
    let x = w ^ (LOW * u64::from(b));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// Whether `test` holds for some eight-byte word of `bytes`; the tail is
/// padded with spaces, which no test matches.
fn any_word(bytes: &[u8], test: impl Fn(u64) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if test(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return false;
    }
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    test(u64::from_le_bytes(word))
}

/// Quotes, backslashes and control characters escaped, so a crafted `sub`
/// or path cannot forge a line or a field.
fn push_escaped(out: &mut String, s: &str) {
    if !needs_escape(s) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    if !json_needs_escape(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("null"),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a UNIX second.
fn write_second(out: &mut String, secs: u64) {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    push_padded(out, u64::try_from(y).unwrap_or(0), 4);
    out.push('-');
    push_padded(out, u64::from(m), 2);
    out.push('-');
    push_padded(out, u64::from(d), 2);
    out.push('T');
    push_padded(out, rem / 3600, 2);
    out.push(':');
    push_padded(out, rem / 60 % 60, 2);
    out.push(':');
    push_padded(out, rem % 60, 2);
    out.push('.');
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time_ms() -> u64 {
        1_764_621_063_123
    }

    fn entry() -> Entry {
        Entry {
            peer: "127.0.0.1:5000".parse().expect("addr"),
            method: Method::GET,
            uri: "/api/x?access_token=SECRET".parse().expect("uri"),
            status: 200,
            route: Some(Arc::from("/api/")),
            outcome: Outcome::Forwarded,
            bytes: 12,
            upstream: Some(Duration::from_micros(800)),
            total: Duration::from_micros(1_250),
            claims: None,
        }
    }

    #[test]
    fn formats_rfc3339_utc() {
        let mut clock = LineClock::new();
        for (ms, text) in [
            (1_764_621_063_123, "2025-12-01T20:31:03.123Z"),
            (1_764_621_063_999, "2025-12-01T20:31:03.999Z"),
            (1_764_621_064_000, "2025-12-01T20:31:04.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (0, "1970-01-01T00:00:00.000Z"),
        ] {
            let mut s = String::new();
            clock.write(&mut s, ms);
            assert_eq!(s, text);
        }
    }

    #[test]
    fn wall_time_is_the_anchor_shifted_by_the_monotonic_gap() {
        let mut clock = LineClock::new();
        let mono = Instant::now();
        clock.mono = mono + Duration::from_millis(5);
        clock.wall_ns = 1_764_621_063_123_400_000;
        assert_eq!(clock.wall_ms(mono), 1_764_621_063_118);
        clock.mono = mono;
        assert_eq!(
            clock.wall_ms(mono + Duration::from_millis(5)),
            1_764_621_063_128
        );
        // Exact below the millisecond: 123.4 ms less 0.5 ms is 122.9.
        assert_eq!(
            clock.wall_ms(mono - Duration::from_micros(500)),
            1_764_621_063_122
        );
    }

    #[test]
    fn records_come_back_empty_and_are_reused() {
        let path =
            std::env::temp_dir().join(format!("revgate-al-reuse-{}.log", std::process::id()));
        let log = AccessLog::start(&AccessLogConfig {
            enabled: true,
            path: Some(path.clone()),
            format: AccessLogFormat::Text,
            buffer: 16,
        })
        .expect("start")
        .expect("on");
        let first = log.record(entry(), Instant::now());
        let addr: *const Record = &*first;
        first.finish();
        assert!(log.flush(Duration::from_secs(10)), "flushed");
        let again = log.record(entry(), Instant::now());
        assert_eq!(
            &*again as *const Record, addr,
            "the emptied record is reused"
        );
        assert!(again.log.is_some() && again.entry.is_some());
        again.finish();
        assert!(log.flush(Duration::from_secs(10)), "flushed");
        assert_eq!(log.written(), 2);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn text_line_never_carries_the_query() {
        let mut s = String::new();
        format_text(&mut s, &entry(), &mut LineClock::new(), time_ms());
        assert_eq!(
            s,
            "2025-12-01T20:31:03.123Z 127.0.0.1:5000 \"GET /api/x\" 200 route=/api/ \
             outcome=forwarded bytes=12 upstream_ms=0.800 total_ms=1.250 sub=- token=-"
        );
        assert!(!s.contains("SECRET"));
    }

    /// A `sub` or `jti` that needs escaping is escaped (the token's
    /// `log_plain` is false); a plain one is written as it is.
    #[test]
    fn a_crafted_sub_cannot_forge_a_field_or_a_line() {
        let claims = |sub: &str, log_plain: bool| {
            Arc::new(Claims {
                sub: Some(sub.into()),
                jti: Some("j1".into()),
                sid: None,
                exp: 0,
                nbf: None,
                iat: None,
                scopes: Vec::new(),
                revocation: crate::revocation::TokenKeys::for_token(Some("j1"), "t"),
                session: None,
                fingerprint: None,
                log_plain,
                raw: Default::default(),
            })
        };
        let crafted = "x\" outcome=forwarded\ntoken=\\";
        assert!(!is_plain(crafted) && is_plain("alice"));
        let mut e = entry();
        e.claims = Some(claims(crafted, false));
        let mut s = String::new();
        format_text(&mut s, &e, &mut LineClock::new(), time_ms());
        assert!(
            s.ends_with(r#"sub="x\" outcome=forwarded\x0atoken=\\" token=j1"#),
            "{s}"
        );
        let mut j = String::new();
        format_json(&mut j, &e, &mut LineClock::new(), time_ms());
        let v: serde_json::Value = serde_json::from_str(&j).expect("json");
        assert_eq!(v["sub"], crafted);
        e.claims = Some(claims("alice", true));
        s.clear();
        format_text(&mut s, &e, &mut LineClock::new(), time_ms());
        assert!(s.ends_with(r#"sub="alice" token=j1"#), "{s}");
    }

    #[test]
    fn json_line_is_one_object_without_the_query() {
        let mut s = String::new();
        format_json(&mut s, &entry(), &mut LineClock::new(), time_ms());
        let v: serde_json::Value = serde_json::from_str(&s).expect("json");
        assert_eq!(v["path"], "/api/x");
        assert_eq!(v["status"], 200);
        assert_eq!(v["outcome"], "forwarded");
        assert_eq!(v["route"], "/api/");
        assert!(v["sub"].is_null());
        assert!(!s.contains("SECRET") && !s.contains('\n'));
    }

    #[test]
    fn word_scans_agree_with_byte_scans_for_every_byte_at_every_place() {
        let slow_text = |s: &[u8]| {
            s.iter()
                .any(|&b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
        };
        let slow_json = |s: &[u8]| s.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
        for len in 1..20 {
            let high = "\u{e9}".repeat(len);
            assert!(!json_needs_escape(&high), "non-ASCII needs no JSON escape");
            for at in 0..len {
                for b in 0u8..0x80 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    let s = std::str::from_utf8(&v).expect("ascii");
                    assert_eq!(
                        needs_escape(s),
                        slow_text(&v),
                        "text {b:#x} at {at} of {len}"
                    );
                    assert_eq!(
                        json_needs_escape(s),
                        slow_json(&v),
                        "json {b:#x} at {at} of {len}"
                    );
                }
                let mut v = "a".repeat(len);
                v.insert(at, '\u{e9}');
                assert!(needs_escape(&v), "non-ASCII at {at} of {len}");
            }
        }
        assert!(!needs_escape("") && !json_needs_escape(""));
        assert!(!needs_escape("/api/orders/12345678"));
    }

    #[test]
    fn escapes_what_could_forge_a_line() {
        let mut s = String::new();
        push_escaped(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\x0ad");
        s.clear();
        push_escaped(&mut s, "caf\u{e9}\u{85}");
        assert_eq!(s, "caf\u{e9}\\x85");
        s.clear();
        push_json_str(&mut s, "a\"b\n");
        assert_eq!(s, "\"a\\\"b\\n\"");
    }

    #[test]
    fn numbers_and_peers_are_formatted_by_hand_as_format_would() {
        let mut s = String::new();
        push_ms(&mut s, Duration::from_micros(12_003_045));
        assert_eq!(s, "12003.045");
        s.clear();
        push_peer(&mut s, &"[::1]:8080".parse().expect("v6"));
        assert_eq!(s, "[::1]:8080");
        s.clear();
        push_peer(&mut s, &"10.0.255.7:65535".parse().expect("v4"));
        assert_eq!(s, "10.0.255.7:65535");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = std::env::temp_dir().join(format!("revgate-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("full.log");
        let log = AccessLog::start(&AccessLogConfig {
            enabled: true,
            path: Some(path.clone()),
            format: AccessLogFormat::Text,
            buffer: 1,
        })
        .expect("start")
        .expect("on");
        for _ in 0..10_000 {
            log.log(entry());
        }
        assert!(log.flush(Duration::from_secs(10)), "flushed");
        assert_eq!(log.written() + log.dropped(), 10_000);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count() as u64, log.written());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
