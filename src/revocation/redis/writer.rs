//! The write side: one multiplexed connection shared by every `persist`, and
//! the Lua scripts that store a record and log it in one atomic step.
//!
//! Locks: `Writer::slot` is a `std::sync::Mutex` held only to clone or swap
//! the connection handle, never across I/O. Reconnecting is single-flight
//! through an `AtomicBool`: one caller dials, the others wait (bounded) for
//! its outcome on a watch channel. After a failed dial, callers fail fast
//! until the backoff delay has passed, so a dead Redis costs a 503 in
//! microseconds rather than a connect timeout per request.

use super::codec::{LIFT, LOG, REV, WM};
use super::{Record, RedisError, RedisOptions};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Stores a revocation (keeping the later expiry if one is there), removes
/// any lift tombstone, and logs it.
/// KEYS: rev, lift, log. ARGV: hex key, expires_at, minid, maxlen.
const REVOKE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local exp = tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^%d+$') and #cur <= 11 and tonumber(cur) > exp then
  exp = tonumber(cur)
end
local e = string.format('%d', exp)
redis.call('SET', KEYS[1], e, 'EXAT', e)
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[3], '*', 't', 'r', 'k', ARGV[1], 'e', e)
redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[4])
return 1
"#;

/// Stores a watermark (never moving it or its expiry backwards) and logs it.
/// KEYS: wm, log. ARGV: sub, at, expires_at, minid, maxlen.
const WATERMARK: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local at = tonumber(ARGV[2])
local exp = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local ca, ce = string.match(cur, '^(%d+) (%d+)$')
  if ca and #ca <= 11 and #ce <= 11 then
    if tonumber(ca) > at then at = tonumber(ca) end
    if tonumber(ce) > exp then exp = tonumber(ce) end
  end
end
local a = string.format('%d', at)
local e = string.format('%d', exp)
redis.call('SET', KEYS[1], a .. ' ' .. e, 'EXAT', e)
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[4], '*', 't', 'w', 's', ARGV[1], 'a', a, 'e', e)
redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[5])
return 1
"#;

/// Removes a revocation, leaves a tombstone living as long as the
/// revocation would have (or `fallback` when it is not in Redis), so a
/// replica that resyncs from the keyspace also lifts it; logs it.
/// KEYS: rev, lift, log. ARGV: hex key, fallback expires_at, minid, maxlen.
const LIFT_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local e = ARGV[2]
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^%d+$') and #cur <= 11 then e = cur end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], e, 'EXAT', e)
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[3], '*', 't', 'l', 'k', ARGV[1])
redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[4])
return 1
"#;

/// The shared write connection and the scripts.
pub(crate) struct Writer {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    op_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    /// The live connection and its generation (to discard only the one that
    /// failed, not a newer one).
    slot: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    dialing: AtomicBool,
    /// Bumped after every dial, so waiters wake.
    dialed: watch::Sender<u64>,
    /// No dial before this instant (backoff after a failed dial).
    gate: Mutex<Option<(Instant, Duration)>>,
    revoke: Script,
    watermark: Script,
    lift: Script,
}

