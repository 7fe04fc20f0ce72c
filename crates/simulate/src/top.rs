//! Simulated 淘宝开放平台 router: TOP system parameters, signature (md5 / hmac / hmac-sha256),
//! timestamp skew, `error_response` codes, and any TOP method's manifest (the built-in
//! `alibaba.wdk.finance.order.backflow` and user endpoints) with its object parameter, 1-based
//! pages, both response forms and its list item tag.

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
use super::served::{Query, Served, WindowRefusal};
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
    /// Each method served, the built-in finance orders first; each names its own request
    /// object and list item tag in its manifest.
    served: Vec<Served>,
}

impl TopSim {
    /// Every endpoint served.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// Serves one more method (an endpoint from `endpoints_dir`).
    pub fn serve(&mut self, endpoint: Served) {
        self.served.push(endpoint);
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
            served: vec![Served::new(&FINANCE_ORDER, orders, None)],
        })
    }

    pub fn finance_orders(&self) -> Vec<Value> {
        self.served[0].records()
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
        let method = p.get("method").map_or("", String::as_str);
        let Some(served) = self.served.iter().find(|s| s.spec.method == method) else {
            return Err(error(22, "Invalid Method", "", ""));
        };
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
        let spec = served.spec;
        let object = spec.request_object.expect("a top manifest names its request object");
        let bad = |what: &str| error(41, "Invalid Arguments", "isv.invalid-parameter", what);
        let req: Value = match p.get(object) {
            None => return Err(error(40, "Missing Required Arguments", "isv.missing-parameter", object)),
            Some(t) => serde_json::from_str(t).map_err(|_| bad(&format!("{object} is not json")))?,
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
        let max = u64::from(spec.max_page_size);
        if !(1..=max).contains(&page_size) {
            return Err(bad(&format!("page_size must be 1-{max}")));
        }
        let time = |name: &str| -> Result<DateTime<Utc>, Value> {
            let t = req.get(name).and_then(Value::as_str).ok_or_else(|| {
                error(40, "Missing Required Arguments", "isv.missing-parameter", &format!("{name} is required"))
            })?;
            parse_beijing(t).ok_or_else(|| bad(&format!("{name} must be yyyy-MM-dd HH:mm:ss")))
        };
        let (start, end) = (time("start_time")?, time("end_time")?);
        match served.check_window(start, end) {
            Ok(()) => {}
            Err(WindowRefusal::EndBeforeStart) => return Err(bad("end_time is before start_time")),
            Err(WindowRefusal::TooLong { max_span }) => {
                return Err(bad(&format!("start_time to end_time must be within {}", span_words(max_span))));
            }
        }
        let (total, items) = if spec.kind == FINANCE_ORDER.kind {
            finance_orders(served, &req, start, end, current_page, page_size, faults).map_err(bad)?
        } else {
            // The object's own fields filter as a flat method's parameters would (paging and
            // the window are the protocol's reserved parameters, which `page` skips).
            let params: BTreeMap<String, String> = match &req {
                Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let query = Query { start, end, page_index: current_page - 1, page_size, params: &params };
            let (total, items) = served.page(&query, faults);
            (total as u64, items)
        };
        let pagination = json!({
            "total_count": total,
            "total_page": total.div_ceil(page_size),
            "page_size": page_size,
            "current_page": current_page,
        });
        let simplify = p.get("simplify").map(String::as_str) == Some("true");
        let item = spec.list_item.expect("a top manifest names its list item");
        let list = if simplify { json!(items) } else { json!({ item: items }) };
        let result = json!({"api_result": {"success": true, "err_code": "", "err_msg": "",
            "models": {"pagination": pagination, spec.list_field: list}}});
        Ok(if simplify { result } else { json!({ format!("{}_response", method.replace('.', "_")): result }) })
    }
}

/// The finance orders' own filter: `shop_codes` is a list (one shop reads its group, more
/// filter the window). With the `insert_while_paging` fault a record lands at the window's
/// start while pages remain, its `biz_date` and `trade_time` following its new time.
fn finance_orders(
    served: &Served,
    req: &Value,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    current_page: u64,
    page_size: u64,
    faults: Option<&Faults>,
) -> Result<(u64, Vec<Value>), &'static str> {
    let shops: Option<Vec<String>> = match req.get("shop_codes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()),
        Some(_) => return Err("shop_codes must be a list"),
    };
    let data = served.data().read().expect("data lock");
    let one = shops.as_ref().filter(|s| s.len() == 1).map(|s| s[0].as_str());
    let mut matching = data.window(start, end, one);
    if let Some(list) = shops.as_ref().filter(|s| s.len() > 1) {
        matching.retain(|r| list.iter().any(|s| **s == *r.group));
    }
    let total = matching.len() as u64;
    let items: Vec<Value> = page(&matching, current_page - 1, page_size).into_iter().map(|r| data.json(r)).collect();
    drop(data);
    if current_page * page_size < total
        && shops.as_ref().is_none_or(|s| s.len() == 1)
        && faults.is_some_and(Faults::insert_while_paging)
    {
        served.data().write().expect("data lock").insert_shifting_copy(start, end, one, "biz_uk", |r, at| {
            r["biz_date"] = json!(format_beijing(at, "%Y%m%d"));
            r["trade_time"] = json!(format_beijing(at, "%H:%M:%S"));
        });
    }
    Ok((total, items))
}

