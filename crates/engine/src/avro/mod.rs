//! Avro values for Kafka: schemas from `schemas/`, the JSON→Avro transcoder, and the framing
//! in front of each datum (Avro single-object encoding, or the Confluent wire format).

pub mod canonical;
pub mod decimal;
pub mod decode;
pub mod encode;
pub mod framed;

use std::sync::Arc;

use apache_avro::Schema;

use crate::domain::json::Json;

pub use encode::EncodeError;
use encode::Plan;

/// Why a schema cannot drive the transcoder.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid avro schema: {0}")]
    Parse(String),
    #[error("unsupported avro schema construct at `{path}`: {reason}")]
    Unsupported { path: String, reason: String },
}

/// What precedes the Avro datum in a Kafka value, telling a reader the writer's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Avro single-object encoding: `C3 01`, then the CRC-64-AVRO fingerprint of the schema's
    /// Parsing Canonical Form, little-endian.
    SingleObject { fingerprint: u64 },
    /// Confluent wire format: `00`, then the schema registry's id, big-endian.
    Confluent { schema_id: u32 },
}

impl Framing {
    /// The bytes written before every datum.
    pub fn prefix(self) -> Vec<u8> {
        match self {
            Framing::SingleObject { fingerprint } => {
                let mut p = vec![0xC3, 0x01];
                p.extend_from_slice(&fingerprint.to_le_bytes());
                p
            }
            Framing::Confluent { schema_id } => {
                let mut p = vec![0x00];
                p.extend_from_slice(&schema_id.to_be_bytes());
                p
            }
        }
    }

    /// Splits a value into its framing and datum; `None` if it has neither framing.
    pub fn split(value: &[u8]) -> Option<(Framing, &[u8])> {
        match value {
            [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
                let fp = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                Some((Framing::SingleObject { fingerprint: fp }, &rest[8..]))
            }
            [0x00, rest @ ..] if rest.len() >= 4 => {
                let id = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
                Some((Framing::Confluent { schema_id: id }, &rest[4..]))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Framing::SingleObject { fingerprint } => write!(f, "single-object fingerprint {fingerprint:#018x}"),
            Framing::Confluent { schema_id } => write!(f, "schema registry id {schema_id}"),
        }
    }
}

/// The sorted top-level JSON names a record schema reads: each field's own name and the
/// parts a `tidemark.join` field is made from.
fn known_fields(schema: &Schema) -> Arc<[Box<str>]> {
    let mut names: Vec<Box<str>> = Vec::new();
    if let Schema::Record(r) = schema {
        for f in &r.fields {
            names.push(f.name.as_str().into());
            if let Some(serde_json::Value::Array(parts)) = f.custom_attributes.get("tidemark.join") {
                names.extend(parts.iter().filter_map(|p| p.as_str()).map(Box::from));
            }
        }
    }
    names.sort();
    names.dedup();
    names.into()
}

/// One record schema, compiled for transcoding vendor JSON into framed Avro values.
pub struct RecordCodec {
    schema: Schema,
    plan: Arc<Plan>,
    avsc: Arc<str>,
    fingerprint: u64,
    framing: Framing,
    prefix: Vec<u8>,
    full_name: String,
    /// The top-level JSON field names the schema reads (its fields and their `tidemark.join`
    /// parts), sorted: computed once, so finding a record's unknown fields compares keys only.
    known: Arc<[Box<str>]>,
}

impl RecordCodec {
    /// Parses `.avsc` text; the top level must be a record. Values are framed as Avro single
    /// objects until [`RecordCodec::with_framing`] says otherwise.
    pub fn from_avsc(text: &str) -> Result<Self, SchemaError> {
        let schema = Schema::parse_str(text).map_err(|e| SchemaError::Parse(e.to_string()))?;
        let full_name = match &schema {
            Schema::Record(r) => r.name.fullname(None),
            _ => {
                return Err(SchemaError::Unsupported { path: "$".into(), reason: "top level must be a record".into() });
            }
        };
        let plan = Arc::new(Plan::compile(&schema, "$")?);
        let fingerprint = canonical::fingerprint(text).map_err(|e| SchemaError::Parse(e.to_string()))?;
        let framing = Framing::SingleObject { fingerprint };
        let known = known_fields(&schema);
        Ok(RecordCodec {
            known,
            schema,
            plan,
            avsc: Arc::from(text.trim()),
            fingerprint,
            framing,
            prefix: framing.prefix(),
            full_name,
        })
    }

