//! tidemark: turns paged, time-windowed vendor HTTP APIs into Kafka event streams, exactly once.
//!
//! This crate is the top of the workspace: the processes (`run`, `cluster`, `ops`, `inspect`,
//! `writer`, `bench`), the config assembly, the pipeline and the supervisor. The layers below
//! are crates of their own, re-exported here under their module names: `domain` (the
//! vocabulary), `sources`/`targets` (the vendor protocols), `simulate` (the vendor
//! simulators), and the engine's `worker`, `kafka`, `avro`, `registry` and `metrics`.
//! A crate sees only those below it; `layering_tests` checks for cycles inside each crate.

pub mod bench;
pub mod cluster;
pub mod config;
pub mod discover;
pub mod inspect;
#[cfg(test)]
mod layering_tests;
pub mod ops;
pub mod pipeline;
pub mod reconcile;
pub mod run;
pub mod supervisor;
pub mod writer;

#[cfg(test)]
mod round_trip;

pub use tidemark_domain as domain;
pub use tidemark_domain::sign_vectors;
pub use tidemark_engine::{avro, kafka, metrics, registry, worker};
pub use tidemark_simulate as simulate;
pub use tidemark_vendors::{sources, targets};
