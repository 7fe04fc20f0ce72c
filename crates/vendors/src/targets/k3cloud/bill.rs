//! A 旺店通·企业奇门 refund stock-in (`qimen.stockin_refund`) as a 金蝶云星空 销售退货单
//! (`SAL_RETURNSTOCK`) model, per seed 001's field table; organisations, bill type and the
//! base-data mapping tables come from config.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::domain::FieldDifference;

/// The K3Cloud form of a 销售退货单.
pub const FORM_ID: &str = "SAL_RETURNSTOCK";

/// How the vendor's `tax` is written: a fraction (0.13) or already a percentage (13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaxRate {
    #[default]
    Fraction,
    Percent,
}

/// What config decides about each bill.
#[derive(Debug, Clone)]
pub struct ReturnStockMapping {
    pub stock_org: String,
    pub sale_org: String,
    pub settle_org: String,
    pub bill_type: String,
    /// The customer when a stock-in has none.
    pub default_customer: Option<String>,
    pub tax_rate: TaxRate,
    /// Vendor number → K3Cloud number, for warehouses, customers and materials; a number
    /// not in its table is sent as it is.
    pub warehouses: BTreeMap<String, String>,
    pub customers: BTreeMap<String, String>,
    pub materials: BTreeMap<String, String>,
}

/// A base-data reference as K3Cloud takes it.
fn number(n: &str) -> Value {
    json!({ "FNumber": n })
}

fn text<'a>(rec: &'a Value, field: &str) -> Option<&'a str> {
    rec.get(field).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn mapped(table: &BTreeMap<String, String>, n: &str) -> String {
    table.get(n).cloned().unwrap_or_else(|| n.to_owned())
}

impl ReturnStockMapping {
    /// The bill for one stock-in (decoded: decimals as text, times as Beijing time), keyed by
    /// its `FBillNo` (the stock-in's `order_no`), or why it cannot be one.
    pub fn bill(&self, rec: &Value) -> Result<(String, Value), String> {
        let bill_no = text(rec, "order_no").ok_or("the stock-in has no order_no (the bill number)")?;
        // The stock-in's audit time, else its creation or update time: the day stock came back.
        let date = ["check_time", "created_time", "stockin_time"]
            .iter()
            .find_map(|f| text(rec, f))
            .map(|t| t.get(..19).unwrap_or(t).to_owned())
            .ok_or("the stock-in has no check_time, created_time or stockin_time for FDate")?;
        let customer = match text(rec, "customer_no") {
            Some(c) => mapped(&self.customers, c),
            None => {
                self.default_customer.clone().ok_or("the stock-in has no customer_no and no default_customer is set")?
            }
        };
        let warehouse = text(rec, "warehouse_no").map(|w| mapped(&self.warehouses, w));
        let lines = rec.get("details_list").and_then(Value::as_array).filter(|l| !l.is_empty());
        let lines = lines.ok_or("the stock-in has no detail lines (details_list is empty)")?;
        let mut entity = Vec::with_capacity(lines.len());
        for (i, d) in lines.iter().enumerate() {
            let line = |what: &str| format!("detail line {} has no {what}", i + 1);
            let material = text(d, "spec_no").ok_or_else(|| line("spec_no (the material)"))?;
            let mut e = Map::new();
            e.insert("FMaterialId".into(), number(&mapped(&self.materials, material)));
            e.insert("FRealQty".into(), json!(text(d, "num").ok_or_else(|| line("num (the quantity)"))?));
            e.insert("FTaxPrice".into(), json!(text(d, "tax_price").unwrap_or("0")));
            if let Some(t) = text(d, "tax") {
                let rate = match self.tax_rate {
                    TaxRate::Fraction => {
                        percent_of(t).ok_or_else(|| format!("detail line {} tax {t:?} is not a decimal", i + 1))?
                    }
                    TaxRate::Percent => t.to_owned(),
                };
                e.insert("FEntryTaxRate".into(), json!(rate));
            }
            if let Some(w) = &warehouse {
                e.insert("FStockId".into(), number(w));
            }
            if let Some(note) = text(d, "remark") {
                e.insert("FNote".into(), json!(note));
            }
            entity.push(Value::Object(e));
        }
        let mut bill = json!({
            "FBillNo": bill_no,
            "FBillTypeID": number(&self.bill_type),
            "FDate": date,
            "FSaleOrgId": number(&self.sale_org),
            "FStockOrgId": number(&self.stock_org),
            "FRetcustId": number(&customer),
            "SubHeadEntity": { "FSettleOrgId": number(&self.settle_org) },
            "FEntity": entity,
        });
        if let Some(note) = text(rec, "refund_remark") {
            bill["FHeadNote"] = json!(note);
        }
        Ok((bill_no.to_owned(), bill))
    }
}

