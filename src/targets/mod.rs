//! Systems tidemark writes to, the other direction of data: one module per target API
//! (signing, request and answer shapes, error classes), used by the writer.

pub mod k3cloud;
