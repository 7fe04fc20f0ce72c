//! Reads the compacted watermark topic to its end (`read_committed`) to rebuild every stream's position.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;

use super::ends::EndsReader;
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
    tokio::task::spawn_blocking(move || load_blocking(&cfg, timeout))
        .await
        .map_err(|e| LoadError::Kafka { topic: String::new(), reason: e.to_string() })?
}

fn load_blocking(cfg: &KafkaConfig, timeout: Duration) -> Result<BTreeMap<String, WatermarkState>, LoadError> {
    let mut states = BTreeMap::new();
    scan_records(cfg, timeout, |key, msg| {
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
    Ok(states)
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
    tokio::task::spawn_blocking(move || {
        let mut stored = BTreeMap::new();
        scan_records(&cfg, timeout, |key, msg| {
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
    .map_err(|e| LoadError::Kafka { topic: String::new(), reason: e.to_string() })?
}

/// Reads the watermark topic to its committed end, handing each keyed record on.
fn scan_records(
    cfg: &KafkaConfig,
    timeout: Duration,
    each: impl FnMut(&str, &rdkafka::message::BorrowedMessage<'_>) -> Result<(), WatermarkError>,
) -> Result<(), LoadError> {
    let topic = cfg.watermark_topic.as_str();
    let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let consumer = scan::committed_reader(cfg, &format!("{}-watermark-reader", cfg.transactional_id)).map_err(kerr)?;
    let reader = EndsReader::new(cfg).map_err(kerr)?;
    let result = read_records(&consumer, &reader, topic, timeout, each);
    super::close_in_background((consumer, reader));
    result
}

fn read_records(
    consumer: &BaseConsumer<super::ReadToEnd>,
    reader: &EndsReader,
    topic: &str,
    timeout: Duration,
    mut each: impl FnMut(&str, &rdkafka::message::BorrowedMessage<'_>) -> Result<(), WatermarkError>,
) -> Result<(), LoadError> {
    let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let started = Instant::now();
    let deadline = started + timeout;
    let ends = reader.topic_when_led(topic, deadline).map_err(kerr)?;
    // A `read_committed` reader stops at the first transaction still open. Everything written
    // before this point must be settled first, or a watermark committed a moment ago (its
    // markers not yet written) would be missed and its window committed again.
    for e in ends.iter().filter(|e| e.unsettled()) {
        let committed = reader.committed_reaching(topic, e, deadline).map_err(kerr)?;
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
        Ok(()) => Ok(()),
        Err(ScanError::Kafka(e)) => Err(kerr(e)),
        Err(ScanError::Timeout(_)) => Err(LoadError::Timeout(timeout)),
        Err(ScanError::Handler(e)) => Err(LoadError::Corrupt(e)),
    }
}
