//! The spine against a real Kafka broker and the 旺店通 simulator: every record exactly once
//! with exact values, resume after SIGKILL, a rejected signature committing nothing, and
//! windows read concurrently committing in window order.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use apache_avro::types::Value as Avro;
use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;

const KIND: &str = "wdt.account_check";
const DECIMALS: &[&str] = &["pay_amount", "send_amount", "refund_amount", "cost_amount", "confirm_amount"];
const TIMES: &[&str] = &["check_time", "consign_time", "confirm_time"];
const INTS: &[&str] = &["status", "refund_status", "is_send_all"];
const STRINGS: &[&str] = &["tid", "platform_id", "shop_id", "shop_no", "shop_name"];

/// Asserts the topic holds exactly the simulator's records, each once, with exact values.
/// Read once they are all visible (or the deadline passes): Kafka writes a transaction's
/// markers just after its commit or abort returns, and `read_committed` readers stop short of
/// them until then.
fn assert_topic_matches(topic: &str, expected: &[Value], streams: &[(&str, &str)]) {
    let consumed = consume_committed_reaching(topic, expected.len(), LOG_DEADLINE);
    assert_eq!(consumed.len(), expected.len(), "committed record count equals the simulator's");
    let schema = schema("wdt.account_check.avsc");
    let by_key: BTreeMap<&str, &Value> =
        expected.iter().map(|r| (r["account_check_no"].as_str().unwrap(), r)).collect();
    let mut seen = HashSet::new();
    for c in &consumed {
        assert!(seen.insert(c.key.clone()), "key {} appears twice", c.key);
        let want = by_key.get(c.key.as_str()).unwrap_or_else(|| panic!("key {} is not a simulator record", c.key));
        let shop = want["shop_no"].as_str().unwrap();
        let stream = streams.iter().find(|(_, s)| *s == shop).map(|(id, _)| *id).unwrap();
        assert_eq!(c.headers.get("tidemark.stream").map(String::as_str), Some(stream));
        assert_eq!(c.headers.get("tidemark.schema").map(String::as_str), Some("tidemark.wdt.AccountCheck"));
        let got = decode(&schema, c.value.as_ref().expect("data records are not tombstones"));
        assert_eq!(got["account_check_no"], Avro::String(c.key.clone()), "key is the record's account_check_no");
        for f in DECIMALS {
            assert_eq!(decimal_text(&got[*f], 4), want[*f].as_str().unwrap(), "{} {f}", c.key);
        }
        for f in TIMES {
            let text = want[*f].as_str().unwrap();
            let expected = if text == "0000-00-00 00:00:00" {
                Avro::Union(0, Box::new(Avro::Null))
            } else {
                Avro::Union(1, Box::new(Avro::TimestampMillis(beijing_millis(text))))
            };
            assert_eq!(got[*f], expected, "{} {f} from {text:?}", c.key);
        }
        for f in INTS {
            let n: i32 = want[*f].as_str().unwrap().parse().unwrap();
            assert_eq!(got[*f], Avro::Union(1, Box::new(Avro::Int(n))), "{} {f}", c.key);
        }
        for f in STRINGS {
            let s = want[*f].as_str().unwrap().to_owned();
            assert_eq!(got[*f], Avro::Union(1, Box::new(Avro::String(s))), "{} {f}", c.key);
        }
        let rec_id: i64 = want["rec_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(got["rec_id"], Avro::Union(1, Box::new(Avro::Long(rec_id))));
    }
}

/// The latest watermark per stream in the watermark topic.
fn watermarks(wm_topic: &str) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = BTreeMap::new();
    for c in consume_committed(wm_topic) {
        let v: Value = serde_json::from_slice(c.value.as_ref().unwrap()).unwrap();
        out.insert(c.key, v["watermark"].as_str().unwrap().parse().unwrap());
    }
    out
}

const STREAMS: &[(&str, &str)] = &[("wdt.account_check/shop-01", "shop-01"), ("wdt.account_check/shop-02", "shop-02")];

