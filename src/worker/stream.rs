//! One stream's poll loop: plan the next step (a window, or a snapshot), fetch and verify its
//! pages, commit records and watermark in one transaction, repeat until caught up, then poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::StreamPlan;
use crate::domain::backoff;
use crate::domain::pageset::{PageSet, PageSetError, Progress, record_key};
use crate::domain::watermark::{content_hash, fmt_wm};
use crate::domain::window::chrono_duration;
use crate::domain::{
    CommitError, Mode, OutRecord, Page, PageRequest, Sink, SourceError, StreamId, Watermark, WatermarkState, Window,
};
use crate::metrics::Metrics;

/// A request is retried this many times before the step is given up and retried later.
const REQUEST_ATTEMPTS: u32 = 5;
/// A page set that does not add up is fetched again this many times before backing off.
const PAGESET_ATTEMPTS: u32 = 3;
/// Guards against a vendor that never stops paging.
const MAX_PAGES: u32 = 100_000;

/// How the stream's loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Caught up (with `--until-caught-up`): windowed streams reached now minus the settle
    /// lag; snapshot streams hold a snapshot younger than their poll interval.
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
    pub tombstones: u64,
    pub dead_letters: u64,
    pub windows: u64,
    pub watermark: Watermark,
    pub outcome: StreamOutcome,
}

/// Why a step did not commit, by what the loop must do next.
#[derive(Debug)]
enum StepError {
    /// Try again after a backoff.
    Retry(String),
    Stop(String),
    ProducerFailed(String),
    ShutDown,
}

/// What the loop does next.
enum Step {
    Window(Window),
    Snapshot,
    CaughtUp { wait: Duration },
}

/// What one committed step wrote.
struct Committed {
    written: u64,
    unchanged: u64,
    tombstones: u64,
    dead_letters: u64,
}

/// A fetched and encoded window, waiting for its transaction.
struct Prepared {
    window: Window,
    batch: Batch,
    next: WatermarkState,
    pages: u32,
    started: Instant,
}

/// The records of one step on their way into a transaction.
#[derive(Default)]
struct Batch {
    out: Vec<OutRecord>,
    unchanged: u64,
    tombstones: u64,
    dead_letters: u64,
}

/// What `fetch_all` hands its consumer.
enum Records {
    /// The page set did not add up and is read again: forget what was handed over so far.
    Restart,
    /// The records of the latest page(s), in the vendor's order.
    New(Vec<Value>),
}

/// A record's business id (if it has one) and the key its content hash is remembered by.
struct RecordKey {
    business: Option<String>,
    dedup: String,
}

/// Prefix of the dedup key of records that have no business id.
const NO_KEY: &str = "#nokey:";

