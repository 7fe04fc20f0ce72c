//! The README's configuration reference held to the types: every key a section's type accepts
//! has a row, a row's default is the type's (a literal default read by the type equals what
//! leaving the key out gives; `required` exactly where leaving it out fails), and no row
//! names a key that does not exist. Likewise the credentials table of the kinds' own keys.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::de::DeserializeOwned;

use super::*;
use crate::sources::{finance::FinanceSettings, qimen::QimenSettings, top::TopSettings, wdt::WdtSettings};
use crate::targets::k3cloud::K3CloudSettings;

const README: &str = include_str!("../../README.md");

/// What a row says a key defaults to.
#[derive(Debug, Clone, PartialEq)]
enum Doc {
    /// The key must be given.
    Required,
    /// A value as config writes it (`60s`, `6`, `tidemark`).
    Literal(String),
    /// Words (`off`, `the kind's topic`, `= stock_org`): the key may be left out.
    Described(String),
}

impl Doc {
    fn parse(cell: &str) -> Doc {
        let cell = cell.trim();
        if cell.starts_with("required") {
            return Doc::Required;
        }
        match cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
            Some(v) if !v.contains('`') && !v.contains('<') => Doc::Literal(v.trim_matches('"').to_owned()),
            _ => Doc::Described(cell.to_owned()),
        }
    }
}

/// The rows of the markdown table that starts at the first line after `after` beginning with
/// `| \``: cells split on ` | `.
fn table_rows(after: &str) -> Vec<Vec<String>> {
    let start = README.find(after).unwrap_or_else(|| panic!("README has no {after:?}"));
    README[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| `"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect())
        .collect()
}

/// The configuration table's rows as key → default: `` `a.b`, `.c` `` names `a.b` and `a.c`;
/// a defaults cell lists one default per key, or one for all.
fn reference() -> BTreeMap<String, Doc> {
    let mut keys = BTreeMap::new();
    for row in table_rows("## Configuration") {
        let names: Vec<&str> = row[0].split(", ").map(|k| k.trim_matches('`')).collect();
        let parent = names[0].rsplit_once('.').map_or("", |(p, _)| p);
        let names: Vec<String> =
            names.iter().map(|k| if k.starts_with('.') { format!("{parent}{k}") } else { (*k).to_owned() }).collect();
        let defaults: Vec<&str> = if names.len() == 1 { vec![&row[1]] } else { row[1].split(", ").collect() };
        assert!(
            defaults.len() == names.len() || defaults.len() == 1,
            "README row {names:?}: {} defaults for {} keys",
            defaults.len(),
            names.len()
        );
        for (i, name) in names.into_iter().enumerate() {
            let default = Doc::parse(defaults[if defaults.len() == 1 { 0 } else { i }]);
            assert!(keys.insert(name.clone(), default).is_none(), "README names {name} twice");
        }
    }
    keys
}

/// The credentials table (Sources): kind pattern → key → default (`required` unless the key's
/// note says `default \`x\``).
fn credentials() -> BTreeMap<String, BTreeMap<String, Doc>> {
    table_rows("Credentials per kind")
        .into_iter()
        .map(|row| {
            let mut keys = BTreeMap::new();
            // `a`, `b` (`x`/`y`, default `x`), `c`: a key, then its note in brackets.
            let mut rest = row[1].as_str();
            while let Some(start) = rest.find('`') {
                let after = &rest[start + 1..];
                let end = after.find('`').expect("closing backtick");
                let key = after[..end].to_owned();
                rest = &after[end + 1..];
                let mut default = Doc::Required;
                if let Some(note) = rest.trim_start().strip_prefix('(') {
                    let close = note.find(')').expect("closing bracket");
                    if let Some((_, d)) = note[..close].split_once("default ") {
                        default = Doc::parse(d);
                    }
                    rest = &note[close + 1..];
                }
                keys.insert(key, default);
            }
            (row[0].trim_matches('`').to_owned(), keys)
        })
        .collect()
}

/// A value for a key that must be given.
fn sample(key: &str) -> toml::Value {
    let v = match key {
        "kind" => "wdt.account_check",
        "base_url" | "url" => "http://127.0.0.1:1",
        "id" => "s/1",
        _ => "x",
    };
    toml::Value::String(v.to_owned())
}

/// A literal default as TOML: a number or boolean where it reads as one, else text.
fn literal(text: &str) -> Vec<toml::Value> {
    let mut as_written = vec![toml::Value::String(text.to_owned())];
    if let Ok(n) = text.parse::<i64>() {
        as_written.insert(0, toml::Value::Integer(n));
    }
    if let Ok(b) = text.parse::<bool>() {
        as_written.insert(0, toml::Value::Boolean(b));
    }
    as_written
}

fn read<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    T::deserialize(table.clone()).map_err(|e| e.to_string())
}

/// Holds section type `T` to the rows `documented` (key within the section → default).
fn check<T: DeserializeOwned + PartialEq + Debug>(what: &str, documented: &BTreeMap<String, Doc>) {
    let fields: BTreeSet<String> = fields_of::<T>().iter().map(|f| f.to_string()).collect();
    let rows: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(rows, fields, "{what}: the README's keys (left) against the type's (right)");
    let required: toml::Table =
        documented.iter().filter(|(_, d)| **d == Doc::Required).map(|(k, _)| (k.clone(), sample(k))).collect();
    let base: T = read(&required)
        .unwrap_or_else(|e| panic!("{what}: a key the README does not call required is, or a sample is bad: {e}"));
    for key in required.keys() {
        let mut without = required.clone();
        without.remove(key);
        let e =
            read::<T>(&without).expect_err(&format!("{what}.{key}: the README calls it required; it has a default"));
        assert!(e.contains(&format!("missing field `{key}`")), "{what}.{key}: {e}");
    }
    for (key, default) in documented {
        let Doc::Literal(text) = default else { continue };
        let as_read = literal(text).into_iter().find_map(|v| {
            let mut with = required.clone();
            with.insert(key.clone(), v);
            read::<T>(&with).ok()
        });
        let as_read = as_read.unwrap_or_else(|| panic!("{what}.{key}: the README's default {text:?} is not a value"));
        assert_eq!(as_read, base, "{what}.{key}: the README says the default is {text:?}; the type's differs");
    }
}

