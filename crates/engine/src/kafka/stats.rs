//! librdkafka's producer statistics, turned into metrics: queue depth, broker round trips, errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;

use crate::metrics::Metrics;

/// The producer's context: forwards librdkafka's periodic statistics to the metrics.
pub struct StatsContext {
    metrics: Option<Arc<Metrics>>,
    /// Last cumulative error count per broker, to turn librdkafka's totals into increments.
    last_errors: Mutex<HashMap<String, u64>>,
}

impl StatsContext {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        StatsContext { metrics, last_errors: Mutex::new(HashMap::new()) }
    }
}

impl ClientContext for StatsContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::outage::client_error(&error, reason);
    }

    fn stats(&self, stats: Statistics) {
        // A broker UP is Kafka answering: the cheapest sign an outage is over, even when idle.
        if stats.brokers.values().any(|b| b.state == "UP") {
            super::outage::reachable();
        }
        let Some(m) = &self.metrics else { return };
        m.producer.queue_messages.set(stats.msg_cnt as i64);
        m.producer.queue_bytes.set(stats.msg_size as i64);
        let mut last = self.last_errors.lock().expect("stats lock");
        for broker in stats.brokers.values() {
            // Node ids label brokers: a bounded set, unlike host names with ports.
            if broker.nodeid < 0 {
                continue; // bootstrap pseudo-brokers
            }
            let id = broker.nodeid.to_string();
            let total = broker.txerrs + broker.rxerrs + broker.req_timeouts;
            let before = last.insert(id.clone(), total).unwrap_or(0);
            let rtt = broker.rtt.as_ref().map(|rtt| rtt.avg as f64 / 1_000_000.0);
            m.producer.broker(&id, rtt, total.saturating_sub(before));
        }
    }
}

impl ProducerContext for StatsContext {
    type DeliveryOpaque = ();
    // Delivery failures surface as commit_transaction errors, which abort the transaction.
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}
