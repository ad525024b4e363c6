//! `jwt.jwks_url`: the issuer's key set, fetched at start, refreshed in the
//! background, and refetched on an unknown `kid` — at most once per
//! [`JWKS_MIN_REFETCH_INTERVAL`], however many requests carry unknown kids,
//! all of them sharing the one fetch in flight.
//!
//! Locks (both `std`, both held for a few instructions, never across I/O or
//! an `.await`):
//! - `RemoteJwks::keys`: an `RwLock` around the current `Arc<KeySet>`; readers
//!   clone the pointer, a finished fetch replaces it. A failed fetch leaves
//!   it alone, so the old keys stay in force.
//! - `RemoteJwks::state`: a `Mutex` over "is a fetch running, when did the
//!   last on-demand one start". Waiters for a running fetch wait on a
//!   `tokio::sync::watch` channel, not on a lock.

use super::cache::TokenCache;
use super::keys::KeySet;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Background refresh period: picks up keys an issuer publishes ahead of
/// rotation, and drops retired ones, without waiting for an unknown `kid`.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// At most one unknown-`kid` refetch per this long: a flood of tokens with
/// made-up kids costs the issuer one request per 30 s, not one per token.
pub const JWKS_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// A whole fetch (connect, TLS, headers, body) gets this long.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS document read. Real ones are a few KiB; this bounds the
/// memory a broken or hostile endpoint can make us use.
pub const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// The intervals and bounds above; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JwksTiming {
    pub(crate) refresh_every: Duration,
    pub(crate) min_refetch: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            refresh_every: JWKS_REFRESH_INTERVAL,
            min_refetch: JWKS_MIN_REFETCH_INTERVAL,
            timeout: JWKS_FETCH_TIMEOUT,
            max_bytes: JWKS_MAX_BYTES,
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A key set kept in step with a JWKS URL.
pub(crate) struct RemoteJwks {
    url: Uri,
    client: HttpsClient,
    timing: JwksTiming,
    /// Lock: the current keys; held only to copy or swap the pointer.
    keys: RwLock<Arc<KeySet>>,
    /// Lock: fetch bookkeeping; held only to read or flip its fields.
    state: Mutex<FetchState>,
    /// Bumped when a fetch ends, whatever its outcome.
    done: watch::Sender<u64>,
    /// Cleared when a fetch brings a different key set.
    cache: Option<TokenCache>,
    /// Fetches attempted since start.
    fetches: AtomicU64,
}

#[derive(Default)]
struct FetchState {
    in_flight: bool,
    last_on_demand: Option<Instant>,
}

/// What asking for a fetch did.
#[derive(Debug, PartialEq, Eq)]
enum Begin {
    /// This caller must run the fetch.
    Started,
    /// Another fetch is running: wait for it.
    Running,
    /// The last on-demand fetch is too recent.
    Limited,
}

impl RemoteJwks {
    /// Fetches the key set once (an error is a start-up failure), then
    /// refreshes it in the background until the returned value is dropped.
    pub(crate) async fn start(
        url: Uri,
        timing: JwksTiming,
        cache: Option<TokenCache>,
    ) -> Result<Arc<RemoteJwks>, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        if url.scheme_str() == Some("http") {
            tracing::warn!(url = %url, "jwt.jwks_url uses plain http: keys can be altered in transit");
        }
        let (done, _) = watch::channel(0);
        let remote = RemoteJwks {
            url,
            client,
            timing,
            keys: RwLock::new(Arc::new(KeySet::empty())),
            state: Mutex::new(FetchState::default()),
            done,
            cache,
            fetches: AtomicU64::new(0),
        };
        let set = remote.fetch().await?;
        remote.install(set);
        let remote = Arc::new(remote);
        tokio::spawn(refresh_loop(Arc::downgrade(&remote), timing.refresh_every));
        Ok(remote)
    }

    /// The keys in force.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        let guard = self.keys.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Fetches attempted so far (start-up included).
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Called for a `kid` the current keys do not hold: joins the running
    /// fetch, or starts one if the last on-demand fetch is old enough, and
    /// waits for it. `true` when a fetch ended (the keys may have changed),
    /// `false` when none was allowed.
    pub(crate) async fn refresh_for_unknown_kid(self: &Arc<Self>) -> bool {
        // Subscribe before looking at the state, so that a fetch ending in
        // between still wakes us.
        let mut ended = self.done.subscribe();
        match self.begin(true) {
            Begin::Limited => return false,
            Begin::Running => {}
            Begin::Started => {
                // A task of its own: a client that goes away does not cancel
                // the fetch the other waiters rely on.
                let this = Arc::clone(self);
                tokio::spawn(async move { this.run().await });
            }
        }
        let bound = self.timing.timeout + Duration::from_secs(1);
        matches!(
            tokio::time::timeout(bound, ended.changed()).await,
            Ok(Ok(()))
        )
    }

    fn begin(&self, on_demand: bool) -> Begin {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.in_flight {
            return Begin::Running;
        }
        if on_demand {
            let now = Instant::now();
            if state
                .last_on_demand
                .is_some_and(|last| now.duration_since(last) < self.timing.min_refetch)
            {
                return Begin::Limited;
            }
            state.last_on_demand = Some(now);
        }
        state.in_flight = true;
        Begin::Started
    }

    /// Runs one fetch that `begin` granted, installs its keys if it worked,
    /// and wakes the waiters.
    async fn run(&self) {
        match self.fetch().await {
            Ok(set) => self.install(set),
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed; keeping the current keys")
            }
        }
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_flight = false;
        self.done.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn install(&self, set: KeySet) {
        let changed = self.current().digest() != set.digest();
        tracing::debug!(url = %self.url, keys = set.len(), changed, "JWKS loaded");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        if changed {
            if let Some(cache) = &self.cache {
                cache.clear();
            }
        }
    }

    /// One bounded GET of the JWKS document, parsed.
    async fn fetch(&self) -> Result<KeySet, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let request = Request::get(self.url.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("revgate/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            if response.status() != StatusCode::OK {
                return Err(format!("answered {}", response.status()));
            }
            let body = Limited::new(response.into_body(), self.timing.max_bytes)
                .collect()
                .await
                .map_err(|e| format!("reading the document: {e}"))?
                .to_bytes();
            let (set, skipped) = KeySet::from_jwks(&body)?;
            if !skipped.is_empty() {
                tracing::debug!(url = %self.url, ?skipped, "JWKS keys skipped");
            }
            Ok(set)
        };
        match tokio::time::timeout(self.timing.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no complete answer within {:?}",
                self.timing.timeout
            )),
        }
    }
}

/// Refreshes every `every` while the key set is in use; ends once it is
/// dropped (the task holds only a weak reference between fetches).
async fn refresh_loop(remote: Weak<RemoteJwks>, every: Duration) {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(remote) = remote.upgrade() else {
            return;
        };
        if remote.begin(false) == Begin::Started {
            remote.run().await;
        }
    }
}
