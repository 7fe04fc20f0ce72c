//! Endpoints as data (issue #25): a user's endpoint in `endpoints_dir`, a copy of a built-in
//! one under another kind, runs end to end against the simulator and Kafka; `validate` names
//! a bad manifest's file and key; `endpoints list` shows where each endpoint comes from.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const COPY: &str = "wdt.account_check_copy";

/// `dir/endpoints/` with `wdt.account_check_copy.{toml,avsc}`: the built-in manifest and
/// schema under a new kind (same method, so the 旺店通 simulator serves it), the manifest
/// edited by `edit`.
fn copy_endpoint(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let endpoints = dir.join("endpoints");
    std::fs::create_dir_all(&endpoints).unwrap();
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let manifest = std::fs::read_to_string(schemas.join("wdt.account_check.toml"))
        .unwrap()
        .replace("kind = \"wdt.account_check\"", &format!("kind = \"{COPY}\""))
        .replace("default_topic = \"wdt.account_check\"", &format!("default_topic = \"{COPY}\""))
        .replace("[pages]", "[params]\ntime_type = \"1\"\n\n[pages]");
    let toml = endpoints.join(format!("{COPY}.toml"));
    std::fs::write(&toml, edit(manifest)).unwrap();
    std::fs::copy(schemas.join("wdt.account_check.avsc"), endpoints.join(format!("{COPY}.avsc"))).unwrap();
    toml
}

/// A worker config in `dir` whose source reads the copy from `endpoints_dir = "endpoints"`.
fn worker_config(dir: &Path, toml: WorkerToml) -> PathBuf {
    let text = toml.build().replace("kind = \"wdt.account_check\"", &format!("kind = \"{COPY}\""));
    write(dir, "worker.toml", &format!("endpoints_dir = \"endpoints\"\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_endpoint_reads_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(600, "0ms"));
    let expected = sim.records("wdt.account_check").await;
    assert_eq!(expected.len(), 600);
    copy_endpoint(dir.path(), |m| m);
    let topic = unique("endpoints-data");
    let cfg = worker_config(
        dir.path(),
        WorkerToml::new(&sim.base_url(), &topic)
            .transactional_id(&unique("endpoints-txn"))
            .streams(&[("copy/shop-01", "shop-01"), ("copy/shop-02", "shop-02")]),
    );
    let out = run_until_caught_up(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "worker failed: {}", tail(&stderr, 30));
    assert!(stderr.contains("endpoints loaded"), "the start says it read endpoints_dir: {}", tail(&stderr, 30));
    assert_exactly(&consume_committed(&topic), &expected, "wdt.account_check.avsc", "account_check_no");
}

#[test]
fn validate_names_the_file_and_key_of_a_bad_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let toml = copy_endpoint(dir.path(), |m| m.replace("max_size = 100", "max_size = 500"));
    let cfg = worker_config(
        dir.path(),
        WorkerToml::new("http://127.0.0.1:1", "t").bootstrap("127.0.0.1:1").stream("copy/shop-01", "shop-01"),
    );
    let out = Command::new(BIN).args(["validate", "--offline", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&toml.display().to_string()) && stderr.contains("`pages.max_size`") && stderr.contains("500"),
        "the error names the file, the key and the value: {stderr}"
    );

    // Fixed, it validates and says so.
    copy_endpoint(dir.path(), |m| m);
    let out = Command::new(BIN).args(["validate", "--offline", "--config"]).arg(&cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("ok  endpoint {COPY}")), "{stdout}");
}

