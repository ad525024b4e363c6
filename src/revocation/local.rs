//! The durable local store: a redb database written by one thread with group
//! commit.
//!
//! Callers send a [`Record`] with a oneshot ack through a bounded channel. The
//! writer thread takes everything queued (up to [`MAX_BATCH`]), writes it in
//! one transaction committed with `Durability::Immediate` (one fsync for the
//! whole batch), then applies each record to the in-memory blocklist in
//! channel order and acks it. So memory never holds what the disk does not,
//! an acknowledged record is on disk, and memory and disk see the same order.
//! A failed commit applies nothing and acks every record of the batch with
//! [`StoreError::Unavailable`]; their capacity slots go back.
//!
//! Tables (a revocation's key is its 128-bit digest):
//!
//! | table | key | value |
//! |---|---|---|
//! | `revoked` | key | `expires_at` |
//! | `revoked_by_expiry` | (`expires_at`, key) | () |
//! | `watermarks` | subject | (watermark, `expires_at`) |
//! | `watermarks_by_expiry` | (`expires_at`, subject) | () |
//!
//! The `*_by_expiry` indexes let the sweeper delete expired records by a range
//! scan from the oldest, without reading the live ones. A lift deletes the
//! record, so after a crash it stays lifted. redb reuses freed pages: the file
//! stays about as large as the most records it ever held at once.

use super::blocklist::{Applied, Blocklist, Reservation};
use super::{Record, StoreError, StoreOpenError};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

const REVOKED: TableDefinition<u128, u64> = TableDefinition::new("revoked");
const REVOKED_BY_EXPIRY: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("revoked_by_expiry");
const WATERMARKS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("watermarks");
const WATERMARKS_BY_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("watermarks_by_expiry");

/// The database file inside `revocation.path`.
pub(crate) const FILE_NAME: &str = "revocations.redb";

/// Records written in one transaction at most. Large enough that a burst of
/// logouts shares a handful of fsyncs; small enough that one commit stays in
/// the milliseconds.
const MAX_BATCH: usize = 1024;

/// Requests queued for the writer at most; further callers wait for room
/// (backpressure instead of unbounded memory).
const QUEUE: usize = 4096;

/// Expired records deleted per sweep transaction, so a sweep never holds up
/// queued revocations for long.
const SWEEP_BATCH: usize = 10_000;

/// A redb error, boxed: redb's error enum is large and only ever on the
/// slow path.
#[derive(Debug)]
pub(crate) struct DbError(Box<redb::Error>);

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        DbError(Box::new(e.into()))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

const COMMIT_FAILED: &str = "the durable revocation store failed to commit";
const CLOSED: &str = "the revocation store is closed";

/// A write waiting for its batch.
struct Write {
    record: Record,
    slot: Option<Reservation>,
    ack: oneshot::Sender<Result<Applied, StoreError>>,
}

/// What the writer thread is asked to do.
enum Command {
    Write(Write),
    /// Delete expired records now; the ack (if any) gets how many.
    Sweep(Option<oneshot::Sender<Result<u64, StoreError>>>),
    /// Finish the queued writes, close the database, then ack.
    Close(oneshot::Sender<()>),
}

/// What was loaded into memory at start.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Loaded {
    pub(crate) revocations: u64,
    pub(crate) watermarks: u64,
    pub(crate) expired_skipped: u64,
}

/// Handle to the writer thread.
pub(crate) struct LocalStore {
    tx: mpsc::Sender<Command>,
    commits: Arc<AtomicU64>,
    path: PathBuf,
}

