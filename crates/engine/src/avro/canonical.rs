//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO fingerprint, written
//! from the spec itself: apache-avro's `canonical_form()` keeps `logicalType`, `precision` and
//! `scale`, so its fingerprints disagree with Java, Python and every other consumer.

use serde_json::{Map, Value};

/// Why a schema has no canonical form here.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    #[error("invalid avro schema json: {0}")]
    Json(String),
    #[error("avro schema at `{path}`: {reason}")]
    Schema { path: String, reason: String },
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of `.avsc` text ([PRIMITIVES], [FULLNAMES], [STRIP], [ORDER],
/// [STRINGS], [INTEGERS], [WHITESPACE] of the spec); named types after their first definition
/// are written as their full name, as Java's `SchemaNormalization` does.
pub fn parsing_canonical_form(avsc: &str) -> Result<String, CanonicalError> {
    let schema: Value = serde_json::from_str(avsc).map_err(|e| CanonicalError::Json(e.to_string()))?;
    let mut out = String::with_capacity(avsc.len() / 2);
    let mut defined = Vec::new();
    write(&schema, None, &mut defined, &mut out, "$")?;
    Ok(out)
}

/// CRC-64-AVRO (the spec's 64-bit Rabin fingerprint) of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            }
            *slot = fp;
        }
        t
    });
    bytes.iter().fold(EMPTY, |fp, b| (fp >> 8) ^ table[((fp ^ *b as u64) & 0xff) as usize])
}

/// The spec fingerprint of `.avsc` text: CRC-64-AVRO of its Parsing Canonical Form.
pub fn fingerprint(avsc: &str) -> Result<u64, CanonicalError> {
    parsing_canonical_form(avsc).map(|pcf| crc64_avro(pcf.as_bytes()))
}

/// Writes `items` as a JSON array, each by `each` (given its index).
fn write_list<T>(
    out: &mut String,
    items: &[T],
    mut each: impl FnMut(&mut String, usize, &T) -> Result<(), CanonicalError>,
) -> Result<(), CanonicalError> {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, i, item)?;
    }
    out.push(']');
    Ok(())
}

