//! Shutdown on signals against the real broker and the 旺店通 simulator (README, Reliability).

mod common;

use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KIND: &str = "wdt.account_check";
const STREAMS: &[(&str, &str)] = &[("wdt.account_check/shop-01", "shop-01"), ("wdt.account_check/shop-02", "shop-02")];

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success(), "kill {sig}");
}

/// A worker backfilling two streams in 2 h windows with some latency: long enough to
/// interrupt part-way (its first day, 24 windows of both streams, holds no records).
struct Backfilling {
    sim: Simulator,
    topic: String,
    cfg: std::path::PathBuf,
    worker: Child,
    log: Receiver<String>,
}

fn start_backfilling(dir: &std::path::Path, name: &str) -> Backfilling {
    let sim = Simulator::start(dir, &simulator_config(4000, "15ms"));
    let topic = unique(&format!("{name}-data"));
    let cfg = write(
        dir,
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .transactional_id(&unique(&format!("{name}-txn")))
            .max_span("2h")
            .streams(STREAMS)
            .build(),
    );
    let mut worker = spawn_worker(&cfg, &[]);
    let log = stderr_lines(&mut worker);
    Backfilling { sim, topic, cfg, worker, log }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_mid_backfill_exits_0_and_a_restart_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Backfilling { sim, topic, cfg, mut worker, log } = start_backfilling(dir.path(), "sigint");
    let _guard = KillOnDrop(vec![worker.id()]);
    let expected = sim.records(KIND).await;
    let mut seen = Vec::new();
    wait_for_lines(&log, "window committed", 40, Duration::from_secs(120), &mut seen);
    // SIGINT (Ctrl-C) while windows are being read and committed.
    signal(&worker, "-INT");
    let status = wait_within(&mut worker, Duration::from_secs(30)).expect("the worker exits after SIGINT");
    rest_of(&log, Duration::from_secs(5), &mut seen);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGINT ends the run with exit 0, as SIGTERM does:\n{}",
        tail(&seen.join("\n"), 30)
    );
    assert!(seen.iter().any(|l| l.contains("shutdown requested")), "{}", seen.join("\n"));
    let interrupted = consume_committed(&topic).len();
    assert!(
        interrupted > 0 && interrupted < expected.len(),
        "interrupted part-way: {interrupted} of {}",
        expected.len()
    );

    // The restart goes on from what was committed: every record once.
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&consume_committed(&topic), &expected, "wdt.account_check.avsc", "account_check_no");
}

/// Two signals: the second exits at once, without the orderly shutdown (whose exit is 0).
/// Both arrive while the worker is frozen (SIGSTOP), so the orderly shutdown cannot have
/// ended before the second one is seen, and either may be seen first.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let Backfilling { sim: _sim, mut worker, log, .. } = start_backfilling(dir.path(), "sig2");
    let _guard = KillOnDrop(vec![worker.id()]);
    let mut seen = Vec::new();
    wait_for_lines(&log, "window committed", 2, Duration::from_secs(120), &mut seen);
    signal(&worker, "-STOP");
    signal(&worker, "-TERM");
    signal(&worker, "-INT");
    signal(&worker, "-CONT");
    let status = wait_within(&mut worker, Duration::from_secs(10)).expect("the worker exits at once");
    rest_of(&log, Duration::from_secs(5), &mut seen);
    let log = tail(&seen.join("\n"), 30);
    assert_eq!(
        status.code(),
        Some(130),
        "the second signal exits at once (130), not after an orderly shutdown:\n{log}"
    );
    assert!(log.contains("second signal: exiting now"), "{log}");
}

/// SIGTERM while every request hangs (30 s, under a 2 min request timeout): the request in
/// flight is dropped and the worker exits 0 well before the hang would end, committing
/// nothing of the window it was reading.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_a_request_hangs_exits_promptly_committing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim_toml = simulator_config(300, "0ms").replace("[faults]\n", "[faults]\nhang_rate = 1.0\nhang = \"30s\"\n");
    let sim = Simulator::start(dir.path(), &sim_toml);
    let (topic, wm_topic) = (unique("sighang-data"), unique("sighang-wm"));
    let cfg = write(
        dir.path(),
        "worker.toml",
        &WorkerToml::new(&sim.base_url(), &topic)
            .watermark_topic(&wm_topic)
            .transactional_id(&unique("sighang-txn"))
            .request_timeout("2m")
            .streams(&STREAMS[..1])
            .build(),
    );
    let mut worker = spawn_worker(&cfg, &[]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    // Wait until a request is out (the simulator saw it arrive) and hanging.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let requests: Value =
            reqwest::get(format!("{}/_simulator/requests", sim.base_url())).await.unwrap().json().await.unwrap();
        if requests["wdt"]["requests"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no request reached the simulator: {requests}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signalled = Instant::now();
    signal(&worker, "-TERM");
    let status = wait_within(&mut worker, Duration::from_secs(25)).expect("the worker exits before the hang ends");
    let took = signalled.elapsed();
    let mut seen = Vec::new();
    rest_of(&log, Duration::from_secs(5), &mut seen);
    let log = tail(&seen.join("\n"), 30);
    assert!(took < Duration::from_secs(10), "exited {took:?} after SIGTERM; the hang lasts 30 s:\n{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(consume_if_exists(&topic).unwrap_or_default().is_empty(), "no record committed");
    assert!(consume_if_exists(&wm_topic).unwrap_or_default().is_empty(), "no watermark committed");
}
