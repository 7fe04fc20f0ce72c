//! Seed 001's two ends for tests: the simulator's 奇门 refund stock-ins and 金蝶云星空 sections,
//! and the worker's source, stream and writer between them.

use serde_json::Value;

pub const K3_APP_ID: &str = "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA";

/// The materials the simulated account holds: SKU-1006, which the generator also names, is
/// missing, so K3Cloud refuses its lines as unknown base data, the way Kingdee does.
pub const SEED_MATERIALS: [&str; 5] = ["SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004", "SKU-1005"];

/// The simulator's `[qimen]` refund stock-ins (300 over two days, one shop) and `[k3cloud]`,
/// whose base data lacks SKU-1006 so that K3Cloud refuses some lines; `extra` goes into
/// `[k3cloud]`.
pub fn refund_simulator_sections(extra: &str) -> String {
    format!(
        r#"
[qimen]
app_key = "qk"
app_secret = "qs"
target_app_key = "wdt-target"
sid = "seller"
[qimen.stockin_refund]
seed = 21
records = 300
from = "2d"
until = "1h"
shops = ["shop-01"]
[k3cloud]
app_id = "{K3_APP_ID}"
app_secret = "k3-secret"
acct_id = "6420e0b2c6d3f2"
user_name = "Administrator"
orgs = ["100"]
materials = {materials:?}
{extra}
"#,
        materials = SEED_MATERIALS
    )
}

/// The worker's `[sources.qm]`, its stream into `topic`, and `[writers.k3]` from `topic` to the
/// simulator at `base` (no `[kafka]`); `writer_extra` goes into `[writers.k3]`.
pub fn refund_pipeline_sections(base: &str, topic: &str, group: &str, dlq: &str, writer_extra: &str) -> String {
    format!(
        r#"
[sources.qm]
kind = "qimen.stockin_refund"
base_url = "{base}/router/qm"
app_key = "qk"
app_secret = "qs"
target_app_key = "wdt-target"
sid = "seller"
requests_per_second = 200

[[streams]]
id = "qimen.stockin_refund/shop-01"
source = "qm"
topic = "{topic}"
start = "49h"
settle = "1m"
[streams.params]
shop_no = "shop-01"

[writers.k3]
kind = "k3cloud.sal_returnstock"
base_url = "{base}"
topic = "{topic}"
group = "{group}"
dead_letter_topic = "{dlq}"
batch_size = 20
batch_linger = "200ms"
requests_per_second = 200
app_id = "{K3_APP_ID}"
app_secret = "k3-secret"
acct_id = "6420e0b2c6d3f2"
user_name = "Administrator"
stock_org = "100"
default_customer = "RETAIL"
{writer_extra}
"#
    )
}

/// The bill number of the stock-in [`add_stockin_without_lines`] adds.
pub const NO_LINES: &str = "RK-NOLINES-0001";

/// Adds to the simulator's stock-ins one with an empty `details_list` a day back, so that
/// the writer always meets a stock-in no bill can be made of (the generator's own rate of
/// them is too low to rely on).
pub async fn add_stockin_without_lines(sim: &super::Simulator) {
    let mut s = sim.records("qimen.stockin_refund").await[0].clone();
    s["order_no"] = serde_json::json!(NO_LINES);
    s["details_list"] = serde_json::json!([]);
    let at = chrono::Utc::now() - chrono::Duration::days(1);
    let at = tidemark::domain::time::format_beijing(at, tidemark::domain::time::DATETIME);
    let resp = reqwest::Client::new()
        .post(format!("{}/_simulator/records/qimen.stockin_refund", sim.base_url()))
        .json(&serde_json::json!({"at": at, "group": "shop-01", "record": s}))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
}

/// What seed 001 makes of one stock-in as the simulator served it: a bill, a dead letter
/// the writer wrote because no bill can be made of it, or one K3Cloud refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Bill,
    /// The writer's reason, as its mapping words it (seed 001's field table).
    Unmappable(String),
    /// The first `FieldName` K3Cloud names, in the order it checks a bill.
    Refused(&'static str),
}

/// Worked out from the stock-in alone, independently of the writer and the simulator's
/// checks, so that a writer which saved, dropped or dead-lettered the wrong ones fails.
/// The generator always sets `order_no` and `stockin_time`, and the writer's
/// `default_customer` covers an empty `customer_no`, so only the lines and the warehouse
/// decide.
pub fn expected_outcome(stockin: &Value) -> Expected {
    let text = |v: &Value| v.as_str().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    let lines = stockin["details_list"].as_array().cloned().unwrap_or_default();
    if lines.is_empty() {
        return Expected::Unmappable("no detail lines".into());
    }
    for (i, d) in lines.iter().enumerate() {
        for (field, what) in [("spec_no", "spec_no"), ("num", "num")] {
            if text(&d[field]).is_none() {
                return Expected::Unmappable(format!("detail line {} has no {what}", i + 1));
            }
        }
    }
    let amount = |v: &Value| text(v).map(|t| t.parse::<f64>().expect("the generator writes decimals"));
    let warehouse = text(&stockin["warehouse_no"]);
    // K3Cloud checks each line in turn: material, warehouse, quantity, price.
    for d in &lines {
        if text(&d["spec_no"]).is_some_and(|s| !SEED_MATERIALS.contains(&s.as_str())) {
            return Expected::Refused("FMaterialId");
        }
        if warehouse.is_none() {
            return Expected::Refused("FStockId");
        }
        if amount(&d["num"]).is_some_and(|n| n <= 0.0) {
            return Expected::Refused("FRealQty");
        }
        if amount(&d["tax_price"]).is_some_and(|p| p < 0.0) {
            return Expected::Refused("FTaxPrice");
        }
    }
    Expected::Bill
}
