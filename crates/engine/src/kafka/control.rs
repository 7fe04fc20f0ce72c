//! Operators' stop/resume flags, one compacted record per stream in the control topic, and
//! the watcher that hands each running stream its flag as it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::scan::{self, ScanError};
use crate::kafka::config::KafkaConfig;
use crate::metrics::Metrics;

/// What an operator last said about a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamControl {
    pub stopped: bool,
    /// Who said it (the operator's user name) and when.
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The error that stopped a stream, published by its worker under `error:<stream>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFailure {
    pub error: String,
    pub window: String,
    pub at: DateTime<Utc>,
}

/// A credential whose daily quota a worker found used up, published under
/// `quota:<credential>` (the sources sharing it, comma-joined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaExhausted {
    pub until: DateTime<Utc>,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// The top-level fields a stream's vendor sent that its schema lacks, published by its worker
/// under `drift:<stream>` each time it meets a new one (at most 50 names, then `other`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDrift {
    pub fields: Vec<String>,
    pub at: DateTime<Utc>,
}

/// A stream's last `tidemark reconcile`, published by it under `reconcile:<stream>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    pub at: DateTime<Utc>,
    /// The range checked: windows starting in `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub windows: u64,
    /// Windows that differed in any way (vendor total changed, missing from Kafka, unchecked).
    pub differing: u64,
    pub vendor_changed: u64,
    pub missing_from_kafka: u64,
    /// Records the vendor counts now beyond its counts at commit, summed over the windows.
    pub late_records: u64,
}

/// A writer's last `tidemark reconcile --writer`, published under `reconcile-writer:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterReconciled {
    pub at: DateTime<Utc>,
    /// The range checked: records whose own time is in `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub records: u64,
    /// Missing from the target or different there, and not dead-lettered.
    pub differing: u64,
    pub dead_lettered: u64,
}

/// Key prefix of the workers' failure records.
const ERROR_PREFIX: &str = "error:";
/// Key prefix of the workers' used-up quota records.
const QUOTA_PREFIX: &str = "quota:";
/// Key prefix of the workers' schema drift records.
const DRIFT_PREFIX: &str = "drift:";
/// Key prefix of reconcile's results.
const RECONCILE_PREFIX: &str = "reconcile:";
/// Key prefix of `reconcile --writer`'s results.
const WRITER_RECONCILE_PREFIX: &str = "reconcile-writer:";

/// Everything the control topic says: operators' flags, workers' failures by stream,
/// used-up daily quotas by credential, and schema drift by stream.
#[derive(Debug, Default)]
pub struct Controls {
    pub flags: BTreeMap<String, StreamControl>,
    pub failures: BTreeMap<String, StreamFailure>,
    pub quotas: BTreeMap<String, QuotaExhausted>,
    pub drift: BTreeMap<String, SchemaDrift>,
    pub reconciled: BTreeMap<String, Reconciled>,
    pub writers_reconciled: BTreeMap<String, WriterReconciled>,
}

impl Controls {
    /// The used-up daily quota of `source`'s credential, if it is used up at `now`.
    pub fn exhausted_quota(&self, source: &str, now: DateTime<Utc>) -> Option<&QuotaExhausted> {
        self.quotas
            .iter()
            .find(|(credential, q)| q.until > now && credential.split(',').any(|s| s == source))
            .map(|(_, q)| q)
    }
}

/// Why the control topic could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control topic {topic}: {reason}")]
    Kafka { topic: String, reason: String },
    #[error("control topic {topic}: record for {key:?} is not a stream control record: {reason}")]
    Corrupt { topic: String, key: String, reason: String },
}

/// Every stream's latest control record (read to the end, `read_committed`).
pub async fn load(cfg: &KafkaConfig) -> Result<Controls, ControlError> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || load_blocking(&cfg))
        .await
        .map_err(|e| ControlError::Kafka { topic: String::new(), reason: e.to_string() })?
}

