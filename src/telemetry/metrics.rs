//! Prometheus metrics kept in atomics: counting a request is a handful of
//! relaxed atomic adds, no lock and no allocation.
//!
//! Requests are counted per route (by index; the gateway's own endpoints and
//! unmatched paths have slots of their own) and per [`Outcome`], and their
//! latency goes into a fixed-bucket histogram per route.

use arc_swap::ArcSwap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// Forwarded and answered by the upstream.
    Forwarded,
    /// Answered by a gateway endpoint.
    Served,
    /// 400: malformed request or `Authorization`.
    BadRequest,
    /// 401 without a token.
    MissingToken,
    /// 401: token failed verification.
    InvalidToken,
    /// 401: token revoked.
    Revoked,
    /// 403: missing scope.
    Forbidden,
    /// 404: no route.
    NotFound,
    /// 431: header section too large.
    HeaderTooLarge,
    /// 502: upstream unreachable.
    UpstreamError,
    /// 504: upstream timeout.
    UpstreamTimeout,
    /// 503: revocation store unavailable or full.
    Unavailable,
    /// Anything else (405, 500, admin rejections).
    Other,
}

const OUTCOMES: [(Outcome, &str); 13] = [
    (Outcome::Forwarded, "forwarded"),
    (Outcome::Served, "served"),
    (Outcome::BadRequest, "bad_request"),
    (Outcome::MissingToken, "missing_token"),
    (Outcome::InvalidToken, "invalid_token"),
    (Outcome::Revoked, "revoked"),
    (Outcome::Forbidden, "forbidden"),
    (Outcome::NotFound, "not_found"),
    (Outcome::HeaderTooLarge, "header_too_large"),
    (Outcome::UpstreamError, "upstream_error"),
    (Outcome::UpstreamTimeout, "upstream_timeout"),
    (Outcome::Unavailable, "unavailable"),
    (Outcome::Other, "other"),
];

impl Outcome {
    /// The outcome's label, as in `revgate_requests_total{outcome=...}` and
    /// the access log.
    pub fn name(self) -> &'static str {
        OUTCOMES[self as usize].1
    }
}

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// Status classes of `revgate_responses_total`, by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

