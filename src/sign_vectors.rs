//! Request-signature vectors from outside the project: each was printed by a vendor's
//! documentation or produced by running a vendor's (or its official SDK's) own code on the
//! inputs below, as noted beside it. They are the authority: the clients in `sources` and
//! `targets` and the simulators' own verification in `simulate` are all tested against them,
//! so the two sides cannot merely agree with each other.

/// 财务账单 API (ShopEx OMS OpenAPI). Produced by the vendor's `gen_sign`/`assemble` as
/// printed in doc.shopex.cn/oms/oms-apis/openapi/openapi.html §3.2 (the page the seed's
/// finance document refers to for its request examples; the same code is
/// `openapi_entrance::gen_sign` in ShopEx's open-source OMS, e.g. repository kenee/ONEX-OMS,
/// app/openapi/lib/entrance.php), run with PHP 8.2 on these inputs.
pub mod finance {
    use serde_json::{Map, Value};

    /// The sample token of the public OMS OpenAPI test clients.
    pub const VENDOR_TOKEN: &str = "OaYMGiaNlXXsspjnsnTjzjrDCYWngEkh";

    /// A transactions request as tidemark sends it, all values as text.
    pub const VENDOR_TRANSACTIONS: &[(&str, &str)] = &[
        ("flag", "tidemark"),
        ("method", "finance.getTransactionList"),
        ("ver", "1"),
        ("charset", "utf-8"),
        ("type", "json"),
        ("timestamp", "20240101080000"),
        ("start_time", "2024-01-01 00:00:00"),
        ("end_time", "2024-01-01 23:59:59"),
        ("page_no", "1"),
        ("page_size", "100"),
        ("account_id", "ACC001"),
    ];
    pub const VENDOR_TRANSACTIONS_SIGN: &str = "BB7DFAE980A84F28E00B837C49F45FAB";

    /// A Chinese value and an empty one (kept: PHP leaves out only `null`).
    pub const VENDOR_BALANCES: &[(&str, &str)] = &[
        ("flag", "tidemark"),
        ("method", "finance.getAccountBalance"),
        ("ver", "1"),
        ("charset", "utf-8"),
        ("type", "json"),
        ("timestamp", "20240101080000"),
        ("account_id", "测试账户"),
        ("account_type", ""),
    ];
    pub const VENDOR_BALANCES_SIGN: &str = "A4842D150DC1AB7173AA9E7545901B99";

    /// A JSON body as the server decodes it (`json_decode(…, true)`): numbers, a bool, a null
    /// and nested values.
    pub const VENDOR_NESTED: &str = r#"{"flag":"tidemark","method":"finance.getTransactionList","ver":1,"charset":"utf-8","type":"json","timestamp":"20240101080000","page_no":2,"trans_type":null,"debug":true,"filter":{"shops":["SHOP001","SHOP002"],"all":false}}"#;
    pub const VENDOR_NESTED_SIGN: &str = "81A889F39B9FE6422A26D6A58AC65376";

    pub fn text_body(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect()
    }

    pub fn nested_body() -> Map<String, Value> {
        serde_json::from_str(VENDOR_NESTED).expect("vector is json")
    }
}
