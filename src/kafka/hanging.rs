//! Hanging transactions: finds partitions where an earlier transaction of this worker never
//! got its end marker, so the worker can settle them before it reads its watermarks.
//!
//! A broker that loses a partition's leadership while it completes a commit (a lone broker
//! shutting down) finishes the transaction without writing the marker to that partition; it
//! logs "Couldn't find leader endpoint ... likely deleted already". The worker was told the
//! commit succeeded, but `read_committed` readers stop in front of those records: the
//! watermark loader would resume from the window before and commit it twice. The records stay
//! undecided until this producer writes its next marker to that partition, which then decides
//! them with its own outcome.
//!
//! The worker settles them as committed. It ends transactions with an abort only after a
//! failure, and then leaves the abort to the next producer's initialization, which runs once
//! the broker is back; so a hanging span holds transactions whose commit was acknowledged,
//! which later commits may already have settled on their other partitions. Committing keeps
//! each of them whole; aborting could drop records whose watermark already landed.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::ends::EndsReader;
use crate::config::KafkaConfig;

/// Every partition of `topics` with a transaction still open. Call it after the transactional
/// producer is initialized: no transaction of this worker is legitimately open then, so what is
/// open is hanging or another producer's (which the settle record does not touch).
pub async fn find(cfg: &KafkaConfig, topics: Vec<String>) -> Result<Vec<(String, i32)>, KafkaError> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let reader = EndsReader::new(&cfg)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut open = Vec::new();
        let mut failed = None;
        'topics: for topic in topics {
            match reader.topic_when_led(&topic, deadline) {
                Ok(ends) => open.extend(ends.iter().filter(|e| e.unsettled()).map(|e| (topic.clone(), e.partition))),
                Err(e) => {
                    failed = Some(e);
                    break 'topics;
                }
            }
        }
        super::close_in_background(reader);
        failed.map_or(Ok(open), Err)
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}
