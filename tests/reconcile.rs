//! The ledger and `tidemark reconcile` (issue #26) against the real broker: a clean run
//! matches; a record the vendor adds to a committed window after its lookback is reported as
//! that window's changed total, `--repair` backfills it and the next run is clean; records
//! deleted from the topic are reported as missing from Kafka.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// `tidemark reconcile --output json` over the last week; its exit code and report.
fn reconcile(cfg: &Path, extra: &[&str]) -> (i32, Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["reconcile", "--output", "json", "--from", "7d", "--config"]).arg(cfg).args(extra);
    let out = output_within(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("reconcile printed no JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The one stream's result in a report.
fn stream(report: &Value) -> &Value {
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{report}");
    &streams[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_reports_late_and_missing_records_and_repair_levels_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(600, "0ms"));
    let topic = unique("reconcile-data");
    let worker = WorkerToml::new(&sim.base_url(), &topic)
        .transactional_id(&unique("reconcile-txn"))
        .kafka_extra(&format!("ledger_topic = \"{topic}-ledger\""))
        .partitions(1)
        .stream("rec/shop-01", "shop-01")
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"")
        .build();
    let cfg = write(dir.path(), "worker.toml", &worker);
    let run = run_until_caught_up(&cfg);
    assert!(run.status.success(), "worker failed: {}", tail(&String::from_utf8_lossy(&run.stderr), 30));

    // Every window the worker committed matches the vendor and the topic.
    let (code, report) = reconcile(&cfg, &[]);
    let s = stream(&report);
    let windows = s["windows_checked"].as_u64().unwrap();
    assert!(windows >= 5, "five days of windows: {report}");
    assert_eq!((code, s["matching"].as_u64().unwrap()), (0, windows), "a clean run: {report}");
    // The consumers' guide checks the same from the ledger and the topic alone, in Python.
    let ledger_topic = format!("{topic}-ledger");
    let check = || run_guide_snippet("check_ledger.py", &[kafka(), &ledger_topic, &topic, "rec/shop-01"]);
    let lines = check();
    assert_eq!(lines.len() as u64, windows, "one line per window: {lines:?}");
    assert!(lines.iter().all(|(_, v)| v == "ok"), "{lines:?}");
    // The guide's console-consumer command prints entries with exactly the fields it lists.
    let entries = run_ledger_console_snippet(dir.path(), &ledger_topic);
    assert!(entries.len() as u64 >= windows, "an entry per committed window: {entries:?}");
    let documented = ledger_fields_in_guide();
    for (key, entry) in &entries {
        assert_eq!(key, "rec/shop-01", "keyed by the stream id");
        let fields: std::collections::BTreeSet<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            documented.iter().map(String::as_str).collect(),
            "the guide lists the entry's fields: {entry}"
        );
    }

    // The vendor adds a record to a window three days back, long past the 10-minute lookback.
    let mut late = sim.records("wdt.account_check").await[0].clone();
    late["account_check_no"] = json!("AC-LATE-0001");
    late["shop_no"] = json!("shop-01");
    let at = chrono::Utc::now() - chrono::Duration::days(3);
    sim.insert("wdt.account_check", at, "shop-01", &late).await;
    let (code, report) = reconcile(&cfg, &[]);
    let s = stream(&report);
    assert_eq!((code, s["vendor_changed"].as_u64()), (1, Some(1)), "{report}");
    let d = &s["differences"][0];
    let (start, end) = tidemark::domain::ledger::parse_window(d["window"].as_str().unwrap()).unwrap();
    assert!(start <= at && at < end, "the late record's window is named: {d}");
    assert_eq!(d["what"], "vendor total changed", "{d}");
    assert_eq!(d["found"].as_u64(), d["ledger"].as_u64().map(|n| n + 1), "exactly one more: {d}");

    // The result is published: `streams list` shows it beside the lookback, and a worker
    // running the stream exports it.
    let mut cmd = Command::new(BIN);
    cmd.args(["streams", "list", "--output", "json", "--config"]).arg(&cfg);
    let list: Value = serde_json::from_slice(&output_within(cmd, Duration::from_secs(60)).stdout).unwrap();
    let row = list.as_array().unwrap().iter().find(|r| r["stream"] == "rec/shop-01").unwrap();
    let last = row["last_reconcile"].as_str().unwrap_or_default();
    assert!(last.contains(&format!("{} of {windows} windows match, late records: 1", windows - 1)), "{row}");
    assert_eq!(row["lookback"], "10m", "{row}");
    let mut worker = spawn_worker(&cfg, &[]);
    let _kill = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let mut seen = Vec::new();
    let mut addr = None;
    read_log_until(&log, "the metrics address", Duration::from_secs(60), &mut seen, |l| {
        addr = metrics_addr(l);
        addr.is_some()
    });
    let url = format!("http://{}/metrics", addr.unwrap());
    let series = |name: &str| format!("{name}{{stream=\"rec/shop-01\"}}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if metric(&text, &series("tidemark_reconcile_late_records")).is_some() || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(metric(&text, &series("tidemark_reconcile_late_records")), Some(1.0), "{text}");
    assert_eq!(metric(&text, &series("tidemark_reconcile_differing_windows")), Some(1.0));
    assert_eq!(metric(&text, &series("tidemark_reconcile_windows")), Some(windows as f64));
    let _ = worker.kill();
    let _ = worker.wait();

    // --repair backfills that window; the late record is in Kafka and the next run is clean.
    let (_, report) = reconcile(&cfg, &["--repair"]);
    assert_eq!(report["repaired"].as_array().map(Vec::len), Some(1), "{report}");
    assert!(consume_committed(&topic).iter().any(|c| c.key == "AC-LATE-0001"), "the late record was written");
    let (code, report) = reconcile(&cfg, &[]);
    assert_eq!(code, 0, "clean after the repair: {report}");

    // The first records of the (one-partition) topic deleted: their windows miss them.
    let held = consume_committed(&topic).len();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka()).create().unwrap();
    let mut before = TopicPartitionList::new();
    before.add_partition_offset(&topic, 0, Offset::Offset(5)).unwrap();
    admin.delete_records(&before, &AdminOptions::new()).await.unwrap();
    let deleted = (held - consume_committed(&topic).len()) as u64;
    assert!(deleted > 0, "records were deleted");
    let (code, report) = reconcile(&cfg, &[]);
    let s = stream(&report);
    let missing: Vec<&Value> =
        s["differences"].as_array().unwrap().iter().filter(|d| d["what"] == "missing from kafka").collect();
    assert_eq!((code, s["missing_from_kafka"].as_u64()), (1, Some(missing.len() as u64)), "{report}");
    let short: u64 = missing.iter().map(|d| d["ledger"].as_u64().unwrap() - d["found"].as_u64().unwrap()).sum();
    assert_eq!(short, deleted, "the windows miss exactly the deleted records: {report}");
    let differs: Vec<String> = check().into_iter().filter(|(_, v)| v != "ok").map(|(w, _)| w).collect();
    let missing_windows: Vec<String> = missing.iter().map(|d| d["window"].as_str().unwrap().to_owned()).collect();
    assert_eq!(differs, missing_windows, "the guide's program finds the same windows");
}

