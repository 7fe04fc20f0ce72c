//! Faithful local simulators of the vendor APIs, served over HTTP for tests, the demo and benchmarks.

pub mod rng;
pub mod wdt;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::{ConfigError, StartAt, expand_env, parse_duration};

/// The simulator's config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// `host:port`; port 0 picks a free one (the bound address is printed).
    #[serde(default = "default_listen")]
    pub listen: String,
    pub wdt: Option<wdt::WdtSimConfig>,
    #[serde(default)]
    pub faults: FaultConfig,
}

fn default_listen() -> String {
    "127.0.0.1:18080".into()
}

/// Injected misbehaviour.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Added to every vendor response, e.g. `50ms`.
    pub latency: Option<String>,
}

impl SimConfig {
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }
}

/// A resolved time-range bound: absolute Beijing time, or a duration before simulator start.
pub fn resolve_time(key: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ConfigError> {
    Ok(crate::time::truncate_to_second(StartAt::parse(key, text)?.resolve(now)))
}

/// What every vendor simulator shares.
pub struct SimState {
    pub latency: Duration,
    pub wdt: Option<wdt::WdtSim>,
}

/// Builds the simulators from config; data sets are generated here, once.
pub fn build(cfg: &SimConfig, now: DateTime<Utc>) -> Result<Arc<SimState>, ConfigError> {
    let latency = match &cfg.faults.latency {
        Some(l) => parse_duration("faults.latency", l)?,
        None => Duration::ZERO,
    };
    let wdt = cfg.wdt.as_ref().map(|w| wdt::WdtSim::new(w, now)).transpose()?;
    Ok(Arc::new(SimState { latency, wdt }))
}

/// The HTTP routes of every configured simulator, plus `/_simulator/records/{kind}` which
/// lists a data set in its served order, and `/_simulator/stats` (for tests and the demo).
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(wdt::routes())
        .route("/_simulator/records/{kind}", get(records))
        .route("/_simulator/stats", get(stats))
        .with_state(state)
}

async fn records(State(state): State<Arc<SimState>>, UrlPath(kind): UrlPath<String>) -> impl IntoResponse {
    let found = match kind.as_str() {
        "wdt.account_check" => state.wdt.as_ref().map(|w| w.account_checks()),
        _ => None,
    };
    match found {
        Some(list) => Json(list).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no simulated data set {kind:?}\n")).into_response(),
    }
}

/// Record counts per data set, e.g. `{"wdt.account_check": 4000}`.
async fn stats(State(state): State<Arc<SimState>>) -> Json<serde_json::Value> {
    let mut out = serde_json::Map::new();
    if let Some(w) = &state.wdt {
        out.insert("wdt.account_check".into(), w.account_checks().len().into());
    }
    Json(serde_json::Value::Object(out))
}

/// Binds and serves until the process ends; prints `listening on ADDR` once bound.
pub async fn serve(cfg: &SimConfig) -> anyhow::Result<()> {
    let state = build(cfg, Utc::now())?;
    let listen = expand_env("listen", &cfg.listen)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    if let Some(w) = &state.wdt {
        tracing::info!(records = w.account_checks().len(), "wdt.account_check data set ready");
    }
    println!("listening on {addr}");
    axum::serve(listener, router(state)).await?;
    Ok(())
}
