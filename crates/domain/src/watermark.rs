//! A stream's committed position: the watermark, which only moves forward, plus the content
//! hashes of records inside the lookback span, so re-read records are emitted only if changed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StreamId;
use super::json::Json;
use super::window::chrono_duration;

/// The end (exclusive) of the last window whose records are all in Kafka.
pub type Watermark = DateTime<Utc>;

/// Why a watermark record could not be applied or read.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    #[error("watermark of stream {stream} would move backwards from {from} to {to}")]
    Backwards { stream: StreamId, from: Watermark, to: Watermark },
    #[error("unreadable watermark record for key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the state of snapshot stream {stream} is {bytes} bytes, over kafka.watermark_max_bytes = {max}: its {keys} keys must all be kept to tombstone the ones that disappear; raise the limit (and the watermark topic's max.message.bytes) or split the stream"
    )]
    TooLarge { stream: StreamId, bytes: usize, keys: usize, max: usize },
}

/// What is stored, per stream, in the compacted watermark topic.
///
/// Windowed streams remember each record emitted inside the lookback span as a 64-bit
/// fingerprint of its business id with a 32-bit check of its content hash, grouped by the
/// end of the window it was emitted in: 12 bytes a record instead of the key and hash as text.
/// The newest window that holds a key decides, so a record that changes and changes back is
/// emitted each time. Snapshot streams keep their keys, which they need to tombstone the ones
/// that disappear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkState {
    pub stream: StreamId,
    pub watermark: Watermark,
    /// Snapshot streams (and states read from version 1 records): key → (content hash,
    /// unix seconds of the window end or snapshot it was last emitted in).
    keyed: BTreeMap<String, (u64, i64)>,
    /// Windowed streams: window end (unix seconds) → key fingerprint → content check, of the
    /// records emitted in that window.
    hashed: BTreeMap<i64, HashMap<u64, u32>>,
}

/// Bytes of one remembered record in version 2: key fingerprint (8) and content check (4).
const ENTRY: usize = 12;

/// Version 1 (still read): every remembered record as `[key, hash hex, seen]`.
#[derive(Deserialize)]
struct StoredV1 {
    stream: String,
    watermark: DateTime<Utc>,
    #[serde(default)]
    recent: Vec<(String, String, i64)>,
}

