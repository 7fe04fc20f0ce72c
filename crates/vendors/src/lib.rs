//! The vendor protocols tidemark speaks, in both directions: `sources` are the clients of the
//! APIs it reads (signing, envelopes, error classes), `targets` the APIs a writer delivers to.
//! They know the endpoints (`tidemark_endpoints`) and the vocabulary, nothing of Kafka, the
//! worker or the simulators.

pub use tidemark_domain as domain;
pub use tidemark_domain::config;

pub mod sources;
pub mod targets;