#[tokio::test(flavor = "multi_thread")]
async fn every_simulated_record_arrives_once_with_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(3000, "0ms"));
    let expected = sim.records(KIND).await;
    assert_eq!(expected.len(), 3000);
    let (topic, wm_topic) = (unique("e2e-data"), unique("e2e-wm"));
    let cfg = write(
        dir.path(),
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .watermark_topic(&wm_topic)
            .transactional_id(&unique("e2e-txn"))
            .streams(STREAMS)
            .build(),
    );
    let started = Utc::now();
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "worker failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_topic_matches(&topic, &expected, STREAMS);

    // Caught up means each watermark reached the moment of the run minus the 1m settle lag,
    // within the 5 s margin that stops streams chasing the moving horizon.
    let wms = watermarks(&wm_topic);
    assert_eq!(wms.len(), 2);
    for (stream, wm) in &wms {
        assert!(*wm >= started - chrono::Duration::minutes(1) - chrono::Duration::seconds(5), "{stream} at {wm}");
    }

    // A second run resumes from the watermarks and emits nothing new.
    let again = run_until_caught_up(&cfg);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(consume_committed(&topic).len(), expected.len(), "a caught-up restart writes no duplicates");
    // Ops alert on ERROR lines: a clean restart (watermarks read to their end) logs none.
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("watermarks loaded") && stderr.contains("resumed=2"), "it resumed: {stderr}");
    let errors: Vec<&str> =
        stderr.lines().filter(|l| l.contains(" ERROR ") || l.contains("\"level\":\"ERROR\"")).collect();
    assert!(errors.is_empty(), "a clean restart logs no error: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_backfill_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    // Latency and 2h windows make the backfill long enough (about 140 windows) to kill it part-way.
    let sim = Simulator::start(dir.path(), &simulator_config(6000, "15ms"));
    let expected = sim.records(KIND).await;
    let (topic, wm_topic) = (unique("kill-data"), unique("kill-wm"));
    let cfg = write(
        dir.path(),
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .watermark_topic(&wm_topic)
            .transactional_id(&unique("kill-txn"))
            .max_span("2h")
            .streams(STREAMS)
            .build(),
    );
    let mut committed_after_kills = Vec::new();
    for kill in 0..3 {
        let mut worker = spawn_worker(&cfg, &["--until-caught-up"]);
        let _guard = KillOnDrop(vec![worker.id()]);
        let log = stderr_lines(&mut worker);
        wait_for_lines(&log, "window committed", 6 + kill * 3, LOG_DEADLINE, &mut Vec::new());
        worker.kill().unwrap(); // SIGKILL: no chance to finish the open transaction.
        worker.wait().unwrap();
        committed_after_kills.push(consume_committed(&topic).len());
    }
    let last = *committed_after_kills.last().unwrap();
    assert!(
        last > 0 && last < expected.len(),
        "kills landed part-way: {committed_after_kills:?} of {}",
        expected.len()
    );
    assert!(committed_after_kills.windows(2).all(|w| w[0] <= w[1]), "progress is kept across kills");

    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "resumed worker failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_topic_matches(&topic, &expected, STREAMS);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_appsecret_stops_the_stream_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(200, "0ms"));
    let (topic, wm_topic) = (unique("badsig-data"), unique("badsig-wm"));
    let secret = "not-the-real-secret-4711";
    let streams = &[("wdt.account_check/shop-01", "shop-01")];
    let cfg = write(
        dir.path(),
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .watermark_topic(&wm_topic)
            .transactional_id(&unique("badsig-txn"))
            .appsecret(secret)
            .streams(streams)
            .build(),
    );
    let out = run_until_caught_up(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a stopped stream fails the run: {stdout}\n{stderr}");
    assert!(stdout.contains("STOPPED") && stdout.contains("signature rejected"), "summary says why: {stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("stream stopped") && l.contains("signature rejected") && l.contains("shop-01")),
        "log says which stream and why: {stderr}"
    );
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "the appsecret is never printed");
    assert_eq!(consume_committed(&topic).len(), 0, "no record committed");
    assert!(watermarks(&wm_topic).is_empty(), "no watermark committed");
}

