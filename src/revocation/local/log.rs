//! The on-disk format of the local store: an append-only log of checksummed
//! frames behind a header that names the committed length.
//!
//! ```text
//! header (32 bytes, offset 0)
//!   magic "RVGTLOG\n" | version u32 | reserved u32 | committed u64 | reserved u32 | crc32c u32
//! frame (one group commit), repeated
//!   payload_len u32 | records u32 | crc32c u32 | payload
//! record
//!   1 revoke:    key u128 | expires_at u64
//!   2 lift:      key u128
//!   3 watermark: at u64 | expires_at u64 | sub_len u16 | sub (UTF-8)
//! ```
//!
//! All integers are little-endian. The header CRC covers its first 28 bytes;
//! a frame's CRC covers its length, record count and payload. `committed` is
//! the end of the last frame whose fsync succeeded: the writer appends a
//! frame, rewrites the header with the new end and only then fsyncs, so
//! every acknowledged record lies below a durable `committed`.
//!
//! Reading is strict below `committed`: a short file, a CRC mismatch or a
//! record that does not decode is [`Damage`], and the store refuses to open.
//! Bytes past `committed` were never acknowledged (a crash between append and
//! fsync): complete, valid frames there are kept, the first defect ends the
//! log (a torn tail, cut off when the store opens).

use super::super::{Record, RevocationKey, MAX_SUB_BYTES};
use std::collections::HashMap;

/// First bytes of every log file.
const MAGIC: &[u8; 8] = b"RVGTLOG\n";
/// The format this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Bytes of the header.
pub(crate) const HEADER_LEN: u64 = 32;
/// Bytes of a frame's header.
const FRAME_HEADER_LEN: usize = 12;

const TAG_REVOKE: u8 = 1;
const TAG_LIFT: u8 = 2;
const TAG_WATERMARK: u8 = 3;

/// Why a log cannot be read completely and exactly. `offset` is where the
/// reader stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub(crate) struct Damage {
    pub(crate) offset: u64,
    pub(crate) what: String,
}

fn damage(offset: u64, what: impl Into<String>) -> Damage {
    Damage {
        offset,
        what: what.into(),
    }
}

/// The header: magic, version and the committed length.
pub(crate) fn header(committed: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&committed.to_le_bytes());
    let crc = crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one frame holding `records` to `out`.
pub(crate) fn encode_frame<'a>(records: impl IntoIterator<Item = &'a Record>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    let mut count = 0u32;
    for r in records {
        encode_record(r, out);
        count += 1;
    }
    let payload_len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c_parts(&out[start..start + 8], &out[start + FRAME_HEADER_LEN..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn encode_record(r: &Record, out: &mut Vec<u8>) {
    match r {
        Record::Revoke { key, expires_at } => {
            out.push(TAG_REVOKE);
            out.extend_from_slice(&key.0.to_le_bytes());
            out.extend_from_slice(&expires_at.to_le_bytes());
        }
        Record::Lift { key } => {
            out.push(TAG_LIFT);
            out.extend_from_slice(&key.0.to_le_bytes());
        }
        Record::Watermark {
            sub,
            at,
            expires_at,
        } => {
            // `revoke_subject` bounds `sub` to MAX_SUB_BYTES (< u16::MAX);
            // a longer one is cut at a char boundary rather than corrupt
            // the frame.
            let mut end = sub.len().min(MAX_SUB_BYTES);
            while !sub.is_char_boundary(end) {
                end -= 1;
            }
            out.push(TAG_WATERMARK);
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&expires_at.to_le_bytes());
            out.extend_from_slice(&(end as u16).to_le_bytes());
            out.extend_from_slice(&sub.as_bytes()[..end]);
        }
    }
}

/// The state a log describes: the last word on every key and subject,
/// expired entries included.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Revoked key -> `expires_at`.
    pub(crate) revoked: HashMap<u128, u64>,
    /// Subject -> (watermark, `expires_at`).
    pub(crate) watermarks: HashMap<Box<str>, (u64, u64)>,
}