/// Where a compared field is in a bill model.
#[derive(Debug, Clone, Copy)]
enum Place {
    Head(&'static [&'static str]),
    Line(&'static [&'static str]),
}

/// The fields the mapping sets, by their `ExecuteBillQuery` key: a bill in K3Cloud is
/// compared with the one its stock-in makes on these (decimals by value, dates to the second).
const COMPARED: &[(&str, Place, bool)] = &[
    ("FDate", Place::Head(&["FDate"]), false),
    ("FBillTypeID.FNumber", Place::Head(&["FBillTypeID", "FNumber"]), false),
    ("FSaleOrgId.FNumber", Place::Head(&["FSaleOrgId", "FNumber"]), false),
    ("FStockOrgId.FNumber", Place::Head(&["FStockOrgId", "FNumber"]), false),
    ("FRetcustId.FNumber", Place::Head(&["FRetcustId", "FNumber"]), false),
    ("FSettleOrgId.FNumber", Place::Head(&["SubHeadEntity", "FSettleOrgId", "FNumber"]), false),
    ("FHeadNote", Place::Head(&["FHeadNote"]), false),
    ("FMaterialId.FNumber", Place::Line(&["FMaterialId", "FNumber"]), false),
    ("FStockId.FNumber", Place::Line(&["FStockId", "FNumber"]), false),
    ("FRealQty", Place::Line(&["FRealQty"]), true),
    ("FTaxPrice", Place::Line(&["FTaxPrice"]), true),
    ("FEntryTaxRate", Place::Line(&["FEntryTaxRate"]), true),
    ("FNote", Place::Line(&["FNote"]), false),
];

/// The `FieldKeys` of the query comparing bills: `FBillNo`, `FEntity_FSeq` (the line),
/// then [`COMPARED`]; K3Cloud answers a row per entry line.
pub fn compare_keys() -> String {
    let mut keys = vec!["FBillNo", "FEntity_FSeq"];
    keys.extend(COMPARED.iter().map(|(k, _, _)| *k));
    keys.join(",")
}

