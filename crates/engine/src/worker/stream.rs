//! One stream's poll loop: plan the next step (a window, or a snapshot), fetch and verify its
//! pages, commit records and watermark in one transaction, repeat until caught up, then poll.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::budget::{ByteBudget, Reservation};
use super::context::StreamContext;
use super::read::{Candidate, Fetched, NO_KEY, Reader, StepError, spill_failed};
use crate::domain::backoff;
use crate::domain::ledger::{IdChecksum, LedgerEntry, window_text};
use crate::domain::watermark::fmt_wm;
use crate::domain::window::chrono_duration;
use crate::domain::{
    CommitError, FailureLog, Mode, OutRecord, OutRecords, Sink, StreamId, Watermark, WatermarkState, Window,
};
use crate::metrics::{Metrics, StreamHandles, StreamState};

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
    /// A newer producer with the same transactional id took over: the stream is no longer
    /// this worker's (another replica owns it).
    Fenced(String),
    /// Stopped by an operator (`tidemark streams stop`); with `--until-caught-up` the run
    /// does not wait for it.
    Paused,
    /// Resumed by an operator: to be run again from the committed watermark (which may have
    /// been set meanwhile), on a new producer.
    Resumed,
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

impl StreamReport {
    /// The report of a stream that ended before its worker ran.
    pub fn idle(plan: &super::StreamPlan, outcome: StreamOutcome) -> StreamReport {
        StreamReport {
            stream: plan.cfg.id.clone(),
            topic: Arc::from(plan.topic.as_str()),
            records: 0,
            unchanged: 0,
            tombstones: 0,
            dead_letters: 0,
            windows: 0,
            watermark: plan.cfg.start.resolve(Utc::now()),
            outcome,
        }
    }
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

/// The records of one step on their way into a transaction, and what its ledger entry says.
#[derive(Default)]
struct Batch {
    /// On disk, like the records it was picked from, if the window did not fit the budget.
    out: OutRecords,
    /// The data records' value bytes.
    bytes: u64,
    unchanged: u64,
    tombstones: u64,
    dead_letters: u64,
    /// Records the pages held.
    read: u64,
    /// Every business id read, and those written to the topic.
    ids: IdChecksum,
    emitted_ids: IdChecksum,
    /// Of the records new to the stream, how long after their own time each was found, for
    /// those whose time is before the watermark the window was re-read behind (late data).
    late_by: Vec<Duration>,
}

impl Batch {
    /// Counts a record read, by its business id if it has one.
    fn saw(&mut self, c: &Candidate) {
        self.read += 1;
        if c.identified {
            self.ids.add(&c.out.key);
        }
    }

    /// A batch for records picked from `read`: spilled to disk from the start if they were.
    fn for_records<T: crate::domain::Spill>(read: &crate::domain::Spool<T>) -> Result<Batch, StepError> {
        let mut batch = Batch::default();
        if read.is_spilled() {
            batch.out.spill().map_err(spill_failed)?;
        }
        Ok(batch)
    }

