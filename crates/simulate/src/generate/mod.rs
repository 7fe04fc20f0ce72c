//! Vendor-style JSON records generated from any Avro schema: each field's value follows what
//! its name (and doc) says it means, with the awkward values real vendor data has, at the
//! rates real data has them.

mod meaning;
mod plan;
mod values;
mod vocabulary;

#[cfg(test)]
mod tests;

use apache_avro::schema::Schema;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use meaning::doc_codes;
pub use plan::Plan;
pub use vocabulary::{SHOPS, WAREHOUSES};

use crate::rng::SimRng;

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

/// How a vendor writes values on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Decimals and integers as JSON numbers (the finance API) instead of text (the rest).
    pub numbers_as_json: bool,
}

/// A record for `schema` (a record schema), its times spread before `at` (its last change).
/// Compiles the schema each call: to make many records, hold a [`Plan`] instead.
pub fn record(schema: &Schema, rng: &mut SimRng, at: DateTime<Utc>, style: Style) -> Value {
    Plan::new(schema).record(rng, at, style)
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

/// Text for the unscaled value `u` at `scale`: exactly `scale` fractional digits, `-` unless zero.
pub(crate) fn fixed(neg: bool, u: u128, scale: u32) -> String {
    let sign = if neg && u != 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{u}");
    }
    let p = 10u128.pow(scale);
    format!("{sign}{}.{:0width$}", u / p, u % p, width = scale as usize)
}
