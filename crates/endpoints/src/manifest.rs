//! An endpoint manifest (`<kind>.toml` beside `<kind>.avsc`): its format, its checks, and the
//! [`Endpoint`] a valid one becomes. The format is the README's "Adding an endpoint".

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apache_avro::Schema;
use serde::Deserialize;
use tidemark_domain::config::{ConfigError, check_topic_name, duration, format_duration, section_error};
use tidemark_domain::{ApiSpec, Mode};

use crate::protocol::{self, Protocol};

/// Why an endpoint manifest cannot be used; each names the file, and the key where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("endpoint {file}: cannot read it: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("endpoints_dir {dir}: cannot list it: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("endpoint {file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("endpoint {file}: `{key}`: {reason}")]
    Invalid { file: PathBuf, key: String, reason: String },
    #[error("endpoint {file}: no schema {avsc} beside it (an endpoint is <kind>.toml and <kind>.avsc)")]
    MissingSchema { file: PathBuf, avsc: PathBuf },
    #[error("endpoint {file}: schema {avsc}: {reason}")]
    BadSchema { file: PathBuf, avsc: PathBuf, reason: String },
    #[error("endpoint {file}: kind {kind:?} is built in ({builtin}); give the endpoint another kind name")]
    BuiltIn { file: PathBuf, kind: String, builtin: String },
}

impl ManifestError {
    fn invalid(file: &Path, key: &str, reason: impl Into<String>) -> Self {
        ManifestError::Invalid { file: file.to_owned(), key: key.to_owned(), reason: reason.into() }
    }
}

/// Where an endpoint comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled in from the repository's `schemas/`.
    BuiltIn,
    /// A user's manifest in the worker config's `endpoints_dir`.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One vendor method as tidemark reads it: the spec the worker and clients take, its protocol
/// and where it was defined.
#[derive(Debug)]
pub struct Endpoint {
    pub spec: ApiSpec,
    pub protocol: &'static Protocol,
    pub description: Option<String>,
    pub origin: Origin,
}

/// The manifest as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    kind: String,
    protocol: String,
    method: String,
    list_field: String,
    key_field: String,
    default_topic: String,
    #[serde(default = "windowed")]
    mode: ModeText,
    #[serde(default, deserialize_with = "duration::optional")]
    max_span: Option<Duration>,
    description: Option<String>,
    /// The record field the vendor's window filters on (a timestamp field of the schema).
    window_field: Option<String>,
    /// TOP: the object parameter carrying paging, window and filters.
    request_object: Option<String>,
    /// TOP: the tag each list item is wrapped in when the answer is not simplified.
    list_item: Option<String>,
    pages: Pages,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeText {
    Windowed,
    Snapshot,
}

fn windowed() -> ModeText {
    ModeText::Windowed
}

/// `[pages]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pages {
    #[serde(default = "yes")]
    paged: bool,
    max_size: u32,
    /// Defaults to `max_size`.
    default_size: Option<u32>,
    #[serde(default = "first_page")]
    total: Total,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Total {
    FirstPage,
    EveryPage,
}

fn first_page() -> Total {
    Total::FirstPage
}

/// A snapshot reads no window; its spec still carries a span (unused by the worker), the one
/// the built-in snapshot always had.
const SNAPSHOT_SPAN: Duration = Duration::from_secs(24 * 3600);