/// Everything one stream needs to run. Built by the pipeline from config.
pub struct StreamWorker {
    /// The stream as configured: source, gate, codec, window settings.
    pub plan: Arc<StreamPlan>,
    /// Where windows commit (the Kafka transactional sink in the worker).
    pub sink: Arc<dyn Sink>,
    pub metrics: Arc<Metrics>,
    /// The plan's topic, shared by every record.
    pub topic: Arc<str>,
    pub watermark_topic: Arc<str>,
    /// The largest watermark record this stream writes (`kafka.watermark_max_bytes`).
    pub watermark_max_bytes: usize,
    pub dead_letter_topic: Arc<str>,
    pub state: WatermarkState,
    /// The stream-id header, then the schema-name header, of every data record; built once.
    pub headers: Vec<(&'static str, Arc<[u8]>)>,
}

impl StreamWorker {
    /// Runs until caught up (if asked), shut down, or stopped by an error.
    pub async fn run(mut self, until_caught_up: bool, mut shutdown: watch::Receiver<bool>) -> StreamReport {
        let mut report = StreamReport {
            stream: self.plan.cfg.id.clone(),
            topic: self.topic.clone(),
            records: 0,
            unchanged: 0,
            tombstones: 0,
            dead_letters: 0,
            windows: 0,
            watermark: self.state.watermark,
            outcome: StreamOutcome::ShutDown,
        };
        self.metrics.set_watermark(&self.plan.cfg.id, self.state.watermark);
        self.metrics.init_stream(&self.plan.cfg.id, &self.plan.source_id);
        info!(stream = %self.plan.cfg.id, watermark = %fmt_wm(self.state.watermark), topic = %self.topic, "stream starting");
        let mut failures = 0u32;
        let mut was_caught_up = false;
        // The next window, fetched while the current one commits.
        let mut ahead: Option<(Window, Result<Prepared, StepError>)> = None;
        report.outcome = loop {
            if *shutdown.borrow() {
                break StreamOutcome::ShutDown;
            }
            let step = self.plan_step(Utc::now());
            let (label, result) = match step {
                Step::CaughtUp { wait } => {
                    self.metrics.set_stream_state(&self.plan.cfg.id, "caught_up");
                    if !was_caught_up {
                        info!(stream = %self.plan.cfg.id, watermark = %fmt_wm(self.state.watermark), "caught up");
                        was_caught_up = true;
                    }
                    if until_caught_up {
                        break StreamOutcome::CaughtUp;
                    }
                    if !sleep_or_shutdown(wait, &shutdown).await {
                        break StreamOutcome::ShutDown;
                    }
                    continue;
                }
                Step::Window(w) => {
                    self.metrics.set_stream_state(&self.plan.cfg.id, "catching_up");
                    let prepared = match ahead.take() {
                        Some((aw, r)) if aw == w => r,
                        _ => self.prepare_window(&w, &self.state, &mut shutdown).await,
                    };
                    let result = match prepared {
                        Err(e) => Err(e),
                        Ok(p) => {
                            let (done, next_ahead) = self.commit_and_prefetch(p, &shutdown).await;
                            ahead = next_ahead;
                            done
                        }
                    };
                    (w.to_string(), result)
                }
                Step::Snapshot => ("snapshot".to_owned(), self.process_snapshot(&mut shutdown).await),
            };
            was_caught_up = false;
            match result {
                Ok(c) => {
                    failures = 0;
                    report.records += c.written;
                    report.unchanged += c.unchanged;
                    report.tombstones += c.tombstones;
                    report.dead_letters += c.dead_letters;
                    report.windows += 1;
                    report.watermark = self.state.watermark;
                }
                Err(StepError::Retry(reason)) => {
                    failures += 1;
                    self.metrics.step_retries.with_label_values(&[self.plan.cfg.id.as_str()]).inc();
                    let wait = backoff::delay(failures, Duration::from_secs(1), Duration::from_secs(60));
                    warn!(stream = %self.plan.cfg.id, window = %label, error = %reason, retry_in = ?wait, "step failed; will retry");
                    if !sleep_or_shutdown(wait, &shutdown).await {
                        break StreamOutcome::ShutDown;
                    }
                }
                Err(StepError::Stop(reason)) => {
                    self.metrics.set_stream_state(&self.plan.cfg.id, "stopped");
                    error!(stream = %self.plan.cfg.id, window = %label, error = %reason, "stream stopped");
                    break StreamOutcome::Stopped(reason);
                }
                Err(StepError::ProducerFailed(reason)) => {
                    error!(stream = %self.plan.cfg.id, window = %label, error = %reason, "producer failed");
                    break StreamOutcome::ProducerFailed(reason);
                }
                Err(StepError::ShutDown) => break StreamOutcome::ShutDown,
            }
        };
        report
    }

    fn plan_step(&self, now: DateTime<Utc>) -> Step {
        match self.plan.source.spec().mode {
            Mode::Windowed => match self.plan.next_window(self.state.watermark, now) {
                Some(w) => Step::Window(w),
                None => Step::CaughtUp { wait: self.plan.cfg.poll_interval },
            },
            Mode::Snapshot => {
                // The watermark of a snapshot stream is when its last snapshot was taken.
                let due = self.state.watermark + chrono_duration(self.plan.cfg.poll_interval);
                match (due - now).to_std() {
                    Ok(wait) if !wait.is_zero() => Step::CaughtUp { wait },
                    _ => Step::Snapshot,
                }
            }
        }
    }

