//! One stream's poll loop: plan a window, fetch and verify its pages, commit records and
//! watermark in one transaction, repeat until caught up, then poll on an interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use governor::DefaultDirectRateLimiter;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::backoff;
use super::pageset::{PageSet, PageSetError, Progress, record_key};
use super::watermark::content_hash;
use super::{StreamId, Watermark, WatermarkState, Window};
use crate::avro::RecordCodec;
use crate::kafka::{CommitError, HEADER_SCHEMA, HEADER_STREAM, OutRecord, TxnSink};
use crate::metrics::Metrics;
use crate::sources::{PageRequest, Source, SourceError};

/// A request is retried this many times before the window is given up and retried later.
const REQUEST_ATTEMPTS: u32 = 5;
/// A window whose pages do not add up is fetched again this many times before backing off.
const PAGESET_ATTEMPTS: u32 = 3;
/// Guards against a vendor that never stops paging.
const MAX_PAGES_PER_WINDOW: u32 = 100_000;

/// How the stream's loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The watermark reached now minus the settle lag (with `--until-caught-up`).
    CaughtUp,
    /// Shutdown was requested.
    ShutDown,
    /// An error that retrying cannot fix; the message says what was wrong.
    Stopped(String),
    /// The shared producer failed; the whole worker must restart from the watermark topic.
    ProducerFailed(String),
}

/// What a stream did during this run.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub stream: StreamId,
    pub topic: Arc<str>,
    pub records: u64,
    pub unchanged: u64,
    pub windows: u64,
    pub watermark: Watermark,
    pub outcome: StreamOutcome,
}

/// Why a window did not commit, by what the loop must do next.
#[derive(Debug)]
enum WindowError {
    /// Try the window again after a backoff.
    Retry(String),
    Stop(String),
    ProducerFailed(String),
    ShutDown,
}

/// Everything one stream needs to run. Built by the pipeline from config.
pub struct StreamWorker {
    pub id: StreamId,
    pub source_id: String,
    pub source: Arc<dyn Source>,
    pub limiter: Arc<DefaultDirectRateLimiter>,
    pub codec: Arc<RecordCodec>,
    pub sink: Arc<TxnSink>,
    pub metrics: Arc<Metrics>,
    pub topic: Arc<str>,
    pub watermark_topic: Arc<str>,
    pub params: std::collections::BTreeMap<String, String>,
    pub lookback: Duration,
    pub settle: Duration,
    pub poll_interval: Duration,
    pub max_span: Duration,
    pub page_size: u32,
    pub state: WatermarkState,
}

impl StreamWorker {
    /// Runs until caught up (if asked), shut down, or stopped by an error.
    pub async fn run(mut self, until_caught_up: bool, mut shutdown: watch::Receiver<bool>) -> StreamReport {
        let mut report = StreamReport {
            stream: self.id.clone(),
            topic: self.topic.clone(),
            records: 0,
            unchanged: 0,
            windows: 0,
            watermark: self.state.watermark,
            outcome: StreamOutcome::ShutDown,
        };
        self.metrics.set_watermark(&self.id, self.state.watermark);
        info!(stream = %self.id, watermark = %fmt_wm(self.state.watermark), topic = %self.topic, "stream starting");
        let mut failures = 0u32;
        let mut was_caught_up = false;
        loop {
            if *shutdown.borrow() {
                report.outcome = StreamOutcome::ShutDown;
                break;
            }
            let horizon = Utc::now() - super::window::chrono_duration(self.settle);
            let Some(window) = Window::next(self.state.watermark, self.lookback, self.max_span, horizon) else {
                if !was_caught_up {
                    info!(stream = %self.id, watermark = %fmt_wm(self.state.watermark), "caught up");
                    was_caught_up = true;
                }
                if until_caught_up {
                    report.outcome = StreamOutcome::CaughtUp;
                    break;
                }
                if !sleep_or_shutdown(self.poll_interval, &mut shutdown).await {
                    report.outcome = StreamOutcome::ShutDown;
                    break;
                }
                continue;
            };
            was_caught_up = false;
            match self.process(&window, &mut shutdown).await {
                Ok((written, unchanged)) => {
                    failures = 0;
                    report.records += written;
                    report.unchanged += unchanged;
                    report.windows += 1;
                    report.watermark = self.state.watermark;
                }
                Err(WindowError::Retry(reason)) => {
                    failures += 1;
                    let wait = backoff::delay(failures, Duration::from_secs(1), Duration::from_secs(60));
                    warn!(stream = %self.id, window = %window, error = %reason, retry_in = ?wait, "window failed; will retry");
                    if !sleep_or_shutdown(wait, &mut shutdown).await {
                        report.outcome = StreamOutcome::ShutDown;
                        break;
                    }
                }
                Err(WindowError::Stop(reason)) => {
                    error!(stream = %self.id, window = %window, error = %reason, "stream stopped");
                    report.outcome = StreamOutcome::Stopped(reason);
                    break;
                }
                Err(WindowError::ProducerFailed(reason)) => {
                    error!(stream = %self.id, window = %window, error = %reason, "producer failed");
                    report.outcome = StreamOutcome::ProducerFailed(reason);
                    break;
                }
                Err(WindowError::ShutDown) => {
                    report.outcome = StreamOutcome::ShutDown;
                    break;
                }
            }
        }
        report
    }

