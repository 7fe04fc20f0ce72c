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

use apache_avro::types::Value as Avro;
use apache_avro::{GenericSingleObjectReader, Schema};
use chrono::{FixedOffset, NaiveDateTime, TimeZone};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidemark");

/// The broker for this test run: `KAFKA_BOOTSTRAP`, or one started by `dev/kafka` (once).
pub fn kafka() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP")
            && !b.is_empty()
        {
            return b;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dev/kafka");
        let out = Command::new(script).stderr(Stdio::inherit()).output().expect("run dev/kafka");
        assert!(out.status.success(), "dev/kafka failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let last = stdout.lines().last().expect("dev/kafka printed nothing");
        last.strip_prefix("KAFKA_BOOTSTRAP=").expect("last line is KAFKA_BOOTSTRAP=...").to_owned()
    })
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

/// Runs `tidemark run --until-caught-up` to completion.
pub fn run_until_caught_up(config: &Path) -> Output {
    Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .output()
        .expect("run worker")
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

/// A worker config for one simulated source and the given streams (`(id, shop)` pairs).
pub fn worker_config(
    sim: &Simulator,
    topic: &str,
    wm_topic: &str,
    txn_id: &str,
    appsecret: &str,
    max_span: &str,
    streams: &[(&str, &str)],
) -> String {
    let mut s = format!(
        r#"
[kafka]
bootstrap = "{kafka}"
transactional_id = "{txn_id}"
watermark_topic = "{wm_topic}"
watermark_partitions = 3
topic_partitions = 3

[sources.wdt]
kind = "wdt.account_check"
base_url = "{base}"
sid = "test-sid"
appkey = "test-appkey"
appsecret = "{appsecret}"
requests_per_second = 200
"#,
        kafka = kafka(),
        base = sim.base_url()
    );
    for (id, shop) in streams {
        s.push_str(&format!(
            r#"
[[streams]]
id = "{id}"
source = "wdt"
topic = "{topic}"
start = "6d"
lookback = "10m"
settle = "1m"
max_span = "{max_span}"
[streams.params]
shop_no = "{shop}"
"#
        ));
    }
    s
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

/// One committed Kafka record.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

/// Everything committed to `topic`, read from the beginning with `read_committed`.
pub fn consume_committed(topic: &str) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
        Ok(md) => md,
        Err(_) => return Vec::new(),
    };
    let mut tpl = TopicPartitionList::new();
    let mut pending = std::collections::HashSet::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).unwrap_or((0, 0));
            if hi > lo {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
                pending.insert(p.id());
            }
        }
    }
    let mut out = Vec::new();
    if pending.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
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
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    key: String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                    value: m.payload().map(|p| p.to_vec()),
                    headers,
                });
            }
        }
    }
    out
}

/// A schema from `schemas/`, read from disk as a consumer would.
pub fn schema(file: &str) -> Schema {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Decodes a single-object value into its record fields by name.
pub fn decode(schema: &Schema, bytes: &[u8]) -> BTreeMap<String, Avro> {
    let reader = GenericSingleObjectReader::builder().schema(schema.clone()).build().unwrap();
    match reader.read_value(&mut &bytes[..]).expect("value decodes with the .avsc from schemas/") {
        Avro::Record(fields) => fields.into_iter().collect(),
        other => panic!("not a record: {other:?}"),
    }
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
