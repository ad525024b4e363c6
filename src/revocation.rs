//! Revocation: the policy, the in-memory blocklist and the stores behind it.
//!
//! [`Revocations`] is the one owner of the revocation policy. It answers the
//! per-request question "is this token revoked?" from memory
//! ([`Revocations::check`]), and its verbs record changes durably before
//! acknowledging them: [`Revocations::revoke_token`] (a verified token),
//! [`Revocations::revoke_jti`], [`Revocations::watermark_subject`]
//! (logout-all), [`Revocations::revoke_session`] (every token of an
//! identity-provider session, by `sid`), [`Revocations::lift_jti`]. It owns the key a token is
//! revoked under, the leeway and lifetime arithmetic ([`Policy`]), the clock
//! and the store's health; the logout endpoints and the admin API are thin
//! HTTP adapters over these verbs.
//!
//! | file | job |
//! |---|---|
//! | `revocation/policy.rs` | [`Policy`]: leeway, `max_token_lifetime` and every expiry derived from them |
//! | `revocation/key.rs` | [`RevocationKey`], [`TokenKeys`]: the 128-bit digests a token is revoked under |
//! | `revocation/legacy.rs` | how long keys written by earlier builds are still checked |
//! | `revocation/record.rs` | [`Record`]: one change, as persisted, replicated and applied |
//! | `revocation/blocklist.rs` | revoked keys and watermarks in memory, capacity accounting, the hot-path check |
//! | `revocation/table.rs` | the revoked-key table: sharded open addressing, 24 bytes a slot |
//! | `revocation/filter.rs` | a Bloom filter answering "never revoked" before the table is asked |
//! | `revocation/local.rs` | the durable store: one writer thread, group commit, strict load at start, recovery from write errors, compaction, redb migration |
//! | `revocation/local/log.rs` | its on-disk format: header, checksummed frames, the strict reader |
//! | `revocation/redis.rs`, `revocation/redis/` | the shared store: writer, follower, codec |
//! | `revocation/clock.rs` | [`Clock`]: UNIX seconds, injectable for tests |
//! | `revocation/health.rs` | [`StoreHealth`]: whether the store can be trusted now (`/readyz`, `on_store_down`) |
//!
//! # Time
//! All times are UNIX seconds. An entry is live while `now < expires_at`,
//! judged by the injected [`Clock`]. Housekeeping (every second) sweeps
//! expired revocations out of the table by that clock; a watermark leaves its
//! moka cache by moka's own timer at about the same moment (it counts down
//! from the write, on moka's clock).
//!
//! # Capacity: refuse, never evict
//! Nothing in memory evicts: size-based eviction would silently un-revoke
//! tokens (so the watermarks' moka cache has no size bound). We count entries
//! ourselves (an atomic kept by inserts, sweeps, lifts and moka's eviction
//! listener) and, at `revocation.capacity`, refuse a
//! *new* revocation or watermark with [`StoreError::Full`] (the gateway
//! answers 503 with `Retry-After`), count it (`Counter::StoreFull`) and log an
//! alarm at most once a minute. Renewing an existing entry, lifts and records
//! that are already durable (loaded at start, or replicated) are never
//! refused, so memory can go slightly past capacity but never forgets.
//!
//! # Durability
//! With a path, every record goes through the writer thread of
//! `local.rs`, which appends batches with one fsync each, then updates memory
//! and acks. Memory only ever holds what is on disk; a failed write is
//! reported as [`StoreError::Unavailable`], changes nothing, and makes
//! [`StoreHealth::is_ready`] false (`/readyz` 503) until the store has
//! recovered by itself. A store that cannot be read completely and exactly
//! is refused at open ([`StoreOpenError::Damaged`]).
//!
//! # Where the locks are
//! - Hot path ([`Revocations::is_revoked`]): a key never revoked (the common
//!   case) takes none: an `arc-swap` load and one atomic load in the filter.
//!   A filter hit takes the read side of one of the table's 64 shard
//!   `RwLock`s (shared with other readers; writers hold it for one insert or
//!   removal, or for one shard's sweep or resize: tens of microseconds at 1M
//!   entries). A subject lookup reads moka, whose table reads are lock-free
//!   (crossbeam-epoch).
//! - The filter's writer `Mutex` (`filter.rs`): held by each add around the
//!   table or cache insert (microseconds) and by a rebuild (about 0.1 s per
//!   million entries, from the housekeeping thread); never by readers.
//! - moka internals, on watermark writes only: a per-key waiter lock
//!   (`and_compute_with`) and the housekeeping `try_lock`.
//! - The writer's request queue: a bounded tokio mpsc channel (a semaphore,
//!   no lock held across I/O). The log file is only ever written by the
//!   writer thread, which owns it (and the directory's `flock`).
//! - Metrics: the gauge registry's `RwLock` in `telemetry::metrics`, taken
//!   once here and at each scrape.
//!
//! # Backends
//! `Backend` is the seam for the shared store: the Redis backend persists each
//! [`Record`] to Redis in `persist`, and feeds records made by other replicas
//! into [`Revocations::apply`], which updates memory without writing back.