/// A record the vendor shows late, inside the lookback, is caught by the next re-read and
/// counted as late data with how late it was (`tidemark_late_records_total`,
/// `tidemark_late_record_delay_seconds`, from the endpoint's `window_field`); records read for
/// the first time and unchanged re-reads are not.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookback_re_read_counts_the_late_record_it_finds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &format!("listen = \"127.0.0.1:0\"\n{}", qimen_simulator(200)));
    let topic = unique("late-data");
    let worker = WorkerToml::new(&sim.base_url(), &topic)
        .qimen()
        .transactional_id(&unique("late-txn"))
        .stream("late/shop-01", "shop-01")
        .stream_extra("poll_interval = \"1s\"")
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"")
        .build();
    let cfg = write(dir.path(), "worker.toml", &worker);
    let mut child = spawn_worker(&cfg, &[]);
    let _kill = KillOnDrop(vec![child.id()]);
    let log = stderr_lines(&mut child);
    let mut seen = Vec::new();
    let mut addr = None;
    read_log_until(&log, "caught up", Duration::from_secs(120), &mut seen, |l| {
        addr = addr.take().or_else(|| metrics_addr(l));
        l.contains("caught up")
    });
    let url = format!("http://{}/metrics", addr.expect("the metrics address is logged before catching up"));
    let series = |text: &str, name: &str| metric(text, &format!("{name}{{stream=\"late/shop-01\"}}"));
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(series(&text, "tidemark_late_records_total"), Some(0.0), "nothing late in a first read");

    // Four minutes back: committed already (the settle is 1m), inside the 10m lookback.
    let mut late = sim.records("qimen.stockin_refund").await[0].clone();
    let at = chrono::Utc::now() - chrono::Duration::minutes(4);
    late["order_no"] = json!("RK-LATE-0001");
    late["stockin_time"] = json!(tidemark::domain::time::format_beijing(at, tidemark::domain::time::DATETIME));
    sim.insert("qimen.stockin_refund", at, "shop-01", &late).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if series(&text, "tidemark_late_records_total").is_some_and(|n| n > 0.0) || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Later polls re-read the same span: the record is then known, not late again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(series(&text, "tidemark_late_records_total"), Some(1.0), "the late record counted once");
    assert_eq!(series(&after, "tidemark_late_records_total"), Some(1.0), "and only once");
    let delay = series(&after, "tidemark_late_record_delay_seconds_sum").unwrap();
    assert!((230.0..400.0).contains(&delay), "found about four minutes after its time: {delay}");
    assert!(consume_committed(&topic).iter().any(|c| c.key == "RK-LATE-0001"), "and written");
}

