//! The writer: a consumer group on a stream's topic delivering each record to a target API
//! exactly once. A batch's offsets are committed only when every record in it is saved, found
//! already there, or dead-lettered; after a crash the batch is read again and what the target
//! already holds is recognised by its key, not saved twice.

pub mod config;
pub mod reconcile;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::avro::framed::{FramedReader, ReadError};
use crate::config::{Config, ConfigError, WriterConfig};
use crate::domain::{Document, RowOutcome, SourceError, Target, backoff};
use crate::kafka::sink::HEADER_CONTROL;
use crate::kafka::{Plain, ReadToEnd};
use crate::metrics::{Metrics, WriterHandles};
use crate::worker::gate::{Answer, CredentialGate};

/// How many keys one existence query asks about (its filter stays a sensible length).
const QUERY_CHUNK: usize = 100;
/// Rounds a document may stay neither saved nor rejected before the writer stops and says so.
const UNANSWERED_ROUNDS: u32 = 10;
/// With `--until-idle`, how long nothing new must arrive before the writer checks it is at
/// the end of its partitions.
const IDLE_AFTER: Duration = Duration::from_secs(3);

/// The writer's consumer: with `--until-idle` it reads to each partition's end, which
/// librdkafka also reports through the error callback; that is no error to log.
type WriterConsumer = StreamConsumer<ReadToEnd>;

/// Why a writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka: {0}")]
    Kafka(String),
    /// The target refused in a way retrying cannot fix (credentials, a form it does not know).
    #[error("writer {writer}: {error}")]
    Target { writer: String, error: SourceError },
}

/// What a writer did during this run.
#[derive(Debug, Clone, Default)]
pub struct WriterReport {
    pub writer: String,
    pub topic: String,
    pub batches: u64,
    /// Outcome → records: saved, existing, rejected (by the target), unreadable (the value),
    /// unmappable (no document can be made of it), superseded (by a newer one in its batch),
    /// skipped (tombstones, control records).
    pub records: BTreeMap<&'static str, u64>,
}

/// One consumed record on its way to the target.
struct Item {
    partition: i32,
    offset: i64,
    record: Value,
    doc: Document,
}

/// A dead letter: what could not be delivered, and why.
struct Letter {
    key: String,
    body: Value,
}