/// Checks manifest text `toml` (from `file`, named in errors) with its schema text `avsc`
/// (from `avsc_file`) and makes the endpoint. `stem` is the file name less `.toml`, which
/// must be the kind.
pub fn parse(
    file: &Path,
    stem: &str,
    toml_text: &str,
    avsc_file: &Path,
    avsc: &str,
    origin: Origin,
) -> Result<Endpoint, ManifestError> {
    let table: toml::Table = toml::from_str(toml_text)
        .map_err(|e| ManifestError::Syntax { file: file.to_owned(), message: e.to_string().trim_end().to_owned() })?;
    let m: Manifest =
        serde_path_to_error::deserialize(table).map_err(|e| match section_error("", e, None, &Default::default()) {
            ConfigError::Invalid { key, reason } => ManifestError::Invalid { file: file.to_owned(), key, reason },
            other => ManifestError::Syntax { file: file.to_owned(), message: other.to_string() },
        })?;
    let bad = |key: &str, reason: String| ManifestError::invalid(file, key, reason);

    let protocol = protocol::protocol(&m.protocol)
        .ok_or_else(|| bad("protocol", format!("unknown protocol {:?} (known: {})", m.protocol, protocol::names())))?;
    match m.kind.strip_prefix(&format!("{}.", protocol.name)) {
        Some(rest)
            if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) => {}
        _ => {
            return Err(bad(
                "kind",
                format!(
                    "{:?} must start with \"{}.\" (its protocol's name) and go on with [A-Za-z0-9_.-]",
                    m.kind, protocol.name
                ),
            ));
        }
    }
    if m.kind != stem {
        return Err(bad(
            "kind",
            format!("{:?} must be the file's name ({stem:?}): an endpoint is <kind>.toml", m.kind),
        ));
    }
    for (key, value) in [("method", &m.method), ("list_field", &m.list_field), ("key_field", &m.key_field)] {
        if value.trim().is_empty() {
            return Err(bad(key, "is empty".into()));
        }
    }
    check_topic_name("default_topic", &m.default_topic).map_err(|e| reason_of(file, e))?;

    let mode = match m.mode {
        ModeText::Windowed => Mode::Windowed,
        ModeText::Snapshot => Mode::Snapshot,
    };
    let max_span = match (mode, m.max_span) {
        (Mode::Windowed, None) => {
            return Err(bad(
                "max_span",
                "missing: a windowed endpoint names the longest window the vendor accepts".into(),
            ));
        }
        (Mode::Windowed, Some(span)) if span < Duration::from_secs(1) => {
            return Err(bad("max_span", format!("{} is shorter than 1s", format_duration(span))));
        }
        (Mode::Windowed, Some(span)) => span,
        (Mode::Snapshot, Some(span)) => {
            return Err(bad(
                "max_span",
                format!("{} is set but a snapshot endpoint reads no window; remove it", format_duration(span)),
            ));
        }
        (Mode::Snapshot, None) => SNAPSHOT_SPAN,
    };
    if mode == Mode::Snapshot && !protocol.snapshot {
        return Err(bad(
            "mode",
            format!("\"snapshot\": the {} protocol's client reads time windows only", protocol.name),
        ));
    }

    let max = m.pages.max_size;
    if max == 0 || max > protocol.max_page_size {
        return Err(bad(
            "pages.max_size",
            format!(
                "{max} is outside 1..={}, the {} protocol's page-size limit",
                protocol.max_page_size, protocol.name
            ),
        ));
    }
    let default_size = m.pages.default_size.unwrap_or(max);
    if default_size == 0 || default_size > max {
        return Err(bad("pages.default_size", format!("{default_size} is outside 1..={max} (pages.max_size)")));
    }

    let reserved = protocol.reserved_params(mode);
    if let Some(p) = m.params.keys().find(|p| reserved.contains(&p.as_str())) {
        return Err(bad(
            &format!("params.{p}"),
            format!("{p:?} is set by the {} client itself; remove it", protocol.name),
        ));
    }

    check_object_request(file, protocol, &m)?;
    check_schema(file, avsc_file, avsc, &m.key_field, m.window_field.as_deref())?;
    if mode == Mode::Snapshot && m.window_field.is_some() {
        return Err(bad("window_field", "is set but a snapshot endpoint reads no window; remove it".into()));
    }

    // The worker and the clients take `&'static ApiSpec`: an endpoint's text is leaked once
    // when it is loaded (at start, or per `Config::load`), bounded by the number of files.
    let leak = |s: String| -> &'static str { s.leak() };
    let default_params: Vec<(&'static str, &'static str)> =
        m.params.into_iter().map(|(k, v)| (leak(k), leak(v))).collect();
    let spec = ApiSpec {
        kind: leak(m.kind),
        method: leak(m.method),
        list_field: leak(m.list_field),
        reserved_params: reserved.leak(),
        default_params: default_params.leak(),
        schema: leak(avsc.to_owned()),
        key_field: leak(m.key_field),
        default_topic: leak(m.default_topic),
        max_span,
        max_page_size: max,
        default_page_size: default_size,
        mode,
        paged: m.pages.paged,
        total_on_every_page: m.pages.total == Total::EveryPage,
        window_field: m.window_field.map(leak),
        request_object: m.request_object.map(leak),
        list_item: m.list_item.map(leak),
    };
    Ok(Endpoint { spec, protocol, description: m.description, origin })
}

