//! Lean at any size (issue #27). Idle streams are cheap: a stream that reads only empty
//! windows holds their advance (`streams[].idle_commit_interval`) instead of committing a
//! transaction per poll, and writes it once, as one ledger entry, when it ends or with the
//! next window that has records; many streams' windows share Kafka transactions (group
//! commit). Windows larger than the byte budget (`max_buffered_bytes`) still go through.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The ledger entries of `stream` in `topic`, in commit order.
fn ledger_of(topic: &str, stream: &str) -> Vec<Value> {
    consume_if_exists(topic)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.key == stream)
        .map(|r| serde_json::from_slice(r.value.as_deref().expect("a ledger entry")).expect("json"))
        .collect()
}

/// Records of `stream` in the watermark topic `topic`.
fn watermarks_of(topic: &str, stream: &str) -> usize {
    consume_if_exists(topic).unwrap_or_default().iter().filter(|r| r.key == stream).count()
}

/// A worker polling one shop every second from 50 minutes back (the simulator's records end
/// an hour back: every window is empty), holding empty windows for an hour.
fn idle_worker(dir: &std::path::Path, sim: &Simulator, topic: &str) -> std::path::PathBuf {
    let toml = WorkerToml::new(&sim.base_url(), topic)
        .transactional_id(&unique("idle-txn"))
        .kafka_extra(&format!("ledger_topic = \"{topic}-ledger\"\n"))
        .start("50m")
        .lookback("0s")
        .stream("idle/shop-01", "shop-01")
        .stream_extra("poll_interval = \"1s\"\nidle_commit_interval = \"1h\"")
        .build();
    write(dir, "worker.toml", &toml)
}

/// Asks the worker to stop (SIGTERM, as an orchestrator does) and waits up to 30 s for it.
fn stop(worker: &mut std::process::Child) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    wait_within(worker, Duration::from_secs(30)).expect("the worker stops within 30 s")
}

/// Waits for the worker's "caught up", then for `polls` more polls' worth of time.
fn caught_up_then(log: &std::sync::mpsc::Receiver<String>, polls: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            panic!("the worker did not say it was caught up within 60 s: {}", seen.join("\n"));
        };
        if line.contains("caught up") {
            break;
        }
        seen.push(line);
    }
    std::thread::sleep(Duration::from_secs(polls));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_stream_holds_its_empty_windows_and_commits_them_once_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(50, "0ms"));
    let topic = unique("idle");
    let cfg = idle_worker(dir.path(), &sim, &topic);
    let mut worker = spawn_worker(&cfg, &[]);
    let log = stderr_lines(&mut worker);
    caught_up_then(&log, 4);
    let (wm_topic, ledger) = (format!("{topic}-wm"), format!("{topic}-ledger"));
    let held = watermarks_of(&wm_topic, "idle/shop-01");
    let held_entries = ledger_of(&ledger, "idle/shop-01").len();

    let status = stop(&mut worker);
    assert!(status.success(), "{status:?}");
    assert_eq!((held, held_entries), (0, 0), "nothing is committed while only empty windows are read");
    assert_eq!(watermarks_of(&wm_topic, "idle/shop-01"), 1, "the held advance is committed once, at the end");
    let entries = ledger_of(&ledger, "idle/shop-01");
    assert_eq!(entries.len(), 1, "one ledger entry for every empty window read: {entries:?}");
    let e = &entries[0];
    assert_eq!((e["vendor_total"].as_u64(), e["read"].as_u64()), (Some(0), Some(0)), "{e}");
    assert!(e["requests"].as_u64().unwrap() >= 3, "several polls' windows in the one entry: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_advance_commits_with_the_next_window_that_has_records() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(50, "0ms"));
    let topic = unique("idle-then");
    let cfg = idle_worker(dir.path(), &sim, &topic);
    let mut worker = spawn_worker(&cfg, &[]);
    let _reap = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    caught_up_then(&log, 3);

    let mut record = sim.records("wdt.account_check").await[0].clone();
    record["account_check_no"] = json!("AC-IDLE-0001");
    record["shop_no"] = json!("shop-01");
    // Inside the window the next poll reads (settle is 1 minute), after the held watermark.
    sim.insert("wdt.account_check", chrono::Utc::now() - chrono::Duration::seconds(50), "shop-01", &record).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ledger = format!("{topic}-ledger");
    let entries = loop {
        let entries = ledger_of(&ledger, "idle/shop-01");
        if !entries.is_empty() {
            break entries;
        }
        assert!(Instant::now() < deadline, "the new record's window was not committed within 60 s");
        std::thread::sleep(Duration::from_millis(500));
    };
    stop(&mut worker);

    assert_eq!(entries.len(), 2, "the held span and the window with the record, together: {entries:?}");
    let (held, with_record) = (&entries[0], &entries[1]);
    assert_eq!((held["vendor_total"].as_u64(), held["emitted"].as_u64()), (Some(0), Some(0)), "{held}");
    assert_eq!(with_record["emitted"].as_u64(), Some(1), "{with_record}");
    let (held_window, window) = (held["window"].as_str().unwrap(), with_record["window"].as_str().unwrap());
    let end_of_held = held_window.split_once('/').unwrap().1;
    let start_of_next = window.split_once('/').unwrap().0;
    assert_eq!(end_of_held, start_of_next, "the entries cover the stream's time without a gap");
    let keys: Vec<String> = consume_committed(&topic).into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["AC-IDLE-0001"]);
}