/// Version 2: `seen` holds `[window end, base64 of (u64 key fingerprint, u32 content check),
/// little-endian]` per window; `keys` the snapshot streams' `[key, hash hex, seen]`.
#[derive(Serialize, Deserialize)]
struct StoredV2 {
    v: u32,
    stream: String,
    watermark: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<(String, String, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<(i64, String)>,
}

/// The fingerprint a windowed stream remembers a business id by.
fn key_fingerprint(key: &str) -> u64 {
    let mut k = Fnv(0xcbf2_9ce4_8422_2325);
    std::io::Write::write_all(&mut k, key.as_bytes()).expect("hashing cannot fail");
    mix(k.0)
}

/// The 32-bit check of a record's content hash, mixed with its key so that equal contents of
/// different keys do not share checks.
fn content_check(key_fp: u64, hash: u64) -> u32 {
    (mix(hash ^ key_fp) >> 32) as u32
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl WatermarkState {
    pub fn new(stream: StreamId, watermark: Watermark) -> Self {
        WatermarkState { stream, watermark, keyed: BTreeMap::new(), hashed: BTreeMap::new() }
    }

    /// True when `key` was already emitted with this exact content inside the lookback span
    /// (and not emitted with other content since).
    pub fn is_unchanged(&self, key: &str, hash: u64) -> bool {
        if let Some((h, _)) = self.keyed.get(key) {
            return *h == hash;
        }
        let fp = key_fingerprint(key);
        self.hashed.values().rev().find_map(|window| window.get(&fp)).is_some_and(|c| *c == content_check(fp, hash))
    }

    /// Whether the stream emitted `key` within its dedup span, whatever its content then.
    pub fn remembers(&self, key: &str) -> bool {
        if self.keyed.contains_key(key) {
            return true;
        }
        let fp = key_fingerprint(key);
        self.hashed.values().any(|window| window.contains_key(&fp))
    }

    /// How many record hashes are kept for deduplication.
    pub fn recent_len(&self) -> usize {
        self.keyed.len() + self.hashed.values().map(HashMap::len).sum::<usize>()
    }

    /// The state after committing a window that ends at `end` and emitted `emitted`.
    /// Hashes from windows that ended at or before `end - lookback` are dropped: the next
    /// window starts at `end - lookback`, so those records cannot be read again unless they
    /// changed, which is then a genuine update. Refuses to move backwards.
    pub fn advance(
        &self,
        end: Watermark,
        emitted: impl IntoIterator<Item = (String, u64)>,
        lookback: Duration,
    ) -> Result<WatermarkState, WatermarkError> {
        if end < self.watermark {
            return Err(WatermarkError::Backwards { stream: self.stream.clone(), from: self.watermark, to: end });
        }
        let end_s = end.timestamp();
        let keep_after = (end - chrono_duration(lookback)).timestamp();
        let mut hashed: BTreeMap<i64, HashMap<u64, u32>> =
            self.hashed.range(keep_after + 1..).map(|(seen, window)| (*seen, window.clone())).collect();
        // Keys read from a version 1 record move into fingerprints as they are carried over.
        for (key, (hash, seen)) in self.keyed.iter().filter(|(_, (_, seen))| *seen > keep_after) {
            let fp = key_fingerprint(key);
            hashed.entry(*seen).or_default().insert(fp, content_check(fp, *hash));
        }
        if end_s > keep_after {
            // After the watermark was set back, windows newer than this one still hold hashes:
            // what was emitted now must be what the newest window says, or an older content
            // there would shadow it.
            let bucket = hashed.keys().next_back().copied().map_or(end_s, |newest| newest.max(end_s));
            let window = hashed.entry(bucket).or_default();
            for (key, hash) in emitted {
                let fp = key_fingerprint(&key);
                window.insert(fp, content_check(fp, hash));
            }
            if window.is_empty() {
                hashed.remove(&bucket);
            }
        }
        Ok(WatermarkState { stream: self.stream.clone(), watermark: end, keyed: BTreeMap::new(), hashed })
    }

    /// The state after committing a full snapshot taken at `at`: the stored hashes become
    /// exactly `current`. Returns the keys that were in the previous snapshot and are gone
    /// now (to be tombstoned). The watermark (time of the last snapshot) never moves back.
    pub fn replace_snapshot(
        &self,
        at: Watermark,
        current: impl IntoIterator<Item = (String, u64)>,
    ) -> (WatermarkState, Vec<String>) {
        let at = at.max(self.watermark);
        let keyed: BTreeMap<String, (u64, i64)> = current.into_iter().map(|(k, h)| (k, (h, at.timestamp()))).collect();
        let removed = self.keyed.keys().filter(|k| !keyed.contains_key(*k)).cloned().collect();
        (WatermarkState { stream: self.stream.clone(), watermark: at, keyed, hashed: BTreeMap::new() }, removed)
    }

    /// The stored form, made to fit in `max_bytes` (what one Kafka message may hold) by
    /// forgetting the fingerprints of the oldest windows first, with how many were forgotten.
    /// A record forgotten this way is emitted again if the lookback re-reads it unchanged: a
    /// duplicate, never a loss. A snapshot state cannot shed keys and is refused instead.
    pub fn to_bytes_within(&mut self, max_bytes: usize) -> Result<(Vec<u8>, usize), WatermarkError> {
        let mut bytes = self.to_bytes();
        let mut dropped = 0;
        while bytes.len() > max_bytes {
            let Some((_, oldest)) = self.hashed.pop_first() else {
                return Err(WatermarkError::TooLarge {
                    stream: self.stream.clone(),
                    bytes: bytes.len(),
                    keys: self.keyed.len(),
                    max: max_bytes,
                });
            };
            dropped += oldest.len();
            bytes = self.to_bytes();
        }
        Ok((bytes, dropped))
    }

    /// JSON, so people can read the watermark topic with any console consumer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = StoredV2 {
            v: 2,
            stream: self.stream.to_string(),
            watermark: self.watermark,
            keys: self.keyed.iter().map(|(k, (h, s))| (k.clone(), format!("{h:016x}"), *s)).collect(),
            seen: self
                .hashed
                .iter()
                .map(|(seen, window)| {
                    // Sorted, so equal states store equal bytes.
                    let mut entries: Vec<(u64, u32)> = window.iter().map(|(k, c)| (*k, *c)).collect();
                    entries.sort_unstable();
                    let mut raw = Vec::with_capacity(entries.len() * ENTRY);
                    for (fp, check) in entries {
                        raw.extend_from_slice(&fp.to_le_bytes());
                        raw.extend_from_slice(&check.to_le_bytes());
                    }
                    (*seen, BASE64.encode(raw))
                })
                .collect(),
        };
        serde_json::to_vec(&stored).expect("watermark state serializes")
    }

