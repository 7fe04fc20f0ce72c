//! `tidemark discover`: reads a window of a vendor method through its protocol's client and writes the endpoint's manifest and schema.

pub mod drift;
pub mod infer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::domain::config::format_duration;
use crate::domain::time::{parse_beijing, truncate_to_second};
use crate::domain::window::Window;
use crate::domain::{Mode, source::ApiSpec};
use crate::sources::protocol::{FINANCE, Protocol, QIMEN, TOP, WDT};
use crate::sources::{PageRequest, Source, SourceError, client_of};
use infer::{Fields, InferError, Ty, camel, describe, key_field, list_field, record};

/// The window read when `--window` is not given: the day up to now.
pub const DEFAULT_SPAN: Duration = Duration::from_secs(86_400);
/// The most pages read: enough records to infer from, without reading a busy seller's day.
pub const MAX_PAGES: u32 = 50;

/// What to discover and where to write it (`tidemark discover`'s options).
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverOptions {
    /// The `[sources.<id>]` whose credentials and base_url to use (a `wdt.*`, `qimen.*`,
    /// `top.*` or `finance.*` kind).
    #[arg(long)]
    pub source: String,
    /// The vendor's method, e.g. `trade_query.php`, `wdt.stockin.order.query.refund`
    /// (default with --against: that kind's method).
    #[arg(long, required_unless_present = "against")]
    pub method: Option<String>,
    /// Folder to write `<kind>.toml` and `<kind>.avsc` into (an `endpoints_dir`).
    #[arg(long)]
    pub out: PathBuf,
    /// The kind to write (default `<protocol>.<method, . and - as _, without .php>`).
    #[arg(long, conflicts_with = "against")]
    pub kind: Option<String>,
    /// `START..END`, Beijing times `yyyy-MM-dd HH:mm:ss` (default: the last 24 h); its length
    /// becomes the manifest's max_span.
    #[arg(long)]
    pub window: Option<String>,
    /// The business id, instead of inferring one; refused unless present, non-empty and
    /// unique in every record read.
    #[arg(long)]
    pub key_field: Option<String>,
    /// A vendor parameter `key=value` sent with every page (repeatable); kept in the
    /// manifest's `[params]`.
    #[arg(long = "params", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Compare the vendor's records with this kind's schema and write the proposed next
    /// version to `<out>/<kind>.avsc` when they differ (exit 1), instead of a new endpoint.
    #[arg(long, value_name = "KIND")]
    pub against: Option<String>,
    /// Records asked per page: the method's own limit where it is below the protocol's
    /// (旺店通 refunds: 40); written as the manifest's `max_size`.
    #[arg(long)]
    pub page_size: Option<u32>,
    /// TOP only: the method's object parameter that carries paging and the window, as its
    /// documentation names it (e.g. `finance_order_detail_request`); written as the
    /// manifest's `request_object` (default with --against: that kind's).
    #[arg(long, value_name = "NAME")]
    pub request_object: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("unknown source {0:?} (known: {1})")]
    UnknownSource(String, String),
    #[error("source {source_id:?} speaks {protocol}; discover reads wdt, qimen, top and finance sources: {why}")]
    Protocol { source_id: String, protocol: String, why: &'static str },
    #[error(
        "--request-object is needed: a {0} method takes its paging and window in one object parameter its documentation names (e.g. finance_order_detail_request)"
    )]
    NoRequestObject(&'static str),
    #[error(
        "page 0 of {method}: the list {list:?} came without its item tag (the source asks for simplified answers); set simplify = false on the source for discover"
    )]
    NoListItem { method: String, list: String },
    #[error("--method is needed (or --against a kind, whose method is read)")]
    NoMethod,
    #[error("source {source_id:?} speaks {protocol} but {kind} is a {kind_protocol} kind")]
    AgainstProtocol { source_id: String, protocol: String, kind: String, kind_protocol: String },
    #[error("unknown kind {0:?} for --against (known: {1})")]
    UnknownKind(String, String),
    #[error("the schema of {kind} is not an avro record: {why}")]
    Schema { kind: String, why: String },
    #[error("bad --window {0:?}: {1}")]
    Window(String, String),
    #[error("bad --params {0:?}: expected key=value")]
    Param(String),
    #[error("parameter {0:?} is set by the {1} protocol itself and may not be given")]
    Reserved(String, &'static str),
    #[error("bad kind {0:?}: {1}")]
    Kind(String, String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    // `answer`, not `source`: the vendor's words are said once, not again as a cause.
    #[error("page {page} of {method}: {answer}")]
    Vendor { page: u32, method: String, answer: SourceError },
    #[error(
        "page 0 of {method}: {answer}; the vendor refused {asked} records a page: pass its limit for this method as --page-size"
    )]
    PageSize { method: String, asked: u32, answer: SourceError },
    #[error("bad --page-size {given}: must be within 1..={max} (the {protocol} protocol's limit)")]
    BadPageSize { given: u32, max: u32, protocol: &'static str },
    #[error("page {page} of {method}: {field:?} is not a list")]
    NotAList { page: u32, method: String, field: String },
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the manifest written does not load (a bug in discover): {0}")]
    Manifest(#[from] tidemark_endpoints::ManifestError),
}

/// Where a protocol's answer holds its list and its total: what discover reads each protocol by.
#[derive(Debug)]
pub struct Envelope {
    pub protocol: &'static Protocol,
    /// The object of the answer holding the list and the total (`None`: the answer itself).
    pub holder: Option<&'static str>,
    /// The field holding the count of all the window's records.
    pub total: &'static str,
    /// Names the vendor in the schema's doc.
    pub vendor: &'static str,
}

/// The protocols discover reads. The TOP client's raw answer is the `models` object with the
/// count copied beside the list (`sources::top::raw_models`).
pub static ENVELOPES: &[Envelope] = &[
    Envelope { protocol: &WDT, holder: None, total: "total_count", vendor: "旺店通 openapi2" },
    Envelope { protocol: &QIMEN, holder: Some("response"), total: "total_count", vendor: "旺店通 via 奇门" },
    Envelope { protocol: &TOP, holder: None, total: "total_count", vendor: "淘宝开放平台 TOP" },
    Envelope { protocol: &FINANCE, holder: None, total: "count", vendor: "财务账单 API" },
];

/// The envelope of protocol `name`, or why discover cannot read it.
pub fn envelope_of(name: &str) -> Result<&'static Envelope, &'static str> {
    ENVELOPES.iter().find(|e| e.protocol.name == name).ok_or("no envelope is known for it")
}

/// Replaces each field of `holder` that wraps one list in an item tag (`{"<tag>": [...]}`,
/// TOP's non-simplified form) by the list, and says which tag each field had.
fn unwrap_item_tags(holder: &mut Value) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let Value::Object(fields) = holder else { return tags };
    for (name, value) in fields.iter_mut() {
        let tag = match value {
            Value::Object(o) if o.len() == 1 && o.values().all(Value::is_array) => o.keys().next().cloned(),
            _ => None,
        };
        if let Some(tag) = tag {
            *value = value[&tag].take();
            tags.insert(name.clone(), tag);
        }
    }
    tags
}

