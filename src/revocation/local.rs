//! The durable local store: an append-only log (`local/log.rs` has the
//! format) written by one thread with group commit, read strictly at start,
//! compacted now and then, recovering by itself from write errors.
//!
//! # Writing
//! Callers send a [`Record`] with a oneshot ack through a bounded channel. The
//! writer thread takes everything queued (up to [`MAX_BATCH`]), appends it as
//! one checksummed frame, rewrites the header's committed length and calls
//! `fdatasync` once for the whole batch, then applies each record to the
//! in-memory blocklist in channel order and acks it. So memory never holds
//! what the disk does not, an acknowledged record is on disk, and memory and
//! disk see the same order. A failed append applies nothing and acks every
//! record of the batch with [`StoreError::Unavailable`]; their capacity slots
//! go back.
//!
//! # Write errors (ENOSPC, EIO)
//! The first failure logs one ERROR line and turns the store's health to
//! false (`/readyz` answers 503; checks keep answering from memory, which
//! still holds every acknowledged record). While unhealthy, every batch and a
//! retry timer (backoff from [`RETRY_MIN`] to [`RETRY_MAX`]) try to recover:
//! write and fsync a [`PROBE_BYTES`] scratch file (so a disk with a few free
//! bytes does not flap), reopen the log, cut it back to the last committed
//! frame and rewrite its header. Once that succeeds the store is healthy
//! again (one INFO line); no restart needed. Later failures during the same
//! fault log at debug only.
//!
//! # Opening
//! The whole log is read and checked (`log::scan`); a log that cannot be read
//! completely and exactly is refused ([`StoreOpenError::Damaged`]: the
//! gateway exits 2 without serving). An unacknowledged torn tail past the
//! committed end is cut. A store written by the redb builds
//! (`revocations.redb`) is migrated: its records are written as a fresh log
//! (temp file, fsync, rename, directory fsync) and only then is the redb file
//! renamed to `revocations.redb.migrated`; a crash in between migrates again
//! at the next start. `revocations.lock` (an exclusive `flock`, held while
//! the store is open) keeps a second process out.
//!
//! # Compaction
//! Expired records and superseded ones stay in the log (never loaded) until a
//! compaction rewrites the live records as a fresh log, the same way as a
//! migration. It runs on the writer thread when the log has doubled since the
//! last rewrite (and is past [`COMPACT_MIN_BYTES`]), at least every
//! [`COMPACT_EVERY`] otherwise, and on [`LocalStore::sweep`]. Writes queued
//! meanwhile wait: about a second at a million live records.

mod legacy;
pub(crate) mod log;

use super::blocklist::{Applied, Blocklist, Reservation};
use super::{Record, StoreError, StoreOpenError};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The log file inside `revocation.path`.
pub(crate) const FILE_NAME: &str = "revocations.log";
/// Held locked (`flock`) by the process that has the store open.
const LOCK_NAME: &str = "revocations.lock";
/// A new log being written (migration, compaction) before its rename.
const TMP_NAME: &str = "revocations.log.tmp";
/// The scratch file of a recovery probe.
const PROBE_NAME: &str = "revocations.probe";

/// Records written in one frame at most. Large enough that a burst of
/// logouts shares a handful of fsyncs; small enough that one commit stays in
/// the milliseconds.
const MAX_BATCH: usize = 1024;

/// Requests queued for the writer at most; further callers wait for room
/// (backpressure instead of unbounded memory).
const QUEUE: usize = 4096;

/// Records per frame when a whole log is rewritten.
const SNAPSHOT_FRAME: usize = 4096;

/// Least bytes of zeros written ahead of the log's end at a time.
const PREALLOC_MIN: u64 = 64 * 1024;
/// Most bytes of zeros written ahead at a time.
const PREALLOC_MAX: u64 = 8 << 20;

/// Bytes a recovery probe writes and fsyncs before the store is declared
/// writable again: a disk that cannot take 64 KiB would fail the next
/// batches anyway.
const PROBE_BYTES: usize = 64 * 1024;

/// First retry after a write error; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two recovery attempts while nothing is written.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// No compaction for growth below this log size: rewriting a small log
/// saves nothing.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// A compaction runs at least this often (expired records leave the disk).
const COMPACT_EVERY: Duration = Duration::from_secs(3600);

const WRITE_FAILED: &str = "the durable revocation store cannot write";
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
    /// Compact. `Some`: now, acking how many expired records left; `None`:
    /// only if due.
    Sweep(Option<oneshot::Sender<Result<u64, StoreError>>>),
    /// Finish the queued writes, close the log, then ack.
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
    health: watch::Receiver<bool>,
    path: PathBuf,
}

