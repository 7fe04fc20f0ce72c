//! Reads one topic's partitions from their beginning to their end with `read_committed`,
//! handing each message on: the watermark loader and `inspect` share it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

use super::ReadToEnd;
use crate::kafka::config::KafkaConfig;

/// Why a topic was not read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ScanError<E> {
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("not at the end of every partition after {0:?}")]
    Timeout(Duration),
    /// What the message handler refused.
    #[error(transparent)]
    Handler(E),
}

/// A `read_committed` consumer in `group` that reports each partition's end.
pub fn committed_reader(cfg: &KafkaConfig, group: &str) -> Result<BaseConsumer<ReadToEnd>, KafkaError> {
    super::client_config(cfg)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(ReadToEnd)
}

/// Reads `partitions` of `topic` from the beginning until each reports its end, calling
/// `each` for every message, or fails once `timeout` has passed.
pub fn read_to_end<E>(
    consumer: &BaseConsumer<ReadToEnd>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<(), E>,
) -> Result<(), ScanError<E>> {
    let deadline = Instant::now() + timeout;
    let mut pending: HashSet<i32> = partitions.iter().copied().collect();
    if pending.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(ScanError::Timeout(timeout));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            // A global end-of-partition names no partition: the per-partition ones count.
            Some(Err(e)) if super::is_partition_eof(&e) => {}
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(msg)) => each(&msg).map_err(ScanError::Handler)?,
        }
    }
    Ok(())
}
