//! What ops see, checked with real tools: a real Prometheus scrapes a worker and a writer with
//! the shipped rules loaded; every dashboard query returns series, every alert expression is
//! valid, every metric they name exists in the real exposition, and the shipped rules fire
//! for the failures the run has (a stopped stream, a dead letter) and stay silent for the
//! rest; promtool accepts the config and rules and passes their unit tests (each rule's
//! timing, firing, silence and resolution); `/readyz` follows Kafka.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn need(tool: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
    assert!(found, "{tool} is not installed: ./dev/test installs it (apt-get install prometheus)");
}

/// Every `expr` in the dashboard's panels, with its variables at "All" (`.*`, as Grafana
/// sends them).
fn dashboard_exprs() -> Vec<String> {
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("grafana/dashboards/tidemark.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().replace("$stream", ".*").replace("$source", ".*"));
        }
    }
    out
}

/// Every alert rule's `expr` (read with a line scan: the file is plain YAML we ship).
fn alert_exprs() -> Vec<String> {
    std::fs::read_to_string(repo("grafana/alerts.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: ").map(str::to_owned))
        .collect()
}

/// The `tidemark_*` metric names an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tidemark_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The series of an instant query's answer.
fn series(v: &Value) -> &[Value] {
    v["data"]["result"].as_array().map_or(&[], Vec::as_slice)
}

