//! What `tidemark discover` infers from a vendor's records: the list field, the key and an Avro schema (pure functions).

use serde_json::{Map, Value, json};

/// Why the records do not say what an endpoint is.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum InferError {
    #[error("the answer holds no list of records (its fields: {seen}); the window may be empty: widen --window")]
    NoList { seen: String },
    #[error("the answer holds several lists of records ({lists}); the list field is ambiguous")]
    SeveralLists { lists: String },
    #[error("list field {field:?} holds no records in the window read; widen --window")]
    NoRecords { field: String },
    #[error("no field is present, non-empty and unique in all {records} records; name one with --key-field")]
    NoKey { records: usize },
    #[error("key field {field:?} {why}")]
    BadKey { field: String, why: String },
    #[error("field {path:?} is {a} in some records and {b} in others; write its schema by hand")]
    Conflict { path: String, a: &'static str, b: &'static str },
    #[error("field name {path:?} is not a valid avro name ([A-Za-z_][A-Za-z0-9_]*)")]
    BadName { path: String },
}

/// The envelope's list field: its one field holding a non-empty list of objects.
pub fn list_field(envelope: &Value) -> Result<String, InferError> {
    let obj = envelope.as_object().map(|o| o.iter().collect::<Vec<_>>()).unwrap_or_default();
    let lists: Vec<&str> = obj
        .iter()
        .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object)))
        .map(|(k, _)| k.as_str())
        .collect();
    match lists.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(InferError::NoList {
            seen: obj.iter().map(|(k, v)| format!("{k}: {}", shape(v))).collect::<Vec<_>>().join(", "),
        }),
        many => Err(InferError::SeveralLists { lists: many.join(", ") }),
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "text",
        Value::Array(a) if a.is_empty() => "empty list",
        Value::Array(_) => "list of values",
        Value::Object(_) => "object",
    }
}

/// A field's type as the values seen so far tell it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// Only nulls and empty values seen.
    Unknown,
    Text,
    /// Text of digits only (`-?\d+`): a string (ids such as `001` keep their zeros), but a
    /// decimal beside decimal values.
    Digits,
    Long,
    Boolean,
    /// A decimal string (`-?\d+\.\d+`) or number: the most integer digits and decimals seen.
    Decimal {
        digits: u32,
        scale: u32,
    },
    /// `yyyy-MM-dd HH:mm:ss` Beijing time (`0000-00-00 00:00:00` is null).
    Time,
    /// An object: a nested record.
    Record(Fields),
    /// A list of objects: an array of records.
    Records(Fields),
    /// A list of plain values: an array of strings.
    Texts,
}

impl Ty {
    fn name(&self) -> &'static str {
        match self {
            Ty::Unknown => "empty",
            Ty::Text => "text",
            Ty::Digits => "digits",
            Ty::Long => "an integer",
            Ty::Boolean => "a boolean",
            Ty::Decimal { .. } => "a decimal",
            Ty::Time => "a time",
            Ty::Record(_) => "an object",
            Ty::Records(_) => "a list of objects",
            Ty::Texts => "a list of values",
        }
    }

    /// What `self` and `other` both fit; text absorbs other scalars (the transcoder writes
    /// numbers as text), integers widen to decimals; objects and lists mix with nothing.
    fn merge(self, other: Ty, path: &str) -> Result<Ty, InferError> {
        use Ty::*;
        Ok(match (self, other) {
            (Unknown, t) | (t, Unknown) => t,
            (Record(mut a), Record(b)) => {
                a.merge(b, path)?;
                Record(a)
            }
            (Records(mut a), Records(b)) => {
                a.merge(b, path)?;
                Records(a)
            }
            (Decimal { digits: d1, scale: s1 }, Decimal { digits: d2, scale: s2 }) => {
                Decimal { digits: d1.max(d2), scale: s1.max(s2) }
            }
            // A long may have 19 digits.
            (Decimal { digits, scale }, Long) | (Long, Decimal { digits, scale }) => {
                Decimal { digits: digits.max(19), scale }
            }
            (Decimal { digits, scale }, Digits) | (Digits, Decimal { digits, scale }) => Decimal { digits, scale },
            (a, b) if a == b => a,
            (a @ (Record(_) | Records(_) | Texts), b) | (b, a @ (Record(_) | Records(_) | Texts)) => {
                return Err(InferError::Conflict { path: path.to_owned(), a: a.name(), b: b.name() });
            }
            _ => Text,
        })
    }
}

