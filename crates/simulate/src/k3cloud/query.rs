//! `ExecuteBillQuery` parameters as far as the simulator understands them: the field keys of
//! the fields a writer sends (head fields, and entry fields which answer one row per line),
//! filters on the bill number, ordering, and row windows. Anything else is refused, so a
//! client relying on more finds out here rather than against the real account.

use serde_json::Value;

/// A field key the simulator can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    BillNo,
    Fid,
    Date,
    Status,
    /// `FEntity_FSeq`: the entry line's 1-based number.
    Seq,
    /// A head field, by its path in the saved model: text, `""` when blank.
    Head(&'static [&'static str]),
    /// An entry field, by its path in the line: text, or a JSON number when `decimal` (0 when
    /// blank), as K3Cloud answers quantities and amounts.
    Line {
        path: &'static [&'static str],
        decimal: bool,
    },
}

/// The field keys read from a saved model, as the query names them: base data by its
/// `.FNumber`, `SubHeadEntity` fields by their own key.
const MODEL_FIELDS: &[(&str, Field)] = &[
    ("FBillTypeID.FNumber", Field::Head(&["FBillTypeID", "FNumber"])),
    ("FSaleOrgId.FNumber", Field::Head(&["FSaleOrgId", "FNumber"])),
    ("FStockOrgId.FNumber", Field::Head(&["FStockOrgId", "FNumber"])),
    ("FRetcustId.FNumber", Field::Head(&["FRetcustId", "FNumber"])),
    ("FSettleOrgId.FNumber", Field::Head(&["SubHeadEntity", "FSettleOrgId", "FNumber"])),
    ("FHeadNote", Field::Head(&["FHeadNote"])),
    ("FEntity_FSeq", Field::Seq),
    ("FMaterialId.FNumber", Field::Line { path: &["FMaterialId", "FNumber"], decimal: false }),
    ("FStockId.FNumber", Field::Line { path: &["FStockId", "FNumber"], decimal: false }),
    ("FRealQty", Field::Line { path: &["FRealQty"], decimal: true }),
    ("FTaxPrice", Field::Line { path: &["FTaxPrice"], decimal: true }),
    ("FEntryTaxRate", Field::Line { path: &["FEntryTaxRate"], decimal: true }),
    ("FNote", Field::Line { path: &["FNote"], decimal: false }),
];

impl Field {
    fn parse(key: &str) -> Option<Field> {
        match key {
            "FBillNo" => Some(Field::BillNo),
            "FID" => Some(Field::Fid),
            "FDate" => Some(Field::Date),
            "FDocumentStatus" => Some(Field::Status),
            _ => MODEL_FIELDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, f)| *f),
        }
    }

    /// Whether the field is an entry line's: a query naming one answers a row per line.
    pub fn per_line(self) -> bool {
        matches!(self, Field::Seq | Field::Line { .. })
    }
}

/// The field keys a query may name, for the refusal's message.
fn known_keys() -> String {
    let mut keys = vec!["FBillNo", "FID", "FDate", "FDocumentStatus"];
    keys.extend(MODEL_FIELDS.iter().map(|(k, _)| *k));
    keys.join(", ")
}

/// The value at `path` in `v`, as K3Cloud answers it: text (`""` when blank), or for a
/// decimal a JSON number (0 when blank).
pub fn model_value(v: &serde_json::Value, path: &[&str], decimal: bool) -> serde_json::Value {
    let found = path.iter().try_fold(v, |v, k| v.get(*k)).filter(|v| !v.is_null());
    if decimal {
        let n = found.and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())).unwrap_or(0.0);
        return serde_json::json!(n);
    }
    match found {
        Some(serde_json::Value::String(s)) => serde_json::json!(s),
        Some(other) => serde_json::json!(other.to_string()),
        None => serde_json::json!(""),
    }
}

/// Which bills a query selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    BillNos(Vec<String>),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub fields: Vec<Field>,
    pub filter: Filter,
    /// Order by bill number instead of FID.
    pub by_bill_no: bool,
    pub descending: bool,
    /// 0: no limit.
    pub top: usize,
    pub start: usize,
    /// 0: no limit.
    pub limit: usize,
}

