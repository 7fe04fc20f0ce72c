//! Worker configuration: loading the TOML file, `${ENV}` and `${file:…}` expansion, and the
//! assembly of each module's section (`[kafka]` in `kafka::config`, `[sources.<id>]` in
//! `sources::config`, …) into one validated [`Config`] whose errors name the key.

pub mod duration;
mod expand;
mod fields;
mod redact;
#[cfg(test)]
mod reference_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::domain::StreamId;
use expand::{expand_tree, join};

pub use crate::cluster::config::{ClusterConfig, ClusterSection};
pub use crate::kafka::config::{KafkaConfig, KafkaSection, ValueFormat};
pub use crate::registry::{COMPATIBILITY_LEVELS, RegistryConfig, RegistrySection};
pub use crate::sources::config::{DEFAULT_MAX_IN_FLIGHT, SourceConfig, SourceSection};
pub use crate::writer::config::{WriterConfig, WriterSection};
pub use duration::{format_duration, parse_duration};
pub use expand::expand_env;
pub use fields::fields_of;
pub use redact::is_secret_key;

/// A configuration problem, naming the file or the key and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }

    /// This error with quoted values cut out if its key's value came from a secret file.
    fn redacted_for(self, from_files: &BTreeSet<String>) -> Self {
        match self {
            ConfigError::Invalid { key, reason } if from_files.contains(&key) => {
                ConfigError::Invalid { reason: redact::redact_quoted(&reason), key }
            }
            other => other,
        }
    }
}

/// A credential or password: never printed by `Debug` or `Display`, nor quoted by an error
/// about its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret text, for signing or handing to a client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A string; anything else is refused without showing it (serde's own message would).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'v> serde::de::Visitor<'v> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("expected a string, found a boolean (the value is not shown)"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("expected a string, found a number (the value is not shown)"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("expected a string, found a number (the value is not shown)"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("expected a string, found a number (the value is not shown)"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'v>>(self, _: A) -> Result<Secret, A::Error> {
                Err(serde::de::Error::custom("expected a string, found an array (the value is not shown)"))
            }
            fn visit_map<A: serde::de::MapAccess<'v>>(self, _: A) -> Result<Secret, A::Error> {
                Err(serde::de::Error::custom("expected a string, found a table (the value is not shown)"))
            }
        }
        d.deserialize_str(Text)
    }
}

/// Where a stream starts when it has no watermark yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StartAt {
    /// A fixed instant (written in config as Beijing time `yyyy-MM-dd HH:mm:ss`).
    Instant(DateTime<Utc>),
    /// This long before the moment the stream first starts.
    Ago(Duration),
}

impl StartAt {
    pub fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        Self::try_from(text.to_owned()).map_err(|reason| ConfigError::invalid(key, reason))
    }

    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            StartAt::Instant(t) => t,
            StartAt::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()),
        }
    }
}

impl TryFrom<String> for StartAt {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if let Some(t) = crate::domain::time::parse_beijing(&text) {
            return Ok(StartAt::Instant(t));
        }
        parse_duration("", &text)
            .map(StartAt::Ago)
            .map_err(|_| format!("{text:?} is neither a Beijing time `yyyy-MM-dd HH:mm:ss` nor a duration like 7d"))
    }
}

/// The keys of a `[sources.<id>]` or `[writers.<id>]` table that belong to its kind
/// (credentials, organisations, mapping tables), kept as written until the kind's module reads
/// them as its own type (`settings.read::<WdtSettings>()`): a command that builds no client
/// (`streams list`, `watermarks set`) needs none of their `${ENV}` variables or secret files.
#[derive(Clone)]
pub struct KindSettings {
    prefix: String,
    values: toml::Table,
    /// The keys every table of this sort has (`kind`, `base_url`, …), named beside the kind's
    /// own when a key is unknown.
    common: &'static [&'static str],
}

