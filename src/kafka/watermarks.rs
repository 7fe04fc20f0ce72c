//! Reads the compacted watermark topic to its end (`read_committed`) to rebuild every stream's position.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

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
    let deadline = Instant::now() + timeout;
    // A topic created a moment ago may not have a leader yet: retry until the deadline.
    let ranges = loop {
        match partition_ranges(&consumer, topic) {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(topic, error = %e, "watermark topic not readable yet; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(kerr(e)),
        }
    };
    let mut pending: HashSet<i32> = HashSet::new();
    let mut tpl = TopicPartitionList::new();
    for (p, low, high) in ranges {
        if high > low {
            pending.insert(p);
            tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(kerr)?;
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

/// Every partition of `topic` with its low and high offsets; fails if any has no leader.
fn partition_ranges(
    consumer: &BaseConsumer<super::ReadToEnd>,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    partitions
        .into_iter()
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map(|(low, high)| (p, low, high)))
        .collect()
}