    /// Fetches, verifies and encodes one window against `state`, ready to commit.
    async fn prepare_window(
        &self,
        window: &Window,
        state: &WatermarkState,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Prepared, StepError> {
        let started = Instant::now();
        let label = window.to_string();
        let hashed = self.needs_hashes();
        let mut batch = Batch::default();
        let mut emitted = Vec::new();
        let pages = self
            .fetch_all(Some(window), shutdown, &mut |records| match records {
                Records::Restart => {
                    batch = Batch::default();
                    emitted.clear();
                }
                Records::New(records) => {
                    for (key, hash, rec) in self.keyed(&records) {
                        // Without hashes nothing can have been seen before (nor is remembered).
                        if hashed {
                            if state.is_unchanged(&key.dedup, hash) {
                                batch.unchanged += 1;
                                continue;
                            }
                            emitted.push((key.dedup, hash));
                        }
                        self.add_record(&mut batch, key.business, rec, &label);
                    }
                }
            })
            .await?;
        let next =
            state.advance(window.end, emitted, self.plan.cfg.lookback).map_err(|e| StepError::Stop(e.to_string()))?;
        Ok(Prepared { window: *window, batch, next, pages, started })
    }

    /// Commits a prepared window and, meanwhile, fetches the window after it as if the commit
    /// succeeds: fetching and committing overlap. A failed commit discards the prefetch.
    async fn commit_and_prefetch(
        &mut self,
        p: Prepared,
        shutdown: &watch::Receiver<bool>,
    ) -> (Result<Committed, StepError>, Option<(Window, Result<Prepared, StepError>)>) {
        let Prepared { window, batch, mut next, pages, started } = p;
        let following = self.plan.next_window(next.watermark, Utc::now());
        let mut rx = shutdown.clone();
        let state_bytes = match self.encode_state(&mut next) {
            Ok(b) => b,
            Err(e) => return (Err(e), None),
        };
        let (done, ahead) = tokio::join!(self.commit(batch, next.watermark, state_bytes), async {
            match following {
                Some(f) => Some((f, self.prepare_window(&f, &next, &mut rx).await)),
                None => None,
            }
        });
        match done {
            Ok(c) => {
                self.state = next;
                info!(
                    stream = %self.plan.cfg.id, window = %window, pages, records = c.written, unchanged = c.unchanged,
                    dead_letters = c.dead_letters, watermark = %fmt_wm(self.state.watermark),
                    elapsed_ms = started.elapsed().as_millis() as u64, "window committed"
                );
                (Ok(c), ahead)
            }
            Err(e) => (Err(e), None),
        }
    }

    /// Fetches the whole set, commits what changed since the last snapshot and tombstones
    /// for what disappeared.
    async fn process_snapshot(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<Committed, StepError> {
        let started = Instant::now();
        let taken_at = crate::domain::time::truncate_to_second(Utc::now());
        let mut batch = Batch::default();
        let mut current = Vec::new();
        let pages = self
            .fetch_all(None, shutdown, &mut |records| match records {
                Records::Restart => {
                    batch = Batch::default();
                    current.clear();
                }
                Records::New(records) => {
                    for (key, hash, rec) in self.keyed(&records) {
                        if self.state.is_unchanged(&key.dedup, hash) {
                            batch.unchanged += 1;
                        } else {
                            self.add_record(&mut batch, key.business, rec, "snapshot");
                        }
                        current.push((key.dedup, hash));
                    }
                }
            })
            .await?;
        let (mut next, removed) = self.state.replace_snapshot(taken_at, current);
        for key in removed.into_iter().filter(|k| !k.starts_with(NO_KEY)) {
            batch.tombstones += 1;
            batch.out.push(OutRecord {
                topic: self.topic.clone(),
                key: key.into_bytes(),
                value: None,
                headers: self.headers(),
            });
        }
        let state_bytes = self.encode_state(&mut next)?;
        let done = self.commit(batch, next.watermark, state_bytes).await?;
        self.state = next;
        info!(
            stream = %self.plan.cfg.id, window = "snapshot", pages, records = done.written, unchanged = done.unchanged,
            tombstones = done.tombstones, dead_letters = done.dead_letters, watermark = %fmt_wm(self.state.watermark),
            elapsed_ms = started.elapsed().as_millis() as u64, "snapshot committed"
        );
        Ok(done)
    }

    /// Whether records can be read again (lookback, or snapshots) and so need content hashes.
    fn needs_hashes(&self) -> bool {
        self.plan.source.spec().mode == Mode::Snapshot || !self.plan.cfg.lookback.is_zero()
    }

    /// Each record with its key and content hash. Hashes and dedup keys only matter for
    /// records that can be read again; otherwise they are left empty.
    fn keyed<'r>(&self, records: &'r [Value]) -> impl Iterator<Item = (RecordKey, u64, &'r Value)> + use<'r> {
        let field = self.plan.source.spec().key_field;
        let hashed = self.needs_hashes();
        records.iter().map(move |r| {
            let hash = if hashed { content_hash(r) } else { 0 };
            let business = record_key(r, field);
            // Keyless records are remembered by content, so an unchanged re-read is not
            // dead-lettered twice.
            let dedup = match (&business, hashed) {
                (_, false) => String::new(),
                (Some(b), true) => b.clone(),
                (None, true) => format!("{NO_KEY}{hash:016x}"),
            };
            (RecordKey { business, dedup }, hash, r)
        })
    }

    /// Encodes a record, keyed by its business id, into the batch, or dead-letters it with
    /// the reason.
    fn add_record(&self, batch: &mut Batch, business: Option<String>, rec: &Value, window: &str) {
        let field = self.plan.source.spec().key_field;
        let result = match business {
            None => Err((None, format!("record has no usable `{field}` (its business id)"))),
            Some(k) => {
                let mut value = Vec::with_capacity(256);
                match self.plan.codec.encode(rec, &mut value) {
                    Ok(()) => Ok(OutRecord {
                        topic: self.topic.clone(),
                        key: k.into_bytes(),
                        value: Some(value),
                        headers: self.headers(),
                    }),
                    Err(e) => Err((Some(k), format!("does not fit schema {}: {e}", self.plan.codec.full_name()))),
                }
            }
        };
        match result {
            Ok(r) => batch.out.push(r),
            Err((business, error)) => {
                warn!(stream = %self.plan.cfg.id, window, key = business.as_deref().unwrap_or(""), error = %error, "dead-lettering record");
                let letter = serde_json::json!({
                    "stream": self.plan.cfg.id.as_str(),
                    "kind": self.plan.source.spec().kind,
                    "window": window,
                    "key": business,
                    "error": error,
                    "record": rec,
                });
                batch.dead_letters += 1;
                batch.out.push(OutRecord {
                    topic: self.dead_letter_topic.clone(),
                    key: business.unwrap_or_else(|| self.plan.cfg.id.as_str().to_owned()).into_bytes(),
                    value: Some(letter.to_string().into_bytes()),
                    // Only the stream header: a dead letter is JSON, not the schema.
                    headers: self.headers[..1].to_vec(),
                });
            }
        }
    }

    fn headers(&self) -> Vec<(&'static str, Arc<[u8]>)> {
        self.headers.clone()
    }

    /// The stored form of the stream's next state. Its oldest lookback hashes may be
    /// forgotten to keep the record within `watermark_max_bytes`: `next` is changed to match,
    /// so memory and Kafka agree.
    fn encode_state(&self, next: &mut WatermarkState) -> Result<Vec<u8>, StepError> {
        let (state_bytes, dropped) =
            next.to_bytes_within(self.watermark_max_bytes).map_err(|e| StepError::Stop(e.to_string()))?;
        if dropped > 0 {
            warn!(
                stream = %self.plan.cfg.id, dropped, kept = next.recent_len(), max_bytes = self.watermark_max_bytes,
                "watermark record would exceed kafka.watermark_max_bytes; forgot the oldest lookback hashes (their records are emitted again if re-read unchanged)"
            );
            self.metrics
                .watermark_hashes_dropped
                .with_label_values(&[self.plan.cfg.id.as_str()])
                .inc_by(dropped as u64);
        }
        Ok(state_bytes)
    }

    /// Commits the batch plus the stream's next state (ending at `watermark`, stored as
    /// `state_bytes` from `encode_state`) in one transaction. The caller adopts the state once this returns `Ok`.
    async fn commit(&self, batch: Batch, watermark: Watermark, state_bytes: Vec<u8>) -> Result<Committed, StepError> {
        let state_len = state_bytes.len();
        let Batch { mut out, unchanged, tombstones, dead_letters } = batch;
        let written = out.len() as u64 - tombstones - dead_letters;
        let bytes: usize =
            out.iter().filter(|r| *r.topic == *self.topic).map(|r| r.value.as_ref().map_or(0, Vec::len)).sum();
        out.push(OutRecord {
            topic: self.watermark_topic.clone(),
            key: self.plan.cfg.id.as_str().as_bytes().to_vec(),
            value: Some(state_bytes),
            headers: Vec::new(),
        });
        match self.sink.commit(out).await {
            Ok(()) => {
                self.metrics.transactions.with_label_values(&["committed"]).inc();
                self.metrics
                    .watermark_record_bytes
                    .with_label_values(&[self.plan.cfg.id.as_str()])
                    .set(state_len as i64);
            }
            Err(CommitError::Aborted(why)) => {
                self.metrics.transactions.with_label_values(&["aborted"]).inc();
                return Err(StepError::Retry(format!("kafka transaction aborted: {why}")));
            }
            Err(CommitError::Fatal(why)) => {
                self.metrics.transactions.with_label_values(&["fatal"]).inc();
                return Err(StepError::ProducerFailed(why));
            }
        }
        let id = self.plan.cfg.id.as_str();
        self.metrics.set_watermark(&self.plan.cfg.id, watermark);
        self.metrics.records.with_label_values(&[id]).inc_by(written);
        self.metrics.bytes.with_label_values(&[id]).inc_by(bytes as u64);
        self.metrics.records_unchanged.with_label_values(&[id]).inc_by(unchanged);
        self.metrics.tombstones.with_label_values(&[id]).inc_by(tombstones);
        self.metrics.dead_letters.with_label_values(&[id]).inc_by(dead_letters);
        self.metrics.windows.with_label_values(&[id]).inc();
        Ok(Committed { written, unchanged, tombstones, dead_letters })
    }

    /// Reads every page of a window (or of the whole set) until the page set is consistent,
    /// handing each page's records to `consume` while the next page is being fetched. Returns
    /// the number of pages. If the set has to be read again, `consume` first gets `Restart`.
    async fn fetch_all(
        &self,
        window: Option<&Window>,
        shutdown: &mut watch::Receiver<bool>,
        consume: &mut (dyn FnMut(Records) + Send),
    ) -> Result<u32, StepError> {
        let spec = self.plan.source.spec();
        let label = window.map(|w| w.to_string()).unwrap_or_else(|| "snapshot".into());
        let mut last_problem = None;
        for attempt in 1..=PAGESET_ATTEMPTS {
            if attempt > 1 {
                consume(Records::Restart);
            }
            let mut set = if spec.paged {
                PageSet::new(spec.key_field, spec.total_on_every_page)
            } else {
                PageSet::unpaged(spec.key_field)
            };
            let mut page_index = 0u32;
            let mut page = self.fetch_page(window, &label, page_index, shutdown).await?;
            let problem = loop {
                match set.add(page) {
                    Ok(Progress::Complete) => {
                        consume(Records::New(set.take_new()));
                        return Ok(set.pages());
                    }
                    Ok(Progress::More) => page_index += 1,
                    Err(e @ PageSetError::MissingTotal) => {
                        return Err(StepError::Stop(format!("page {page_index}: {e}")));
                    }
                    Err(e) => break e,
                }
                if page_index >= MAX_PAGES {
                    return Err(StepError::Stop(format!("more than {MAX_PAGES} pages")));
                }
                // Ask for the next page first, then encode this one while the vendor answers.
                // The yield lets the HTTP connection task (woken onto this thread) write the
                // request before the encoding starts.
                let new = set.take_new();
                let (next, ()) = tokio::join!(self.fetch_page(window, &label, page_index, shutdown), async {
                    tokio::task::yield_now().await;
                    consume(Records::New(new))
                });
                page = next?;
            };
            self.metrics.pageset_refetches.with_label_values(&[self.plan.cfg.id.as_str()]).inc();
            warn!(stream = %self.plan.cfg.id, window = %label, attempt, error = %problem, "page set inconsistent; fetching again");
            last_problem = Some(problem);
        }
        Err(StepError::Retry(format!(
            "pages still inconsistent after {PAGESET_ATTEMPTS} reads: {}",
            last_problem.map(|p| p.to_string()).unwrap_or_default()
        )))
    }

    /// One page, with rate limiting, retries for transient errors and waits for throttles.
    async fn fetch_page(
        &self,
        window: Option<&Window>,
        label: &str,
        page_index: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Page, StepError> {
        let req = PageRequest { window, page_index, page_size: self.plan.page_size, params: &self.plan.cfg.params };
        let mut attempt = 0u32;
        loop {
            tokio::select! {
                _ = self.plan.gate.acquire() => {}
                _ = shutdown.changed() => return Err(StepError::ShutDown),
            }
            let t0 = Instant::now();
            // A request in flight is dropped on shutdown: nothing of the step is committed.
            let res = tokio::select! {
                res = self.plan.source.fetch_page(req) => res,
                _ = shutdown.changed() => return Err(StepError::ShutDown),
            };
            self.metrics.api_duration.with_label_values(&[&self.plan.source_id]).observe(t0.elapsed().as_secs_f64());
            let err = match res {
                Ok(page) => {
                    self.metrics.api_requests.with_label_values(&[&self.plan.source_id, "ok"]).inc();
                    debug!(stream = %self.plan.cfg.id, window = %label, page = page_index, records = page.records.len(), "page fetched");
                    return Ok(page);
                }
                Err(e) => e,
            };
            let outcome = match &err {
                SourceError::Retryable { .. } => "retryable",
                SourceError::Throttled { .. } => "throttled",
                SourceError::Fatal { .. } => "fatal",
            };
            self.metrics.api_requests.with_label_values(&[&self.plan.source_id, outcome]).inc();
            self.metrics.api_errors.with_label_values(&[&self.plan.source_id, err.code()]).inc();
            let wait = match &err {
                SourceError::Fatal { .. } => return Err(StepError::Stop(err.to_string())),
                SourceError::Throttled { after, .. } => {
                    // The ban is on the credential: every stream using it waits it out.
                    self.plan.gate.pause(*after);
                    self.metrics
                        .throttled_seconds
                        .with_label_values(&[&self.plan.source_id])
                        .inc_by(after.as_secs_f64());
                    *after
                }
                SourceError::Retryable { after, .. } => {
                    attempt += 1;
                    self.metrics.request_retries.with_label_values(&[&self.plan.source_id]).inc();
                    if attempt >= REQUEST_ATTEMPTS {
                        return Err(StepError::Retry(format!("page {page_index} failed {attempt} times, last: {err}")));
                    }
                    after
                        .unwrap_or_else(|| backoff::delay(attempt, Duration::from_millis(200), Duration::from_secs(10)))
                }
            };
            warn!(stream = %self.plan.cfg.id, window = %label, page = page_index, error = %err, retry_in = ?wait, "request failed; retrying");
            // A throttle's wait happens in the gate, shared with the credential's other streams.
            if !matches!(err, SourceError::Throttled { .. }) && !sleep_or_shutdown(wait, shutdown).await {
                return Err(StepError::ShutDown);
            }
        }
    }
}

/// Sleeps for `d`; false if shutdown was requested first (or already had been). The one
/// shutdown-aware sleep of the stream loops and the supervisor.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    let mut rx = shutdown.clone();
    if *rx.borrow_and_update() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = rx.changed() => false,
    }
}
