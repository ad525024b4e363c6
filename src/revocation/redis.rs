//! Shared revocations through Redis (`revocation.store = "redis"`).
//!
//! Every replica keeps answering the per-request check from its own memory;
//! this module only moves changes between replicas. [`RedisStore::persist`]
//! writes a change before the endpoint answers; the follower task
//! ([`RedisStore::spawn_follower`]) hands every change, from any replica,
//! to an `apply` callback that updates the local blocklist.
//!
//! # Design: keyspace as the truth, a stream as the change log
//!
//! Plain pub/sub drops what is published while a replica is disconnected,
//! so it cannot carry revocations. Instead each change is two writes done
//! atomically by one Lua script (`writer.rs`):
//!
//! 1. the record's own key, `{prefix}rev:{key}` / `{prefix}wm:{sub}`, with
//!    `EXAT expires_at`, so Redis forgets it exactly when the local cache
//!    does; a lift deletes `rev:` and leaves a `{prefix}lift:{key}` tombstone
//!    that lives as long as the revocation would have;
//! 2. an entry in the stream `{prefix}log`, trimmed on every write to
//!    [`RedisOptions::log_retention`] (`MINID ~`) and at most
//!    [`RedisOptions::log_max_len`] entries (`MAXLEN ~`).
//!
//! The follower tails the stream with `XREAD BLOCK` from the last id it
//! applied, on a connection of its own, so a change reaches every replica in
//! one Redis round trip (no polling interval: `BLOCK` returns as soon as an
//! entry is added). On every (re)connect, before it reports
//! [`SyncState::Live`], it catches up:
//!
//! * **incremental** when the dataset is the one it last synced with (the
//!   `{prefix}epoch` key, a random id set once per dataset, is unchanged)
//!   and the last entry it applied is still in the stream (not trimmed, not
//!   rolled back by a restart from an older RDB): replay the stream from
//!   there;
//! * **full resync** otherwise (first start, Redis restarted empty or from
//!   an older snapshot, cut off longer than the log's retention): note the
//!   stream's tail, `SCAN` every `rev:`/`wm:`/`lift:` key (`TYPE string`,
//!   `COUNT` [`RedisOptions::batch`]) and apply them, then replay the stream
//!   from the noted tail, which covers writes made during the scan.
//!
//! Applying is idempotent (revoke = insert, lift = remove, watermark = keep
//! the later), so a record seen twice, including our own, is harmless; the
//! stream order decides between a revoke and a lift of the same key.
//!
//! Why not a full resync on every reconnect only: it costs a `SCAN` of the
//! whole keyspace per replica per blip (seconds at millions of entries),
//! while the stream replays just what was missed. Why not the stream only:
//! it would have to keep every change for the longest entry lifetime, and a
//! Redis restarted from a snapshot has lost its tail; the keyspace is always
//! complete. Figures: `cargo bench --bench redis_propagation`.
//!
//! Measured (`cargo bench --bench redis_propagation`, loopback Redis 7.0,
//! 2 cores shared with other builds, release; ranges over two runs): B's
//! `apply` runs p50 130-160 us / p99 250-290 us after A *calls* `persist`.
//! Measured from `persist` *returning* on A, over 2,000 records one at a
//! time: p50 -65..-57 us, p99 20-32 us, max 62-116 us (negative: Redis wakes
//! B's `XREAD` as it answers A, so B usually applies first); in a
//! 5,000-record burst p99 24-101 us. `persist`: 2,700-3,200 records/s from
//! one writer, 11,300-12,800/s from 64 concurrent writers (pipelined on one
//! connection). A late replica loads 100,000 entries by full resync in
//! 0.4-1.2 s, 1,000,000 in 5-17 s (`REVGATE_BENCH_RESYNC=1000000
//! REVGATE_BENCH_ONLY=resync`, load average 9-10; unchanged by the
//! fault handling, which adds three reads to a catch-up).
//!
//! Requires Redis 6.2 or later (or Valkey): `SET .. EXAT`, `XADD .. MINID`,
//! `SCAN .. TYPE`. The scripts call `redis.replicate_commands()` where it
//! exists, so they also replicate correctly on 6.2.
//!
//! Nothing read from Redis is trusted (`codec.rs`): a malformed key, value
//! or log entry is skipped and counted in `Counter::MalformedRecords`.
//!
//! # Faults: nothing acknowledged is un-revoked silently
//!
//! * **Redis lost data** (restart without persistence, `FLUSHALL`, restore
//!   from an older snapshot, the epoch key deleted): found by the follower
//!   (`follower.rs`, `loss`) from the epoch, read on every catch-up and
//!   pipelined with every heartbeat `XREAD`, or from the change log rolled
//!   back behind the last entry applied. The replica keeps its memory, goes
//!   live, then writes every live record it holds back (`writeback.rs`),
//!   through the log so replicas started meanwhile get them too.
//! * **Eviction**: a `maxmemory-policy` other than `noeviction`
//!   (`policy.rs`) is refused at start ([`RedisError::EvictingPolicy`],
//!   exit 2) and keeps a reconnecting follower `Down`. Managed Redis that
//!   refuses `CONFIG` and `INFO`: a warning, not a refusal.
//! * **Full Redis** (OOM): catching up only reads (a plain pipeline, not
//!   MULTI, which a full Redis refuses), so replicas become ready; writes
//!   get [`RedisError::Rejected`] (503); a write-back is retried every
//!   [`RedisOptions::write_back_retry`].
//! * **Silence** (a hung connection, a stalled Redis): every `XREAD` answer
//!   confirms the replica current up to a known instant (the block's end
//!   for an empty answer, the send for one with entries); the `XREAD`
//!   blocks half of [`RedisOptions::max_staleness`]; a watchdog task turns
//!   a `Live` replica [`SyncState::Stale`] once the last confirmation is
//!   older than the bound (checked ten times per bound), and the next
//!   answer makes it `Live` again.
//!
//! # Locks
//!
//! `writer.rs`: one `std::sync::Mutex` around the write connection handle and
//! one around its backoff gate, each held for a clone or a swap only. The
//! state `watch` channel's own lock, held by the follower and the watchdog
//! for one compare-and-set of the state. Nothing else is locked; the
//! follower owns its state, the confirmation instant is an atomic.

