//! One record of a page as the vendor sent it: its object's JSON text, read in place when the
//! worker keys, hashes and encodes it (no `serde_json::Value` built per record).

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use super::json::{Json, JsonError};

/// A JSON object's text, exactly as it stood in the vendor's page.
#[derive(Debug, Clone)]
pub struct Record(Box<RawValue>);

impl Record {
    /// A list item of a page; `None` unless it is an object.
    pub fn new(raw: Box<RawValue>) -> Option<Record> {
        raw.get().starts_with('{').then_some(Record(raw))
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The record as a tree borrowing its text.
    pub fn parse(&self) -> Result<Json<'_>, JsonError> {
        Json::parse(self.text())
    }

    /// The record as a serde_json `Value`, for the few places that want one (tests, tools).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.text())
    }
}

/// A business id's text: a non-empty string, or a number as sent.
pub fn key_text<'v>(v: &'v Json<'_>) -> Option<Cow<'v, str>> {
    match v {
        Json::String(s) if !s.is_empty() => Some(Cow::Borrowed(s.as_ref())),
        Json::Number(n) => Some(Cow::Borrowed(n.as_ref())),
        _ => None,
    }
}

/// A record from a `Value` (an object), as simulators and tests build them.
impl From<Value> for Record {
    fn from(v: Value) -> Record {
        assert!(v.is_object(), "a record is a json object, not {v}");
        Record(serde_json::value::to_raw_value(&v).expect("a Value always serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_text_or_numbers_as_sent() {
        let r = Record::from(json!({"id": 17, "s": "k", "e": "", "b": true}));
        let json = r.parse().unwrap();
        let key = |field: &str| json.get(field).and_then(key_text).map(Cow::into_owned);
        assert_eq!(key("id").as_deref(), Some("17"));
        assert_eq!(key("s").as_deref(), Some("k"));
        assert_eq!((key("e"), key("b"), key("missing")), (None, None, None));
        let raw = Record::new(RawValue::from_string(r#"{"id": 1E5}"#.to_owned()).unwrap()).unwrap();
        let json = raw.parse().unwrap();
        assert_eq!(json.get("id").and_then(key_text).as_deref(), Some("1e+5"), "as serde_json writes it");
    }

    #[test]
    fn only_objects_are_records() {
        assert!(Record::new(serde_json::value::to_raw_value(&json!([1])).unwrap()).is_none());
        assert!(Record::new(serde_json::value::to_raw_value(&json!({"a": 1})).unwrap()).is_some());
    }
}