impl Envelope {
    /// The object holding the list and the total.
    fn holder<'a>(&self, answer: &'a mut Value) -> &'a mut Value {
        match self.holder {
            Some(h) if answer.get(h).is_some() => &mut answer[h],
            _ => answer,
        }
    }
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

/// `key=value` pairs, none of them a parameter `protocol` sets.
pub fn parse_params(params: &[String], protocol: &Protocol) -> Result<BTreeMap<String, String>, DiscoverError> {
    let reserved = protocol.reserved_params(Mode::Windowed);
    let mut out = BTreeMap::new();
    for p in params {
        let (k, v) =
            p.split_once('=').filter(|(k, _)| !k.trim().is_empty()).ok_or_else(|| DiscoverError::Param(p.clone()))?;
        if reserved.contains(&k.trim()) {
            return Err(DiscoverError::Reserved(k.trim().to_owned(), protocol.name));
        }
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// `<protocol>.<method with . and - as _, without .php>`, or the given kind, checked.
pub fn kind_of(given: Option<&str>, method: &str, protocol: &str) -> Result<String, DiscoverError> {
    let kind = given.map(str::to_owned).unwrap_or_else(|| {
        format!("{protocol}.{}", method.strip_suffix(".php").unwrap_or(method).replace(['.', '-'], "_"))
    });
    let prefix = format!("{protocol}.");
    let rest = kind
        .strip_prefix(&prefix)
        .ok_or_else(|| DiscoverError::Kind(kind.clone(), format!("it must start with {prefix:?}")))?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return Err(DiscoverError::Kind(kind.clone(), format!("after {prefix:?} only letters, digits, _ . -")));
    }
    if tidemark_endpoints::builtin(&kind).is_some() {
        return Err(DiscoverError::Kind(kind.clone(), "it is a built-in kind; choose another with --kind".into()));
    }
    Ok(kind)
}

/// A window's records of a method, and how the vendor paged them.
#[derive(Debug)]
pub struct Read {
    pub envelope: &'static Envelope,
    pub method: String,
    pub window: Window,
    pub params: BTreeMap<String, String>,
    pub list: String,
    /// TOP: the method's object parameter and the tag its list items came in.
    pub request_object: Option<String>,
    pub list_item: Option<String>,
    pub records: Vec<Value>,
    pub pages: u32,
    /// The vendor's count, from the first page.
    pub total: Option<u64>,
    /// Whether every page read carried the count (more than one read).
    pub total_every_page: bool,
    /// The page size to ask for: the protocol's limit, or what the vendor served when it cut
    /// the first page short of that with more records to come.
    pub page_size: u32,
    /// Records asked per page: the manifest's `max_size`.
    pub asked: u32,
}

impl Read {
    /// The summary's first lines: what was read and how it paged.
    fn said(&self, source: &str, list_why: &str) -> Vec<String> {
        let e = self.envelope;
        let (n, pages) = (self.records.len(), self.pages);
        let counted = match self.total {
            Some(t) if t as usize > n => format!(" (the vendor counts {t}; stopped at {MAX_PAGES} pages)"),
            _ => String::new(),
        };
        let total = match (self.total, self.total_every_page) {
            (None, _) => format!("first_page (no page carried {}: check by hand, the worker needs one)", e.total),
            (Some(_), true) => format!("every_page ({} came on all {pages} pages)", e.total),
            (Some(_), false) if pages == 1 => {
                format!("first_page ({} came on the one page read; later pages unseen)", e.total)
            }
            (Some(_), false) => format!("first_page ({} came on the first page only)", e.total),
        };
        let size = if self.page_size < e.protocol.max_page_size {
            format!(" (asked {}, the vendor served {} with more to come)", e.protocol.max_page_size, self.page_size)
        } else {
            String::new()
        };
        vec![
            format!(
                "read {n} records in {pages} pages of {} from source {source:?}, window {}{counted}",
                self.method, self.window
            ),
            format!("list field: {} ({list_why})", self.list),
            format!("total: {total}"),
            format!("page size: {}{size}", self.page_size),
        ]
    }
}

/// The client of source `source_id` for `method` (as kind `kind`, with the object parameter
/// `request_object` where the protocol takes one), and its protocol's envelope.
fn client(
    cfg: &Config,
    source_id: &str,
    kind: &str,
    method: &str,
    request_object: Option<&str>,
) -> Result<(Arc<dyn Source>, &'static Envelope), DiscoverError> {
    let source = cfg.sources.get(source_id).ok_or_else(|| {
        DiscoverError::UnknownSource(source_id.to_owned(), cfg.sources.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
    let endpoint = cfg.endpoints.find(&source.kind).ok_or_else(|| {
        DiscoverError::Config(ConfigError::invalid(
            format!("sources.{}.kind", source.id),
            format!("unknown kind {:?}", source.kind),
        ))
    })?;
    let envelope = envelope_of(endpoint.protocol.name).map_err(|why| DiscoverError::Protocol {
        source_id: source_id.to_owned(),
        protocol: endpoint.protocol.name.to_owned(),
        why,
    })?;
    let request_object = match (envelope.protocol.object_request, request_object) {
        (true, None) => return Err(DiscoverError::NoRequestObject(envelope.protocol.name)),
        (true, Some(name)) => Some(&*Box::leak(name.to_owned().into_boxed_str())),
        (false, _) => None,
    };
    // The client needs a spec that lives as long as it: one leaked per command run. Windowed
    // whatever the source's own kind is (finance snapshots send no window).
    let spec: &'static ApiSpec = Box::leak(Box::new(ApiSpec {
        kind: Box::leak(kind.to_owned().into_boxed_str()),
        method: Box::leak(method.to_owned().into_boxed_str()),
        list_field: "",
        default_params: &[],
        mode: Mode::Windowed,
        request_object,
        ..endpoint.spec
    }));
    let http = reqwest::Client::builder()
        .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::invalid("sources", format!("cannot build http client: {e}")))?;
    let make = client_of(envelope.protocol.name).expect("every protocol has a client").client;
    Ok((make(spec, source, http)?, envelope))
}

