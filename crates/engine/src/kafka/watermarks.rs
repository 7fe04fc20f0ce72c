//! Reads the compacted watermark topic to its end (`read_committed`) to rebuild every stream's position.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;

use super::ends::{EndsReader, PartitionEnds};
use super::scan::{self, ScanError};
use crate::domain::WatermarkState;
use crate::domain::watermark::WatermarkError;
use crate::kafka::config::KafkaConfig;

/// Why the watermark topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read watermark topic {topic}: {reason}")]
    Kafka { topic: String, reason: String },
    #[error("timed out after {0:?} reading the watermark topic to its end")]
    Timeout(Duration),
    #[error(
        "partition {partition} of watermark topic {topic} has a transaction that did not end (committed up to offset {committed}, written up to {written})"
    )]
    Unsettled { topic: String, partition: i32, committed: i64, written: i64 },
    #[error(transparent)]
    Corrupt(#[from] WatermarkError),
}

/// Every stream's latest committed state, by stream id. Call it after the transactional
/// producer is initialized, so no transaction of an older instance is left open and the
/// committed end of each partition is reachable.
pub async fn load(cfg: &KafkaConfig, timeout: Duration) -> Result<BTreeMap<String, WatermarkState>, LoadError> {
    let cfg = cfg.clone();
    blocking(move || Ok(load_states(&cfg, timeout, timeout)?.0)).await
}

/// Runs `f`, which waits on Kafka, on the blocking pool; a task that panicked is a
/// [`LoadError::Kafka`] saying so.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LoadError::Kafka { topic: String::new(), reason: e.to_string() })?
}

/// Every stream's state and the ends it was read to; a transaction still open is waited for
/// up to `open_wait`.
fn load_states(
    cfg: &KafkaConfig,
    timeout: Duration,
    open_wait: Duration,
) -> Result<(BTreeMap<String, WatermarkState>, Vec<PartitionEnds>), LoadError> {
    let mut states = BTreeMap::new();
    let ends = scan_records(cfg, timeout, open_wait, |key, msg| {
        match msg.payload() {
            None => {
                states.remove(key);
            }
            Some(bytes) => {
                states.insert(key.to_owned(), WatermarkState::from_bytes(key, bytes)?);
            }
        }
        Ok(())
    })?;
    Ok((states, ends))
}

/// Every stream's state read while the producer initializes, with where each partition of
/// the watermark topic ended then. Initialization must come first for a load to be sure (it
/// ends an older instance's open transaction); this read is only kept if
/// [`EarlyLoad::confirm`], after it, finds nothing written since.
pub struct EarlyLoad {
    states: BTreeMap<String, WatermarkState>,
    ends: Vec<PartitionEnds>,
}

impl EarlyLoad {
    /// Reads the watermark topic now. Fails at once, rather than wait, if a transaction there
    /// is open (an older instance's, which initialization will end): the load after
    /// initialization does the waiting.
    pub async fn read(cfg: &KafkaConfig, timeout: Duration) -> Result<EarlyLoad, LoadError> {
        let cfg = cfg.clone();
        blocking(move || {
            let (states, ends) = load_states(&cfg, timeout, Duration::ZERO)?;
            Ok(EarlyLoad { states, ends })
        })
        .await
    }

    /// The states, if every partition of the watermark topic still ends where they were read
    /// to: no record and no transaction marker was written since, so a load now would read
    /// the same. `None` otherwise (load again).
    pub async fn confirm(self, cfg: &KafkaConfig) -> Result<Option<BTreeMap<String, WatermarkState>>, LoadError> {
        let cfg = cfg.clone();
        blocking(move || {
            let topic = cfg.watermark_topic.as_str();
            let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
            let reader = EndsReader::new(&cfg).map_err(kerr)?;
            let now = reader.topic(topic).map_err(kerr);
            super::close_in_background(reader);
            Ok(unchanged(&self.ends, &now?).then_some(self.states))
        })
        .await
    }
}