impl LocalStore {
    /// Opens (or creates) the store in `dir`, migrating a redb store found
    /// there, loads every unexpired record into `memory` and starts the
    /// writer thread. Blocking: call it from `spawn_blocking`.
    pub(crate) fn open(
        dir: &Path,
        memory: Arc<Blocklist>,
    ) -> Result<(Self, Loaded), StoreOpenError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreOpenError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StoreOpenError::Io { path: p, source }
        };
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreOpenError::Locked { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }

        let (loaded, end, allocated) = prepare(dir, &memory)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let (health_tx, health) = watch::channel(true);
        let writer = Writer {
            dir: dir.to_path_buf(),
            path: path.clone(),
            file,
            _lock: lock,
            end,
            allocated,
            snapshot_len: end,
            last_compaction: Instant::now(),
            broken: false,
            compact_failing: false,
            health: health_tx,
            memory,
            commits: Arc::clone(&commits),
            buf: Vec::new(),
        };
        std::thread::Builder::new()
            .name("revgate-revocation-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreOpenError::Thread { source })?;
        Ok((
            LocalStore {
                tx,
                commits,
                health,
                path,
            },
            loaded,
        ))
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

    /// Compacts the log now; returns how many expired records left it.
    pub(crate) async fn sweep(&self) -> Result<u64, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Command::Sweep(Some(ack)))
            .await
            .map_err(|_| StoreError::Unavailable(CLOSED))?;
        done.await.map_err(|_| StoreError::Unavailable(CLOSED))?
    }

    /// Asks for a compaction if one is due, without waiting (skipped when
    /// the queue is full).
    pub(crate) fn request_sweep(&self) {
        let _ = self.tx.try_send(Command::Sweep(None));
    }

    /// Finishes queued writes and closes the log. Later writes answer
    /// [`StoreError::Unavailable`].
    pub(crate) async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Batches of writes committed (each one fsync); compactions not
    /// included.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// Whether writes succeed: false from a write error until the store has
    /// recovered.
    pub(crate) fn health(&self) -> watch::Receiver<bool> {
        self.health.clone()
    }

    /// The log file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Brings `dir` to one valid log holding everything on disk and loads its
/// live records into `memory`: reads the log (strictly), merges a legacy
/// redb store, cuts a torn tail. Returns what was loaded, the log's end and
/// the file's length (the end plus preallocated zeros).
fn prepare(dir: &Path, memory: &Blocklist) -> Result<(Loaded, u64, u64), StoreOpenError> {
    let now = memory.clock().now();
    let path = dir.join(FILE_NAME);
    let legacy_path = dir.join(legacy::FILE_NAME);
    let damaged = |path: &Path, reason: String| StoreOpenError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let io_err = |path: &Path, source| StoreOpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&path, e)),
    };
    let legacy = legacy_path.exists();
    if !legacy {
        let Some(bytes) = bytes else {
            let end = write_snapshot(dir, std::iter::empty()).map_err(|e| io_err(&path, e))?;
            return Ok((Loaded::default(), end, end));
        };
        // The common start: records go straight into memory, in log order
        // (memory applies them with the same rules as the log).
        let mut loaded = Loaded::default();
        let scan = log::scan_with(&bytes, |r| load(memory, r, now, &mut loaded))
            .map_err(|d| damaged(&path, d.to_string()))?;
        loaded.revocations = memory.len().saturating_sub(loaded.watermarks);
        let len = bytes.len() as u64;
        drop(bytes);
        if scan.torn == 0 {
            return Ok((loaded, scan.end, len));
        }
        tracing::warn!(
            path = %path.display(),
            bytes = scan.torn,
            "revocation log: cut an unacknowledged torn tail (a crash during a write)"
        );
        cut(&path, scan.end).map_err(|e| io_err(&path, e))?;
        return Ok((loaded, scan.end, scan.end));
    }

    let mut state = match bytes {
        Some(bytes) => {
            log::scan(&bytes)
                .map_err(|d| damaged(&path, d.to_string()))?
                .state
        }
        None => log::State::default(),
    };
    let old = legacy::read(&legacy_path).map_err(|why| damaged(&legacy_path, why))?;
    let n = old.revoked.len() + old.watermarks.len();
    for (k, e) in old.revoked {
        state.apply(Record::Revoke {
            key: super::RevocationKey(k),
            expires_at: e,
        });
    }
    for (sub, (at, expires_at)) in old.watermarks {
        state.apply(Record::Watermark {
            sub,
            at,
            expires_at,
        });
    }
    tracing::info!(
        from = %legacy_path.display(),
        to = %path.display(),
        records = n,
        "migrating the redb revocation store to the log format"
    );
    let end = write_snapshot(dir, state.live(now)).map_err(|e| io_err(&path, e))?;
    std::fs::rename(&legacy_path, dir.join(legacy::MIGRATED_NAME))
        .and_then(|()| sync_dir(dir))
        .map_err(|e| io_err(&legacy_path, e))?;
    let mut loaded = Loaded {
        expired_skipped: state.expired(now),
        ..Loaded::default()
    };
    for r in state.live(now) {
        load(memory, r, now, &mut loaded);
    }
    loaded.revocations = memory.len().saturating_sub(loaded.watermarks);
    Ok((loaded, end, end))
}

