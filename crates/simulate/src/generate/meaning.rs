//! What a field holds, read from its name and doc: text, decimal, integer and time meanings.

use super::{UNSET_MILESTONE_RATE, UNSET_MILESTONES};
use crate::domain::time::DATETIME;

/// Words naming a step that may not have happened yet (its time then unset).
pub(super) const MILESTONE_WORDS: &[&str] = &[
    "pay",
    "check",
    "consign",
    "confirm",
    "finish",
    "refund",
    "send",
    "sign",
    "receive",
    "audit",
    "examine",
    "cancel",
    "close",
    "end",
    "settle",
    "deliver",
    "print",
    "expire",
    "production",
];

/// Times every record has: its creation and last change (the window filters on one of them).
pub(super) const MAIN_TIMES: &[&str] = &[
    "modified",
    "created",
    "created_time",
    "create_time",
    "update_time",
    "updated",
    "gmt_create",
    "gmt_modified",
    "trans_time",
    "trade_time",
    "order_time",
    "stockin_time",
    "biz_time",
];

/// How often an optional time named `name` is unset: the milestone table, else a milestone
/// word's rate; never for a record's main times.
pub(super) fn unset_rate(name: &str) -> f64 {
    if MAIN_TIMES.contains(&name) {
        return 0.0;
    }
    if let Some((_, r)) = UNSET_MILESTONES.iter().find(|(n, _)| *n == name) {
        return *r;
    }
    let words: Vec<&str> = name.split('_').collect();
    if words.iter().any(|w| MILESTONE_WORDS.contains(w)) { UNSET_MILESTONE_RATE } else { 0.0 }
}

/// What a decimal field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Dec {
    /// Yuan, up to `scale_of`; `negative` where the meaning allows it.
    Money {
        negative: bool,
        scale_of: u64,
    },
    Quantity,
    /// A correction to a quantity (纠错数量): mostly zero, either sign.
    Correction,
    TaxRate,
    Weight,
    Ratio,
    Unknown,
}

pub(super) fn decimal_meaning(name: &str, doc: &str, scale: u32) -> Dec {
    let n = name.to_ascii_lowercase();
    let has = |ws: &[&str]| ws.iter().any(|w| n.contains(w));
    if n == "tax_rate" || n.ends_with("_rate") || doc.contains("税率") || (n == "tax" && scale >= 6) {
        return Dec::TaxRate;
    }
    if has(&["weight", "volume"]) {
        return Dec::Weight;
    }
    if has(&["ratio"]) {
        return Dec::Ratio;
    }
    if n == "adjust_num" || n == "refund_num" {
        return Dec::Correction;
    }
    // Whole words: a `discount` is money, a `goods_count` a quantity.
    let word = |ws: &[&str]| n.split('_').any(|w| ws.contains(&w));
    if word(&["num", "num2", "quantity", "count", "qty"]) {
        return Dec::Quantity;
    }
    const MONEY: &[&str] = &[
        "price",
        "amount",
        "paid",
        "fee",
        "cost",
        "total",
        "balance",
        "commission",
        "receivable",
        "profit",
        "discount",
        "adjust",
        "prepay",
        "post",
        "refund",
        "tax",
        "share",
        "money",
    ];
    if has(MONEY) {
        let negative = has(&["adjust", "change", "profit", "balance", "discount", "refund", "diff"]);
        let scale_of = if has(&["post", "fee", "commission", "tax", "adjust", "discount", "change"]) {
            30
        } else if has(&["price"]) {
            500
        } else {
            3_000
        };
        return Dec::Money { negative, scale_of };
    }
    Dec::Unknown
}

/// What an integer field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Int {
    Flag,
    Count,
    TypeCount,
    Province,
    City,
    District,
    Country,
    Platform,
    SmallId,
    Id,
    Version,
    ValidityDays,
    /// A status, type, reason or mode: a small code (from the doc's list when it has one).
    Code,
    Unknown,
}

pub(super) fn integer_meaning(name: &str) -> Int {
    let n = name.to_ascii_lowercase();
    let ends = |ws: &[&str]| ws.iter().any(|w| n.ends_with(w));
    if n.starts_with("is_") || n.starts_with("has_") {
        return Int::Flag;
    }
    if ends(&["type_count"]) {
        return Int::TypeCount;
    }
    if ends(&["_count"]) {
        return Int::Count;
    }
    if ends(&["province"]) {
        return Int::Province;
    }
    if ends(&["city"]) {
        return Int::City;
    }
    if ends(&["district"]) {
        return Int::District;
    }
    if ends(&["country"]) {
        return Int::Country;
    }
    if ends(&["platform_id"]) {
        return Int::Platform;
    }
    if ends(&["warehouse_id", "shop_id", "logistics_id", "unit_id", "position_id"]) {
        return Int::SmallId;
    }
    if n == "version_id" {
        return Int::Version;
    }
    if n == "validity_days" {
        return Int::ValidityDays;
    }
    if n == "reason_id" || n == "flag_id" {
        return Int::Code;
    }
    if n == "id" || ends(&["_id"]) {
        return Int::Id;
    }
    const CODES: &[&str] =
        &["status", "type", "mode", "reason", "step", "term", "style", "from", "flag", "mask", "level", "kind", "code"];
    if CODES.iter().any(|w| n.contains(w)) {
        return Int::Code;
    }
    Int::Unknown
}

