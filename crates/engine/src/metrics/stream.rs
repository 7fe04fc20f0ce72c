//! The per-stream loop's metrics, labelled by `stream` (a configured stream id), and the
//! handles a running stream holds so its loop looks nothing up per page or window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::{Lazy, Metrics, Registrar, TransactionHandles};
use crate::domain::{StreamId, Watermark};

/// The values of `tidemark_stream_state`'s `state` label.
pub const STREAM_STATES: &[&str] = &["catching_up", "caught_up", "stopped", "paused"];

/// At most this many field names a stream label `tidemark_schema_drift_fields_total`; any
/// later unknown field is counted as `other`, so a vendor sending random keys cannot grow the
/// series (or the names this process remembers) without bound.
pub const DRIFT_FIELDS: usize = 50;
/// The `field` label of the unknown fields past [`DRIFT_FIELDS`].
pub const DRIFT_OTHER: &str = "other";

/// Whether this process had seen an unknown field of a stream before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftSeen {
    /// Already counted (by name, or as `other` once `other` was first used).
    Before,
    /// A new name with its own series.
    New,
    /// The first field past [`DRIFT_FIELDS`]: it and all later new ones count as `other`.
    FirstOther,
}

/// The unknown field names of one stream that have their own series.
#[derive(Debug, Default)]
struct DriftNames {
    named: BTreeSet<String>,
    other: bool,
}

/// What a stream is doing, as `tidemark_stream_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    CatchingUp,
    CaughtUp,
    Stopped,
    Paused,
}

impl StreamState {
    /// Its `state` label: its place in [`STREAM_STATES`].
    fn index(self) -> usize {
        match self {
            StreamState::CatchingUp => 0,
            StreamState::CaughtUp => 1,
            StreamState::Stopped => 2,
            StreamState::Paused => 3,
        }
    }
}

/// A stream's committed watermark, read by the lag collector at each scrape.
type WatermarkSlot = Arc<Mutex<Watermark>>;

/// The per-stream series of every stream.
pub struct StreamMetrics {
    records: IntCounterVec,
    bytes: IntCounterVec,
    records_unchanged: IntCounterVec,
    tombstones: IntCounterVec,
    dead_letters: IntCounterVec,
    windows: IntCounterVec,
    pageset_refetches: IntCounterVec,
    windows_spilled: IntCounterVec,
    step_retries: IntCounterVec,
    watermark_hashes_dropped: IntCounterVec,
    /// Records a lookback re-read found that were not there when their time was first read.
    late_records: IntCounterVec,
    /// How long after their own time (the endpoint's `window_field`) late records appeared.
    late_delay: HistogramVec,
    /// Size of each stream's last committed watermark record, against `watermark_record_limit`.
    watermark_record_bytes: IntGaugeVec,
    pub watermark_record_limit: IntGauge,
    state: IntGaugeVec,
    /// The most lag a healthy caught-up stream shows (settle + poll interval + a minute to
    /// read and commit): alerts compare the lag with it.
    lag_bound: GaugeVec,
    /// When each stream last met an error, labelled with its code (one series per stream).
    last_error: GaugeVec,
    /// The code each stream's last-error series carries, so the next error replaces it.
    last_error_codes: Mutex<BTreeMap<StreamId, String>>,
    /// The committed watermark of each stream this process runs, for the lag at scrape time.
    watermarks: Arc<Mutex<BTreeMap<StreamId, WatermarkSlot>>>,
    /// Records with a top-level field their schema lacks, by stream and (bounded) field.
    drift: IntCounterVec,
    /// Each stream's field names in `drift`: kept for the process, so each is logged once.
    drift_names: Mutex<BTreeMap<StreamId, DriftNames>>,
}