/// Runs one writer until shutdown (or, with `until_idle`, until its group has read everything).
pub async fn run(
    config: &Config,
    w: &WriterConfig,
    until_idle: bool,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<WriterReport, WriterError> {
    let Parts { target, topic, codec, registry, gate } = Parts::of(config, w)?;
    let mut values = FramedReader::new(&codec, registry.as_ref());
    crate::kafka::topics::ensure(
        &config.kafka,
        &[crate::kafka::topics::DataTopic { name: w.dead_letter_topic.clone(), compacted: false }],
    )
    .await
    .map_err(|e| WriterError::Kafka(e.to_string()))?;
    let consumer: WriterConsumer = crate::kafka::client_config(&config.kafka)
        .set("group.id", &w.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", if until_idle { "true" } else { "false" })
        // A writer that died holds its partitions until its session times out: 10 s, not
        // Kafka's 45 s, so a restarted or surviving writer takes over soon.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000")
        .create_with_context(ReadToEnd)
        .map_err(|e| WriterError::Kafka(format!("consumer: {e}")))?;
    consumer.subscribe(&[&topic]).map_err(|e| WriterError::Kafka(format!("subscribe to {topic}: {e}")))?;
    let producer: FutureProducer<Plain> = crate::kafka::client_config(&config.kafka)
        .set("enable.idempotence", "true")
        .create_with_context(Plain)
        .map_err(|e| WriterError::Kafka(format!("dead-letter producer: {e}")))?;
    info!(writer = %w.id, topic = %topic, group = %w.group, kind = %w.kind, "writer starting");
    let mut report = WriterReport { writer: w.id.clone(), topic: topic.clone(), ..Default::default() };
    // The outcome series exist from the start, so "settled nothing" is a 0, not no data.
    let m = metrics.writer.handles(w.id.as_str());
    metrics.set_ready(true);
    let writer = Writer {
        w,
        target: target.as_ref(),
        gate: &gate,
        shutdown: &shutdown,
        metrics: &m,
        at_eof: Default::default(),
    };
    loop {
        let Some(batch) = writer.next_batch(&consumer, until_idle).await? else { break };
        let started = Instant::now();
        writer.report_lag(&consumer, &topic);
        let mut failures = 0;
        let (items, mut letters, mut counts) = loop {
            match writer.prepare(&batch, &mut values).await {
                Ok(prepared) => break prepared,
                Err(why) => {
                    failures += 1;
                    let wait = backoff::delay(failures, Duration::from_secs(1), Duration::from_secs(60));
                    warn!(writer = %w.id, error = %why, retry_in = ?wait, "schema registry unavailable; reading the batch again");
                    m.registry_errors.inc();
                    if shutdown.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                        return Ok(report);
                    }
                }
            }
        };
        if !writer.deliver(items, &mut letters, &mut counts).await? {
            break;
        }
        writer.dead_letter(&producer, letters).await?;
        // A commit refused in a rebalance is not fatal: whoever reads the batch again finds
        // its bills already saved.
        if let Err(e) = tokio::task::block_in_place(|| commit(&consumer, &topic, &batch)) {
            warn!(writer = %w.id, error = %e, "offsets not committed; the batch will be read again");
        }
        for (outcome, n) in &counts {
            m.add_records(outcome, *n);
            *report.records.entry(outcome).or_default() += n;
        }
        m.batch_duration().observe(started.elapsed().as_secs_f64());
        writer.report_lag(&consumer, &topic);
        report.batches += 1;
        info!(writer = %w.id, records = batch.len(), saved = counts.get("saved").copied().unwrap_or(0),
            existing = counts.get("existing").copied().unwrap_or(0), rejected = counts.get("rejected").copied().unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64, "batch committed");
    }
    Ok(report)
}

/// What a writer is made of besides Kafka: its target, the topic it reads and how to read
/// the topic's values, and the gate its target calls go through.
pub(crate) struct Parts {
    pub target: Arc<dyn Target>,
    pub topic: String,
    pub codec: crate::avro::RecordCodec,
    pub registry: Option<crate::registry::Registry>,
    pub gate: CredentialGate,
}

impl Parts {
    pub fn of(config: &Config, w: &WriterConfig) -> Result<Parts, WriterError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::invalid(format!("writers.{}", w.id), format!("cannot build http client: {e}")))?;
        let target = crate::targets::build(&w.target(), http)?;
        let spec = &config.endpoints.find(target.input_kind()).expect("a target reads a built-in kind").spec;
        let topic = w.topic.clone().unwrap_or_else(|| spec.default_topic.to_owned());
        let codec = crate::avro::RecordCodec::from_avsc(spec.schema)
            .map_err(|e| ConfigError::invalid(format!("writers.{}", w.id), e.to_string()))?;
        let registry = config
            .schema_registry
            .as_ref()
            .map(crate::registry::Registry::new)
            .transpose()
            .map_err(|e| ConfigError::invalid("schema_registry", e.to_string()))?;
        // Requests to the target go one at a time through a gate like a source's: its rate
        // limit and any throttle pause.
        let rps = NonZeroU32::new(w.requests_per_second).expect("validated positive");
        let gate = CredentialGate::new(w.id.clone(), rps, NonZeroU32::MIN);
        Ok(Parts { target, topic, codec, registry, gate })
    }
}

/// One target call through `gate`: its rate limit, throttle pauses and in-flight slot.
pub(crate) async fn gated<T>(
    gate: &CredentialGate,
    fut: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    let permit = gate.acquire().await;
    let res = fut.await;
    // The pause first: a request waiting for this slot must not slip out before it.
    match &res {
        Err(SourceError::Throttled { after, .. }) => {
            gate.throttled(permit.sent(), *after);
        }
        Err(SourceError::QuotaExhausted { after, .. }) => {
            gate.quota_exhausted(*after);
        }
        _ => {}
    }
    permit.done(match &res {
        Ok(_) | Err(SourceError::Fatal { .. } | SourceError::ClockSkew { .. }) => Answer::Healthy(Duration::ZERO),
        Err(_) => Answer::Overloaded,
    });
    res
}

/// A consumed record, owned (the batch outlives the consumer's borrow).
struct Consumed {
    partition: i32,
    offset: i64,
    key: String,
    value: Option<Vec<u8>>,
    control: bool,
}