/// One field's evidence: its type and in how many records it was missing or empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub seen: usize,
    pub empty: usize,
    /// Why the type is not what some values alone would say (e.g. text and decimals mixed).
    pub note: Option<String>,
}

/// The fields of a set of objects, in the order first seen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields {
    pub fields: Vec<Field>,
    pub records: usize,
}

impl Fields {
    /// Reads `records` (objects; anything else is skipped).
    pub fn of(records: &[Value], path: &str) -> Result<Fields, InferError> {
        let mut out = Fields::default();
        for r in records.iter().filter_map(Value::as_object) {
            out.add(r, path)?;
        }
        Ok(out)
    }

    fn add(&mut self, record: &Map<String, Value>, path: &str) -> Result<(), InferError> {
        for (name, v) in record {
            let at = format!("{path}{name}");
            if !valid_name(name) {
                return Err(InferError::BadName { path: at });
            }
            let ty = type_of(v, &at)?;
            let i = match self.fields.iter().position(|f| &f.name == name) {
                Some(i) => i,
                None => {
                    // Records before this one lacked the field: count them as missing.
                    self.fields.push(Field {
                        name: name.clone(),
                        ty: Ty::Unknown,
                        seen: 0,
                        empty: self.records,
                        note: None,
                    });
                    self.fields.len() - 1
                }
            };
            let f = &mut self.fields[i];
            let before = f.ty.clone();
            let empty = ty == Ty::Unknown;
            f.ty = std::mem::replace(&mut f.ty, Ty::Unknown).merge(ty.clone(), &at)?;
            if f.ty == Ty::Text && before != Ty::Text && before != Ty::Unknown && f.note.is_none() {
                f.note = Some(format!("text: {} in some records, {} in others", before.name(), ty.name()));
            }
            f.seen += 1;
            f.empty += usize::from(empty);
        }
        for f in self.fields.iter_mut().filter(|f| !record.contains_key(&f.name)) {
            f.empty += 1;
        }
        self.records += 1;
        Ok(())
    }