#[test]
fn endpoints_list_shows_the_builtins_and_a_configs_own() {
    let dir = tempfile::tempdir().unwrap();
    let toml = copy_endpoint(dir.path(), |m| m);
    let cfg = worker_config(
        dir.path(),
        WorkerToml::new("http://127.0.0.1:1", "t").bootstrap("127.0.0.1:1").stream("copy/shop-01", "shop-01"),
    );
    let list = |args: &[&str]| {
        let out =
            Command::new(BIN).args(["endpoints", "list"]).args(args).env_remove("TIDEMARK_CONFIG").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let builtin = list(&[]);
    for kind in
        ["wdt.account_check", "qimen.stockin_refund", "top.finance_order", "finance.transactions", "finance.balances"]
    {
        let line = builtin.lines().find(|l| l.starts_with(&format!("{kind} "))).unwrap_or_else(|| panic!("{builtin}"));
        assert!(line.contains("built-in"), "{line}");
    }
    assert!(!builtin.contains(COPY), "{builtin}");
    let with = list(&["--config", cfg.to_str().unwrap()]);
    let line = with.lines().find(|l| l.starts_with(COPY)).unwrap_or_else(|| panic!("{with}"));
    for cell in ["wdt", "fa_alipay_account_check_query.php", "windowed", "1d", &toml.display().to_string()] {
        assert!(line.contains(cell), "{cell} in {line}");
    }
}

/// An endpoint nothing in the repository knows: a 旺店通 purchase-order method, written here as
/// a manifest and schema (a fixture, not a claim about the vendor's real method).
const PURCHASE_TOML: &str = r#"
kind = "wdt.purchase_order"
protocol = "wdt"
method = "purchase_order_query.php"
list_field = "purchase_list"
key_field = "purchase_no"
default_topic = "wdt.purchase_order"
max_span = "24h"
window_field = "modified"

[pages]
max_size = 40
total = "first_page"
"#;

const PURCHASE_AVSC: &str = r#"{
  "type": "record", "name": "PurchaseOrder", "namespace": "test.wdt",
  "fields": [
    {"name": "purchase_no", "type": "string"},
    {"name": "provider_name", "type": ["null", "string"], "default": null},
    {"name": "warehouse_no", "type": ["null", "string"], "default": null},
    {"name": "status", "type": ["null", "int"], "default": null},
    {"name": "goods_amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4}], "default": null},
    {"name": "currency", "type": ["null", "string"], "default": null},
    {"name": "remark", "type": ["null", "string"], "default": null},
    {"name": "created", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "modified", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "shop_no", "type": ["null", "string"], "default": null},
    {"name": "details_list", "type": {"type": "array", "items": {
      "type": "record", "name": "PurchaseLine", "fields": [
        {"name": "spec_no", "type": ["null", "string"], "default": null},
        {"name": "goods_name", "type": ["null", "string"], "default": null},
        {"name": "num", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4}], "default": null},
        {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4}], "default": null}
      ]}}}
  ]
}"#;

/// Issue #25's proof: the simulator serves an endpoint only a manifest describes; `discover`
/// infers it from the simulator; the worker reads every record through what discover wrote,
/// once; fastavro, holding only the written schema, decodes values equal to the simulator's.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_nothing_knows_is_served_discovered_and_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("wdt.purchase_order.toml"), PURCHASE_TOML).unwrap();
    std::fs::write(served.join("wdt.purchase_order.avsc"), PURCHASE_AVSC).unwrap();
    // Every record inside discover's default window (the day up to now), so what it infers
    // covers all of them.
    let sim = Simulator::start(
        dir.path(),
        "listen = \"127.0.0.1:0\"\nendpoints_dir = \"served\"\n[wdt]\nsid = \"test-sid\"\nappkey = \"test-appkey\"\n\
         appsecret = \"test-secret\"\n[endpoints.\"wdt.purchase_order\"]\nseed = 5\nrecords = 700\nfrom = \"22h\"\n\
         until = \"1h\"\nshops = [\"shop-01\", \"shop-02\"]\n",
    );
    let expected = sim.records("wdt.purchase_order").await;
    assert_eq!(expected.len(), 700);

    let topic = unique("purchase-data");
    let worker = WorkerToml::new(&sim.base_url(), &topic)
        .transactional_id(&unique("purchase-txn"))
        .streams(&[("purchase/shop-01", "shop-01"), ("purchase/shop-02", "shop-02")])
        .build();
    let found = dir.path().join("found");
    let discover_cfg = write(dir.path(), "discover.toml", &worker);
    let discover = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["discover", "--source", "wdt", "--method", "purchase_order_query.php", "--config"])
            .arg(&discover_cfg)
            .arg("--out")
            .arg(&found)
            .args(extra);
        output_within(cmd, std::time::Duration::from_secs(60))
    };
    // The method pages by at most 40, below the protocol's 100: the refusal says what to pass.
    let out = discover(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("page_size 取值范围为 1~40") && stderr.contains("--page-size"), "{stderr}");
    let out = discover(&["--page-size", "40"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "discover failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let kind = "wdt.purchase_order_query";
    for said in ["read 700 records", "list field: purchase_list", "key field: purchase_no"] {
        assert!(stdout.contains(said), "the summary says {said:?}: {stdout}");
    }
    let schema_text = std::fs::read_to_string(found.join(format!("{kind}.avsc"))).unwrap();
    let schema = apache_avro::Schema::parse_str(&schema_text).unwrap();

    let text = worker.replace("kind = \"wdt.account_check\"", &format!("kind = \"{kind}\""));
    let cfg = write(dir.path(), "worker.toml", &format!("endpoints_dir = \"found\"\n{text}"));
    let run = run_until_caught_up(&cfg);
    assert!(run.status.success(), "worker failed: {}", tail(&String::from_utf8_lossy(&run.stderr), 30));
    let decoded = decode_with(Reader::FastavroSchemasIn(&found), &topic);
    assert_decoded_exactly(&decoded, &expected, &schema, "purchase_no");
}

/// A TOP method nothing in the repository knows, with its own object parameter and list item
/// tag (a fixture, not a claim about a real TOP method).
const SETTLEMENT_TOML: &str = r#"
kind = "top.store_settlement"
protocol = "top"
method = "example.store.settlement.query"
list_field = "settlements"
key_field = "settle_no"
request_object = "settlement_query"
list_item = "settlement"
default_topic = "top.store_settlement"
max_span = "24h"
window_field = "settle_time"

[pages]
max_size = 50
total = "every_page"
"#;

const SETTLEMENT_AVSC: &str = r#"{
  "type": "record", "name": "StoreSettlement", "namespace": "test.top",
  "fields": [
    {"name": "settle_no", "type": "string"},
    {"name": "shop_code", "type": ["null", "string"], "default": null},
    {"name": "shop_name", "type": ["null", "string"], "default": null},
    {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 2}], "default": null},
    {"name": "remark", "type": ["null", "string"], "default": null},
    {"name": "settle_time", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null}
  ]
}"#;

