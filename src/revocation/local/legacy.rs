//! Reading a store written by the redb builds (`revocations.redb`), once, to
//! migrate it into the log. Kept only for that: nothing writes redb any more.
//!
//! redb can panic on a damaged file; the read runs under `catch_unwind` with
//! the panic message kept out of stderr, so a damaged legacy store becomes
//! one [`Damage`](super::log::Damage)-style error line, never a backtrace.

use super::super::{Record, RevocationKey};
use super::log::State;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const REVOKED: TableDefinition<u128, u64> = TableDefinition::new("revoked");
const WATERMARKS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("watermarks");

/// The legacy database file inside `revocation.path`.
pub(crate) const FILE_NAME: &str = "revocations.redb";

/// What the legacy file is renamed to once its records are in the log.
pub(crate) const MIGRATED_NAME: &str = "revocations.redb.migrated";

/// Reads every record of a redb store, expired or not. A panic inside redb
/// is caught and reported like any other error.
pub(crate) fn read(path: &Path) -> Result<State, String> {
    let path = path.to_path_buf();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(move || read_inner(&path));
    std::panic::set_hook(previous);
    match result {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("redb panicked while reading it: {msg}"))
        }
    }
}

fn read_inner(path: &Path) -> Result<State, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let db = Database::open(path).map_err(|x| e(&x))?;
    let txn = db.begin_read().map_err(|x| e(&x))?;
    let mut state = State::default();
    let revoked = txn.open_table(REVOKED).map_err(|x| e(&x))?;
    for item in revoked.iter().map_err(|x| e(&x))? {
        let (k, v) = item.map_err(|x| e(&x))?;
        state.apply(Record::Revoke {
            key: RevocationKey(k.value()),
            expires_at: v.value(),
        });
    }
    let watermarks = txn.open_table(WATERMARKS).map_err(|x| e(&x))?;
    for item in watermarks.iter().map_err(|x| e(&x))? {
        let (s, v) = item.map_err(|x| e(&x))?;
        let (at, expires_at) = v.value();
        state.apply(Record::Watermark {
            sub: s.value().into(),
            at,
            expires_at,
        });
    }
    Ok(state)
}
