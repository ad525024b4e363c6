//! The follower task: connect, check the eviction policy, catch up
//! (incremental or full, reads only), then tail the change log; on any
//! error go `Down`, back off, and start over. When the catch-up finds that
//! Redis lost data this replica had synced, it writes its memory back
//! (`writeback.rs`) once live. A watchdog ([`watchdog`]) turns a replica
//! whose heartbeat stopped `Stale`. The decisions (incremental or full,
//! loss or not, heartbeat period) are pure functions in `follower/plan.rs`.

use super::codec::{self, parse_keyspace, parse_log_entry, StreamId, EPOCH, LOG};
use super::policy::{self, Policy};
use super::writeback::{self, Batch, Shas};
use super::{Record, RedisStore, SyncState};
use crate::telemetry::metrics::Counter;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

mod plan;

pub(crate) use plan::{heartbeat, loss, plan, Cursor, Head, Loss, Plan};

type Apply = Arc<dyn Fn(Record) + Send + Sync>;
type Held = Arc<dyn Fn() -> Vec<Record> + Send + Sync>;

/// Why a session ended without an error.
struct Stopped;

enum Failure {
    Stopped,
    Redis(redis::RedisError),
    /// Redis can evict our keys: not used until that changes.
    Evicting,
    /// The dataset id changed under a live connection (`FLUSHALL`): catch
    /// up again at once.
    DatasetChanged,
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl From<Stopped> for Failure {
    fn from(_: Stopped) -> Self {
        Failure::Stopped
    }
}

struct Follower {
    store: Arc<RedisStore>,
    apply: Apply,
    held: Held,
    shutdown: watch::Receiver<bool>,
    cursor: Cursor,
    backoff: Duration,
    log_key: String,
    epoch_key: String,
    /// A loss was found and this replica's memory is not yet written back.
    write_back: Option<Loss>,
    /// No write-back try before this (after Redis refused one).
    write_back_after: Option<Instant>,
    /// The evicting-policy error has been logged (once per episode).
    evicting_logged: bool,
}

pub(crate) async fn run(store: Arc<RedisStore>, apply: Apply, held: Held) {
    let shutdown = store.shutdown.subscribe();
    let mut f = Follower {
        log_key: format!("{}{LOG}", store.prefix),
        epoch_key: format!("{}{EPOCH}", store.prefix),
        backoff: store.options.backoff_min,
        store,
        apply,
        held,
        shutdown,
        cursor: Cursor::default(),
        write_back: None,
        write_back_after: None,
        evicting_logged: false,
    };
    loop {
        if *f.shutdown.borrow() {
            break;
        }
        match f.session().await {
            Err(Failure::Stopped) | Ok(Stopped) => break,
            Err(Failure::DatasetChanged) => {
                tracing::warn!(url = %f.store.redacted_url,
                    "Redis's dataset changed under a live connection (flushed?): catching up again");
                f.store.state.send_replace(SyncState::CatchingUp);
            }
            Err(Failure::Evicting) => {
                f.store.state.send_replace(SyncState::Down);
                let mut shutdown = f.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(jitter(f.store.options.backoff_max)) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
            Err(Failure::Redis(e)) => {
                let was = f.store.state();
                // A stale replica was counted and logged by the watchdog.
                if matches!(was, SyncState::Live | SyncState::CatchingUp) {
                    f.store.metrics.incr(Counter::StoreDisconnects);
                    tracing::warn!(url = %f.store.redacted_url, error = %e,
                        "revocation store connection lost; reconnecting");
                } else {
                    tracing::debug!(url = %f.store.redacted_url, error = %e,
                        "revocation store still unreachable");
                }
                f.store.state.send_replace(SyncState::Down);
                let delay = jitter(f.backoff);
                f.backoff = (f.backoff * 2).min(f.store.options.backoff_max);
                let mut shutdown = f.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
    }
    f.store.state.send_replace(SyncState::Down);
}

/// Turns a `Live` replica `Stale` once the follower has not confirmed it is
/// current for `max_staleness` (checked ten times per bound), whatever the
/// follower's connection is doing: a hung connection is noticed here, long
/// before its response timeout.
pub(crate) async fn watchdog(store: Arc<RedisStore>) {
    let bound = store.options.max_staleness;
    let bound_ms = bound.as_millis() as u64;
    let mut tick = tokio::time::interval((bound / 10).max(Duration::from_millis(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = store.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = store.elapsed_ms();
        let went_stale = store.state.send_if_modified(|s| {
            let confirmed = store.confirmed_ms.load(Acquire);
            if *s == SyncState::Live && now.saturating_sub(confirmed) > bound_ms {
                *s = SyncState::Stale;
                true
            } else {
                false
            }
        });
        if went_stale {
            store.metrics.incr(Counter::StoreDisconnects);
            tracing::warn!(url = %store.redacted_url, max_staleness = ?bound,
                "revocation store silent past revocation.max_staleness: not ready until it answers");
        }
    }
}

/// Redis answered with an error (OOM, a refused command) rather than the
/// connection failing.
fn refused(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    )
}

/// Between half and all of `d`, so replicas do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = RandomState::new().build_hasher().finish();
    d / 2 + Duration::from_nanos(r % (d.as_nanos() as u64 / 2).max(1))
}

impl Follower {
    /// One connection's life: never returns `Ok` except on shutdown.
    async fn session(&mut self) -> Result<Stopped, Failure> {
        let opts = &self.store.options;
        let heartbeat = heartbeat(opts.block, opts.max_staleness);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(heartbeat + opts.response_timeout));
        let dial = self
            .store
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let mut conn = self
            .until_shutdown(async {
                tokio::time::timeout(opts.connect_timeout * 2, dial)
                    .await
                    .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "connect timed out").into()))
            })
            .await??;
        self.store.state.send_replace(SyncState::CatchingUp);
        self.check_policy(&mut conn).await?;

        let head = self.until_shutdown(self.read_head(&mut conn)).await??;
        if let Some(lost) = loss(&self.cursor, &head) {
            self.store.stats.data_losses.fetch_add(1, Relaxed);
            self.store.metrics.incr(Counter::StoreDataLosses);
            tracing::error!(url = %self.store.redacted_url, ?lost,
                "Redis lost revocations this replica had synced (restarted empty, flushed or restored from an older snapshot): writing back every live record held here");
            // A rollback found while a new-dataset write-back is pending
            // must not start respecting old tombstones.
            self.write_back = Some(match (self.write_back, lost) {
                (Some(Loss::RolledBack), _) | (_, Loss::RolledBack) => Loss::RolledBack,
                _ => Loss::NewDataset,
            });
            self.write_back_after = None;
        }
        let from = match plan(&self.cursor, &head) {
            Plan::Incremental(from) => {
                self.store.stats.incremental_catch_ups.fetch_add(1, Relaxed);
                from
            }
            Plan::Full(from) => {
                self.full_resync(&mut conn).await?;
                self.store.stats.full_resyncs.fetch_add(1, Relaxed);
                from
            }
        };
        self.cursor = Cursor {
            synced: self.cursor.synced,
            epoch: head.epoch,
            last: Some(from),
        };
        // Replay until the log is drained, then we are live.
        loop {
            let n = self.read_log(&mut conn, None).await?;
            if n == 0 {
                break;
            }
        }
        self.cursor.synced = true;
        self.store.confirm(self.store.elapsed_ms());
        self.store.state.send_replace(SyncState::Live);
        self.backoff = self.store.options.backoff_min;
        tracing::info!(url = %self.store.redacted_url, "revocation store live");
        loop {
            if let Some(lost) = self.write_back {
                if self.write_back_after.is_none_or(|t| Instant::now() >= t) {
                    self.write_back(&mut conn, lost).await?;
                }
            }
            self.read_log(&mut conn, Some(heartbeat)).await?;
        }
    }

