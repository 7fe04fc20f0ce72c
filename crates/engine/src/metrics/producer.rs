//! The Kafka producer: transactions by outcome and their duration, librdkafka's statistics
//! (queue, broker round trips and errors, labelled by broker node id), producers rebuilt, and
//! hanging transactions settled (labelled by topic).

use prometheus::{GaugeVec, Histogram, IntCounter, IntCounterVec, IntGauge};

use super::Registrar;

/// The producer's series.
pub struct ProducerMetrics {
    /// Time to produce and commit one transaction.
    pub transaction_duration: Histogram,
    /// Windows (of all streams) committed in one Kafka transaction.
    pub transaction_windows: Histogram,
    /// librdkafka's `msg_cnt` and `msg_size`.
    pub queue_messages: IntGauge,
    pub queue_bytes: IntGauge,
    broker_rtt: GaugeVec,
    broker_errors: IntCounterVec,
    transactions: IntCounterVec,
    /// Producers thrown away after a failure and made again (Kafka unreachable, fatal errors).
    pub rebuilds: IntCounter,
    hanging_transactions: IntCounterVec,
}

impl ProducerMetrics {
    pub(super) fn new(reg: &Registrar) -> ProducerMetrics {
        let broker_errors = reg.counter_vec(
            "tidemark_kafka_errors_total",
            "Producer request errors and timeouts reported by librdkafka, by broker node id.",
            &["broker"],
        );
        let transaction_duration = reg.histogram(
            "tidemark_transaction_duration_seconds",
            "Time to produce and commit one Kafka transaction.",
            vec![0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        );
        let transaction_windows = reg.histogram(
            "tidemark_transaction_windows",
            "Windows, of all the process's streams, committed together in one Kafka transaction.",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
        );
        let queue_messages = reg.int_gauge(
            "tidemark_kafka_producer_queue_messages",
            "Messages in the producer's queue, not yet acknowledged (librdkafka msg_cnt).",
        );
        let queue_bytes = reg
            .int_gauge("tidemark_kafka_producer_queue_bytes", "Bytes in the producer's queue (librdkafka msg_size).");
        let broker_rtt = reg.gauge_vec(
            "tidemark_kafka_broker_rtt_seconds",
            "Average request round trip to each broker (librdkafka rtt.avg).",
            &["broker"],
        );
        let transactions = reg.counter_vec(
            "tidemark_transactions_total",
            "Kafka transactions by outcome (committed, aborted, fatal).",
            &["outcome"],
        );
        let hanging_transactions = reg.counter_vec(
            "tidemark_hanging_transactions_settled_total",
            "Partitions where a transaction the broker never ended was found at start and settled as committed.",
            &["topic"],
        );
        let rebuilds = reg.counter(
            "tidemark_producer_rebuilds_total",
            "Kafka producers thrown away after a failure (Kafka unreachable, a fatal error) and made again.",
        );
        ProducerMetrics {
            transaction_duration,
            transaction_windows,
            queue_messages,
            queue_bytes,
            broker_rtt,
            broker_errors,
            transactions,
            rebuilds,
            hanging_transactions,
        }
    }

    /// The transaction outcomes' counters, at zero from now on.
    pub fn transactions(&self) -> TransactionHandles {
        let outcome = |o: &str| self.transactions.with_label_values(&[o]);
        TransactionHandles {
            committed: outcome("committed"),
            aborted: outcome("aborted"),
            fatal: outcome("fatal"),
            fenced: outcome("fenced"),
        }
    }

    /// One broker's statistics (`node` is its node id: a bounded set, unlike host names with
    /// ports): its average round trip, if known, and the errors since the last statistics.
    pub fn broker(&self, node: &str, rtt_seconds: Option<f64>, new_errors: u64) {
        if let Some(rtt) = rtt_seconds {
            self.broker_rtt.with_label_values(&[node]).set(rtt);
        }
        self.broker_errors.with_label_values(&[node]).inc_by(new_errors);
    }

    /// Creates `topic`'s count of settled hanging transactions at zero, so a settle shows as
    /// an increase.
    pub fn watch_hanging(&self, topic: &str) {
        self.hanging_transactions.with_label_values(&[topic]).inc_by(0);
    }

    /// Counts a hanging transaction settled in a partition of `topic`.
    pub fn hanging_settled(&self, topic: &str) {
        self.hanging_transactions.with_label_values(&[topic]).inc();
    }
}

/// `tidemark_transactions_total` by outcome, resolved once.
pub struct TransactionHandles {
    pub committed: IntCounter,
    pub aborted: IntCounter,
    pub fatal: IntCounter,
    pub fenced: IntCounter,
}