impl State {
    /// Applies one record with the store's rules: a revocation only extends,
    /// a lift removes, a watermark is never lowered nor shortened.
    pub(crate) fn apply(&mut self, r: Record) {
        match r {
            Record::Revoke { key, expires_at } => {
                let e = self.revoked.entry(key.0).or_insert(expires_at);
                *e = (*e).max(expires_at);
            }
            Record::Lift { key } => {
                self.revoked.remove(&key.0);
            }
            Record::Watermark {
                sub,
                at,
                expires_at,
            } => {
                let e = self.watermarks.entry(sub).or_insert((at, expires_at));
                *e = (e.0.max(at), e.1.max(expires_at));
            }
        }
    }

    /// The live records (`now < expires_at`), as records to write.
    pub(crate) fn live(&self, now: u64) -> impl Iterator<Item = Record> + '_ {
        let revoked =
            self.revoked
                .iter()
                .filter(move |(_, &e)| now < e)
                .map(|(&k, &expires_at)| Record::Revoke {
                    key: RevocationKey(k),
                    expires_at,
                });
        let watermarks = self
            .watermarks
            .iter()
            .filter(move |(_, &(_, e))| now < e)
            .map(|(sub, &(at, expires_at))| Record::Watermark {
                sub: sub.clone(),
                at,
                expires_at,
            });
        revoked.chain(watermarks)
    }

    /// Entries (revocations plus watermarks) with `expires_at <= now`.
    pub(crate) fn expired(&self, now: u64) -> u64 {
        let r = self.revoked.values().filter(|&&e| e <= now).count();
        let w = self.watermarks.values().filter(|&&(_, e)| e <= now).count();
        (r + w) as u64
    }
}

/// What reading a log found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) state: State,
    /// End of the last valid frame: where the next frame goes.
    pub(crate) end: u64,
    /// Bytes past `end` holding a torn, unacknowledged write.
    pub(crate) torn: u64,
    /// Bytes past `end` that are all zero (preallocated by the writer).
    pub(crate) padding: u64,
    pub(crate) frames: u64,
    pub(crate) records: u64,
}

/// Reads a whole log file's bytes, strictly below the committed length.
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan, Damage> {
    let mut state = State::default();
    let mut scan = scan_with(bytes, |r| state.apply(r))?;
    scan.state = state;
    Ok(scan)
}

/// [`scan`], handing each record to `visit` in log order instead of
/// building a [`State`] (the store's start-up path). On damage, `visit` has
/// seen part of the log: discard what it built.
pub(crate) fn scan_with(bytes: &[u8], mut visit: impl FnMut(Record)) -> Result<Scan, Damage> {
    let len = bytes.len() as u64;
    if len == 0 {
        return Err(damage(
            0,
            "the file is empty (truncated to 0 bytes?): a store always starts with a header",
        ));
    }
    let Some(h) = bytes.get(..HEADER_LEN as usize) else {
        return Err(damage(len, "the file ends inside its header (truncated)"));
    };
    if &h[..8] != MAGIC {
        return Err(damage(0, "not a revgate revocation log (bad magic bytes)"));
    }
    if crc32c(&h[..28]) != u32_at(h, 28) {
        return Err(damage(0, "header checksum mismatch"));
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(damage(
            8,
            format!("format version {version} is not supported by this build (it reads {VERSION})"),
        ));
    }
    let committed = u64_at(h, 16);
    if committed < HEADER_LEN {
        return Err(damage(
            16,
            format!("header names a committed length of {committed} bytes"),
        ));
    }
    if committed > len {
        return Err(damage(
            len,
            format!(
                "truncated: the header says {committed} bytes are committed, the file has {len}"
            ),
        ));
    }
    let mut scan = Scan::default();
    let mut off = HEADER_LEN;
    while off < len {
        match frame_at(bytes, off) {
            Ok((next, records)) => {
                scan.frames += 1;
                scan.records += records.len() as u64;
                records.into_iter().for_each(&mut visit);
                off = next;
            }
            // Past the committed end: never acknowledged, a torn tail.
            Err(_) if off >= committed => break,
            Err(e) => return Err(e),
        }
    }
    if off < committed {
        return Err(damage(off, "a frame crosses the committed end"));
    }
    scan.end = off;
    // The writer preallocates with zeros past the end; anything else there
    // is a torn write.
    let tail = bytes.get(off as usize..).unwrap_or_default();
    if tail.iter().all(|&b| b == 0) {
        scan.padding = len - off;
    } else {
        scan.torn = len - off;
    }
    Ok(scan)
}