    /// Adds a record (or its dead letter, saying why) to the transaction.
    fn push(
        &mut self,
        out: OutRecord,
        dead_letter: Option<String>,
        stream: &StreamId,
        window: &str,
    ) -> Result<(), StepError> {
        if let Some(error) = dead_letter {
            let key = String::from_utf8_lossy(&out.key);
            warn!(stream = %stream, window, key = %key, error = %error, "dead-lettering record");
            self.dead_letters += 1;
        } else {
            self.emitted_ids.add(&out.key);
            self.bytes += out.value.as_ref().map_or(0, |v| v.len() as u64);
        }
        self.out.push(out).map_err(spill_failed)
    }
}

/// Empty windows read and not yet committed: their advance, held (see
/// `StreamConfig::idle_commit_interval`), is written with the next commit as one ledger entry.
struct HeldEmpty {
    /// The windows' span, first start to last end.
    window: Window,
    /// When the first of them was read.
    since: std::time::Instant,
    pages: u32,
    requests: u64,
}

impl HeldEmpty {
    /// What its ledger entry says: its span, read empty.
    fn facts(&self) -> ReadFacts {
        ReadFacts { window: window_text(&self.window), total: Some(0), pages: self.pages, requests: self.requests }
    }
}

/// What a read told the ledger beside its records.
struct ReadFacts {
    /// [`window_text`] of the window, or `snapshot`.
    window: String,
    total: Option<u64>,
    pages: u32,
    requests: u64,
}

/// A window read, and the bytes of the process's budget it holds until it is committed.
type Held = (Fetched, Reservation);

/// Windows read ahead of the one committing, oldest first. Each is a task of its own, so
/// reading goes on while a window commits; dropping the queue aborts them. How many are read
/// ahead is bounded by the stream's `windows_in_flight` and the process's byte budget.
#[derive(Default)]
struct ReadAhead {
    queue: VecDeque<(Window, JoinHandle<Result<Held, StepError>>)>,
    /// Resolves when the newest queued read is done (streams with lookback only).
    last_read: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl ReadAhead {
    fn clear(&mut self) {
        for (_, task) in self.queue.drain(..) {
            task.abort();
        }
        self.last_read = None;
    }

    fn spawn(&mut self, reader: &Arc<Reader>, w: Window, mut held: Reservation, cancel: &CancellationToken) {
        // `held` was reserved before any later window of the stream: see `Reservation::grow`.
        let (reader, cancel) = (reader.clone(), cancel.clone());
        // With lookback, windows overlap: the later window's read of the overlap must come
        // after the earlier one's, or a record changed in between could be emitted new, then
        // old. Such reads run one after another (still ahead of the commits).
        let (done, after) = if reader.plan.cfg.lookback.is_zero() {
            (None, None)
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            (Some(tx), self.last_read.replace(rx))
        };
        self.queue.push_back((
            w,
            tokio::spawn(async move {
                if let Some(previous) = after {
                    // An error means the earlier read ended without success; its queue is
                    // being dropped, and this read with it.
                    let _ = previous.await;
                }
                // With "window read" below, shows how many windows were read at once.
                debug!(stream = %reader.plan.cfg.id, window = %w, "window read starting");
                let read = reader.read_within(Some(&w), &cancel, &mut held).await;
                debug!(stream = %reader.plan.cfg.id, window = %w, ok = read.is_ok(), "window read");
                if let Some(done) = done {
                    let _ = done.send(());
                }
                Ok((read?, held))
            }),
        ));
    }

    /// The window to commit next when the stream plans `w`: the one read ahead at the front
    /// of the queue if it starts where `w` does and ends no later. It was planned when the
    /// horizon was earlier (the last window of a catch-up, read ahead while the clock moved
    /// on) and is still a whole window of the stream: reading its span again would cost its
    /// pages twice against the quota.
    fn planned(&self, w: Window) -> Window {
        match self.queue.front() {
            Some((q, _)) if q.start == w.start && q.end <= w.end => *q,
            _ => w,
        }
    }

    /// Reads `w` and the windows after it, `ahead` in all, as if each commits, each started only
    /// while the byte budget has room for one as large as the last read (one before any was);
    /// a queue that does not start at `w` (after a failed commit) is dropped.
    fn fill(
        &mut self,
        reader: &Arc<Reader>,
        budget: &Arc<ByteBudget>,
        w: Window,
        ahead: usize,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) {
        if self.queue.front().is_some_and(|(q, _)| *q != w) {
            self.clear();
        }
        if self.queue.is_empty() {
            self.spawn(reader, w, budget.reserve(), cancel);
        }
        while self.queue.len() < ahead {
            let last = self.queue.back().expect("not empty").0;
            let Some(next) = reader.plan.next_window(last.end, now) else { break };
            let room = match reader.window_bytes_guess() {
                Some(guess) => budget.has_room(guess),
                // No size to go by before a window was read: one ahead, while at most half the
                // budget is spent (a first start of many streams does not begin reads for
                // twice what it can hold). Read alone, the first window left the quota idle
                // for a round trip at its start and again at its end.
                None => self.queue.len() < 2 && budget.has_room(budget.limit() / 2),
            };
            if !room {
                break;
            }
            self.spawn(reader, next, budget.reserve(), cancel);
        }
    }

    /// The oldest window's records, once read.
    async fn next(&mut self) -> Result<Held, StepError> {
        let (_, task) = self.queue.pop_front().expect("filled");
        task.await.unwrap_or_else(|e| Err(StepError::Retry(format!("window read failed: {e}"))))
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Everything one stream needs to run: its plan (in the reader), what it borrows from its
/// process (see [`StreamContext`]), and its committed state.
pub struct StreamWorker {
    /// How the stream reads its vendor: plan (source, gate, codec, window settings), topics.
    reader: Arc<Reader>,
    /// Where windows commit (the supervisor's producer in the worker).
    sink: Arc<dyn Sink>,
    /// The process's bytes for windows read ahead.
    budget: Arc<ByteBudget>,
    metrics: Arc<Metrics>,
    watermark_topic: Arc<str>,
    ledger_topic: Arc<str>,
    /// The largest watermark record this stream writes (`kafka.watermark_max_bytes`).
    watermark_max_bytes: usize,
    state: WatermarkState,
    /// Empty windows whose advance `state` holds but Kafka does not yet.
    held_empty: Option<HeldEmpty>,
    /// Who runs the stream (a replica's name, else the worker's transactional id), written as
    /// the watermark record's `tidemark.owner` header so ops can see who committed each window.
    owner: Option<Arc<[u8]>>,
    /// The operators' stop flag for this stream (see `kafka::control`), if followed.
    paused: Option<watch::Receiver<bool>>,
    /// Where to publish the error that stops the stream (the control topic), if anywhere.
    failures_to: Option<Arc<dyn FailureLog>>,
    cancel: CancellationToken,
    until_caught_up: bool,
}

impl StreamWorker {
    /// The worker of stream `plan` in `ctx`, going on from its committed `state`.
    pub fn new(ctx: StreamContext, plan: Arc<super::StreamPlan>, state: WatermarkState) -> StreamWorker {
        let StreamContext {
            sink,
            budget,
            metrics,
            control,
            watermark_topic,
            dead_letter_topic,
            ledger_topic,
            watermark_max_bytes,
            owner,
            paused,
            cancel,
            until_caught_up,
        } = ctx;
        let reader = Reader { notices: control.clone(), ..Reader::new(plan, metrics.clone(), &dead_letter_topic) };
        StreamWorker {
            reader: Arc::new(reader),
            sink,
            budget,
            metrics,
            watermark_topic,
            ledger_topic,
            watermark_max_bytes,
            state,
            held_empty: None,
            owner,
            paused,
            failures_to: control,
            cancel,
            until_caught_up,
        }
    }

    fn plan(&self) -> &super::StreamPlan {
        &self.reader.plan
    }

    /// Runs until caught up (if the context says so), cancelled, or stopped by an error.
    pub async fn run(mut self) -> StreamReport {
        let (until_caught_up, cancel) = (self.until_caught_up, self.cancel.clone());
        let mut report = StreamReport {
            stream: self.plan().cfg.id.clone(),
            topic: self.reader.topic.clone(),
            records: 0,
            unchanged: 0,
            tombstones: 0,
            dead_letters: 0,
            windows: 0,
            watermark: self.state.watermark,
            outcome: StreamOutcome::ShutDown,
        };
        // The stream's series, resolved once for the run.
        let m = StreamHandles::start(&self.metrics, &self.plan().cfg.id, self.plan().lag_bound(), self.state.watermark);
        self.reader.observe_gate();
        info!(stream = %self.plan().cfg.id, watermark = %fmt_wm(self.state.watermark), topic = %self.reader.topic, "stream starting");
        let mut failures = 0u32;
        let mut was_caught_up = false;
        // The windows after the one committing, read meanwhile.
        let mut ahead = ReadAhead::default();
        report.outcome = loop {
            if cancel.is_cancelled() {
                break StreamOutcome::ShutDown;
            }
            if let Some(mut flag) = self.paused.clone()
                && *flag.borrow_and_update()
            {
                // Stopped by an operator: no reads, no commits (windows read ahead are
                // dropped) until resumed.
                ahead.clear();
                m.set_state(StreamState::Paused);
                info!(stream = %self.plan().cfg.id, watermark = %fmt_wm(self.state.watermark), "stopped by an operator; waiting to be resumed");
                if until_caught_up {
                    break StreamOutcome::Paused;
                }
                tokio::select! {
                    _ = flag.wait_for(|stopped| !*stopped) => {}
                    _ = cancel.cancelled() => break StreamOutcome::ShutDown,
                }
                // The watermark may have been set meanwhile (fencing this worker's producer):
                // the stream starts again from what Kafka holds.
                info!(stream = %self.plan().cfg.id, "resumed by an operator; starting again from the committed watermark");
                break StreamOutcome::Resumed;
            }
            let step = self.plan_step(Utc::now());
            let (label, result) = match step {
                Step::CaughtUp { wait } => {
                    m.set_state(StreamState::CaughtUp);
                    if !was_caught_up {
                        info!(stream = %self.plan().cfg.id, watermark = %fmt_wm(self.state.watermark), "caught up");
                        was_caught_up = true;
                    }
                    if until_caught_up {
                        break StreamOutcome::CaughtUp;
                    }
                    if cancel.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                        break StreamOutcome::ShutDown;
                    }
                    continue;
                }
                Step::Window(w) => {
                    let w = ahead.planned(w);
                    m.set_state(StreamState::CatchingUp);
                    (w.to_string(), self.process_window(&m, w, &mut ahead, &cancel).await)
                }
                Step::Snapshot => {
                    // A snapshot is due (or the last one failed): its data is older than the
                    // poll interval promises until this one commits.
                    m.set_state(StreamState::CatchingUp);
                    ("snapshot".to_owned(), self.process_snapshot(&m, &cancel).await)
                }
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
                    m.step_retries.inc();
                    let wait = backoff::delay(failures, Duration::from_secs(1), Duration::from_secs(60));
                    warn!(stream = %self.plan().cfg.id, window = %label, error = %reason, retry_in = ?wait, "step failed; will retry");
                    if cancel.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                        break StreamOutcome::ShutDown;
                    }
                }
                Err(StepError::Stop(reason)) => {
                    m.set_state(StreamState::Stopped);
                    error!(stream = %self.plan().cfg.id, window = %label, error = %reason, "stream stopped");
                    if let Some(log) = &self.failures_to
                        && let Err(e) = log.publish(self.plan().cfg.id.as_str(), &label, &reason).await
                    {
                        warn!(stream = %self.plan().cfg.id, error = %e, "could not publish why the stream stopped");
                    }
                    break StreamOutcome::Stopped(reason);
                }
                Err(StepError::ProducerFailed(reason)) => {
                    error!(stream = %self.plan().cfg.id, window = %label, error = %reason, "producer failed");
                    break StreamOutcome::ProducerFailed(reason);
                }
                Err(StepError::Fenced(reason)) => {
                    warn!(stream = %self.plan().cfg.id, window = %label, error = %reason, "fenced by a newer owner; the stream is no longer this worker's");
                    break StreamOutcome::Fenced(reason);
                }
                Err(StepError::ShutDown) => break StreamOutcome::ShutDown,
            }
        };
        // Ending on its own terms, the stream writes the advance it held (best effort: a
        // restart re-reads the held span, which was empty).
        if matches!(report.outcome, StreamOutcome::CaughtUp | StreamOutcome::ShutDown | StreamOutcome::Paused)
            && self.held_empty.is_some()
        {
            match self.commit_held(&m).await {
                Ok(()) => report.watermark = self.state.watermark,
                Err(e) => {
                    warn!(stream = %self.plan().cfg.id, error = %e, "could not commit the advance over empty windows; they are read again on restart")
                }
            }
        }
        report
    }

