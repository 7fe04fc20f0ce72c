//! Seed 001's two ends for tests: the simulator's 奇门 refund stock-ins and 金蝶云星空 sections,
//! and the worker's source, stream and writer between them.

pub const K3_APP_ID: &str = "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA";

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
# SKU-1006 is missing: its lines are refused as unknown base data, the way Kingdee does.
materials = ["SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004", "SKU-1005"]
{extra}
"#
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
