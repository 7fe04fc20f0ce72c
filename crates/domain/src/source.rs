//! What the worker asks of a vendor API and what it gets back: the `Source` trait, the API's
//! spec, page requests, pages, and errors classified by what the worker must do.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Window;
use super::record::Record;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failed request, classified by what the worker must do about it. `code` is a bounded
/// label for metrics: a vendor error code, or `http_<status>`, `timeout`, `connect`, `malformed`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Transient: retry with backoff (`after`, when the server said how long).
    #[error("retryable error {code}: {reason}")]
    Retryable { code: String, reason: String, after: Option<Duration> },
    /// The vendor said "slow down": pause the whole credential (for `after` when the vendor
    /// said how long, else as long as the gate judges), lower its rate, and go on. Never
    /// stops a stream.
    #[error("throttled ({code}){}: {reason}", fmt_after(after))]
    Throttled { code: String, reason: String, after: Option<Duration> },
    /// The credential's daily call quota is used up: pause it until the quota resets (`after`
    /// when the vendor said how long, else the source's configured reset time).
    #[error("daily quota exhausted ({code}){}: {reason}", fmt_after(after))]
    QuotaExhausted { code: String, reason: String, after: Option<Duration> },
    /// The vendor refused the request's timestamp: the local clock is off. Stops the stream
    /// (retrying with the same clock cannot help); the reason says by how much, when the
    /// vendor's `Date` header told.
    #[error("clock skew ({code}): {reason}")]
    ClockSkew { code: String, reason: String },
    /// Retrying cannot help (credentials, a request the vendor rejects): stop the stream.
    #[error("fatal error {code}: {reason}")]
    Fatal { code: String, reason: String },
}

fn fmt_after(after: &Option<Duration>) -> String {
    after.map(|a| format!(" for {a:?}")).unwrap_or_default()
}

impl SourceError {
    pub fn code(&self) -> &str {
        match self {
            SourceError::Retryable { code, .. }
            | SourceError::Throttled { code, .. }
            | SourceError::QuotaExhausted { code, .. }
            | SourceError::ClockSkew { code, .. }
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

    /// Whether the stream must stop: retrying cannot help.
    pub fn stops_stream(&self) -> bool {
        matches!(self, SourceError::Fatal { .. } | SourceError::ClockSkew { .. })
    }

    /// A clock-skew answer, told how far the local clock is from the vendor's: the vendor's
    /// `Date` header (`server`) against the local time the answer came (`local`). Other
    /// errors pass unchanged.
    pub fn with_server_time(self, server: Option<DateTime<Utc>>, local: DateTime<Utc>) -> Self {
        match self {
            SourceError::ClockSkew { code, reason } => {
                let how = match server {
                    Some(server) => {
                        let secs = (local - server).num_seconds();
                        let side = if secs >= 0 { "ahead of" } else { "behind" };
                        format!(
                            "the local clock is {}s {side} the vendor's (its Date header); fix the clock (NTP)",
                            secs.abs()
                        )
                    }
                    None => {
                        "the local clock is off (the vendor sent no Date header to tell by how much); check NTP".into()
                    }
                };
                SourceError::ClockSkew { code, reason: format!("{reason}: {how}") }
            }
            other => other,
        }
    }
}

/// How the worker reads an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Records filtered by a time window: the worker walks windows forward.
    Windowed,
    /// No time filter: the worker fetches the whole set each interval and emits what changed,
    /// with tombstones for what disappeared, into a compacted topic.
    Snapshot,
}

/// What the worker needs to know about one vendor API method.
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
    /// Request parameters the endpoint always sends (its manifest's `[params]`); a stream's
    /// own `params` override them.
    pub default_params: &'static [(&'static str, &'static str)],
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
    /// The record field holding the time the vendor's window filters on, where the manifest
    /// names it (the simulators serve windows by it).
    pub window_field: Option<&'static str>,
    /// For a protocol whose methods take their paging, window and filters in one JSON object
    /// parameter (TOP): that parameter's name, e.g. `finance_order_detail_request`.
    pub request_object: Option<&'static str>,
    /// For a protocol that wraps a list's items in a tag (TOP's non-simplified form,
    /// `{"finance_order_details": {"finance_order_detail": [...]}}`): the tag.
    pub list_item: Option<&'static str>,
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
    /// Each list item's text, read when the worker processes it.
    pub records: Vec<Record>,
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
    /// One page's whole answer, its envelope checked for the vendor's errors as a page's is but
    /// its list not read: what `tidemark discover` reads before it knows the list field. A
    /// client that cannot ask for any method but its own keeps this refusal.
    fn fetch_raw<'a>(&'a self, _req: PageRequest<'a>) -> BoxFuture<'a, Result<Value, SourceError>> {
        let kind = self.spec().kind;
        Box::pin(async move {
            Err(SourceError::Fatal { code: "no_raw".into(), reason: format!("{kind}'s client reads no raw pages") })
        })
    }
}
