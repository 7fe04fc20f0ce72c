//! What downstream teams run reads what tidemark writes: Java Avro's `BinaryMessageDecoder` and
//! Python fastavro decode every single-object value holding nothing but `schemas/`;
//! confluent-kafka's `AvroDeserializer` (and Java Avro) decode every Confluent-framed value
//! through a real schema registry (Apicurio). Plus the registry's failure modes and schema
//! evolution, against the real broker and registry.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};

/// Every topic of `examples/tidemark.toml`: (kind, topic, schema file, business id).
const TOPICS: [(&str, &str, &str, &str); 5] = [
    ("wdt.account_check", "wdt.account_check", "wdt.account_check.avsc", "account_check_no"),
    ("qimen.stockin_refund", "qimen.stockin_refund", "qimen.stockin_refund.avsc", "order_no"),
    ("top.finance_order", "top.finance_order", "top.finance_order.avsc", "biz_uk"),
    ("finance.transactions", "finance.transactions", "finance.transactions.avsc", "trans_id"),
    ("finance.balances", "finance.balances", "finance.balances.avsc", "account_id"),
];

const SECRETS: [(&str, &str); 6] = [
    ("WDT_APPSECRET", "wdt-secret"),
    ("QIMEN_APP_SECRET", "qimen-secret"),
    ("TOP_APP_SECRET", "top-secret"),
    ("TOP_SESSION", "top-session"),
    ("FINANCE_APP_SECRET", "finance-secret"),
    ("K3CLOUD_APP_SECRET", "k3cloud-secret"),
];

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)).unwrap()
}

