//! `tidemark discover` (issue #25): an endpoint inferred from the 旺店通 simulator runs as
//! written, every record once; what it cannot tell it refuses with exit 2 and says why.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use apache_avro::Schema;
use common::*;

const KIND: &str = "wdt.discovered";

fn discover(cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["discover", "--source", "wdt", "--method", "fa_alipay_account_check_query.php", "--kind", KIND])
        .arg("--config")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(extra);
    output_within(cmd, std::time::Duration::from_secs(60))
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
    let discover_cfg = write(dir.path(), "discover.toml", &worker);
    let endpoints = dir.path().join("endpoints");

    // The default window: the last day of the simulator's five.
    let out = discover(&discover_cfg, &endpoints, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "discover failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for said in
        ["list field: account_list", "key field: account_check_no (present, non-empty and unique", "max_span: 1d"]
    {
        assert!(stdout.contains(said), "the summary says {said:?}: {stdout}");
    }
    let schema_text = std::fs::read_to_string(endpoints.join(format!("{KIND}.avsc"))).unwrap();
    let schema = Schema::parse_str(&schema_text).unwrap();
    let Schema::Record(r) = &schema else { panic!("{schema_text}") };
    let types: BTreeMap<&str, String> = r.fields.iter().map(|f| (f.name.as_str(), format!("{:?}", f.schema))).collect();
    assert!(
        types["pay_amount"].contains("Decimal") && types["pay_amount"].contains("scale: 4"),
        "{}",
        types["pay_amount"]
    );
    assert!(types["check_time"].contains("TimestampMillis"), "{}", types["check_time"]);
    assert_eq!(types["account_check_no"], "String");

    // The manifest runs as written: the worker reads all five days through it.
    let text = worker.replace("kind = \"wdt.account_check\"", &format!("kind = \"{KIND}\""));
    let cfg = write(dir.path(), "worker.toml", &format!("endpoints_dir = \"endpoints\"\n{text}"));
    let run = run_until_caught_up(&cfg);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "worker failed: {}", tail(&stderr, 30));
    let consumed = consume_committed(&topic);
    assert_eq!(consumed.len(), expected.len(), "committed record count equals the simulator's");
    let by_key: BTreeMap<String, &serde_json::Value> =
        expected.iter().map(|r| (r["account_check_no"].as_str().unwrap().to_owned(), r)).collect();
    let mut seen = std::collections::HashSet::new();
    for c in &consumed {
        assert!(seen.insert(c.key.clone()), "key {} appears twice", c.key);
        let want = by_key.get(&c.key).unwrap_or_else(|| panic!("key {} is not a simulator record", c.key));
        let got = read_single_object(&schema, c.value.as_ref().expect("not a tombstone"));
        check_value(&got, Some(want), &schema, &c.key);
    }
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
        let out = discover(&cfg, &endpoints, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(said), "{extra:?} says {said:?}: {stderr}");
        assert!(!endpoints.join(format!("{KIND}.toml")).exists(), "{extra:?} wrote nothing");
    }
}
