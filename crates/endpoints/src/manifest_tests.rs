//! The manifest parser: each bad manifest's error names the file, the key and the value; the
//! built-in manifests equal the Rust statics they replaced.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::catalog::{Endpoints, builtin, builtins};

const GOOD: &str = r#"
kind = "wdt.copy"
protocol = "wdt"
method = "fa_alipay_account_check_query.php"
list_field = "account_list"
key_field = "account_check_no"
default_topic = "wdt.copy"
max_span = "24h"

[pages]
max_size = 100
default_size = 50
"#;

const AVSC: &str = include_str!("../../../schemas/wdt.account_check.avsc");

fn parse_text(toml: &str, avsc: &str) -> Result<Endpoint, ManifestError> {
    let file = Path::new("/etc/tm/wdt.copy.toml");
    parse(file, "wdt.copy", toml, &file.with_extension("avsc"), avsc, Origin::File(file.to_owned()))
}

/// The error of `toml` (with the good schema), as text; it must name the file.
fn err(toml: &str) -> String {
    let e = parse_text(toml, AVSC).expect_err("a bad manifest").to_string();
    assert!(e.contains("/etc/tm/wdt.copy.toml"), "names the file: {e}");
    e
}

#[test]
fn a_good_manifest_gets_its_defaults_and_its_protocols_reserved_params() {
    let e = parse_text(GOOD, AVSC).unwrap();
    let s = &e.spec;
    assert_eq!(
        (s.kind, s.method, s.key_field, s.default_topic),
        ("wdt.copy", "fa_alipay_account_check_query.php", "account_check_no", "wdt.copy")
    );
    assert_eq!((s.mode, s.paged, s.total_on_every_page), (Mode::Windowed, true, false));
    assert_eq!((s.max_page_size, s.default_page_size, s.max_span), (100, 50, Duration::from_secs(86_400)));
    assert!(s.reserved_params.contains(&"sign") && s.reserved_params.contains(&"page_no"));
    assert_eq!(e.protocol.name, "wdt");
    let e = parse_text(&GOOD.replace("default_size = 50\n", ""), AVSC).unwrap();
    assert_eq!(e.spec.default_page_size, 100, "default_size defaults to max_size");
    assert_eq!(s.window_field, None);
    let e = parse_text(&GOOD.replace("max_span", "window_field = \"check_time\"\nmax_span"), AVSC).unwrap();
    assert_eq!(e.spec.window_field, Some("check_time"), "an optional timestamp may be the window's field");
    let e = parse_text(&format!("{GOOD}\n[params]\ntime_type = \"2\"\n"), AVSC).unwrap();
    assert_eq!(e.spec.default_params, &[("time_type", "2")]);
}

#[test]
fn each_bad_manifest_names_its_file_key_and_value() {
    for (from, to, key, value) in [
        ("protocol = \"wdt\"", "protocol = \"wdtx\"", "`protocol`", "\"wdtx\" (known: wdt, qimen, top, finance)"),
        ("kind = \"wdt.copy\"", "kind = \"qimen.copy\"", "`kind`", "\"qimen.copy\""),
        ("kind = \"wdt.copy\"", "kind = \"wdt.other\"", "`kind`", "\"wdt.other\""),
        ("key_field = \"account_check_no\"", "key_field = \"nope\"", "`key_field`", "\"nope\""),
        ("key_field = \"account_check_no\"", "key_field = \"rec_id\"", "`key_field`", "\"rec_id\""),
        ("max_size = 100", "max_size = 500", "`pages.max_size`", "500"),
        ("default_size = 50", "default_size = 101", "`pages.default_size`", "101"),
        ("max_span = \"24h\"", "max_span = \"1y\"", "`max_span`", "\"1y\""),
        ("max_span = \"24h\"", "", "`max_span`", "missing"),
        ("max_span = \"24h\"", "max_span = \"24h\"\nmode = \"snapshot\"", "`max_span`", "1d is set"),
        ("max_span = \"24h\"", "mode = \"snapshot\"", "`mode`", "\"snapshot\""),
        ("max_span = \"24h\"", "max_span = \"24h\"\nmode = \"sometimes\"", "`mode`", "sometimes"),
        ("default_size = 50", "default_size = 50\ntotal = \"last_page\"", "`pages.total`", "last_page"),
        ("default_size = 50", "default_size = 50\nmax_sise = 3", "`pages.max_sise`", "unknown key"),
        ("max_span = \"24h\"", "max_span = \"24h\"\nlist = \"x\"", "`list`", "unknown key"),
        ("default_topic = \"wdt.copy\"", "default_topic = \"a topic\"", "`default_topic`", "\"a topic\""),
        ("method = \"fa_alipay_account_check_query.php\"", "method = \" \"", "`method`", "empty"),
        ("max_span = \"24h\"", "max_span = \"24h\"\nwindow_field = \"pay_amount\"", "`window_field`", "\"pay_amount\""),
        ("max_span = \"24h\"", "max_span = \"24h\"\nwindow_field = \"nope\"", "`window_field`", "\"nope\""),
        ("max_span = \"24h\"", "max_span = \"24h\"\nrequest_object = \"r\"", "`request_object`", "flat parameters"),
        ("max_span = \"24h\"", "max_span = \"24h\"\nlist_item = \"a\"", "`list_item`", "flat parameters"),
    ] {
        assert!(GOOD.contains(from), "{from}");
        let e = err(&GOOD.replace(from, to));
        assert!(e.contains(key) && e.contains(value), "{to}: expected {key} and {value} in: {e}");
    }
    let e = err(&format!("{GOOD}\n[params]\nsign = \"x\"\n"));
    assert!(e.contains("`params.sign`") && e.contains("\"sign\""), "{e}");
    let e = err("kind = \"wdt.copy\"\nprotocol = ");
    assert!(e.contains("line"), "a syntax error says where: {e}");
}