/// Applies one durable record at start. Records already durable are never
/// refused, even beyond capacity: dropping one would un-revoke a token.
fn load(memory: &Blocklist, r: Record, now: u64, loaded: &mut Loaded) {
    match &r {
        Record::Revoke { expires_at, .. } | Record::Watermark { expires_at, .. }
            if *expires_at <= now =>
        {
            loaded.expired_skipped += 1;
            return;
        }
        Record::Watermark { sub, .. } if memory.watermark(sub).is_none() => {
            loaded.watermarks += 1;
        }
        Record::Revoke { .. } | Record::Watermark { .. } | Record::Lift { .. } => {}
    }
    memory.apply(&r, None);
}

/// Cuts the log at `end` and makes the header name it, durably.
fn cut(path: &Path, end: u64) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    file.set_len(end)?;
    file.write_all_at(&log::header(end), 0)?;
    file.sync_data()?;
    Ok(file)
}

/// Writes `records` as a fresh log replacing the current one (temp file,
/// fsync, rename, directory fsync); returns its length.
fn write_snapshot(dir: &Path, records: impl Iterator<Item = Record>) -> io::Result<u64> {
    let len = write_tmp(dir, records)?;
    let tmp = dir.join(TMP_NAME);
    if let Err(e) = std::fs::rename(&tmp, dir.join(FILE_NAME)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)?;
    Ok(len)
}

