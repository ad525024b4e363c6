//! How records are laid out in Redis, and their strict parsers.
//!
//! | key | value | expiry |
//! |---|---|---|
//! | `{prefix}rev:{key as 32 hex}` | `"{expires_at}"` | `EXAT expires_at` |
//! | `{prefix}wm:{sub}` | `"{at} {expires_at}"` | `EXAT expires_at` |
//! | `{prefix}lift:{key as 32 hex}` | `"{expires_at}"` (tombstone) | `EXAT expires_at` |
//! | `{prefix}log` | stream: `t=r k e`, `t=w s a e`, `t=l k` | trimmed by age and length |
//! | `{prefix}epoch` | random id of this Redis dataset | none |
//!
//! Nothing read back from Redis is trusted: every parser here returns `None`
//! on anything unexpected (wrong digits, out-of-range times, bad hex, empty or
//! non-UTF-8 `sub`), and the caller counts and skips it.

use super::Record;
use crate::revocation::RevocationKey;
use std::fmt;

/// Key infix of a revocation.
pub(crate) const REV: &str = "rev:";
/// Key infix of a logout-all watermark.
pub(crate) const WM: &str = "wm:";
/// Key infix of a lift tombstone.
pub(crate) const LIFT: &str = "lift:";
/// Key suffix of the change log stream.
pub(crate) const LOG: &str = "log";
/// Key suffix of the dataset id.
pub(crate) const EPOCH: &str = "epoch";

/// Latest UNIX second accepted in a record (the year 2500): far beyond any
/// token's life, and small enough that Lua's doubles hold it exactly.
pub const MAX_UNIX: u64 = 16_725_225_600;
/// Longest `sub` accepted in a watermark, in bytes. A `sub` arrives in a
/// verified token whose header section is at most a few KiB.
pub const MAX_SUB_LEN: usize = 4096;

