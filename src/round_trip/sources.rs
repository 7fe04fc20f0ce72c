//! Each vendor client's signed requests against its simulator, in process: what the client
//! sends is accepted, what the simulator answers parses, and tampering is caught.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::config::Config;
use crate::domain::Window;
use crate::simulate::*;
use crate::sources::{PageRequest, SourceError};

const SIM: &str = r#"
listen = "127.0.0.1:0"
[wdt]
sid = "ws"
appkey = "wk"
appsecret = "wsecret"
[wdt.account_check]
records = 300
from = "2d"
until = "1h"
[qimen]
app_key = "qk"
app_secret = "qs"
target_app_key = "wdt-target"
sid = "seller"
[qimen.stockin_refund]
records = 300
from = "2d"
until = "1h"
[top]
app_key = "tk"
app_secret = "ts"
session = "sess"
[top.finance_order]
records = 300
from = "2d"
until = "1h"
shops = ["2313", "1313"]
[finance]
flag = "fl"
app_secret = "fs"
[finance.transactions]
records = 300
from = "2d"
until = "1h"
shops = ["ACC001", "ACC002"]
[finance.balances]
accounts = 5
[endpoints."wdt.trade_query"]
records = 300
from = "2d"
until = "1h"
[endpoints."wdt.stockout_trade"]
records = 300
from = "2d"
until = "1h"
[endpoints."wdt.refund_query"]
records = 300
from = "2d"
until = "1h"
[endpoints."qimen.trade_query"]
records = 300
from = "2d"
until = "1h"
[endpoints."qimen.stockout_trade"]
records = 300
from = "2d"
until = "1h"
[endpoints."qimen.refund_query"]
records = 300
from = "2d"
until = "1h"
"#;

/// The endpoints the repository ships in `endpoints/` (the simulator config's `endpoints_dir`).
pub fn shipped_endpoints() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("endpoints")
}

pub fn sim() -> Arc<SimState> {
    let mut cfg: crate::simulate::SimConfig = toml::from_str(SIM).unwrap();
    cfg.endpoints_dir = Some(shipped_endpoints());
    build(cfg, Utc::now()).unwrap()
}

/// A source's config as the worker would load it.
fn source_config(kind: &str, settings: &str) -> crate::config::SourceConfig {
    let text = format!(
        "[kafka]\nbootstrap = \"x:1\"\n[sources.s]\nkind = \"{kind}\"\nbase_url = \"http://127.0.0.1:1/x\"\n{settings}\n[[streams]]\nid = \"s/1\"\nsource = \"s\"\n"
    );
    Config::parse(&text).unwrap().sources.remove("s").unwrap()
}

fn whole_day() -> Window {
    let end = crate::domain::time::truncate_to_second(Utc::now() - Duration::hours(1));
    Window { start: end - Duration::hours(24), end }
}

fn no_params() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn qimen_client_and_simulator_agree() {
    let sim = sim();
    let q = sim.qimen.as_ref().unwrap();
    for method in ["md5", "hmac", "hmac-sha256"] {
        let cfg = source_config(
            "qimen.stockin_refund",
            &format!(
                "app_key = \"qk\"\napp_secret = \"qs\"\ntarget_app_key = \"wdt-target\"\nsid = \"seller\"\nsign_method = \"{method}\""
            ),
        );
        let src = crate::sources::qimen::QimenSource::new(
            &crate::sources::qimen::STOCKIN_REFUND,
            &cfg,
            reqwest::Client::new(),
        )
        .unwrap();
        let (w, params) = (whole_day(), no_params());
        let req = PageRequest { window: Some(&w), page_index: 0, page_size: 100, params: &params };
        let p = src.signed_params(&req, Utc::now()).unwrap();
        let body = q.answer(&p, Utc::now(), None).to_string();
        let page = crate::sources::qimen::parse_response(body.as_bytes(), "stockin_list").unwrap();
        assert!(page.total.unwrap() > 0 && !page.records.is_empty(), "{method}: {body:.200}");
        let mut tampered = p.clone();
        tampered.insert("page_no".into(), "1".into());
        let body = q.answer(&tampered, Utc::now(), None).to_string();
        let e = crate::sources::qimen::parse_response(body.as_bytes(), "stockin_list").unwrap_err();
        assert!(matches!(e, SourceError::Fatal { .. }) && e.to_string().contains("signature rejected"), "{e:?}");
    }
}

