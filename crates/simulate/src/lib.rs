//! Faithful local simulators of the vendor APIs, served over HTTP for tests, the demo and benchmarks.

pub mod dataset;
pub mod faults;
pub mod finance;
pub mod generate;
pub mod k3cloud;
pub mod qimen;
pub mod rng;
pub mod throttles;
pub mod top;
pub mod vendor;
pub mod verify;
pub mod wdt;

pub use tidemark_domain as domain;
pub use tidemark_domain::config;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{ConfigError, StartAt, expand_env};
use dataset::DataSet;
use tidemark_endpoints as endpoints;

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
    pub k3cloud: Option<k3cloud::K3cloudSimConfig>,
    #[serde(default)]
    pub faults: faults::FaultConfig,
}

fn default_listen() -> String {
    "127.0.0.1:18080".into()
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
    Ok(crate::domain::time::truncate_to_second(StartAt::parse(key, text)?.resolve(now)))
}

/// Every configured vendor simulator and the injected faults.
pub struct SimState {
    pub faults: faults::Faults,
    pub wdt: Option<wdt::WdtSim>,
    pub qimen: Option<qimen::QimenSim>,
    pub top: Option<top::TopSim>,
    pub finance: Option<finance::FinanceSim>,
    pub k3cloud: Option<k3cloud::K3cloudSim>,
}

/// How the simulators serve one kind's data set: listing it, counting it without generating
/// it, and (for windowed kinds) the set records are inserted into.
pub struct SimKind {
    pub spec: &'static endpoints::Builtin,
    records: fn(&SimState) -> Option<Vec<Value>>,
    count: fn(&SimState) -> Option<usize>,
    windowed: fn(&SimState) -> Option<&RwLock<DataSet>>,
    /// How a worker reads it from a simulator built for the purpose (`tidemark bench`).
    pub pair: Option<SimPair>,
}

/// A simulator section serving a kind, and the worker source settings that read it: both
/// sides of one credential, so a benchmark can stand up any windowed kind.
pub struct SimPair {
    /// The vendor section with its credential, then the data set's table header.
    pub simulator: &'static str,
    /// The worker's source settings for that credential (without `kind` and `base_url`).
    pub source: &'static str,
    /// Appended to the simulator's base URL to make the source's `base_url`.
    pub path: &'static str,
    /// The stream parameter that selects one group (`shops`) of the data set.
    pub group_param: &'static str,
}

/// Every simulated kind, keyed by the built-in endpoint the worker reads it by (`tidemark_endpoints::builtins`).
pub static SIM_KINDS: &[SimKind] = &[
    SimKind {
        spec: &endpoints::wdt::ACCOUNT_CHECK,
        records: |s| s.wdt.as_ref().map(|w| w.account_checks()),
        count: |s| s.wdt.as_ref().map(|w| w.data().read().expect("data lock").len()),
        windowed: |s| s.wdt.as_ref().map(|w| w.data()),
        pair: Some(SimPair {
            simulator: "[wdt]\nsid = \"bench\"\nappkey = \"bench\"\nappsecret = \"bench\"\n[wdt.account_check]",
            source: "sid = \"bench\"\nappkey = \"bench\"\nappsecret = \"bench\"",
            path: "",
            group_param: "shop_no",
        }),
    },
    SimKind {
        spec: &endpoints::qimen::STOCKIN_REFUND,
        records: |s| s.qimen.as_ref().map(|q| q.stockin_refunds()),
        count: |s| s.qimen.as_ref().map(|q| q.data().read().expect("data lock").len()),
        windowed: |s| s.qimen.as_ref().map(|q| q.data()),
        pair: Some(SimPair {
            simulator: "[qimen]\napp_key = \"bench\"\napp_secret = \"bench\"\ntarget_app_key = \"bench\"\nsid = \"bench\"\n[qimen.stockin_refund]",
            source: "app_key = \"bench\"\napp_secret = \"bench\"\ntarget_app_key = \"bench\"\nsid = \"bench\"",
            path: "/router/qm",
            group_param: "shop_no",
        }),
    },
    SimKind {
        spec: &endpoints::top::FINANCE_ORDER,
        records: |s| s.top.as_ref().map(|t| t.finance_orders()),
        count: |s| s.top.as_ref().map(|t| t.data().read().expect("data lock").len()),
        windowed: |s| s.top.as_ref().map(|t| t.data()),
        pair: Some(SimPair {
            simulator: "[top]\napp_key = \"bench\"\napp_secret = \"bench\"\nsession = \"bench\"\n[top.finance_order]",
            source: "app_key = \"bench\"\napp_secret = \"bench\"\nsession = \"bench\"",
            path: "/router/rest",
            group_param: "shop_codes",
        }),
    },
    SimKind {
        spec: &endpoints::finance::TRANSACTIONS,
        records: |s| s.finance.as_ref().map(|f| f.transactions()),
        count: |s| s.finance.as_ref().map(|f| f.data().read().expect("data lock").len()),
        windowed: |s| s.finance.as_ref().map(|f| f.data()),
        pair: Some(SimPair {
            simulator: "[finance]\nflag = \"bench\"\napp_secret = \"bench\"\n[finance.transactions]",
            source: "flag = \"bench\"\napp_secret = \"bench\"",
            path: "/api",
            group_param: "account_id",
        }),
    },
    SimKind {
        spec: &endpoints::finance::BALANCES,
        records: |s| s.finance.as_ref().map(|f| f.balances()),
        count: |s| s.finance.as_ref().map(|f| f.balances().len()),
        windowed: |_| None,
        pair: None,
    },
];