    /// Commits the held advance over empty windows alone.
    async fn commit_held(&mut self, m: &StreamHandles) -> Result<(), StepError> {
        let Some(held) = self.held_empty.take() else { return Ok(()) };
        let facts = held.facts();
        let mut next = self.state.clone();
        let state_bytes = self.encode_state(m, &mut next)?;
        if let Err(e) = self.commit(m, Batch::default(), facts, next.watermark, state_bytes, None).await {
            self.held_empty = Some(held);
            return Err(e);
        }
        self.state = next;
        debug!(stream = %self.plan().cfg.id, window = %held.window, "advance over empty windows committed");
        Ok(())
    }

    fn plan_step(&self, now: DateTime<Utc>) -> Step {
        match self.plan().source.spec().mode {
            Mode::Windowed => match self.plan().next_window(self.state.watermark, now) {
                Some(w) => Step::Window(w),
                None => Step::CaughtUp { wait: self.plan().cfg.poll_interval },
            },
            Mode::Snapshot => {
                // The watermark of a snapshot stream is when its last snapshot was taken.
                let due = self.state.watermark + chrono_duration(self.plan().cfg.poll_interval);
                match (due - now).to_std() {
                    Ok(wait) if !wait.is_zero() => Step::CaughtUp { wait },
                    _ => Step::Snapshot,
                }
            }
        }
    }

    /// Picks from a read window what the stream has not emitted unchanged, and the state
    /// that follows it. Runs in window order, against the state the previous window left.
    fn select_window(&self, window: &Window, fetched: Fetched) -> Result<(Batch, WatermarkState), StepError> {
        let hashed = self.reader.needs_hashes();
        let label = window.to_string();
        let mut batch = Batch::for_records(&fetched.candidates)?;
        let mut emitted = Vec::new();
        // What a re-read behind the watermark finds new was late: it was not there when its
        // time was first read (only a stream that keeps hashes can tell new from changed).
        let read_before = self.state.watermark;
        let now = Utc::now();
        for c in fetched.candidates {
            let c = c.map_err(spill_failed)?;
            batch.saw(&c);
            let Candidate { dedup, hash, out, dead_letter, time, .. } = c;
            if hashed
                && let Some(at) = time.filter(|at| *at < read_before)
                && !self.state.remembers(&dedup)
            {
                batch.late_by.push((now - at).to_std().unwrap_or_default());
            }
            // Without hashes nothing can have been seen before (nor is remembered).
            if hashed && self.state.is_unchanged(&dedup, hash) {
                batch.unchanged += 1;
                continue;
            }
            if hashed {
                emitted.push((dedup, hash));
            }
            batch.push(out, dead_letter, &self.plan().cfg.id, &label)?;
        }
        let next = self
            .state
            .advance(window.end, emitted, self.plan().cfg.dedup_span)
            .map_err(|e| StepError::Stop(e.to_string()))?;
        Ok((batch, next))
    }

