//! Faithful local simulators of the vendor APIs, served over HTTP for tests, the demo and benchmarks.

pub mod dataset;
pub mod finance;
pub mod generate;
pub mod qimen;
pub mod rng;
pub mod top;
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
use serde_json::Value;

use crate::config::{ConfigError, StartAt, expand_env, parse_duration};

/// The simulator's config file: one optional section per vendor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// `host:port`; port 0 picks a free one (the bound address is printed).
    #[serde(default = "default_listen")]
    pub listen: String,
    pub wdt: Option<wdt::WdtSimConfig>,
    pub qimen: Option<qimen::QimenSimConfig>,
    pub top: Option<top::TopSimConfig>,
    pub finance: Option<finance::FinanceSimConfig>,
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

/// Every configured vendor simulator and the injected faults.
pub struct SimState {
    pub latency: Duration,
    pub wdt: Option<wdt::WdtSim>,
    pub qimen: Option<qimen::QimenSim>,
    pub top: Option<top::TopSim>,
    pub finance: Option<finance::FinanceSim>,
}

impl SimState {
    /// Waits the injected latency before a vendor response.
    pub async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// A data set by the `kind` the worker knows it as, in served order.
    pub fn records(&self, kind: &str) -> Option<Vec<Value>> {
        match kind {
            "wdt.account_check" => self.wdt.as_ref().map(|s| s.account_checks()),
            "qimen.stockin_refund" => self.qimen.as_ref().map(|s| s.stockin_refunds()),
            "top.finance_order" => self.top.as_ref().map(|s| s.finance_orders()),
            "finance.transactions" => self.finance.as_ref().map(|s| s.transactions()),
            "finance.balances" => self.finance.as_ref().map(|s| s.balances()),
            _ => None,
        }
    }
}

/// Builds the simulators from config; data sets are generated here, once.
pub fn build(cfg: &SimConfig, now: DateTime<Utc>) -> Result<Arc<SimState>, ConfigError> {
    let latency = match &cfg.faults.latency {
        Some(l) => parse_duration("faults.latency", l)?,
        None => Duration::ZERO,
    };
    Ok(Arc::new(SimState {
        latency,
        wdt: cfg.wdt.as_ref().map(|c| wdt::WdtSim::new(c, now)).transpose()?,
        qimen: cfg.qimen.as_ref().map(|c| qimen::QimenSim::new(c, now)).transpose()?,
        top: cfg.top.as_ref().map(|c| top::TopSim::new(c, now)).transpose()?,
        finance: cfg.finance.as_ref().map(|c| finance::FinanceSim::new(c, now)).transpose()?,
    }))
}

/// The vendor routes (`/openapi2/*.php`, `/router/qm`, `/router/rest`, `/api`), plus
/// `/_simulator/records/{kind}` listing a data set in served order and `/_simulator/stats`.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(wdt::routes())
        .merge(qimen::routes())
        .merge(top::routes())
        .merge(finance::routes())
        .route("/_simulator/records/{kind}", get(records))
        .route("/_simulator/stats", get(stats))
        .with_state(state)
}

const KINDS: &[&str] =
    &["wdt.account_check", "qimen.stockin_refund", "top.finance_order", "finance.transactions", "finance.balances"];

async fn records(State(state): State<Arc<SimState>>, UrlPath(kind): UrlPath<String>) -> impl IntoResponse {
    match state.records(&kind) {
        Some(list) => Json(list).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no simulated data set {kind:?}\n")).into_response(),
    }
}

/// Record counts per configured data set, e.g. `{"wdt.account_check": 4000}`.
async fn stats(State(state): State<Arc<SimState>>) -> Json<Value> {
    let counts = KINDS.iter().filter_map(|k| Some((k.to_string(), Value::from(state.records(k)?.len())))).collect();
    Json(Value::Object(counts))
}

/// Binds and serves until the process ends; prints `listening on ADDR` once bound.
pub async fn serve(cfg: &SimConfig) -> anyhow::Result<()> {
    let state = build(cfg, Utc::now())?;
    let listen = expand_env("listen", &cfg.listen)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    for kind in KINDS {
        if let Some(r) = state.records(kind) {
            tracing::info!(kind, records = r.len(), "data set ready");
        }
    }
    println!("listening on {addr}");
    axum::serve(listener, router(state)).await?;
    Ok(())
}

#[cfg(test)]
mod round_trip_tests;
