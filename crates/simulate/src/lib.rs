//! Faithful local simulators of the vendor APIs, served over HTTP for tests, the demo and benchmarks.

pub mod dataset;
pub mod faults;
pub mod finance;
pub mod generate;
pub mod k3cloud;
pub mod qimen;
pub mod rng;
pub mod served;
pub mod throttles;
pub mod top;
pub mod vendor;
pub mod verify;
pub mod wdt;

pub use tidemark_domain as domain;
pub use tidemark_domain::config;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{ConfigError, StartAt, expand_env};
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
    /// A directory of endpoint manifests (`<kind>.toml` + `<kind>.avsc`), as a worker's
    /// `endpoints_dir`; relative to this file.
    pub endpoints_dir: Option<PathBuf>,
    /// A generated data set per endpoint (built in or from `endpoints_dir`), served by the
    /// simulator of its protocol with that section's credentials: `[endpoints."wdt.trade_query"]`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, dataset::DataSetConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:18080".into()
}

impl SimConfig {
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut cfg: SimConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        if let (Some(dir), Some(base)) = (&cfg.endpoints_dir, path.parent()) {
            cfg.endpoints_dir = Some(base.join(dir));
        }
        Ok(cfg)
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

/// A simulator section serving a kind, and the worker source settings that read it: both
/// sides of one credential, so a benchmark can stand up any windowed kind.
pub struct SimPair {
    /// The built-in kind.
    pub kind: &'static str,
    /// The vendor section with its credential, then the data set's table header.
    pub simulator: &'static str,
    /// The worker's source settings for that credential (without `kind` and `base_url`).
    pub source: &'static str,
    /// Appended to the simulator's base URL to make the source's `base_url`.
    pub path: &'static str,
    /// The stream parameter that selects one group (`shops`) of the data set.
    pub group_param: &'static str,
}

/// The windowed built-in kinds `tidemark bench` can stand up.
pub static BENCH_PAIRS: &[SimPair] = &[
    SimPair {
        kind: "wdt.account_check",
        simulator: "[wdt]\nsid = \"bench\"\nappkey = \"bench\"\nappsecret = \"bench\"\n[wdt.account_check]",
        source: "sid = \"bench\"\nappkey = \"bench\"\nappsecret = \"bench\"",
        path: "",
        group_param: "shop_no",
    },
    SimPair {
        kind: "qimen.stockin_refund",
        simulator: "[qimen]\napp_key = \"bench\"\napp_secret = \"bench\"\ntarget_app_key = \"bench\"\nsid = \"bench\"\n[qimen.stockin_refund]",
        source: "app_key = \"bench\"\napp_secret = \"bench\"\ntarget_app_key = \"bench\"\nsid = \"bench\"",
        path: "/router/qm",
        group_param: "shop_no",
    },
    SimPair {
        kind: "top.finance_order",
        simulator: "[top]\napp_key = \"bench\"\napp_secret = \"bench\"\nsession = \"bench\"\n[top.finance_order]",
        source: "app_key = \"bench\"\napp_secret = \"bench\"\nsession = \"bench\"",
        path: "/router/rest",
        group_param: "shop_codes",
    },
    SimPair {
        kind: "finance.transactions",
        simulator: "[finance]\nflag = \"bench\"\napp_secret = \"bench\"\n[finance.transactions]",
        source: "flag = \"bench\"\napp_secret = \"bench\"",
        path: "/api",
        group_param: "account_id",
    },
];

/// The bench pair of a built-in kind.
pub fn bench_pair(kind: &str) -> Option<&'static SimPair> {
    BENCH_PAIRS.iter().find(|p| p.kind == kind)
}

impl SimState {
    /// Every windowed endpoint served, of every vendor.
    pub fn served(&self) -> impl Iterator<Item = &served::Served> {
        let wdt = self.wdt.iter().flat_map(|s| s.served());
        let qimen = self.qimen.iter().flat_map(|s| s.served());
        let top = self.top.iter().flat_map(|s| s.served());
        let finance = self.finance.iter().flat_map(|s| s.served());
        wdt.chain(qimen).chain(top).chain(finance)
    }

    /// The windowed endpoint of `kind`, if its vendor is configured.
    pub fn endpoint(&self, kind: &str) -> Option<&served::Served> {
        self.served().find(|s| s.spec.kind == kind)
    }

    /// How many records a data set holds, without generating them.
    pub fn count(&self, kind: &str) -> Option<usize> {
        match kind {
            k if k == endpoints::finance::BALANCES.kind => self.finance.as_ref().map(|f| f.balances().len()),
            k => self.endpoint(k).map(served::Served::len),
        }
    }

