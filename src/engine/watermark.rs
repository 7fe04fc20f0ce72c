//! A stream's committed position: the watermark, which only moves forward, plus the content
//! hashes of records inside the lookback span, so re-read records are emitted only if changed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StreamId;
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
}

/// What is stored, per stream, in the compacted watermark topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkState {
    pub stream: StreamId,
    pub watermark: Watermark,
    /// Record key → (content hash, end of the window it was last emitted in, unix seconds).
    recent: BTreeMap<String, (u64, i64)>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    stream: String,
    watermark: DateTime<Utc>,
    #[serde(default)]
    recent: Vec<(String, String, i64)>,
}

impl WatermarkState {
    pub fn new(stream: StreamId, watermark: Watermark) -> Self {
        WatermarkState { stream, watermark, recent: BTreeMap::new() }
    }

    /// True when `key` was already emitted with this exact content inside the lookback span.
    pub fn is_unchanged(&self, key: &str, hash: u64) -> bool {
        self.recent.get(key).is_some_and(|(h, _)| *h == hash)
    }

    /// How many record hashes are kept for deduplication.
    pub fn recent_len(&self) -> usize {
        self.recent.len()
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
        let mut recent: BTreeMap<String, (u64, i64)> =
            self.recent.iter().filter(|(_, (_, seen))| *seen > keep_after).map(|(k, v)| (k.clone(), *v)).collect();
        if end_s > keep_after {
            for (key, hash) in emitted {
                recent.insert(key, (hash, end_s));
            }
        }
        Ok(WatermarkState { stream: self.stream.clone(), watermark: end, recent })
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
        let recent: BTreeMap<String, (u64, i64)> = current.into_iter().map(|(k, h)| (k, (h, at.timestamp()))).collect();
        let removed = self.recent.keys().filter(|k| !recent.contains_key(*k)).cloned().collect();
        (WatermarkState { stream: self.stream.clone(), watermark: at, recent }, removed)
    }

    /// JSON, so people can read the watermark topic with any console consumer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            v: 1,
            stream: self.stream.to_string(),
            watermark: self.watermark,
            recent: self.recent.iter().map(|(k, (h, s))| (k.clone(), format!("{h:016x}"), *s)).collect(),
        };
        serde_json::to_vec(&stored).expect("watermark state serializes")
    }

    pub fn from_bytes(key: &str, bytes: &[u8]) -> Result<WatermarkState, WatermarkError> {
        let corrupt = |reason: String| WatermarkError::Corrupt { key: key.to_owned(), reason };
        let s: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if s.v != 1 {
            return Err(corrupt(format!("unknown version {}", s.v)));
        }
        let stream = StreamId::parse(&s.stream).map_err(corrupt)?;
        if stream.as_str() != key {
            return Err(corrupt(format!("holds stream {:?}", s.stream)));
        }
        let mut recent = BTreeMap::new();
        for (k, h, seen) in s.recent {
            let h = u64::from_str_radix(&h, 16).map_err(|e| corrupt(format!("bad hash {h:?}: {e}")))?;
            recent.insert(k, (h, seen));
        }
        Ok(WatermarkState { stream, watermark: s.watermark, recent })
    }
}

/// A stable 64-bit content hash (FNV-1a) of a record's canonical JSON text. Stable across
/// releases and platforms, as the hashes outlive the process in the watermark topic.
pub fn content_hash(record: &serde_json::Value) -> u64 {
    // serde_json maps are sorted by key, so the text is canonical for equal content; it is
    // streamed into the hash rather than built as a string first.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    serde_json::to_writer(&mut h, record).expect("writing into a hash cannot fail");
    h.0
}

/// FNV-1a as an `io::Write` sink.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
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

    #[test]
    fn content_hash_is_fnv1a_of_the_canonical_text() {
        // Stored hashes outlive the process: the value for a known record must never change.
        let v = json!({"b": 1, "a": "x"});
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in v.to_string().bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(content_hash(&v), h);
    }

    #[test]
    fn content_hash_ignores_key_order_but_not_values() {
        let a = content_hash(&json!({"x": "1", "y": "2"}));
        let b = content_hash(&serde_json::from_str(r#"{"y":"2","x":"1"}"#).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, content_hash(&json!({"x": "1", "y": "3"})));
    }
}