mod blocklist;
mod clock;
mod filter;
mod health;
mod key;
mod legacy;
mod local;
mod policy;
mod record;
pub mod redis;
mod table;

pub use clock::{Clock, ManualClock, SystemClock};
pub use health::StoreHealth;
pub use key::{token_fingerprint, RevocationKey, TokenKeys};
pub use local::{verify, Verified, VerifyError};
pub use policy::Policy;
pub use record::Record;

use crate::auth::Claims;
use crate::config::{RevocationConfig, StoreKind};
use crate::telemetry::metrics::{Counter, Metrics};
use blocklist::{Applied, Blocklist, Reservation};
use legacy::LegacyWindow;
use local::LocalStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often housekeeping runs: expired entries leave memory and free their
/// capacity slots.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// How often the durable log is asked whether a compaction is due (it
/// decides). Expired records on disk are harmless (never loaded), so this
/// only bounds the file's growth.
const SWEEP_EVERY_TICKS: u64 = 60;

/// At most one "blocklist full" alarm per this many seconds in the log (the
/// counter counts every refusal).
const FULL_ALARM_EVERY_SECS: u64 = 60;

/// Longest `sub` a logout-all watermark is kept for: one record per subject
/// must stay small.
pub const MAX_SUB_BYTES: usize = 4096;

/// Longest `sid` a session revocation accepts (it is stored as a 16-byte
/// digest; the bound only keeps nonsense out of the logs).
pub const MAX_SID_BYTES: usize = 4096;

/// Why a revocation could not be recorded. Cheap to build on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The blocklist holds `revocation.capacity` entries; nothing was evicted
    /// to make room. Maps to 503 (retry later).
    #[error("the revocation blocklist is full")]
    Full,
    /// The store could not make the record durable; nothing was recorded.
    /// Maps to 503.
    #[error("revocation store unavailable: {0}")]
    Unavailable(&'static str),
    /// The record can never be stored (e.g. a `sub` too long, a time out of
    /// range). Maps to 400.
    #[error("invalid revocation: {0}")]
    Invalid(&'static str),
}

/// Why the revocation store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// `revocation.path` could not be created.
    #[error("revocation.path {path:?}: cannot create the directory: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A store file could not be opened, created or written.
    #[error("revocation.path: {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process has the store open.
    #[error("revocation.path: the store is in use by another process (lock {path:?} is held)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The store exists but cannot be read completely and exactly: the
    /// gateway refuses to start rather than serve a partial blocklist.
    #[error("revocation store {path:?} is damaged: {reason}; refusing to start (check it with `revgate store verify --path`)")]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("revocation store: cannot start the writer thread: {source}")]
    Thread {
        /// The OS error.
        source: std::io::Error,
    },
    /// The blocking task that opens the store failed.
    #[error("revocation store: the loading task failed: {0}")]
    Task(String),
    /// The shared store's URL or credentials are unusable.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

impl StoreOpenError {
    /// Whether the gateway must not start and exit with status 2: an
    /// unusable store URL or credentials, a store directory that cannot be
    /// created, a damaged store, a store another process holds.
    pub fn is_config(&self) -> bool {
        match self {
            StoreOpenError::CreateDir { .. }
            | StoreOpenError::Damaged { .. }
            | StoreOpenError::Locked { .. } => true,
            StoreOpenError::Redis(e) => matches!(
                e,
                redis::RedisError::InvalidUrl { .. }
                    | redis::RedisError::Auth { .. }
                    | redis::RedisError::EvictingPolicy { .. }
            ),
            StoreOpenError::Io { .. } | StoreOpenError::Thread { .. } | StoreOpenError::Task(_) => {
                false
            }
        }
    }
}

/// Who asked for a change: named in its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST endpoints.logout` / `logout_all`, with the token itself.
    Logout,
    /// `POST endpoints.revoke` (RFC 7009).
    Rfc7009,
    /// The admin API.
    Admin,
    /// OpenID Connect Back-Channel Logout (`endpoints.backchannel_logout`).
    BackchannelLogout,
    /// A Security Event Token pushed to `endpoints.security_events`.
    SecurityEvent,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Logout => "logout",
            Via::Rfc7009 => "rfc7009",
            Via::Admin => "admin",
            Via::BackchannelLogout => "backchannel_logout",
            Via::SecurityEvent => "security_event",
        }
    }
}

