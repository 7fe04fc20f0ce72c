//! Faults, throttling, crashes and bad input against the real broker and the simulators:
//! each fault alone with its expected outcome, shared quotas, secrets never printed, bad
//! configs named, and a chaos run with SIGKILLs.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

const WDT: &str = "wdt.account_check";

/// A simulator config with a 旺店通 data set plus `extra` sections, and `[faults]`.
fn sim_toml(records: usize, faults: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
{extra}
[faults]
seed = 9
{faults}
[wdt]
sid = "test-sid"
appkey = "test-appkey"
appsecret = "test-secret"
[wdt.account_check]
seed = 21
records = {records}
from = "2d"
until = "1h"
shops = ["shop-01", "shop-02"]
"#
    )
}

/// The worker config of these tests: one stream per shop over the 旺店通 source, with short
/// request and transaction timeouts, 50-record pages and a dead-letter topic.
fn worker_toml(sim: &Simulator, topic: &str, shops: &[&str], max_span: &str) -> WorkerToml {
    let b = WorkerToml::new(&sim.base_url(), topic)
        .transactional_id(&unique("txn"))
        .watermark_topic(&format!("{topic}.wm"))
        .dead_letter_topic(&format!("{topic}.dlq"))
        .partitions(2)
        .transaction_timeout("10s")
        .request_timeout("1s")
        .requests_per_second(500)
        .start("49h")
        .max_span(max_span)
        .page_size(50);
    shops.iter().fold(b, |b, shop| b.stream(&format!("{WDT}/{shop}"), shop))
}

