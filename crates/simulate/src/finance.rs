//! Simulated 财务账单 API: JSON POST with system parameters, signature and expiry checks, the
//! seed's error codes, `finance.getTransactionList` (1-based pages, sizes over 100 cut to
//! 100) and `finance.getAccountBalance` (a snapshot whose balances tests can change).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::SimState;
use super::dataset::{DataSet, DataSetConfig};
use super::faults::Faults;
use super::generate::{Plan, Style, decimal_text};
use super::rng::SimRng;
use super::served::{Query, Served, WindowRefusal, too_long};
use super::verify::finance_sign;
use crate::config::{ConfigError, expand_env, parse_duration};
use crate::domain::time::{DATETIME, beijing, format_beijing, parse_beijing};
use tidemark_endpoints::finance::{BALANCES, TRANSACTIONS};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinanceSimConfig {
    pub flag: String,
    pub app_secret: String,
    /// 1002 "请求已过期": the seed says requests are valid for 5 minutes.
    #[serde(default = "default_skew")]
    pub max_skew: String,
    /// `shops` here are account ids.
    pub transactions: Option<DataSetConfig>,
    pub balances: Option<BalancesConfig>,
}

fn default_skew() -> String {
    "5m".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancesConfig {
    #[serde(default)]
    pub seed: u64,
    pub accounts: usize,
}

fn error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// The running finance simulator.
pub struct FinanceSim {
    flag: String,
    app_secret: String,
    max_skew: i64,
    /// Each windowed method served, by its `method` parameter (transactions first).
    served: Vec<Served>,
    balances: Mutex<BTreeMap<String, Value>>,
}

const ACCOUNT_NAMES: &[&str] = &["测试账户", "备用账户", "支付宝主账户", "京东钱包", "精准通"];

impl FinanceSim {
    /// Adds an endpoint from a manifest.
    pub fn serve(&mut self, endpoint: Served) {
        self.served.push(endpoint);
    }

    /// Every windowed endpoint served.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    pub fn new(cfg: &FinanceSimConfig, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let schema = apache_avro::Schema::parse_str(TRANSACTIONS.schema).expect("compiled-in schema parses");
        let plan = Plan::new(&schema);
        let transactions = match &cfg.transactions {
            None => DataSet::default(),
            Some(d) => DataSet::generate(
                d,
                "finance.transactions",
                now,
                Arc::new(move |rng, i, at, account| {
                    let mut r = plan.record(rng, at, Style { numbers_as_json: true });
                    r["trans_id"] = json!(format!("TRANS{}{i:07}", format_beijing(at, "%Y%m%d")));
                    r["account_id"] = json!(account);
                    r["account_name"] = json!(rng.pick(ACCOUNT_NAMES));
                    r["trans_type"] = json!(if rng.chance(0.6) { "income" } else { "expense" });
                    r["trans_time"] = json!(format_beijing(at, DATETIME));
                    r
                }),
            )?,
        };
        let mut balances = BTreeMap::new();
        if let Some(b) = &cfg.balances {
            let mut rng = SimRng::new(b.seed);
            for i in 1..=b.accounts {
                let id = format!("ACC{i:03}");
                balances.insert(id.clone(), account(&mut rng, &id, i));
            }
        }
        Ok(FinanceSim {
            flag: expand_env("finance.flag", &cfg.flag)?,
            app_secret: expand_env("finance.app_secret", &cfg.app_secret)?,
            max_skew: parse_duration("finance.max_skew", &cfg.max_skew)?.as_secs() as i64,
            served: vec![Served::new(&TRANSACTIONS, transactions, Some("account_id"))],
            balances: Mutex::new(balances),
        })
    }

    pub fn transactions(&self) -> Vec<Value> {
        self.served[0].records()
    }

    pub fn balances(&self) -> Vec<Value> {
        self.balances.lock().expect("balances lock").values().cloned().collect()
    }

    /// Sets fields of an account (creating it if new).
    pub fn put_balance(&self, id: &str, fields: Map<String, Value>) {
        let mut all = self.balances.lock().expect("balances lock");
        let entry = all.entry(id.to_owned()).or_insert_with(|| json!({"account_id": id}));
        for (k, v) in fields {
            entry[&k] = v;
        }
    }

    pub fn delete_balance(&self, id: &str) -> bool {
        self.balances.lock().expect("balances lock").remove(id).is_some()
    }

    pub fn answer(&self, body: &Value, now: DateTime<Utc>, faults: Option<&Faults>) -> Value {
        match self.try_answer(body, now, faults) {
            Ok(v) | Err(v) => v,
        }
    }

    fn try_answer(&self, body: &Value, now: DateTime<Utc>, faults: Option<&Faults>) -> Result<Value, Value> {
        let b = body.as_object().ok_or_else(|| error(400, "参数错误: 请求体不是 JSON 对象"))?;
        let text = |name: &str| -> Option<String> {
            match b.get(name)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        if let Some(t) = text("type")
            && t != "json"
        {
            return Err(error(1004, "不支持的type格式"));
        }
        for name in ["flag", "method", "ver", "charset", "type", "timestamp", "sign"] {
            if text(name).is_none_or(|v| v.is_empty()) {
                return Err(error(2001, &format!("缺少必要的参数 {name}")));
            }
        }
        if text("flag").as_deref() != Some(self.flag.as_str()) {
            return Err(error(1001, "非法的flag"));
        }
        let ts = text("timestamp").unwrap_or_default();
        let ts = NaiveDateTime::parse_from_str(&ts, "%Y%m%d%H%M%S")
            .ok()
            .and_then(|n| beijing().from_local_datetime(&n).single())
            .ok_or_else(|| error(2002, "非法的请求参数 timestamp: 格式 yyyyMMddHHmmss"))?;
        if (now - ts.with_timezone(&Utc)).num_seconds().abs() > self.max_skew {
            return Err(error(1002, "请求已过期"));
        }
        if text("sign").as_deref() != Some(finance_sign(b, &self.app_secret).as_str()) {
            return Err(error(1003, "签名错误"));
        }
        if text("ver").as_deref() != Some("1") || text("charset").as_deref() != Some("utf-8") {
            return Err(error(1, "参数错误: ver 固定为1, charset 固定为utf-8"));
        }
        match text("method").as_deref() {
            Some(m) if let Some(served) = self.served.iter().find(|s| s.spec.method == m) => {
                list(served, b, &text, faults)
            }
            Some(m) if m == BALANCES.method => {
                let (id, kind) = (text("account_id"), text("account_type"));
                let accounts: Vec<Value> = self
                    .balances()
                    .into_iter()
                    .filter(|a| id.as_ref().is_none_or(|i| a["account_id"] == json!(i)))
                    .filter(|a| kind.as_ref().is_none_or(|k| a["account_type"] == json!(k)))
                    .collect();
                Ok(json!({"code": 0, "message": "成功", BALANCES.list_field: accounts}))
            }
            _ => Err(error(2003, "接口不存在")),
        }
    }
}

/// A page of a windowed method: 1-based `page_no`, pages asked above 100 served as 100.
fn list(
    served: &Served,
    body: &Map<String, Value>,
    text: &dyn Fn(&str) -> Option<String>,
    faults: Option<&Faults>,
) -> Result<Value, Value> {
    let time = |name: &str| -> Result<DateTime<Utc>, Value> {
        let t = text(name).ok_or_else(|| error(2001, &format!("缺少必要的参数 {name}")))?;
        parse_beijing(&t).ok_or_else(|| error(2002, &format!("{name} 时间格式必须为 yyyy-MM-dd HH:mm:ss")))
    };
    let (start, end) = (time("start_time")?, time("end_time")?);
    match served.check_window(start, end) {
        Ok(()) => {}
        Err(WindowRefusal::EndBeforeStart) => return Err(error(2002, "end_time 早于 start_time")),
        Err(WindowRefusal::TooLong { max_span }) => {
            return Err(error(2002, &too_long(max_span)));
        }
    }
    let num = |name: &str, default: u64| -> Result<u64, Value> {
        text(name).map_or(Ok(default), |v| v.parse().map_err(|_| error(2002, &format!("{name} 不是整数"))))
    };
    let page_no = num("page_no", 1)?;
    let asked = num("page_size", 50)?;
    if page_no < 1 || !(1..=1000).contains(&asked) {
        return Err(error(2002, "page_no 从1开始, page_size 最大1000"));
    }
    // "超过100将被限制为100": the page served is smaller than the one asked for.
    let page_size = asked.min(100);
    let params: BTreeMap<String, String> = body.keys().filter_map(|k| Some((k.clone(), text(k)?))).collect();
    let query = Query { start, end, page_index: page_no - 1, page_size, params: &params };
    let (total, items) = served.page(&query, faults);
    Ok(json!({"code": 0, "message": "成功", "count": total, served.spec.list_field: items}))
}

fn account(rng: &mut SimRng, id: &str, i: usize) -> Value {
    let balance: Value = serde_json::from_str(&decimal_text(rng, 17, 2)).expect("decimal text is a json number");
    json!({
        "account_id": id,
        "account_name": ACCOUNT_NAMES[i % ACCOUNT_NAMES.len()],
        "account_type": if i.is_multiple_of(3) { "backup" } else { "main" },
        "balance": balance,
        "currency": "CNY",
    })
}

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api", post(api))
        .route("/_simulator/finance.balances/{id}", put(put_account).delete(delete_account))
}

async fn api(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let Some(sim) = &state.finance else {
        return Json(error(2003, "finance simulator not configured")).into_response();
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => Json(sim.answer(&v, state.faults.now(), Some(&state.faults))).into_response(),
        Err(_) => Json(error(400, "参数错误: 请求体不是 JSON")).into_response(),
    }
}

async fn put_account(
    State(state): State<Arc<SimState>>,
    UrlPath(id): UrlPath<String>,
    Json(fields): Json<Map<String, Value>>,
) -> StatusCode {
    match &state.finance {
        Some(sim) => {
            sim.put_balance(&id, fields);
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn delete_account(State(state): State<Arc<SimState>>, UrlPath(id): UrlPath<String>) -> StatusCode {
    match &state.finance {
        Some(sim) if sim.delete_balance(&id) => StatusCode::NO_CONTENT,
        _ => StatusCode::NOT_FOUND,
    }
}