    /// Refuses a Redis that can evict our keys (logged once per episode).
    /// At start the gateway exits on it; here it keeps the replica `Down`
    /// until the policy is fixed.
    async fn check_policy(&mut self, conn: &mut MultiplexedConnection) -> Result<(), Failure> {
        let timeout = self.store.options.response_timeout;
        match self.until_shutdown(policy::check(conn, timeout)).await? {
            Policy::Evicting(p) => {
                if !self.evicting_logged {
                    self.evicting_logged = true;
                    tracing::error!(url = %self.store.redacted_url, policy = %p,
                        "Redis can evict revocations (maxmemory-policy is not noeviction): not ready until it is set to noeviction");
                }
                Err(Failure::Evicting)
            }
            Policy::NoEviction | Policy::Unknown(_) => {
                self.evicting_logged = false;
                Ok(())
            }
        }
    }

    /// Writes every live record this replica holds back to Redis, a batch
    /// per pipeline, applying the log between batches (which also keeps the
    /// heartbeat going). A refusal (a full Redis: OOM) is retried later and
    /// does not end the session; a lost connection does.
    async fn write_back(
        &mut self,
        conn: &mut MultiplexedConnection,
        lost: Loss,
    ) -> Result<(), Failure> {
        // Walking a million entries takes tens of milliseconds: off the
        // async workers.
        let held = Arc::clone(&self.held);
        let held = tokio::task::spawn_blocking(move || held())
            .await
            .map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "write-back snapshot task failed",
                    e.to_string(),
                ))
            })?;
        let store = Arc::clone(&self.store);
        let opts = &store.options;
        let retry_after = opts.write_back_retry;
        let now = self.store.options.clock.now();
        let records: Vec<Record> = held
            .into_iter()
            .filter(|r| r.expires_at().is_some_and(|e| e > now))
            .collect();
        let shas: RedisResult<(String, String)> = self
            .until_shutdown(writeback::load_pipeline().query_async(conn))
            .await?;
        let shas = match shas {
            Ok((revoke, watermark)) => Shas { revoke, watermark },
            Err(e) if refused(&e) => return self.write_back_refused(&e, retry_after),
            Err(e) => return Err(e.into()),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let batch = Batch {
            prefix: &store.prefix,
            minid: now_ms.saturating_sub(opts.log_retention.as_millis() as u64),
            maxlen: opts.log_max_len,
            respect_lifts: lost == Loss::NewDataset,
        };
        let mut written = 0u64;
        for chunk in records.chunks(opts.batch.max(1)) {
            let pipe = writeback::pipeline(chunk, &shas, &batch);
            let reply: RedisResult<Vec<i64>> = self.until_shutdown(pipe.query_async(conn)).await?;
            match reply {
                Ok(done) => {
                    let n = done.iter().filter(|d| **d == 1).count() as u64;
                    written += n;
                    store.stats.written_back.fetch_add(n, Relaxed);
                    store.metrics.add(Counter::StoreWrittenBack, n);
                }
                Err(e) if refused(&e) => return self.write_back_refused(&e, retry_after),
                Err(e) => return Err(e.into()),
            }
            self.read_log(conn, None).await?;
        }
        self.write_back = None;
        self.write_back_after = None;
        tracing::info!(url = %store.redacted_url, held = records.len(), written,
            "write-back done: Redis again has every live record this replica holds");
        Ok(())
    }

    fn write_back_refused(
        &mut self,
        e: &redis::RedisError,
        retry_after: Duration,
    ) -> Result<(), Failure> {
        self.store.metrics.incr(Counter::StoreErrors);
        // Logged once per loss; the retries (every few seconds on a full
        // Redis) at debug.
        if self.write_back_after.is_none() {
            tracing::warn!(url = %self.store.redacted_url, error = %e, retry_every = ?retry_after,
                "Redis refused the write-back (full?); this replica keeps serving from memory and retries");
        } else {
            tracing::debug!(url = %self.store.redacted_url, error = %e, "write-back refused again");
        }
        self.write_back_after = Some(Instant::now() + retry_after);
        Ok(())
    }

    /// Runs `fut` unless shutdown comes first.
    async fn until_shutdown<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Stopped> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            v = fut => Ok(v),
            _ = shutdown.wait_for(|s| *s) => Err(Stopped),
        }
    }

    /// Epoch, log tail, log head and whether our last entry is still
    /// there, in one pipeline of reads (a full Redis answers them; it would
    /// refuse them inside MULTI, which queues). Not atomic: a flush between
    /// them is caught by the next heartbeat's epoch check. Only
    /// a missing epoch needs a write (`SET NX`); when Redis refuses it the
    /// catch-up goes on without one (the next one then counts as a loss,
    /// which only costs a write-back).
    async fn read_head(&self, conn: &mut MultiplexedConnection) -> RedisResult<Head> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(&self.epoch_key)
            .cmd("XREVRANGE")
            .arg(&self.log_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(&self.log_key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
        if let Some(last) = self.cursor.last.filter(|l| *l != StreamId::ZERO) {
            let id = last.to_string();
            pipe.cmd("XRANGE").arg(&self.log_key).arg(&id).arg(&id);
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        let protocol = || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply"));
        let one_id = |v: Option<&Value>| -> RedisResult<Option<StreamId>> {
            match v {
                Some(v) => entries(v)
                    .ok_or_else(protocol)?
                    .first()
                    .map(|(id, _)| StreamId::parse(id).ok_or_else(protocol))
                    .transpose(),
                None => Err(protocol()),
            }
        };
        let mut epoch = match values.first() {
            Some(Value::Nil) => None,
            Some(v) => Some(bytes(v).ok_or_else(protocol)?.to_vec()),
            None => return Err(protocol()),
        };
        let tail = one_id(values.get(1))?;
        let first = one_id(values.get(2))?;
        let last_present = match values.get(3) {
            Some(v) => !entries(v).ok_or_else(protocol)?.is_empty(),
            None => false,
        };
        if epoch.is_none() {
            epoch = self.create_epoch(conn).await?;
        }
        Ok(Head {
            epoch,
            tail,
            first,
            last_present,
        })
    }

    /// Sets the epoch if still missing and reads it back (another replica
    /// may have won); `None` when Redis refuses the write.
    async fn create_epoch(&self, conn: &mut MultiplexedConnection) -> RedisResult<Option<Vec<u8>>> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.epoch_key)
            .arg(new_epoch())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&self.epoch_key);
        match pipe.query_async::<Vec<Option<Vec<u8>>>>(conn).await {
            Ok(mut v) => Ok(v.pop().flatten()),
            Err(e) if refused(&e) => {
                tracing::warn!(url = %self.store.redacted_url, error = %e,
                    "Redis refused to store the dataset id (full?); catching up without it");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies every record key in the keyspace.
    async fn full_resync(&self, conn: &mut MultiplexedConnection) -> Result<(), Failure> {
        let pattern = codec::scan_pattern(&self.store.prefix);
        let batch = self.store.options.batch.max(1);
        let now = self.store.options.clock.now();
        let mut cursor: u64 = 0;
        let mut malformed = 0u64;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(batch)
                .arg("TYPE")
                .arg("string")
                .to_owned();
            let (next, keys): (u64, Vec<Vec<u8>>) =
                self.until_shutdown(scan.query_async(conn)).await??;
            for chunk in keys.chunks(batch) {
                let mget = redis::cmd("MGET").arg(chunk).to_owned();
                let values: Vec<Option<Vec<u8>>> =
                    self.until_shutdown(mget.query_async(conn)).await??;
                for (key, value) in chunk.iter().zip(values) {
                    let Some(value) = value else { continue };
                    match parse_keyspace(&self.store.prefix, key, &value) {
                        Ok(Some(record)) => self.deliver(record, now),
                        Ok(None) => {}
                        Err(()) => {
                            malformed += 1;
                            self.malformed(key, "keyspace");
                        }
                    }
                }
            }
            if next == 0 {
                if malformed > 0 {
                    tracing::warn!(malformed, "full resync skipped malformed records in Redis");
                }
                return Ok(());
            }
            cursor = next;
        }
    }

    /// One `XREAD` after `cursor.last`, blocking up to `block` when given.
    /// Returns how many entries it read.
    async fn read_log(
        &mut self,
        conn: &mut MultiplexedConnection,
        block: Option<Duration>,
    ) -> Result<usize, Failure> {
        let last = self.cursor.last.unwrap_or(StreamId::ZERO);
        let count = self.store.options.batch.max(1);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.log_key).arg(last.to_string());
        let sent = self.store.elapsed_ms();
        let reply: Value = if block.is_some() {
            // Tailing: the dataset id rides along with every heartbeat, so a
            // FLUSHALL (or a lost epoch key) under a live connection is
            // noticed within one period.
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&self.epoch_key).add_command(cmd);
            let (epoch, reply): (Option<Vec<u8>>, Value) =
                self.until_shutdown(pipe.query_async(conn)).await??;
            if epoch != self.cursor.epoch {
                return Err(Failure::DatasetChanged);
            }
            reply
        } else {
            self.until_shutdown(cmd.query_async(conn)).await??
        };
        // Heartbeat: an answer with nothing new after blocking `b` means
        // nothing was added until `sent + b` (Redis timed the block out no
        // earlier); an answer with entries covers what was there at `sent`.
        let nothing_new = || {
            let at = match block {
                Some(b) => (sent + b.as_millis() as u64).min(self.store.elapsed_ms()),
                None => sent,
            };
            self.store.confirm(at);
            Ok(0)
        };
        let protocol =
            || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected XREAD reply"));
        let list = match &reply {
            Value::Nil => return nothing_new(),
            // RESP2: [[key, entries]]; RESP3: {key: entries}.
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(pair)) if pair.len() == 2 => &pair[1],
                None => return nothing_new(),
                _ => return Err(protocol().into()),
            },
            Value::Map(streams) => match streams.first() {
                Some((_, v)) => v,
                None => return nothing_new(),
            },
            _ => return Err(protocol().into()),
        };
        let entries = entries(list).ok_or_else(protocol)?;
        let now = self.store.options.clock.now();
        for (id, fields) in &entries {
            let id = StreamId::parse(id).ok_or_else(protocol)?;
            match fields
                .as_ref()
                .and_then(|f| parse_log_entry(f.iter().copied()))
            {
                Some(record) => self.deliver(record, now),
                None => self.malformed(id.to_string().as_bytes(), "log"),
            }
            self.cursor.last = Some(id);
        }
        if entries.len() < count {
            self.store.confirm(sent);
        }
        Ok(entries.len())
    }

    fn deliver(&self, record: Record, now: u64) {
        if record.expires_at().is_some_and(|e| e <= now) {
            return;
        }
        (self.apply)(record);
        self.store.stats.applied.fetch_add(1, Relaxed);
    }

    /// Counts one malformed record (logged at debug; callers warn once per batch).
    fn malformed(&self, what: &[u8], source: &'static str) {
        self.store.metrics.incr(Counter::MalformedRecords);
        tracing::debug!(
            source,
            key = %String::from_utf8_lossy(&what[..what.len().min(80)]),
            "skipped a malformed revocation record from Redis"
        );
    }
}