/// The simulator's side of a kind, by the name the worker knows it by.
pub fn sim_kind(kind: &str) -> Option<&'static SimKind> {
    SIM_KINDS.iter().find(|k| k.spec.kind == kind)
}

impl SimState {
    /// How many records a data set holds, without generating them.
    pub fn count(&self, kind: &str) -> Option<usize> {
        (sim_kind(kind)?.count)(self)
    }

    /// A data set by the `kind` the worker knows it as, in served order.
    pub fn records(&self, kind: &str) -> Option<Vec<Value>> {
        (sim_kind(kind)?.records)(self)
    }
}

/// Builds the simulators from config; data sets are generated here, once, relative to `now`
/// on the simulators' clock (moved by `faults.clock_skew`).
pub fn build(cfg: SimConfig, now: DateTime<Utc>) -> Result<Arc<SimState>, ConfigError> {
    let faults = faults::Faults::new(cfg.faults)?;
    let now = faults.skewed(now);
    Ok(Arc::new(SimState {
        faults,
        wdt: cfg.wdt.as_ref().map(|c| wdt::WdtSim::new(c, now)).transpose()?,
        qimen: cfg.qimen.as_ref().map(|c| qimen::QimenSim::new(c, now)).transpose()?,
        top: cfg.top.as_ref().map(|c| top::TopSim::new(c, now)).transpose()?,
        finance: cfg.finance.as_ref().map(|c| finance::FinanceSim::new(c, now)).transpose()?,
        k3cloud: cfg.k3cloud.as_ref().map(k3cloud::K3cloudSim::new).transpose()?,
    }))
}

/// The vendor routes (`/openapi2/*.php`, `/router/qm`, `/router/rest`, `/api`, `/k3cloud/*`),
/// plus `/_simulator/records/{kind}` listing a data set in served order, `/_simulator/stats`,
/// and what the K3Cloud simulator saved (`/_simulator/k3cloud/bills`).
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(wdt::routes())
        .merge(qimen::routes())
        .merge(top::routes())
        .merge(finance::routes())
        .merge(k3cloud::routes())
        .route("/_simulator/records/{kind}", get(records).post(insert_record))
        .route("/_simulator/stats", get(stats))
        .route("/_simulator/requests", get(requests))
        .layer(axum::middleware::from_fn_with_state(state.clone(), faults::middleware))
        .with_state(state)
}

/// A record to add to a data set (`POST /_simulator/records/{kind}`): late records, or
/// records that do not fit the schema. `at` is the time the API filters on (Beijing).
#[derive(Debug, Deserialize)]
struct Inserted {
    at: String,
    group: String,
    record: Value,
}

async fn insert_record(
    State(state): State<Arc<SimState>>,
    UrlPath(kind): UrlPath<String>,
    Json(ins): Json<Inserted>,
) -> impl IntoResponse {
    let Some(at) = crate::domain::time::parse_beijing(&ins.at) else {
        return (StatusCode::BAD_REQUEST, "`at` must be yyyy-MM-dd HH:mm:ss\n").into_response();
    };
    let set = sim_kind(&kind).and_then(|k| (k.windowed)(&state));
    match set {
        Some(set) => {
            set.write().expect("data lock").insert(at, &ins.group, ins.record);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no windowed data set {kind:?}\n")).into_response(),
    }
}

/// Per vendor: requests, their arrival times (ms since start), requests during a ban, bans.
async fn requests(State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(serde_json::to_value(state.faults.log()).expect("log serializes"))
}

async fn records(State(state): State<Arc<SimState>>, UrlPath(kind): UrlPath<String>) -> impl IntoResponse {
    match state.records(&kind) {
        Some(list) => Json(list).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no simulated data set {kind:?}\n")).into_response(),
    }
}

/// Record counts per configured data set, e.g. `{"wdt.account_check": 4000}`.
async fn stats(State(state): State<Arc<SimState>>) -> Json<Value> {
    let counts =
        SIM_KINDS.iter().filter_map(|k| Some((k.spec.kind.to_owned(), Value::from((k.count)(&state)?)))).collect();
    Json(Value::Object(counts))
}

/// Why the simulator could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds and serves until the process ends; prints `listening on ADDR` once bound.
pub async fn serve(cfg: SimConfig) -> Result<(), ServeError> {
    let listen = expand_env("listen", &cfg.listen)?;
    let state = build(cfg, Utc::now())?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    for k in SIM_KINDS {
        if let Some(n) = (k.count)(&state) {
            tracing::info!(kind = k.spec.kind, records = n, "data set ready");
        }
    }
    println!("listening on {addr}");
    axum::serve(listener, router(state)).await?;
    Ok(())
}