/// Keys only: the values include secrets (`app_secret`, `session` ...).
impl fmt::Debug for KindSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindSettings")
            .field("prefix", &self.prefix)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KindSettings {
    /// The kind's keys `values` of the table at `prefix` (`sources.wdt`).
    pub fn new(prefix: impl Into<String>, values: toml::Table) -> Self {
        KindSettings { prefix: prefix.into(), values, common: &[] }
    }

    /// Expands `${…}` in the values and reads them as the kind's settings type `T`, which
    /// denies unknown keys. Errors name the key (`sources.wdt.appsecret`); a string left empty
    /// is refused.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut from_files = BTreeSet::new();
        let mut values = self.values.clone();
        for (name, v) in values.iter_mut() {
            let key = join(&self.prefix, name);
            expand_tree(&key, v, &mut from_files)?;
            if v.as_str() == Some("") {
                return Err(ConfigError::invalid(key, "is empty"));
            }
        }
        serde_path_to_error::deserialize(values)
            .map_err(|e| section_error(&self.prefix, e, Some(self.common), &from_files))
    }
}

/// A typed section's error as a config error: the key by its path under `prefix`, serde's
/// "missing field" and "unknown field" said in config's terms, and the value cut out where
/// the key holds a secret or its value came from a secret file. `kind_common` is set for a
/// kind's own keys: the keys of the table they sit in.
fn section_error(
    prefix: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
    kind_common: Option<&[&str]>,
    from_files: &BTreeSet<String>,
) -> ConfigError {
    let path = e.path().to_string();
    let key = if path == "." { prefix.to_owned() } else { join(prefix, &path) };
    let message = e.inner().message().trim_end().to_owned();
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        let reason = if kind_common.is_some() { "missing (required by this kind)" } else { "missing" };
        return ConfigError::invalid(join(&key, field), reason);
    }
    if let Some((field, expected)) = message.strip_prefix("unknown field `").and_then(|m| m.split_once('`')) {
        // serde lists the known fields in backticks: "…, expected one of `a`, `b`".
        let mut known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let key = if key.ends_with(field) { key } else { join(&key, field) };
        let reason = match kind_common {
            Some(common) => {
                known.extend(common.iter().copied());
                format!("unknown key for this kind (known: {})", known.join(", "))
            }
            None => format!("unknown key (known: {})", known.join(", ")),
        };
        return ConfigError::invalid(key, reason);
    }
    let reason =
        if is_secret_key(&key) || from_files.contains(&key) { redact::redact_quoted(&message) } else { message };
    ConfigError::invalid(key, reason)
}

/// The whole file as written: each module's section, and the kinds' own keys set aside.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub kafka: KafkaSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    pub schema_registry: Option<RegistrySection>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSection>,
    #[serde(default)]
    pub streams: Vec<StreamSection>,
    #[serde(default)]
    pub writers: BTreeMap<String, WriterSection>,
    pub cluster: Option<ClusterSection>,
    /// `[sources.<id>]` keys that are not [`SourceSection`]'s, by source id.
    #[serde(skip)]
    source_kinds: BTreeMap<String, KindSettings>,
    /// `[writers.<id>]` keys that are not [`WriterSection`]'s, by writer id.
    #[serde(skip)]
    writer_kinds: BTreeMap<String, KindSettings>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; off unless set.
    pub listen: Option<String>,
}

/// `[[streams]]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    pub id: String,
    pub source: String,
    pub topic: Option<String>,
    #[serde(default = "default_start")]
    pub start: StartAt,
    #[serde(default, deserialize_with = "duration::required")]
    pub lookback: Duration,
    #[serde(default, deserialize_with = "duration::optional")]
    pub dedup_span: Option<Duration>,
    #[serde(default = "duration::secs::<120>", deserialize_with = "duration::required")]
    pub settle: Duration,
    #[serde(default = "duration::secs::<60>", deserialize_with = "duration::required")]
    pub poll_interval: Duration,
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_span: Option<Duration>,
    pub page_size: Option<u32>,
    #[serde(default = "default_windows_in_flight")]
    pub windows_in_flight: u32,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A new stream starts a day back.
fn default_start() -> StartAt {
    StartAt::Ago(Duration::from_secs(86_400))
}
/// Enough windows to keep a credential's slots busy while one of them commits.
fn default_windows_in_flight() -> u32 {
    8
}
/// A ceiling that catches a typo (16000 for 16) before it reaches a vendor.
const MAX_WINDOWS_IN_FLIGHT: u32 = 64;

