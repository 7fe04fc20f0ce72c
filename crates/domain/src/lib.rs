//! The vocabulary every other module speaks, at the bottom of the crate: stream ids, windows,
//! watermarks, page sets, vendor time, the `Source` trait with its spec, requests, pages and
//! errors, the `Sink` that commits a stream's output, and the `Target` a writer delivers
//! records to. It imports nothing else of the crate; vendors, Kafka, config, metrics and the
//! worker all depend downward on it.

pub mod backoff;
pub mod config;
pub mod json;
pub mod ledger;
pub mod pageset;
pub mod record;
pub mod sink;
pub mod source;
pub mod spool;
pub mod target;
pub mod time;
pub mod watermark;
pub mod window;

/// Signature vectors from the vendors' docs and SDKs, for the clients' and simulators' tests.
#[doc(hidden)]
pub mod sign_vectors;

use std::fmt;

pub use json::{Json, JsonError};
pub use pageset::{PageSet, PageSetError};
pub use record::Record;
pub use sink::{CommitError, FailureLog, OutRecord, OutRecords, Sink};
pub use source::{ApiSpec, BoxFuture, Mode, Page, PageRequest, Source, SourceError};
pub use spool::{Spill, Spool};
pub use target::{Document, FieldDifference, Held, RowOutcome, Target};
pub use watermark::{Watermark, WatermarkState};
pub use window::Window;

/// A stream's stable id from config, e.g. `wdt.account_check/shop-01`; the key of its watermark.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    /// Accepts 1–200 characters of `[A-Za-z0-9._/:-]`, so ids are safe as metric labels and keys.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 200
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '-'));
        if ok {
            Ok(StreamId(s.to_owned()))
        } else {
            Err(format!("{s:?} is not a valid stream id (1-200 characters of A-Z a-z 0-9 . _ / : -)"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