/// The value of one sample line `name{labels} value` in Prometheus text.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_progress_and_sigterm_stops_the_worker_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(500, "0ms"));
    let expected = sim.records(KIND).await;
    let (topic, wm_topic) = (unique("metrics-data"), unique("metrics-wm"));
    let streams = &[("wdt.account_check/shop-01", "shop-01")];
    let cfg_text = WorkerToml::new(&sim.base_url(), &topic)
        .watermark_topic(&wm_topic)
        .transactional_id(&unique("metrics-txn"))
        .streams(streams)
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"\n")
        .build();
    let cfg = write(dir.path(), "worker.toml", &cfg_text);
    // Without --until-caught-up the worker keeps polling until told to stop.
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let mut addr = None;
    read_log_until(&log, "caught up", LOG_DEADLINE, &mut Vec::new(), |line| {
        if let Some(i) = line.find("addr=") {
            addr = Some(line[i + 5..].split_whitespace().next().unwrap().to_owned());
        }
        line.contains("caught up")
    });
    let addr = addr.expect("worker logged its metrics address");
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let shop01 = expected.iter().filter(|r| r["shop_no"] == "shop-01").count() as f64;
    let s = "{stream=\"wdt.account_check/shop-01\"}";
    assert_eq!(metric(&text, &format!("tidemark_records_total{s}")), Some(shop01), "{text}");
    let lag = metric(&text, &format!("tidemark_watermark_lag_seconds{s}")).expect("lag exported");
    assert!((60.0..600.0).contains(&lag), "caught up with a 1m settle lag: lag {lag}");
    let ok = metric(&text, "tidemark_api_requests_total{outcome=\"ok\",source=\"wdt\"}").expect("requests counted");
    assert!(ok >= 6.0, "at least one request per day of data: {ok}");
    assert!(metric(&text, "tidemark_api_request_duration_seconds_count{source=\"wdt\"}").unwrap() >= ok);
    assert!(metric(&text, "tidemark_transactions_total{outcome=\"committed\"}").unwrap() >= 6.0);
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    let status = std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    rest_of(&log, LOG_DEADLINE, &mut rest);
    let exit = wait_within(&mut worker, LOG_DEADLINE).expect("the worker exits after SIGTERM");
    assert!(exit.success(), "SIGTERM ends the run with exit 0: {exit:?}\n{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("shutdown requested")), "{}", rest.join("\n"));
    assert_eq!(consume_committed(&topic).len() as f64, shop01);
}

