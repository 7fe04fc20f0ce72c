//! Topic bootstrap: data topics and the compacted watermark and control topics exist before
//! any stream runs.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::reach::BrokerCause;
use crate::kafka::config::KafkaConfig;

/// Why topics could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The brokers did not answer; `cause` says what librdkafka saw.
    #[error("kafka at {bootstrap} is not reachable: {cause}")]
    Unreachable { bootstrap: String, cause: BrokerCause },
    #[error("cannot create topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    /// The broker answered but refused (an ACL, say): waiting would not help.
    #[error("cannot read the configuration of topic {topic}: {reason}")]
    Describe { topic: String, reason: String },
    #[error("watermark topic {topic} has cleanup.policy={policy}; it must be compacted or watermarks expire")]
    NotCompacted { topic: String, policy: String },
}

/// A data topic to prepare; snapshot streams write to compacted topics (latest per key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataTopic {
    pub name: String,
    pub compacted: bool,
}

/// Creates the data topics and the watermark topic where missing, and checks that an
/// existing watermark topic is compacted.
pub async fn ensure(cfg: &KafkaConfig, data_topics: &[DataTopic]) -> Result<(), TopicError> {
    // The admin client's errors only say "timed out": a probe first, for the cause.
    super::reach::probe(cfg, (cfg.startup_timeout / 3).min(Duration::from_secs(10)))
        .await
        .map_err(|cause| TopicError::Unreachable { bootstrap: cfg.bootstrap.clone(), cause })?;
    let unreachable = |e: KafkaError| TopicError::Unreachable {
        bootstrap: cfg.bootstrap.clone(),
        cause: BrokerCause::classify(&e.to_string()),
    };
    let admin: AdminClient<super::Plain> =
        super::client_config(cfg).create_with_context(super::Plain).map_err(unreachable)?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(10)));
    let repl = || TopicReplication::Fixed(cfg.replication_factor);
    // The dead-letter topic comes as a data topic; the others are added below. A request
    // naming a topic twice makes librdkafka answer a null result, which rdkafka dereferences.
    let theirs = [&cfg.watermark_topic, &cfg.ledger_topic, &cfg.control_topic];
    let mut new: Vec<NewTopic<'_>> = data_topics
        .iter()
        .filter(|t| !theirs.contains(&&t.name))
        .map(|t| {
            let topic = NewTopic::new(&t.name, cfg.topic_partitions, repl());
            if t.compacted { topic.set("cleanup.policy", "compact") } else { topic }
        })
        .collect();
    new.push(
        NewTopic::new(&cfg.watermark_topic, cfg.watermark_partitions, repl())
            .set("cleanup.policy", "compact")
            .set("min.compaction.lag.ms", "0"),
    );
    // Keyed by stream, kept by time (not compacted): every window's entry is the record.
    new.push(NewTopic::new(&cfg.ledger_topic, cfg.watermark_partitions, repl()));
    // One partition: the watcher follows it in order.
    new.push(NewTopic::new(&cfg.control_topic, 1, repl()).set("cleanup.policy", "compact"));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(unreachable)?;
    let mut created_compacted = false;
    for r in results {
        match r {
            Ok(topic) => {
                created_compacted |= topic == cfg.watermark_topic;
                tracing::info!(topic = %topic, "created topic");
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, reason: code.to_string() }),
        }
    }
    // Created just now with the policy set: a topic's configuration takes the broker a
    // moment to describe, which would only delay a first start.
    if created_compacted {
        return Ok(());
    }
    // A topic created a moment ago (by another process) may not report its configs yet (an
    // empty policy): ask again briefly before judging.
    let mut policy = String::new();
    for _ in 0..50 {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(&cfg.watermark_topic)], &opts)
            .await
            .map_err(unreachable)?;
        for res in described {
            let res = res.map_err(|code| TopicError::Describe {
                topic: cfg.watermark_topic.clone(),
                reason: code.to_string(),
            })?;
            policy = res.get("cleanup.policy").and_then(|e| e.value.clone()).unwrap_or_default();
        }
        if !policy.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !policy.contains("compact") {
        return Err(TopicError::NotCompacted { topic: cfg.watermark_topic.clone(), policy });
    }
    Ok(())
}

/// Makes `topic` exist with at least `partitions` partitions (the cluster's coordination
/// topic: one partition per stream slot), adding partitions when streams were added.
pub async fn ensure_partitions(cfg: &KafkaConfig, topic: &str, partitions: i32) -> Result<(), TopicError> {
    let failed = |e: KafkaError| TopicError::Create { topic: topic.to_owned(), reason: e.to_string() };
    let admin: AdminClient<super::Plain> =
        super::client_config(cfg).create_with_context(super::Plain).map_err(failed)?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(10)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(cfg.replication_factor));
    match admin.create_topics([&new], &opts).await.map_err(failed)?.pop() {
        Some(Ok(_)) => {
            tracing::info!(topic, partitions, "created topic");
            return Ok(());
        }
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
        Some(Err((topic, code))) => return Err(TopicError::Create { topic, reason: code.to_string() }),
    }
    let md = tokio::task::block_in_place(|| admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10)))
        .map_err(failed)?;
    let existing = md.topics().first().map_or(0, |m| m.partitions().len() as i32);
    if existing < partitions {
        let grow = rdkafka::admin::NewPartitions::new(topic, partitions as usize);
        match admin.create_partitions([&grow], &opts).await.map_err(failed)?.pop() {
            Some(Ok(_)) | None => tracing::info!(topic, from = existing, to = partitions, "added partitions"),
            Some(Err((topic, code))) => return Err(TopicError::Create { topic, reason: code.to_string() }),
        }
    }
    Ok(())
}
