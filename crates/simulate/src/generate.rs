//! Vendor-style JSON records generated from any Avro schema: each field's value follows what
//! its name (and doc) says it means, with the awkward values real vendor data has, at the
//! rates real data has them.

use apache_avro::schema::{RecordField, Schema};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::rng::SimRng;
use crate::domain::time::{DATETIME, format_beijing};

pub const ZERO_DATE: &str = "0000-00-00 00:00:00";

// How often each awkward value appears. Real 旺店通/奇门/TOP data is mostly well-formed; the
// awkward values are there, but rare enough that a newcomer's demo shows a few dead letters,
// not half of them.

/// A stock-in, order or refund always has lines; an empty list is a rare glitch.
pub const EMPTY_LINES_RATE: f64 = 0.005;
/// A list of plain values (tags, ids) is often simply empty.
pub const EMPTY_SCALAR_LIST_RATE: f64 = 0.3;
/// Identity codes (spec_no, goods_no, warehouse_no) are ERP keys: blank only when a seller
/// never gave an item its 商家编码, which almost never happens.
pub const EMPTY_IDENTITY_RATE: f64 = 0.002;
/// Names (shop, warehouse, goods, people, carriers) are filled in by the ERP; blank now and then.
pub const EMPTY_NAME_RATE: f64 = 0.01;
/// Free text (remarks, buyer messages) is what people leave blank: most records have none.
pub const EMPTY_FREE_TEXT_RATE: f64 = 0.65;
/// Of the free texts written, the share carrying an emoji (pasted from a phone).
pub const EMOJI_RATE: f64 = 0.05;
/// Reasons are picked from a list in the ERP, and skipped now and then.
pub const EMPTY_REASON_RATE: f64 = 0.2;
/// Error texts, custom properties, tags: blank unless something went wrong or was set up.
pub const EMPTY_RARELY_SET_RATE: f64 = 0.85;
/// Optional numbers of unknown meaning sent as empty text (the vendor's "no value").
pub const EMPTY_NUMBER_RATE: f64 = 0.002;
/// Optional text of unknown meaning left blank.
pub const EMPTY_UNKNOWN_TEXT_RATE: f64 = 0.05;
/// Money carrying every digit of its scale (apportioned shares such as 33.3333).
pub const FULL_SCALE_RATE: f64 = 0.01;
/// Money using every digit of its precision: the limit a decimal column must survive.
pub const FULL_PRECISION_RATE: f64 = 0.002;
/// Money that may be negative by meaning (adjustments, changed discounts, refunds, profit).
pub const NEGATIVE_MONEY_RATE: f64 = 0.03;
/// Money that is exactly zero (gifts, free postage, nothing refunded).
pub const ZERO_MONEY_RATE: f64 = 0.12;
/// Quantities in fractions (goods sold by weight) rather than whole units.
pub const FRACTIONAL_QUANTITY_RATE: f64 = 0.01;
/// Currencies other than CNY on a domestic shop's records (cross-border shops).
pub const FOREIGN_CURRENCY_RATE: f64 = 0.02;
/// A milestone time not in [`UNSET_MILESTONES`] (e.g. a user schema's `sign_time`) unset.
pub const UNSET_MILESTONE_RATE: f64 = 0.10;

/// Optional milestones and how often each is still unset (`0000-00-00 00:00:00`) when read:
/// not every order is paid, audited, shipped, received or refunded yet.
pub const UNSET_MILESTONES: &[(&str, f64)] = &[
    ("pay_time", 0.05),         // unpaid and cash-on-delivery orders
    ("check_time", 0.10),       // not audited yet
    ("stock_check_time", 0.10), // not counted yet
    ("consign_time", 0.20),     // not shipped yet
    ("confirm_time", 0.30),     // buyer has not confirmed receipt
    ("finish_time", 0.30),      // still open
    ("refund_time", 0.30),      // refund not paid out yet
    ("production_date", 0.60),  // only batch-managed goods carry dates
    ("expire_date", 0.60),      // likewise
];