impl Writer {
    pub(crate) fn new(client: Client, options: &RedisOptions) -> Writer {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout));
        Writer {
            client,
            config,
            connect_timeout: options.connect_timeout,
            op_timeout: options.response_timeout,
            backoff_min: options.backoff_min,
            backoff_max: options.backoff_max,
            slot: Mutex::new(None),
            generation: AtomicU64::new(0),
            dialing: AtomicBool::new(false),
            dialed: watch::Sender::new(0),
            gate: Mutex::new(None),
            revoke: Script::new(REVOKE),
            watermark: Script::new(WATERMARK),
            lift: Script::new(LIFT_SCRIPT),
        }
    }

    /// The current connection, dialling one when there is none.
    pub(crate) async fn connection(
        &self,
    ) -> Result<(u64, MultiplexedConnection), redis::RedisError> {
        if let Some(c) = lock(&self.slot).clone() {
            return Ok(c);
        }
        if let Some((not_before, _)) = *lock(&self.gate) {
            if Instant::now() < not_before {
                return Err(unavailable("reconnecting (backing off)"));
            }
        }
        let mut dialed = self.dialed.subscribe();
        if self
            .dialing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Someone else is dialling: wait for their outcome, bounded.
            let _ = tokio::time::timeout(self.connect_timeout, dialed.changed()).await;
            return lock(&self.slot)
                .clone()
                .ok_or_else(|| unavailable("reconnecting"));
        }
        let dial = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        let result = match tokio::time::timeout(self.connect_timeout, dial).await {
            Ok(r) => r,
            Err(_) => Err(unavailable("connect timed out")),
        };
        let result = result.map(|conn| {
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            *lock(&self.slot) = Some((generation, conn.clone()));
            *lock(&self.gate) = None;
            (generation, conn)
        });
        if result.is_err() {
            let mut gate = lock(&self.gate);
            let delay = gate.map_or(self.backoff_min, |(_, d)| (d * 2).min(self.backoff_max));
            *gate = Some((Instant::now() + delay, delay));
        }
        self.dialing.store(false, Ordering::Release);
        self.dialed.send_modify(|n| *n += 1);
        result
    }

    /// Forgets connection `generation` after it failed.
    pub(crate) fn discard(&self, generation: u64) {
        let mut slot = lock(&self.slot);
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }

    /// Runs the record's script: returns once Redis has executed it.
    pub(crate) async fn persist(
        &self,
        prefix: &str,
        record: &Record,
        options: &RedisOptions,
    ) -> Result<(), RedisError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let minid = now_ms.saturating_sub(options.log_retention.as_millis() as u64);
        let maxlen = options.log_max_len;
        let log = format!("{prefix}{LOG}");
        let mut invocation = match record {
            Record::Revoke { key, expires_at } => {
                let mut i = self.revoke.key(format!("{prefix}{REV}{key}"));
                i.key(format!("{prefix}{LIFT}{key}")).key(&log);
                i.arg(key.to_string()).arg(*expires_at);
                i
            }
            Record::Watermark {
                sub,
                at,
                expires_at,
            } => {
                let mut i = self.watermark.key(format!("{prefix}{WM}{sub}"));
                i.key(&log);
                i.arg(&**sub).arg(*at).arg(*expires_at);
                i
            }
            Record::Lift { key } => {
                let fallback = options.clock.now() + options.tombstone_ttl.as_secs().max(1);
                let mut i = self.lift.key(format!("{prefix}{REV}{key}"));
                i.key(format!("{prefix}{LIFT}{key}")).key(&log);
                i.arg(key.to_string()).arg(fallback);
                i
            }
        };
        invocation.arg(minid).arg(maxlen);

        // A connection found dead (Redis restarted, connection killed) is
        // replaced and the write tried once more: the scripts are idempotent,
        // so even a write that ran but whose answer was lost is safe to
        // repeat. A timeout is not retried, to keep the caller's wait bounded.
        let mut retried = false;
        loop {
            let (generation, mut conn) = self.connection().await.map_err(to_unavailable)?;
            let run = invocation.invoke_async::<i64>(&mut conn);
            match tokio::time::timeout(self.op_timeout * 2, run).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if e.is_unrecoverable_error() && !e.is_timeout() => {
                    self.discard(generation);
                    if retried {
                        return Err(to_unavailable(e));
                    }
                    retried = true;
                }
                Ok(Err(e)) if e.is_timeout() => {
                    self.discard(generation);
                    return Err(to_unavailable(e));
                }
                Ok(Err(e)) => return Err(RedisError::Rejected(e.to_string())),
                Err(_) => {
                    self.discard(generation);
                    return Err(RedisError::Unavailable("timed out".into()));
                }
            }
        }
    }
}

fn unavailable(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what))
}

fn to_unavailable(e: redis::RedisError) -> RedisError {
    RedisError::Unavailable(e.to_string())
}

/// Locks a mutex that only ever guards a quick clone or swap; a panic while
/// holding it cannot leave the data half-written, so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