    /// A data set by the `kind` the worker knows it as, in served order.
    pub fn records(&self, kind: &str) -> Option<Vec<Value>> {
        match kind {
            k if k == endpoints::finance::BALANCES.kind => self.finance.as_ref().map(|f| f.balances()),
            k => self.endpoint(k).map(served::Served::records),
        }
    }

    /// Every kind with a data set, built-in first.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self.served().map(|s| s.spec.kind).collect();
        if self.finance.is_some() {
            kinds.push(endpoints::finance::BALANCES.kind);
        }
        kinds
    }
}

/// Builds the simulators from config; data sets are generated here, once, relative to `now`
/// on the simulators' clock (moved by `faults.clock_skew`).
pub fn build(cfg: SimConfig, now: DateTime<Utc>) -> Result<Arc<SimState>, ConfigError> {
    let faults = faults::Faults::new(cfg.faults)?;
    let now = faults.skewed(now);
    let mut state = SimState {
        faults,
        wdt: cfg.wdt.as_ref().map(|c| wdt::WdtSim::new(c, now)).transpose()?,
        qimen: cfg.qimen.as_ref().map(|c| qimen::QimenSim::new(c, now)).transpose()?,
        top: cfg.top.as_ref().map(|c| top::TopSim::new(c, now)).transpose()?,
        finance: cfg.finance.as_ref().map(|c| finance::FinanceSim::new(c, now)).transpose()?,
        k3cloud: cfg.k3cloud.as_ref().map(k3cloud::K3cloudSim::new).transpose()?,
    };
    serve_endpoints(&mut state, cfg.endpoints_dir.as_deref(), &cfg.endpoints, now)?;
    Ok(Arc::new(state))
}

/// Adds each `[endpoints."<kind>"]` data set to the simulator of its protocol.
fn serve_endpoints(
    state: &mut SimState,
    dir: Option<&Path>,
    sets: &BTreeMap<String, dataset::DataSetConfig>,
    now: DateTime<Utc>,
) -> Result<(), ConfigError> {
    let known = match dir {
        Some(d) => {
            endpoints::Endpoints::load_dir(d).map_err(|e| ConfigError::invalid("endpoints_dir", e.to_string()))?
        }
        None => endpoints::Endpoints::builtin(),
    };
    for (kind, set) in sets {
        let key = format!("endpoints.\"{kind}\"");
        let endpoint = known
            .find(kind)
            .ok_or_else(|| ConfigError::invalid(&key, format!("no endpoint {kind:?} (known: {})", known.kinds())))?;
        if state.endpoint(kind).is_some_and(|s| !s.is_empty()) {
            return Err(ConfigError::invalid(&key, format!("{kind} already has a data set in its vendor's section")));
        }
        let spec = &endpoint.spec;
        let protocol = endpoint.protocol.name;
        let missing = || ConfigError::invalid(&key, format!("needs a [{protocol}] section with its credentials"));
        // The finance API writes numbers as JSON numbers, the others as text.
        let style = generate::Style { numbers_as_json: protocol == "finance" };
        let generated = || served::Served::generated(spec, set, now, style);
        match protocol {
            "wdt" => state.wdt.as_mut().ok_or_else(missing)?.serve(generated()?),
            "qimen" => state.qimen.as_mut().ok_or_else(missing)?.serve(generated()?),
            "top" => state.top.as_mut().ok_or_else(missing)?.serve(generated()?),
            "finance" if spec.mode == crate::domain::Mode::Windowed => {
                state.finance.as_mut().ok_or_else(missing)?.serve(generated()?)
            }
            _ => {
                return Err(ConfigError::invalid(
                    &key,
                    format!(
                        "the {protocol} simulator serves only its built-in snapshot (a finance snapshot keeps its own state)"
                    ),
                ));
            }
        }
    }
    Ok(())
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
    match state.endpoint(&kind) {
        Some(served) => {
            served.data().write().expect("data lock").insert(at, &ins.group, ins.record);
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
    let counts = state.kinds().into_iter().filter_map(|k| Some((k.to_owned(), Value::from(state.count(k)?)))).collect();
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
    for kind in state.kinds() {
        // A vendor section holds its built-in method's (empty) set even when only others are configured.
        if let Some(n) = state.count(kind).filter(|n| *n > 0) {
            tracing::info!(kind, records = n, "data set ready");
        }
    }
    println!("listening on {addr}");
    axum::serve(listener, router(state)).await?;
    Ok(())
}
