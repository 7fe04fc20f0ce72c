//! Reads back what the worker committed (`read_committed`): per-stream record counts,
//! watermarks and decoded sample records.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::avro::{RecordCodec, decode};
use crate::config::Config;
use crate::engine::Watermark;
use crate::kafka::{HEADER_STREAM, client_config, watermarks};
use crate::pipeline;
use crate::run::RunError;

/// What Kafka holds for one stream.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub stream: String,
    pub topic: String,
    pub schema: String,
    pub records: u64,
    pub distinct_keys: u64,
    pub watermark: Option<Watermark>,
    pub samples: Vec<Value>,
}

/// Scans every configured stream's topic from the beginning.
pub async fn inspect(config: &Config, samples: usize) -> Result<Vec<StreamSummary>, RunError> {
    let plans = pipeline::plan(config)?;
    let wms = watermarks::load(&config.kafka, Duration::from_secs(60)).await?;
    let mut by_topic: BTreeMap<String, HashMap<String, Arc<RecordCodec>>> = BTreeMap::new();
    let mut summaries: BTreeMap<String, StreamSummary> = BTreeMap::new();
    for p in &plans {
        by_topic.entry(p.topic.clone()).or_default().insert(p.cfg.id.to_string(), p.codec.clone());
        summaries.insert(
            p.cfg.id.to_string(),
            StreamSummary {
                stream: p.cfg.id.to_string(),
                topic: p.topic.clone(),
                schema: p.codec.full_name().to_owned(),
                records: 0,
                distinct_keys: 0,
                watermark: wms.get(p.cfg.id.as_str()).map(|s| s.watermark),
                samples: Vec::new(),
            },
        );
    }
    let kafka = config.kafka.clone();
    let summaries = tokio::task::spawn_blocking(move || -> Result<_, RunError> {
        let mut summaries = summaries;
        for (topic, codecs) in by_topic {
            scan_topic(&kafka, &topic, &codecs, samples, &mut summaries)?;
        }
        Ok(summaries)
    })
    .await
    .map_err(|e| {
        RunError::Watermarks(watermarks::LoadError::Kafka { topic: String::new(), reason: e.to_string() })
    })??;
    Ok(summaries.into_values().collect())
}

fn scan_topic(
    kafka: &crate::config::KafkaConfig,
    topic: &str,
    codecs: &HashMap<String, Arc<RecordCodec>>,
    samples: usize,
    summaries: &mut BTreeMap<String, StreamSummary>,
) -> Result<(), RunError> {
    let kerr = |e: KafkaError| {
        RunError::Watermarks(watermarks::LoadError::Kafka { topic: topic.to_owned(), reason: e.to_string() })
    };
    let consumer: BaseConsumer = client_config(kafka)
        .set("group.id", "tidemark-inspect")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(kerr)?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).map_err(kerr)?;
    let mut tpl = TopicPartitionList::new();
    let mut pending = HashSet::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(30)).map_err(kerr)?;
            if high > low {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning).map_err(kerr)?;
                pending.insert(p.id());
            }
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl).map_err(kerr)?;
    let mut keys: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pending.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(kerr(e)),
            Some(Ok(m)) => {
                let Some(stream) = m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == HEADER_STREAM)
                        .and_then(|x| x.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                }) else {
                    continue;
                };
                let Some(summary) = summaries.get_mut(&stream) else { continue };
                summary.records += 1;
                keys.entry(stream.clone()).or_default().insert(m.key().unwrap_or_default().to_vec());
                if summary.samples.len() < samples
                    && let (Some(codec), Some(payload)) = (codecs.get(&stream), m.payload())
                {
                    summary.samples.push(
                        decode::decode(codec, payload).unwrap_or_else(|e| Value::String(format!("undecodable: {e}"))),
                    );
                }
            }
        }
    }
    for (stream, k) in keys {
        if let Some(s) = summaries.get_mut(&stream) {
            s.distinct_keys = k.len() as u64;
        }
    }
    Ok(())
}
