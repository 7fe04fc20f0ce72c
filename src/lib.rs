//! tidemark: turns paged, time-windowed vendor HTTP APIs into Kafka event streams, exactly once.
//!
//! Layout, from the bottom up (each imports only what is below it): `domain` is the
//! vocabulary (stream ids, windows, watermarks, page sets, the `Source`, `Sink` and
//! `FailureLog` traits) and imports nothing else; `config` (errors naming the key, secrets,
//! durations, `${…}` expansion; the one exception to the order, it also gathers the sections
//! that the modules above own into one `Config`) and `metrics`; `sources` holds one thin
//! module per vendor protocol; `registry` the schema registry client; `avro` maps JSON
//! to the schemas in `schemas/`; `kafka` is the transactional sink, topic bootstrap, watermark
//! store and control topic; `worker` the per-stream loop (windows, pages, completeness,
//! commits) and the `StreamContext` it borrows from its process; `pipeline` assembles the
//! streams; `supervisor` is the one lifecycle of streams on a producer (connect, settle
//! hanging transactions, load watermarks, spawn, cancel, retire), which `run` uses for one
//! process, `cluster` for each stream a replica owns, `ops` for a backfill and `bench` for
//! its producer; `ops` and `inspect` are the operators' commands; `writer` delivers a topic
//! to a target API (`targets`); `simulate` serves the vendor simulators; `bench` measures the
//! worker. No folder's modules import each other in a cycle (`layering_tests` checks).

pub mod avro;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod inspect;
pub mod kafka;
#[cfg(test)]
mod layering_tests;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod registry;
pub mod run;
#[cfg(test)]
pub(crate) mod sign_vectors;
pub mod simulate;
pub mod sources;
pub mod supervisor;
pub mod targets;
pub mod worker;
pub mod writer;
