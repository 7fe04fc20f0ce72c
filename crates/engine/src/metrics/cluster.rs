//! Cluster replicas: streams owned, group membership changes, streams fenced.

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use super::Registrar;
use crate::domain::StreamId;

/// A replica's series (outside a cluster: no streams owned, no changes).
pub struct ClusterMetrics {
    /// Streams this replica owns in its cluster group (0 outside a cluster).
    pub streams_owned: IntGauge,
    /// Group membership changes (`tidemark_cluster_rebalances_total{event}`): slots assigned,
    /// revoked, and lost (taken while this replica was unresponsive).
    pub assigned: IntCounter,
    pub revoked: IntCounter,
    pub lost: IntCounter,
    /// Streams this replica stopped because a newer owner's producer fenced it.
    fenced: IntCounterVec,
}

impl ClusterMetrics {
    pub(super) fn new(reg: &Registrar) -> ClusterMetrics {
        let streams_owned =
            reg.int_gauge("tidemark_cluster_streams_owned", "Streams this replica owns in its cluster group.");
        let rebalances = reg.counter_vec(
            "tidemark_cluster_rebalances_total",
            "Group membership changes of this replica: assigned, revoked, lost (taken while it was unresponsive).",
            &["event"],
        );
        let fenced = reg.counter_vec(
            "tidemark_cluster_fenced_total",
            "Streams this replica stopped because a newer owner's producer fenced it.",
            &["stream"],
        );
        // Every event's series from the start.
        let event = |e: &str| rebalances.with_label_values(&[e]);
        ClusterMetrics {
            streams_owned,
            assigned: event("assigned"),
            revoked: event("revoked"),
            lost: event("lost"),
            fenced,
        }
    }

    /// Counts `stream` stopped because a newer owner fenced it.
    pub fn fenced(&self, stream: &StreamId) {
        self.fenced.with_label_values(&[stream.as_str()]).inc();
    }
}
