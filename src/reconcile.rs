//! `tidemark reconcile`: each committed window's ledger entry against the vendor's count now
//! and against what the stream's topic holds for that window; differing windows can be handed
//! to a backfill (`--repair`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KafkaConfig};
use crate::domain::ledger::{HEADER_WINDOW, IdChecksum, LedgerEntry};
use crate::domain::time::{DATETIME, format_beijing};
use crate::domain::{Mode, Window};
use crate::kafka::control::{self, Reconciled};
use crate::kafka::ends::EndsReader;
use crate::kafka::{HEADER_STREAM, scan};
use crate::metrics::Metrics;
use crate::worker::{Reader, StreamPlan};

/// [`Difference::what`] of a window whose vendor total changed since it was committed.
pub const VENDOR_CHANGED: &str = "vendor total changed";

/// How long one topic may take to be read to its end.
const SCAN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("unknown stream {stream:?} (configured: {known})")]
    UnknownStream { stream: String, known: String },
    #[error("--from {from} is not before --to {to}")]
    Range { from: String, to: String },
    #[error("cannot read topic {topic}: {reason}")]
    Read { topic: String, reason: String },
    #[error("ledger topic {topic}: record at partition {partition} offset {offset} is not a ledger entry: {reason}")]
    Corrupt { topic: String, partition: i32, offset: i64, reason: String },
    #[error("unknown writer {writer:?} (configured: {known})")]
    UnknownWriter { writer: String, known: String },
    #[error("writer {writer}: cannot compare with the target: {reason}")]
    Target { writer: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// What to check.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Every configured stream when empty.
    pub streams: Vec<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The share of each credential's `requests_per_second` the vendor checks may use.
    pub quota_share: f64,
}

/// One window that differs, and how.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    /// `<start>/<end>` (RFC 3339, Beijing).
    pub window: String,
    /// `vendor total changed`, `missing from kafka`, `extra in kafka`, `vendor error`.
    pub what: String,
    /// What the ledger says (the vendor's total then, or records emitted).
    pub ledger: Option<u64>,
    /// What was found now (the vendor's total, or records the topic holds).
    pub found: Option<u64>,
    pub detail: String,
}

/// One stream's result.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReconciled {
    pub stream: String,
    pub windows_checked: u64,
    pub matching: u64,
    pub vendor_changed: u64,
    pub missing_from_kafka: u64,
    /// Windows the vendor could not be asked about (an error that retrying did not fix).
    pub unchecked: u64,
    pub differences: Vec<Difference>,
}

impl StreamReconciled {
    pub fn clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Every window of the ledger in range, by stream, then by window text.
type LedgerWindows = BTreeMap<String, BTreeMap<String, Vec<LedgerEntry>>>;

/// What one topic holds for a stream's window: records and the checksum of their keys.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    records: u64,
    ids: IdChecksum,
}

