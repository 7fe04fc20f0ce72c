//! Tests of generated records: rates, meanings, encodability, agreement between fields.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::TimeZone;
use tidemark_engine::avro::RecordCodec;
use tidemark_engine::avro::decimal::unscaled;

use apache_avro::schema::Schema;
use chrono::{Duration, Utc};
use serde_json::Value;

use super::meaning::*;
use super::vocabulary::*;
use super::*;
use crate::domain::time::{VendorTime, parse_vendor_time};
use crate::rng::SimRng;

/// Records generated per schema: a 0.5% rate shows up ~5 times per schema (more over
/// detail lines and all schemas together); few enough for a debug build.
const RECORDS: usize = 1_000;

/// What one field's values looked like over every generated record of one schema.
#[derive(Default, Debug)]
struct FieldStats {
    values: usize,
    empty: usize,
    zero_dates: usize,
    negative: usize,
    full_precision: usize,
    full_scale: usize,
    lists: usize,
    empty_lists: usize,
    longest_list: usize,
    /// Up to 64 distinct texts, of the [`LISTED`] fields.
    distinct: BTreeSet<String>,
}

#[derive(Default)]
struct Stats {
    fields: BTreeMap<String, FieldStats>,
    records: usize,
    with_chinese: usize,
    /// Stock-ins a K3Cloud writer could not turn into a bill (no lines, a line without
    /// spec_no or num, a negative price).
    unwritable: usize,
    problems: Vec<String>,
}

/// Fields whose values the tests compare with lists.
const LISTED: &[&str] = &["currency", "warehouse_name", "shop_name", "warehouse_no", "goods_name"];