/// Whether `now` shows the same partitions, each written and committed up to where `read`
/// said, with no transaction open.
fn unchanged(read: &[PartitionEnds], now: &[PartitionEnds]) -> bool {
    let key = |e: &PartitionEnds| (e.partition, e.written);
    read.len() == now.len() && now.iter().all(|e| !e.unsettled()) && read.iter().map(key).eq(now.iter().map(key))
}

/// A stream's latest record in the watermark topic, as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// `None`: the stream was reset (a tombstone).
    pub state: Option<WatermarkState>,
    /// When it was committed (the record's timestamp).
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who committed it: the `tidemark.owner` header (a replica, or an operator's command).
    pub owner: Option<String>,
}

/// Every stream's latest watermark record with when and by whom it was committed (for
/// `tidemark streams list`), read like [`load`].
pub async fn load_stored(cfg: &KafkaConfig, timeout: Duration) -> Result<BTreeMap<String, Stored>, LoadError> {
    let cfg = cfg.clone();
    blocking(move || {
        let mut stored = BTreeMap::new();
        scan_records(&cfg, timeout, timeout, |key, msg| {
            use rdkafka::message::Headers;
            let state = msg.payload().map(|b| WatermarkState::from_bytes(key, b)).transpose()?;
            let owner = msg.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == super::HEADER_OWNER)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            let committed_at = msg.timestamp().to_millis().and_then(chrono::DateTime::from_timestamp_millis);
            stored.insert(key.to_owned(), Stored { state, committed_at, owner });
            Ok(())
        })?;
        Ok(stored)
    })
    .await
}

/// Reads the watermark topic to its committed end, handing each keyed record on; waits up to
/// `open_wait` for a transaction still open. Returns the ends it read to.
fn scan_records(
    cfg: &KafkaConfig,
    timeout: Duration,
    open_wait: Duration,
    each: impl FnMut(&str, &rdkafka::message::BorrowedMessage<'_>) -> Result<(), WatermarkError>,
) -> Result<Vec<PartitionEnds>, LoadError> {
    let topic = cfg.watermark_topic.as_str();
    let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let consumer = scan::committed_reader(cfg, &format!("{}-watermark-reader", cfg.transactional_id)).map_err(kerr)?;
    let reader = EndsReader::new(cfg).map_err(kerr)?;
    let result = read_records(&consumer, &reader, topic, timeout, open_wait, each);
    super::close_in_background((consumer, reader));
    result
}

fn read_records(
    consumer: &BaseConsumer<super::ReadToEnd>,
    reader: &EndsReader,
    topic: &str,
    timeout: Duration,
    open_wait: Duration,
    mut each: impl FnMut(&str, &rdkafka::message::BorrowedMessage<'_>) -> Result<(), WatermarkError>,
) -> Result<Vec<PartitionEnds>, LoadError> {
    let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let started = Instant::now();
    let deadline = started + timeout;
    let ends = reader.topic_when_led(topic, deadline).map_err(kerr)?;
    // A `read_committed` reader stops at the first transaction still open. Everything written
    // before this point must be settled first, or a watermark committed a moment ago (its
    // markers not yet written) would be missed and its window committed again.
    for e in ends.iter().filter(|e| e.unsettled()) {
        let committed = reader.committed_reaching(topic, e, deadline.min(started + open_wait)).map_err(kerr)?;
        if committed < e.written {
            return Err(LoadError::Unsettled {
                topic: topic.to_owned(),
                partition: e.partition,
                committed,
                written: e.written,
            });
        }
    }
    let partitions: Vec<i32> = ends.iter().filter(|e| e.written > e.low).map(|e| e.partition).collect();
    let scanned = scan::read_to_end(consumer, topic, &partitions, timeout.saturating_sub(started.elapsed()), |msg| {
        let Some(key) = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { return Ok(()) };
        each(&key, msg)
    });
    match scanned {
        Ok(()) => Ok(ends),
        Err(ScanError::Kafka(e)) => Err(kerr(e)),
        Err(ScanError::Timeout(_)) => Err(LoadError::Timeout(timeout)),
        Err(ScanError::Handler(e)) => Err(LoadError::Corrupt(e)),
    }
}