/// Checks every committed window of the chosen streams that starts in `[from, to)`.
pub async fn reconcile(
    config: &Config,
    opts: &ReconcileOptions,
    cancel: CancellationToken,
) -> Result<Vec<StreamReconciled>, ReconcileError> {
    if opts.from >= opts.to {
        return Err(ReconcileError::Range {
            from: format_beijing(opts.from, DATETIME),
            to: format_beijing(opts.to, DATETIME),
        });
    }
    let plans = crate::pipeline::plan(config).map_err(|e| ReconcileError::Setup(e.to_string()))?;
    let known = || plans.iter().map(|p| p.cfg.id.to_string()).collect::<Vec<_>>().join(", ");
    for s in &opts.streams {
        if !plans.iter().any(|p| p.cfg.id.as_str() == s) {
            return Err(ReconcileError::UnknownStream { stream: s.clone(), known: known() });
        }
    }
    let chosen: Vec<StreamPlan> = plans
        .into_iter()
        .filter(|p| opts.streams.is_empty() || opts.streams.iter().any(|s| s == p.cfg.id.as_str()))
        .filter(|p| p.source.spec().mode == Mode::Windowed)
        .collect();
    let names: BTreeSet<String> = chosen.iter().map(|p| p.cfg.id.to_string()).collect();
    let ledger = read_ledger(&config.kafka, &names, opts.from, opts.to).await?;
    let topics: BTreeSet<String> = chosen.iter().map(|p| p.topic.clone()).collect();
    let mut held: BTreeMap<(String, String), Held> = BTreeMap::new();
    for topic in topics {
        held.extend(read_windows(&config.kafka, &topic, &names).await?);
    }
    let metrics = Metrics::new();
    let mut out = Vec::new();
    for plan in chosen {
        plan.gate.set_share(opts.quota_share);
        let stream = plan.cfg.id.to_string();
        let reader = Reader::new(Arc::new(plan), metrics.clone(), &config.kafka.dead_letter_topic);
        let windows = ledger.get(&stream).cloned().unwrap_or_default();
        let mut r = StreamReconciled {
            stream: stream.clone(),
            windows_checked: 0,
            matching: 0,
            vendor_changed: 0,
            missing_from_kafka: 0,
            unchecked: 0,
            differences: Vec::new(),
        };
        for (window, entries) in windows {
            if cancel.is_cancelled() {
                break;
            }
            r.windows_checked += 1;
            let before = r.differences.len();
            let found = held.get(&(stream.clone(), window.clone())).copied().unwrap_or_default();
            check_kafka(&window, &entries, found, &mut r);
            check_vendor(&reader, &window, &entries, &cancel, &mut r).await;
            if r.differences.len() == before {
                r.matching += 1;
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Publishes each stream's result to the control topic (`reconcile:<stream>`): `streams list`
/// shows it, and every worker running the stream exports it (`tidemark_reconcile_*`).
pub async fn publish(
    kafka: &KafkaConfig,
    found: &[StreamReconciled],
    opts: &ReconcileOptions,
) -> Result<(), ReconcileError> {
    for s in found {
        let late_records = s
            .differences
            .iter()
            .filter(|d| d.what == VENDOR_CHANGED)
            .map(|d| d.found.unwrap_or(0).saturating_sub(d.ledger.unwrap_or(0)))
            .sum();
        let r = Reconciled {
            at: Utc::now(),
            from: opts.from,
            to: opts.to,
            windows: s.windows_checked,
            differing: s.windows_checked - s.matching,
            vendor_changed: s.vendor_changed,
            missing_from_kafka: s.missing_from_kafka,
            late_records,
        };
        control::write_reconciled(kafka, &s.stream, &r).await.map_err(|e| ReconcileError::Setup(e.to_string()))?;
    }
    Ok(())
}

/// The topic against the ledger: the window's entries (a live commit, a backfill's) emitted
/// as many records, with the same ids, as the topic holds with that window's header.
fn check_kafka(window: &str, entries: &[LedgerEntry], found: Held, r: &mut StreamReconciled) {
    let emitted: u64 = entries.iter().map(|e| e.emitted).sum();
    let ids = entries.iter().try_fold(IdChecksum::default(), |sum, e| sum.plus_hex(&e.emitted_checksum));
    if found.records == emitted && ids == Some(found.ids) {
        return;
    }
    let what = if found.records < emitted { "missing from kafka" } else { "extra in kafka" };
    if found.records < emitted {
        r.missing_from_kafka += 1;
    }
    r.differences.push(Difference {
        window: window.to_owned(),
        what: what.into(),
        ledger: Some(emitted),
        found: Some(found.records),
        detail: format!(
            "the ledger says {emitted} records were committed to the topic; it holds {} with this window's header{}",
            found.records,
            if found.records == emitted { " (same count, other ids)" } else { "" }
        ),
    });
}

/// The vendor now against the ledger: its total on the window's first page equals the
/// latest entry's (the total then, or what was read where the vendor gave none).
async fn check_vendor(
    reader: &Reader,
    window: &str,
    entries: &[LedgerEntry],
    cancel: &CancellationToken,
    r: &mut StreamReconciled,
) {
    let latest = entries.iter().max_by(|a, b| a.committed_at.cmp(&b.committed_at)).expect("a window has entries");
    let Some((start, end)) = latest.bounds() else { return };
    let then = latest.vendor_total.unwrap_or(latest.read);
    let diff = |what: &str, found: Option<u64>, detail: String| Difference {
        window: window.to_owned(),
        what: what.into(),
        ledger: Some(then),
        found,
        detail,
    };
    match reader.first_page(&Window { start, end }, cancel).await {
        Ok(page) => match page.total {
            Some(now) if now == then => {}
            Some(now) => {
                r.vendor_changed += 1;
                let d = diff(
                    VENDOR_CHANGED,
                    Some(now),
                    format!(
                        "the vendor counted {then} when the window was committed ({}); it counts {now} now",
                        latest.committed_at
                    ),
                );
                r.differences.push(d);
            }
            None => {
                r.unchecked += 1;
                let d = diff("vendor error", None, "the vendor's first page carried no total".into());
                r.differences.push(d);
            }
        },
        Err(e) => {
            r.unchecked += 1;
            let d = diff("vendor error", None, e.to_string());
            r.differences.push(d);
        }
    }
}

/// The ledger entries of `streams` whose windows start in `[from, to)`.
async fn read_ledger(
    kafka: &KafkaConfig,
    streams: &BTreeSet<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<LedgerWindows, ReconcileError> {
    let topic = kafka.ledger_topic.clone();
    let mut out = LedgerWindows::new();
    let mut corrupt = None;
    scan_topic(kafka, &topic, |m| {
        let Some(payload) = m.payload() else { return };
        match serde_json::from_slice::<LedgerEntry>(payload) {
            Ok(e) => {
                let in_range = e.bounds().is_some_and(|(start, _)| start >= from && start < to);
                if in_range && streams.contains(&e.stream) {
                    out.entry(e.stream.clone()).or_default().entry(e.window.clone()).or_default().push(e);
                }
            }
            Err(e) if corrupt.is_none() => {
                corrupt = Some(ReconcileError::Corrupt {
                    topic: topic.clone(),
                    partition: m.partition(),
                    offset: m.offset(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {}
        }
    })
    .await?;
    match corrupt {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// What `topic` holds per `(stream, window)` of `streams`, by the records' headers.
async fn read_windows(
    kafka: &KafkaConfig,
    topic: &str,
    streams: &BTreeSet<String>,
) -> Result<BTreeMap<(String, String), Held>, ReconcileError> {
    let mut out: BTreeMap<(String, String), Held> = BTreeMap::new();
    scan_topic(kafka, topic, |m| {
        let header = |name: &str| {
            m.headers().and_then(|h| {
                h.iter().find(|x| x.key == name).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let (Some(stream), Some(window), Some(_)) = (header(HEADER_STREAM), header(HEADER_WINDOW), m.payload()) else {
            return;
        };
        if streams.contains(&stream) {
            let held = out.entry((stream, window)).or_default();
            held.records += 1;
            held.ids.add(m.key().unwrap_or_default());
        }
    })
    .await?;
    Ok(out)
}

/// Reads `topic` from its beginning to its end (`read_committed`), off the runtime.
pub(crate) async fn scan_topic(
    kafka: &KafkaConfig,
    topic: &str,
    each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) + Send,
) -> Result<(), ReconcileError> {
    let err = |reason: String| ReconcileError::Read { topic: topic.to_owned(), reason };
    let mut each = each;
    tokio::task::block_in_place(|| {
        let consumer = scan::committed_reader(kafka, "tidemark-reconcile").map_err(|e| err(e.to_string()))?;
        let ends = EndsReader::new(kafka).map_err(|e| err(e.to_string()))?;
        let partitions: Vec<i32> = ends
            .topic(topic)
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .filter(|e| e.written > e.low)
            .map(|e| e.partition)
            .collect();
        let scanned = scan::read_to_end(&consumer, topic, &partitions, SCAN_TIMEOUT, |m| {
            each(m);
            Ok::<(), std::convert::Infallible>(())
        });
        crate::kafka::close_in_background((consumer, ends));
        scanned.map_err(|e| err(e.to_string()))
    })
}
