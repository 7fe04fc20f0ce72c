//! Every seed API end to end against the real broker and its simulator: each record exactly
//! once with exact values after SIGKILLs and restarts; the balance snapshot's changes and
//! tombstones.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

fn kafka_section(wm_topic: &str, txn: &str) -> String {
    format!(
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{txn}\"\nwatermark_topic = \"{wm_topic}\"\nwatermark_partitions = 2\ntopic_partitions = 3\n",
        kafka()
    )
}

fn stream(id: &str, source: &str, topic: &str, extra: &str, params: &str) -> String {
    format!(
        "\n[[streams]]\nid = \"{id}\"\nsource = \"{source}\"\ntopic = \"{topic}\"\nstart = \"49h\"\nlookback = \"5m\"\nsettle = \"1m\"\n{extra}\n[streams.params]\n{params}\n"
    )
}

/// Runs a backfill that is SIGKILLed twice part-way, then resumed to the end, and checks the
/// topic against the simulator's whole data set.
async fn backfill_survives_kills(sim: &Simulator, kind: &str, config: &str, topic: &str, schema: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "worker.toml", config);
    let expected = sim.records(kind).await;
    assert!(expected.len() > 100, "{kind}: a real data set");
    kill_after_windows(&cfg, 5);
    let after_first = consume_committed(topic).len();
    kill_after_windows(&cfg, 8);
    let after_second = consume_committed(topic).len();
    assert!(
        0 < after_first && after_first <= after_second && after_second < expected.len(),
        "{kind}: kills landed part-way ({after_first}, {after_second} of {})",
        expected.len()
    );
    let out = run_until_caught_up(&cfg);
    assert!(out.status.success(), "{kind}: resumed worker failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&consume_committed(topic), &expected, schema, key);
}

/// In the `errorcode` envelope (no `flag`), the shape a Go SDK and a production crawler read;
/// the other tests' 奇门 simulators answer with `flag`.
#[tokio::test(flavor = "multi_thread")]
async fn qimen_refund_stockins_arrive_exactly_once_after_kills_in_the_errorcode_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        r#"
listen = "127.0.0.1:0"
[faults]
latency = "10ms"
[qimen]
app_key = "qk"
app_secret = "qs"
target_app_key = "wdt-target"
sid = "seller"
envelope = "errorcode"
[qimen.stockin_refund]
seed = 5
records = 1500
from = "2d"
until = "1h"
"#,
    );
    let (topic, wm) = (unique("qimen-data"), unique("qimen-wm"));
    let mut cfg = kafka_section(&wm, &unique("qimen-txn"));
    cfg.push_str(&format!(
        "[sources.qm]\nkind = \"qimen.stockin_refund\"\nbase_url = \"{}/router/qm\"\napp_key = \"qk\"\napp_secret = \"qs\"\ntarget_app_key = \"wdt-target\"\nsid = \"seller\"\nsign_method = \"hmac-sha256\"\nrequests_per_second = 200\n",
        sim.base_url()
    ));
    for shop in ["shop-01", "shop-02"] {
        cfg.push_str(&stream(
            &format!("qimen.stockin_refund/{shop}"),
            "qm",
            &topic,
            "max_span = \"2h\"\npage_size = 20",
            &format!("shop_no = \"{shop}\""),
        ));
    }
    backfill_survives_kills(&sim, "qimen.stockin_refund", &cfg, &topic, "qimen.stockin_refund.avsc", "order_no").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn top_finance_orders_arrive_exactly_once_after_kills_in_both_response_forms() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        r#"
