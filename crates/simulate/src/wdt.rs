//! Simulated 旺店通 openapi2: checks sid, appkey, timestamp skew and sign, enforces page size and
//! the 24 h closed window, and serves a deterministic account-check data set with awkward values.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;
use super::dataset::{DataSet, DataSetConfig, Make, page};
use super::faults::Faults;
use super::rng::SimRng;
use super::served::{Query, Served, WindowRefusal, too_long};
use super::verify::wdt_sign;
use crate::config::{ConfigError, expand_env, parse_duration};
use crate::domain::time::{DATETIME, format_beijing, parse_beijing};
use tidemark_endpoints::wdt::ACCOUNT_CHECK;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WdtSimConfig {
    pub sid: String,
    pub appkey: String,
    pub appsecret: String,
    /// Largest accepted difference between the request timestamp and the server clock.
    #[serde(default = "default_skew")]
    pub max_skew: String,
    pub account_check: Option<DataSetConfig>,
}

fn default_skew() -> String {
    "5m".into()
}

/// The running 旺店通 simulator.
pub struct WdtSim {
    sid: String,
    appkey: String,
    appsecret: String,
    max_skew: i64,
    /// Each method served, by its script name (`fa_alipay_account_check_query.php`).
    served: Vec<Served>,
}

impl WdtSim {
    pub fn new(cfg: &WdtSimConfig, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let max_skew = parse_duration("wdt.max_skew", &cfg.max_skew)?.as_secs() as i64;
        let account_checks = match &cfg.account_check {
            Some(d) => generate_account_checks(d, now)?,
            None => DataSet::default(),
        };
        Ok(WdtSim {
            sid: expand_env("wdt.sid", &cfg.sid)?,
            appkey: expand_env("wdt.appkey", &cfg.appkey)?,
            appsecret: expand_env("wdt.appsecret", &cfg.appsecret)?,
            max_skew,
            served: vec![Served::new(&ACCOUNT_CHECK, account_checks, Some("shop_no"))],
        })
    }

    /// Adds an endpoint from a manifest.
    pub fn serve(&mut self, endpoint: Served) {
        self.served.push(endpoint);
    }

    /// Every endpoint served.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// The whole account-check data set, in served order.
    pub fn account_checks(&self) -> Vec<Value> {
        self.served[0].records()
    }

    /// Answers one openapi2 request exactly as the vendor's envelope would.
    pub fn answer(
        &self,
        script: &str,
        p: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        faults: Option<&Faults>,
    ) -> Result<Value, Value> {
        let Some(served) = self.served.iter().find(|s| s.spec.method == script) else {
            return Err(error(4, &format!("接口 {script} 不存在")));
        };
        for name in ["sid", "appkey", "timestamp", "sign"] {
            if p.get(name).is_none_or(|v| v.is_empty()) {
                return Err(error(2, &format!("参数 {name} 为空")));
            }
        }
        if p["sid"] != self.sid {
            return Err(error(100, "卖家账号 sid 不存在"));
        }
        if p["appkey"] != self.appkey {
            return Err(error(100, "appkey 不存在"));
        }
        let ts: i64 = p["timestamp"].parse().map_err(|_| error(100, "timestamp 格式错误"))?;
        if (now.timestamp() - ts).abs() > self.max_skew {
            // The vendor's error table: 7 时间戳错误 (docs/vendors.md).
            return Err(error(7, "时间戳错误"));
        }
        if wdt_sign(p, &self.appsecret) != p["sign"] {
            return Err(error(100, "签名错误"));
        }
        let start = required_time(p, "start_time", "开始时间")?;
        let end = required_time(p, "end_time", "结束时间")?;
        match served.check_window(start, end) {
            Ok(()) => {}
            Err(WindowRefusal::EndBeforeStart) => {
                return Err(error(2, "结束时间 end_time 早于开始时间 start_time"));
            }
            // Closed interval: a 24 h span is 00:00:00 to 23:59:59 at the widest.
            Err(WindowRefusal::TooLong { max_span }) => {
                return Err(error(2, &too_long(max_span)));
            }
        }
        let max = served.spec.max_page_size as i64;
        // The vendor's default page is 40 where the method allows it.
        let page_size = optional_number(p, "page_size", 40.min(max))?;
        if !(1..=max).contains(&page_size) {
            return Err(error(2, &format!("page_size 取值范围为 1~{max}")));
        }
        let page_no = optional_number(p, "page_no", 0)?;
        let query = Query { start, end, page_index: page_no as u64, page_size: page_size as u64, params: p };
        let (total, page) = if served.spec.kind == ACCOUNT_CHECK.kind {
            match account_check_time_field(p)? {
                None => served.page(&query, faults),
                Some(field) => by_record_time(served, &query, field),
            }
        } else {
            served.page(&query, faults)
        };
        let mut body = json!({"code": 0, "message": "ok", served.spec.list_field: page});
        // openapi2 reports the total on page 0 only, unless the method says otherwise.
        if page_no == 0 || served.spec.total_on_every_page {
            body["total_count"] = json!(total);
        }
        Ok(body)
    }
}

