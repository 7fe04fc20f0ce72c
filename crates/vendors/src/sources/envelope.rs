//! Parsing helpers shared by vendor envelopes: JSON bodies, counts, record lists, error text.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::SourceError;
use crate::domain::Record;
use crate::domain::json::NUMBER_TOKEN;

/// A page's answer read for its envelope: objects as maps and scalars as values, but every
/// list kept as its items' text, so no record is built as a tree here (the worker reads each
/// in place, once).
#[derive(Debug)]
pub enum Envelope {
    Scalar(Value),
    List(Vec<Box<RawValue>>),
    Object(BTreeMap<String, Envelope>),
}

impl Envelope {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Envelope> {
        match self {
            Envelope::Object(o) => o.get(key),
            _ => None,
        }
    }

    /// The member `key` of an object, taken out of it.
    pub fn take(&mut self, key: &str) -> Option<Envelope> {
        match self {
            Envelope::Object(o) => o.remove(key),
            _ => None,
        }
    }

    /// The member `key` of an object where it is a scalar (text, number, boolean, null).
    pub fn field(&self, key: &str) -> Option<&Value> {
        match self.get(key)? {
            Envelope::Scalar(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Envelope::Object(_))
    }

    /// The whole answer as a `Value` (what `tidemark discover` reads), its lists parsed.
    pub fn into_value(self) -> Result<Value, SourceError> {
        Ok(match self {
            Envelope::Scalar(v) => v,
            Envelope::List(items) => Value::Array(
                items
                    .iter()
                    .map(|i| serde_json::from_str(i.get()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| SourceError::malformed(format!("a list item is not json: {e}")))?,
            ),
            Envelope::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| Ok((k, v.into_value()?))).collect::<Result<_, SourceError>>()?)
            }
        })
    }
}

/// Short text for error messages.
impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Envelope::Scalar(v) => write!(f, "{v}"),
            Envelope::List(items) => write!(f, "a list of {}", items.len()),
            Envelope::Object(o) => {
                write!(f, "an object of {}", o.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::Bool(b)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::from(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::from(n)))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::from(n)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::String(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::String(s)))
    }

    fn visit_unit<E>(self) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Envelope, E> {
        Ok(Envelope::Scalar(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            items.push(item);
        }
        Ok(Envelope::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut key: Option<String> = map.next_key()?;
        if key.as_deref() == Some(NUMBER_TOKEN) {
            let text: String = map.next_value()?;
            return serde_json::Number::from_str(&text)
                .map(|n| Envelope::Scalar(Value::Number(n)))
                .map_err(de::Error::custom);
        }
        let mut members = BTreeMap::new();
        while let Some(k) = key {
            // The last of a repeated key wins, as in a `Value`.
            members.insert(k, map.next_value::<Envelope>()?);
            key = map.next_key()?;
        }
        Ok(Envelope::Object(members))
    }
}

/// Parses a response body as JSON (a `Value`, or an [`Envelope`] for a page), or a retryable
/// `malformed` error quoting its start.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(body)
        .map_err(|e| SourceError::malformed(format!("response is not json ({e}): {}", preview(body))))
}

/// A count or code sent as a JSON number or as numeric text.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Text sent as a JSON string or number (vendors mix them for codes).
pub fn as_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A record total: absent/null is `None`; anything but a non-negative count is malformed.
pub fn total(v: Option<&Envelope>, name: &str) -> Result<Option<u64>, SourceError> {
    match v {
        None | Some(Envelope::Scalar(Value::Null)) => Ok(None),
        Some(Envelope::Scalar(t)) => as_i64(t)
            .and_then(|n| u64::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| SourceError::malformed(format!("`{name}` is not a count: {t}"))),
        Some(other) => Err(SourceError::malformed(format!("`{name}` is not a count: {other}"))),
    }
}

/// The records of a list field, as their text: absent/null is empty; every element must be an
/// object.
pub fn records(v: Option<Envelope>, name: &str) -> Result<Vec<Record>, SourceError> {
    match v {
        None | Some(Envelope::Scalar(Value::Null)) => Ok(Vec::new()),
        Some(Envelope::List(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                Record::new(item).ok_or_else(|| SourceError::malformed(format!("`{name}[{i}]` is not an object")))
            })
            .collect(),
        Some(other) => {
            Err(SourceError::malformed(format!("`{name}` is not a list: {}", preview(other.to_string().as_bytes()))))
        }
    }
}

/// The start of a body for error messages: enough to recognise it, never a flood.
pub fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s.into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_and_lists_accept_vendor_variations() {
        let env = |v: Value| json_body::<Envelope>(v.to_string().as_bytes()).unwrap();
        assert_eq!(total(Some(&env(json!("12"))), "n").unwrap(), Some(12));
        assert_eq!(total(None, "n").unwrap(), None);
        assert!(total(Some(&env(json!(-1))), "n").is_err());
        assert!(total(Some(&env(json!({"n": 1}))), "n").unwrap_err().to_string().contains("not a count: an object"));
        assert_eq!(records(Some(env(json!([{"a": 1}]))), "l").unwrap().len(), 1);
        assert!(records(Some(env(json!([1]))), "l").unwrap_err().to_string().contains("`l[0]` is not an object"));
        assert!(records(Some(env(json!({"a": 1}))), "l").unwrap_err().to_string().contains("`l` is not a list"));
        assert_eq!(as_text(Some(&json!(7))), "7");
    }

    #[test]
    fn an_envelope_keeps_lists_as_text_and_reads_the_rest_as_a_value_would() {
        let body = r#"{"code": 0, "n": 1.50, "big": 123456789012345678901234567890, "neg": -3, "s": "店",
            "t": true, "z": null, "dup": 1, "dup": 2, "inner": {"list": [ {"id": "a", "x": [1, {"y": 2}]}, {"id": 7} ]}}"#;
        let mut env: Envelope = json_body(body.as_bytes()).unwrap();
        let list = env.get("inner").and_then(|i| i.get("list"));
        assert!(matches!(list, Some(Envelope::List(items)) if items[0].get() == r#"{"id": "a", "x": [1, {"y": 2}]}"#));
        assert_eq!(env.field("n").map(Value::to_string).as_deref(), Some("1.50"), "numbers keep their text");
        let records = records(env.take("inner").and_then(|mut i| i.take("list")), "list").unwrap();
        let texts: Vec<&str> = records.iter().map(|r| r.text()).collect();
        assert_eq!(texts, [r#"{"id": "a", "x": [1, {"y": 2}]}"#, r#"{"id": 7}"#], "each item's text as sent");
        let whole = json_body::<Envelope>(body.as_bytes()).unwrap().into_value().unwrap();
        assert_eq!(whole, serde_json::from_str::<Value>(body).unwrap(), "the same value serde_json reads");
    }

    #[test]
    fn previews_are_short() {
        let long = "x".repeat(500);
        assert!(preview(long.as_bytes()).chars().count() <= 121);
    }
}
