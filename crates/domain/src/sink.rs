//! Where a stream's output goes: records and the stream's new state, committed atomically.
//! The Kafka transactional sink implements it; a writer to another system would too.

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::BoxFuture;
use crate::spool::{Spill, corrupt, get_bytes, get_u32, put_bytes, put_u32};

/// One record to write atomically with the others of its commit. `value: None` is a tombstone.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: Arc<str>,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Shared by the records of a window: one allocation a window, not a record.
    pub headers: Headers,
}

/// A commit's records, in order: in memory, or in a spill file for a window larger than the
/// process's byte budget.
pub type OutRecords = crate::spool::Spool<OutRecord>;

/// A record's headers, by name.
pub type Headers = Arc<[(&'static str, Arc<[u8]>)]>;

/// What a window's spilled records share and its spill file holds once: topics and header
/// lists, by index.
#[derive(Default)]
pub struct SpillTables {
    topics: Vec<Arc<str>>,
    headers: Vec<Headers>,
}

impl SpillTables {
    /// The index of `topic`, added on first sight. A window's records share a few topics.
    fn topic(&mut self, topic: &Arc<str>) -> u32 {
        index_of(&mut self.topics, topic)
    }

    /// The index of `headers`, added on first sight (by content: a dead letter's are its own).
    fn headers(&mut self, headers: &Headers) -> u32 {
        index_of(&mut self.headers, headers)
    }
}

fn index_of<T: ?Sized + PartialEq>(table: &mut Vec<Arc<T>>, item: &Arc<T>) -> u32 {
    // The latest first: records come in runs of the same window.
    match table.iter().rposition(|t| Arc::ptr_eq(t, item) || t == item) {
        Some(i) => i as u32,
        None => {
            table.push(item.clone());
            (table.len() - 1) as u32
        }
    }
}

impl Spill for OutRecord {
    type Tables = SpillTables;

    fn write_to(&self, w: &mut impl Write, tables: &mut SpillTables) -> io::Result<()> {
        put_u32(w, tables.topic(&self.topic))?;
        put_u32(w, tables.headers(&self.headers))?;
        put_bytes(w, Some(&self.key))?;
        put_bytes(w, self.value.as_deref())
    }

    fn read_from(r: &mut impl Read, tables: &SpillTables) -> io::Result<Self> {
        let topic = tables.topics.get(get_u32(r)? as usize).ok_or_else(|| corrupt("unknown topic index"))?.clone();
        let headers = tables.headers.get(get_u32(r)? as usize).ok_or_else(|| corrupt("unknown headers index"))?.clone();
        let key = get_bytes(r)?.ok_or_else(|| corrupt("record without key"))?;
        let value = get_bytes(r)?;
        Ok(OutRecord { topic, key, value, headers })
    }
}

/// Why a commit did not happen, by what the worker must do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// Nothing of the transaction is visible to `read_committed` readers: retry the window.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The producer is unusable (fenced by another instance with the same transactional id,
    /// or a fatal librdkafka error). The outcome of the last transaction may be unknown, so
    /// the worker must stop and resume from the watermark topic.
    #[error("producer failed fatally: {0}")]
    Fatal(String),
    /// Another producer with the stream's transactional id took over (a replica that now owns
    /// the stream): this one must stop the stream, not retry it.
    #[error("fenced by a newer producer: {0}")]
    Fenced(String),
}

/// Header carrying the stream id on every data record.
pub const HEADER_STREAM: &str = "tidemark.stream";
/// Header carrying the Avro record's full name on every data record.
pub const HEADER_SCHEMA: &str = "tidemark.schema";
/// Header naming who committed a watermark record (a replica, or the transactional id).
pub const HEADER_OWNER: &str = "tidemark.owner";

/// Where the error that stopped a stream is published for operators (`streams list`).
pub trait FailureLog: Send + Sync {
    /// Records that `stream` stopped on `error` while reading `window`.
    fn publish<'a>(&'a self, stream: &'a str, window: &'a str, error: &'a str) -> BoxFuture<'a, Result<(), String>>;

    /// Records that the daily quota of `credential` (the sources sharing it, comma-joined) is
    /// used up until `until`, for `streams list`.
    fn publish_quota<'a>(
        &'a self,
        credential: &'a str,
        until: chrono::DateTime<chrono::Utc>,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Records the top-level fields `stream`'s vendor sent that its schema lacks (the whole
    /// list so far, replacing the last), for `streams list`.
    fn publish_drift<'a>(&'a self, stream: &'a str, fields: &'a [String]) -> BoxFuture<'a, Result<(), String>>;
}

/// Commits a batch of records (a window's data and the stream's watermark) all or nothing.
pub trait Sink: Send + Sync {
    /// Writes `records` so that readers see all of them or none.
    fn commit(&self, records: OutRecords) -> BoxFuture<'_, Result<(), CommitError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &Arc<str>, headers: &Headers, key: &str, value: Option<&str>) -> OutRecord {
        OutRecord {
            topic: topic.clone(),
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: headers.clone(),
        }
    }

    #[test]
    fn spilled_records_come_back_in_order_with_their_topics_and_shared_headers() {
        let (data, dead): (Arc<str>, Arc<str>) = ("orders".into(), "orders.dlq".into());
        let window: Headers = vec![("tidemark.stream", Arc::from(&b"s/1"[..]))].into();
        let mut spool = OutRecords::default();
        spool.push(record(&data, &window, "a", Some("1"))).unwrap();
        spool.push(record(&dead, &Headers::from(window[..1].to_vec()), "b", Some("{}"))).unwrap();
        spool.spill().unwrap();
        spool.push(record(&data, &window, "c", None)).unwrap();
        spool.push(record(&data, &Headers::from(Vec::new()), "中文", Some(""))).unwrap();
        assert_eq!(spool.len(), 4);
        let back = spool.into_vec().unwrap();
        let seen: Vec<_> = back
            .iter()
            .map(|r| (&*r.topic, String::from_utf8(r.key.clone()).unwrap(), r.value.clone(), r.headers.len()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("orders", "a".into(), Some(b"1".to_vec()), 1),
                ("orders.dlq", "b".into(), Some(b"{}".to_vec()), 1),
                ("orders", "c".into(), None, 1),
                ("orders", "中文".into(), Some(Vec::new()), 0),
            ]
        );
        assert!(Arc::ptr_eq(&back[0].headers, &back[2].headers), "one header list a window, on disk too");
    }
}