/// Where records are persisted.
enum Backend {
    /// No path: memory only, lost on restart.
    Memory,
    /// The append-only log in `revocation.path`.
    Local(LocalStore),
    /// Shared through Redis: records are persisted there first, and every
    /// replica's follower applies them (its own included) to memory.
    Redis(Arc<redis::RedisStore>),
}

/// The revocation blocklist of one gateway process.
pub struct Revocations {
    memory: Arc<Blocklist>,
    backend: Backend,
    /// Leeway and lifetime, and every expiry that follows from them.
    policy: Policy,
    /// Until when keys written by earlier builds are checked.
    legacy: Arc<LegacyWindow>,
    metrics: Arc<Metrics>,
    /// Whether the store can be trusted right now.
    health: Arc<StoreHealth>,
    closed: AtomicBool,
    last_full_alarm: AtomicU64,
}

impl Revocations {
    /// Opens the store per `cfg`, on the system clock: memory only when
    /// `cfg.path` is `None` (a warning is logged), else the durable log in
    /// that directory (created if missing; a redb store of an older build is
    /// migrated), whose unexpired records are all loaded. `policy` comes from `[jwt]` ([`Policy::from_config`]).
    pub async fn open(
        cfg: &RevocationConfig,
        policy: Policy,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Revocations>, StoreOpenError> {
        Self::open_with_clock(cfg, policy, metrics, Arc::new(SystemClock)).await
    }

    /// [`Revocations::open`] with an injected clock (tests, simulations).
    pub async fn open_with_clock(
        cfg: &RevocationConfig,
        policy: Policy,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Revocations>, StoreOpenError> {
        let start = clock.now();
        let memory = Arc::new(Blocklist::new(cfg.capacity, clock));
        let backend = match (cfg.store, &cfg.path) {
            (StoreKind::Redis, _) => {
                let url = cfg.redis_url.as_deref().unwrap_or_default();
                let options = redis::RedisOptions {
                    clock: Arc::clone(memory.clock()),
                    max_staleness: cfg.max_staleness,
                    ..redis::RedisOptions::default()
                };
                let store = redis::RedisStore::connect_with(
                    url,
                    &cfg.redis_prefix,
                    Arc::clone(&metrics),
                    options,
                )
                .await?;
                Backend::Redis(store)
            }
            (StoreKind::Local, None) => {
                tracing::warn!(
                    "revocation.path is not set: revocations are kept in memory only and lost on restart"
                );
                Backend::Memory
            }
            (StoreKind::Local, Some(dir)) => {
                let (dir, mem) = (dir.clone(), Arc::clone(&memory));
                let (store, loaded) =
                    tokio::task::spawn_blocking(move || LocalStore::open(&dir, mem))
                        .await
                        .map_err(|e| StoreOpenError::Task(e.to_string()))??;
                tracing::info!(
                    path = %store.path().display(),
                    revocations = loaded.revocations,
                    watermarks = loaded.watermarks,
                    expired_skipped = loaded.expired_skipped,
                    "revocation store loaded"
                );
                if memory.len() > cfg.capacity {
                    tracing::error!(
                        held = memory.len(),
                        capacity = cfg.capacity,
                        "revocation store holds more than revocation.capacity: all kept, new revocations refused until entries expire"
                    );
                }
                memory.maintain_filter();
                tracing::debug!(
                    filter_bytes = memory.filter_bytes(),
                    "revocation filter built"
                );
                Backend::Local(store)
            }
        };
        // Keys of earlier builds are checked while one of their tokens may
        // still be accepted (see `legacy.rs`).
        let legacy = Arc::new(LegacyWindow::new(
            policy.horizon(start).max(memory.latest_revocation_expiry()),
        ));
        let revocations = Arc::new(Revocations {
            memory,
            backend,
            policy,
            legacy,
            metrics: Arc::clone(&metrics),
            health: Arc::new(StoreHealth::new()),
            closed: AtomicBool::new(false),
            last_full_alarm: AtomicU64::new(0),
        });
        if let Backend::Local(store) = &revocations.backend {
            follow_writable(store.health(), Arc::downgrade(&revocations.health));
        }
        let gauge: Weak<Blocklist> = Arc::downgrade(&revocations.memory);
        metrics.add_gauges(Box::new(move || {
            gauge.upgrade().map_or_else(Vec::new, |b| {
                vec![
                    (
                        "revgate_revocation_entries".to_owned(),
                        "Live revocations and logout-all watermarks held in memory".to_owned(),
                        b.len() as f64,
                    ),
                    (
                        "revgate_revocation_index_bytes".to_owned(),
                        "Bytes of the revoked-key table and its Bloom filter".to_owned(),
                        (b.table_bytes() + b.filter_bytes()) as f64,
                    ),
                ]
            })
        }));
        tokio::spawn(housekeeping(Arc::downgrade(&revocations)));
        Ok(revocations)
    }

    /// With `store = "redis"`: starts the follower that applies every
    /// replica's records to memory, and mirrors its sync state into
    /// [`Revocations::health`]: healthy only while `Live` (connected and
    /// caught up), so a replica never answers from an empty or stale
    /// blocklist. Nothing to do for the local store, which is always in sync.
    pub fn start_sync(&self) {
        let Backend::Redis(store) = &self.backend else {
            return;
        };
        let (memory, legacy) = (Arc::clone(&self.memory), Arc::clone(&self.legacy));
        let apply: Arc<dyn Fn(Record) + Send + Sync> = Arc::new(move |record| {
            // Any revocation from Redis may come from an earlier-build
            // replica (a rolling upgrade): keep legacy keys checked for as
            // long as it lives.
            if let Record::Revoke { expires_at, .. } = record {
                legacy.extend(expires_at, memory.clock().now());
            }
            memory.apply(&record, None);
        });
        let memory = Arc::clone(&self.memory);
        let held: Arc<dyn Fn() -> Vec<Record> + Send + Sync> =
            Arc::new(move || memory.live_records());
        let state = store.spawn_follower_writing_back(apply, held);
        // Not healthy, and never synced, until the follower has caught up:
        // a replica must not answer from an empty blocklist, not even with
        // "allow".
        self.health.until_first_sync();
        self.health
            .set_ok(matches!(*state.borrow(), redis::SyncState::Live));
        follow_sync_state(state, Arc::clone(&self.health));
    }

    /// Whether the store can be trusted right now (`/readyz`, and the
    /// `on_store_down = "deny"` gate).
    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.health
    }

    /// The policy: leeway, `max_token_lifetime` and the expiries that
    /// follow from them.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The per-request check of a verified token: revoked by its key (or,
    /// during the legacy window, the key an earlier build wrote), or by a
    /// logout-all watermark of its subject. Synchronous, no lock in the
    /// common case, no allocation, no I/O.
    /// A token carrying a `sid` is also refused while its session is
    /// revoked: one more Bloom-filter probe, the table only on a hit.
    #[inline]
    pub fn check(&self, claims: &Claims) -> bool {
        self.is_revoked(claims.revocation, claims.sub.as_deref(), claims.iat)
            || claims
                .session
                .is_some_and(|session| self.memory.is_key_revoked(session))
    }

    /// [`Revocations::check`] on the parts of a token: true if `keys.key` is
    /// revoked, or `keys.legacy` while the legacy window is open, or `sub`
    /// has a live logout-all watermark and `iat` is absent or at or before
    /// it.
    #[inline]
    pub fn is_revoked(
        &self,
        keys: impl Into<TokenKeys>,
        sub: Option<&str>,
        iat: Option<u64>,
    ) -> bool {
        let keys = keys.into();
        self.memory.is_revoked(keys.key, sub, iat)
            || keys
                .legacy
                .is_some_and(|legacy| self.legacy.is_open() && self.memory.is_key_revoked(legacy))
    }

    /// Revokes a verified token until its `exp` + leeway (+1: it holds
    /// through the last second the token is accepted), durably before `Ok`,
    /// and logs it once (`via` names who asked). Returns that `expires_at`.
    /// Idempotent.
    ///
    /// With Redis, during the legacy window a token without `jti` is also
    /// recorded under its legacy key, so replicas of an earlier build still
    /// refuse it in a rolling upgrade.
    pub async fn revoke_token(&self, claims: &Claims, via: Via) -> Result<u64, StoreError> {
        let expires_at = self.policy.revocation_expiry(claims.exp);
        let keys = claims.revocation;
        match keys.legacy {
            Some(legacy) if self.legacy.is_open() && matches!(self.backend, Backend::Redis(_)) => {
                let (new, old) = tokio::join!(
                    self.revoke(keys.key, expires_at),
                    self.revoke(legacy, expires_at)
                );
                new.and(old)?;
            }
            _ => self.revoke(keys.key, expires_at).await?,
        }
        tracing::info!(
            jti = claims.jti.as_deref().unwrap_or("-"),
            key = %keys.key,
            expires_at,
            via = via.as_str(),
            "token revoked"
        );
        Ok(expires_at)
    }

    /// Revokes the tokens carrying `jti` until `expires_at` (an operator's
    /// revocation, for tokens the gateway may never see). Durable before
    /// `Ok`. [`StoreError::Invalid`] for an empty `jti` or an `expires_at`
    /// not in the future.
    pub async fn revoke_jti(&self, jti: &str, expires_at: u64, via: Via) -> Result<(), StoreError> {
        if jti.is_empty() {
            return Err(StoreError::Invalid("jti is empty"));
        }
        if expires_at <= self.memory.clock().now() {
            return Err(StoreError::Invalid("expires_at is in the past"));
        }
        self.revoke(RevocationKey::from_jti(jti), expires_at)
            .await?;
        tracing::info!(jti, expires_at, via = via.as_str(), "token revoked");
        Ok(())
    }

    /// Logout-all for `sub`, now: every token of the subject issued up to
    /// the watermark is refused for as long as it could be accepted (see
    /// [`Policy::watermark`]: the watermark is `now + leeway`). Durable
    /// before `Ok`. Returns the watermark (the answer's `before`).
    pub async fn watermark_subject(&self, sub: &str, via: Via) -> Result<u64, StoreError> {
        self.watermark_subject_at(sub, self.memory.clock().now(), via)
            .await
    }

    /// Logout-all for `sub` as of `when` (UNIX seconds, capped at now): the
    /// identity provider's logout time, so that a late or repeated delivery
    /// of the same logout writes the same watermark and never refuses a
    /// token issued after it. Otherwise as [`Revocations::watermark_subject`].
    pub async fn watermark_subject_at(
        &self,
        sub: &str,
        when: u64,
        via: Via,
    ) -> Result<u64, StoreError> {
        let (at, _) = self.policy.watermark(when.min(self.memory.clock().now()));
        self.revoke_subject(sub, at).await?;
        tracing::info!(
            sub,
            before = at,
            via = via.as_str(),
            "all tokens of subject revoked"
        );
        Ok(at)
    }

    /// Revokes the identity provider's session `sid`: every token whose
    /// `sid` claim equals it is refused until [`Policy::session_expiry`]
    /// (once every token of the session acceptable now has expired). Durable
    /// before `Ok` (and in Redis with the shared store). Returns that
    /// `expires_at`. [`StoreError::Invalid`] for an empty or oversized `sid`.
    ///
    /// The record is a revocation under [`RevocationKey::from_sid`]: stored,
    /// replicated, written back after a Redis data loss and expired as a
    /// revoked `jti` is.
    pub async fn revoke_session(&self, sid: &str, via: Via) -> Result<u64, StoreError> {
        if sid.is_empty() || sid.len() > MAX_SID_BYTES {
            return Err(StoreError::Invalid(
                "sid is empty or longer than 4096 bytes",
            ));
        }
        let expires_at = self.policy.session_expiry(self.memory.clock().now());
        self.revoke(RevocationKey::from_sid(sid), expires_at)
            .await?;
        let expires_at = self.session_expiry(sid).unwrap_or(expires_at);
        tracing::info!(sid, expires_at, via = via.as_str(), "session revoked");
        Ok(expires_at)
    }

    /// `expires_at` of a live revocation of the session `sid`.
    pub fn session_expiry(&self, sid: &str) -> Option<u64> {
        self.get(RevocationKey::from_sid(sid))
    }

    /// Lifts the revocation of `jti`, durably before `Ok`. `Ok(false)` if
    /// there was none.
    pub async fn lift_jti(&self, jti: &str, via: Via) -> Result<bool, StoreError> {
        let lifted = self.lift(RevocationKey::from_jti(jti)).await?;
        if lifted {
            tracing::info!(jti, via = via.as_str(), "revocation lifted");
        }
        Ok(lifted)
    }

    /// `expires_at` of a live revocation of `jti`.
    pub fn jti_expiry(&self, jti: &str) -> Option<u64> {
        self.get(RevocationKey::from_jti(jti))
    }

    /// Records a revocation of `key` until `expires_at` (UNIX seconds). The
    /// building block of the verbs above. With a durable store, returns once the
    /// record is fsync'd. Idempotent: revoking again with the same or an
    /// earlier `expires_at` changes nothing, a later one extends the entry.
    /// An `expires_at` already past records nothing (the token is expired).
    ///
    /// Errors: [`StoreError::Full`] when a new entry would pass capacity,
    /// [`StoreError::Unavailable`] when it could not be made durable.
    pub async fn revoke(&self, key: RevocationKey, expires_at: u64) -> Result<(), StoreError> {
        self.check_open()?;
        if expires_at <= self.memory.clock().now() {
            return Ok(());
        }
        let slot = match self.memory.get(key) {
            Some(held) if held >= expires_at => return Ok(()),
            Some(_) => None,
            None => Some(self.reserve()?),
        };
        self.persist(Record::Revoke { key, expires_at }, slot)
            .await?;
        self.metrics.incr(Counter::Revocations);
        Ok(())
    }

    /// Sets the watermark of `sub` to `watermark` (UNIX seconds), living
    /// [`Policy::watermark_ttl`] past it. The building block of
    /// [`Revocations::watermark_subject`]. Durable before `Ok`. One
    /// record per subject: a later watermark replaces an earlier one, an
    /// earlier one never lowers it. Returns the `expires_at` in force.
    pub async fn revoke_subject(&self, sub: &str, watermark: u64) -> Result<u64, StoreError> {
        self.check_open()?;
        if sub.is_empty() || sub.len() > MAX_SUB_BYTES {
            return Err(StoreError::Invalid(
                "sub is empty or longer than 4096 bytes",
            ));
        }
        let expires_at = watermark.saturating_add(self.policy.watermark_ttl());
        if expires_at <= self.memory.clock().now() {
            return Ok(expires_at);
        }
        let slot = match self.memory.watermark(sub) {
            Some(w) if w.at >= watermark && w.expires_at >= expires_at => return Ok(w.expires_at),
            Some(_) => None,
            None => Some(self.reserve()?),
        };
        let record = Record::Watermark {
            sub: sub.into(),
            at: watermark,
            expires_at,
        };
        let applied = self.persist(record, slot).await?;
        self.metrics.incr(Counter::Watermarks);
        Ok(match applied {
            Applied::Watermark(w) => w.expires_at,
            Applied::Revoked { .. } | Applied::Lifted(_) => expires_at,
        })
    }

    /// Admin lift: removes the revocation of `key`, durably before `Ok`.
    /// `Ok(false)` if there was no live revocation.
    pub async fn lift(&self, key: RevocationKey) -> Result<bool, StoreError> {
        self.check_open()?;
        if self.memory.get(key).is_none() {
            return Ok(false);
        }
        let lifted = matches!(
            self.persist(Record::Lift { key }, None).await?,
            Applied::Lifted(true)
        );
        if lifted {
            self.metrics.incr(Counter::Lifted);
        }
        Ok(lifted)
    }

    /// `expires_at` of a live revocation of `key`.
    pub fn get(&self, key: RevocationKey) -> Option<u64> {
        self.memory.get(key)
    }

    /// The live logout-all watermark of `sub` and its `expires_at`.
    pub fn watermark(&self, sub: &str) -> Option<(u64, u64)> {
        self.memory.watermark(sub).map(|w| (w.at, w.expires_at))
    }

    /// Entries held in memory (revocations plus watermarks), including
    /// revocations being written right now. Expired entries are counted until
    /// the next housekeeping run (at most about a second).
    pub fn len(&self) -> u64 {
        self.memory.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a record to memory only, without writing it anywhere: for
    /// records that are already durable elsewhere (another replica's, read
    /// from the shared store). Never refused for capacity.
    pub fn apply(&self, record: &Record) {
        self.memory.apply(record, None);
    }

    /// Flushes queued writes and closes the durable store (on SIGTERM, after
    /// draining). Later writes answer [`StoreError::Unavailable`]; checks keep
    /// answering from memory.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        match &self.backend {
            Backend::Memory => {}
            Backend::Local(store) => store.close().await,
            Backend::Redis(store) => store.shutdown(),
        }
    }