/// Runs the guide's `kafka-console-consumer.sh` command as printed, on this broker and `topic`,
/// with Kafka's own ConsoleConsumer (the jars of `dev/kafka`; the script is a shim adding only
/// `--timeout-ms`, so that it ends); its `key<TAB>entry` lines.
fn run_ledger_console_snippet(dir: &Path, topic: &str) -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cp = Command::new(root.join("dev/kafka")).arg("classpath").output().expect("dev/kafka classpath");
    assert!(cp.status.success(), "dev/kafka classpath failed");
    let cp = String::from_utf8(cp.stdout).unwrap().trim().lines().last().unwrap().to_owned();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = write(
        &bin,
        "kafka-console-consumer.sh",
        &format!(
            "#!/usr/bin/env bash\nexec java -Dlog4j2.configurationFile='{log4j}' -cp '{cp}' \
             org.apache.kafka.tools.consumer.ConsoleConsumer --timeout-ms 10000 \"$@\"\n",
            log4j = tools_log4j(&cp).display()
        ),
    );
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let command = guide_snippet("ledger-console.sh");
    assert!(command.contains("localhost:9092") && command.contains("tidemark.ledger"), "{command}");
    let command = command.replace("localhost:9092", kafka()).replace("tidemark.ledger", topic);
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &command]).env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()));
    let out = output_within(cmd, Duration::from_secs(90));
    assert!(out.status.success(), "the console consumer failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or_else(|| panic!("not key<TAB>entry: {l}"));
            (k.to_owned(), serde_json::from_str(v).unwrap_or_else(|e| panic!("{e}: {v}")))
        })
        .collect()
}

/// The tools' log configuration `dev/kafka` writes beside its `libs/` (warnings, to stderr).
fn tools_log4j(classpath: &str) -> std::path::PathBuf {
    let jar = Path::new(classpath.split(':').next().unwrap());
    let file = jar.parent().and_then(Path::parent).unwrap().join("tools-log4j2.xml");
    assert!(file.exists(), "{} (written by dev/kafka)", file.display());
    file
}

/// The field names of the guide's ledger table (its first column's `code` spans).
fn ledger_fields_in_guide() -> Vec<String> {
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/consuming.md")).unwrap();
    let table = guide.split_once("| field | what it holds |").expect("the guide's ledger table").1;
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| l.split('|').nth(1).unwrap().split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}