/// `request_object` and `list_item` are both named for a protocol whose methods take an
/// object parameter (TOP), and neither for any other.
fn check_object_request(file: &Path, protocol: &Protocol, m: &Manifest) -> Result<(), ManifestError> {
    for (key, value, example) in [
        ("request_object", &m.request_object, "finance_order_detail_request"),
        ("list_item", &m.list_item, "finance_order_detail"),
    ] {
        match (protocol.object_request, value.as_deref().map(str::trim)) {
            (true, None | Some("")) => {
                return Err(ManifestError::invalid(
                    file,
                    key,
                    format!(
                        "missing: a {} method names it (the method's documentation shows it, e.g. {example:?})",
                        protocol.name
                    ),
                ));
            }
            (true, Some(name)) if protocol.system_params.contains(&name) => {
                return Err(ManifestError::invalid(
                    file,
                    key,
                    format!("{name:?} is a parameter the {} client sets itself", protocol.name),
                ));
            }
            (false, Some(_)) => {
                return Err(ManifestError::invalid(
                    file,
                    key,
                    format!("is set but {} methods take flat parameters; remove it", protocol.name),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A domain check's error (which names only its key) as this file's.
fn reason_of(file: &Path, e: ConfigError) -> ManifestError {
    match e {
        ConfigError::Invalid { key, reason } => ManifestError::Invalid { file: file.to_owned(), key, reason },
        other => ManifestError::Syntax { file: file.to_owned(), message: other.to_string() },
    }
}

/// The schema parses as an Avro record with `key_field` a required string and `window_field`,
/// if named, a timestamp.
fn check_schema(
    file: &Path,
    avsc_file: &Path,
    avsc: &str,
    key_field: &str,
    window_field: Option<&str>,
) -> Result<(), ManifestError> {
    let bad_schema =
        |reason: String| ManifestError::BadSchema { file: file.to_owned(), avsc: avsc_file.to_owned(), reason };
    let schema = Schema::parse_str(avsc).map_err(|e| bad_schema(format!("does not parse: {e}")))?;
    let Schema::Record(record) = schema else {
        return Err(bad_schema("is not an Avro record".into()));
    };
    if let Some(name) = window_field {
        let field = record.fields.iter().find(|f| f.name == name).map(|f| &f.schema);
        let is_time = |s: &Schema| matches!(s, Schema::TimestampMillis | Schema::TimestampMicros);
        let ok = match field {
            Some(Schema::Union(u)) => u.variants().iter().any(is_time),
            Some(s) => is_time(s),
            None => false,
        };
        if !ok {
            return Err(ManifestError::invalid(
                file,
                "window_field",
                format!("{name:?} is not a timestamp field of {}", avsc_file.display()),
            ));
        }
    }
    match record.fields.iter().find(|f| f.name == key_field) {
        Some(f) if f.schema == Schema::String => Ok(()),
        Some(f) => Err(ManifestError::invalid(
            file,
            "key_field",
            format!(
                "{key_field:?} is {:?} in {}: the business id must be a required string",
                f.schema,
                avsc_file.display()
            ),
        )),
        None => Err(ManifestError::invalid(
            file,
            "key_field",
            format!(
                "{key_field:?} is not a field of {} (fields: {})",
                avsc_file.display(),
                record.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Reads `file` (`<kind>.toml`) and the `<kind>.avsc` beside it.
pub fn load(file: &Path) -> Result<Endpoint, ManifestError> {
    let text = std::fs::read_to_string(file).map_err(|source| ManifestError::Read { file: file.to_owned(), source })?;
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    let avsc_file = file.with_extension("avsc");
    let avsc = match std::fs::read_to_string(&avsc_file) {
        Ok(avsc) => avsc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManifestError::MissingSchema { file: file.to_owned(), avsc: avsc_file });
        }
        Err(e) => return Err(ManifestError::Read { file: avsc_file, source: e }),
    };
    parse(file, &stem, &text, &avsc_file, &avsc, Origin::File(file.to_owned()))
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