fn load_blocking(cfg: &KafkaConfig) -> Result<Controls, ControlError> {
    let topic = cfg.control_topic.as_str();
    let kerr = |e: rdkafka::error::KafkaError| ControlError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let consumer = scan::committed_reader(cfg, &format!("{}-control-reader", cfg.transactional_id)).map_err(kerr)?;
    // A topic created a moment ago may have no leader yet: wait for one, as the watermark
    // loader does.
    let ends = super::ends::EndsReader::new(cfg)
        .and_then(|r| r.topic_when_led(topic, std::time::Instant::now() + Duration::from_secs(60)))
        .map_err(kerr)?;
    let partitions: Vec<i32> = ends.iter().filter(|e| e.written > e.low).map(|e| e.partition).collect();
    let mut out = Controls::default();
    let scanned = scan::read_to_end(&consumer, topic, &partitions, Duration::from_secs(60), |m| {
        apply(topic, &mut out, m.key(), m.payload())
    });
    super::close_in_background(consumer);
    match scanned {
        Ok(()) => Ok(out),
        Err(ScanError::Handler(e)) => Err(e),
        Err(ScanError::Kafka(e)) => Err(kerr(e)),
        Err(ScanError::Timeout(t)) => {
            Err(ControlError::Kafka { topic: topic.to_owned(), reason: format!("not read to its end in {t:?}") })
        }
    }
}

/// Keeps `name`'s latest record in `map` (a tombstone forgets it).
fn keep<T: serde::de::DeserializeOwned>(
    map: &mut BTreeMap<String, T>,
    name: &str,
    value: Option<&[u8]>,
) -> Result<(), serde_json::Error> {
    match value {
        None => {
            map.remove(name);
        }
        Some(bytes) => {
            map.insert(name.to_owned(), serde_json::from_slice(bytes)?);
        }
    }
    Ok(())
}

/// Folds one control record into `into` (a tombstone forgets it).
fn apply(topic: &str, into: &mut Controls, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), ControlError> {
    let Some(key) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else { return Ok(()) };
    let corrupt = |e: serde_json::Error| ControlError::Corrupt {
        topic: topic.to_owned(),
        key: key.clone(),
        reason: e.to_string(),
    };
    if let Some(credential) = key.strip_prefix(QUOTA_PREFIX) {
        return keep(&mut into.quotas, credential, value).map_err(corrupt);
    }
    if let Some(stream) = key.strip_prefix(RECONCILE_PREFIX) {
        return keep(&mut into.reconciled, stream, value).map_err(corrupt);
    }
    if let Some(writer) = key.strip_prefix(WRITER_RECONCILE_PREFIX) {
        return keep(&mut into.writers_reconciled, writer, value).map_err(corrupt);
    }
    if let Some(stream) = key.strip_prefix(DRIFT_PREFIX) {
        return keep(&mut into.drift, stream, value).map_err(corrupt);
    }
    match (key.strip_prefix(ERROR_PREFIX), value) {
        (Some(stream), None) => {
            into.failures.remove(stream);
        }
        (Some(stream), Some(bytes)) => {
            into.failures.insert(stream.to_owned(), serde_json::from_slice(bytes).map_err(corrupt)?);
        }
        (None, None) => {
            into.flags.remove(&key);
        }
        (None, Some(bytes)) => {
            into.flags.insert(key.clone(), serde_json::from_slice(bytes).map_err(corrupt)?);
        }
    }
    Ok(())
}

/// Publishes `stream`'s last reconcile, for `streams list` and the workers' metrics.
pub async fn write_reconciled(cfg: &KafkaConfig, stream: &str, r: &Reconciled) -> Result<(), ControlError> {
    send(cfg, &format!("{RECONCILE_PREFIX}{stream}"), &serde_json::to_vec(r).expect("reconcile records serialize"))
        .await
}

