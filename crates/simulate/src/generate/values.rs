//! Making one record's values by walking a [`Plan`](super::Plan): the record's story (its
//! times), the things it is about (shop, goods, place) and each field's value.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::meaning::{Dec, Int, Text};
use super::plan::{Codes, Node, Plan, TextSpec, TimeSpec, When};
use super::vocabulary::*;
use super::{
    EMOJI_RATE, EMPTY_LINES_RATE, EMPTY_SCALAR_LIST_RATE, FOREIGN_CURRENCY_RATE, FRACTIONAL_QUANTITY_RATE,
    FULL_PRECISION_RATE, FULL_SCALE_RATE, NEGATIVE_MONEY_RATE, Style, ZERO_DATE, ZERO_MONEY_RATE, decimal_text, fixed,
    number,
};
use crate::domain::time::{DATETIME, format_beijing};
use crate::rng::SimRng;

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

/// One record in the making.
pub(super) struct Gen<'r> {
    rng: &'r mut SimRng,
    at: DateTime<Utc>,
    start: DateTime<Utc>,
    style: Style,
    picks: Picks,
}

impl<'r> Gen<'r> {
    pub(super) fn new(rng: &'r mut SimRng, at: DateTime<Utc>, style: Style) -> Self {
        // The record's story began up to a week before its last change.
        let start = at - Duration::seconds(3_600 + rng.below(7 * 86_400) as i64);
        let picks = Picks::new(rng);
        Gen { rng, at, start, style, picks }
    }

    pub(super) fn value(&mut self, node: &Node) -> Value {
        match node {
            Node::Record { own_good, fields } => {
                let outer = self.picks;
                if *own_good {
                    self.picks.goods = self.rng.below(GOODS.len() as u64) as usize;
                }
                let mut o = Map::new();
                for (name, field) in fields {
                    o.insert(name.clone(), self.value(field));
                }
                self.picks = outer;
                Value::Object(o)
            }
            Node::List { lines, item } => {
                let n = if *lines {
                    if self.rng.chance(EMPTY_LINES_RATE) { 0 } else { self.line_count() }
                } else if self.rng.chance(EMPTY_SCALAR_LIST_RATE) {
                    0
                } else {
                    1 + self.rng.below(3)
                };
                Value::Array((0..n).map(|_| self.value(item)).collect())
            }
            Node::Unused { text, number: true } => self.number(text.clone()),
            Node::Unused { text, number: false } => Value::from(text.as_str()),
            Node::Decimal { meaning, precision, scale, blank } => {
                if *blank > 0.0 && self.rng.chance(*blank) {
                    return Value::from("");
                }
                let text = self.decimal(*meaning, *precision, *scale);
                self.number(text)
            }
            Node::Integer { meaning, int32, blank, codes } => {
                if *blank > 0.0 && self.rng.chance(*blank) {
                    return Value::from("");
                }
                let n = self.integer(*meaning, codes, *int32);
                self.number(n.to_string())
            }
            Node::Time(t) => Value::from(self.time(t)),
            Node::TextTime { join_part, format, time } => Value::from(self.text_time(*join_part, format, time)),
            Node::Text(t) => Value::from(self.text(t)),
            Node::Float => {
                let text = format!("{}.{}", self.rng.below(1000), self.rng.below(100));
                self.number(text)
            }
            Node::Boolean => Value::from(if self.rng.chance(0.2) { "1" } else { "0" }),
            Node::Enum(symbols) => Value::from(self.rng.pick(symbols).clone()),
            Node::Null => Value::Null,
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

    /// Beijing time text: unset at its rate, else at its place in the record's story.
    fn time(&mut self, t: &TimeSpec) -> String {
        if t.unset > 0.0 && self.rng.chance(t.unset) {
            return ZERO_DATE.into();
        }
        let when = match t.when {
            When::Produced => self.start - Duration::days(30 + self.rng.below(335) as i64),
            When::Expires => self.start + Duration::days(180 + self.rng.below(550) as i64),
            When::Step => self.moment(t.rank),
        };
        format_beijing(when, t.format)
    }

    /// When a step at `rank` in the record's story happened (anywhere when `None`): created
    /// first, and the last change at `at`.
    fn moment(&mut self, rank: Option<f64>) -> DateTime<Utc> {
        let span = (self.at - self.start).num_seconds().max(1);
        let rank = rank.unwrap_or_else(|| self.rng.below(1000) as f64 / 1000.0);
        if rank >= 1.0 {
            return self.at;
        }
        // A little after its step, never after the last change.
        let jitter = self.rng.below((span / 10).max(1) as u64) as i64;
        (self.start + Duration::seconds((span as f64 * rank) as i64 + jitter)).min(self.at)
    }

    /// A time sent as text in `format`. Join parts are the record's own instant, so the time
    /// tidemark joins from them is `at`.
    fn text_time(&mut self, join_part: bool, format: &str, time: &TimeSpec) -> String {
        if join_part {
            return format_beijing(self.at, format);
        }
        let t = self.time(time);
        if t == ZERO_DATE || format == DATETIME {
            return if t == ZERO_DATE && format == "%s" { "0".into() } else { t };
        }
        format_beijing(self.moment(time.rank), format)
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

    fn integer(&mut self, m: Int, codes: &Codes, int32: bool) -> i64 {
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
                // Special values are rare.
                if codes.mask && rng.chance(0.8) {
                    0
                } else if !codes.special.is_empty() && rng.chance(0.05) {
                    *rng.pick(&codes.special)
                } else if !codes.listed.is_empty() && rng.chance(0.9) {
                    *rng.pick(&codes.listed)
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

    fn text(&mut self, t: &TextSpec) -> String {
        if t.blank > 0.0 && self.rng.chance(t.blank) {
            return String::new();
        }
        let p = self.picks;
        let goods = GOODS[p.goods];
        let place = PLACES[p.place];
        let carrier = CARRIERS[p.carrier];
        let start = self.start;
        let day = || format_beijing(start, "%Y%m%d");
        let rng = &mut *self.rng;
        match t.meaning {
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
                if t.codes.is_empty() {
                    rng.below(4).to_string()
                } else {
                    rng.pick(&t.codes).to_string()
                }
            }
            Text::Platform => rng.pick(PLATFORMS).to_string(),
            Text::PlatformTid => format!("{}{}", 1 + rng.below(9), digits(rng, 18)),
            Text::PlatformItemId => format!("{}{}", 5 + rng.below(5), digits(rng, 11)),
            Text::PayNo => format!("{}2200{}", day(), digits(rng, 16)),
            Text::DocNo(prefix) => format!("{prefix}{}{:05}", day(), rng.below(100_000)),
            Text::BatchNo => format!("PC{}{:02}", day(), 1 + rng.below(20)),
            Text::PositionNo => {
                format!("{}-{:02}-{:02}", rng.pick(&["A", "B", "C"]), 1 + rng.below(20), 1 + rng.below(6))
            }
            Text::Code => format!("{}{}", t.tag, digits(rng, 6)),
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
                    format!("{}-{:05}", t.tag, rng.below(100_000))
                }
            }
        }
    }
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

impl Plan {
    /// A record, its times spread before `at` (its last change).
    pub fn record(&self, rng: &mut SimRng, at: DateTime<Utc>, style: Style) -> Value {
        Gen::new(rng, at, style).value(&self.root)
    }
}
