//! The schema-driven JSON→Avro binary transcoder: vendor text types in, Avro logical types out.

use apache_avro::schema::{InnerDecimalSchema, Schema};
use std::borrow::Cow;

use crate::domain::json::{Json, Object};

use super::SchemaError;
use super::decimal;
use crate::domain::time::{VendorTime, parse_vendor_time};

/// A record that does not fit its schema: the JSON path of the field and what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("field `{path}`: {reason}")]
pub struct EncodeError {
    pub path: String,
    pub reason: String,
}

impl EncodeError {
    /// The same error one level out: `step` (`.field`, `[3]`, `$`) goes before its path.
    pub(crate) fn under(mut self, step: std::fmt::Arguments<'_>) -> EncodeError {
        self.path.insert_str(0, &step.to_string());
        self
    }
}

/// An error at the value being written; the levels above add their steps.
fn fail(reason: String) -> EncodeError {
    EncodeError { path: String::new(), reason }
}

/// A compiled schema: what to write for each JSON value.
#[derive(Debug)]
pub(crate) enum Plan {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    Decimal {
        scale: u32,
        precision: u32,
    },
    Date,
    TimestampMillis,
    TimestampMicros,
    /// `["null", T]`: JSON null, a missing field, and (for non-strings) empty text or a
    /// vendor zero date are written as null.
    Optional(Box<Plan>),
    Record(RecordPlan),
    Array(Box<Plan>),
    Enum(Vec<String>),
}

/// A record's fields in schema order, plus the order to find them in a JSON object.
#[derive(Debug)]
pub(crate) struct RecordPlan {
    fields: Vec<Field>,
    /// Indexes of the fields read from the JSON field of the same name, sorted by that name.
    /// serde_json objects iterate sorted by key, so one merged walk finds them all: far fewer
    /// key comparisons than a map lookup per field.
    by_name: Vec<usize>,
}

/// Records with at most this many fields are located by the merged walk (on the stack).
const MERGED_FIELDS: usize = 64;

impl RecordPlan {
    /// A record: each field found by name (one merged walk over the object for small
    /// records), derived from joined parts, or defaulted when missing and optional.
    #[inline]
    fn encode(&self, v: &Json<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let rec = self;
        let obj = match v {
            Json::Object(o) => o,
            other => return Err(fail(format!("expected an object, got {}", short(other)))),
        };
        let mut found = [None; MERGED_FIELDS];
        let merged = rec.fields.len() <= MERGED_FIELDS;
        if merged {
            rec.locate(obj, &mut found);
        }
        for (i, Field { name, from, plan }) in rec.fields.iter().enumerate() {
            let joined;
            let value = match from {
                FieldSource::Same if merged => found[i],
                FieldSource::Same => obj.get(name),
                FieldSource::Join(parts) => {
                    joined = join_parts(obj, parts);
                    joined.as_ref()
                }
            };
            let res = match value {
                Some(fv) => plan.encode(fv, out),
                None => match plan {
                    Plan::Optional(_) | Plan::Null => {
                        write_long(out, 0);
                        Ok(())
                    }
                    Plan::Array(_) => {
                        write_long(out, 0);
                        Ok(())
                    }
                    _ => Err(fail("missing required field".into())),
                },
            };
            res.map_err(|e| e.under(format_args!(".{name}")))?;
        }
        Ok(())
    }

    fn new(fields: Vec<Field>) -> RecordPlan {
        let mut by_name: Vec<usize> =
            (0..fields.len()).filter(|&i| matches!(fields[i].from, FieldSource::Same)).collect();
        by_name.sort_by(|&a, &b| fields[a].name.cmp(&fields[b].name));
        RecordPlan { fields, by_name }
    }