/// What a text field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Text {
    Currency,
    ShopNo,
    ShopName,
    WarehouseNo,
    WarehouseName,
    GoodsNo,
    SpecNo,
    SpecCode,
    GoodsName,
    SpecName,
    BrandNo,
    BrandName,
    ClassName,
    Unit,
    Barcode,
    CarrierCode,
    CarrierName,
    TrackingNo,
    CustomerNo,
    Person,
    Nick,
    AccountName,
    AccountType,
    Mobile,
    Phone,
    Zip,
    Province,
    City,
    District,
    ProvinceCode,
    CityCode,
    DistrictCode,
    Area,
    Address,
    Dtb,
    Free,
    Reason,
    Error,
    Custom,
    FlagName,
    Label,
    InvoiceTitle,
    InvoiceContent,
    Printer,
    SaleChannel,
    SaleSource,
    TradeType,
    TransType,
    Coded,
    Platform,
    PlatformTid,
    PlatformItemId,
    PayNo,
    DocNo(&'static str),
    BatchNo,
    PositionNo,
    Code,
    NumericId,
    Md5,
    IdCard,
    SuiteNo,
    SuiteName,
    Name,
    Unknown,
}

/// How readily a kind of text is left blank.
pub(super) enum Blank {
    /// Codes the ERP always sets (statuses, types).
    Never,
    Identity,
    Name,
    Free,
    Reason,
    Rare,
    Unknown,
}

impl Text {
    pub(super) fn blank(self) -> Blank {
        use Text::*;
        match self {
            Free => Blank::Free,
            Reason => Blank::Reason,
            Coded | AccountType | TradeType | TransType | Platform | Currency => Blank::Never,
            Error | Custom | FlagName | InvoiceTitle | InvoiceContent | IdCard | Phone | Printer | BatchNo
            | SuiteNo | SuiteName => Blank::Rare,
            Unknown => Blank::Unknown,
            ShopName | WarehouseName | GoodsName | SpecName | BrandName | ClassName | Unit | CarrierName | Person
            | Nick | AccountName | Label | Name | Area | Address | Dtb | Province | City | District | Zip | Mobile
            | TrackingNo | CarrierCode | SaleChannel | SaleSource => Blank::Name,
            _ => Blank::Identity,
        }
    }
}

