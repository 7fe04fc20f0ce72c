//! Vendor-style JSON records generated from an Avro schema: every field filled, with the
//! awkward values real vendor data has (zero dates, `0.0000`, 15-digit amounts, negative
//! fees, Chinese text, empty optional fields, zero-length detail lists).

use apache_avro::schema::Schema;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::rng::SimRng;
use crate::domain::time::{DATETIME, format_beijing};

const ZERO_DATE: &str = "0000-00-00 00:00:00";
const WORDS: &[&str] = &["旗舰店", "华东仓", "退货", "拿铁", "测试", "天猫", "京东", "盒马", "c-test", "SKU", "备注 ✓"];

/// How a vendor writes values on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Decimals and integers as JSON numbers (the finance API) instead of text (the rest).
    pub numbers_as_json: bool,
}

/// A record for `schema` (a record schema), its times spread before `at`.
pub fn record(schema: &Schema, rng: &mut SimRng, at: DateTime<Utc>, style: Style) -> Value {
    value(schema, "", rng, at, style)
}

fn value(schema: &Schema, name: &str, rng: &mut SimRng, at: DateTime<Utc>, style: Style) -> Value {
    match schema {
        Schema::Record(r) => {
            let mut o = Map::new();
            for f in &r.fields {
                // Derived fields are computed by tidemark, never sent by the vendor.
                if f.custom_attributes.contains_key("tidemark.join") {
                    continue;
                }
                o.insert(f.name.clone(), value(&f.schema, &f.name, rng, at, style));
            }
            Value::Object(o)
        }
        Schema::Union(u) => {
            let inner = u.variants().iter().find(|s| !matches!(s, Schema::Null)).unwrap_or(&Schema::Null);
            // Vendors leave optional fields empty now and then.
            if rng.chance(0.06) { Value::String(String::new()) } else { value(inner, name, rng, at, style) }
        }
        Schema::Array(a) => {
            let n = if rng.chance(0.2) { 0 } else { 1 + rng.below(4) };
            Value::Array((0..n).map(|_| value(&a.items, name, rng, at, style)).collect())
        }
        Schema::Decimal(d) => number(decimal_text(rng, d.precision as u32, d.scale as u32), style),
        Schema::TimestampMillis | Schema::TimestampMicros | Schema::Date => {
            if rng.chance(0.3) {
                Value::from(ZERO_DATE)
            } else {
                Value::from(format_beijing(at - Duration::seconds(rng.below(3 * 86_400) as i64), DATETIME))
            }
        }
        Schema::Int => number(rng.below(6).to_string(), style),
        Schema::Long => number((100_000 + rng.below(900_000)).to_string(), style),
        Schema::Boolean => Value::from(rng.below(2).to_string()),
        Schema::Enum(e) => Value::from(rng.pick(&e.symbols).clone()),
        _ => {
            if rng.chance(0.5) {
                Value::from(format!("{}{}", rng.pick(WORDS), rng.below(1000)))
            } else {
                Value::from(format!("{}-{:05}", name.replace('_', "-"), rng.below(100_000)))
            }
        }
    }
}

/// Decimal text with exactly `scale` fractional digits: often zero, sometimes at full
/// precision, occasionally negative.
pub fn decimal_text(rng: &mut SimRng, precision: u32, scale: u32) -> String {
    let int_digits = precision.saturating_sub(scale).clamp(1, 15);
    let int_part: u64 = match rng.below(10) {
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
    use super::*;

    #[test]
    fn decimals_have_exactly_their_scale_and_fit_their_precision() {
        let mut rng = SimRng::new(1);
        for _ in 0..2000 {
            let t = decimal_text(&mut rng, 19, 4);
            let (i, f) = t.trim_start_matches('-').split_once('.').unwrap();
            assert_eq!(f.len(), 4, "{t}");
            assert!(i.len() <= 15, "{t}");
            assert!(tidemark_engine::avro::decimal::unscaled(&t, 4, 19).is_ok(), "{t}");
        }
    }

    #[test]
    fn json_numbers_keep_their_text() {
        assert_eq!(number("1000.00".into(), Style { numbers_as_json: true }).to_string(), "1000.00");
    }
}
