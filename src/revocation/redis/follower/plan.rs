//! The follower's decisions, kept pure so they can be tested without
//! Redis: how to catch up ([`plan`]), whether Redis lost what this replica
//! synced ([`loss`]), and the heartbeat period ([`heartbeat`]).

use super::super::codec::StreamId;
use std::time::Duration;

/// Where this replica is in the shared history.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Whether a catch-up has completed since start.
    pub synced: bool,
    /// The dataset id we last synced with (`None`: Redis had none and could
    /// not take one, e.g. full).
    pub epoch: Option<Vec<u8>>,
    /// The last log entry applied (`0-0`: none).
    pub last: Option<StreamId>,
}

/// What a (re)connect finds, read atomically (reads only: works on a full
/// Redis).
#[derive(Debug)]
pub(crate) struct Head {
    /// The dataset id (`None`: missing and could not be created).
    pub epoch: Option<Vec<u8>>,
    /// The newest log entry, if any.
    pub tail: Option<StreamId>,
    /// The oldest log entry, if any.
    pub first: Option<StreamId>,
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
            if head.epoch.as_ref() == Some(epoch)
                && last != StreamId::ZERO
                && head.last_present =>
        {
            Plan::Incremental(last)
        }
        _ => Plan::Full(head.tail.unwrap_or(StreamId::ZERO)),
    }
}

/// How Redis lost what this replica synced, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Another dataset (restarted empty, flushed, the epoch key deleted or
    /// evicted): everything in it was written after the loss.
    NewDataset,
    /// Same dataset, but the log no longer has our last entry while it
    /// still has older ones (or none at all): restored from an older
    /// snapshot, or the log deleted.
    RolledBack,
}

/// Whether Redis lost data since our last catch-up. Nothing to say before
/// the first one. A log trimmed past our last entry (its oldest entry is
/// newer) is not a loss: the keyspace is complete.
pub(crate) fn loss(cursor: &Cursor, head: &Head) -> Option<Loss> {
    if !cursor.synced {
        return None;
    }
    if head.epoch.is_none() || head.epoch != cursor.epoch {
        return Some(Loss::NewDataset);
    }
    match cursor.last {
        Some(last) if last != StreamId::ZERO && !head.last_present => match head.first {
            None => Some(Loss::RolledBack),
            Some(first) if first < last => Some(Loss::RolledBack),
            Some(_) => None,
        },
        _ => None,
    }
}

/// The `XREAD BLOCK` period: half the staleness bound, so an idle replica
/// confirms it is current at least twice per bound.
pub(crate) fn heartbeat(block: Duration, max_staleness: Duration) -> Duration {
    block.min(max_staleness / 2).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId { ms, seq: 0 }
    }

    fn head(epoch: &[u8], first: Option<u64>, last_present: bool) -> Head {
        Head {
            epoch: Some(epoch.to_vec()),
            tail: Some(id(9)),
            first: first.map(id),
            last_present,
        }
    }

    fn synced_at(epoch: Option<&[u8]>, last: StreamId) -> Cursor {
        Cursor {
            synced: true,
            epoch: epoch.map(<[u8]>::to_vec),
            last: Some(last),
        }
    }

    #[test]
    fn plan_is_incremental_only_when_nothing_can_be_missed() {
        let synced = synced_at(Some(b"e1"), id(5));
        assert_eq!(
            plan(&synced, &head(b"e1", Some(1), true)),
            Plan::Incremental(id(5))
        );
        // Trimmed past us, or rolled back: full.
        assert_eq!(
            plan(&synced, &head(b"e1", Some(7), false)),
            Plan::Full(id(9))
        );
        // Another dataset (Redis restarted empty): full.
        assert_eq!(
            plan(&synced, &head(b"e2", Some(1), true)),
            Plan::Full(id(9))
        );
        // First start.
        assert_eq!(
            plan(&Cursor::default(), &head(b"e1", Some(1), false)),
            Plan::Full(id(9))
        );
        // Synced while the log was empty: we cannot tell what was trimmed.
        let empty = synced_at(Some(b"e1"), StreamId::ZERO);
        assert_eq!(plan(&empty, &head(b"e1", None, false)), Plan::Full(id(9)));
        let none = Head {
            epoch: Some(b"e1".to_vec()),
            tail: None,
            first: None,
            last_present: false,
        };
        assert_eq!(plan(&Cursor::default(), &none), Plan::Full(StreamId::ZERO));
        // No epoch (a full Redis could not take one): never incremental.
        let no_epoch = Head {
            epoch: None,
            ..head(b"", Some(1), true)
        };
        assert_eq!(plan(&synced, &no_epoch), Plan::Full(id(9)));
    }

    /// Pins the write-back trigger: Redis restarted empty, flushed, or its
    /// epoch key gone is a loss; so is a log rolled back behind our last
    /// entry; a log merely trimmed past it, or a first start, is not.
    #[test]
    fn loss_is_found_for_a_new_dataset_or_a_rolled_back_log_only() {
        let synced = synced_at(Some(b"e1"), id(5));
        assert_eq!(loss(&Cursor::default(), &head(b"e1", None, false)), None);
        assert_eq!(loss(&synced, &head(b"e1", Some(1), true)), None);
        assert_eq!(
            loss(&synced, &head(b"e2", Some(1), true)),
            Some(Loss::NewDataset)
        );
        let no_epoch = Head {
            epoch: None,
            ..head(b"", None, false)
        };
        assert_eq!(loss(&synced, &no_epoch), Some(Loss::NewDataset));
        // Our entry is gone but older ones are still there: rolled back.
        assert_eq!(
            loss(&synced, &head(b"e1", Some(3), false)),
            Some(Loss::RolledBack)
        );
        // The whole log is gone.
        assert_eq!(
            loss(&synced, &head(b"e1", None, false)),
            Some(Loss::RolledBack)
        );
        // Trimmed past us: the keyspace still has everything.
        assert_eq!(loss(&synced, &head(b"e1", Some(7), false)), None);
        // A replica that synced without an epoch (full Redis) and finds one.
        let without = synced_at(None, id(5));
        assert_eq!(
            loss(&without, &head(b"e1", Some(1), true)),
            Some(Loss::NewDataset)
        );
    }

    #[test]
    fn heartbeat_is_half_the_staleness_bound_at_most_the_block() {
        let ms = Duration::from_millis;
        assert_eq!(heartbeat(ms(1000), ms(1000)), ms(500));
        assert_eq!(heartbeat(ms(1000), ms(10_000)), ms(1000));
        assert_eq!(heartbeat(ms(1000), ms(100)), ms(50));
        assert_eq!(heartbeat(ms(1), ms(100)), ms(10));
    }
}