/// The rows of `documented` under `prefix`, by key within it.
fn under(documented: &BTreeMap<String, Doc>, prefix: &str) -> BTreeMap<String, Doc> {
    documented.iter().filter_map(|(k, d)| k.strip_prefix(prefix).map(|k| (k.to_owned(), d.clone()))).collect()
}

#[test]
fn the_readme_reference_table_matches_the_section_types() {
    let mut documented = reference();
    assert_eq!(
        documented.remove("sources.<id>.…"),
        Some(Doc::Described("per kind".into())),
        "a row points to the credentials table"
    );
    // Every section of the file has its rows here: a new section fails until it is checked.
    // The file's own keys (not sections) are optional, their defaults documented as words.
    let top_level = ["endpoints_dir", "max_buffered_bytes"];
    let sections = ["kafka", "metrics", "schema_registry", "sources", "streams", "writers", "cluster"];
    assert_eq!(fields_of::<FileConfig>(), [&top_level[..], &sections[..]].concat());
    for key in top_level {
        let doc = documented.remove(key).unwrap_or_else(|| panic!("the README has no row for {key}"));
        assert!(matches!(doc, Doc::Described(_)), "{key}: optional, its default in words: {doc:?}");
        let without = format!(
            "[kafka]\nbootstrap = \"b:1\"\n{}",
            "[sources.s]\nkind = \"wdt.account_check\"\nbase_url = \"http://x\"\n[[streams]]\nid = \"s\"\nsource = \"s\"\n"
        );
        Config::parse(&without).unwrap_or_else(|e| panic!("{key} may be left out: {e}"));
    }
    check::<KafkaSection>("kafka", &under(&documented, "kafka."));
    check::<MetricsSection>("metrics", &under(&documented, "metrics."));
    check::<RegistrySection>("schema_registry", &under(&documented, "schema_registry."));
    check::<SourceSection>("sources.<id>", &under(&documented, "sources.<id>."));
    check::<StreamSection>("streams[]", &under(&documented, "streams[]."));
    check::<ClusterSection>("cluster", &under(&documented, "cluster."));
    // A writer's rows are its section's and its target's (K3Cloud, the one kind).
    assert_eq!(crate::targets::TARGETS.len(), 1, "check the new target's keys here");
    let writers = under(&documented, "writers.<id>.");
    let generic: BTreeSet<&str> = fields_of::<WriterSection>().iter().copied().collect();
    let (section, target): (BTreeMap<_, _>, BTreeMap<_, _>) =
        writers.into_iter().partition(|(k, _)| generic.contains(k.as_str()));
    check::<WriterSection>("writers.<id>", &section);
    check::<K3CloudSettings>("writers.<id> (k3cloud)", &target);
    let checked =
        ["kafka.", "metrics.", "schema_registry.", "sources.<id>.", "streams[].", "cluster.", "writers.<id>."];
    for key in documented.keys() {
        assert!(checked.iter().any(|p| key.starts_with(p)), "the README names {key}, which no section has");
    }
}

#[test]
fn the_readme_credentials_table_matches_each_vendors_settings() {
    let documented = credentials();
    let vendors: BTreeSet<String> = crate::sources::CLIENTS.iter().map(|c| format!("{}.*", c.protocol.name)).collect();
    assert_eq!(documented.keys().cloned().collect::<BTreeSet<_>>(), vendors, "one row per vendor protocol");
    assert_eq!(vendors.len(), 4, "check the new vendor's settings type here");
    check::<WdtSettings>("wdt.*", &documented["wdt.*"]);
    check::<QimenSettings>("qimen.*", &documented["qimen.*"]);
    check::<TopSettings>("top.*", &documented["top.*"]);
    check::<FinanceSettings>("finance.*", &documented["finance.*"]);
}

#[test]
fn the_checks_catch_a_wrong_default_and_a_key_that_does_not_exist() {
    let rows = |pairs: &[(&str, Doc)]| pairs.iter().map(|(k, d)| (k.to_string(), d.clone())).collect();
    let good = || {
        vec![
            ("group", Doc::Required),
            ("instance_id", Doc::Described("the host name".into())),
            ("session_timeout", Doc::Literal("10s".into())),
            ("coordination_topic", Doc::Described("`tidemark.<group>.streams`".into())),
        ]
    };
    check::<ClusterSection>("cluster", &rows(&good()));
    let mut wrong = good();
    wrong[2].1 = Doc::Literal("30s".into());
    assert!(std::panic::catch_unwind(|| check::<ClusterSection>("cluster", &rows(&wrong))).is_err());
    let mut unknown = good();
    unknown.push(("sesion_timeout", Doc::Literal("10s".into())));
    assert!(std::panic::catch_unwind(|| check::<ClusterSection>("cluster", &rows(&unknown))).is_err());
    let mut not_required = good();
    not_required[0].1 = Doc::Described("off".into());
    assert!(std::panic::catch_unwind(|| check::<ClusterSection>("cluster", &rows(&not_required))).is_err());
    let missing = good()[1..].to_vec();
    assert!(std::panic::catch_unwind(|| check::<ClusterSection>("cluster", &rows(&missing))).is_err());
}
