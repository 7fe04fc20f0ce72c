//! What a stream borrows from the process that runs it: the producer it commits on, the byte
//! budget of its read-ahead, metrics, the control log, the operators' stop flag, and the token
//! that cancels it.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{FailureLog, Sink};
use crate::metrics::Metrics;

/// Everything a stream uses that is not its own: built for each stream by the supervisor
/// (`crate::supervisor`), which owns the producer behind `sink` and the parent of `cancel`.
/// The stream's own parts (source, credential gate, codec, window settings) are its
/// [`super::StreamPlan`].
#[derive(Clone)]
pub struct StreamContext {
    /// Where windows commit: the supervisor's producer (a test's sink in unit tests).
    pub sink: Arc<dyn Sink>,
    /// The process's byte budget for windows read ahead (`max_buffered_bytes`).
    pub budget: Arc<super::budget::ByteBudget>,
    pub metrics: Arc<Metrics>,
    /// Where the error that stops the stream, and a used-up daily quota, are published for
    /// operators (the control topic), if anywhere.
    pub control: Option<Arc<dyn FailureLog>>,
    pub watermark_topic: Arc<str>,
    pub dead_letter_topic: Arc<str>,
    /// Where each committed window's [`crate::domain::ledger::LedgerEntry`] goes.
    pub ledger_topic: Arc<str>,
    /// The largest watermark record the stream writes (`kafka.watermark_max_bytes`).
    pub watermark_max_bytes: usize,
    /// Who runs the stream (a replica's name, else the worker's transactional id), written as
    /// the watermark record's `tidemark.owner` header so ops can see who committed each window.
    pub owner: Option<Arc<[u8]>>,
    /// The operators' stop flag (see `kafka::control`), if followed. A toggle, not a
    /// cancellation: a stopped stream waits to be resumed, so it stays a watch.
    pub paused: Option<watch::Receiver<bool>>,
    /// Ends the stream: the process's shutdown, its producer failing under another stream,
    /// or (a replica) the stream's slot being revoked. A child token, so the stream can be
    /// cancelled alone.
    pub cancel: CancellationToken,
    /// End once caught up (`run --until-caught-up`, a backfill) instead of polling on.
    pub until_caught_up: bool,
}