    /// Runs the in-memory caches' housekeeping now (expired entries leave and
    /// free capacity). The gateway does it every second on its own; benches
    /// and tests call it to observe a settled state.
    pub fn run_pending_tasks(&self) {
        self.memory.run_pending_tasks();
        self.memory.maintain_filter();
    }

    /// Compacts the durable log now (expired records leave the disk) and
    /// returns how many expired records left (0 without a durable store).
    /// Also runs on its own when the log has doubled, and hourly.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Memory | Backend::Redis(_) => Ok(0),
            Backend::Local(store) => store.sweep().await,
        }
    }

    /// Durable commits made so far (each one fsync, shared by a batch of
    /// records); 0 without a durable store. For tests and benches.
    pub fn durable_commits(&self) -> u64 {
        match &self.backend {
            Backend::Memory | Backend::Redis(_) => 0,
            Backend::Local(store) => store.commits(),
        }
    }

    /// The end of the legacy-key window (UNIX seconds), and whether it is
    /// open now (it closes at the first housekeeping run past its end).
    pub fn legacy_window(&self) -> (u64, bool) {
        (self.legacy.until(), self.legacy.is_open())
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Unavailable("the revocation store is closed"))
        } else {
            Ok(())
        }
    }

    /// A capacity slot for a new entry; counts and (rate-limited) logs a
    /// refusal.
    fn reserve(&self) -> Result<Reservation, StoreError> {
        self.memory.reserve().inspect_err(|_| {
            self.metrics.incr(Counter::StoreFull);
            let now = self.memory.clock().now();
            let last = self.last_full_alarm.load(Ordering::Acquire);
            if now >= last.saturating_add(FULL_ALARM_EVERY_SECS)
                && self
                    .last_full_alarm
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                tracing::error!(
                    held = self.memory.len(),
                    "revocation blocklist full (revocation.capacity): new revocations are refused with 503 until entries expire; raise revocation.capacity"
                );
            }
        })
    }

    /// Persists `record` per the backend, then applies it to memory.
    async fn persist(
        &self,
        record: Record,
        slot: Option<Reservation>,
    ) -> Result<Applied, StoreError> {
        let result = match &self.backend {
            Backend::Memory => Ok(self.memory.apply(&record, slot)),
            Backend::Local(store) => store.write(record, slot).await,
            Backend::Redis(store) => {
                // Redis first: nothing is acknowledged that replicas cannot
                // see. The store counts its own failures.
                return match store.persist(&record).await {
                    // Revocations and watermarks only ever grow, so applying
                    // ours now (read-your-writes on this replica) cannot undo
                    // a later record the follower applied first. A lift is
                    // left to the follower, which applies every replica's
                    // records in Redis order: applying it here too could
                    // undo a revocation made elsewhere just after it.
                    Ok(()) => Ok(match record {
                        Record::Lift { .. } => {
                            drop(slot);
                            Applied::Lifted(true)
                        }
                        Record::Revoke { .. } | Record::Watermark { .. } => {
                            self.memory.apply(&record, slot)
                        }
                    }),
                    Err(redis::RedisError::InvalidRecord(why)) => Err(StoreError::Invalid(why)),
                    Err(e) => {
                        tracing::warn!(error = %e, "shared revocation store write failed");
                        Err(StoreError::Unavailable(
                            "the shared revocation store is unreachable",
                        ))
                    }
                };
            }
        };
        if result.is_err() {
            self.metrics.incr(Counter::StoreErrors);
        }
        result
    }

    fn housekeeping_tick(&self, tick: u64) {
        self.legacy.tick(self.memory.clock().now());
        self.memory.run_pending_tasks();
        self.memory.maintain_filter();
        if tick.is_multiple_of(SWEEP_EVERY_TICKS) {
            if let Backend::Local(store) = &self.backend {
                store.request_sweep();
            }
        }
    }
}

