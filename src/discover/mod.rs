//! `tidemark discover`: reads a window of a vendor method through its protocol's client and writes the endpoint's manifest and schema.

pub mod infer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::domain::config::format_duration;
use crate::domain::time::{parse_beijing, truncate_to_second};
use crate::domain::window::Window;
use crate::domain::{Mode, source::ApiSpec};
use crate::sources::protocol::WDT;
use crate::sources::wdt::WdtSource;
use crate::sources::{PageRequest, SourceError};
use infer::{Fields, InferError, Ty, camel, describe, key_field, list_field, record};

/// The window read when `--window` is not given: the day up to now.
pub const DEFAULT_SPAN: Duration = Duration::from_secs(86_400);
/// The most pages read: enough records to infer from, without reading a busy seller's day.
pub const MAX_PAGES: u32 = 50;

/// What to discover and where to write it.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    pub source: String,
    pub method: String,
    /// Default `<protocol>.<method without .php>`.
    pub kind: Option<String>,
    pub out: PathBuf,
    /// `START..END`, Beijing times `yyyy-MM-dd HH:mm:ss`.
    pub window: Option<String>,
    pub key_field: Option<String>,
    /// `key=value` each.
    pub params: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("unknown source {0:?} (known: {1})")]
    UnknownSource(String, String),
    #[error("source {source_id:?} speaks {protocol}; discover reads wdt sources only for now")]
    Protocol { source_id: String, protocol: String },
    #[error("bad --window {0:?}: {1}")]
    Window(String, String),
    #[error("bad --params {0:?}: expected key=value")]
    Param(String),
    #[error("parameter {0:?} is set by the wdt protocol itself and may not be given")]
    Reserved(String),
    #[error("bad kind {0:?}: {1}")]
    Kind(String, String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("page {page} of {method}: {source}")]
    Vendor { page: u32, method: String, source: SourceError },
    #[error("page {page} of {method}: {field:?} is not a list")]
    NotAList { page: u32, method: String, field: String },
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the manifest written does not load (a bug in discover): {0}")]
    Manifest(#[from] tidemark_endpoints::ManifestError),
}

/// What was found, and the lines that say how.
#[derive(Debug)]
pub struct Discovery {
    pub kind: String,
    pub key_field: String,
    pub manifest: PathBuf,
    pub schema: PathBuf,
    pub summary: Vec<String>,
}

/// The window of `--window START..END`, or the [`DEFAULT_SPAN`] up to `now`.
pub fn parse_window(text: Option<&str>, now: DateTime<Utc>) -> Result<Window, DiscoverError> {
    let Some(text) = text else {
        let end = truncate_to_second(now);
        return Ok(Window { start: end - chrono::Duration::from_std(DEFAULT_SPAN).expect("a day"), end });
    };
    let bad = |why: &str| DiscoverError::Window(text.to_owned(), why.to_owned());
    let (a, b) = text.split_once("..").ok_or_else(|| bad("expected START..END"))?;
    let time = |s: &str| parse_beijing(s.trim()).ok_or_else(|| bad("times are Beijing yyyy-MM-dd HH:mm:ss"));
    let (start, end) = (time(a)?, time(b)?);
    if end <= start {
        return Err(bad("the end is not after the start"));
    }
    Ok(Window { start, end })
}