/// A TOP manifest: the built-in finance order's, under another kind.
fn top_manifest() -> String {
    include_str!("../../../schemas/top.finance_order.toml").replace("\"top.finance_order\"", "\"top.copy\"")
}

fn parse_top(toml: &str) -> Result<Endpoint, ManifestError> {
    let file = Path::new("/etc/tm/top.copy.toml");
    let avsc = include_str!("../../../schemas/top.finance_order.avsc");
    parse(file, "top.copy", toml, &file.with_extension("avsc"), avsc, Origin::File(file.to_owned()))
}

#[test]
fn a_top_manifest_names_its_request_object_and_list_item() {
    let e = parse_top(&top_manifest()).unwrap();
    assert_eq!(
        (e.spec.request_object, e.spec.list_item),
        (Some("finance_order_detail_request"), Some("finance_order_detail"))
    );
    for (key, line) in [
        ("request_object", "request_object = \"finance_order_detail_request\"\n"),
        ("list_item", "list_item = \"finance_order_detail\"\n"),
    ] {
        let e = parse_top(&top_manifest().replace(line, "")).unwrap_err().to_string();
        assert!(e.contains("/etc/tm/top.copy.toml") && e.contains(&format!("`{key}`")) && e.contains("missing"), "{e}");
    }
    let e = parse_top(&top_manifest().replace("\"finance_order_detail_request\"", "\"session\"")).unwrap_err();
    assert!(e.to_string().contains("`request_object`") && e.to_string().contains("\"session\""), "{e}");
}

#[test]
fn a_bad_schema_names_the_schema_file() {
    let e = parse_text(GOOD, "{\"type\": \"record\", ").unwrap_err().to_string();
    assert!(e.contains("/etc/tm/wdt.copy.avsc") && e.contains("does not parse"), "{e}");
    let e = parse_text(GOOD, "\"string\"").unwrap_err().to_string();
    assert!(e.contains("/etc/tm/wdt.copy.avsc") && e.contains("not an Avro record"), "{e}");
}

#[test]
fn a_directory_is_read_a_missing_schema_and_a_builtin_kind_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wdt.copy.toml"), GOOD).unwrap();
    let e = Endpoints::load_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("wdt.copy.toml") && e.contains("no schema") && e.contains("wdt.copy.avsc"), "{e}");
    std::fs::write(dir.path().join("wdt.copy.avsc"), AVSC).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a manifest").unwrap();
    let endpoints = Endpoints::load_dir(dir.path()).unwrap();
    let copy = endpoints.find("wdt.copy").unwrap();
    assert_eq!(copy.origin, Origin::File(dir.path().join("wdt.copy.toml")));
    assert!(endpoints.find("wdt.account_check").is_some(), "the built-ins stay");
    assert_eq!(endpoints.user().len(), 1);
    let builtin_copy = GOOD.replace("wdt.copy", "wdt.account_check");
    std::fs::write(dir.path().join("wdt.account_check.toml"), builtin_copy).unwrap();
    std::fs::write(dir.path().join("wdt.account_check.avsc"), AVSC).unwrap();
    let e = Endpoints::load_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("wdt.account_check.toml") && e.contains("schemas/wdt.account_check.toml"), "{e}");
    let e = Endpoints::load_dir(&dir.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("cannot list"), "{e}");
}

