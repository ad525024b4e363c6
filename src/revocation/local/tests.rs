//! The local store's own cases: migration from redb, torn tails, the lock.
//! Damaged stores are tested black-box through the binary (`tests/it/store.rs`).

use super::*;
use crate::revocation::{ManualClock, RevocationKey};
use std::io::Write;

/// The fixture's clock: just after it was written.
const T: u64 = 1_700_000_001;

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("revgate-local-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn memory(now: u64) -> Arc<Blocklist> {
    Arc::new(Blocklist::new(1_000_000, Arc::new(ManualClock::new(now))))
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-redb")
}

/// Every record of `tests/fixtures/legacy-redb/expected.txt` is in force in
/// `m`, and nothing else.
fn assert_holds_the_fixture(m: &Blocklist) {
    let expected = std::fs::read_to_string(fixture().join("expected.txt")).expect("expected.txt");
    let mut n = 0u64;
    for line in expected.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["revoke", key, exp] => {
                let key = RevocationKey(u128::from_str_radix(key, 16).expect("hex"));
                assert_eq!(m.get(key), Some(exp.parse().expect("exp")), "{line}");
            }
            ["watermark", sub, at, exp] => {
                let w = m.watermark(sub).expect(line);
                assert_eq!(
                    (w.at, w.expires_at),
                    (at.parse().expect("at"), exp.parse().expect("exp"))
                );
            }
            _ => panic!("bad fixture line {line:?}"),
        }
        n += 1;
    }
    assert_eq!(m.len(), n, "more entries than the fixture holds");
    // Lifted in the old store: stays lifted.
    assert_eq!(
        m.get(RevocationKey(0x5eed_0000_0000_0000_0000_0000_0000_0000)),
        None
    );
}

/// A store written by the redb build is migrated at open without losing a
/// record (294 revocations, 3 watermarks), lifts stay lifted, the redb file is
/// set aside only after the log is durable, and the next open reads the log.
#[test]
fn redb_store_of_the_previous_build_is_migrated_without_loss() {
    let dir = temp_dir("migrate");
    std::fs::copy(
        fixture().join(legacy::FILE_NAME),
        dir.join(legacy::FILE_NAME),
    )
    .expect("copy fixture");
    let m = memory(T);
    let (store, loaded) = LocalStore::open(&dir, Arc::clone(&m)).expect("migrates");
    assert_eq!((loaded.revocations, loaded.watermarks), (294, 3));
    assert_eq!(loaded.expired_skipped, 1, "the one that expired at T");
    assert_holds_the_fixture(&m);
    drop(store);
    assert!(!dir.join(legacy::FILE_NAME).exists());
    assert!(dir.join(legacy::MIGRATED_NAME).exists());

    // Wait for the writer to let go of the lock, then open the log alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (m, loaded) = loop {
        let m = memory(T);
        match LocalStore::open(&dir, Arc::clone(&m)) {
            Ok((_store, loaded)) => break (m, loaded),
            Err(StoreOpenError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::yield_now()
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    assert_eq!((loaded.revocations, loaded.watermarks), (294, 3));
    assert_holds_the_fixture(&m);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A crash after the new log was renamed into place but before the redb file
/// was set aside: both are read, nothing is lost or counted twice.
#[test]
fn migration_interrupted_before_the_redb_rename_is_redone() {
    let dir = temp_dir("migrate-again");
    std::fs::copy(
        fixture().join(legacy::FILE_NAME),
        dir.join(legacy::FILE_NAME),
    )
    .expect("copy fixture");
    // A log holding one more revocation than the fixture.
    let extra = Record::Revoke {
        key: RevocationKey(7),
        expires_at: T + 100,
    };
    write_snapshot(&dir, std::iter::once(extra)).expect("log");
    let m = memory(T);
    let (_store, loaded) = LocalStore::open(&dir, Arc::clone(&m)).expect("opens");
    assert_eq!(loaded.revocations, 295);
    assert_eq!(m.get(RevocationKey(7)), Some(T + 100));
    assert!(dir.join(legacy::MIGRATED_NAME).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes past the committed end (an append whose fsync never returned) are
/// cut at open with a warning; what was committed is all there.
#[tokio::test]
async fn torn_tail_past_the_committed_end_is_cut_at_open() {
    let dir = temp_dir("torn");
    let m = memory(T);
    let (store, _) = LocalStore::open(&dir, Arc::clone(&m)).expect("open");
    for k in 0..10u128 {
        let record = Record::Revoke {
            key: RevocationKey(k),
            expires_at: T + 60,
        };
        store.write(record, None).await.expect("write");
    }
    store.close().await;
    let path = dir.join(FILE_NAME);
    let committed = std::fs::metadata(&path).expect("meta").len();
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&[0xAB; 37]).expect("tail");
    drop(f);
    let m = memory(T);
    let (_store, loaded) = LocalStore::open(&dir, Arc::clone(&m)).expect("torn tail opens");
    assert_eq!(loaded.revocations, 10);
    let v = verify(&dir, T).expect("verifies after the cut");
    assert_eq!(v.torn, 0);
    assert!(v.bytes < committed + 37);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second process (or a second open) cannot take a store that is open:
/// two writers would interleave frames.
#[test]
fn a_store_that_is_open_cannot_be_opened_twice() {
    let dir = temp_dir("lock");
    let (_store, _) = LocalStore::open(&dir, memory(T)).expect("open");
    assert!(matches!(
        LocalStore::open(&dir, memory(T)),
        Err(StoreOpenError::Locked { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A compaction keeps exactly the live records and drops expired ones.
#[tokio::test]
async fn compaction_keeps_live_records_and_drops_expired_ones() {
    let dir = temp_dir("compact");
    let clock = Arc::new(ManualClock::new(T));
    let m = Arc::new(Blocklist::new(1000, clock.clone()));
    let (store, _) = LocalStore::open(&dir, Arc::clone(&m)).expect("open");
    for k in 0..100u128 {
        let record = Record::Revoke {
            key: RevocationKey(k),
            expires_at: T + 10 + (k as u64 % 2) * 100,
        };
        store.write(record, None).await.expect("write");
    }
    let lift = Record::Lift {
        key: RevocationKey(1),
    };
    store.write(lift, None).await.expect("lift");
    clock.set(T + 50);
    assert_eq!(store.sweep().await, Ok(50));
    assert_eq!(store.sweep().await, Ok(0));
    store
        .write(
            Record::Revoke {
                key: RevocationKey(1000),
                expires_at: T + 500,
            },
            None,
        )
        .await
        .expect("write after compaction");
    store.close().await;
    assert_eq!(count_on_disk(&dir), Ok((50, 0)));
    let m = memory(T + 50);
    let (_store, loaded) = LocalStore::open(&dir, Arc::clone(&m)).expect("reopen");
    assert_eq!(loaded.revocations, 50);
    assert_eq!(m.get(RevocationKey(1)), None, "lift survived compaction");
    assert_eq!(m.get(RevocationKey(3)), Some(T + 110));
    assert_eq!(m.get(RevocationKey(1000)), Some(T + 500));
    let _ = std::fs::remove_dir_all(&dir);
}
