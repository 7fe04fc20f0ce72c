//! Operations on the streams' positions and states, for ops people: list them, stop and resume
//! them (the control topic), set or reset their watermarks (a transaction that fences the
//! stream's current owner).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, StartAt};
use crate::domain::time::{DATETIME, format_beijing, truncate_to_second};
use crate::domain::{OutRecord, StreamId, WatermarkState};
use crate::kafka::control::{self, ControlError, StreamControl};
use crate::kafka::watermarks::{self, LoadError};
use crate::kafka::{CommitError, TxnSink};
use crate::supervisor::{Launch, ResumeError, Supervisor};
use crate::worker::{StreamOutcome, StreamPlan};

/// Headers of a watermark record an operator wrote.
pub const HEADER_SET_BY: &str = "tidemark.set-by";
pub const HEADER_SET_FROM: &str = "tidemark.set-from";

/// Why an operation was refused or failed, naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("unknown stream {stream:?} (configured: {known})")]
    UnknownStream { stream: String, known: String },
    #[error(
        "stream {stream:?} is running (not stopped by `tidemark streams stop`): stop it first, or pass --force to fence its owner"
    )]
    Running { stream: String },
    #[error("--to {to} is in the future (now {now}); a watermark can only be set to a time that has passed")]
    FutureTime { to: String, now: String },
    #[error("--to {text:?}: {reason}")]
    BadTime { text: String, reason: String },
    #[error(transparent)]
    Watermarks(#[from] LoadError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot write the watermark of {stream}: {error}")]
    Commit { stream: String, error: CommitError },
    #[error("{0}")]
    Setup(String),
}

/// One stream as `tidemark streams list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub stream: String,
    /// In the config (else only in the watermark topic: a stream removed from the config, or
    /// a backfill's progress, `backfill:<from>:<to>:<stream>`).
    pub configured: bool,
    /// Beijing time; `None` before the first commit or after a reset.
    pub watermark: Option<String>,
    pub lag_seconds: Option<i64>,
    /// `running` (committed within two polls), `stopped` (by an operator), `failed` (stopped
    /// on an error retrying cannot fix), `quota exhausted until <time> +08:00` (its
    /// credential's daily quota is used up; it goes on once it resets), `unknown`.
    pub state: String,
    /// When its credential's used-up daily quota resets (Beijing time), while it is used up.
    pub quota_exhausted_until: Option<String>,
    /// Who committed the last watermark record: a replica, a worker's transactional id, or
    /// `ops:<user>`.
    pub owner: Option<String>,
    pub last_commit: Option<String>,
    /// The error that stopped the stream, as its worker published it (if it has not
    /// committed since).
    pub last_error: Option<String>,
    pub stopped_by: Option<String>,
    pub stopped_at: Option<String>,
    pub reason: Option<String>,
    /// Top-level fields its vendor sent that its schema lacks, as its worker last published
    /// them (at most 50 names, then `other`); empty when none were seen.
    pub schema_drift: Vec<String>,
    /// The configured lookback (`streams[].lookback`), beside which late data is judged.
    pub lookback: Option<String>,
    /// The stream's last `tidemark reconcile`, as it published it: when, windows that matched,
    /// and records the vendor added to committed windows after they committed.
    pub last_reconcile: Option<String>,
}

