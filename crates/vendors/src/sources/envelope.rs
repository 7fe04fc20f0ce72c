//! Parsing helpers shared by vendor envelopes: JSON bodies, counts, record lists, error text.

use serde_json::Value;

use super::SourceError;

/// Parses a response body as JSON, or a retryable `malformed` error quoting its start.
pub fn json_body(body: &[u8]) -> Result<Value, SourceError> {
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
pub fn total(v: Option<&Value>, name: &str) -> Result<Option<u64>, SourceError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(t) => as_i64(t)
            .and_then(|n| u64::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| SourceError::malformed(format!("`{name}` is not a count: {t}"))),
    }
}

/// The records of a list field, moved out of the parsed body (no copy): absent/null is
/// empty; every element must be an object.
pub fn records(v: Option<&mut Value>, name: &str) -> Result<Vec<Value>, SourceError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            if let Some(i) = a.iter().position(|r| !r.is_object()) {
                return Err(SourceError::malformed(format!("`{name}[{i}]` is not an object")));
            }
            Ok(std::mem::take(a))
        }
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
        assert_eq!(total(Some(&json!("12")), "n").unwrap(), Some(12));
        assert_eq!(total(None, "n").unwrap(), None);
        assert!(total(Some(&json!(-1)), "n").is_err());
        assert_eq!(records(Some(&mut json!([{"a": 1}])), "l").unwrap().len(), 1);
        assert!(records(Some(&mut json!([1])), "l").unwrap_err().to_string().contains("`l[0]` is not an object"));
        assert_eq!(as_text(Some(&json!(7))), "7");
    }

    #[test]
    fn previews_are_short() {
        let long = "x".repeat(500);
        assert!(preview(long.as_bytes()).chars().count() <= 121);
    }
}
