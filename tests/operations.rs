//! What ops do the day after go-live, against the real broker: stop a stream, set its
//! watermark back, resume it, and it re-reads that span emitting only what changed; a
//! running worker fenced by `watermarks set --force` loses nothing; `streams list` says what
//! Kafka holds; bad requests are refused with the reason.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const STREAM: &str = "wdt.account_check/shop-01";

fn simulator_toml(latency: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n[faults]\nlatency = \"{latency}\"\n[wdt]\nsid = \"sid\"\nappkey = \"wk\"\nappsecret = \"ws\"\n[wdt.account_check]\nseed = 9\nrecords = 300\nfrom = \"3d\"\nuntil = \"1h\"\nshops = [\"shop-01\"]\n"
    )
}

/// One stream; `extra` goes into its `[[streams]]` entry.
fn worker_toml(sim: &Simulator, prefix: &str, extra: &str) -> String {
    format!(
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{prefix}-txn\"\nwatermark_topic = \"{prefix}.wm\"\ndead_letter_topic = \"{prefix}.dlq\"\n\n[sources.wdt]\nkind = \"wdt.account_check\"\nbase_url = \"{}\"\nsid = \"sid\"\nappkey = \"wk\"\nappsecret = \"ws\"\nrequests_per_second = 100\n\n[[streams]]\nid = \"{STREAM}\"\nsource = \"wdt\"\ntopic = \"{prefix}\"\nstart = \"73h\"\npoll_interval = \"1s\"\n{extra}\n[streams.params]\nshop_no = \"shop-01\"\n",
        kafka(),
        sim.base_url()
    )
}

