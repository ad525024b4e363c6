//! Whether Redis may evict our keys: `maxmemory-policy` must be
//! `noeviction`, or a revocation Redis evicts is un-revoked for every
//! replica that starts afterwards, without a trace.
//!
//! Read with `CONFIG GET maxmemory-policy`; managed services (ElastiCache,
//! MemoryStore, ...) often refuse `CONFIG`, so `INFO memory`
//! (`maxmemory_policy:`) is the fallback. When both are refused the policy
//! is [`Policy::Unknown`]: the gateway starts with a warning, because
//! refusing would make such services unusable, and operators there set the
//! policy in the service's parameter group.

use redis::aio::MultiplexedConnection;
use redis::Value;
use std::time::Duration;

/// What Redis said about eviction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `noeviction`: a full Redis refuses writes instead of evicting.
    NoEviction,
    /// Any other policy, named.
    Evicting(String),
    /// Neither `CONFIG GET` nor `INFO` told us; why.
    Unknown(String),
}

/// Classifies a policy name.
pub(crate) fn classify(name: &str) -> Policy {
    if name.eq_ignore_ascii_case("noeviction") {
        Policy::NoEviction
    } else {
        Policy::Evicting(name.chars().take(64).collect())
    }
}

/// Asks Redis, each command bounded by `timeout`.
pub(crate) async fn check(conn: &mut MultiplexedConnection, timeout: Duration) -> Policy {
    let config = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .to_owned();
    let why = match tokio::time::timeout(timeout, config.query_async::<Value>(conn)).await {
        Ok(Ok(v)) => match from_config_reply(&v) {
            Some(name) => return classify(&name),
            None => "CONFIG GET: unexpected reply".to_string(),
        },
        Ok(Err(e)) => format!("CONFIG GET: {e}"),
        Err(_) => "CONFIG GET: timed out".to_string(),
    };
    let info = redis::cmd("INFO").arg("memory").to_owned();
    match tokio::time::timeout(timeout, info.query_async::<Value>(conn)).await {
        Ok(Ok(v)) => match text(&v).and_then(|t| from_info(&t)) {
            Some(name) => classify(&name),
            None => Policy::Unknown(format!("{why}; INFO memory: no maxmemory_policy")),
        },
        Ok(Err(e)) => Policy::Unknown(format!("{why}; INFO memory: {e}")),
        Err(_) => Policy::Unknown(format!("{why}; INFO memory: timed out")),
    }
}

/// `CONFIG GET` answers `[name, value]` (RESP2) or `{name: value}` (RESP3).
fn from_config_reply(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) if items.len() == 2 => text(&items[1]),
        Value::Map(pairs) if pairs.len() == 1 => text(&pairs[0].1),
        _ => None,
    }
}

/// The `maxmemory_policy:` line of `INFO memory`.
fn from_info(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|v| v.trim().to_string())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_noeviction_is_safe() {
        assert_eq!(classify("noeviction"), Policy::NoEviction);
        for p in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert_eq!(classify(p), Policy::Evicting(p.to_string()));
        }
    }

    #[test]
    fn both_reply_shapes_and_info_are_read() {
        let resp2 = Value::Array(vec![
            Value::BulkString(b"maxmemory-policy".to_vec()),
            Value::BulkString(b"allkeys-lru".to_vec()),
        ]);
        assert_eq!(from_config_reply(&resp2).as_deref(), Some("allkeys-lru"));
        let resp3 = Value::Map(vec![(
            Value::BulkString(b"maxmemory-policy".to_vec()),
            Value::BulkString(b"noeviction".to_vec()),
        )]);
        assert_eq!(from_config_reply(&resp3).as_deref(), Some("noeviction"));
        assert_eq!(from_config_reply(&Value::Array(vec![])), None);
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:volatile-ttl\r\n";
        assert_eq!(from_info(info).as_deref(), Some("volatile-ttl"));
        assert_eq!(from_info("# Memory\r\n"), None);
    }
}