/// Every stream in the config or the watermark topic, with its position and state.
pub async fn list(config: &Config) -> Result<Vec<StreamRow>, OpsError> {
    prepare_topics(config).await?;
    let stored = watermarks::load_stored(&config.kafka, Duration::from_secs(60)).await?;
    let controls = control::load(&config.kafka).await?;
    let now = Utc::now();
    let configured: BTreeSet<&str> = config.streams.iter().map(|s| s.id.as_str()).collect();
    // Settle records (see `kafka::hanging`) share the topic but are no stream.
    let ids: BTreeSet<&str> = configured
        .iter()
        .copied()
        .chain(stored.keys().map(String::as_str).filter(|k| *k != crate::kafka::sink::SETTLE_KEY))
        .collect();
    Ok(ids
        .into_iter()
        .map(|id| {
            let s = stored.get(id);
            let c = controls.flags.get(id).filter(|c| c.stopped);
            let poll = config.streams.iter().find(|x| x.id.as_str() == id).map(|x| x.poll_interval);
            let wm = s.and_then(|s| s.state.as_ref()).map(|st| st.watermark);
            let last = s.and_then(|s| s.committed_at);
            // The error that stopped the stream, unless it committed since.
            let failure = controls.failures.get(id).filter(|f| last.is_none_or(|at| f.at > at));
            let source = config.streams.iter().find(|x| x.id.as_str() == id).map(|x| x.source.as_str());
            let quota = source.and_then(|src| controls.exhausted_quota(src, now));
            let fresh = match (poll, last) {
                (Some(poll), Some(at)) => (now - at).to_std().unwrap_or_default() <= poll * 2 + Duration::from_secs(30),
                _ => false,
            };
            StreamRow {
                stream: id.to_owned(),
                configured: configured.contains(id),
                watermark: wm.map(|w| format_beijing(w, DATETIME)),
                lag_seconds: wm.map(|w| (now - w).num_seconds()),
                state: if c.is_some() {
                    "stopped".into()
                } else if failure.is_some() {
                    "failed".into()
                } else if let Some(q) = quota {
                    format!("quota exhausted until {}", format_beijing(q.until, "%H:%M:%S +08:00"))
                } else if fresh {
                    "running".into()
                } else {
                    "unknown".into()
                },
                quota_exhausted_until: quota.map(|q| format_beijing(q.until, DATETIME)),
                owner: s.and_then(|s| s.owner.clone()),
                last_commit: last.map(|t| format_beijing(t, DATETIME)),
                last_error: failure
                    .map(|f| format!("{} (window {}, {})", f.error, f.window, format_beijing(f.at, DATETIME))),
                stopped_by: c.map(|c| c.by.clone()),
                stopped_at: c.map(|c| format_beijing(c.at, DATETIME)),
                reason: c.and_then(|c| c.reason.clone()),
                schema_drift: controls.drift.get(id).map(|d| d.fields.clone()).unwrap_or_default(),
                lookback: config
                    .streams
                    .iter()
                    .find(|x| x.id.as_str() == id)
                    .map(|x| crate::domain::config::format_duration(x.lookback)),
                last_reconcile: controls.reconciled.get(id).map(|r| {
                    format!(
                        "{}: {} of {} windows match, late records: {}",
                        format_beijing(r.at, DATETIME),
                        r.windows - r.differing,
                        r.windows,
                        r.late_records
                    )
                }),
            }
        })
        .collect())
}

/// What `streams stop|resume` wrote (or, in a dry run, would write).
#[derive(Debug, Clone, Serialize)]
pub struct ControlChange {
    pub stream: String,
    pub stopped: bool,
    pub by: String,
    pub at: String,
    pub reason: Option<String>,
    pub written: bool,
}

/// Stops (or resumes) `streams`: running workers follow the flag within one poll.
pub async fn set_stopped(
    config: &Config,
    streams: &[String],
    stopped: bool,
    reason: Option<String>,
    dry_run: bool,
) -> Result<Vec<ControlChange>, OpsError> {
    for s in streams {
        known(config, s)?;
    }
    prepare_topics(config).await?;
    let mut out = Vec::new();
    for s in streams {
        let c = StreamControl { stopped, by: operator(), at: Utc::now(), reason: reason.clone() };
        if !dry_run {
            control::write(&config.kafka, s, &c).await?;
            tracing::info!(stream = %s, stopped, by = %c.by, "stream control written");
        }
        out.push(ControlChange {
            stream: s.clone(),
            stopped,
            by: c.by,
            at: format_beijing(c.at, DATETIME),
            reason: c.reason,
            written: !dry_run,
        });
    }
    Ok(out)
}

