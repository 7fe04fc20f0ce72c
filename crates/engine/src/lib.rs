//! The generic engine: the per-stream worker (windows, pages, completeness, commits in order),
//! the Kafka sink, watermark store and control topic, Avro and the schema registry, and the
//! metrics. It knows no vendor: a stream reads through `domain::Source`, whatever speaks it.

pub use tidemark_domain as domain;
pub use tidemark_domain::config;

pub mod avro;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod worker;
