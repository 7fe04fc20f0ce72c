//! `tidemark reconcile --writer`: every record of a writer's topic whose own time is in range
//! against its target: there as the writer would have made it, field by field, or in the
//! writer's dead-letter topic with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Parts, WriterError, gated};
use crate::avro::framed::{FramedReader, ReadError};
use crate::config::Config;
use crate::domain::time::{DATETIME, format_beijing};
use crate::domain::{Document, FieldDifference, Held, SourceError, backoff};
use crate::kafka::sink::HEADER_CONTROL;
use crate::reconcile::{ReconcileError, scan_topic};

/// How many documents one comparison asks the target about (one query each).
const COMPARE_CHUNK: usize = 100;
/// Attempts at a comparison the target answers with a transient error.
const ATTEMPTS: u32 = 6;

/// What to check.
#[derive(Debug, Clone)]
pub struct WriterReconcileOptions {
    pub writer: String,
    /// Records whose own time (the source's `window_field`, e.g. `stockin_time`) is in
    /// `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A record the target does not hold as the writer would have made it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unwritten {
    /// The target's key (`FBillNo`), or the record's Kafka key when no document can be made.
    pub key: String,
    /// `missing` or `different`.
    pub what: String,
    /// For `different`: each field, by line, with what Kafka says and what the target holds.
    pub fields: Vec<FieldDifference>,
    pub detail: String,
}

/// A record in the writer's dead-letter topic, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLettered {
    pub key: String,
    /// The field the target named; empty for the writer's own refusals.
    pub field: String,
    pub reason: String,
}

/// One writer's result.
#[derive(Debug, Clone, Serialize)]
pub struct WriterReconciled {
    pub writer: String,
    pub topic: String,
    pub dead_letter_topic: String,
    /// Records in range (the latest value of each key).
    pub records_checked: u64,
    pub matching: u64,
    pub dead_lettered: u64,
    pub missing: u64,
    pub different: u64,
    /// Values in range of time that could not be read (each one's dead letter is the writer's).
    pub unreadable: u64,
    pub differences: Vec<Unwritten>,
    pub dead_letters: Vec<DeadLettered>,
}

