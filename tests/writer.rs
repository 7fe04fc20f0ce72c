//! Seed 001 end to end against the real broker: 奇门 refund stock-ins → tidemark → Kafka →
//! the writer → the K3Cloud simulator, which must hold exactly one 销售退货单 per stock-in
//! (lines and amounts exact) after SIGKILLs of the writer, with every stock-in it rejected
//! in the dead-letter topic and nothing else lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::*;
use serde_json::Value;

fn simulator_toml(extra: &str) -> String {
    format!("listen = \"127.0.0.1:0\"\n{}", refund_simulator_sections(extra))
}

/// The seed 001 simulator, with one stock-in no bill can be made of added to its data set.
async fn start_simulator(dir: &std::path::Path, k3cloud_extra: &str) -> Simulator {
    let sim = Simulator::start(dir, &simulator_toml(k3cloud_extra));
    add_stockin_without_lines(&sim).await;
    sim
}

fn config(sim: &Simulator, topic: &str, dlq: &str, group: &str, writer_extra: &str) -> String {
    format!(
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{}\"\nwatermark_topic = \"{topic}.wm\"\ntopic_partitions = 3\n{}",
        kafka(),
        unique("writer-txn"),
        refund_pipeline_sections(&sim.base_url(), topic, group, dlq, writer_extra)
    )
}

fn write_until_idle(cfg: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["write", "--until-idle", "--config"]).arg(cfg).env("RUST_LOG", "info");
    output_within(cmd, RUN_DEADLINE)
}

/// Starts the writer and SIGKILLs it once it has committed `batches` batches.
fn kill_writer_after(cfg: &std::path::Path, batches: usize) {
    let mut child = spawn_writer(cfg);
    let lines = stderr_lines(&mut child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = 0;
    while seen < batches && std::time::Instant::now() < deadline {
        match lines.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(line) if line.contains("batch committed") => seen += 1,
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen, batches, "the writer committed {batches} batches before the kill");
}

async fn bills(sim: &Simulator) -> Vec<Value> {
    reqwest::get(format!("{}/_simulator/k3cloud/bills", sim.base_url())).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refund_stockin_becomes_exactly_one_bill_or_a_dead_letter_after_kills() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(dir.path(), "").await;
    let (topic, dlq) = (unique("k3-refunds"), unique("k3-rejected"));
    let cfg = write(dir.path(), "tidemark.toml", &config(&sim, &topic, &dlq, &unique("k3-group"), ""));
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stockins = sim.records("qimen.stockin_refund").await;
    assert_eq!(consume_committed(&topic).len(), stockins.len(), "every stock-in is in Kafka first");

    kill_writer_after(&cfg, 3);
    let saved_after_kill = bills(&sim).await.len();
    kill_writer_after(&cfg, 2);
    let out = write_until_idle(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let bills = bills(&sim).await;
    assert!(0 < saved_after_kill && saved_after_kill < bills.len(), "the kills landed part-way");
    assert_each_stockin_once(&stockins, &bills, &dlq, true);
}

/// K3Cloud saves every third batch but its answer is lost (the connection cut after the
/// save), as a timeout after the commit would lose it: the writer cannot tell what was saved,
/// so it must find those bills by `FBillNo` and count them existing, never save one again nor
/// dead-letter it (K3Cloud refuses a second save of a number as "已经存在").
#[tokio::test(flavor = "multi_thread")]
async fn a_save_whose_answer_was_lost_is_found_existing_and_never_saved_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(dir.path(), "lose_save_answer_every = 3").await;
    let (topic, dlq) = (unique("k3l-refunds"), unique("k3l-rejected"));
    let cfg = write(dir.path(), "tidemark.toml", &config(&sim, &topic, &dlq, &unique("k3l-group"), ""));
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = write_until_idle(&cfg);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let stats: Value =
        reqwest::get(format!("{}/_simulator/k3cloud/stats", sim.base_url())).await.unwrap().json().await.unwrap();
    let lost = stats["save_answers_lost"].as_u64().unwrap();
    assert!(lost >= 2, "several saves lost their answer: {stats}");
    let existing = writer_outcome(&stdout, "k3", "existing");
    assert!(existing > 0, "the bills of the lost answers were found existing: {stdout}");
    assert_each_stockin_once(&sim.records("qimen.stockin_refund").await, &bills(&sim).await, &dlq, false);
}

/// How many records the writer `id` settled with `outcome`, from the summary `tidemark
/// write` prints as it stops: `writer k3: topic T in N batches: existing 3, saved 120, ..`.
fn writer_outcome(stdout: &str, id: &str, outcome: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("writer {id}: ")))
        .unwrap_or_else(|| panic!("no summary of writer {id}: {stdout}"));
    let counts = line.rsplit(": ").next().unwrap();
    counts
        .split(", ")
        .find_map(|c| c.strip_prefix(&format!("{outcome} ")))
        .map_or(0, |n| n.parse().unwrap_or_else(|_| panic!("{line}")))
}