#[test]
fn top_client_and_simulator_agree_in_both_response_forms() {
    let sim = sim();
    let t = sim.top.as_ref().unwrap();
    let all = t.finance_orders().len() as u64;
    for simplify in ["false", "true"] {
        let cfg = source_config(
            "top.finance_order",
            &format!("app_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\nsimplify = \"{simplify}\""),
        );
        let src =
            crate::sources::top::TopSource::new(&crate::sources::top::FINANCE_ORDER, &cfg, reqwest::Client::new())
                .unwrap();
        let w = whole_day();
        let mut params = no_params();
        params.insert("shop_codes".into(), "2313".into());
        let req = PageRequest { window: Some(&w), page_index: 1, page_size: 10, params: &params };
        let p = src.signed_params(&req, Utc::now()).unwrap();
        let body = t.answer(&p, Utc::now(), None).to_string();
        let page = crate::sources::top::parse_response(
            body.as_bytes(),
            "alibaba.wdk.finance.order.backflow",
            "finance_order_details",
            "finance_order_detail",
        )
        .unwrap();
        assert!(page.total.unwrap() > 10 && page.total.unwrap() < all, "one shop of two within one day: {body:.300}");
        assert_eq!(page.records.len(), 10);
        assert!(page.records.iter().all(|r| r.to_value().unwrap()["shop_code"] == "2313"));
    }
    let cfg = source_config("top.finance_order", "app_key = \"tk\"\napp_secret = \"wrong\"\nsession = \"sess\"");
    let src =
        crate::sources::top::TopSource::new(&crate::sources::top::FINANCE_ORDER, &cfg, reqwest::Client::new()).unwrap();
    let (w, params) = (whole_day(), no_params());
    let p = src
        .signed_params(&PageRequest { window: Some(&w), page_index: 0, page_size: 10, params: &params }, Utc::now())
        .unwrap();
    let body = t.answer(&p, Utc::now(), None).to_string();
    let e = crate::sources::top::parse_response(body.as_bytes(), "alibaba.wdk.finance.order.backflow", "x", "y")
        .unwrap_err();
    assert!(matches!(&e, SourceError::Fatal { code, .. } if code == "25"), "{e:?}");
}

#[test]
fn finance_client_and_simulator_agree_and_pages_are_cut_to_100() {
    let sim = sim();
    let f = sim.finance.as_ref().unwrap();
    let cfg = source_config("finance.transactions", "flag = \"fl\"\napp_secret = \"fs\"");
    let src = crate::sources::finance::FinanceSource::new(
        &crate::sources::finance::TRANSACTIONS,
        &cfg,
        reqwest::Client::new(),
    )
    .unwrap();
    let (w, params) = (whole_day(), no_params());
    let req = PageRequest { window: Some(&w), page_index: 0, page_size: 1000, params: &params };
    let body = Value::Object(src.signed_body(&req, Utc::now()).unwrap());
    let resp = f.answer(&body, Utc::now(), None).to_string();
    let page = crate::sources::finance::parse_response(resp.as_bytes(), "lists").unwrap();
    assert!(page.total.unwrap() > 100, "{resp:.200}");
    assert_eq!(page.records.len(), 100, "asked for 1000, served 100");

    let bal =
        crate::sources::finance::FinanceSource::new(&crate::sources::finance::BALANCES, &cfg, reqwest::Client::new())
            .unwrap();
    let req = PageRequest { window: None, page_index: 0, page_size: 1, params: &params };
    let resp = f.answer(&Value::Object(bal.signed_body(&req, Utc::now()).unwrap()), Utc::now(), None).to_string();
    let page = crate::sources::finance::parse_response(resp.as_bytes(), "accounts").unwrap();
    assert_eq!(page.records.len(), 5);

    let stale = Value::Object(
        src.signed_body(
            &PageRequest { window: Some(&w), page_index: 0, page_size: 10, params: &params },
            Utc::now() - Duration::minutes(6),
        )
        .unwrap(),
    );
    let e = crate::sources::finance::parse_response(f.answer(&stale, Utc::now(), None).to_string().as_bytes(), "lists")
        .unwrap_err();
    assert!(matches!(&e, SourceError::ClockSkew { code, .. } if code == "1002"), "{e:?}");
    let mut forged = src
        .signed_body(&PageRequest { window: Some(&w), page_index: 0, page_size: 10, params: &params }, Utc::now())
        .unwrap();
    forged.insert("page_no".into(), Value::from(7));
    let e = crate::sources::finance::parse_response(
        f.answer(&Value::Object(forged), Utc::now(), None).to_string().as_bytes(),
        "lists",
    )
    .unwrap_err();
    assert!(matches!(&e, SourceError::Fatal { code, .. } if code == "1003"), "{e:?}");
}

#[test]
fn generated_records_fit_their_schemas_and_hash_as_before() {
    let sim = sim();
    let mut checked = 0;
    let shipped = tidemark_endpoints::Endpoints::load_dir(&shipped_endpoints()).unwrap();
    for kind in sim.kinds() {
        let spec = &shipped.find(kind).unwrap().spec;
        let records = sim.records(kind).unwrap();
        assert!(!records.is_empty(), "{kind} has records");
        checked += 1;
        let codec = crate::avro::RecordCodec::from_avsc(spec.schema).unwrap();
        let mut out = Vec::new();
        for r in &records {
            codec.encode_value(r, &mut out).unwrap_or_else(|e| panic!("{kind}: {e} in {r}"));
            // The worker hashes a record from its text as sent; the hashes stored before it
            // did were FNV-1a of serde_json's text of the record's `Value`.
            let sent = serde_json::to_string_pretty(r).unwrap();
            let read = crate::domain::Json::parse(&sent).unwrap();
            let before = crate::domain::watermark::fnv1a(r.to_string().as_bytes());
            assert_eq!(crate::domain::watermark::content_hash(&read), before, "{kind}: {r}");
        }
        let keys: std::collections::HashSet<_> = records.iter().map(|r| r[spec.key_field].to_string()).collect();
        assert_eq!(keys.len(), records.len(), "{kind}: business ids are unique");
    }
    assert_eq!(checked, 11, "the five built-in kinds and the six shipped endpoints");
}