mod codec;
mod follower;
mod policy;
#[doc(hidden)]
pub mod testing;
mod writeback;
mod writer;

#[cfg(test)]
mod tests;

pub use codec::{key_for, StreamId, MAX_SUB_LEN, MAX_UNIX};

use crate::config::redact_url;
use crate::revocation::{Clock, SystemClock};
use crate::telemetry::metrics::{Counter, Metrics};
use redis::IntoConnectionInfo;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use writer::Writer;

/// Bound on dialling Redis (TCP, TLS, AUTH).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on one command's answer. Redis answers our scripts in well under a
/// millisecond; a second means it is gone or stalled.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one `XREAD BLOCK` waits when nothing happens (the follower uses
/// half of [`RedisOptions::max_staleness`] when that is shorter). It does
/// not delay propagation (Redis answers as soon as an entry arrives); each
/// answer, empty or not, is the heartbeat that confirms the replica is
/// current, and it costs one round trip per period when idle.
pub const DEFAULT_BLOCK: Duration = Duration::from_millis(1000);
/// How stale a replica may be before it reports [`SyncState::Stale`].
pub const DEFAULT_MAX_STALENESS: Duration = crate::config::DEFAULT_MAX_STALENESS;
/// After a write-back Redis refused (a full Redis), the next try waits this
/// long.
pub const DEFAULT_WRITE_BACK_RETRY: Duration = Duration::from_secs(5);
/// First reconnect delay; doubled per failure.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay: a recovered Redis is noticed within this.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Change-log entries kept by age. A replica cut off for less replays the
/// log; one cut off longer does a full resync, which is always correct, so
/// this trades Redis memory against resync work only.
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(3600);
/// Change-log entries kept at most (about 100 bytes each in Redis).
pub const DEFAULT_LOG_MAX_LEN: u64 = 1_000_000;
/// Life of a lift tombstone when the lifted revocation is not in Redis
/// (its own expiry is used otherwise): the longest a token lives by default.
pub const DEFAULT_TOMBSTONE_TTL: Duration = crate::config::DEFAULT_MAX_TOKEN_LIFETIME;
/// Keys per `SCAN`/`MGET` and entries per `XREAD`.
pub const DEFAULT_BATCH: usize = 1000;

pub use super::Record;

/// Connection state the gateway reads (readiness, `on_store_down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Not yet connected since start.
    Connecting,
    /// Connected, replaying what was missed; local state may be stale.
    CatchingUp,
    /// Caught up and following changes as they happen.
    Live,
    /// Unreachable; reconnecting with backoff. Local state may be stale.
    Down,
    /// Connected, but no answer from Redis has confirmed within
    /// [`RedisOptions::max_staleness`] that this replica has every change
    /// (a hung connection, a stalled Redis). Becomes `Live` again with the
    /// next answer, or `Down` when the connection times out.
    Stale,
}

