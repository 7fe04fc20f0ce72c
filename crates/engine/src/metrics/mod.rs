//! Prometheus metrics (`tidemark_` prefix, bounded labels) and the `/metrics`, `/healthz`, `/readyz` server.
//!
//! One set of metrics per subsystem, each in its own file, all registered in the one
//! [`Registry`] that `/metrics` serves:
//!
//! | field of [`Metrics`] | file | what | labels |
//! | --- | --- | --- | --- |
//! | `stream` | `stream.rs` | the per-stream loop: records, windows, state, lag, watermark record | `stream`, `state`, `code` |
//! | `api` | `api.rs` | vendor API requests | `source`, `outcome`, `code` |
//! | `credential` | `credential.rs` | credential gates: in-flight limit, learned rate, quota, bans | `credential` |
//! | `producer` | `producer.rs` | Kafka transactions, librdkafka statistics, rebuilds, hanging transactions | `outcome`, `broker`, `topic` |
//! | `writer` | `writer.rs` | writers | `writer`, `outcome`, `field` |
//! | `cluster` | `cluster.rs` | replicas | `event`, `stream` |
//! | `reconcile` | `reconcile.rs` | each stream's last `tidemark reconcile` (from the control topic) | `stream` |
//!
//! plus the process's own `tidemark_ready` and `tidemark_process_start_time_seconds` here.
//!
//! Label values are bounded: configured ids (stream, source, credential, writer, topic),
//! broker node ids, fixed words (outcomes, states, events), vendor and transport error codes,
//! and the field names a writer sent. Never a URL, cursor, window or record id.
//!
//! Subsystems do not look series up by label values themselves: what runs per record, page or
//! window holds handles resolved once ([`StreamHandles`] when a stream starts; [`ApiHandles`]
//! and [`CredentialHandles`] when its reader is made; [`WriterHandles`] when a writer starts),
//! and the rare events (an error code, a broker, a fenced stream) go through the set's methods.
//!
//! The sets live here rather than next to their subsystems so that this module stays a bottom
//! layer (it imports only `domain`; worker, kafka, writer and cluster import it), and so that
//! the names, labels and help texts the dashboard, alert rules and docs depend on are in one
//! folder, checked by one test (`the_exported_names_and_labels_are_the_documented_ones`).

mod api;
mod cluster;
mod credential;
mod producer;
mod reconcile;
mod stream;
mod writer;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::Utc;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub use api::{ApiHandles, ApiMetrics};
pub use cluster::ClusterMetrics;
pub use credential::{CredentialHandles, CredentialMetrics};
pub use producer::{ProducerMetrics, TransactionHandles};
pub use stream::{DRIFT_FIELDS, DRIFT_OTHER, DriftSeen, STREAM_STATES, StreamHandles, StreamMetrics, StreamState};
pub use writer::{WriterHandles, WriterMetrics};

use crate::domain::StreamId;

/// Every metric a tidemark process exports, by subsystem.
pub struct Metrics {
    pub registry: Registry,
    /// The per-stream loop (`tidemark_records_total`, `tidemark_stream_state`, lag, ...).
    pub stream: StreamMetrics,
    /// Vendor API requests by source (`tidemark_api_*`, `tidemark_request_retries_total`).
    pub api: ApiMetrics,
    /// Credential gates (`tidemark_credential_*`, `tidemark_throttled_seconds_total`).
    pub credential: CredentialMetrics,
    /// The Kafka producer (`tidemark_transactions_total`, `tidemark_kafka_*`, rebuilds, ...).
    pub producer: ProducerMetrics,
    /// Writers (`tidemark_writer_*`).
    pub writer: WriterMetrics,
    /// Cluster replicas (`tidemark_cluster_*`).
    pub cluster: ClusterMetrics,
    /// Each stream's last reconcile (`tidemark_reconcile_*`).
    pub reconcile: reconcile::ReconcileMetrics,
    /// 1 while the worker is connected to Kafka and running its streams (as `/readyz`).
    ready_gauge: IntGauge,
    ready: AtomicBool,
    /// Streams whose producer cannot be made or failed (replicas): the process is not
    /// connected to Kafka for them.
    kafka_failing: Mutex<BTreeSet<StreamId>>,
    /// Every registered family's name and label names, as registered.
    described: Vec<(String, Vec<String>)>,
}

/// Registers the sets' collectors in one registry and notes what each describes.
pub(crate) struct Registrar {
    registry: Registry,
    described: Mutex<Vec<(String, Vec<String>)>>,
}