impl StreamMetrics {
    pub(super) fn new(reg: &Registrar) -> StreamMetrics {
        let counter = |name: &str, help: &str| reg.counter_vec(name, help, &["stream"]);
        let records = counter("tidemark_records_total", "Records committed to Kafka.");
        let bytes = counter("tidemark_bytes_total", "Bytes of record values committed to Kafka.");
        let step_retries =
            counter("tidemark_step_retries_total", "Windows (or snapshots) retried after a failure, by stream.");
        let records_unchanged = counter(
            "tidemark_records_unchanged_total",
            "Records read again inside the lookback span and skipped because they had not changed.",
        );
        let tombstones =
            counter("tidemark_tombstones_total", "Tombstones committed for records gone from a snapshot source.");
        let windows = counter("tidemark_windows_total", "Windows (or snapshots) committed.");
        let dead_letters = counter(
            "tidemark_dead_letters_total",
            "Records sent to the dead-letter topic because they do not fit their schema.",
        );
        let watermark_record_bytes = reg.int_gauge_vec(
            "tidemark_watermark_record_bytes",
            "Size of the stream's last committed watermark record (its lookback hashes grow it).",
            &["stream"],
        );
        let watermark_record_limit = reg.int_gauge(
            "tidemark_watermark_record_limit_bytes",
            "kafka.watermark_max_bytes: past it, the oldest lookback hashes are forgotten.",
        );
        let watermark_hashes_dropped = counter(
            "tidemark_watermark_hashes_dropped_total",
            "Lookback hashes forgotten to keep the watermark record under kafka.watermark_max_bytes (their records may be emitted again if re-read unchanged).",
        );
        let state = reg.int_gauge_vec(
            "tidemark_stream_state",
            "1 for the state each stream is in (catching_up, caught_up, stopped).",
            &["stream", "state"],
        );
        let pageset_refetches =
            counter("tidemark_pageset_refetches_total", "Windows fetched again because their pages did not add up.");
        let windows_spilled = counter(
            "tidemark_windows_spilled_total",
            "Windows held on disk until they committed because they did not fit max_buffered_bytes.",
        );
        let lag_bound = reg.gauge_vec(
            "tidemark_stream_lag_bound_seconds",
            "The most watermark lag a healthy caught-up stream shows: settle + poll_interval + 60 s to read and commit (a snapshot stream: poll_interval + 60 s).",
            &["stream"],
        );
        let last_error = reg.gauge_vec(
            "tidemark_stream_last_error_timestamp_seconds",
            "When the stream last met an error (a vendor or transport code, or kafka), by that error's code; one series per stream.",
            &["stream", "code"],
        );
        let drift = reg.counter_vec(
            "tidemark_schema_drift_fields_total",
            "Records carrying a top-level field their schema lacks (vendor drift), by stream and field; at most 50 field names a stream, the rest as `other`.",
            &["stream", "field"],
        );
        let late_records = counter(
            "tidemark_late_records_total",
            "Records a lookback re-read found new with a time (the endpoint's window_field) before the watermark they were re-read behind: data the vendor showed late.",
        );
        let late_delay = reg.histogram_vec(
            "tidemark_late_record_delay_seconds",
            "How long after its own time (the endpoint's window_field) a late record was found by a lookback re-read.",
            vec![60.0, 300.0, 900.0, 1800.0, 3600.0, 3.0 * 3600.0, 6.0 * 3600.0, 12.0 * 3600.0, 86_400.0],
            &["stream"],
        );
        let watermarks = Arc::new(Mutex::new(BTreeMap::new()));
        reg.add_collector(LagCollector::new(watermarks.clone()));
        StreamMetrics {
            records,
            bytes,
            records_unchanged,
            tombstones,
            dead_letters,
            windows,
            pageset_refetches,
            windows_spilled,
            step_retries,
            watermark_hashes_dropped,
            late_records,
            late_delay,
            watermark_record_bytes,
            watermark_record_limit,
            state,
            lag_bound,
            last_error,
            last_error_codes: Mutex::new(BTreeMap::new()),
            watermarks,
            drift,
            drift_names: Mutex::new(BTreeMap::new()),
        }
    }

    /// The drift counter `field` of `stream` counts under (its own name for the first
    /// [`DRIFT_FIELDS`] names, else `other`), and whether it is news to this process.
    pub fn drift_field(&self, stream: &StreamId, field: &str) -> (IntCounter, DriftSeen) {
        let mut all = self.drift_names.lock().expect("metrics lock");
        let names = all.entry(stream.clone()).or_default();
        let (label, seen) = if names.named.contains(field) {
            (field, DriftSeen::Before)
        } else if names.named.len() < DRIFT_FIELDS {
            names.named.insert(field.to_owned());
            (field, DriftSeen::New)
        } else if names.other {
            (DRIFT_OTHER, DriftSeen::Before)
        } else {
            names.other = true;
            (DRIFT_OTHER, DriftSeen::FirstOther)
        };
        (self.drift.with_label_values(&[stream.as_str(), label]), seen)
    }

