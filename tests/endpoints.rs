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