fn schema_files() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["schemas", "endpoints"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "avsc") {
                out.push((
                    format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 11, "found only {} schemas", out.len());
    out
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn has_chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Calls `f` with each leaf (and list) value of `v`, by field name.
fn walk(schema: &Schema, v: &Value, field: &str, f: &mut dyn FnMut(&str, &Schema, &Value)) {
    match schema {
        Schema::Record(r) => {
            for fl in &r.fields {
                if let Some(x) = v.get(&fl.name) {
                    walk(&fl.schema, x, &fl.name, f);
                }
            }
        }
        Schema::Union(u) => {
            let inner = u.variants().iter().find(|s| !matches!(s, Schema::Null)).unwrap();
            walk(inner, v, field, f)
        }
        Schema::Array(a) => {
            f(field, schema, v);
            for x in v.as_array().into_iter().flatten() {
                walk(&a.items, x, field, f);
            }
        }
        leaf => f(field, leaf, v),
    }
}

fn generate_stats(file: &str, avsc: &str) -> Stats {
    let schema = Schema::parse_str(avsc).unwrap();
    let codec = RecordCodec::from_avsc(avsc).unwrap();
    let style = Style { numbers_as_json: file.contains("finance.") };
    let mut rng = SimRng::new(42);
    let base = Utc.with_ymd_and_hms(2026, 12, 1, 4, 0, 0).unwrap();
    let mut st = Stats::default();
    let mut out = Vec::new();
    for i in 0..RECORDS {
        let at = base - Duration::minutes(i as i64);
        let rec = record(&schema, &mut rng, at, style);
        st.records += 1;
        out.clear();
        if let Err(e) = codec.encode_value(&rec, &mut out) {
            st.problems.push(format!("{file}: does not encode: {e}"));
        }
        let mut chinese = false;
        walk(&schema, &rec, "", &mut |name, leaf, v| {
            let fs = st.fields.entry(name.to_owned()).or_default();
            if let Schema::Array(_) = leaf {
                let n = v.as_array().map_or(0, Vec::len);
                fs.lists += 1;
                fs.empty_lists += (n == 0) as usize;
                fs.longest_list = fs.longest_list.max(n);
                return;
            }
            fs.values += 1;
            let Some(t) = text_of(v) else { return };
            if t.is_empty() {
                fs.empty += 1;
                return;
            }
            chinese = chinese || has_chinese(&t);
            if LISTED.contains(&name) && fs.distinct.len() < 64 {
                fs.distinct.insert(t.clone());
            }
            match leaf {
                Schema::Decimal(d) => {
                    let (p, s) = (d.precision as u32, d.scale as u32);
                    if let Err(e) = unscaled(&t, s, p) {
                        st.problems.push(format!("{file}: {name} = {t:?}: {e}"));
                    }
                    let digits = t.trim_start_matches('-').replace('.', "");
                    fs.negative += t.starts_with('-') as usize;
                    fs.full_precision += (digits.trim_start_matches('0').len() as u32 >= p.min(15 + s)) as usize;
                    fs.full_scale += (s > 0 && !t.ends_with('0')) as usize;
                }
                Schema::TimestampMillis | Schema::TimestampMicros | Schema::Date => match parse_vendor_time(&t) {
                    Some(VendorTime::Unset) => fs.zero_dates += 1,
                    Some(VendorTime::At(when)) if when > at && name != "expire_date" => {
                        st.problems.push(format!("{file}: {name} = {t} is after the record's time"))
                    }
                    Some(VendorTime::At(_)) => {}
                    None => st.problems.push(format!("{file}: {name} = {t:?} is not a time")),
                },
                _ => {}
            }
        });
        st.with_chinese += chinese as usize;
        if let Some(lines) = rec.get("details_list").and_then(Value::as_array) {
            let blank = |l: &Value, f: &str| l.get(f).and_then(text_of).is_none_or(|t| t.is_empty());
            let bad_line = |l: &Value| {
                blank(l, "spec_no")
                    || blank(l, "num")
                    || l.get("tax_price").and_then(text_of).is_some_and(|t| t.starts_with('-'))
            };
            st.unwritable += (lines.is_empty() || lines.iter().any(bad_line)) as usize;
        }
    }
    st
}

/// Every schema's statistics, generated once for all the tests that read them.
fn all_stats() -> &'static BTreeMap<String, Stats> {
    static STATS: OnceLock<BTreeMap<String, Stats>> = OnceLock::new();
    STATS.get_or_init(|| {
        let files = schema_files();
        // One thread per schema: the whole set takes a while in a debug build.
        std::thread::scope(|scope| {
            let jobs: Vec<_> =
                files.iter().map(|(f, avsc)| scope.spawn(move || (f.clone(), generate_stats(f, avsc)))).collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        })
    })
}

fn rate(n: usize, of: usize) -> f64 {
    n as f64 / of.max(1) as f64
}

#[test]
fn every_record_of_every_schema_encodes_and_its_decimals_fit() {
    for (file, st) in all_stats() {
        assert_eq!(st.records, RECORDS, "{file}");
        assert!(
            st.problems.is_empty(),
            "{file}: {} problems, first: {:?}",
            st.problems.len(),
            &st.problems[..st.problems.len().min(5)]
        );
    }
}

#[test]
fn zero_dates_only_for_milestones_and_at_their_rates() {
    let mut zero_dates = 0;
    for (file, st) in all_stats() {
        for (name, fs) in &st.fields {
            zero_dates += fs.zero_dates;
            let r = rate(fs.zero_dates, fs.values);
            if MAIN_TIMES.contains(&name.as_str()) {
                assert_eq!(fs.zero_dates, 0, "{file}: main time {name} was unset");
            } else if let Some((_, want)) = UNSET_MILESTONES.iter().find(|(n, _)| n == name) {
                // Within half and one and a half times the rate (thousands of samples).
                assert!(r >= want * 0.5 && r <= want * 1.5, "{file}: {name} unset {r:.3}, want about {want}");
            } else {
                assert!(r <= UNSET_MILESTONE_RATE * 1.5, "{file}: {name} unset {r:.3}");
            }
        }
    }
    assert!(zero_dates > 0, "no zero date at all");
}

#[test]
fn identity_fields_are_almost_never_empty() {
    for (file, st) in all_stats() {
        for name in ["spec_no", "goods_no", "warehouse_no", "shop_no", "refund_no", "trade_no", "stockout_no"] {
            if let Some(fs) = st.fields.get(name) {
                let r = rate(fs.empty, fs.values);
                assert!(r <= 0.01, "{file}: {name} empty {r:.4} (want ≈{EMPTY_IDENTITY_RATE})");
            }
        }
    }
}

#[test]
fn status_and_type_codes_are_always_set() {
    // Real 旺店通 statuses are never blank; tests read them as integers.
    for (file, st) in all_stats() {
        for (name, fs) in st.fields.iter().filter(|(n, _)| n.ends_with("status") || n.ends_with("_type")) {
            assert_eq!(fs.empty, 0, "{file}: {name} was blank {} times", fs.empty);
        }
    }
}

#[test]
fn detail_lists_have_one_to_five_lines_and_are_rarely_empty() {
    let mut empty = 0;
    let mut lists = 0;
    for (file, st) in all_stats() {
        for (name, fs) in st.fields.iter().filter(|(_, fs)| fs.lists > 0) {
            let r = rate(fs.empty_lists, fs.lists);
            assert!(r <= 0.015, "{file}: {name} empty {r:.4} (want ≈{EMPTY_LINES_RATE})");
            assert!(fs.longest_list <= 5, "{file}: {name} had {} lines", fs.longest_list);
            empty += fs.empty_lists;
            lists += fs.lists;
        }
    }
    assert!(lists > 0 && empty > 0, "an empty list should still appear now and then ({empty} of {lists})");
}

#[test]
fn a_currency_is_always_a_currency_code_mostly_cny() {
    let mut seen = 0;
    for (file, st) in all_stats() {
        if let Some(fs) = st.fields.get("currency") {
            seen += 1;
            for c in &fs.distinct {
                assert!(["CNY", "USD", "HKD"].contains(&c.as_str()), "{file}: currency {c:?}");
            }
            assert!(fs.distinct.contains("CNY"), "{file}");
        }
    }
    assert!(seen >= 2, "schemas with a currency: {seen}");
}

#[test]
fn warehouse_shop_and_goods_names_come_from_plausible_lists() {
    let goods: Vec<&str> = GOODS.iter().map(|g| g.name).collect();
    for (file, st) in all_stats() {
        for (name, list) in [
            ("warehouse_name", WAREHOUSES.iter().map(|w| w.1).collect::<Vec<_>>()),
            ("shop_name", SHOPS.iter().map(|s| s.1).collect()),
            ("warehouse_no", WAREHOUSES.iter().map(|w| w.0).collect()),
            ("goods_name", goods.clone()),
        ] {
            for v in st.fields.get(name).map(|fs| &fs.distinct).into_iter().flatten() {
                assert!(list.contains(&v.as_str()), "{file}: {name} {v:?}");
            }
        }
    }
}

#[test]
fn money_is_negative_only_where_its_meaning_allows() {
    // Prices, payments, fees, quantities and weights are never below zero in real data;
    // adjustments, changed discounts, refunds, profit and balances may be.
    let may =
        |n: &str| ["adjust", "change", "profit", "balance", "discount", "refund", "diff"].iter().any(|w| n.contains(w));
    let never =
        |n: &str| ["price", "paid", "fee", "num", "count", "weight", "tax"].iter().any(|w| n.contains(w)) && !may(n);
    let mut negative = 0;
    for (file, st) in all_stats() {
        for (name, fs) in &st.fields {
            assert!(!never(name) || fs.negative == 0, "{file}: {name} negative {} times", fs.negative);
            negative += if may(name) { fs.negative } else { 0 };
        }
    }
    assert!(negative > 0, "no adjustment or refund was ever negative");
}

#[test]
fn awkward_values_appear_at_their_rates() {
    let all = all_stats();
    let sum =
        |f: &dyn Fn(&FieldStats) -> usize| -> usize { all.values().flat_map(|st| st.fields.values()).map(f).sum() };
    assert!(sum(&|fs| fs.zero_dates) > 0, "no zero date");
    assert!(sum(&|fs| fs.full_precision) > 0, "no decimal at full precision");
    assert!(sum(&|fs| fs.full_scale) > 0, "no decimal using its whole scale");
    assert!(sum(&|fs| fs.negative) > 0, "no negative amount");
    let remarks = all.values().filter_map(|st| st.fields.get("remark"));
    let (empty, values) = remarks.fold((0, 0), |(e, v), fs| (e + fs.empty, v + fs.values));
    let r = rate(empty, values);
    assert!(r > 0.4 && r < 0.9, "remarks empty {r:.3} (want ≈{EMPTY_FREE_TEXT_RATE})");
    for (file, st) in all {
        let chinese = rate(st.with_chinese, st.records);
        let has_names = st.fields.keys().any(|k| k.ends_with("_name"));
        assert!(!has_names || chinese > 0.9, "{file}: only {chinese:.3} of records have Chinese text");
    }
}

#[test]
fn refund_stock_ins_are_nearly_all_writable() {
    let st = &all_stats()["schemas/qimen.stockin_refund.avsc"];
    let r = rate(st.unwritable, st.records);
    // Each dead letter for a reason real data has (an empty list, a line without a code).
    assert!(r > 0.0 && r < 0.03, "{} of {} stock-ins cannot be written ({r:.4})", st.unwritable, st.records);
}

#[test]
fn join_parts_make_the_records_own_time() {
    let avsc = schema_files().into_iter().find(|(f, _)| f.ends_with("top.finance_order.avsc")).unwrap().1;
    let schema = Schema::parse_str(&avsc).unwrap();
    let mut rng = SimRng::new(3);
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 4, 5, 6).unwrap();
    for _ in 0..200 {
        let r = record(&schema, &mut rng, at, Style { numbers_as_json: false });
        let joined = format!("{} {}", r["biz_date"].as_str().unwrap(), r["trade_time"].as_str().unwrap());
        assert_eq!(parse_vendor_time(&joined), Some(VendorTime::At(at)), "{joined}");
        assert!(r.get("event_time").is_none());
    }
}

