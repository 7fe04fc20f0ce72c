//! Prometheus metrics (`tidemark_` prefix, bounded labels) and the `/metrics`, `/healthz`, `/readyz` server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::Utc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::domain::{StreamId, Watermark};

/// The values of `tidemark_stream_state`'s `state` label.
pub const STREAM_STATES: &[&str] = &["catching_up", "caught_up", "stopped", "paused"];

/// Every metric the worker exports.
pub struct Metrics {
    pub registry: Registry,
    pub records: IntCounterVec,
    pub bytes: IntCounterVec,
    pub request_retries: IntCounterVec,
    pub step_retries: IntCounterVec,
    pub transaction_duration: prometheus::Histogram,
    pub kafka_queue_messages: prometheus::IntGauge,
    pub kafka_queue_bytes: prometheus::IntGauge,
    pub kafka_broker_rtt: GaugeVec,
    pub kafka_errors: IntCounterVec,
    pub records_unchanged: IntCounterVec,
    pub tombstones: IntCounterVec,
    pub dead_letters: IntCounterVec,
    stream_state: prometheus::IntGaugeVec,
    pub windows: IntCounterVec,
    pub api_requests: IntCounterVec,
    pub api_errors: IntCounterVec,
    pub api_duration: HistogramVec,
    /// Each credential's vendor bans, for `tidemark_throttled_seconds_total`.
    bans: Arc<Mutex<BTreeMap<String, BanClock>>>,
    /// The most lag a healthy caught-up stream shows (settle + poll interval + a minute to
    /// read and commit): alerts compare the lag with it.
    stream_lag_bound: GaugeVec,
    /// When each stream last met an error, labelled with its code (one series per stream).
    stream_last_error: GaugeVec,
    /// The code each stream's last-error series carries, so the next error replaces it.
    last_error_codes: Mutex<BTreeMap<StreamId, String>>,
    /// 1 while the worker is connected to Kafka and running its streams (as `/readyz`).
    ready_gauge: prometheus::IntGauge,
    /// Producers thrown away after a failure and made again (Kafka unreachable, fatal errors).
    pub producer_rebuilds: prometheus::IntCounter,
    /// Per credential (its sources' ids joined by commas): requests sent, the adaptive
    /// in-flight limit, requests out now, and the configured ceilings.
    pub credential_requests: IntCounterVec,
    pub credential_in_flight_limit: prometheus::IntGaugeVec,
    pub credential_in_flight: prometheus::IntGaugeVec,
    pub credential_max_in_flight: prometheus::IntGaugeVec,
    pub credential_quota: prometheus::IntGaugeVec,
    /// Per credential: the learned request rate, and when a used-up daily quota resets.
    pub credential_rate: prometheus::GaugeVec,
    pub credential_quota_exhausted_until: prometheus::GaugeVec,
    /// A writer's records by outcome: `saved`, `existing`, `rejected`, `unreadable`,
    /// `unmappable`, `superseded`, `skipped`.
    pub writer_records: IntCounterVec,
    /// Records the target refused, by the target's field name: one of the fields the writer
    /// sent (a bounded set), `other` for a name it did not send, `none` when it named none.
    pub writer_rejections: IntCounterVec,
    pub writer_batch_duration: HistogramVec,
    /// Batches a writer read again because the schema registry did not answer.
    pub writer_registry_errors: IntCounterVec,
    /// Records (and transaction markers) between a writer group's committed offsets and each
    /// partition's end, summed over the partitions it holds (a batch in delivery counts).
    pub writer_lag: prometheus::IntGaugeVec,
    /// Streams this replica owns in its cluster group (0 outside a cluster).
    pub cluster_streams_owned: prometheus::IntGauge,
    /// Group membership changes: `assigned`, `revoked`, `lost` (taken while unresponsive).
    pub cluster_rebalances: IntCounterVec,
    /// Streams this replica stopped because a newer owner's producer fenced it.
    pub cluster_fenced: IntCounterVec,
    pub pageset_refetches: IntCounterVec,
    pub transactions: IntCounterVec,
    pub hanging_transactions: IntCounterVec,
    /// Size of each stream's last committed watermark record, against `watermark_record_limit`.
    pub watermark_record_bytes: prometheus::IntGaugeVec,
    pub watermark_record_limit: prometheus::IntGauge,
    pub watermark_hashes_dropped: IntCounterVec,
    watermarks: Arc<Mutex<BTreeMap<StreamId, Watermark>>>,
    ready: AtomicBool,
    /// Streams whose producer cannot be made or failed (replicas): the process is not
    /// connected to Kafka for them.
    kafka_failing: Mutex<std::collections::BTreeSet<StreamId>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let records = counter("tidemark_records_total", "Records committed to Kafka.", &["stream"]);
        let bytes = counter("tidemark_bytes_total", "Bytes of record values committed to Kafka.", &["stream"]);
        let request_retries = counter(
            "tidemark_request_retries_total",
            "Vendor API requests retried after a transient error.",
            &["source"],
        );
        let step_retries = counter(
            "tidemark_step_retries_total",
            "Windows (or snapshots) retried after a failure, by stream.",
            &["stream"],
        );
        let kafka_errors = counter(
            "tidemark_kafka_errors_total",
            "Producer request errors and timeouts reported by librdkafka, by broker node id.",
            &["broker"],
        );
        let transaction_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "tidemark_transaction_duration_seconds",
                "Time to produce and commit one Kafka transaction.",
            )
            .buckets(vec![0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(transaction_duration.clone())).expect("unique metric");
        let kafka_queue_messages = prometheus::IntGauge::new(
            "tidemark_kafka_producer_queue_messages",
            "Messages in the producer's queue, not yet acknowledged (librdkafka msg_cnt).",
        )
        .expect("valid metric");
        registry.register(Box::new(kafka_queue_messages.clone())).expect("unique metric");
        let kafka_queue_bytes = prometheus::IntGauge::new(
            "tidemark_kafka_producer_queue_bytes",
            "Bytes in the producer's queue (librdkafka msg_size).",
        )
        .expect("valid metric");
        registry.register(Box::new(kafka_queue_bytes.clone())).expect("unique metric");
        let kafka_broker_rtt = GaugeVec::new(
            Opts::new(
                "tidemark_kafka_broker_rtt_seconds",
                "Average request round trip to each broker (librdkafka rtt.avg).",
            ),
            &["broker"],
        )
        .expect("valid metric");
        registry.register(Box::new(kafka_broker_rtt.clone())).expect("unique metric");
        let records_unchanged = counter(
            "tidemark_records_unchanged_total",
            "Records read again inside the lookback span and skipped because they had not changed.",
            &["stream"],
        );
        let tombstones = counter(
            "tidemark_tombstones_total",
            "Tombstones committed for records gone from a snapshot source.",
            &["stream"],
        );
        let windows = counter("tidemark_windows_total", "Windows (or snapshots) committed.", &["stream"]);
        let dead_letters = counter(
            "tidemark_dead_letters_total",
            "Records sent to the dead-letter topic because they do not fit their schema.",
            &["stream"],
        );
        let watermark_record_bytes = prometheus::IntGaugeVec::new(
            Opts::new(
                "tidemark_watermark_record_bytes",
                "Size of the stream's last committed watermark record (its lookback hashes grow it).",
            ),
            &["stream"],
        )
        .expect("valid metric");
        registry.register(Box::new(watermark_record_bytes.clone())).expect("unique metric");
        let watermark_record_limit = prometheus::IntGauge::new(
            "tidemark_watermark_record_limit_bytes",
            "kafka.watermark_max_bytes: past it, the oldest lookback hashes are forgotten.",
        )
        .expect("valid metric");
        registry.register(Box::new(watermark_record_limit.clone())).expect("unique metric");
        let watermark_hashes_dropped = counter(
            "tidemark_watermark_hashes_dropped_total",
            "Lookback hashes forgotten to keep the watermark record under kafka.watermark_max_bytes (their records may be emitted again if re-read unchanged).",
            &["stream"],
        );
        let stream_state = prometheus::IntGaugeVec::new(
            Opts::new("tidemark_stream_state", "1 for the state each stream is in (catching_up, caught_up, stopped)."),
            &["stream", "state"],
        )
        .expect("valid metric");
        registry.register(Box::new(stream_state.clone())).expect("unique metric");
        let api_requests = counter(
            "tidemark_api_requests_total",
            "Vendor API requests by outcome (ok, retryable, throttled, fatal).",
            &["source", "outcome"],
        );
        let api_errors =
            counter("tidemark_api_errors_total", "Vendor API errors by vendor or transport code.", &["source", "code"]);
        let pageset_refetches = counter(
            "tidemark_pageset_refetches_total",
            "Windows fetched again because their pages did not add up.",
            &["stream"],
        );
        let transactions = counter(
            "tidemark_transactions_total",
            "Kafka transactions by outcome (committed, aborted, fatal).",
            &["outcome"],
        );
        let hanging_transactions = counter(
            "tidemark_hanging_transactions_settled_total",
            "Partitions where a transaction the broker never ended was found at start and settled as committed.",
            &["topic"],
        );
        let api_duration = HistogramVec::new(
            HistogramOpts::new("tidemark_api_request_duration_seconds", "Vendor API request latency.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["source"],
        )
        .expect("valid metric");
        registry.register(Box::new(api_duration.clone())).expect("unique metric");
        let bans = Arc::new(Mutex::new(BTreeMap::new()));
        registry.register(Box::new(BanCollector::new(bans.clone()))).expect("unique metric");
        let credential_requests = counter(
            "tidemark_credential_requests_total",
            "Vendor API requests sent on a credential (the quota's numerator).",
            &["credential"],
        );
        let gauge = |name: &str, help: &str| {
            let g = prometheus::IntGaugeVec::new(Opts::new(name, help), &["credential"]).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let credential_in_flight_limit = gauge(
            "tidemark_credential_in_flight_limit",
            "The adaptive limit on requests in flight on a credential (grows while the vendor answers well, halves on throttles, timeouts and 5xx).",
        );
        let credential_in_flight = gauge(
            "tidemark_credential_in_flight",
            "Vendor API requests in flight (or waiting for the rate limit) on a credential.",
        );
        let credential_max_in_flight = gauge(
            "tidemark_credential_max_in_flight",
            "The configured ceiling of the in-flight limit (max_in_flight).",
        );
        let credential_quota = gauge(
            "tidemark_credential_quota_requests_per_second",
            "The configured request quota of a credential (requests_per_second).",
        );
        let fgauge = |name: &str, help: &str| {
            let g = prometheus::GaugeVec::new(Opts::new(name, help), &["credential"]).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let credential_rate = fgauge(
            "tidemark_credential_rate_requests_per_second",
            "The request rate a credential may send at now: its quota (times this replica's share), lowered to what the vendor accepted when it throttled, recovering gradually.",
        );
        let credential_quota_exhausted_until = fgauge(
            "tidemark_credential_quota_exhausted_until_timestamp_seconds",
            "When the credential's used-up daily quota resets (Unix seconds); in the past once it has. Compare with time().",
        );
        let writer_records = counter(
            "tidemark_writer_records_total",
            "Records a writer delivered, by outcome (saved, existing, rejected, unreadable, unmappable, superseded, skipped).",
            &["writer", "outcome"],
        );
        let writer_rejections = counter(
            "tidemark_writer_rejections_total",
            "Records the target refused, by the field it named (a field the writer sent, other, or none).",
            &["writer", "field"],
        );
        let writer_registry_errors = counter(
            "tidemark_writer_registry_errors_total",
            "Batches a writer read again because the schema registry did not give a record's schema.",
            &["writer"],
        );
        let writer_batch_duration = HistogramVec::new(
            HistogramOpts::new(
                "tidemark_writer_batch_duration_seconds",
                "A writer's batch, from first record to committed offsets.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["writer"],
        )
        .expect("valid metric");
        registry.register(Box::new(writer_batch_duration.clone())).expect("unique metric");
        let writer_lag = prometheus::IntGaugeVec::new(
            Opts::new(
                "tidemark_writer_lag_records",
                "Records (and transaction markers) after a writer group's committed offsets on the partitions it holds.",
            ),
            &["writer"],
        )
        .expect("valid metric");
        registry.register(Box::new(writer_lag.clone())).expect("unique metric");
        let cluster_streams_owned = prometheus::IntGauge::new(
            "tidemark_cluster_streams_owned",
            "Streams this replica owns in its cluster group.",
        )
        .expect("valid metric");
        registry.register(Box::new(cluster_streams_owned.clone())).expect("unique metric");
        let cluster_rebalances = counter(
            "tidemark_cluster_rebalances_total",
            "Group membership changes of this replica: assigned, revoked, lost (taken while it was unresponsive).",
            &["event"],
        );
        for event in ["assigned", "revoked", "lost"] {
            cluster_rebalances.with_label_values(&[event]).inc_by(0);
        }
        let cluster_fenced = counter(
            "tidemark_cluster_fenced_total",
            "Streams this replica stopped because a newer owner's producer fenced it.",
            &["stream"],
        );
        let stream_lag_bound = GaugeVec::new(
            Opts::new(
                "tidemark_stream_lag_bound_seconds",
                "The most watermark lag a healthy caught-up stream shows: settle + poll_interval + 60 s to read and commit (a snapshot stream: poll_interval + 60 s).",
            ),
            &["stream"],
        )
        .expect("valid metric");
        registry.register(Box::new(stream_lag_bound.clone())).expect("unique metric");
        let stream_last_error = GaugeVec::new(
            Opts::new(
                "tidemark_stream_last_error_timestamp_seconds",
                "When the stream last met an error (a vendor or transport code, or kafka), by that error's code; one series per stream.",
            ),
            &["stream", "code"],
        )
        .expect("valid metric");
        registry.register(Box::new(stream_last_error.clone())).expect("unique metric");
        let ready_gauge = prometheus::IntGauge::new(
            "tidemark_ready",
            "1 while the process is connected to Kafka and running (what /readyz answers), else 0.",
        )
        .expect("valid metric");
        registry.register(Box::new(ready_gauge.clone())).expect("unique metric");
        let producer_rebuilds = prometheus::IntCounter::new(
            "tidemark_producer_rebuilds_total",
            "Kafka producers thrown away after a failure (Kafka unreachable, a fatal error) and made again.",
        )
        .expect("valid metric");
        registry.register(Box::new(producer_rebuilds.clone())).expect("unique metric");
        let start_time = prometheus::Gauge::new(
            "tidemark_process_start_time_seconds",
            "When this process started, as a unix time (a crash loop shows as changes).",
        )
        .expect("valid metric");
        start_time.set(Utc::now().timestamp() as f64);
        registry.register(Box::new(start_time)).expect("unique metric");
        let watermarks = Arc::new(Mutex::new(BTreeMap::new()));
        registry.register(Box::new(LagCollector::new(watermarks.clone()))).expect("unique metric");
        Arc::new(Metrics {
            registry,
            records,
            bytes,
            request_retries,
            step_retries,
            transaction_duration,
            kafka_queue_messages,
            kafka_queue_bytes,
            kafka_broker_rtt,
            kafka_errors,
            records_unchanged,
            tombstones,
            dead_letters,
            stream_state,
            windows,
            api_requests,
            api_errors,
            api_duration,
            bans,
            stream_lag_bound,
            stream_last_error,
            last_error_codes: Mutex::new(BTreeMap::new()),
            ready_gauge,
            producer_rebuilds,
            credential_requests,
            credential_in_flight_limit,
            credential_in_flight,
            credential_max_in_flight,
            credential_quota,
            credential_rate,
            credential_quota_exhausted_until,
            writer_records,
            writer_rejections,
            writer_batch_duration,
            writer_registry_errors,
            writer_lag,
            cluster_streams_owned,
            cluster_rebalances,
            cluster_fenced,
            pageset_refetches,
            transactions,
            hanging_transactions,
            watermark_record_bytes,
            watermark_record_limit,
            watermark_hashes_dropped,
            watermarks,
            ready: AtomicBool::new(false),
            kafka_failing: Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// Records a stream's committed watermark; lag is computed from it at scrape time.
    pub fn set_watermark(&self, stream: &StreamId, wm: Watermark) {
        self.watermarks.lock().expect("metrics lock").insert(stream.clone(), wm);
    }

    /// Creates a stream's and its source's series at zero, so dashboards and alerts see them
    /// before the first event (Prometheus cannot `rate()` a series that does not exist yet).
    pub fn init_stream(&self, stream: &StreamId, source: &str, lag_bound: std::time::Duration) {
        let s = [stream.as_str()];
        for c in [
            &self.records,
            &self.bytes,
            &self.records_unchanged,
            &self.tombstones,
            &self.dead_letters,
            &self.windows,
            &self.pageset_refetches,
            &self.step_retries,
            &self.watermark_hashes_dropped,
        ] {
            c.with_label_values(&s).inc_by(0);
        }
        self.request_retries.with_label_values(&[source]).inc_by(0);
        self.stream_lag_bound.with_label_values(&s).set(lag_bound.as_secs_f64());
        for outcome in ["ok", "retryable", "throttled", "quota_exhausted", "fatal"] {
            self.api_requests.with_label_values(&[source, outcome]).inc_by(0);
        }
        for outcome in ["committed", "aborted", "fatal", "fenced"] {
            self.transactions.with_label_values(&[outcome]).inc_by(0);
        }
    }

    /// Sets a credential's gauges: limit, in flight, and the configured ceilings.
    pub fn set_credential(&self, credential: &str, limit: u32, in_flight: u32, max_in_flight: u32, quota: u32) {
        let c = [credential];
        self.credential_in_flight_limit.with_label_values(&c).set(i64::from(limit));
        self.credential_in_flight.with_label_values(&c).set(i64::from(in_flight));
        self.credential_max_in_flight.with_label_values(&c).set(i64::from(max_in_flight));
        self.credential_quota.with_label_values(&c).set(i64::from(quota));
        self.bans.lock().expect("metrics lock").entry(credential.to_owned()).or_default();
    }

    /// Notes that `credential` is banned until `until` (a ban that ends later than the one
    /// running, if any): the time counts as it passes, once however many requests met it.
    /// Notes that `credential`'s daily quota is used up until `until`.
    pub fn quota_exhausted_until(&self, credential: &str, until: chrono::DateTime<chrono::Utc>) {
        self.credential_quota_exhausted_until.with_label_values(&[credential]).set(until.timestamp() as f64);
    }

    pub fn banned_until(&self, credential: &str, until: Instant) {
        let now = Instant::now();
        let mut bans = self.bans.lock().expect("metrics lock");
        let clock = bans.entry(credential.to_owned()).or_default();
        match clock.current {
            Some((start, end)) if end > now => clock.current = Some((start, end.max(until))),
            Some((start, end)) => {
                clock.done += (end - start).as_secs_f64();
                clock.current = Some((now, until));
            }
            None => clock.current = Some((now, until)),
        }
    }

    /// Drops a stream's state, lag and watermark-size series: another replica owns it now
    /// and reports them.
    pub fn forget_stream(&self, stream: &StreamId) {
        for s in STREAM_STATES {
            let _ = self.stream_state.remove_label_values(&[stream.as_str(), s]);
        }
        let _ = self.watermark_record_bytes.remove_label_values(&[stream.as_str()]);
        let _ = self.stream_lag_bound.remove_label_values(&[stream.as_str()]);
        self.forget_error(stream);
        self.set_kafka_failing(stream, false);
        self.watermarks.lock().expect("metrics lock").remove(stream);
    }

    /// Sets a stream's state: `catching_up`, `caught_up` or `stopped`.
    pub fn set_stream_state(&self, stream: &StreamId, state: &str) {
        for s in STREAM_STATES {
            self.stream_state.with_label_values(&[stream.as_str(), s]).set((*s == state) as i64);
        }
    }

    /// Notes that `stream` just met an error with `code` (a vendor or transport code, or
    /// `kafka`); the stream's previous code's series goes, so each stream has one.
    pub fn stream_error(&self, stream: &StreamId, code: &str) {
        let mut codes = self.last_error_codes.lock().expect("metrics lock");
        if let Some(previous) = codes.insert(stream.clone(), code.to_owned()) {
            let _ = self.stream_last_error.remove_label_values(&[stream.as_str(), &previous]);
        }
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        self.stream_last_error.with_label_values(&[stream.as_str(), code]).set(now);
    }

    fn forget_error(&self, stream: &StreamId) {
        if let Some(previous) = self.last_error_codes.lock().expect("metrics lock").remove(stream) {
            let _ = self.stream_last_error.remove_label_values(&[stream.as_str(), &previous]);
        }
    }

    /// Marks the worker ready: connected to Kafka and watermarks loaded.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.ready_gauge.set(i64::from(self.is_ready()));
    }

    /// Ready, and no stream is waiting for its producer.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.kafka_failing.lock().expect("metrics lock").is_empty()
    }

    /// Notes whether `stream`'s producer (a replica's, one per stream) is failing. While any
    /// is, the process is not ready; the first failure after none counts one rebuild, so a
    /// Kafka outage counts once however many streams it interrupts.
    pub fn set_kafka_failing(&self, stream: &StreamId, failing: bool) {
        let mut set = self.kafka_failing.lock().expect("metrics lock");
        if failing {
            if set.is_empty() {
                self.producer_rebuilds.inc();
            }
            set.insert(stream.clone());
        } else {
            set.remove(stream);
        }
        drop(set);
        self.ready_gauge.set(i64::from(self.is_ready()));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
    /// Returns the bound address (useful with port 0).
    pub async fn serve(self: &Arc<Self>, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.render() }))
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(|State(m): State<Arc<Metrics>>| async move {
                    if m.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }),
            )
            .with_state(self.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
        Ok(bound)
    }
}

/// `tidemark_watermark_lag_seconds{stream}`: now minus the committed watermark, fresh at every scrape.
struct LagCollector {
    watermarks: Arc<Mutex<BTreeMap<StreamId, Watermark>>>,
    lag: GaugeVec,
    ts: GaugeVec,
    descs: Vec<Desc>,
}

impl LagCollector {
    fn new(watermarks: Arc<Mutex<BTreeMap<StreamId, Watermark>>>) -> Self {
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
        for (stream, wm) in self.watermarks.lock().expect("metrics lock").iter() {
            let lag = (now - *wm).num_milliseconds() as f64 / 1000.0;
            self.lag.with_label_values(&[stream.as_str()]).set(lag.max(0.0));
            self.ts.with_label_values(&[stream.as_str()]).set(wm.timestamp() as f64);
        }
        let mut out = self.lag.collect();
        out.extend(self.ts.collect());
        out
    }
}

/// A credential's banned time: bans that ended, and the one running (start, end).
#[derive(Default)]
struct BanClock {
    done: f64,
    current: Option<(Instant, Instant)>,
}

impl BanClock {
    fn seconds(&self, now: Instant) -> f64 {
        self.done
            + self.current.map_or(0.0, |(start, end)| (end.min(now).saturating_duration_since(start)).as_secs_f64())
    }
}

/// `tidemark_throttled_seconds_total{credential}`: banned seconds up to the scrape, so a rate
/// is the share of time banned and never above 1.
struct BanCollector {
    bans: Arc<Mutex<BTreeMap<String, BanClock>>>,
    template: prometheus::CounterVec,
}

impl BanCollector {
    fn new(bans: Arc<Mutex<BTreeMap<String, BanClock>>>) -> Self {
        BanCollector { bans, template: Self::family() }
    }

    fn family() -> prometheus::CounterVec {
        prometheus::CounterVec::new(
            Opts::new(
                "tidemark_throttled_seconds_total",
                "Seconds a credential was banned by its vendor, counted as they pass and once however many requests met the ban.",
            ),
            &["credential"],
        )
        .expect("valid metric")
    }
}

impl Collector for BanCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        let out = Self::family();
        for (credential, clock) in self.bans.lock().expect("metrics lock").iter() {
            out.with_label_values(&[credential.as_str()]).inc_by(clock.seconds(now));
        }
        out.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_has_one_last_error_series_the_latest_code() {
        let m = Metrics::new();
        let (a, b) = (StreamId::parse("s/a").unwrap(), StreamId::parse("s/b").unwrap());
        m.stream_error(&a, "wdt:-1");
        m.stream_error(&b, "http_503");
        m.stream_error(&a, "kafka");
        let text = m.render();
        let lines: Vec<&str> =
            text.lines().filter(|l| l.starts_with("tidemark_stream_last_error_timestamp_seconds{")).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains(r#"code="kafka",stream="s/a""#)), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains(r#"code="http_503",stream="s/b""#)), "{lines:?}");
        m.forget_stream(&a);
        assert!(!m.render().contains(r#"stream="s/a""#));
    }

    #[test]
    fn ready_is_a_series_as_well_as_the_endpoint() {
        let m = Metrics::new();
        assert!(m.render().lines().any(|l| l == "tidemark_ready 0"));
        m.set_ready(true);
        assert!(m.render().lines().any(|l| l == "tidemark_ready 1"));
    }

    fn value(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn banned_time_counts_as_it_passes_and_overlapping_bans_once() {
        let m = Metrics::new();
        let now = Instant::now();
        m.banned_until("c", now + std::time::Duration::from_secs(3600));
        // A shorter ban met by another request while the long one runs adds nothing.
        m.banned_until("c", now + std::time::Duration::from_secs(60));
        let seen = value(&m.render(), "tidemark_throttled_seconds_total{credential=\"c\"} ");
        // Not the hour at once: only what has passed (a scrape can never show over 100 %).
        assert!((0.0..1.0).contains(&seen), "{seen}");
        let clock = &m.bans.lock().unwrap()["c"];
        let later = now + std::time::Duration::from_secs(600);
        assert!((clock.seconds(later) - 600.0).abs() < 1.0, "{}", clock.seconds(later));
        let after = now + std::time::Duration::from_secs(7200);
        assert!((clock.seconds(after) - 3600.0).abs() < 1.0, "{}", clock.seconds(after));
    }

    #[test]
    fn a_stream_handed_over_leaves_no_frozen_lag() {
        let m = Metrics::new();
        let id = StreamId::parse("s/1").unwrap();
        m.set_watermark(&id, Utc::now() - chrono::Duration::seconds(120));
        assert!(m.render().contains("tidemark_watermark_lag_seconds{stream=\"s/1\"}"));
        m.forget_stream(&id);
        let text = m.render();
        assert!(!text.contains("stream=\"s/1\""), "{text}");
    }

    #[test]
    fn a_kafka_outage_over_several_streams_is_one_rebuild_and_not_ready_until_all_are_back() {
        let m = Metrics::new();
        m.set_ready(true);
        let (a, b) = (StreamId::parse("s/a").unwrap(), StreamId::parse("s/b").unwrap());
        m.set_kafka_failing(&a, true);
        m.set_kafka_failing(&b, true);
        m.set_kafka_failing(&a, true);
        assert_eq!(m.producer_rebuilds.get(), 1);
        assert!(!m.is_ready());
        m.set_kafka_failing(&a, false);
        assert!(m.render().lines().any(|l| l == "tidemark_ready 0"), "b is still failing");
        m.set_kafka_failing(&b, false);
        assert!(m.is_ready() && m.render().lines().any(|l| l == "tidemark_ready 1"));
        m.set_kafka_failing(&b, true);
        assert_eq!(m.producer_rebuilds.get(), 2, "a new outage counts again");
    }

    #[test]
    fn lag_is_computed_at_scrape_time() {
        let m = Metrics::new();
        let id = StreamId::parse("s/1").unwrap();
        m.set_watermark(&id, Utc::now() - chrono::Duration::seconds(120));
        let lag = || {
            let text = m.render();
            let line = text
                .lines()
                .find(|l| l.starts_with("tidemark_watermark_lag_seconds{stream=\"s/1\"}"))
                .unwrap()
                .to_owned();
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        let first = lag();
        assert!((119.0..130.0).contains(&first), "{first}");
        // A lag set when the watermark moved would stay put; computed at scrape, it grows.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = lag();
        assert!(second - first >= 1.0, "the lag grows between scrapes: {first} then {second}");
    }
}