    /// Commits window `w`, read ahead with the windows after it: they keep being read while
    /// this one commits, and are committed strictly after it, in order. A failure drops them.
    async fn process_window(
        &mut self,
        m: &StreamHandles,
        w: Window,
        ahead: &mut ReadAhead,
        cancel: &CancellationToken,
    ) -> Result<Committed, StepError> {
        let windows = self.plan().cfg.windows_in_flight as usize;
        ahead.fill(&self.reader, &self.budget, w, windows, Utc::now(), cancel);
        let fetched = ahead.next().await;
        let result = match fetched {
            // The window's bytes stay held until its transaction is done.
            Ok((f, _held)) => self.commit_window(m, w, f).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            ahead.clear();
        }
        result
    }

    async fn commit_window(
        &mut self,
        m: &StreamHandles,
        window: Window,
        fetched: Fetched,
    ) -> Result<Committed, StepError> {
        let (pages, started) = (fetched.pages, fetched.started);
        let empty = fetched.candidates.is_empty() && fetched.total.unwrap_or(0) == 0;
        let mut facts =
            ReadFacts { window: window_text(&window), total: fetched.total, pages, requests: fetched.requests };
        let (batch, mut next) = self.select_window(&window, fetched)?;
        if empty {
            // An empty window changes nothing in Kafka but the watermark: its advance is held,
            // with the empty windows before it, for up to `idle_commit_interval` and one
            // `max_span` (what one ledger entry, and a reconcile of it, may cover).
            let held = self.held_empty.as_ref();
            let span = Window { start: held.map_or(window.start, |h| h.window.start), end: window.end };
            let fits = span.end - span.start <= chrono_duration(self.plan().max_span);
            let interval = self.plan().cfg.idle_commit_interval;
            if !interval.is_zero() && fits && held.is_none_or(|h| h.since.elapsed() < interval) {
                let h = self.held_empty.get_or_insert(HeldEmpty {
                    window,
                    since: std::time::Instant::now(),
                    pages: 0,
                    requests: 0,
                });
                h.window = span;
                h.pages += pages;
                h.requests += facts.requests;
                self.state = next;
                // Kafka holds every record up to here: the data is as fresh as this.
                m.set_watermark(self.state.watermark);
                debug!(stream = %self.plan().cfg.id, window = %window, held = %span, "empty window; its advance is held");
                return Ok(Committed { written: 0, unchanged: 0, tombstones: 0, dead_letters: 0 });
            }
            if fits && let Some(h) = self.held_empty.take() {
                // One entry for the held windows and this one.
                facts = ReadFacts {
                    window: window_text(&span),
                    total: Some(0),
                    pages: h.pages + pages,
                    requests: h.requests + facts.requests,
                };
            }
        }
        let state_bytes = self.encode_state(m, &mut next)?;
        let c = self.commit(m, batch, facts, next.watermark, state_bytes, self.held_empty.as_ref()).await?;
        self.held_empty = None;
        self.state = next;
        info!(
            stream = %self.plan().cfg.id, window = %window, pages, records = c.written, unchanged = c.unchanged,
            dead_letters = c.dead_letters, watermark = %fmt_wm(self.state.watermark),
            elapsed_ms = started.elapsed().as_millis() as u64, "window committed"
        );
        Ok(c)
    }

    /// Fetches the whole set, commits what changed since the last snapshot and tombstones
    /// for what disappeared.
    async fn process_snapshot(
        &mut self,
        m: &StreamHandles,
        cancel: &CancellationToken,
    ) -> Result<Committed, StepError> {
        let taken_at = crate::domain::time::truncate_to_second(Utc::now());
        let fetched = self.reader.read(None, cancel).await?;
        let (pages, started) = (fetched.pages, fetched.started);
        let facts = ReadFacts { window: "snapshot".into(), total: fetched.total, pages, requests: fetched.requests };
        let mut batch = Batch::for_records(&fetched.candidates)?;
        let mut current = Vec::with_capacity(fetched.candidates.len());
        for c in fetched.candidates {
            let c = c.map_err(spill_failed)?;
            batch.saw(&c);
            let Candidate { dedup, hash, out, dead_letter, .. } = c;
            if self.state.is_unchanged(&dedup, hash) {
                batch.unchanged += 1;
            } else {
                batch.push(out, dead_letter, &self.plan().cfg.id, "snapshot")?;
            }
            current.push((dedup, hash));
        }
        let (mut next, removed) = self.state.replace_snapshot(taken_at, current);
        for key in removed.into_iter().filter(|k| !k.starts_with(NO_KEY)) {
            batch.tombstones += 1;
            batch
                .out
                .push(OutRecord {
                    topic: self.reader.topic.clone(),
                    key: key.into_bytes(),
                    value: None,
                    headers: self.reader.headers.clone().into(),
                })
                .map_err(spill_failed)?;
        }
        let state_bytes = self.encode_state(m, &mut next)?;
        let done = self.commit(m, batch, facts, next.watermark, state_bytes, None).await?;
        self.state = next;
        info!(
            stream = %self.plan().cfg.id, window = "snapshot", pages, records = done.written, unchanged = done.unchanged,
            tombstones = done.tombstones, dead_letters = done.dead_letters, watermark = %fmt_wm(self.state.watermark),
            elapsed_ms = started.elapsed().as_millis() as u64, "snapshot committed"
        );
        Ok(done)
    }

