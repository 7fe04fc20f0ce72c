//! Why a broker cannot be reached: librdkafka reports the cause (refused, DNS, TLS, auth)
//! only to the client's error callback, while the failing call just times out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};

use crate::kafka::config::KafkaConfig;

/// Asks the brokers for metadata once; on failure, the cause librdkafka reported. The client
/// is polled so that its log and error events (where causes are told) reach the context.
pub async fn probe(cfg: &KafkaConfig, timeout: Duration) -> Result<(), BrokerCause> {
    let last = LastBrokerError::default();
    let producer: BaseProducer<LastBrokerError> = super::client_config(cfg)
        .create_with_context(last.clone())
        .map_err(|e| BrokerCause { kind: CauseKind::Config, detail: e.to_string() })?;
    // rust-rdkafka sets a client's log level from the `log` filter of target "librdkafka",
    // which RUST_LOG may silence; the probe needs librdkafka's INFO lines, where a
    // disconnect during the handshake (a protocol mismatch) is told.
    // SAFETY: a valid client pointer, and a plain setter.
    unsafe {
        rdkafka::bindings::rd_kafka_set_log_level(rdkafka::producer::Producer::client(&producer).native_ptr(), 6)
    };
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let result = loop {
            match rdkafka::producer::Producer::client(&producer).fetch_metadata(None, Duration::from_millis(500)) {
                Ok(_) => break Ok(()),
                Err(e) => {
                    producer.poll(Duration::from_millis(100));
                    // A wrong credential or certificate will not fix itself within the wait.
                    let fatal = last.get().is_some_and(|c| c.kind.is_fatal());
                    if fatal || Instant::now() >= deadline {
                        break Err(last.get().unwrap_or_else(|| BrokerCause::classify(&e.to_string())));
                    }
                }
            }
        };
        super::close_in_background(producer);
        result
    })
    .await
    .unwrap_or_else(|e| Err(BrokerCause { kind: CauseKind::Other, detail: e.to_string() }))
}

/// What kind of failure kept the client from its brokers, by what an operator must fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseKind {
    /// Nothing listens there (or a firewall said no): wrong address, or the broker is down.
    Refused,
    /// A host name did not resolve.
    Dns,
    /// The TLS handshake failed: an untrusted certificate, a wrong CA, a name mismatch.
    Tls,
    /// SASL authentication failed: wrong user or password, or a mechanism the broker lacks.
    Auth,
    /// The broker speaks another protocol on that port (e.g. PLAINTEXT against a TLS listener).
    Protocol,
    /// librdkafka refused the client settings themselves (an unknown property, an
    /// unreadable CA file).
    Config,
    /// Anything else librdkafka said, or nothing at all (a timeout).
    Other,
}

impl CauseKind {
    /// A wrong credential or certificate does not fix itself: no point waiting for it.
    pub fn is_fatal(self) -> bool {
        matches!(self, CauseKind::Tls | CauseKind::Auth | CauseKind::Config)
    }

    fn label(self) -> &'static str {
        match self {
            CauseKind::Refused => "connection refused",
            CauseKind::Dns => "host name not resolved",
            CauseKind::Tls => "TLS handshake failed",
            CauseKind::Auth => "authentication failed",
            CauseKind::Protocol => {
                "the broker closed the connection during the handshake (is security.protocol right?)"
            }
            CauseKind::Config => "invalid client settings in [kafka.properties]",
            CauseKind::Other => "no answer",
        }
    }
}

/// The cause of a broker connection failure, with librdkafka's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerCause {
    pub kind: CauseKind,
    pub detail: String,
}

impl std::fmt::Display for BrokerCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind.label())
        } else {
            write!(f, "{} ({})", self.kind.label(), self.detail)
        }
    }
}

impl BrokerCause {
    /// Classifies librdkafka's error text.
    pub fn classify(detail: &str) -> BrokerCause {
        let d = detail.to_ascii_lowercase();
        let kind = if d.contains("sasl authentication")
            || d.contains("authentication failed")
            || d.contains("invalid credentials")
        {
            CauseKind::Auth
        } else if d.contains("ssl handshake") || d.contains("certificate") || d.contains("ssl routines") {
            CauseKind::Tls
        } else if d.contains("failed to resolve") || d.contains("name or service not known") || d.contains("resolve") {
            CauseKind::Dns
        } else if d.contains("connection refused") {
            CauseKind::Refused
        } else if d.contains("apiversion") || d.contains("security.protocol") {
            CauseKind::Protocol
        } else {
            CauseKind::Other
        };
        BrokerCause { kind, detail: detail.trim().to_owned() }
    }
}

/// A client context that keeps the most telling error librdkafka reported, so a start that
/// cannot reach Kafka says why. An error that names a cause is not overwritten by a later
/// vaguer one ("all brokers down", timeouts).
#[derive(Clone, Default)]
pub struct LastBrokerError(Arc<Mutex<Option<BrokerCause>>>);

impl LastBrokerError {
    pub fn get(&self) -> Option<BrokerCause> {
        self.0.lock().expect("last broker error").clone()
    }

    fn remember(&self, text: &str) {
        let cause = BrokerCause::classify(text);
        let mut last = self.0.lock().expect("last broker error");
        if cause.kind != CauseKind::Other || last.is_none() {
            *last = Some(cause);
        }
    }
}

impl ProducerContext for LastBrokerError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ClientContext for LastBrokerError {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "kafka client error");
        self.remember(reason);
    }

    /// Connection failures (refused, DNS, TLS, SASL, a disconnect in the handshake) are
    /// logged with the FAIL facility, some at INFO; other lines (configuration warnings, say)
    /// are not causes.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(level = level as i32, fac, message, "librdkafka");
        if fac == "FAIL" || fac == "ERROR" {
            self.remember(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafkas_words_are_classified() {
        let cases = [
            (
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
                CauseKind::Refused,
            ),
            (
                "nohost.invalid:9092/bootstrap: Failed to resolve 'nohost.invalid:9092': Name or service not known",
                CauseKind::Dns,
            ),
            (
                "127.0.0.1:39192/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified",
                CauseKind::Tls,
            ),
            (
                "127.0.0.1:39192/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
                CauseKind::Auth,
            ),
            (
                "127.0.0.1:39192/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)",
                CauseKind::Protocol,
            ),
            (
                "sasl_plaintext://127.0.0.1:39192/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 2ms in state APIVERSION_QUERY)",
                CauseKind::Protocol,
            ),
            ("1/1 brokers are down", CauseKind::Other),
        ];
        for (text, kind) in cases {
            assert_eq!(BrokerCause::classify(text).kind, kind, "{text}");
        }
        assert!(CauseKind::Auth.is_fatal() && CauseKind::Tls.is_fatal() && !CauseKind::Refused.is_fatal());
    }

    #[test]
    fn a_telling_cause_is_not_overwritten_by_a_vague_one() {
        let last = LastBrokerError::default();
        last.error(
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure),
            "x: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        );
        last.error(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
        assert_eq!(last.get().unwrap().kind, CauseKind::Refused);
    }
}
