//! One endpoint a vendor simulator serves, built in or from a manifest: its data set, and the
//! window, group, filter and paging rules every protocol applies the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::dataset::{DataSet, DataSetConfig, Make, page};
use super::faults::Faults;
use super::generate::{Plan, Style};
use crate::config::ConfigError;
use crate::domain::ApiSpec;
use crate::domain::time::{DATETIME, format_beijing};

/// A windowed endpoint and the records it serves.
pub struct Served {
    pub spec: &'static ApiSpec,
    data: RwLock<DataSet>,
    /// The record field and request parameter that selects one group (`shop_no`), if any.
    group_field: Option<String>,
    /// Top-level fields of the schema: a request parameter naming one filters by equality.
    fields: Vec<String>,
}

/// What a request asks of a window, after the protocol has read its own parameters.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub page_index: u64,
    pub page_size: u64,
    /// Every request parameter; the group and field filters are read from it.
    pub params: &'a BTreeMap<String, String>,
}

/// Why a window is refused; each protocol words it in its own envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowRefusal {
    EndBeforeStart,
    /// Longer than the manifest's `max_span` (closed interval: `end - start` must be less).
    TooLong {
        max_span: std::time::Duration,
    },
}

impl Served {
    /// `data` served as `spec`; `group_field` names the parameter that selects a group.
    pub fn new(spec: &'static ApiSpec, data: DataSet, group_field: Option<&str>) -> Self {
        let fields = match Schema::parse_str(spec.schema) {
            Ok(Schema::Record(r)) => r.fields.iter().map(|f| f.name.clone()).collect(),
            _ => Vec::new(),
        };
        Served { spec, data: RwLock::new(data), group_field: group_field.map(str::to_owned), fields }
    }

    /// An endpoint with records generated from its schema: unique business ids, the window's
    /// time in its `window_field`, the group in `group_field` (default `shop_no` where the
    /// schema has it).
    pub fn generated(
        spec: &'static ApiSpec,
        cfg: &DataSetConfig,
        now: DateTime<Utc>,
        style: Style,
    ) -> Result<Self, ConfigError> {
        let key = format!("endpoints.\"{}\"", spec.kind);
        let schema = Schema::parse_str(spec.schema).map_err(|e| ConfigError::invalid(&key, e.to_string()))?;
        let Schema::Record(record) = &schema else {
            return Err(ConfigError::invalid(&key, "its schema is not a record"));
        };
        let has = |f: &str| record.fields.iter().any(|x| x.name == f);
        let group_field = match &cfg.group_field {
            Some(g) if has(g) => Some(g.clone()),
            Some(g) => {
                return Err(ConfigError::invalid(
                    format!("{key}.group_field"),
                    format!("{g:?} is not a field of {}'s schema", spec.kind),
                ));
            }
            None => has("shop_no").then(|| "shop_no".to_owned()),
        };
        let prefix = key_prefix(spec.kind);
        let (key_field, window_field, group) = (spec.key_field, spec.window_field, group_field.clone());
        // Compiled once: the data set makes each record on demand.
        let plan = Plan::new(&schema);
        let make: Make = Arc::new(move |rng, i, at, g| {
            let mut r = plan.record(rng, at, style);
            r[key_field] = json!(format!("{prefix}{}{i:07}", format_beijing(at, "%Y%m%d")));
            if let Some(f) = window_field {
                r[f] = json!(format_beijing(at, DATETIME));
            }
            if let Some(f) = &group {
                r[f.as_str()] = json!(g);
            }
            r
        });
        let data = DataSet::generate(cfg, &key, now, make)?;
        Ok(Served::new(spec, data, group_field.as_deref()))
    }

    /// The data set, for tests and the `/_simulator/records` routes.
    pub fn data(&self) -> &RwLock<DataSet> {
        &self.data
    }

    /// Every record, in served order.
    pub fn records(&self) -> Vec<Value> {
        self.data.read().expect("data lock").all()
    }

