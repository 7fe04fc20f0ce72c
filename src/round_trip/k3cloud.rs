//! The K3Cloud simulator against headers built by tidemark's own signer (the writer's, on
//! purpose: the simulator checks them with its own code): what it accepts, what it refuses and
//! why, partial batch saves, and queries over what was saved.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::simulate::k3cloud::*;
use crate::targets::k3cloud::sign::Identity;

const SECTION: &str = r#"
[k3cloud]
app_id = "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA"
app_secret = "sim-secret"
acct_id = "6420e0b2c6d3f2"
user_name = "Administrator"
materials = ["M1", "M2"]
customers = ["C1"]
warehouses = ["W1"]
"#;

fn sim() -> K3cloudSim {
    let cfg: crate::simulate::SimConfig = toml::from_str(SECTION).unwrap();
    K3cloudSim::new(cfg.k3cloud.as_ref().unwrap()).unwrap()
}

fn identity() -> Identity {
    Identity {
        app_id: "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA".into(),
        app_secret: Secret::new("sim-secret"),
        acct_id: "6420e0b2c6d3f2".into(),
        user_name: "Administrator".into(),
        lcid: 2052,
        org_num: "100".into(),
    }
}

/// The headers the writer sends for `path`, signed by `id` at `at` (Unix seconds).
fn signed(id: &Identity, path: &str, at: i64) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in id.headers(path, at).unwrap() {
        h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(&value).unwrap());
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn bill(no: &str, material: &str) -> Value {
    json!({
        "FBillNo": no,
        "FDate": "2025-06-01",
        "FBillTypeID": {"FNumber": "XSTHD01_SYS"},
        "FRetcustId": {"FNumber": "C1"},
        "FStockOrgId": {"FNumber": "100"},
        "FSaleOrgId": {"FNumber": "100"},
        "SubHeadEntity": {"FSettleOrgId": {"FNumber": "100"}},
        "FEntity": [
            {"FMaterialId": {"FNumber": "M1"}, "FStockId": {"FNumber": "W1"}, "FRealQty": "2", "FTaxPrice": "9.90",
             "FEntryTaxRate": "13", "FNote": "退货"},
            {"FMaterialId": {"FNumber": material}, "FStockId": {"FNumber": "W1"}, "FRealQty": 1, "FTaxPrice": 0}
        ]
    })
}

/// A Python-SDK-form batch save of `models`.
fn batch(sim: &K3cloudSim, models: Vec<Value>, audit: bool) -> Value {
    let body = json!({"formid": "SAL_RETURNSTOCK",
        "data": {"Model": models, "IsVerifyBaseDataField": true, "IsAutoSubmitAndAudit": audit}});
    sim.answer(BATCH_SAVE, &signed(&identity(), BATCH_SAVE, now().timestamp()), body.to_string().as_bytes(), now())
}

fn query(sim: &K3cloudSim, data: Value) -> Value {
    let body = json!({ "data": data });
    sim.answer(QUERY, &signed(&identity(), QUERY, now().timestamp()), body.to_string().as_bytes(), now())
}

fn status(answer: &Value) -> &Value {
    &answer["Result"]["ResponseStatus"]
}