#[test]
fn meanings_follow_names() {
    assert_eq!(text_meaning("currency", "", ""), Text::Currency);
    assert_eq!(text_meaning("receiver_name", "", ""), Text::Person);
    assert_eq!(text_meaning("fenxiao_nick_name", "", ""), Text::Nick);
    assert_eq!(text_meaning("order_no", "stockinrefund", ""), Text::DocNo("RK"));
    assert_eq!(text_meaning("order_no", "stockouttrade", ""), Text::DocNo("CK"));
    assert_eq!(text_meaning("to_deliver_time", "", "派送时间 (free text)"), Text::Free);
    assert_eq!(text_meaning("receiver_city_code", "", ""), Text::CityCode);
    assert_eq!(decimal_meaning("tax", "税率", 6), Dec::TaxRate);
    assert_eq!(decimal_meaning("tax", "税额", 4), Dec::Money { negative: false, scale_of: 30 });
    assert_eq!(decimal_meaning("num", "", 4), Dec::Quantity);
    assert_eq!(decimal_meaning("goods_count", "", 4), Dec::Quantity);
    assert_eq!(decimal_meaning("discount", "", 4), Dec::Money { negative: true, scale_of: 30 });
    assert_eq!(integer_meaning("is_sealed"), Int::Flag);
    assert_eq!(integer_meaning("reason_id"), Int::Code);
    assert_eq!(integer_meaning("receiver_province"), Int::Province);
    assert_eq!(unset_rate("modified"), 0.0);
    assert_eq!(unset_rate("consign_time"), 0.20);
    assert_eq!(unset_rate("sign_time"), UNSET_MILESTONE_RATE);
}

