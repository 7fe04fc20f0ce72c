//! Vendors that say "slow down", as they say it, against the real broker: 旺店通's per-minute
//! limit (code 100 in the vendor's words) slows a backfill but never stops it, and TOP's
//! daily app quota pauses the credential exactly until the reset, shows in `streams list`,
//! and is said once.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WDT: &str = "wdt.account_check";

#[tokio::test(flavor = "multi_thread")]
async fn a_per_minute_limit_slows_a_backfill_but_never_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    // 12 requests a 15 s window, then 旺店通's own refusal (code 100, its three texts in turn).
    let sim = Simulator::start(
        dir.path(),
        r#"
listen = "127.0.0.1:0"
[faults]
per_minute_limit = 12
limit_window = "15s"
[wdt]
sid = "test-sid"
appkey = "test-appkey"
appsecret = "test-secret"
[wdt.account_check]
seed = 21
records = 600
from = "2d"
until = "1h"
shops = ["shop-01", "shop-02"]
"#,
    );
    let topic = unique("per-minute");
    let toml = WorkerToml::new(&sim.base_url(), &topic)
        .transactional_id(&unique("txn"))
        .watermark_topic(&format!("{topic}.wm"))
        .request_timeout("2s")
        .requests_per_second(500)
        .max_in_flight(4)
        .start("49h")
        .max_span("6h")
        .page_size(50)
        .stream(&format!("{WDT}/shop-01"), "shop-01")
        .stream(&format!("{WDT}/shop-02"), "shop-02")
        .build();
    let cfg = write(dir.path(), "worker.toml", &toml);
    let out = run_until_caught_up(&cfg);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a throttle never stops a stream:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("stream stopped"), "{stderr}");
    assert!(
        stderr.contains("vendor throttled the credential") && stderr.contains("超过每分钟最大"),
        "the log names the vendor's answer:\n{stderr}"
    );
    let log = sim.request_log().await;
    let refused = ms_list(&log["wdt"]["per_minute_refused_ms"]);
    let arrivals = ms_list(&log["wdt"]["arrivals_ms"]);
    assert!(!refused.is_empty(), "the run met the limit: {log}");
    // Each ban (refusals more than the in-flight slack apart begin a new one) is waited out:
    // the first request after those in flight comes no sooner than the shortest pause (10 s)
    // after the refusal. A worker that retried at once would send within milliseconds.
    let mut ban_start = None;
    for &r in &refused {
        if ban_start.is_some_and(|b| r <= b + IN_FLIGHT_SLACK_MS) {
            continue;
        }
        ban_start = Some(r);
        if let Some(&next) = arrivals.iter().find(|&&a| a > r + IN_FLIGHT_SLACK_MS) {
            assert!(next >= r + 9_500, "refused at {r} ms, next request at {next} ms: the pause was not kept: {log}");
        }
    }
    assert_exactly(&consume_committed(&topic), &sim.records(WDT).await, "wdt.account_check.avsc", "account_check_no");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_quota_pauses_the_credential_until_it_resets() {
    let dir = tempfile::tempdir().unwrap();
    // The app's quota: 16 requests, reset 15 s after it is used up (TOP's answer says how many
    // seconds are left; the worker waits that long); the backfill needs about 25, so it meets
    // the quota once and finishes after the reset.
    let sim = Simulator::start(
        dir.path(),
        r#"
listen = "127.0.0.1:0"
[faults]
daily_quota = 16
daily_quota_lasts = "15s"
[top]
app_key = "tk"
app_secret = "ts"
session = "sess"
[top.finance_order]
records = 100
from = "2d"
until = "1h"
shops = ["2313"]
"#,
    );
    let topic = unique("daily-quota");
    let stream = "top.finance_order/2313";
    let toml = WorkerToml::new(&sim.base_url(), &unique("unused"))
        .transactional_id(&unique("txn"))
        .watermark_topic(&format!("{topic}.wm"))
        .extra(&format!(
            "\n[sources.top]\nkind = \"top.finance_order\"\nbase_url = \"{}/router/rest\"\napp_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\nrequests_per_second = 50\n\n[[streams]]\nid = \"{stream}\"\nsource = \"top\"\ntopic = \"{topic}\"\nstart = \"49h\"\nmax_span = \"2h\"\npage_size = 100\n[streams.params]\nshop_codes = \"2313\"\n",
            sim.base_url()
        ))
        .build();
    let cfg = write(dir.path(), "worker.toml", &toml);
    let mut worker = spawn_worker(&cfg, &["--until-caught-up"]);
    let _reap = KillOnDrop(vec![worker.id()]);
    let lines = stderr_lines(&mut worker);
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.iter().any(|l: &String| l.contains("daily quota exhausted")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => log.push(l),
            Err(_) => panic!("no 'daily quota exhausted' within 60 s:\n{}", log.join("\n")),
        }
    }
    // While the credential waits, `streams list` says so (once the worker published it).
    let list_deadline = Instant::now() + Duration::from_secs(15);
    let row = loop {
        let listed =
            Command::new(BIN).args(["streams", "list", "--output", "json", "--config"]).arg(&cfg).output().unwrap();
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
        let row = rows.as_array().unwrap().iter().find(|r| r["stream"] == stream).unwrap().clone();
        if row["state"].as_str().unwrap().starts_with("quota exhausted until ") || Instant::now() > list_deadline {
            break row;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        row["state"].as_str().unwrap().starts_with("quota exhausted until ")
            && row["state"].as_str().unwrap().ends_with("+08:00"),
        "{row}"
    );
    let until = tidemark::domain::time::parse_beijing(row["quota_exhausted_until"].as_str().unwrap()).unwrap();
    let left = (until - chrono::Utc::now()).num_seconds();
    assert!((0..=16).contains(&left), "{row}: the reset is the vendor's, 15 s after the quota was used up");
    // Then it goes on by itself once the quota resets.
    let status = wait_within(&mut worker, Duration::from_secs(120));
    log.extend(lines.try_iter());
    let Some(status) = status else { panic!("the worker did not finish:\n{}", tail(&log.join("\n"), 40)) };
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    assert_eq!(
        log.matches("daily quota exhausted; pausing").count(),
        1,
        "said once, however many requests met it:\n{log}"
    );
    let requests = sim.request_log().await;
    let exhausted = ms_list(&requests["top"]["quota_exhausted_ms"]);
    let resets = ms_list(&requests["top"]["daily_resets_ms"]);
    assert_eq!((exhausted.len(), resets.len()), (1, 1), "{requests}");
    let (exhausted, reset_ms) = (exhausted[0], resets[0]);
    // Nothing was sent between the refusal (and requests already out) and the reset; the run
    // went on after it. The simulator's two clocks (arrivals and resets) differ by < 50 ms.
    let arrivals = ms_list(&requests["top"]["arrivals_ms"]);
    let early: Vec<u64> =
        arrivals.iter().copied().filter(|&a| a > exhausted + IN_FLIGHT_SLACK_MS && a + 50 < reset_ms).collect();
    assert!(
        early.is_empty(),
        "sent during the pause (quota used up at {exhausted} ms, reset at {reset_ms} ms): {early:?}"
    );
    assert!(arrivals.iter().any(|&a| a + 50 >= reset_ms), "resumed after the reset: {requests}");
    assert_exactly(
        &consume_committed(&topic),
        &sim.records("top.finance_order").await,
        "top.finance_order.avsc",
        "biz_uk",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_skew_answer_stops_the_stream_saying_how_far_off_the_clock_is() {
    let dir = tempfile::tempdir().unwrap();
    // The vendor's clock runs 7 minutes ahead: past its 5 minutes of tolerance.
    let sim = Simulator::start(
        dir.path(),
        r#"
listen = "127.0.0.1:0"
[faults]
clock_skew = "7m"
[wdt]
sid = "test-sid"
appkey = "test-appkey"
appsecret = "test-secret"
[wdt.account_check]
records = 50
from = "2d"
until = "1h"
shops = ["shop-01"]
"#,
    );
    let topic = unique("skew");
    let toml = WorkerToml::new(&sim.base_url(), &topic)
        .transactional_id(&unique("txn"))
        .watermark_topic(&format!("{topic}.wm"))
        .start("49h")
        .stream(&format!("{WDT}/shop-01"), "shop-01")
        .build();
    let cfg = write(dir.path(), "worker.toml", &toml);
    let out = run_until_caught_up(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a stopped stream fails the run:\n{stdout}");
    let line = stdout.lines().find(|l| l.starts_with(&format!("{WDT}/shop-01"))).unwrap();
    assert!(line.contains("STOPPED") && line.contains("时间戳错误"), "the vendor's answer: {line}");
    // 420 s, give or take the second the request took.
    let behind = line
        .split("the local clock is ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("says by how much: {line}"));
    assert!((419..=421).contains(&behind) && line.contains("s behind the vendor's"), "{line}");
}