fn bad(path: &str, reason: impl Into<String>) -> CanonicalError {
    CanonicalError::Schema { path: path.to_owned(), reason: reason.into() }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// A name's full name and its namespace, by the spec's rules: a dotted name is already full;
/// otherwise the `namespace` attribute, else the enclosing one ("" means none).
fn full_name(name: &str, namespace: Option<&str>, enclosing: Option<&str>) -> (String, Option<String>) {
    if let Some((ns, _)) = name.rsplit_once('.') {
        return (name.to_owned(), Some(ns.to_owned()).filter(|n| !n.is_empty()));
    }
    let ns = namespace.or(enclosing).filter(|n| !n.is_empty());
    match ns {
        Some(ns) => (format!("{ns}.{name}"), Some(ns.to_owned())),
        None => (name.to_owned(), None),
    }
}

fn write(
    schema: &Value,
    enclosing: Option<&str>,
    defined: &mut Vec<String>,
    out: &mut String,
    path: &str,
) -> Result<(), CanonicalError> {
    match schema {
        Value::String(name) => write_name(name, enclosing, defined, out, path),
        Value::Array(branches) => {
            write_list(out, branches, |out, i, b| write(b, enclosing, defined, out, &format!("{path}[{i}]")))
        }
        Value::Object(obj) => write_object(obj, enclosing, defined, out, path),
        other => Err(bad(path, format!("expected a type name, array or object, found {other}"))),
    }
}

/// A primitive, or a reference to a named type defined earlier.
fn write_name(
    name: &str,
    enclosing: Option<&str>,
    defined: &[String],
    out: &mut String,
    path: &str,
) -> Result<(), CanonicalError> {
    if PRIMITIVES.contains(&name) {
        out.push_str(&quoted(name));
        return Ok(());
    }
    let (full, _) = full_name(name, None, enclosing);
    let found = [full.as_str(), name].into_iter().find(|n| defined.iter().any(|d| d == n));
    match found {
        Some(n) => {
            out.push_str(&quoted(n));
            Ok(())
        }
        None => Err(bad(path, format!("unknown type {name:?}"))),
    }
}

fn write_object(
    obj: &Map<String, Value>,
    enclosing: Option<&str>,
    defined: &mut Vec<String>,
    out: &mut String,
    path: &str,
) -> Result<(), CanonicalError> {
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `{"type": <schema>}` is that schema with attributes around it.
        Some(inner @ (Value::Object(_) | Value::Array(_))) => return write(inner, enclosing, defined, out, path),
        _ => return Err(bad(path, "missing `type`")),
    };
    match ty {
        // [PRIMITIVES]: `{"type": "long", "logicalType": ...}` is just "long".
        t if PRIMITIVES.contains(&t) => {
            out.push_str(&quoted(t));
            Ok(())
        }
        // Containers: their one inner schema under `items` or `values`.
        "array" | "map" => {
            let attr = if ty == "array" { "items" } else { "values" };
            let inner = obj.get(attr).ok_or_else(|| bad(path, format!("{ty} without `{attr}`")))?;
            out.push_str(&format!(r#"{{"type":"{ty}","{attr}":"#));
            write(inner, enclosing, defined, out, &format!("{path}.{attr}"))?;
            out.push('}');
            Ok(())
        }
        "record" | "error" | "enum" | "fixed" => {
            let name =
                obj.get("name").and_then(Value::as_str).ok_or_else(|| bad(path, format!("{ty} without a `name`")))?;
            let (full, ns) = full_name(name, obj.get("namespace").and_then(Value::as_str), enclosing);
            if defined.contains(&full) {
                return Err(bad(path, format!("type {full:?} is defined twice")));
            }
            defined.push(full.clone());
            // [ORDER]: name, type, fields, symbols, items, values, size.
            out.push_str(r#"{"name":"#);
            out.push_str(&quoted(&full));
            out.push_str(r#","type":"#);
            // Java writes an error as the record it is.
            out.push_str(&quoted(if ty == "error" { "record" } else { ty }));
            match ty {
                "enum" => {
                    let symbols = obj
                        .get("symbols")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad(path, "enum without `symbols`"))?;
                    out.push_str(r#","symbols":"#);
                    write_list(out, symbols, |out, _, s| {
                        out.push_str(&quoted(s.as_str().ok_or_else(|| bad(path, "enum symbols must be strings"))?));
                        Ok(())
                    })?;
                }
                "fixed" => {
                    // [INTEGERS]: no quotes, no leading zeros.
                    let size =
                        obj.get("size").and_then(Value::as_u64).ok_or_else(|| bad(path, "fixed without `size`"))?;
                    out.push_str(&format!(r#","size":{size}"#));
                }
                _ => {
                    let fields = obj
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad(path, "record without `fields`"))?;
                    out.push_str(r#","fields":"#);
                    write_list(out, fields, |out, _, f| {
                        let fname =
                            f.get("name").and_then(Value::as_str).ok_or_else(|| bad(path, "field without `name`"))?;
                        let fpath = format!("{path}.{fname}");
                        let fty = f.get("type").ok_or_else(|| bad(&fpath, "field without `type`"))?;
                        out.push_str(r#"{"name":"#);
                        out.push_str(&quoted(fname));
                        out.push_str(r#","type":"#);
                        write(fty, ns.as_deref(), defined, out, &fpath)?;
                        out.push('}');
                        Ok(())
                    })?;
                }
            }
            out.push('}');
            Ok(())
        }
        other => write_name(other, enclosing, defined, out, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Avro's own vectors (share/test/data/schema-tests.txt, the spec's reference data):
    /// input, Parsing Canonical Form, fingerprint as Java's signed long.
    const SPEC_VECTORS: &[(&str, &str, i64)] = &[
        (r#""null""#, r#""null""#, 7195948357588979594),
        (r#"{"type":"null"}"#, r#""null""#, 7195948357588979594),
        (r#""boolean""#, r#""boolean""#, -6970731678124411036),
        (r#"{"type":"boolean"}"#, r#""boolean""#, -6970731678124411036),
        (r#""int""#, r#""int""#, 8247732601305521295),
        (r#"{"type":"int"}"#, r#""int""#, 8247732601305521295),
        (r#""long""#, r#""long""#, -3434872931120570953),
        (r#"{"type":"long"}"#, r#""long""#, -3434872931120570953),
        (r#""float""#, r#""float""#, 5583340709985441680),
        (r#"{"type":"float"}"#, r#""float""#, 5583340709985441680),
        (r#""double""#, r#""double""#, -8181574048448539266),
        (r#"{"type":"double"}"#, r#""double""#, -8181574048448539266),
        (r#""bytes""#, r#""bytes""#, 5746618253357095269),
        (r#"{"type":"bytes"}"#, r#""bytes""#, 5746618253357095269),
        (r#""string""#, r#""string""#, -8142146995180207161),
        (r#"{"type":"string"}"#, r#""string""#, -8142146995180207161),
        ("[  ]", "[]", -1241056759729112623),
        (r#"[ "int"  ]"#, r#"["int"]"#, -5232228896498058493),
        (r#"[ "int" , {"type":"boolean"} ]"#, r#"["int","boolean"]"#, 5392556393470105090),
        (
            r#"{"fields":[], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
            r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
            5916914534497305771,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
            r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
            -4616218487480524110,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"Useful info"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}"#,
            7843277075252814651,
        ),
        (
            r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},
{"order":"descending","name":"f2","doc":"Hello","type":"int"}],"type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
            -4860222112080293046,
        ),
        (
            r#"{"type":"enum", "name":"foo", "symbols":["A1"]}"#,
            r#"{"name":"foo","type":"enum","symbols":["A1"]}"#,
            -6342190197741309591,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
            r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
            -4448647247586288245,
        ),
        (
            r#"{"name":"foo","type":"fixed","size":15}"#,
            r#"{"name":"foo","type":"fixed","size":15}"#,
            1756455273707447556,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
            r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
            -3064184465700546786,
        ),
        (r#"{ "items":{"type":"null"}, "type":"array"}"#, r#"{"type":"array","items":"null"}"#, -589620603366471059),
        (r#"{ "values":"string", "type":"map"}"#, r#"{"type":"map","values":"string"}"#, -8732877298790414990),
        (
            r#"{"name":"PigValue","type":"record",
   "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            -1759257747318642341,
        ),
    ];

    #[test]
    fn avros_own_vectors_give_their_canonical_form_and_fingerprint() {
        for (input, canonical, fp) in SPEC_VECTORS {
            assert_eq!(parsing_canonical_form(input).unwrap(), *canonical, "{input}");
            assert_eq!(fingerprint(input).unwrap() as i64, *fp, "{input}");
        }
    }

    #[test]
    fn the_crc_matches_the_specs_reference_values() {
        // The spec defines fingerprint("") as the EMPTY constant; `"null"`'s and `"int"`'s
        // 64-bit fingerprints are in Avro's own test data (share/test/data/schema-tests.txt).
        assert_eq!(crc64_avro(b""), 0xc15d_213a_a4d7_a795);
        assert_eq!(crc64_avro(br#""null""#) as i64, 7_195_948_357_588_979_594);
        assert_eq!(crc64_avro(br#""int""#) as i64, 8_247_732_601_305_521_295);
    }

    #[test]
    fn logical_types_docs_and_custom_attributes_are_stripped() {
        let avsc = r#"{ "type" : "record", "name":"A", "namespace":"n.s", "doc":"文档",
            "fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"default":0},
                      {"name":"d","type":["null",{"type":"bytes","logicalType":"decimal","precision":19,"scale":4}],
                       "tidemark.join":["a","b"]},
                      {"name":"f","type":{"type":"fixed","name":"F","size":16}},
                      {"name":"g","type":"F"},
                      {"name":"e","type":{"type":"enum","name":"x.E","symbols":["A","B"],"doc":"d"}},
                      {"name":"l","type":{"type":"array","items":{"type":"record","name":"L","fields":[]}}},
                      {"name":"m","type":{"type":"map","values":"n.s.L"}}]}"#;
        assert_eq!(
            parsing_canonical_form(avsc).unwrap(),
            concat!(
                r#"{"name":"n.s.A","type":"record","fields":[{"name":"t","type":"long"},"#,
                r#"{"name":"d","type":["null","bytes"]},{"name":"f","type":{"name":"n.s.F","type":"fixed","size":16}},"#,
                r#"{"name":"g","type":"n.s.F"},{"name":"e","type":{"name":"x.E","type":"enum","symbols":["A","B"]}},"#,
                r#"{"name":"l","type":{"type":"array","items":{"name":"n.s.L","type":"record","fields":[]}}},"#,
                r#"{"name":"m","type":{"type":"map","values":"n.s.L"}}]}"#
            )
        );
    }

    #[test]
    fn unknown_types_are_errors_naming_the_field() {
        let e = parsing_canonical_form(r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("$.a") && e.contains("nope"), "{e}");
    }
}

#[cfg(test)]
mod schema_files {
    /// Each schema (`.avsc`) in `schemas/` (built-in endpoints) and `endpoints/` (the real
    /// vendor methods shipped as user endpoints) with the fingerprint Java Avro 1.12 computes for it
    /// (`SchemaNormalization.parsingFingerprint64`), which fastavro 1.13 agrees with.
    const JAVA: &[(&str, &str, u64)] = &[
        ("finance.balances.avsc", include_str!("../../../../schemas/finance.balances.avsc"), 0xab6d_0a60_5004_2bde),
        (
            "finance.transactions.avsc",
            include_str!("../../../../schemas/finance.transactions.avsc"),
            0x1946_f968_8d96_4990,
        ),
        (
            "qimen.refund_query.avsc",
            include_str!("../../../../endpoints/qimen.refund_query.avsc"),
            0xde2f_0e64_b09c_db06,
        ),
        (
            "qimen.stockin_refund.avsc",
            include_str!("../../../../schemas/qimen.stockin_refund.avsc"),
            0x9337_4d9a_4ea6_3aba,
        ),
        (
            "qimen.stockout_trade.avsc",
            include_str!("../../../../endpoints/qimen.stockout_trade.avsc"),
            0xa656_cebd_5805_302f,
        ),
        ("qimen.trade_query.avsc", include_str!("../../../../endpoints/qimen.trade_query.avsc"), 0xc2a7_421b_b27c_ae14),
        ("top.finance_order.avsc", include_str!("../../../../schemas/top.finance_order.avsc"), 0x71f9_feb3_95ab_dbad),
        ("wdt.account_check.avsc", include_str!("../../../../schemas/wdt.account_check.avsc"), 0x9bae_ee3e_45ae_2512),
        ("wdt.refund_query.avsc", include_str!("../../../../endpoints/wdt.refund_query.avsc"), 0x0d7f_583a_1e36_b5be),
        (
            "wdt.stockout_trade.avsc",
            include_str!("../../../../endpoints/wdt.stockout_trade.avsc"),
            0xff80_537a_91c4_6647,
        ),
        ("wdt.trade_query.avsc", include_str!("../../../../endpoints/wdt.trade_query.avsc"), 0x291e_0660_c11e_73df),
    ];

    #[test]
    fn every_schema_has_javas_fingerprint() {
        for (file, avsc, want) in JAVA {
            assert_eq!(super::fingerprint(avsc).unwrap(), *want, "{file}");
        }
        let files: usize = ["schemas", "endpoints"]
            .iter()
            .map(|dir| {
                std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir))
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "avsc"))
                    .count()
            })
            .sum();
        assert_eq!(
            files,
            JAVA.len(),
            "every .avsc in schemas/ and endpoints/ has its vector here (the .toml manifests beside them are not schemas)"
        );
    }

    #[test]
    fn the_header_carries_the_fingerprint_little_endian() {
        let (_, avsc, _) = JAVA.iter().find(|(file, ..)| *file == "wdt.account_check.avsc").unwrap();
        let codec = crate::avro::RecordCodec::from_avsc(avsc).unwrap();
        let mut out = Vec::new();
        codec.encode_value(&serde_json::json!({"account_check_no": "x"}), &mut out).unwrap();
        assert_eq!(out[..10], [0xC3, 0x01, 0x12, 0x25, 0xae, 0x45, 0x3e, 0xee, 0xae, 0x9b]);
    }
}