/// One polled stream: a source scoped by its parameters, with its own watermark.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub id: StreamId,
    pub source: String,
    pub topic: Option<String>,
    pub start: StartAt,
    pub lookback: Duration,
    /// How far behind the watermark content hashes are kept (at least the lookback): a
    /// re-read within it (`watermarks set` back) emits only records that changed.
    pub dedup_span: Duration,
    pub settle: Duration,
    pub poll_interval: Duration,
    pub max_span: Option<Duration>,
    pub page_size: Option<u32>,
    /// Windows fetched at once while catching up; they still commit strictly in order.
    pub windows_in_flight: u32,
    pub params: BTreeMap<String, String>,
}

impl StreamConfig {
    /// Checks the `i`th `[[streams]]` against itself and the configured `sources`.
    fn from_section(
        i: usize,
        s: StreamSection,
        sources: &BTreeMap<String, SourceConfig>,
    ) -> Result<StreamConfig, ConfigError> {
        let key = |name: &str| format!("streams[{i}].{name}");
        let id = StreamId::parse(&s.id).map_err(|why| ConfigError::invalid(key("id"), why))?;
        // Keys tidemark writes beside the streams' own (see `ops` and `kafka::control`).
        if let Some(p) = ["backfill:", "error:"].iter().find(|p| s.id.starts_with(**p)) {
            return Err(ConfigError::invalid(
                key("id"),
                format!("{:?} starts with {p:?}, which tidemark reserves", s.id),
            ));
        }
        if !sources.contains_key(&s.source) {
            return Err(ConfigError::invalid(
                key("source"),
                format!(
                    "unknown source {:?} (configured: {})",
                    s.source,
                    sources.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some(t) = &s.topic {
            check_topic_name(&key("topic"), t)?;
        }
        if s.poll_interval.is_zero() {
            return Err(ConfigError::invalid(key("poll_interval"), "must be positive"));
        }
        if let Some(m) = s.max_span {
            if m < Duration::from_secs(1) {
                return Err(ConfigError::invalid(key("max_span"), "must be at least 1s"));
            }
            if s.lookback >= m {
                return Err(ConfigError::invalid(
                    key("lookback"),
                    format!(
                        "lookback {} must be shorter than max_span {}",
                        format_duration(s.lookback),
                        format_duration(m)
                    ),
                ));
            }
        }
        check_range(&key("windows_in_flight"), s.windows_in_flight, 1..=MAX_WINDOWS_IN_FLIGHT)?;
        if s.page_size == Some(0) {
            return Err(ConfigError::invalid(key("page_size"), "must be at least 1"));
        }
        Ok(StreamConfig {
            id,
            source: s.source,
            topic: s.topic,
            start: s.start,
            lookback: s.lookback,
            dedup_span: s.dedup_span.map_or(s.lookback, |d| d.max(s.lookback)),
            settle: s.settle,
            poll_interval: s.poll_interval,
            max_span: s.max_span,
            page_size: s.page_size,
            windows_in_flight: s.windows_in_flight,
            params: s.params,
        })
    }
}

/// The validated worker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub metrics_listen: Option<String>,
    /// Set when values use the Confluent wire format.
    pub schema_registry: Option<RegistryConfig>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub streams: Vec<StreamConfig>,
    pub writers: BTreeMap<String, WriterConfig>,
    /// Set when several replicas share the streams (see `cluster`).
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Reads, expands and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses and validates config text: TOML, then `${…}` expanded in every value (but the
    /// kinds' own keys, see [`KindSettings`]), then each section as its type, then the keys
    /// that depend on each other.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: redact::describe_toml_error(text, &e),
        })?;
        let source_kinds = set_aside_kind_keys(&mut table, "sources", fields_of::<SourceSection>());
        let writer_kinds = set_aside_kind_keys(&mut table, "writers", fields_of::<WriterSection>());
        let mut from_files = BTreeSet::new();
        for (name, v) in table.iter_mut() {
            expand_tree(name, v, &mut from_files)?;
        }
        let mut file: FileConfig =
            serde_path_to_error::deserialize(table).map_err(|e| section_error("", e, None, &from_files))?;
        file.source_kinds = source_kinds;
        file.writer_kinds = writer_kinds;
        Config::try_from(file).map_err(|e| e.redacted_for(&from_files))
    }
}

/// Takes the keys of each `[<section>.<id>]` table that its section type does not have out of
/// `table`, as that id's kind settings.
fn set_aside_kind_keys(
    table: &mut toml::Table,
    section: &str,
    common: &'static [&'static str],
) -> BTreeMap<String, KindSettings> {
    let mut kinds = BTreeMap::new();
    let Some(toml::Value::Table(entries)) = table.get_mut(section) else { return kinds };
    for (id, entry) in entries.iter_mut() {
        let toml::Value::Table(keys) = entry else { continue };
        let own: Vec<String> = keys.keys().filter(|k| !common.contains(&k.as_str())).cloned().collect();
        let values = own.into_iter().filter_map(|k| keys.remove(&k).map(|v| (k, v))).collect();
        kinds.insert(id.clone(), KindSettings { prefix: format!("{section}.{id}"), values, common });
    }
    kinds
}