/// Words naming a step that may not have happened yet (its time then unset).
const MILESTONE_WORDS: &[&str] = &[
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
const MAIN_TIMES: &[&str] = &[
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

/// (shop_no, shop_name)
pub const SHOPS: &[(&str, &str)] = &[
    ("tmall01", "旺店通旗舰店"),
    ("tmall02", "天猫 · 官方店"),
    ("jd01", "京东自营旗舰店"),
    ("pdd01", "拼多多专营店"),
    ("dy01", "抖音小店"),
    ("xhs01", "小红书店铺"),
    ("md-hz01", "杭州西湖门店"),
];

/// (warehouse_no, warehouse_name)
pub const WAREHOUSES: &[(&str, &str)] = &[
    ("CK001", "华东仓"),
    ("CK002", "北京一号仓"),
    ("CK003", "华南中心仓"),
    ("CK004", "成都退货仓"),
    ("WH-SZ01", "深圳保税仓"),
    ("WH-WH01", "武汉中转仓"),
];

/// A good as the ERP knows it: the fields of a detail line that name it agree.
#[derive(Clone, Copy)]
struct Good {
    goods_no: &'static str,
    spec_no: &'static str,
    name: &'static str,
    spec_name: &'static str,
    brand: &'static str,
    class: &'static str,
    unit: &'static str,
    barcode: &'static str,
}

const GOODS: &[Good] = &[
    Good {
        goods_no: "G1001",
        spec_no: "LT-500G-M",
        name: "拿铁咖啡豆 500g",
        spec_name: "500g 中度烘焙",
        brand: "隅田川",
        class: "咖啡豆",
        unit: "袋",
        barcode: "6901234500017",
    },
    Good {
        goods_no: "G1001",
        spec_no: "LT-1KG-D",
        name: "拿铁咖啡豆 1kg",
        spec_name: "1kg 深度烘焙",
        brand: "隅田川",
        class: "咖啡豆",
        unit: "袋",
        barcode: "6901234500024",
    },
    Good {
        goods_no: "G2003",
        spec_no: "CUP-350-W",
        name: "陶瓷马克杯 350ml",
        spec_name: "白色",
        brand: "摩登主妇",
        class: "杯具",
        unit: "个",
        barcode: "6923450612345",
    },
    Good {
        goods_no: "G3010",
        spec_no: "TEA-ML-100",
        name: "茉莉花茶 100g 罐装",
        spec_name: "100g",
        brand: "张一元",
        class: "茶叶",
        unit: "罐",
        barcode: "6921234567892",
    },
    Good {
        goods_no: "G4021",
        spec_no: "TS-M-BK-XL",
        name: "纯棉圆领T恤 男款",
        spec_name: "黑色 XL",
        brand: "优衣库",
        class: "服装",
        unit: "件",
        barcode: "4550182345678",
    },
    Good {
        goods_no: "G5002",
        spec_no: "MSK-50",
        name: "一次性医用口罩 50只/盒",
        spec_name: "50只/盒",
        brand: "稳健",
        class: "日用",
        unit: "盒",
        barcode: "6953081234567",
    },
    Good {
        goods_no: "G6008",
        spec_no: "NUT-750",
        name: "每日坚果 750g (30袋)",
        spec_name: "750g",
        brand: "三只松鼠",
        class: "休闲零食",
        unit: "箱",
        barcode: "6971234560018",
    },
    Good {
        goods_no: "G7001",
        spec_no: "SP-WTR-24",
        name: "天然矿泉水 550ml*24瓶",
        spec_name: "550ml*24",
        brand: "农夫山泉",
        class: "饮料",
        unit: "箱",
        barcode: "6921168509256",
    },
];

/// (code, name, tracking number prefix)
const CARRIERS: &[(&str, &str, &str)] = &[
    ("SF", "顺丰速运", "SF"),
    ("YTO", "圆通速递", "YT"),
    ("ZTO", "中通快递", "78"),
    ("STO", "申通快递", "77"),
    ("YUNDA", "韵达快递", "43"),
    ("JD", "京东物流", "JDV"),
    ("EMS", "中国邮政EMS", "11"),
    ("JTSD", "极兔速递", "JT"),
];

/// A real place: an address's province, city, district, their codes, zip and a street.
#[derive(Clone, Copy)]
struct Place {
    province: &'static str,
    city: &'static str,
    district: &'static str,
    province_code: u32,
    city_code: u32,
    district_code: u32,
    zip: &'static str,
    street: &'static str,
}

const PLACES: &[Place] = &[
    Place {
        province: "浙江省",
        city: "杭州市",
        district: "西湖区",
        province_code: 330000,
        city_code: 330100,
        district_code: 330106,
        zip: "310012",
        street: "文三路",
    },
    Place {
        province: "上海",
        city: "上海市",
        district: "浦东新区",
        province_code: 310000,
        city_code: 310100,
        district_code: 310115,
        zip: "200120",
        street: "张江路",
    },
    Place {
        province: "北京",
        city: "北京市",
        district: "朝阳区",
        province_code: 110000,
        city_code: 110100,
        district_code: 110105,
        zip: "100020",
        street: "建国路",
    },
    Place {
        province: "广东省",
        city: "深圳市",
        district: "南山区",
        province_code: 440000,
        city_code: 440300,
        district_code: 440305,
        zip: "518057",
        street: "科技园南路",
    },
    Place {
        province: "广东省",
        city: "广州市",
        district: "天河区",
        province_code: 440000,
        city_code: 440100,
        district_code: 440106,
        zip: "510630",
        street: "天河路",
    },
    Place {
        province: "江苏省",
        city: "南京市",
        district: "鼓楼区",
        province_code: 320000,
        city_code: 320100,
        district_code: 320106,
        zip: "210008",
        street: "中山北路",
    },
    Place {
        province: "四川省",
        city: "成都市",
        district: "武侯区",
        province_code: 510000,
        city_code: 510100,
        district_code: 510107,
        zip: "610041",
        street: "人民南路",
    },
    Place {
        province: "湖北省",
        city: "武汉市",
        district: "洪山区",
        province_code: 420000,
        city_code: 420100,
        district_code: 420111,
        zip: "430070",
        street: "珞喻路",
    },
    Place {
        province: "山东省",
        city: "青岛市",
        district: "市南区",
        province_code: 370000,
        city_code: 370200,
        district_code: 370202,
        zip: "266071",
        street: "香港中路",
    },
    Place {
        province: "新疆维吾尔自治区",
        city: "乌鲁木齐市",
        district: "天山区",
        province_code: 650000,
        city_code: 650100,
        district_code: 650102,
        zip: "830002",
        street: "解放南路",
    },
];

const PEOPLE: &[&str] = &[
    "张伟",
    "王芳",
    "李娜",
    "刘洋",
    "陈静",
    "杨磊",
    "赵敏",
    "黄晓明",
    "周杰",
    "吴婷",
    "徐丽",
    "孙强",
    "欧阳娜娜",
    "马超",
    "朱琳",
];
const NICKS: &[&str] = &[
    "tb_88234120",
    "小鱼儿2019",
    "jd_4a7c2e91b",
    "快乐的小猪",
    "t**3",
    "王**",
    "sunny_day",
    "喵星人不吃鱼",
    "pdd_13812",
    "老李头",
];
const REMARKS: &[&str] = &[
    "请尽快发货",
    "包装破损,已拍照",
    "客户要求改地址：杭州市西湖区文三路 90 号",
    "赠品已随包裹寄出!",
    "顺丰到付，谢谢~",
    "质量问题，换货处理。",
    "不要放快递柜，放门卫",
    "急！！！明天要用",
    "买家已确认收货,同意退款",
    "退回商品已验收 (外包装完好)",
    "补发 1 件",
    "old order; re-sent",
];
const EMOJI_REMARKS: &[&str] = &["谢谢亲 🙏", "送人的，包装好看点 🎁", "好评返现 😀"];
const REASONS: &[&str] =
    &["七天无理由退货", "质量问题", "发错货", "少件/漏发", "不想要了", "商品破损", "尺码不合适", "其他"];
const ERRORS: &[&str] = &["库存不足", "货品不存在", "仓库未授权", "超时未回传"];
const FLAG_NAMES: &[&str] = &["加急", "赠品单", "预售", "大客户"];
const LABELS: &[&str] = &["退货入库", "销售出库", "普通订单", "换货", "补发", "线上", "默认"];
const INVOICE_TITLES: &[&str] = &["杭州某某科技有限公司", "个人", "上海云端网络科技有限公司"];
const INVOICE_CONTENTS: &[&str] = &["明细", "办公用品", "食品"];
const PRINTERS: &[&str] = &["仓库1号打印机", "HP LaserJet M1005", "快递单打印机-B"];
const ACCOUNT_NAMES: &[&str] = &["支付宝主账户", "备用账户", "京东钱包", "招商银行基本户"];
const SALE_CHANNELS: &[&str] = &["天猫", "淘宝", "京东", "线下门店"];
const SALE_SOURCES: &[&str] = &["APP", "PC", "小程序"];
/// wdt platform ids: 0 线下, 1 淘宝, 3 京东, 6 拼多多 (a few of them), 127 其它.
const PLATFORMS: &[u32] = &[1, 1, 1, 3, 3, 6, 0, 127];
const WORDS: &[&str] = &["旗舰店", "华东仓", "退货", "拿铁", "测试", "天猫", "京东", "盒马", "c-test", "SKU", "备注 ✓"];

/// How a vendor writes values on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Decimals and integers as JSON numbers (the finance API) instead of text (the rest).
    pub numbers_as_json: bool,
}

/// A record for `schema` (a record schema), its times spread before `at` (its last change).
pub fn record(schema: &Schema, rng: &mut SimRng, at: DateTime<Utc>, style: Style) -> Value {
    // The record's story began up to a week before its last change.
    let start = at - Duration::seconds(3_600 + rng.below(7 * 86_400) as i64);
    let picks = Picks::new(rng);
    let mut g = Gen { rng, at, start, style, picks };
    g.value(schema, &Slot::top())
}

/// The things a record is about, picked once so its fields agree (shop_no with shop_name).
#[derive(Clone, Copy)]
struct Picks {
    shop: usize,
    warehouse: usize,
    goods: usize,
    carrier: usize,
    place: usize,
}

impl Picks {
    fn new(rng: &mut SimRng) -> Self {
        Picks {
            shop: rng.below(SHOPS.len() as u64) as usize,
            warehouse: rng.below(WAREHOUSES.len() as u64) as usize,
            goods: rng.below(GOODS.len() as u64) as usize,
            carrier: rng.below(CARRIERS.len() as u64) as usize,
            place: rng.below(PLACES.len() as u64) as usize,
        }
    }
}

/// Where a value goes: its field's name and doc, the enclosing record's name, whether it may
/// be left out, and whether it is a part of a `tidemark.join`.
#[derive(Clone)]
struct Slot<'s> {
    name: &'s str,
    doc: &'s str,
    record: &'s str,
    optional: bool,
    join_part: bool,
}