/// The account-check query's `time_type`: 1 windows on the record's own time, 2–4 on a field.
fn account_check_time_field(p: &BTreeMap<String, String>) -> Result<Option<&'static str>, Value> {
    match optional_number(p, "time_type", 1)? {
        1 => Ok(None),
        2 => Ok(Some("consign_time")),
        3 => Ok(Some("check_time")),
        4 => Ok(Some("confirm_time")),
        _ => Err(error(2, "time_type 取值范围为 1~4")),
    }
}

/// A page of the records whose `field` (a Beijing time) is in the window, in that field's order.
fn by_record_time(served: &Served, q: &Query<'_>, field: &str) -> (usize, Vec<Value>) {
    let shop = q.params.get("shop_no").map(String::as_str);
    let data = served.data().read().expect("data lock");
    let mut m: Vec<(DateTime<Utc>, Value)> = data
        .window(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC, shop)
        .into_iter()
        .filter_map(|r| {
            let v = data.json(r);
            let t = parse_beijing(v[field].as_str()?)?;
            (t >= q.start && t <= q.end).then_some((t, v))
        })
        .collect();
    m.sort_by_key(|(t, _)| *t);
    (m.len(), page(&m, q.page_index, q.page_size).into_iter().map(|(_, v)| v).collect())
}

fn error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

fn required_time(p: &BTreeMap<String, String>, name: &str, label: &str) -> Result<DateTime<Utc>, Value> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Err(error(2, &format!("{label} {name} 为空"))),
        Some(v) => parse_beijing(v).ok_or_else(|| error(2, &format!("{label} {name} 格式错误: {v}"))),
    }
}

fn optional_number(p: &BTreeMap<String, String>, name: &str, default: i64) -> Result<i64, Value> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| error(2, &format!("{name} 不是整数: {v}"))),
    }
}

pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route("/openapi2/{script}", post(openapi2))
}

async fn openapi2(
    State(state): State<Arc<SimState>>,
    UrlPath(script): UrlPath<String>,
    Form(params): Form<BTreeMap<String, String>>,
) -> Response {
    let Some(sim) = &state.wdt else {
        return (StatusCode::NOT_FOUND, "wdt simulator not configured\n").into_response();
    };
    match sim.answer(&script, &params, state.faults.now(), Some(&state.faults)) {
        Ok(v) | Err(v) => Json(v).into_response(),
    }
}

const SHOP_NAMES: &[&str] = &["旺店通旗舰店", "c-test", "测试店铺（华东仓）", "天猫 · 官方店"];
const PLATFORMS: &[&str] = &["0", "1", "3", "7", "127"];

/// A money value with 4 decimals: often zero, sometimes very long, occasionally negative.
fn money(rng: &mut SimRng, allow_negative: bool) -> String {
    match rng.below(10) {
        0 | 1 => "0.0000".into(),
        2 => format!("{}.{:04}", 100_000_000_000_000 + rng.below(899_999_999_999_999), rng.below(10_000)),
        3 if allow_negative => format!("-{}.{:04}", rng.below(500), rng.below(10_000)),
        _ => format!("{}.{:04}", rng.below(5_000), rng.below(10_000)),
    }
}

