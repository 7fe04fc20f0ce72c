//! `tidemark discover --against`: a window's inferred fields against a kind's schema, and the next schema version proposed (pure functions).

use serde_json::{Value, json};

use super::infer::{Fields, Ty, avro_type, camel, describe};

/// A field the vendor sent that the schema lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    /// Dotted from the record (`details_list[].batch_no`).
    pub path: String,
    pub ty: String,
    /// Records (at its level) that had it, and that had it non-empty.
    pub present: usize,
    pub non_empty: usize,
    /// Records read at its level.
    pub of: usize,
}

/// How a window's records differ from a schema.
#[derive(Debug, Default, PartialEq)]
pub struct Drift {
    pub added: Vec<Added>,
    /// Schema fields that no record read had.
    pub unseen: Vec<String>,
    /// Fields whose values the schema's type does not hold: path, why.
    pub disagree: Vec<(String, String)>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.unseen.is_empty() && self.disagree.is_empty()
    }

    /// What differs, for the summary.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.added.is_empty() {
            out.push(format!("sent by the vendor, not in the schema ({}):", self.added.len()));
            for a in &self.added {
                out.push(format!(
                    "  {:<24} {:<34} in {} of {} records (non-empty in {})",
                    a.path, a.ty, a.present, a.of, a.non_empty
                ));
            }
        }
        if !self.unseen.is_empty() {
            out.push(format!("in the schema, in no record read ({}): {}", self.unseen.len(), self.unseen.join(", ")));
        }
        if !self.disagree.is_empty() {
            out.push(format!("types that disagree ({}; not changed in the proposal):", self.disagree.len()));
            for (path, why) in &self.disagree {
                out.push(format!("  {path}: {why}"));
            }
        }
        out
    }
}

/// Compares `fields` with the record `schema` and proposes its next version: the schema with
/// the new fields (nested ones in their records) appended as optional, `["null", T]` default
/// null, which readers of the old version resolve (BACKWARD compatible).
pub fn propose(schema: &Value, fields: &Fields) -> Result<(Value, Drift), String> {
    if schema["type"] != "record" {
        return Err(format!("its type is {}", schema["type"]));
    }
    let namespace = schema["namespace"].as_str().unwrap_or("tidemark").to_owned();
    let mut next = schema.clone();
    let mut drift = Drift::default();
    walk(&mut next, fields, "", &namespace, &mut drift);
    Ok((next, drift))
}

/// Compares one record level, appending its new fields.
fn walk(record: &mut Value, fields: &Fields, path: &str, namespace: &str, drift: &mut Drift) {
    let name = record["name"].as_str().unwrap_or("Record").rsplit('.').next().unwrap_or("Record").to_owned();
    let namespace = record["namespace"].as_str().unwrap_or(namespace).to_owned();
    let Some(declared) = record["fields"].as_array_mut() else { return };
    for field in declared.iter_mut() {
        let field_name = field["name"].as_str().unwrap_or_default().to_owned();
        let at = format!("{path}{field_name}");
        match fields.fields.iter().find(|f| f.name == field_name) {
            None => drift.unseen.push(at),
            Some(f) => compare(branch(&mut field["type"]), &f.ty, &at, &namespace, drift),
        }
    }
    let known: Vec<String> = declared.iter().filter_map(|d| d["name"].as_str().map(str::to_owned)).collect();
    for f in fields.fields.iter().filter(|f| !known.contains(&f.name)) {
        let non_empty = fields.records - f.empty.min(fields.records);
        drift.added.push(Added {
            path: format!("{path}{}", f.name),
            ty: describe(&f.ty),
            present: f.seen,
            non_empty,
            of: fields.records,
        });
        let inner = avro_type(&f.ty, &format!("{name}{}", camel(&f.name)), &namespace);
        declared.push(json!({
            "name": f.name,
            "type": ["null", inner],
            "default": null,
            "doc": format!("added by `tidemark discover --against`: {}; non-empty in {non_empty} of {} records", describe(&f.ty), fields.records),
        }));
    }
}

/// The branch of a type values are held in: a union's first non-null one.
fn branch(t: &mut Value) -> &mut Value {
    let i = t.as_array().and_then(|u| u.iter().position(|b| b != "null"));
    match i {
        Some(i) => &mut t[i],
        None => t,
    }
}

fn compare(t: &mut Value, ty: &Ty, path: &str, namespace: &str, drift: &mut Drift) {
    match ty {
        Ty::Record(f) if t["type"] == "record" => walk(t, f, &format!("{path}."), namespace, drift),
        Ty::Records(f) if t["type"] == "array" && t["items"]["type"] == "record" => {
            walk(&mut t["items"], f, &format!("{path}[]."), namespace, drift)
        }
        _ => {
            if let Some(why) = disagreement(t, ty) {
                drift.disagree.push((path.to_owned(), why));
            }
        }
    }
}

