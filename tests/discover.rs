//! `tidemark discover` (issue #25): endpoints inferred from the 旺店通 and 奇门 simulators run as
//! written, every record once; what it cannot tell it refuses with exit 2 and says why; with
//! `--against` it finds what a vendor added to a kind's schema and proposes a BACKWARD
//! compatible next version.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use apache_avro::Schema;
use common::*;
use serde_json::{Value, json};

const KIND: &str = "wdt.discovered";
const WDT_METHOD: &[&str] = &["--source", "wdt", "--method", "fa_alipay_account_check_query.php", "--kind", KIND];

/// `tidemark discover --config cfg --out out` with `args`.
fn discover(cfg: &Path, out: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("discover").arg("--config").arg(cfg).arg("--out").arg(out).args(args);
    output_within(cmd, std::time::Duration::from_secs(60))
}

/// Discovers `args` (its `--kind` named `kind`) with worker config `worker`, checks the summary
/// says each of `said`, and returns the schema written with each field's type as debug text.
fn discovered(
    dir: &Path,
    worker: &str,
    args: &[&str],
    kind: &str,
    said: &[&str],
) -> (Schema, BTreeMap<String, String>) {
    let cfg = write(dir, "discover.toml", worker);
    let endpoints = dir.join("endpoints");
    let out = discover(&cfg, &endpoints, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "discover failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for said in said {
        assert!(stdout.contains(said), "the summary says {said:?}: {stdout}");
    }
    let text = std::fs::read_to_string(endpoints.join(format!("{kind}.avsc"))).unwrap();
    let schema = Schema::parse_str(&text).unwrap();
    let Schema::Record(r) = &schema else { panic!("{text}") };
    let types = r.fields.iter().map(|f| (f.name.clone(), format!("{:?}", f.schema))).collect();
    (schema, types)
}

/// Runs the worker config `worker` with its source's kind `builtin` replaced by the discovered
/// `kind` (in `dir/endpoints`) until caught up, and checks `topic` holds each of `expected` once,
/// keyed on `key`, its value equal to the simulator's as `schema` types it.
fn runs_every_record_once(
    dir: &Path,
    worker: &str,
    (builtin, kind): (&str, &str),
    topic: &str,
    expected: &[Value],
    key: &str,
    schema: &Schema,
) {
    let text = worker.replace(&format!("kind = \"{builtin}\""), &format!("kind = \"{kind}\""));
    assert_ne!(text, worker, "the worker's source is of kind {builtin}");
    let cfg = write(dir, "worker.toml", &format!("endpoints_dir = \"endpoints\"\n{text}"));
    let run = run_until_caught_up(&cfg);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "worker failed: {}", tail(&stderr, 30));
    let consumed = consume_committed(topic);
    assert_eq!(consumed.len(), expected.len(), "committed record count equals the simulator's");
    let by_key: BTreeMap<String, &Value> = expected.iter().map(|r| (r[key].as_str().unwrap().to_owned(), r)).collect();
    let mut seen = std::collections::HashSet::new();
    for c in &consumed {
        assert!(seen.insert(c.key.clone()), "key {} appears twice", c.key);
        let want = by_key.get(&c.key).unwrap_or_else(|| panic!("key {} is not a simulator record", c.key));
        let got = read_single_object(schema, c.value.as_ref().expect("not a tombstone"));
        check_value(&got, Some(want), schema, &c.key);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discovered_endpoint_reads_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(600, "0ms"));
    let expected = sim.records("wdt.account_check").await;
    assert_eq!(expected.len(), 600);
    let topic = unique("discover-data");
    let worker = WorkerToml::new(&sim.base_url(), &topic)
        .transactional_id(&unique("discover-txn"))
        .streams(&[("found/shop-01", "shop-01"), ("found/shop-02", "shop-02")])
        .build();

    // The default window: the last day of the simulator's five.
    let said =
        ["list field: account_list", "key field: account_check_no (present, non-empty and unique", "max_span: 1d"];
    let (schema, types) = discovered(dir.path(), &worker, WDT_METHOD, KIND, &said);
    assert!(
        types["pay_amount"].contains("Decimal") && types["pay_amount"].contains("scale: 4"),
        "{}",
        types["pay_amount"]
    );
    assert!(types["check_time"].contains("TimestampMillis"), "{}", types["check_time"]);
    assert_eq!(types["account_check_no"], "String");

    // The manifest runs as written: the worker reads all five days through it.
    runs_every_record_once(
        dir.path(),
        &worker,
        ("wdt.account_check", KIND),
        &topic,
        &expected,
        "account_check_no",
        &schema,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discovered_qimen_endpoint_reads_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &(simulator_config(10, "0ms") + &qimen_simulator(600)));
    let expected = sim.records("qimen.stockin_refund").await;
    assert_eq!(expected.len(), 600);
    let topic = unique("discover-qimen");
    let worker = WorkerToml::new(&sim.base_url(), &topic)
        .qimen()
        .transactional_id(&unique("discover-qimen-txn"))
        .streams(&[("found/shop-01", "shop-01"), ("found/shop-02", "shop-02")])
        .build();

    let kind = "qimen.discovered";
    let args = ["--source", "qimen", "--method", "wdt.stockin.order.query.refund", "--kind", kind];
    let said = ["list field: stockin_list", "total: every_page (total_count came on all"];
    let (schema, types) = discovered(dir.path(), &worker, &args, kind, &[&said[..], &["key field: "]].concat());
    let key = "order_no";
    assert_eq!(types[key], "String", "the key the summary names is order_no: {types:?}");
    let details = &types["details_list"];
    assert!(details.contains("Array") && details.contains("Record"), "details_list is an array of records: {details}");

    runs_every_record_once(dir.path(), &worker, ("qimen.stockin_refund", kind), &topic, &expected, key, &schema);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_discover_cannot_tell_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(200, "0ms"));
    let worker = WorkerToml::new(&sim.base_url(), "t").bootstrap("127.0.0.1:1").stream("s", "shop-01").build();
    let cfg = write(dir.path(), "discover.toml", &worker);
    let endpoints = dir.path().join("endpoints");
    for (extra, said) in [
        (&["--key-field", "shop_no"][..], "key field \"shop_no\" is not unique"),
        (&["--window", "2020-01-01 00:00:00..2020-01-01 01:00:00"][..], "holds no list of records"),
        (&["--params", "page_size=5"][..], "parameter \"page_size\" is set by the wdt protocol"),
    ] {
        let out = discover(&cfg, &endpoints, &[WDT_METHOD, extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(said), "{extra:?} says {said:?}: {stderr}");
        assert!(!endpoints.join(format!("{KIND}.toml")).exists(), "{extra:?} wrote nothing");
    }
}