/// What `watermarks set|reset` wrote (or would write).
#[derive(Debug, Clone, Serialize)]
pub struct WatermarkChange {
    pub stream: String,
    pub from: Option<String>,
    /// `None`: reset (the stream starts again from its configured `start`).
    pub to: Option<String>,
    pub by: String,
    pub forced: bool,
    pub written: bool,
}

/// Sets `stream`'s watermark to `to` (or, with `None`, resets it), in a transaction whose
/// transactional id fences the stream's current owner: a worker still running it can commit
/// nothing more and resumes from the new watermark. Refused unless the stream is stopped or
/// `force`. Content hashes are kept, so re-read records that did not change are not emitted
/// again.
pub async fn set_watermark(
    config: &Config,
    stream: &str,
    to: Option<DateTime<Utc>>,
    force: bool,
    dry_run: bool,
) -> Result<WatermarkChange, OpsError> {
    let id = known(config, stream)?;
    let now = Utc::now();
    if let Some(t) = to
        && t > now
    {
        return Err(OpsError::FutureTime { to: format_beijing(t, DATETIME), now: format_beijing(now, DATETIME) });
    }
    prepare_topics(config).await?;
    let stopped = control::load(&config.kafka).await?.flags.get(stream).is_some_and(|c| c.stopped);
    if !stopped && !force {
        return Err(OpsError::Running { stream: stream.to_owned() });
    }
    let mut kafka = config.kafka.clone();
    kafka.transactional_id = match &config.cluster {
        Some(c) => crate::cluster::transactional_id(c, stream),
        None => config.kafka.transactional_id.clone(),
    };
    let forced = force && !stopped;
    // A fenced owner starts again with a new producer, which fences this one in turn if it
    // comes before the commit: then fence it again (it reads the new watermark once it can).
    for attempt in 1.. {
        match write_watermark(config, &kafka, &id, to, forced, dry_run).await {
            Err(OpsError::Commit { error: CommitError::Fenced(why), .. }) if attempt < 5 => {
                tracing::warn!(stream, attempt, error = %why, "the owner started again first; writing the watermark again");
                tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// One attempt of [`set_watermark`]: fence the owner, read the state, commit the new one.
async fn write_watermark(
    config: &Config,
    kafka: &crate::config::KafkaConfig,
    id: &StreamId,
    to: Option<DateTime<Utc>>,
    forced: bool,
    dry_run: bool,
) -> Result<WatermarkChange, OpsError> {
    let stream = id.as_str();
    let commit = |error| OpsError::Commit { stream: stream.to_owned(), error };
    // Fence first: the producer's initialization ends the owner's producer and aborts the
    // window it had open, so the state read next is final.
    let sink = if dry_run { None } else { Some(TxnSink::connect(kafka, None).await.map_err(commit)?) };
    let current = match watermarks::load(&config.kafka, Duration::from_secs(60)).await {
        Ok(mut all) => all.remove(stream),
        Err(e) => {
            if let Some(sink) = sink {
                crate::kafka::sink::retire(sink).await;
            }
            return Err(e.into());
        }
    };
    let by = operator();
    let change = WatermarkChange {
        stream: stream.to_owned(),
        from: current.as_ref().map(|s| format_beijing(s.watermark, DATETIME)),
        to: to.map(|t| format_beijing(truncate_to_second(t), DATETIME)),
        by: by.clone(),
        forced,
        written: !dry_run,
    };
    let Some(sink) = sink else { return Ok(change) };
    let value = to.map(|t| {
        let mut state = current.clone().unwrap_or_else(|| WatermarkState::new(id.clone(), truncate_to_second(t)));
        state.watermark = truncate_to_second(t);
        state.to_bytes()
    });
    let owner: Arc<[u8]> = Arc::from(format!("ops:{by}").as_bytes());
    let record = OutRecord {
        topic: Arc::from(config.kafka.watermark_topic.as_str()),
        key: stream.as_bytes().to_vec(),
        value,
        headers: vec![
            (crate::kafka::HEADER_OWNER, owner),
            (HEADER_SET_BY, Arc::from(by.as_bytes())),
            (HEADER_SET_FROM, Arc::from(change.from.clone().unwrap_or_default().as_bytes())),
        ]
        .into(),
    };
    let result = sink.commit(vec![record].into()).await.map_err(commit);
    crate::kafka::sink::retire(sink).await;
    result?;
    tracing::info!(stream, from = ?change.from, to = ?change.to, by = %by, forced = change.forced, "watermark written");
    Ok(change)
}

/// Parses `--to`: a Beijing time `yyyy-MM-dd HH:mm:ss`, or a duration back from now (`1d`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, OpsError> {
    StartAt::parse("--to", text)
        .map(|s| s.resolve(now))
        .map_err(|e| OpsError::BadTime { text: text.to_owned(), reason: e.to_string() })
}

/// The watermark and control topics, created if this is the first thing ever run (as a
/// worker's start would).
async fn prepare_topics(config: &Config) -> Result<(), OpsError> {
    crate::kafka::topics::ensure(&config.kafka, &[]).await.map_err(|e| {
        OpsError::Control(ControlError::Kafka { topic: config.kafka.watermark_topic.clone(), reason: e.to_string() })
    })
}

fn known(config: &Config, stream: &str) -> Result<StreamId, OpsError> {
    config.streams.iter().find(|s| s.id.as_str() == stream).map(|s| s.id.clone()).ok_or_else(|| {
        OpsError::UnknownStream {
            stream: stream.to_owned(),
            known: config.streams.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "),
        }
    })
}

/// Who runs the command: `USER` (or `LOGNAME`), for the record of who changed what.
fn operator() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

/// What `backfill` did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    pub stream: String,
    /// The key of the backfill's own progress in the watermark topic.
    pub progress_key: String,
    pub from: String,
    pub to: String,
    /// Where this run began: `from`, or where an earlier run of the same range stopped.
    pub resumed_at: String,
    pub records: u64,
    pub unchanged: u64,
    pub windows: u64,
    pub done: bool,
    pub written: bool,
}

/// Re-reads `[from, to)` of a windowed stream into its topic without touching its live
/// watermark. The backfill keeps its own progress (a `backfill:<from>:<to>:<stream>` record in
/// the watermark topic, committed with each window), so running it again after a crash
/// resumes where it stopped. It starts from the live stream's content hashes: records the
/// stream emitted within its `dedup_span` are emitted again only if they changed. It sends
/// at most `quota_share` of the credential's `requests_per_second`, leaving the rest to the
/// live workers.
pub async fn backfill(
    config: &Config,
    stream: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    quota_share: f64,
    dry_run: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<BackfillReport, OpsError> {
    let id = known(config, stream)?;
    let now = Utc::now();
    let (from, to) = (truncate_to_second(from), truncate_to_second(to));
    if to > now {
        return Err(OpsError::FutureTime { to: format_beijing(to, DATETIME), now: format_beijing(now, DATETIME) });
    }
    if from >= to {
        return Err(OpsError::BadTime {
            text: format_beijing(from, DATETIME),
            reason: format!("--from must be before --to ({})", format_beijing(to, DATETIME)),
        });
    }
    let mut plans = crate::pipeline::plan(config).map_err(|e| OpsError::Setup(e.to_string()))?;
    let index = plans.iter().position(|p| p.cfg.id == id).expect("known stream");
    if plans[index].source.spec().mode != crate::domain::Mode::Windowed {
        return Err(OpsError::Setup(format!(
            "{stream} is a snapshot stream: each snapshot reads everything; backfill is for windowed streams"
        )));
    }
    crate::pipeline::register_schemas(config, &mut plans).await.map_err(|e| OpsError::Setup(e.to_string()))?;
    prepare_topics(config).await?;
    let live = plans.swap_remove(index);
    // The live workers use the credential too: the backfill takes only its share.
    live.gate.set_share(quota_share);
    let key = StreamId::parse(&format!("backfill:{}:{}:{stream}", from.timestamp(), to.timestamp()))
        .map_err(|e| OpsError::Setup(e.to_string()))?;
    let mut cfg = live.cfg.clone();
    cfg.id = key.clone();
    cfg.start = StartAt::Instant(from);
    // A closed range is read as it is: lookback would start the first window before `from`,
    // and its windows would not be the live stream's (reconcile compares them by window).
    cfg.lookback = Duration::ZERO;
    // Its records say which live stream they belong to, like the stream's own.
    let plan = Arc::new(StreamPlan { cfg, until: Some(to), records_of: Some(id.clone()), ..live });
    let transactional_id = match &config.cluster {
        Some(c) => crate::cluster::transactional_id(c, key.as_str()),
        None => format!("{}:{}", config.kafka.transactional_id, key.as_str()),
    };
    let mut stored = watermarks::load(&config.kafka, Duration::from_secs(60)).await?;
    // A closed range: what the live stream has already read.
    let live_at = stored.get(stream).map(|s| s.watermark);
    if live_at.is_none_or(|w| w < to) {
        return Err(OpsError::BadTime {
            text: format_beijing(to, DATETIME),
            reason: format!(
                "--to is past {stream}'s watermark ({}): backfill re-reads what the stream has read; the rest is the live stream's",
                live_at.map_or("none yet".into(), |w| format_beijing(w, DATETIME))
            ),
        });
    }
    let state = backfill_state(&mut stored, &key, stream, from);
    let mut report = BackfillReport {
        stream: stream.to_owned(),
        progress_key: key.to_string(),
        from: format_beijing(from, DATETIME),
        to: format_beijing(to, DATETIME),
        resumed_at: format_beijing(state.watermark, DATETIME),
        records: 0,
        unchanged: 0,
        windows: 0,
        done: state.watermark >= to,
        written: !dry_run,
    };
    if dry_run || report.done {
        return Ok(report);
    }
    // The backfill's own producer: it fences an earlier run of this backfill that was killed
    // (aborting what it left open) before its progress is read again, now final.
    let supervisor = Supervisor::new(config, crate::metrics::Metrics::new(), shutdown)
        .transactional_id(transactional_id)
        .until_caught_up(true);
    let (producer, mut stored) = supervisor.prepare(&supervisor.topics_of(&plan)).await.map_err(|e| match e {
        ResumeError::Producer(error) => OpsError::Commit { stream: key.to_string(), error },
        ResumeError::Watermarks(e) => OpsError::Watermarks(e),
        e @ ResumeError::Hanging(_) => OpsError::Setup(e.to_string()),
    })?;
    let state = backfill_state(&mut stored, &key, stream, from);
    report.resumed_at = format_beijing(state.watermark, DATETIME);
    tracing::info!(stream, from = %report.from, to = %report.to, resumed_at = %report.resumed_at, "backfill starting");
    let result = supervisor.run_one(producer, Launch { plan, state, paused: None }).await;
    report.records = result.records;
    report.unchanged = result.unchanged;
    report.windows = result.windows;
    match result.outcome {
        StreamOutcome::CaughtUp => report.done = true,
        StreamOutcome::ShutDown => {}
        StreamOutcome::Stopped(why) | StreamOutcome::ProducerFailed(why) => {
            return Err(OpsError::Setup(format!("backfill of {stream} stopped: {why} (run it again to resume)")));
        }
        StreamOutcome::Fenced(_) => {
            return Err(OpsError::Setup(format!("backfill of {stream}: another run of the same backfill took over")));
        }
        StreamOutcome::Paused | StreamOutcome::Resumed => {}
    }
    Ok(report)
}

/// Where the backfill keyed `key` goes on from: its own progress in `stored`, else `from`
/// with the live `stream`'s content hashes, so what the stream emitted unchanged is not
/// emitted again.
fn backfill_state(
    stored: &mut BTreeMap<String, WatermarkState>,
    key: &StreamId,
    stream: &str,
    from: DateTime<Utc>,
) -> WatermarkState {
    stored.remove(key.as_str()).unwrap_or_else(|| {
        let mut s = stored.remove(stream).unwrap_or_else(|| WatermarkState::new(key.clone(), from));
        s.stream = key.clone();
        s.watermark = from;
        s
    })
}