fn tidemark(args: &[&str], cfg: &Path) -> Output {
    Command::new(BIN).args(args).arg("--config").arg(cfg).env("USER", "ops-test").output().unwrap()
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn refused(out: Output) -> String {
    assert_eq!(out.status.code(), Some(2), "refused with exit 2: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits for a log line containing `what`.
fn wait_for(rx: &Receiver<String>, what: &str, within: Duration) {
    wait_for_lines(rx, what, 1, within, &mut Vec::new());
}

fn stop_worker(mut worker: Child) {
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    worker.wait().unwrap();
}

/// Waits until `topic` holds `n` committed records.
fn wait_for_records(topic: &str, n: usize) -> Vec<Consumed> {
    let got = consume_committed_reaching(topic, n, Duration::from_secs(120));
    assert!(got.len() >= n, "{} of {n} records in {topic}", got.len());
    got
}

/// Waits for the owner's first commit after the operator's watermark record and checks it
/// went on from there (one window of at most 2 h); returns the records and the operator's.
fn went_on_from_the_operators_watermark(prefix: &str) -> (Vec<Consumed>, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (wm, ops_at) = loop {
        let wm = consume_committed(&format!("{prefix}.wm"));
        let ops_at = wm.iter().position(|c| c.headers.get("tidemark.owner").is_some_and(|o| o == "ops:ops-test"));
        if let Some(at) = ops_at.filter(|at| at + 1 < wm.len()) {
            break (wm, at);
        }
        assert!(Instant::now() < deadline, "no commit after the operator's: {ops_at:?} of {}", wm.len());
        std::thread::sleep(Duration::from_millis(300));
    };
    let state = |c: &Consumed| tidemark::domain::WatermarkState::from_bytes(STREAM, c.value.as_ref().unwrap()).unwrap();
    let (set_to, next) = (state(&wm[ops_at]).watermark, state(&wm[ops_at + 1]).watermark);
    assert!(next > set_to && next - set_to <= chrono::Duration::hours(2), "set to {set_to}, then {next}");
    (wm, ops_at)
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_set_back_and_resume_rereads_the_span_and_emits_only_the_changed_records() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("0ms"));
    let prefix = unique("ops");
    // Content hashes are kept for the dedup span: a re-read within it emits only changes.
    let cfg = write(dir.path(), "w.toml", &worker_toml(&sim, &prefix, "dedup_span = \"2d\"\nmax_span = \"1d\""));
    let records = sim.records("wdt.account_check").await;
    let mut worker = spawn_worker(&cfg, &[]);
    let log = stderr_lines(&mut worker);
    wait_for(&log, "caught up", Duration::from_secs(60));
    let before = consume_committed(&prefix);
    assert_eq!(before.len(), records.len(), "the backfill emitted every record once");

    let stdout = ok(tidemark(&["streams", "stop", STREAM, "--reason", "vendor corrects data"], &cfg));
    assert!(stdout.contains("stopped by ops-test"), "{stdout}");
    wait_for(&log, "stopped by an operator", Duration::from_secs(10));
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    assert_eq!(listed[0]["state"], "stopped", "{listed}");
    assert_eq!(listed[0]["reason"], "vendor corrects data", "{listed}");

    // The vendor corrects three old records: new versions, served 3 hours ago.
    let at = tidemark::domain::time::format_beijing(
        chrono::Utc::now() - chrono::Duration::hours(3),
        tidemark::domain::time::DATETIME,
    );
    let mut changed = BTreeMap::new();
    for r in records.iter().take(3) {
        let mut v = r.clone();
        v["send_amount"] = json!("12345.67");
        changed.insert(v["account_check_no"].as_str().unwrap().to_owned(), v.clone());
        let body = json!({"at": at, "group": "shop-01", "record": v});
        let url = format!("{}/_simulator/records/wdt.account_check", sim.base_url());
        assert!(reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().is_success());
    }

    // Dry run first: nothing moves.
    let stdout = ok(tidemark(&["watermarks", "set", STREAM, "--to", "1d", "--dry-run"], &cfg));
    assert!(stdout.contains("would be set (dry run)"), "{stdout}");
    let stdout = ok(tidemark(&["watermarks", "set", STREAM, "--to", "1d"], &cfg));
    assert!(stdout.contains("watermark set from") && stdout.contains("by ops-test"), "{stdout}");
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    assert_eq!(listed[0]["owner"], "ops:ops-test", "the operator's record is the latest: {listed}");
    ok(tidemark(&["streams", "resume", STREAM], &cfg));

    // The stream re-reads the last day: the three new versions, nothing else.
    let after = wait_for_records(&prefix, records.len() + 3);
    wait_for(&log, "caught up", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let after_more = consume_committed(&prefix);
    stop_worker(worker);
    assert_eq!(after_more.len(), after.len(), "only the changed records were emitted again");
    let schema = schema("wdt.account_check.avsc");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in &after_more[before.len()..] {
        *seen.entry(c.key.clone()).or_default() += 1;
        let v = read_single_object(&schema, c.value.as_ref().unwrap());
        check_value(&v, changed.get(&c.key), &schema, &c.key);
    }
    assert_eq!(seen.keys().collect::<Vec<_>>(), changed.keys().collect::<Vec<_>>(), "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");

    // `list` says what the watermark topic holds.
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    let last = consume_committed(&format!("{prefix}.wm")).into_iter().rfind(|c| c.key == STREAM).unwrap();
    let state = tidemark::domain::WatermarkState::from_bytes(STREAM, last.value.as_ref().unwrap()).unwrap();
    let wm = tidemark::domain::time::format_beijing(state.watermark, tidemark::domain::time::DATETIME);
    assert_eq!(listed[0]["watermark"], wm, "{listed}");
    assert_eq!(listed[0]["owner"], last.headers["tidemark.owner"], "{listed}");
    assert_eq!(listed[0]["owner"], format!("{prefix}-txn"), "the worker committed last: {listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn set_force_fences_a_running_worker_which_resumes_from_the_new_watermark_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("150ms"));
    let prefix = unique("ops-force");
    let cfg = write(dir.path(), "w.toml", &worker_toml(&sim, &prefix, "max_span = \"2h\"\nwindows_in_flight = 1"));
    let records = sim.records("wdt.account_check").await;
    let mut worker = spawn_worker(&cfg, &[]);
    let log = stderr_lines(&mut worker);
    // Mid-backfill: four windows of 2 h in, 65 h behind.
    for _ in 0..4 {
        wait_for(&log, "window committed", Duration::from_secs(60));
    }
    let err = refused(tidemark(&["watermarks", "set", STREAM, "--to", "72h"], &cfg));
    assert!(err.contains("is running") && err.contains(STREAM) && err.contains("--force"), "{err}");
    let stdout = ok(tidemark(&["watermarks", "set", STREAM, "--to", "72h", "--force"], &cfg));
    assert!(stdout.contains("its running owner was fenced"), "{stdout}");
    // The worker's next commit is refused; it starts over from the watermark topic.
    wait_for(&log, "restarting every stream from its committed watermark", Duration::from_secs(30));
    // After the operator's record, the worker went on from 72 h back (one window of at most
    // 2 h), not from where it had been.
    let (wm, ops_at) = went_on_from_the_operators_watermark(&prefix);
    let before = tidemark::domain::WatermarkState::from_bytes(STREAM, wm[ops_at - 1].value.as_ref().unwrap()).unwrap();
    let set_to = tidemark::domain::WatermarkState::from_bytes(STREAM, wm[ops_at].value.as_ref().unwrap()).unwrap();
    assert!(before.watermark > set_to.watermark + chrono::Duration::hours(2), "the worker had been further");
    wait_for(&log, "caught up", Duration::from_secs(120));
    stop_worker(worker);
    let got = consume_committed(&prefix);
    let keys: std::collections::BTreeSet<&str> = got.iter().map(|c| c.key.as_str()).collect();
    for r in &records {
        assert!(keys.contains(r["account_check_no"].as_str().unwrap()), "{} lost", r["account_check_no"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_naming_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("0ms"));
    let prefix = unique("ops-bad");
    let cfg = write(dir.path(), "w.toml", &worker_toml(&sim, &prefix, ""));
    let err = refused(tidemark(&["streams", "stop", "wdt.account_check/shop-99"], &cfg));
    assert!(err.contains("unknown stream \"wdt.account_check/shop-99\"") && err.contains(STREAM), "{err}");
    let err = refused(tidemark(&["watermarks", "set", STREAM, "--to", "2099-01-01 00:00:00", "--force"], &cfg));
    assert!(err.contains("in the future"), "{err}");
    let err = refused(tidemark(&["watermarks", "set", STREAM, "--to", "yesterday"], &cfg));
    assert!(err.contains("--to \"yesterday\""), "{err}");
    // A dry run writes nothing.
    ok(tidemark(&["streams", "stop", STREAM, "--dry-run"], &cfg));
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    assert_eq!(listed[0]["state"], "unknown", "never run, not stopped: {listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_killed_midway_resumes_emits_only_what_changed_and_leaves_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("100ms"));
    let prefix = unique("ops-backfill");
    let extra = "dedup_span = \"4d\"\nmax_span = \"2h\"\nwindows_in_flight = 1";
    let cfg = write(dir.path(), "w.toml", &worker_toml(&sim, &prefix, extra));
    let records = sim.records("wdt.account_check").await;
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = consume_committed(&prefix);
    assert_eq!(before.len(), records.len());
    let live = |wm: &[Consumed]| wm.iter().rfind(|c| c.key == STREAM).map(|c| (c.partition, c.offset)).unwrap();
    let live_before = live(&consume_committed(&format!("{prefix}.wm")));

    // The vendor corrects two old records: new versions, served 40 hours ago.
    let beijing = |h: i64| {
        tidemark::domain::time::format_beijing(
            chrono::Utc::now() - chrono::Duration::hours(h),
            tidemark::domain::time::DATETIME,
        )
    };
    let mut changed = BTreeMap::new();
    for r in records.iter().take(2) {
        let mut v = r.clone();
        v["send_amount"] = json!("777.77");
        changed.insert(v["account_check_no"].as_str().unwrap().to_owned(), v.clone());
        let body = json!({"at": beijing(40), "group": "shop-01", "record": v});
        let url = format!("{}/_simulator/records/wdt.account_check", sim.base_url());
        assert!(reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().is_success());
    }

    // Fixed times: the same range, so the second run resumes the first.
    let (from, to) = (beijing(70), beijing(10));
    let args = ["backfill", STREAM, "--from", &from, "--to", &to];
    let mut first = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = stderr_lines(&mut first);
    for _ in 0..5 {
        wait_for(&log, "window committed", Duration::from_secs(60));
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let report: Value =
        serde_json::from_str(&ok(tidemark(&[&args[..], &["--output", "json"]].concat(), &cfg))).unwrap();
    assert_eq!(report["done"], true, "{report}");
    assert_ne!(report["resumed_at"], report["from"], "the second run resumed where the first stopped: {report}");
    // Unchanged records were not emitted again, before the kill or after it.
    let after = consume_committed(&prefix);
    let schema = schema("wdt.account_check.avsc");
    let added: Vec<&Consumed> = after[before.len()..].iter().collect();
    assert_eq!(added.len(), changed.len(), "only the corrected records were emitted");
    for c in added {
        check_value(&read_single_object(&schema, c.value.as_ref().unwrap()), changed.get(&c.key), &schema, &c.key);
        assert_eq!(c.headers["tidemark.stream"], STREAM, "backfilled records name their stream");
    }
    assert_eq!(live(&consume_committed(&format!("{prefix}.wm"))), live_before, "the live watermark did not move");
    // Done is done: running it again reads nothing.
    let again: Value = serde_json::from_str(&ok(tidemark(&[&args[..], &["--output", "json"]].concat(), &cfg))).unwrap();
    assert_eq!((again["done"].clone(), again["windows"].clone()), (json!(true), json!(0)), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_a_stream_that_stopped_on_an_error_with_the_vendors_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("0ms"));
    let prefix = unique("ops-failed");
    let cfg = write(
        dir.path(),
        "w.toml",
        &worker_toml(&sim, &prefix, "").replace("appsecret = \"ws\"", "appsecret = \"wrong\""),
    );
    let out = run_until_caught_up(&cfg);
    assert_eq!(out.status.code(), Some(1), "the stream stops on the refused signature");
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    assert_eq!(listed[0]["state"], "failed", "{listed}");
    let error = listed[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("sign"), "the vendor's reason (a signature error) is shown: {listed}");
    let table = ok(tidemark(&["streams", "list"], &cfg));
    assert!(table.contains("failed") && table.contains(STREAM), "{table}");
}

/// Under replicas (`--cluster-group`), the same commands reach the stream's owner: a stop is
/// followed, and `set --force` fences the owning replica's producer for that stream.
#[tokio::test(flavor = "multi_thread")]
async fn under_replicas_stop_is_followed_and_set_force_fences_the_owning_replica() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("150ms"));
    let prefix = unique("ops-cluster");
    let toml = worker_toml(&sim, &prefix, "max_span = \"2h\"\nwindows_in_flight = 1")
        .replace("[sources.wdt]", "[cluster]\ngroup = \"PLACEHOLDER\"\nsession_timeout = \"6s\"\n\n[sources.wdt]");
    // The group comes from the environment, as docker-compose sets it; the file's is overridden.
    let cfg = write(dir.path(), "w.toml", &toml);
    let group = format!("{prefix}-group");
    let mut replica = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("TIDEMARK_CLUSTER_GROUP", &group)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = stderr_lines(&mut replica);
    for _ in 0..4 {
        wait_for(&log, "window committed", Duration::from_secs(60));
    }
    let ops = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env("USER", "ops-test")
            .env("TIDEMARK_CLUSTER_GROUP", &group)
            .output()
            .unwrap()
    };
    let stdout = ok(ops(&["watermarks", "set", STREAM, "--to", "72h", "--force"]));
    assert!(stdout.contains("its running owner was fenced"), "{stdout}");
    // The replica's producer for the stream was fenced; the stream is still its own, so it
    // takes it back after a session timeout and goes on from the new watermark.
    wait_for(&log, "fenced by a newer owner", Duration::from_secs(30));
    went_on_from_the_operators_watermark(&prefix);
    // A stop reaches the replica too.
    ok(ops(&["streams", "stop", STREAM]));
    wait_for(&log, "stopped by an operator", Duration::from_secs(20));
    stop_worker(replica);
}

/// `watermarks reset` is refused while the stream runs (without --force); once it is stopped
/// it writes a tombstone, and on resume the stream reads again from its configured `start`:
/// with its content hashes gone too, every record is emitted a second time.
#[tokio::test(flavor = "multi_thread")]
async fn reset_is_refused_while_running_and_after_a_stop_the_stream_reads_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("0ms"));
    let prefix = unique("ops-reset");
    let cfg = write(dir.path(), "w.toml", &worker_toml(&sim, &prefix, ""));
    let records = sim.records("wdt.account_check").await;
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    wait_for(&log, "caught up", Duration::from_secs(60));
    assert_eq!(consume_committed(&prefix).len(), records.len());

    let err = refused(tidemark(&["watermarks", "reset", STREAM], &cfg));
    assert!(err.contains("is running") && err.contains(STREAM) && err.contains("--force"), "{err}");

    ok(tidemark(&["streams", "stop", STREAM], &cfg));
    wait_for(&log, "stopped by an operator", Duration::from_secs(10));
    let stdout = ok(tidemark(&["watermarks", "reset", STREAM], &cfg));
    assert!(stdout.contains("by ops-test"), "{stdout}");
    let wm = consume_committed(&format!("{prefix}.wm"));
    let reset = wm.iter().rfind(|c| c.key == STREAM).unwrap();
    assert_eq!(reset.value, None, "reset writes a tombstone");
    assert_eq!(reset.headers.get("tidemark.owner").map(String::as_str), Some("ops:ops-test"));
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    assert_eq!(listed[0]["watermark"], Value::Null, "no watermark after a reset: {listed}");

    ok(tidemark(&["streams", "resume", STREAM], &cfg));
    wait_for_records(&prefix, 2 * records.len());
    // The first commit after the tombstone is the first window from `start` (73 h back, in
    // windows of at most the vendor's 24 h), not one near where the stream had been.
    let wm = consume_committed(&format!("{prefix}.wm"));
    let at = wm.iter().rposition(|c| c.key == STREAM && c.value.is_none()).unwrap();
    let next = wm[at + 1..].iter().find(|c| c.key == STREAM).expect("a commit after the reset");
    let next = tidemark::domain::WatermarkState::from_bytes(STREAM, next.value.as_ref().unwrap()).unwrap().watermark;
    let start = chrono::Utc::now() - chrono::Duration::hours(73);
    assert!(next <= start + chrono::Duration::hours(25), "the first window after the reset ended at {next}");
    wait_for(&log, "caught up", Duration::from_secs(60));
    stop_worker(worker);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for c in consume_committed(&prefix) {
        *per_key.entry(c.key).or_default() += 1;
    }
    assert_eq!(per_key.len(), records.len(), "every record, nothing else");
    assert!(per_key.values().all(|n| *n == 2), "each record emitted once before and once after the reset");
}

/// Beijing wall-clock text `hours` back from now.
fn hours_ago(hours: i64) -> String {
    tidemark::domain::time::format_beijing(
        chrono::Utc::now() - chrono::Duration::hours(hours),
        tidemark::domain::time::DATETIME,
    )
}

/// `backfill`'s exit codes: 2 for a range it refuses (`--to` past the live watermark, or not
/// after `--from`), naming why; 3 when a signal interrupts it; 0 when done.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_refuses_a_bad_range_exits_3_when_interrupted_and_0_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("100ms"));
    let prefix = unique("ops-bf-codes");
    let extra = "max_span = \"2h\"\nwindows_in_flight = 1";
    let cfg = write(dir.path(), "w.toml", &worker_toml(&sim, &prefix, extra));
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Caught up: the watermark is about the 2 m settle behind now.
    let back_30s = tidemark::domain::time::format_beijing(
        chrono::Utc::now() - chrono::Duration::seconds(30),
        tidemark::domain::time::DATETIME,
    );
    let err = refused(tidemark(&["backfill", STREAM, "--from", &hours_ago(5), "--to", &back_30s], &cfg));
    assert!(err.contains("past") && err.contains("watermark") && err.contains(STREAM), "{err}");
    let err = refused(tidemark(&["backfill", STREAM, "--from", &hours_ago(5), "--to", &hours_ago(10)], &cfg));
    assert!(err.contains("--from must be before --to"), "{err}");
    let err = refused(tidemark(&["backfill", STREAM, "--from", &hours_ago(5), "--to", &hours_ago(5)], &cfg));
    assert!(err.contains("--from must be before --to"), "{err}");

    let (from, to) = (hours_ago(70), hours_ago(10));
    let args = ["backfill", STREAM, "--from", &from, "--to", &to];
    let mut first = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(vec![first.id()]);
    let log = stderr_lines(&mut first);
    wait_for(&log, "window committed", Duration::from_secs(60));
    Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap();
    let status = wait_within(&mut first, Duration::from_secs(30)).expect("the backfill stops on SIGINT");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut first.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(3), "an interrupted backfill exits 3: {stdout}");
    assert!(stdout.contains("interrupted; run it again to resume"), "{stdout}");
    let report: Value =
        serde_json::from_str(&ok(tidemark(&[&args[..], &["--output", "json"]].concat(), &cfg))).unwrap();
    assert_eq!(report["done"], true, "the second run finished (exit 0): {report}");
}

/// `--quota-share` bounds the backfill's request rate: a share of 0.2 of 10 requests a second
/// is 2 a second, judged by when its requests reached the simulator.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_sends_at_most_its_quota_share_of_the_credentials_rate() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml("0ms"));
    let prefix = unique("ops-bf-share");
    let toml = worker_toml(&sim, &prefix, "max_span = \"2h\"")
        .replace("requests_per_second = 100", "requests_per_second = 10");
    let cfg = write(dir.path(), "w.toml", &toml);
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = || async {
        let log: Value =
            reqwest::get(format!("{}/_simulator/requests", sim.base_url())).await.unwrap().json().await.unwrap();
        log["wdt"]["arrivals_ms"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<u64>>()
    };
    let live = requests().await.len();
    // 30 windows of 2 h, at least a request each.
    let (from, to) = (hours_ago(70), hours_ago(10));
    let cfg2 = cfg.clone();
    let report = tokio::task::spawn_blocking(move || {
        let args = ["backfill", STREAM, "--from", &from, "--to", &to, "--quota-share", "0.2", "--output", "json"];
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&cfg2)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _guard = KillOnDrop(vec![child.id()]);
        let status = wait_within(&mut child, Duration::from_secs(120)).expect("the backfill ends");
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        assert!(status.success(), "{stdout}");
        serde_json::from_str::<Value>(&stdout).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(report["done"], true, "{report}");
    let mut arrivals = requests().await.split_off(live);
    assert!(arrivals.len() >= 20, "enough requests to measure: {}", arrivals.len());
    // As in faults.rs: requests spaced 1/2 s apart at the client arrive within delivery
    // delays that vary by up to the slack, so n of them arriving within x ms means
    // n <= 2 (x + slack) / 1000 + 1. The whole quota (10/s) breaks it at once.
    const DELIVERY_SLACK_MS: u64 = 1000;
    arrivals.sort_unstable();
    for (i, &first) in arrivals.iter().enumerate() {
        for (j, &last) in arrivals.iter().enumerate().skip(i + 1) {
            let (n, within) = ((j - i + 1) as u64, last - first);
            assert!(
                n <= 2 * (within + DELIVERY_SLACK_MS) / 1000 + 1,
                "{n} requests arrived within {within} ms at a share of 2/s: {arrivals:?}"
            );
        }
    }
}

/// A stop outlives the worker: restarted, the worker keeps the stream paused (its topic and
/// watermark unchanged, though the vendor has a new record for it) while the other stream
/// goes on; resumed, the stream reads the record.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_stream_stays_paused_across_a_restart_while_the_others_go_on() {
    const OTHER: &str = "wdt.account_check/shop-02";
    let dir = tempfile::tempdir().unwrap();
    let sim_toml = simulator_toml("0ms").replace("shops = [\"shop-01\"]", "shops = [\"shop-01\", \"shop-02\"]");
    let sim = Simulator::start(dir.path(), &sim_toml);
    let prefix = unique("ops-persist");
    let other_topic = format!("{prefix}.two");
    let mut toml = worker_toml(&sim, &prefix, "settle = \"2s\"");
    toml.push_str(&format!(
        "\n[[streams]]\nid = \"{OTHER}\"\nsource = \"wdt\"\ntopic = \"{other_topic}\"\nstart = \"73h\"\npoll_interval = \"1s\"\nsettle = \"2s\"\n[streams.params]\nshop_no = \"shop-02\"\n"
    ));
    let cfg = write(dir.path(), "w.toml", &toml);
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(tidemark(&["streams", "stop", STREAM, "--reason", "stays stopped"], &cfg));
    let (before, other_before) = (consume_committed(&prefix), consume_committed(&other_topic));
    let commits = |stream: &str| consume_committed(&format!("{prefix}.wm")).iter().filter(|c| c.key == stream).count();
    let wm_before = commits(STREAM);

    // The vendor has a new record for each shop, readable once the 2 s settle has passed.
    let template = sim.records("wdt.account_check").await.remove(0);
    let at = tidemark::domain::time::format_beijing(
        chrono::Utc::now() - chrono::Duration::seconds(1),
        tidemark::domain::time::DATETIME,
    );
    for shop in ["shop-01", "shop-02"] {
        let mut v = template.clone();
        v["account_check_no"] = json!(format!("AC-NEW-{shop}"));
        v["shop_no"] = json!(shop);
        let body = json!({"at": at, "group": shop, "record": v});
        let url = format!("{}/_simulator/records/wdt.account_check", sim.base_url());
        assert!(reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().is_success());
    }

    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    // The other stream reads its new record; several polls of 1 s pass meanwhile.
    let other = wait_for_records(&other_topic, other_before.len() + 1);
    assert!(other.iter().any(|c| c.key == "AC-NEW-shop-02"), "the other stream went on");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(consume_committed(&prefix).len(), before.len(), "the stopped stream emitted nothing");
    assert_eq!(commits(STREAM), wm_before, "the stopped stream committed no watermark");
    assert!(commits(OTHER) > 0);
    wait_for(&log, "stopped by an operator", Duration::from_secs(10));
    let listed: Value = serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
    let row = listed.as_array().unwrap().iter().find(|r| r["stream"] == STREAM).unwrap().clone();
    assert_eq!((row["state"].clone(), row["reason"].clone()), (json!("stopped"), json!("stays stopped")), "{listed}");

    ok(tidemark(&["streams", "resume", STREAM], &cfg));
    let after = wait_for_records(&prefix, before.len() + 1);
    stop_worker(worker);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.iter().any(|c| c.key == "AC-NEW-shop-01"), "resumed, it read the vendor's new record");
}

