//! Vendor API requests, labelled by `source` (a configured source id), and the handles a
//! stream's reader holds so a page looks nothing up.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use super::{Lazy, Registrar};

/// The vendor API series of every source.
pub struct ApiMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    retries: IntCounterVec,
}

impl ApiMetrics {
    pub(super) fn new(reg: &Registrar) -> ApiMetrics {
        let retries = reg.counter_vec(
            "tidemark_request_retries_total",
            "Vendor API requests retried after a transient error.",
            &["source"],
        );
        let requests = reg.counter_vec(
            "tidemark_api_requests_total",
            "Vendor API requests by outcome (ok, retryable, throttled, fatal).",
            &["source", "outcome"],
        );
        let errors = reg.counter_vec(
            "tidemark_api_errors_total",
            "Vendor API errors by vendor or transport code.",
            &["source", "code"],
        );
        let duration = reg.histogram_vec(
            "tidemark_api_request_duration_seconds",
            "Vendor API request latency.",
            vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            &["source"],
        );
        ApiMetrics { requests, errors, duration, retries }
    }

    /// `source`'s series, its request outcomes and retries at zero.
    pub fn handles(&self, source: &str) -> ApiHandles {
        let outcome = |o: &str| self.requests.with_label_values(&[source, o]);
        ApiHandles {
            source: source.to_owned(),
            duration: Lazy::of(&self.duration, &[source]),
            ok: outcome("ok"),
            retryable: outcome("retryable"),
            throttled: outcome("throttled"),
            quota_exhausted: outcome("quota_exhausted"),
            fatal: outcome("fatal"),
            retries: self.retries.with_label_values(&[source]),
            errors: self.errors.clone(),
        }
    }
}

/// One source's series, resolved once.
pub struct ApiHandles {
    source: String,
    /// `tidemark_api_requests_total` by outcome.
    pub ok: IntCounter,
    pub retryable: IntCounter,
    pub throttled: IntCounter,
    pub quota_exhausted: IntCounter,
    pub fatal: IntCounter,
    /// `tidemark_request_retries_total`.
    pub retries: IntCounter,
    /// Made at the first request's answer.
    duration: Lazy<Histogram>,
    errors: IntCounterVec,
}

impl ApiHandles {
    /// The request latency histogram.
    pub fn duration(&self) -> &Histogram {
        self.duration.get()
    }

    /// Counts an error with `code` (a vendor or transport code: a bounded set).
    pub fn error(&self, code: &str) {
        self.errors.with_label_values(&[self.source.as_str(), code]).inc();
    }
}