    pub fn len(&self) -> usize {
        self.data.read().expect("data lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The window is one the vendor accepts: not reversed, shorter than the manifest's span.
    pub fn check_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), WindowRefusal> {
        if end < start {
            return Err(WindowRefusal::EndBeforeStart);
        }
        let max = Duration::from_std(self.spec.max_span).unwrap_or(Duration::MAX);
        if end - start >= max {
            return Err(WindowRefusal::TooLong { max_span: self.spec.max_span });
        }
        Ok(())
    }

    /// The total and one page of the window's records, of the requested group and matching
    /// every parameter that names a top-level field. With the `insert_while_paging` fault, a
    /// record is added at the window's start while later pages remain (their records shift).
    pub fn page(&self, q: &Query<'_>, faults: Option<&Faults>) -> (usize, Vec<Value>) {
        let group = self.group_field.as_ref().and_then(|g| q.params.get(g)).map(String::as_str);
        let filters: Vec<(&str, &str)> = q
            .params
            .iter()
            .filter(|(k, _)| Some(*k) != self.group_field.as_ref() && self.fields.contains(k))
            .filter(|(k, _)| !self.spec.reserved_params.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let data = self.data.read().expect("data lock");
        let mut matching = data.window(q.start, q.end, group);
        if !filters.is_empty() {
            matching.retain(|r| {
                let v = data.json(r);
                filters.iter().all(|(k, want)| match &v[*k] {
                    Value::String(s) => s == want,
                    other => serde_json::from_str::<Value>(want).is_ok_and(|w| w == *other),
                })
            });
        }
        let total = matching.len();
        let items = page(&matching, q.page_index, q.page_size).into_iter().map(|r| data.json(r)).collect();
        drop(data);
        let more = (q.page_index + 1) * q.page_size < total as u64;
        if more && filters.is_empty() && faults.is_some_and(Faults::insert_while_paging) {
            let window_field = self.spec.window_field;
            self.data.write().expect("data lock").insert_shifting_copy(
                q.start,
                q.end,
                group,
                self.spec.key_field,
                |r, at| {
                    if let Some(f) = window_field {
                        r[f] = json!(format_beijing(at, DATETIME));
                    }
                },
            );
        }
        (total, items)
    }
}

/// How 旺店通 numbers its documents (`CK` 出库, `RK` 入库, `TK` 退款, `JY` 交易), by what the
/// kind's method reads; other kinds get `NO`.
fn key_prefix(kind: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[("stockout", "CK"), ("stockin", "RK"), ("refund", "TK"), ("trade", "JY")];
    PREFIXES.iter().find(|(word, _)| kind.contains(word)).map_or("NO", |(_, p)| p)
}

/// The vendors' words for a window longer than the method allows (旺店通, 奇门 and the finance
/// API word it alike): `start_time 和 end_time 最大跨度为24小时`.
pub fn too_long(max_span: std::time::Duration) -> String {
    format!("start_time 和 end_time 最大跨度为{}", span_text(max_span))
}

/// A span as the vendor's messages write it: `24小时`, `60分钟`, `30天`.
fn span_text(span: std::time::Duration) -> String {
    let s = span.as_secs();
    match s {
        s if s > 86_400 && s % 86_400 == 0 => format!("{}天", s / 86_400),
        s if s > 3600 && s % 3600 == 0 => format!("{}小时", s / 3600),
        s if s % 60 == 0 => format!("{}分钟", s / 60),
        s => format!("{s}秒"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, Utc};
    use serde_json::Value;

    use crate::domain::time::{DATETIME, format_beijing, parse_beijing};
    use crate::verify::wdt_sign;

    const SIM: &str = r#"
[wdt]
sid = "s"
appkey = "k"
appsecret = "secret"
[endpoints."wdt.trade_query"]
records = 2000
from = "2d"
until = "1h"
shops = ["shop-01", "shop-02"]
"#;

    fn sim() -> std::sync::Arc<crate::SimState> {
        let mut cfg: crate::SimConfig = toml::from_str(SIM).unwrap();
        cfg.endpoints_dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../endpoints"));
        crate::build(cfg, Utc::now()).unwrap()
    }

    /// A signed trade_query request for `[start, end]` with `extra` parameters.
    fn ask(sim: &crate::SimState, start: &str, end: &str, extra: &[(&str, &str)]) -> Result<Value, Value> {
        let mut p: BTreeMap<String, String> = [("sid", "s"), ("appkey", "k"), ("start_time", start), ("end_time", end)]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.insert("timestamp".into(), Utc::now().timestamp().to_string());
        let sign = wdt_sign(&p, "secret");
        p.insert("sign".into(), sign);
        sim.wdt.as_ref().unwrap().answer("trade_query.php", &p, Utc::now(), None)
    }

    /// The shipped `wdt.trade_query` manifest is served as written: its 60-minute closed window,
    /// its page limit, `total_count` on page 0 only, the group and field filters; every record
    /// in the window once, with the window's time in its `window_field`.
    #[test]
    fn a_manifests_endpoint_is_served_by_its_windows_pages_and_filters() {
        let sim = sim();
        let all = sim.records("wdt.trade_query").unwrap();
        assert_eq!(all.len(), 2000);
        let busiest = parse_beijing(all[1000]["modified"].as_str().unwrap()).unwrap();
        let start = format_beijing(busiest - Duration::minutes(30), DATETIME);
        let end = format_beijing(busiest + Duration::minutes(30) - Duration::seconds(1), DATETIME);
        let expected: Vec<&Value> = all
            .iter()
            .filter(|r| {
                let t = r["modified"].as_str().unwrap();
                t >= start.as_str() && t <= end.as_str() && r["shop_no"] == "shop-01"
            })
            .collect();
        assert!(expected.len() > 10, "{} records in the hour", expected.len());

        let mut got = Vec::new();
        for page in 0.. {
            let no = page.to_string();
            let v = ask(&sim, &start, &end, &[("shop_no", "shop-01"), ("page_size", "7"), ("page_no", &no)]).unwrap();
            assert_eq!(v["total_count"].as_u64().is_some(), page == 0, "total on page 0 only, page {page}");
            let list = v["trades"].as_array().unwrap().clone();
            if list.is_empty() {
                break;
            }
            got.extend(list);
        }
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "every record of the window and shop, once, in order");

        let status = expected[0]["trade_status"].as_str().unwrap().to_owned();
        let v = ask(&sim, &start, &end, &[("shop_no", "shop-01"), ("trade_status", &status), ("page_size", "100")])
            .unwrap();
        let filtered = v["trades"].as_array().unwrap();
        assert!(!filtered.is_empty() && filtered.iter().all(|r| r["trade_status"] == *status), "{v}");

        let too_long = format_beijing(busiest + Duration::minutes(30), DATETIME);
        let e = ask(&sim, &start, &too_long, &[]).unwrap_err();
        assert_eq!(e["message"], "start_time 和 end_time 最大跨度为60分钟", "{e}");
        let e = ask(&sim, &start, &end, &[("page_size", "101")]).unwrap_err();
        assert_eq!(e["message"], "page_size 取值范围为 1~100", "{e}");
        let e = sim.wdt.as_ref().unwrap().answer("stock_query.php", &BTreeMap::new(), Utc::now(), None).unwrap_err();
        assert_eq!(e["code"], 4, "a method nobody configured is unknown: {e}");
    }

    #[test]
    fn an_endpoint_without_its_manifest_or_its_vendor_section_is_refused_by_name() {
        let no_wdt = SIM.replace("[wdt]\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"secret\"\n", "");
        let cfg: crate::SimConfig = toml::from_str(&no_wdt).unwrap();
        let e = crate::build(cfg, Utc::now()).err().expect("no endpoints_dir").to_string();
        assert!(e.contains("endpoints.\"wdt.trade_query\"") && e.contains("no endpoint \"wdt.trade_query\""), "{e}");
        let mut cfg: crate::SimConfig = toml::from_str(&no_wdt).unwrap();
        cfg.endpoints_dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../endpoints"));
        let e = crate::build(cfg, Utc::now()).err().expect("no [wdt] section").to_string();
        assert!(e.contains("needs a [wdt] section"), "{e}");
    }
}