    /// Puts each `Same` field's value (if present) at its index in `found`.
    fn locate<'v, 'a>(&self, obj: &'v Object<'a>, found: &mut [Option<&'v Json<'a>>]) {
        let mut entries = obj.iter();
        let mut current = entries.next();
        for &i in &self.by_name {
            let name = self.fields[i].name.as_str();
            while let Some((k, v)) = current {
                match k.cmp(name) {
                    std::cmp::Ordering::Less => current = entries.next(),
                    std::cmp::Ordering::Equal => {
                        found[i] = Some(v);
                        current = entries.next();
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
    }
}

/// One record field: its name, where its value comes from, and how to write it.
#[derive(Debug)]
pub(crate) struct Field {
    name: String,
    from: FieldSource,
    plan: Plan,
}

/// Where a field's JSON value comes from.
#[derive(Debug)]
enum FieldSource {
    /// The JSON field of the same name.
    Same,
    /// The named JSON fields' text joined by a space (schema attribute `tidemark.join`),
    /// e.g. TOP's `biz_date` + `trade_time` into one event time. Null if any part is missing.
    Join(Vec<String>),
}

fn unsupported(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported { path: path.to_owned(), reason: reason.into() }
}

impl Plan {
    pub(crate) fn compile(schema: &Schema, path: &str) -> Result<Plan, SchemaError> {
        Ok(match schema {
            Schema::Null => Plan::Null,
            Schema::Boolean => Plan::Boolean,
            Schema::Int => Plan::Int,
            Schema::Long => Plan::Long,
            Schema::Float => Plan::Float,
            Schema::Double => Plan::Double,
            Schema::String => Plan::String,
            Schema::Bytes => Plan::Bytes,
            Schema::Date => Plan::Date,
            Schema::TimestampMillis => Plan::TimestampMillis,
            Schema::TimestampMicros => Plan::TimestampMicros,
            Schema::Decimal(d) => {
                if !matches!(d.inner, InnerDecimalSchema::Bytes) {
                    return Err(unsupported(path, "decimal must be bytes-backed"));
                }
                Plan::Decimal { scale: d.scale as u32, precision: d.precision as u32 }
            }
            Schema::Union(u) => match u.variants() {
                [Schema::Null, inner] if !matches!(inner, Schema::Null) => {
                    Plan::Optional(Box::new(Plan::compile(inner, path)?))
                }
                _ => return Err(unsupported(path, "only [\"null\", T] unions are supported")),
            },
            Schema::Record(r) => Plan::Record(RecordPlan::new(
                r.fields
                    .iter()
                    .map(|f| {
                        let fpath = format!("{path}.{}", f.name);
                        let from = match f.custom_attributes.get("tidemark.join") {
                            None => FieldSource::Same,
                            Some(serde_json::Value::Array(parts)) if !parts.is_empty() => FieldSource::Join(
                                parts
                                    .iter()
                                    .map(|p| p.as_str().map(str::to_owned))
                                    .collect::<Option<_>>()
                                    .ok_or_else(|| unsupported(&fpath, "tidemark.join must list field names"))?,
                            ),
                            Some(_) => return Err(unsupported(&fpath, "tidemark.join must list field names")),
                        };
                        Ok(Field { name: f.name.clone(), from, plan: Plan::compile(&f.schema, &fpath)? })
                    })
                    .collect::<Result<_, SchemaError>>()?,
            )),
            Schema::Array(a) => Plan::Array(Box::new(Plan::compile(&a.items, &format!("{path}[]"))?)),
            Schema::Enum(e) => Plan::Enum(e.symbols.clone()),
            other => {
                return Err(unsupported(
                    path,
                    format!("{:?} is not supported", apache_avro::schema::SchemaKind::from(other)),
                ));
            }
        })
    }

    /// Writes `v` into `out`. An error's path is relative to `v`: each level out prepends its
    /// step, so the path costs nothing while records fit.
    pub(crate) fn encode(&self, v: &Json<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Plan::Null => match v {
                Json::Null => Ok(()),
                other => Err(fail(format!("expected null, got {}", short(other)))),
            },
            Plan::Boolean => {
                let b = match v {
                    Json::Bool(b) => *b,
                    Json::String(s) if s == "1" || s.eq_ignore_ascii_case("true") => true,
                    Json::String(s) if s == "0" || s.eq_ignore_ascii_case("false") => false,
                    Json::Number(n) if n.parse::<i64>().ok() == Some(1) => true,
                    Json::Number(n) if n.parse::<i64>().ok() == Some(0) => false,
                    other => return Err(fail(format!("expected a boolean, got {}", short(other)))),
                };
                out.push(b as u8);
                Ok(())
            }
            Plan::Int => {
                let n = integer(v).ok_or_else(|| fail(format!("expected an integer, got {}", short(v))))?;
                let n = i32::try_from(n).map_err(|_| fail(format!("{n} does not fit an int")))?;
                write_long(out, n as i64);
                Ok(())
            }
            Plan::Long => {
                let n = integer(v).ok_or_else(|| fail(format!("expected an integer, got {}", short(v))))?;
                write_long(out, n);
                Ok(())
            }
            Plan::Float | Plan::Double => {
                let f = match v {
                    Json::Number(n) => as_f64(n),
                    Json::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| fail(format!("expected a number, got {}", short(v))))?;
                if matches!(self, Plan::Float) {
                    out.extend_from_slice(&(f as f32).to_le_bytes());
                } else {
                    out.extend_from_slice(&f.to_le_bytes());
                }
                Ok(())
            }
            Plan::String | Plan::Bytes => {
                let s: &str = match v {
                    Json::String(s) | Json::Number(s) => s,
                    Json::Bool(b) => {
                        if *b {
                            "true"
                        } else {
                            "false"
                        }
                    }
                    other => return Err(fail(format!("expected text, got {}", short(other)))),
                };
                write_bytes(out, s.as_bytes());
                Ok(())
            }
            Plan::Decimal { scale, precision } => {
                let text: &str = match v {
                    // A number's text as sent, so this is exact too.
                    Json::String(s) | Json::Number(s) => s,
                    other => return Err(fail(format!("expected a decimal, got {}", short(other)))),
                };
                let unscaled = decimal::unscaled(text, *scale, *precision)
                    .map_err(|why| fail(format!("{why} in decimal {text:?}")))?;
                write_bytes(out, &decimal::to_be_bytes_minimal(unscaled));
                Ok(())
            }
            Plan::Date | Plan::TimestampMillis | Plan::TimestampMicros => {
                let at = match time_of(v) {
                    Some(VendorTime::At(t)) => t,
                    Some(VendorTime::Unset) => {
                        return Err(fail(format!("required time is unset ({})", short(v))));
                    }
                    None => return Err(fail(format!("expected a time, got {}", short(v)))),
                };
                let n = match self {
                    Plan::Date => at.timestamp().div_euclid(86_400),
                    Plan::TimestampMillis => at.timestamp_millis(),
                    _ => at.timestamp_micros(),
                };
                write_long(out, n);
                Ok(())
            }
            Plan::Optional(inner) => encode_optional(inner, v, out),
            Plan::Record(rec) => rec.encode(v, out),
            Plan::Array(items) => {
                let arr = match v {
                    Json::Array(a) => a.as_slice(),
                    Json::Null => &[],
                    other => return Err(fail(format!("expected a list, got {}", short(other)))),
                };
                if !arr.is_empty() {
                    write_long(out, arr.len() as i64);
                    for (i, item) in arr.iter().enumerate() {
                        items.encode(item, out).map_err(|e| e.under(format_args!("[{i}]")))?;
                    }
                }
                write_long(out, 0);
                Ok(())
            }
            Plan::Enum(symbols) => {
                let s = v.as_str().ok_or_else(|| fail(format!("expected a symbol, got {}", short(v))))?;
                let i = symbols
                    .iter()
                    .position(|x| x == s)
                    .ok_or_else(|| fail(format!("{s:?} is not one of {}", symbols.join(", "))))?;
                write_long(out, i as i64);
                Ok(())
            }
        }
    }
}

/// The text of `parts` joined by spaces; `None` if any part is missing or empty.
fn join_parts(obj: &Object<'_>, parts: &[String]) -> Option<Json<'static>> {
    let mut out = String::new();
    for p in parts {
        let text = match obj.get(p)? {
            Json::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
            Json::Number(n) => n.to_string(),
            _ => return None,
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&text);
    }
    Some(Json::String(Cow::Owned(out)))
}

/// A number's value as a float, as serde_json's `Number::as_f64` reads its kept text.
fn as_f64(n: &str) -> Option<f64> {
    n.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn integer(v: &Json<'_>) -> Option<i64> {
    match v {
        Json::Number(n) => n.parse().ok(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn time_of(v: &Json<'_>) -> Option<VendorTime> {
    match v {
        Json::String(s) => parse_vendor_time(s),
        Json::Number(n) => n.parse().ok().and_then(chrono::DateTime::from_timestamp_millis).map(VendorTime::At),
        _ => None,
    }
}

/// A value for an error message, cut short so a huge record never floods the logs.
fn short(v: &Json<'_>) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 { format!("{}…", s.chars().take(80).collect::<String>()) } else { s }
}

/// Avro `long`/`int`: zig-zag, then base-128 varint.
pub fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Whether `s` is empty or only white space, as `s.trim().is_empty()` says; most values start
/// with a visible ASCII character, which settles it without the Unicode-aware scan (2 % of the
/// worker's CPU on account checks, run for every optional text field).
#[inline]
fn blank(s: &str) -> bool {
    match s.as_bytes().first() {
        None => true,
        Some(&b) if b.is_ascii() && !(b as char).is_whitespace() => false,
        Some(_) => s.trim().is_empty(),
    }
}

/// An optional value (`["null", T]`): vendor nulls, empty text for non-text types and unset
/// times (`0000-00-00 00:00:00`) are Avro null; anything else is `T`.
#[inline]
fn encode_optional(inner: &Plan, v: &Json<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let is_null = match v {
        Json::Null => true,
        Json::String(s) if blank(s) => !matches!(*inner, Plan::String | Plan::Bytes),
        _ => {
            matches!(*inner, Plan::Date | Plan::TimestampMillis | Plan::TimestampMicros)
                && time_of(v) == Some(VendorTime::Unset)
        }
    };
    if is_null {
        write_long(out, 0);
        Ok(())
    } else {
        write_long(out, 1);
        inner.encode(v, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn zigzag_varints_match_the_spec_examples() {
        for (n, bytes) in
            [(0i64, vec![0x00]), (-1, vec![0x01]), (1, vec![0x02]), (-64, vec![0x7F]), (64, vec![0x80, 0x01])]
        {
            let mut out = Vec::new();
            write_long(&mut out, n);
            assert_eq!(out, bytes, "{n}");
        }
    }

    /// Encodes `record` against a record schema of optional string fields named `names`
    /// (in that order), and what the Avro spec says those bytes must be.
    fn encoded_and_expected(names: &[String], record: &Value) -> (Vec<u8>, Vec<u8>) {
        let fields: Vec<String> =
            names.iter().map(|n| format!(r#"{{"name":"{n}","type":["null","string"],"default":null}}"#)).collect();
        let schema =
            Schema::parse_str(&format!(r#"{{"type":"record","name":"r","fields":[{}]}}"#, fields.join(","))).unwrap();
        let plan = Plan::compile(&schema, "r").unwrap();
        let mut out = Vec::new();
        let text = record.to_string();
        plan.encode(&Json::parse(&text).unwrap(), &mut out).unwrap();
        let mut expected = Vec::new();
        for n in names {
            match record.get(n).and_then(Value::as_str) {
                Some(text) => {
                    write_long(&mut expected, 1);
                    write_bytes(&mut expected, text.as_bytes());
                }
                None => write_long(&mut expected, 0),
            }
        }
        (out, expected)
    }

    #[test]
    fn json_objects_iterate_sorted_by_key_as_the_merged_walk_needs() {
        let v = Json::parse(r#"{"b":1,"a":2,"c":3,"aa":4}"#).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "aa", "b", "c"]);
    }

    #[test]
    fn fields_are_found_whatever_the_schema_order_and_with_gaps() {
        let names: Vec<String> = ["zeta", "alpha", "mid", "absent", "al", "zz"].iter().map(|s| s.to_string()).collect();
        let record = serde_json::json!({"alpha": "a", "al": "b", "extra": "x", "mid": "m", "zeta": "z", "a": "y"});
        let (out, expected) = encoded_and_expected(&names, &record);
        assert_eq!(out, expected);
    }

    #[test]
    fn records_wider_than_the_merged_walk_encode_the_same_way() {
        let names: Vec<String> = (0..MERGED_FIELDS + 6).rev().map(|i| format!("f{i:03}")).collect();
        let record =
            Value::Object(names.iter().step_by(2).map(|n| (n.clone(), Value::String(n.to_uppercase()))).collect());
        let (out, expected) = encoded_and_expected(&names, &record);
        assert_eq!(out, expected);
    }

    #[test]
    fn blank_agrees_with_trim_on_every_kind_of_white_space() {
        // Unicode white space that is not ASCII white space (vertical tab, NEL, ideographic
        // space, the 全角 space vendors' forms leave) must count as blank, as `trim` says.
        let cases =
            ["", " ", "\t\n", "\u{0B}", "\u{85}", "\u{3000}", "\u{3000}x", " x", "x", "0", "\u{0B}1", "é", "\u{200B}"];
        for s in cases {
            assert_eq!(blank(s), s.trim().is_empty(), "{s:?}");
        }
    }
}