/// Decodes the frame at `off`: its end and its records.
fn frame_at(bytes: &[u8], off: u64) -> Result<(u64, Vec<Record>), Damage> {
    let start = usize::try_from(off).map_err(|_| damage(off, "offset out of range"))?;
    let Some(fh) = bytes.get(start..start + FRAME_HEADER_LEN) else {
        return Err(damage(off, "truncated frame header"));
    };
    let payload_len = u32_at(fh, 0) as usize;
    let count = u32_at(fh, 4);
    let Some(payload) = bytes.get(start + FRAME_HEADER_LEN..start + FRAME_HEADER_LEN + payload_len)
    else {
        return Err(damage(off, "truncated frame"));
    };
    if crc32c_parts(&fh[..8], payload) != u32_at(fh, 8) {
        return Err(damage(off, "frame checksum mismatch"));
    }
    let records = decode_records(payload, count)
        .ok_or_else(|| damage(off, "a frame's records do not decode"))?;
    Ok(((start + FRAME_HEADER_LEN + payload_len) as u64, records))
}

fn decode_records(mut p: &[u8], count: u32) -> Option<Vec<Record>> {
    // Each record takes at least 17 bytes: a count beyond that is a lie.
    if count as usize > p.len() / 17 + 1 {
        return None;
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (&tag, rest) = p.split_first()?;
        p = rest;
        let r = match tag {
            TAG_REVOKE => Record::Revoke {
                key: RevocationKey(u128::from_le_bytes(take(&mut p)?)),
                expires_at: u64::from_le_bytes(take(&mut p)?),
            },
            TAG_LIFT => Record::Lift {
                key: RevocationKey(u128::from_le_bytes(take(&mut p)?)),
            },
            TAG_WATERMARK => {
                let at = u64::from_le_bytes(take(&mut p)?);
                let expires_at = u64::from_le_bytes(take(&mut p)?);
                let n = u16::from_le_bytes(take(&mut p)?) as usize;
                let (sub, rest) = (p.get(..n)?, p.get(n..)?);
                p = rest;
                Record::Watermark {
                    sub: std::str::from_utf8(sub).ok()?.into(),
                    at,
                    expires_at,
                }
            }
            _ => return None,
        };
        out.push(r);
    }
    p.is_empty().then_some(out)
}

fn take<const N: usize>(p: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = p.split_first_chunk::<N>()?;
    *p = rest;
    Some(*head)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 metadata and LevelDB
/// logs; table-driven, computed at compile time.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    !update(!0, data)
}

fn crc32c_parts(a: &[u8], b: &[u8]) -> u32 {
    !update(update(!0, a), b)
}

const TABLE: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    const POLY: u32 = 0x82F6_3B78; // reflected Castagnoli
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

