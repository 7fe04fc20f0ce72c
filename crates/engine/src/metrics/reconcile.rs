//! Each stream's last `tidemark reconcile`, as its control-topic record says: windows checked,
//! windows that differed, records the vendor added after their windows committed, and when.

use prometheus::IntGaugeVec;

use super::Registrar;

/// The series of the last reconcile per stream (labels: `stream`, a configured stream).
pub struct ReconcileMetrics {
    windows: IntGaugeVec,
    differing: IntGaugeVec,
    late_records: IntGaugeVec,
    at: IntGaugeVec,
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
}
