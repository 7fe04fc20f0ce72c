//! Simulated 奇门 gateway for 旺店通: TOP-style checks (app key, target app key, sid,
//! timestamp, signature) and `wdt.stockin.order.query.refund` with 0-based pages, a 24 h
//! closed window and a refund stock-in data set with nested detail lines, whose warehouses,
//! customers and goods come from fixed lists (the base data a K3Cloud account would hold).

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
use super::dataset::{DataSet, DataSetConfig};
use super::faults::Faults;
use super::generate::{Plan, Style};
use super::rng::SimRng;
use super::served::{Query, Served, WindowRefusal, too_long};
use super::top::{Credential, default_skew, error};
use crate::config::{ConfigError, expand_env};
use crate::domain::time::{DATETIME, format_beijing, parse_beijing};
use tidemark_endpoints::qimen::STOCKIN_REFUND;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QimenSimConfig {
    pub app_key: String,
    pub app_secret: String,
    pub target_app_key: String,
    pub sid: String,
    #[serde(default = "default_skew")]
    pub max_skew: String,
    /// How answers say success: `"flag"` (`flag: "success"`/`"failure"`, as the TS SDK
    /// reads) or `"errorcode"` (`errorcode: 0`, no flag; errors carry only `code`/`message`,
    /// as the Go SDK and a production crawler read). SDKs disagree; clients must take both.
    #[serde(default)]
    pub envelope: Envelope,
    pub stockin_refund: Option<DataSetConfig>,
}

/// The two answer shapes seen for 奇门's 旺店通 methods (docs/vendors.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    #[default]
    Flag,
    Errorcode,
}

impl Envelope {
    /// `answer` (written in the flag shape) in this shape.
    fn shape(self, mut answer: Value) -> Value {
        if self == Envelope::Errorcode
            && let Some(r) = answer.get_mut("response").and_then(Value::as_object_mut)
            && let Some(flag) = r.remove("flag")
            && flag == "success"
        {
            r.remove("code");
            r.remove("message");
            r.insert("errorcode".into(), json!(0));
        }
        answer
    }
}

/// The warehouses, customers and goods (`spec_no`) generated stock-ins name, drawn from small
/// lists rather than made up per record, so a K3Cloud account that holds them (the
/// `[k3cloud]` base data in examples/simulator.toml) knows every one a writer sends it.
pub const WAREHOUSES: &[&str] = &["CK001", "CK002"];
pub const CUSTOMERS: &[&str] = &["KH0001", "KH0002", "KH0003"];
pub const SPECS: &[&str] = &["SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004", "SKU-1005", "SKU-1006"];
/// A goods code 旺店通 knows and the K3Cloud account does not yet (a product added to the shop
/// but not yet to K3Cloud's materials): the reason real refund stock-ins fail to become bills,
/// on about one line in a hundred, so the demo shows a few dead letters for a real reason.
pub const NEW_SPEC: &str = "SKU-2001";
const NEW_SPEC_RATE: f64 = 0.01;
/// 增值税 rates as 旺店通 writes `tax` (a fraction, scale 6).
pub const TAX_RATES: &[&str] = &["0.000000", "0.060000", "0.090000", "0.130000"];

/// Replaces a generated number with one from `list`; an empty value (the generator leaves
/// optional fields empty now and then, as vendors do) stays empty.
fn pick_known(rng: &mut SimRng, v: &mut Value, list: &[&str]) {
    if v.as_str().is_some_and(|s| !s.is_empty()) {
        *v = json!(rng.pick(list));
    }
}

fn failure(code: &str, message: &str) -> Value {
    json!({"response": {"flag": "failure", "code": code, "message": message}})
}

/// The running 奇门 simulator.
pub struct QimenSim {
    credential: Credential,
    envelope: Envelope,
    target_app_key: String,
    sid: String,
    /// Each method served, by its `method` parameter.
    served: Vec<Served>,
}

impl QimenSim {
    /// Adds an endpoint from a manifest.
    pub fn serve(&mut self, endpoint: Served) {
        self.served.push(endpoint);
    }

