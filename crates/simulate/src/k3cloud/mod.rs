//! Simulated 金蝶云星空 (K3Cloud) WebAPI: 第三方系统登录授权 headers, `BatchSave` / `Save` of
//! 销售退货单 checked against configured base data, and `ExecuteBillQuery` over what was saved.

pub mod auth;
pub mod bill;
pub mod query;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimState;
use crate::config::{ConfigError, expand_env, parse_duration};
use crate::domain::time::{DATETIME, format_beijing};
use auth::{Account, AuthFailure};
use bill::BaseData;

/// The one form the simulator knows: 销售退货单.
pub const FORM_ID: &str = "SAL_RETURNSTOCK";
pub const BATCH_SAVE: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave.common.kdsvc";
pub const SAVE: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc";
pub const QUERY: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc";
/// Session login with the app's secret, as the Java SDK's `AuthService.LoginByAppSecret`.
pub const LOGIN: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret.common.kdsvc";

/// The header (and cookie) a session travels in.
pub const SESSION_HEADER: &str = "kdservice-sessionid";

/// The first `Id` a saved bill gets, as K3Cloud's internal ids look.
const FIRST_ID: u64 = 100_001;

/// The `[k3cloud]` section: the 第三方系统登录授权 app and account, and the base data the
/// account holds. An empty list accepts any number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3cloudSimConfig {
    pub app_id: String,
    pub app_secret: String,
    pub acct_id: String,
    pub user_name: String,
    /// The account's language. Requests may name another in `X-Kd-Appdata`; it is not checked.
    #[serde(default = "default_lcid")]
    pub lcid: u32,
    /// Largest accepted difference between a request's timestamp and the server clock.
    #[serde(default = "default_skew")]
    pub max_skew: String,
    /// 物料 numbers (`FMaterialId`).
    #[serde(default)]
    pub materials: Vec<String>,
    /// 客户 numbers (`FRetcustId`).
    #[serde(default)]
    pub customers: Vec<String>,
    /// 仓库 numbers (`FStockId`).
    #[serde(default)]
    pub warehouses: Vec<String>,
    /// 组织 numbers (`FStockOrgId`, `FSaleOrgId`, `FSettleOrgId`).
    #[serde(default = "default_orgs")]
    pub orgs: Vec<String>,
    /// 单据类型 numbers (`FBillTypeID`).
    #[serde(default = "default_bill_types")]
    pub bill_types: Vec<String>,
    /// How long a session from `LoginByAppSecret` lives without use (K3Cloud's default is
    /// 20 minutes); a short one makes clients log in again.
    #[serde(default = "default_session_ttl")]
    pub session_ttl: String,
    /// Drops a session after this many requests (0: never), as a server restart would: the
    /// client must notice (`MsgCode` 1) and log in again.
    #[serde(default)]
    pub session_max_requests: u64,
    /// Every Nth save request (`Save` or `BatchSave`; 0: never) is carried out, its bills
    /// saved, and then the connection is cut instead of answering, as when K3Cloud commits a
    /// save whose answer a timeout or a dropped connection loses: the client must find those
    /// bills by `FBillNo` (`ExecuteBillQuery`) and not save them a second time. Not 1: with
    /// every answer lost, no client could ever learn that a bill was refused.
    #[serde(default)]
    pub lose_save_answer_every: u64,
}

fn default_session_ttl() -> String {
    "20m".into()
}

fn default_lcid() -> u32 {
    2052
}

/// As TOP's gateway: 10 minutes.
fn default_skew() -> String {
    "10m".into()
}

fn default_orgs() -> Vec<String> {
    vec!["100".into()]
}

fn default_bill_types() -> Vec<String> {
    vec!["XSTHD01_SYS".into()]
}

/// A saved bill.
struct Stored {
    id: u64,
    bill_no: String,
    date: NaiveDateTime,
    /// `A` created, `C` audited.
    status: &'static str,
    saved_at: DateTime<Utc>,
    model: Value,
}

