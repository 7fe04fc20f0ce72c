//! `[sources.<id>]`: a vendor API's URL, quota and timeouts; its credentials are its kind's
//! own keys, read by the vendor module ([`KindSettings`]).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::{ConfigError, KindSettings, check_range, duration};

/// `[sources.<id>]` as written, less its kind's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub kind: String,
    pub base_url: String,
    #[serde(default = "default_rps")]
    pub requests_per_second: u32,
    #[serde(default = "duration::secs::<30>", deserialize_with = "duration::required")]
    pub request_timeout: Duration,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// When the vendor's daily quota resets, Beijing time of day (`HH:MM:SS`).
    #[serde(default, deserialize_with = "time_of_day")]
    pub daily_quota_reset: chrono::NaiveTime,
    /// An `.avsc` file to use instead of the kind's built-in schema.
    pub schema: Option<std::path::PathBuf>,
}

/// Requests per second, a source's or a writer's, unless configured.
pub fn default_rps() -> u32 {
    5
}

/// Enough for a quota of 50 requests/s at 300 ms a request; the adaptive limit starts lower.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;
/// A ceiling that catches a typo (16000 for 16) before it reaches a vendor.
const MAX_IN_FLIGHT: u32 = 256;

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

/// `HH:MM:SS` (TOP's daily app quota counts calls per day, Beijing time: default midnight).
fn time_of_day<'de, D: Deserializer<'de>>(d: D) -> Result<chrono::NaiveTime, D::Error> {
    let text = String::deserialize(d)?;
    chrono::NaiveTime::parse_from_str(&text, "%H:%M:%S")
        .map_err(|_| serde::de::Error::custom(format!("must be a Beijing time of day HH:MM:SS, got {text:?}")))
}

/// One vendor API with its credentials.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: String,
    pub kind: String,
    pub base_url: String,
    pub requests_per_second: u32,
    pub request_timeout: Duration,
    /// The most requests out at once on this source's credential; the adaptive limit moves
    /// below it.
    pub max_in_flight: u32,
    /// When the vendor's daily call quota resets (Beijing time of day), for a used-up quota
    /// whose answer names no time.
    pub daily_quota_reset: chrono::NaiveTime,
    /// An `.avsc` file replacing the kind's built-in schema (e.g. to add a field the vendor
    /// started sending); the file's text, read at load.
    pub schema: Option<String>,
    /// The kind's own keys (credentials), typed by the vendor module that reads them.
    pub settings: KindSettings,
}

impl SourceConfig {
    /// A source from its `[sources.<id>]` table as written, `${…}` unexpanded: for tools and
    /// tests that build one client without a whole config.
    pub fn from_toml(id: &str, text: &str) -> Result<Self, ConfigError> {
        let prefix = format!("sources.{id}");
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::invalid(&prefix, e.to_string()))?;
        let settings = KindSettings::split_from(&prefix, &mut table, crate::config::fields_of::<SourceSection>());
        let section: SourceSection =
            table.try_into().map_err(|e: toml::de::Error| ConfigError::invalid(&prefix, e.message().to_owned()))?;
        Self::from_section(id, section, settings)
    }

    /// Checks `[sources.<id>]` and reads its schema file; `settings` are the kind's own keys.
    pub fn from_section(id: &str, s: SourceSection, settings: KindSettings) -> Result<Self, ConfigError> {
        let key = |name: &str| format!("sources.{id}.{name}");
        if !(s.base_url.starts_with("http://") || s.base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                key("base_url"),
                format!("must start with http:// or https://, got {:?}", s.base_url),
            ));
        }
        if s.requests_per_second == 0 {
            return Err(ConfigError::invalid(key("requests_per_second"), "must be at least 1"));
        }
        if s.request_timeout.is_zero() {
            return Err(ConfigError::invalid(key("request_timeout"), "must be positive"));
        }
        check_range(&key("max_in_flight"), s.max_in_flight, 1..=MAX_IN_FLIGHT)?;
        let schema = match &s.schema {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::invalid(key("schema"), format!("cannot read {}: {e}", path.display())))?,
            ),
        };
        Ok(SourceConfig {
            id: id.to_owned(),
            kind: s.kind,
            base_url: s.base_url.trim_end_matches('/').to_owned(),
            requests_per_second: s.requests_per_second,
            request_timeout: s.request_timeout,
            max_in_flight: s.max_in_flight,
            daily_quota_reset: s.daily_quota_reset,
            schema,
            settings,
        })
    }
}