/// Publishes `writer`'s last reconcile, for the writer's metrics.
pub async fn write_writer_reconciled(
    cfg: &KafkaConfig,
    writer: &str,
    r: &WriterReconciled,
) -> Result<(), ControlError> {
    let body = serde_json::to_vec(r).expect("reconcile records serialize");
    send(cfg, &format!("{WRITER_RECONCILE_PREFIX}{writer}"), &body).await
}

/// Publishes the error that stopped `stream`, for `tidemark streams list`.
pub async fn write_failure(cfg: &KafkaConfig, stream: &str, failure: &StreamFailure) -> Result<(), ControlError> {
    send(cfg, &format!("{ERROR_PREFIX}{stream}"), &serde_json::to_vec(failure).expect("failures serialize")).await
}

/// Publishes the error that stopped a stream to the control topic of the Kafka it holds.
pub struct ControlLog(pub KafkaConfig);

impl crate::domain::FailureLog for ControlLog {
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        window: &'a str,
        error: &'a str,
    ) -> crate::domain::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let failure = StreamFailure { error: error.to_owned(), window: window.to_owned(), at: Utc::now() };
            write_failure(&self.0, stream, &failure).await.map_err(|e| e.to_string())
        })
    }

    fn publish_quota<'a>(
        &'a self,
        credential: &'a str,
        until: DateTime<Utc>,
        error: &'a str,
    ) -> crate::domain::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let record = QuotaExhausted { until, error: error.to_owned(), at: Utc::now() };
            let body = serde_json::to_vec(&record).expect("quota records serialize");
            send(&self.0, &format!("{QUOTA_PREFIX}{credential}"), &body).await.map_err(|e| e.to_string())
        })
    }

    fn publish_drift<'a>(
        &'a self,
        stream: &'a str,
        fields: &'a [String],
    ) -> crate::domain::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let record = SchemaDrift { fields: fields.to_vec(), at: Utc::now() };
            let body = serde_json::to_vec(&record).expect("drift records serialize");
            send(&self.0, &format!("{DRIFT_PREFIX}{stream}"), &body).await.map_err(|e| e.to_string())
        })
    }
}

/// Writes `stream`'s control record and waits until Kafka has it.
pub async fn write(cfg: &KafkaConfig, stream: &str, control: &StreamControl) -> Result<(), ControlError> {
    send(cfg, stream, &serde_json::to_vec(control).expect("control records serialize")).await
}

async fn send(cfg: &KafkaConfig, key: &str, body: &[u8]) -> Result<(), ControlError> {
    let topic = cfg.control_topic.as_str();
    let kerr = |reason: String| ControlError::Kafka { topic: topic.to_owned(), reason };
    let producer: FutureProducer<super::Plain> = super::client_config(cfg)
        .set("enable.idempotence", "true")
        .create_with_context(super::Plain)
        .map_err(|e| kerr(e.to_string()))?;
    producer
        .send(FutureRecord::to(topic).key(key).payload(body), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| kerr(e.to_string()))?;
    Ok(())
}

/// Each known stream's stopped flag, kept current by a thread tailing the control topic.
pub struct Board {
    flags: BTreeMap<String, watch::Sender<bool>>,
    stop: Arc<AtomicBool>,
}

