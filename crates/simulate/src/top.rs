//! Simulated 淘宝开放平台 router: TOP system parameters, signature (md5 / hmac / hmac-sha256),
//! timestamp skew, `error_response` codes, and `alibaba.wdk.finance.order.backflow` with its
//! object parameter, 1-based pages, both response forms, and a finance-order data set.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;
use super::dataset::{DataSet, DataSetConfig, page};
use super::faults::Faults;
use super::generate::{Plan, Style};
use super::served::Served;
use super::verify::top_sign;
use crate::config::{ConfigError, Secret, expand_env, parse_duration};
use crate::domain::time::{format_beijing, parse_beijing};
use tidemark_endpoints::top::FINANCE_ORDER;

// The credential keys (`app_key`, `app_secret`, `max_skew`) are declared here and in
// `QimenSimConfig` rather than in one `#[serde(flatten)]`ed struct: flatten would report a
// typo or a wrong type at the section header, without the list of known keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSimConfig {
    pub app_key: String,
    pub app_secret: String,
    pub session: String,
    /// TOP accepts timestamps within 10 minutes of its clock.
    #[serde(default = "default_skew")]
    pub max_skew: String,
    pub finance_order: Option<DataSetConfig>,
}

pub fn default_skew() -> String {
    "10m".into()
}

/// A TOP-style `error_response`.
pub fn error(code: u32, msg: &str, sub_code: &str, sub_msg: &str) -> Value {
    let mut e = json!({"code": code, "msg": msg, "request_id": "sim"});
    if !sub_code.is_empty() {
        e["sub_code"] = json!(sub_code);
        e["sub_msg"] = json!(sub_msg);
    }
    json!({ "error_response": e })
}

/// One app's credentials as a TOP-family simulator checks them, `${ENV}` expanded.
pub struct Credential {
    pub app_key: String,
    app_secret: Secret,
    max_skew: i64,
}

impl Credential {
    /// Resolves `[section]`'s `app_key`, `app_secret` and `max_skew`; errors name `section.key`.
    pub fn new(section: &str, app_key: &str, app_secret: &str, max_skew: &str) -> Result<Self, ConfigError> {
        Ok(Credential {
            app_key: expand_env(&format!("{section}.app_key"), app_key)?,
            app_secret: Secret::new(expand_env(&format!("{section}.app_secret"), app_secret)?),
            max_skew: parse_duration(&format!("{section}.max_skew"), max_skew)?.as_secs() as i64,
        })
    }

    /// Checks the TOP-family system parameters shared by TOP and 奇门: method present, a known
    /// `sign_method`, a timestamp within `max_skew`, and the signature.
    pub fn check_system(&self, p: &BTreeMap<String, String>, now: DateTime<Utc>) -> Result<(), Value> {
        if p.get("method").is_none_or(|m| m.is_empty()) {
            return Err(error(21, "Missing Method", "", ""));
        }
        let Some(ts) = p.get("timestamp").filter(|t| !t.is_empty()) else {
            return Err(error(30, "Missing Timestamp", "", ""));
        };
        let ts =
            parse_beijing(ts).ok_or_else(|| error(31, "Invalid Timestamp", "isv.invalid-timestamp", "bad format"))?;
        if (now - ts).num_seconds().abs() > self.max_skew {
            return Err(error(31, "Invalid Timestamp", "isv.invalid-timestamp", "timestamp out of range"));
        }
        let method = p.get("sign_method").map_or("", String::as_str);
        let Some(expected) = top_sign(p, None, self.app_secret.expose(), method) else {
            return Err(error(41, "Invalid Arguments", "isv.invalid-parameter:sign_method", method));
        };
        let Some(given) = p.get("sign").filter(|s| !s.is_empty()) else {
            return Err(error(24, "Missing Signature", "", ""));
        };
        if expected != *given {
            return Err(error(25, "Invalid signature", "isv.invalid-signature", "Invalid signature"));
        }
        Ok(())
    }
}

/// The running TOP simulator.
pub struct TopSim {
    credential: Credential,
    session: String,
    /// The one method served: each TOP method names its own request object, which the
    /// client and this simulator know for `alibaba.wdk.finance.order.backflow` only.
    orders: Served,
}

impl TopSim {
    /// Every endpoint served.
    pub fn served(&self) -> &[Served] {
        std::slice::from_ref(&self.orders)
    }

    pub fn new(cfg: &TopSimConfig, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let schema = apache_avro::Schema::parse_str(FINANCE_ORDER.schema).expect("compiled-in schema parses");
        let plan = Plan::new(&schema);
        let orders = match &cfg.finance_order {
            None => DataSet::default(),
            Some(d) => DataSet::generate(
                d,
                "top.finance_order",
                now,
                Arc::new(move |rng, i, at, shop| {
                    let mut r = plan.record(rng, at, Style { numbers_as_json: false });
                    r["biz_uk"] = json!(format!("{}", 1_000_000_000 + i));
                    r["biz_date"] = json!(format_beijing(at, "%Y%m%d"));
                    r["trade_time"] = json!(format_beijing(at, "%H:%M:%S"));
                    r["shop_code"] = json!(shop);
                    r["trade_type_code"] = json!(if rng.chance(0.8) { "88" } else { "99" });
                    r
                }),
            )?,
        };
        Ok(TopSim {
            credential: Credential::new("top", &cfg.app_key, &cfg.app_secret, &cfg.max_skew)?,
            session: expand_env("top.session", &cfg.session)?,
            orders: Served::new(&FINANCE_ORDER, orders, None),
        })
    }

    pub fn finance_orders(&self) -> Vec<Value> {
        self.orders.records()
    }