async fn query(prom: &str, expr: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[test]
fn promtool_accepts_the_shipped_config_and_rules() {
    need("promtool");
    for (what, file) in [("config", "grafana/prometheus.yml"), ("rules", "grafana/alerts.yml")] {
        let out = Command::new("promtool").args(["check", what]).arg(repo(file)).output().unwrap();
        assert!(
            out.status.success(),
            "promtool check {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Each alert rule's behaviour on synthetic series (fires on its failure, silent when
/// healthy, resolves), as `grafana/tests/*.test.yml` states it.
#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    need("promtool");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("grafana/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "grafana/tests holds the rules' unit tests");
    let out = Command::new("promtool").args(["test", "rules"]).args(&files).output().unwrap();
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_run_every_query_answers_and_the_shipped_rules_fire_for_its_failures() {
    need("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        &format!(
            r#"
listen = "127.0.0.1:0"
[faults]
seed = 3
latency = "5ms"
server_error_rate = 0.1
throttle_rate = 0.03
ban = "1s"
insert_while_paging_rate = 0.2
[wdt]
sid = "s"
appkey = "k"
appsecret = "ws"
[wdt.account_check]
records = 1500
from = "2d"
until = "1h"
{}"#,
            refund_simulator_sections("")
        ),
    );
    // A record that does not fit the schema, for the dead-letter series.
    let mut bad = sim.records("wdt.account_check").await[0].clone();
    bad["account_check_no"] = json!("AC-BAD");
    bad["send_amount"] = json!("n/a");
    let shop = bad["shop_no"].as_str().unwrap().to_owned();
    sim.insert("wdt.account_check", chrono::Utc::now() - chrono::Duration::hours(30), &shop, &bad).await;
    let topic = unique("obs");
    let mut cfg = format!(
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{topic}-txn\"\nwatermark_topic = \"{topic}.wm\"\ndead_letter_topic = \"{topic}.dlq\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        kafka()
    );
    for (id, secret) in [("wdt", "ws"), ("wdt_wrong", "not-the-secret")] {
        cfg.push_str(&format!(
            "\n[sources.{id}]\nkind = \"wdt.account_check\"\nbase_url = \"{}\"\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"{secret}\"\nrequests_per_second = 1000\n",
            sim.base_url()
        ));
    }
    for (id, source, shop) in
        [("shop-01", "wdt", "shop-01"), ("shop-02", "wdt", "shop-02"), ("broken", "wdt_wrong", "shop-01")]
    {
        cfg.push_str(&format!(
            "\n[[streams]]\nid = \"wdt.account_check/{id}\"\nsource = \"{source}\"\ntopic = \"{topic}\"\nstart = \"49h\"\nmax_span = \"2h\"\npage_size = 20\npoll_interval = \"1s\"\n[streams.params]\nshop_no = \"{shop}\"\n"
        ));
    }
    // Seed 001's stream and its writer into the K3Cloud simulator, for the writer's series
    // (the simulator lacks one material, so some bills are refused).
    let refunds = format!("{topic}.refunds");
    cfg.push_str(&refund_pipeline_sections(
        &sim.base_url(),
        &refunds,
        &unique("obs-writer"),
        &format!("{topic}.refunds.dlq"),
        "",
    ));
    let cfg = write(dir.path(), "worker.toml", &cfg);
    let mut worker = spawn_worker(&cfg, &[]);
    let mut reaper = KillOnDrop(vec![worker.id()]);
    let rx = stderr_lines(&mut worker);
    let mut addr = None;
    let mut caught_up = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while caught_up < 3 || addr.is_none() {
        assert!(Instant::now() < deadline, "worker did not catch up");
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        addr = addr.or_else(|| metrics_addr(&line));
        if line.contains("caught up") {
            caught_up += 1;
        }
    }
    let addr = addr.unwrap();
    // A reconcile of one stream's first windows (the caught-up stream commits a window a
    // second, each one a vendor request for reconcile, through the injected faults): the
    // running worker exports its result (tidemark_reconcile_*) once it reads it from the
    // control topic.
    let mut reconcile = Command::new(BIN);
    reconcile
        .args(["reconcile", "--from", "49h", "--to", "45h", "--stream", "wdt.account_check/shop-01", "--config"])
        .arg(&cfg);
    let out = output_within(reconcile, Duration::from_secs(120));
    assert!(matches!(out.status.code(), Some(0 | 1)), "reconcile: {}", String::from_utf8_lossy(&out.stderr));
    let mut writer = spawn_writer(&cfg);
    reaper.0.push(writer.id());
    let writer_lines = stderr_lines(&mut writer);
    let writer_addr = loop {
        let line = writer_lines.recv_timeout(Duration::from_secs(30)).expect("the writer serves its metrics");
        if let Some(a) = metrics_addr(&line) {
            break a;
        }
    };

    let rules = dir.path().join("alerts.yml");
    std::fs::copy(repo("grafana/alerts.yml"), &rules).unwrap();
    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tidemark\n    static_configs:\n      - targets: [\"{addr}\", \"{writer_addr}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    reaper.0.push(prometheus.id());
    let prom = format!("http://127.0.0.1:{prom_port}");
    // Enough scrapes for rate() and for librdkafka's 5 s statistics to arrive.
    let ready = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{prom}/-/ready")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < ready, "prometheus did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let up_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(&prom, "min(up{job=\"tidemark\"}) and count(up{job=\"tidemark\"}) == 2").await;
        let rtt = query(&prom, "tidemark_kafka_broker_rtt_seconds").await;
        let n = |v: &Value| v["data"]["result"].as_array().map_or(0, Vec::len);
        if n(&up) > 0 && up["data"]["result"][0]["value"][1] == "1" && n(&rtt) > 0 {
            break;
        }
        assert!(Instant::now() < up_deadline, "prometheus never saw the worker's and the writer's metrics: {up} {rtt}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The writer's rejections, once it has met a refused bill.
    let refused_deadline = Instant::now() + Duration::from_secs(60);
    while query(&prom, "tidemark_writer_rejections_total").await["data"]["result"].as_array().is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < refused_deadline, "the writer never reported a rejection");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A reconcile of the writer: the running writer exports its result
    // (tidemark_writer_reconcile_*) once it reads it from the control topic.
    let mut reconcile = Command::new(BIN);
    reconcile.args(["reconcile", "--writer", "k3", "--from", "49h", "--to", "1s", "--config"]).arg(&cfg);
    let out = output_within(reconcile, Duration::from_secs(120));
    assert!(matches!(out.status.code(), Some(0 | 1)), "reconcile --writer: {}", String::from_utf8_lossy(&out.stderr));
    let reconciled_deadline = Instant::now() + Duration::from_secs(30);
    while query(&prom, "tidemark_writer_reconcile_records").await["data"]["result"].as_array().is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < reconciled_deadline, "the writer never exported its reconcile");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut problems = Vec::new();
    for expr in dashboard_exprs() {
        let v = query(&prom, &expr).await;
        if v["status"] != "success" || series(&v).is_empty() {
            problems.push(format!("dashboard {expr}: {v}"));
        }
    }
    let mut names: Vec<String> = alert_exprs().iter().flat_map(|e| metric_names(e)).collect();
    names.sort();
    names.dedup();
    for expr in alert_exprs() {
        let v = query(&prom, &expr).await;
        if v["status"] != "success" {
            problems.push(format!("alert {expr}: {v}"));
        }
    }
    // A misspelt name would make a rule silently never fire: every name a rule reads must be
    // exported (the dashboard's queries are checked for series above).
    for name in &names {
        if series(&query(&prom, name).await).is_empty() {
            problems.push(format!("no series named {name}"));
        }
    }
    // The shipped rules, evaluated by Prometheus on the real series: the stopped stream and
    // the writer's refused bills fire; nothing else is active but what the broken source
    // and the injected faults explain. (The dead letter came before the first scrape, so
    // no increase is seen: its rule is shown by promtool.)
    let active = |v: &Value| -> Vec<String> {
        series(v)
            .iter()
            .map(|s| {
                let m = &s["metric"];
                let about =
                    ["stream", "source", "writer", "instance"].iter().find_map(|l| m[*l].as_str()).unwrap_or("-");
                format!("{}/{}", m["alertname"].as_str().unwrap_or(""), about)
            })
            .collect()
    };
    let want = ["TidemarkStreamStopped/wdt.account_check/broken".to_owned(), "TidemarkWriterRejections/k3".to_owned()];
    let alerts_deadline = Instant::now() + Duration::from_secs(30);
    let firing = loop {
        let firing = active(&query(&prom, "ALERTS{alertstate=\"firing\"}").await);
        if want.iter().all(|w| firing.contains(w)) || Instant::now() > alerts_deadline {
            break firing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let silent: Vec<&String> = want.iter().filter(|w| !firing.contains(w)).collect();
    let all = active(&query(&prom, "ALERTS").await);
    let explained = |a: &String| {
        a.ends_with("/wdt.account_check/broken")
            || a.ends_with("/wdt_wrong")
            || a.starts_with("TidemarkDeadLetters/")
            || a.starts_with("TidemarkWriterRejections/")
            // The wdt source's injected faults can leave a window unchecked.
            || a.starts_with("TidemarkReconcileDifferences/")
            // The writer is still saving bills while its reconcile reads them.
            || a.starts_with("TidemarkWriterReconcileDifferences/")
            // 13 % of the wdt source's requests fail by design; the rule waits 10 minutes.
            || a == "TidemarkApiErrorRateHigh/wdt"
    };
    let unexpected: Vec<&String> = all.iter().filter(|a| !explained(a)).collect();
    // Everything started is stopped before any assertion can end the test.
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    for child in [&mut worker, &mut writer] {
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap();
    }
    assert!(silent.is_empty(), "rules that do not fire: {silent:?} (firing: {firing:?})");
    assert!(unexpected.is_empty(), "alerts for healthy parts of the run: {unexpected:?} (all: {all:?})");
    assert!(problems.is_empty(), "queries without series:\n{}", problems.join("\n"));
    assert!(dashboard_exprs().len() >= 15, "the dashboard has its panels");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_not_ready_until_kafka_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        "listen = \"127.0.0.1:0\"\n[wdt]\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"ws\"\n[wdt.account_check]\nrecords = 50\nfrom = \"1d\"\nuntil = \"1h\"\n",
    );
    // Kafka's bootstrap address goes through a port nothing listens on yet.
    let gate_port = free_port();
    let topic = unique("ready");
    let cfg = write(
        dir.path(),
        "worker.toml",
        &format!(
            "[kafka]\nbootstrap = \"127.0.0.1:{gate_port}\"\ntransactional_id = \"{topic}-txn\"\nwatermark_topic = \"{topic}.wm\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[sources.wdt]\nkind = \"wdt.account_check\"\nbase_url = \"{}\"\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"ws\"\n\n[[streams]]\nid = \"wdt.account_check/all\"\nsource = \"wdt\"\ntopic = \"{topic}\"\nstart = \"25h\"\n",
            sim.base_url()
        ),
    );
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let mut addr = None;
    read_log_until(&log, "kafka not reachable yet", LOG_DEADLINE, &mut Vec::new(), |line| {
        addr = addr.take().or_else(|| metrics_addr(line));
        line.contains("kafka not reachable yet")
    });
    let addr = addr.expect("metrics served before kafka is reachable");
    let status = |path: &'static str| {
        let url = format!("http://{addr}{path}");
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/healthz").await, 200, "alive");
    assert_eq!(status("/readyz").await, 503, "not ready while kafka is unreachable");

    // Now open the gate: forward the port to the real broker.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gate_port)).await.unwrap();
    let target = kafka().to_owned();
    let forwarder = tokio::spawn(async move {
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while status("/readyz").await != 200 {
        assert!(Instant::now() < deadline, "never became ready after kafka became reachable");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(worker.wait().unwrap().success());
    forwarder.abort();
}
