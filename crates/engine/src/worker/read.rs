//! Reading one window (or a whole snapshot) from the vendor: its pages, fetched concurrently
//! once the first page tells the total, checked as a set, each record keyed, hashed and encoded
//! (or dead-lettered), ready for the stream to pick what changed and commit it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::StreamPlan;
use super::budget::{ByteBudget, Growth, Reservation};
use super::gate::Answer;
use crate::domain::backoff;
use crate::domain::json::{Json, JsonError};
use crate::domain::ledger::{HEADER_WINDOW, window_text};
use crate::domain::pageset::{PageSet, PageSetError, Progress};
use crate::domain::record::{Record, key_text};
use crate::domain::sink::{Headers, SpillTables};
use crate::domain::spool::{get_string, get_u32, get_u64, put_bytes, put_u32, put_u64};
use crate::domain::time::{VendorTime, parse_vendor_time};
use crate::domain::watermark::{content_hash, fnv1a};
use crate::domain::{FailureLog, Mode, OutRecord, Page, PageRequest, SourceError, Spill, Spool, Window};
use crate::metrics::{ApiHandles, CredentialHandles, DRIFT_FIELDS, DriftSeen, Metrics};

/// A request is retried this many times before the step is given up and retried later.
const REQUEST_ATTEMPTS: u32 = 5;
/// A page set that does not add up is fetched again this many times before backing off.
const PAGESET_ATTEMPTS: u32 = 3;
/// Guards against a vendor that never stops paging.
const MAX_PAGES: u32 = 100_000;
/// Prefix of the dedup key of records that have no business id.
pub const NO_KEY: &str = "#nokey:";

/// A record the stream could not emit, as the dead-letter topic holds it.
#[derive(serde::Serialize)]
struct DeadLetter<'a> {
    stream: &'a str,
    kind: &'a str,
    window: &'a str,
    key: Option<&'a str>,
    error: &'a str,
    record: Quoted<'a>,
}

/// The record in a dead letter: its JSON exactly as the vendor sent it, or, where that is not
/// JSON every reader takes (a lone surrogate escape), its text as a string.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Quoted<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(&'a str),
}

/// The top-level fields a page's records carry that the schema lacks, with how many records
/// carried each: noted once the page set accepts the page.
type PageDrift = std::collections::BTreeMap<String, u64>;

/// Why a step did not commit, by what the stream loop must do next.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Try again after a backoff.
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Stop(String),
    #[error("producer failed: {0}")]
    ProducerFailed(String),
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("shut down")]
    ShutDown,
}

/// A record ready to commit, unless the stream already emitted it unchanged.
pub struct Candidate {
    /// The key its content hash is remembered by; empty when the stream keeps no hashes.
    pub dedup: String,
    pub hash: u64,
    pub out: OutRecord,
    /// Why it is a dead letter, if it is one (logged when it is committed, not on re-reads).
    pub dead_letter: Option<String>,
    /// Whether the record has a business id (its `out.key`), so the ledger counts it.
    pub identified: bool,
    /// The record's own time, from the endpoint's `window_field` (if it names one and it is set).
    pub time: Option<DateTime<Utc>>,
}

impl Candidate {
    /// The record's business id (its Kafka key), if it has one.
    pub fn business_id(&self) -> Option<&[u8]> {
        self.identified.then_some(self.out.key.as_slice())
    }

    /// Roughly the memory it holds: its allocations (what they reserved, not what they use)
    /// and itself.
    pub fn bytes(&self) -> u64 {
        let out = &self.out;
        let allocated = out.key.capacity()
            + out.value.as_ref().map_or(0, Vec::capacity)
            + self.dedup.capacity()
            + self.dead_letter.as_ref().map_or(0, String::capacity);
        // Each allocation costs its allocator a little more than it asked for.
        (allocated + std::mem::size_of::<Candidate>() + 4 * 16) as u64
    }
}

impl Spill for Candidate {
    type Tables = SpillTables;