/// A model or answer value as text: `""` for none.
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Whether K3Cloud's `found` is the bill's `expected`: decimals by value (K3Cloud answers
/// numbers, the bill holds exact text), dates with or without the `T`.
fn same(expected: &str, found: &str, decimal: bool) -> bool {
    if expected == found || expected.replace('T', " ") == found.replace('T', " ") {
        return true;
    }
    decimal && matches!((expected.parse::<f64>(), found.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// K3Cloud's decimal shown at the scale of the bill's (`2` as `2.0000` beside `3.0000`).
fn at_scale_of(expected: &str, found: &str) -> String {
    let scale = expected.split_once('.').map_or(0, |(_, f)| f.len());
    match found.parse::<f64>() {
        Ok(n) if scale > 0 => format!("{n:.scale$}"),
        _ => found.to_owned(),
    }
}

/// Where `bill` (as the mapping makes it) and K3Cloud's `rows` for it (in
/// [`compare_keys`] order, one per line) differ: fields the bill sets and K3Cloud holds
/// otherwise, and the number of lines.
pub fn differences(bill: &Value, rows: &[&[Value]]) -> Vec<FieldDifference> {
    let mut out = Vec::new();
    let at = |v: &Value, path: &[&str]| path.iter().try_fold(v, |v, k| v.get(*k)).cloned();
    let lines = bill.get("FEntity").and_then(Value::as_array).cloned().unwrap_or_default();
    let found_line = |n: usize| rows.iter().find(|r| line_seq(r) == Some(n));
    for (i, (key, place, decimal)) in COMPARED.iter().enumerate() {
        let column = i + 2;
        let checks: Vec<(Option<usize>, Option<Value>, Option<&Value>)> = match place {
            Place::Head(path) => vec![(None, at(bill, path), rows.first().and_then(|r| r.get(column)))],
            Place::Line(path) => lines
                .iter()
                .enumerate()
                .map(|(l, line)| (Some(l + 1), at(line, path), found_line(l + 1).and_then(|r| r.get(column))))
                .collect(),
        };
        for (line, expected, found) in checks {
            // A field the bill does not set is K3Cloud's to fill; a line K3Cloud lacks is
            // reported once, as the number of lines.
            let Some(expected) = expected.filter(|v| !v.is_null()) else { continue };
            if line.is_some_and(|n| found_line(n).is_none()) {
                continue;
            }
            let (expected, found) = (shown(Some(&expected)), shown(found));
            if !same(&expected, &found, *decimal) {
                let found = if *decimal { at_scale_of(&expected, &found) } else { found };
                out.push(FieldDifference { line, field: (*key).to_owned(), expected, found });
            }
        }
    }
    if rows.len() != lines.len() {
        out.push(FieldDifference {
            line: None,
            field: "lines".into(),
            expected: lines.len().to_string(),
            found: rows.len().to_string(),
        });
    }
    out
}

/// A row's `FEntity_FSeq`.
fn line_seq(row: &[Value]) -> Option<usize> {
    let v = row.get(1)?;
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()).map(|n| n as usize)
}

/// A decimal fraction as a percentage, exactly (the decimal point moved two places):
/// `0.130000` → `13.0000`, `-0.5` → `-50`.
pub fn percent_of(t: &str) -> Option<String> {
    let (sign, digits) = t.strip_prefix('-').map_or(("", t), |d| ("-", d));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac = format!("{frac:0<2}");
    let (moved, rest) = frac.split_at(2);
    let int = format!("{int}{moved}").trim_start_matches('0').to_owned();
    let int = if int.is_empty() { "0".to_owned() } else { int };
    Some(if rest.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{rest}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> ReturnStockMapping {
        ReturnStockMapping {
            stock_org: "100".into(),
            sale_org: "101".into(),
            settle_org: "102".into(),
            bill_type: "XSTHD01_SYS".into(),
            default_customer: None,
            tax_rate: TaxRate::Fraction,
            warehouses: BTreeMap::from([("WH-1".into(), "CK001".into())]),
            customers: BTreeMap::new(),
            materials: BTreeMap::from([("SKU-9".into(), "M9".into())]),
        }
    }

    #[test]
    fn a_stock_in_becomes_a_bill_per_the_seed_field_table() {
        let rec = json!({"order_no": "RK2024001", "check_time": null, "created_time": "2024-05-06 10:11:12+08:00",
            "customer_no": "C-7", "warehouse_no": "WH-1", "refund_remark": "破损退回",
            "details_list": [
                {"spec_no": "SKU-9", "num": "2.0000", "tax_price": "19.9000", "tax": "0.130000", "remark": "左"},
                {"spec_no": "SKU-1", "num": "1.0000", "tax_price": null, "tax": null, "remark": ""}]});
        let (no, bill) = mapping().bill(&rec).unwrap();
        assert_eq!(no, "RK2024001");
        assert_eq!(
            bill,
            json!({"FBillNo": "RK2024001", "FBillTypeID": {"FNumber": "XSTHD01_SYS"}, "FDate": "2024-05-06 10:11:12",
                "FSaleOrgId": {"FNumber": "101"}, "FStockOrgId": {"FNumber": "100"}, "FRetcustId": {"FNumber": "C-7"},
                "SubHeadEntity": {"FSettleOrgId": {"FNumber": "102"}}, "FHeadNote": "破损退回",
                "FEntity": [
                    {"FMaterialId": {"FNumber": "M9"}, "FRealQty": "2.0000", "FTaxPrice": "19.9000",
                     "FEntryTaxRate": "13.0000", "FStockId": {"FNumber": "CK001"}, "FNote": "左"},
                    {"FMaterialId": {"FNumber": "SKU-1"}, "FRealQty": "1.0000", "FTaxPrice": "0",
                     "FStockId": {"FNumber": "CK001"}}]})
        );
    }

    #[test]
    fn what_cannot_be_a_bill_says_why() {
        let m = mapping();
        let base = json!({"order_no": "R1", "check_time": "2024-05-06 10:11:12+08:00", "customer_no": "C",
            "details_list": [{"spec_no": "S", "num": "1"}]});
        assert!(m.bill(&base).is_ok());
        let without = |f: &str| {
            let mut r = base.clone();
            r[f] = Value::Null;
            m.bill(&r).unwrap_err()
        };
        assert!(without("order_no").contains("order_no"));
        assert!(without("check_time").contains("FDate"));
        assert!(without("customer_no").contains("default_customer"));
        assert!(without("details_list").contains("no detail lines"));
        let mut r = base.clone();
        r["details_list"][0]["spec_no"] = json!("");
        assert_eq!(m.bill(&r).unwrap_err(), "detail line 1 has no spec_no (the material)");
    }

    #[test]
    fn a_bill_differs_from_its_stock_in_by_line_and_field() {
        let rec = json!({"order_no": "RK1", "stockin_time": "2024-05-06 10:11:12+08:00", "customer_no": "C-7",
            "warehouse_no": "WH-1", "details_list": [
                {"spec_no": "SKU-9", "num": "2.0000", "tax_price": "19.9000"},
                {"spec_no": "SKU-1", "num": "3.0000", "tax_price": "1.0000"}]});
        let (_, bill) = mapping().bill(&rec).unwrap();
        assert_eq!(compare_keys().split(',').count(), COMPARED.len() + 2);
        let row = |seq: u64, material: &str, qty: f64| {
            vec![
                json!("RK1"),
                json!(seq),
                json!("2024-05-06T10:11:12"),
                json!("XSTHD01_SYS"),
                json!("101"),
                json!("100"),
                json!("C-7"),
                json!("102"),
                json!(""),
                json!(material),
                json!("CK001"),
                json!(qty),
                json!(if seq == 1 { 19.9 } else { 1.0 }),
                json!(0.0),
                json!(""),
            ]
        };
        let same = [row(1, "M9", 2.0), row(2, "SKU-1", 3.0)];
        let refs: Vec<&[Value]> = same.iter().map(Vec::as_slice).collect();
        assert_eq!(differences(&bill, &refs), vec![], "decimals by value, dates with a T");
        let edited = [row(1, "M9", 2.0), row(2, "SKU-1", 2.0)];
        let refs: Vec<&[Value]> = edited.iter().map(Vec::as_slice).collect();
        let d = differences(&bill, &refs);
        assert_eq!(
            d,
            vec![FieldDifference {
                line: Some(2),
                field: "FRealQty".into(),
                expected: "3.0000".into(),
                found: "2.0000".into()
            }]
        );
        let d = differences(&bill, &refs[..1]);
        assert_eq!((d.len(), d[0].field.as_str(), d[0].found.as_str()), (1, "lines", "1"), "{d:?}");
    }

    #[test]
    fn percentages_are_exact() {
        assert_eq!(percent_of("0.130000").as_deref(), Some("13.0000"));
        assert_eq!(percent_of("0.13").as_deref(), Some("13"));
        assert_eq!(percent_of("1.5").as_deref(), Some("150"));
        assert_eq!(percent_of("-0.05").as_deref(), Some("-5"));
        assert_eq!(percent_of("0").as_deref(), Some("0"));
        assert_eq!(percent_of("12.345678").as_deref(), Some("1234.5678"));
        assert_eq!(percent_of("abc"), None);
    }
}