struct RouteSlot {
    label: String,
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// Responses by status class.
    classes: [AtomicU64; CLASSES.len()],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl RouteSlot {
    fn new(label: String) -> Self {
        RouteSlot {
            label,
            outcomes: Default::default(),
            classes: Default::default(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Gauges read when `/metrics` is scraped.
pub type GaugeFn = Box<dyn Fn() -> Vec<(String, String, f64)> + Send + Sync>;

/// A counter kept elsewhere (e.g. the token cache's hits), read at scrape.
pub type CounterFn = Box<dyn Fn() -> u64 + Send + Sync>;

/// The per-route counters of one configuration: one slot per route label,
/// then the endpoints' and the unmatched one. A reload builds a new table
/// that reuses the slots of labels it keeps, so their series go on; the
/// requests still in flight under the old configuration count into the
/// table they started with.
pub struct RouteSlots {
    slots: Vec<Arc<RouteSlot>>,
}

impl RouteSlots {
    /// The slot index for requests served by a gateway endpoint.
    pub fn endpoint_slot(&self) -> usize {
        self.slots.len() - 2
    }

    /// The slot index for requests that matched nothing.
    pub fn unmatched_slot(&self) -> usize {
        self.slots.len() - 1
    }

    /// Counts one response by its status class (`revgate_responses_total`).
    pub fn record_status(&self, slot: usize, status: u16) {
        let class = usize::from(status / 100).wrapping_sub(1);
        if let Some(c) = self.slots.get(slot).and_then(|s| s.classes.get(class)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts one request.
    pub fn record(&self, slot: usize, outcome: Outcome, elapsed: Duration) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        s.outcomes[outcome as usize].fetch_add(1, Relaxed);
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        if let Some(b) = s.buckets.get(bucket) {
            b.fetch_add(1, Relaxed);
        }
        s.count.fetch_add(1, Relaxed);
        s.sum_us.fetch_add(us, Relaxed);
    }
}

/// All counters of one gateway process.
pub struct Metrics {
    /// The current configuration's route slots (what `/metrics` shows).
    slots: ArcSwap<RouteSlots>,
    /// Named counters beyond requests (revocations, store events...).
    counters: Vec<(&'static str, &'static str, AtomicU64)>,
    gauges: std::sync::RwLock<Vec<GaugeFn>>,
    /// (name, help, read): counters owned by other components.
    counter_fns: std::sync::RwLock<Vec<(&'static str, &'static str, CounterFn)>>,
    /// UNIX time the process registered its metrics (about its start).
    started: f64,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    /// UNIX seconds of the last successful reload, or of the start.
    last_reload_ok: AtomicU64,
    /// `revgate_idp_events_total{endpoint,result}`, by
    /// `endpoint * IDP_RESULTS.len() + result`.
    idp_events: [AtomicU64; IDP_ENDPOINTS.len() * IDP_RESULTS.len()],
}

/// The endpoints that receive revocations from the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum IdpEndpoint {
    /// `endpoints.backchannel_logout`.
    BackchannelLogout,
    /// `endpoints.security_events`.
    SecurityEvents,
}

const IDP_ENDPOINTS: [&str; 2] = ["backchannel_logout", "security_events"];

/// What became of one delivery from the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum IdpResult {
    /// Valid, and its revocations are recorded.
    Accepted,
    /// Refused (400): invalid, or a logout token replayed.
    Rejected,
    /// A SET already acted on: acknowledged, nothing recorded again.
    Duplicate,
    /// Valid, but nothing in it names a token (unknown events, unmappable
    /// subjects).
    Ignored,
    /// Valid, but the store could not record it (503).
    Unavailable,
}

const IDP_RESULTS: [&str; 5] = [
    "accepted",
    "rejected",
    "duplicate",
    "ignored",
    "unavailable",
];

/// Named counters, by index into `Metrics::counters`.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Counter {
    /// Revocations recorded (logout, revoke, admin).
    Revocations,
    /// Logout-all watermarks recorded.
    Watermarks,
    /// Revocations lifted by the admin API.
    Lifted,
    /// Revocations refused because the blocklist is full.
    StoreFull,
    /// Writes refused or failed because the store is unavailable.
    StoreErrors,
    /// Records from the shared store that could not be parsed.
    MalformedRecords,
    /// Times the shared store connection was lost.
    StoreDisconnects,
    /// Requests denied (503) while the shared store was down.
    StoreDownDenied,
    /// Times a replica found that the shared store lost data it had synced.
    StoreDataLosses,
    /// Records a replica wrote back to the shared store after a loss.
    StoreWrittenBack,
}

const COUNTERS: [(&str, &str); 10] = [
    ("revgate_revocations_total", "Token revocations recorded"),
    ("revgate_watermarks_total", "Logout-all watermarks recorded"),
    (
        "revgate_revocations_lifted_total",
        "Revocations lifted by the admin API",
    ),
    (
        "revgate_revocation_store_full_total",
        "Revocations refused because the blocklist is at capacity",
    ),
    (
        "revgate_revocation_store_errors_total",
        "Revocation writes refused or failed because the store is unavailable",
    ),
    (
        "revgate_store_malformed_records_total",
        "Records from the shared store skipped as malformed",
    ),
    (
        "revgate_store_disconnects_total",
        "Times the shared store connection was lost",
    ),
    (
        "revgate_store_down_denied_total",
        "Requests answered 503 while the shared store was unreachable",
    ),
    (
        "revgate_store_data_losses_total",
        "Times Redis was found to have lost records this replica had synced",
    ),
    (
        "revgate_store_written_back_total",
        "Records written back to Redis after it lost data",
    ),
];

impl Metrics {
    /// One slot per route label, plus `endpoint` and `none` (no route).
    pub fn new(route_labels: impl IntoIterator<Item = String>) -> Self {
        let mut slots: Vec<Arc<RouteSlot>> = route_labels
            .into_iter()
            .map(|l| Arc::new(RouteSlot::new(l)))
            .collect();
        slots.push(Arc::new(RouteSlot::new("endpoint".into())));
        slots.push(Arc::new(RouteSlot::new("none".into())));
        Metrics {
            slots: ArcSwap::from_pointee(RouteSlots { slots }),
            counters: COUNTERS
                .iter()
                .map(|(n, h)| (*n, *h, AtomicU64::new(0)))
                .collect(),
            gauges: std::sync::RwLock::new(Vec::new()),
            counter_fns: std::sync::RwLock::new(Vec::new()),
            started: unix_now_f64(),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
            last_reload_ok: AtomicU64::new(unix_now_f64() as u64),
            idp_events: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one delivery to an identity-provider endpoint.
    pub fn idp_event(&self, endpoint: IdpEndpoint, result: IdpResult) {
        self.idp_events[endpoint as usize * IDP_RESULTS.len() + result as usize]
            .fetch_add(1, Relaxed);
    }

    /// Deliveries counted for an endpoint and result (tests).
    pub fn idp_events(&self, endpoint: IdpEndpoint, result: IdpResult) -> u64 {
        self.idp_events[endpoint as usize * IDP_RESULTS.len() + result as usize].load(Relaxed)
    }

    /// The slot table for a configuration with these route labels (in route
    /// order), made current for `/metrics`. Labels already counted keep
    /// their slots, so their series continue across a reload.
    pub fn route_slots(&self, route_labels: impl IntoIterator<Item = String>) -> Arc<RouteSlots> {
        let current = self.slots.load();
        let reuse = |label: &str| {
            current
                .slots
                .iter()
                .find(|s| s.label == label)
                .cloned()
                .unwrap_or_else(|| Arc::new(RouteSlot::new(label.to_owned())))
        };
        let n = current.slots.len();
        let mut slots: Vec<Arc<RouteSlot>> = route_labels.into_iter().map(|l| reuse(&l)).collect();
        slots.push(current.slots[n - 2].clone());
        slots.push(current.slots[n - 1].clone());
        let table = Arc::new(RouteSlots { slots });
        self.slots.store(table.clone());
        table
    }

    /// The current route slot table.
    pub fn current_slots(&self) -> Arc<RouteSlots> {
        self.slots.load_full()
    }

    /// The slot index for requests served by a gateway endpoint.
    pub fn endpoint_slot(&self) -> usize {
        self.slots.load().endpoint_slot()
    }

    /// The slot index for requests that matched nothing.
    pub fn unmatched_slot(&self) -> usize {
        self.slots.load().unmatched_slot()
    }

    /// Counts one request in the current table.
    pub fn record(&self, slot: usize, outcome: Outcome, elapsed: Duration) {
        self.slots.load().record(slot, outcome, elapsed);
    }

    /// Adds one to a named counter.
    pub fn incr(&self, counter: Counter) {
        self.counters[counter as usize].2.fetch_add(1, Relaxed);
    }

    /// Adds `n` to a named counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].2.fetch_add(n, Relaxed);
    }

    /// Reads a named counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].2.load(Relaxed)
    }

    /// Requests counted for a route slot and outcome (for tests and benches).
    pub fn requests(&self, slot: usize, outcome: Outcome) -> u64 {
        self.slots
            .load()
            .slots
            .get(slot)
            .map_or(0, |s| s.outcomes[outcome as usize].load(Relaxed))
    }

    /// Registers a gauge callback: (name, help, value) triples read at scrape.
    pub fn add_gauges(&self, f: GaugeFn) {
        if let Ok(mut g) = self.gauges.write() {
            g.push(f);
        }
    }

    /// Counts a successful reload and stamps its time.
    pub fn reload_succeeded(&self) {
        self.reloads_ok.fetch_add(1, Relaxed);
        self.last_reload_ok.store(unix_now_f64() as u64, Relaxed);
    }

    /// Counts a refused reload.
    pub fn reload_failed(&self) {
        self.reloads_error.fetch_add(1, Relaxed);
    }

    /// Registers a counter owned by another component, read at scrape.
    pub fn add_counter(&self, name: &'static str, help: &'static str, read: CounterFn) {
        if let Ok(mut c) = self.counter_fns.write() {
            c.push((name, help, read));
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        out.push_str("# HELP revgate_requests_total Requests by route and outcome\n");
        out.push_str("# TYPE revgate_requests_total counter\n");
        let table = self.slots.load_full();
        for s in &table.slots {
            for (i, (_, name)) in OUTCOMES.iter().enumerate() {
                let v = s.outcomes[i].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "revgate_requests_total{{route=\"{}\",outcome=\"{name}\"}} {v}",
                        escape(&s.label)
                    );
                }
            }
        }
        out.push_str("# HELP revgate_responses_total Responses by route and status class\n");
        out.push_str("# TYPE revgate_responses_total counter\n");
        for s in &table.slots {
            for (i, class) in CLASSES.iter().enumerate() {
                let v = s.classes[i].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "revgate_responses_total{{route=\"{}\",code=\"{class}\"}} {v}",
                        escape(&s.label)
                    );
                }
            }
        }
        out.push_str("# HELP revgate_request_duration_seconds Time from request headers to response headers\n");
        out.push_str("# TYPE revgate_request_duration_seconds histogram\n");
        for s in &table.slots {
            let count = s.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let label = escape(&s.label);
            let mut cumulative = 0;
            for (i, b) in BUCKETS_US.iter().enumerate() {
                cumulative += s.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "revgate_request_duration_seconds_bucket{{route=\"{label}\",le=\"{}\"}} {cumulative}",
                    *b as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "revgate_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "revgate_request_duration_seconds_sum{{route=\"{label}\"}} {}",
                s.sum_us.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "revgate_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            );
        }
        for (name, help, v) in &self.counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        if let Ok(counters) = self.counter_fns.read() {
            for (name, help, read) in counters.iter() {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                    read()
                );
            }
        }
        out.push_str(
            "# HELP revgate_idp_events_total Deliveries from the identity provider by endpoint and result\n\
             # TYPE revgate_idp_events_total counter\n",
        );
        for (e, endpoint) in IDP_ENDPOINTS.iter().enumerate() {
            for (r, result) in IDP_RESULTS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "revgate_idp_events_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {}",
                    self.idp_events[e * IDP_RESULTS.len() + r].load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP revgate_config_reloads_total Configuration reloads by result\n\
             # TYPE revgate_config_reloads_total counter\n\
             revgate_config_reloads_total{{result=\"success\"}} {}\n\
             revgate_config_reloads_total{{result=\"error\"}} {}\n\
             # HELP revgate_config_last_reload_success_timestamp_seconds When the running configuration was loaded\n\
             # TYPE revgate_config_last_reload_success_timestamp_seconds gauge\n\
             revgate_config_last_reload_success_timestamp_seconds {}",
            self.reloads_ok.load(Relaxed),
            self.reloads_error.load(Relaxed),
            self.last_reload_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP revgate_build_info The running build: version and git commit\n\
             # TYPE revgate_build_info gauge\n\
             revgate_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION")),
            escape(crate::cli::COMMIT)
        );
        super::process::render(&mut out, self.started);
        if let Ok(gauges) = self.gauges.read() {
            for f in gauges.iter() {
                for (name, help, v) in f() {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
                }
            }
        }
        out
    }
}

fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_follow_the_enum() {
        for (outcome, name) in OUTCOMES {
            assert_eq!(outcome.name(), name);
        }
    }

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::new(["/api/".to_string()]);
        m.record(0, Outcome::Forwarded, Duration::from_micros(700));
        m.record(0, Outcome::Revoked, Duration::from_micros(100));
        m.current_slots().record_status(0, 200);
        m.current_slots().record_status(0, 401);
        m.current_slots().record_status(0, 401);
        m.current_slots().record_status(0, 999);
        m.incr(Counter::Revocations);
        let text = m.render();
        assert!(
            text.contains("revgate_requests_total{route=\"/api/\",outcome=\"forwarded\"} 1"),
            "{text}"
        );
        assert!(text.contains("revgate_requests_total{route=\"/api/\",outcome=\"revoked\"} 1"));
        assert!(text
            .contains("revgate_request_duration_seconds_bucket{route=\"/api/\",le=\"0.00025\"} 1"));
        assert!(text
            .contains("revgate_request_duration_seconds_bucket{route=\"/api/\",le=\"0.001\"} 2"));
        assert!(text.contains("revgate_revocations_total 1"));
        assert!(text.contains("revgate_responses_total{route=\"/api/\",code=\"2xx\"} 1"));
        assert!(text.contains("revgate_responses_total{route=\"/api/\",code=\"4xx\"} 2"));
        assert!(
            !text.contains("code=\"9"),
            "an impossible status is not counted"
        );
    }

    /// A reload's new table keeps the slots of the labels it keeps.
    #[test]
    fn route_slots_survive_a_reload_by_label() {
        let m = Metrics::new(["/a/".to_string(), "/b/".to_string()]);
        m.record(1, Outcome::Forwarded, Duration::from_micros(1));
        let next = m.route_slots(["/b/".to_string(), "/c/".to_string()]);
        next.record(0, Outcome::Forwarded, Duration::from_micros(1));
        let text = m.render();
        assert!(
            text.contains("revgate_requests_total{route=\"/b/\",outcome=\"forwarded\"} 2"),
            "{text}"
        );
        assert!(!text.contains("route=\"/a/\""), "{text}");
        assert_eq!(next.endpoint_slot(), 2);
    }
}