    /// The unknown fields of `stream` this process counted by name, sorted, then `other` if
    /// any were counted as that.
    pub fn drift_fields(&self, stream: &StreamId) -> Vec<String> {
        let all = self.drift_names.lock().expect("metrics lock");
        let Some(names) = all.get(stream) else { return Vec::new() };
        names.named.iter().cloned().chain(names.other.then(|| DRIFT_OTHER.to_owned())).collect()
    }

    /// Records a stream's committed watermark; lag is computed from it at scrape time.
    pub fn set_watermark(&self, stream: &StreamId, wm: Watermark) {
        self.watermark_slot(stream, wm);
    }

    /// The stream's watermark slot (made if the stream has none), now holding `wm`.
    fn watermark_slot(&self, stream: &StreamId, wm: Watermark) -> WatermarkSlot {
        let slot = self.watermarks.lock().expect("metrics lock").entry(stream.clone()).or_default().clone();
        *slot.lock().expect("metrics lock") = wm;
        slot
    }

    /// The counter of windows a stream fetched again because their pages did not add up.
    pub fn pageset_refetches(&self, stream: &StreamId) -> IntCounter {
        self.pageset_refetches.with_label_values(&[stream.as_str()])
    }

    /// The counter of `stream`'s windows held on disk because they did not fit the byte budget.
    pub fn windows_spilled(&self, stream: &StreamId) -> IntCounter {
        self.windows_spilled.with_label_values(&[stream.as_str()])
    }

    /// Notes that `stream` just met an error with `code` (a vendor or transport code, or
    /// `kafka`); the stream's previous code's series goes, so each stream has one.
    pub fn error(&self, stream: &StreamId, code: &str) {
        let mut codes = self.last_error_codes.lock().expect("metrics lock");
        if let Some(previous) = codes.insert(stream.clone(), code.to_owned()) {
            let _ = self.last_error.remove_label_values(&[stream.as_str(), &previous]);
        }
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        self.last_error.with_label_values(&[stream.as_str(), code]).set(now);
    }

    /// Drops a stream's state, lag, lag bound, watermark-size and last-error series.
    pub(super) fn forget(&self, stream: &StreamId) {
        for s in STREAM_STATES {
            let _ = self.state.remove_label_values(&[stream.as_str(), s]);
        }
        let _ = self.watermark_record_bytes.remove_label_values(&[stream.as_str()]);
        let _ = self.lag_bound.remove_label_values(&[stream.as_str()]);
        if let Some(previous) = self.last_error_codes.lock().expect("metrics lock").remove(stream) {
            let _ = self.last_error.remove_label_values(&[stream.as_str(), &previous]);
        }
        self.watermarks.lock().expect("metrics lock").remove(stream);
    }
}

/// One running stream's series, resolved when it starts: its loop counts records, windows and
/// transactions and sets its state with no label lookups. Made anew for each run of a stream
/// (a stream handed to another replica has its series dropped; a later run shows them again).
pub struct StreamHandles {
    metrics: Arc<Metrics>,
    id: StreamId,
    pub records: IntCounter,
    pub bytes: IntCounter,
    pub unchanged: IntCounter,
    pub tombstones: IntCounter,
    pub dead_letters: IntCounter,
    pub windows: IntCounter,
    pub step_retries: IntCounter,
    pub hashes_dropped: IntCounter,
    pub late_records: IntCounter,
    pub late_delay: Histogram,
    /// `tidemark_transactions_total` by outcome.
    pub transactions: TransactionHandles,
    /// Made at the first commit, as the state series at the first state.
    watermark_record_bytes: Lazy<IntGauge>,
    state: OnceLock<[IntGauge; 4]>,
    watermark: WatermarkSlot,
}

