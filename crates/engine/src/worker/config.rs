//! A stream's config: `[[streams]]` as written and as validated (the worker owns it).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, StartAt, check_range, check_topic_name, duration, format_duration};
use crate::domain::StreamId;

/// `[[streams]]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    pub id: String,
    pub source: String,
    pub topic: Option<String>,
    #[serde(default = "default_start")]
    pub start: StartAt,
    #[serde(default, deserialize_with = "duration::required")]
    pub lookback: Duration,
    #[serde(default, deserialize_with = "duration::optional")]
    pub dedup_span: Option<Duration>,
    #[serde(default = "duration::secs::<120>", deserialize_with = "duration::required")]
    pub settle: Duration,
    #[serde(default = "duration::secs::<60>", deserialize_with = "duration::required")]
    pub poll_interval: Duration,
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_span: Option<Duration>,
    pub page_size: Option<u32>,
    #[serde(default = "default_windows_in_flight")]
    pub windows_in_flight: u32,
    #[serde(default = "duration::secs::<300>", deserialize_with = "duration::required")]
    pub idle_commit_interval: Duration,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A new stream starts a day back.
fn default_start() -> StartAt {
    StartAt::Ago(Duration::from_secs(86_400))
}
/// Enough windows to keep a credential's slots busy while one of them commits.
fn default_windows_in_flight() -> u32 {
    8
}
/// A ceiling that catches a typo (16000 for 16) before it reaches a vendor.
const MAX_WINDOWS_IN_FLIGHT: u32 = 64;

/// One polled stream: a source scoped by its parameters, with its own watermark.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub id: StreamId,
    pub source: String,
    pub topic: Option<String>,
    pub start: StartAt,
    pub lookback: Duration,
    /// How far behind the watermark content hashes are kept (at least the lookback): a
    /// re-read within it (`watermarks set` back) emits only records that changed.
    pub dedup_span: Duration,
    pub settle: Duration,
    pub poll_interval: Duration,
    pub max_span: Option<Duration>,
    pub page_size: Option<u32>,
    /// Windows fetched at once while catching up; they still commit strictly in order.
    pub windows_in_flight: u32,
    /// How long the advance over empty windows is held before it is committed (0: every
    /// window commits): an idle stream then costs the broker a transaction every few minutes
    /// instead of every poll. A crash re-reads the held span, which was empty.
    pub idle_commit_interval: Duration,
    pub params: BTreeMap<String, String>,
}

impl StreamConfig {
    /// Checks the `i`th `[[streams]]` against itself and the configured sources (`is_source`;
    /// `sources` lists them for the error).
    pub fn from_section(
        i: usize,
        s: StreamSection,
        is_source: impl Fn(&str) -> bool,
        sources: impl Fn() -> Vec<String>,
    ) -> Result<StreamConfig, ConfigError> {
        let key = |name: &str| format!("streams[{i}].{name}");
        let id = StreamId::parse(&s.id).map_err(|why| ConfigError::invalid(key("id"), why))?;
        // Keys tidemark writes beside the streams' own (see `ops` and `kafka::control`).
        if let Some(p) = ["backfill:", "error:"].iter().find(|p| s.id.starts_with(**p)) {
            return Err(ConfigError::invalid(
                key("id"),
                format!("{:?} starts with {p:?}, which tidemark reserves", s.id),
            ));
        }
        if !is_source(&s.source) {
            return Err(ConfigError::invalid(
                key("source"),
                format!("unknown source {:?} (configured: {})", s.source, sources().join(", ")),
            ));
        }
        if let Some(t) = &s.topic {
            check_topic_name(&key("topic"), t)?;
        }
        if s.poll_interval.is_zero() {
            return Err(ConfigError::invalid(key("poll_interval"), "must be positive"));
        }
        if let Some(m) = s.max_span {
            if m < Duration::from_secs(1) {
                return Err(ConfigError::invalid(key("max_span"), "must be at least 1s"));
            }
            if s.lookback >= m {
                return Err(ConfigError::invalid(
                    key("lookback"),
                    format!(
                        "lookback {} must be shorter than max_span {}",
                        format_duration(s.lookback),
                        format_duration(m)
                    ),
                ));
            }
        }
        check_range(&key("windows_in_flight"), s.windows_in_flight, 1..=MAX_WINDOWS_IN_FLIGHT)?;
        if s.page_size == Some(0) {
            return Err(ConfigError::invalid(key("page_size"), "must be at least 1"));
        }
        Ok(StreamConfig {
            id,
            source: s.source,
            topic: s.topic,
            start: s.start,
            lookback: s.lookback,
            dedup_span: s.dedup_span.map_or(s.lookback, |d| d.max(s.lookback)),
            settle: s.settle,
            poll_interval: s.poll_interval,
            max_span: s.max_span,
            page_size: s.page_size,
            windows_in_flight: s.windows_in_flight,
            idle_commit_interval: s.idle_commit_interval,
            params: s.params,
        })
    }
}
