//! One stream as configured and checked against its vendor's rules, ready to run: its source
//! client, credential gate, schema codec, topic and window settings.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::gate::CredentialGate;
use crate::avro::RecordCodec;
use crate::domain::window::chrono_duration;
use crate::domain::{Source, StreamId, Watermark, Window};
use crate::worker::config::StreamConfig;

/// How close to the horizon counts as caught up (or the poll interval, if shorter).
const CAUGHT_UP_MARGIN: Duration = Duration::from_secs(5);

/// Time a caught-up stream may take to read and commit what is due (see `lag_bound`).
const READ_ALLOWANCE: Duration = Duration::from_secs(60);

/// One stream, ready to run once Kafka is prepared and its watermark is known.
pub struct StreamPlan {
    pub cfg: StreamConfig,
    pub source_id: String,
    pub source: Arc<dyn Source>,
    pub gate: Arc<CredentialGate>,
    pub codec: Arc<RecordCodec>,
    pub topic: String,
    /// Snapshot streams write to a compacted topic.
    pub compacted: bool,
    pub max_span: Duration,
    pub page_size: u32,
    /// Where the stream ends (a backfill's `--to`); live streams run on with the horizon.
    pub until: Option<Watermark>,
    /// The stream its records say they belong to (their `tidemark.stream` header) when that
    /// is not `cfg.id`: a backfill's records are the live stream's it re-reads.
    pub records_of: Option<StreamId>,
}

impl StreamPlan {
    /// The window after `watermark`, or `None` when the stream is caught up: the horizon (now
    /// minus the settle lag) is less than `min(poll_interval, 5s)` past the watermark. Without
    /// that margin a stream would chase the moving horizon with windows of a second or two.
    pub fn next_window(&self, watermark: Watermark, now: DateTime<Utc>) -> Option<Window> {
        let horizon = now - chrono_duration(self.cfg.settle);
        let margin = chrono_duration(self.cfg.poll_interval.min(CAUGHT_UP_MARGIN));
        // A fixed end is read up to exactly, with no margin.
        let (horizon, margin) = match self.until {
            Some(end) if end <= horizon => (end, chrono::Duration::zero()),
            _ => (horizon, margin),
        };
        if horizon <= watermark || horizon - watermark < margin {
            return None;
        }
        Window::next(watermark, self.cfg.lookback, self.max_span, horizon)
    }

    /// The most watermark lag this stream shows while healthy and caught up: a windowed stream
    /// reads up to now minus `settle` every `poll_interval`, a snapshot stream snapshots every
    /// `poll_interval`; either then takes up to `READ_ALLOWANCE` to read and commit.
    pub fn lag_bound(&self) -> Duration {
        let settle = match self.source.spec().mode {
            crate::domain::Mode::Windowed => self.cfg.settle,
            crate::domain::Mode::Snapshot => Duration::ZERO,
        };
        settle + self.cfg.poll_interval + READ_ALLOWANCE
    }

    /// Every window from `watermark` up to the horizon at `now`, as the worker would plan them.
    pub fn windows_from(&self, watermark: Watermark, now: DateTime<Utc>) -> Vec<Window> {
        std::iter::successors(self.next_window(watermark, now), |w| self.next_window(w.end, now)).collect()
    }
}