    pub fn from_bytes(key: &str, bytes: &[u8]) -> Result<WatermarkState, WatermarkError> {
        let corrupt = |reason: String| WatermarkError::Corrupt { key: key.to_owned(), reason };
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let (stream, watermark, keys, seen) = match version.v {
            1 => {
                let s: StoredV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
                (s.stream, s.watermark, s.recent, Vec::new())
            }
            2 => {
                let s: StoredV2 = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
                (s.stream, s.watermark, s.keys, s.seen)
            }
            v => return Err(corrupt(format!("unknown version {v}"))),
        };
        let stream = StreamId::parse(&stream).map_err(corrupt)?;
        if stream.as_str() != key {
            return Err(corrupt(format!("holds stream {stream:?}")));
        }
        let mut keyed = BTreeMap::new();
        for (k, h, seen) in keys {
            let h = u64::from_str_radix(&h, 16).map_err(|e| corrupt(format!("bad hash {h:?}: {e}")))?;
            keyed.insert(k, (h, seen));
        }
        let mut hashed = BTreeMap::new();
        for (at, text) in seen {
            let raw = BASE64.decode(&text).map_err(|e| corrupt(format!("bad fingerprints of window {at}: {e}")))?;
            if raw.len() % ENTRY != 0 {
                return Err(corrupt(format!(
                    "fingerprints of window {at} are {} bytes, not a multiple of {ENTRY}",
                    raw.len()
                )));
            }
            let window: HashMap<u64, u32> = raw
                .chunks_exact(ENTRY)
                .map(|c| {
                    let fp = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
                    (fp, u32::from_le_bytes(c[8..].try_into().expect("4 bytes")))
                })
                .collect();
            hashed.insert(at, window);
        }
        Ok(WatermarkState { stream, watermark, keyed, hashed })
    }
}

/// A watermark as people read it (logs, summaries): Beijing time, as the vendor data is.
pub fn fmt_wm(wm: Watermark) -> String {
    wm.with_timezone(&super::time::beijing()).format("%Y-%m-%d %H:%M:%S%:z").to_string()
}

/// A stable 64-bit content hash (FNV-1a) of a record's canonical JSON text (keys sorted,
/// compact, as serde_json writes a `Value`). Stable across releases and platforms, as the
/// hashes outlive the process in the watermark topic.
pub fn content_hash(record: &Json<'_>) -> u64 {
    // Streamed into the hash rather than built as a string first.
    let mut h = Fnv(FNV_OFFSET);
    record.write_canonical(&mut h).expect("writing into a hash cannot fail");
    h.0
}