impl Slot<'_> {
    fn top() -> Self {
        Slot { name: "", doc: "", record: "", optional: false, join_part: false }
    }
}

struct Gen<'r> {
    rng: &'r mut SimRng,
    at: DateTime<Utc>,
    start: DateTime<Utc>,
    style: Style,
    picks: Picks,
}

impl Gen<'_> {
    fn value(&mut self, schema: &Schema, slot: &Slot) -> Value {
        // A field the vendor documents as unused (未使用) comes back empty or zero.
        let unused = || slot.doc.contains("未使用");
        match schema {
            Schema::Record(r) => {
                let joined: Vec<&str> = r
                    .fields
                    .iter()
                    .filter_map(|f| f.custom_attributes.get("tidemark.join"))
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                // A nested record (a detail line) is about its own good.
                let outer = self.picks;
                if !slot.name.is_empty() {
                    self.picks.goods = self.rng.below(GOODS.len() as u64) as usize;
                }
                let mut o = Map::new();
                for f in &r.fields {
                    // Derived fields are computed by tidemark, never sent by the vendor.
                    if f.custom_attributes.contains_key("tidemark.join") {
                        continue;
                    }
                    let s = field_slot(f, r.name.name(), joined.contains(&f.name.as_str()));
                    o.insert(f.name.clone(), self.value(&f.schema, &s));
                }
                self.picks = outer;
                Value::Object(o)
            }
            Schema::Union(u) => {
                let inner = u.variants().iter().find(|s| !matches!(s, Schema::Null)).unwrap_or(&Schema::Null);
                self.value(inner, &Slot { optional: true, ..slot.clone() })
            }
            Schema::Array(a) => {
                let n = if matches!(*a.items, Schema::Record(_)) {
                    if self.rng.chance(EMPTY_LINES_RATE) { 0 } else { self.line_count() }
                } else if self.rng.chance(EMPTY_SCALAR_LIST_RATE) {
                    0
                } else {
                    1 + self.rng.below(3)
                };
                Value::Array((0..n).map(|_| self.value(&a.items, slot)).collect())
            }
            Schema::Decimal(d) => {
                let (p, s) = (d.precision as u32, d.scale as u32);
                if unused() {
                    return self.number(fixed(false, 0, s));
                }
                let m = decimal_meaning(slot.name, slot.doc, s);
                if m == Dec::Unknown && slot.optional && self.rng.chance(EMPTY_NUMBER_RATE) {
                    return Value::from("");
                }
                let text = self.decimal(m, p, s);
                self.number(text)
            }
            Schema::TimestampMillis | Schema::TimestampMicros | Schema::Date => {
                let format = if matches!(schema, Schema::Date) { "%Y-%m-%d" } else { DATETIME };
                Value::from(self.time(slot.name, slot.optional, format))
            }
            Schema::Int | Schema::Long => {
                if unused() {
                    return self.number("0".into());
                }
                let m = integer_meaning(slot.name);
                if m == Int::Unknown && slot.optional && self.rng.chance(EMPTY_NUMBER_RATE) {
                    return Value::from("");
                }
                let n = self.integer(m, slot, matches!(schema, Schema::Int));
                self.number(n.to_string())
            }
            Schema::Float | Schema::Double => {
                let text = format!("{}.{}", self.rng.below(1000), self.rng.below(100));
                self.number(text)
            }
            Schema::Boolean => Value::from(if self.rng.chance(0.2) { "1" } else { "0" }),
            Schema::Enum(e) => Value::from(self.rng.pick(&e.symbols).clone()),
            Schema::Null => Value::Null,
            _ => {
                if unused() {
                    return Value::from("");
                }
                Value::from(self.text(slot))
            }
        }
    }

    /// Detail lines per record: mostly one or two, up to five.
    fn line_count(&mut self) -> u64 {
        match self.rng.below(100) {
            0..45 => 1,
            45..70 => 2,
            70..85 => 3,
            85..95 => 4,
            _ => 5,
        }
    }

    fn number(&self, text: String) -> Value {
        number(text, self.style)
    }

    /// Beijing time text for a time field: the record's main times always set, milestones
    /// unset at their rate, each at its place in the record's story.
    fn time(&mut self, name: &str, optional: bool, format: &str) -> String {
        let n = name.to_ascii_lowercase();
        let rate = unset_rate(&n);
        if optional && rate > 0.0 && self.rng.chance(rate) {
            return ZERO_DATE.into();
        }
        let t = match n.as_str() {
            // Goods dates: made months before, good for a year or two after.
            "production_date" => self.start - Duration::days(30 + self.rng.below(335) as i64),
            "expire_date" => self.start + Duration::days(180 + self.rng.below(550) as i64),
            _ => self.moment(&n),
        };
        let format = if n.ends_with("_date") && format == DATETIME { "%Y-%m-%d" } else { format };
        format_beijing(t, format)
    }

    /// When the step `name` names happened: created first, then paid, audited, shipped,
    /// received, finished, and the last change at `at`.
    fn moment(&mut self, name: &str) -> DateTime<Utc> {
        const STEPS: &[(&[&str], f64)] = &[
            (&["modified", "update"], 1.0),
            (&["refund", "finish", "close", "settle", "stockin", "end"], 0.9),
            (&["sign", "receive", "confirm"], 0.8),
            (&["consign", "send", "stockout", "deliver", "print"], 0.5),
            (&["check", "audit", "examine"], 0.3),
            (&["pay"], 0.1),
            (&["create", "trade", "order"], 0.0),
        ];
        let span = (self.at - self.start).num_seconds().max(1);
        let rank = STEPS
            .iter()
            .find(|(words, _)| words.iter().any(|w| name.contains(w)))
            .map(|(_, r)| *r)
            .unwrap_or_else(|| self.rng.below(1000) as f64 / 1000.0);
        if rank >= 1.0 {
            return self.at;
        }
        // A little after its step, never after the last change.
        let jitter = self.rng.below((span / 10).max(1) as u64) as i64;
        (self.start + Duration::seconds((span as f64 * rank) as i64 + jitter)).min(self.at)
    }

    fn decimal(&mut self, m: Dec, p: u32, s: u32) -> String {
        match m {
            Dec::Money { negative, scale_of } => {
                if self.rng.chance(FULL_PRECISION_RATE) {
                    let int_digits = p.saturating_sub(s).min(15);
                    let int = if int_digits == 0 { 0 } else { 10u128.pow(int_digits) - 1 };
                    let frac = 10u128.pow(s) - 1;
                    return fit(negative && self.rng.chance(0.5), int * 10u128.pow(s) + frac, s, p);
                }
                if self.rng.chance(ZERO_MONEY_RATE) {
                    return fixed(false, 0, s);
                }
                let yuan = 1 + self.rng.below(scale_of) as u128;
                let frac = if self.rng.chance(FULL_SCALE_RATE) && s > 0 {
                    // Every digit of the scale, the last one non-zero.
                    let below = self.rng.below(10u64.pow(s.min(18))) as u128;
                    (below / 10 * 10 + 1 + self.rng.below(9) as u128) % 10u128.pow(s)
                } else {
                    // Whole cents, the way prices are set.
                    let cents = [0, 0, 0, 50, 90, 99, 80][self.rng.below(7) as usize] as u128;
                    rescale(cents, 2, s)
                };
                let neg = negative && self.rng.chance(NEGATIVE_MONEY_RATE);
                fit(neg, yuan * 10u128.pow(s) + frac, s, p)
            }
            Dec::Quantity => {
                if self.rng.chance(FRACTIONAL_QUANTITY_RATE) {
                    let u = 1 + self.rng.below(10u64.pow(s.min(18)).max(1) * 3) as u128;
                    return fit(false, u, s, p);
                }
                let units = [1, 1, 1, 1, 2, 2, 3, 5, 10][self.rng.below(9) as usize];
                fit(false, units * 10u128.pow(s), s, p)
            }
            Dec::Correction => {
                // Corrections are mostly none, else a unit or two either way.
                if self.rng.chance(0.9) {
                    return fixed(false, 0, s);
                }
                fit(self.rng.chance(0.5), (1 + self.rng.below(2) as u128) * 10u128.pow(s), s, p)
            }
            Dec::TaxRate => {
                let pct = [0, 6, 9, 13, 13, 13][self.rng.below(6) as usize];
                fit(false, rescale(pct, 2, s), s, p)
            }
            Dec::Weight => fit(false, rescale(50 + self.rng.below(20_000) as u128, 3, s), s, p),
            Dec::Ratio => fit(false, 10u128.pow(s), s, p),
            Dec::Unknown => decimal_text(self.rng, p, s),
        }
    }

    fn integer(&mut self, m: Int, slot: &Slot, int32: bool) -> i64 {
        let rng = &mut *self.rng;
        let n = match m {
            Int::Flag => rng.chance(0.2) as i64,
            Int::Count => [0, 0, 0, 0, 1, 1, 2, 3][rng.below(8) as usize],
            Int::TypeCount => 1 + rng.below(5) as i64,
            Int::Province => PLACES[self.picks.place].province_code as i64,
            Int::City => PLACES[self.picks.place].city_code as i64,
            Int::District => PLACES[self.picks.place].district_code as i64,
            Int::Country => 0,
            Int::Platform => *rng.pick(PLATFORMS) as i64,
            Int::SmallId => 1 + rng.below(30) as i64,
            Int::Id => 100_000 + rng.below(900_000_000) as i64,
            Int::Version => 1 + rng.below(30) as i64,
            Int::ValidityDays => *rng.pick(&[0i64, 0, 180, 365, 730]),
            Int::Code => {
                // Negative codes in a doc are special values (`-100根据预售策略…`): rare.
                let (special, codes): (Vec<i64>, Vec<i64>) = doc_codes(slot.doc).into_iter().partition(|c| *c < 0);
                let mask = slot.name.contains("mask") || slot.doc.contains("bit");
                if mask && rng.chance(0.8) {
                    0
                } else if !special.is_empty() && rng.chance(0.05) {
                    *rng.pick(&special)
                } else if !codes.is_empty() && rng.chance(0.9) {
                    *rng.pick(&codes)
                } else {
                    [0, 0, 0, 1, 1, 2, 3, 4, 5][rng.below(9) as usize]
                }
            }
            Int::Unknown => {
                if int32 {
                    rng.below(6) as i64
                } else {
                    100_000 + rng.below(900_000) as i64
                }
            }
        };
        if int32 { n.clamp(i32::MIN as i64, i32::MAX as i64) } else { n }
    }

    fn text(&mut self, slot: &Slot) -> String {
        let name = slot.name.to_ascii_lowercase();
        if let Some(t) = self.string_time(&name, slot) {
            return t;
        }
        let m = text_meaning(&name, &slot.record.to_ascii_lowercase(), slot.doc);
        let blank = match m.blank() {
            Blank::Identity => EMPTY_IDENTITY_RATE,
            Blank::Name => EMPTY_NAME_RATE,
            Blank::Free => EMPTY_FREE_TEXT_RATE,
            Blank::Reason => EMPTY_REASON_RATE,
            Blank::Rare => EMPTY_RARELY_SET_RATE,
            Blank::Unknown => EMPTY_UNKNOWN_TEXT_RATE,
            Blank::Never => 0.0,
        };
        // A required string is never absent, blank or not: it is the record's key.
        if slot.optional && blank > 0.0 && self.rng.chance(blank) {
            return String::new();
        }
        let p = self.picks;
        let goods = GOODS[p.goods];
        let place = PLACES[p.place];
        let carrier = CARRIERS[p.carrier];
        let day = format_beijing(self.start, "%Y%m%d");
        let rng = &mut *self.rng;
        match m {
            Text::Currency => {
                if rng.chance(FOREIGN_CURRENCY_RATE) {
                    rng.pick(&["USD", "HKD"]).to_string()
                } else {
                    "CNY".into()
                }
            }
            Text::ShopNo => SHOPS[p.shop].0.into(),
            Text::ShopName => SHOPS[p.shop].1.into(),
            Text::WarehouseNo => WAREHOUSES[p.warehouse].0.into(),
            Text::WarehouseName => WAREHOUSES[p.warehouse].1.into(),
            Text::GoodsNo => goods.goods_no.into(),
            Text::SpecNo => goods.spec_no.into(),
            Text::SpecCode => format!("{}-{:02}", goods.spec_no, 1 + rng.below(3)),
            Text::GoodsName => goods.name.into(),
            Text::SpecName => goods.spec_name.into(),
            Text::BrandNo => format!("BR{:03}", 1 + p.goods),
            Text::BrandName => goods.brand.into(),
            Text::ClassName => goods.class.into(),
            Text::Unit => goods.unit.into(),
            Text::Barcode => goods.barcode.into(),
            Text::CarrierCode => carrier.0.into(),
            Text::CarrierName => carrier.1.into(),
            Text::TrackingNo => format!("{}{}", carrier.2, digits(rng, 15 - carrier.2.len())),
            Text::CustomerNo => format!("KH{:04}", 1 + rng.below(200)),
            Text::Person => rng.pick(PEOPLE).to_string(),
            Text::Nick => rng.pick(NICKS).to_string(),
            Text::AccountName => rng.pick(ACCOUNT_NAMES).to_string(),
            Text::AccountType => rng.pick(&["main", "backup"]).to_string(),
            Text::Mobile => {
                let tail = digits(rng, 4);
                let head = rng.pick(&["138", "139", "186", "150", "177", "199"]).to_string();
                // Taobao masks buyers' numbers; other platforms send them whole.
                if rng.chance(0.5) { format!("{head}****{tail}") } else { format!("{head}{}{tail}", digits(rng, 4)) }
            }
            Text::Phone => format!("0{}-{}", rng.pick(&["571", "21", "10", "755"]), digits(rng, 8)),
            Text::Zip => place.zip.into(),
            Text::Province => place.province.into(),
            Text::City => place.city.into(),
            Text::District => place.district.into(),
            Text::ProvinceCode => place.province_code.to_string(),
            Text::CityCode => place.city_code.to_string(),
            Text::DistrictCode => place.district_code.to_string(),
            Text::Area => format!("{} {} {}", place.province, place.city, place.district),
            Text::Address => {
                format!(
                    "{} {} 号 {} 幢 {} 室",
                    place.street,
                    1 + rng.below(300),
                    1 + rng.below(20),
                    101 + rng.below(1500)
                )
            }
            Text::Dtb => format!("{} {}", place.city.trim_end_matches('市'), place.district),
            Text::Free => {
                if rng.chance(EMOJI_RATE) {
                    rng.pick(EMOJI_REMARKS).to_string()
                } else {
                    rng.pick(REMARKS).to_string()
                }
            }
            Text::Reason => rng.pick(REASONS).to_string(),
            Text::Error => rng.pick(ERRORS).to_string(),
            Text::Custom => rng.pick(&["A", "B", "促销", "1"]).to_string(),
            Text::FlagName => rng.pick(FLAG_NAMES).to_string(),
            Text::Label => rng.pick(LABELS).to_string(),
            Text::InvoiceTitle => rng.pick(INVOICE_TITLES).to_string(),
            Text::InvoiceContent => rng.pick(INVOICE_CONTENTS).to_string(),
            Text::Printer => rng.pick(PRINTERS).to_string(),
            Text::SaleChannel => rng.pick(SALE_CHANNELS).to_string(),
            Text::SaleSource => rng.pick(SALE_SOURCES).to_string(),
            Text::TradeType => (if rng.chance(0.85) { "销售" } else { "退款" }).into(),
            Text::TransType => (if rng.chance(0.6) { "income" } else { "expense" }).into(),
            Text::Coded => {
                let codes = doc_codes(slot.doc);
                if codes.is_empty() { rng.below(4).to_string() } else { rng.pick(&codes).to_string() }
            }
            Text::Platform => rng.pick(PLATFORMS).to_string(),
            Text::PlatformTid => format!("{}{}", 1 + rng.below(9), digits(rng, 18)),
            Text::PlatformItemId => format!("{}{}", 5 + rng.below(5), digits(rng, 11)),
            Text::PayNo => format!("{day}2200{}", digits(rng, 16)),
            Text::DocNo(prefix) => format!("{prefix}{day}{:05}", rng.below(100_000)),
            Text::BatchNo => format!("PC{day}{:02}", 1 + rng.below(20)),
            Text::PositionNo => {
                format!("{}-{:02}-{:02}", rng.pick(&["A", "B", "C"]), 1 + rng.below(20), 1 + rng.below(6))
            }
            Text::Code => format!("{}{}", initials(&name), digits(rng, 6)),
            Text::NumericId => (100_000 + rng.below(900_000_000)).to_string(),
            Text::Md5 => format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
            Text::IdCard => format!("{}********{}", place.district_code, digits(rng, 4)),
            Text::SuiteNo => format!("TZ{:03}", 1 + rng.below(20)),
            Text::SuiteName => rng.pick(&["咖啡礼盒套装", "新年零食大礼包", "茶具组合装"]).to_string(),
            Text::Name => format!("{}{}", rng.pick(LABELS), rng.pick(&["", "一", "二", "A"])),
            Text::Unknown => {
                if rng.chance(0.5) {
                    format!("{}{}", rng.pick(WORDS), rng.below(1000))
                } else {
                    format!("{}-{:05}", name.replace('_', "-"), rng.below(100_000))
                }
            }
        }
    }

    /// A time sent as text, in the format its doc names (`格式:yyyyMMdd`, `HH:mm:ss`, a seconds
    /// timestamp); a `*_time`/`*_date` text without one as `yyyy-MM-dd HH:mm:ss`. Join parts
    /// are the record's own instant, so the time tidemark joins from them is `at`.
    fn string_time(&mut self, name: &str, slot: &Slot) -> Option<String> {
        let doc = slot.doc;
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
        let format = match hinted {
            Some(f) => f,
            None if slot.join_part && name.contains("date") => "%Y-%m-%d",
            None if slot.join_part => "%H:%M:%S",
            None if name.ends_with("_time") || name.ends_with("_date") => DATETIME,
            None => return None,
        };
        if slot.join_part {
            return Some(format_beijing(self.at, format));
        }
        let t = self.time(name, slot.optional, DATETIME);
        if t == ZERO_DATE || format == DATETIME {
            return Some(if t == ZERO_DATE && format == "%s" { "0".into() } else { t });
        }
        Some(format_beijing(self.moment(name), format))
    }
}