/// Why values of type `ty` do not fit Avro type `t` as the worker writes them, if they do not.
fn disagreement(t: &Value, ty: &Ty) -> Option<String> {
    let (name, logical) = match t {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => {
            (o.get("type").and_then(Value::as_str).unwrap_or(""), o.get("logicalType").and_then(Value::as_str))
        }
        _ => ("", None),
    };
    let fits = match (name, logical, ty) {
        (_, _, Ty::Unknown) => true,
        ("string", _, Ty::Text | Ty::Digits | Ty::Long | Ty::Boolean | Ty::Decimal { .. } | Ty::Time) => true,
        ("int" | "long", None, Ty::Long | Ty::Digits) => true,
        ("long", Some(l), Ty::Time) if l.contains("timestamp") => true,
        // Only the scale is checked: inference widens integers mixed into decimals to a long's
        // 19 digits, so its integer digits are not all digits seen.
        ("bytes" | "fixed", Some("decimal"), Ty::Decimal { scale, .. }) => {
            let (p, s) = (t["precision"].as_u64().unwrap_or(0), t["scale"].as_u64().unwrap_or(0));
            if u64::from(*scale) > s {
                return Some(format!("decimal({p}, {s}) keeps {s} decimals; the vendor sent {scale} (the scale grew)"));
            }
            true
        }
        ("bytes" | "fixed", Some("decimal"), Ty::Long | Ty::Digits) => true,
        ("float" | "double", _, Ty::Long | Ty::Digits | Ty::Decimal { .. }) => true,
        ("boolean", _, Ty::Boolean) => true,
        ("enum", _, Ty::Text | Ty::Digits) => true,
        ("array", _, Ty::Texts) => t["items"] == "string",
        _ => false,
    };
    (!fits).then(|| format!("the schema has {}, the vendor sent {}", logical.unwrap_or(name), describe(ty)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: Value) -> Fields {
        Fields::of(records.as_array().unwrap(), "").unwrap()
    }

    fn schema() -> Value {
        json!({"type": "record", "name": "Thing", "namespace": "tidemark.wdt", "fields": [
            {"name": "no", "type": "string"},
            {"name": "amt", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 2}], "default": null},
            {"name": "gone", "type": ["null", "string"], "default": null},
            {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "ThingLine", "fields": [
                {"name": "sku", "type": "string"}
            ]}}}
        ]})
    }

    #[test]
    fn nothing_differs_when_the_schema_holds_every_value() {
        let f = fields(json!([{"no": "1", "amt": "1.50", "gone": "", "lines": [{"sku": "a"}]}, {"no": "2", "amt": 3}]));
        let (next, drift) = propose(&schema(), &f).unwrap();
        assert!(drift.is_empty(), "{drift:?}");
        assert_eq!(next, schema());
    }

    #[test]
    fn new_fields_are_appended_optional_and_nested_ones_in_their_record() {
        let f = fields(json!([
            {"no": "1", "amt": "1.5000", "new_field": "x", "lines": [{"sku": "a", "batch": "b1"}]},
            {"no": "2", "amt": "2.00", "new_field": "", "lines": [{"sku": "b"}]}
        ]));
        let (next, drift) = propose(&schema(), &f).unwrap();
        let added: Vec<(&str, usize, usize, usize)> =
            drift.added.iter().map(|a| (a.path.as_str(), a.present, a.non_empty, a.of)).collect();
        assert_eq!(added, [("lines[].batch", 1, 1, 2), ("new_field", 2, 1, 2)]);
        assert_eq!(drift.unseen, ["gone"]);
        assert_eq!(drift.disagree.len(), 1, "{drift:?}");
        assert!(drift.disagree[0].1.contains("the scale grew"), "{drift:?}");
        let fields = next["fields"].as_array().unwrap();
        assert_eq!(fields.last().unwrap()["name"], "new_field");
        assert_eq!(fields.last().unwrap()["type"], json!(["null", "string"]));
        assert_eq!(fields.last().unwrap()["default"], Value::Null);
        assert_eq!(fields[3]["type"]["items"]["fields"][1]["name"], "batch");
        // Unchanged otherwise: the scale that grew is left for a person to decide.
        assert_eq!(fields[1], schema()["fields"][1]);
        let old = apache_avro::Schema::parse_str(&schema().to_string()).unwrap();
        let new = apache_avro::Schema::parse_str(&next.to_string()).unwrap();
        // Data written with the old schema reads with the new one (BACKWARD).
        assert!(apache_avro::schema_compatibility::SchemaCompatibility::can_read(&old, &new).is_ok());
        // The check means something: the new field required is refused.
        let mut required = next.clone();
        required["fields"][4] = json!({"name": "new_field", "type": "string"});
        let required = apache_avro::Schema::parse_str(&required.to_string()).unwrap();
        assert!(apache_avro::schema_compatibility::SchemaCompatibility::can_read(&old, &required).is_err());
    }

    #[test]
    fn types_the_schema_cannot_hold_are_named() {
        let f = fields(json!([{"no": "1", "amt": "1.125", "gone": 7, "lines": "x"}]));
        let (_, drift) = propose(&schema(), &f).unwrap();
        let paths: Vec<&str> = drift.disagree.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["amt", "lines"], "a number fits a string; the others do not: {drift:?}");
        assert!(drift.disagree[0].1.contains("keeps 2 decimals; the vendor sent 3"), "{drift:?}");
        assert!(drift.disagree[1].1.contains("the schema has array, the vendor sent string"), "{drift:?}");
        assert!(propose(&json!({"type": "enum"}), &f).is_err());
    }
}
