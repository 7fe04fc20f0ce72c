//! `[writers.<id>]`: a consumer of a stream's topic delivering records to a target API; the
//! target's own keys (credentials, organisations, mapping tables) are read by its module.

use std::time::Duration;

use serde::Deserialize;

use crate::domain::config::{ConfigError, KindSettings, check_range, check_topic_name, duration};

/// `[writers.<id>]` as written, less its target's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSection {
    pub kind: String,
    pub base_url: String,
    pub topic: Option<String>,
    pub group: Option<String>,
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    #[serde(default = "duration::secs::<2>", deserialize_with = "duration::required")]
    pub batch_linger: Duration,
    #[serde(default = "crate::sources::config::default_rps")]
    pub requests_per_second: u32,
    #[serde(default = "duration::secs::<30>", deserialize_with = "duration::required")]
    pub request_timeout: Duration,
}

fn default_dead_letter_topic() -> String {
    "tidemark.writer.rejected".into()
}
fn default_batch_size() -> u32 {
    50
}

/// A writer: a consumer group on `topic` delivering each record to a target API.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub id: String,
    pub kind: String,
    pub base_url: String,
    /// The topic to read; the target's input kind's default topic if unset.
    pub topic: Option<String>,
    /// The consumer group; `tidemark-writer-<id>` if unset.
    pub group: String,
    /// Where records the target rejects (or that cannot be read or mapped) go, with why.
    pub dead_letter_topic: String,
    /// Records per target call.
    pub batch_size: u32,
    /// How long a batch waits to fill once its first record arrived.
    pub batch_linger: Duration,
    pub requests_per_second: u32,
    pub request_timeout: Duration,
    /// The target's own keys, typed by the target module that reads them.
    pub settings: KindSettings,
}

impl WriterConfig {
    /// What the writer's target is built from.
    pub fn target(&self) -> crate::targets::TargetConfig<'_> {
        crate::targets::TargetConfig {
            id: &self.id,
            kind: &self.kind,
            base_url: &self.base_url,
            request_timeout: self.request_timeout,
            settings: &self.settings,
        }
    }

    /// Checks `[writers.<id>]`; `settings` are the target's own keys.
    pub fn from_section(id: &str, w: WriterSection, settings: KindSettings) -> Result<Self, ConfigError> {
        let key = |name: &str| format!("writers.{id}.{name}");
        if !(w.base_url.starts_with("http://") || w.base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                key("base_url"),
                format!("must start with http:// or https://, got {:?}", w.base_url),
            ));
        }
        if let Some(t) = &w.topic {
            check_topic_name(&key("topic"), t)?;
        }
        check_topic_name(&key("dead_letter_topic"), &w.dead_letter_topic)?;
        check_range(&key("batch_size"), w.batch_size, 1..=1000)?;
        if w.requests_per_second == 0 {
            return Err(ConfigError::invalid(key("requests_per_second"), "must be at least 1"));
        }
        if w.request_timeout.is_zero() {
            return Err(ConfigError::invalid(key("request_timeout"), "must be positive"));
        }
        Ok(WriterConfig {
            id: id.to_owned(),
            kind: w.kind,
            base_url: w.base_url.trim_end_matches('/').to_owned(),
            topic: w.topic,
            group: w.group.unwrap_or_else(|| format!("tidemark-writer-{id}")),
            dead_letter_topic: w.dead_letter_topic,
            batch_size: w.batch_size,
            batch_linger: w.batch_linger,
            requests_per_second: w.requests_per_second,
            request_timeout: w.request_timeout,
            settings,
        })
    }
}
