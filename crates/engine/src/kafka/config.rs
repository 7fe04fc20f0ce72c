//! `[kafka]`: the brokers, topics, transactions and value format, as written and as validated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, Secret, check_topic_name, duration};

/// `[kafka]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub bootstrap: String,
    #[serde(default = "default_transactional_id")]
    pub transactional_id: String,
    #[serde(default = "default_watermark_topic")]
    pub watermark_topic: String,
    pub control_topic: Option<String>,
    #[serde(default = "six")]
    pub watermark_partitions: i32,
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    #[serde(default = "default_ledger_topic")]
    pub ledger_topic: String,
    #[serde(default = "broker_default")]
    pub topic_partitions: i32,
    #[serde(default = "broker_default")]
    pub replication_factor: i32,
    #[serde(default = "duration::secs::<60>", deserialize_with = "duration::required")]
    pub transaction_timeout: Duration,
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
    #[serde(default)]
    pub value_format: ValueFormat,
    #[serde(default = "duration::secs::<120>", deserialize_with = "duration::required")]
    pub startup_timeout: Duration,
    #[serde(default = "default_watermark_max_bytes")]
    pub watermark_max_bytes: usize,
}

fn default_transactional_id() -> String {
    "tidemark".into()
}
fn default_watermark_topic() -> String {
    "tidemark.watermarks".into()
}
fn default_dead_letter_topic() -> String {
    "tidemark.dead_letters".into()
}
fn default_ledger_topic() -> String {
    "tidemark.ledger".into()
}
fn six() -> i32 {
    6
}
/// `-1`: the broker's own default.
fn broker_default() -> i32 {
    -1
}
/// Under librdkafka's message.max.bytes (1,000,000) and the broker's 1 MiB default, with room
/// for the key and record overhead.
fn default_watermark_max_bytes() -> usize {
    900_000
}

/// Broker connection and topic settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub transactional_id: String,
    pub watermark_topic: String,
    /// Operators' stop/resume flags per stream (compacted; `<watermark_topic>.control`).
    pub control_topic: String,
    pub watermark_partitions: i32,
    /// Where records that cannot be mapped to their schema go, with the error.
    pub dead_letter_topic: String,
    /// One JSON record per committed window (`tidemark reconcile` reads it); not compacted.
    pub ledger_topic: String,
    /// `-1` lets the broker choose.
    pub topic_partitions: i32,
    /// `-1` lets the broker choose.
    pub replication_factor: i32,
    pub transaction_timeout: Duration,
    /// librdkafka properties passed through as they are (TLS, SASL, tuning).
    pub properties: BTreeMap<String, Secret>,
    pub value_format: ValueFormat,
    /// How long a start waits for unreachable brokers before it fails.
    pub startup_timeout: Duration,
    /// The largest watermark record written; older lookback hashes are forgotten past it.
    pub watermark_max_bytes: usize,
}

/// How record values are framed for readers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ValueFormat {
    /// Avro single-object encoding: readers need only `schemas/`.
    #[default]
    SingleObject,
    /// Confluent wire format: schema ids from `[schema_registry]`.
    Confluent,
}

impl TryFrom<String> for ValueFormat {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "single-object" => Ok(ValueFormat::SingleObject),
            "confluent" => Ok(ValueFormat::Confluent),
            other => Err(format!("{other:?} is not a value format (use \"confluent\" or \"single-object\")")),
        }
    }
}

impl TryFrom<KafkaSection> for KafkaConfig {
    type Error = ConfigError;

    fn try_from(k: KafkaSection) -> Result<Self, ConfigError> {
        if k.bootstrap.trim().is_empty() {
            return Err(ConfigError::invalid("kafka.bootstrap", "is empty"));
        }
        check_topic_name("kafka.watermark_topic", &k.watermark_topic)?;
        if let Some(t) = &k.control_topic {
            check_topic_name("kafka.control_topic", t)?;
        }
        check_topic_name("kafka.dead_letter_topic", &k.dead_letter_topic)?;
        check_topic_name("kafka.ledger_topic", &k.ledger_topic)?;
        if k.watermark_partitions < 1 {
            return Err(ConfigError::invalid(
                "kafka.watermark_partitions",
                format!("must be at least 1, got {}", k.watermark_partitions),
            ));
        }
        for (key, v) in
            [("kafka.topic_partitions", k.topic_partitions), ("kafka.replication_factor", k.replication_factor)]
        {
            if v == 0 || v < -1 {
                return Err(ConfigError::invalid(key, format!("must be -1 (broker default) or positive, got {v}")));
            }
        }
        if k.watermark_max_bytes < 4096 {
            return Err(ConfigError::invalid(
                "kafka.watermark_max_bytes",
                format!("must be at least 4096, got {}", k.watermark_max_bytes),
            ));
        }
        if k.startup_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "kafka.startup_timeout",
                format!("must be at least 1s, got {:?}", duration::format_duration(k.startup_timeout)),
            ));
        }
        if k.transaction_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid("kafka.transaction_timeout", "must be at least 1s"));
        }
        if k.transactional_id.trim().is_empty() {
            return Err(ConfigError::invalid("kafka.transactional_id", "is empty"));
        }
        let cfg = KafkaConfig {
            control_topic: k.control_topic.unwrap_or_else(|| format!("{}.control", k.watermark_topic)),
            bootstrap: k.bootstrap,
            transactional_id: k.transactional_id,
            watermark_topic: k.watermark_topic,
            watermark_partitions: k.watermark_partitions,
            dead_letter_topic: k.dead_letter_topic,
            ledger_topic: k.ledger_topic,
            topic_partitions: k.topic_partitions,
            replication_factor: k.replication_factor,
            transaction_timeout: k.transaction_timeout,
            properties: k.properties,
            value_format: k.value_format,
            startup_timeout: k.startup_timeout,
            watermark_max_bytes: k.watermark_max_bytes,
        };
        // Each holds records of its own kind; two of them in one topic would mix watermarks
        // with dead letters (and a create request naming a topic twice crashes librdkafka's
        // admin client).
        let own = cfg.own_topics();
        for (i, (key, topic)) in own.iter().enumerate() {
            if let Some((first, _)) = own[..i].iter().find(|(_, t)| t == topic) {
                return Err(ConfigError::invalid(
                    *key,
                    format!("{topic:?} is also {first}; each needs a topic of its own"),
                ));
            }
        }
        Ok(cfg)
    }
}

impl KafkaConfig {
    /// The topics a window's transaction writes beside its data topic: its dead letters, the
    /// watermark and the ledger entry. With the data topics, what the hanging-transaction
    /// check at every start covers (and counts in its metric): a transaction hanging in any of
    /// them stalls its `read_committed` readers (the ledger's: `tidemark reconcile`).
    pub fn written_beside_data(&self) -> [&str; 3] {
        [&self.dead_letter_topic, &self.watermark_topic, &self.ledger_topic]
    }

    /// The topics tidemark keeps for itself, each with the key that names it.
    pub fn own_topics(&self) -> [(&'static str, &str); 4] {
        [
            ("kafka.watermark_topic", &self.watermark_topic),
            ("kafka.control_topic", &self.control_topic),
            ("kafka.dead_letter_topic", &self.dead_letter_topic),
            ("kafka.ledger_topic", &self.ledger_topic),
        ]
    }
}