/// Reads the window's pages (at most [`MAX_PAGES`]) of `method`; the list field is `list`, or
/// the first page's one list of objects.
async fn read(
    client: &dyn Source,
    envelope: &'static Envelope,
    method: &str,
    list: Option<&str>,
    params: BTreeMap<String, String>,
    window: Window,
    asked: u32,
) -> Result<Read, DiscoverError> {
    let mut r = Read {
        envelope,
        method: method.to_owned(),
        window,
        params,
        list: list.unwrap_or_default().to_owned(),
        request_object: client.spec().request_object.map(str::to_owned),
        list_item: None,
        records: Vec::new(),
        pages: 0,
        total: None,
        total_every_page: true,
        page_size: asked,
        asked,
    };
    while r.pages < MAX_PAGES {
        let req = PageRequest { window: Some(&r.window), page_index: r.pages, page_size: asked, params: &r.params };
        let vendor = |answer: SourceError| match r.pages {
            0 if answer.to_string().contains("page_size") => {
                DiscoverError::PageSize { method: method.to_owned(), asked, answer }
            }
            page => DiscoverError::Vendor { page, method: method.to_owned(), answer },
        };
        let mut answer = client.fetch_raw(req).await.map_err(vendor)?;
        let holder = envelope.holder(&mut answer);
        let tags = if envelope.protocol.object_request { unwrap_item_tags(holder) } else { BTreeMap::new() };
        let total = holder.get(envelope.total).and_then(|t| t.as_u64().or_else(|| t.as_str()?.trim().parse().ok()));
        if r.pages == 0 {
            r.total = total;
            if r.list.is_empty() {
                r.list = list_field(holder)?;
            }
            if envelope.protocol.object_request {
                let tag = tags.get(&r.list).cloned();
                r.list_item =
                    Some(tag.ok_or_else(|| DiscoverError::NoListItem {
                        method: method.to_owned(),
                        list: r.list.clone(),
                    })?);
            }
        }
        r.total_every_page &= total.is_some();
        let page = match holder.get_mut(&r.list).map(Value::take) {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(DiscoverError::NotAList { page: r.pages, method: method.to_owned(), field: r.list }),
        };
        r.pages += 1;
        let served = page.len();
        r.records.extend(page);
        let done = match r.total {
            Some(t) => served == 0 || r.records.len() as u64 >= t,
            None => served < asked as usize,
        };
        if r.pages == 1 && !done && served > 0 && served < asked as usize {
            r.page_size = served as u32;
        }
        if done {
            break;
        }
    }
    r.total_every_page &= r.pages > 1;
    if r.records.is_empty() {
        return Err(InferError::NoRecords { field: r.list }.into());
    }
    Ok(r)
}

