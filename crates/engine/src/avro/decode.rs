//! Reading values back: framed Avro values decoded into readable JSON (decimals as text,
//! timestamps as Beijing time) for inspection and the demo.

use apache_avro::schema::Schema;
use apache_avro::types::Value as Avro;
use serde_json::{Value, json};

use crate::domain::time::beijing;

/// Decodes one Avro datum (the value after its framing) written with `schema`.
pub fn decode_datum(schema: &Schema, mut datum: &[u8]) -> Result<Value, String> {
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema).build().map_err(|e| e.to_string())?;
    let v = reader.read_value(&mut datum).map_err(|e| e.to_string())?;
    if !datum.is_empty() {
        return Err(format!("{} bytes left over after the datum", datum.len()));
    }
    Ok(readable(&v, schema))
}

/// Renders an Avro value as JSON a person can read, guided by its schema.
pub fn readable(v: &Avro, schema: &Schema) -> Value {
    match (v, schema) {
        (Avro::Union(i, inner), Schema::Union(u)) => readable(inner, &u.variants()[*i as usize]),
        (Avro::Record(fields), Schema::Record(r)) => Value::Object(
            fields.iter().zip(&r.fields).map(|((name, fv), f)| (name.clone(), readable(fv, &f.schema))).collect(),
        ),
        (Avro::Array(items), Schema::Array(a)) => Value::Array(items.iter().map(|x| readable(x, &a.items)).collect()),
        (Avro::Decimal(d), Schema::Decimal(ds)) => {
            let bytes: Vec<u8> = d.try_into().unwrap_or_default();
            json!(decimal_text(&bytes, ds.scale as u32))
        }
        (Avro::TimestampMillis(ms), _) => chrono::DateTime::from_timestamp_millis(*ms)
            .map(|t| json!(t.with_timezone(&beijing()).format("%Y-%m-%d %H:%M:%S%:z").to_string()))
            .unwrap_or(Value::Null),
        (Avro::Null, _) => Value::Null,
        (Avro::Boolean(b), _) => json!(b),
        (Avro::Int(n), _) | (Avro::Date(n), _) => json!(n),
        (Avro::Long(n), _) => json!(n),
        (Avro::Float(f), _) => json!(f),
        (Avro::Double(f), _) => json!(f),
        (Avro::String(s), _) | (Avro::Enum(_, s), _) => json!(s),
        (Avro::Bytes(b), _) => json!(String::from_utf8_lossy(b)),
        (other, _) => json!(format!("{other:?}")),
    }
}

/// Two's-complement big-endian unscaled bytes as decimal text at `scale`.
pub fn decimal_text(bytes: &[u8], scale: u32) -> String {
    let mut v: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
    for b in bytes {
        v = (v << 8) | *b as i128;
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded =
        if digits.len() <= scale { format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits) } else { digits };
    let (i, f) = padded.split_at(padded.len() - scale);
    let sign = if neg { "-" } else { "" };
    if scale == 0 { format!("{sign}{i}") } else { format!("{sign}{i}.{f}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_round_trips_the_encoder() {
        for text in ["368.0000", "0.0000", "-0.5000", "123456789012345.6789", "-499.0001"] {
            let unscaled = super::super::decimal::unscaled(text, 4, 19).unwrap();
            let bytes = super::super::decimal::to_be_bytes_minimal(unscaled);
            assert_eq!(decimal_text(&bytes, 4), text);
        }
    }
}