/// Writes `records` as a complete, fsync'd log in the temp file; returns
/// its length. On an error the temp file is removed.
fn write_tmp(dir: &Path, records: impl Iterator<Item = Record>) -> io::Result<u64> {
    let tmp = dir.join(TMP_NAME);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = io::BufWriter::with_capacity(1 << 20, &file);
        out.write_all(&log::header(log::HEADER_LEN))?;
        let mut len = log::HEADER_LEN;
        let (mut frame, mut buf) = (Vec::with_capacity(SNAPSHOT_FRAME), Vec::new());
        let mut records = records.peekable();
        while records.peek().is_some() {
            frame.clear();
            frame.extend(records.by_ref().take(SNAPSHOT_FRAME));
            buf.clear();
            log::encode_frame(frame.iter(), &mut buf);
            out.write_all(&buf)?;
            len += buf.len() as u64;
        }
        out.flush()?;
        drop(out);
        file.write_all_at(&log::header(len), 0)?;
        file.sync_all()?;
        Ok(len)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The writer thread's state: the only code that writes the log.
struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Holds the directory's `flock` for as long as the writer runs.
    _lock: File,
    /// End of the last committed frame (what the header names).
    end: u64,
    /// The file's length: `end` plus zeros written ahead (see
    /// [`Writer::preallocate`]).
    allocated: u64,
    /// The log's length after the last rewrite (open, migration, compaction).
    snapshot_len: u64,
    last_compaction: Instant,
    /// A write failed and the store has not recovered yet.
    broken: bool,
    /// The last compaction failed (its failure was logged).
    compact_failing: bool,
    health: watch::Sender<bool>,
    memory: Arc<Blocklist>,
    commits: Arc<AtomicU64>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Only for the timed wait between recovery attempts.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok();
        let mut writes = Vec::with_capacity(MAX_BATCH);
        let mut sweeps = Vec::new();
        let mut close = None;
        let mut backoff = RETRY_MIN;
        while close.is_none() {
            let first = match (&timer, self.broken) {
                (Some(timer), true) => {
                    // The timer must be created inside the runtime.
                    let wait = async { tokio::time::timeout(backoff, rx.recv()).await };
                    match timer.block_on(wait) {
                        Ok(cmd) => cmd,
                        Err(_elapsed) => {
                            if !self.recover() {
                                backoff = (backoff * 2).min(RETRY_MAX);
                            }
                            continue;
                        }
                    }
                }
                _ => rx.blocking_recv(),
            };
            let Some(first) = first else {
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
                self.commit(&mut writes);
            }
            for ack in sweeps.drain(..) {
                self.sweep(ack);
            }
            if !self.broken {
                backoff = RETRY_MIN;
            }
        }
        // Commands queued behind a close are dropped: their callers see the
        // store closed, and their capacity slots go back.
        rx.close();
        drop(rx);
        drop(self);
        if let Some(ack) = close {
            let _ = ack.send(());
        }
    }

    /// Appends one batch as a frame, fsyncs, then applies and acks it; on
    /// failure acks every record with `Unavailable`.
    fn commit(&mut self, writes: &mut Vec<Write>) {
        let result = if self.broken && !self.recover() {
            Err(None)
        } else {
            self.append(writes).map_err(Some)
        };
        match result {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::AcqRel);
                for w in writes.drain(..) {
                    let applied = self.memory.apply(&w.record, w.slot);
                    let _ = w.ack.send(Ok(applied));
                }
            }
            Err(error) => {
                if let Some(error) = error {
                    self.fail(&error, writes.len());
                }
                for w in writes.drain(..) {
                    let _ = w.ack.send(Err(StoreError::Unavailable(WRITE_FAILED)));
                }
            }
        }
    }

    fn append(&mut self, writes: &[Write]) -> io::Result<()> {
        self.buf.clear();
        log::encode_frame(writes.iter().map(|w| &w.record), &mut self.buf);
        let end = self.end + self.buf.len() as u64;
        if end > self.allocated {
            self.preallocate(end)?;
        }
        self.file.write_all_at(&self.buf, self.end)?;
        self.file.write_all_at(&log::header(end), 0)?;
        self.file.sync_data()?;
        self.end = end;
        // A large burst must not keep a large buffer forever.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Writes zeros past `needed` so that the next appends overwrite blocks
    /// the file already has: an fdatasync then flushes data only, not the
    /// journal commit a growing file needs (ext4, xfs). The zeros are synced
    /// with the batch that needed them. Grows by a quarter of the log,
    /// between [`PREALLOC_MIN`] and [`PREALLOC_MAX`], so a small store stays
    /// small.
    fn preallocate(&mut self, needed: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
        let target = needed + (needed / 4).clamp(PREALLOC_MIN, PREALLOC_MAX);
        let mut at = self.allocated.max(self.end);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
            self.allocated = at;
        }
        Ok(())
    }

    /// A write failed: the first failure of a fault is logged (once) and
    /// turns the health false.
    fn fail(&mut self, error: &io::Error, records: usize) {
        if self.broken {
            tracing::debug!(%error, records, "revocation store write failed again");
            return;
        }
        self.broken = true;
        self.health.send_replace(false);
        tracing::error!(
            path = %self.path.display(),
            %error,
            records,
            "revocation store write failed: revocations answer 503 and /readyz 503 until writes succeed again (retrying by itself)"
        );
    }

    /// Tries to make the log writable again; true once it is.
    fn recover(&mut self) -> bool {
        let attempt = probe(&self.dir)
            .and_then(|()| cut(&self.path, self.end))
            .and_then(|f| sync_dir(&self.dir).map(|()| f));
        match attempt {
            Ok(file) => {
                self.file = file;
                self.allocated = self.end;
                self.broken = false;
                self.health.send_replace(true);
                tracing::info!(path = %self.path.display(), "revocation store writable again");
                true
            }
            Err(error) => {
                tracing::debug!(%error, "revocation store still cannot write");
                false
            }
        }
    }

    fn sweep(&mut self, ack: Option<oneshot::Sender<Result<u64, StoreError>>>) {
        let due = self.end > COMPACT_MIN_BYTES && self.end > self.snapshot_len.saturating_mul(2)
            || self.last_compaction.elapsed() >= COMPACT_EVERY;
        if self.broken || (ack.is_none() && !due) {
            if let Some(ack) = ack {
                let _ = ack.send(Err(StoreError::Unavailable(WRITE_FAILED)));
            }
            return;
        }
        self.last_compaction = Instant::now();
        let result = self.compact();
        match &result {
            Ok(removed) => {
                self.compact_failing = false;
                tracing::debug!(removed, bytes = self.end, "revocation log compacted");
            }
            Err(error) if !self.compact_failing => {
                self.compact_failing = true;
                tracing::warn!(path = %self.path.display(), %error, "revocation log compaction failed (the log is unchanged)");
            }
            Err(_) => {}
        }
        if let Some(ack) = ack {
            let _ = ack.send(result.map_err(|_| StoreError::Unavailable(WRITE_FAILED)));
        }
    }

    /// Rewrites the live records as a fresh log; returns how many expired
    /// records were dropped.
    fn compact(&mut self) -> io::Result<u64> {
        let len = usize::try_from(self.end).map_err(io::Error::other)?;
        let mut bytes = vec![0u8; len];
        self.file.read_exact_at(&mut bytes, 0)?;
        let scan = log::scan(&bytes)
            .map_err(|d| io::Error::other(format!("the log no longer reads back: {d}")))?;
        drop(bytes);
        let now = self.memory.clock().now();
        let removed = scan.state.expired(now);
        let end = write_tmp(&self.dir, scan.state.live(now))?;
        let tmp = self.dir.join(TMP_NAME);
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e); // the log is unchanged
        }
        // The new log is in place: from here on, failing to use it is a
        // write fault (appends must never go to the replaced file).
        self.end = end;
        self.allocated = end;
        self.snapshot_len = end;
        let reopened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .and_then(|f| sync_dir(&self.dir).map(|()| f));
        match reopened {
            Ok(file) => self.file = file,
            Err(error) => self.fail(&error, 0),
        }
        Ok(removed)
    }
}