/// The registry's BACKWARD answer on `proposal` after `current` is registered under a fresh
/// subject set to BACKWARD (Apicurio's ccompat v7 answers `{"is_compatible": bool}`).
async fn registry_accepts(current: &str, proposal: &str) -> bool {
    let (http, subject) = (reqwest::Client::new(), unique("discover-against"));
    let send = |req: reqwest::RequestBuilder, body: Value| async move {
        let answer = req
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&body)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let v: Value = answer.json().await.unwrap();
        assert!(status.is_success(), "{status}: {v}");
        v
    };
    let url = |path: String| format!("{}/{path}", registry());
    send(http.post(url(format!("subjects/{subject}/versions"))), json!({"schema": current})).await;
    let level = send(http.put(url(format!("config/{subject}"))), json!({"compatibility": "BACKWARD"})).await;
    assert_eq!(level["compatibility"], "BACKWARD", "{level}");
    let v =
        send(http.post(url(format!("compatibility/subjects/{subject}/versions/latest"))), json!({"schema": proposal}))
            .await;
    v["is_compatible"].as_bool().unwrap_or_else(|| panic!("no is_compatible: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn against_a_kind_names_new_fields_and_proposes_a_backward_compatible_schema() {
    let dir = tempfile::tempdir().unwrap();
    let drifted = simulator_config(300, "0ms") + "extra_fields = [\"new_field\"]\n";
    let sim = Simulator::start(dir.path(), &drifted);
    let worker = WorkerToml::new(&sim.base_url(), "t").bootstrap("127.0.0.1:1").stream("s", "shop-01").build();
    let cfg = write(dir.path(), "discover.toml", &worker);
    let out_dir = dir.path().join("proposals");
    let against = ["--source", "wdt", "--against", "wdt.account_check"];

    let out = discover(&cfg, &out_dir, &against);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "differences found: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.trim_start().starts_with("new_field")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("string") && line.contains(" of "), "new_field's type and records: {line}");
    let proposal = std::fs::read_to_string(out_dir.join("wdt.account_check.avsc")).unwrap();
    let p: Value = serde_json::from_str(&proposal).unwrap();
    let last = p["fields"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (&last["name"], &last["type"], &last["default"]),
        (&json!("new_field"), &json!(["null", "string"]), &Value::Null)
    );

    let current = tidemark_endpoints::builtin("wdt.account_check").unwrap().spec.schema;
    assert!(registry_accepts(current, &proposal).await, "the registry takes the proposal as BACKWARD compatible");
    // The registry's answer means something: the field made required is refused.
    let mut r: Value = serde_json::from_str(&proposal).unwrap();
    let f = r["fields"].as_array_mut().unwrap().last_mut().unwrap();
    *f = json!({"name": "new_field", "type": "string"});
    assert!(!registry_accepts(current, &r.to_string()).await, "a required new field is not BACKWARD compatible");

    // The simulator without the extra field: nothing differs, exit 0, nothing written.
    let plain = Simulator::start(dir.path(), &simulator_config(300, "0ms"));
    let worker = WorkerToml::new(&plain.base_url(), "t").bootstrap("127.0.0.1:1").stream("s", "shop-01").build();
    let cfg = write(dir.path(), "plain.toml", &worker);
    let clean = dir.path().join("clean");
    let out = discover(&cfg, &clean, &against);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "no drift: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("no differences"), "{stdout}");
    assert!(!clean.join("wdt.account_check.avsc").exists(), "no proposal without drift");
}
