//! The endpoints tidemark knows, as data: each vendor method is a manifest (`<kind>.toml`)
//! beside its Avro schema (`<kind>.avsc`); the five built in are compiled in from `schemas/`,
//! a worker's own are read from its `endpoints_dir`. Both the vendor clients and the vendor
//! simulators read them; neither reaches the other's code.

pub mod catalog;
pub mod finance;
pub mod manifest;
pub mod protocol;
pub mod qimen;
pub mod top;
pub mod wdt;

pub use catalog::{Builtin, Endpoints, builtin, builtins};
pub use manifest::{Endpoint, ManifestError, Origin};
pub use protocol::Protocol;