/// FNV-1a of `bytes`: the content hash's function, for text that is not read as JSON.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a_from(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// FNV-1a as an `io::Write` sink.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = fnv1a_from(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(h: u32) -> Watermark {
        Utc.with_ymd_and_hms(2024, 1, 1, h, 0, 0).unwrap()
    }
    fn id() -> StreamId {
        StreamId::parse("wdt.account_check/shop-01").unwrap()
    }
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn fingerprints_do_not_collide_on_related_keys() {
        // One-letter keys collide under a weak hash; the fingerprint must mix its input.
        let mut all = std::collections::HashSet::new();
        let mut n = 0;
        for c in b'a'..=b'z' {
            n += 1;
            all.insert(key_fingerprint(&(c as char).to_string()));
        }
        for k in 0..100_000u64 {
            n += 1;
            all.insert(key_fingerprint(&format!("AC{k:08}")));
        }
        assert_eq!(all.len(), n, "no collisions");
    }

    #[test]
    fn a_record_that_changes_back_is_emitted_again() {
        // A → B → A inside the lookback: the newest window holding the key decides.
        let s = WatermarkState::new(id(), at(0))
            .advance(at(1), vec![("k".into(), 1)], 10 * HOUR)
            .unwrap()
            .advance(at(2), vec![("k".into(), 2)], 10 * HOUR)
            .unwrap();
        assert!(s.is_unchanged("k", 2));
        assert!(!s.is_unchanged("k", 1), "the first content is no longer what consumers hold");
        let back = WatermarkState::from_bytes(id().as_str(), &s.to_bytes()).unwrap();
        assert!(!back.is_unchanged("k", 1) && back.is_unchanged("k", 2), "also after a restart");
    }

    #[test]
    fn v1_records_are_read_and_carried_over_as_fingerprints() {
        let v1 = format!(
            r#"{{"v":1,"stream":"{}","watermark":"2024-01-01T01:00:00Z","recent":[["a","0000000000000001",{}]]}}"#,
            id(),
            at(1).timestamp()
        );
        let s = WatermarkState::from_bytes(id().as_str(), v1.as_bytes()).unwrap();
        assert!(s.is_unchanged("a", 1) && !s.is_unchanged("a", 2));
        let next = s.advance(at(2), vec![("b".into(), 2)], 2 * HOUR).unwrap();
        assert!(next.is_unchanged("a", 1) && next.is_unchanged("b", 2), "both remembered after the upgrade");
        assert!(String::from_utf8(next.to_bytes()).unwrap().starts_with(r#"{"v":2,"#));
    }

    #[test]
    fn a_record_over_the_limit_forgets_the_oldest_windows_first() {
        let mut s = WatermarkState::new(id(), at(0));
        for w in 1..=4u32 {
            let emitted: Vec<(String, u64)> = (0..1000u64).map(|i| (format!("w{w}-{i}"), i)).collect();
            s = s.advance(at(w), emitted, 10 * HOUR).unwrap();
        }
        assert_eq!(s.recent_len(), 4000);
        let full = s.to_bytes().len();
        assert!(full < 4000 * 17, "about 16 bytes a record: {full}");
        let (bytes, dropped) = s.to_bytes_within(full * 3 / 5).unwrap();
        assert!(bytes.len() <= full * 3 / 5);
        assert_eq!((dropped, s.recent_len()), (2000, 2000), "the two oldest windows went");
        assert!(!s.is_unchanged("w1-5", 5) && !s.is_unchanged("w2-5", 5));
        assert!(s.is_unchanged("w3-5", 5) && s.is_unchanged("w4-999", 999));
        assert_eq!(WatermarkState::from_bytes(id().as_str(), &bytes).unwrap(), s, "memory equals what is stored");

        let (mut snap, _) =
            WatermarkState::new(id(), at(0)).replace_snapshot(at(1), (0..1000u64).map(|i| (format!("acct-{i}"), i)));
        let e = snap.to_bytes_within(4096).unwrap_err().to_string();
        assert!(
            e.contains("snapshot stream") && e.contains("1000 keys") && e.contains("watermark_max_bytes = 4096"),
            "{e}"
        );
    }

    #[test]
    fn watermark_never_moves_backwards() {
        let s = WatermarkState::new(id(), at(5));
        assert!(matches!(s.advance(at(4), vec![], HOUR), Err(WatermarkError::Backwards { .. })));
        assert_eq!(s.advance(at(6), vec![], HOUR).unwrap().watermark, at(6));
    }

    #[test]
    fn hashes_are_kept_for_the_lookback_span_only() {
        let s = WatermarkState::new(id(), at(0))
            .advance(at(1), vec![("a".into(), 1)], HOUR)
            .unwrap()
            .advance(at(2), vec![("b".into(), 2)], HOUR)
            .unwrap();
        // After the window ending at 02:00 with one hour of lookback, the next window starts at
        // 01:00: records emitted in the window that ended at 01:00 cannot come back unchanged.
        assert!(!s.is_unchanged("a", 1));
        assert!(s.is_unchanged("b", 2));
        assert!(!s.is_unchanged("b", 3), "a changed record is not a duplicate");
        assert_eq!(s.recent_len(), 1);
        let none = s.advance(at(3), vec![("c".into(), 3)], Duration::ZERO).unwrap();
        assert_eq!(none.recent_len(), 0, "no lookback, nothing to remember");
    }

    /// After an operator sets the watermark back, the windows read again end before the
    /// newest remembered one: what they emit must still be what a later lookup finds.
    #[test]
    fn after_a_set_back_a_re_emitted_change_is_what_is_remembered() {
        let s = WatermarkState::new(id(), at(0)).advance(at(10), vec![("a".into(), 1)], 24 * HOUR).unwrap();
        let mut back = s.clone();
        back.watermark = at(2);
        let s = back.advance(at(4), vec![("a".into(), 2)], 24 * HOUR).unwrap();
        assert!(s.is_unchanged("a", 2), "the new content is remembered");
        assert!(!s.is_unchanged("a", 1), "the old content is not: if the vendor changes it back, it is emitted");
    }

    #[test]
    fn snapshots_replace_the_set_and_name_what_disappeared() {
        let s = WatermarkState::new(id(), at(0));
        let (s1, gone) = s.replace_snapshot(at(1), vec![("a".into(), 1), ("b".into(), 2)]);
        assert!(gone.is_empty());
        assert!(s1.is_unchanged("a", 1) && s1.is_unchanged("b", 2));
        let (s2, gone) = s1.replace_snapshot(at(2), vec![("a".into(), 9)]);
        assert_eq!(gone, vec!["b".to_string()]);
        assert!(!s2.is_unchanged("a", 1) && s2.is_unchanged("a", 9));
        let (s3, _) = s2.replace_snapshot(at(1), vec![]);
        assert_eq!(s3.watermark, at(2), "a clock going back does not move the watermark back");
    }

    #[test]
    fn state_round_trips_through_its_stored_form() {
        let s = WatermarkState::new(id(), at(0)).advance(at(1), vec![("k1".into(), u64::MAX)], HOUR).unwrap();
        let back = WatermarkState::from_bytes(id().as_str(), &s.to_bytes()).unwrap();
        assert_eq!(back, s);
        let e = WatermarkState::from_bytes("other/stream", &s.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("other/stream"), "{e}");
        assert!(WatermarkState::from_bytes("k", b"{").is_err());
    }

    /// The hash of a record as the worker reads it, from its text.
    fn content_hash(v: &serde_json::Value) -> u64 {
        let text = v.to_string();
        super::content_hash(&Json::parse(&text).unwrap())
    }

    #[test]
    fn content_hash_is_fnv1a_of_the_canonical_text() {
        // Stored hashes outlive the process: the value for a known record must never change.
        // The literals were computed outside this crate, as FNV-1a of the canonical text in
        // the comment, so a change to the serializer or the hash breaks the test.
        // `{"a":"x","b":1}`
        assert_eq!(content_hash(&json!({"b": 1, "a": "x"})), 0x1fc4_6df9_4e7a_e50d);
        // `{"a":"x","c":{"y":["店",null,"\""],"z":1.5}}`: nested keys sorted, non-ASCII as
        // UTF-8, quotes escaped, floats as their shortest text.
        let nested = json!({"c": {"z": 1.5, "y": ["店", null, "\""]}, "a": "x"});
        assert_eq!(content_hash(&nested), 0x4de0_7ab7_776f_2fe9);
    }

    #[test]
    fn stored_key_fingerprints_and_content_checks_never_change() {
        // Version 2 records store these, so they are pinned like the content hash: splitmix64's
        // finalizer of FNV-1a of `AC00000001`, and the check of the hash above under that key.
        let fp = key_fingerprint("AC00000001");
        assert_eq!(fp, 0xf678_59cf_c9af_9085);
        assert_eq!(content_check(fp, 0x1fc4_6df9_4e7a_e50d), 0x5ef0_ef46);
    }

    #[test]
    fn content_hash_ignores_key_order_but_not_values() {
        let a = content_hash(&json!({"x": "1", "y": "2"}));
        let b = super::content_hash(&Json::parse(r#"{"y": "2", "x": "1"}"#).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, content_hash(&json!({"x": "1", "y": "3"})));
    }
}