    /// The stored form of the stream's next state. Its oldest lookback hashes may be
    /// forgotten to keep the record within `watermark_max_bytes`: `next` is changed to match,
    /// so memory and Kafka agree.
    fn encode_state(&self, m: &StreamHandles, next: &mut WatermarkState) -> Result<Vec<u8>, StepError> {
        let (state_bytes, dropped) =
            next.to_bytes_within(self.watermark_max_bytes).map_err(|e| StepError::Stop(e.to_string()))?;
        if dropped > 0 {
            warn!(
                stream = %self.plan().cfg.id, dropped, kept = next.recent_len(), max_bytes = self.watermark_max_bytes,
                "watermark record would exceed kafka.watermark_max_bytes; forgot the oldest lookback hashes (their records are emitted again if re-read unchanged)"
            );
            m.hashes_dropped.inc_by(dropped as u64);
        }
        Ok(state_bytes)
    }

    /// The ledger entry of a read that emitted nothing; the caller sets what it did emit.
    fn ledger_entry(&self, facts: ReadFacts) -> LedgerEntry {
        let plan = self.plan();
        let none = IdChecksum::default().hex();
        LedgerEntry {
            stream: plan.records_of.as_ref().unwrap_or(&plan.cfg.id).to_string(),
            run: if plan.records_of.is_some() { plan.cfg.id.to_string() } else { "live".into() },
            kind: plan.source.spec().kind.to_owned(),
            topic: plan.topic.clone(),
            window: facts.window,
            vendor_total: facts.total,
            read: 0,
            emitted: 0,
            unchanged: 0,
            dead_letters: 0,
            tombstones: 0,
            pages: facts.pages,
            requests: facts.requests,
            committed_at: Utc::now().to_rfc3339(),
            ids_checksum: none.clone(),
            emitted_checksum: none,
        }
    }

    /// `entry` as its ledger topic record, keyed by its stream.
    fn ledger_record(&self, entry: LedgerEntry) -> OutRecord {
        OutRecord {
            topic: self.ledger_topic.clone(),
            key: entry.stream.as_bytes().to_vec(),
            value: Some(serde_json::to_vec(&entry).expect("a ledger entry serializes")),
            headers: Vec::new().into(),
        }
    }

    /// Commits the batch plus the stream's next state (ending at `watermark`, stored as
    /// `state_bytes` from `encode_state`) in one transaction. The caller adopts the state once this returns `Ok`.
    /// `held`: empty windows before this one, whose ledger entry goes in the same transaction.
    async fn commit(
        &self,
        m: &StreamHandles,
        batch: Batch,
        facts: ReadFacts,
        watermark: Watermark,
        state_bytes: Vec<u8>,
        held: Option<&HeldEmpty>,
    ) -> Result<Committed, StepError> {
        let state_len = state_bytes.len();
        let Batch { mut out, bytes, unchanged, tombstones, dead_letters, read, ids, emitted_ids, late_by } = batch;
        let written = out.len() as u64 - tombstones - dead_letters;
        if let Some(h) = held {
            out.push(self.ledger_record(self.ledger_entry(h.facts()))).map_err(spill_failed)?;
        }
        let entry = LedgerEntry {
            read,
            emitted: written,
            unchanged,
            dead_letters,
            tombstones,
            ids_checksum: ids.hex(),
            emitted_checksum: emitted_ids.hex(),
            ..self.ledger_entry(facts)
        };
        out.push(self.ledger_record(entry)).map_err(spill_failed)?;
        out.push(OutRecord {
            topic: self.watermark_topic.clone(),
            key: self.plan().cfg.id.as_str().as_bytes().to_vec(),
            value: Some(state_bytes),
            headers: self
                .owner
                .iter()
                .map(|o| (crate::domain::sink::HEADER_OWNER, o.clone()))
                .collect::<Vec<_>>()
                .into(),
        })
        .map_err(spill_failed)?;
        match self.sink.commit(out).await {
            Ok(()) => {
                m.transactions.committed.inc();
                m.watermark_record_bytes().set(state_len as i64);
            }
            Err(CommitError::Aborted(why)) => {
                m.transactions.aborted.inc();
                m.error("kafka");
                return Err(StepError::Retry(format!("kafka transaction aborted: {why}")));
            }
            Err(CommitError::Fatal(why)) => {
                m.transactions.fatal.inc();
                m.error("kafka");
                return Err(StepError::ProducerFailed(why));
            }
            Err(CommitError::Fenced(why)) => {
                m.transactions.fenced.inc();
                return Err(StepError::Fenced(why));
            }
        }
        m.set_watermark(watermark);
        m.records.inc_by(written);
        m.bytes.inc_by(bytes);
        m.unchanged.inc_by(unchanged);
        m.tombstones.inc_by(tombstones);
        m.dead_letters.inc_by(dead_letters);
        m.late_records.inc_by(late_by.len() as u64);
        for d in &late_by {
            m.late_delay.observe(d.as_secs_f64());
        }
        m.windows.inc();
        Ok(Committed { written, unchanged, tombstones, dead_letters })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::num::NonZeroU32;
    use std::sync::Mutex;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::avro::RecordCodec;
    use crate::config::StartAt;
    use crate::domain::ledger::HEADER_WINDOW;
    use crate::domain::{ApiSpec, BoxFuture, Page, PageRequest, Record, Source, SourceError};
    use crate::worker::StreamPlan;
    use crate::worker::config::StreamConfig;
    use crate::worker::gate::CredentialGate;

    static SPEC: ApiSpec = ApiSpec {
        kind: "test.orders",
        method: "orders",
        list_field: "orders",
        reserved_params: &["sign"],
        default_params: &[],
        schema: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
        key_field: "id",
        default_topic: "orders",
        max_span: Duration::from_secs(3600),
        max_page_size: 10,
        default_page_size: 10,
        mode: Mode::Windowed,
        paged: true,
        total_on_every_page: false,
        window_field: None,
        request_object: None,
        list_item: None,
    };
    const WINDOWS: i64 = 10;
    const PER_WINDOW: u64 = 25;

    /// 25 records an hour; earlier hours answer more slowly, so reads run ahead finish
    /// before the windows before them. Notes when each window's last page was served.
    struct SlowFirst {
        origin: DateTime<Utc>,
        finished: Mutex<Vec<i64>>,
    }

    /// A test API of `SPEC`: the tests' sources differ only in how they answer a page.
    trait Answers: Send + Sync {
        fn answer<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>>;
    }

    /// An [`Answers`] as a `Source` of `SPEC` on credential `test`.
    struct OfSpec<A>(A);

    impl<A: Answers> Source for OfSpec<A> {
        fn spec(&self) -> &'static ApiSpec {
            &SPEC
        }
        fn quota_key(&self) -> String {
            "test".into()
        }
        fn fetch_page<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
            self.0.answer(req)
        }
    }