/// The values the built-in specs had as Rust statics, before they were manifests.
#[test]
fn the_builtins_equal_the_statics_they_replaced() {
    type Row =
        (&'static str, &'static str, &'static str, &'static str, u32, u32, Mode, bool, bool, &'static [&'static str]);
    let day = Duration::from_secs(86_400);
    let rows: &[Row] = &[
        (
            "wdt.account_check",
            "fa_alipay_account_check_query.php",
            "account_list",
            "account_check_no",
            100,
            100,
            Mode::Windowed,
            true,
            false,
            &["sid", "appkey", "timestamp", "sign", "page_no", "page_size", "start_time", "end_time"],
        ),
        (
            "qimen.stockin_refund",
            "wdt.stockin.order.query.refund",
            "stockin_list",
            "order_no",
            100,
            100,
            Mode::Windowed,
            true,
            true,
            &[
                "method",
                "app_key",
                "target_app_key",
                "sid",
                "timestamp",
                "format",
                "v",
                "sign_method",
                "sign",
                "start_time",
                "end_time",
                "page_no",
                "page_size",
            ],
        ),
        (
            "top.finance_order",
            "alibaba.wdk.finance.order.backflow",
            "finance_order_details",
            "biz_uk",
            100,
            100,
            Mode::Windowed,
            true,
            true,
            &[
                "method",
                "app_key",
                "session",
                "timestamp",
                "v",
                "sign_method",
                "sign",
                "format",
                "simplify",
                "current_page",
                "page_size",
                "start_time",
                "end_time",
            ],
        ),
        (
            "finance.transactions",
            "finance.getTransactionList",
            "lists",
            "trans_id",
            1000,
            100,
            Mode::Windowed,
            true,
            true,
            &[
                "flag",
                "method",
                "ver",
                "charset",
                "type",
                "timestamp",
                "sign",
                "start_time",
                "end_time",
                "page_no",
                "page_size",
            ],
        ),
        (
            "finance.balances",
            "finance.getAccountBalance",
            "accounts",
            "account_id",
            1,
            1,
            Mode::Snapshot,
            false,
            false,
            &["flag", "method", "ver", "charset", "type", "timestamp", "sign"],
        ),
    ];
    assert_eq!(builtins().len(), rows.len());
    for &(kind, method, list, key, max, default, mode, paged, every, reserved) in rows {
        let s = &builtin(kind).unwrap_or_else(|| panic!("{kind}")).spec;
        assert_eq!(
            (s.kind, s.method, s.list_field, s.key_field, s.default_topic),
            (kind, method, list, key, kind),
            "{kind}"
        );
        assert_eq!((s.max_page_size, s.default_page_size, s.max_span), (max, default, day), "{kind}");
        assert_eq!((s.mode, s.paged, s.total_on_every_page), (mode, paged, every), "{kind}");
        let mut have = s.reserved_params.to_vec();
        let mut want = reserved.to_vec();
        have.sort();
        want.sort();
        assert_eq!(have, want, "{kind}: reserved params");
        assert!(s.default_params.is_empty(), "{kind}");
        let avsc =
            std::fs::read_to_string(format!("{}/../../schemas/{kind}.avsc", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(s.schema, avsc, "{kind}: the compiled-in schema");
    }
    // The names the code used for the statics reach the same specs.
    assert!(std::ptr::eq(&*crate::wdt::ACCOUNT_CHECK, &builtin("wdt.account_check").unwrap().spec));
    assert_eq!(crate::finance::BALANCES.kind, "finance.balances");
}

#[test]
fn every_manifest_in_schemas_is_built_in() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut kinds: Vec<&str> = builtins().iter().map(|e| e.spec.kind).collect();
    kinds.sort();
    assert_eq!(files, kinds, "schemas/*.toml against the compiled-in list");
}
