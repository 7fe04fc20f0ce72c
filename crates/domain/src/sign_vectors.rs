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

    /// A list of eleven: PHP sorts its index keys as text too ("10" before "2").
    pub const VENDOR_LONG_LIST: &str = r#"{"flag":"tidemark","method":"m.x","timestamp":"20240101080000","list":["a","b","c","d","e","f","g","h","i","j","k"]}"#;
    pub const VENDOR_LONG_LIST_SIGN: &str = "E934534492ACE1358251B280B482D805";

    pub fn text_body(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect()
    }

    pub fn object(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).expect("vector is json")
    }
}

/// 旺店通 openapi2. Produced by the `packData`/`makeSign` of 旺店通's PHP SDK `WdtClient.php`
/// (the file the seed's PHP example requires; a copy is in repository fangsinan/nlsg,
/// Libraries/erp-php-sdk/WdtClient.php), run with PHP 8.2 (`iconv_strlen`) on these inputs.
pub mod wdt {
    pub const SECRET: &str = "secret123";

    /// The vector DESIGN.md quotes.
    pub const SDK_ACCOUNT_CHECK: &[(&str, &str)] = &[
        ("sid", "apidevnew2"),
        ("appkey", "testkey"),
        ("timestamp", "1700000000"),
        ("page_no", "0"),
        ("page_size", "40"),
        ("start_time", "2024-01-01 00:00:00"),
        ("end_time", "2024-01-01 23:59:59"),
    ];
    pub const SDK_ACCOUNT_CHECK_SIGN: &str = "924831606570d34da1b87b7432f33bdf";

    /// Chinese values: lengths count characters, not bytes.
    pub const SDK_CHINESE: &[(&str, &str)] =
        &[("sid", "测试卖家"), ("appkey", "testkey"), ("timestamp", "1700000000"), ("shop_no", "旺店-01")];
    pub const SDK_CHINESE_SIGN: &str = "efb84fe7fb55eae066951355b922a60c";
}

/// 淘宝开放平台 TOP and 奇门. `DOC` is the worked example of TOP's "API调用方法详解"
/// (open.taobao.com/doc.htm?docId=101617&docType=1), whose md5 result the page prints; every
/// other value was produced by `TaobaoUtils.signTopRequest` of TOP's Java SDK (a copy is in
/// repository opendingtalk/alibaba-dingtalk-service-sdk,
/// src/main/java/com/taobao/api/internal/util/TaobaoUtils.java), run with Java 17 on these
/// inputs; it also reproduces the page's md5.
pub mod top {
    pub const SECRET: &str = "helloworld";

    pub const DOC: &[(&str, &str)] = &[
        ("method", "taobao.item.seller.get"),
        ("app_key", "12345678"),
        ("session", "test"),
        ("timestamp", "2016-01-01 12:00:00"),
        ("format", "json"),
        ("v", "2.0"),
        ("sign_method", "md5"),
        ("fields", "num_iid,title,nick,price,num"),
        ("num_iid", "11223344"),
    ];
    /// `(sign method, sign)` over `DOC` as it stands (its `sign_method` stays `md5`); the page
    /// prints the md5 one.
    pub const DOC_SIGNS: &[(&str, &str)] = &[
        ("md5", "66987CB115214E59E6EC978214934FB8"),
        ("hmac", "B4DDA503460D60A86B16E950E5D303E9"),
        ("hmac-sha256", "6B7EB7E1C35D068D69538D80282A37DFBF29B4DB11B451881AF51890626138B3"),
    ];

    /// The backflow request tidemark sends, with an empty `simplify` (left out of the text).
    /// `sign_method` is set to the method in each `(sign_method, sign)` pair.
    pub const BACKFLOW: &[(&str, &str)] = &[
        ("method", "alibaba.wdk.finance.order.backflow"),
        ("app_key", "12345678"),
        ("session", "sess-abc"),
        ("timestamp", "2024-01-01 08:00:00"),
        ("v", "2.0"),
        ("format", "json"),
        ("simplify", ""),
        (
            "finance_order_detail_request",
            r#"{"current_page":1,"page_size":100,"start_time":"2019-01-11 00:00:01","end_time":"2019-01-11 23:59:00"}"#,
        ),
    ];
    pub const BACKFLOW_SIGNS: &[(&str, &str)] = &[
        ("md5", "9C3FB30F3818B98448E1310CA3E183D7"),
        ("hmac", "15B430DF5A06758D052A2D538B9BF3BD"),
        ("hmac-sha256", "940218B1F8C54662DB0E1919817238610A3CE2D1D18F3F62F85333C0A52C0E86"),
    ];

