//! Where each partition ends, as written and as committed: a committed end (last stable
//! offset) below the written end means a transaction there is still open.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::kafka::config::KafkaConfig;

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnds {
    pub partition: i32,
    /// The first offset still in the log.
    pub low: i64,
    /// The offset after the last record written, committed or not (the high watermark).
    pub written: i64,
    /// The offset before which every transaction has ended (the last stable offset); what a
    /// `read_committed` reader can reach.
    pub committed: i64,
}

impl PartitionEnds {
    /// True when a transaction that wrote here has not ended (yet, or ever: see `kafka::hanging`).
    pub fn unsettled(&self) -> bool {
        self.committed < self.written
    }
}

/// Asks the brokers for partition ends. The isolation level decides which end a broker
/// reports, so it holds one client of each.
pub struct EndsReader {
    committed: BaseConsumer<super::ReadToEnd>,
    written: BaseConsumer<super::ReadToEnd>,
}

impl EndsReader {
    pub fn new(cfg: &KafkaConfig) -> Result<EndsReader, KafkaError> {
        let client = |isolation: &str| {
            super::client_config(cfg)
                .set("group.id", format!("{}-ends", cfg.transactional_id))
                .set("enable.auto.commit", "false")
                .set("isolation.level", isolation)
                .create_with_context(super::ReadToEnd)
        };
        Ok(EndsReader { committed: client("read_committed")?, written: client("read_uncommitted")? })
    }

    /// Every partition of `topic`; fails if the topic is unknown or a partition has no leader.
    pub fn topic(&self, topic: &str) -> Result<Vec<PartitionEnds>, KafkaError> {
        let md = self.written.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        partitions.into_iter().map(|p| self.partition(topic, p)).collect()
    }

    /// Like [`EndsReader::topic`], retrying until `deadline`: a topic created a moment ago may
    /// not have leaders yet.
    pub fn topic_when_led(&self, topic: &str, deadline: Instant) -> Result<Vec<PartitionEnds>, KafkaError> {
        loop {
            match self.topic(topic) {
                Ok(r) => return Ok(r),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(topic, error = %e, "topic not readable yet; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks until the committed end of `ends.partition` reaches `ends.written` (every
    /// transaction that had written there by then has ended) or `until` passes, at least once.
    /// Returns the last committed end seen.
    pub fn committed_reaching(&self, topic: &str, ends: &PartitionEnds, until: Instant) -> Result<i64, KafkaError> {
        loop {
            let committed = self.partition(topic, ends.partition)?.committed;
            if committed >= ends.written || Instant::now() >= until {
                return Ok(committed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Result<PartitionEnds, KafkaError> {
        let (low, written) = self.written.fetch_watermarks(topic, partition, QUERY_TIMEOUT)?;
        let (_, committed) = self.committed.fetch_watermarks(topic, partition, QUERY_TIMEOUT)?;
        Ok(PartitionEnds { partition, low, written, committed })
    }
}