impl Board {
    /// Starts tailing the control topic for `streams`. The first read reaches the topic's
    /// end before this returns, so a stream stopped earlier is stopped from its first step.
    /// Each known stream's and writer's last reconcile goes to `metrics` as it is published.
    pub async fn watch(
        cfg: &KafkaConfig,
        streams: &[String],
        writers: &[String],
        metrics: Arc<Metrics>,
    ) -> Result<Board, ControlError> {
        let initial = load(cfg).await?;
        for (stream, r) in initial.reconciled.iter().filter(|(s, _)| streams.contains(s)) {
            observe(&metrics, stream, r);
        }
        for (writer, r) in initial.writers_reconciled.iter().filter(|(w, _)| writers.contains(w)) {
            observe_writer(&metrics, writer, r);
        }
        let writers: BTreeSet<String> = writers.iter().cloned().collect();
        let flags: BTreeMap<String, watch::Sender<bool>> = streams
            .iter()
            .map(|s| (s.clone(), watch::Sender::new(initial.flags.get(s).is_some_and(|c| c.stopped))))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let board = Board { flags, stop: stop.clone() };
        let senders: BTreeMap<String, watch::Sender<bool>> =
            board.flags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // Made here, so that a control topic this process cannot follow fails the start
        // instead of leaving stop flags unheard.
        let consumer = {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || follower(&cfg))
                .await
                .map_err(|e| ControlError::Kafka { topic: String::new(), reason: e.to_string() })??
        };
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("tidemark-control".into())
            .spawn(move || tail(&cfg, consumer, &senders, &writers, &metrics, &stop))
            .expect("spawn the control watcher");
        Ok(board)
    }

    /// The flag of `stream` (true: stopped by an operator).
    pub fn flag(&self, stream: &str) -> Option<watch::Receiver<bool>> {
        self.flags.get(stream).map(watch::Sender::subscribe)
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Sets `stream`'s reconcile series (labels only for the worker's own streams: bounded).
fn observe(metrics: &Metrics, stream: &str, r: &Reconciled) {
    metrics.reconcile.observe(stream, r.windows, r.differing, r.late_records, r.at.timestamp());
}

/// Sets `writer`'s reconcile series (labels only for the process's own writers: bounded).
fn observe_writer(metrics: &Metrics, writer: &str, r: &WriterReconciled) {
    metrics.reconcile.observe_writer(writer, r.records, r.differing, r.dead_lettered, r.at.timestamp());
}

/// A consumer of every partition of the control topic, from its beginning.
fn follower(cfg: &KafkaConfig) -> Result<BaseConsumer<super::Plain>, ControlError> {
    let topic = cfg.control_topic.as_str();
    let kerr = |e: rdkafka::error::KafkaError| ControlError::Kafka { topic: topic.to_owned(), reason: e.to_string() };
    let consumer: BaseConsumer<super::Plain> = super::client_config(cfg)
        .set("group.id", format!("{}-control-watcher", cfg.transactional_id))
        .set("enable.auto.commit", "false")
        .create_with_context(super::Plain)
        .map_err(kerr)?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(kerr)?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).map_err(kerr)?;
        }
    }
    consumer.assign(&tpl).map_err(kerr)?;
    Ok(consumer)
}

/// Follows the control topic until `stop`, setting the flags it names.
fn tail(
    cfg: &KafkaConfig,
    consumer: BaseConsumer<super::Plain>,
    flags: &BTreeMap<String, watch::Sender<bool>>,
    writers: &BTreeSet<String>,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let topic = cfg.control_topic.as_str();
    let mut seen = Controls::default();
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) if super::outage::is_connection_failure(&e) => super::outage::client_error(&e, topic),
            Some(Err(e)) => tracing::warn!(topic, error = %e, "control topic"),
            Some(Ok(m)) => match apply(topic, &mut seen, m.key(), m.payload()) {
                Ok(()) => {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                    if let Some(stream) = key.strip_prefix(RECONCILE_PREFIX).filter(|s| flags.contains_key(*s))
                        && let Some(r) = seen.reconciled.get(stream)
                    {
                        observe(metrics, stream, r);
                    }
                    if let Some(writer) = key.strip_prefix(WRITER_RECONCILE_PREFIX).filter(|w| writers.contains(*w))
                        && let Some(r) = seen.writers_reconciled.get(writer)
                    {
                        observe_writer(metrics, writer, r);
                    }
                    if let Some(flag) = flags.get(&key) {
                        let stopped = seen.flags.get(&key).is_some_and(|c| c.stopped);
                        flag.send_if_modified(|v| std::mem::replace(v, stopped) != stopped);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a control record"),
            },
        }
    }
}