/// A span in TOP's English messages: `24 hours`, `30 minutes`, `90 seconds`.
fn span_words(span: std::time::Duration) -> String {
    match span.as_secs() {
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
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
    use std::collections::BTreeMap;

    use chrono::{Duration, Utc};
    use serde_json::{Value, json};

    use super::super::SimConfig;
    use crate::domain::time::{DATETIME, format_beijing};
    use crate::verify::top_sign;

    /// A TOP method nothing built in knows, from its manifest: its own object parameter,
    /// list item tag, page limit and longest window.
    #[test]
    fn a_top_endpoint_from_a_manifest_is_served_by_its_own_names() {
        let dir = tempfile::tempdir().unwrap();
        let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let manifest = std::fs::read_to_string(schemas.join("top.finance_order.toml"))
            .unwrap()
            .replace("\"top.finance_order\"", "\"top.settlement\"")
            .replace("alibaba.wdk.finance.order.backflow", "example.store.settlement.query")
            .replace("\"finance_order_details\"", "\"settlements\"")
            .replace("finance_order_detail_request", "settlement_query")
            .replace("\"finance_order_detail\"", "\"settlement\"")
            .replace("max_size = 100", "max_size = 20")
            .replace("default_size = 100", "default_size = 20")
            .replace("max_span = \"24h\"", "max_span = \"2h\"");
        std::fs::write(dir.path().join("top.settlement.toml"), manifest).unwrap();
        std::fs::copy(schemas.join("top.finance_order.avsc"), dir.path().join("top.settlement.avsc")).unwrap();
        let mut cfg: SimConfig = toml::from_str(
            "[top]\napp_key = \"k\"\napp_secret = \"s\"\nsession = \"x\"\n\
             [endpoints.\"top.settlement\"]\nseed = 3\nrecords = 200\nfrom = \"90m\"\nuntil = \"1s\"\n",
        )
        .unwrap();
        cfg.endpoints_dir = Some(dir.path().to_owned());
        let now = Utc::now();
        let sim = crate::build(cfg, now).unwrap();
        let top = sim.top.as_ref().unwrap();
        let expected = sim.records("top.settlement").unwrap();
        assert_eq!(expected.len(), 200);

        let ask = |object: &str, page: u64, size: u64, hours: i64, simplify: bool| -> Value {
            let req = json!({"current_page": page, "page_size": size,
                "start_time": format_beijing(now - Duration::hours(hours), DATETIME),
                "end_time": format_beijing(now, DATETIME)});
            let mut p: BTreeMap<String, String> = [
                ("method", "example.store.settlement.query"),
                ("app_key", "k"),
                ("session", "x"),
                ("v", "2.0"),
                ("format", "json"),
                ("sign_method", "md5"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            p.insert("timestamp".into(), format_beijing(now, DATETIME));
            p.insert(object.into(), req.to_string());
            if simplify {
                p.insert("simplify".into(), "true".into());
            }
            p.insert("sign".into(), top_sign(&p, None, "s", "md5").unwrap());
            top.answer(&p, now, None)
        };
        let mut got = Vec::new();
        for page in 1.. {
            let v = ask("settlement_query", page, 20, 1, false);
            let models = &v["example_store_settlement_query_response"]["api_result"]["models"];
            let items = models["settlements"]["settlement"].as_array().unwrap_or_else(|| panic!("{v}")).clone();
            assert!(models["pagination"]["total_count"].as_u64().unwrap() > 20, "{v}");
            if items.is_empty() {
                break;
            }
            got.extend(items);
        }
        assert!(!got.is_empty() && got.iter().all(|r| expected.contains(r)), "pages hold the data set's records");
        let ids: std::collections::BTreeSet<_> = got.iter().map(|r| r["biz_uk"].to_string()).collect();
        assert_eq!(ids.len(), got.len(), "no record twice");

        let v = ask("settlement_query", 1, 20, 1, true);
        assert!(v["api_result"]["models"]["settlements"].is_array(), "simplified: a plain list: {v}");
        let v = ask("finance_order_detail_request", 1, 20, 1, false);
        assert_eq!(v["error_response"]["code"], 40, "the built-in's object name is not this method's: {v}");
        let v = ask("settlement_query", 1, 21, 1, false);
        assert_eq!(v["error_response"]["sub_msg"], "page_size must be 1-20", "{v}");
        let v = ask("settlement_query", 1, 20, 3, false);
        assert_eq!(v["error_response"]["sub_msg"], "start_time to end_time must be within 2 hours", "{v}");
    }

    #[test]
    fn a_typo_in_a_credential_section_names_the_key_and_the_known_ones() {
        for (section, rest) in [("qimen", "target_app_key = \"t\"\nsid = \"s\""), ("top", "session = \"s\"")] {
            let text = format!("[{section}]\napp_key = \"k\"\napp_secret = \"x\"\n{rest}\nmax_skw = \"1m\"\n");
            let e = toml::from_str::<SimConfig>(&text).unwrap_err().to_string();
            assert!(e.contains("max_skw = ") && e.contains("expected one of `app_key`"), "{e}");
        }
    }
}