impl Registrar {
    fn new() -> Self {
        Registrar { registry: Registry::new(), described: Mutex::new(Vec::new()) }
    }

    /// Registers metric `c` and returns it.
    pub(crate) fn add<C: Collector + Clone + 'static>(&self, c: C) -> C {
        self.add_collector(c.clone());
        c
    }

    /// Registers `c`, a collector that computes its series at scrape time.
    pub(crate) fn add_collector<C: Collector + 'static>(&self, c: C) {
        self.described
            .lock()
            .expect("registrar lock")
            .extend(c.desc().into_iter().map(|d| (d.fq_name.clone(), d.variable_labels.clone())));
        self.registry.register(Box::new(c)).expect("unique metric");
    }

    pub(crate) fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    pub(crate) fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub(crate) fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    pub(crate) fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub(crate) fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("valid metric"))
    }

    pub(crate) fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub(crate) fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.add(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric"))
    }

    pub(crate) fn histogram_vec(&self, name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
        self.add(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric"))
    }
}

/// A series made at its first use, as a `with_label_values` there would make it (a gauge
/// that has nothing to say until then, a histogram until its first observation), then held.
pub(crate) struct Lazy<M> {
    make: Box<dyn Fn() -> M + Send + Sync>,
    child: OnceLock<M>,
}