/// The same proof for TOP, whose methods each name their own object parameter and list item
/// tag: discover needs `--request-object` (and says so), finds the tag in the answer, and the
/// worker reads every record once through what it wrote.
#[tokio::test(flavor = "multi_thread")]
async fn a_top_method_nothing_knows_is_served_discovered_and_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("top.store_settlement.toml"), SETTLEMENT_TOML).unwrap();
    std::fs::write(served.join("top.store_settlement.avsc"), SETTLEMENT_AVSC).unwrap();
    let sim = Simulator::start(
        dir.path(),
        "listen = \"127.0.0.1:0\"\nendpoints_dir = \"served\"\n[top]\napp_key = \"tk\"\napp_secret = \"ts\"\n\
         session = \"sess\"\n[endpoints.\"top.store_settlement\"]\nseed = 9\nrecords = 400\nfrom = \"22h\"\nuntil = \"1h\"\n",
    );
    let expected = sim.records("top.store_settlement").await;
    assert_eq!(expected.len(), 400);

    let topic = unique("settlement-data");
    let prefix = unique("settlement");
    let worker = |kind: &str| {
        format!(
            "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{prefix}-txn\"\nwatermark_topic = \"{prefix}-wm\"\n\
             watermark_partitions = 1\ntopic_partitions = 2\n\n[sources.top]\nkind = \"{kind}\"\n\
             base_url = \"{}/router/rest\"\napp_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\n\
             requests_per_second = 200\n\n[[streams]]\nid = \"settlement/all\"\nsource = \"top\"\ntopic = \"{topic}\"\n\
             start = \"1d\"\nlookback = \"10m\"\nsettle = \"1m\"\n",
            kafka(),
            sim.base_url()
        )
    };
    let found = dir.path().join("found");
    let discover_cfg = write(dir.path(), "discover.toml", &worker("top.finance_order"));
    let discover = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["discover", "--source", "top", "--method", "example.store.settlement.query", "--config"])
            .arg(&discover_cfg)
            .arg("--out")
            .arg(&found)
            .args(["--page-size", "50"])
            .args(extra);
        output_within(cmd, std::time::Duration::from_secs(60))
    };
    let out = discover(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--request-object is needed"), "{stderr}");
    let out = discover(&["--request-object", "settlement_query"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "discover failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let kind = "top.example_store_settlement_query";
    for said in ["read 400 records", "list field: settlements", "key field: settle_no"] {
        assert!(stdout.contains(said), "the summary says {said:?}: {stdout}");
    }
    let manifest = std::fs::read_to_string(found.join(format!("{kind}.toml"))).unwrap();
    assert!(
        manifest.contains("request_object = \"settlement_query\"") && manifest.contains("list_item = \"settlement\""),
        "{manifest}"
    );
    let schema_text = std::fs::read_to_string(found.join(format!("{kind}.avsc"))).unwrap();
    let schema = apache_avro::Schema::parse_str(&schema_text).unwrap();

    let cfg = write(dir.path(), "worker.toml", &format!("endpoints_dir = \"found\"\n{}", worker(kind)));
    let run = run_until_caught_up(&cfg);
    assert!(run.status.success(), "worker failed: {}", tail(&String::from_utf8_lossy(&run.stderr), 30));
    let decoded = decode_with(Reader::FastavroSchemasIn(&found), &topic);
    assert_decoded_exactly(&decoded, &expected, &schema, "settle_no");
}

/// The six real 旺店通 / 奇门 methods shipped in `endpoints/`: each `(kind, key field)`.
const SHIPPED: &[(&str, &str)] = &[
    ("wdt.trade_query", "trade_no"),
    ("wdt.stockout_trade", "order_no"),
    ("wdt.refund_query", "refund_no"),
    ("qimen.trade_query", "trade_no"),
    ("qimen.stockout_trade", "order_no"),
    ("qimen.refund_query", "refund_no"),
];

/// Every shipped endpoint runs end to end as a user would run it: the simulator serves it from
/// its manifest (the vendor's window span and page limit: 60 minutes for orders, 40 a page for
/// 旺店通 refunds), the worker reads it from `endpoints_dir`, and fastavro, holding only
/// `endpoints/`, reads every record once with the simulator's values.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_endpoints_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("endpoints");
    let mut sim_toml = format!(
        "listen = \"127.0.0.1:0\"\nendpoints_dir = \"{}\"\n[wdt]\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"ws\"\n\
         [qimen]\napp_key = \"qk\"\napp_secret = \"qs\"\ntarget_app_key = \"t\"\nsid = \"s\"\n",
        shipped.display()
    );
    for (i, (kind, _)) in SHIPPED.iter().enumerate() {
        sim_toml.push_str(&format!(
            "[endpoints.\"{kind}\"]\nseed = {i}\nrecords = 150\nfrom = \"20h\"\nuntil = \"1h\"\nshops = [\"shop-01\"]\n"
        ));
    }
    let sim = Simulator::start(dir.path(), &sim_toml);
    let prefix = unique("shipped");
    let mut worker = format!(
        "endpoints_dir = \"{}\"\n[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{prefix}-txn\"\n\
         watermark_topic = \"{prefix}-wm\"\nwatermark_partitions = 1\ntopic_partitions = 2\n",
        shipped.display(),
        kafka()
    );
    for (kind, _) in SHIPPED {
        let source = kind.replace('.', "_");
        let credentials = if kind.starts_with("wdt.") {
            format!("base_url = \"{}\"\nsid = \"s\"\nappkey = \"k\"\nappsecret = \"ws\"", sim.base_url())
        } else {
            format!(
                "base_url = \"{}/router/qm\"\napp_key = \"qk\"\napp_secret = \"qs\"\ntarget_app_key = \"t\"\nsid = \"s\"",
                sim.base_url()
            )
        };
        worker.push_str(&format!(
            "\n[sources.{source}]\nkind = \"{kind}\"\n{credentials}\nrequests_per_second = 200\n\n[[streams]]\n\
             id = \"{kind}/shop-01\"\nsource = \"{source}\"\ntopic = \"{prefix}.{kind}\"\nstart = \"1d\"\n\
             lookback = \"10m\"\nsettle = \"1m\"\n[streams.params]\nshop_no = \"shop-01\"\n"
        ));
    }
    let cfg = write(dir.path(), "worker.toml", &worker);
    let run = run_until_caught_up(&cfg);
    assert!(run.status.success(), "worker failed: {}", tail(&String::from_utf8_lossy(&run.stderr), 30));
    for (kind, key) in SHIPPED {
        let expected = sim.records(kind).await;
        assert_eq!(expected.len(), 150, "{kind}");
        let schema_text = std::fs::read_to_string(shipped.join(format!("{kind}.avsc"))).unwrap();
        let schema = apache_avro::Schema::parse_str(&schema_text).unwrap();
        let decoded = decode_with(Reader::FastavroSchemasIn(&shipped), &format!("{prefix}.{kind}"));
        assert_decoded_exactly(&decoded, &expected, &schema, key);
    }
}
