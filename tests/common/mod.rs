//! Shared helpers for integration tests: the real Kafka broker, the simulator and worker
//! processes, and a `read_committed` reader that decodes values with the schemas in `schemas/`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use chrono::{FixedOffset, NaiveDateTime, TimeZone};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

mod seed001;
mod worker_toml;
#[allow(unused_imports)]
pub use seed001::{
    Expected, K3_APP_ID, NO_LINES, SEED_MATERIALS, add_stockin_without_lines, expected_outcome,
    refund_pipeline_sections, refund_simulator_sections,
};
#[allow(unused_imports)] // `dead_code` above does not cover re-exports some test binaries leave unused.
pub use worker_toml::WorkerToml;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidemark");

/// The broker for this test run: `KAFKA_BOOTSTRAP`, or one started by `dev/kafka` (once).
pub fn kafka() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| env_or_dev_script("KAFKA_BOOTSTRAP", "dev/kafka", &[]))
}

/// Runs a `dev/` script that starts or builds something and returns the `NAME=value` lines it
/// printed on stdout (progress goes to stderr).
fn dev_script(script: &str, args: &[&str]) -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out =
        Command::new(path).args(args).stderr(Stdio::inherit()).output().unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} {args:?} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The environment variable `name` if set, else what `script` printed as `name=...`.
fn env_or_dev_script(name: &str, script: &str, args: &[&str]) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => dev_script(script, args).remove(name).unwrap_or_else(|| panic!("{script} printed no {name}=")),
    }
}

/// A name no other test (or earlier run) uses: topics, transactional ids.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `tidemark simulate`, killed on drop.
pub struct Simulator {
    child: Child,
    pub addr: String,
}