impl WriterReconciled {
    pub fn clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Publishes the result to the control topic (`reconcile-writer:<id>`): the writer's process
/// exports it (`tidemark_writer_reconcile_*`).
pub async fn publish(
    kafka: &crate::config::KafkaConfig,
    r: &WriterReconciled,
    opts: &WriterReconcileOptions,
) -> Result<(), ReconcileError> {
    let record = crate::kafka::control::WriterReconciled {
        at: Utc::now(),
        from: opts.from,
        to: opts.to,
        records: r.records_checked,
        differing: r.differences.len() as u64,
        dead_lettered: r.dead_lettered,
    };
    crate::kafka::control::write_writer_reconciled(kafka, &r.writer, &record)
        .await
        .map_err(|e| ReconcileError::Setup(e.to_string()))
}

/// The latest value of one key in the writer's topic.
struct Latest {
    value: Vec<u8>,
}

/// Checks every record of the writer's topic whose own time is in `[from, to)`.
pub async fn reconcile(
    config: &Config,
    opts: &WriterReconcileOptions,
    cancel: CancellationToken,
) -> Result<WriterReconciled, ReconcileError> {
    if opts.from >= opts.to {
        return Err(ReconcileError::Range {
            from: format_beijing(opts.from, DATETIME),
            to: format_beijing(opts.to, DATETIME),
        });
    }
    let w = config.writers.get(&opts.writer).ok_or_else(|| ReconcileError::UnknownWriter {
        writer: opts.writer.clone(),
        known: config.writers.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let setup = |e: WriterError| ReconcileError::Setup(e.to_string());
    let parts = Parts::of(config, w).map_err(setup)?;
    let spec = &config.endpoints.find(parts.target.input_kind()).expect("a target reads a built-in kind").spec;
    let time_field = spec.window_field.unwrap_or_default();

    let mut latest: BTreeMap<String, Option<Latest>> = BTreeMap::new();
    scan_topic(&config.kafka, &parts.topic, |m| {
        if m.headers().is_some_and(|h| h.iter().any(|x| x.key == HEADER_CONTROL)) {
            return;
        }
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        latest.insert(key, m.payload().map(|v| Latest { value: v.to_vec() }));
    })
    .await?;
    let letters = read_dead_letters(config, &w.dead_letter_topic, &w.id).await?;

    let mut r = WriterReconciled {
        writer: w.id.clone(),
        topic: parts.topic.clone(),
        dead_letter_topic: w.dead_letter_topic.clone(),
        records_checked: 0,
        matching: 0,
        dead_lettered: 0,
        missing: 0,
        different: 0,
        unreadable: 0,
        differences: Vec::new(),
        dead_letters: Vec::new(),
    };
    let mut values = FramedReader::new(&parts.codec, parts.registry.as_ref());
    let mut docs: Vec<(String, Document)> = Vec::new();
    for (kafka_key, value) in latest {
        let Some(value) = value else { continue };
        let record = match values.decode(&value.value).await.1 {
            Ok(record) => record,
            Err(ReadError::Registry(why)) => return Err(ReconcileError::Setup(format!("schema registry: {why}"))),
            Err(_) => {
                r.unreadable += 1;
                continue;
            }
        };
        if !record_time(&record, time_field).is_some_and(|t| t >= opts.from && t < opts.to) {
            continue;
        }
        r.records_checked += 1;
        match parts.target.document(&record) {
            Ok(doc) => docs.push((kafka_key, doc)),
            Err(reason) => match letters.get(&kafka_key) {
                Some(letter) => r.dead_lettered(letter.clone()),
                None => r.missing(
                    &kafka_key,
                    format!("no document can be made of it ({reason}) and it is not dead-lettered"),
                ),
            },
        }
    }
    for chunk in docs.chunks(COMPARE_CHUNK) {
        if cancel.is_cancelled() {
            return Err(ReconcileError::Setup("interrupted".into()));
        }
        let only: Vec<Document> = chunk.iter().map(|(_, d)| d.clone()).collect();
        let held = compare(&parts, &only, &cancel)
            .await
            .map_err(|e| ReconcileError::Target { writer: w.id.clone(), reason: e.to_string() })?;
        for ((kafka_key, doc), held) in chunk.iter().zip(held) {
            match held {
                Held::Same => r.matching += 1,
                Held::Missing => match letters.get(&doc.key).or_else(|| letters.get(kafka_key)) {
                    Some(letter) => r.dead_lettered(letter.clone()),
                    None => r.missing(&doc.key, "the target has no such document, nor is it dead-lettered".into()),
                },
                Held::Different(fields) => {
                    r.different += 1;
                    let target = w.kind.split('.').next().unwrap_or("target");
                    let detail = fields.iter().map(|f| describe(f, target)).collect::<Vec<_>>().join("; ");
                    r.differences.push(Unwritten { key: doc.key.clone(), what: "different".into(), fields, detail });
                }
            }
        }
    }
    Ok(r)
}

impl WriterReconciled {
    fn dead_lettered(&mut self, letter: DeadLettered) {
        self.dead_lettered += 1;
        self.dead_letters.push(letter);
    }

    fn missing(&mut self, key: &str, detail: String) {
        self.missing += 1;
        self.differences.push(Unwritten { key: key.to_owned(), what: "missing".into(), fields: Vec::new(), detail });
    }
}

/// `line 2 FRealQty: kafka 3.0000, k3cloud 2.0000` (the target named by its writer kind's
/// first part), without the line for a head field.
pub fn describe(d: &FieldDifference, target: &str) -> String {
    let line = d.line.map(|n| format!("line {n} ")).unwrap_or_default();
    format!("{line}{}: kafka {}, {target} {}", d.field, d.expected, d.found)
}

/// One comparison through the writer's gate (its rate limit and throttle pauses); transient
/// errors are retried with backoff, at most [`ATTEMPTS`] times.
async fn compare(parts: &Parts, docs: &[Document], cancel: &CancellationToken) -> Result<Vec<Held>, SourceError> {
    let mut failures = 0;
    loop {
        match gated(&parts.gate, parts.target.compare(docs)).await {
            Ok(held) => return Ok(held),
            Err(e) if e.stops_stream() => return Err(e),
            Err(e) => {
                failures += 1;
                if failures >= ATTEMPTS {
                    return Err(e);
                }
                let wait = match &e {
                    // The gate holds the next call until the ban ends.
                    SourceError::Throttled { .. } | SourceError::QuotaExhausted { .. } => Duration::ZERO,
                    _ => backoff::delay(failures, Duration::from_millis(500), Duration::from_secs(30)),
                };
                tracing::warn!(error = %e, retry_in = ?wait, "target comparison failed; retrying");
                if cancel.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                    return Err(e);
                }
            }
        }
    }
}

/// The record's own time, from `field` (Beijing time as the decoder writes it).
fn record_time(record: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = record.get(field)?.as_str()?;
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%:z").ok().map(|t| t.with_timezone(&Utc))
}

/// The writer's dead letters by key (its latest letter for each).
async fn read_dead_letters(
    config: &Config,
    topic: &str,
    writer: &str,
) -> Result<BTreeMap<String, DeadLettered>, ReconcileError> {
    let mut out = BTreeMap::new();
    // A writer that never dead-lettered anything may have no dead-letter topic yet.
    let ends = tokio::task::block_in_place(|| crate::kafka::ends::EndsReader::new(&config.kafka)?.topic(topic));
    match ends {
        Ok(_) => {}
        Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)) => return Ok(out),
        Err(e) => return Err(ReconcileError::Read { topic: topic.to_owned(), reason: e.to_string() }),
    }
    scan_topic(&config.kafka, topic, |m| {
        let Some(letter) = m.payload().and_then(|p| serde_json::from_slice::<Value>(p).ok()) else { return };
        if letter["writer"] != writer {
            return;
        }
        let text = |k: &str| letter[k].as_str().unwrap_or_default().to_owned();
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_else(|| text("key"));
        out.insert(key.clone(), DeadLettered { key, field: text("field"), reason: text("error") });
    })
    .await?;
    Ok(out)
}
