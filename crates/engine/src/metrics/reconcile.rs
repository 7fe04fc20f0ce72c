//! Each stream's and each writer's last `tidemark reconcile`, as its control-topic record says:
//! windows (or records) checked, what differed, records the vendor added after their windows
//! committed, and when.

use prometheus::IntGaugeVec;

use super::Registrar;

/// The series of the last reconcile per stream (labels: `stream`, a configured stream) and
/// per writer (`writer`, a configured writer).
pub struct ReconcileMetrics {
    windows: IntGaugeVec,
    differing: IntGaugeVec,
    late_records: IntGaugeVec,
    at: IntGaugeVec,
    writer_records: IntGaugeVec,
    writer_differing: IntGaugeVec,
    writer_dead_lettered: IntGaugeVec,
    writer_at: IntGaugeVec,
}

impl ReconcileMetrics {
    pub(super) fn new(reg: &Registrar) -> ReconcileMetrics {
        ReconcileMetrics {
            windows: reg.int_gauge_vec(
                "tidemark_reconcile_windows",
                "Windows the stream's last reconcile checked against the vendor and Kafka.",
                &["stream"],
            ),
            differing: reg.int_gauge_vec(
                "tidemark_reconcile_differing_windows",
                "Windows the stream's last reconcile found differing (vendor total changed, missing from Kafka, unchecked).",
                &["stream"],
            ),
            late_records: reg.int_gauge_vec(
                "tidemark_reconcile_late_records",
                "Records the vendor counted in committed windows beyond what was read when they committed, at the stream's last reconcile.",
                &["stream"],
            ),
            at: reg.int_gauge_vec(
                "tidemark_reconcile_last_run_timestamp_seconds",
                "When the stream's last reconcile ran (Unix seconds).",
                &["stream"],
            ),
            writer_records: reg.int_gauge_vec(
                "tidemark_writer_reconcile_records",
                "Records of its topic the writer's last reconcile checked against its target.",
                &["writer"],
            ),
            writer_differing: reg.int_gauge_vec(
                "tidemark_writer_reconcile_differing_records",
                "Records the writer's last reconcile found missing from the target or different there, and not dead-lettered.",
                &["writer"],
            ),
            writer_dead_lettered: reg.int_gauge_vec(
                "tidemark_writer_reconcile_dead_lettered_records",
                "Records the writer's last reconcile found in its dead-letter topic instead of the target.",
                &["writer"],
            ),
            writer_at: reg.int_gauge_vec(
                "tidemark_writer_reconcile_last_run_timestamp_seconds",
                "When the writer's last reconcile ran (Unix seconds).",
                &["writer"],
            ),
        }
    }

    /// Sets `stream`'s series from its last reconcile.
    pub fn observe(&self, stream: &str, windows: u64, differing: u64, late_records: u64, at_seconds: i64) {
        let set = |g: &IntGaugeVec, v: i64| g.with_label_values(&[stream]).set(v);
        set(&self.windows, windows as i64);
        set(&self.differing, differing as i64);
        set(&self.late_records, late_records as i64);
        set(&self.at, at_seconds);
    }

    /// Sets `writer`'s series from its last reconcile.
    pub fn observe_writer(&self, writer: &str, records: u64, differing: u64, dead_lettered: u64, at_seconds: i64) {
        let set = |g: &IntGaugeVec, v: i64| g.with_label_values(&[writer]).set(v);
        set(&self.writer_records, records as i64);
        set(&self.writer_differing, differing as i64);
        set(&self.writer_dead_lettered, dead_lettered as i64);
        set(&self.writer_at, at_seconds);
    }
}
