//! Reads back what the worker committed (`read_committed`): per-stream record counts,
//! tombstones and watermarks, and decoded sample records per topic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use serde_json::Value;

use crate::avro::RecordCodec;
use crate::avro::framed::FramedReader;
use crate::config::{Config, ConfigError, KafkaConfig};
use crate::domain::Watermark;
use crate::kafka::ends::EndsReader;
use crate::kafka::watermarks::LoadError;
use crate::kafka::{HEADER_STREAM, scan, watermarks};
use crate::pipeline;
use crate::registry::Registry;
use crate::registry::RegistryError;

/// What Kafka holds for one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    pub stream: String,
    pub topic: String,
    pub records: u64,
    pub tombstones: u64,
    pub distinct_keys: u64,
    pub watermark: Option<Watermark>,
}

/// One decoded value, with how it was framed (e.g. `schema registry id 7`).
#[derive(Debug, Clone)]
pub struct Sample {
    pub value: Value,
    pub framing: Option<String>,
}

/// Decoded samples of one topic.
#[derive(Debug, Clone)]
pub struct TopicSample {
    pub topic: String,
    pub schema: String,
    pub samples: Vec<Sample>,
}

/// Why inspection failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Watermarks(#[from] LoadError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot read topic {topic}: {reason}")]
    Read { topic: String, reason: String },
}

/// Scans every configured stream's topic from the beginning.
pub async fn inspect(config: &Config, samples: usize) -> Result<(Vec<StreamSummary>, Vec<TopicSample>), InspectError> {
    let plans = pipeline::plan(config)?;
    let wms = watermarks::load(&config.kafka, Duration::from_secs(60)).await?;
    let mut topics: BTreeMap<String, Arc<RecordCodec>> = BTreeMap::new();
    let mut summaries: BTreeMap<String, StreamSummary> = BTreeMap::new();
    for p in &plans {
        topics.insert(p.topic.clone(), p.codec.clone());
        summaries.insert(
            p.cfg.id.to_string(),
            StreamSummary {
                stream: p.cfg.id.to_string(),
                topic: p.topic.clone(),
                watermark: wms.get(p.cfg.id.as_str()).map(|s| s.watermark),
                ..Default::default()
            },
        );
    }
    let kafka = config.kafka.clone();
    let registry = config.schema_registry.as_ref().map(Registry::new).transpose()?;
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut summaries = summaries;
        let mut out = Vec::new();
        for (topic, codec) in topics {
            let mut values =
                ValueReader { codec: &codec, framed: FramedReader::new(&codec, registry.as_ref()), runtime: &runtime };
            out.push(scan_topic(&kafka, &topic, &mut values, samples, &mut summaries)?);
        }
        Ok((summaries.into_values().collect(), out))
    })
    .await
    .map_err(|e| InspectError::Read { topic: String::new(), reason: e.to_string() })?
}

/// A sample of a topic: its values decoded (blocking: the scan runs on a blocking thread).
struct ValueReader<'a> {
    codec: &'a RecordCodec,
    framed: FramedReader<'a>,
    runtime: &'a tokio::runtime::Handle,
}

impl ValueReader<'_> {
    fn decode(&mut self, value: &[u8]) -> Sample {
        let (framing, decoded) = self.runtime.block_on(self.framed.decode(value));
        Sample {
            value: decoded.unwrap_or_else(|e| undecodable(&e.to_string())),
            framing: framing.map(|f| f.to_string()),
        }
    }
}

fn undecodable(why: &str) -> Value {
    Value::String(format!("undecodable: {why}"))
}

fn scan_topic(
    kafka: &KafkaConfig,
    topic: &str,
    values: &mut ValueReader<'_>,
    samples: usize,
    summaries: &mut BTreeMap<String, StreamSummary>,
) -> Result<TopicSample, InspectError> {
    let kerr = |e: KafkaError| InspectError::Read { topic: topic.to_owned(), reason: e.to_string() };
    let mut sample =
        TopicSample { topic: topic.to_owned(), schema: values.codec.full_name().to_owned(), samples: Vec::new() };
    let consumer = scan::committed_reader(kafka, "tidemark-inspect").map_err(kerr)?;
    let ends = EndsReader::new(kafka).map_err(kerr)?;
    let partitions: Vec<i32> =
        ends.topic(topic).map_err(kerr)?.into_iter().filter(|e| e.written > e.low).map(|e| e.partition).collect();
    let mut keys: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    let scanned = scan::read_to_end(&consumer, topic, &partitions, Duration::from_secs(300), |m| {
        let Some(stream) = m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == HEADER_STREAM)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        }) else {
            return Ok::<(), std::convert::Infallible>(());
        };
        let Some(summary) = summaries.get_mut(&stream) else { return Ok(()) };
        match m.payload() {
            None => summary.tombstones += 1,
            Some(payload) => {
                summary.records += 1;
                if sample.samples.len() < samples {
                    sample.samples.push(values.decode(payload));
                }
            }
        }
        keys.entry(stream).or_default().insert(m.key().unwrap_or_default().to_vec());
        Ok(())
    });
    crate::kafka::close_in_background((consumer, ends));
    scanned.map_err(|e| InspectError::Read { topic: topic.to_owned(), reason: e.to_string() })?;
    for (stream, k) in keys {
        if let Some(s) = summaries.get_mut(&stream) {
            s.distinct_keys = k.len() as u64;
        }
    }
    Ok(sample)
}