fn field_slot<'s>(f: &'s RecordField, record: &'s str, join_part: bool) -> Slot<'s> {
    Slot { name: &f.name, doc: f.doc.as_deref().unwrap_or(""), record, optional: false, join_part }
}

/// How often an optional time named `name` is unset: the milestone table, else a milestone
/// word's rate; never for a record's main times.
fn unset_rate(name: &str) -> f64 {
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
enum Dec {
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

fn decimal_meaning(name: &str, doc: &str, scale: u32) -> Dec {
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
enum Int {
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

fn integer_meaning(name: &str) -> Int {
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
enum Text {
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
enum Blank {
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
    fn blank(self) -> Blank {
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
fn text_meaning(n: &str, record: &str, doc: &str) -> Text {
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
fn doc_no(n: &str, record: &str) -> Text {
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

/// Upper-case initials of a snake_case name, a code's prefix: `merchant_no` → `MN`.
fn initials(name: &str) -> String {
    name.split('_').filter_map(|w| w.chars().next()).collect::<String>().to_ascii_uppercase()
}

fn digits(rng: &mut SimRng, n: usize) -> String {
    (0..n).map(|_| char::from(b'0' + rng.below(10) as u8)).collect()
}

/// `v` given in `from` fractional digits, expressed in `to` (truncating extra digits).
fn rescale(v: u128, from: u32, to: u32) -> u128 {
    if to >= from { v * 10u128.pow(to - from) } else { v / 10u128.pow(from - to) }
}

/// Text for the unscaled value `u` at `scale`, kept within `precision` digits.
fn fit(neg: bool, u: u128, scale: u32, precision: u32) -> String {
    fixed(neg, u % 10u128.pow(precision.min(38)), scale)
}

fn fixed(neg: bool, u: u128, scale: u32) -> String {
    let sign = if neg && u != 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{u}");
    }
    let p = 10u128.pow(scale);
    format!("{sign}{}.{:0width$}", u / p, u % p, width = scale as usize)
}

/// Decimal text with exactly `scale` fractional digits: often zero, sometimes at full
/// precision, occasionally negative.
pub fn decimal_text(rng: &mut SimRng, precision: u32, scale: u32) -> String {
    let int_digits = precision.saturating_sub(scale).clamp(1, 15);
    let int_part: u64 = match rng.below(10) {
        // A decimal with no integer digits (precision == scale) holds fractions only.
        _ if precision <= scale => 0,
        0 | 1 => 0,
        2 => 10u64.pow(int_digits - 1) + rng.below(9 * 10u64.pow(int_digits - 1)),
        _ => rng.below(10u64.pow(int_digits.min(4))),
    };
    let zero = int_part == 0 && rng.chance(0.7);
    let frac = if zero || scale == 0 { 0 } else { rng.below(10u64.pow(scale.min(18))) };
    let sign = if !zero && rng.chance(0.05) { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac:0width$}", width = scale as usize)
    }
}

/// Text, or a JSON number with exactly that text (serde_json keeps number text verbatim).
fn number(text: String, style: Style) -> Value {
    if style.numbers_as_json { serde_json::from_str(&text).unwrap_or(Value::String(text)) } else { Value::String(text) }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::OnceLock;

    use chrono::TimeZone;
    use tidemark_engine::avro::RecordCodec;
    use tidemark_engine::avro::decimal::unscaled;

    use super::*;
    use crate::domain::time::{VendorTime, parse_vendor_time};

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
            if let Err(e) = codec.encode(&rec, &mut out) {
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
        let may = |n: &str| {
            ["adjust", "change", "profit", "balance", "discount", "refund", "diff"].iter().any(|w| n.contains(w))
        };
        let never = |n: &str| {
            ["price", "paid", "fee", "num", "count", "weight", "tax"].iter().any(|w| n.contains(w)) && !may(n)
        };
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
}
