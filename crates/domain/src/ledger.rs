//! The ledger: one JSON record per committed window (or snapshot) of a stream, written in the
//! window's transaction, saying what the vendor counted and what went where; and the
//! order-independent checksum of business ids that lets a later count be compared with it.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::time::beijing;
use crate::window::Window;

/// The header each data record of a window carries: the window as `<start>/<end>` (RFC 3339,
/// Beijing time, half-open), the same text as its ledger entry's `window`.
pub const HEADER_WINDOW: &str = "tidemark.window";

/// What one committed window (or snapshot) read and wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The live stream the records belong to (a backfill's too).
    pub stream: String,
    /// `live`, or the backfill's progress key (`backfill:<from>:<to>:<stream>`).
    pub run: String,
    pub kind: String,
    pub topic: String,
    /// `<start>/<end>` as in [`HEADER_WINDOW`]; `snapshot` for a snapshot.
    pub window: String,
    /// The vendor's count of the window's records (`None` where the API gives none).
    pub vendor_total: Option<u64>,
    /// Records the pages held.
    pub read: u64,
    /// Records written to the topic (changed or new).
    pub emitted: u64,
    /// Records read again with the content the stream had already emitted.
    pub unchanged: u64,
    pub dead_letters: u64,
    /// Keys a snapshot no longer holds, tombstoned.
    pub tombstones: u64,
    pub pages: u32,
    /// Requests sent, retries included.
    pub requests: u64,
    /// RFC 3339, UTC.
    pub committed_at: String,
    /// [`IdChecksum`] of every business id read.
    pub ids_checksum: String,
    /// [`IdChecksum`] of the business ids written to the topic.
    pub emitted_checksum: String,
}

impl LedgerEntry {
    /// The window's bounds, unless this is a snapshot's entry.
    pub fn bounds(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        parse_window(&self.window)
    }
}

/// `window` as [`HEADER_WINDOW`] writes it.
pub fn window_text(w: &Window) -> String {
    let at = |t: DateTime<Utc>| t.with_timezone(&beijing()).to_rfc3339();
    format!("{}/{}", at(w.start), at(w.end))
}

/// The bounds of a [`window_text`].
pub fn parse_window(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (a, b) = text.split_once('/')?;
    let at = |t: &str| DateTime::<FixedOffset>::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
    Some((at(a)?, at(b)?))
}

/// An order-independent checksum of a set of business ids: the wrapping sum of each id's
/// 64-bit FNV-1a hash (of its UTF-8 bytes), as 16 hex digits. Any reader can compute it
/// (docs/consuming.md has it in Python); the same ids in any order give the same value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdChecksum(u64);

impl IdChecksum {
    pub fn add(&mut self, id: &[u8]) {
        self.0 = self.0.wrapping_add(fnv1a(id));
    }

    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// This checksum and one written by [`IdChecksum::hex`] together (the ids of both: a
    /// window's live entry and its backfill's); `None` when `hex` is not one.
    pub fn plus_hex(self, hex: &str) -> Option<IdChecksum> {
        let other = u64::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 16)?;
        Some(IdChecksum(self.0.wrapping_add(other)))
    }
}

impl<'a> FromIterator<&'a [u8]> for IdChecksum {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(ids: I) -> Self {
        let mut c = IdChecksum::default();
        for id in ids {
            c.add(id);
        }
        c
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (http://www.isthe.com/chongo/tech/comp/fnv/).
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_checksum_ignores_order_and_sees_a_missing_or_added_id() {
        let ids: Vec<&[u8]> = vec![b"AC1", b"AC2", "退款3".as_bytes()];
        let forward: IdChecksum = ids.iter().copied().collect();
        let backward: IdChecksum = ids.iter().rev().copied().collect();
        assert_eq!(forward, backward);
        let fewer: IdChecksum = ids[..2].iter().copied().collect();
        assert_ne!(forward, fewer);
        let last: IdChecksum = ids[2..].iter().copied().collect();
        assert_eq!(fewer.plus_hex(&last.hex()), Some(forward), "two disjoint sets add up to their union");
        assert_eq!(fewer.plus_hex("xyz"), None);
        assert_eq!(forward.hex().len(), 16);
    }

    #[test]
    fn a_window_round_trips_through_its_text() {
        let w = Window {
            start: crate::time::parse_beijing("2024-06-01 00:00:00").unwrap(),
            end: crate::time::parse_beijing("2024-06-02 00:00:00").unwrap(),
        };
        let text = window_text(&w);
        assert_eq!(text, "2024-06-01T00:00:00+08:00/2024-06-02T00:00:00+08:00");
        assert_eq!(parse_window(&text), Some((w.start, w.end)));
        assert_eq!(parse_window("snapshot"), None);
    }
}