/// Requests by outcome (`GET /_simulator/k3cloud/stats`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub auth_failures: u64,
    /// Refused whole: malformed body, unknown form, unknown query.
    pub request_errors: u64,
    pub bills_saved: u64,
    pub bills_rejected: u64,
    pub queries: u64,
    pub logins: u64,
    /// Requests that named a session which had expired (or never existed).
    pub sessions_lost: u64,
    /// `Save` and `BatchSave` requests, answered or not.
    pub save_requests: u64,
    /// Save requests carried out whose answer was lost (`lose_save_answer_every`).
    pub save_answers_lost: u64,
}

#[derive(Default)]
struct Store {
    bills: Vec<Stored>,
    numbers: HashSet<String>,
}

/// The running K3Cloud simulator.
pub struct K3cloudSim {
    account: Account,
    max_skew: i64,
    base: BaseData,
    store: Mutex<Store>,
    counts: Mutex<Counts>,
    session_ttl: chrono::Duration,
    session_max_requests: u64,
    lose_save_answer_every: u64,
    /// Session id → last use and requests served.
    sessions: Mutex<std::collections::HashMap<String, (DateTime<Utc>, u64)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    BatchSave,
    Save,
    Query,
}

impl Call {
    fn of(path: &str) -> Option<Call> {
        match path {
            BATCH_SAVE => Some(Call::BatchSave),
            SAVE => Some(Call::Save),
            QUERY => Some(Call::Query),
            _ => None,
        }
    }
}

/// `ResponseStatus`: `errors` and `successes` already carry their `DIndex`.
fn response_status(errors: Vec<Value>, successes: Vec<Value>, msg_code: u32) -> Value {
    json!({
        "ErrorCode": if errors.is_empty() { 0 } else { 500 },
        "IsSuccess": errors.is_empty(),
        "Errors": errors,
        "SuccessEntitys": successes,
        "SuccessMessages": [],
        "MsgCode": msg_code,
    })
}

fn error(field: &str, message: &str, index: usize) -> Value {
    json!({"FieldName": field, "Message": message, "DIndex": index})
}

/// The save answer: `{"Result": {"ResponseStatus": .., "Id", "Number", "NeedReturnData"}}`.
fn envelope(status: Value, id: Value, number: Value) -> Value {
    json!({"Result": {"ResponseStatus": status, "Id": id, "Number": number, "NeedReturnData": []}})
}

/// A save request refused whole.
pub fn failure(message: &str, msg_code: u32) -> Value {
    envelope(response_status(vec![error("", message, 0)], vec![], msg_code), json!(""), json!(""))
}

/// A query refused: the status nested in two arrays, where rows would be, which is how the
/// SDKs tell a failed query from its rows.
pub fn query_failure(message: &str, msg_code: u32) -> Value {
    json!([[{"Result": {"ResponseStatus": response_status(vec![error("", message, 0)], vec![], msg_code)}}]])
}

/// A refusal in the form the call at `path` answers in.
fn refuse(path: &str, message: &str, msg_code: u32) -> Value {
    if path == QUERY { query_failure(message, msg_code) } else { failure(message, msg_code) }
}

/// An authentication failure: `MsgCode` 1, which the SDKs read as "log in again".
pub fn auth_failure(path: &str, why: &AuthFailure) -> Value {
    refuse(path, &format!("身份验证失败: {why}"), 1)
}

/// The message for a form the simulator does not have.
pub fn unknown_form(form: &str) -> String {
    format!("业务对象 {form} 不存在 (only {FORM_ID} is simulated)")
}

/// The call's form id (for saves) and its data, from either SDK's body: Python's
/// `{"formid": .., "data": ..}` or Java's `{"parameters": [formid, data]}`, data an object or
/// its JSON text.
fn unpack(body: &Value, with_form: bool) -> Result<(String, Value), String> {
    let (form, data) = match body.get("parameters") {
        Some(Value::Array(p)) if with_form => (p.first(), p.get(1)),
        Some(Value::Array(p)) => (None, p.first()),
        Some(_) => return Err("parameters 必须是数组 (parameters must be a list)".into()),
        None => (body.get("formid"), body.get("data")),
    };
    let form = form.and_then(Value::as_str).unwrap_or("").to_owned();
    let data = match data {
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|e| format!("data 不是有效的 JSON (data is not valid JSON: {e})"))?
        }
        Some(v) => v.clone(),
        None => return Err("缺少 data 参数 (missing data)".into()),
    };
    if !data.is_object() {
        return Err("data 必须是 JSON 对象 (data must be a JSON object)".into());
    }
    Ok((form, data))
}