/// `--page-size`, checked against the protocol's limit; the limit when not given.
fn page_size(given: Option<u32>, protocol: &'static crate::sources::protocol::Protocol) -> Result<u32, DiscoverError> {
    match given {
        None => Ok(protocol.max_page_size),
        Some(n) if (1..=protocol.max_page_size).contains(&n) => Ok(n),
        Some(n) => Err(DiscoverError::BadPageSize { given: n, max: protocol.max_page_size, protocol: protocol.name }),
    }
}

/// Reads the window's pages of `opts.method` with the source's credentials, infers the
/// endpoint and writes `<out>/<kind>.toml` and `<kind>.avsc`.
pub async fn discover(cfg: &Config, opts: &DiscoverOptions, now: DateTime<Utc>) -> Result<Discovery, DiscoverError> {
    let method = opts.method.clone().ok_or(DiscoverError::NoMethod)?;
    let (client, envelope) = client(
        cfg,
        &opts.source,
        opts.kind.as_deref().unwrap_or("discovered"),
        &method,
        opts.request_object.as_deref(),
    )?;
    let protocol = envelope.protocol;
    let kind = kind_of(opts.kind.as_deref(), &method, protocol.name)?;
    let params = parse_params(&opts.params, protocol)?;
    let window = parse_window(opts.window.as_deref(), now)?;
    let asked = page_size(opts.page_size, protocol)?;
    let read = read(client.as_ref(), envelope, &method, None, params, window, asked).await?;
    let records = &read.records;
    let fields = Fields::of(records, "")?;
    let (key, why) = key_field(records, opts.key_field.as_deref())?;

    let span = (read.window.end - read.window.start).to_std().expect("end after start");
    let mut summary = read.said(&opts.source, "the envelope's only list of objects");
    summary.extend([
        format!("key field: {key} ({why})"),
        format!("max_span: {} (the window read; a longer one is untested)", format_duration(span)),
        "fields (all but the key optional: a window cannot show a field is never missing):".to_owned(),
    ]);
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

    let name = camel(kind.split_once('.').map_or(kind.as_str(), |(_, rest)| rest));
    let doc = format!(
        "{} {method}: one element of {}. Inferred by `tidemark discover` from {} records of {}.",
        envelope.vendor,
        read.list,
        records.len(),
        read.window
    );
    let schema = record(&fields, &name, &format!("tidemark.{}", protocol.name), Some(&key), Some(&doc));
    std::fs::create_dir_all(&opts.out).map_err(|source| DiscoverError::Write { path: opts.out.clone(), source })?;
    let manifest_path = opts.out.join(format!("{kind}.toml"));
    let schema_path = opts.out.join(format!("{kind}.avsc"));
    write(&schema_path, &(serde_json::to_string_pretty(&schema).expect("json") + "\n"))?;
    write(&manifest_path, &manifest(&kind, &key, span, &read))?;
    // What it wrote must load as `run` loads it.
    tidemark_endpoints::manifest::load(&manifest_path)?;
    summary.push(format!("wrote {} and {}", manifest_path.display(), schema_path.display()));
    Ok(Discovery { kind, key_field: key, manifest: manifest_path, schema: schema_path, summary })
}