/// `key=value` pairs, none of them a parameter the protocol sets.
pub fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>, DiscoverError> {
    let reserved = WDT.reserved_params(Mode::Windowed);
    let mut out = BTreeMap::new();
    for p in params {
        let (k, v) =
            p.split_once('=').filter(|(k, _)| !k.trim().is_empty()).ok_or_else(|| DiscoverError::Param(p.clone()))?;
        if reserved.contains(&k.trim()) {
            return Err(DiscoverError::Reserved(k.trim().to_owned()));
        }
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// `wdt.<method without .php>`, or the given kind, checked.
pub fn kind_of(given: Option<&str>, method: &str) -> Result<String, DiscoverError> {
    let kind = given.map(str::to_owned).unwrap_or_else(|| format!("wdt.{}", method.trim_end_matches(".php")));
    let rest = kind
        .strip_prefix("wdt.")
        .ok_or_else(|| DiscoverError::Kind(kind.clone(), "it must start with \"wdt.\"".into()))?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return Err(DiscoverError::Kind(kind.clone(), "after \"wdt.\" only letters, digits, _ . -".into()));
    }
    if tidemark_endpoints::builtin(&kind).is_some() {
        return Err(DiscoverError::Kind(kind.clone(), "it is a built-in kind; choose another with --kind".into()));
    }
    Ok(kind)
}

/// Reads the window's pages of `opts.method` with the source's credentials, infers the
/// endpoint and writes `<out>/<kind>.toml` and `<kind>.avsc`.
pub async fn discover(cfg: &Config, opts: &DiscoverOptions, now: DateTime<Utc>) -> Result<Discovery, DiscoverError> {
    let source = cfg.sources.get(&opts.source).ok_or_else(|| {
        DiscoverError::UnknownSource(opts.source.clone(), cfg.sources.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
    let endpoint = cfg.endpoints.find(&source.kind).ok_or_else(|| {
        DiscoverError::Config(ConfigError::invalid(
            format!("sources.{}.kind", source.id),
            format!("unknown kind {:?}", source.kind),
        ))
    })?;
    if endpoint.protocol.name != WDT.name {
        return Err(DiscoverError::Protocol {
            source_id: opts.source.clone(),
            protocol: endpoint.protocol.name.to_owned(),
        });
    }
    let kind = kind_of(opts.kind.as_deref(), &opts.method)?;
    let params = parse_params(&opts.params)?;
    let window = parse_window(opts.window.as_deref(), now)?;
    // The client needs a spec that lives as long as it: one leaked per command run.
    let spec: &'static ApiSpec = Box::leak(Box::new(ApiSpec {
        kind: Box::leak(kind.clone().into_boxed_str()),
        method: Box::leak(opts.method.clone().into_boxed_str()),
        list_field: "",
        default_params: &[],
        ..endpoint.spec
    }));
    let http = reqwest::Client::builder()
        .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::invalid("sources", format!("cannot build http client: {e}")))?;
    let client = WdtSource::new(spec, source, http)?;

    let page_size = WDT.max_page_size;
    let (mut list, mut records, mut total, mut pages) = (None::<String>, Vec::new(), None, 0);
    while pages < MAX_PAGES {
        let req = PageRequest { window: Some(&window), page_index: pages, page_size, params: &params };
        let mut envelope = client.fetch_raw(req).await.map_err(|source| DiscoverError::Vendor {
            page: pages,
            method: opts.method.clone(),
            source,
        })?;
        let field = match &list {
            Some(f) => f.clone(),
            None => {
                total = envelope.get("total_count").and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()));
                let f = list_field(&envelope)?;
                list = Some(f.clone());
                f
            }
        };
        pages += 1;
        let page = match envelope.get_mut(&field).map(Value::take) {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(DiscoverError::NotAList { page: pages - 1, method: opts.method.clone(), field }),
        };
        let short = page.len() < page_size as usize;
        records.extend(page);
        if short || total.is_some_and(|t| records.len() as u64 >= t) {
            break;
        }
    }
    let list = list.expect("the first page sets it");
    if records.is_empty() {
        return Err(InferError::NoRecords { field: list }.into());
    }
    let fields = Fields::of(&records, "")?;
    let (key, why) = key_field(&records, opts.key_field.as_deref())?;

    let span = (window.end - window.start).to_std().expect("end after start");
    let mut summary = vec![
        format!(
            "read {} records in {pages} pages of {} from source {:?}, window {window}{}",
            records.len(),
            opts.method,
            opts.source,
            match total {
                Some(t) if t as usize > records.len() =>
                    format!(" (the vendor counts {t}; stopped at {MAX_PAGES} pages)"),
                _ => String::new(),
            }
        ),
        format!("list field: {list} (the envelope's only list of objects)"),
        format!("key field: {key} ({why})"),
        format!("max_span: {} (the window read; a longer one is untested)", format_duration(span)),
        "fields (all but the key optional: a window cannot show a field is never missing):".to_owned(),
    ];
    let mut ambiguous = Vec::new();
    for f in &fields.fields {
        summary.push(format!(
            "  {:<24} {:<34} empty or missing in {} of {}",
            f.name,
            if f.name == key { "string (key)".to_owned() } else { describe(&f.ty) },
            f.empty,
            fields.records
        ));
        if let Some(note) = &f.note {
            ambiguous.push(format!("{}: {note}", f.name));
        }
        if f.ty == Ty::Unknown {
            ambiguous.push(format!("{}: only empty values seen, typed string", f.name));
        }
    }
    if !ambiguous.is_empty() {
        summary.push(format!("check by hand: {}", ambiguous.join("; ")));
    }

    let name = camel(kind.strip_prefix("wdt.").unwrap_or(&kind));
    let doc = format!(
        "旺店通 openapi2 {}: one element of {list}. Inferred by `tidemark discover` from {} records of {window}.",
        opts.method,
        records.len()
    );
    let schema = record(&fields, &name, "tidemark.wdt", Some(&key), Some(&doc));
    std::fs::create_dir_all(&opts.out).map_err(|source| DiscoverError::Write { path: opts.out.clone(), source })?;
    let manifest_path = opts.out.join(format!("{kind}.toml"));
    let schema_path = opts.out.join(format!("{kind}.avsc"));
    write(&schema_path, &(serde_json::to_string_pretty(&schema).expect("json") + "\n"))?;
    write(&manifest_path, &manifest(&kind, &opts.method, &list, &key, span, &params, &window, records.len()))?;
    // What it wrote must load as `run` loads it.
    tidemark_endpoints::manifest::load(&manifest_path)?;
    summary.push(format!("wrote {} and {}", manifest_path.display(), schema_path.display()));
    Ok(Discovery { kind, key_field: key, manifest: manifest_path, schema: schema_path, summary })
}