listen = "127.0.0.1:0"
[faults]
latency = "10ms"
[top]
app_key = "tk"
app_secret = "ts"
session = "sess"
[top.finance_order]
seed = 6
records = 1500
from = "2d"
until = "1h"
shops = ["2313", "1313"]
"#,
    );
    let (topic, wm) = (unique("top-data"), unique("top-wm"));
    let mut cfg = kafka_section(&wm, &unique("top-txn"));
    // Two sources on one app key: one asks for simplified responses, one for wrapped ones.
    for (id, simplify) in [("top_wrapped", "false"), ("top_simple", "true")] {
        cfg.push_str(&format!(
            "[sources.{id}]\nkind = \"top.finance_order\"\nbase_url = \"{}/router/rest\"\napp_key = \"tk\"\napp_secret = \"ts\"\nsession = \"sess\"\nsign_method = \"hmac\"\nsimplify = \"{simplify}\"\nrequests_per_second = 200\n",
            sim.base_url()
        ));
    }
    cfg.push_str(&stream(
        "top.finance_order/2313",
        "top_wrapped",
        &topic,
        "max_span = \"2h\"\npage_size = 25",
        "shop_codes = \"2313\"",
    ));
    cfg.push_str(&stream(
        "top.finance_order/1313",
        "top_simple",
        &topic,
        "max_span = \"2h\"\npage_size = 25",
        "shop_codes = \"1313\"",
    ));
    backfill_survives_kills(&sim, "top.finance_order", &cfg, &topic, "top.finance_order.avsc", "biz_uk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_transactions_arrive_exactly_once_after_kills_with_cut_pages() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        r#"
listen = "127.0.0.1:0"
[faults]
latency = "10ms"
[finance]
flag = "fl"
app_secret = "fs"
[finance.transactions]
seed = 7
records = 3000
from = "2d"
until = "1h"
shops = ["ACC001", "ACC002"]
"#,
    );
    let (topic, wm) = (unique("fin-data"), unique("fin-wm"));
    let mut cfg = kafka_section(&wm, &unique("fin-txn"));
    cfg.push_str(&format!(
        "[sources.fin]\nkind = \"finance.transactions\"\nbase_url = \"{}/api\"\nflag = \"fl\"\napp_secret = \"fs\"\nrequests_per_second = 200\n",
        sim.base_url()
    ));
    for acc in ["ACC001", "ACC002"] {
        // Asking for 1000 per page: the API serves 100, and the engine trusts what it gets.
        cfg.push_str(&stream(
            &format!("finance.transactions/{acc}"),
            "fin",
            &topic,
            "max_span = \"4h\"\npage_size = 1000",
            &format!("account_id = \"{acc}\""),
        ));
    }
    backfill_survives_kills(&sim, "finance.transactions", &cfg, &topic, "finance.transactions.avsc", "trans_id").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn balance_snapshots_emit_only_changes_and_tombstone_closed_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        dir.path(),
        "listen = \"127.0.0.1:0\"\n[finance]\nflag = \"fl\"\napp_secret = \"fs\"\n[finance.balances]\nseed = 3\naccounts = 8\n",
    );
    let (topic, wm) = (unique("bal-data"), unique("bal-wm"));
    let mut cfg_text = kafka_section(&wm, &unique("bal-txn"));
    cfg_text.push_str(&format!(
        "[sources.bal]\nkind = \"finance.balances\"\nbase_url = \"{}/api\"\nflag = \"fl\"\napp_secret = \"fs\"\n\n[[streams]]\nid = \"finance.balances/all\"\nsource = \"bal\"\ntopic = \"{topic}\"\npoll_interval = \"1s\"\n",
        sim.base_url()
    ));
    let cfg = write(dir.path(), "worker.toml", &cfg_text);

    let run = |what: &str| {
        let out = run_until_caught_up(&cfg);
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("first snapshot");
    let first = consume_committed(&topic);
    assert_exactly(&first, &sim.records("finance.balances").await, "finance.balances.avsc", "account_id");

    // Within the poll interval the snapshot is current: a rerun writes nothing.
    run("rerun within the interval");
    assert_eq!(consume_committed(&topic).len(), first.len());

    let http = reqwest::Client::new();
    let put = |id: &str, body: &str| {
        http.put(format!("{}/_simulator/finance.balances/{id}", sim.base_url()))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    assert!(put("ACC002", r#"{"balance": 123456789012.34}"#).await.unwrap().status().is_success());
    assert!(
        put("ACC099", r#"{"account_name": "新账户", "account_type": "main", "balance": 0.00, "currency": "CNY"}"#)
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let del = http.delete(format!("{}/_simulator/finance.balances/ACC003", sim.base_url())).send().await.unwrap();
    assert!(del.status().is_success());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    run("second snapshot");

    let all = consume_committed(&topic);
    let before: std::collections::HashSet<(i32, i64)> = first.iter().map(|c| (c.partition, c.offset)).collect();
    let new: Vec<_> = all.iter().filter(|c| !before.contains(&(c.partition, c.offset))).collect();
    let mut keys: Vec<(&str, bool)> = new.iter().map(|c| (c.key.as_str(), c.value.is_some())).collect();
    keys.sort();
    assert_eq!(keys, vec![("ACC002", true), ("ACC003", false), ("ACC099", true)], "only the changes, and a tombstone");
    // The compacted view equals the simulator's accounts now.
    let now = sim.records("finance.balances").await;
    let live = live_records(&all);
    assert_exactly(&live, &now, "finance.balances.avsc", "account_id");

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka()).create().unwrap();
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new()).await.unwrap();
    let policy = described[0].as_ref().unwrap().get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"), "snapshot topics are compacted");
}