impl<M: Send + Sync + 'static> Lazy<M> {
    /// `vec`'s series of `labels`, made at its first use.
    pub(crate) fn of<T: MetricVecBuilder<M = M> + 'static>(vec: &MetricVec<T>, labels: &[&str]) -> Self {
        let (vec, labels) = (vec.clone(), labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
        Lazy { make: Box::new(move || vec.with_label_values(&labels)), child: OnceLock::new() }
    }

    pub(crate) fn get(&self) -> &M {
        self.child.get_or_init(&self.make)
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let reg = Registrar::new();
        let stream = StreamMetrics::new(&reg);
        let api = ApiMetrics::new(&reg);
        let credential = CredentialMetrics::new(&reg);
        let producer = ProducerMetrics::new(&reg);
        let writer = WriterMetrics::new(&reg);
        let cluster = ClusterMetrics::new(&reg);
        let reconcile = reconcile::ReconcileMetrics::new(&reg);
        let ready_gauge = reg.int_gauge(
            "tidemark_ready",
            "1 while the process is connected to Kafka and running (what /readyz answers), else 0.",
        );
        reg.gauge(
            "tidemark_process_start_time_seconds",
            "When this process started, as a unix time (a crash loop shows as changes).",
        )
        .set(Utc::now().timestamp() as f64);
        let Registrar { registry, described } = reg;
        Arc::new(Metrics {
            registry,
            stream,
            api,
            credential,
            producer,
            writer,
            cluster,
            reconcile,
            ready_gauge,
            ready: AtomicBool::new(false),
            kafka_failing: Mutex::new(BTreeSet::new()),
            described: described.into_inner().expect("registrar lock"),
        })
    }

    /// Every registered family's name and label names (the labels it is registered with,
    /// whether or not it has series yet).
    pub fn described(&self) -> &[(String, Vec<String>)] {
        &self.described
    }

    /// Drops a stream's state, lag and watermark-size series: another replica owns it now
    /// and reports them.
    pub fn forget_stream(&self, stream: &StreamId) {
        self.stream.forget(stream);
        self.set_kafka_failing(stream, false);
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
                self.producer.rebuilds.inc();
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::*;

    /// What the dashboard (grafana/), the alert rules and their promtool tests, the docs and
    /// tests/observability.rs read: each family's name, type and label names. A rename, a
    /// relabel or a new metric fails here first; change this list only with them.
    const EXPORTED: &[(&str, &str, &[&str])] = &[
        ("tidemark_api_errors_total", "counter", &["code", "source"]),
        ("tidemark_api_request_duration_seconds", "histogram", &["source"]),
        ("tidemark_api_requests_total", "counter", &["outcome", "source"]),
        ("tidemark_bytes_total", "counter", &["stream"]),
        ("tidemark_cluster_fenced_total", "counter", &["stream"]),
        ("tidemark_cluster_rebalances_total", "counter", &["event"]),
        ("tidemark_cluster_streams_owned", "gauge", &[]),
        ("tidemark_credential_in_flight", "gauge", &["credential"]),
        ("tidemark_credential_in_flight_limit", "gauge", &["credential"]),
        ("tidemark_credential_max_in_flight", "gauge", &["credential"]),
        ("tidemark_credential_quota_exhausted_until_timestamp_seconds", "gauge", &["credential"]),
        ("tidemark_credential_quota_requests_per_second", "gauge", &["credential"]),
        ("tidemark_credential_rate_requests_per_second", "gauge", &["credential"]),
        ("tidemark_credential_requests_total", "counter", &["credential"]),
        ("tidemark_dead_letters_total", "counter", &["stream"]),
        ("tidemark_hanging_transactions_settled_total", "counter", &["topic"]),
        ("tidemark_kafka_broker_rtt_seconds", "gauge", &["broker"]),
        ("tidemark_kafka_errors_total", "counter", &["broker"]),
        ("tidemark_kafka_producer_queue_bytes", "gauge", &[]),
        ("tidemark_kafka_producer_queue_messages", "gauge", &[]),
        ("tidemark_late_record_delay_seconds", "histogram", &["stream"]),
        ("tidemark_late_records_total", "counter", &["stream"]),
        ("tidemark_pageset_refetches_total", "counter", &["stream"]),
        ("tidemark_process_start_time_seconds", "gauge", &[]),
        ("tidemark_producer_rebuilds_total", "counter", &[]),
        ("tidemark_ready", "gauge", &[]),
        ("tidemark_reconcile_differing_windows", "gauge", &["stream"]),
        ("tidemark_reconcile_last_run_timestamp_seconds", "gauge", &["stream"]),
        ("tidemark_windows_spilled_total", "counter", &["stream"]),
        ("tidemark_writer_reconcile_records", "gauge", &["writer"]),
        ("tidemark_writer_reconcile_differing_records", "gauge", &["writer"]),
        ("tidemark_writer_reconcile_dead_lettered_records", "gauge", &["writer"]),
        ("tidemark_writer_reconcile_last_run_timestamp_seconds", "gauge", &["writer"]),
        ("tidemark_reconcile_late_records", "gauge", &["stream"]),
        ("tidemark_reconcile_windows", "gauge", &["stream"]),
        ("tidemark_records_total", "counter", &["stream"]),
        ("tidemark_records_unchanged_total", "counter", &["stream"]),
        ("tidemark_request_retries_total", "counter", &["source"]),
        ("tidemark_schema_drift_fields_total", "counter", &["field", "stream"]),
        ("tidemark_step_retries_total", "counter", &["stream"]),
        ("tidemark_stream_lag_bound_seconds", "gauge", &["stream"]),
        ("tidemark_stream_last_error_timestamp_seconds", "gauge", &["code", "stream"]),
        ("tidemark_stream_state", "gauge", &["state", "stream"]),
        ("tidemark_throttled_seconds_total", "counter", &["credential"]),
        ("tidemark_tombstones_total", "counter", &["stream"]),
        ("tidemark_transaction_duration_seconds", "histogram", &[]),
        ("tidemark_transaction_windows", "histogram", &[]),
        ("tidemark_transactions_total", "counter", &["outcome"]),
        ("tidemark_watermark_hashes_dropped_total", "counter", &["stream"]),
        ("tidemark_watermark_lag_seconds", "gauge", &["stream"]),
        ("tidemark_watermark_record_bytes", "gauge", &["stream"]),
        ("tidemark_watermark_record_limit_bytes", "gauge", &[]),
        ("tidemark_watermark_timestamp_seconds", "gauge", &["stream"]),
        ("tidemark_windows_total", "counter", &["stream"]),
        ("tidemark_writer_batch_duration_seconds", "histogram", &["writer"]),
        ("tidemark_writer_lag_records", "gauge", &["writer"]),
        ("tidemark_writer_records_total", "counter", &["outcome", "writer"]),
        ("tidemark_writer_registry_errors_total", "counter", &["writer"]),
        ("tidemark_writer_rejections_total", "counter", &["field", "writer"]),
    ];

    /// Each family in a text exposition: its type and the label names of its samples
    /// (a histogram's `le` aside).
    fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
        let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                out.insert(name.to_owned(), (kind.to_owned(), BTreeSet::new()));
            } else if !line.starts_with('#') && !line.is_empty() {
                let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| out.get(*f).is_some_and(|e| e.0 == "histogram")))
                    .unwrap_or(&name)
                    .to_owned();
                let entry = out.get_mut(&family).unwrap_or_else(|| panic!("{family}: sample before its TYPE"));
                if let Some(labels) = line[name.len()..].strip_prefix('{') {
                    for pair in labels.split("\",").filter(|p| p.contains('=')) {
                        let label = pair.split('=').next().unwrap().trim_start_matches(',');
                        if label != "le" {
                            entry.1.insert(label.to_owned());
                        }
                    }
                }
            }
        }
        out
    }

    /// A process that did a bit of everything: every family has a series.
    fn busy() -> Arc<Metrics> {
        let m = Metrics::new();
        m.reconcile.observe("s/1", 8, 1, 1, 1_700_000_000);
        m.reconcile.observe_writer("w", 8, 1, 1, 1_700_000_000);
        let id = StreamId::parse("s/1").unwrap();
        let s = StreamHandles::start(&m, &id, Duration::from_secs(60), Utc::now());
        s.set_state(StreamState::CaughtUp);
        s.error("http_503");
        s.watermark_record_bytes().set(10);
        m.stream.drift_field(&id, "new_field").0.inc();
        let api = m.api.handles("src");
        api.duration().observe(0.1);
        api.error("http_503");
        let c = m.credential.handles("cred");
        c.observe(1, 0, 4, 10, 10.0);
        let w = m.writer.handles("w");
        w.batch_duration().observe(1.0);
        w.rejected_field("name");
        w.lag().set(0);
        m.producer.broker("1", Some(0.001), 0);
        m.producer.watch_hanging("t");
        m.producer.transaction_duration.observe(0.01);
        m.producer.transaction_windows.observe(2.0);
        m.cluster.fenced(&id);
        m
    }

    #[test]
    fn the_exported_names_and_labels_are_the_documented_ones() {
        let m = busy();
        let expected: BTreeMap<String, (String, BTreeSet<String>)> = EXPORTED
            .iter()
            .map(|(n, t, l)| (n.to_string(), (t.to_string(), l.iter().map(|s| s.to_string()).collect())))
            .collect();
        let rendered = families(&m.render());
        assert_eq!(rendered, expected, "the /metrics exposition");
        // And what is registered, series or not (a family without series is not rendered).
        let registered: BTreeMap<String, BTreeSet<String>> =
            m.described().iter().map(|(n, l)| (n.clone(), l.iter().cloned().collect())).collect();
        let expected: BTreeMap<String, BTreeSet<String>> = expected.into_iter().map(|(n, (_, l))| (n, l)).collect();
        assert_eq!(registered, expected, "the registered families");
        assert_eq!(m.described().len(), EXPORTED.len(), "no family registered twice");
    }

    #[test]
    fn a_stream_has_one_last_error_series_the_latest_code() {
        let m = Metrics::new();
        let (a, b) = (StreamId::parse("s/a").unwrap(), StreamId::parse("s/b").unwrap());
        m.stream.error(&a, "wdt:-1");
        m.stream.error(&b, "http_503");
        m.stream.error(&a, "kafka");
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
    fn drift_names_fifty_fields_a_stream_and_counts_the_rest_as_other() {
        use super::{DRIFT_FIELDS, DriftSeen};
        let m = Metrics::new();
        let (a, b) = (StreamId::parse("s/a").unwrap(), StreamId::parse("s/b").unwrap());
        for i in 0..DRIFT_FIELDS {
            let (c, seen) = m.stream.drift_field(&a, &format!("f{i:02}"));
            assert_eq!(seen, DriftSeen::New, "field {i}");
            c.inc();
        }
        let (c, seen) = m.stream.drift_field(&a, "f00");
        assert_eq!(seen, DriftSeen::Before, "a known name is not news");
        c.inc();
        // The 51st name and every later one share `other`; only the first is news.
        let (c, seen) = m.stream.drift_field(&a, "f50");
        assert_eq!(seen, DriftSeen::FirstOther);
        c.inc();
        let (c, seen) = m.stream.drift_field(&a, "f51");
        assert_eq!(seen, DriftSeen::Before);
        c.inc();
        // Another stream has its own fifty.
        assert_eq!(m.stream.drift_field(&b, "f50").1, DriftSeen::New);
        let text = m.render();
        let series: Vec<&str> = text.lines().filter(|l| l.starts_with("tidemark_schema_drift_fields_total{")).collect();
        assert_eq!(series.len(), DRIFT_FIELDS + 2, "{series:?}");
        assert!(series.contains(&r#"tidemark_schema_drift_fields_total{field="f00",stream="s/a"} 2"#), "{series:?}");
        assert!(series.contains(&r#"tidemark_schema_drift_fields_total{field="other",stream="s/a"} 2"#), "{series:?}");
        assert!(!text.contains(r#"field="f51""#));
        let listed = m.stream.drift_fields(&a);
        assert_eq!(listed.len(), DRIFT_FIELDS + 1);
        assert_eq!(listed.last().map(String::as_str), Some("other"));
        assert_eq!(m.stream.drift_fields(&b), ["f50"]);
    }

    #[test]
    fn ready_is_a_series_as_well_as_the_endpoint() {
        let m = Metrics::new();
        assert!(m.render().lines().any(|l| l == "tidemark_ready 0"));
        m.set_ready(true);
        assert!(m.render().lines().any(|l| l == "tidemark_ready 1"));
    }

    pub(super) fn value(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn banned_time_counts_as_it_passes_and_overlapping_bans_once() {
        let m = Metrics::new();
        let c = m.credential.handles("c");
        let now = Instant::now();
        c.banned_until(now + Duration::from_secs(3600));
        // A shorter ban met by another request while the long one runs adds nothing.
        c.banned_until(now + Duration::from_secs(60));
        let seen = value(&m.render(), "tidemark_throttled_seconds_total{credential=\"c\"} ");
        // Not the hour at once: only what has passed (a scrape can never show over 100 %).
        assert!((0.0..1.0).contains(&seen), "{seen}");
        let later = m.credential.banned_seconds("c", now + Duration::from_secs(600));
        assert!((later - 600.0).abs() < 1.0, "{later}");
        let after = m.credential.banned_seconds("c", now + Duration::from_secs(7200));
        assert!((after - 3600.0).abs() < 1.0, "{after}");
    }

    #[test]
    fn a_stream_handed_over_leaves_no_frozen_lag() {
        let m = Metrics::new();
        let id = StreamId::parse("s/1").unwrap();
        m.stream.set_watermark(&id, Utc::now() - chrono::Duration::seconds(120));
        assert!(m.render().contains("tidemark_watermark_lag_seconds{stream=\"s/1\"}"));
        m.forget_stream(&id);
        let text = m.render();
        assert!(!text.contains("stream=\"s/1\""), "{text}");
    }

    #[test]
    fn a_stream_forgotten_mid_run_stays_forgotten_and_a_new_run_shows_it_again() {
        let m = Metrics::new();
        let id = StreamId::parse("s/1").unwrap();
        let old = StreamHandles::start(&m, &id, Duration::from_secs(60), Utc::now());
        old.set_state(StreamState::CatchingUp);
        old.watermark_record_bytes().set(100);
        m.forget_stream(&id);
        // The old run's last words (a commit finishing after the hand-over) bring nothing back.
        old.set_state(StreamState::CaughtUp);
        old.watermark_record_bytes().set(200);
        old.set_watermark(Utc::now());
        let text = m.render();
        for family in ["stream_state", "watermark_record_bytes", "watermark_lag_seconds", "stream_lag_bound"] {
            assert!(!text.contains(&format!("tidemark_{family}{{")), "{family}: {text}");
        }
        let new = StreamHandles::start(&m, &id, Duration::from_secs(60), Utc::now());
        new.set_state(StreamState::CaughtUp);
        let text = m.render();
        assert!(text.lines().any(|l| l == r#"tidemark_stream_state{state="caught_up",stream="s/1"} 1"#), "{text}");
        assert!(text.contains(r#"tidemark_watermark_lag_seconds{stream="s/1"}"#), "{text}");
        assert!(text.contains(r#"tidemark_stream_lag_bound_seconds{stream="s/1"} 60"#), "{text}");
    }

    #[test]
    fn a_kafka_outage_over_several_streams_is_one_rebuild_and_not_ready_until_all_are_back() {
        let m = Metrics::new();
        m.set_ready(true);
        let (a, b) = (StreamId::parse("s/a").unwrap(), StreamId::parse("s/b").unwrap());
        m.set_kafka_failing(&a, true);
        m.set_kafka_failing(&b, true);
        m.set_kafka_failing(&a, true);
        assert_eq!(m.producer.rebuilds.get(), 1);
        assert!(!m.is_ready());
        m.set_kafka_failing(&a, false);
        assert!(m.render().lines().any(|l| l == "tidemark_ready 0"), "b is still failing");
        m.set_kafka_failing(&b, false);
        assert!(m.is_ready() && m.render().lines().any(|l| l == "tidemark_ready 1"));
        m.set_kafka_failing(&b, true);
        assert_eq!(m.producer.rebuilds.get(), 2, "a new outage counts again");
    }

    #[test]
    fn lag_is_computed_at_scrape_time() {
        let m = Metrics::new();
        let id = StreamId::parse("s/1").unwrap();
        m.stream.set_watermark(&id, Utc::now() - chrono::Duration::seconds(120));
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
        std::thread::sleep(Duration::from_millis(1100));
        let second = lag();
        assert!(second - first >= 1.0, "the lag grows between scrapes: {first} then {second}");
    }
}
