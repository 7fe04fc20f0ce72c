//! tidemark: turns paged, time-windowed vendor HTTP APIs into Kafka event streams, exactly once.
//!
//! Layout: `engine` (windows, pages, completeness, commits) is generic; `sources` holds one thin
//! module per vendor protocol; `avro` maps JSON to the schemas in `schemas/`; `kafka` is the
//! transactional sink and watermark store; `simulate` serves faithful vendor simulators.

pub mod avro;
pub mod bench;
pub mod config;
pub mod domain;
pub mod engine;
pub mod inspect;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod run;
pub mod simulate;
pub mod sources;