#[test]
fn doc_codes_read_the_codes_a_doc_lists() {
    assert_eq!(doc_codes("对账状态 0未对账,1对账失败,2部分对账,3对账成功"), vec![0, 1, 2, 3]);
    assert_eq!(doc_codes("标旗 0至5依次为灰(无标旗)、红"), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(doc_codes("交易类型编码 * 88 - 销售 * 99 - 退款"), vec![88, 99]);
    assert_eq!(doc_codes("付款状态 0未付款 1部分付款 2已付款 (ERP V2.3.8.3及以上)"), vec![0, 1, 2]);
    assert_eq!(doc_codes("多级审核 (特殊值 -100根据预售策略自动转入特殊单, -101人工转入)"), vec![-101, -100]);
    assert!(doc_codes("货品种类数").is_empty());
}

#[test]
fn a_plan_reused_for_many_records_gives_what_compiling_each_time_gives() {
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 4, 0, 0).unwrap();
    for (file, avsc) in schema_files() {
        let schema = Schema::parse_str(&avsc).unwrap();
        let style = Style { numbers_as_json: file.contains("finance.") };
        let plan = Plan::new(&schema);
        let (mut a, mut b) = (SimRng::new(5), SimRng::new(5));
        for i in 0..50 {
            let at = at - Duration::minutes(i);
            assert_eq!(plan.record(&mut a, at, style), record(&schema, &mut b, at, style), "{file} record {i}");
        }
    }
}

#[test]
fn same_seed_same_record() {
    let (_, avsc) = &schema_files()[0];
    let schema = Schema::parse_str(avsc).unwrap();
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 4, 0, 0).unwrap();
    let make = || record(&schema, &mut SimRng::new(9), at, Style { numbers_as_json: false });
    assert_eq!(make(), make());
}

#[test]
fn decimals_have_exactly_their_scale_and_fit_their_precision() {
    let mut rng = SimRng::new(1);
    for (p, s) in [(19, 4), (9, 6), (4, 4), (3, 0)] {
        for _ in 0..2000 {
            let t = decimal_text(&mut rng, p, s);
            if s > 0 {
                let (i, f) = t.trim_start_matches('-').split_once('.').unwrap();
                assert_eq!(f.len(), s as usize, "{t}");
                assert!(i.len() <= 15, "{t}");
            }
            assert!(unscaled(&t, s, p).is_ok(), "{t} does not fit ({p}, {s})");
        }
    }
}

#[test]
fn json_numbers_keep_their_text() {
    assert_eq!(number("1000.00".into(), Style { numbers_as_json: true }).to_string(), "1000.00");
}