/// The keys that depend on each other across sections: the value format and the registry,
/// each stream and its source, unique stream ids.
impl TryFrom<FileConfig> for Config {
    type Error = ConfigError;

    fn try_from(mut file: FileConfig) -> Result<Config, ConfigError> {
        let kafka = KafkaConfig::try_from(file.kafka)?;
        let schema_registry = file.schema_registry.map(RegistryConfig::try_from).transpose()?;
        match (kafka.value_format, &schema_registry) {
            (ValueFormat::Confluent, None) => {
                return Err(ConfigError::invalid(
                    "schema_registry.url",
                    "missing: kafka.value_format = \"confluent\" needs a [schema_registry] section",
                ));
            }
            (ValueFormat::SingleObject, Some(_)) => {
                return Err(ConfigError::invalid(
                    "kafka.value_format",
                    "is \"single-object\" but [schema_registry] is set: use value_format = \"confluent\" to write the registry's framing, or remove [schema_registry]",
                ));
            }
            _ => {}
        }
        let mut sources = BTreeMap::new();
        for (id, s) in file.sources {
            let settings = file
                .source_kinds
                .remove(&id)
                .unwrap_or_else(|| KindSettings::new(format!("sources.{id}"), toml::Table::new()));
            sources.insert(id.clone(), SourceConfig::from_section(&id, s, settings)?);
        }
        if file.streams.is_empty() {
            return Err(ConfigError::invalid("streams", "no streams configured: add at least one [[streams]] entry"));
        }
        let mut streams: Vec<StreamConfig> = Vec::new();
        for (i, s) in file.streams.into_iter().enumerate() {
            let stream = StreamConfig::from_section(i, s, &sources)?;
            if streams.iter().any(|s| s.id == stream.id) {
                return Err(ConfigError::invalid(
                    format!("streams[{i}].id"),
                    format!("duplicate stream id {:?}", stream.id.as_str()),
                ));
            }
            streams.push(stream);
        }
        let mut writers = BTreeMap::new();
        for (id, w) in file.writers {
            let settings = file
                .writer_kinds
                .remove(&id)
                .unwrap_or_else(|| KindSettings::new(format!("writers.{id}"), toml::Table::new()));
            writers.insert(id.clone(), WriterConfig::from_section(&id, w, settings)?);
        }
        let cluster = file.cluster.map(ClusterConfig::try_from).transpose()?;
        Ok(Config { kafka, metrics_listen: file.metrics.listen, schema_registry, sources, streams, writers, cluster })
    }
}

impl Config {
    /// Makes this process a replica of `group` (the command line's `--cluster-group`): as a
    /// `[cluster]` section would, keeping that section's other settings if there is one.
    pub fn join_cluster(&mut self, group: &str, instance_id: Option<&str>) -> Result<(), ConfigError> {
        let old = self.cluster.take();
        let section = ClusterSection {
            group: expand_env("cluster.group", group)?,
            instance_id: match instance_id {
                Some(id) => Some(expand_env("cluster.instance_id", id)?),
                None => old.as_ref().and_then(|c| c.instance_id.clone()),
            },
            session_timeout: old
                .as_ref()
                .map_or(crate::cluster::config::DEFAULT_SESSION_TIMEOUT, |c| c.session_timeout),
            coordination_topic: old.filter(|c| c.group == group).map(|c| c.coordination_topic),
        };
        self.cluster = Some(ClusterConfig::try_from(section)?);
        Ok(())
    }
}

/// `v` within `range`, for counts where a typo (16000 for 16) should stop the start.
pub fn check_range(key: &str, v: u32, range: std::ops::RangeInclusive<u32>) -> Result<(), ConfigError> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("must be within {}..={}, got {v}", range.start(), range.end())))
    }
}