    /// Every endpoint served.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    pub fn new(cfg: &QimenSimConfig, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let schema = apache_avro::Schema::parse_str(STOCKIN_REFUND.schema).expect("compiled-in schema parses");
        let plan = Plan::new(&schema);
        let stockins = match &cfg.stockin_refund {
            None => DataSet::default(),
            Some(d) => DataSet::generate(
                d,
                "qimen.stockin_refund",
                now,
                Arc::new(move |rng, i, at, shop| {
                    let mut r = plan.record(rng, at, Style { numbers_as_json: false });
                    let day = format_beijing(at, "%Y%m%d");
                    r["order_no"] = json!(format!("RK{day}{i:07}"));
                    r["stockin_no"] = r["order_no"].clone();
                    // The window filters on the stock-in's update time.
                    r["stockin_time"] = json!(format_beijing(at, DATETIME));
                    r["shop_no"] = json!(shop);
                    pick_known(rng, &mut r["warehouse_no"], WAREHOUSES);
                    pick_known(rng, &mut r["customer_no"], CUSTOMERS);
                    if let Some(lines) = r["details_list"].as_array_mut() {
                        for line in lines {
                            pick_known(rng, &mut line["spec_no"], SPECS);
                            if rng.chance(NEW_SPEC_RATE) {
                                line["spec_no"] = json!(NEW_SPEC);
                            }
                            // Goods come back in whole units at the usual VAT rates.
                            line["num"] = json!(format!("{}.0000", 1 + rng.below(5)));
                            pick_known(rng, &mut line["tax"], TAX_RATES);
                        }
                    }
                    r
                }),
            )?,
        };
        Ok(QimenSim {
            credential: Credential::new("qimen", &cfg.app_key, &cfg.app_secret, &cfg.max_skew)?,
            envelope: cfg.envelope,
            target_app_key: expand_env("qimen.target_app_key", &cfg.target_app_key)?,
            sid: expand_env("qimen.sid", &cfg.sid)?,
            served: vec![Served::new(&STOCKIN_REFUND, stockins, Some("shop_no"))],
        })
    }

    pub fn stockin_refunds(&self) -> Vec<Value> {
        self.served[0].records()
    }

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
        // Kept out of `Credential`: 奇门 answers a missing app key as invalid (29), TOP as missing (28).
        if p.get("app_key") != Some(&self.credential.app_key) {
            return Err(error(29, "Invalid App Key", "", ""));
        }
        self.credential.check_system(p, now).map_err(|e| {
            // Qimen reports a bad signature inside its own envelope.
            if e["error_response"]["code"] == 25 { failure("sign-check-failure", "Illegal request") } else { e }
        })?;
        if p.get("target_app_key") != Some(&self.target_app_key) {
            return Err(failure("invalid-target-appkey", "target_app_key 无效"));
        }
        let method = p.get("method").map_or("", String::as_str);
        let Some(served) = self.served.iter().find(|s| s.spec.method == method) else {
            return Err(error(22, "Invalid Method", "", ""));
        };
        if p.get("sid") != Some(&self.sid) {
            return Err(failure("100", "卖家账号 sid 不存在"));
        }
        let time = |name: &str| -> Result<DateTime<Utc>, Value> {
            match p.get(name).filter(|v| !v.is_empty()) {
                None => Err(failure("40", &format!("{name} 为空"))),
                Some(v) => parse_beijing(v).ok_or_else(|| failure("41", &format!("{name} 格式错误"))),
            }
        };
        let (start, end) = (time("start_time")?, time("end_time")?);
        match served.check_window(start, end) {
            Ok(()) => {}
            Err(WindowRefusal::EndBeforeStart) => return Err(failure("41", "end_time 早于 start_time")),
            Err(WindowRefusal::TooLong { max_span }) => {
                return Err(failure("41", &too_long(max_span)));
            }
        }
        let num = |name: &str, default: u64| -> Result<u64, Value> {
            p.get(name).map_or(Ok(default), |v| v.parse().map_err(|_| failure("41", &format!("{name} 不是整数"))))
        };
        let max = u64::from(served.spec.max_page_size);
        let (page_no, page_size) = (num("page_no", 0)?, num("page_size", 40.min(max))?);
        if !(1..=max).contains(&page_size) {
            return Err(failure("41", &format!("page_size 取值范围为 1~{max}")));
        }
        let query = Query { start, end, page_index: page_no, page_size, params: p };
        let (total, items) = served.page(&query, faults);
        let mut body = json!({"flag": "success", "code": "0", "message": "", served.spec.list_field: items});
        if page_no == 0 || served.spec.total_on_every_page {
            body["total_count"] = json!(total);
        }
        Ok(json!({ "response": body }))
    }
}

pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route("/router/qm", post(router_qm))
}

async fn router_qm(State(state): State<Arc<SimState>>, Form(params): Form<BTreeMap<String, String>>) -> Response {
    match &state.qimen {
        Some(sim) => {
            Json(sim.envelope.shape(sim.answer(&params, state.faults.now(), Some(&state.faults)))).into_response()
        }
        None => Json(failure("invalid-method", "qimen simulator not configured")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errorcode_envelope_drops_flag_and_says_errorcode_zero_on_success() {
        let ok = json!({"response": {"flag": "success", "code": "0", "message": "", "total_count": 1}});
        assert_eq!(Envelope::Errorcode.shape(ok.clone()), json!({"response": {"errorcode": 0, "total_count": 1}}));
        assert_eq!(Envelope::Flag.shape(ok.clone()), ok);
        assert_eq!(
            Envelope::Errorcode.shape(failure("41", "page_size 取值范围为 1~100")),
            json!({"response": {"code": "41", "message": "page_size 取值范围为 1~100"}})
        );
    }

    #[test]
    fn stock_ins_name_the_listed_base_data_and_rarely_a_product_k3cloud_lacks() {
        let cfg: super::super::SimConfig = toml::from_str(
            "[qimen]\napp_key = \"k\"\napp_secret = \"s\"\ntarget_app_key = \"t\"\nsid = \"x\"\n\
             [qimen.stockin_refund]\nrecords = 500\nfrom = \"2d\"\nuntil = \"1h\"\n",
        )
        .unwrap();
        let sim = QimenSim::new(cfg.qimen.as_ref().unwrap(), Utc::now()).unwrap();
        let known = |v: &Value, list: &[&str]| v == "" || list.iter().any(|k| v == *k);
        let (mut lines, mut new) = (0, 0);
        for r in sim.stockin_refunds() {
            assert!(known(&r["warehouse_no"], WAREHOUSES) && known(&r["customer_no"], CUSTOMERS), "{r}");
            for line in r["details_list"].as_array().unwrap() {
                if line["spec_no"] == NEW_SPEC {
                    new += 1;
                } else {
                    assert!(known(&line["spec_no"], SPECS), "{line}");
                }
                lines += 1;
            }
        }
        assert!(lines > 500, "{lines}");
        assert!(new > 0 && new * 40 < lines, "{new} of {lines} lines name the new product");
    }
}