/// A batch flag: JSON `true` or the text `true`.
fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

impl K3cloudSim {
    pub fn new(cfg: &K3cloudSimConfig) -> Result<Self, ConfigError> {
        let account = Account::new(
            expand_env("k3cloud.app_id", &cfg.app_id)?,
            expand_env("k3cloud.app_secret", &cfg.app_secret)?,
            expand_env("k3cloud.acct_id", &cfg.acct_id)?,
            expand_env("k3cloud.user_name", &cfg.user_name)?,
            cfg.lcid,
        )
        .map_err(|why| ConfigError::invalid("k3cloud.app_id", why))?;
        let set = |list: &[String]| list.iter().cloned().collect();
        if cfg.lose_save_answer_every == 1 {
            return Err(ConfigError::invalid(
                "k3cloud.lose_save_answer_every",
                "must be 0 (never) or at least 2: with every save's answer lost, no refusal could be told",
            ));
        }
        Ok(K3cloudSim {
            account,
            max_skew: parse_duration("k3cloud.max_skew", &cfg.max_skew)?.as_secs() as i64,
            base: BaseData {
                materials: set(&cfg.materials),
                customers: set(&cfg.customers),
                warehouses: set(&cfg.warehouses),
                orgs: set(&cfg.orgs),
                bill_types: set(&cfg.bill_types),
            },
            store: Mutex::new(Store::default()),
            counts: Mutex::new(Counts::default()),
            session_ttl: crate::domain::window::chrono_duration(parse_duration(
                "k3cloud.session_ttl",
                &cfg.session_ttl,
            )?),
            session_max_requests: cfg.session_max_requests,
            lose_save_answer_every: cfg.lose_save_answer_every,
            sessions: Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().expect("counts").clone()
    }

    /// Every saved bill in `Id` order: `{"Id", "Number", "FDocumentStatus", "SavedAt", "Model"}`.
    pub fn bills(&self) -> Vec<Value> {
        let store = self.store.lock().expect("store");
        store
            .bills
            .iter()
            .map(|b| {
                json!({"Id": b.id, "Number": b.bill_no, "FDocumentStatus": b.status,
                    "SavedAt": format_beijing(b.saved_at, DATETIME), "Model": b.model})
            })
            .collect()
    }

    /// Whether the answer to this request (to `path`, already carried out) is lost: every
    /// `lose_save_answer_every`th save request's is.
    pub fn answer_lost(&self, path: &str) -> bool {
        if !matches!(Call::of(path), Some(Call::Save | Call::BatchSave)) {
            return false;
        }
        let mut c = self.counts.lock().expect("counts");
        c.save_requests += 1;
        let every = self.lose_save_answer_every;
        let lost = every > 0 && c.save_requests.is_multiple_of(every);
        if lost {
            c.save_answers_lost += 1;
        }
        lost
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().expect("counts"));
    }

    /// Answers one request to `path` as K3Cloud would.
    pub fn answer(&self, path: &str, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Value {
        self.count(|c| c.requests += 1);
        let Some(call) = Call::of(path) else {
            self.count(|c| c.request_errors += 1);
            return failure(&format!("接口 {path} 不存在 (unknown service)"), 0);
        };
        // A request carrying a session is judged by it; one without, by its signed headers.
        let session = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
        if let Some(id) = session {
            if !self.touch_session(id, now) {
                self.count(|c| c.sessions_lost += 1);
                return refuse(path, "会话信息已丢失，请重新登录 (session lost or expired: log in again)", 1);
            }
        } else if let Err(why) = auth::check(&self.account, self.max_skew, path, headers, now) {
            self.count(|c| c.auth_failures += 1);
            return auth_failure(path, &why);
        }
        let json_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
        let parsed = if json_type {
            serde_json::from_slice::<Value>(body)
                .map_err(|e| format!("请求不是有效的 JSON (body is not valid JSON: {e})"))
        } else {
            Err("Content-Type 必须是 application/json (content type must be application/json)".into())
        };
        let answer = parsed.and_then(|body| match call {
            Call::Query => self.query(&body),
            Call::Save | Call::BatchSave => self.save(call, &body, now),
        });
        answer.unwrap_or_else(|message| {
            self.count(|c| c.request_errors += 1);
            refuse(path, &message, 0)
        })
    }

    /// Whether `id` is a live session, renewing it if so.
    fn touch_session(&self, id: &str, now: DateTime<Utc>) -> bool {
        let mut sessions = self.sessions.lock().expect("sessions");
        let max = self.session_max_requests;
        match sessions.get_mut(id) {
            Some((last, uses)) if now - *last <= self.session_ttl && (max == 0 || *uses < max) => {
                *last = now;
                *uses += 1;
                true
            }
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    /// `LoginByAppSecret`: `{"parameters": [acct_id, user_name, app_id, app_secret, lcid]}`;
    /// a session id in `KDSVCSessionId` (and the `kdservice-sessionid` cookie) on success,
    /// `LoginResultType` 0 with the reason otherwise.
    pub fn login(&self, body: &[u8], now: DateTime<Utc>) -> (Value, Option<String>) {
        self.count(|c| c.requests += 1);
        let params: Vec<String> = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b.get("parameters").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .map(|p| p.as_str().map(str::to_owned).unwrap_or_else(|| p.to_string()))
            .collect();
        let refused = |why: &str| json!({"LoginResultType": 0, "Message": format!("登录失败: {why}"), "KDSVCSessionId": null, "IsSuccessByAPI": false});
        let [acct, user, app_id, secret, _lcid] = &params[..] else {
            self.count(|c| c.auth_failures += 1);
            return (refused("parameters must be [acct_id, user_name, app_id, app_secret, lcid]"), None);
        };
        let id = &self.account;
        let why = if acct != &id.acct_id {
            Some("数据中心不存在 (unknown acct id)")
        } else if user != &id.user_name {
            Some("用户不存在 (unknown user)")
        } else if app_id != &id.app_id || secret != id.app_secret.expose() {
            Some("应用ID或密钥错误 (wrong app id or secret)")
        } else {
            None
        };
        if let Some(why) = why {
            self.count(|c| c.auth_failures += 1);
            return (refused(why), None);
        }
        let mut n = 0;
        self.count(|c| {
            c.logins += 1;
            n = c.logins;
        });
        let sid = format!("sim-session-{n:06}");
        self.sessions.lock().expect("sessions").insert(sid.clone(), (now, 0));
        let answer = json!({"Message": null, "MessageCode": "CheckPasswordPolicy", "LoginResultType": 1,
            "KDSVCSessionId": sid, "IsSuccessByAPI": true, "Lcid": id.lcid});
        (answer, Some(sid))
    }

    /// `Save` (one `Model` object) or `BatchSave` (a list): each model is checked and saved on
    /// its own, so a batch can partly succeed; a whole-request problem is an `Err` message.
    fn save(&self, call: Call, body: &Value, now: DateTime<Utc>) -> Result<Value, String> {
        let (form, data) = unpack(body, true)?;
        if form != FORM_ID {
            return Err(unknown_form(&form));
        }
        let models: Vec<&Value> = match (call, data.get("Model")) {
            (Call::BatchSave, Some(Value::Array(list))) if !list.is_empty() => list.iter().collect(),
            (Call::Save, Some(m @ Value::Object(_))) => vec![m],
            (Call::Save, _) => return Err("Model 必须是一个单据对象 (Save takes one Model object)".into()),
            _ => return Err("Model 必须是非空的单据数组 (BatchSave takes a non-empty Model list)".into()),
        };
        let status = if flag(data.get("IsAutoSubmitAndAudit")) { "C" } else { "A" };
        let (mut errors, mut saved, mut rejected) = (Vec::new(), Vec::new(), 0);
        let mut store = self.store.lock().expect("store");
        for (index, model) in models.into_iter().enumerate() {
            let checked = bill::check(model, &self.base);
            let mut found = checked.as_ref().err().cloned().unwrap_or_default();
            // Unique against what is saved, including earlier models of this batch.
            if let Some(no) = model.get("FBillNo").and_then(Value::as_str).filter(|n| store.numbers.contains(*n)) {
                found.push(bill::FieldError {
                    field: "FBillNo",
                    message: format!("违反字段唯一性要求：编码唯一。[{no}] 已经存在"),
                });
            }
            match checked {
                Ok(c) if found.is_empty() => {
                    let id = FIRST_ID + store.bills.len() as u64;
                    saved.push(json!({"Id": id, "Number": c.bill_no, "DIndex": index}));
                    store.numbers.insert(c.bill_no.clone());
                    let model = model.clone();
                    store.bills.push(Stored { id, bill_no: c.bill_no, date: c.date, status, saved_at: now, model });
                }
                _ => {
                    rejected += 1;
                    errors.extend(found.iter().map(|e| error(e.field, &e.message, index)));
                }
            }
        }
        drop(store);
        let ok = saved.len() as u64;
        self.count(|c| {
            c.bills_saved += ok;
            c.bills_rejected += rejected;
        });
        // `Save` names the one bill in `Result`; `BatchSave` leaves it blank.
        let (id, number) = match (call, saved.first()) {
            (Call::Save, Some(s)) => (s["Id"].clone(), s["Number"].clone()),
            _ => (json!(""), json!("")),
        };
        Ok(envelope(response_status(errors, saved, 0), id, number))
    }

    /// `ExecuteBillQuery`: rows of the requested fields, by `Id` unless ordered otherwise.
    fn query(&self, body: &Value) -> Result<Value, String> {
        let (_, data) = unpack(body, false)?;
        let q = query::parse(&data)?;
        self.count(|c| c.queries += 1);
        let store = self.store.lock().expect("store");
        let mut rows: Vec<&Stored> = store
            .bills
            .iter()
            .filter(|b| match &q.filter {
                query::Filter::All => true,
                query::Filter::BillNos(nos) => nos.contains(&b.bill_no),
            })
            .collect();
        if q.by_bill_no {
            rows.sort_by(|a, b| a.bill_no.cmp(&b.bill_no));
        }
        if q.descending {
            rows.reverse();
        }
        if q.top > 0 {
            rows.truncate(q.top);
        }
        let limit = if q.limit == 0 { usize::MAX } else { q.limit };
        // A query naming an entry field answers a row per line, head values repeated.
        let per_line = q.fields.iter().any(|f| f.per_line());
        let lines = |b: &Stored| -> Vec<Option<(usize, Value)>> {
            let entity = b.model.get("FEntity").and_then(Value::as_array).cloned().unwrap_or_default();
            if per_line { entity.into_iter().enumerate().map(|(i, l)| Some((i + 1, l))).collect() } else { vec![None] }
        };
        let rows: Vec<Value> = rows
            .into_iter()
            .flat_map(|b| lines(b).into_iter().map(move |line| (b, line)))
            .skip(q.start)
            .take(limit)
            .map(|(b, line)| {
                Value::Array(
                    q.fields
                        .iter()
                        .map(|f| match f {
                            query::Field::BillNo => json!(b.bill_no),
                            query::Field::Fid => json!(b.id),
                            query::Field::Date => json!(b.date.format("%Y-%m-%dT%H:%M:%S").to_string()),
                            query::Field::Status => json!(b.status),
                            query::Field::Seq => json!(line.as_ref().map_or(0, |(n, _)| *n)),
                            query::Field::Head(path) => query::model_value(&b.model, path, false),
                            query::Field::Line { path, decimal } => {
                                query::model_value(line.as_ref().map_or(&Value::Null, |(_, l)| l), path, *decimal)
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// Changes a saved bill as someone editing it in K3Cloud would (tests only): each key of
    /// `changes` but `lines` replaces that head field; `lines` is a list of
    /// `{"line": n, "<field>": value, ..}` replacing fields of the 1-based line `n`. The bill
    /// as it is now, or why not.
    pub fn change_bill(&self, bill_no: &str, changes: &Value) -> Result<Value, String> {
        let changes = changes.as_object().ok_or("the changes must be a JSON object")?;
        let mut store = self.store.lock().expect("store");
        let bill = store.bills.iter_mut().find(|b| b.bill_no == bill_no).ok_or(format!("no bill {bill_no}"))?;
        let mut model = bill.model.clone();
        for (key, value) in changes {
            if key != "lines" {
                model[key.as_str()] = value.clone();
                continue;
            }
            for change in value.as_array().ok_or("lines must be a list")? {
                let n = change.get("line").and_then(Value::as_u64).ok_or("each line change needs \"line\": n")?;
                let line = model
                    .get_mut("FEntity")
                    .and_then(Value::as_array_mut)
                    .and_then(|l| l.get_mut((n as usize).wrapping_sub(1)))
                    .ok_or(format!("bill {bill_no} has no line {n}"))?;
                for (field, v) in change.as_object().into_iter().flatten().filter(|(k, _)| *k != "line") {
                    line[field.as_str()] = v.clone();
                }
            }
        }
        let date = model.get("FDate").and_then(Value::as_str).and_then(bill::parse_date);
        bill.date = date.ok_or(format!("FDate of {bill_no} is not a date"))?;
        bill.model = model;
        Ok(bill.model.clone())
    }

    /// Deletes a saved bill (tests only); whether there was one.
    pub fn delete_bill(&self, bill_no: &str) -> bool {
        let mut store = self.store.lock().expect("store");
        let before = store.bills.len();
        store.bills.retain(|b| b.bill_no != bill_no);
        store.numbers.remove(bill_no);
        store.bills.len() < before
    }
}

/// The three services, and `/_simulator/k3cloud/bills` (`PATCH`/`DELETE` of one bill by its
/// `FBillNo`, as an edit in K3Cloud would change it) and `/_simulator/k3cloud/stats`.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(BATCH_SAVE, post(service))
        .route(SAVE, post(service))
        .route(QUERY, post(service))
        .route(LOGIN, post(login))
        // A batch of a few hundred bills is well past axum's 2 MB default.
        .layer(DefaultBodyLimit::max(64 << 20))
        .route("/_simulator/k3cloud/bills", get(bills))
        .route("/_simulator/k3cloud/bills/{bill_no}", patch(change_bill).delete(delete_bill))
        .route("/_simulator/k3cloud/stats", get(stats))
}

async fn service(State(state): State<Arc<SimState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    match &state.k3cloud {
        Some(sim) => {
            let answer = sim.answer(uri.path(), &headers, &body, state.faults.now());
            if sim.answer_lost(uri.path()) {
                return super::vendor::dropped_connection();
            }
            Json(answer).into_response()
        }
        None => Json(refuse(uri.path(), "k3cloud simulator not configured", 0)).into_response(),
    }
}

async fn login(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match &state.k3cloud {
        Some(sim) => {
            let (answer, sid) = sim.login(&body, state.faults.now());
            let mut resp = Json(answer).into_response();
            if let Some(sid) = sid {
                let cookie = format!("{SESSION_HEADER}={sid}; path=/");
                resp.headers_mut().insert(header::SET_COOKIE, cookie.parse().expect("cookie header"));
            }
            resp
        }
        None => (StatusCode::NOT_FOUND, "k3cloud simulator not configured\n").into_response(),
    }
}

async fn bills(State(state): State<Arc<SimState>>) -> Response {
    match &state.k3cloud {
        Some(sim) => Json(sim.bills()).into_response(),
        None => (StatusCode::NOT_FOUND, "k3cloud simulator not configured\n").into_response(),
    }
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    match &state.k3cloud {
        Some(sim) => Json(sim.counts()).into_response(),
        None => (StatusCode::NOT_FOUND, "k3cloud simulator not configured\n").into_response(),
    }
}

async fn change_bill(
    State(state): State<Arc<SimState>>,
    Path(bill_no): Path<String>,
    Json(changes): Json<Value>,
) -> Response {
    match &state.k3cloud {
        Some(sim) => match sim.change_bill(&bill_no, &changes) {
            Ok(model) => Json(model).into_response(),
            Err(why) if why.starts_with("no bill") => (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
            Err(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
        },
        None => (StatusCode::NOT_FOUND, "k3cloud simulator not configured\n").into_response(),
    }
}

async fn delete_bill(State(state): State<Arc<SimState>>, Path(bill_no): Path<String>) -> Response {
    match &state.k3cloud {
        Some(sim) if sim.delete_bill(&bill_no) => StatusCode::NO_CONTENT.into_response(),
        Some(_) => (StatusCode::NOT_FOUND, format!("no bill {bill_no}\n")).into_response(),
        None => (StatusCode::NOT_FOUND, "k3cloud simulator not configured\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> K3cloudSim {
        let cfg: K3cloudSimConfig = toml::from_str(
            r#"app_id = "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA"
               app_secret = "s"
               acct_id = "a"
               user_name = "u""#,
        )
        .unwrap();
        K3cloudSim::new(&cfg).unwrap()
    }

    fn bill(no: &str, qty: [&str; 2]) -> Value {
        json!({"FBillNo": no, "FDate": "2026-11-01 10:00:00", "FRetcustId": {"FNumber": "C1"},
            "FStockOrgId": {"FNumber": "100"}, "FSaleOrgId": {"FNumber": "100"},
            "FEntity": [
                {"FMaterialId": {"FNumber": "M1"}, "FStockId": {"FNumber": "W1"}, "FRealQty": qty[0], "FTaxPrice": "1.5000"},
                {"FMaterialId": {"FNumber": "M2"}, "FStockId": {"FNumber": "W1"}, "FRealQty": qty[1]}]})
    }

    fn query(sim: &K3cloudSim, keys: &str) -> Value {
        let body = json!({"data": {"FormId": FORM_ID, "FieldKeys": keys, "FilterString": "FBillNo in ('R1','R2')"}});
        sim.query(&body).unwrap()
    }

    #[test]
    fn entry_fields_answer_a_row_per_line_and_a_changed_or_deleted_bill_shows() {
        let sim = sim();
        let body = json!({"formid": FORM_ID, "data": {"Model": [bill("R1", ["2.0000", "1"]), bill("R2", ["3", "4"])]}});
        sim.save(Call::BatchSave, &body, Utc::now()).unwrap();
        assert_eq!(query(&sim, "FBillNo"), json!([["R1"], ["R2"]]), "head fields only: a row per bill");
        assert_eq!(
            query(&sim, "FBillNo,FRetcustId.FNumber,FEntity_FSeq,FMaterialId.FNumber,FRealQty,FTaxPrice,FNote"),
            json!([
                ["R1", "C1", 1, "M1", 2.0, 1.5, ""],
                ["R1", "C1", 2, "M2", 1.0, 0.0, ""],
                ["R2", "C1", 1, "M1", 3.0, 1.5, ""],
                ["R2", "C1", 2, "M2", 4.0, 0.0, ""]
            ])
        );
        let changed = sim
            .change_bill("R1", &json!({"FRetcustId": {"FNumber": "C9"}, "lines": [{"line": 2, "FRealQty": "5"}]}))
            .unwrap();
        assert_eq!(changed["FEntity"][1]["FRealQty"], "5", "{changed}");
        assert!(
            sim.change_bill("R1", &json!({"lines": [{"line": 3, "FRealQty": "5"}]})).unwrap_err().contains("no line 3")
        );
        assert!(sim.change_bill("R9", &json!({})).unwrap_err().starts_with("no bill"));
        assert!(sim.delete_bill("R2") && !sim.delete_bill("R2"));
        assert_eq!(
            query(&sim, "FBillNo,FRetcustId.FNumber,FEntity_FSeq,FRealQty"),
            json!([["R1", "C9", 1, 2.0], ["R1", "C9", 2, 5.0]])
        );
    }
}