/// Kafka's own topic-name rule: 1–249 of `[a-zA-Z0-9._-]`.
pub fn check_topic_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(ConfigError::invalid(key, format!("{name:?} is not a valid Kafka topic name"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_settings_debug_names_the_keys_but_never_a_value() {
        let values = toml::Table::from_iter([
            ("app_key".to_owned(), toml::Value::String("ak-123".into())),
            ("app_secret".to_owned(), toml::Value::String("s3cr3t-value".into())),
        ]);
        let shown = format!("{:?}", KindSettings::new("sources.qm", values));
        assert!(shown.contains("app_secret") && shown.contains("sources.qm"), "{shown}");
        assert!(!shown.contains("s3cr3t-value") && !shown.contains("ak-123"), "{shown}");
    }

    const GOOD: &str = r#"
        [kafka]
        bootstrap = "127.0.0.1:9092"
        [sources.wdt]
        kind = "wdt.account_check"
        base_url = "http://127.0.0.1:1/"
        sid = "s"
        [[streams]]
        id = "wdt.account_check/shop-01"
        source = "wdt"
        lookback = "10m"
        max_span = "1h"
        [streams.params]
        shop_no = "shop-01"
    "#;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_config_gets_its_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.kafka.watermark_topic, "tidemark.watermarks");
        assert_eq!(c.sources["wdt"].base_url, "http://127.0.0.1:1");
        let s = &c.streams[0];
        assert_eq!(s.lookback, Duration::from_secs(600));
        assert_eq!(s.settle, Duration::from_secs(120));
        assert_eq!(s.params["shop_no"], "shop-01");
        assert_eq!(s.start, StartAt::Ago(Duration::from_secs(86_400)));
    }

    #[test]
    fn a_cluster_section_gets_defaults_and_refuses_bad_values_by_name() {
        let c = Config::parse(&format!("{GOOD}\n[cluster]\ngroup = \"prod\"\ninstance_id = \"node-1\"\n")).unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.coordination_topic, "tidemark.prod.streams");
        assert_eq!(cl.session_timeout, Duration::from_secs(10));
        assert_eq!(cl.instance_id.as_deref(), Some("node-1"));
        let c = Config::parse(&format!("{GOOD}\n[cluster]\ngroup = \"prod\"\n")).unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.instance_id, None, "no instance id: dynamic membership");
        assert!(cl.member.ends_with(&format!("/{}", std::process::id())), "{}", cl.member);
        let e = err(&format!("{GOOD}\n[cluster]\ngroup = \"a b\"\n"));
        assert!(e.contains("cluster.group") && e.contains("\"a b\""), "{e}");
        let e = err(&format!("{GOOD}\n[cluster]\ngroup = \"g\"\nsession_timeout = \"2s\"\n"));
        assert!(e.contains("cluster.session_timeout") && e.contains("between 6s and 30m"), "{e}");
        let e = err(&format!("{GOOD}\n[cluster]\ngroup = \"g\"\nsesion_timeout = \"10s\"\n"));
        assert!(e.contains("sesion_timeout"), "a misspelt key is named: {e}");
    }

    #[test]
    fn the_command_line_group_makes_a_replica_and_keeps_the_sections_settings() {
        let mut c = Config::parse(GOOD).unwrap();
        c.join_cluster("shops", Some("node-2")).unwrap();
        let cl = c.cluster.clone().unwrap();
        assert_eq!((cl.group.as_str(), cl.instance_id.as_deref()), ("shops", Some("node-2")));
        let mut c = Config::parse(&format!(
            "{GOOD}\n[cluster]\ngroup = \"g\"\ninstance_id = \"n1\"\nsession_timeout = \"30s\"\ncoordination_topic = \"slots\"\n"
        ))
        .unwrap();
        c.join_cluster("g", None).unwrap();
        let cl = c.cluster.clone().unwrap();
        assert_eq!(cl.session_timeout, Duration::from_secs(30));
        assert_eq!((cl.member.as_str(), cl.coordination_topic.as_str()), ("n1", "slots"));
        assert!(c.join_cluster("bad group", None).unwrap_err().to_string().contains("cluster.group"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = err(&GOOD.replace("lookback = \"10m\"", "lookback = \"-10m\""));
        assert!(e.contains("streams[0].lookback") && e.contains("negative"), "{e}");
        let e = err(&GOOD.replace("source = \"wdt\"", "source = \"nope\""));
        assert!(e.contains("streams[0].source") && e.contains("nope"), "{e}");
        let e = err(&GOOD.replace("lookback = \"10m\"", "lookback = \"2h\""));
        assert!(e.contains("streams[0].lookback") && e.contains("shorter than max_span"), "{e}");
        let e = err(&GOOD.replace("bootstrap = \"127.0.0.1:9092\"", ""));
        assert!(e.contains("bootstrap"), "{e}");
        let e = err(&GOOD.replace("lookback = \"10m\"", "lookback = 10"));
        assert!(e.contains("lookback") && e.contains("invalid type"), "{e}");
        let e = err(&GOOD.replace("http://127.0.0.1:1/", "ftp://x"));
        assert!(e.contains("sources.wdt.base_url") && e.contains("ftp://x"), "{e}");
    }

    #[test]
    fn the_transactional_id_expands_the_environment_and_must_not_be_empty() {
        let e = err(&GOOD.replace("[kafka]", "[kafka]\ntransactional_id = \"${TIDEMARK_TEST_SURELY_UNSET_VAR}\""));
        assert!(e.contains("kafka.transactional_id") && e.contains("TIDEMARK_TEST_SURELY_UNSET_VAR"), "{e}");
        let c = Config::parse(
            &GOOD.replace("[kafka]", "[kafka]\ntransactional_id = \"${TIDEMARK_TEST_SURELY_UNSET_VAR:-tm-7}\""),
        );
        assert_eq!(c.unwrap().kafka.transactional_id, "tm-7");
        let e = err(&GOOD.replace("[kafka]", "[kafka]\ntransactional_id = \" \""));
        assert!(e.contains("kafka.transactional_id") && e.contains("empty"), "{e}");
    }

    #[test]
    fn the_value_format_and_registry_settings_are_checked() {
        assert_eq!(Config::parse(GOOD).unwrap().kafka.value_format, ValueFormat::SingleObject);
        let confluent = GOOD
            .replace("bootstrap = \"127.0.0.1:9092\"", "bootstrap = \"127.0.0.1:9092\"\nvalue_format = \"confluent\"");
        let e = err(&confluent);
        assert!(e.contains("schema_registry.url") && e.contains("confluent"), "{e}");
        let with = |registry: &str| format!("{confluent}\n[schema_registry]\n{registry}\n");
        let c = Config::parse(&with(
            "url = \"http://127.0.0.1:8081/apis/ccompat/v7/\"\nusername = \"u\"\npassword = \"p4ss\"",
        ))
        .unwrap();
        let r = c.schema_registry.unwrap();
        assert_eq!(r.url, "http://127.0.0.1:8081/apis/ccompat/v7");
        assert_eq!(r.compatibility, "BACKWARD");
        assert!(!format!("{r:?}").contains("p4ss"), "the password never prints");
        let e = err(&with("url = \"http://u:p4ss@127.0.0.1:8081\""));
        assert!(e.contains("schema_registry.url") && e.contains("credentials") && !e.contains("p4ss"), "{e}");
        let e = err(&with("url = \"http://127.0.0.1:8081\"\ncompatibility = \"sideways\""));
        assert!(e.contains("schema_registry.compatibility") && e.contains("sideways"), "{e}");
        let e = err(&with("url = \"http://127.0.0.1:8081\"\nca_location = \"/nonexistent/ca.pem\""));
        assert!(e.contains("schema_registry.ca_location") && e.contains("/nonexistent/ca.pem"), "{e}");
        let e =
            err(&GOOD.replace("bootstrap = \"127.0.0.1:9092\"", "bootstrap = \"b:1\"\nvalue_format = \"protobuf\""));
        assert!(e.contains("kafka.value_format") && e.contains("protobuf"), "{e}");
        let e = err(&format!("{GOOD}\n[schema_registry]\nurl = \"http://127.0.0.1:8081\"\n"));
        assert!(e.contains("kafka.value_format") && e.contains("single-object"), "{e}");
    }

    #[test]
    fn parse_errors_never_echo_a_secret() {
        const SECRET: &str = "SuperSecret-7f3a";
        // Every key that holds a secret, in the table it belongs to.
        let places = [
            ("[sources.w]\nkind = \"wdt.account_check\"\nbase_url = \"http://x\"", "appsecret"),
            ("[sources.q]\nkind = \"qimen.stockin_refund\"\nbase_url = \"http://x\"", "app_secret"),
            ("[sources.t]\nkind = \"top.finance_order\"\nbase_url = \"http://x\"", "app_secret"),
            ("[sources.t]\nkind = \"top.finance_order\"\nbase_url = \"http://x\"", "session"),
            ("[sources.f]\nkind = \"finance.transactions\"\nbase_url = \"http://x\"", "app_secret"),
            ("[kafka.properties]", "\"sasl.password\""),
            ("[kafka.properties]", "\"ssl.key.password\""),
            ("[schema_registry]\nurl = \"http://x\"\nusername = \"u\"", "password"),
        ];
        let broken = [
            format!("\"{SECRET}"),            // unterminated string
            format!("\"\"\"{SECRET}\nmore"),  // unterminated multi-line string
            SECRET.to_owned(),                // a bare word
            format!("\"{SECRET}\" trailing"), // junk after the value
            "12345678".to_owned(),            // a number where a string belongs
        ];
        let mut parsed = 0;
        for (table, key) in places {
            for value in &broken {
                let text = format!("[kafka]\nbootstrap = \"b:1\"\n{table}\n{key} = {value}\n");
                let Err(e) = Config::parse(&text) else { continue };
                let parse = matches!(e, ConfigError::Parse { .. });
                let e = e.to_string();
                assert!(!e.contains(SECRET) && !e.contains("12345678"), "{key} = {value}: {e}");
                assert!(
                    !parse
                        || e.contains("line ")
                            && (e.contains(&format!("| {key} = …")) || e.contains("inside a multi-line value")),
                    "the error says where: {e}"
                );
                parsed += usize::from(parse);
            }
        }
        assert!(parsed >= places.len() * 4, "the syntax errors were parse errors ({parsed})");
        // Secrets where a key-based rule would miss them: a multi-line value with `=` in it, an
        // inline table, a misspelt secret key, a private key by another name.
        let k = "[kafka]\nbootstrap = \"b:1\"\n";
        for text in [
            format!("{k}[sources.w]\nappsecret = \"\"\"abc\n{SECRET}==\ndef=={SECRET}\n"),
            format!("{k}properties = {{ \"sasl.password\" = \"{SECRET} }}\n"),
            format!("{k}properties = {{ \"sasl.password\" = 12345678 }}\n"),
            format!("{k}[schema_registry]\nurl = \"http://x\"\npasword = \"{SECRET}\"\n"),
            format!("{k}[kafka.properties]\n\"ssl.key.pem\" = 12345678\n"),
            format!("{k}[schema_registry]\nurl = \"{SECRET}@host\"\n"),
        ] {
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(!e.contains(SECRET) && !e.contains("12345678"), "{text}: {e}");
        }
        // The line is named, by its key and not its value, to help fix it.
        let e = err("[kafka]\nbootstrap = \"b:1\nwatermark_topic = \"x\"\n");
        assert!(e.contains("line 2, column") && e.contains("| bootstrap = …") && !e.contains("b:1"), "{e}");
    }

    #[test]
    fn a_misspelt_key_is_named_with_the_keys_its_table_knows() {
        let e = err(&GOOD.replace("lookback = \"10m\"", "lookbak = \"10m\""));
        assert!(e.contains("`streams[0].lookbak`") && e.contains("unknown key (known: id, source,"), "{e}");
        let e = err(&GOOD.replace("[kafka]", "[kafka]\nwatermark_topik = \"x\""));
        assert!(e.contains("`kafka.watermark_topik`") && e.contains("watermark_topic"), "{e}");
        let e = err(&format!("{GOOD}\n[metric]\nlisten = \"x\"\n"));
        assert!(e.contains("`metric`") && e.contains("metrics"), "{e}");
    }

    /// A source's own keys are typed by its vendor module when its client is built: a typo
    /// there is named then, with the kind's keys and the ones every source has.
    #[test]
    fn a_sources_own_keys_are_read_as_its_vendors_type() {
        let c =
            Config::parse(&GOOD.replace(
                "sid = \"s\"",
                "sdi = \"s\"\nappkey = \"k\"\nappsecret = \"${TIDEMARK_TEST_SURELY_UNSET_VAR}\"",
            ))
            .unwrap();
        let w = &c.sources["wdt"];
        let e = w.settings.read::<crate::sources::wdt::WdtSettings>().unwrap_err().to_string();
        assert!(e.contains("`sources.wdt.appsecret`") && e.contains("TIDEMARK_TEST_SURELY_UNSET_VAR"), "{e}");
        let c = Config::parse(&GOOD.replace("sid = \"s\"", "sdi = \"s\"\nappkey = \"k\"\nappsecret = \"x\"")).unwrap();
        let e = c.sources["wdt"].settings.read::<crate::sources::wdt::WdtSettings>().unwrap_err().to_string();
        assert!(
            e.contains("`sources.wdt.sdi`")
                && e.contains("unknown key for this kind (known: sid, appkey, appsecret, kind, base_url"),
            "{e}"
        );
        let c = Config::parse(&GOOD.replace("sid = \"s\"", "sid = \"s\"\nappkey = \"\"\nappsecret = \"x\"")).unwrap();
        let e = c.sources["wdt"].settings.read::<crate::sources::wdt::WdtSettings>().unwrap_err().to_string();
        assert!(e.contains("`sources.wdt.appkey`") && e.contains("is empty"), "{e}");
        let c = Config::parse(GOOD).unwrap();
        let e = c.sources["wdt"].settings.read::<crate::sources::wdt::WdtSettings>().unwrap_err().to_string();
        assert!(e.contains("`sources.wdt.appkey`") && e.contains("missing"), "{e}");
    }

    #[test]
    fn a_secret_file_fills_a_value_and_never_shows_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wdt_appsecret");
        std::fs::write(&file, "s3cr3t-from-file\n").unwrap();
        let reference = format!("${{file:{}}}", file.display());
        let text = GOOD.replace("sid = \"s\"", &format!("sid = \"s\"\nappkey = \"k\"\nappsecret = \"{reference}\""));
        let c = Config::parse(&text).unwrap();
        let s: crate::sources::wdt::WdtSettings = c.sources["wdt"].settings.read().unwrap();
        assert_eq!(s.appsecret.expose(), "s3cr3t-from-file");
        assert!(!format!("{:?}", c.sources["wdt"]).contains("s3cr3t"), "a secret never prints");
        // A mounted file that is not there: the key and the path, at build time.
        let gone = dir.path().join("gone");
        let c = Config::parse(&text.replace(&file.display().to_string(), &gone.display().to_string())).unwrap();
        let e = c.sources["wdt"].settings.read::<crate::sources::wdt::WdtSettings>().unwrap_err().to_string();
        assert!(e.contains("`sources.wdt.appsecret`") && e.contains(&gone.display().to_string()), "{e}");
        // In the file's own sections too (a SASL password), and a file's text quoted by a
        // validation message is cut out of it.
        let c = Config::parse(
            &GOOD.replace("[kafka]", &format!("[kafka.properties]\n\"sasl.password\" = \"{reference}\"\n[kafka]")),
        )
        .unwrap();
        assert_eq!(c.kafka.properties["sasl.password"].expose(), "s3cr3t-from-file");
        let e = err(&GOOD.replace("http://127.0.0.1:1/", &reference));
        assert!(e.contains("sources.wdt.base_url") && e.contains("http://") && !e.contains("s3cr3t"), "{e}");
        let e = err(&GOOD.replace("lookback = \"10m\"", &format!("lookback = \"{reference}\"")));
        assert!(e.contains("streams[0].lookback") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn durations_keep_every_form_they_had() {
        for (text, secs) in [("49h", 49 * 3600), ("1d", 86_400), ("1h30m", 5400), ("90m", 5400), (" 2h ", 7200)] {
            let c = Config::parse(&GOOD.replace("max_span = \"1h\"", &format!("max_span = \"{text}\""))).unwrap();
            assert_eq!(c.streams[0].max_span, Some(Duration::from_secs(secs)), "{text}");
        }
        let c = Config::parse(&GOOD.replace("[kafka]", "[kafka]\ntransaction_timeout = \"1500ms\"")).unwrap();
        assert_eq!(c.kafka.transaction_timeout, Duration::from_millis(1500));
        let e = err(&GOOD.replace("[kafka]", "[kafka]\nstartup_timeout = \"5w\""));
        assert!(e.contains("kafka.startup_timeout") && e.contains("unknown unit") && e.contains("\"5w\""), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