fn write(path: &Path, text: &str) -> Result<(), DiscoverError> {
    std::fs::write(path, text).map_err(|source| DiscoverError::Write { path: path.to_owned(), source })
}

/// The manifest text, in the README's "Adding an endpoint" format.
#[allow(clippy::too_many_arguments)]
fn manifest(
    kind: &str,
    method: &str,
    list: &str,
    key: &str,
    span: Duration,
    params: &BTreeMap<String, String>,
    window: &Window,
    records: usize,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = format!(
        "# Written by `tidemark discover` from {records} records of {window}; the format is the\n\
         # README's \"Adding an endpoint\". Check the key and max_span against the vendor's docs.\n\
         kind = {}\nprotocol = \"wdt\"\nmethod = {}\nlist_field = {}\nkey_field = {}\ndefault_topic = {}\n\
         mode = \"windowed\"\nmax_span = \"{}\"\ndescription = {}\n\n\
         [pages]\npaged = true\nmax_size = {max}\ndefault_size = {max}\n# openapi2 sends total_count only when page_no = 0.\ntotal = \"first_page\"\n",
        q(kind),
        q(method),
        q(list),
        q(key),
        q(kind),
        format_duration(span),
        q(&format!("{method} (discovered)")),
        max = WDT.max_page_size,
    );
    if !params.is_empty() {
        out.push_str("\n[params]\n");
        for (k, v) in params {
            out.push_str(&format!("{} = {}\n", q(k), q(v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_params_and_kinds_are_checked() {
        let now = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        let w = parse_window(None, now).unwrap();
        assert_eq!((w.end - w.start).num_hours(), 24);
        let w = parse_window(Some("2024-01-01 08:00:00..2024-01-01 09:00:00"), now).unwrap();
        assert_eq!(w.start, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
        assert!(parse_window(Some("2024-01-01 09:00:00..2024-01-01 08:00:00"), now).is_err());
        assert!(parse_window(Some("yesterday"), now).unwrap_err().to_string().contains("START..END"));
        assert_eq!(parse_params(&["time_type=1".into()]).unwrap()["time_type"], "1");
        assert!(matches!(parse_params(&["page_size=5".into()]), Err(DiscoverError::Reserved(k)) if k == "page_size"));
        assert!(matches!(parse_params(&["x".into()]), Err(DiscoverError::Param(_))));
        assert_eq!(kind_of(None, "trade_query.php").unwrap(), "wdt.trade_query");
        assert!(kind_of(Some("qimen.x"), "m").is_err());
        assert!(kind_of(Some("wdt.account_check"), "m").unwrap_err().to_string().contains("built-in"));
    }

    #[test]
    fn the_manifest_written_loads() {
        let dir = tempfile::tempdir().unwrap();
        let fields = Fields::of(&[serde_json::json!({"k": "1", "amt": "1.00"})], "").unwrap();
        let schema = record(&fields, "T", "tidemark.wdt", Some("k"), None);
        std::fs::write(dir.path().join("wdt.t.avsc"), schema.to_string()).unwrap();
        let params = BTreeMap::from([("time_type".to_owned(), "1".to_owned())]);
        let w = parse_window(None, Utc::now()).unwrap();
        let text = manifest("wdt.t", "t.php", "list", "k", Duration::from_secs(5400), &params, &w, 1);
        std::fs::write(dir.path().join("wdt.t.toml"), &text).unwrap();
        let e = tidemark_endpoints::manifest::load(&dir.path().join("wdt.t.toml")).unwrap();
        assert_eq!((e.spec.key_field, e.spec.list_field, e.spec.max_span), ("k", "list", Duration::from_secs(5400)));
        assert_eq!(e.spec.default_params, &[("time_type", "1")]);
    }
}
