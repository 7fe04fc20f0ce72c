//! One 销售退货单 (`SAL_RETURNSTOCK`) model checked as K3Cloud's save checks it: required
//! fields, dates, quantities and prices, and base data referenced by number that must exist.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;

/// The base data the simulated account holds, by number; an empty set accepts any number.
#[derive(Debug, Default)]
pub struct BaseData {
    pub materials: BTreeSet<String>,
    pub customers: BTreeSet<String>,
    pub warehouses: BTreeSet<String>,
    pub orgs: BTreeSet<String>,
    pub bill_types: BTreeSet<String>,
}

/// One entry of `ResponseStatus.Errors` (without its `DIndex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// What the store needs of a model that passed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub bill_no: String,
    pub date: NaiveDateTime,
}

/// The label K3Cloud names a field by in its messages.
fn label(field: &str) -> &'static str {
    match field {
        "FBillNo" => "单据编号",
        "FDate" => "日期",
        "FRetcustId" => "退货客户",
        "FStockOrgId" => "库存组织",
        "FSaleOrgId" => "销售组织",
        "FBillTypeID" => "单据类型",
        "FSettleOrgId" => "结算组织",
        "FEntity" => "明细信息",
        "FMaterialId" => "物料编码",
        "FStockId" => "仓库",
        "FRealQty" => "实退数量",
        "FTaxPrice" => "含税单价",
        "FEntryTaxRate" => "税率%",
        "FNote" => "备注",
        _ => "",
    }
}

/// Collects a model's errors; `line` is the 1-based entry line being checked, if any.
struct Errors {
    list: Vec<FieldError>,
    line: Option<usize>,
}

impl Errors {
    fn push(&mut self, field: &'static str, what: String) {
        let prefix = self.line.map(|n| format!("第{n}行分录，")).unwrap_or_default();
        self.list.push(FieldError { field, message: format!("{prefix}字段“{}”{what}", label(field)) });
    }

    fn required(&mut self, field: &'static str) {
        self.push(field, "是必填项".into());
    }

    /// A base-data reference `{"FNumber": ".."}` whose number must be in `known`.
    fn base_data(&mut self, obj: &Value, field: &'static str, known: &BTreeSet<String>, required: bool) {
        match obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.required(field);
                }
            }
            Some(v) if v.is_object() => match v.get("FNumber").or_else(|| v.get("FNUMBER")) {
                Some(Value::String(n)) if !n.is_empty() => {
                    if !known.is_empty() && !known.contains(n) {
                        self.push(field, format!("的值 {n} 在系统中不存在或未审核"));
                    }
                }
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    if required {
                        self.required(field);
                    }
                }
                Some(_) => self.malformed(field),
            },
            Some(_) => self.malformed(field),
        }
    }

    fn malformed(&mut self, field: &'static str) {
        self.push(field, "的值格式错误 (base data must be {\"FNumber\": \"..\"})".into());
    }

    /// A decimal field, text or JSON number, within `ok`; `what` says the range for the message.
    fn decimal(&mut self, obj: &Value, field: &'static str, required: bool, ok: fn(f64) -> bool, what: &str) {
        match obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.required(field);
                }
            }
            Some(v) => match decimal(v) {
                None => self.push(field, format!("的值 {} 不是有效的数字 (not a decimal)", text(v))),
                Some(x) if !ok(x) => self.push(field, format!("的值 {} {what}", text(v))),
                Some(_) => {}
            },
        }
    }
}

/// A value as a message shows it: text without quotes, anything else as JSON.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A decimal as K3Cloud accepts it: a JSON number, or text `-?digits[.digits]`.
fn decimal(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
            let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            if all_digits(int) && all_digits(frac) { s.parse().ok() } else { None }
        }
        _ => None,
    }
}

/// `yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss` or `yyyy-MM-ddTHH:mm:ss`.
pub fn parse_date(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0))
}

/// Checks one model; every problem is reported, not just the first, as K3Cloud does.
pub fn check(model: &Value, base: &BaseData) -> Result<Checked, Vec<FieldError>> {
    let mut e = Errors { list: Vec::new(), line: None };
    if !model.is_object() {
        e.list.push(FieldError { field: "", message: "单据数据格式错误 (model must be a JSON object)".into() });
        return Err(e.list);
    }
    let bill_no = match model.get("FBillNo") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => {
            e.required("FBillNo");
            None
        }
    };
    let date = match model.get("FDate") {
        None | Some(Value::Null) => {
            e.required("FDate");
            None
        }
        Some(v) => {
            let d = v.as_str().and_then(parse_date);
            if d.is_none() {
                e.push(
                    "FDate",
                    format!("的值 {} 不是有效的日期 (expected yyyy-MM-dd or yyyy-MM-dd HH:mm:ss)", text(v)),
                );
            }
            d
        }
    };
    e.base_data(model, "FBillTypeID", &base.bill_types, false);
    e.base_data(model, "FRetcustId", &base.customers, true);
    e.base_data(model, "FStockOrgId", &base.orgs, true);
    e.base_data(model, "FSaleOrgId", &base.orgs, true);
    match model.get("SubHeadEntity") {
        None | Some(Value::Null) => {}
        Some(sub) if sub.is_object() => e.base_data(sub, "FSettleOrgId", &base.orgs, false),
        Some(_) => e.list.push(FieldError {
            field: "SubHeadEntity",
            message: "SubHeadEntity 格式错误 (must be a JSON object)".into(),
        }),
    }
    match model.get("FEntity").and_then(Value::as_array) {
        Some(lines) if !lines.is_empty() => {
            for (i, line) in lines.iter().enumerate() {
                e.line = Some(i + 1);
                if !line.is_object() {
                    e.push("FEntity", "格式错误 (each entry line must be a JSON object)".into());
                    continue;
                }
                e.base_data(line, "FMaterialId", &base.materials, true);
                e.base_data(line, "FStockId", &base.warehouses, true);
                e.decimal(line, "FRealQty", true, |x| x > 0.0, "必须大于 0 (must be > 0)");
                e.decimal(line, "FTaxPrice", false, |x| x >= 0.0, "不能为负数 (must be >= 0)");
                e.decimal(
                    line,
                    "FEntryTaxRate",
                    false,
                    |x| (0.0..=100.0).contains(&x),
                    "必须在 0 到 100 之间 (must be within 0..=100)",
                );
                if line.get("FNote").is_some_and(|n| !n.is_string() && !n.is_null()) {
                    e.push("FNote", "必须是文本 (must be a string)".into());
                }
            }
            e.line = None;
        }
        _ => e.push("FEntity", "至少需要一行分录 (FEntity needs at least one line)".into()),
    }
    match (bill_no, date) {
        (Some(bill_no), Some(date)) if e.list.is_empty() => Ok(Checked { bill_no, date }),
        _ => Err(e.list),
    }
}