/// What `--against` found: the lines that say it, whether anything differs, and the proposal
/// written when it does.
#[derive(Debug)]
pub struct Comparison {
    pub summary: Vec<String>,
    pub differs: bool,
    pub proposal: Option<PathBuf>,
}

/// Reads the window of `kind`'s method (or `opts.method`) with the source's credentials and
/// compares the records with `kind`'s schema; when they differ, writes `<out>/<kind>.avsc`:
/// the schema with the vendor's new fields appended as optional.
pub async fn against(
    cfg: &Config,
    opts: &DiscoverOptions,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<Comparison, DiscoverError> {
    let endpoint =
        cfg.endpoints.find(kind).ok_or_else(|| DiscoverError::UnknownKind(kind.to_owned(), cfg.endpoints.kinds()))?;
    let method = opts.method.as_deref().unwrap_or(endpoint.spec.method);
    let request_object = opts.request_object.as_deref().or(endpoint.spec.request_object);
    let (client, envelope) = client(cfg, &opts.source, kind, method, request_object)?;
    if envelope.protocol.name != endpoint.protocol.name {
        return Err(DiscoverError::AgainstProtocol {
            source_id: opts.source.clone(),
            protocol: envelope.protocol.name.to_owned(),
            kind: kind.to_owned(),
            kind_protocol: endpoint.protocol.name.to_owned(),
        });
    }
    let mut params: BTreeMap<String, String> =
        endpoint.spec.default_params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    params.extend(parse_params(&opts.params, envelope.protocol)?);
    let window = parse_window(opts.window.as_deref(), now)?;
    let asked = match opts.page_size {
        Some(_) => page_size(opts.page_size, envelope.protocol)?,
        None => endpoint.spec.max_page_size,
    };
    let read = read(client.as_ref(), envelope, method, Some(endpoint.spec.list_field), params, window, asked).await?;
    let fields = Fields::of(&read.records, "")?;
    let schema: Value = serde_json::from_str(endpoint.spec.schema)
        .map_err(|e| DiscoverError::Schema { kind: kind.to_owned(), why: e.to_string() })?;
    let (proposal, drift) =
        drift::propose(&schema, &fields).map_err(|why| DiscoverError::Schema { kind: kind.to_owned(), why })?;

    let mut summary = read.said(&opts.source, &format!("{kind}'s"));
    summary.push(format!("compared with the schema of {kind} ({})", endpoint.origin));
    summary.extend(drift.lines());
    if drift.is_empty() {
        summary.push("no differences: the schema holds what the vendor sent".to_owned());
        return Ok(Comparison { summary, differs: false, proposal: None });
    }
    // A bug guard: what is proposed must be a schema.
    apache_avro::Schema::parse_str(&proposal.to_string()).map_err(|e| DiscoverError::Schema {
        kind: kind.to_owned(),
        why: format!("the proposal (a bug in discover): {e}"),
    })?;
    std::fs::create_dir_all(&opts.out).map_err(|source| DiscoverError::Write { path: opts.out.clone(), source })?;
    let path = opts.out.join(format!("{kind}.avsc"));
    write(&path, &(serde_json::to_string_pretty(&proposal).expect("json") + "\n"))?;
    summary.push(match drift.added.len() {
        0 => format!("wrote {}: the schema unchanged (no new fields; types are changed by hand)", path.display()),
        n => format!(
            "wrote {}: the next version, the schema with {n} field(s) appended as optional ([\"null\", T], default null), BACKWARD compatible",
            path.display()
        ),
    });
    Ok(Comparison { summary, differs: true, proposal: Some(path) })
}

fn write(path: &Path, text: &str) -> Result<(), DiscoverError> {
    std::fs::write(path, text).map_err(|source| DiscoverError::Write { path: path.to_owned(), source })
}

/// The manifest text, in the README's "Adding an endpoint" format.
fn manifest(kind: &str, key: &str, span: Duration, read: &Read) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let (protocol, method, total) = (read.envelope.protocol, &read.method, read.envelope.total);
    let every = read.total_every_page;
    let mut out = format!(
        "# Written by `tidemark discover` from {records} records of {window}; the format is the\n\
         # README's \"Adding an endpoint\". Check the key and max_span against the vendor's docs.\n\
         kind = {}\nprotocol = {}\nmethod = {}\nlist_field = {}\nkey_field = {}\ndefault_topic = {}\n\
         {}mode = \"windowed\"\nmax_span = \"{}\"\ndescription = {}\n\n\
         [pages]\npaged = true\nmax_size = {}\ndefault_size = {}\n# {total} came {}.\ntotal = \"{}\"\n",
        q(kind),
        q(protocol.name),
        q(method),
        q(&read.list),
        q(key),
        q(kind),
        match (&read.request_object, &read.list_item) {
            (Some(object), Some(item)) => format!("request_object = {}\nlist_item = {}\n", q(object), q(item)),
            _ => String::new(),
        },
        format_duration(span),
        q(&format!("{method} (discovered)")),
        read.asked,
        read.page_size,
        if every { "on every page read" } else { "on the first page (only, or one page was read)" },
        if every { "every_page" } else { "first_page" },
        records = read.records.len(),
        window = read.window,
    );
    if !read.params.is_empty() {
        out.push_str("\n[params]\n");
        for (k, v) in &read.params {
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
        assert_eq!(parse_params(&["time_type=1".into()], &WDT).unwrap()["time_type"], "1");
        assert!(
            matches!(parse_params(&["page_size=5".into()], &WDT), Err(DiscoverError::Reserved(k, "wdt")) if k == "page_size")
        );
        assert!(
            matches!(parse_params(&["page_no=5".into()], &FINANCE), Err(DiscoverError::Reserved(k, "finance")) if k == "page_no")
        );
        assert!(matches!(parse_params(&["target_app_key=t".into()], &QIMEN), Err(DiscoverError::Reserved(..))));
        assert!(matches!(parse_params(&["x".into()], &WDT), Err(DiscoverError::Param(_))));
        assert_eq!(kind_of(None, "trade_query.php", "wdt").unwrap(), "wdt.trade_query");
        assert_eq!(
            kind_of(None, "wdt.stockin.order.query-refund", "qimen").unwrap(),
            "qimen.wdt_stockin_order_query_refund"
        );
        assert_eq!(
            kind_of(None, "finance.getTransactionList", "finance").unwrap(),
            "finance.finance_getTransactionList"
        );
        assert!(kind_of(Some("qimen.x"), "m", "wdt").is_err());
        assert!(kind_of(Some("wdt.account_check"), "m", "wdt").unwrap_err().to_string().contains("built-in"));
    }

    #[test]
    fn envelopes_say_where_lists_are_and_unwrap_tops_item_tags() {
        let qimen = envelope_of("qimen").unwrap();
        let mut answer =
            serde_json::json!({"response": {"flag": "success", "total_count": 1, "stockin_list": [{"a": 1}]}});
        let holder = qimen.holder(&mut answer);
        assert_eq!((list_field(holder).unwrap().as_str(), holder[qimen.total].as_u64()), ("stockin_list", Some(1)));
        assert_eq!(envelope_of("finance").unwrap().total, "count");
        assert_eq!(envelope_of("top").unwrap().total, "total_count");
        // Every protocol is read.
        let mut read: Vec<&str> = ENVELOPES.iter().map(|e| e.protocol.name).collect();
        let mut all: Vec<&str> = tidemark_endpoints::protocol::PROTOCOLS.iter().map(|p| p.name).collect();
        read.sort();
        all.sort();
        assert_eq!(read, all);
        let mut models = serde_json::json!({"pagination": {"total_count": 1}, "total_count": 1,
            "settlements": {"settlement": [{"a": 1}]}});
        let tags = unwrap_item_tags(&mut models);
        assert_eq!(tags.get("settlements").map(String::as_str), Some("settlement"));
        assert_eq!(list_field(&models).unwrap(), "settlements");
    }

    fn read_of(protocol: &str, every: bool, page_size: u32) -> Read {
        let records = vec![serde_json::json!({"k": "1", "amt": "1.00"})];
        Read {
            envelope: envelope_of(protocol).unwrap(),
            method: "t.php".into(),
            window: parse_window(None, Utc::now()).unwrap(),
            params: BTreeMap::from([("time_type".to_owned(), "1".to_owned())]),
            list: "list".into(),
            request_object: (protocol == "top").then(|| "t_request".to_owned()),
            list_item: (protocol == "top").then(|| "item".to_owned()),
            records,
            pages: 2,
            total: Some(1),
            total_every_page: every,
            page_size,
            asked: envelope_of(protocol).unwrap().protocol.max_page_size,
        }
    }

    #[test]
    fn the_manifest_written_loads() {
        for (protocol, every, size) in
            [("wdt", false, 100), ("qimen", true, 100), ("top", true, 100), ("finance", true, 100)]
        {
            let dir = tempfile::tempdir().unwrap();
            let kind = format!("{protocol}.t");
            let read = read_of(protocol, every, size);
            let fields = Fields::of(&read.records, "").unwrap();
            let schema = record(&fields, "T", "tidemark.x", Some("k"), None);
            std::fs::write(dir.path().join(format!("{kind}.avsc")), schema.to_string()).unwrap();
            let text = manifest(&kind, "k", Duration::from_secs(5400), &read);
            std::fs::write(dir.path().join(format!("{kind}.toml")), &text).unwrap();
            let e = tidemark_endpoints::manifest::load(&dir.path().join(format!("{kind}.toml"))).unwrap();
            assert_eq!(e.protocol.name, protocol);
            assert_eq!(
                (e.spec.key_field, e.spec.list_field, e.spec.max_span),
                ("k", "list", Duration::from_secs(5400))
            );
            assert_eq!(e.spec.default_params, &[("time_type", "1")]);
            assert_eq!((e.spec.total_on_every_page, e.spec.default_page_size), (every, size), "{protocol}");
            assert_eq!(e.spec.max_page_size, e.protocol.max_page_size);
        }
    }
}
