//! The per-stream worker: plans windows, reads and checks their pages (concurrently, through
//! the credential gate), and commits records with the watermark, window by window in order.
//! Within it, `stream` (the loop) uses `read` (a window's pages), `plan`, `context` and `gate`;
//! none of them uses `stream`.

pub mod budget;
pub mod config;
pub mod context;
pub mod gate;
pub mod learned_rate;
mod plan;
pub mod read;
pub mod stream;

pub use context::StreamContext;
pub use plan::StreamPlan;
pub use read::Reader;
pub use stream::{StreamOutcome, StreamReport, StreamWorker};