/// Mirrors the shared store's sync state into `health`: ok only while
/// `Live` (connected and caught up).
fn follow_sync_state(
    mut state: tokio::sync::watch::Receiver<redis::SyncState>,
    health: Arc<StoreHealth>,
) {
    tokio::spawn(async move {
        loop {
            let live = matches!(*state.borrow_and_update(), redis::SyncState::Live);
            if live != health.is_ok() {
                if live {
                    tracing::info!("shared revocation store live: serving authenticated routes");
                } else {
                    tracing::warn!(
                        "shared revocation store unreachable, catching up or stale: not ready"
                    );
                }
            }
            health.set_ok(live);
            if state.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Mirrors whether the local store takes writes into the health (the store
/// logs the changes itself).
fn follow_writable(mut writable: tokio::sync::watch::Receiver<bool>, health: Weak<StoreHealth>) {
    tokio::spawn(async move {
        loop {
            let ok = *writable.borrow_and_update();
            let Some(health) = health.upgrade() else {
                return;
            };
            health.set_writes_ok(ok);
            drop(health);
            if writable.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Runs memory housekeeping every second and asks for a log compaction every minute, for
/// as long as the [`Revocations`] lives.
async fn housekeeping(revocations: Weak<Revocations>) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        interval.tick().await;
        tick += 1;
        let Some(r) = revocations.upgrade() else {
            return;
        };
        // Expiring many entries at once is CPU work: keep it off the
        // async workers.
        let done = tokio::task::spawn_blocking(move || r.housekeeping_tick(tick)).await;
        if done.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