/// Many streams committing at once share transactions: the worker's histogram of windows per
/// Kafka transaction has a transaction of more than one window, and every record is there once.
#[tokio::test(flavor = "multi_thread")]
async fn windows_of_many_streams_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(3000, "20ms"));
    let expected = sim.records("wdt.account_check").await;
    let topic = unique("group");
    // Every shop twice over (two streams per shop would read the same records): 2 shops, and
    // 1-hour windows so there are many windows to commit at once.
    let cfg = write(
        dir.path(),
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .transactional_id(&unique("group-txn"))
            .max_span("1h")
            .streams(&[("group/shop-01", "shop-01"), ("group/shop-02", "shop-02")])
            .extra("[metrics]\nlisten = \"127.0.0.1:0\"\n")
            .build(),
    );
    let mut worker = spawn_worker(&cfg, &["--until-caught-up"]);
    let _reap = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    let addr = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = log.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("metrics address");
            if let Some(a) = metrics_addr(&line) {
                break a;
            }
        }
    };
    // Scraped while it runs: the last scrape before it exits counts.
    let mut most = 0.0f64;
    let mut transactions = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(180);
    while worker.try_wait().expect("the worker's status").is_none() {
        assert!(Instant::now() < deadline, "the worker did not catch up within 180 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(text) = reqwest::get(format!("http://{addr}/metrics")).await.and_then(|r| r.error_for_status())
            && let Ok(text) = text.text().await
        {
            let count = metric(&text, "tidemark_transaction_windows_count").unwrap_or(0.0);
            let sum = metric(&text, "tidemark_transaction_windows_sum").unwrap_or(0.0);
            if count > 0.0 {
                transactions = count;
                most = most.max(sum / count);
            }
        }
    }
    let mut rest = Vec::new();
    rest_of(&log, Duration::from_secs(1), &mut rest);
    assert!(transactions > 0.0, "the histogram was scraped: {}", rest.join("\n"));
    assert!(most > 1.0, "windows per transaction stayed at {most}: no window shared a transaction");
    assert_exactly(&consume_committed(&topic), &expected, "wdt.account_check.avsc", "account_check_no");
}

/// Windows larger than the whole byte budget still go through, on disk, and every record lands
/// once: the oldest window spills what does not fit, the others wait for room.
#[tokio::test(flavor = "multi_thread")]
async fn windows_larger_than_the_byte_budget_go_through_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    // About 2,000 records a shop a day: each 1-day window holds over 1 MiB encoded.
    let sim = Simulator::start(dir.path(), &simulator_config(20_000, "0ms"));
    let expected = sim.records("wdt.account_check").await;
    let topic = unique("budget");
    let toml = WorkerToml::new(&sim.base_url(), &topic)
        .transactional_id(&unique("budget-txn"))
        .streams(&[("budget/shop-01", "shop-01"), ("budget/shop-02", "shop-02")])
        .build();
    let cfg = write(dir.path(), "worker.toml", &format!("max_buffered_bytes = \"1MiB\"\n{toml}"));
    let out = run_until_caught_up_within(&cfg, Duration::from_secs(240));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "worker failed: {}", tail(&stderr, 30));
    let spilled = stderr.lines().filter(|l| l.contains("holding it on disk until it commits")).count();
    assert!(spilled > 0, "no window was held on disk: {}", tail(&stderr, 30));
    assert_exactly(&consume_committed(&topic), &expected, "wdt.account_check.avsc", "account_check_no");
}
