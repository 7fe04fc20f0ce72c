//! Vendor API clients behind one trait: the engine asks for a page of a window; a vendor module signs, parses and classifies.

pub mod envelope;
pub mod finance;
pub mod http;
pub mod qimen;
pub mod top;
pub mod top_sign;
pub mod wdt;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{ConfigError, SourceConfig};
use crate::engine::Window;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failed request, classified by what the engine must do about it. `code` is a bounded
/// label for metrics: a vendor error code, or `http_<status>`, `timeout`, `connect`, `malformed`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Transient: retry with backoff (`after`, when the server said how long).
    #[error("retryable error {code}: {reason}")]
    Retryable { code: String, reason: String, after: Option<Duration> },
    /// The vendor throttled us: wait exactly `after`, then retry.
    #[error("throttled ({code}) for {after:?}: {reason}")]
    Throttled { code: String, reason: String, after: Duration },
    /// Retrying cannot help (credentials, clock, a request the vendor rejects): stop the stream.
    #[error("fatal error {code}: {reason}")]
    Fatal { code: String, reason: String },
}

impl SourceError {
    pub fn code(&self) -> &str {
        match self {
            SourceError::Retryable { code, .. }
            | SourceError::Throttled { code, .. }
            | SourceError::Fatal { code, .. } => code,
        }
    }

    /// A windowed API was asked for a page without a window: a wiring bug, never retried.
    pub fn no_window(kind: &str) -> Self {
        SourceError::Fatal { code: "no_window".into(), reason: format!("{kind} needs a time window") }
    }

    pub fn malformed(reason: impl Into<String>) -> Self {
        SourceError::Retryable { code: "malformed".into(), reason: reason.into(), after: None }
    }
}

/// How the engine reads an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Records filtered by a time window: the engine walks windows forward.
    Windowed,
    /// No time filter: the engine fetches the whole set each interval and emits what changed,
    /// with tombstones for what disappeared, into a compacted topic.
    Snapshot,
}

/// What the engine needs to know about one vendor API method.
#[derive(Debug)]
pub struct ApiSpec {
    /// The `kind` that names this API in config, e.g. `wdt.account_check`.
    pub kind: &'static str,
    /// The vendor's name for the method (an openapi2 script, a TOP `method`, ...).
    pub method: &'static str,
    /// The envelope field holding the page's records.
    pub list_field: &'static str,
    /// Request parameters the client sets itself; a stream's `params` may not override them.
    pub reserved_params: &'static [&'static str],
    /// The `.avsc` text, compiled in from `schemas/`.
    pub schema: &'static str,
    /// The record field holding the business id (the Kafka key).
    pub key_field: &'static str,
    pub default_topic: &'static str,
    /// The longest window the vendor accepts.
    pub max_span: Duration,
    pub max_page_size: u32,
    pub default_page_size: u32,
    pub mode: Mode,
    /// Whether the API pages; an unpaged API answers everything in one response.
    pub paged: bool,
    /// Whether every page carries the total (otherwise only the first does).
    pub total_on_every_page: bool,
}

/// One page request. `page_index` counts from 0; vendors map it to their numbering.
/// `window` is `None` for snapshot APIs.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub window: Option<&'a Window>,
    pub page_index: u32,
    pub page_size: u32,
    pub params: &'a BTreeMap<String, String>,
}

/// One page as the vendor returned it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Value>,
    /// The vendor's count of all records in the window, where this page carries it.
    pub total: Option<u64>,
}

/// A vendor API method with its credentials.
pub trait Source: Send + Sync {
    fn spec(&self) -> &'static ApiSpec;
    /// Identifies the credential whose quota requests count against: sources that share it
    /// share one rate limiter.
    fn quota_key(&self) -> String;
    fn fetch_page<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>>;
}

/// Every API tidemark knows, by config `kind`.
pub static APIS: &[&ApiSpec] =
    &[&wdt::ACCOUNT_CHECK, &qimen::STOCKIN_REFUND, &top::FINANCE_ORDER, &finance::TRANSACTIONS, &finance::BALANCES];

pub fn spec_of(kind: &str) -> Option<&'static ApiSpec> {
    APIS.iter().copied().find(|s| s.kind == kind)
}

/// Builds the client for a configured source.
pub fn build(cfg: &SourceConfig, http: reqwest::Client) -> Result<Arc<dyn Source>, ConfigError> {
    let spec = spec_of(&cfg.kind).ok_or_else(|| {
        ConfigError::invalid(
            format!("sources.{}.kind", cfg.id),
            format!(
                "unknown source kind {:?} (known: {})",
                cfg.kind,
                APIS.iter().map(|s| s.kind).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    match spec.kind.split('.').next() {
        Some("wdt") => Ok(Arc::new(wdt::WdtSource::new(spec, cfg, http)?)),
        Some("qimen") => Ok(Arc::new(qimen::QimenSource::new(spec, cfg, http)?)),
        Some("top") => Ok(Arc::new(top::TopSource::new(spec, cfg, http)?)),
        Some("finance") => Ok(Arc::new(finance::FinanceSource::new(spec, cfg, http)?)),
        _ => unreachable!("every spec in APIS has a vendor module"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    #[test]
    fn every_api_schema_compiles_and_keys_on_a_required_string() {
        for spec in APIS {
            crate::avro::RecordCodec::from_avsc(spec.schema).unwrap_or_else(|e| panic!("{}: {e}", spec.kind));
            let Schema::Record(r) = Schema::parse_str(spec.schema).unwrap() else { panic!("{}", spec.kind) };
            let key = r.fields.iter().find(|f| f.name == spec.key_field).unwrap_or_else(|| panic!("{}", spec.kind));
            assert_eq!(key.schema, Schema::String, "{}: the key field is a required string", spec.kind);
            assert!(spec.default_page_size <= spec.max_page_size, "{}", spec.kind);
            assert!(spec.reserved_params.contains(&"sign"), "{}: sign is always set by tidemark", spec.kind);
        }
    }

    #[test]
    fn kinds_are_unique_and_start_with_a_vendor_module() {
        let mut kinds: Vec<_> = APIS.iter().map(|s| s.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), APIS.len());
        assert!(kinds.iter().all(|k| ["wdt.", "qimen.", "top.", "finance."].iter().any(|v| k.starts_with(v))));
    }
}