/// Stream entries `[[id, [field, value, ...]], ...]` as (id, pairs); pairs
/// are `None` when the field list is not well formed.
type Entry<'a> = (&'a [u8], Option<Vec<(&'a [u8], &'a [u8])>>);

fn entries(v: &Value) -> Option<Vec<Entry<'_>>> {
    let Value::Array(items) = v else {
        return match v {
            Value::Nil => Some(Vec::new()),
            _ => None,
        };
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let (Some(Value::BulkString(id)), Some(fields)) = (pair.first(), pair.get(1)) else {
                return None;
            };
            Some((id.as_slice(), field_pairs(fields)))
        })
        .collect()
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b.as_slice()),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn field_pairs(v: &Value) -> Option<Vec<(&[u8], &[u8])>> {
    match v {
        Value::Array(flat) if flat.len() % 2 == 0 => flat
            .chunks(2)
            .map(|p| Some((bytes(&p[0])?, bytes(&p[1])?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
            .collect(),
        _ => None,
    }
}

/// A random dataset id.
fn new_epoch() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let a = h.finish();
    let b = RandomState::new().build_hasher().finish();
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    #[test]
    fn malformed_stream_shapes_are_rejected_not_panicking() {
        assert!(entries(&Value::Int(3)).is_none());
        assert!(entries(&Value::Array(vec![Value::Int(1)])).is_none());
        let odd = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"1-0".to_vec()),
            Value::Array(vec![Value::BulkString(b"t".to_vec())]),
        ])]);
        let e = entries(&odd).expect("test value");
        assert_eq!(e.len(), 1);
        assert!(e[0].1.is_none());
    }
}