/// A text field's meaning from its name (and its record's name, its doc): the first pattern
/// that matches wins.
pub(super) fn text_meaning(n: &str, record: &str, doc: &str) -> Text {
    use Text::*;
    let is = |ws: &[&str]| ws.contains(&n);
    let ends = |ws: &[&str]| ws.iter().any(|w| n.ends_with(w));
    let starts = |ws: &[&str]| ws.iter().any(|w| n.starts_with(w));
    if doc.contains("free text") {
        return Free;
    }
    let exact: Option<Text> = match n {
        "currency" => Some(Currency),
        "tid" | "src_tid" | "sales_tid" | "fenxiao_tid" | "p_trade_id" | "src_tids" | "oid" | "src_oid"
        | "bind_oid" => Some(PlatformTid),
        "platform_goods_id" | "platform_spec_id" => Some(PlatformItemId),
        "platform_id" | "shop_platform_id" => Some(Platform),
        "shop_no" | "shop_code" => Some(ShopNo),
        "shop_name" => Some(ShopName),
        "warehouse_no" | "swap_warehouse_no" => Some(WarehouseNo),
        "warehouse_name" => Some(WarehouseName),
        "spec_no" | "single_spec_no" | "sku_code" | "sku_no" => Some(SpecNo),
        "goods_no" | "goods_code" => Some(GoodsNo),
        "spec_code" => Some(SpecCode),
        "barcode" => Some(Barcode),
        "goods_name" | "sku_name" | "api_goods_name" | "item_name" | "title" => Some(GoodsName),
        "spec_name" | "api_spec_name" | "sku_properties_name" => Some(SpecName),
        "brand_no" => Some(BrandNo),
        "brand_name" => Some(BrandName),
        "class_name" | "category_name" => Some(ClassName),
        "goods_unit" | "unit_name" | "unit" => Some(Unit),
        "logistics_code" => Some(CarrierCode),
        "customer_no" => Some(CustomerNo),
        "customer_name" => Some(Person),
        "account_name" => Some(AccountName),
        "account_type" => Some(AccountType),
        "md5_str" => Some(Md5),
        "id_card" => Some(IdCard),
        "invoice_title" => Some(InvoiceTitle),
        "invoice_content" => Some(InvoiceContent),
        "flag_name" => Some(FlagName),
        "printer_name" => Some(Printer),
        "sale_channel" => Some(SaleChannel),
        "sale_source" => Some(SaleSource),
        "trade_type" => Some(TradeType),
        "trans_type" => Some(TransType),
        "batch_no" => Some(BatchNo),
        "position_no" => Some(PositionNo),
        "pay_no" | "pay_id" | "alipay_no" => Some(PayNo),
        "pay_account" => Some(Mobile),
        "tags" | "reserve" | "trade_mask" | "wms_result" => Some(Custom),
        "remark" | "note" | "memo" | "buyer_message" | "cs_remark" | "seller_memo" | "buyer_memo" => Some(Free),
        "fullname" | "return_name" | "swap_receiver" | "operator_name" => Some(Person),
        _ => None,
    };
    if let Some(m) = exact {
        return m;
    }
    if ends(&["_mobile"]) || n == "mobile" {
        return Mobile;
    }
    if ends(&["_telno", "_phone", "telephone"]) {
        return Phone;
    }
    if ends(&["_zip", "zip_code"]) || n == "zip" {
        return Zip;
    }
    const PLACE_WORDS: &[(&str, &str, &str, Text, Text)] = &[
        ("province", "_province", "province_code", ProvinceCode, Province),
        ("city", "_city", "city_code", CityCode, City),
        ("district", "_district", "district_code", DistrictCode, District),
    ];
    for &(w, suffix, code_suffix, code, place) in PLACE_WORDS {
        if n.ends_with(code_suffix) {
            return code;
        }
        if n == w || n.ends_with(suffix) {
            return place;
        }
    }
    if ends(&["_area"]) {
        return Area;
    }
    if ends(&["address"]) {
        return Address;
    }
    if ends(&["_dtb", "_ring"]) {
        return Dtb;
    }
    if ends(&["logistics_name"]) {
        return CarrierName;
    }
    if ends(&["logistics_no"]) {
        return TrackingNo;
    }
    if ends(&["_nick", "nick_name"]) || n == "nick" {
        return Nick;
    }
    if ends(&["_remark", "_message", "_memo", "_note"]) {
        return Free;
    }
    if ends(&["_reason", "reason_info"]) {
        return Reason;
    }
    if ends(&["error_info", "error_msg", "_error"]) {
        return Error;
    }
    if starts(&["prop", "good_prop"]) {
        return Custom;
    }
    if starts(&["suite_"]) {
        // Only lines split from a 组合装 carry its fields (so they are rarely set).
        return if ends(&["_name"]) { SuiteName } else { SuiteNo };
    }
    if ends(&["operator_name", "er_name", "_receiver", "_user"]) {
        return Person;
    }
    if ends(&["type_name", "status_name"]) {
        return Label;
    }
    if ends(&["_status", "_type"]) || n == "status" || n == "type" {
        return Coded;
    }
    if ends(&["_no", "_code", "_sn"]) || n == "no" {
        return doc_no(n, record);
    }
    if ends(&["_id"]) || n == "id" {
        return NumericId;
    }
    if ends(&["_name"]) || n == "name" {
        return Name;
    }
    if is(&["subtype", "sales_score", "pack_score", "refund_version"]) {
        return Coded;
    }
    Unknown
}

/// A document number's prefix as 旺店通 writes them (RK 入库, CK 出库, TK 退换, JY 订单),
/// from the field name or, for a bare `order_no`, the record it numbers.
pub(super) fn doc_no(n: &str, record: &str) -> Text {
    let by_record = if record.contains("stockin") {
        "RK"
    } else if record.contains("stockout") {
        "CK"
    } else if record.contains("refund") {
        "TK"
    } else if record.contains("trade") || record.contains("order") {
        "JY"
    } else {
        "DD"
    };
    let starts = |ws: &[&str]| ws.iter().any(|w| n.starts_with(w));
    let prefix = if starts(&["account_check"]) {
        "DZ"
    } else if starts(&["picklist"]) {
        "JH"
    } else if starts(&["stockin_pre"]) {
        "YR"
    } else if starts(&["stockin"]) {
        "RK"
    } else if starts(&["stockout"]) {
        "CK"
    } else if starts(&["refund", "fenxiao_refund"]) {
        "TK"
    } else if starts(&["trade", "swap_trade", "src_trade"]) {
        "JY"
    } else if starts(&["src_order"]) {
        // The order a document came from: a stock-out's is a trade, a stock-in's a refund.
        if record.contains("stockout") { "JY" } else { "TK" }
    } else if starts(&["order"]) {
        by_record
    } else {
        return Text::Code;
    };
    Text::DocNo(prefix)
}

