//! Replicas on Kafka alone, against the real broker: replicas share the streams through the
//! `[cluster]` group. Three replicas, 32 streams over two credentials: SIGKILL one
//! mid-backfill and start another, and every record is in Kafka exactly once, no stream waits
//! longer than the session timeout plus a poll (and the takeover's own steps), and the
//! simulator saw neither credential above its quota. A replica frozen with SIGSTOP past its
//! session timeout (a zombie) commits nothing for the streams it lost. Of two replicas with
//! one `instance_id`, the older exits 2.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `cluster.session_timeout`: the broker's minimum, so failover is quick.
const SESSION: Duration = Duration::from_secs(6);
/// Each stream's poll interval.
const POLL: Duration = Duration::from_secs(2);
/// Each credential's quota, requests per second.
const RPS: u32 = 8;
/// Windows a stream commits to catch up: 49 hours in windows of 2.
const WINDOWS: usize = 25;

fn shops(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("shop-{i:02}")).collect()
}

/// 旺店通 and 奇门 (two credentials, two vendor request logs) at 100 ms a request.
fn simulator_toml(wdt_shops: usize, qimen_shops: usize) -> String {
    let list = |n| shops(n).iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\n[faults]\nlatency = \"100ms\"\n[wdt]\nsid = \"sid\"\nappkey = \"wk\"\nappsecret = \"ws\"\n[wdt.account_check]\nseed = 5\nrecords = {}\nfrom = \"2d\"\nuntil = \"1h\"\nshops = [{}]\n",
        wdt_shops * 100,
        list(wdt_shops)
    );
    if qimen_shops > 0 {
        t.push_str(&format!(
            "[qimen]\napp_key = \"qk\"\napp_secret = \"qs\"\ntarget_app_key = \"wdt-target\"\nsid = \"seller\"\n[qimen.stockin_refund]\nseed = 6\nrecords = {}\nfrom = \"2d\"\nuntil = \"1h\"\nshops = [{}]\n",
            qimen_shops * 50,
            list(qimen_shops)
        ));
    }
    t
}

/// One config for every replica; with `static_ids` each sets `TIDEMARK_INSTANCE` for its
/// instance id (static membership), without them replicas are dynamic members. One
/// window in flight per stream: a stream's wait between commits is then its turn at the
/// credential's quota, not a queue of its own windows read ahead.
fn cluster_toml(sim: &Simulator, prefix: &str, (wdt_shops, qimen_shops): (usize, usize), static_ids: bool) -> String {
    let base = sim.base_url();
    let mut t = format!(
        r#"
[kafka]
bootstrap = "{kafka}"
watermark_topic = "{prefix}.wm"
dead_letter_topic = "{prefix}.dlq"

[cluster]
group = "{prefix}"
session_timeout = "{session}s"
{instance}

[sources.wdt]
kind = "wdt.account_check"
base_url = "{base}"
sid = "sid"
appkey = "wk"
appsecret = "ws"
requests_per_second = {RPS}

[sources.qm]
kind = "qimen.stockin_refund"
base_url = "{base}/router/qm"
app_key = "qk"
app_secret = "qs"
target_app_key = "wdt-target"
sid = "seller"
requests_per_second = {RPS}
"#,
        kafka = kafka(),
        session = SESSION.as_secs(),
        instance = if static_ids { "instance_id = \"${TIDEMARK_INSTANCE}\"" } else { "" }
    );
    for (source, kind, n) in [("wdt", "wdt.account_check", wdt_shops), ("qm", "qimen.stockin_refund", qimen_shops)] {
        for shop in shops(n) {
            // Caught up, every stream commits each poll (`idle_commit_interval = "0s"`): its
            // commits are how these tests see that it runs, and on which replica.
            t.push_str(&format!(
                "\n[[streams]]\nid = \"{kind}/{shop}\"\nsource = \"{source}\"\ntopic = \"{prefix}.{source}\"\nstart = \"49h\"\nmax_span = \"2h\"\npoll_interval = \"{}s\"\nidle_commit_interval = \"0s\"\nwindows_in_flight = 1\n[streams.params]\nshop_no = \"{shop}\"\n",
                POLL.as_secs()
            ));
        }
    }
    t
}