#[test]
fn a_signed_batch_is_saved_in_both_sdk_body_forms() {
    let sim = sim();
    let a = batch(&sim, vec![bill("XSTH-1", "M2")], true);
    assert_eq!(status(&a)["IsSuccess"], true, "{a}");
    assert_eq!(status(&a)["ErrorCode"], 0);
    assert_eq!(status(&a)["MsgCode"], 0);
    assert_eq!(status(&a)["SuccessEntitys"], json!([{"Id": 100001, "Number": "XSTH-1", "DIndex": 0}]));

    // The Java SDK: positional parameters, the data as JSON text, a millisecond timestamp and
    // a nonce of its own.
    let ms = now().timestamp_millis();
    let mut h = signed(&identity(), BATCH_SAVE, ms);
    h.insert("x-api-nonce", HeaderValue::from_static("7c1f0e2a9b"));
    let sig = identity().api_signature(BATCH_SAVE, "7c1f0e2a9b", &ms.to_string()).unwrap();
    h.insert("x-api-signature", HeaderValue::from_str(&sig).unwrap());
    let data = json!({"Model": [bill("XSTH-2", "M1")]}).to_string();
    let body = json!({"parameters": ["SAL_RETURNSTOCK", data]}).to_string();
    let a = sim.answer(BATCH_SAVE, &h, body.as_bytes(), now());
    assert_eq!(status(&a)["SuccessEntitys"][0]["Id"], 100002, "{a}");

    // Save takes one model and names it in `Result`.
    let body = json!({"formid": "SAL_RETURNSTOCK", "data": {"Model": bill("XSTH-3", "M1")}}).to_string();
    let a = sim.answer(SAVE, &signed(&identity(), SAVE, now().timestamp()), body.as_bytes(), now());
    assert_eq!((&a["Result"]["Id"], &a["Result"]["Number"]), (&json!(100003), &json!("XSTH-3")), "{a}");

    let bills = sim.bills();
    let summary: Vec<(u64, &str, &str)> = bills
        .iter()
        .map(|b| (b["Id"].as_u64().unwrap(), b["Number"].as_str().unwrap(), b["FDocumentStatus"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, vec![(100001, "XSTH-1", "C"), (100002, "XSTH-2", "A"), (100003, "XSTH-3", "A")]);
    assert_eq!(bills[0]["Model"], bill("XSTH-1", "M2"), "the model is kept as sent");

    // Both query forms.
    let rows = query(&sim, json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FBillNo,FID"}));
    assert_eq!(rows, json!([["XSTH-1", 100001], ["XSTH-2", 100002], ["XSTH-3", 100003]]));
    let data = json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FID", "FilterString": "FBillNo = 'XSTH-2'"});
    let body = json!({ "parameters": [data.to_string()] }).to_string();
    let rows = sim.answer(QUERY, &signed(&identity(), QUERY, now().timestamp()), body.as_bytes(), now());
    assert_eq!(rows, json!([[100002]]));
    let c = sim.counts();
    assert_eq!((c.requests, c.bills_saved, c.queries, c.auth_failures), (5, 3, 2, 0));
}

#[test]
fn bad_credentials_are_refused_with_msg_code_1_and_the_reason() {
    let sim = sim();
    let body = json!({"formid": "SAL_RETURNSTOCK", "data": {"Model": [bill("X", "M1")]}}).to_string();
    let t = now().timestamp();
    let wrong_secret = Identity { app_secret: Secret::new("other"), ..identity() };
    let wrong_acct = Identity { acct_id: "5db25ac8d2b819".into(), ..identity() };
    let wrong_user = Identity { user_name: "webapi".into(), ..identity() };
    let wrong_app = Identity { app_id: "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ".into(), ..identity() };
    let mut forged = signed(&identity(), BATCH_SAVE, t);
    forged.insert("x-api-nonce", HeaderValue::from_static("123"));
    let mut unsigned = signed(&identity(), BATCH_SAVE, t);
    unsigned.remove("x-kd-signature");
    let cases = [
        (signed(&wrong_secret, BATCH_SAVE, t), "X-Kd-Signature 不匹配"),
        (signed(&identity(), BATCH_SAVE, t - 11 * 60), "x-api-timestamp 超出允许的时间差"),
        (signed(&identity(), BATCH_SAVE, (t + 11 * 60) * 1000), "x-api-timestamp 超出允许的时间差"),
        (signed(&wrong_acct, BATCH_SAVE, t), "X-Kd-Appdata 数据中心不匹配 (wrong acct id)"),
        (signed(&wrong_user, BATCH_SAVE, t), "X-Kd-Appdata 用户不匹配"),
        (signed(&wrong_app, BATCH_SAVE, t), "X-Api-ClientID 不匹配"),
        (signed(&identity(), QUERY, t), "X-Api-Signature 不匹配 (signature mismatch)"),
        (forged, "X-Api-Signature 不匹配"),
        (unsigned, "缺少 X-Kd-Signature"),
    ];
    for (i, (headers, reason)) in cases.iter().enumerate() {
        let a = sim.answer(BATCH_SAVE, headers, body.as_bytes(), now());
        let s = status(&a);
        let message = s["Errors"][0]["Message"].as_str().unwrap();
        assert_eq!((&s["IsSuccess"], &s["MsgCode"], &s["ErrorCode"]), (&json!(false), &json!(1), &json!(500)), "{a}");
        assert!(message.starts_with("身份验证失败: ") && message.contains(reason), "case {i}: {message}");
    }
    // A query is refused in the query's own error form.
    let a = sim.answer(QUERY, &signed(&wrong_secret, QUERY, t), b"{}", now());
    assert_eq!(a[0][0]["Result"]["ResponseStatus"]["MsgCode"], 1, "{a}");
    assert!(sim.bills().is_empty());
    assert_eq!(sim.counts().auth_failures, cases.len() as u64 + 1);
}

#[test]
fn a_batch_saves_what_is_valid_and_names_the_rest_by_dindex() {
    let sim = sim();
    batch(&sim, vec![bill("B1", "M1")], false);
    let mut unknown_customer = bill("B6", "M1");
    unknown_customer["FRetcustId"] = json!({"FNumber": "C9"});
    unknown_customer["FDate"] = json!("2025-02-30");
    let a = batch(
        &sim,
        vec![
            bill("B2", "M1"),
            bill("B3", "M404"), // unknown material on line 2
            bill("B1", "M1"),   // already saved
            bill("B4", "M2"),
            bill("B2", "M2"), // saved earlier in this batch
            unknown_customer,
        ],
        false,
    );
    let s = status(&a);
    assert_eq!((&s["IsSuccess"], &s["ErrorCode"]), (&json!(false), &json!(500)), "{a}");
    assert_eq!(
        s["SuccessEntitys"],
        json!([{"Id": 100002, "Number": "B2", "DIndex": 0}, {"Id": 100003, "Number": "B4", "DIndex": 3}])
    );
    let errors: Vec<(u64, &str, &str)> = s["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["DIndex"].as_u64().unwrap(), e["FieldName"].as_str().unwrap(), e["Message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (1, "FMaterialId", "第2行分录，字段“物料编码”的值 M404 在系统中不存在或未审核"),
            (2, "FBillNo", "违反字段唯一性要求：编码唯一。[B1] 已经存在"),
            (4, "FBillNo", "违反字段唯一性要求：编码唯一。[B2] 已经存在"),
            (5, "FDate", "字段“日期”的值 2025-02-30 不是有效的日期 (expected yyyy-MM-dd or yyyy-MM-dd HH:mm:ss)"),
            (5, "FRetcustId", "字段“退货客户”的值 C9 在系统中不存在或未审核"),
        ]
    );
    let numbers: Vec<Value> = sim.bills().iter().map(|b| b["Number"].clone()).collect();
    assert_eq!(numbers, vec![json!("B1"), json!("B2"), json!("B4")]);
    let c = sim.counts();
    assert_eq!((c.bills_saved, c.bills_rejected), (3, 4));
}

#[test]
fn lines_and_head_fields_are_checked_kingdee_style() {
    let sim = sim();
    let mut b = bill("L1", "M1");
    b["FBillNo"] = json!("");
    b["FDate"] = json!("2025-06-01T08:30:00");
    b["FSaleOrgId"] = json!("100");
    b["FStockOrgId"] = json!({"FNumber": "200"});
    b["FBillTypeID"] = json!({"FNUMBER": "XSTHD02"});
    b["SubHeadEntity"]["FSettleOrgId"] = json!({"FNumber": "300"});
    b["FEntity"][0]["FRealQty"] = json!("0");
    b["FEntity"][0]["FTaxPrice"] = json!("-1.5");
    b["FEntity"][0]["FEntryTaxRate"] = json!("130");
    b["FEntity"][1]["FStockId"] = json!({"FNumber": "W2"});
    b["FEntity"][1]["FRealQty"] = json!("1,5");
    let a = batch(&sim, vec![b, json!({"FBillNo": "L2", "FDate": "2025-06-01 08:30:00", "FEntity": []})], false);
    let messages: Vec<&str> =
        status(&a)["Errors"].as_array().unwrap().iter().map(|e| e["Message"].as_str().unwrap()).collect();
    assert_eq!(
        messages,
        vec![
            "字段“单据编号”是必填项",
            "字段“单据类型”的值 XSTHD02 在系统中不存在或未审核",
            "字段“库存组织”的值 200 在系统中不存在或未审核",
            "字段“销售组织”的值格式错误 (base data must be {\"FNumber\": \"..\"})",
            "字段“结算组织”的值 300 在系统中不存在或未审核",
            "第1行分录，字段“实退数量”的值 0 必须大于 0 (must be > 0)",
            "第1行分录，字段“含税单价”的值 -1.5 不能为负数 (must be >= 0)",
            "第1行分录，字段“税率%”的值 130 必须在 0 到 100 之间 (must be within 0..=100)",
            "第2行分录，字段“仓库”的值 W2 在系统中不存在或未审核",
            "第2行分录，字段“实退数量”的值 1,5 不是有效的数字 (not a decimal)",
            "字段“退货客户”是必填项",
            "字段“库存组织”是必填项",
            "字段“销售组织”是必填项",
            "字段“明细信息”至少需要一行分录 (FEntity needs at least one line)",
        ]
    );
    assert!(sim.bills().is_empty());
}

#[test]
fn queries_select_by_bill_number_and_page_by_id() {
    let sim = sim();
    batch(&sim, ["Q1", "Q2", "Q3", "Q4"].iter().map(|n| bill(n, "M1")).collect(), true);
    let q = |filter: &str, extra: Value| {
        let mut data = json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FBillNo,FID,FDate,FDocumentStatus",
            "FilterString": filter, "OrderString": "", "TopRowCount": 0, "StartRow": 0, "Limit": 2000});
        data.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        query(&sim, data)
    };
    assert_eq!(
        q("FBillNo in ('Q3', 'Q1', 'nope')", json!({})),
        json!([["Q1", 100001, "2025-06-01T00:00:00", "C"], ["Q3", 100003, "2025-06-01T00:00:00", "C"]])
    );
    let nos = |rows: Value| -> Vec<String> {
        rows.as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(nos(q("", json!({"StartRow": 1, "Limit": 2}))), ["Q2", "Q3"]);
    assert_eq!(nos(q("", json!({"OrderString": "FID DESC", "TopRowCount": 3}))), ["Q4", "Q3", "Q2"]);
    assert_eq!(nos(q("FBillNo = 'nope'", json!({}))), Vec::<String>::new());

    for (data, expect) in [
        (json!({"FilterString": "FDate > '2025-01-01'"}), "过滤条件 FDate > '2025-01-01' 无法解析"),
        (json!({"FieldKeys": "FBillNo,FCustId"}), "字段 FCustId 不存在或不受支持"),
        (json!({"FormId": "SAL_OUTSTOCK"}), "业务对象 SAL_OUTSTOCK 不存在"),
    ] {
        let a = q("", data);
        let s = &a[0][0]["Result"]["ResponseStatus"];
        assert_eq!((&s["IsSuccess"], &s["ErrorCode"], &s["MsgCode"]), (&json!(false), &json!(500), &json!(0)), "{a}");
        assert!(s["Errors"][0]["Message"].as_str().unwrap().starts_with(expect), "{a}");
    }
}

#[test]
fn whole_request_problems_refuse_the_request() {
    let sim = sim();
    let t = now().timestamp();
    let send =
        |body: Value| sim.answer(BATCH_SAVE, &signed(&identity(), BATCH_SAVE, t), body.to_string().as_bytes(), now());
    for (body, expect) in [
        (json!({"formid": "BD_MATERIAL", "data": {"Model": [bill("W1", "M1")]}}), "业务对象 BD_MATERIAL 不存在"),
        (json!({"formid": "SAL_RETURNSTOCK", "data": {"Model": []}}), "Model 必须是非空的单据数组"),
        (json!({"formid": "SAL_RETURNSTOCK", "data": "{not json"}), "data 不是有效的 JSON"),
        (json!({"formid": "SAL_RETURNSTOCK"}), "缺少 data 参数"),
    ] {
        let a = send(body);
        let s = status(&a);
        assert_eq!((&s["IsSuccess"], &s["MsgCode"]), (&json!(false), &json!(0)), "{a}");
        assert!(s["Errors"][0]["Message"].as_str().unwrap().starts_with(expect), "{a}");
    }
    let mut form = signed(&identity(), BATCH_SAVE, t);
    form.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    let a = sim.answer(BATCH_SAVE, &form, b"{}", now());
    assert!(status(&a)["Errors"][0]["Message"].as_str().unwrap().contains("application/json"), "{a}");
    assert_eq!(sim.counts().request_errors, 5);
}

/// Over HTTP through the simulator's router: routes, the test endpoint, and the fault
/// middleware's `revoked` answer for K3Cloud.
#[tokio::test]
async fn the_router_serves_k3cloud_and_faults_apply_to_it() {
    let text = format!("{SECTION}\n[faults]\nrevoke_after = 2\nrevoke_vendors = [\"k3cloud\"]\n");
    let state = crate::simulate::build(toml::from_str(&text).unwrap(), Utc::now()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, crate::simulate::router(state)).await });
    let client = reqwest::Client::new();
    let post = |n: &str| {
        let body = json!({"formid": "SAL_RETURNSTOCK", "data": {"Model": [bill(n, "M1")]}});
        let mut req = client.post(format!("{base}{BATCH_SAVE}")).json(&body);
        for (name, value) in identity().headers(BATCH_SAVE, Utc::now().timestamp()).unwrap() {
            req = req.header(name, value);
        }
        req.send()
    };
    let a: Value = post("H1").await.unwrap().json().await.unwrap();
    assert_eq!(status(&a)["IsSuccess"], true, "{a}");
    let bills: Value =
        client.get(format!("{base}/_simulator/k3cloud/bills")).send().await.unwrap().json().await.unwrap();
    assert_eq!(bills[0]["Number"], "H1");
    assert_eq!(bills[0]["FDocumentStatus"], "A");
    let _ = post("H2").await.unwrap();
    let a: Value = post("H3").await.unwrap().json().await.unwrap();
    assert_eq!(status(&a)["MsgCode"], 1, "revoked after 2 requests: {a}");
    assert!(status(&a)["Errors"][0]["Message"].as_str().unwrap().contains("应用授权已停用"));
    let log: Value = client.get(format!("{base}/_simulator/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(log["k3cloud"]["requests"], 3, "{log}");
    let stats: Value =
        client.get(format!("{base}/_simulator/k3cloud/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["bills_saved"], 2, "{stats}");
}

/// `lose_save_answer_every`: the bills of every Nth save are saved, but its answer never
/// arrives; queries do not count towards it.
#[tokio::test]
async fn a_lost_save_answer_still_saves_its_bills() {
    let text = SECTION.replace("[k3cloud]", "[k3cloud]\nlose_save_answer_every = 2");
    let state = crate::simulate::build(toml::from_str(&text).unwrap(), Utc::now()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, crate::simulate::router(state)).await });
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        for (name, value) in identity().headers(path, Utc::now().timestamp()).unwrap() {
            req = req.header(name, value);
        }
        async move { req.send().await?.json::<Value>().await }
    };
    let save = |n: &str| json!({"formid": "SAL_RETURNSTOCK", "data": {"Model": [bill(n, "M1")]}});
    let query = json!({"data": {"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FBillNo", "FilterString": "FBillNo in ('L1','L2')"}});
    assert_eq!(status(&post(BATCH_SAVE, save("L1")).await.unwrap())["IsSuccess"], true);
    post(QUERY, query.clone()).await.expect("queries are answered");
    assert!(post(BATCH_SAVE, save("L2")).await.is_err(), "the second save's answer is lost");
    assert_eq!(post(QUERY, query).await.unwrap(), json!([["L1"], ["L2"]]), "yet its bill was saved");
    let stats: Value =
        client.get(format!("{base}/_simulator/k3cloud/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!((&stats["save_requests"], &stats["save_answers_lost"]), (&json!(2), &json!(1)), "{stats}");
    let e = K3cloudSim::new(
        toml::from_str::<crate::simulate::SimConfig>(
            &SECTION.replace("[k3cloud]", "[k3cloud]\nlose_save_answer_every = 1"),
        )
        .unwrap()
        .k3cloud
        .as_ref()
        .unwrap(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("k3cloud.lose_save_answer_every"), "{e}");
}

#[test]
fn the_config_section_rejects_unknown_keys_and_bad_app_ids() {
    let e = toml::from_str::<crate::simulate::SimConfig>(&format!("{SECTION}materail = []\n")).unwrap_err();
    assert!(e.to_string().contains("expected one of"), "{e}");
    let text = SECTION.replace("224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA", "224622");
    let cfg: crate::simulate::SimConfig = toml::from_str(&text).unwrap();
    let e = K3cloudSim::new(cfg.k3cloud.as_ref().unwrap()).err().unwrap().to_string();
    assert!(e.contains("k3cloud.app_id"), "{e}");
    let cfg: crate::simulate::SimConfig = toml::from_str(SECTION).unwrap();
    let k = cfg.k3cloud.unwrap();
    assert_eq!(
        (k.lcid, k.max_skew.as_str(), k.orgs, k.bill_types),
        (2052, "10m", vec!["100".into()], vec!["XSTHD01_SYS".into()])
    );
}

#[test]
fn the_example_config_holds_exactly_the_base_data_generated_stock_ins_name() {
    use crate::simulate::qimen::{CUSTOMERS, SPECS, WAREHOUSES};
    let text = include_str!("../../examples/simulator.toml").replace("${K3CLOUD_APP_SECRET}", "example");
    let cfg: crate::simulate::SimConfig = toml::from_str(&text).unwrap();
    let k = cfg.k3cloud.unwrap();
    let sorted = |v: Vec<String>| {
        let mut v = v;
        v.sort();
        v
    };
    let owned = |l: &[&str]| sorted(l.iter().map(|s| s.to_string()).collect());
    assert_eq!(sorted(k.materials.clone()), owned(SPECS));
    assert_eq!(sorted(k.customers.clone()), owned(CUSTOMERS));
    assert_eq!(sorted(k.warehouses.clone()), owned(WAREHOUSES));
    K3cloudSim::new(&k).unwrap();
}