    fn write_to(&self, w: &mut impl std::io::Write, tables: &mut SpillTables) -> std::io::Result<()> {
        put_bytes(w, Some(self.dedup.as_bytes()))?;
        put_u64(w, self.hash)?;
        put_bytes(w, self.dead_letter.as_ref().map(String::as_bytes))?;
        put_u32(w, u32::from(self.identified) | u32::from(self.time.is_some()) << 1)?;
        if let Some(t) = self.time {
            put_u64(w, t.timestamp() as u64)?;
            put_u32(w, t.timestamp_subsec_nanos())?;
        }
        self.out.write_to(w, tables)
    }

    fn read_from(r: &mut impl std::io::Read, tables: &SpillTables) -> std::io::Result<Self> {
        let dedup = get_string(r)?.unwrap_or_default();
        let hash = get_u64(r)?;
        let dead_letter = get_string(r)?;
        let flags = get_u32(r)?;
        let time = if flags & 2 != 0 {
            let (secs, nanos) = (get_u64(r)? as i64, get_u32(r)?);
            Some(DateTime::from_timestamp(secs, nanos).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("spill file: bad time {secs}.{nanos}"))
            })?)
        } else {
            None
        };
        let out = OutRecord::read_from(r, tables)?;
        Ok(Candidate { dedup, hash, out, dead_letter, identified: flags & 1 != 0, time })
    }
}

/// Why a window's records could not be spilled to, or read back from, a temporary file.
pub fn spill_failed(e: std::io::Error) -> StepError {
    StepError::Retry(format!("cannot spill a window to a temporary file in {}: {e}", std::env::temp_dir().display()))
}

/// A window's (or snapshot's) records, complete and in the vendor's order.
pub struct Fetched {
    /// On disk if the window did not fit the process's byte budget.
    pub candidates: Spool<Candidate>,
    pub pages: u32,
    /// The vendor's count of the window's records, where its pages gave one.
    pub total: Option<u64>,
    /// Requests sent for this read, retries and refetched page sets included.
    pub requests: u64,
    pub started: Instant,
}

/// One pass over a window's pages: its records, pages and the vendor's total.
struct Pass {
    candidates: Spool<Candidate>,
    pages: u32,
    total: Option<u64>,
}

/// Everything reading needs, shared by the stream loop and the window reads it runs ahead.
pub struct Reader {
    pub plan: Arc<StreamPlan>,
    pub metrics: Arc<Metrics>,
    /// The plan's topic, shared by every record.
    pub topic: Arc<str>,
    pub dead_letter_topic: Arc<str>,
    /// The stream-id header, then the schema-name header, of every data record; built once.
    pub headers: Vec<(&'static str, Arc<[u8]>)>,
    /// Where news for operators goes (a used-up daily quota), if anywhere.
    pub notices: Option<Arc<dyn FailureLog>>,
    /// The source's and the credential's series, and the stream's page-set refetches,
    /// resolved once: a page looks nothing up.
    pub api: ApiHandles,
    pub credential: CredentialHandles,
    pub refetches: prometheus::IntCounter,
    /// The stream's windows held on disk.
    pub spilled: prometheus::IntCounter,
    /// The drift counters this reader met, by unknown field name (at most [`DRIFT_FIELDS`]):
    /// a record with a known drift field takes no metrics-wide lock.
    pub(super) drift: Mutex<HashMap<Box<str>, prometheus::IntCounter>>,
    /// Held while a drift record is published, so the last one written lists every field.
    pub(super) drift_publish: Arc<tokio::sync::Mutex<()>>,
    /// What the last window read held (its candidates' [`Candidate::bytes`]; 0 before the first): the guess
    /// for the next one read ahead.
    pub(super) last_window_bytes: AtomicU64,
}

impl Reader {
    /// The reader of a planned stream, its records bound for the plan's topic (dead letters
    /// for `dead_letter_topic`) with the stream-id and schema-name headers.
    /// A backfill's records say they are its live stream's (`StreamPlan::records_of`).
    pub fn new(plan: Arc<StreamPlan>, metrics: Arc<Metrics>, dead_letter_topic: &str) -> Reader {
        let stream = plan.records_of.as_ref().unwrap_or(&plan.cfg.id);
        Reader {
            api: metrics.api.handles(&plan.source_id),
            credential: metrics.credential.handles(plan.gate.name()),
            refetches: metrics.stream.pageset_refetches(&plan.cfg.id),
            spilled: metrics.stream.windows_spilled(&plan.cfg.id),
            topic: Arc::from(plan.topic.as_str()),
            dead_letter_topic: Arc::from(dead_letter_topic),
            headers: vec![
                (crate::domain::sink::HEADER_STREAM, Arc::from(stream.as_str().as_bytes())),
                (crate::domain::sink::HEADER_SCHEMA, Arc::from(plan.codec.full_name().as_bytes())),
            ],
            plan,
            metrics,
            notices: None,
            drift: Mutex::new(HashMap::new()),
            drift_publish: Arc::new(tokio::sync::Mutex::new(())),
            last_window_bytes: AtomicU64::new(0),
        }
    }

