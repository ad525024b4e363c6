//! Writing a replica's memory back to a Redis that lost it.
//!
//! When the follower finds that Redis no longer has what this replica synced
//! (`follower.rs`: another dataset id, or the change log rolled back), it
//! hands every live record it holds to these scripts, a batch per pipeline.
//! Each one stores and logs a record only when Redis has nothing newer, so:
//!
//! * several replicas writing back the same records log each one once (the
//!   first write wins, the others find it there and return 0);
//! * a replica started meanwhile, already following the log, gets them as
//!   ordinary changes;
//! * a revocation is never shortened and a watermark never lowered.
//!
//! Lifts are not held in memory (a lifted key is simply absent), so none is
//! written back. Whether a lift tombstone in Redis wins over a held
//! revocation depends on the loss: after a new dataset (restarted empty,
//! flushed), every tombstone there was made after the loss, so it is newer
//! than what we hold and wins. After a rollback to an older snapshot a
//! tombstone may predate what we hold, so the revocation wins: a lift may be
//! undone (an operator lifts again), a revocation is never lost.

use super::codec::{LIFT, LOG, REV, WM};
use super::Record;
use redis::Pipeline;

/// Revocation write-back. KEYS: rev, lift, log. ARGV: hex key, expires_at,
/// minid, maxlen, respect_lifts (1/0). Returns 1 when it stored the record.
pub(crate) const REVOKE_BACK: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local exp = tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^%d+$') and #cur <= 11 and tonumber(cur) >= exp then
  return 0
end
local e = string.format('%d', exp)
redis.call('SET', KEYS[1], e, 'EXAT', e)
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[3], '*', 't', 'r', 'k', ARGV[1], 'e', e)
redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[4])
return 1
"#;

/// Watermark write-back. KEYS: wm, log. ARGV: sub, at, expires_at, minid,
/// maxlen. Returns 1 when it raised (or created) the record.
pub(crate) const WATERMARK_BACK: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local at = tonumber(ARGV[2])
local exp = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local ca, ce = string.match(cur, '^(%d+) (%d+)$')
  if ca and #ca <= 11 and #ce <= 11 then
    if tonumber(ca) >= at and tonumber(ce) >= exp then return 0 end
    if tonumber(ca) > at then at = tonumber(ca) end
    if tonumber(ce) > exp then exp = tonumber(ce) end
  end
end
local a = string.format('%d', at)
local e = string.format('%d', exp)
redis.call('SET', KEYS[1], a .. ' ' .. e, 'EXAT', e)
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[4], '*', 't', 'w', 's', ARGV[1], 'a', a, 'e', e)
redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[5])
return 1
"#;

/// The SHA-1s of the two scripts, as `SCRIPT LOAD` returned them.
pub(crate) struct Shas {
    pub revoke: String,
    pub watermark: String,
}

/// How a batch is written.
pub(crate) struct Batch<'a> {
    pub prefix: &'a str,
    pub minid: u64,
    pub maxlen: u64,
    pub respect_lifts: bool,
}

/// `SCRIPT LOAD` of both scripts, in order.
pub(crate) fn load_pipeline() -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("SCRIPT").arg("LOAD").arg(REVOKE_BACK);
    pipe.cmd("SCRIPT").arg("LOAD").arg(WATERMARK_BACK);
    pipe
}

/// One `EVALSHA` per record (lifts skipped); the reply is one integer each.
pub(crate) fn pipeline(records: &[Record], shas: &Shas, batch: &Batch<'_>) -> Pipeline {
    let prefix = batch.prefix;
    let log = format!("{prefix}{LOG}");
    let mut pipe = redis::pipe();
    for record in records {
        match record {
            Record::Revoke { key, expires_at } => {
                pipe.cmd("EVALSHA")
                    .arg(&shas.revoke)
                    .arg(3)
                    .arg(format!("{prefix}{REV}{key}"))
                    .arg(format!("{prefix}{LIFT}{key}"))
                    .arg(&log)
                    .arg(key.to_string())
                    .arg(*expires_at)
                    .arg(batch.minid)
                    .arg(batch.maxlen)
                    .arg(if batch.respect_lifts { "1" } else { "0" });
            }
            Record::Watermark {
                sub,
                at,
                expires_at,
            } => {
                pipe.cmd("EVALSHA")
                    .arg(&shas.watermark)
                    .arg(2)
                    .arg(format!("{prefix}{WM}{sub}"))
                    .arg(&log)
                    .arg(&**sub)
                    .arg(*at)
                    .arg(*expires_at)
                    .arg(batch.minid)
                    .arg(batch.maxlen);
            }
            Record::Lift { .. } => {}
        }
    }
    pipe
}
