//! What a writer asks of a target API (the other direction: Kafka → a system of record): a
//! record as the target's document with its idempotency key, which keys already exist, and
//! a batch saved with one outcome per document.

use std::collections::HashSet;

use serde_json::Value;

use super::{BoxFuture, SourceError};

/// A record as the target stores it, keyed by what makes it unique there (a bill number).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub key: String,
    pub body: Value,
}

/// What the target did with one document of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Saved {
        id: String,
        number: String,
    },
    /// The target's own field name and message (several joined with `; `).
    Rejected {
        field: String,
        message: String,
    },
    /// The answer does not say: whether it was saved is found out by asking again.
    Unknown,
}

/// How a document compares with what the target holds under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Same,
    Missing,
    Different(Vec<FieldDifference>),
}

/// One field the target holds otherwise than the document says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldDifference {
    /// The 1-based line, for a line's field.
    pub line: Option<usize>,
    /// The target's field key (`FRealQty`), or `lines` for their number.
    pub field: String,
    /// What the document says (from the record in Kafka).
    pub expected: String,
    /// What the target holds.
    pub found: String,
}

/// A target API with its credentials. Its errors use the sources' classes (retry, wait for a
/// throttle, stop), so the writer handles them as the worker does.
pub trait Target: Send + Sync {
    /// The kind of the records it reads (their schema), e.g. `qimen.stockin_refund`.
    fn input_kind(&self) -> &'static str;
    /// The record (decoded, decimals as text) as the target's document, or why it cannot be
    /// one (the record is then dead-lettered).
    fn document(&self, record: &Value) -> Result<Document, String>;
    /// Which of `keys` the target already holds.
    fn existing<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<HashSet<String>, SourceError>>;
    /// Saves `docs` in one call; one outcome per document, in order.
    fn save<'a>(&'a self, docs: &'a [Value]) -> BoxFuture<'a, Result<Vec<RowOutcome>, SourceError>>;
    /// How each of `docs` compares with what the target holds under its key, field by field,
    /// in one call; one answer per document, in order.
    fn compare<'a>(&'a self, docs: &'a [Document]) -> BoxFuture<'a, Result<Vec<Held>, SourceError>>;
}