/// The integer codes a doc lists (`0未对账,1对账失败` → 0, 1; `0至5依次为…` → 0..=5;
/// `* 88 - 销售` → 88): a number at a word boundary labelled by the word after it.
pub fn doc_codes(doc: &str) -> Vec<i64> {
    let c: Vec<char> = doc.chars().collect();
    let boundary = |i: usize| {
        i == 0 || matches!(c[i - 1], ' ' | ',' | '，' | '、' | '(' | '（' | ';' | '；' | ':' | '：' | '*' | '/')
    };
    let number = |i: usize| -> Option<(i64, usize)> {
        let neg = c.get(i) == Some(&'-');
        let from = i + neg as usize;
        let mut j = from;
        while j < c.len() && c[j].is_ascii_digit() {
            j += 1;
        }
        if j == from || j - from > 9 {
            return None;
        }
        let n: i64 = c[from..j].iter().collect::<String>().parse().ok()?;
        Some((if neg { -n } else { n }, j))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let Some((n, j)) = boundary(i).then(|| number(i)).flatten() else {
            i += 1;
            continue;
        };
        if c.get(j) == Some(&'至')
            && let Some((m, k)) = number(j + 1)
        {
            out.extend(n..=m.min(n + 20));
            i = k;
            continue;
        }
        let mut k = j;
        while k < c.len() && matches!(c[k], ' ' | '-' | '=' | ':' | '：') {
            k += 1;
        }
        if c.get(k).is_some_and(|ch| ch.is_alphabetic()) && n.unsigned_abs() <= i32::MAX as u64 {
            out.push(n);
        }
        i = j;
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Where the step a time's (lower-case) name names falls in a record's story: 0 when it was
/// created, then paid, audited, shipped, received, finished, 1 at its last change; `None`
/// for a name no step matches (such a time falls anywhere).
pub(super) fn step_rank(name: &str) -> Option<f64> {
    const STEPS: &[(&[&str], f64)] = &[
        (&["modified", "update"], 1.0),
        (&["refund", "finish", "close", "settle", "stockin", "end"], 0.9),
        (&["sign", "receive", "confirm"], 0.8),
        (&["consign", "send", "stockout", "deliver", "print"], 0.5),
        (&["check", "audit", "examine"], 0.3),
        (&["pay"], 0.1),
        (&["create", "trade", "order"], 0.0),
    ];
    STEPS.iter().find(|(words, _)| words.iter().any(|w| name.contains(w))).map(|(_, r)| *r)
}

/// The format of a time sent as text, if the (lower-case) name and doc say it is one: the
/// format its doc names (`格式:yyyyMMdd`, `HH:mm:ss`, a seconds timestamp); a join part's by
/// its name (date or time of day); a `*_time`/`*_date` text without one `yyyy-MM-dd HH:mm:ss`.
pub(super) fn text_time_format(name: &str, doc: &str, join_part: bool) -> Option<&'static str> {
    if doc.contains("free text") || doc.contains("not a timestamp") {
        return None;
    }
    let hinted = if doc.contains("yyyy-MM-dd HH:mm:ss") {
        Some(DATETIME)
    } else if doc.contains("yyyyMMdd") {
        Some("%Y%m%d")
    } else if doc.contains("yyyy-MM-dd") {
        Some("%Y-%m-%d")
    } else if doc.contains("HH:mm:ss") {
        Some("%H:%M:%S")
    } else if doc.contains("时间戳") || doc.to_ascii_lowercase().contains("timestamp") {
        Some("%s")
    } else {
        None
    };
    match hinted {
        Some(f) => Some(f),
        None if join_part && name.contains("date") => Some("%Y-%m-%d"),
        None if join_part => Some("%H:%M:%S"),
        None if name.ends_with("_time") || name.ends_with("_date") => Some(DATETIME),
        None => None,
    }
}

/// Upper-case initials of a snake_case name, a code's prefix: `merchant_no` → `MN`.
pub(super) fn initials(name: &str) -> String {
    name.split('_').filter_map(|w| w.chars().next()).collect::<String>().to_ascii_uppercase()
}