impl LocalStore {
    /// Opens (or creates) the database in `dir`, loads every unexpired record
    /// into `memory` and starts the writer thread. Blocking: call it from
    /// `spawn_blocking`.
    pub(crate) fn open(
        dir: &Path,
        memory: Arc<Blocklist>,
    ) -> Result<(Self, Loaded), StoreOpenError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreOpenError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db_err = |source: DbError| StoreOpenError::Database {
            path: path.clone(),
            source: source.0,
        };
        let db = Database::create(&path).map_err(|e| db_err(e.into()))?;
        create_tables(&db).map_err(db_err)?;
        let loaded = load(&db, &memory).map_err(db_err)?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("revgate-revocation-writer".into())
            .spawn(move || writer(db, rx, memory, c))
            .map_err(|source| StoreOpenError::Thread { source })?;
        Ok((LocalStore { tx, commits, path }, loaded))
    }

    /// Writes `record` durably, then applies it to memory. Returns once the
    /// batch holding it has been fsync'd.
    pub(crate) async fn write(
        &self,
        record: Record,
        slot: Option<Reservation>,
    ) -> Result<Applied, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Command::Write(Write { record, slot, ack }))
            .await
            .map_err(|_| StoreError::Unavailable(CLOSED))?;
        done.await.map_err(|_| StoreError::Unavailable(CLOSED))?
    }

    /// Deletes expired records from disk now; returns how many.
    pub(crate) async fn sweep(&self) -> Result<u64, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Command::Sweep(Some(ack)))
            .await
            .map_err(|_| StoreError::Unavailable(CLOSED))?;
        done.await.map_err(|_| StoreError::Unavailable(CLOSED))?
    }

    /// Asks for a sweep without waiting (skipped when the queue is full).
    pub(crate) fn request_sweep(&self) {
        let _ = self.tx.try_send(Command::Sweep(None));
    }

    /// Finishes queued writes and closes the database file. Later writes
    /// answer [`StoreError::Unavailable`].
    pub(crate) async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Batches of writes committed (each one fsync); sweeps not included.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn create_tables(db: &Database) -> Result<(), DbError> {
    let txn = db.begin_write()?;
    txn.open_table(REVOKED)?;
    txn.open_table(REVOKED_BY_EXPIRY)?;
    txn.open_table(WATERMARKS)?;
    txn.open_table(WATERMARKS_BY_EXPIRY)?;
    txn.commit()?;
    Ok(())
}

/// Loads every unexpired record. Records already durable are never refused,
/// even beyond capacity: dropping one would un-revoke a token.
fn load(db: &Database, memory: &Blocklist) -> Result<Loaded, DbError> {
    let now = memory.clock().now();
    let mut loaded = Loaded::default();
    let txn = db.begin_read()?;
    for item in txn.open_table(REVOKED)?.iter()? {
        let (key, exp) = item?;
        let expires_at = exp.value();
        if now < expires_at {
            let key = super::RevocationKey(key.value());
            memory.apply(&Record::Revoke { key, expires_at }, None);
            loaded.revocations += 1;
        } else {
            loaded.expired_skipped += 1;
        }
    }
    for item in txn.open_table(WATERMARKS)?.iter()? {
        let (sub, value) = item?;
        let (at, expires_at) = value.value();
        if now < expires_at {
            let sub = sub.value().into();
            memory.apply(
                &Record::Watermark {
                    sub,
                    at,
                    expires_at,
                },
                None,
            );
            loaded.watermarks += 1;
        } else {
            loaded.expired_skipped += 1;
        }
    }
    Ok(loaded)
}

/// The writer thread: the only code that writes the database.
fn writer(
    db: Database,
    mut rx: mpsc::Receiver<Command>,
    memory: Arc<Blocklist>,
    commits: Arc<AtomicU64>,
) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut sweeps = Vec::new();
    let mut close = None;
    while close.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break; // every handle dropped
        };
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(w) => writes.push(w),
                Command::Sweep(ack) => sweeps.push(ack),
                Command::Close(ack) => {
                    close = Some(ack);
                    break;
                }
            }
            if writes.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            match commit(&db, &writes) {
                Ok(()) => {
                    commits.fetch_add(1, Ordering::AcqRel);
                    for w in writes.drain(..) {
                        let applied = memory.apply(&w.record, w.slot);
                        let _ = w.ack.send(Ok(applied));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, records = writes.len(), "revocation store commit failed");
                    for w in writes.drain(..) {
                        let _ = w.ack.send(Err(StoreError::Unavailable(COMMIT_FAILED)));
                    }
                }
            }
        }
        for ack in sweeps.drain(..) {
            let result = sweep(&db, memory.clock().now());
            match (&result, ack) {
                (Ok(n), None) if *n > 0 => {
                    tracing::debug!(removed = n, "expired revocation records swept")
                }
                (Err(error), None) => tracing::warn!(%error, "revocation store sweep failed"),
                (_, Some(ack)) => {
                    let _ = ack.send(result.map_err(|_| StoreError::Unavailable(COMMIT_FAILED)));
                }
                _ => {}
            }
        }
    }
    // Commands queued behind a close are dropped: their callers see the
    // store closed, and their capacity slots go back.
    rx.close();
    drop(rx);
    drop(db);
    if let Some(ack) = close {
        let _ = ack.send(());
    }
}

