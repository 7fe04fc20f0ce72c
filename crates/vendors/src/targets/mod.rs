//! Systems tidemark writes to, the other direction of data: one module per target API
//! (signing, request and answer shapes, error classes), used by the writer.

pub mod k3cloud;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, KindSettings};
use crate::domain::Target;

/// What a target's client is built from: the writer's id (for errors), kind, endpoint and
/// timeout, and the target's own keys (its module reads them as its settings type).
#[derive(Debug, Clone, Copy)]
pub struct TargetConfig<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub base_url: &'a str,
    pub request_timeout: Duration,
    pub settings: &'a KindSettings,
}

/// Builds a target's client from its writer's config.
pub type TargetFn = fn(&TargetConfig<'_>, reqwest::Client) -> Result<Arc<dyn Target>, ConfigError>;

/// Every writer kind tidemark knows: adding a target is a module and a line here.
pub static TARGETS: &[(&str, TargetFn)] = &[(k3cloud::KIND, k3cloud::ReturnStockTarget::from_config)];

/// Builds the target of a configured writer.
pub fn build(cfg: &TargetConfig<'_>, http: reqwest::Client) -> Result<Arc<dyn Target>, ConfigError> {
    let (_, build) = TARGETS.iter().find(|(k, _)| *k == cfg.kind).ok_or_else(|| {
        let known: Vec<&str> = TARGETS.iter().map(|(k, _)| *k).collect();
        ConfigError::invalid(
            format!("writers.{}.kind", cfg.id),
            format!("unknown writer kind {:?} (known: {})", cfg.kind, known.join(", ")),
        )
    })?;
    build(cfg, http)
}