impl Consumed {
    fn of(m: &BorrowedMessage<'_>) -> Consumed {
        let control = m.headers().is_some_and(|h| h.iter().any(|x| x.key == HEADER_CONTROL));
        Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            value: m.payload().map(<[u8]>::to_vec),
            control,
        }
    }
}

/// One writer's parts, borrowed for a run.
struct Writer<'a> {
    w: &'a WriterConfig,
    target: &'a dyn Target,
    gate: &'a CredentialGate,
    shutdown: &'a CancellationToken,
    metrics: &'a WriterHandles,
    /// Partitions read to their end (`enable.partition.eof`) since their last record.
    at_eof: std::sync::Mutex<std::collections::HashSet<i32>>,
}

impl Writer<'_> {
    /// Up to `batch_size` records, waiting at most `batch_linger` once the first arrived.
    /// `None` on shutdown, or (with `until_idle`) when the group has read everything.
    async fn next_batch(
        &self,
        consumer: &WriterConsumer,
        until_idle: bool,
    ) -> Result<Option<Vec<Consumed>>, WriterError> {
        let first = loop {
            tokio::select! {
                m = tokio::time::timeout(IDLE_AFTER, consumer.recv()) => match m {
                    Ok(m) => if let Some(c) = self.received(m) { break c },
                    Err(_) if until_idle && self.at_end(consumer)? => return Ok(None),
                    Err(_) => {}
                },
                _ = self.shutdown.cancelled() => return Ok(None),
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.w.batch_linger;
        while batch.len() < self.w.batch_size as usize {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(m) => batch.extend(self.received(m)),
                Err(_) => break,
            }
        }
        Ok(Some(batch))
    }

    /// A message, or the end of a partition noted, or an error logged.
    fn received(&self, m: Result<BorrowedMessage<'_>, KafkaError>) -> Option<Consumed> {
        let mut eof = self.at_eof.lock().expect("eof lock");
        match m {
            Ok(m) => {
                crate::kafka::outage::reachable();
                eof.remove(&m.partition());
                Some(Consumed::of(&m))
            }
            Err(KafkaError::PartitionEOF(p)) => {
                crate::kafka::outage::reachable();
                eof.insert(p);
                None
            }
            // The same end, without its partition: nothing to note, nothing to say.
            Err(e) if crate::kafka::is_partition_eof(&e) => None,
            Err(e) if crate::kafka::outage::is_connection_failure(&e) => {
                crate::kafka::outage::client_error(&e, &self.w.id);
                None
            }
            Err(e) => {
                warn!(writer = %self.w.id, error = %e, "consumer error");
                None
            }
        }
    }

    /// Sets the lag gauge (left as it was if the broker does not answer).
    fn report_lag(&self, consumer: &WriterConsumer, topic: &str) {
        if let Some(n) = tokio::task::block_in_place(|| lag(consumer, topic)) {
            self.metrics.lag().set(n);
        }
    }

    /// Whether every assigned partition has been read to its end.
    fn at_end(&self, consumer: &WriterConsumer) -> Result<bool, WriterError> {
        let assignment = consumer.assignment().map_err(|e| WriterError::Kafka(e.to_string()))?;
        let eof = self.at_eof.lock().expect("eof lock");
        Ok(assignment.count() > 0 && assignment.elements().iter().all(|e| eof.contains(&e.partition())))
    }

    /// Decodes and maps each record; what cannot be read or mapped is dead-lettered. Of two
    /// records with the same key in a batch, the later (newer) one is delivered.
    async fn prepare(
        &self,
        batch: &[Consumed],
        values: &mut FramedReader<'_>,
    ) -> Result<(Vec<Item>, Vec<Letter>, BTreeMap<&'static str, u64>), String> {
        let mut counts = BTreeMap::new();
        let mut letters = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for c in batch {
            let Some(value) = c.value.as_deref().filter(|_| !c.control) else {
                *counts.entry("skipped").or_default() += 1;
                continue;
            };
            let record = match values.decode(value).await.1 {
                Ok(r) => r,
                // The registry, not the record: read the batch again later, dead-letter nothing.
                Err(ReadError::Registry(why)) => return Err(why),
                Err(e) => {
                    *counts.entry("unreadable").or_default() += 1;
                    letters.push(self.letter(
                        (c.partition, c.offset),
                        &c.key,
                        "",
                        &format!("cannot read the value: {e}"),
                        Value::Null,
                        None,
                    ));
                    continue;
                }
            };
            let doc = match self.target.document(&record) {
                Ok(d) => d,
                Err(e) => {
                    *counts.entry("unmappable").or_default() += 1;
                    letters.push(self.letter((c.partition, c.offset), &c.key, "", &e, record, None));
                    continue;
                }
            };
            let item = Item { partition: c.partition, offset: c.offset, record, doc };
            match by_key.get(&item.doc.key) {
                Some(&i) => {
                    *counts.entry("superseded").or_default() += 1;
                    items[i] = item;
                }
                None => {
                    by_key.insert(item.doc.key.clone(), items.len());
                    items.push(item);
                }
            }
        }
        Ok((items, letters, counts))
    }

    /// Saves what the target does not hold yet, until every item is saved, existing or
    /// rejected. Transient errors and throttles are waited out; false on shutdown.
    async fn deliver(
        &self,
        mut pending: Vec<Item>,
        letters: &mut Vec<Letter>,
        counts: &mut BTreeMap<&'static str, u64>,
    ) -> Result<bool, WriterError> {
        let mut failures = 0u32;
        let mut unanswered = 0u32;
        while !pending.is_empty() {
            match self.round(&mut pending, letters, counts).await {
                Ok(()) => failures = 0,
                Err(e) if e.stops_stream() => {
                    return Err(WriterError::Target { writer: self.w.id.clone(), error: e });
                }
                Err(e) => {
                    failures += 1;
                    let wait = match &e {
                        // The gate holds the next call until the ban ends.
                        SourceError::Throttled { .. } | SourceError::QuotaExhausted { .. } => Duration::ZERO,
                        _ => backoff::delay(failures, Duration::from_millis(500), Duration::from_secs(60)),
                    };
                    warn!(writer = %self.w.id, error = %e, retry_in = ?wait, pending = pending.len(), "target call failed; retrying the batch");
                    if self.shutdown.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                        return Ok(false);
                    }
                }
            }
            if !pending.is_empty() && failures == 0 {
                unanswered += 1;
                if unanswered > UNANSWERED_ROUNDS {
                    let keys: Vec<&str> = pending.iter().map(|i| i.doc.key.as_str()).collect();
                    return Err(WriterError::Target {
                        writer: self.w.id.clone(),
                        error: SourceError::Fatal {
                            code: "unanswered".into(),
                            reason: format!(
                                "the target said neither saved nor rejected for {} after {UNANSWERED_ROUNDS} rounds",
                                keys.join(", ")
                            ),
                        },
                    });
                }
                // The answer named some documents neither saved nor rejected: ask again.
                let wait = backoff::delay(1, Duration::from_millis(500), Duration::from_secs(5));
                if self.shutdown.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// One existence check and one save of what is left; outcomes settle items out of `pending`.
    async fn round(
        &self,
        pending: &mut Vec<Item>,
        letters: &mut Vec<Letter>,
        counts: &mut BTreeMap<&'static str, u64>,
    ) -> Result<(), SourceError> {
        let keys: Vec<String> = pending.iter().map(|i| i.doc.key.clone()).collect();
        let mut existing = std::collections::HashSet::new();
        for chunk in keys.chunks(QUERY_CHUNK) {
            existing.extend(self.call(self.target.existing(chunk)).await?);
        }
        let before = pending.len();
        pending.retain(|i| !existing.contains(&i.doc.key));
        *counts.entry("existing").or_default() += (before - pending.len()) as u64;
        if pending.is_empty() {
            return Ok(());
        }
        let docs: Vec<Value> = pending.iter().map(|i| i.doc.body.clone()).collect();
        let outcomes = self.call(self.target.save(&docs)).await?;
        let mut left = Vec::new();
        for (item, outcome) in std::mem::take(pending).into_iter().zip(outcomes) {
            match outcome {
                RowOutcome::Saved { .. } => *counts.entry("saved").or_default() += 1,
                RowOutcome::Rejected { field, message } => {
                    *counts.entry("rejected").or_default() += 1;
                    let label = rejection_label(&field, &item.doc.body);
                    self.metrics.rejected_field(label);
                    warn!(writer = %self.w.id, key = %item.doc.key, field = %field, error = %message, "target rejected a record; dead-lettering it");
                    let at = (item.partition, item.offset);
                    letters.push(self.letter(at, &item.doc.key, &field, &message, item.record, Some(item.doc.body)));
                }
                RowOutcome::Unknown => left.push(item),
            }
        }
        *pending = left;
        Ok(())
    }

    /// One target call through the gate: its rate limit, throttle pauses and in-flight slot.
    async fn call<T>(&self, fut: impl std::future::Future<Output = Result<T, SourceError>>) -> Result<T, SourceError> {
        gated(self.gate, fut).await
    }

    fn letter(
        &self,
        (partition, offset): (i32, i64),
        key: &str,
        field: &str,
        error: &str,
        record: Value,
        document: Option<Value>,
    ) -> Letter {
        Letter {
            key: if key.is_empty() { format!("{partition}/{offset}") } else { key.to_owned() },
            body: json!({
                "writer": self.w.id,
                "kind": self.w.kind,
                "partition": partition,
                "offset": offset,
                "key": key,
                "field": field,
                "error": error,
                "record": record,
                "document": document,
            }),
        }
    }

    /// Writes the batch's dead letters and waits until Kafka has them all.
    async fn dead_letter(&self, producer: &FutureProducer<Plain>, letters: Vec<Letter>) -> Result<(), WriterError> {
        let topic = self.w.dead_letter_topic.as_str();
        let payloads: Vec<String> = letters.iter().map(|l| l.body.to_string()).collect();
        let sends: Vec<_> = letters
            .iter()
            .zip(&payloads)
            .map(|(l, payload)| {
                let record = FutureRecord::to(topic).key(l.key.as_str()).payload(payload);
                producer.send(record, Duration::from_secs(30))
            })
            .collect();
        for s in futures_util::future::join_all(sends).await {
            s.map_err(|(e, _)| WriterError::Kafka(format!("dead letter to {topic}: {e}")))?;
        }
        Ok(())
    }
}

/// The metric label for a rejection: the first field the target named if the document has
/// it (so the label set is bounded by what the writer sends, whatever the target answers),
/// `other` if not, `none` if it named no field.
fn rejection_label<'a>(field: &'a str, doc: &Value) -> &'a str {
    fn has_key(v: &Value, key: &str) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| k == key || has_key(v, key)),
            Value::Array(a) => a.iter().any(|v| has_key(v, key)),
            _ => false,
        }
    }
    let first = field.split("; ").next().unwrap_or("").trim();
    match first {
        "" => "none",
        f if has_key(doc, f) => f,
        _ => "other",
    }
}