/// Writes one batch in one transaction and fsyncs it.
fn commit(db: &Database, writes: &[Write]) -> Result<(), DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut revoked = txn.open_table(REVOKED)?;
        let mut revoked_exp = txn.open_table(REVOKED_BY_EXPIRY)?;
        let mut watermarks = txn.open_table(WATERMARKS)?;
        let mut watermarks_exp = txn.open_table(WATERMARKS_BY_EXPIRY)?;
        for w in writes {
            match &w.record {
                Record::Revoke { key, expires_at } => {
                    let old = revoked.get(key.0)?.map(|g| g.value());
                    if old.is_none_or(|o| o < *expires_at) {
                        if let Some(o) = old {
                            revoked_exp.remove((o, key.0))?;
                        }
                        revoked.insert(key.0, *expires_at)?;
                        revoked_exp.insert((*expires_at, key.0), ())?;
                    }
                }
                Record::Lift { key } => {
                    if let Some(o) = revoked.remove(key.0)?.map(|g| g.value()) {
                        revoked_exp.remove((o, key.0))?;
                    }
                }
                Record::Watermark {
                    sub,
                    at,
                    expires_at,
                } => {
                    let sub: &str = sub;
                    let old = watermarks.get(sub)?.map(|g| g.value());
                    // A watermark is never lowered, and never shortened.
                    let new = old.map_or((*at, *expires_at), |(a, e)| {
                        (a.max(*at), e.max(*expires_at))
                    });
                    if old != Some(new) {
                        if let Some((_, e)) = old {
                            watermarks_exp.remove((e, sub))?;
                        }
                        watermarks.insert(sub, new)?;
                        watermarks_exp.insert((new.1, sub), ())?;
                    }
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Deletes records whose `expires_at <= now`, [`SWEEP_BATCH`] per
/// transaction, by range scans over the expiry indexes.
fn sweep(db: &Database, now: u64) -> Result<u64, DbError> {
    let end = now.saturating_add(1);
    let mut total = 0u64;
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let removed;
        {
            let mut revoked = txn.open_table(REVOKED)?;
            let mut revoked_exp = txn.open_table(REVOKED_BY_EXPIRY)?;
            let expired = revoked_exp
                .range(..(end, 0u128))?
                .take(SWEEP_BATCH)
                .map(|item| item.map(|(k, _)| k.value()))
                .collect::<Result<Vec<(u64, u128)>, _>>()?;
            for (exp, key) in &expired {
                revoked_exp.remove((*exp, *key))?;
                if revoked.get(*key)?.map(|g| g.value()) == Some(*exp) {
                    revoked.remove(*key)?;
                }
            }
            let mut watermarks = txn.open_table(WATERMARKS)?;
            let mut watermarks_exp = txn.open_table(WATERMARKS_BY_EXPIRY)?;
            let expired_wm = watermarks_exp
                .range(..(end, ""))?
                .take(SWEEP_BATCH)
                .map(|item| item.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<Vec<(u64, String)>, _>>()?;
            for (exp, sub) in &expired_wm {
                watermarks_exp.remove((*exp, sub.as_str()))?;
                if watermarks.get(sub.as_str())?.map(|g| g.value().1) == Some(*exp) {
                    watermarks.remove(sub.as_str())?;
                }
            }
            removed = (expired.len(), expired_wm.len());
        }
        if removed == (0, 0) {
            txn.abort()?;
            return Ok(total);
        }
        txn.commit()?;
        total += (removed.0 + removed.1) as u64;
        if removed.0 < SWEEP_BATCH && removed.1 < SWEEP_BATCH {
            return Ok(total);
        }
    }
}

/// Records on disk, expired or not: (revocations, watermarks, index rows).
/// For tests and operators' checks; opens the file read-only in spirit (the
/// store must be closed).
#[cfg(test)]
pub(crate) fn count_on_disk(dir: &Path) -> Result<(u64, u64, u64), DbError> {
    use redb::ReadableTableMetadata;
    let db = Database::open(dir.join(FILE_NAME))?;
    let txn = db.begin_read()?;
    let index =
        txn.open_table(REVOKED_BY_EXPIRY)?.len()? + txn.open_table(WATERMARKS_BY_EXPIRY)?.len()?;
    Ok((
        txn.open_table(REVOKED)?.len()?,
        txn.open_table(WATERMARKS)?.len()?,
        index,
    ))
}