impl Simulator {
    pub fn start(dir: &Path, toml: &str) -> Simulator {
        let cfg = write(dir, "simulator.toml", toml);
        let mut child = Command::new(BIN)
            .args(["simulate", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("simulator said {line:?}")).to_owned();
        Simulator { child, addr }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /_simulator/requests`: per vendor, each request's arrival, bans, refusals.
    pub async fn request_log(&self) -> Value {
        reqwest::get(format!("{}/_simulator/requests", self.base_url())).await.unwrap().json().await.unwrap()
    }

    /// Adds `record` to `kind`'s data set at `at` (the time the API filters on) in `group`,
    /// as a vendor's late or odd record; panics if the simulator refuses it.
    pub async fn insert(&self, kind: &str, at: chrono::DateTime<chrono::Utc>, group: &str, record: &Value) {
        let at = tidemark::domain::time::format_beijing(at, tidemark::domain::time::DATETIME);
        let body = serde_json::json!({"at": at, "group": group, "record": record});
        let resp = reqwest::Client::new()
            .post(format!("{}/_simulator/records/{kind}", self.base_url()))
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "the simulator refused {kind} record at {at}: {:?}", resp.text().await);
    }

    /// The simulator's whole data set for `kind`, in served order.
    pub async fn records(&self, kind: &str) -> Vec<Value> {
        let url = format!("{}/_simulator/records/{kind}", self.base_url());
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests already out when a ban began reach the simulator within this: the first request
/// sent after the pause arrives later than that.
pub const IN_FLIGHT_SLACK_MS: u64 = 1000;

/// A list of milliseconds from the request log, sorted.
pub fn ms_list(v: &Value) -> Vec<u64> {
    let mut list: Vec<u64> = v.as_array().unwrap_or(&Vec::new()).iter().map(|x| x.as_u64().unwrap()).collect();
    list.sort_unstable();
    list
}

/// Each of `vendor`'s bans in the simulator's request `log` was kept for the `ban_ms` its
/// answer named, no less and not much more: the first request after those already in flight
/// arrives no sooner than the ban's end and within `late_ms` of it. A client that resumed
/// early fails the first; one that ignored the length named and paused for its own default
/// (10 s for the first ban without one) fails the second.
pub fn assert_named_bans_kept(log: &Value, vendor: &str, ban_ms: u64, late_ms: u64) {
    let arrivals = ms_list(&log[vendor]["arrivals_ms"]);
    let bans = log[vendor]["bans"].as_array().unwrap();
    assert!(!bans.is_empty(), "the run met no {vendor} ban: {log}");
    for (i, ban) in bans.iter().enumerate() {
        let began = ban["began_ms"].as_u64().unwrap();
        let next = arrivals.iter().copied().find(|&a| a > began + IN_FLIGHT_SLACK_MS);
        let next = next.unwrap_or_else(|| panic!("{vendor} ban {i} at {began} ms: no request after it: {log}"));
        let (end, waited) = (began + ban_ms, next - began);
        assert!(next >= end, "{vendor} ban {i} at {began} ms for {ban_ms} ms: a request came {waited} ms after: {log}");
        assert!(
            next <= end + late_ms,
            "{vendor} ban {i} at {began} ms for {ban_ms} ms: the next request waited {waited} ms, not the time named: {log}"
        );
    }
}

/// Kills the processes it names when dropped, so a failed assertion leaves none behind.
pub struct KillOnDrop(pub Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            // Those already ended (the normal path) just make `kill` fail.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
    }
}

/// How long a `run --until-caught-up` may take before a test fails instead of hanging: a
/// failing step is retried forever by design, so a regression would otherwise hang CI.
pub const RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `tidemark run --until-caught-up` to completion, within [`RUN_DEADLINE`].
pub fn run_until_caught_up(config: &Path) -> Output {
    run_until_caught_up_within(config, RUN_DEADLINE)
}

/// Runs `tidemark run --until-caught-up` to completion; past `deadline` it is killed and the
/// test fails with the tail of its log.
pub fn run_until_caught_up_within(config: &Path, deadline: std::time::Duration) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--until-caught-up", "--config"]).arg(config).env("RUST_LOG", "info");
    output_within(cmd, deadline)
}

/// Runs `cmd` to completion like [`Command::output`]; past `deadline` it is killed and the
/// test fails with the tail of its log.
pub fn output_within(mut cmd: Command, deadline: std::time::Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let Some(status) = wait_within(&mut child, deadline) else {
        let log = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        panic!("{cmd:?} did not finish within {deadline:?}; the end of its log:\n{}", tail(&log, 40));
    };
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

/// Waits for `child` to exit within `deadline`; past it, kills it and returns `None`.
pub fn wait_within(child: &mut Child, deadline: std::time::Duration) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The last `n` lines of a log, for a failure message.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child's stderr lines, read on a thread (the child must have been spawned with stderr
/// piped).
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().expect("stderr piped")));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// How long a test waits for a log line it expects: a failing step is retried forever by
/// design, so without a deadline a regression would hang the run.
pub const LOG_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Reads `log` (from [`stderr_lines`]) until `done` holds for a line, within `within`; every
/// line read goes to `seen`. Past the deadline, or if the process closed its stderr first,
/// the test fails saying it waited for `what`, with the log's tail.
pub fn read_log_until(
    log: &std::sync::mpsc::Receiver<String>,
    what: &str,
    within: std::time::Duration,
    seen: &mut Vec<String>,
    mut done: impl FnMut(&str) -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match log.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => {
                let finished = done(&line);
                seen.push(line);
                if finished {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("no {what} in the log within {within:?}; its end:\n{}", tail(&seen.join("\n"), 40))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the process closed its log before {what}; its end:\n{}", tail(&seen.join("\n"), 40))
            }
        }
    }
}

/// Waits for `n` log lines containing `what` (see [`read_log_until`]).
pub fn wait_for_lines(
    log: &std::sync::mpsc::Receiver<String>,
    what: &str,
    n: usize,
    within: std::time::Duration,
    seen: &mut Vec<String>,
) {
    let mut found = 0;
    read_log_until(log, &format!("{n} lines with {what:?}"), within, seen, |l| {
        found += usize::from(l.contains(what));
        found >= n
    });
}

/// The rest of a log, until the process closes its stderr (or `within` passes).
pub fn rest_of(log: &std::sync::mpsc::Receiver<String>, within: std::time::Duration, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + within;
    while let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        seen.push(line);
    }
}

/// Starts `tidemark run` with stderr piped, for tests that watch or kill it.
pub fn spawn_worker(config: &Path, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// Starts `tidemark write` on `config`, its stderr piped (read it with [`stderr_lines`]).
pub fn spawn_writer(config: &Path) -> Child {
    Command::new(BIN)
        .args(["write", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writer")
}

/// The address in a process's "serving /metrics" log line.
pub fn metrics_addr(line: &str) -> Option<String> {
    if !line.contains("serving /metrics") {
        return None;
    }
    line.split("addr=").nth(1).map(|a| a.split_whitespace().next().unwrap().to_owned())
}

pub fn simulator_config(records: usize, latency: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[faults]
latency = "{latency}"
[wdt]
sid = "test-sid"
appkey = "test-appkey"
appsecret = "test-secret"
[wdt.account_check]
seed = 11
records = {records}
from = "5d"
until = "1h"
shops = ["shop-01", "shop-02"]
"#
    )
}

/// Sections to append to [`simulator_config`]: a 奇门 data set of `stockin_refund` records over
/// the last five days, whose credentials [`WorkerToml::qimen`] uses (its secret "test-secret").
pub fn qimen_simulator(records: usize) -> String {
    format!(
        "[qimen]\napp_key = \"qk\"\napp_secret = \"test-secret\"\ntarget_app_key = \"t\"\nsid = \"s\"\n\
         [qimen.stockin_refund]\nseed = 12\nrecords = {records}\nfrom = \"5d\"\nuntil = \"1h\"\nshops = [\"shop-01\", \"shop-02\"]\n"
    )
}

/// One committed Kafka record.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp (ms since the epoch): when its transaction produced it.
    pub timestamp: i64,
}

/// Everything committed to `topic`, read from the beginning with `read_committed`. Panics if
/// the topic does not exist or any step of reading it fails, so an empty answer means: the
/// topic exists and every partition was read to its committed end without finding a record.
pub fn consume_committed(topic: &str) -> Vec<Consumed> {
    consume_from(kafka(), topic)
}

/// Like [`consume_committed`], read again until at least `n` records are visible or `within`
/// passes (then what was read last). For readers racing a worker that still runs: Kafka writes
/// a transaction's commit markers to its partitions just after the commit returns, and a
/// `read_committed` reader stops short of them until then.
pub fn consume_committed_reaching(topic: &str, n: usize, within: Duration) -> Vec<Consumed> {
    let deadline = Instant::now() + within;
    loop {
        let got = consume_committed(topic);
        if got.len() >= n || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Like [`consume_committed`], from the broker at `bootstrap`.
pub fn consume_from(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    consume_with(&[("bootstrap.servers", bootstrap)], topic)
}

/// Like [`consume_committed`], with these client properties (bootstrap, TLS, SASL).
pub fn consume_with(properties: &[(&str, &str)], topic: &str) -> Vec<Consumed> {
    consume_if_exists_with(properties, topic).unwrap_or_else(|| panic!("topic {topic} does not exist"))
}

/// Like [`consume_committed`], but `None` if the topic does not exist (yet): for callers that
/// poll while a worker may still be creating it.
pub fn consume_if_exists(topic: &str) -> Option<Vec<Consumed>> {
    consume_if_exists_with(&[("bootstrap.servers", kafka())], topic)
}

/// Whether `topic` exists on the test broker; panics if the broker cannot say.
pub fn topic_exists(topic: &str) -> bool {
    topic_exists_with(&[("bootstrap.servers", kafka())], topic)
}

/// Like [`topic_exists`], with these client properties (bootstrap, TLS, SASL).
pub fn topic_exists_with(properties: &[(&str, &str)], topic: &str) -> bool {
    partitions(&reader(properties), topic).is_some()
}

/// A `read_committed` consumer in a group of its own that reports each partition's end.
fn reader(properties: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(*k, *v);
    }
    config
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // Reading must never create the topic it checks for.
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap_or_else(|e| panic!("create a reader: {e}"))
}

/// The partition ids of `topic`, `None` if the broker says it does not exist; panics on any
/// other answer than a clean one.
fn partitions(consumer: &BaseConsumer, topic: &str) -> Option<Vec<i32>> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of topic {topic}: {e}"));
    let t = md.topics().iter().find(|t| t.name() == topic).unwrap_or_else(|| panic!("metadata omits topic {topic}"));
    match t.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return None,
        Some(e) => panic!("metadata of topic {topic}: {}", RDKafkaErrorCode::from(e)),
    }
    assert!(!t.partitions().is_empty(), "topic {topic} has no partitions");
    // A partition-level error (no leader yet, say) is left to the offset query below, which
    // waits for a leader and fails loudly if none comes.
    Some(t.partitions().iter().map(|p| p.id()).collect())
}

fn consume_if_exists_with(properties: &[(&str, &str)], topic: &str) -> Option<Vec<Consumed>> {
    let consumer = reader(properties);
    let ids = partitions(&consumer, topic)?;
    let mut tpl = TopicPartitionList::new();
    let mut pending = std::collections::HashSet::new();
    for id in ids {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, id, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("offsets of {topic} partition {id}: {e}"));
        // An empty partition (nothing ever written, or all of it deleted) has nothing to read;
        // any other is read until the consumer reports its committed end.
        if hi > lo {
            tpl.add_partition_offset(topic, id, Offset::Beginning).unwrap();
            pending.insert(id);
        }
    }
    let mut out = Vec::new();
    if pending.is_empty() {
        return Some(out);
    }
    consumer.assign(&tpl).unwrap_or_else(|e| panic!("assign {topic}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                let headers: BTreeMap<String, String> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                // Control records (settling a hanging transaction) carry no data: consumers
                // skip them, as the README says.
                if headers.contains_key("tidemark.control") {
                    continue;
                }
                out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                    value: m.payload().map(|p| p.to_vec()),
                    headers,
                    timestamp: m.timestamp().to_millis().unwrap_or_default(),
                });
            }
        }
    }
    Some(out)
}

/// A schema from `schemas/`, read from disk as a consumer would.
pub fn schema(file: &str) -> Schema {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Decodes a single-object value into its record fields by name.
pub fn decode(schema: &Schema, bytes: &[u8]) -> BTreeMap<String, Avro> {
    match read_single_object(schema, bytes) {
        Avro::Record(fields) => fields.into_iter().collect(),
        other => panic!("not a record: {other:?}"),
    }
}

/// Reads an Avro single object: `C3 01`, the spec fingerprint of `schema` (little-endian),
/// then the datum, which must be consumed exactly.
pub fn read_single_object(schema: &Schema, bytes: &[u8]) -> Avro {
    assert!(
        bytes.len() >= 10 && bytes[..2] == [0xC3, 0x01],
        "not a single object: {:02x?}",
        &bytes[..bytes.len().min(10)]
    );
    let json = serde_json::to_string(schema).unwrap();
    let want = tidemark::avro::canonical::fingerprint(&json).unwrap();
    assert_eq!(u64::from_le_bytes(bytes[2..10].try_into().unwrap()), want, "single-object fingerprint");
    let mut datum = &bytes[10..];
    let v = GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut datum)
        .expect("value decodes with the .avsc from schemas/");
    assert!(datum.is_empty(), "{} bytes left after the datum", datum.len());
    v
}

/// Strips a `["null", T]` union.
pub fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => inner,
        other => other,
    }
}

/// An Avro decimal as text at `scale`, computed here independently of the crate under test.
pub fn decimal_text(v: &Avro, scale: u32) -> String {
    let Avro::Decimal(d) = unwrap_union(v) else { panic!("not a decimal: {v:?}") };
    let bytes: Vec<u8> = d.try_into().unwrap();
    let mut n: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        n = (n << 8) | b as i128;
    }
    let sign = if n < 0 { "-" } else { "" };
    let abs = n.unsigned_abs();
    let p = 10u128.pow(scale);
    format!("{sign}{}.{:0width$}", abs / p, abs % p, width = scale as usize)
}

/// Beijing wall-clock text as unix millis.
pub fn beijing_millis(text: &str) -> i64 {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
    FixedOffset::east_opt(8 * 3600).unwrap().from_local_datetime(&naive).unwrap().timestamp_millis()
}

/// Starts `tidemark run --until-caught-up`, lets it commit `windows` windows (or snapshots),
/// then SIGKILLs it. Panics if it finished before that point.
pub fn kill_after_windows(config: &Path, windows: usize) {
    let mut worker = spawn_worker(config, &["--until-caught-up"]);
    let _reap = KillOnDrop(vec![worker.id()]);
    let lines = stderr_lines(&mut worker);
    let deadline = std::time::Instant::now() + KILL_POINT_DEADLINE;
    let (mut seen, mut log) = (0, Vec::new());
    while seen < windows {
        match lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => {
                seen += usize::from(line.contains(" committed"));
                log.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "{seen} of {windows} windows committed within {KILL_POINT_DEADLINE:?}:\n{}",
                    tail(&log.join("\n"), 40)
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the worker ended before the kill point ({seen} of {windows}):\n{}", tail(&log.join("\n"), 40))
            }
        }
    }
    worker.kill().unwrap(); // SIGKILL: no chance to finish the open transaction.
    worker.wait().unwrap();
}

/// How long [`kill_after_windows`] waits for its windows.
const KILL_POINT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Asserts `consumed` holds exactly `expected` (the simulator's records), each once, keyed by
/// `key_field`, every field equal to the vendor's value as the schema in `schemas/` reads it.
pub fn assert_exactly(consumed: &[Consumed], expected: &[Value], schema_file: &str, key_field: &str) {
    let schema = schema(schema_file);
    assert_eq!(consumed.len(), expected.len(), "committed record count equals the simulator's");
    let by_key: BTreeMap<String, &Value> = expected.iter().map(|r| (text(&r[key_field]), r)).collect();
    let mut seen = std::collections::HashSet::new();
    for c in consumed {
        assert!(seen.insert(c.key.clone()), "key {} appears twice", c.key);
        let want = by_key.get(&c.key).unwrap_or_else(|| panic!("key {} is not a simulator record", c.key));
        let bytes = c.value.as_ref().expect("not a tombstone");
        let got = read_single_object(&schema, bytes);
        check_value(&got, Some(want), &schema, &c.key);
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Compares one decoded Avro value with the vendor's JSON value, as the schema types it.
pub fn check_value(got: &Avro, want: Option<&Value>, schema: &Schema, path: &str) {
    use apache_avro::schema::Schema as S;
    match schema {
        S::Union(u) => {
            let inner = &u.variants()[1];
            let empty = match want {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) if s.is_empty() => !matches!(inner, S::String),
                Some(Value::String(s)) if matches!(inner, S::TimestampMillis) => s.starts_with("0000-00-00"),
                _ => false,
            };
            if empty {
                assert_eq!(got, &Avro::Union(0, Box::new(Avro::Null)), "{path}: {want:?} should be null");
            } else {
                let Avro::Union(1, g) = got else { panic!("{path}: expected a value for {want:?}, got {got:?}") };
                check_value(g, want, inner, path);
            }
        }
        S::Record(r) => {
            let Avro::Record(fields) = got else { panic!("{path}: not a record") };
            let obj =
                want.and_then(Value::as_object).unwrap_or_else(|| panic!("{path}: vendor value is not an object"));
            for ((name, fv), f) in fields.iter().zip(&r.fields) {
                let joined;
                let w = match f.custom_attributes.get("tidemark.join") {
                    Some(Value::Array(parts)) => {
                        let texts: Vec<String> = parts.iter().map(|p| text(&obj[p.as_str().unwrap()])).collect();
                        joined = Value::String(texts.join(" "));
                        Some(&joined)
                    }
                    _ => obj.get(name),
                };
                check_value(fv, w, &f.schema, &format!("{path}.{name}"));
            }
        }
        S::Array(a) => {
            let Avro::Array(items) = got else { panic!("{path}: not an array") };
            let empty = Vec::new();
            let want_items = want.and_then(Value::as_array).unwrap_or(&empty);
            assert_eq!(items.len(), want_items.len(), "{path}: list length");
            for (i, (g, w)) in items.iter().zip(want_items).enumerate() {
                check_value(g, Some(w), &a.items, &format!("{path}[{i}]"));
            }
        }
        S::String => assert_eq!(got, &Avro::String(text(want.unwrap())), "{path}"),
        S::Int => assert_eq!(got, &Avro::Int(text(want.unwrap()).parse().unwrap()), "{path}"),
        S::Long => assert_eq!(got, &Avro::Long(text(want.unwrap()).parse().unwrap()), "{path}"),
        S::Decimal(d) => {
            let scale = d.scale as u32;
            let w = text(want.unwrap());
            let (int, frac) = w.split_once('.').unwrap_or((&w, ""));
            let expected = format!("{int}.{frac:0<width$}", width = scale as usize);
            assert_eq!(decimal_text(got, scale), expected, "{path}");
        }
        S::TimestampMillis => {
            let w = text(want.unwrap());
            // Vendors write goods dates (expire_date) without a time: midnight, Beijing.
            let naive = NaiveDateTime::parse_from_str(&w, "%Y-%m-%d %H:%M:%S")
                .or_else(|_| NaiveDateTime::parse_from_str(&w, "%Y%m%d %H:%M:%S"))
                .or_else(|_| chrono::NaiveDate::parse_from_str(&w, "%Y-%m-%d").map(|d| d.and_time(Default::default())))
                .unwrap_or_else(|e| panic!("{path}: {w:?}: {e}"));
            let ms = FixedOffset::east_opt(8 * 3600).unwrap().from_local_datetime(&naive).unwrap().timestamp_millis();
            assert_eq!(got, &Avro::TimestampMillis(ms), "{path} from {w:?}");
        }
        other => panic!("{path}: the test does not compare {other:?}"),
    }
}

/// The latest value per key (what a compacted topic converges to); `None` is a tombstone.
pub fn latest_by_key(consumed: &[Consumed]) -> BTreeMap<String, Option<Vec<u8>>> {
    consumed.iter().map(|c| (c.key.clone(), c.value.clone())).collect()
}

/// What a compacted topic holds once compacted: each key's last value, without tombstones
/// (as records with their key and value only).
pub fn live_records(consumed: &[Consumed]) -> Vec<Consumed> {
    latest_by_key(consumed)
        .into_iter()
        .filter_map(|(key, value)| {
            value.map(|v| Consumed {
                partition: 0,
                offset: 0,
                key,
                value: Some(v),
                headers: Default::default(),
                timestamp: 0,
            })
        })
        .collect()
}

/// The schema registry for this test run: `SCHEMA_REGISTRY_URL`, or the Apicurio Registry
/// that `dev/registry` starts (once).
pub fn registry() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| env_or_dev_script("SCHEMA_REGISTRY_URL", "dev/registry", &[]))
}

/// The independent consumers (`dev/interop setup`): Java Avro's classpath and the Python
/// interpreter of the venv that holds fastavro and confluent-kafka.
pub struct Interop {
    pub java_cp: String,
    pub python: String,
}

pub fn interop() -> &'static Interop {
    static INTEROP: OnceLock<Interop> = OnceLock::new();
    INTEROP.get_or_init(|| Interop {
        java_cp: env_or_dev_script("INTEROP_JAVA_CP", "dev/interop", &["setup"]),
        python: env_or_dev_script("INTEROP_PYTHON", "dev/interop", &["setup"]),
    })
}

/// One record as an independent consumer printed it (see tests/interop/).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Decoded {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub writer: Option<String>,
    pub schema_ref: Option<String>,
    pub value: Option<Value>,
}

/// Which consumer decodes a topic, and from what.
pub enum Reader<'a> {
    /// Java Avro's `BinaryMessageDecoder`, holding `schemas/` (single-object values).
    JavaSingleObject,
    /// Python fastavro alone, holding `schemas/` (single-object values).
    FastavroSingleObject,
    /// Python fastavro alone, holding the schemas of another directory (an `endpoints_dir`).
    FastavroSchemasIn(&'a Path),
    /// Java Avro with schemas fetched from the registry by id (Confluent framing).
    JavaConfluent(&'a str),
    /// confluent-kafka's `AvroDeserializer` with its `SchemaRegistryClient` (Confluent framing).
    PythonConfluent(&'a str),
}

/// Reads every committed record of `topic` with an independent consumer; panics with its
/// stderr if it fails (a value it cannot decode is a failure).
pub fn decode_with(reader: Reader<'_>, topic: &str) -> Vec<Decoded> {
    let io = interop();
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python/decode_topic.py");
    let common = ["--bootstrap", kafka(), "--topic", topic];
    let mut cmd = match reader {
        Reader::JavaSingleObject | Reader::JavaConfluent(_) => {
            let mut c = Command::new("java");
            c.args(["-cp", &io.java_cp, "tidemark.interop.DecodeTopic"]);
            c
        }
        Reader::FastavroSingleObject | Reader::FastavroSchemasIn(_) | Reader::PythonConfluent(_) => {
            let mut c = Command::new(&io.python);
            c.arg(&script);
            c
        }
    };
    cmd.args(common);
    match reader {
        Reader::JavaSingleObject | Reader::FastavroSingleObject => {
            cmd.args(["--format", "single-object", "--schemas"]).arg(&schemas);
        }
        Reader::FastavroSchemasIn(dir) => {
            cmd.args(["--format", "single-object", "--schemas"]).arg(dir);
        }
        Reader::JavaConfluent(url) | Reader::PythonConfluent(url) => {
            cmd.args(["--format", "confluent", "--registry", url]);
        }
    }
    let out = cmd.output().expect("start the interop consumer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interop consumer failed on {topic}: {stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line from the consumer: {e}: {l}")))
        .collect()
}

/// A value as the interop consumers render it (decimals as text at their scale, timestamps as
/// epoch millis), turned back into the Avro value the schema describes, for [`check_value`].
pub fn rendered_to_avro(v: &Value, schema: &Schema, path: &str) -> Avro {
    use apache_avro::schema::Schema as S;
    match schema {
        S::Union(u) => match v {
            Value::Null => Avro::Union(0, Box::new(Avro::Null)),
            other => Avro::Union(1, Box::new(rendered_to_avro(other, &u.variants()[1], path))),
        },
        S::Record(r) => {
            let obj = v.as_object().unwrap_or_else(|| panic!("{path}: not an object: {v}"));
            assert_eq!(obj.len(), r.fields.len(), "{path}: field count");
            Avro::Record(
                r.fields
                    .iter()
                    .map(|f| {
                        let fv = obj.get(&f.name).unwrap_or_else(|| panic!("{path}.{}: missing", f.name));
                        (f.name.clone(), rendered_to_avro(fv, &f.schema, &format!("{path}.{}", f.name)))
                    })
                    .collect(),
            )
        }
        S::Array(a) => Avro::Array(
            v.as_array()
                .unwrap_or_else(|| panic!("{path}: not an array: {v}"))
                .iter()
                .enumerate()
                .map(|(i, x)| rendered_to_avro(x, &a.items, &format!("{path}[{i}]")))
                .collect(),
        ),
        S::String => Avro::String(v.as_str().unwrap_or_else(|| panic!("{path}: not a string: {v}")).to_owned()),
        S::Int => Avro::Int(v.as_i64().unwrap_or_else(|| panic!("{path}: not an integer: {v}")) as i32),
        S::Long => Avro::Long(v.as_i64().unwrap_or_else(|| panic!("{path}: not an integer: {v}"))),
        S::TimestampMillis => Avro::TimestampMillis(v.as_i64().unwrap_or_else(|| panic!("{path}: not millis: {v}"))),
        S::Decimal(d) => {
            let text = v.as_str().unwrap_or_else(|| panic!("{path}: a decimal must be rendered as text: {v}"));
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            assert_eq!(frac.len(), d.scale, "{path}: {text} has the schema's scale");
            let unscaled: i128 = format!("{int}{frac}").parse().unwrap_or_else(|e| panic!("{path}: {text}: {e}"));
            Avro::Decimal(apache_avro::Decimal::from(unscaled.to_be_bytes().to_vec()))
        }
        other => panic!("{path}: the test does not compare {other:?}"),
    }
}

/// Asserts an independent consumer read exactly `expected` (the simulator's records), each
/// once, every field equal to the vendor's value as the schema in `schemas/` types it.
pub fn assert_decoded_exactly(decoded: &[Decoded], expected: &[Value], schema: &Schema, key_field: &str) {
    assert_eq!(decoded.len(), expected.len(), "records decoded equal the simulator's");
    let by_key: BTreeMap<String, &Value> = expected.iter().map(|r| (text(&r[key_field]), r)).collect();
    let mut seen = std::collections::HashSet::new();
    for d in decoded {
        let key = d.key.clone().expect("every record has a key");
        assert!(seen.insert(key.clone()), "key {key} appears twice");
        let want = by_key.get(&key).unwrap_or_else(|| panic!("key {key} is not a simulator record"));
        let value = d.value.as_ref().unwrap_or_else(|| panic!("{key}: not a tombstone"));
        check_value(&rendered_to_avro(value, schema, &key), Some(want), schema, &key);
    }
}

/// The SASL_SSL (SCRAM-SHA-512) broker of `dev/kafka-secure`, started once.
pub struct SecureKafka {
    pub bootstrap: String,
    pub ca: String,
    pub wrong_ca: String,
    pub username: String,
    pub password: String,
}

pub fn secure_kafka() -> &'static SecureKafka {
    static SECURE: OnceLock<SecureKafka> = OnceLock::new();
    SECURE.get_or_init(|| {
        let mut vars = dev_script("dev/kafka-secure", &[]);
        let mut get = |name: &str| vars.remove(name).unwrap_or_else(|| panic!("dev/kafka-secure printed no {name}="));
        let password = std::fs::read_to_string(get("SECURE_PASSWORD_FILE")).unwrap().trim().to_owned();
        SecureKafka {
            bootstrap: get("SECURE_BOOTSTRAP"),
            ca: get("SECURE_CA"),
            wrong_ca: get("SECURE_WRONG_CA"),
            username: get("SECURE_USERNAME"),
            password,
        }
    })
}

/// Creates `topic` as the worker of `config` would, then has a transactional producer of its
/// own (not the worker's id) write one record to every partition and leave its transaction
/// open: until it ends, `read_committed` readers stop in front of it, as they do in front of a
/// transaction whose markers were lost. Returns the producer and the partition count.
pub async fn hold_transaction_open(config: &Path, topic: &str) -> (rdkafka::producer::BaseProducer, usize) {
    let (producer, partitions) = hold_transactions_open(config, &[topic]).await;
    (producer, partitions[0])
}

/// [`hold_transaction_open`] for every partition of each of `topics`, in one transaction of
/// one producer; the partition count of each.
pub async fn hold_transactions_open(config: &Path, topics: &[&str]) -> (rdkafka::producer::BaseProducer, Vec<usize>) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let kafka_cfg = tidemark::config::Config::load(config).unwrap().kafka;
    let data: Vec<_> =
        topics.iter().map(|t| tidemark::kafka::topics::DataTopic { name: (*t).to_owned(), compacted: false }).collect();
    tidemark::kafka::topics::ensure(&kafka_cfg, &data).await.unwrap();
    let within = Duration::from_secs(30);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("transactional.id", unique("other-writer"))
        .set("transaction.timeout.ms", "300000")
        .create()
        .unwrap();
    let mut counts = Vec::new();
    for topic in topics {
        let partitions = producer.client().fetch_metadata(Some(topic), within).unwrap().topics()[0].partitions().len();
        assert!(partitions > 0, "topic {topic} exists before it is held open");
        counts.push(partitions);
    }
    producer.init_transactions(within).unwrap();
    producer.begin_transaction().unwrap();
    for (topic, partitions) in topics.iter().zip(&counts) {
        for p in 0..*partitions as i32 {
            producer.send(BaseRecord::to(topic).partition(p).key("open").payload("open")).map_err(|(e, _)| e).unwrap();
        }
    }
    producer.flush(within).unwrap();
    (producer, counts)
}

/// The value of the sample `name_and_labels` (exactly as rendered) in a /metrics text.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// The code block marked `<!-- snippet: NAME -->` in docs/consuming.md, as printed.
pub fn guide_snippet(name: &str) -> String {
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/consuming.md")).unwrap();
    let after = guide.split_once(&format!("<!-- snippet: {name} -->")).unwrap_or_else(|| panic!("no snippet {name}")).1;
    let body = after.trim_start().split_once('\n').unwrap().1;
    body[..body.find("\n```").unwrap_or_else(|| panic!("{name}: unclosed block"))].to_owned()
}

/// Runs the program that `docs/consuming.md` prints under `<!-- snippet: NAME -->` (Python with
/// the interop venv, Java by the source launcher on the interop classpath) and returns its
/// `key<TAB>record` lines.
pub fn run_guide_snippet(name: &str, args: &[&str]) -> Vec<(String, String)> {
    let code = guide_snippet(name);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), name, &code);
    let io = interop();
    let mut cmd = if name.ends_with(".py") {
        Command::new(&io.python)
    } else {
        let mut c = Command::new("java");
        c.args(["-cp", &io.java_cp]);
        c
    };
    // Files, not pipes, so the deadline can kill it without a reader thread.
    let (out_path, err_path) = (dir.path().join("out.txt"), dir.path().join("err.txt"));
    let mut child = cmd
        .arg(&file)
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, SNIPPET_DEADLINE);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("{name} did not finish within {SNIPPET_DEADLINE:?}: {stderr}"));
    assert!(status.success(), "{name} failed: {stderr}");
    String::from_utf8(std::fs::read(&out_path).unwrap())
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or_else(|| panic!("{name} printed {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// How long a guide snippet may take to read a topic to its end.
const SNIPPET_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
