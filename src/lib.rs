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
//! commits); `pipeline` assembles the streams and `run` runs them in one process; `cluster`
//! shares them among replicas through a Kafka consumer group; `ops` and `inspect` are the
//! operators' commands; `writer` delivers a topic to a target API (`targets`); `simulate`
//! serves the vendor simulators; `bench` measures the worker.

pub mod bench;
pub mod cluster;
pub mod config;
pub mod inspect;
pub mod ops;
pub mod pipeline;
pub mod run;
pub mod writer;

#[cfg(test)]
mod round_trip;

pub use tidemark_domain as domain;
pub use tidemark_domain::sign_vectors;
pub use tidemark_engine::{avro, kafka, metrics, registry, worker};
pub use tidemark_simulate as simulate;
pub use tidemark_vendors::{sources, targets};
