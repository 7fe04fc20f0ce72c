//! Kafka: client settings, the transactional sink, topic bootstrap and the watermark store.

pub mod sink;
pub mod topics;
pub mod watermarks;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

pub use sink::{CommitError, OutRecord, TxnSink};

/// Header carrying the stream id on every data record.
pub const HEADER_STREAM: &str = "tidemark.stream";
/// Header carrying the Avro record's full name on every data record.
pub const HEADER_SCHEMA: &str = "tidemark.schema";

/// The librdkafka settings every client shares: bootstrap plus the configured passthrough
/// properties (TLS, SASL, tuning).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap);
    // librdkafka's own logs go through the `log` facade only when asked; keep them terse.
    c.set("log_level", "4");
    for (k, v) in &cfg.properties {
        c.set(k, v.expose());
    }
    c
}