/// Runs a worker to completion and returns (exit status, stdout, stderr).
fn run(dir: &std::path::Path, toml: &str) -> (std::process::ExitStatus, String, String) {
    let cfg = write(dir, "worker.toml", toml);
    let out = run_until_caught_up(&cfg);
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// One fault alone: the backfill still ends with exactly the simulator's records, and the
/// log shows the expected reaction.
async fn fault_alone(faults: &str, expect_in_log: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &sim_toml(1200, faults, ""));
    let topic = unique("fault");
    let (status, stdout, stderr) = run(dir.path(), &worker_toml(&sim, &topic, &["shop-01", "shop-02"], "6h").build());
    assert!(status.success(), "[{faults}] worker failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains(expect_in_log), "[{faults}] log should show {expect_in_log:?}:\n{stderr}");
    assert_exactly(&consume_committed(&topic), &sim.records(WDT).await, "wdt.account_check.avsc", "account_check_no");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn http_5xx_is_retried() {
    fault_alone("server_error_rate = 0.15", "retryable error http_50").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_responses_time_out_and_are_retried() {
    // About 30 requests: at 5 % some runs met no hang at all (the window boundaries move with
    // the clock, so the request count does too); at 15 % the first hang comes early.
    fault_alone("hang_rate = 0.15\nhang = \"3s\"\nslow_rate = 0.1\nslow = \"200ms\"", "retryable error timeout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_are_retried() {
    fault_alone("drop_rate = 0.1", "retryable error transport").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_retried() {
    fault_alone("malformed_rate = 0.1", "retryable error malformed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_inserted_while_paging_make_the_window_be_read_again() {
    let stderr = fault_alone("insert_while_paging_rate = 0.4", "page set inconsistent; fetching again").await;
    assert!(stderr.contains("appears twice"), "the shifted record is detected as a duplicate across pages");
}

/// Pages and windows are fetched concurrently: requests already out when a ban is answered
/// arrive during it, the others in flight at most. A client that went on sending once told,
/// or sent again before the ban ended, would send more (each window read ahead has its own
/// pages to fetch). Judged by the order of events at the simulator, not by how long anything took.
fn assert_each_ban_was_waited_out(bans: &[Value], max_in_flight: u64, log: &Value) {
    for (i, ban) in bans.iter().enumerate() {
        let after = ban["arrived_after_answer"].as_u64().unwrap();
        assert!(after < max_in_flight, "ban {i}: {after} requests arrived after it was answered: {log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_throttle_pauses_the_credential_while_its_ban_lasts() {
    let dir = tempfile::tempdir().unwrap();
    // TOP's code 7 with "ban will last 2 more seconds" (a ban without a length would pause
    // the credential for 10 s); the simulator refuses (and counts) every request that arrives
    // during a ban.
    let top = r#"
[top]
app_key = "tk"
app_secret = "ts"
session = "sess"
[top.finance_order]
records = 600
from = "2d"
until = "1h"
shops = ["2313"]
"#;
    let sim = Simulator::start(dir.path(), &sim_toml(10, "throttle_rate = 0.12\nban = \"2s\"", top));
    let topic = unique("throttle");
    // At most four requests in flight: when a ban is answered, at most three others are out.
    let extra = format!(
        "\n[sources.top]\nkind = \"top.finance_order\"\nbase_url = \"{}/router/rest\"\napp_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\nrequests_per_second = 500\nmax_in_flight = 4\n\n[[streams]]\nid = \"top.finance_order/2313\"\nsource = \"top\"\ntopic = \"{topic}\"\nstart = \"49h\"\nmax_span = \"2h\"\npage_size = 20\n[streams.params]\nshop_codes = \"2313\"\n",
        sim.base_url()
    );
    let (status, stdout, stderr) =
        run(dir.path(), &worker_toml(&sim, &unique("unused"), &[], "6h").extra(&extra).build());
    assert!(status.success(), "{stdout}\n{stderr}");
    let log = sim.request_log().await;
    let bans = log["top"]["bans"].as_array().unwrap();
    assert!(bans.len() >= 2, "the run met several throttles: {log}");
    assert_each_ban_was_waited_out(bans, 4, &log);
    // The pause is the 2 s TOP named: no shorter, and well short of the 10 s default.
    assert_named_bans_kept(&log, "top", 2_000, 3_000);
    assert!(stderr.contains("throttled (7)"), "{stderr}");
    assert_exactly(
        &consume_committed(&topic),
        &sim.records("top.finance_order").await,
        "top.finance_order.avsc",
        "biz_uk",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_429_with_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    // Retry-After: 3, where a throttle without a stated length would pause for 10 s.
    let sim = Simulator::start(dir.path(), &sim_toml(300, "throttle_rate = 0.1\nban = \"3s\"", ""));
    let topic = unique("retry-after");
    let toml = worker_toml(&sim, &topic, &["shop-01"], "1h").max_in_flight(4).build();
    let (status, stdout, stderr) = run(dir.path(), &toml);
    assert!(status.success(), "{stdout}\n{stderr}");
    let log = sim.request_log().await;
    let bans = log["wdt"]["bans"].as_array().unwrap();
    assert!(!bans.is_empty(), "{log}");
    assert_each_ban_was_waited_out(bans, 4, &log);
    // Retry-After was honoured: each pause lasted its 3 s, and ended long before 10 s.
    assert_named_bans_kept(&log, "wdt", 3_000, 3_000);
    let shop01: Vec<Value> = sim.records(WDT).await.into_iter().filter(|r| r["shop_no"] == "shop-01").collect();
    assert_exactly(&consume_committed(&topic), &shop01, "wdt.account_check.avsc", "account_check_no");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_streams_sharing_an_appkey_stay_within_its_quota_together() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &sim_toml(400, "", ""));
    let topic = unique("quota");
    // Same sid and appkey on two sources: one quota of 8 requests a second for both.
    let second = format!(
        "\n[sources.wdt_again]\nkind = \"wdt.account_check\"\nbase_url = \"{}\"\nsid = \"test-sid\"\nappkey = \"test-appkey\"\nappsecret = \"test-secret\"\nrequests_per_second = 8\n\n[[streams]]\nid = \"wdt.account_check/shop-02\"\nsource = \"wdt_again\"\ntopic = \"{topic}\"\nstart = \"49h\"\nmax_span = \"2h\"\npage_size = 20\n[streams.params]\nshop_no = \"shop-02\"\n",
        sim.base_url()
    );
    let toml = worker_toml(&sim, &topic, &["shop-01"], "2h").requests_per_second(8).extra(&second).build();
    let (status, stdout, stderr) = run(dir.path(), &toml);
    assert!(status.success(), "{stdout}\n{stderr}");
    let log: Value =
        reqwest::get(format!("{}/_simulator/requests", sim.base_url())).await.unwrap().json().await.unwrap();
    let arrivals: Vec<u64> =
        log["wdt"]["arrivals_ms"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(arrivals.len() >= 40, "enough requests to measure: {}", arrivals.len());
    // The gate spaces requests at least 1/8 s apart (no bursts), so n of them are sent over at
    // least (n - 1)/8 s. They reach the simulator after delays that vary with the machine's
    // load, one by up to DELIVERY_SLACK_MS more than another sent after it: so n requests that
    // arrive within x ms (the simulator's clock) were sent within x + slack, and n <= 8(x +
    // slack)/1000 + 1. Two quotas of 8/s (one per source) would break it over the whole run.
    const DELIVERY_SLACK_MS: u64 = 1000;
    let mut sorted = arrivals.clone();
    sorted.sort_unstable();
    for (i, &first) in sorted.iter().enumerate() {
        for (j, &last) in sorted.iter().enumerate().skip(i + 1) {
            let (n, within) = ((j - i + 1) as u64, last - first);
            assert!(
                n <= 8 * (within + DELIVERY_SLACK_MS) / 1000 + 1,
                "{n} requests arrived within {within} ms at a quota of 8/s: {sorted:?}"
            );
        }
    }
    assert_exactly(&consume_committed(&topic), &sim.records(WDT).await, "wdt.account_check.avsc", "account_check_no");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_does_not_fit_its_schema_is_dead_lettered_and_the_window_commits() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &sim_toml(300, "", ""));
    let mut good = sim.records(WDT).await;
    let mut bad = good.iter().find(|r| r["shop_no"] == "shop-01").unwrap().clone();
    bad["account_check_no"] = json!("AC-BROKEN-1");
    bad["pay_amount"] = json!("12.34.56");
    sim.insert(WDT, chrono::Utc::now() - chrono::Duration::hours(20), "shop-01", &bad).await;
    let topic = unique("dlq");
    let (status, stdout, stderr) = run(dir.path(), &worker_toml(&sim, &topic, &["shop-01", "shop-02"], "6h").build());
    assert!(status.success(), "{stdout}\n{stderr}");
    good.retain(|r| r["account_check_no"] != "AC-BROKEN-1");
    assert_exactly(&consume_committed(&topic), &good, "wdt.account_check.avsc", "account_check_no");
    let letters = consume_committed(&format!("{topic}.dlq"));
    assert_eq!(letters.len(), 1, "exactly one dead letter");
    let letter: Value = serde_json::from_slice(letters[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(letter["stream"], "wdt.account_check/shop-01");
    assert_eq!(letter["key"], "AC-BROKEN-1");
    assert_eq!(letter["record"]["pay_amount"], "12.34.56", "the raw record travels with it");
    let error = letter["error"].as_str().unwrap();
    assert!(error.contains("$.pay_amount") && error.contains("12.34.56"), "{error}");
    assert!(letter["window"].as_str().unwrap().starts_with('['), "{letter}");
    assert_eq!(letters[0].headers.get("tidemark.stream").map(String::as_str), Some("wdt.account_check/shop-01"));
    assert!(stdout.lines().any(|l| l.starts_with("wdt.account_check/shop-01") && l.contains("caught up")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_record_inside_the_lookback_is_emitted_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &sim_toml(200, "", ""));
    let topic = unique("late");
    let toml = worker_toml(&sim, &topic, &["shop-01"], "6h").stream_extra("poll_interval = \"1s\"").build();
    let cfg = write(dir.path(), "worker.toml", &toml);
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let mut seen = Vec::new();
    wait_for_lines(&log, "caught up", 1, LOG_DEADLINE, &mut seen);
    // Every record of the shop is committed once it is caught up; but a transaction's markers
    // reach the partitions just after its commit returns, so a reader may briefly stop short.
    let served = sim.records(WDT).await.iter().filter(|r| r["shop_no"] == "shop-01").count();
    let before = consume_committed_reaching(&topic, served, LOG_DEADLINE).len();
    assert_eq!(before, served, "every record of the shop before the late one");
    // Committed already (older than now - settle), but within the 10m lookback.
    let mut late = sim.records(WDT).await.into_iter().find(|r| r["shop_no"] == "shop-01").unwrap();
    late["account_check_no"] = json!("AC-LATE-1");
    sim.insert(WDT, chrono::Utc::now() - chrono::Duration::minutes(4), "shop-01", &late).await;
    // Two more polls re-read the lookback span; the late record must appear once.
    wait_for_lines(&log, "window committed", 3, LOG_DEADLINE, &mut seen);
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(worker.wait().unwrap().success());
    let after = consume_committed_reaching(&topic, before + 1, LOG_DEADLINE);
    assert_eq!(after.len(), before + 1, "only the late record is new");
    assert_eq!(after.iter().filter(|c| c.key == "AC-LATE-1").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_credentials_stop_their_stream_while_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let top = "\n[top]\napp_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\n[top.finance_order]\nrecords = 300\nfrom = \"2d\"\nuntil = \"1h\"\nshops = [\"2313\"]\n";
    let sim = Simulator::start(dir.path(), &sim_toml(1200, "revoke_after = 15\nrevoke_vendors = [\"wdt\"]", top));
    let (wdt_topic, top_topic) = (unique("revoke-wdt"), unique("revoke-top"));
    let extra = format!(
        "\n[sources.top]\nkind = \"top.finance_order\"\nbase_url = \"{}/router/rest\"\napp_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\n\n[[streams]]\nid = \"top.finance_order/2313\"\nsource = \"top\"\ntopic = \"{top_topic}\"\nstart = \"49h\"\nmax_span = \"2h\"\n[streams.params]\nshop_codes = \"2313\"\n",
        sim.base_url()
    );
    let (status, stdout, stderr) =
        run(dir.path(), &worker_toml(&sim, &wdt_topic, &["shop-01"], "1h").extra(&extra).build());
    assert_eq!(status.code(), Some(1), "a stopped stream fails the run:\n{stdout}\n{stderr}");
    let wdt_line = stdout.lines().find(|l| l.starts_with("wdt.account_check/shop-01")).unwrap();
    assert!(wdt_line.contains("STOPPED") && wdt_line.contains("appkey"), "{wdt_line}");
    assert!(stdout.lines().any(|l| l.starts_with("top.finance_order/2313") && l.contains("caught up")), "{stdout}");
    assert_exactly(
        &consume_committed(&top_topic),
        &sim.records("top.finance_order").await,
        "top.finance_order.avsc",
        "biz_uk",
    );
    // What the stopped stream committed is whole windows: no duplicates, fewer than all.
    let committed = consume_committed(&wdt_topic);
    let keys: std::collections::HashSet<_> = committed.iter().map(|c| c.key.clone()).collect();
    assert_eq!(keys.len(), committed.len());
    assert!(!committed.is_empty() && committed.len() < 600, "{} committed before revocation", committed.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_logs_errors_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (appsecret, session, qsecret) = ("APPSECRET-7f3a9c", "SESSION-b81e22", "QSECRET-44d0aa");
    let extra = format!(
        "\n[qimen]\napp_key = \"qk\"\napp_secret = \"{qsecret}\"\ntarget_app_key = \"t\"\nsid = \"s\"\n[qimen.stockin_refund]\nrecords = 100\nfrom = \"1d\"\nuntil = \"1h\"\n\n[top]\napp_key = \"tk\"\napp_secret = \"{appsecret}\"\nsession = \"{session}\"\n[top.finance_order]\nrecords = 100\nfrom = \"1d\"\nuntil = \"1h\"\nshops = [\"2313\"]\n"
    );
    // Faults make the worker log errors; the qimen source is given a wrong secret on purpose.
    let sim = Simulator::start(dir.path(), &sim_toml(100, "server_error_rate = 0.3\nmalformed_rate = 0.2", &extra));
    // Each log format gets fresh topics, so both runs backfill (and meet faults) in full.
    for format in ["text", "json"] {
        let worker_extra = format!(
            "\n[sources.top]\nkind = \"top.finance_order\"\nbase_url = \"{base}/router/rest\"\napp_key = \"tk\"\napp_secret = \"${{T_SECRET}}\"\nsession = \"${{T_SESSION}}\"\n\n[sources.qm]\nkind = \"qimen.stockin_refund\"\nbase_url = \"{base}/router/qm\"\napp_key = \"qk\"\napp_secret = \"WRONG-{qsecret}\"\ntarget_app_key = \"t\"\nsid = \"s\"\n\n[[streams]]\nid = \"top.finance_order/2313\"\nsource = \"top\"\ntopic = \"{t}\"\nstart = \"25h\"\n[streams.params]\nshop_codes = \"2313\"\n\n[[streams]]\nid = \"qimen.stockin_refund/all\"\nsource = \"qm\"\ntopic = \"{t}-qm\"\nstart = \"25h\"\n",
            base = sim.base_url(),
            t = unique("secrets")
        );
        let toml = worker_toml(&sim, &unique("secrets-wdt"), &["shop-01"], "6h")
            .extra("[metrics]\nlisten = \"127.0.0.1:0\"\n")
            .extra(&worker_extra)
            .build();
        let cfg = write(dir.path(), "worker.toml", &toml);
        let mut worker = Command::new(BIN)
            .args(["run", "--log-format", format, "--config"])
            .arg(&cfg)
            .env("T_SECRET", appsecret)
            .env("T_SESSION", session)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _guard = KillOnDrop(vec![worker.id()]);
        let mut addr = None;
        let log = stderr_lines(&mut worker);
        let mut seen = Vec::new();
        let mut caught_up = std::collections::HashSet::new();
        read_log_until(&log, "every stream caught up or stopped", LOG_DEADLINE, &mut seen, |line| {
            if addr.is_none()
                && let Some(i) = line.find("127.0.0.1:")
                && line.contains("metrics")
            {
                addr = Some(
                    line[i..].split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).next().unwrap().to_owned(),
                );
            }
            if line.contains("caught up") {
                caught_up.insert(if line.contains("top.finance_order") { "top" } else { "wdt" });
            }
            // The qimen stream may meet injected faults first; it stops once its signature
            // is answered.
            if line.contains("stream stopped") && line.contains("qimen") {
                caught_up.insert("qimen stopped");
            }
            caught_up.len() == 3
        });
        let addr = addr.unwrap_or_else(|| panic!("metrics address in the log:\n{}", seen.join("\n")));
        let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
        rest_of(&log, LOG_DEADLINE, &mut seen);
        let stderr = seen.join("\n");
        let out = worker.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stderr.contains("signature rejected"), "the qimen stream failed on its wrong secret:\n{stderr}");
        let seen: Value =
            reqwest::get(format!("{}/_simulator/requests", sim.base_url())).await.unwrap().json().await.unwrap();
        assert!(
            stderr.contains("retryable error"),
            "faults were logged ({seen}):\n{}",
            &stderr[stderr.len().saturating_sub(3000)..]
        );
        for secret in [appsecret, session, qsecret] {
            for (name, text) in [("log", stderr.as_str()), ("stdout", &stdout), ("metrics", &metrics)] {
                assert!(!text.contains(secret), "{format} {name} contains a secret");
            }
        }
    }
}

#[test]
fn bad_configs_fail_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"
[kafka]
bootstrap = "127.0.0.1:1"
[sources.wdt]
kind = "wdt.account_check"
base_url = "http://127.0.0.1:1"
sid = "s"
appkey = "k"
appsecret = "${TIDEMARK_TEST_SECRET}"
[[streams]]
id = "wdt.account_check/shop-01"
source = "wdt"
poll_interval = "1m"
"#;
    let cases: &[(&str, String, &[&str])] = &[
        ("missing key", good.replace("sid = \"s\"\n", ""), &["sources.wdt.sid", "missing"]),
        (
            "wrong type",
            good.replace("poll_interval = \"1m\"", "poll_interval = 60"),
            &["poll_interval", "invalid type"],
        ),
        ("unknown source", good.replace("source = \"wdt\"", "source = \"nope\""), &["streams[0].source", "nope"]),
        (
            "unknown kind",
            good.replace("wdt.account_check\"\nbase", "wdt.nothing\"\nbase"),
            &["sources.wdt.kind", "wdt.nothing"],
        ),
        (
            "unset env var",
            good.replace("TIDEMARK_TEST_SECRET", "TIDEMARK_UNSET_VAR"),
            &["sources.wdt.appsecret", "TIDEMARK_UNSET_VAR"],
        ),
        (
            "negative interval",
            good.replace("poll_interval = \"1m\"", "poll_interval = \"-5m\""),
            &["streams[0].poll_interval", "negative"],
        ),
        ("page too big", good.replace("poll_interval = \"1m\"", "page_size = 500"), &["streams[0].page_size", "500"]),
        ("typo", good.replace("appkey = \"k\"", "app_key = \"k\""), &["sources.wdt.app_key", "unknown key"]),
    ];
    for (what, text, needles) in cases {
        let cfg = write(dir.path(), "bad.toml", text);
        let out =
            Command::new(BIN).args(["run", "--config"]).arg(&cfg).env("TIDEMARK_TEST_SECRET", "x").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: exit code\n{stderr}");
        for n in *needles {
            assert!(stderr.contains(n), "{what}: the error should name {n:?}:\n{stderr}");
        }
    }
}

/// A record without a business id (the key field missing, or empty) is dead-lettered once;
/// polls that re-read it in the lookback span, and a restart, do not dead-letter it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_without_a_business_id_is_dead_lettered_once_however_often_it_is_reread() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &sim_toml(200, "", ""));
    let topic = unique("nokey");
    let toml = worker_toml(&sim, &topic, &["shop-01"], "6h").stream_extra("poll_interval = \"1s\"").build();
    let cfg = write(dir.path(), "worker.toml", &toml);
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let mut seen = Vec::new();
    let mut wait_for = |what: &str, n: usize| wait_for_lines(&log, what, n, LOG_DEADLINE, &mut seen);
    wait_for("caught up", 1);
    // As in the late-record test: the last commit's markers may land just after "caught up".
    let served = sim.records(WDT).await.iter().filter(|r| r["shop_no"] == "shop-01").count();
    let before = consume_committed_reaching(&topic, served, LOG_DEADLINE).len();
    assert_eq!(before, served, "every record of the shop before the keyless ones");
    // Past the 1m settle, inside the 10m lookback: the next polls read it, then re-read it.
    let template = sim.records(WDT).await.into_iter().find(|r| r["shop_no"] == "shop-01").unwrap();
    let at = chrono::Utc::now() - chrono::Duration::minutes(4);
    let mut missing = template.clone();
    missing.as_object_mut().unwrap().remove("account_check_no");
    missing["tid"] = json!("TID-NO-KEY-1");
    let mut empty = template;
    empty["account_check_no"] = json!("");
    empty["tid"] = json!("TID-NO-KEY-2");
    for record in [&missing, &empty] {
        sim.insert(WDT, at, "shop-01", record).await;
    }
    // The first poll dead-letters both; three more re-read them.
    wait_for("window committed", 4);
    signal_term_and_wait(&mut worker);
    let letters = |topic: &str| consume_committed(&format!("{topic}.dlq"));
    let tids = |letters: &[Consumed]| -> Vec<String> {
        let mut tids: Vec<String> = letters
            .iter()
            .map(|l| {
                let letter: Value = serde_json::from_slice(l.value.as_ref().unwrap()).unwrap();
                assert_eq!(letter["stream"], "wdt.account_check/shop-01", "{letter}");
                letter["record"]["tid"].as_str().unwrap().to_owned()
            })
            .collect();
        tids.sort();
        tids
    };
    let first = letters(&topic);
    assert_eq!(tids(&first), ["TID-NO-KEY-1", "TID-NO-KEY-2"], "each keyless record dead-lettered once");
    let letter: Value = serde_json::from_slice(first[0].value.as_ref().unwrap()).unwrap();
    assert!(letter["error"].as_str().unwrap().contains("account_check_no"), "the error names the key: {letter}");
    assert_eq!(consume_committed(&topic).len(), before, "no keyless record reached the data topic");

    // A restart re-reads the lookback span too: still not dead-lettered again.
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard2 = KillOnDrop(vec![worker.id()]);
    let log2 = stderr_lines(&mut worker);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut polls = 0;
    while polls < 2 {
        assert!(std::time::Instant::now() < deadline, "{polls} of 2 polls after the restart");
        if log2.recv_timeout(std::time::Duration::from_millis(200)).is_ok_and(|l| l.contains("window committed")) {
            polls += 1;
        }
    }
    signal_term_and_wait(&mut worker);
    assert_eq!(tids(&letters(&topic)), ["TID-NO-KEY-1", "TID-NO-KEY-2"], "not dead-lettered again after a restart");
}

fn signal_term_and_wait(worker: &mut std::process::Child) {
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    let status = wait_within(worker, std::time::Duration::from_secs(30)).expect("the worker stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}