    /// A 奇门 request with a raw (XML) body, which is appended to the text.
    pub const QIMEN_WITH_BODY: &[(&str, &str)] = &[
        ("method", "wdt.stockin.order.query.refund"),
        ("app_key", "qm-key"),
        ("target_app_key", "wdt-target"),
        ("sid", "测试卖家"),
        ("timestamp", "2024-01-01 08:00:00"),
        ("format", "xml"),
        ("v", "2.0"),
        ("sign_method", "md5"),
        ("customerId", "c1"),
    ];
    pub const QIMEN_BODY: &str = "<request><shop_no>旺店-01</shop_no></request>";
    pub const QIMEN_WITH_BODY_SIGN: &str = "E7C6C68EA929443002C9BA9125F75B43";
}

/// Pairs as owned parameters.
pub fn params(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// 金蝶云星空 第三方系统登录授权 headers. Produced by the official Python SDK
/// `kingdee-cdp-webapi-sdk` 8.2.0 itself (`WebApiClient.BuildHeader`, with `time.time` fixed),
/// not by re-deriving its algorithm.
pub mod k3cloud {
    pub const BATCH_SAVE: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave.common.kdsvc";
    pub const QUERY: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc";

    /// One credential and what the SDK sends with it at `timestamp` (also its nonce).
    pub struct SdkCase {
        pub app_id: &'static str,
        pub app_secret: &'static str,
        pub acct_id: &'static str,
        pub user_name: &'static str,
        pub lcid: u32,
        pub org_num: &'static str,
        pub timestamp: i64,
        /// The app id's key half decoded (the gateway secret).
        pub client_secret: Option<&'static str>,
        /// `(path, X-Api-Signature)`.
        pub api_signatures: &'static [(&'static str, &'static str)],
        /// `X-Kd-Appdata` (base64 of `acct,user,lcid,org`) and `X-Kd-Signature`.
        pub app_data: &'static str,
        pub app_signature: &'static str,
    }

    /// The credentials of the SDK's own `sample.py`.
    pub const SDK_SAMPLE: SdkCase = SdkCase {
        app_id: "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
        app_secret: "fb7d46647ac346dbb5fcd45b65512a45",
        acct_id: "5db25ac8d2b819",
        user_name: "webapi",
        lcid: 2052,
        org_num: "100",
        timestamp: 1_764_201_600,
        client_secret: Some("31ecfd13effe724e7e78fc17f8f94b66"),
        api_signatures: &[
            (BATCH_SAVE, "MzNiM2M0MzNjNzIzNjA2MjY4Nzc5NThkZDhjMDkyMjM5ODNmMTczOTM2MzE3OTA5ZWMyZTRjNjI2OGQyNmU3Yg=="),
            (QUERY, "YTgyMGY1ZmI3YTBkZDhlNTJjNjAzNWZmMTg0NzMwNjljNTRjMjZhYTljMmJmY2RiMDUxYWY1Y2JhMmUyMmM5OA=="),
        ],
        app_data: "NWRiMjVhYzhkMmI4MTksd2ViYXBpLDIwNTIsMTAw",
        app_signature: "MTc3OGY2ZTRjYzI3ZmNmNmU3NzYxMGYyNzBlMjFmYmQ5YTRmZGEyNWQ5YzZiNzNkMDBiMmY1MGNiMTcwNGJlZQ==",
    };

    /// A second credential with another secret, account and org (0).
    pub const SDK_SECOND: SdkCase = SdkCase {
        app_id: "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA",
        app_secret: "d6a3b94c5e2c4c6f8a1b2c3d4e5f6a7b",
        acct_id: "6420e0b2c6d3f2",
        user_name: "Administrator",
        lcid: 2052,
        org_num: "0",
        timestamp: 1_700_000_000,
        client_secret: None,
        api_signatures: &[(
            BATCH_SAVE,
            "M2Q2NDhjYTUxOGFhYWE3MDY5NDc3OGFhNzZmODA4NzI0ZDBlNmUyYTI1Y2YzNTYzYjdiM2JmNWFiMTZmZGJiNQ==",
        )],
        app_data: "NjQyMGUwYjJjNmQzZjIsQWRtaW5pc3RyYXRvciwyMDUyLDA=",
        app_signature: "ZmE3YjZhN2ZjNGE2MjcwYTIwMDFiOGE1MTJlYTRkNGQwYTU1ZTljODkzODkwMTk3ZjRhNWE5ZTU5MmQyYzZlMQ==",
    };
}
