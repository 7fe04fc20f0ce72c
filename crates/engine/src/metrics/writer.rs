//! Writers, labelled by `writer` (a configured writer id): records by outcome, rejections by
//! field, batch duration, schema-registry errors and consumer lag.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::{Lazy, Registrar};

/// The series of every writer.
pub struct WriterMetrics {
    /// Records by outcome: `saved`, `existing`, `rejected`, `unreadable`, `unmappable`,
    /// `superseded`, `skipped`.
    records: IntCounterVec,
    /// Records the target refused, by the target's field name: one of the fields the writer
    /// sent (a bounded set), `other` for a name it did not send, `none` when it named none.
    rejections: IntCounterVec,
    batch_duration: HistogramVec,
    /// Batches a writer read again because the schema registry did not answer.
    registry_errors: IntCounterVec,
    /// Records (and transaction markers) between a writer group's committed offsets and each
    /// partition's end, summed over the partitions it holds (a batch in delivery counts).
    lag: IntGaugeVec,
}

impl WriterMetrics {
    pub(super) fn new(reg: &Registrar) -> WriterMetrics {
        let records = reg.counter_vec(
            "tidemark_writer_records_total",
            "Records a writer delivered, by outcome (saved, existing, rejected, unreadable, unmappable, superseded, skipped).",
            &["writer", "outcome"],
        );
        let rejections = reg.counter_vec(
            "tidemark_writer_rejections_total",
            "Records the target refused, by the field it named (a field the writer sent, other, or none).",
            &["writer", "field"],
        );
        let registry_errors = reg.counter_vec(
            "tidemark_writer_registry_errors_total",
            "Batches a writer read again because the schema registry did not give a record's schema.",
            &["writer"],
        );
        let batch_duration = reg.histogram_vec(
            "tidemark_writer_batch_duration_seconds",
            "A writer's batch, from first record to committed offsets.",
            vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
            &["writer"],
        );
        let lag = reg.int_gauge_vec(
            "tidemark_writer_lag_records",
            "Records (and transaction markers) after a writer group's committed offsets on the partitions it holds.",
            &["writer"],
        );
        WriterMetrics { records, rejections, batch_duration, registry_errors, lag }
    }

    /// `writer`'s series; its main outcomes (saved, existing, rejected) and registry errors at
    /// zero, so "settled nothing" is a 0, not no data.
    pub fn handles(&self, writer: &str) -> WriterHandles {
        let outcome = |o: &str| self.records.with_label_values(&[writer, o]);
        WriterHandles {
            writer: writer.to_owned(),
            saved: outcome("saved"),
            existing: outcome("existing"),
            rejected: outcome("rejected"),
            registry_errors: self.registry_errors.with_label_values(&[writer]),
            lag: Lazy::of(&self.lag, &[writer]),
            batch_duration: Lazy::of(&self.batch_duration, &[writer]),
            records: self.records.clone(),
            rejections: self.rejections.clone(),
        }
    }
}

/// One writer's series, resolved when it starts.
pub struct WriterHandles {
    writer: String,
    saved: IntCounter,
    existing: IntCounter,
    rejected: IntCounter,
    /// `tidemark_writer_registry_errors_total`.
    pub registry_errors: IntCounter,
    /// Made at the first measurement.
    lag: Lazy<IntGauge>,
    /// Made at the first batch's end.
    batch_duration: Lazy<Histogram>,
    records: IntCounterVec,
    rejections: IntCounterVec,
}

impl WriterHandles {
    /// Counts `n` records settled with `outcome` (one of a fixed set of words).
    pub fn add_records(&self, outcome: &str, n: u64) {
        match outcome {
            "saved" => self.saved.inc_by(n),
            "existing" => self.existing.inc_by(n),
            "rejected" => self.rejected.inc_by(n),
            other => self.records.with_label_values(&[self.writer.as_str(), other]).inc_by(n),
        }
    }

    /// Counts a record the target refused, by the field it named (see [`WriterMetrics`]).
    pub fn rejected_field(&self, field: &str) {
        self.rejections.with_label_values(&[self.writer.as_str(), field]).inc();
    }

    /// The batch duration histogram.
    pub fn batch_duration(&self) -> &Histogram {
        self.batch_duration.get()
    }

    /// `tidemark_writer_lag_records`.
    pub fn lag(&self) -> &IntGauge {
        self.lag.get()
    }
}