    fn merge(&mut self, other: Fields, path: &str) -> Result<(), InferError> {
        for f in &mut self.fields {
            if !other.fields.iter().any(|o| o.name == f.name) {
                f.empty += other.records;
            }
        }
        for o in other.fields {
            match self.fields.iter_mut().find(|f| f.name == o.name) {
                Some(f) => {
                    f.ty = std::mem::replace(&mut f.ty, Ty::Unknown).merge(o.ty, &format!("{path}{}", o.name))?;
                    f.seen += o.seen;
                    f.empty += o.empty;
                }
                None => self.fields.push(Field { empty: o.empty + self.records, ..o }),
            }
        }
        self.records += other.records;
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `-?\d+\.\d+`: the integer digits and the decimals.
fn decimal_text(s: &str) -> Option<(u32, u32)> {
    let (int, frac) = s.strip_prefix('-').unwrap_or(s).split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    (digits(int) && digits(frac)).then(|| (int.trim_start_matches('0').len().max(1) as u32, frac.len() as u32))
}

/// `yyyy-MM-dd HH:mm:ss`, the unset `0000-00-00 00:00:00` included.
fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// One value's type; `Unknown` for null, empty text and empty lists.
pub fn type_of(v: &Value, path: &str) -> Result<Ty, InferError> {
    Ok(match v {
        Value::Null => Ty::Unknown,
        Value::String(s) if s.trim().is_empty() => Ty::Unknown,
        Value::String(s) if is_time(s) => Ty::Time,
        Value::String(s) => match decimal_text(s) {
            Some((digits, scale)) => Ty::Decimal { digits, scale },
            None if s.strip_prefix('-').unwrap_or(s).bytes().all(|b| b.is_ascii_digit()) => Ty::Digits,
            None => Ty::Text,
        },
        Value::Bool(_) => Ty::Boolean,
        Value::Number(n) if n.is_i64() || n.is_u64() => Ty::Long,
        Value::Number(n) => match decimal_text(&n.to_string()) {
            Some((digits, scale)) => Ty::Decimal { digits, scale },
            None => Ty::Text,
        },
        Value::Array(a) if a.is_empty() => Ty::Unknown,
        Value::Array(a) if a.iter().all(Value::is_object) => Ty::Records(Fields::of(a, &format!("{path}[]."))?),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => Ty::Texts,
        Value::Array(_) => {
            return Err(InferError::Conflict { path: path.to_owned(), a: "a list of objects", b: "a list of values" });
        }
        Value::Object(o) => {
            let mut f = Fields::default();
            f.add(o, &format!("{path}."))?;
            Ty::Record(f)
        }
    })
}

/// The key: `given` if it is present, non-empty and unique in every record; else the first
/// field (in name order) that is, one named `*_no` first (the vendors' business numbers), with why.
pub fn key_field(records: &[Value], given: Option<&str>) -> Result<(String, String), InferError> {
    let n = records.len();
    let check = |name: &str| -> Result<(), String> {
        let mut seen = std::collections::HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let text = match r.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(Value::Number(x)) => x.to_string(),
                Some(Value::String(_)) | Some(Value::Null) => return Err(format!("is empty in record {}", i + 1)),
                Some(other) => return Err(format!("is {} in record {}, not text or a number", shape(other), i + 1)),
                None => return Err(format!("is missing from record {}", i + 1)),
            };
            if let Some(first) = seen.insert(text.clone(), i + 1) {
                return Err(format!("is not unique: {text:?} in records {first} and {}", i + 1));
            }
        }
        Ok(())
    };
    if let Some(name) = given {
        check(name).map_err(|why| InferError::BadKey { field: name.to_owned(), why })?;
        return Ok((name.to_owned(), format!("given; present, non-empty and unique in all {n} records")));
    }
    let names: Vec<&str> =
        records.first().and_then(Value::as_object).map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    // Amounts and times may happen to be unique in a window; they are never business ids.
    let id_like = |name: &&str| match records.first().and_then(|r| r.get(*name)) {
        Some(Value::String(s)) => !is_time(s) && decimal_text(s).is_none(),
        _ => true,
    };
    let unique: Vec<&str> = names.into_iter().filter(id_like).filter(|name| check(name).is_ok()).collect();
    let chosen =
        unique.iter().find(|n| n.ends_with("_no")).or(unique.first()).ok_or(InferError::NoKey { records: n })?;
    let others: Vec<&str> = unique.iter().filter(|u| *u != chosen).copied().collect();
    let mut why = format!("present, non-empty and unique in all {n} records");
    if chosen.ends_with("_no") {
        why.push_str(", and named *_no");
    }
    if !others.is_empty() {
        why.push_str(&format!(" (also unique: {}; --key-field picks one)", others.join(", ")));
    }
    Ok((chosen.to_string(), why))
}

/// The Avro type of an inferred field (not yet optional).
pub fn avro_type(ty: &Ty, name: &str, namespace: &str) -> Value {
    match ty {
        Ty::Unknown | Ty::Text | Ty::Digits => json!("string"),
        Ty::Long => json!("long"),
        Ty::Boolean => json!("boolean"),
        Ty::Decimal { digits, scale } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": (digits + scale).max(19), "scale": scale})
        }
        Ty::Time => json!({"type": "long", "logicalType": "timestamp-millis"}),
        Ty::Record(f) => record(f, name, namespace, None, None),
        Ty::Records(f) => json!({"type": "array", "items": record(f, name, namespace, None, None)}),
        Ty::Texts => json!({"type": "array", "items": "string"}),
    }
}

/// A readable type, for the summary and the fields' docs.
pub fn describe(ty: &Ty) -> String {
    match ty {
        Ty::Unknown => "string (only empty values seen)".to_owned(),
        Ty::Text | Ty::Digits => "string".to_owned(),
        Ty::Long => "long".to_owned(),
        Ty::Boolean => "boolean".to_owned(),
        Ty::Decimal { digits, scale } => format!("decimal({}, {scale})", (digits + scale).max(19)),
        Ty::Time => "timestamp-millis (Beijing time)".to_owned(),
        Ty::Record(f) => format!("record of {} fields", f.fields.len()),
        Ty::Records(f) => format!("array of records of {} fields", f.fields.len()),
        Ty::Texts => "array of strings".to_owned(),
    }
}

