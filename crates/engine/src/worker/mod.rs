//! The per-stream worker: plans windows, reads and checks their pages (concurrently, through
//! the credential gate), and commits records with the watermark, window by window in order.

pub mod config;
pub mod gate;
pub mod learned_rate;
mod plan;
pub mod read;
pub mod stream;

pub use plan::StreamPlan;
pub use read::Reader;
pub use stream::{StreamOutcome, StreamReport, StreamWorker};