/// The demo's simulators (`examples/simulator.toml`) on a free port.
fn example_simulator(dir: &Path) -> Simulator {
    let mut text = example("simulator.toml").replace("${TIDEMARK_SIM_LISTEN:-127.0.0.1:18080}", "127.0.0.1:0");
    for (name, value) in SECRETS {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    Simulator::start(dir, &text)
}

/// The demo's worker config (`examples/tidemark.toml`, every source) with this test's topics,
/// in the Confluent format it ships with, or in single-object encoding without the registry.
fn example_worker(prefix: &str, confluent: bool) -> String {
    let mut out = String::new();
    let mut in_registry = false;
    for line in example("tidemark.toml").lines() {
        if line.starts_with('[') {
            in_registry = line == "[schema_registry]";
        }
        if !confluent && (in_registry || line.starts_with("value_format")) {
            continue;
        }
        let line = match line.split_once(" = \"") {
            Some(("topic" | "watermark_topic" | "transactional_id", rest)) => {
                format!("{} = \"{prefix}.{rest}", line.split(' ').next().unwrap())
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Runs the worker until caught up with the demo's environment.
fn run_example(dir: &Path, sim: &Simulator, config: &str) -> Output {
    let cfg = write(dir, "worker.toml", config);
    let base = sim.base_url();
    Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(&cfg)
        .envs(SECRETS)
        .env("KAFKA_BOOTSTRAP", kafka())
        .env("SCHEMA_REGISTRY_URL", registry())
        .env("TIDEMARK_METRICS_LISTEN", "127.0.0.1:0")
        .env("WDT_BASE_URL", &base)
        .env("QIMEN_URL", format!("{base}/router/qm"))
        .env("TOP_URL", format!("{base}/router/rest"))
        .env("FINANCE_URL", format!("{base}/api"))
        .env("K3CLOUD_URL", &base)
        .output()
        .expect("run worker")
}

/// Asserts a guide snippet printed every expected record once, by key.
fn assert_snippet_read_all(lines: &[(String, String)], expected: &[Value], key: &str, name: &str) {
    let mut got: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    let mut want: Vec<String> = expected.iter().map(|r| r[key].as_str().unwrap().to_owned()).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{name} read every record once");
}

/// The demo's whole pipeline into fresh topics, in either value format: the simulators (kept
/// running with their directory) and the topics' prefix.
fn backfill_example(confluent: bool) -> (tempfile::TempDir, Simulator, String) {
    let dir = tempfile::tempdir().unwrap();
    let sim = example_simulator(dir.path());
    let prefix = unique(if confluent { "interop-cf" } else { "interop-so" });
    let out = run_example(dir.path(), &sim, &example_worker(&prefix, confluent));
    assert!(out.status.success(), "worker failed: {}", String::from_utf8_lossy(&out.stderr));
    (dir, sim, prefix)
}

fn java_fingerprint(schema_file: &str) -> String {
    let avsc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(schema_file)).unwrap();
    format!("0x{:016x}", tidemark::avro::canonical::fingerprint(&avsc).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn java_and_fastavro_decode_every_single_object_value_with_only_the_schemas() {
    let (_dir, sim, prefix) = backfill_example(false);
    for (kind, topic, schema_file, key) in TOPICS {
        let topic = format!("{prefix}.{topic}");
        let expected = sim.records(kind).await;
        let schema = schema(schema_file);
        for reader in [Reader::JavaSingleObject, Reader::FastavroSingleObject] {
            let decoded = decode_with(reader, &topic);
            assert_decoded_exactly(&decoded, &expected, &schema, key);
            // The consumers matched the header against fingerprints they computed themselves.
            let name = schema.name().unwrap().fullname(None);
            for d in &decoded {
                assert_eq!(d.writer.as_deref(), Some(name.as_str()), "{topic}");
                assert_eq!(d.schema_ref.as_deref(), Some(java_fingerprint(schema_file).as_str()), "{topic}");
            }
        }
    }
    // The consumer's guide, as printed, on the topic with nested lines and Chinese text.
    let topic = format!("{prefix}.qimen.stockin_refund");
    let expected = sim.records("qimen.stockin_refund").await;
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let schemas = schemas.to_str().unwrap();
    for name in ["read_single_object.py", "ReadSingleObject.java"] {
        let lines = run_guide_snippet(name, &[kafka(), schemas, &topic]);
        assert_snippet_read_all(&lines, &expected, "order_no", name);
        let (_, first) = &lines[0];
        assert!(first.contains("details_list"), "{name} printed whole records: {first}");
    }
}

/// The id the registry holds for the latest version of `<topic>-value`.
async fn latest_id(topic: &str) -> (u64, u64) {
    let v: Value = reqwest::get(format!("{}/subjects/{topic}-value/versions/latest", registry()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (v["id"].as_u64().unwrap_or_else(|| panic!("{v}")), v["version"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn confluent_kafka_and_java_decode_every_confluent_value_through_the_registry() {
    let (_dir, sim, prefix) = backfill_example(true);
    for (kind, topic, schema_file, key) in TOPICS {
        let topic = format!("{prefix}.{topic}");
        let expected = sim.records(kind).await;
        let schema = schema(schema_file);
        let (id, _) = latest_id(&topic).await;
        let level: Value =
            reqwest::get(format!("{}/config/{topic}-value", registry())).await.unwrap().json().await.unwrap();
        assert_eq!(level["compatibilityLevel"], "BACKWARD", "{topic}: the subject's compatibility is set: {level}");
        for reader in [Reader::PythonConfluent(registry()), Reader::JavaConfluent(registry())] {
            let decoded = decode_with(reader, &topic);
            assert_decoded_exactly(&decoded, &expected, &schema, key);
            for d in &decoded {
                assert_eq!(
                    d.schema_ref.as_deref(),
                    Some(id.to_string().as_str()),
                    "{topic}: framed with its subject's id"
                );
            }
        }
    }
    // The consumer's guide, as printed, on the topic with nested lines and Chinese text.
    let topic = format!("{prefix}.qimen.stockin_refund");
    let lines = run_guide_snippet("read_confluent.py", &[kafka(), registry(), &topic]);
    assert_snippet_read_all(&lines, &sim.records("qimen.stockin_refund").await, "order_no", "read_confluent.py");
    assert!(lines[0].1.contains("details_list"), "read_confluent.py printed whole records: {}", lines[0].1);
}

// ---- the registry's failure modes and schema evolution, on one small 旺店通 stream ----------

const WDT: &str = "wdt.account_check";

fn wdt_simulator(dir: &Path) -> Simulator {
    Simulator::start(dir, &simulator_config(200, "0ms"))
}

/// A confluent-format worker for one 旺店通 stream, with an optional schema override.
fn wdt_worker(sim: &Simulator, topic: &str, registry_url: &str, schema_file: Option<&Path>) -> String {
    let mut cfg = format!(
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{topic}-txn\"\nwatermark_topic = \"{topic}-wm\"\nvalue_format = \"confluent\"\n\n[schema_registry]\nurl = \"{registry_url}\"\nretry_for = \"2s\"\n\n[sources.wdt]\nkind = \"{WDT}\"\nbase_url = \"{}\"\nsid = \"test-sid\"\nappkey = \"test-appkey\"\nappsecret = \"test-secret\"\nrequests_per_second = 100\n",
        kafka(),
        sim.base_url()
    );
    if let Some(f) = schema_file {
        cfg.push_str(&format!("schema = \"{}\"\n", f.display()));
    }
    cfg.push_str(&format!(
        "\n[[streams]]\nid = \"{WDT}/shop-01\"\nsource = \"wdt\"\ntopic = \"{topic}\"\nstart = \"6d\"\nsettle = \"1s\"\n[streams.params]\nshop_no = \"shop-01\"\n"
    ));
    cfg
}

fn run_cmd(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(args).arg("--config").arg(config).env("RUST_LOG", "info").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The built-in 旺店通 schema with `edit` applied to its parsed JSON, as an `.avsc` file.
fn edited_schema(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let mut v: Value = serde_json::from_str(&example_schema("wdt.account_check.avsc")).unwrap();
    edit(&mut v);
    write(dir, name, &serde_json::to_string_pretty(&v).unwrap())
}

fn example_schema(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file)).unwrap()
}

fn fields(v: &mut Value) -> &mut Vec<Value> {
    v["fields"].as_array_mut().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_stops_the_start_naming_it_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = wdt_simulator(dir.path());
    let topic = unique("reg-down");
    let cfg = write(dir.path(), "w.toml", &wdt_worker(&sim, &topic, "http://127.0.0.1:1/apis/ccompat/v7", None));
    let (ok, out) = run_cmd(&["run", "--until-caught-up"], &cfg);
    assert!(!ok, "the start must fail: {out}");
    assert!(
        out.contains("schema registry http://127.0.0.1:1/apis/ccompat/v7 is unreachable")
            && out.contains("connection refused"),
        "the error names the registry and the cause: {out}"
    );
    assert_nothing_committed(&topic);
}

/// Neither a record nor a watermark of the `wdt_worker` config for `topic` is in Kafka: schemas
/// are registered before topics are created, so a start the registry stops leaves neither
/// topic behind.
fn assert_nothing_committed(topic: &str) {
    assert!(!topic_exists(topic), "no record was committed: the data topic was never created");
    assert!(!topic_exists(&format!("{topic}-wm")), "no watermark was committed: the watermark topic was never created");
}

/// An operator's choice of compatibility level for a subject is kept, set before the first
/// start (no version yet) or after it: tidemark sets its configured level only where none was.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_set_compatibility_level_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sim = wdt_simulator(dir.path());
    let http = reqwest::Client::new();
    let level_of = |topic: String| {
        let http = http.clone();
        async move {
            let v: Value =
                http.get(format!("{}/config/{topic}-value", registry())).send().await.unwrap().json().await.unwrap();
            v["compatibilityLevel"].as_str().unwrap_or_default().to_owned()
        }
    };
    let set_level = |topic: String, level: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .put(format!("{}/config/{topic}-value", registry()))
                .json(&json!({"compatibility": level}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    // Before the first start: the subject has a level but no version yet.
    let fresh = unique("reg-level-fresh");
    set_level(fresh.clone(), "FULL").await;
    let cfg = write(dir.path(), "fresh.toml", &wdt_worker(&sim, &fresh, registry(), None));
    let (ok, out) = run_cmd(&["run", "--until-caught-up"], &cfg);
    assert!(ok, "{out}");
    assert_eq!(level_of(fresh).await, "FULL", "set before the first start, kept");
    // After a start that set the configured level (BACKWARD), changed by the operator.
    let later = unique("reg-level-later");
    let cfg = write(dir.path(), "later.toml", &wdt_worker(&sim, &later, registry(), None));
    let (ok, out) = run_cmd(&["run", "--until-caught-up"], &cfg);
    assert!(ok, "{out}");
    assert_eq!(level_of(later.clone()).await, "BACKWARD", "tidemark's configured level where none was set");
    set_level(later.clone(), "FORWARD_TRANSITIVE").await;
    let (ok, out) = run_cmd(&["run", "--until-caught-up"], &cfg);
    assert!(ok, "{out}");
    assert_eq!(level_of(later).await, "FORWARD_TRANSITIVE", "changed by the operator, kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_refuses_the_schema_stops_the_start_with_its_reason_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = wdt_simulator(dir.path());
    let topic = unique("reg-refuses");
    // The subject already holds a version without the business id; under BACKWARD a new version
    // that requires it (no default) cannot read the old data.
    let mut older: Value = serde_json::from_str(&example_schema("wdt.account_check.avsc")).unwrap();
    fields(&mut older).retain(|f| f["name"] != "account_check_no");
    let http = reqwest::Client::new();
    let subject = format!("{}/subjects/{topic}-value", registry());
    let r = http.post(format!("{subject}/versions")).json(&json!({"schema": older.to_string()})).send().await.unwrap();
    assert!(r.status().is_success(), "seed the subject: {}", r.text().await.unwrap());
    let r = http
        .put(format!("{}/config/{topic}-value", registry()))
        .json(&json!({"compatibility": "BACKWARD"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let cfg = write(dir.path(), "w.toml", &wdt_worker(&sim, &topic, registry(), None));
    let mut out = String::new();
    for args in [&["validate"][..], &["run", "--until-caught-up"][..]] {
        let ok;
        (ok, out) = run_cmd(args, &cfg);
        assert!(!ok, "{args:?} must fail: {out}");
        assert!(
            out.contains(&format!("schema for subject {topic}-value is not BACKWARD-compatible")),
            "{args:?} names the subject and level: {out}"
        );
    }
    assert!(out.contains("account_check_no"), "the run's refusal carries the registry's reason: {out}");
    assert_nothing_committed(&topic);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compatible_change_is_a_new_version_readers_follow_and_an_incompatible_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = wdt_simulator(dir.path());
    let topic = unique("reg-evolve");
    let v1 = write(dir.path(), "v1.toml", &wdt_worker(&sim, &topic, registry(), None));
    let (ok, out) = run_cmd(&["run", "--until-caught-up"], &v1);
    assert!(ok, "{out}");
    let (id1, version1) = latest_id(&topic).await;

    // The vendor starts sending a field, and the schema gains it as optional.
    let mut fresh = sim.records(WDT).await.into_iter().find(|r| r["shop_no"] == "shop-01").unwrap();
    fresh["account_check_no"] = json!("AC-EVOLVED-1");
    fresh["memo"] = json!("新字段 arrives");
    // After the first run's watermark (it stops at most a few seconds behind now minus the 1 s
    // settle), and before the second run's horizon.
    sim.insert(WDT, chrono::Utc::now(), "shop-01", &fresh).await;
    // A worker within 5 s of its horizon counts as caught up and reads nothing: let the
    // horizon move past the record and that margin.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let with_memo = edited_schema(dir.path(), "v2.avsc", |v| {
        fields(v).push(json!({"name": "memo", "type": ["null", "string"], "default": null}))
    });
    let v2 = write(dir.path(), "v2.toml", &wdt_worker(&sim, &topic, registry(), Some(&with_memo)));
    let (ok, out) = run_cmd(&["validate"], &v2);
    assert!(ok && out.contains("compatible with its latest version"), "{out}");
    let (ok, out) = run_cmd(&["run", "--until-caught-up"], &v2);
    assert!(ok, "{out}");
    let (id2, version2) = latest_id(&topic).await;
    assert!(
        id2 != id1 && version2 == version1 + 1,
        "a new version with a new id ({id1} v{version1} → {id2} v{version2})"
    );

    // One consumer, never restarted, reads both versions.
    let decoded = decode_with(Reader::PythonConfluent(registry()), &topic);
    let shop01 = sim.records(WDT).await.into_iter().filter(|r| r["shop_no"] == "shop-01").count();
    assert_eq!(decoded.len(), shop01, "every shop-01 record once");
    let (old, new): (Vec<_>, Vec<_>) = decoded.iter().partition(|d| d.schema_ref.as_deref() == Some(&*id1.to_string()));
    assert_eq!(new.len(), 1, "only the new record is written with the new version");
    assert_eq!(new[0].schema_ref.as_deref(), Some(&*id2.to_string()));
    assert_eq!(new[0].value.as_ref().unwrap()["memo"], "新字段 arrives");
    assert!(old.iter().all(|d| d.value.as_ref().unwrap().get("memo").is_none()), "old records keep their schema");

    // inspect decodes both versions through the registry.
    let (ok, out) = run_cmd(&["inspect", "--samples", "1000", "--compact"], &v2);
    assert!(ok, "{out}");
    assert!(!out.contains("undecodable"), "{out}");
    assert!(out.contains("新字段 arrives"), "{out}");
    assert_eq!(out.matches(&format!("schema registry id {id2})")).count(), 1, "one sample of the new version: {out}");
    assert_eq!(out.matches(&format!("schema registry id {id1})")).count(), shop01 - 1, "{out}");
    assert_eq!(out.matches("\nsample from ").count(), shop01, "every record decoded: {out}");

    // Changing a field's type breaks BACKWARD: validate and run both refuse, commit nothing.
    let retyped = edited_schema(dir.path(), "v3.avsc", |v| {
        let f = fields(v).iter_mut().find(|f| f["name"] == "tid").unwrap();
        f["type"] = json!(["null", "long"]);
    });
    let v3 = write(dir.path(), "v3.toml", &wdt_worker(&sim, &topic, registry(), Some(&retyped)));
    let before = consume_committed(&topic).len();
    let mut out = String::new();
    for args in [&["validate"][..], &["run", "--until-caught-up"][..]] {
        let ok;
        (ok, out) = run_cmd(args, &v3);
        assert!(!ok, "{args:?} must refuse: {out}");
        assert!(out.contains("not BACKWARD-compatible"), "{args:?}: {out}");
    }
    assert!(out.contains("at /fields/2/type"), "the registry's reason points at `tid`, field 2: {out}");
    assert_eq!(consume_committed(&topic).len(), before, "nothing more was committed");
    assert_eq!(latest_id(&topic).await, (id2, version2), "nothing was registered");
}

// ---- the warehouses' own tools: Kafka Connect and ClickHouse ---------------------------------

/// The `key=value` lines of a `.properties` snippet, in order (comments and blanks dropped).
fn properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not key=value: {l}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// Replaces the value of `key`, which the snippet must set.
fn set_property(props: &mut [(String, String)], key: &str, value: &str) {
    let p = props.iter_mut().find(|(k, _)| k == key).unwrap_or_else(|| panic!("the guide's snippet sets no {key}"));
    p.1 = value.to_owned();
}

/// Apicurio's own REST API (v2, which its 2.6 serdes speak) beside the ccompat URL the tests use.
fn apicurio_v2_url() -> String {
    let base = registry().split("/apis/").next().unwrap();
    format!("{base}/apis/registry/v2")
}

/// "path: Decimal|Timestamp" for each decimal and timestamp-millis field of `schema`, in
/// schema order (`[]` for an array's items), as `JsonLinesSink` lists Connect's logical types.
fn logical_paths(schema: &apache_avro::Schema, path: &str, out: &mut Vec<String>) {
    use apache_avro::schema::Schema as S;
    match schema {
        S::Union(u) => logical_paths(&u.variants()[1], path, out),
        S::Decimal(_) => out.push(format!("{path}: Decimal")),
        S::TimestampMillis => out.push(format!("{path}: Timestamp")),
        S::Record(r) => {
            for f in &r.fields {
                let p = if path.is_empty() { f.name.clone() } else { format!("{path}.{}", f.name) };
                logical_paths(&f.schema, &p, out);
            }
        }
        S::Array(a) => logical_paths(&a.items, &format!("{path}[]"), out),
        _ => {}
    }
}

const SETTLE_KEY: &str = "tidemark.settle";

/// Writes, outside any transaction, what the worker writes after lost transaction markers (a
/// settle record: key `tidemark.settle`, header `tidemark.control`, no value) in every
/// partition of `topic`, and a tombstone for `key`, as a snapshot stream writes when it vanishes.
fn write_settle_and_tombstone(topic: &str, key: &str) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let within = std::time::Duration::from_secs(30);
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kafka()).create().unwrap();
    let partitions = producer.client().fetch_metadata(Some(topic), within).unwrap().topics()[0].partitions().len();
    for p in 0..partitions as i32 {
        let control = OwnedHeaders::new().insert(Header { key: "tidemark.control", value: Some("settle") });
        producer.send(BaseRecord::<str, [u8]>::to(topic).partition(p).key(SETTLE_KEY).headers(control)).unwrap();
    }
    producer.send(BaseRecord::<str, [u8]>::to(topic).key(key)).unwrap();
    producer.flush(within).unwrap();
}

/// How long Kafka Connect may take to hand every record of the demo's topics to the sink.
const CONNECT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn kafka_connect_hands_a_sink_every_value_field_by_field_with_the_guides_settings() {
    let (dir, sim, prefix) = backfill_example(true);
    let topics: Vec<String> = TOPICS.iter().map(|(_, t, _, _)| format!("{prefix}.{t}")).collect();
    // What a real run can also hold: a settle record (after lost markers) and a tombstone.
    let balances = format!("{prefix}.finance.balances");
    let deleted = sim.records("finance.balances").await[0]["account_id"].as_str().unwrap().to_owned();
    write_settle_and_tombstone(&balances, &deleted);
    let mut served = Vec::new();
    for (kind, ..) in TOPICS {
        served.push(sim.records(kind).await);
    }
    let expected = 1 + served.iter().map(Vec::len).sum::<usize>(); // and the tombstone
    // The connector as the guide prints it; only what names this machine's parts changes.
    let out = dir.path().join("sink.jsonl");
    let mut props = properties(&guide_snippet("warehouse-sink.properties"));
    set_property(&mut props, "connector.class", "tidemark.interop.JsonLinesSink");
    set_property(&mut props, "topics", &topics.join(","));
    set_property(&mut props, "value.converter.apicurio.registry.url", &apicurio_v2_url());
    props.push(("file".into(), out.to_str().unwrap().into()));
    let connector: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let connector = write(dir.path(), "connector.properties", &connector);
    let worker = write(
        dir.path(),
        "worker.properties",
        &format!(
            "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.storage.file.filename={}\nlisteners=http://127.0.0.1:0\n",
            kafka(),
            dir.path().join("offsets").display()
        ),
    );
    let log = dir.path().join("connect.log");
    let mut connect = Command::new("java")
        .args(["-cp", &interop().java_cp, "org.apache.kafka.connect.cli.ConnectStandalone"])
        .arg(&worker)
        .arg(&connector)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("connect.err")).unwrap())
        .spawn()
        .expect("start Kafka Connect");
    // Connect never ends on its own: wait for the records (or the deadline), then stop it.
    let started = std::time::Instant::now();
    let count = || std::fs::read_to_string(&out).map(|t| t.lines().count()).unwrap_or(0);
    let err = || std::fs::read_to_string(dir.path().join("connect.err")).unwrap_or_default();
    let failed = || err().contains("unrecoverable exception"); // a task stopped for good
    while count() < expected
        && started.elapsed() < CONNECT_DEADLINE
        && connect.try_wait().unwrap().is_none()
        && !failed()
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(1)); // room for a duplicate to show
    let _ = connect.kill();
    let _ = connect.wait();
    let errors: Vec<String> = err().lines().filter(|l| l.contains("ERROR")).take(5).map(str::to_owned).collect();
    assert_eq!(count(), expected, "Kafka Connect delivered every record once within {CONNECT_DEADLINE:?}: {errors:#?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    // The filter dropped the settle records; the tombstone reached the sink as a null value.
    assert!(lines.iter().all(|l| l["key"] != SETTLE_KEY), "a control record reached the sink");
    let tombstone = lines.iter().position(|l| l["value"].is_null()).expect("the tombstone reached the sink");
    assert_eq!(
        (lines[tombstone]["topic"].as_str(), lines[tombstone]["key"].as_str()),
        (Some(&*balances), Some(&*deleted))
    );
    lines.remove(tombstone);
    for ((_, topic, schema_file, key), served) in TOPICS.iter().zip(&served) {
        let topic = format!("{prefix}.{topic}");
        let schema = schema(schema_file);
        let of_topic: Vec<&Value> = lines.iter().filter(|l| l["topic"] == topic.as_str()).collect();
        let decoded: Vec<Decoded> = of_topic.iter().map(|&l| serde_json::from_value(l.clone()).unwrap()).collect();
        assert_decoded_exactly(&decoded, served, &schema, key);
        let name = schema.name().unwrap().fullname(None);
        assert!(
            decoded.iter().all(|d| d.writer.as_deref() == Some(name.as_str())),
            "{topic}: Connect named the schema"
        );
        // Connect typed the decimals as Decimal and the times as Timestamp (not as a string
        // and a long that would print the same).
        let mut want = Vec::new();
        logical_paths(&schema, "", &mut want);
        assert!(!want.is_empty(), "{schema_file} has decimals or times");
        for l in &of_topic {
            let got: Vec<&str> = l["logical"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
            assert_eq!(got, want, "{topic}: Connect's logical types");
        }
    }
}

/// A value as `clickhouse_read.py` prints ClickHouse's JSON (DateTime64 as "seconds.millis"),
/// in the interop consumers' rendering (epoch millis), guided by the Avro schema.
fn clickhouse_rendered(v: &Value, schema: &apache_avro::Schema, path: &str) -> Value {
    use apache_avro::schema::Schema as S;
    match (schema, v) {
        (_, Value::Null) => Value::Null,
        (S::Union(u), _) => clickhouse_rendered(v, &u.variants()[1], path),
        (S::Record(r), Value::Object(obj)) => Value::Object(
            obj.iter()
                .map(|(k, x)| {
                    let f = r
                        .fields
                        .iter()
                        .find(|f| &f.name == k)
                        .unwrap_or_else(|| panic!("{path}.{k}: not in the schema"));
                    (k.clone(), clickhouse_rendered(x, &f.schema, &format!("{path}.{k}")))
                })
                .collect(),
        ),
        (S::Array(a), Value::Array(items)) => Value::Array(
            items.iter().enumerate().map(|(i, x)| clickhouse_rendered(x, &a.items, &format!("{path}[{i}]"))).collect(),
        ),
        (S::TimestampMillis, Value::String(text)) => {
            let (secs, millis) = text.split_once('.').unwrap_or_else(|| panic!("{path}: {text} is not seconds.millis"));
            assert_eq!(millis.len(), 3, "{path}: {text} has milliseconds");
            let (secs, millis): (i64, i64) = (secs.parse().unwrap(), millis.parse().unwrap());
            json!(secs * 1000 + if text.starts_with('-') { -millis } else { millis })
        }
        _ => v.clone(),
    }
}

/// ClickHouse's lines (`clickhouse_read.py`) of one table or topic, as [`Decoded`] records.
fn clickhouse_decoded(lines: &[Value], table: &str, schema: &apache_avro::Schema, key: &str) -> Vec<Decoded> {
    lines
        .iter()
        .filter(|l| l["table"] == table)
        .map(|l| {
            let value = clickhouse_rendered(&l["value"], schema, table);
            Decoded {
                partition: l["partition"].as_i64().unwrap() as i32,
                offset: l["offset"].as_i64().unwrap(),
                key: Some(l["key"].as_str().map_or_else(|| value[key].as_str().unwrap().to_owned(), str::to_owned)),
                writer: None,
                schema_ref: None,
                value: Some(value),
            }
        })
        .collect()
}

/// Runs `clickhouse_read.py` (ClickHouse in process) with `args`; its JSON lines.
fn clickhouse_read(dir: &Path, args: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python/clickhouse_read.py");
    let mut cmd = Command::new(&interop().python);
    cmd.arg(script).args(["--bootstrap", kafka(), "--registry", registry(), "--workdir"]).arg(dir).args(args);
    let out = output_within(cmd, CLICKHOUSE_DEADLINE);
    assert!(out.status.success(), "ClickHouse failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// How long ClickHouse may take to read the demo's topics.
const CLICKHOUSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_reads_every_value_field_by_field_and_the_guides_tables_hold_them() {
    let (dir, sim, prefix) = backfill_example(true);
    // ClickHouse's AvroConfluent reader, columns inferred from the registry, on every topic.
    let topics: Vec<String> = TOPICS.iter().map(|(_, t, _, _)| format!("{prefix}.{t}")).collect();
    let mut args = vec!["infer"];
    args.extend(topics.iter().map(String::as_str));
    let lines = clickhouse_read(dir.path(), &args);
    // Where each record sits in Kafka, by topic and key (what the Kafka engine's virtual
    // columns would say).
    let mut placed = std::collections::BTreeMap::new();
    for ((kind, _, schema_file, key), topic) in TOPICS.iter().zip(&topics) {
        let schema = schema(schema_file);
        let decoded = clickhouse_decoded(&lines, topic, &schema, key);
        assert_decoded_exactly(&decoded, &sim.records(kind).await, &schema, key);
        for d in decoded {
            placed.insert((topic.clone(), d.key.unwrap()), (d.partition, d.offset));
        }
    }
    // The guide's DDL as printed (its Kafka tables fed as the engine would feed them).
    let sql = write(dir.path(), "clickhouse.sql", &guide_snippet("clickhouse.sql"));
    let map = |t: &str| format!("{t}={prefix}.{t}");
    let (account, balances) = (map("wdt.account_check"), map("finance.balances"));
    let lines = clickhouse_read(dir.path(), &["sql", sql.to_str().unwrap(), &account, &balances]);
    for (table, kind, schema_file, key) in [
        ("account_check", "wdt.account_check", "wdt.account_check.avsc", "account_check_no"),
        ("balances", "finance.balances", "finance.balances.avsc", "account_id"),
    ] {
        let schema = schema(schema_file);
        let decoded = clickhouse_decoded(&lines, table, &schema, key);
        assert_decoded_exactly(&decoded, &sim.records(kind).await, &schema, key);
        // The view kept each row's partition and offset (the ReplacingMergeTree's version).
        let topic = format!("{prefix}.{kind}");
        for d in &decoded {
            let at = placed[&(topic.clone(), d.key.clone().unwrap())];
            assert_eq!((d.partition, d.offset), at, "{table}: {:?} has its Kafka position", d.key);
        }
    }
}