/// Slicing-by-8: eight bytes per step.
fn update(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLE[7][(lo & 0xff) as usize]
            ^ TABLE[6][((lo >> 8) & 0xff) as usize]
            ^ TABLE[5][((lo >> 16) & 0xff) as usize]
            ^ TABLE[4][(lo >> 24) as usize]
            ^ TABLE[3][(hi & 0xff) as usize]
            ^ TABLE[2][((hi >> 8) & 0xff) as usize]
            ^ TABLE[1][((hi >> 16) & 0xff) as usize]
            ^ TABLE[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLE[0][((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(frames: &[&[Record]]) -> Vec<u8> {
        let mut body = Vec::new();
        for f in frames {
            encode_frame(f.iter(), &mut body);
        }
        let mut out = header(HEADER_LEN + body.len() as u64).to_vec();
        out.extend_from_slice(&body);
        out
    }

    fn revoke(k: u128, e: u64) -> Record {
        Record::Revoke {
            key: RevocationKey(k),
            expires_at: e,
        }
    }

    /// The checksum is CRC-32C: the standard check value of "123456789".
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
        assert_eq!(crc32c_parts(&long[..333], &long[333..]), crc32c(&long));
    }

    /// Every record kind round-trips, and replay keeps the store's rules.
    #[test]
    fn frames_round_trip_and_replay_with_the_store_rules() {
        let wm = |at, e| Record::Watermark {
            sub: "ünï".into(),
            at,
            expires_at: e,
        };
        let bytes = log_of(&[
            &[revoke(1, 100), revoke(2, 50), wm(10, 200)],
            &[
                revoke(1, 90),
                Record::Lift {
                    key: RevocationKey(2),
                },
                wm(5, 300),
            ],
        ]);
        let s = scan(&bytes).expect("valid");
        assert_eq!((s.frames, s.records, s.torn), (2, 6, 0));
        assert_eq!(s.end, bytes.len() as u64);
        assert_eq!(s.state.revoked.get(&1), Some(&100), "only extends");
        let mut zeros = bytes.clone();
        zeros.resize(bytes.len() + 5000, 0);
        let p = scan(&zeros).expect("preallocated zeros are not damage");
        assert_eq!((p.end, p.torn, p.padding), (s.end, 0, 5000));
        assert_eq!(s.state.revoked.get(&2), None, "lifted");
        assert_eq!(s.state.watermarks.get("ünï"), Some(&(10, 300)));
        assert_eq!(s.state.expired(100), 1);
        assert_eq!(s.state.live(100).count(), 1);
    }

    /// Any single flipped bit anywhere in a committed log is refused.
    #[test]
    fn every_single_bit_flip_is_damage() {
        let bytes = log_of(&[&[revoke(1, 100), revoke(2, 50)], &[revoke(3, 7)]]);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    scan(&b).is_err(),
                    "flip of bit {bit} at byte {i} was not noticed"
                );
            }
        }
    }

    /// A log cut anywhere below its committed end is refused, never read
    /// partially.
    #[test]
    fn every_truncation_is_damage() {
        let bytes = log_of(&[&[revoke(1, 100)], &[revoke(3, 7)]]);
        for cut in 0..bytes.len() {
            assert!(scan(&bytes[..cut]).is_err(), "cut at {cut} was read");
        }
    }

    /// Bytes past the committed end (an append whose fsync never returned)
    /// are a torn tail: valid frames there are kept, the rest is cut.
    #[test]
    fn a_torn_tail_past_the_committed_end_is_cut() {
        let mut bytes = log_of(&[&[revoke(1, 100)]]);
        let committed = bytes.len();
        encode_frame([revoke(2, 100)].iter(), &mut bytes);
        let whole = bytes.len();
        encode_frame([revoke(3, 100)].iter(), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        let s = scan(&bytes).expect("torn tail is not damage");
        assert!(s.end > committed as u64);
        assert_eq!(s.end, whole as u64);
        assert_eq!(s.torn, (bytes.len() - whole) as u64);
        assert!(s.state.revoked.contains_key(&2));
        assert!(!s.state.revoked.contains_key(&3));
    }

    /// Garbage that merely claims to be a frame with many records fails
    /// cleanly (no huge allocation, no panic).
    #[test]
    fn lying_record_counts_are_damage() {
        let mut bytes = log_of(&[&[revoke(1, 100)]]);
        // Rewrite the count and fix up the CRC so only the count lies.
        let at = HEADER_LEN as usize;
        bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c_parts(&bytes[at..at + 8], &bytes[at + 12..]);
        bytes[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        assert!(scan(&bytes).is_err());
    }
}
