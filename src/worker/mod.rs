//! The per-stream worker: plans windows, fetches and checks their pages, and commits records
//! with the watermark; plus the credential gate it waits on.

pub mod gate;
pub mod plan;
pub mod stream;

pub use plan::StreamPlan;
pub use stream::{StreamOutcome, StreamReport, StreamWorker};