/// A vendor that starts sending a field the schema lacks: the worker counts it per stream
/// and field in /metrics, warns once (not once per record), `streams list` shows it from the
/// control topic, and the records still arrive exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_field_the_schema_lacks_is_counted_warned_once_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let sim_toml = simulator_toml("0ms")
        .replace("shops = [\"shop-01\"]\n", "shops = [\"shop-01\"]\nextra_fields = [\"new_field\"]\n");
    let sim = Simulator::start(dir.path(), &sim_toml);
    let prefix = unique("ops-drift");
    let toml = worker_toml(&sim, &prefix, "")
        .replace("\n[sources.wdt]", "\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[sources.wdt]");
    let cfg = write(dir.path(), "w.toml", &toml);
    let records = sim.records("wdt.account_check").await;
    assert!(records.iter().all(|r| r["new_field"].is_string()), "the simulator adds the field");
    let mut worker = spawn_worker(&cfg, &[]);
    let _reaper = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let mut seen = Vec::new();
    let mut addr = None;
    read_log_until(&log, "the metrics address", LOG_DEADLINE, &mut seen, |l| {
        addr = metrics_addr(l);
        addr.is_some()
    });
    wait_for_lines(&log, "caught up", 1, LOG_DEADLINE, &mut seen);
    let consumed = wait_for_records(&prefix, records.len());

    let text = reqwest::get(format!("http://{}/metrics", addr.unwrap())).await.unwrap().text().await.unwrap();
    let series = format!("tidemark_schema_drift_fields_total{{field=\"new_field\",stream=\"{STREAM}\"}}");
    assert_eq!(metric(&text, &series), Some(records.len() as f64), "every record counted: {text}");
    assert!(!text.contains("field=\"other\""), "one field is named, not other");

    // Published in the background once the field is first met: polled, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed: Value =
            serde_json::from_str(&ok(tidemark(&["streams", "list", "--output", "json"], &cfg))).unwrap();
        if listed[0]["schema_drift"] == json!(["new_field"]) {
            break listed;
        }
        assert!(Instant::now() < deadline, "streams list never showed the drift: {listed}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(listed[0]["stream"], STREAM, "{listed}");
    let table = ok(tidemark(&["streams", "list"], &cfg));
    assert!(table.contains("fields not in schema: new_field"), "{table}");

    stop_worker(worker);
    rest_of(&log, Duration::from_secs(10), &mut seen);
    let warnings: Vec<&String> = seen.iter().filter(|l| l.contains("WARN") && l.contains("new_field")).collect();
    assert_eq!(warnings.len(), 1, "one warning for the field, not one per record: {warnings:?}");
    assert!(warnings[0].contains("schema lacks") && warnings[0].contains("wdt.account_check"), "{warnings:?}");
    assert_exactly(&consumed, &records, "wdt.account_check.avsc", "account_check_no");
}
