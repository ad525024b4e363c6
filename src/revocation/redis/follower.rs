//! The follower task: connect, catch up (incremental or full), then tail the
//! change log; on any error go `Down`, back off, and start over.

use super::codec::{self, parse_keyspace, parse_log_entry, StreamId, EPOCH, LOG};
use super::{Record, RedisStore, SyncState};
use crate::telemetry::metrics::Counter;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

type Apply = Arc<dyn Fn(Record) + Send + Sync>;

/// Where this replica is in the shared history.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The dataset id we last synced with.
    pub epoch: Option<Vec<u8>>,
    /// The last log entry applied (`0-0`: none).
    pub last: Option<StreamId>,
}

/// What a (re)connect finds, read atomically.
#[derive(Debug)]
pub(crate) struct Head {
    pub epoch: Vec<u8>,
    /// The newest log entry, if any.
    pub tail: Option<StreamId>,
    /// Whether our `cursor.last` entry is still in the log.
    pub last_present: bool,
}

/// How to catch up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Replay the log after this id.
    Incremental(StreamId),
    /// Rescan the keyspace, then replay the log after this id.
    Full(StreamId),
}

/// Incremental only when it provably misses nothing: same dataset, and the
/// last entry we applied is still in the log (so nothing after it was
/// trimmed and the log was not rolled back past it).
pub(crate) fn plan(cursor: &Cursor, head: &Head) -> Plan {
    match (&cursor.epoch, cursor.last) {
        (Some(epoch), Some(last))
            if *epoch == head.epoch && last != StreamId::ZERO && head.last_present =>
        {
            Plan::Incremental(last)
        }
        _ => Plan::Full(head.tail.unwrap_or(StreamId::ZERO)),
    }
}

/// Why a session ended without an error.
struct Stopped;

enum Failure {
    Stopped,
    Redis(redis::RedisError),
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
    shutdown: watch::Receiver<bool>,
    cursor: Cursor,
    backoff: Duration,
    log_key: String,
    epoch_key: String,
}

pub(crate) async fn run(store: Arc<RedisStore>, apply: Apply) {
    let shutdown = store.shutdown.subscribe();
    let mut f = Follower {
        log_key: format!("{}{LOG}", store.prefix),
        epoch_key: format!("{}{EPOCH}", store.prefix),
        backoff: store.options.backoff_min,
        store,
        apply,
        shutdown,
        cursor: Cursor::default(),
    };
    loop {
        if *f.shutdown.borrow() {
            break;
        }
        match f.session().await {
            Err(Failure::Stopped) | Ok(Stopped) => break,
            Err(Failure::Redis(e)) => {
                let was = f.store.state();
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

/// Between half and all of `d`, so replicas do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = RandomState::new().build_hasher().finish();
    d / 2 + Duration::from_nanos(r % (d.as_nanos() as u64 / 2).max(1))
}

impl Follower {
    /// One connection's life: never returns `Ok` except on shutdown.
    async fn session(&mut self) -> Result<Stopped, Failure> {
        let opts = &self.store.options;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.block + opts.response_timeout));
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

        let head = self.until_shutdown(self.read_head(&mut conn)).await??;
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
            epoch: Some(head.epoch),
            last: Some(from),
        };
        // Replay until the log is drained, then we are live.
        loop {
            let n = self.read_log(&mut conn, None).await?;
            if n == 0 {
                break;
            }
        }
        self.store.state.send_replace(SyncState::Live);
        self.backoff = self.store.options.backoff_min;
        tracing::info!(url = %self.store.redacted_url, "revocation store live");
        loop {
            self.read_log(&mut conn, Some(self.store.options.block))
                .await?;
        }
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

    /// Epoch (created if missing), log tail and whether our last entry is
    /// still there, in one MULTI/EXEC.
    async fn read_head(&self, conn: &mut MultiplexedConnection) -> RedisResult<Head> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&self.epoch_key)
            .arg(new_epoch())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&self.epoch_key)
            .cmd("XREVRANGE")
            .arg(&self.log_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        if let Some(last) = self.cursor.last.filter(|l| *l != StreamId::ZERO) {
            let id = last.to_string();
            pipe.cmd("XRANGE").arg(&self.log_key).arg(&id).arg(&id);
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        let protocol = || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply"));
        let epoch = match values.first() {
            Some(Value::BulkString(b)) => b.clone(),
            Some(Value::SimpleString(s)) => s.clone().into_bytes(),
            _ => return Err(protocol()),
        };
        let tail = match values.get(1) {
            Some(v) => entries(v)
                .ok_or_else(protocol)?
                .first()
                .map(|(id, _)| StreamId::parse(id).ok_or_else(protocol))
                .transpose()?,
            None => return Err(protocol()),
        };
        let last_present = match values.get(2) {
            Some(v) => !entries(v).ok_or_else(protocol)?.is_empty(),
            None => false,
        };
        Ok(Head {
            epoch,
            tail,
            last_present,
        })
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
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(self.store.options.batch.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.log_key).arg(last.to_string());
        let reply: Value = self.until_shutdown(cmd.query_async(conn)).await??;
        let protocol =
            || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected XREAD reply"));
        let list = match &reply {
            Value::Nil => return Ok(0),
            // RESP2: [[key, entries]]; RESP3: {key: entries}.
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(pair)) if pair.len() == 2 => &pair[1],
                None => return Ok(0),
                _ => return Err(protocol().into()),
            },
            Value::Map(streams) => match streams.first() {
                Some((_, v)) => v,
                None => return Ok(0),
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

    fn id(ms: u64) -> StreamId {
        StreamId { ms, seq: 0 }
    }

    #[test]
    fn plan_is_incremental_only_when_nothing_can_be_missed() {
        let head = |epoch: &[u8], last_present| Head {
            epoch: epoch.to_vec(),
            tail: Some(id(9)),
            last_present,
        };
        let synced = Cursor {
            epoch: Some(b"e1".to_vec()),
            last: Some(id(5)),
        };
        assert_eq!(plan(&synced, &head(b"e1", true)), Plan::Incremental(id(5)));
        // Trimmed past us, or rolled back: full.
        assert_eq!(plan(&synced, &head(b"e1", false)), Plan::Full(id(9)));
        // Another dataset (Redis restarted empty): full.
        assert_eq!(plan(&synced, &head(b"e2", true)), Plan::Full(id(9)));
        // First start.
        assert_eq!(
            plan(&Cursor::default(), &head(b"e1", false)),
            Plan::Full(id(9))
        );
        // Synced while the log was empty: we cannot tell what was trimmed.
        let empty = Cursor {
            epoch: Some(b"e1".to_vec()),
            last: Some(StreamId::ZERO),
        };
        assert_eq!(plan(&empty, &head(b"e1", false)), Plan::Full(id(9)));
        let none = Head {
            epoch: b"e1".to_vec(),
            tail: None,
            last_present: false,
        };
        assert_eq!(plan(&Cursor::default(), &none), Plan::Full(StreamId::ZERO));
    }

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