impl StreamHandles {
    /// Starts `stream`'s series: its watermark (for the lag), its lag bound, and its counters
    /// and the transaction outcomes at zero, so dashboards and alerts see them before the first
    /// event (Prometheus cannot `rate()` a series that does not exist yet).
    pub fn start(metrics: &Arc<Metrics>, stream: &StreamId, lag_bound: Duration, wm: Watermark) -> Self {
        let m = &metrics.stream;
        let s = [stream.as_str()];
        let watermark = m.watermark_slot(stream, wm);
        m.lag_bound.with_label_values(&s).set(lag_bound.as_secs_f64());
        // Counted by the stream's reader, which holds its own handle.
        m.pageset_refetches.with_label_values(&s).inc_by(0);
        m.windows_spilled.with_label_values(&s).inc_by(0);
        StreamHandles {
            id: stream.clone(),
            records: m.records.with_label_values(&s),
            bytes: m.bytes.with_label_values(&s),
            unchanged: m.records_unchanged.with_label_values(&s),
            tombstones: m.tombstones.with_label_values(&s),
            dead_letters: m.dead_letters.with_label_values(&s),
            windows: m.windows.with_label_values(&s),
            step_retries: m.step_retries.with_label_values(&s),
            hashes_dropped: m.watermark_hashes_dropped.with_label_values(&s),
            late_records: m.late_records.with_label_values(&s),
            late_delay: m.late_delay.with_label_values(&s),
            transactions: metrics.producer.transactions(),
            watermark_record_bytes: Lazy::of(&m.watermark_record_bytes, &s),
            state: OnceLock::new(),
            watermark,
            metrics: metrics.clone(),
        }
    }

    /// Sets the stream's state: 1 for it, 0 for the others.
    pub fn set_state(&self, state: StreamState) {
        let gauges = self.state.get_or_init(|| {
            let m = &self.metrics.stream;
            std::array::from_fn(|i| m.state.with_label_values(&[self.id.as_str(), STREAM_STATES[i]]))
        });
        for (i, g) in gauges.iter().enumerate() {
            g.set(i64::from(i == state.index()));
        }
    }

    /// The size of the stream's last committed watermark record.
    pub fn watermark_record_bytes(&self) -> &IntGauge {
        self.watermark_record_bytes.get()
    }

    /// Records the stream's committed watermark.
    pub fn set_watermark(&self, wm: Watermark) {
        *self.watermark.lock().expect("metrics lock") = wm;
    }

    /// Notes that the stream just met an error with `code` (see [`StreamMetrics::error`]).
    pub fn error(&self, code: &str) {
        self.metrics.stream.error(&self.id, code);
    }
}

/// `tidemark_watermark_lag_seconds{stream}`: now minus the committed watermark, fresh at every scrape.
struct LagCollector {
    watermarks: Arc<Mutex<BTreeMap<StreamId, WatermarkSlot>>>,
    lag: GaugeVec,
    ts: GaugeVec,
    descs: Vec<Desc>,
}

impl LagCollector {
    fn new(watermarks: Arc<Mutex<BTreeMap<StreamId, WatermarkSlot>>>) -> Self {
        let lag = GaugeVec::new(
            Opts::new("tidemark_watermark_lag_seconds", "Seconds between now and the stream's committed watermark."),
            &["stream"],
        )
        .expect("valid metric");
        let ts = GaugeVec::new(
            Opts::new("tidemark_watermark_timestamp_seconds", "The stream's committed watermark as a unix time."),
            &["stream"],
        )
        .expect("valid metric");
        let descs = lag.desc().into_iter().chain(ts.desc()).cloned().collect();
        LagCollector { watermarks, lag, ts, descs }
    }
}

impl Collector for LagCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Utc::now();
        // Only the streams this process runs now: one handed to another replica must not
        // leave a frozen lag behind.
        self.lag.reset();
        self.ts.reset();
        for (stream, slot) in self.watermarks.lock().expect("metrics lock").iter() {
            let wm = *slot.lock().expect("metrics lock");
            let lag = (now - wm).num_milliseconds() as f64 / 1000.0;
            self.lag.with_label_values(&[stream.as_str()]).set(lag.max(0.0));
            self.ts.with_label_values(&[stream.as_str()]).set(wm.timestamp() as f64);
        }
        let mut out = self.lag.collect();
        out.extend(self.ts.collect());
        out
    }
}
