//! [`Record`]: one change to the blocklist, as written to the local store,
//! exchanged between replicas through Redis, and applied to memory.

use super::RevocationKey;

/// A change to the blocklist: what is persisted and what replicas exchange.
/// A revoked session (`sid`) is a [`Record::Revoke`] of a key of its own
/// kind ([`RevocationKey::from_sid`]), so stores and replicas of earlier
/// builds read it unchanged. A dimension that is not a key would be a
/// variant here, its encoding in `local/log.rs` and `redis/codec.rs` (a new
/// frame kind, so an older store still loads and a damaged one is still
/// refused), and its arm in `Blocklist::apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Refuse tokens with this key until `expires_at`.
    Revoke {
        /// The token's revocation key.
        key: RevocationKey,
        /// UNIX second at which the entry leaves (the token's `exp` plus leeway, plus one).
        expires_at: u64,
    },
    /// Logout-all: refuse the subject's tokens issued at or before `at`.
    Watermark {
        /// The token subject (`sub`).
        sub: Box<str>,
        /// Tokens with `iat <= at`, or without `iat`, are refused.
        at: u64,
        /// UNIX second at which the watermark leaves.
        expires_at: u64,
    },
    /// Admin lift: the revocation of `key` is removed.
    Lift {
        /// The revocation key to lift.
        key: RevocationKey,
    },
}

impl Record {
    /// When the record stops mattering (`None` for a lift).
    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Record::Revoke { expires_at, .. } | Record::Watermark { expires_at, .. } => {
                Some(*expires_at)
            }
            Record::Lift { .. } => None,
        }
    }
}