/// Parses the query's `data`; the error is the message for the answer.
pub fn parse(data: &Value) -> Result<Query, String> {
    let form = data.get("FormId").and_then(Value::as_str).unwrap_or("");
    if form != super::FORM_ID {
        return Err(super::unknown_form(form));
    }
    let keys = data.get("FieldKeys").and_then(Value::as_str).unwrap_or("");
    let mut fields = Vec::new();
    for key in keys.split(',').map(str::trim) {
        fields.push(
            Field::parse(key).ok_or_else(|| format!("字段 {key} 不存在或不受支持 (field keys: {})", known_keys()))?,
        );
    }
    let filter = match data.get("FilterString") {
        None | Some(Value::Null) => Filter::All,
        Some(Value::String(s)) => parse_filter(s).ok_or_else(|| {
            format!("过滤条件 {s} 无法解析 (supported: FBillNo = '..', FBillNo in ('..', ..), or empty)")
        })?,
        Some(other) => return Err(format!("过滤条件 {other} 无法解析 (FilterString must be text)")),
    };
    let order = data.get("OrderString").and_then(Value::as_str).unwrap_or("").trim().to_owned();
    let words: Vec<&str> = order.split_whitespace().collect();
    let (by_bill_no, descending) = match words[..] {
        [] => (false, false),
        [key] | [key, _] if !matches!(key, "FID" | "FBillNo") => return Err(bad_order(&order)),
        [key] => (key == "FBillNo", false),
        [key, dir] if dir.eq_ignore_ascii_case("asc") || dir.eq_ignore_ascii_case("desc") => {
            (key == "FBillNo", dir.eq_ignore_ascii_case("desc"))
        }
        _ => return Err(bad_order(&order)),
    };
    Ok(Query {
        fields,
        filter,
        by_bill_no,
        descending,
        top: count(data, "TopRowCount")?,
        start: count(data, "StartRow")?,
        limit: count(data, "Limit")?,
    })
}

fn bad_order(order: &str) -> String {
    format!("排序条件 {order} 无法解析 (supported: FID or FBillNo, ASC or DESC)")
}

/// A non-negative count, as a JSON number or text; absent is 0.
fn count(data: &Value, name: &str) -> Result<usize, String> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str()?.trim().parse().ok())
            .map(|n| n as usize)
            .ok_or_else(|| format!("参数 {name} 必须是非负整数 (must be a non-negative integer)")),
    }
}

/// `FBillNo = 'a'`, `FBillNo in ('a', 'b')` (keywords in any case) or blank.
fn parse_filter(s: &str) -> Option<Filter> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Filter::All);
    }
    let rest = strip_word(s, "FBillNo")?.trim_start();
    if let Some(rest) = rest.strip_prefix('=') {
        let (no, rest) = quoted(rest.trim_start())?;
        return rest.trim().is_empty().then(|| Filter::BillNos(vec![no]));
    }
    let mut rest = strip_word(rest, "in")?.trim_start().strip_prefix('(')?;
    let mut nos = Vec::new();
    loop {
        let (no, after) = quoted(rest.trim_start())?;
        nos.push(no);
        let after = after.trim_start();
        if let Some(after) = after.strip_prefix(',') {
            rest = after;
        } else {
            return after.strip_prefix(')')?.trim().is_empty().then_some(Filter::BillNos(nos));
        }
    }
}

/// `s` without a leading `word` (any case), which must end there.
fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    let ends = rest.chars().next().is_none_or(|c| !c.is_alphanumeric() && c != '_');
    (head.eq_ignore_ascii_case(word) && ends).then_some(rest)
}

/// A SQL string literal at the start of `s` (`''` is a quote), and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('\'')?;
    let mut out = String::new();
    loop {
        let end = rest.find('\'')?;
        out.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('\'') {
            Some(after) => {
                out.push('\'');
                rest = after;
            }
            None => return Some((out, rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_on_bill_numbers_parse_and_others_do_not() {
        let nos = |v: &[&str]| Some(Filter::BillNos(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(parse_filter(""), Some(Filter::All));
        assert_eq!(parse_filter("FBillNo = 'a'"), nos(&["a"]));
        assert_eq!(parse_filter("FBillNo='a'"), nos(&["a"]));
        assert_eq!(parse_filter(" FBILLNO IN ('a','b', 'c''d' ) "), nos(&["a", "b", "c'd"]));
        for bad in ["FBillNo like 'a%'", "FBillNo = a", "FBillNo in ('a'", "FBillNo = 'a' or 1=1", "FBillNoX = 'a'"] {
            assert_eq!(parse_filter(bad), None, "{bad}");
        }
    }

    #[test]
    fn field_keys_order_and_counts() {
        let q = parse(&serde_json::json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FBillNo, FID",
            "OrderString": "FBillNo desc", "StartRow": "2", "Limit": 10}))
        .unwrap();
        assert_eq!(q.fields, vec![Field::BillNo, Field::Fid]);
        assert!(q.by_bill_no && q.descending && q.start == 2 && q.limit == 10 && q.top == 0);
        let e = parse(&serde_json::json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FBillNo,FQty"})).unwrap_err();
        assert!(e.contains("FQty"), "{e}");
        let q = parse(&serde_json::json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FBillNo,FEntity_FSeq,FRealQty"}))
            .unwrap();
        assert!(!q.fields[0].per_line() && q.fields[1].per_line() && q.fields[2].per_line());
        let e = parse(&serde_json::json!({"FormId": "SAL_RETURNSTOCK", "FieldKeys": "FID", "OrderString": "FDate"}))
            .unwrap_err();
        assert!(e.contains("FDate"), "{e}");
    }
}