    /// Fetches, verifies, encodes and commits one window. Returns (written, unchanged).
    async fn process(
        &mut self,
        window: &Window,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(u64, u64), WindowError> {
        let started = Instant::now();
        let (records, pages) = self.fetch_window(window, shutdown).await?;
        let mut out = Vec::with_capacity(records.len() + 1);
        let mut emitted = Vec::with_capacity(records.len());
        let mut unchanged = 0u64;
        let stream_header: Arc<[u8]> = Arc::from(self.id.as_str().as_bytes());
        let schema_header: Arc<[u8]> = Arc::from(self.codec.full_name().as_bytes());
        for rec in &records {
            let key = record_key(rec, self.source.spec().key_field).expect("page set checked every key");
            let hash = content_hash(rec);
            if self.state.is_unchanged(&key, hash) {
                unchanged += 1;
                continue;
            }
            let mut value = Vec::with_capacity(256);
            self.codec.encode(rec, &mut value).map_err(|e| {
                WindowError::Stop(format!("record {key:?} does not fit schema {}: {e}", self.codec.full_name()))
            })?;
            out.push(OutRecord {
                topic: self.topic.clone(),
                key: key.as_bytes().to_vec(),
                value: Some(value),
                headers: vec![(HEADER_STREAM, stream_header.clone()), (HEADER_SCHEMA, schema_header.clone())],
            });
            emitted.push((key, hash));
        }
        let written = out.len() as u64;
        let next =
            self.state.advance(window.end, emitted, self.lookback).map_err(|e| WindowError::Stop(e.to_string()))?;
        out.push(OutRecord {
            topic: self.watermark_topic.clone(),
            key: self.id.as_str().as_bytes().to_vec(),
            value: Some(next.to_bytes()),
            headers: Vec::new(),
        });
        match self.sink.commit(out).await {
            Ok(()) => self.metrics.transactions.with_label_values(&["committed"]).inc(),
            Err(CommitError::Aborted(why)) => {
                self.metrics.transactions.with_label_values(&["aborted"]).inc();
                return Err(WindowError::Retry(format!("kafka transaction aborted: {why}")));
            }
            Err(CommitError::Fatal(why)) => {
                self.metrics.transactions.with_label_values(&["fatal"]).inc();
                return Err(WindowError::ProducerFailed(why));
            }
        }
        self.state = next;
        self.metrics.set_watermark(&self.id, self.state.watermark);
        self.metrics.records.with_label_values(&[self.id.as_str()]).inc_by(written);
        self.metrics.records_unchanged.with_label_values(&[self.id.as_str()]).inc_by(unchanged);
        self.metrics.windows.with_label_values(&[self.id.as_str()]).inc();
        info!(
            stream = %self.id, window = %window, pages, records = written, unchanged,
            watermark = %fmt_wm(self.state.watermark), elapsed_ms = started.elapsed().as_millis() as u64,
            "window committed"
        );
        Ok((written, unchanged))
    }

    /// Reads every page of the window until the page set is consistent.
    async fn fetch_window(
        &self,
        window: &Window,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(Vec<Value>, u32), WindowError> {
        let spec = self.source.spec();
        let mut last_problem = None;
        for attempt in 1..=PAGESET_ATTEMPTS {
            let mut set = PageSet::new(spec.key_field, spec.total_on_every_page);
            let mut page_index = 0u32;
            let problem = loop {
                let page = self.fetch_page(window, page_index, shutdown).await?;
                match set.add(page) {
                    Ok(Progress::Complete) => {
                        let pages = set.pages();
                        return Ok((set.into_records(), pages));
                    }
                    Ok(Progress::More) => page_index += 1,
                    Err(e @ (PageSetError::MissingKey { .. } | PageSetError::MissingTotal)) => {
                        return Err(WindowError::Stop(format!("page {page_index}: {e}")));
                    }
                    Err(e) => break e,
                }
                if page_index >= MAX_PAGES_PER_WINDOW {
                    return Err(WindowError::Stop(format!("window has more than {MAX_PAGES_PER_WINDOW} pages")));
                }
            };
            self.metrics.pageset_refetches.with_label_values(&[self.id.as_str()]).inc();
            warn!(stream = %self.id, window = %window, attempt, error = %problem, "page set inconsistent; fetching the window again");
            last_problem = Some(problem);
        }
        Err(WindowError::Retry(format!(
            "pages still inconsistent after {PAGESET_ATTEMPTS} reads: {}",
            last_problem.map(|p| p.to_string()).unwrap_or_default()
        )))
    }

    /// One page, with rate limiting, retries for transient errors and waits for throttles.
    async fn fetch_page(
        &self,
        window: &Window,
        page_index: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<crate::sources::Page, WindowError> {
        let req = PageRequest { window, page_index, page_size: self.page_size, params: &self.params };
        let mut attempt = 0u32;
        loop {
            tokio::select! {
                _ = self.limiter.until_ready() => {}
                _ = shutdown.changed() => return Err(WindowError::ShutDown),
            }
            let t0 = Instant::now();
            let res = self.source.fetch_page(req).await;
            self.metrics.api_duration.with_label_values(&[&self.source_id]).observe(t0.elapsed().as_secs_f64());
            let err = match res {
                Ok(page) => {
                    self.metrics.api_requests.with_label_values(&[&self.source_id, "ok"]).inc();
                    debug!(stream = %self.id, window = %window, page = page_index, records = page.records.len(), "page fetched");
                    return Ok(page);
                }
                Err(e) => e,
            };
            let outcome = match &err {
                SourceError::Retryable { .. } => "retryable",
                SourceError::Throttled { .. } => "throttled",
                SourceError::Fatal { .. } => "fatal",
            };
            self.metrics.api_requests.with_label_values(&[&self.source_id, outcome]).inc();
            self.metrics.api_errors.with_label_values(&[&self.source_id, err.code()]).inc();
            let wait = match &err {
                SourceError::Fatal { .. } => return Err(WindowError::Stop(err.to_string())),
                SourceError::Throttled { after, .. } => *after,
                SourceError::Retryable { after, .. } => {
                    attempt += 1;
                    if attempt >= REQUEST_ATTEMPTS {
                        return Err(WindowError::Retry(format!(
                            "page {page_index} failed {attempt} times, last: {err}"
                        )));
                    }
                    after
                        .unwrap_or_else(|| backoff::delay(attempt, Duration::from_millis(200), Duration::from_secs(10)))
                }
            };
            warn!(stream = %self.id, window = %window, page = page_index, error = %err, retry_in = ?wait, "request failed; retrying");
            if !sleep_or_shutdown(wait, shutdown).await {
                return Err(WindowError::ShutDown);
            }
        }
    }
}

/// Sleeps for `d`; false if shutdown was requested first.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}

/// Watermarks in logs: Beijing time, as the vendor data is.
pub fn fmt_wm(wm: DateTime<Utc>) -> String {
    wm.with_timezone(&crate::time::beijing()).format("%Y-%m-%d %H:%M:%S%:z").to_string()
}
