//! Reads the compacted watermark topic to its end (`read_committed`) to rebuild every stream's position.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::ends::EndsReader;
use crate::config::KafkaConfig;
use crate::engine::WatermarkState;
use crate::engine::watermark::WatermarkError;

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
    let topic = cfg.watermark_topic.as_str();
    let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let consumer: BaseConsumer<super::ReadToEnd> = super::client_config(cfg)
        .set("group.id", format!("{}-watermark-reader", cfg.transactional_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(super::ReadToEnd)
        .map_err(kerr)?;
    let reader = EndsReader::new(cfg).map_err(kerr)?;
    let result = read_states(&consumer, &reader, topic, timeout);
    super::close_in_background((consumer, reader));
    result
}

fn read_states(
    consumer: &BaseConsumer<super::ReadToEnd>,
    reader: &EndsReader,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, WatermarkState>, LoadError> {
    let kerr = |e: KafkaError| LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let deadline = Instant::now() + timeout;
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
    let mut pending: HashSet<i32> = HashSet::new();
    let mut tpl = TopicPartitionList::new();
    for e in &ends {
        if e.written > e.low {
            pending.insert(e.partition);
            tpl.add_partition_offset(topic, e.partition, Offset::Beginning).map_err(kerr)?;
        }
    }
    let mut states = BTreeMap::new();
    if pending.is_empty() {
        return Ok(states);
    }
    consumer.assign(&tpl).map_err(kerr)?;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(LoadError::Timeout(timeout));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            // A global end-of-partition names no partition: the per-partition ones count.
            Some(Err(e)) if crate::kafka::is_partition_eof(&e) => {}
            Some(Err(e)) => return Err(kerr(e)),
            Some(Ok(msg)) => {
                let Some(key) = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
                match msg.payload() {
                    None => {
                        states.remove(&key);
                    }
                    Some(bytes) => {
                        let state = WatermarkState::from_bytes(&key, bytes)?;
                        states.insert(key, state);
                    }
                }
            }
        }
    }
    Ok(states)
}
