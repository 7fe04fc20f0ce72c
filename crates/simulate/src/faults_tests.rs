//! The throttle answers as each vendor words them, the `[faults]` keys' errors, and the
//! middleware over HTTP: limits, the skewed clock and the new random answers.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::*;
use crate::domain::time::next_beijing_time_of_day;
use crate::verify::wdt_sign;

async fn parts(resp: Response) -> (u16, HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_vendor_words_its_per_minute_refusal() {
    let texts = [
        "超过每分钟最大调用频率限制,请稍后重试",
        "超过每分钟最大调用频率限制，请稍后重试",
        "超过每分钟最大并发次数限制，请稍后重试",
    ];
    for (n, text) in texts.iter().chain(&texts[..1]).enumerate() {
        let (status, _, body) = parts(Vendor::Wdt.per_minute_refusal(n as u64, 30)).await;
        assert_eq!((status, body), (200, json!({"code": 100, "message": text})), "refusal {n}");
        let (status, _, body) = parts(Vendor::Qimen.per_minute_refusal(n as u64, 30)).await;
        assert_eq!(
            (status, body),
            (200, json!({"response": {"flag": "failure", "code": "100", "message": text}})),
            "refusal {n}"
        );
    }
    let (status, _, body) = parts(Vendor::Top.per_minute_refusal(0, 42)).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"error_response": {"code": 7, "msg": "App Call Limited",
                "sub_code": "accesscontrol.limited-by-api-access-count", "sub_msg": "This ban will last for 42 more seconds"}})
        )
    );
    for v in [Vendor::Finance, Vendor::K3cloud] {
        let (status, headers, _) = parts(v.per_minute_refusal(0, 7)).await;
        assert_eq!((status, headers[header::RETRY_AFTER].to_str().unwrap()), (429, "7"), "{v:?}");
    }
}

#[tokio::test]
async fn the_gateway_words_its_quota_and_bans_and_wdt_its_database_error() {
    let limited = |sub_code: &str, sub_msg: &str| json!({"error_response": {"code": 7, "msg": "App Call Limited", "sub_code": sub_code, "sub_msg": sub_msg}});
    let (_, _, body) = parts(Vendor::daily_refusal(3600)).await;
    assert_eq!(body, limited("accesscontrol.limited-by-app-access-count", "This ban will last for 3600 more seconds"));
    let (_, _, body) = parts(Vendor::limited_without_seconds()).await;
    assert_eq!(body, limited("accesscontrol.limited-by-app-api-access-count", "App Call Limited"));
    let (_, _, body) = parts(Vendor::access_limited()).await;
    assert_eq!(
        body,
        json!({"error_response": {"code": 15, "msg": "Remote service error", "sub_code": "isv.access-limited",
            "sub_msg": "access limited"}})
    );
    let (status, _, body) = parts(Vendor::Wdt.db_error(5)).await;
    assert_eq!((status, body), (200, json!({"code": 5, "message": "数据库错误"})));
    let (_, _, body) = parts(Vendor::Qimen.db_error(4)).await;
    assert_eq!(body, json!({"response": {"flag": "failure", "code": "4", "message": "数据库错误"}}));
}

#[test]
fn bad_values_name_their_key() {
    for (line, key) in [
        ("limit_window = \"500ms\"", "faults.limit_window"),
        ("limit_window = \"1 minute\"", "faults.limit_window"),
        ("daily_quota_reset = \"24:00:00\"", "faults.daily_quota_reset"),
        ("daily_quota_reset = \"8:00\"", "faults.daily_quota_reset"),
        ("clock_skew = \"-\"", "faults.clock_skew"),
        ("clock_skew = \"--7m\"", "faults.clock_skew"),
        ("ban_without_seconds_rate = 1.5", "faults.ban_without_seconds_rate"),
        ("access_limited_rate = -0.1", "faults.access_limited_rate"),
        ("db_error_rate = 2.0", "faults.db_error_rate"),
    ] {
        let cfg: FaultConfig = toml::from_str(line).unwrap();
        let e = Faults::new(cfg).err().unwrap_or_else(|| panic!("{line} accepted")).to_string();
        assert!(e.contains(key), "{line}: {e}");
    }
    let e = toml::from_str::<FaultConfig>("per_minute_limt = 5").unwrap_err().to_string();
    assert!(e.contains("per_minute_limit"), "{e}");
    let f = Faults::new(toml::from_str("clock_skew = \"-7m\"").unwrap()).unwrap();
    assert_eq!(f.skew, TimeDelta::minutes(-7));
    let f = Faults::new(toml::from_str("clock_skew = \"1h30s\"").unwrap()).unwrap();
    assert_eq!(f.skew, TimeDelta::seconds(3630));
}

/// Serves `toml` on a free port; returns the base URL.
async fn serve(toml: &str) -> String {
    let state = crate::build(toml::from_str(toml).unwrap(), Utc::now()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, crate::router(state)).await });
    base
}