/// A busy shop with a long lookback: 25,000 records a day, a 12 h lookback. The watermark
/// record of version 1 kept `[key, hash, seen]` as text, about 52 bytes a record: over Kafka's
/// 1 MB here, so every commit of the stream failed forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_lookback_on_a_busy_stream_fits_its_watermark_in_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        "listen = \"127.0.0.1:0\"\n[wdt]\nsid = \"test-sid\"\nappkey = \"test-appkey\"\nappsecret = \"test-secret\"\n[wdt.account_check]\nseed = 21\nrecords = 50000\nfrom = \"2d\"\nuntil = \"1h\"\nshops = [\"shop-01\"]\n",
    );
    let expected = sim.records(KIND).await;
    let streams = &[("wdt.account_check/shop-01", "shop-01")];
    let run = |limit: Option<usize>| {
        let (topic, wm_topic) = (unique("busy-data"), unique("busy-wm"));
        let mut b = WorkerToml::new(&sim.base_url(), &topic)
            .watermark_topic(&wm_topic)
            .transactional_id(&unique("busy-txn"))
            .start("3d")
            .lookback("12h")
            .streams(streams);
        if let Some(limit) = limit {
            b = b.kafka_extra(&format!("watermark_max_bytes = {limit}"));
        }
        let out = run_until_caught_up(&write(dir.path(), "busy.toml", &b.build()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (topic, wm_topic, stderr)
    };

    let (topic, wm_topic, stderr) = run(None);
    assert_topic_matches(&topic, &expected, streams);
    assert!(!stderr.contains("forgot the oldest lookback hashes"), "nothing forgotten at the default limit");
    let last = consume_committed(&wm_topic).pop().unwrap();
    let bytes = last.value.unwrap();
    let state = tidemark::domain::WatermarkState::from_bytes(&last.key, &bytes).unwrap();
    assert!(state.recent_len() > 20_000, "the lookback holds a day's half: {}", state.recent_len());
    assert!(state.recent_len() * 52 > 1_000_000, "version 1 would not have fit in a Kafka message");
    assert!(bytes.len() < 1_000_000 / 2, "{} bytes for {} hashes", bytes.len(), state.recent_len());

    // Under a limit too small for the lookback, the oldest hashes go: the stream still commits,
    // loses nothing, says so, and may emit a re-read record again.
    let (topic, wm_topic, stderr) = run(Some(65_536));
    assert!(stderr.contains("forgot the oldest lookback hashes"), "{stderr}");
    assert!(consume_committed(&wm_topic).iter().all(|c| c.value.as_ref().unwrap().len() <= 65_536));
    let keys: HashSet<String> = consume_committed(&topic).into_iter().map(|c| c.key).collect();
    let want: HashSet<String> = expected.iter().map(|r| r["account_check_no"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, want, "every record arrived");
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_read_concurrently_commit_in_window_order() {
    let dir = tempfile::tempdir().unwrap();
    // Three in ten responses take 300 ms more, so windows read ahead finish out of order.
    let sim_toml = simulator_config(2000, "20ms").replace("[faults]\n", "[faults]\nseed = 5\nslow_rate = 0.3\n");
    let sim = Simulator::start(dir.path(), &sim_toml);
    let (topic, wm_topic) = (unique("order-data"), unique("order-wm"));
    let cfg = write(
        dir.path(),
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .watermark_topic(&wm_topic)
            .transactional_id(&unique("order-txn"))
            .requests_per_second(1000)
            // Without lookback windows do not overlap, so their reads run concurrently.
            .lookback("0s")
            .max_span("3h")
            .page_size(20)
            .stream_extra("windows_in_flight = 8")
            .streams(STREAMS)
            .build(),
    );
    let out = Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,tidemark_engine::worker::stream=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // The scenario happened: some window finished reading before one planned earlier.
    let read_order: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("window read") && l.contains("shop-01"))
        .filter_map(|l| l.split("window=[").nth(1)?.split(',').next())
        .collect();
    assert!(read_order.len() > 10, "{stderr}");
    assert!(read_order.windows(2).any(|p| p[0] > p[1]), "reads finished out of order: {read_order:?}");

    // Every watermark record, in the order Kafka holds them: strictly forward, per stream.
    let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut commits = 0;
    for c in consume_committed(&wm_topic) {
        let v: Value = serde_json::from_slice(c.value.as_ref().unwrap()).unwrap();
        let wm: DateTime<Utc> = v["watermark"].as_str().unwrap().parse().unwrap();
        if let Some(prev) = last.insert(c.key.clone(), wm) {
            assert!(wm > prev, "{}: watermark {wm} committed after {prev}", c.key);
        }
        commits += 1;
    }
    assert!(commits > 2 * 40, "5 days in 3 h windows per stream: {commits}");
    assert_topic_matches(&topic, &sim.records(KIND).await, STREAMS);
}

/// A single process settles, before it reads its watermarks, each partition of its topics
/// where a transaction stays open (here another producer's, held open on purpose; after a lost
/// marker it is this worker's own): it warns naming the topic, counts each partition in
/// `tidemark_hanging_transactions_settled_total`, and its streams go on to commit every record
/// exactly once, visible to readers once the other producer lets go.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_process_settles_open_partitions_before_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(300, "0ms"));
    let expected = sim.records(KIND).await;
    let (topic, wm_topic) = (unique("settle-data"), unique("settle-wm"));
    let cfg_text = WorkerToml::new(&sim.base_url(), &topic)
        .watermark_topic(&wm_topic)
        .transactional_id(&unique("settle-txn"))
        .streams(STREAMS)
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"\n")
        .build();
    let cfg = write(dir.path(), "worker.toml", &cfg_text);
    // The ledger's entries commit with the windows: a transaction stuck there would stall
    // `tidemark reconcile`, so it is checked too.
    let ledger_topic = tidemark::config::Config::load(&cfg).unwrap().kafka.ledger_topic;
    let (other, partitions) = hold_transactions_open(&cfg, &[&topic, &ledger_topic]).await;
    let ledger_partitions = partitions[1];
    assert_eq!(partitions[0], 3, "the worker's topic_partitions");

    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let (mut addr, mut seen) = (None, Vec::new());
    let mut caught_up = 0;
    read_log_until(&log, "both streams caught up", LOG_DEADLINE, &mut seen, |line| {
        addr = addr.take().or_else(|| metrics_addr(line));
        caught_up += line.contains("caught up") as usize;
        caught_up == STREAMS.len()
    });
    let settled: Vec<&String> = seen.iter().filter(|l| l.contains("settling it as committed")).collect();
    let of = |t: &str| settled.iter().filter(|l| l.contains(&format!("topic={t} "))).count();
    assert_eq!(settled.len(), 3 + ledger_partitions, "one warning per partition held:\n{}", seen.join("\n"));
    assert_eq!((of(&topic), of(&ledger_topic)), (3, ledger_partitions), "{}", seen.join("\n"));
    let addr = addr.expect("the worker logged its metrics address");
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    for (t, n) in [(&topic, 3), (&ledger_topic, ledger_partitions)] {
        let counted = metric(&text, &format!("tidemark_hanging_transactions_settled_total{{topic=\"{t}\"}}"));
        assert_eq!(counted, Some(n as f64), "each settled partition of {t} counted once:\n{text}");
    }
    let watermarks_before = watermarks(&wm_topic);
    assert_eq!(watermarks_before.len(), STREAMS.len(), "both streams committed watermarks while held");

    // The other producer lets go: every record is there once, with exact values.
    use rdkafka::producer::Producer;
    other.abort_transaction(std::time::Duration::from_secs(30)).unwrap();
    assert_topic_matches(&topic, &expected, STREAMS);
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    let exit = wait_within(&mut worker, LOG_DEADLINE).expect("the worker exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}