    /// Answers one router request as TOP would.
    pub fn answer(&self, p: &BTreeMap<String, String>, now: DateTime<Utc>, faults: Option<&Faults>) -> Value {
        match self.try_answer(p, now, faults) {
            Ok(v) | Err(v) => v,
        }
    }

    fn try_answer(
        &self,
        p: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        faults: Option<&Faults>,
    ) -> Result<Value, Value> {
        match p.get("app_key").map(String::as_str) {
            None | Some("") => return Err(error(28, "Missing App Key", "", "")),
            Some(k) if k != self.credential.app_key => return Err(error(29, "Invalid App Key", "", "")),
            _ => {}
        }
        self.credential.check_system(p, now)?;
        if p.get("method").map(String::as_str) != Some(FINANCE_ORDER.method) {
            return Err(error(22, "Invalid Method", "", ""));
        }
        match p.get("session").map(String::as_str) {
            None | Some("") => return Err(error(26, "Missing Session", "", "")),
            Some(s) if s != self.session => {
                return Err(error(27, "Invalid Session", "invalid-sessionkey", "session invalid"));
            }
            _ => {}
        }
        if p.get("v").map(String::as_str) != Some("2.0") {
            return Err(error(33, "Invalid Version", "", ""));
        }
        if p.get("format").map(String::as_str).unwrap_or("xml") != "json" {
            return Err(error(
                41,
                "Invalid Arguments",
                "isv.invalid-parameter:format",
                "this simulator answers json only",
            ));
        }
        let bad = |what: &str| error(41, "Invalid Arguments", "isv.invalid-parameter", what);
        let req: Value = match p.get("finance_order_detail_request") {
            None => {
                return Err(error(
                    40,
                    "Missing Required Arguments",
                    "isv.missing-parameter",
                    "finance_order_detail_request",
                ));
            }
            Some(t) => serde_json::from_str(t).map_err(|_| bad("finance_order_detail_request is not json"))?,
        };
        let num = |name: &str| -> Result<u64, Value> {
            req.get(name).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).ok_or_else(|| {
                error(40, "Missing Required Arguments", "isv.missing-parameter", &format!("{name} is required"))
            })
        };
        let (current_page, page_size) = (num("current_page")?, num("page_size")?);
        if current_page < 1 {
            return Err(bad("current_page starts at 1"));
        }
        if !(1..=100).contains(&page_size) {
            return Err(bad("page_size must be 1-100"));
        }
        let time = |name: &str| -> Result<DateTime<Utc>, Value> {
            let t = req.get(name).and_then(Value::as_str).ok_or_else(|| {
                error(40, "Missing Required Arguments", "isv.missing-parameter", &format!("{name} is required"))
            })?;
            parse_beijing(t).ok_or_else(|| bad(&format!("{name} must be yyyy-MM-dd HH:mm:ss")))
        };
        let (start, end) = (time("start_time")?, time("end_time")?);
        if end < start || end - start >= chrono::Duration::hours(24) {
            return Err(bad("start_time to end_time must be within 24 hours"));
        }
        let shops: Option<Vec<String>> = match req.get("shop_codes") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()),
            Some(_) => return Err(bad("shop_codes must be a list")),
        };
        let data = self.orders.data().read().expect("data lock");
        let one = shops.as_ref().filter(|s| s.len() == 1).map(|s| s[0].as_str());
        let mut matching = data.window(start, end, one);
        if let Some(list) = shops.as_ref().filter(|s| s.len() > 1) {
            matching.retain(|r| list.iter().any(|s| **s == *r.group));
        }
        let total = matching.len() as u64;
        let items: Vec<Value> =
            page(&matching, current_page - 1, page_size).into_iter().map(|r| data.json(r)).collect();
        drop(data);
        if current_page * page_size < total
            && shops.as_ref().is_none_or(|s| s.len() == 1)
            && faults.is_some_and(Faults::insert_while_paging)
        {
            self.orders.data().write().expect("data lock").insert_shifting_copy(start, end, one, "biz_uk", |r, at| {
                r["biz_date"] = json!(format_beijing(at, "%Y%m%d"));
                r["trade_time"] = json!(format_beijing(at, "%H:%M:%S"));
            });
        }
        let pagination = json!({
            "total_count": total,
            "total_page": total.div_ceil(page_size),
            "page_size": page_size,
            "current_page": current_page,
        });
        let simplify = p.get("simplify").map(String::as_str) == Some("true");
        let list = if simplify { json!(items) } else { json!({ "finance_order_detail": items }) };
        let result = json!({"api_result": {"success": true, "err_code": "", "err_msg": "",
            "models": {"pagination": pagination, "finance_order_details": list}}});
        Ok(if simplify { result } else { json!({ "alibaba_wdk_finance_order_backflow_response": result }) })
    }
}

pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route("/router/rest", post(router_rest))
}

async fn router_rest(State(state): State<Arc<SimState>>, Form(params): Form<BTreeMap<String, String>>) -> Response {
    match &state.top {
        Some(sim) => Json(sim.answer(&params, state.faults.now(), Some(&state.faults))).into_response(),
        None => Json(error(22, "Invalid Method", "", "top simulator not configured")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::SimConfig;

    #[test]
    fn a_typo_in_a_credential_section_names_the_key_and_the_known_ones() {
        for (section, rest) in [("qimen", "target_app_key = \"t\"\nsid = \"s\""), ("top", "session = \"s\"")] {
            let text = format!("[{section}]\napp_key = \"k\"\napp_secret = \"x\"\n{rest}\nmax_skw = \"1m\"\n");
            let e = toml::from_str::<SimConfig>(&text).unwrap_err().to_string();
            assert!(e.contains("max_skw = ") && e.contains("expected one of `app_key`"), "{e}");
        }
    }
}