/// Tuning of [`RedisStore`]; every field has a `DEFAULT_*` const.
#[derive(Clone)]
pub struct RedisOptions {
    /// Bound on dialling (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Bound on one command (default [`DEFAULT_RESPONSE_TIMEOUT`]).
    pub response_timeout: Duration,
    /// Longest `XREAD BLOCK` period (default [`DEFAULT_BLOCK`]).
    pub block: Duration,
    /// Staleness bound (default [`DEFAULT_MAX_STALENESS`]): see [`SyncState::Stale`].
    pub max_staleness: Duration,
    /// Delay before retrying a write-back Redis refused (default
    /// [`DEFAULT_WRITE_BACK_RETRY`]).
    pub write_back_retry: Duration,
    /// First reconnect delay (default [`DEFAULT_BACKOFF_MIN`]).
    pub backoff_min: Duration,
    /// Longest reconnect delay (default [`DEFAULT_BACKOFF_MAX`]).
    pub backoff_max: Duration,
    /// Change-log retention by age (default [`DEFAULT_LOG_RETENTION`]).
    pub log_retention: Duration,
    /// Change-log length cap (default [`DEFAULT_LOG_MAX_LEN`]).
    pub log_max_len: u64,
    /// Tombstone life when the lifted key is unknown (default [`DEFAULT_TOMBSTONE_TTL`]).
    pub tombstone_ttl: Duration,
    /// Batch size of `SCAN`, `MGET` and `XREAD` (default [`DEFAULT_BATCH`]).
    pub batch: usize,
    /// For `rediss://`: trust only this CA (PEM) instead of the system's and
    /// the webpki roots. `None` by default.
    pub tls_root_cert_pem: Option<Vec<u8>>,
    /// The clock expiry is judged by: the blocklist's, injected by
    /// `Revocations` (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            block: DEFAULT_BLOCK,
            max_staleness: DEFAULT_MAX_STALENESS,
            write_back_retry: DEFAULT_WRITE_BACK_RETRY,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            log_retention: DEFAULT_LOG_RETENTION,
            log_max_len: DEFAULT_LOG_MAX_LEN,
            tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            batch: DEFAULT_BATCH,
            tls_root_cert_pem: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL cannot be used (start-up, a config error).
    #[error("revocation.redis_url: {url:?} cannot be used: {message}")]
    InvalidUrl { url: String, message: String },
    /// Redis refused the credentials at start-up (a config error).
    #[error("revocation.redis_url: {url:?}: Redis refused the credentials ({message}); check the user and password in the URL")]
    Auth { url: String, message: String },
    /// Redis may evict revgate's keys (`maxmemory-policy` other than
    /// `noeviction`): an evicted revocation would be un-revoked silently
    /// (start-up, a config error).
    #[error("revocation.redis_url: {url:?}: Redis has maxmemory-policy {policy:?}, which can evict revocations; set maxmemory-policy to noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf)")]
    EvictingPolicy { url: String, policy: String },
    /// Redis is unreachable or did not answer in time: nothing was stored.
    #[error("revocation store unreachable: {0}")]
    Unavailable(String),
    /// Redis answered with an error: nothing was stored.
    #[error("revocation store refused the write: {0}")]
    Rejected(String),
    /// The record cannot be stored (out-of-range time, empty or huge `sub`).
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
}

/// Checks that `url` can be used (parses, scheme supported) without
/// connecting: for `revgate check-config`.
pub fn check_url(url: &str) -> Result<(), RedisError> {
    let invalid = |message: String| RedisError::InvalidUrl {
        url: redact_url(url),
        message: scrub(&message, url),
    };
    let info = url
        .into_connection_info()
        .map_err(|e| invalid(e.to_string()))?;
    redis::Client::open(info).map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// Follower counters (for tests, benches and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Catch-ups that rescanned the whole keyspace.
    pub full_resyncs: u64,
    /// Catch-ups that replayed the change log from the last applied entry.
    pub incremental_catch_ups: u64,
    /// Records handed to `apply`.
    pub applied: u64,
    /// Times this replica found that Redis had lost data it had synced
    /// (another dataset, or the change log rolled back).
    pub data_losses: u64,
    /// Records this replica wrote back to Redis after a loss (records
    /// another replica had already written back are not counted).
    pub written_back: u64,
}