fn generate_account_checks(d: &DataSetConfig, now: DateTime<Utc>) -> Result<DataSet, ConfigError> {
    let shops = d.shops.clone();
    let make: Make = Arc::new(move |rng, i, modified, shop_no| {
        let shop_idx = shops.iter().position(|s| s == shop_no).unwrap_or(0);
        let day = format_beijing(modified, "%Y%m%d");
        let zero = "0000-00-00 00:00:00".to_string();
        let consign = modified - Duration::seconds(rng.below(3 * 86_400) as i64);
        json!({
            "account_check_no": format!("AC{day}{i:07}"),
            "rec_id": (100_000 + i).to_string(),
            "tid": format!("{day}{:06}", rng.below(1_000_000)),
            "platform_id": rng.pick(PLATFORMS),
            "shop_id": (shop_idx + 1).to_string(),
            "shop_no": shop_no,
            "shop_name": SHOP_NAMES[shop_idx % SHOP_NAMES.len()],
            "pay_amount": money(rng, false),
            "send_amount": money(rng, false),
            "refund_amount": money(rng, false),
            "cost_amount": money(rng, true),
            "confirm_amount": money(rng, false),
            "status": rng.below(6).to_string(),
            "refund_status": rng.below(4).to_string(),
            "is_send_all": rng.below(2).to_string(),
            "check_time": if rng.chance(0.4) { zero.clone() } else { format_beijing(modified, DATETIME) },
            "consign_time": format_beijing(consign, DATETIME),
            "confirm_time": if rng.chance(0.5) { zero } else { format_beijing(modified - Duration::seconds(rng.below(3600) as i64), DATETIME) },
        })
    });
    DataSet::generate(d, "wdt.account_check", now, make)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(records: usize) -> (WdtSim, DateTime<Utc>) {
        let now = parse_beijing("2024-01-10 00:00:00").unwrap();
        let cfg = WdtSimConfig {
            sid: "sid1".into(),
            appkey: "key1".into(),
            appsecret: "secret1".into(),
            max_skew: "5m".into(),
            account_check: Some(DataSetConfig {
                seed: 3,
                records,
                from: "2024-01-01 00:00:00".into(),
                until: "2024-01-03 00:00:00".into(),
                shops: vec!["shop-01".into()],
                extra_fields: Vec::new(),
                group_field: None,
            }),
        };
        (WdtSim::new(&cfg, now).unwrap(), now)
    }

    fn request(now: DateTime<Utc>, extra: &[(&str, &str)], secret: &str) -> BTreeMap<String, String> {
        let mut p: BTreeMap<String, String> = [
            ("sid", "sid1"),
            ("appkey", "key1"),
            ("start_time", "2024-01-01 00:00:00"),
            ("end_time", "2024-01-01 23:59:59"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.insert("timestamp".into(), now.timestamp().to_string());
        let s = wdt_sign(&p, secret);
        p.insert("sign".into(), s);
        p
    }

    fn code(v: &Value) -> i64 {
        v["code"].as_i64().unwrap()
    }

    #[test]
    fn data_sets_are_deterministic_and_awkward() {
        let (a, _) = sim(500);
        let (b, _) = sim(500);
        assert_eq!(a.account_checks(), b.account_checks());
        let all = a.account_checks();
        assert!(all.iter().any(|r| r["check_time"] == "0000-00-00 00:00:00"));
        assert!(all.iter().any(|r| r["pay_amount"] == "0.0000"));
        assert!(all.iter().any(|r| !r["shop_name"].as_str().unwrap().is_ascii()));
        let mut keys: Vec<_> = all.iter().map(|r| r["account_check_no"].as_str().unwrap()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 500, "business ids are unique");
    }

    #[test]
    fn pages_partition_the_window_and_total_is_on_page_zero_only() {
        let (s, now) = sim(300);
        let first =
            s.answer(ACCOUNT_CHECK.method, &request(now, &[("page_size", "50")], "secret1"), now, None).unwrap();
        let total = first["total_count"].as_u64().unwrap() as usize;
        assert!(total > 50, "enough records in one day for several pages: {total}");
        let mut seen = first["account_list"].as_array().unwrap().len();
        let mut page = 1;
        loop {
            let no = page.to_string();
            let v = s
                .answer(
                    ACCOUNT_CHECK.method,
                    &request(now, &[("page_size", "50"), ("page_no", &no)], "secret1"),
                    now,
                    None,
                )
                .unwrap();
            assert!(v.get("total_count").is_none());
            let n = v["account_list"].as_array().unwrap().len();
            if n == 0 {
                break;
            }
            seen += n;
            page += 1;
        }
        assert_eq!(seen, total);
    }

    #[test]
    fn bad_requests_get_the_vendor_error_envelope() {
        let (s, now) = sim(10);
        let m = ACCOUNT_CHECK.method;
        let bad_sign = s.answer(m, &request(now, &[], "wrong"), now, None).unwrap_err();
        assert_eq!((code(&bad_sign), bad_sign["message"].as_str().unwrap()), (100, "签名错误"));
        let skewed = s.answer(m, &request(now - Duration::minutes(6), &[], "secret1"), now, None).unwrap_err();
        assert_eq!((code(&skewed), skewed["message"].as_str().unwrap()), (7, "时间戳错误"));
        let too_long =
            s.answer(m, &request(now, &[("end_time", "2024-01-02 00:00:00")], "secret1"), now, None).unwrap_err();
        assert!(too_long["message"].as_str().unwrap().contains("24"), "{too_long}");
        let big_page = s.answer(m, &request(now, &[("page_size", "101")], "secret1"), now, None).unwrap_err();
        assert_eq!(code(&big_page), 2);
        let mut no_end = request(now, &[], "secret1");
        no_end.remove("end_time");
        let s2 = wdt_sign(&no_end, "secret1");
        no_end.insert("sign".into(), s2);
        let e = s.answer(m, &no_end, now, None).unwrap_err();
        assert_eq!(e["message"], "结束时间 end_time 为空");
        let mut wrong_sid = request(now, &[], "secret1");
        wrong_sid.insert("sid".into(), "other".into());
        assert_eq!(code(&s.answer(m, &wrong_sid, now, None).unwrap_err()), 100);
    }
}