/// A replica (`tidemark run`) logging to `<dir>/<instance>.log`.
fn start_replica(dir: &Path, cfg: &Path, instance: &str) -> Child {
    let log = std::fs::File::create(dir.join(format!("{instance}.log"))).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .env("TIDEMARK_INSTANCE", instance)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn replica_log(dir: &Path, instance: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{instance}.log"))).unwrap()
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

fn stop(mut children: Vec<Child>) {
    for c in &children {
        signal(c, "-TERM");
    }
    for c in &mut children {
        c.wait().unwrap();
    }
}

/// Committed records in the data topics.
fn committed(prefix: &str, sources: &[&str]) -> usize {
    sources.iter().map(|s| consume_committed(&format!("{prefix}.{s}")).len()).sum()
}

/// Waits until the streams have committed `share` of the `windows` they need to catch up
/// (mid-backfill, whatever the data's spread over time).
fn wait_for_windows(prefix: &str, windows: usize, share: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // The replicas create the topic as they start: until then, nothing was committed.
        let n = consume_if_exists(&format!("{prefix}.wm")).map_or(0, |c| c.len());
        if n as f64 >= windows as f64 * share {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {n} of {windows} windows after 5 minutes");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the data topics hold `share` of `expected` records.
fn wait_for_records(prefix: &str, sources: &[&str], expected: usize, share: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = committed(prefix, sources);
        if n as f64 >= expected as f64 * share {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {n} of {expected} records after 5 minutes");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Each stream's committed watermark records in commit order: (timestamp ms, watermark ms, owner).
fn commits(prefix: &str) -> BTreeMap<String, Vec<(i64, i64, String)>> {
    let mut by_stream: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
    // One key lives in one partition, read in offset order: commit order.
    for c in consume_committed(&format!("{prefix}.wm")) {
        let Some(bytes) = &c.value else { continue };
        let state = tidemark::domain::WatermarkState::from_bytes(&c.key, bytes).unwrap();
        let owner = c.headers.get("tidemark.owner").cloned().unwrap_or_default();
        by_stream.entry(c.key.clone()).or_default().push((c.timestamp, state.watermark.timestamp_millis(), owner));
    }
    by_stream
}

/// Each stream's windows moved its watermark strictly forward, commit after commit: a commit
/// from an owner that had lost the stream would repeat or rewind one.
fn assert_watermarks_only_advance(commits: &BTreeMap<String, Vec<(i64, i64, String)>>) {
    for (stream, list) in commits {
        for pair in list.windows(2) {
            assert!(
                pair[1].1 > pair[0].1,
                "{stream}: watermark went from {} (by {}) to {} (by {})",
                pair[0].1,
                pair[0].2,
                pair[1].1,
                pair[1].2
            );
        }
    }
}

/// The most requests a vendor received in any `span`.
fn busiest(arrivals_ms: &[u64], span: u64) -> usize {
    let mut sorted = arrivals_ms.to_vec();
    sorted.sort_unstable();
    let mut most = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= span {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_32_streams_and_a_killed_one_is_replaced_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml(16, 16));
    let prefix = unique("replicas");
    let cfg = write(dir.path(), "cluster.toml", &cluster_toml(&sim, &prefix, (16, 16), true));
    let (wdt, qimen) = (sim.records("wdt.account_check").await, sim.records("qimen.stockin_refund").await);
    let expected = wdt.len() + qimen.len();
    let sources = ["wdt", "qm"];

    let r1 = start_replica(dir.path(), &cfg, "r1");
    let mut r2 = start_replica(dir.path(), &cfg, "r2");
    let r3 = start_replica(dir.path(), &cfg, "r3");
    wait_for_windows(&prefix, 32 * WINDOWS, 0.3, "before the kill");
    signal(&r2, "-KILL");
    r2.wait().unwrap();
    let killed_at = chrono::Utc::now().timestamp_millis();
    let r4 = start_replica(dir.path(), &cfg, "r4");
    wait_for_records(&prefix, &sources, expected, 1.0, "after the kill");
    // Caught up, every stream still commits a window each poll: a few polls, then stop.
    std::thread::sleep(POLL * 4);
    let ended_at = chrono::Utc::now().timestamp_millis();
    stop(vec![r1, r3, r4]);

    // Every record exactly once.
    assert_exactly(&consume_committed(&format!("{prefix}.wdt")), &wdt, "wdt.account_check.avsc", "account_check_no");
    assert_exactly(&consume_committed(&format!("{prefix}.qm")), &qimen, "qimen.stockin_refund.avsc", "order_no");

    // Every stream progressed; the killed replica's streams went on under other owners.
    let commits = commits(&prefix);
    assert_eq!(commits.len(), 32, "every stream committed: {:?}", commits.keys());
    // ... and was still running at the end, on some replica.
    for (stream, list) in &commits {
        let last = list.last().unwrap();
        assert!(
            ended_at - last.0 <= (POLL * 3).as_millis() as i64,
            "{stream} stopped committing {} ms before the end (last by {})",
            ended_at - last.0,
            last.2
        );
    }
    assert_watermarks_only_advance(&commits);
    let taken_over: Vec<&String> = commits
        .iter()
        .filter(|(_, l)| l.iter().any(|c| c.2 == "r2") && l.iter().any(|c| c.0 > killed_at && c.2 != "r2"))
        .map(|(s, _)| s)
        .collect();
    assert!(!taken_over.is_empty(), "some of r2's streams were taken over after the kill");
    for who in ["r1", "r3", "r4"] {
        assert!(commits.values().flatten().any(|c| c.2 == who), "{who} owned and ran streams");
    }

    // No stream waited longer than the session timeout plus a poll, beyond the takeover's own
    // steps (a rebalance, the new producer fencing the old, reading the watermarks).
    // Measured here: 11 to 15 s in all (the session timeout is 6 s, the poll 2 s).
    let takeover = Duration::from_secs(15);
    let mut longest = (0i64, String::new());
    for (stream, list) in &commits {
        for pair in list.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            if gap > longest.0 {
                longest = (gap, stream.clone());
            }
        }
    }
    eprintln!("longest wait between two commits of a stream: {} ms ({})", longest.0, longest.1);
    assert!(
        longest.0 <= (SESSION + POLL + takeover).as_millis() as i64,
        "{} waited {} ms between commits",
        longest.1,
        longest.0
    );

    // Together the replicas kept each credential within its quota: requests are spaced by
    // each replica's share, so any 5 s hold at most 5 × quota, plus one per replica's limiter.
    let log: Value =
        reqwest::get(format!("{}/_simulator/requests", sim.base_url())).await.unwrap().json().await.unwrap();
    for vendor in ["wdt", "qimen"] {
        let arrivals: Vec<u64> =
            log[vendor]["arrivals_ms"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let most = busiest(&arrivals, 5000);
        eprintln!("{vendor}: {} requests, at most {most} in any 5 s (quota {RPS}/s)", arrivals.len());
        assert!(most <= 5 * RPS as usize + 4, "{vendor}: {most} requests in 5 s, quota {RPS}/s");
    }
    let r2_log = replica_log(dir.path(), "r2");
    assert!(r2_log.contains("assigned"), "r2 owned streams before the kill: {r2_log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_frozen_past_its_session_commits_nothing_for_the_streams_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml(8, 0));
    let prefix = unique("zombie");
    let cfg = write(dir.path(), "cluster.toml", &cluster_toml(&sim, &prefix, (8, 0), true));
    let wdt = sim.records("wdt.account_check").await;
    let sources = ["wdt"];

    let zombie = start_replica(dir.path(), &cfg, "z1");
    let other = start_replica(dir.path(), &cfg, "z2");
    wait_for_windows(&prefix, 8 * WINDOWS, 0.2, "before the freeze");
    // z1 must own streams it has committed for when it freezes (on a loaded machine z2 can
    // commit a fifth of the windows before z1's first).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !commits(&prefix).values().flatten().any(|c| c.2 == "z1") {
        assert!(
            Instant::now() < deadline,
            "z1 committed nothing within 2 minutes:\n{}",
            tail(&replica_log(dir.path(), "z1"), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    signal(&zombie, "-STOP");
    let frozen_at = chrono::Utc::now().timestamp_millis();
    // Past the session timeout: the group gives z1's streams to z2, whose producers fence z1's.
    std::thread::sleep(SESSION + Duration::from_secs(8));
    signal(&zombie, "-CONT");
    let resumed_at = chrono::Utc::now().timestamp_millis();
    wait_for_records(&prefix, &sources, wdt.len(), 1.0, "after the freeze");
    std::thread::sleep(POLL * 2);
    stop(vec![zombie, other]);

    assert_exactly(&consume_committed(&format!("{prefix}.wdt")), &wdt, "wdt.account_check.avsc", "account_check_no");
    let commits = commits(&prefix);
    assert_watermarks_only_advance(&commits);
    // z1 had streams when it froze, and z2 ran them while it was frozen.
    let lost: Vec<&String> = commits
        .iter()
        .filter(|(_, l)| {
            l.iter().any(|c| c.2 == "z1" && c.0 < frozen_at)
                && l.iter().any(|c| c.2 == "z2" && c.0 > frozen_at && c.0 < resumed_at)
        })
        .map(|(s, _)| s)
        .collect();
    assert!(!lost.is_empty(), "z2 took over z1's streams while z1 was frozen: {commits:?}");
    // After it woke, z1 committed for a stream only once the group had given it that stream
    // again (and then from z2's last commit, which the advancing watermarks above check).
    let log = replica_log(dir.path(), "z1");
    let assigned: Vec<(i64, &str)> = log
        .lines()
        .filter(|l| l.contains("tidemark::cluster: assigned"))
        .map(|l| {
            (chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next().unwrap()).unwrap().timestamp_millis(), l)
        })
        .collect();
    for (stream, list) in &commits {
        for c in list.iter().filter(|c| c.2 == "z1" && c.0 > frozen_at) {
            let given_again = assigned
                .iter()
                .any(|(at, line)| *at > resumed_at && *at < c.0 && line.contains(&format!("\"{stream}\"")));
            assert!(given_again, "z1 committed {stream} at {} after waking without being given it again", c.0);
        }
    }
    // On waking, z1 learned it lost its streams one way or the other: a commit refused as
    // fenced, or the group revoking them as lost before it committed.
    let woke: Vec<&str> = log
        .lines()
        .filter(|l| {
            chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next().unwrap_or_default())
                .is_ok_and(|t| t.timestamp_millis() > resumed_at)
        })
        .collect();
    let fenced = woke.iter().any(|l| l.contains("fenced by a newer owner"));
    let revoked = woke.iter().any(|l| l.contains("released") && l.contains("lost=true"));
    assert!(fenced || revoked, "z1 woke without learning it lost its streams:\n{}", woke.join("\n"));
    eprintln!(
        "z1 on waking: {}",
        if fenced { "a commit was refused as fenced" } else { "its streams were revoked as lost" }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_stops_hands_its_streams_over_at_once_without_static_ids() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml(8, 0));
    let prefix = unique("leave");
    let cfg = write(dir.path(), "cluster.toml", &cluster_toml(&sim, &prefix, (8, 0), false));
    let wdt = sim.records("wdt.account_check").await;
    let sources = ["wdt"];
    let leaving = start_replica(dir.path(), &cfg, "l1");
    let staying = start_replica(dir.path(), &cfg, "l2");
    wait_for_windows(&prefix, 8 * WINDOWS, 0.3, "before the stop");
    let mut leaving = leaving;
    signal(&leaving, "-TERM");
    let stopped_at = chrono::Utc::now().timestamp_millis();
    assert!(leaving.wait().unwrap().success(), "a replica stopped by SIGTERM exits 0");
    wait_for_records(&prefix, &sources, wdt.len(), 1.0, "after the stop");
    stop(vec![staying]);
    assert_exactly(&consume_committed(&format!("{prefix}.wdt")), &wdt, "wdt.account_check.avsc", "account_check_no");
    let commits = commits(&prefix);
    assert_watermarks_only_advance(&commits);
    // The leaving replica's streams went on well within the session timeout: a dynamic member
    // leaves the group when it stops, and the group rebalances at once.
    let mut handed = 0;
    for (stream, list) in &commits {
        let Some(before) = list.iter().rfind(|c| c.0 <= stopped_at) else { continue };
        if let Some(a) = list.iter().find(|c| c.0 > stopped_at && c.2 != before.2) {
            handed += 1;
            let waited = a.0 - stopped_at;
            eprintln!("{stream}: first commit by its new owner {waited} ms after the stop");
            assert!(waited < SESSION.as_millis() as i64, "{stream} waited {waited} ms for its new owner");
        }
    }
    assert!(handed > 0, "the stopped replica's streams moved to the other: {commits:?}");
}

/// What the zombie test relies on, shown directly: once a new owner's producer starts with
/// the stream's transactional id, the old owner's next commit is refused as fenced ("no
/// longer mine", which ends the stream), not as a crash to retry, and nothing of it is visible.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_owner_fences_the_old_owners_producer_for_that_stream() {
    let prefix = unique("fence");
    let config = tidemark::config::Config::parse(&format!(
        "[kafka]\nbootstrap = \"{}\"\nwatermark_topic = \"{prefix}.wm\"\n[cluster]\ngroup = \"{prefix}\"\ninstance_id = \"a\"\n[sources.wdt]\nkind = \"wdt.account_check\"\nbase_url = \"http://127.0.0.1:9\"\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"x\"\n[[streams]]\nid = \"wdt.account_check/shop-01\"\nsource = \"wdt\"\n[streams.params]\nshop_no = \"shop-01\"\n",
        kafka()
    ))
    .unwrap();
    let cluster = config.cluster.clone().unwrap();
    let mut kafka_cfg = config.kafka.clone();
    kafka_cfg.transactional_id = tidemark::cluster::transactional_id(&cluster, "wdt.account_check/shop-01");
    let record = |value: &str| tidemark::kafka::OutRecord {
        topic: std::sync::Arc::from(format!("{prefix}.data").as_str()),
        key: b"k".to_vec(),
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new().into(),
    };
    tidemark::kafka::topics::ensure(
        &kafka_cfg,
        &[tidemark::kafka::topics::DataTopic { name: format!("{prefix}.data"), compacted: false }],
    )
    .await
    .unwrap();
    let old = tidemark::kafka::TxnSink::connect(&kafka_cfg, None).await.unwrap();
    old.commit(vec![record("old owner, before")].into()).await.unwrap();
    let new = tidemark::kafka::TxnSink::connect(&kafka_cfg, None).await.unwrap();
    match old.commit(vec![record("old owner, after")].into()).await {
        Err(tidemark::kafka::CommitError::Fenced(_)) => {}
        other => panic!("the old owner's commit after the takeover: {other:?}"),
    }
    new.commit(vec![record("new owner")].into()).await.unwrap();
    let values: Vec<String> = consume_committed(&format!("{prefix}.data"))
        .iter()
        .map(|c| String::from_utf8(c.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(values, ["old owner, before", "new owner"]);
}

/// Replicas run the hanging-transaction check a single process runs at start, for each stream
/// they take over, with that stream's producer: a partition of the stream's topic that another
/// producer holds open is found, warned about, counted and settled (a marker written), and
/// the stream backfills exactly once once it is let go. Before, only a single process checked.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_settles_open_partitions_of_its_streams_before_it_reads() {
    use rdkafka::producer::Producer;
    use rdkafka::util::Timeout;

    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml(1, 0));
    let prefix = unique("settle");
    let mut cfg_text = cluster_toml(&sim, &prefix, (1, 0), false);
    cfg_text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let cfg = write(dir.path(), "cluster.toml", &cfg_text);
    let topic = format!("{prefix}.wdt");
    // Another producer holds a transaction open in every partition of the stream's topic.
    let (other, partitions) = hold_transaction_open(&cfg, &topic).await;

    let replica = start_replica(dir.path(), &cfg, "r1");
    let _reap = KillOnDrop(vec![replica.id()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replica_log(dir.path(), "r1").contains("settling it as committed") {
        assert!(Instant::now() < deadline, "no settle within 60 s:\n{}", tail(&replica_log(dir.path(), "r1"), 40));
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = replica_log(dir.path(), "r1");
    assert!(log.contains(&format!("topic={topic}")), "the warning names the stream's topic:\n{}", tail(&log, 20));
    let addr = log.lines().find_map(metrics_addr).expect("the replica logged its metrics address");
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let counted = metric(&text, &format!("tidemark_hanging_transactions_settled_total{{topic=\"{topic}\"}}"));
    assert_eq!(counted, Some(partitions as f64), "each settled partition counted once:\n{text}");
    // Let the other producer go; the stream's records all land once.
    other.abort_transaction(Timeout::After(Duration::from_secs(30))).unwrap();
    let wdt = sim.records("wdt.account_check").await;
    wait_for_records(&prefix, &["wdt"], wdt.len(), 1.0, "after the settle");
    stop(vec![replica]);
    assert_exactly(&consume_committed(&topic), &wdt, "wdt.account_check.avsc", "account_check_no");
    assert_watermarks_only_advance(&commits(&prefix));
}

/// README: "Two live replicas with the same `instance_id` are an error: the older one stops
/// with a fatal group error (exit 2)." The newer one goes on with the streams, and every
/// record is in Kafka exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn of_two_replicas_with_the_same_instance_id_the_older_exits_2_and_the_newer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_toml(4, 0));
    let prefix = unique("twins");
    let cfg = write(dir.path(), "cluster.toml", &cluster_toml(&sim, &prefix, (4, 0), true));
    let wdt = sim.records("wdt.account_check").await;
    // Both are instance "twin"; their logs go to files of their own.
    let twin = |log: &str| {
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("TIDEMARK_INSTANCE", "twin")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut older = twin("older.log");
    let _older_guard = KillOnDrop(vec![older.id()]);
    wait_for_windows(&prefix, 4 * WINDOWS, 0.2, "before the second twin starts");
    let newer = twin("newer.log");
    let _newer_guard = KillOnDrop(vec![newer.id()]);
    let status = wait_within(&mut older, Duration::from_secs(60)).expect("the older twin exits");
    let older_log = std::fs::read_to_string(dir.path().join("older.log")).unwrap();
    assert_eq!(status.code(), Some(2), "the older twin exits 2:\n{}", tail(&older_log, 20));
    assert!(older_log.contains("fatal error"), "it names the fatal group error:\n{}", tail(&older_log, 20));
    wait_for_records(&prefix, &["wdt"], wdt.len(), 1.0, "after the older twin left");
    stop(vec![newer]);
    let newer_log = std::fs::read_to_string(dir.path().join("newer.log")).unwrap();
    assert!(newer_log.contains("window committed"), "the newer twin ran the streams:\n{}", tail(&newer_log, 20));
    assert_exactly(&consume_committed(&format!("{prefix}.wdt")), &wdt, "wdt.account_check.avsc", "account_check_no");
    assert_watermarks_only_advance(&commits(&prefix));
}