/// The Redis key under which a record's current state is kept.
pub fn key_for(prefix: &str, record: &Record) -> String {
    match record {
        Record::Revoke { key, .. } => format!("{prefix}{REV}{key}"),
        Record::Watermark { sub, .. } => format!("{prefix}{WM}{sub}"),
        Record::Lift { key } => format!("{prefix}{LIFT}{key}"),
    }
}

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part (Redis's clock when the entry was added).
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `ms-seq` as Redis writes it.
    pub fn parse(bytes: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: parse_u64(ms.as_bytes())?,
            seq: parse_u64(seq.as_bytes())?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A plain decimal `u64`: ASCII digits only, no sign, no spaces.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A UNIX second within `0..=MAX_UNIX`.
pub(crate) fn parse_unix(bytes: &[u8]) -> Option<u64> {
    parse_u64(bytes).filter(|t| *t <= MAX_UNIX)
}

/// Exactly 32 hex digits.
pub(crate) fn parse_key(bytes: &[u8]) -> Option<RevocationKey> {
    if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    u128::from_str_radix(text, 16).ok().map(RevocationKey)
}

/// A non-empty UTF-8 `sub` of at most [`MAX_SUB_LEN`] bytes.
pub(crate) fn parse_sub(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.len() > MAX_SUB_LEN {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

/// What a key found by SCAN is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyKind<'a> {
    Rev(&'a [u8]),
    Wm(&'a [u8]),
    Lift(&'a [u8]),
    /// Ours but not a record (`log`, `epoch`), or not ours at all.
    Other,
}

/// Classifies a key by its infix after `prefix`.
pub(crate) fn classify<'a>(prefix: &str, key: &'a [u8]) -> KeyKind<'a> {
    let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
        return KeyKind::Other;
    };
    if let Some(k) = rest.strip_prefix(REV.as_bytes()) {
        KeyKind::Rev(k)
    } else if let Some(s) = rest.strip_prefix(WM.as_bytes()) {
        KeyKind::Wm(s)
    } else if let Some(k) = rest.strip_prefix(LIFT.as_bytes()) {
        KeyKind::Lift(k)
    } else {
        KeyKind::Other
    }
}

/// Parses a keyspace entry (key found by SCAN, its value) into a record.
/// `Ok(None)`: not a record key (ignored). `Err(())`: malformed.
pub(crate) fn parse_keyspace(prefix: &str, key: &[u8], value: &[u8]) -> Result<Option<Record>, ()> {
    match classify(prefix, key) {
        KeyKind::Rev(k) => {
            let key = parse_key(k).ok_or(())?;
            let expires_at = parse_unix(value).ok_or(())?;
            Ok(Some(Record::Revoke { key, expires_at }))
        }
        KeyKind::Wm(s) => {
            let sub = parse_sub(s).ok_or(())?;
            let (at, expires_at) = parse_watermark_value(value).ok_or(())?;
            Ok(Some(Record::Watermark {
                sub: sub.into(),
                at,
                expires_at,
            }))
        }
        KeyKind::Lift(k) => {
            let key = parse_key(k).ok_or(())?;
            parse_unix(value).ok_or(())?;
            Ok(Some(Record::Lift { key }))
        }
        KeyKind::Other => Ok(None),
    }
}

/// `"{at} {expires_at}"`.
fn parse_watermark_value(value: &[u8]) -> Option<(u64, u64)> {
    let space = value.iter().position(|b| *b == b' ')?;
    let at = parse_unix(&value[..space])?;
    let expires_at = parse_unix(&value[space + 1..])?;
    Some((at, expires_at))
}

/// Parses a change-log entry's field/value pairs into a record. Unknown
/// fields are ignored (a newer replica may add some); a missing or bad
/// required field, or an unknown type, makes it malformed (`None`).
pub(crate) fn parse_log_entry<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<Record> {
    let (mut t, mut k, mut s, mut a, mut e) = (None, None, None, None, None);
    for (name, value) in fields {
        match name {
            b"t" => t = Some(value),
            b"k" => k = Some(value),
            b"s" => s = Some(value),
            b"a" => a = Some(value),
            b"e" => e = Some(value),
            _ => {}
        }
    }
    match t? {
        b"r" => Some(Record::Revoke {
            key: parse_key(k?)?,
            expires_at: parse_unix(e?)?,
        }),
        b"w" => Some(Record::Watermark {
            sub: parse_sub(s?)?.into(),
            at: parse_unix(a?)?,
            expires_at: parse_unix(e?)?,
        }),
        b"l" => Some(Record::Lift {
            key: parse_key(k?)?,
        }),
        _ => None,
    }
}

/// `prefix` with SCAN MATCH's glob characters escaped, then `*`.
pub(crate) fn scan_pattern(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RevocationKey {
        RevocationKey::from_jti("j1")
    }

    #[test]
    fn keys_are_prefixed_by_kind() {
        let k = key();
        let r = Record::Revoke {
            key: k,
            expires_at: 5,
        };
        assert_eq!(key_for("p:", &r), format!("p:rev:{k}"));
        let w = Record::Watermark {
            sub: "alice".into(),
            at: 1,
            expires_at: 2,
        };
        assert_eq!(key_for("p:", &w), "p:wm:alice");
        assert_eq!(
            key_for("p:", &Record::Lift { key: k }),
            format!("p:lift:{k}")
        );
    }

    #[test]
    fn keyspace_round_trips_and_rejects_garbage() {
        let k = key();
        let rev = format!("p:rev:{k}");
        assert_eq!(
            parse_keyspace("p:", rev.as_bytes(), b"1700000000"),
            Ok(Some(Record::Revoke {
                key: k,
                expires_at: 1_700_000_000
            }))
        );
        assert_eq!(
            parse_keyspace("p:", b"p:wm:bob", b"10 20"),
            Ok(Some(Record::Watermark {
                sub: "bob".into(),
                at: 10,
                expires_at: 20
            }))
        );
        let lift = format!("p:lift:{k}");
        assert_eq!(
            parse_keyspace("p:", lift.as_bytes(), b"20"),
            Ok(Some(Record::Lift { key: k }))
        );
        assert_eq!(parse_keyspace("p:", b"p:epoch", b"x"), Ok(None));
        assert_eq!(parse_keyspace("p:", b"other", b"x"), Ok(None));
        for (key, value) in [
            (rev.as_bytes(), &b"-1"[..]),
            (rev.as_bytes(), b"12a"),
            (rev.as_bytes(), b""),
            (rev.as_bytes(), b" 12"),
            (rev.as_bytes(), b"99999999999999999999999"),
            (rev.as_bytes(), b"16725225601"),
            (b"p:rev:xyz", b"12"),
            (b"p:rev:0123456789abcdef0123456789abcdeg", b"12"),
            (b"p:wm:", b"1 2"),
            (b"p:wm:bob", b"1"),
            (b"p:wm:bob", b"1 2 3"),
            (b"p:wm:\xff", b"1 2"),
            (lift.as_bytes(), b"x"),
        ] {
            assert_eq!(
                parse_keyspace("p:", key, value),
                Err(()),
                "{key:?} {value:?}"
            );
        }
    }

    #[test]
    fn log_entries_parse_strictly() {
        let k = key();
        let hex = k.to_string();
        let e = |pairs: &[(&'static str, &str)]| {
            let owned: Vec<(Vec<u8>, Vec<u8>)> = pairs
                .iter()
                .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
                .collect();
            parse_log_entry(owned.iter().map(|(a, b)| (a.as_slice(), b.as_slice())))
        };
        assert_eq!(
            e(&[("t", "r"), ("k", &hex), ("e", "9"), ("x", "ignored")]),
            Some(Record::Revoke {
                key: k,
                expires_at: 9
            })
        );
        assert_eq!(
            e(&[("t", "w"), ("s", "ann"), ("a", "3"), ("e", "9")]),
            Some(Record::Watermark {
                sub: "ann".into(),
                at: 3,
                expires_at: 9
            })
        );
        assert_eq!(e(&[("t", "l"), ("k", &hex)]), Some(Record::Lift { key: k }));
        assert_eq!(e(&[("t", "r"), ("k", &hex)]), None);
        assert_eq!(e(&[("t", "z"), ("k", &hex)]), None);
        assert_eq!(e(&[("k", &hex)]), None);
        assert_eq!(e(&[("t", "w"), ("s", ""), ("a", "3"), ("e", "9")]), None);
        assert_eq!(e(&[("t", "l"), ("k", "00")]), None);
    }

    #[test]
    fn stream_ids_order_numerically() {
        let a = StreamId::parse(b"9-5").expect("test value");
        let b = StreamId::parse(b"10-0").expect("test value");
        assert!(a < b);
        assert_eq!(b.to_string(), "10-0");
        assert_eq!(StreamId::parse(b"10"), None);
        assert_eq!(StreamId::parse(b"a-1"), None);
        assert_eq!(StreamId::parse(b"1--1"), None);
    }

    #[test]
    fn scan_pattern_escapes_globs() {
        assert_eq!(scan_pattern("revgate:"), "revgate:*");
        assert_eq!(scan_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