    /// What the next window is guessed to hold: what the last one read held (None before
    /// any was read).
    pub fn window_bytes_guess(&self) -> Option<u64> {
        Some(self.last_window_bytes.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }

    /// Whether records can be read again (lookback, a dedup span, or snapshots) and so need
    /// content hashes.
    pub fn needs_hashes(&self) -> bool {
        self.plan.source.spec().mode == Mode::Snapshot || !self.plan.cfg.dedup_span.is_zero()
    }

    /// Reads every page of a window (or of the whole set) until the page set is consistent;
    /// `StepError::ShutDown` once `cancel` is cancelled.
    pub async fn read(&self, window: Option<&Window>, cancel: &CancellationToken) -> Result<Fetched, StepError> {
        self.read_within(window, cancel, &mut ByteBudget::unlimited().reserve()).await
    }

    /// [`read`](Self::read), the records' bytes taken from `held` page by page (waiting, between
    /// pages, while the process's budget has no room for them).
    pub async fn read_within(
        &self,
        window: Option<&Window>,
        cancel: &CancellationToken,
        held: &mut Reservation,
    ) -> Result<Fetched, StepError> {
        let started = Instant::now();
        let label = window.map(|w| w.to_string()).unwrap_or_else(|| "snapshot".into());
        let sent = AtomicU64::new(0);
        let mut last_problem = None;
        for attempt in 1..=PAGESET_ATTEMPTS {
            held.clear();
            match self.read_once(window, &label, &sent, cancel, held).await? {
                Ok(Pass { candidates, pages, total }) => {
                    // What the window holds (at least 1: an empty window is known, and small).
                    self.last_window_bytes.store(held.bytes().max(1), Ordering::Relaxed);
                    return Ok(Fetched { candidates, pages, total, requests: sent.into_inner(), started });
                }
                Err(problem) => {
                    self.refetches.inc();
                    warn!(stream = %self.plan.cfg.id, window = %label, attempt, error = %problem, "page set inconsistent; fetching again");
                    last_problem = Some(problem);
                }
            }
        }
        Err(StepError::Retry(format!(
            "pages still inconsistent after {PAGESET_ATTEMPTS} reads: {}",
            last_problem.map(|p| p.to_string()).unwrap_or_default()
        )))
    }

    /// One pass over the pages. The first page gives the total; the pages it implies are then
    /// fetched concurrently (the credential's gate bounds how many are out) and added to the
    /// set in order. Pages past those (a vendor that cut its pages short) follow one by one.
    async fn read_once(
        &self,
        window: Option<&Window>,
        label: &str,
        sent: &AtomicU64,
        cancel: &CancellationToken,
        held: &mut Reservation,
    ) -> Result<Result<Pass, PageSetError>, StepError> {
        let spec = self.plan.source.spec();
        let mut set = if spec.paged { PageSet::new(spec.total_on_every_page) } else { PageSet::unpaged() };
        let mut candidates = Spool::default();
        // Each record says which window it came in, as its ledger entry does; the headers are
        // made once for the window and shared by its records.
        let mut headers = self.headers.clone();
        if let Some(w) = window {
            headers.push((HEADER_WINDOW, Arc::from(window_text(w).into_bytes())));
        }
        let headers: Headers = headers.into();
        let first = self.fetch_page(window, label, 0, sent, cancel).await?;
        let planned = match (spec.paged, first.total) {
            (true, Some(total)) => total.div_ceil(u64::from(self.plan.page_size)).min(u64::from(MAX_PAGES)) as u32,
            _ => 1,
        };
        let mut pages = futures_util::stream::iter(1..planned)
            .map(|i| self.fetch_page(window, label, i, sent, cancel))
            .buffered(self.plan.gate.max_in_flight() as usize);
        let mut next = Some(first);
        let mut index = 0u32;
        loop {
            let page = match next.take() {
                Some(p) => p,
                None if index < planned => pages.next().await.expect("a planned page")?,
                None if index >= MAX_PAGES => return Err(StepError::Stop(format!("more than {MAX_PAGES} pages"))),
                None => self.fetch_page(window, label, index, sent, cancel).await?,
            };
            index += 1;
            // Each record is read once, here: the set checks the keys that read found.
            let mut drift = PageDrift::new();
            let read: Vec<Candidate> = self.candidates(page.records, label, &headers, &mut drift).collect();
            match set.add(page.total, read.iter().map(Candidate::business_id)) {
                Ok(progress) => {
                    // Counted for pages the set accepts only: a refused page is read again.
                    for (field, n) in drift {
                        self.note_drift(&field, n);
                    }
                    let mut bytes = 0;
                    for c in read {
                        bytes += c.bytes();
                        candidates.push(c).map_err(spill_failed)?;
                    }
                    // A spilled window's later pages go straight to its file.
                    if !candidates.is_spilled() && held.grow(bytes).await == Growth::OverBudget {
                        candidates.spill().map_err(spill_failed)?;
                        held.clear();
                        super::budget::release_freed_memory();
                        self.spilled.inc();
                        info!(
                            stream = %self.plan.cfg.id, window = %label, page = index - 1, records = candidates.len(),
                            "window larger than what max_buffered_bytes leaves it; holding it on disk until it commits"
                        );
                    }
                    if progress == Progress::Complete {
                        // Dropping `pages` cancels any page the total said would come.
                        return Ok(Ok(Pass { candidates, pages: set.pages(), total: set.expected() }));
                    }
                }
                Err(e @ PageSetError::MissingTotal) => return Err(StepError::Stop(format!("page {}: {e}", index - 1))),
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// Each record read, keyed, hashed (if the stream keeps hashes) and encoded or
    /// dead-lettered.
    fn candidates<'a>(
        &'a self,
        records: Vec<Record>,
        label: &'a str,
        headers: &'a Headers,
        drift: &'a mut PageDrift,
    ) -> impl Iterator<Item = Candidate> + 'a {
        let field = self.plan.source.spec().key_field;
        let window_field = self.plan.source.spec().window_field;
        let hashed = self.needs_hashes();
        // Each record is encoded here, then copied out at its exact size: no growing buffer
        // reallocated per record, no slack held while the window waits to commit.
        let mut scratch = Vec::with_capacity(4096);
        records.into_iter().map(move |r| {
            let json = r.parse();
            let hash = match (&json, hashed) {
                (_, false) => 0,
                (Ok(json), true) => content_hash(json),
                // Not JSON we can read (so no canonical text): remembered by its text, so a
                // re-read is not dead-lettered twice.
                (Err(_), true) => fnv1a(r.text().as_bytes()),
            };
            let business =
                json.as_ref().ok().and_then(|j| j.get(field)).and_then(key_text).map(std::borrow::Cow::into_owned);
            // Keyless records are remembered by content, so an unchanged re-read is not
            // dead-lettered twice.
            let dedup = match (&business, hashed) {
                (_, false) => String::new(),
                (Some(b), true) => b.clone(),
                (None, true) => format!("{NO_KEY}{hash:016x}"),
            };
            let mut time = None;
            if let Ok(json) = &json {
                self.plan.codec.unknown_fields(json, |field| match drift.get_mut(field) {
                    Some(n) => *n += 1,
                    None => {
                        drift.insert(field.to_owned(), 1);
                    }
                });
                time = window_field.and_then(|f| json.get(f)?.as_str().and_then(parse_vendor_time)).and_then(
                    |t| match t {
                        VendorTime::At(at) => Some(at),
                        VendorTime::Unset => None,
                    },
                );
            }
            let identified = business.is_some();
            let (out, dead_letter) = self.encode(business, &r, json.as_ref(), label, headers, &mut scratch);
            Candidate { dedup, hash, out, dead_letter, identified, time }
        })
    }

    /// Counts `records` records carrying a top-level `field` the schema lacks; says so (log,
    /// control topic) the first time this process meets it. The records encode all the same.
    fn note_drift(&self, field: &str, records: u64) {
        let mut known = self.drift.lock().expect("drift lock");
        if let Some(counter) = known.get(field) {
            counter.inc_by(records);
            return;
        }
        let (counter, seen) = self.metrics.stream.drift_field(&self.plan.cfg.id, field);
        counter.inc_by(records);
        if known.len() < DRIFT_FIELDS {
            known.insert(field.into(), counter);
        }
        drop(known);
        let (stream, kind) = (&self.plan.cfg.id, self.plan.source.spec().kind);
        match seen {
            DriftSeen::Before => return,
            DriftSeen::New => {
                warn!(stream = %stream, field, kind, "the vendor sent a field the schema lacks; counting it")
            }
            DriftSeen::FirstOther => {
                warn!(stream = %stream, field, kind, limit = DRIFT_FIELDS, "the vendor sent a field the schema lacks; past the named limit, it and later new fields count as `other`")
            }
        }
        self.publish_drift();
    }

    /// Publishes the stream's unknown fields so far to the control topic for `streams list`;
    /// tried a few times in the background (drift is news, not worth stalling a window for).
    fn publish_drift(&self) {
        let Some(log) = self.notices.clone() else { return };
        let (metrics, stream, lock) = (self.metrics.clone(), self.plan.cfg.id.clone(), self.drift_publish.clone());
        tokio::spawn(async move {
            let _one_at_a_time = lock.lock().await;
            // Read under the lock: whichever publish runs last lists every field.
            let fields = metrics.stream.drift_fields(&stream);
            for attempt in 1..=5 {
                match log.publish_drift(stream.as_str(), &fields).await {
                    Ok(()) => return,
                    Err(e) if attempt == 5 => {
                        warn!(stream = %stream, error = %e, "could not publish schema drift to the control topic")
                    }
                    Err(_) => {
                        tokio::time::sleep(backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(30)))
                            .await
                    }
                }
            }
        });
    }

    /// A record encoded and keyed by its business id, or its dead letter with the reason.
    fn encode(
        &self,
        business: Option<String>,
        rec: &Record,
        json: Result<&Json<'_>, &JsonError>,
        window: &str,
        headers: &Headers,
        scratch: &mut Vec<u8>,
    ) -> (OutRecord, Option<String>) {
        let field = self.plan.source.spec().key_field;
        let result = match (business, json) {
            (_, Err(e)) => Err((None, format!("record is not readable json: {e}"))),
            (None, Ok(_)) => Err((None, format!("record has no usable `{field}` (its business id)"))),
            (Some(k), Ok(json)) => {
                scratch.clear();
                match self.plan.codec.encode(json, scratch) {
                    Ok(()) => Ok(OutRecord {
                        topic: self.topic.clone(),
                        key: k.into_bytes(),
                        value: Some(scratch.as_slice().to_vec()),
                        headers: headers.clone(),
                    }),
                    Err(e) => Err((Some(k), format!("does not fit schema {}: {e}", self.plan.codec.full_name()))),
                }
            }
        };
        match result {
            Ok(r) => (r, None),
            Err((business, error)) => {
                let letter = DeadLetter {
                    stream: self.plan.cfg.id.as_str(),
                    kind: self.plan.source.spec().kind,
                    window,
                    key: business.as_deref(),
                    error: &error,
                    record: if json.is_ok() { Quoted::Json(rec.raw()) } else { Quoted::Text(rec.text()) },
                };
                let value = serde_json::to_vec(&letter).expect("a dead letter always serializes");
                let out = OutRecord {
                    topic: self.dead_letter_topic.clone(),
                    key: business.unwrap_or_else(|| self.plan.cfg.id.as_str().to_owned()).into_bytes(),
                    value: Some(value),
                    // Only the stream header: a dead letter is JSON, not the schema.
                    headers: self.headers[..1].to_vec().into(),
                };
                (out, Some(error))
            }
        }
    }

    /// The first page of `window` alone (through the gate, with the same retries): enough to
    /// learn the vendor's total now, for `tidemark reconcile`.
    pub async fn first_page(&self, window: &Window, cancel: &CancellationToken) -> Result<Page, StepError> {
        self.fetch_page(Some(window), &window.to_string(), 0, &AtomicU64::new(0), cancel).await
    }

    /// Sets the credential's gauges from its gate.
    pub fn observe_gate(&self) {
        let gate = &self.plan.gate;
        let s = gate.stats();
        self.credential.observe(s.limit, s.in_flight, s.max_in_flight, s.requests_per_second, gate.rate());
    }

    /// One page, through the credential's gate, with retries for transient errors and waits
    /// for throttles.
    async fn fetch_page(
        &self,
        window: Option<&Window>,
        label: &str,
        page_index: u32,
        sent: &AtomicU64,
        cancel: &CancellationToken,
    ) -> Result<Page, StepError> {
        let req = PageRequest { window, page_index, page_size: self.plan.page_size, params: &self.plan.cfg.params };
        let gate = &self.plan.gate;
        let mut attempt = 0u32;
        loop {
            let Some(permit) = cancel.run_until_cancelled(gate.acquire()).await else {
                return Err(StepError::ShutDown);
            };
            self.credential.requests.inc();
            sent.fetch_add(1, Ordering::Relaxed);
            self.observe_gate();
            let t0 = Instant::now();
            // A request in flight is dropped on shutdown: nothing of the step is committed.
            let Some(res) = cancel.run_until_cancelled(self.plan.source.fetch_page(req)).await else {
                return Err(StepError::ShutDown);
            };
            self.api.duration().observe(t0.elapsed().as_secs_f64());
            // A ban pauses the credential before this slot is freed: a request waiting for the
            // slot must not slip out first. Only news is logged and counted: every request in
            // flight when a ban began comes back throttled, and answers for the same ban.
            let ban = match &res {
                Err(SourceError::Throttled { after, .. }) => gate.throttled(permit.sent(), *after),
                _ => None,
            };
            let exhausted_until = match &res {
                Err(SourceError::QuotaExhausted { after, .. }) => gate.quota_exhausted(*after),
                _ => None,
            };
            permit.done(match &res {
                // A business error is an answer too: the vendor is keeping up.
                Ok(_) | Err(SourceError::Fatal { .. } | SourceError::ClockSkew { .. }) => {
                    Answer::Healthy(Duration::ZERO)
                }
                Err(SourceError::Throttled { .. } | SourceError::Retryable { .. }) => Answer::Overloaded,
                Err(SourceError::QuotaExhausted { .. }) => Answer::Neutral,
            });
            self.observe_gate();
            let err = match res {
                Ok(page) => {
                    self.api.ok.inc();
                    debug!(stream = %self.plan.cfg.id, window = %label, page = page_index, records = page.records.len(), "page fetched");
                    return Ok(page);
                }
                Err(e) => e,
            };
            let outcome = match &err {
                SourceError::Retryable { .. } => &self.api.retryable,
                SourceError::Throttled { .. } => &self.api.throttled,
                SourceError::QuotaExhausted { .. } => &self.api.quota_exhausted,
                SourceError::Fatal { .. } | SourceError::ClockSkew { .. } => &self.api.fatal,
            };
            outcome.inc();
            self.api.error(err.code());
            self.metrics.stream.error(&self.plan.cfg.id, err.code());
            let wait = match &err {
                SourceError::Fatal { .. } | SourceError::ClockSkew { .. } => {
                    return Err(StepError::Stop(err.to_string()));
                }
                // Throttles and quotas wait in the gate, with every stream on the credential,
                // for as long as it takes: they never stop a stream.
                SourceError::Throttled { .. } => {
                    if let Some(ban) = ban {
                        self.credential.banned_until(std::time::Instant::now() + ban);
                        warn!(stream = %self.plan.cfg.id, window = %label, page = page_index, credential = gate.name(), ban = ?ban, rate_per_second = format!("{:.2}", gate.rate()), error = %err, "vendor throttled the credential; pausing it and lowering its rate");
                    }
                    continue;
                }
                SourceError::QuotaExhausted { .. } => {
                    if let Some(until) = exhausted_until {
                        self.note_quota_exhausted(until, &err);
                    }
                    continue;
                }
                SourceError::Retryable { after, .. } => {
                    attempt += 1;
                    self.api.retries.inc();
                    if attempt >= REQUEST_ATTEMPTS {
                        return Err(StepError::Retry(format!("page {page_index} failed {attempt} times, last: {err}")));
                    }
                    after
                        .unwrap_or_else(|| backoff::delay(attempt, Duration::from_millis(200), Duration::from_secs(10)))
                }
            };
            warn!(stream = %self.plan.cfg.id, window = %label, page = page_index, error = %err, retry_in = ?wait, "request failed; retrying");
            if cancel.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                return Err(StepError::ShutDown);
            }
        }
    }