#[derive(Default)]
struct Stats {
    full_resyncs: AtomicU64,
    incremental_catch_ups: AtomicU64,
    applied: AtomicU64,
    data_losses: AtomicU64,
    written_back: AtomicU64,
}

/// The shared store: writes records and follows everyone's.
pub struct RedisStore {
    writer: Writer,
    client: redis::Client,
    prefix: String,
    redacted_url: String,
    metrics: Arc<Metrics>,
    options: RedisOptions,
    state: watch::Sender<SyncState>,
    shutdown: watch::Sender<bool>,
    follower_started: AtomicBool,
    stats: Stats,
    /// Origin of `confirmed_ms`.
    started: Instant,
    /// Milliseconds after `started` up to which the follower has confirmed
    /// it holds every change (the staleness heartbeat).
    confirmed_ms: AtomicU64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.redacted_url)
            .field("prefix", &self.prefix)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Parses/validates the URL (a password is allowed and never logged),
    /// connects (bounded by [`DEFAULT_CONNECT_TIMEOUT`]) and returns the
    /// store. When Redis is unreachable it still returns a store, in state
    /// [`SyncState::Down`], that keeps retrying. Errors are configuration
    /// problems only: an unusable URL or refused credentials.
    pub async fn connect(
        url: &str,
        prefix: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisStore>, RedisError> {
        Self::connect_with(url, prefix, metrics, RedisOptions::default()).await
    }

    /// [`RedisStore::connect`] with explicit tuning.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        metrics: Arc<Metrics>,
        options: RedisOptions,
    ) -> Result<Arc<RedisStore>, RedisError> {
        let redacted_url = redact_url(url);
        let invalid = |message: String| RedisError::InvalidUrl {
            url: redacted_url.clone(),
            message: scrub(&message, url),
        };
        let info = url
            .into_connection_info()
            .map_err(|e| invalid(e.to_string()))?;
        let client = match &options.tls_root_cert_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(|e| invalid(e.to_string()))?;
        let store = Arc::new(RedisStore {
            writer: Writer::new(client.clone(), &options),
            client,
            prefix: prefix.to_string(),
            redacted_url: redacted_url.clone(),
            metrics,
            options,
            state: watch::Sender::new(SyncState::Connecting),
            shutdown: watch::Sender::new(false),
            follower_started: AtomicBool::new(false),
            stats: Stats::default(),
            started: Instant::now(),
            confirmed_ms: AtomicU64::new(0),
        });
        // PING too: without a password, the connection opens fine and only
        // the first command meets NOAUTH.
        let checked = async {
            let (_, mut conn) = store.writer.connection().await?;
            let ping = redis::cmd("PING");
            tokio::time::timeout(
                store.options.response_timeout,
                ping.query_async::<String>(&mut conn),
            )
            .await
            .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "PING timed out").into()))
            .map(|_| conn)
        };
        match checked.await {
            Ok(conn) => {
                match policy::check(&mut conn.clone(), store.options.response_timeout).await {
                    policy::Policy::Evicting(policy) => {
                        return Err(RedisError::EvictingPolicy {
                            url: redacted_url,
                            policy,
                        })
                    }
                    policy::Policy::NoEviction => {}
                    policy::Policy::Unknown(why) => {
                        tracing::warn!(url = %redacted_url, error = %scrub(&why, url),
                        "cannot read Redis's maxmemory-policy (CONFIG GET and INFO refused); make sure it is noeviction, or evicted revocations would be un-revoked");
                    }
                }
            }
            Err(e) => {
                if is_auth_error(&e) {
                    return Err(RedisError::Auth {
                        url: redacted_url,
                        message: scrub(&e.to_string(), url),
                    });
                }
                tracing::warn!(url = %redacted_url, error = %scrub(&e.to_string(), url),
                    "revocation store unreachable at start; retrying in the background");
                store.state.send_replace(SyncState::Down);
            }
        }
        Ok(store)
    }

    /// Persists a record so every replica will see it: its own key with the
    /// entry's expiry (`SET .. EXAT`; `DEL` plus a tombstone for a lift) and
    /// a change-log entry, atomically (one Lua script). Returns once Redis
    /// has executed it. A revoke or watermark already expired is not
    /// stored (`Ok`). `Err` means nothing was acknowledged: answer 503.
    /// Each failure counts in `Counter::StoreErrors`.
    pub async fn persist(&self, record: &Record) -> Result<(), RedisError> {
        validate(record)?;
        if record
            .expires_at()
            .is_some_and(|e| e <= self.options.clock.now())
        {
            return Ok(());
        }
        let result = self
            .writer
            .persist(&self.prefix, record, &self.options)
            .await;
        if let Err(e) = &result {
            self.metrics.incr(Counter::StoreErrors);
            tracing::warn!(url = %self.redacted_url, error = %e, "revocation not stored in Redis");
        }
        result
    }

    /// Starts the follower task (once; later calls only subscribe). On every
    /// (re)connect it catches up on everything missed before reporting
    /// [`SyncState::Live`], then applies records as they arrive. `apply` is
    /// called for every record, ours included (applying is idempotent), on
    /// the follower task: it must be quick and must not block (a moka
    /// insert, not a disk write). Must be called within a Tokio runtime.
    ///
    /// This follower never writes back (see
    /// [`RedisStore::spawn_follower_writing_back`]).
    pub fn spawn_follower(
        self: &Arc<Self>,
        apply: Arc<dyn Fn(Record) + Send + Sync>,
    ) -> watch::Receiver<SyncState> {
        self.spawn_follower_writing_back(apply, Arc::new(Vec::new))
    }

    /// [`RedisStore::spawn_follower`], plus write-back: when the follower
    /// finds that Redis lost data this replica had synced (restarted empty,
    /// flushed, restored from an older snapshot), it writes every live
    /// record `held` returns (what this replica holds in memory) back to
    /// Redis, keeping what Redis has when that is newer or lifted, so a
    /// replica started afterwards sees them. `held` is called on the
    /// follower task, once per loss.
    pub fn spawn_follower_writing_back(
        self: &Arc<Self>,
        apply: Arc<dyn Fn(Record) + Send + Sync>,
        held: Arc<dyn Fn() -> Vec<Record> + Send + Sync>,
    ) -> watch::Receiver<SyncState> {
        let rx = self.state.subscribe();
        if !self.follower_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(follower::run(self.clone(), apply, held));
            tokio::spawn(follower::watchdog(self.clone()));
        }
        rx
    }

    /// Stops the follower (shutdown). The state becomes [`SyncState::Down`].
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The current state.
    pub fn state(&self) -> SyncState {
        *self.state.borrow()
    }

    /// A receiver of state changes.
    pub fn subscribe(&self) -> watch::Receiver<SyncState> {
        self.state.subscribe()
    }

    /// The follower's counters.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            full_resyncs: self.stats.full_resyncs.load(Ordering::Relaxed),
            incremental_catch_ups: self.stats.incremental_catch_ups.load(Ordering::Relaxed),
            applied: self.stats.applied.load(Ordering::Relaxed),
            data_losses: self.stats.data_losses.load(Ordering::Relaxed),
            written_back: self.stats.written_back.load(Ordering::Relaxed),
        }
    }

    /// Milliseconds since the store was made (the staleness clock).
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The follower holds every change Redis had at `at_ms`: a `Stale`
    /// replica is `Live` again.
    fn confirm(&self, at_ms: u64) {
        self.confirmed_ms.fetch_max(at_ms, Ordering::AcqRel);
        let recovered = self.state.send_if_modified(|s| {
            if *s == SyncState::Stale {
                *s = SyncState::Live;
                true
            } else {
                false
            }
        });
        if recovered {
            tracing::info!(url = %self.redacted_url, "revocation store current again");
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

fn validate(record: &Record) -> Result<(), RedisError> {
    match record {
        Record::Revoke { expires_at, .. } if *expires_at > MAX_UNIX => Err(
            RedisError::InvalidRecord("expires_at is past the year 2500"),
        ),
        Record::Watermark {
            sub,
            at,
            expires_at,
        } => {
            if sub.is_empty() || sub.len() > MAX_SUB_LEN {
                Err(RedisError::InvalidRecord(
                    "sub is empty or longer than 4096 bytes",
                ))
            } else if *at > MAX_UNIX || *expires_at > MAX_UNIX {
                Err(RedisError::InvalidRecord(
                    "watermark time is past the year 2500",
                ))
            } else {
                Ok(())
            }
        }
        Record::Revoke { .. } | Record::Lift { .. } => Ok(()),
    }
}

fn is_auth_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Removes the URL's credentials from a message, in case a client error
/// quotes them.
fn scrub(message: &str, url: &str) -> String {
    let userinfo = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => &url[s + 3..at],
        _ => return message.to_string(),
    };
    let mut out = message.replace(userinfo, "<redacted>");
    if let Some((_, password)) = userinfo.split_once(':') {
        if !password.is_empty() {
            out = out.replace(password, "<redacted>");
        }
    }
    out
}