/// `goods_list` → `GoodsList`.
pub fn camel(s: &str) -> String {
    s.split(['_', '.', '-']).filter(|p| !p.is_empty()).map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

/// The Avro record of `fields`, keyed on `key` (a required string); every other field is
/// optional, `["null", T]` default null: a window's records cannot show that a field is never
/// missing, and a wrongly required field sends a later record to the dead letters.
pub fn record(fields: &Fields, name: &str, namespace: &str, key: Option<&str>, doc: Option<&str>) -> Value {
    let items: Vec<Value> = fields
        .fields
        .iter()
        .map(|f| {
            let mut evidence = format!(
                "{}; non-empty in {} of {} records",
                describe(&f.ty),
                fields.records - f.empty.min(fields.records),
                fields.records
            );
            if let Some(note) = &f.note {
                evidence.push_str(&format!("; {note}"));
            }
            if Some(f.name.as_str()) == key {
                return json!({"name": f.name, "type": "string", "doc": format!("business key; {evidence}")});
            }
            let inner = avro_type(&f.ty, &format!("{name}{}", camel(&f.name)), namespace);
            json!({"name": f.name, "type": ["null", inner], "default": null, "doc": evidence})
        })
        .collect();
    let mut r = json!({"type": "record", "name": name, "namespace": namespace});
    if let Some(doc) = doc {
        r["doc"] = json!(doc);
    }
    r["fields"] = Value::Array(items);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: Value) -> Fields {
        Fields::of(records.as_array().unwrap(), "").unwrap()
    }

    fn ty(f: &Fields, name: &str) -> Ty {
        f.fields.iter().find(|x| x.name == name).unwrap().ty.clone()
    }

    #[test]
    fn the_list_field_is_the_one_list_of_objects() {
        let env = json!({"code": 0, "total_count": 2, "tags": ["a"], "account_list": [{"a": 1}]});
        assert_eq!(list_field(&env).unwrap(), "account_list");
        let e = list_field(&json!({"code": 0, "account_list": [], "message": "ok"})).unwrap_err();
        assert!(e.to_string().contains("account_list: empty list"), "{e}");
        let e = list_field(&json!({"a": [{"x": 1}], "b": [{"y": 1}]})).unwrap_err();
        assert_eq!(e, InferError::SeveralLists { lists: "a, b".into() });
    }

    #[test]
    fn decimals_keep_the_largest_scale_and_precision_seen() {
        let f = fields(json!([{"amt": "1.5"}, {"amt": "-123.0000"}, {"amt": "7"}, {"big": "12345678901234567890.12"}]));
        assert_eq!(ty(&f, "amt"), Ty::Decimal { digits: 3, scale: 4 });
        // Digits alone are a string (a shop id may look like a number): only a decimal point
        // makes money.
        assert_eq!(ty(&fields(json!([{"id": "007"}, {"id": "12"}])), "id"), Ty::Digits);
        assert_eq!(avro_type(&Ty::Digits, "X", "n"), json!("string"));
        assert_eq!(describe(&ty(&f, "amt")), "decimal(19, 4)");
        assert_eq!(describe(&ty(&f, "big")), "decimal(22, 2)");
        assert_eq!(ty(&fields(json!([{"n": 3}, {"n": 2.25}])), "n"), Ty::Decimal { digits: 19, scale: 2 });
        assert_eq!(ty(&fields(json!([{"n": "x"}, {"n": "7"}])), "n"), Ty::Text);
    }

    #[test]
    fn text_mixed_with_decimals_is_text_and_says_so() {
        let f = fields(json!([{"x": "1.50"}, {"x": "n/a"}]));
        assert_eq!(ty(&f, "x"), Ty::Text);
        assert!(f.fields[0].note.as_deref().unwrap().contains("a decimal in some records, text in others"));
    }

    #[test]
    fn vendor_times_are_timestamps_and_the_zero_time_is_one_too() {
        let f = fields(json!([{"t": "2024-01-02 03:04:05"}, {"t": "0000-00-00 00:00:00"}, {"d": "2024-01-02"}]));
        assert_eq!(ty(&f, "t"), Ty::Time);
        assert_eq!(ty(&f, "d"), Ty::Text);
    }

    #[test]
    fn missing_and_empty_values_are_counted() {
        let f = fields(json!([{"a": "x"}, {"a": "", "b": "1.0"}, {"c": null}]));
        let counts: Vec<(&str, usize)> = f.fields.iter().map(|x| (x.name.as_str(), x.empty)).collect();
        assert_eq!(counts, [("a", 2), ("b", 2), ("c", 3)]);
        assert_eq!(ty(&f, "c"), Ty::Unknown);
    }

    #[test]
    fn nested_lists_of_objects_are_arrays_of_records() {
        let f = fields(json!([
            {"no": "1", "goods": [{"sku": "a", "price": "1.00"}]},
            {"no": "2", "goods": [{"sku": "b", "num": 2}]},
            {"no": "3", "goods": []}
        ]));
        let Ty::Records(g) = ty(&f, "goods") else { panic!("{:?}", ty(&f, "goods")) };
        let names: Vec<&str> = g.fields.iter().map(|x| x.name.as_str()).collect();
        // serde_json keeps keys sorted, so fields come in name order.
        assert_eq!(names, ["price", "sku", "num"]);
        assert_eq!(g.records, 2);
        let schema = record(&f, "Thing", "tidemark.wdt", Some("no"), None);
        let parsed = apache_avro::Schema::parse_str(&schema.to_string()).unwrap();
        assert!(format!("{parsed:?}").contains("ThingGoods"), "{schema}");
        let e = Fields::of(json!([{"g": [{"a": 1}]}, {"g": "x"}]).as_array().unwrap(), "").unwrap_err();
        assert_eq!(e, InferError::Conflict { path: "g".into(), a: "a list of objects", b: "text" });
    }

    #[test]
    fn the_key_is_unique_and_present_everywhere_preferring_numbers() {
        let rs = json!([
            {"rec_id": 1, "shop_no": "s1", "check_no": "A", "tid": "t1", "amt": "1.00", "at": "2024-01-01 00:00:01"},
            {"rec_id": 2, "shop_no": "s1", "check_no": "B", "tid": "t2", "amt": "2.00", "at": "2024-01-01 00:00:02"}
        ]);
        let rs = rs.as_array().unwrap();
        let (key, why) = key_field(rs, None).unwrap();
        assert_eq!(key, "check_no");
        assert!(why.contains("also unique: rec_id, tid"), "{why}");
        assert_eq!(key_field(rs, Some("tid")).unwrap().0, "tid");
        let e = key_field(rs, Some("shop_no")).unwrap_err();
        assert_eq!(e.to_string(), "key field \"shop_no\" is not unique: \"s1\" in records 1 and 2");
        let e = key_field(rs, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("is missing from record 1"), "{e}");
        let dup = json!([{"a": "x", "b": ""}, {"a": "x", "b": "y"}]);
        assert_eq!(key_field(dup.as_array().unwrap(), None).unwrap_err(), InferError::NoKey { records: 2 });
    }

    #[test]
    fn the_schema_is_keyed_and_everything_else_optional() {
        let f = fields(json!([{"k": "1", "amt": "2.50", "at": "2024-01-01 00:00:00", "n": 5}]));
        let schema = record(&f, "Found", "tidemark.wdt", Some("k"), Some("doc"));
        let parsed = apache_avro::Schema::parse_str(&schema.to_string()).unwrap();
        let apache_avro::Schema::Record(r) = parsed else { panic!() };
        let names: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["amt", "at", "k", "n"]);
        assert_eq!(r.fields[2].schema, apache_avro::Schema::String);
        for i in [0, 1, 3] {
            assert!(matches!(&r.fields[i].schema, apache_avro::Schema::Union(u) if u.is_nullable()), "{}", names[i]);
        }
        assert_eq!(schema["fields"][0]["type"][1]["scale"], 2);
        assert_eq!(schema["fields"][1]["type"][1]["logicalType"], "timestamp-millis");
        assert_eq!(schema["fields"][3]["type"][1], "long");
    }

    #[test]
    fn names_avro_cannot_hold_are_refused() {
        let e = Fields::of(json!([{"a-b": 1}]).as_array().unwrap(), "").unwrap_err();
        assert_eq!(e, InferError::BadName { path: "a-b".into() });
    }
}
