//! Where a stream's output goes: records and the stream's new state, committed atomically.
//! The Kafka transactional sink implements it; a writer to another system would too.

use std::sync::Arc;

use super::BoxFuture;

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
