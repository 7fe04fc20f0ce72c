//! tidemark: turns paged, time-windowed vendor HTTP APIs into Kafka event streams, exactly once.
//!
//! Layout, from the bottom up: `domain` is the vocabulary (stream ids, windows, watermarks,
//! page sets, the `Source` and `Sink` traits) and imports nothing else; `sources` holds one
//! thin module per vendor protocol; `avro` maps JSON to the schemas in `schemas/`; `kafka` is
//! the transactional sink, topic bootstrap and watermark store; `registry` the schema
//! registry client; `worker` the per-stream loop (windows, pages, completeness, commits);
//! `pipeline` and `run` assemble and supervise it; `cluster` shares the streams among
//! replicas through a Kafka consumer group; `writer` delivers a topic to a target API
//! (`targets`); `simulate` serves the vendor simulators.

pub mod avro;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod inspect;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod registry;
pub mod run;
#[cfg(test)]
pub(crate) mod sign_vectors;
pub mod simulate;
pub mod sources;
pub mod targets;
pub mod worker;
pub mod writer;