/// Writes and fsyncs [`PROBE_BYTES`] in a scratch file, then removes it.
fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_NAME);
    let result = File::create(&path).and_then(|mut f| {
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    result
}

/// What `revgate store verify` reports about a healthy store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The file that was read.
    pub path: PathBuf,
    /// Whether it is a redb store of an older build (migrated at next start).
    pub legacy: bool,
    /// Revocations in the store, expired ones included.
    pub revocations: u64,
    /// Logout-all watermarks, expired ones included.
    pub watermarks: u64,
    /// Of those, already expired at the time of the check.
    pub expired: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Unacknowledged bytes past the committed end (cut at the next start).
    pub torn: u64,
}

/// Why `revgate store verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No store there.
    #[error("{}: no revocation store (neither revocations.log nor revocations.redb)", .0.display())]
    Missing(PathBuf),
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The store cannot be read completely and exactly.
    #[error("{}: damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
}

/// Checks a store offline: `path` is the store directory
/// (`revocation.path`) or one of its files. Reads only; safe while a gateway
/// has the store open (a write in flight may show as a torn tail).
pub fn verify(path: &Path, now: u64) -> Result<Verified, VerifyError> {
    let file = if path.is_dir() {
        let log = path.join(FILE_NAME);
        let legacy = path.join(legacy::FILE_NAME);
        if log.exists() {
            log
        } else if legacy.exists() {
            legacy
        } else {
            return Err(VerifyError::Missing(path.to_path_buf()));
        }
    } else {
        path.to_path_buf()
    };
    let damaged = |reason: String| VerifyError::Damaged {
        path: file.clone(),
        reason,
    };
    let io_err = |source| VerifyError::Io {
        path: file.clone(),
        source,
    };
    let bytes = std::fs::metadata(&file).map_err(io_err)?.len();
    let is_legacy = file.file_name().is_some_and(|n| n == legacy::FILE_NAME);
    let (state, torn) = if is_legacy {
        (legacy::read(&file).map_err(damaged)?, 0)
    } else {
        let data = std::fs::read(&file).map_err(io_err)?;
        let scan = log::scan(&data).map_err(|d| damaged(d.to_string()))?;
        (scan.state, scan.torn)
    };
    Ok(Verified {
        path: file.clone(),
        legacy: is_legacy,
        revocations: state.revoked.len() as u64,
        watermarks: state.watermarks.len() as u64,
        expired: state.expired(now),
        bytes,
        torn,
    })
}

/// Records in the log, expired or not: (revocations, watermarks). For tests;
/// the store must be closed.
#[cfg(test)]
pub(crate) fn count_on_disk(dir: &Path) -> Result<(u64, u64), String> {
    let bytes = std::fs::read(dir.join(FILE_NAME)).map_err(|e| e.to_string())?;
    let scan = log::scan(&bytes).map_err(|e| e.to_string())?;
    Ok((
        scan.state.revoked.len() as u64,
        scan.state.watermarks.len() as u64,
    ))
}

#[cfg(test)]
mod tests;