    /// The same schema with values framed as `framing` (e.g. once the registry gave an id).
    pub fn with_framing(&self, framing: Framing) -> RecordCodec {
        RecordCodec {
            schema: self.schema.clone(),
            plan: self.plan.clone(),
            avsc: self.avsc.clone(),
            fingerprint: self.fingerprint,
            framing,
            prefix: framing.prefix(),
            full_name: self.full_name.clone(),
            known: self.known.clone(),
        }
    }

    /// Calls `found` with each top-level field of `record` that the schema does not read
    /// (drift: the vendor sends something new). Not an error: the record still encodes.
    #[inline]
    pub fn unknown_fields<'v>(&self, record: &'v Json<'_>, mut found: impl FnMut(&'v str)) {
        let Json::Object(o) = record else { return };
        // One merged walk over two sorted lists (a record's members are sorted by key, as the
        // encoder's walk also needs): about one comparison per name, where a binary search per
        // key took five, and cost a tenth of the worker's CPU.
        use std::cmp::Ordering;
        let mut known = self.known.iter().peekable();
        for (k, _) in o.iter() {
            loop {
                match known.peek().map(|n| n.as_ref().cmp(k)) {
                    Some(Ordering::Less) => _ = known.next(),
                    Some(Ordering::Equal) => {
                        known.next();
                        break;
                    }
                    _ => {
                        found(k);
                        break;
                    }
                }
            }
        }
    }

    /// The record's full name, e.g. `tidemark.wdt.AccountCheck`; sent as a Kafka header.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Whether the record has a top-level field called `name`.
    pub fn has_field(&self, name: &str) -> bool {
        matches!(&self.schema, Schema::Record(r) if r.fields.iter().any(|f| f.name == name))
    }

    /// The `.avsc` text the codec was built from (what a schema registry is given).
    pub fn avsc(&self) -> &str {
        &self.avsc
    }

    /// The spec's CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// [`encode`](Self::encode) for a record held as a `serde_json::Value` (tools and tests):
    /// its text read as the worker reads a vendor's.
    pub fn encode_value(&self, record: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let text = record.to_string();
        let json = Json::parse(&text).map_err(|e| EncodeError { path: "$".into(), reason: e.to_string() })?;
        self.encode(&json, out)
    }

    /// Encodes one vendor JSON record as a framed Avro value, appending to `out`.
    /// On error `out` is left as it was.
    pub fn encode(&self, record: &Json<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mark = out.len();
        out.extend_from_slice(&self.prefix);
        let res = self.plan.encode(record, out).map_err(|e| e.under(format_args!("$")));
        if res.is_err() {
            out.truncate(mark);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value as Avro;
    use serde_json::json;

    const AVSC: &str = r#"{
      "type": "record", "name": "Sample", "namespace": "tidemark.test",
      "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": ["null", "int"], "default": null},
        {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4}], "default": null},
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line",
            "fields": [{"name": "qty", "type": "long"}]}}, "default": []}
      ]
    }"#;

    fn decode(codec: &RecordCodec, bytes: &[u8]) -> Vec<(String, Avro)> {
        let (framing, mut datum) = Framing::split(bytes).unwrap();
        assert_eq!(framing, codec.framing());
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(codec.schema()).build().unwrap();
        match reader.read_value(&mut datum).unwrap() {
            Avro::Record(fields) => fields,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_the_top_level_keys_the_schema_does_not_read() {
        let joined = r#"{"type": "record", "name": "J", "fields": [
            {"name": "id", "type": "string"},
            {"name": "at", "type": ["null", "string"], "default": null, "tidemark.join": ["day", "time"]}]}"#;
        let codec = RecordCodec::from_avsc(joined).unwrap();
        let text =
            json!({"id": "1", "day": "2024-01-01", "time": "10:00:00", "zeta": 1, "alpha": {"id": 2}}).to_string();
        let rec = Json::parse(&text).unwrap();
        let mut found = Vec::new();
        codec.unknown_fields(&rec, |f| found.push(f));
        // Join parts are read, nested keys are not top-level, so only the two new ones.
        assert_eq!(found, ["alpha", "zeta"]);
        let mut none = Vec::new();
        let plain = Json::parse(r#"{"id": "1", "at": null}"#).unwrap();
        codec.unknown_fields(&plain, |f| none.push(f));
        assert!(none.is_empty(), "{none:?}");
        // A framing change keeps the known set.
        let mut framed = Vec::new();
        codec.with_framing(Framing::Confluent { schema_id: 3 }).unknown_fields(&rec, |f| framed.push(f));
        assert_eq!(framed, ["alpha", "zeta"]);
    }

    #[test]
    fn apache_avro_reads_what_we_write() {
        let codec = RecordCodec::from_avsc(AVSC).unwrap();
        assert_eq!(codec.full_name(), "tidemark.test.Sample");
        let mut out = Vec::new();
        let rec = json!({"id": "店铺-1", "n": "42", "amount": "-368.5000", "at": "2024-01-01 08:00:00",
                         "lines": [{"qty": "3"}, {"qty": 4}], "ignored": true});
        codec.encode_value(&rec, &mut out).unwrap();
        assert_eq!(&out[..2], &[0xC3, 0x01]);
        let f = decode(&codec, &out);
        assert_eq!(f[0].1, Avro::String("店铺-1".into()));
        assert_eq!(f[1].1, Avro::Union(1, Box::new(Avro::Int(42))));
        let Avro::Union(1, d) = &f[2].1 else { panic!("{:?}", f[2]) };
        let Avro::Decimal(d) = d.as_ref() else { panic!() };
        assert_eq!(num_bigint_from(d), -3_685_000);
        assert_eq!(f[3].1, Avro::Union(1, Box::new(Avro::TimestampMillis(1_704_067_200_000))));
        let Avro::Array(lines) = &f[4].1 else { panic!() };
        assert_eq!(lines.len(), 2);
    }

    fn num_bigint_from(d: &apache_avro::Decimal) -> i128 {
        let bytes: Vec<u8> = d.try_into().unwrap();
        let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
        for b in bytes {
            v = (v << 8) | b as i128;
        }
        v
    }

    #[test]
    fn joined_fields_derive_an_event_time() {
        let avsc = r#"{"type": "record", "name": "J", "fields": [
            {"name": "biz_date", "type": ["null", "string"], "default": null},
            {"name": "event_time", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
             "default": null, "tidemark.join": ["biz_date", "trade_time"]}]}"#;
        let codec = RecordCodec::from_avsc(avsc).unwrap();
        let mut out = Vec::new();
        codec.encode_value(&json!({"biz_date": "20181029", "trade_time": "11:41:36"}), &mut out).unwrap();
        let f = decode(&codec, &out);
        // 2018-10-29 11:41:36 Beijing = 03:41:36 UTC.
        assert_eq!(f[1].1, Avro::Union(1, Box::new(Avro::TimestampMillis(1_540_784_496_000))));
        out.clear();
        codec.encode_value(&json!({"biz_date": "20181029"}), &mut out).unwrap();
        assert_eq!(decode(&codec, &out)[1].1, Avro::Union(0, Box::new(Avro::Null)), "a missing part gives null");
        let bad = avsc.replace(r#"["biz_date", "trade_time"]"#, r#""biz_date""#);
        assert!(RecordCodec::from_avsc(&bad).is_err());
    }

    #[test]
    fn zero_dates_and_empty_values_become_null() {
        let codec = RecordCodec::from_avsc(AVSC).unwrap();
        let mut out = Vec::new();
        codec.encode_value(&json!({"id": "x", "n": "", "at": "0000-00-00 00:00:00"}), &mut out).unwrap();
        let f = decode(&codec, &out);
        assert_eq!(f[1].1, Avro::Union(0, Box::new(Avro::Null)));
        assert_eq!(f[2].1, Avro::Union(0, Box::new(Avro::Null)));
        assert_eq!(f[3].1, Avro::Union(0, Box::new(Avro::Null)));
        assert_eq!(f[4].1, Avro::Array(vec![]));
    }

    #[test]
    fn errors_name_the_field_and_value_and_leave_output_untouched() {
        let codec = RecordCodec::from_avsc(AVSC).unwrap();
        let mut out = vec![9];
        let e = codec.encode_value(&json!({"id": "x", "amount": "1.23456"}), &mut out).unwrap_err().to_string();
        assert!(e.contains("$.amount") && e.contains("1.23456"), "{e}");
        let e = codec.encode_value(&json!({"n": 1}), &mut out).unwrap_err().to_string();
        assert!(e.contains("$.id") && e.contains("missing"), "{e}");
        let e = codec.encode_value(&json!({"id": "x", "lines": [{"qty": "many"}]}), &mut out).unwrap_err().to_string();
        assert!(e.contains("$.lines[0].qty") && e.contains("many"), "{e}");
        let e = codec.encode_value(&json!({"id": "x", "at": "yesterday"}), &mut out).unwrap_err().to_string();
        assert!(e.contains("$.at") && e.contains("yesterday"), "{e}");
        assert_eq!(out, vec![9]);
    }
}