async fn post(base: &str, path: &str, form: &BTreeMap<String, String>) -> (u16, HeaderMap, Value) {
    let resp = reqwest::Client::new().post(format!("{base}{path}")).form(form).send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn log(base: &str) -> Value {
    reqwest::get(format!("{base}/_simulator/requests")).await.unwrap().json().await.unwrap()
}

/// A signed 旺店通 account-check request stamped `at`.
fn wdt_request(at: DateTime<Utc>) -> BTreeMap<String, String> {
    let mut p: BTreeMap<String, String> =
        [("sid", "s"), ("appkey", "k"), ("start_time", "2024-01-01 00:00:00"), ("end_time", "2024-01-01 23:59:59")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    p.insert("timestamp".into(), at.timestamp().to_string());
    let sign = wdt_sign(&p, "x");
    p.insert("sign".into(), sign);
    p
}

#[tokio::test]
async fn over_http_the_window_limit_refuses_in_wdt_words_and_the_clock_is_skewed() {
    let base = serve(
        "[wdt]\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"x\"\n\
         [faults]\nper_minute_limit = 2\nclock_skew = \"-7m\"\n",
    )
    .await;
    let skewed = Utc::now() - TimeDelta::minutes(7);
    let path = &format!("/openapi2/{}", tidemark_endpoints::wdt::ACCOUNT_CHECK.method);
    // The real time is 7 minutes off the simulator's clock: past 旺店通's 5 minutes.
    let (_, _, real) = post(&base, path, &wdt_request(Utc::now())).await;
    assert_eq!((real["code"].as_i64(), real["message"].as_str()), (Some(7), Some("时间戳错误")), "{real}");
    let (status, headers, ok) = post(&base, path, &wdt_request(skewed)).await;
    assert_eq!((status, &ok["code"]), (200, &json!(0)), "{ok}");
    let date = headers[header::DATE].to_str().unwrap();
    assert!(date.ends_with(" GMT"), "{date}");
    let date = DateTime::parse_from_rfc2822(date).unwrap().to_utc();
    assert!((date - skewed).num_seconds().abs() <= 5, "Date {date} is not the skewed clock {skewed}");
    for text in WDT_PER_MINUTE_TEXTS.iter().chain(&WDT_PER_MINUTE_TEXTS[..1]) {
        let (status, headers, refused) = post(&base, path, &wdt_request(skewed)).await;
        assert_eq!((status, refused), (200, json!({"code": 100, "message": text})));
        assert!(headers.contains_key(header::DATE));
    }
    let log = log(&base).await;
    let w = &log["wdt"];
    assert_eq!(
        (&w["requests"], &w["per_minute_refused"], &w["window_accepted"], &w["daily_resets_ms"]),
        (&json!(6), &json!(4), &json!([2]), &json!([])),
        "{log}"
    );
}

#[tokio::test]
async fn over_http_a_ban_without_seconds_is_enforced_and_logged_like_a_throttle() {
    let base = serve("[faults]\nban_without_seconds_rate = 1.0\nban = \"60s\"\n").await;
    let expect = json!({"error_response": {"code": 7, "msg": "App Call Limited",
        "sub_code": "accesscontrol.limited-by-app-api-access-count", "sub_msg": "App Call Limited"}});
    for _ in 0..3 {
        let (status, _, body) = post(&base, "/router/qm", &BTreeMap::new()).await;
        assert_eq!((status, body), (200, expect.clone()));
    }
    // 旺店通 has no such answer: its request reaches the (unconfigured) simulator.
    let (status, _, _) = post(&base, "/openapi2/x.php", &BTreeMap::new()).await;
    assert_eq!(status, 404);
    let log = log(&base).await;
    let q = &log["qimen"];
    assert_eq!((&q["throttled"], &q["during_ban"], q["bans"].as_array().unwrap().len()), (&json!(1), &json!(2), 1));
}

#[tokio::test]
async fn over_http_the_daily_quota_refuses_top_and_qimen_and_db_errors_alternate() {
    let base = serve("[faults]\ndaily_quota = 1\naccess_limited_rate = 1.0\ndb_error_rate = 1.0\n").await;
    let none = BTreeMap::new();
    let (_, _, first) = post(&base, "/router/rest", &none).await;
    assert_eq!(first["error_response"]["sub_code"], "isv.access-limited", "{first}");
    let expected = (next_beijing_time_of_day(Utc::now(), NaiveTime::MIN) - Utc::now()).num_seconds();
    for path in ["/router/rest", "/router/qm"] {
        if path == "/router/qm" {
            let (_, _, db) = post(&base, path, &none).await;
            assert_eq!(db["response"]["code"], "4", "{db}");
        }
        let (_, _, quota) = post(&base, path, &none).await;
        let e = &quota["error_response"];
        assert_eq!((&e["code"], &e["sub_code"]), (&json!(7), &json!("accesscontrol.limited-by-app-access-count")));
        let secs: i64 = e["sub_msg"]
            .as_str()
            .unwrap()
            .strip_prefix("This ban will last for ")
            .and_then(|s| s.strip_suffix(" more seconds"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((secs - expected).abs() <= 2, "{secs} s to midnight Beijing, expected {expected}");
    }
    let codes: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(post(&base, "/openapi2/x.php", &none).await.2["code"].clone());
        }
        v
    };
    assert_eq!(codes, [json!(4), json!(5), json!(4)], "旺店通 has no daily quota");
    let log = log(&base).await;
    assert_eq!((&log["top"]["daily_refused"], &log["qimen"]["daily_refused"]), (&json!(1), &json!(1)), "{log}");
    assert_eq!(log["top"]["quota_exhausted_ms"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["top"]["throttled"], 0, "access-limited begins no ban: {log}");
}

#[test]
fn the_example_throttles_block_parses_once_uncommented() {
    let text = include_str!("../../../examples/simulator.toml");
    let block: String = text
        .lines()
        .skip_while(|l| *l != "# [faults]")
        .skip(1)
        .filter(|l| !l.starts_with("# #"))
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or_else(|| panic!("not commented out: {l:?}"))))
        .collect();
    let cfg: FaultConfig = toml::from_str(&block).unwrap();
    assert_eq!((cfg.per_minute_limit, cfg.daily_quota), (60, 5000), "{block}");
    let f = Faults::new(cfg).unwrap();
    assert_eq!(f.skew, TimeDelta::minutes(-2));
}