    impl Answers for SlowFirst {
        fn answer<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
            Box::pin(async move {
                let w = req.window.expect("windowed");
                let hour = (w.start - self.origin).num_hours();
                tokio::time::sleep(Duration::from_millis(50 * (WINDOWS - hour).max(0) as u64)).await;
                let from = u64::from(req.page_index * req.page_size);
                let to = (from + u64::from(req.page_size)).min(PER_WINDOW);
                if to == PER_WINDOW {
                    self.finished.lock().unwrap().push(hour);
                }
                let records = (from..to).map(|i| json!({"id": format!("{hour}-{i}")}).into()).collect();
                Ok(Page { records, total: Some(PER_WINDOW) })
            })
        }
    }

    /// Keeps every commit, in order.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<Vec<OutRecord>>>);

    impl Sink for Recorded {
        fn commit(&self, records: OutRecords) -> BoxFuture<'_, Result<(), CommitError>> {
            self.0.lock().unwrap().push(records.into_vec().expect("records in memory"));
            Box::pin(async { Ok(()) })
        }
    }

    /// Stream `test/<spec's name>` of `spec` on `source`, with settle 0 and 8 windows ahead.
    fn plan(
        source: Arc<dyn Source>,
        spec: &'static ApiSpec,
        start: &str,
        lookback: Duration,
        poll_interval: Duration,
    ) -> Arc<StreamPlan> {
        let name = spec.kind.trim_start_matches("test.");
        Arc::new(StreamPlan {
            cfg: StreamConfig {
                id: StreamId::parse(&format!("test/{name}")).unwrap(),
                source: "s".into(),
                topic: None,
                start: StartAt::parse("start", start).unwrap(),
                lookback,
                dedup_span: lookback,
                settle: Duration::ZERO,
                poll_interval,
                max_span: None,
                page_size: None,
                windows_in_flight: 8,
                idle_commit_interval: Duration::ZERO,
                params: BTreeMap::new(),
            },
            source_id: "s".into(),
            source,
            gate: Arc::new(CredentialGate::new("s", NonZeroU32::new(10_000).unwrap(), NonZeroU32::new(64).unwrap())),
            codec: Arc::new(RecordCodec::from_avsc(spec.schema).unwrap()),
            topic: name.into(),
            compacted: spec.mode == Mode::Snapshot,
            max_span: spec.max_span,
            page_size: 10,
            until: None,
            records_of: None,
        })
    }

    /// The worker of `plan` on `sink` from `state`, polling on once caught up.
    fn worker(
        plan: Arc<StreamPlan>,
        sink: Arc<dyn Sink>,
        metrics: Arc<Metrics>,
        state: WatermarkState,
    ) -> StreamWorker {
        let ctx = StreamContext {
            sink,
            budget: crate::worker::budget::ByteBudget::unlimited(),
            metrics,
            control: None,
            watermark_topic: Arc::from("wm"),
            dead_letter_topic: Arc::from("dlq"),
            ledger_topic: Arc::from("ledger"),
            watermark_max_bytes: 1 << 20,
            owner: None,
            paused: None,
            cancel: CancellationToken::new(),
            until_caught_up: false,
        };
        StreamWorker::new(ctx, plan, state)
    }

    /// Runs a stream over `SlowFirst` until it committed ten windows: which windows' reads
    /// finished in what order, and the commits.
    async fn slow_first(lookback: Duration) -> (Vec<i64>, Vec<Vec<OutRecord>>) {
        let origin = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let source = Arc::new(OfSpec(SlowFirst { origin, finished: Mutex::new(Vec::new()) }));
        let id = StreamId::parse("test/orders").unwrap();
        let plan = plan(source.clone(), &SPEC, "2026-01-01 08:00:00", lookback, Duration::from_secs(60));
        let sink = Arc::new(Recorded::default());
        let worker = worker(plan, sink.clone(), Metrics::new(), WatermarkState::new(id, origin));
        // "Now" is real time, far past the windows: stop the stream after ten of them by
        // looking only at what it committed.
        let run = tokio::spawn(worker.run());
        while sink.0.lock().unwrap().len() < WINDOWS as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        run.abort();
        let finished = source.0.finished.lock().unwrap()[..WINDOWS as usize].to_vec();
        let commits = sink.0.lock().unwrap().clone();
        (finished, commits)
    }

    #[tokio::test(start_paused = true)]
    async fn windows_read_ahead_commit_strictly_in_order() {
        let origin = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (finished, commits) = slow_first(Duration::ZERO).await;
        assert!(finished.windows(2).any(|p| p[0] > p[1]), "reads ran ahead and finished out of order: {finished:?}");
        for (hour, commit) in commits.iter().take(WINDOWS as usize).enumerate() {
            let (wm, rest): (Vec<_>, Vec<_>) = commit.iter().partition(|r| &*r.topic == "wm");
            let (ledger, data): (Vec<_>, Vec<_>) = rest.into_iter().partition(|r| &*r.topic == "ledger");
            let state = WatermarkState::from_bytes("test/orders", wm[0].value.as_ref().unwrap()).unwrap();
            assert_eq!(state.watermark, origin + chrono::Duration::hours(hour as i64 + 1), "commit {hour}");
            assert_eq!(data.len() as u64, PER_WINDOW, "commit {hour} holds its window's records");
            let prefix = format!("{hour}-");
            assert!(data.iter().all(|r| r.key.starts_with(prefix.as_bytes())), "commit {hour} holds only its window");
            // The window's ledger entry, in the same transaction, says what it holds.
            assert_eq!(ledger.len(), 1, "commit {hour} has one ledger entry");
            let entry: LedgerEntry = serde_json::from_slice(ledger[0].value.as_ref().unwrap()).unwrap();
            let window = Window {
                start: origin + chrono::Duration::hours(hour as i64),
                end: origin + chrono::Duration::hours(hour as i64 + 1),
            };
            assert_eq!((entry.stream.as_str(), entry.run.as_str()), ("test/orders", "live"));
            assert_eq!(entry.window, window_text(&window), "commit {hour}");
            assert_eq!(
                (entry.read, entry.emitted, entry.unchanged, entry.vendor_total),
                (PER_WINDOW, PER_WINDOW, 0, Some(PER_WINDOW))
            );
            let keys: IdChecksum = data.iter().map(|r| r.key.as_slice()).collect();
            assert_eq!(
                (entry.ids_checksum.as_str(), entry.emitted_checksum.as_str()),
                (keys.hex().as_str(), keys.hex().as_str())
            );
            let header = |r: &&OutRecord| r.headers.iter().find(|(n, _)| *n == HEADER_WINDOW).map(|(_, v)| v.to_vec());
            assert!(
                data.iter().all(|r| header(r) == Some(entry.window.clone().into_bytes())),
                "each record names its window"
            );
        }
    }

    static SNAPSHOT_SPEC: ApiSpec = ApiSpec { kind: "test.balances", mode: Mode::Snapshot, paged: false, ..SPEC };

    /// A snapshot API whose every request fails with a 503.
    struct Failing(std::sync::atomic::AtomicU32);

    impl Source for Failing {
        fn spec(&self) -> &'static ApiSpec {
            &SNAPSHOT_SPEC
        }
        fn quota_key(&self) -> String {
            "test".into()
        }
        fn fetch_page<'a>(&'a self, _req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {
                Err(SourceError::Retryable { code: "http_503".into(), reason: "unavailable".into(), after: None })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_stream_whose_snapshots_fail_reports_catching_up_and_the_error_code() {
        // Without this a snapshot stream had no state before its first snapshot, so the
        // no-progress alert could not see it failing.
        let source = Arc::new(Failing(Default::default()));
        let id = StreamId::parse("test/balances").unwrap();
        let plan = plan(source.clone(), &SNAPSHOT_SPEC, "1d", Duration::ZERO, Duration::from_secs(600));
        let metrics = Metrics::new();
        // The last snapshot was a day ago: one is due.
        let state = WatermarkState::new(id, Utc::now() - chrono::Duration::days(1));
        let worker = worker(plan, Arc::new(Recorded::default()), metrics.clone(), state);
        let run = tokio::spawn(worker.run());
        while source.0.load(std::sync::atomic::Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = metrics.render();
        run.abort();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has(r#"tidemark_stream_state{state="catching_up",stream="test/balances"} 1"#), "{text}");
        assert!(has(r#"tidemark_stream_state{state="caught_up",stream="test/balances"} 0"#), "{text}");
        assert!(has(r#"tidemark_stream_lag_bound_seconds{stream="test/balances"} 660"#), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with(
                r#"tidemark_stream_last_error_timestamp_seconds{code="http_503",stream="test/balances"}"#
            )),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_lookback_overlapping_reads_run_in_window_order() {
        // Overlapping windows: a later read of the overlap must not finish before the earlier.
        let (finished, commits) = slow_first(Duration::from_secs(600)).await;
        assert!(finished.windows(2).all(|p| p[0] <= p[1]), "reads finished in window order: {finished:?}");
        assert!(commits.len() >= WINDOWS as usize);
    }

    /// One record a window; the window starting at `slow_start` answers only after `delay`,
    /// so the windows read ahead of it wait while the clock moves on. Notes every window
    /// asked for.
    struct SlowOne {
        slow_start: DateTime<Utc>,
        delay: Duration,
        asked: Mutex<Vec<Window>>,
        /// How many windows had been asked for when the slow one answered.
        asked_meanwhile: Mutex<Option<usize>>,
    }

    impl Answers for SlowOne {
        fn answer<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
            Box::pin(async move {
                let w = *req.window.expect("windowed");
                self.asked.lock().unwrap().push(w);
                if w.start == self.slow_start {
                    tokio::time::sleep(self.delay).await;
                    *self.asked_meanwhile.lock().unwrap() = Some(self.asked.lock().unwrap().len());
                }
                Ok(Page { records: vec![json!({"id": w.start.to_rfc3339()}).into()], total: Some(1) })
            })
        }
    }

    #[tokio::test]
    async fn a_window_read_ahead_before_the_horizon_moved_commits_as_read() {
        // Real time: the horizon is the wall clock. The last window of the catch-up ends at
        // the horizon when it is read ahead; by the time it commits the horizon has moved
        // two seconds on. Reading its span again cost its pages twice against the quota.
        let id = StreamId::parse("test/orders").unwrap();
        let start = crate::domain::time::truncate_to_second(Utc::now() - chrono::Duration::minutes(150));
        // The second window is slow: the last is read ahead of it and waits.
        let slow_start = start + chrono::Duration::hours(1);
        let source = Arc::new(OfSpec(SlowOne {
            slow_start,
            delay: Duration::from_secs(2),
            asked: Mutex::default(),
            asked_meanwhile: Mutex::default(),
        }));
        let plan = plan(source.clone(), &SPEC, "150m", Duration::ZERO, Duration::from_secs(1));
        let sink = Arc::new(Recorded::default());
        let worker = worker(plan, sink.clone(), Metrics::new(), WatermarkState::new(id, start));
        let run = tokio::spawn(worker.run());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sink.0.lock().unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "three windows committed within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run.abort();
        let asked = source.0.asked.lock().unwrap().clone();
        let third =
            asked.iter().find(|w| w.start == start + chrono::Duration::hours(2)).expect("the third window read");
        assert!(third.end + chrono::Duration::seconds(1) <= Utc::now(), "the horizon moved on after {third}");
        let mut starts: Vec<_> = asked.iter().map(|w| w.start).collect();
        starts.sort();
        let before = starts.len();
        starts.dedup();
        assert_eq!(starts.len(), before, "no window read twice: {asked:?}");
        let committed: Vec<_> =
            sink.0.lock().unwrap()[..3].iter().map(|c| c.iter().filter(|r| &*r.topic == "orders").count()).collect();
        assert_eq!(committed, [1, 1, 1], "each of the three windows committed its record");
    }

    #[tokio::test(start_paused = true)]
    async fn before_a_window_was_read_a_stream_reads_one_ahead() {
        // Read alone, the first window left the quota idle for a round trip at its start and
        // at its end; with no size to go by, no more than one goes ahead of it.
        let origin = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let source = Arc::new(OfSpec(SlowOne {
            slow_start: origin,
            delay: Duration::from_secs(1),
            asked: Mutex::default(),
            asked_meanwhile: Mutex::default(),
        }));
        let plan = plan(source.clone(), &SPEC, "2026-01-01 08:00:00", Duration::ZERO, Duration::from_secs(60));
        let sink = Arc::new(Recorded::default());
        let state = WatermarkState::new(StreamId::parse("test/orders").unwrap(), origin);
        let run = tokio::spawn(worker(plan, sink.clone(), Metrics::new(), state).run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while sink.0.lock().unwrap().len() < 4 {
            assert!(tokio::time::Instant::now() < deadline, "four windows committed within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        run.abort();
        assert_eq!(*source.0.asked_meanwhile.lock().unwrap(), Some(2), "the first window and one ahead of it");
        // Once one was read, its size lets the rest of `windows_in_flight` go ahead.
        assert!(source.0.asked.lock().unwrap().len() > 4, "{:?}", source.0.asked.lock().unwrap());
    }

    /// Every window answers the same records, given as the text a vendor sent.
    struct Texts(&'static [&'static str]);

    impl Answers for Texts {
        fn answer<'a>(&'a self, _req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
            Box::pin(async move {
                let records = self
                    .0
                    .iter()
                    .map(|t| Record::new(serde_json::value::RawValue::from_string((*t).to_owned()).unwrap()).unwrap())
                    .collect::<Vec<_>>();
                Ok(Page { total: Some(records.len() as u64), records })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_that_cannot_be_read_or_keyed_are_dead_letters_quoting_the_vendors_text() {
        // serde_json lets a lone surrogate escape through a page's syntax check; the record
        // cannot be read as text, so it is dead-lettered whole, not retried forever or lost.
        const TEXTS: &[&str] = &[r#"{"id": "ok", "x": 1}"#, r#"{ "id": "bad",  "note": "\ud800" }"#, r#"{"other": 2}"#];
        let origin = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let plan =
            plan(Arc::new(OfSpec(Texts(TEXTS))), &SPEC, "2026-01-01 08:00:00", Duration::ZERO, Duration::from_secs(60));
        let sink = Arc::new(Recorded::default());
        let state = WatermarkState::new(StreamId::parse("test/orders").unwrap(), origin);
        let run = tokio::spawn(worker(plan, sink.clone(), Metrics::new(), state).run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while sink.0.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "a window committed within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        run.abort();
        let first = sink.0.lock().unwrap()[0].clone();
        let data: Vec<_> = first.iter().filter(|r| &*r.topic == "orders").map(|r| r.key.clone()).collect();
        assert_eq!(data, [b"ok".to_vec()]);
        let letters: Vec<serde_json::Value> = first
            .iter()
            .filter(|r| &*r.topic == "dlq")
            .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
            .collect();
        assert_eq!(letters.len(), 2, "{letters:?}");
        // Quoted as a string: a lone surrogate is not JSON every reader takes (serde_json refuses it).
        assert!(letters[0]["error"].as_str().unwrap().contains("not readable json"), "{}", letters[0]);
        assert_eq!(letters[0]["record"].as_str(), Some(TEXTS[1]), "the vendor's text, spacing and all");
        // A readable record is quoted as the JSON the vendor sent.
        assert!(letters[1]["error"].as_str().unwrap().contains("no usable `id`"), "{}", letters[1]);
        assert_eq!(letters[1]["record"], json!({"other": 2}));
    }

    /// Answers its first page with two records sharing a key, every later one with one record;
    /// all carry a field the schema lacks.
    #[derive(Default)]
    struct DuplicateFirst(std::sync::atomic::AtomicUsize);

    impl Answers for DuplicateFirst {
        fn answer<'a>(&'a self, _req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
            Box::pin(async move {
                let records: Vec<Record> = match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => vec![json!({"id": "a", "new": 1}).into(), json!({"id": "a", "new": 2}).into()],
                    _ => vec![json!({"id": "a", "new": 1}).into()],
                };
                Ok(Page { total: Some(records.len() as u64), records })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn schema_drift_counts_only_the_pages_the_page_set_accepts() {
        // The refused page is read again: counting its records too would count them twice.
        let origin = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let source = Arc::new(OfSpec(DuplicateFirst::default()));
        let plan = plan(source.clone(), &SPEC, "2026-01-01 08:00:00", Duration::ZERO, Duration::from_secs(60));
        let sink = Arc::new(Recorded::default());
        let metrics = Metrics::new();
        let state = WatermarkState::new(StreamId::parse("test/orders").unwrap(), origin);
        let run = tokio::spawn(worker(plan, sink.clone(), metrics.clone(), state).run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while sink.0.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "a window committed within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        run.abort();
        // A page is fetched and judged in one poll of this single-threaded runtime, so every
        // answer but the refused first one was accepted (read ahead or committed).
        let answered = source.0.0.load(std::sync::atomic::Ordering::SeqCst) as u64;
        let counted = metrics
            .render()
            .lines()
            .find(|l| l.starts_with("tidemark_schema_drift_fields_total") && l.contains(r#"field="new""#))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap());
        assert!(answered >= 2, "the refused page was read again");
        assert_eq!(counted, Some(answered - 1), "one record an accepted page, none for the refused one");
    }
}
