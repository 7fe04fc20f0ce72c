//! Kafka: client settings, the transactional sink, topic bootstrap and the watermark store.

pub mod config;
pub mod control;
pub mod ends;
pub mod hanging;
pub mod outage;
pub mod reach;
pub mod scan;
pub mod sink;
pub mod stats;
pub mod topics;
pub mod watermarks;

use rdkafka::ClientConfig;

use crate::kafka::config::KafkaConfig;

pub use crate::domain::{CommitError, OutRecord};
pub use sink::TxnSink;

pub use crate::domain::sink::{HEADER_OWNER, HEADER_SCHEMA, HEADER_STREAM};

/// Context for consumers that read to a partition's end: end of partition is what they wait
/// for, not an error to log.
pub struct ReadToEnd;

impl rdkafka::ClientContext for ReadToEnd {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        outage::client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ReadToEnd {}

/// Context for clients with nothing of their own to add: unlike rdkafka's default, which logs
/// every error callback at ERROR, an outage is said once per process (see [`outage`]).
pub struct Plain;

impl rdkafka::ClientContext for Plain {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        outage::client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for Plain {}

/// End of partition, however librdkafka delivers it: per partition, or (through the client's
/// error callback) as a global error.
pub fn is_partition_eof(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF))
}

/// Drops Kafka clients on a thread of their own: closing one waits for its broker threads
/// (about a fifth of a second), which nobody needs to wait for.
pub fn close_in_background<T: Send + 'static>(clients: T) {
    std::thread::spawn(move || drop(clients));
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::{BaseProducer, Producer};

    fn config(props: &[(&str, &str)]) -> KafkaConfig {
        let mut text = String::from("bootstrap = \"127.0.0.1:1\"\n[properties]\n");
        for (k, v) in props {
            text.push_str(&format!("\"{k}\" = \"{v}\"\n"));
        }
        KafkaConfig::try_from(toml::from_str::<config::KafkaSection>(&text).unwrap()).unwrap()
    }

    #[test]
    fn tls_and_sasl_settings_reach_librdkafka() {
        let cfg = config(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "tidemark"),
            ("sasl.password", "pw-123"),
        ]);
        // librdkafka validates the protocol and mechanism when the client is created: this
        // build supports TLS and SCRAM.
        let producer: BaseProducer = client_config(&cfg).create().expect("SASL_SSL with SCRAM is supported");
        assert!(!producer.client().native_client().ptr().is_null());
        assert!(!format!("{:?}", cfg.properties).contains("pw-123"), "passwords never print");
    }

    #[test]
    fn end_of_partition_is_recognised_in_both_shapes() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        assert!(is_partition_eof(&KafkaError::PartitionEOF(3)));
        assert!(is_partition_eof(&KafkaError::Global(RDKafkaErrorCode::PartitionEOF)));
        assert!(!is_partition_eof(&KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)));
    }

    #[test]
    fn a_misspelt_property_is_refused_by_name() {
        let cfg = config(&[("security.protocool", "SSL")]);
        let err = client_config(&cfg).create::<BaseProducer>().err().expect("unknown property refused").to_string();
        assert!(err.contains("security.protocool"), "{err}");
    }
}
