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
use crate::kafka::config::KafkaConfig;

/// How long a partition's committed end must stay behind what was written before it counts
/// as hanging: another producer's transaction (a shared dead-letter topic) ends well within it.
pub const GRACE: Duration = Duration::from_secs(2);

/// Every partition of `topics` whose committed end stayed behind its written end for
/// [`GRACE`]. Call it after the transactional producer is initialized: no transaction of this
/// worker is legitimately open then, so what stays open is hanging (or another producer's very
/// long transaction, which the settle record does not touch).
pub async fn find(cfg: &KafkaConfig, topics: Vec<String>) -> Result<Vec<(String, i32)>, KafkaError> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let reader = EndsReader::new(&cfg)?;
        let result = stuck_partitions(&reader, topics);
        super::close_in_background(reader);
        result
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

fn stuck_partitions(reader: &EndsReader, topics: Vec<String>) -> Result<Vec<(String, i32)>, KafkaError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = Vec::new();
    for topic in topics {
        for e in reader.topic_when_led(&topic, deadline)?.into_iter().filter(|e| e.unsettled()) {
            open.push((topic.clone(), e));
        }
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let until = Instant::now() + GRACE;
    let mut stuck = Vec::new();
    for (topic, before) in open {
        if reader.committed_reaching(&topic, &before, until)? < before.written {
            stuck.push((topic, before.partition));
        }
    }
    Ok(stuck)
}