/// Commits the offsets after the batch's last record of each partition.
fn commit(consumer: &WriterConsumer, topic: &str, batch: &[Consumed]) -> Result<(), WriterError> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for c in batch {
        let n = next.entry(c.partition).or_insert(0);
        *n = (*n).max(c.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        tpl.add_partition_offset(topic, p, Offset::Offset(o)).map_err(|e| WriterError::Kafka(e.to_string()))?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(|e| WriterError::Kafka(format!("commit offsets of {topic}: {e}")))
}

/// How far the group's committed offsets are behind the end of the partitions it holds, as
/// `kafka-consumer-groups` counts lag: a batch being delivered still counts, so a writer stuck
/// on its target shows lag. Blocking broker queries; `None` if the broker did not answer.
fn lag(consumer: &WriterConsumer, topic: &str) -> Option<i64> {
    let committed = consumer.committed(Duration::from_secs(2)).ok()?;
    let mut total = 0;
    for e in committed.elements_for_topic(topic) {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(2)).ok()?;
        let at = match e.offset() {
            Offset::Offset(at) => at,
            _ => low,
        };
        total += (high - at).max(0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::rejection_label;
    use serde_json::json;

    #[test]
    fn a_rejection_is_labelled_by_a_field_the_document_has_and_nothing_else() {
        let doc = json!({"FBillNo": "R1", "FEntity": [{"FMaterialId": {"FNumber": "SKU-1"}}]});
        assert_eq!(rejection_label("FMaterialId", &doc), "FMaterialId", "a line field");
        assert_eq!(rejection_label("FBillNo; FMaterialId", &doc), "FBillNo", "the first of several");
        assert_eq!(rejection_label("FNumber", &doc), "FNumber", "a nested key is a field sent");
        // Whatever the target answers, the label stays in the set of fields sent.
        assert_eq!(rejection_label("期间已关账 2026-11", &doc), "other");
        assert_eq!(rejection_label("", &doc), "none");
    }
}