/// Exactly what seed 001 expects of each stock-in (`expected_outcome`, worked out from the
/// stock-in alone): one bill with its lines, or one dead letter with the reason (the
/// mapping's, or the field K3Cloud named), and nothing else: no bill or letter for anything
/// not served, no bill saved twice, none missing. A writer SIGKILLed between writing a
/// batch's dead letters and committing its offsets writes them again on the re-read:
/// with `after_kills` a letter may repeat, but only as a copy of the same record's.
fn assert_each_stockin_once(stockins: &[Value], bills: &[Value], dlq: &str, after_kills: bool) {
    let mut by_no: BTreeMap<String, &Value> = BTreeMap::new();
    for b in bills.iter().map(|b| &b["Model"]) {
        let no = b["FBillNo"].as_str().unwrap().to_owned();
        assert!(by_no.insert(no.clone(), b).is_none(), "bill {no} saved twice");
    }
    let mut letters: BTreeMap<String, Value> = BTreeMap::new();
    for c in consume_committed(dlq) {
        let v: Value = serde_json::from_slice(c.value.as_ref().unwrap()).unwrap();
        let key = v["key"].as_str().unwrap_or_default().to_owned();
        let copy = |l: &Value| (l["partition"].clone(), l["offset"].clone(), l["field"].clone(), l["error"].clone());
        if let Some(earlier) = letters.get(&key) {
            assert!(after_kills && copy(earlier) == copy(&v), "{key} dead-lettered twice: {earlier} and {v}");
        }
        letters.insert(key, v);
    }
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for s in stockins {
        let no = s["order_no"].as_str().unwrap();
        let expected = expected_outcome(s);
        let (bill, letter) = (by_no.get(no), letters.get(no));
        match &expected {
            Expected::Bill => {
                assert!(letter.is_none(), "{no} should be a bill, but was dead-lettered: {letter:?}");
                assert_bill_matches(bill.unwrap_or_else(|| panic!("{no} was lost: no bill")), s);
                *seen.entry("bill").or_default() += 1;
            }
            Expected::Unmappable(reason) => {
                assert!(bill.is_none(), "{no} cannot be a bill ({reason}), yet one was saved");
                let letter = letter.unwrap_or_else(|| panic!("{no} was lost: no dead letter ({reason})"));
                assert_eq!(letter["field"], "", "{no}: the writer's own refusal names no field: {letter}");
                assert!(letter["error"].as_str().unwrap().contains(reason.as_str()), "{no}: {reason}: {letter}");
                *seen.entry("unmappable").or_default() += 1;
            }
            Expected::Refused(field) => {
                assert!(bill.is_none(), "K3Cloud refuses {no} ({field}), yet a bill was saved");
                let letter = letter.unwrap_or_else(|| panic!("{no} was lost: no dead letter ({field})"));
                assert_eq!(letter["field"], *field, "{no}: K3Cloud's first FieldName: {letter}");
                assert!(!letter["error"].as_str().unwrap().is_empty(), "{letter}");
                assert_eq!(letter["document"]["FBillNo"], no, "{no}: the bill that was refused: {letter}");
                *seen.entry("refused").or_default() += 1;
            }
        }
    }
    let served: BTreeSet<&str> = stockins.iter().map(|s| s["order_no"].as_str().unwrap()).collect();
    let strays: Vec<&String> = by_no.keys().chain(letters.keys()).filter(|k| !served.contains(k.as_str())).collect();
    assert!(strays.is_empty(), "bills or dead letters for no stock-in served: {strays:?}");
    assert_eq!(by_no.len(), seen.get("bill").copied().unwrap_or(0), "no bill beyond those expected");
    // The data set exercises every outcome, so none of these checks is vacuous.
    for outcome in ["bill", "unmappable", "refused"] {
        assert!(seen.get(outcome).is_some_and(|n| *n > 0), "no stock-in was expected to be a {outcome}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_writer_logs_in_again_when_its_session_expires() {
    let dir = tempfile::tempdir().unwrap();
    // The server drops each session after 7 requests, as a restart would.
    let sim = start_simulator(dir.path(), "session_max_requests = 7").await;
    let (topic, dlq) = (unique("k3s-refunds"), unique("k3s-rejected"));
    let extra = "auth = \"session\"\n";
    let cfg = write(dir.path(), "tidemark.toml", &config(&sim, &topic, &dlq, &unique("k3s-group"), extra));
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = write_until_idle(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("k3cloud session lost; logging in again"), "{stderr}");
    assert_no_false_partition_eof(&stderr);
    let stats: Value =
        reqwest::get(format!("{}/_simulator/k3cloud/stats", sim.base_url())).await.unwrap().json().await.unwrap();
    assert!(stats["logins"].as_u64().unwrap() >= 2 && stats["sessions_lost"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["auth_failures"], 0, "no request went without its session: {stats}");
    assert_each_stockin_once(&sim.records("qimen.stockin_refund").await, &bills(&sim).await, &dlq, false);
}

/// Reading to the end of a partition is how `--until-idle` knows it is done, not an error.
fn assert_no_false_partition_eof(stderr: &str) {
    let false_alarms: Vec<&str> =
        stderr.lines().filter(|l| l.contains("ERROR") && l.contains("PartitionEOF")).collect();
    assert!(false_alarms.is_empty(), "end of partition logged as an error: {false_alarms:#?}");
}

/// The bill holds the stock-in's number, customer, warehouse and lines exactly.
fn assert_bill_matches(bill: &Value, s: &Value) {
    let no = s["order_no"].as_str().unwrap();
    let lines = bill["FEntity"].as_array().unwrap();
    let details = s["details_list"].as_array().unwrap();
    assert_eq!(lines.len(), details.len(), "{no}: one line per detail");
    for (l, d) in lines.iter().zip(details) {
        assert_eq!(l["FMaterialId"]["FNumber"], d["spec_no"], "{no}");
        assert_eq!(decimal(&l["FRealQty"]), decimal(&d["num"]), "{no}: quantity");
        if !d["tax_price"].as_str().unwrap_or("").is_empty() {
            assert_eq!(decimal(&l["FTaxPrice"]), decimal(&d["tax_price"]), "{no}: price");
        }
    }
    for l in lines {
        assert_eq!(l["FStockId"]["FNumber"], s["warehouse_no"], "{no}: warehouse");
    }
    let customer = s["customer_no"].as_str().filter(|c| !c.is_empty()).unwrap_or("RETAIL");
    assert_eq!(bill["FRetcustId"]["FNumber"], customer, "{no}");
}

/// Decimal text compared by value: `2.0000` and `2` are the same amount.
fn decimal(v: &Value) -> String {
    let t = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let t = if t.contains('.') { t.trim_end_matches('0').trim_end_matches('.').to_owned() } else { t };
    if t == "-0" || t.is_empty() { "0".into() } else { t }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_whose_registry_is_down_reads_the_batch_again_and_dead_letters_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(dir.path(), "").await;
    let (topic, dlq, group) = (unique("k3-framed"), unique("k3-framed-dlq"), unique("k3-framed-group"));
    let with_registry = |url: &str| {
        format!(
            "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{}\"\nwatermark_topic = \"{topic}.wm\"\nvalue_format = \"confluent\"\n\n[schema_registry]\nurl = \"{url}\"\nretry_for = \"1s\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n{}",
            kafka(),
            unique("framed-txn"),
            refund_pipeline_sections(&sim.base_url(), &topic, &group, &dlq, "")
        )
    };
    // The worker registers the schema and writes Confluent-framed values.
    let good = write(dir.path(), "good.toml", &with_registry(registry()));
    let out = run_until_caught_up(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stockins = sim.records("qimen.stockin_refund").await;

    // The writer's registry is a port nothing listens on: it cannot learn any value's schema.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = write(dir.path(), "down.toml", &with_registry(&format!("http://{dead}")));
    let mut writer = spawn_writer(&down);
    let lines = stderr_lines(&mut writer);
    let (mut addr, mut retries) = (None, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while retries < 2 {
        assert!(std::time::Instant::now() < deadline, "the writer never met the registry outage");
        let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(1)) else { continue };
        addr = addr.or_else(|| metrics_addr(&line));
        if line.contains("schema registry unavailable; reading the batch again") {
            retries += 1;
        }
    }
    let metrics = reqwest::get(format!("http://{}/metrics", addr.expect("the writer serves metrics")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tidemark_writer_registry_errors_total{writer=\"k3\"} "))
        .expect("the registry error series")
        .parse()
        .unwrap();
    assert!(counted >= 2.0, "{metrics}");
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(bills(&sim).await.is_empty(), "nothing is delivered without the schema");
    assert!(consume_if_exists(&dlq).unwrap_or_default().is_empty(), "a registry outage dead-letters nothing");

    // With the registry back, the same group delivers every stock-in (or dead-letters it).
    let out = write_until_idle(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_each_stockin_once(&stockins, &bills(&sim).await, &dlq, false);
}

/// `tidemark reconcile --writer k3 --from 7d` and its exit code, stdout and stderr.
fn reconcile_writer(cfg: &std::path::Path, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["reconcile", "--writer", "k3", "--from", "7d", "--config"]).arg(cfg);
    if json {
        cmd.args(["--output", "json"]);
    }
    let out = output_within(cmd, std::time::Duration::from_secs(120));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout.into_owned(), stderr.into_owned())
}

fn reconcile_writer_json(cfg: &std::path::Path) -> (i32, Value) {
    let (code, stdout, stderr) = reconcile_writer(cfg, true);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}\n{stderr}"));
    (code, report)
}

/// Issue #26: after the pipeline every stock-in is a bill with the same lines and amounts or
/// a dead letter with its reason (exit 0). Then a bill edited in K3Cloud is reported by line
/// and field with both values, a deleted one as missing, and nothing else (exit 1).
#[tokio::test(flavor = "multi_thread")]
async fn reconcile_writer_reports_an_edited_and_a_deleted_bill_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(dir.path(), "").await;
    let (topic, dlq) = (unique("k3r-refunds"), unique("k3r-rejected"));
    let cfg = write(dir.path(), "tidemark.toml", &config(&sim, &topic, &dlq, &unique("k3r-group"), ""));
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = write_until_idle(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stockins = sim.records("qimen.stockin_refund").await;
    let saved = bills(&sim).await;
    let letters = stockins.iter().filter(|s| expected_outcome(s) != Expected::Bill).count() as u64;

    let (code, report) = reconcile_writer_json(&cfg);
    let count = |k: &str| report[k].as_u64().unwrap_or_else(|| panic!("{k}: {report}"));
    assert_eq!(count("records_checked"), stockins.len() as u64, "every stock-in in range: {report}");
    assert_eq!(count("matching"), saved.len() as u64, "every bill matches: {report}");
    assert_eq!(count("dead_lettered"), letters, "{report}");
    assert_eq!((code, count("missing"), count("different")), (0, 0, 0), "a clean run: {report}");
    let dead = report["dead_letters"].as_array().unwrap();
    assert!(dead.iter().all(|l| !l["reason"].as_str().unwrap().is_empty()), "each with its reason: {report}");
    let no_lines = dead.iter().find(|l| l["key"] == NO_LINES).unwrap_or_else(|| panic!("{NO_LINES}: {report}"));
    assert!(no_lines["reason"].as_str().unwrap().contains("no detail lines"), "{no_lines}");

    // Someone changes one bill's first line quantity in K3Cloud and deletes another.
    let (edited, deleted) = (&saved[0]["Model"], &saved[1]["Model"]);
    let (edited_no, deleted_no) = (edited["FBillNo"].as_str().unwrap(), deleted["FBillNo"].as_str().unwrap());
    let was = edited["FEntity"][0]["FRealQty"].as_str().unwrap();
    let http = reqwest::Client::new();
    let url = |no: &str| format!("{}/_simulator/k3cloud/bills/{no}", sim.base_url());
    let timeout = std::time::Duration::from_secs(10);
    let patched = http
        .patch(url(edited_no))
        .json(&serde_json::json!({"lines": [{"line": 1, "FRealQty": "987"}]}))
        .timeout(timeout)
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success(), "{:?}", patched.text().await);
    let gone = http.delete(url(deleted_no)).timeout(timeout).send().await.unwrap();
    assert!(gone.status().is_success(), "{:?}", gone.text().await);

    let (code, report) = reconcile_writer_json(&cfg);
    let count = |k: &str| report[k].as_u64().unwrap_or_else(|| panic!("{k}: {report}"));
    assert_eq!((code, count("missing"), count("different")), (1, 1, 1), "{report}");
    assert_eq!(count("matching"), saved.len() as u64 - 2, "{report}");
    let diffs = report["differences"].as_array().unwrap();
    let by_key: BTreeMap<&str, &Value> = diffs.iter().map(|d| (d["key"].as_str().unwrap(), d)).collect();
    assert_eq!((diffs.len(), by_key.len()), (2, 2), "exactly the two bills: {report}");
    assert_eq!(by_key[deleted_no]["what"], "missing", "{report}");
    let changed = by_key[edited_no];
    assert_eq!(changed["what"], "different", "{changed}");
    let fields = changed["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "only the quantity changed: {changed}");
    assert_eq!(
        (&fields[0]["line"], &fields[0]["field"], &fields[0]["expected"]),
        (&serde_json::json!(1), &serde_json::json!("FRealQty"), &serde_json::json!(was)),
        "{changed}"
    );
    assert_eq!(decimal(&fields[0]["found"]), "987", "{changed}");

    let (code, stdout, _) = reconcile_writer(&cfg, false);
    assert_eq!(code, 1, "{stdout}");
    let line = format!(
        "{edited_no}: different (line 1 FRealQty: kafka {was}, k3cloud {})",
        fields[0]["found"].as_str().unwrap()
    );
    assert!(stdout.contains(&line), "{line}\n{stdout}");
    assert!(stdout.contains(&format!("{deleted_no}: missing")), "{stdout}");
}