    /// Says once that the credential's daily quota is used up, until when: in the log, in the
    /// metrics, and in the control topic for `streams list`.
    fn note_quota_exhausted(&self, until: chrono::DateTime<chrono::Utc>, err: &SourceError) {
        let gate = &self.plan.gate;
        let when = crate::domain::time::format_beijing(until, "%Y-%m-%d %H:%M:%S +08:00");
        warn!(stream = %self.plan.cfg.id, credential = gate.name(), until = %when, error = %err, "daily quota exhausted; pausing the credential until it resets");
        self.credential.quota_exhausted_until(until);
        if let Some(log) = self.notices.clone() {
            let (credential, reason) = (gate.name().to_owned(), err.to_string());
            // Tried until it lands or no longer matters (the quota reset): Kafka may be away.
            tokio::spawn(async move {
                let mut attempt = 0;
                while let Err(e) = log.publish_quota(&credential, until, &reason).await {
                    attempt += 1;
                    let wait = backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(60));
                    if attempt == 1 {
                        warn!(credential, error = %e, "could not publish the exhausted quota to the control topic; retrying");
                    }
                    if chrono::Utc::now() + wait >= until {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spilled_candidate_comes_back_with_everything_the_stream_decides_by() {
        let topic: Arc<str> = "t".into();
        let headers: Headers = vec![("tidemark.stream", Arc::from(&b"s"[..]))].into();
        let at = DateTime::from_timestamp(1_764_700_000, 123_000_000).unwrap();
        let candidate = |dedup: &str, dead_letter: Option<&str>, identified, time| Candidate {
            dedup: dedup.into(),
            hash: 0xfeed_beef_0000_0001,
            out: OutRecord {
                topic: topic.clone(),
                key: dedup.as_bytes().to_vec(),
                value: None,
                headers: headers.clone(),
            },
            dead_letter: dead_letter.map(Into::into),
            identified,
            time,
        };
        let mut spool = Spool::default();
        spool.spill().unwrap();
        spool.push(candidate("CK-1", None, true, Some(at))).unwrap();
        spool.push(candidate("#nokey:00ff", Some("record has no usable `id`"), false, None)).unwrap();
        let back: Vec<_> = spool
            .into_vec()
            .unwrap()
            .into_iter()
            .map(|c| (c.dedup, c.hash, c.dead_letter, c.identified, c.time, c.out.key))
            .collect();
        assert_eq!(
            back,
            vec![
                ("CK-1".into(), 0xfeed_beef_0000_0001, None, true, Some(at), b"CK-1".to_vec()),
                (
                    "#nokey:00ff".into(),
                    0xfeed_beef_0000_0001,
                    Some("record has no usable `id`".into()),
                    false,
                    None,
                    b"#nokey:00ff".to_vec()
                ),
            ]
        );
    }
}
