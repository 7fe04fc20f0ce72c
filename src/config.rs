//! Worker configuration: the TOML file, `${ENV}` expansion, and validation whose errors name the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::StreamId;

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
}

/// A credential or password: never printed by `Debug` or `Display`.
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

/// Replaces every `${NAME}` in `value` with the environment variable `NAME`, and
/// `${NAME:-default}` with `default` where `NAME` is unset or empty.
/// `key` names the config key for the error when a variable is unset.
pub fn expand_env(key: &str, value: &str) -> Result<String, ConfigError> {
    expand_with(key, value, |name| std::env::var(name).ok())
}

fn expand_with(key: &str, value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end =
            after.find('}').ok_or_else(|| ConfigError::invalid(key, format!("unterminated `${{` in {value:?}")))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::invalid(key, format!("bad environment variable name {name:?}")));
        }
        let val = match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err(ConfigError::invalid(key, format!("environment variable {name} is not set")));
            }
        };
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses durations such as `500ms`, `30s`, `10m`, `2h`, `1d` or `1h30m`.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let bad = |why: &str| ConfigError::invalid(key, format!("{why}: {text:?} (use e.g. 30s, 10m, 2h, 1d)"));
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty duration"));
    }
    if s.starts_with('-') {
        return Err(bad("negative duration"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total += part;
    }
    Ok(total)
}

/// Where a stream starts when it has no watermark yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// A fixed instant (written in config as Beijing time `yyyy-MM-dd HH:mm:ss`).
    Instant(DateTime<Utc>),
    /// This long before the moment the stream first starts.
    Ago(Duration),
}

impl StartAt {
    pub fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        if let Some(t) = crate::domain::time::parse_beijing(text) {
            return Ok(StartAt::Instant(t));
        }
        parse_duration(key, text).map(StartAt::Ago).map_err(|_| {
            ConfigError::invalid(
                key,
                format!("{text:?} is neither a Beijing time `yyyy-MM-dd HH:mm:ss` nor a duration like 7d"),
            )
        })
    }

    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            StartAt::Instant(t) => t,
            StartAt::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()),
        }
    }
}

// ---- the file as written ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    kafka: FileKafka,
    #[serde(default)]
    metrics: FileMetrics,
    schema_registry: Option<FileRegistry>,
    #[serde(default)]
    sources: BTreeMap<String, FileSource>,
    #[serde(default)]
    streams: Vec<FileStream>,
    #[serde(default)]
    writers: BTreeMap<String, FileWriter>,
    cluster: Option<FileCluster>,
}

/// `[cluster]`: replicas sharing the streams through a Kafka consumer group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    group: String,
    instance_id: Option<String>,
    #[serde(default = "default_session_timeout")]
    session_timeout: String,
    coordination_topic: Option<String>,
}

fn default_session_timeout() -> String {
    "10s".into()
}

/// `[writers.<id>]`: a consumer of a stream's topic delivering records to a target API.
#[derive(Debug, Deserialize)]
struct FileWriter {
    kind: String,
    base_url: String,
    topic: Option<String>,
    group: Option<String>,
    #[serde(default = "default_writer_dead_letter_topic")]
    dead_letter_topic: String,
    #[serde(default = "default_batch_size")]
    batch_size: u32,
    #[serde(default = "default_batch_linger")]
    batch_linger: String,
    #[serde(default = "default_rps")]
    requests_per_second: u32,
    #[serde(default = "default_request_timeout")]
    request_timeout: String,
    /// Target-specific keys (credentials, organisations, mapping tables), read by its module.
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

fn default_writer_dead_letter_topic() -> String {
    "tidemark.writer.rejected".into()
}
fn default_batch_size() -> u32 {
    50
}
fn default_batch_linger() -> String {
    "2s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKafka {
    bootstrap: String,
    #[serde(default = "default_transactional_id")]
    transactional_id: String,
    #[serde(default = "default_watermark_topic")]
    watermark_topic: String,
    control_topic: Option<String>,
    #[serde(default = "default_watermark_partitions")]
    watermark_partitions: i32,
    #[serde(default = "default_dead_letter_topic")]
    dead_letter_topic: String,
    #[serde(default = "minus_one")]
    topic_partitions: i32,
    #[serde(default = "minus_one")]
    replication_factor: i32,
    #[serde(default = "default_transaction_timeout")]
    transaction_timeout: String,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default = "default_value_format")]
    value_format: String,
    #[serde(default = "default_startup_timeout")]
    startup_timeout: String,
    #[serde(default = "default_watermark_max_bytes")]
    watermark_max_bytes: usize,
}

fn default_watermark_max_bytes() -> usize {
    // Under librdkafka's message.max.bytes (1,000,000) and the broker's 1 MiB default, with
    // room for the key and record overhead.
    900_000
}

fn default_startup_timeout() -> String {
    "2m".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    url: String,
    username: Option<String>,
    password: Option<String>,
    ca_location: Option<String>,
    #[serde(default = "default_compatibility")]
    compatibility: String,
    #[serde(default = "default_registry_timeout")]
    request_timeout: String,
    #[serde(default = "default_registry_retry_for")]
    retry_for: String,
}

fn default_value_format() -> String {
    "single-object".into()
}
fn default_compatibility() -> String {
    "BACKWARD".into()
}
fn default_registry_timeout() -> String {
    "10s".into()
}
fn default_registry_retry_for() -> String {
    "30s".into()
}

fn default_transactional_id() -> String {
    "tidemark".into()
}
fn default_watermark_topic() -> String {
    "tidemark.watermarks".into()
}
fn default_dead_letter_topic() -> String {
    "tidemark.dead_letters".into()
}
fn default_watermark_partitions() -> i32 {
    6
}
fn minus_one() -> i32 {
    -1
}
fn default_transaction_timeout() -> String {
    "60s".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileSource {
    kind: String,
    base_url: String,
    #[serde(default = "default_rps")]
    requests_per_second: u32,
    #[serde(default = "default_request_timeout")]
    request_timeout: String,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: u32,
    /// When the vendor's daily quota resets, Beijing time of day (`HH:MM:SS`).
    #[serde(default = "default_daily_quota_reset")]
    daily_quota_reset: String,
    /// An `.avsc` file to use instead of the kind's built-in schema.
    schema: Option<String>,
    /// Vendor-specific keys (credentials and the like), checked by the vendor module.
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

fn default_rps() -> u32 {
    5
}
/// TOP's daily app quota counts calls per day, Beijing time.
fn default_daily_quota_reset() -> String {
    "00:00:00".into()
}
/// Enough for a quota of 50 requests/s at 300 ms a request; the adaptive limit starts lower.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}
/// Enough windows to keep a credential's slots busy while one of them commits.
fn default_windows_in_flight() -> u32 {
    8
}
fn default_request_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStream {
    id: String,
    source: String,
    topic: Option<String>,
    #[serde(default = "default_start")]
    start: String,
    #[serde(default = "default_lookback")]
    lookback: String,
    dedup_span: Option<String>,
    #[serde(default = "default_settle")]
    settle: String,
    #[serde(default = "default_poll_interval")]
    poll_interval: String,
    max_span: Option<String>,
    page_size: Option<u32>,
    #[serde(default = "default_windows_in_flight")]
    windows_in_flight: u32,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// Ceilings that catch a typo (16000 for 16) before it reaches a vendor.
const MAX_IN_FLIGHT: u32 = 256;
const MAX_WINDOWS_IN_FLIGHT: u32 = 64;

fn check_range(key: &str, v: u32, range: std::ops::RangeInclusive<u32>) -> Result<(), ConfigError> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("must be within {}..={}, got {v}", range.start(), range.end())))
    }
}

fn default_start() -> String {
    "1d".into()
}
fn default_lookback() -> String {
    "0s".into()
}
fn default_settle() -> String {
    "2m".into()
}
fn default_poll_interval() -> String {
    "1m".into()
}

// ---- the validated config ------------------------------------------------------------------

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

/// `[cluster]`: this replica's place in a group of replicas that share the streams.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The consumer group the replicas join; also the prefix of each stream's transactional id.
    pub group: String,
    /// Static membership (`group.instance.id`), when set: a replica restarted within the
    /// session timeout gets its streams back without a rebalance, but one that stops keeps
    /// them until then. Unset, a replica leaves the group when it stops (its streams move at
    /// once) and a restart is a new member.
    pub instance_id: Option<String>,
    /// How this replica names itself in logs and in the watermark records' `tidemark.owner`
    /// header: the instance id, else host name and process id.
    pub member: String,
    /// How long a silent replica keeps its streams before the group gives them to others.
    pub session_timeout: Duration,
    /// One partition per stream slot; the group assigns them.
    pub coordination_topic: String,
}

/// A writer: a consumer group on `topic` delivering each record to a target API.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub id: String,
    pub kind: String,
    pub base_url: String,
    /// The topic to read; the target's input kind's default topic if unset.
    pub topic: Option<String>,
    /// The consumer group; `tidemark-writer-<id>` if unset.
    pub group: String,
    /// Where records the target rejects (or that cannot be read or mapped) go, with why.
    pub dead_letter_topic: String,
    /// Records per target call.
    pub batch_size: u32,
    /// How long a batch waits to fill once its first record arrived.
    pub batch_linger: Duration,
    pub requests_per_second: u32,
    pub request_timeout: Duration,
    pub settings: SourceSettings,
}

/// Broker connection and topic settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub transactional_id: String,
    pub watermark_topic: String,
    /// Operators' stop/resume flags per stream (compacted; `<watermark_topic>.control`).
    pub control_topic: String,
    pub watermark_partitions: i32,
    /// Where records that cannot be mapped to their schema go, with the error.
    pub dead_letter_topic: String,
    /// `-1` lets the broker choose.
    pub topic_partitions: i32,
    /// `-1` lets the broker choose.
    pub replication_factor: i32,
    pub transaction_timeout: Duration,
    /// librdkafka properties passed through as they are (TLS, SASL, tuning).
    pub properties: BTreeMap<String, Secret>,
    pub value_format: ValueFormat,
    /// How long a start waits for unreachable brokers before it fails.
    pub startup_timeout: Duration,
    /// The largest watermark record written; older lookback hashes are forgotten past it.
    pub watermark_max_bytes: usize,
}

/// How record values are framed for readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// Avro single-object encoding: readers need only `schemas/`.
    SingleObject,
    /// Confluent wire format: schema ids from `[schema_registry]`.
    Confluent,
}

/// The compatibility levels a Confluent-API registry knows.
pub const COMPATIBILITY_LEVELS: [&str; 7] =
    ["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"];

/// Where value schemas are registered (a Confluent-compatible API).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent API, without a trailing slash.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A PEM file of the CA that signed the registry's certificate.
    pub ca_location: Option<PathBuf>,
    /// The compatibility level set on every subject tidemark registers.
    pub compatibility: String,
    pub request_timeout: Duration,
    /// How long an unreachable registry is retried before the start fails.
    pub retry_for: Duration,
}

/// One vendor API with its credentials.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: String,
    pub kind: String,
    pub base_url: String,
    pub requests_per_second: u32,
    pub request_timeout: Duration,
    /// The most requests out at once on this source's credential; the adaptive limit moves
    /// below it.
    pub max_in_flight: u32,
    /// When the vendor's daily call quota resets (Beijing time of day), for a used-up quota
    /// whose answer names no time.
    pub daily_quota_reset: chrono::NaiveTime,
    /// An `.avsc` file replacing the kind's built-in schema (e.g. to add a field the vendor
    /// started sending); the file's text, read at load.
    pub schema: Option<String>,
    pub settings: SourceSettings,
}

/// A source's vendor-specific keys, read by its vendor module with errors naming the key.
#[derive(Clone)]
pub struct SourceSettings {
    prefix: String,
    values: BTreeMap<String, toml::Value>,
}

/// Keys only: the values include secrets (`app_secret`, `session` ...).
impl std::fmt::Debug for SourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSettings").field("prefix", &self.prefix).field("keys", &self.values.keys()).finish()
    }
}

impl SourceSettings {
    pub fn new(prefix: impl Into<String>, values: BTreeMap<String, toml::Value>) -> Self {
        SourceSettings { prefix: prefix.into(), values }
    }

    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// A required string, with `${ENV}` expanded.
    pub fn string(&self, name: &str) -> Result<String, ConfigError> {
        self.optional_string(name)?
            .ok_or_else(|| ConfigError::invalid(self.key(name), "missing (required by this source kind)"))
    }

    pub fn optional_string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(toml::Value::String(s)) => {
                let v = expand_env(&self.key(name), s)?;
                if v.is_empty() {
                    return Err(ConfigError::invalid(self.key(name), "is empty"));
                }
                Ok(Some(v))
            }
            Some(other) => {
                Err(ConfigError::invalid(self.key(name), format!("expected a string, found {}", other.type_str())))
            }
        }
    }

    /// A required secret: the value never appears in errors or logs.
    pub fn secret(&self, name: &str) -> Result<Secret, ConfigError> {
        self.string(name).map(Secret)
    }

    /// An optional boolean.
    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(ConfigError::invalid(self.key(name), format!("expected true or false, found {}", other.type_str())))
            }
        }
    }

    /// An optional integer.
    pub fn optional_u32(&self, name: &str) -> Result<Option<u32>, ConfigError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => u32::try_from(*n)
                .map(Some)
                .map_err(|_| ConfigError::invalid(self.key(name), format!("must be a non-negative integer, got {n}"))),
            Some(other) => {
                Err(ConfigError::invalid(self.key(name), format!("expected an integer, found {}", other.type_str())))
            }
        }
    }

    /// An optional table of text to text (a mapping), with `${ENV}` expanded in values.
    pub fn table(&self, name: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        match self.values.get(name) {
            None => Ok(BTreeMap::new()),
            Some(toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => Ok((k.clone(), expand_env(&self.key(&format!("{name}.{k}")), s)?)),
                    other => Err(ConfigError::invalid(
                        self.key(&format!("{name}.{k}")),
                        format!("expected a string, found {}", other.type_str()),
                    )),
                })
                .collect(),
            Some(other) => {
                Err(ConfigError::invalid(self.key(name), format!("expected a table, found {}", other.type_str())))
            }
        }
    }

    /// Fails on keys the vendor module does not know, so typos are caught at start.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ConfigError::invalid(
                self.key(k),
                format!("unknown key for this kind (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

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

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: describe_toml_error(text, &e),
        })?;
        validate(file)
    }
}

fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    let kafka = validate_kafka(&file.kafka)?;
    let schema_registry = file.schema_registry.as_ref().map(validate_registry).transpose()?;
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
    let sources = validate_sources(file.sources)?;
    let streams = validate_streams(file.streams, &sources)?;
    let writers = validate_writers(file.writers)?;
    let metrics_listen = file.metrics.listen.as_deref().map(|l| expand_env("metrics.listen", l)).transpose()?;
    let cluster = file.cluster.as_ref().map(validate_cluster).transpose()?;
    Ok(Config { kafka, metrics_listen, schema_registry, sources, streams, writers, cluster })
}

impl Config {
    /// Makes this process a replica of `group` (the command line's `--cluster-group`): as a
    /// `[cluster]` section would, keeping that section's other settings if there is one.
    pub fn join_cluster(&mut self, group: &str, instance_id: Option<&str>) -> Result<(), ConfigError> {
        let old = self.cluster.take();
        let file = FileCluster {
            group: group.to_owned(),
            instance_id: instance_id.map(str::to_owned).or_else(|| old.as_ref().and_then(|c| c.instance_id.clone())),
            session_timeout: old
                .as_ref()
                .map_or_else(default_session_timeout, |c| format!("{}ms", c.session_timeout.as_millis())),
            coordination_topic: old.filter(|c| c.group == group).map(|c| c.coordination_topic),
        };
        self.cluster = Some(validate_cluster(&file)?);
        Ok(())
    }
}

/// `[cluster]`: a group name fit for ids and topic names, an optional instance id, a session
/// timeout Kafka accepts.
fn validate_cluster(c: &FileCluster) -> Result<ClusterConfig, ConfigError> {
    let group = expand_env("cluster.group", &c.group)?;
    let fit = |v: &str| !v.is_empty() && v.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
    if !fit(&group) {
        return Err(ConfigError::invalid(
            "cluster.group",
            format!("must be letters, digits, '.', '_' or '-' (it names a topic and ids), got {group:?}"),
        ));
    }
    let instance_id = c.instance_id.as_deref().map(|id| expand_env("cluster.instance_id", id)).transpose()?;
    if instance_id.as_deref().is_some_and(|id| !fit(id)) {
        return Err(ConfigError::invalid(
            "cluster.instance_id",
            format!("must be letters, digits, '.', '_' or '-', got {:?}", instance_id.unwrap_or_default()),
        ));
    }
    let member = instance_id.clone().unwrap_or_else(|| format!("{}/{}", hostname(), std::process::id()));
    let session_timeout = parse_duration("cluster.session_timeout", &c.session_timeout)?;
    // The broker's defaults: group.min.session.timeout.ms 6 s, group.max.session.timeout.ms 30 min.
    if session_timeout < Duration::from_secs(6) || session_timeout > Duration::from_secs(1800) {
        return Err(ConfigError::invalid(
            "cluster.session_timeout",
            format!("must be between 6s and 30m (the broker's limits), got {session_timeout:?}"),
        ));
    }
    let coordination_topic = c.coordination_topic.clone().unwrap_or_else(|| format!("tidemark.{group}.streams"));
    check_topic_name("cluster.coordination_topic", &coordination_topic)?;
    Ok(ClusterConfig { group, instance_id, member, session_timeout, coordination_topic })
}

/// The machine's name (`HOSTNAME`, else /etc/hostname), to name a replica without an id.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// `[writers.<id>]`: the generic settings; the target module checks its own keys.
fn validate_writers(files: BTreeMap<String, FileWriter>) -> Result<BTreeMap<String, WriterConfig>, ConfigError> {
    let mut writers = BTreeMap::new();
    for (id, w) in files {
        let prefix = format!("writers.{id}");
        let key = |name: &str| format!("{prefix}.{name}");
        let base_url = expand_env(&key("base_url"), &w.base_url)?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                key("base_url"),
                format!("must start with http:// or https://, got {base_url:?}"),
            ));
        }
        if let Some(t) = &w.topic {
            check_topic_name(&key("topic"), t)?;
        }
        check_topic_name(&key("dead_letter_topic"), &w.dead_letter_topic)?;
        check_range(&key("batch_size"), w.batch_size, 1..=1000)?;
        if w.requests_per_second == 0 {
            return Err(ConfigError::invalid(key("requests_per_second"), "must be at least 1"));
        }
        let request_timeout = parse_duration(&key("request_timeout"), &w.request_timeout)?;
        if request_timeout.is_zero() {
            return Err(ConfigError::invalid(key("request_timeout"), "must be positive"));
        }
        let group = match w.group {
            Some(g) => expand_env(&key("group"), &g)?,
            None => format!("tidemark-writer-{id}"),
        };
        writers.insert(
            id.clone(),
            WriterConfig {
                id: id.clone(),
                kind: w.kind,
                base_url: base_url.trim_end_matches('/').to_owned(),
                topic: w.topic,
                group,
                dead_letter_topic: w.dead_letter_topic,
                batch_size: w.batch_size,
                batch_linger: parse_duration(&key("batch_linger"), &w.batch_linger)?,
                requests_per_second: w.requests_per_second,
                request_timeout,
                settings: SourceSettings::new(prefix, w.settings),
            },
        );
    }
    Ok(writers)
}

/// `[kafka]`: the brokers, topics, transactions and value format.
fn validate_kafka(k: &FileKafka) -> Result<KafkaConfig, ConfigError> {
    let bootstrap = expand_env("kafka.bootstrap", &k.bootstrap)?;
    if bootstrap.trim().is_empty() {
        return Err(ConfigError::invalid("kafka.bootstrap", "is empty"));
    }
    check_topic_name("kafka.watermark_topic", &k.watermark_topic)?;
    if let Some(t) = &k.control_topic {
        check_topic_name("kafka.control_topic", t)?;
    }
    check_topic_name("kafka.dead_letter_topic", &k.dead_letter_topic)?;
    if k.watermark_partitions < 1 {
        return Err(ConfigError::invalid(
            "kafka.watermark_partitions",
            format!("must be at least 1, got {}", k.watermark_partitions),
        ));
    }
    for (key, v) in [("kafka.topic_partitions", k.topic_partitions), ("kafka.replication_factor", k.replication_factor)]
    {
        if v == 0 || v < -1 {
            return Err(ConfigError::invalid(key, format!("must be -1 (broker default) or positive, got {v}")));
        }
    }
    let transaction_timeout = parse_duration("kafka.transaction_timeout", &k.transaction_timeout)?;
    let startup_timeout = parse_duration("kafka.startup_timeout", &k.startup_timeout)?;
    if k.watermark_max_bytes < 4096 {
        return Err(ConfigError::invalid(
            "kafka.watermark_max_bytes",
            format!("must be at least 4096, got {}", k.watermark_max_bytes),
        ));
    }
    if startup_timeout < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "kafka.startup_timeout",
            format!("must be at least 1s, got {:?}", k.startup_timeout),
        ));
    }
    if transaction_timeout < Duration::from_secs(1) {
        return Err(ConfigError::invalid("kafka.transaction_timeout", "must be at least 1s"));
    }
    let mut properties = BTreeMap::new();
    for (name, value) in &k.properties {
        let key = format!("kafka.properties.{name}");
        properties.insert(name.clone(), Secret(expand_env(&key, value)?));
    }
    let transactional_id = expand_env("kafka.transactional_id", &k.transactional_id)?;
    if transactional_id.trim().is_empty() {
        return Err(ConfigError::invalid("kafka.transactional_id", "is empty"));
    }
    let kafka = KafkaConfig {
        bootstrap,
        transactional_id,
        watermark_topic: k.watermark_topic.clone(),
        control_topic: k.control_topic.clone().unwrap_or_else(|| format!("{}.control", k.watermark_topic)),
        watermark_partitions: k.watermark_partitions,
        dead_letter_topic: k.dead_letter_topic.clone(),
        topic_partitions: k.topic_partitions,
        replication_factor: k.replication_factor,
        transaction_timeout,
        startup_timeout,
        watermark_max_bytes: k.watermark_max_bytes,
        properties,
        value_format: match k.value_format.as_str() {
            "single-object" => ValueFormat::SingleObject,
            "confluent" => ValueFormat::Confluent,
            other => {
                return Err(ConfigError::invalid(
                    "kafka.value_format",
                    format!("{other:?} is not a value format (use \"confluent\" or \"single-object\")"),
                ));
            }
        },
    };
    Ok(kafka)
}

/// `[sources.<id>]`: each vendor API's URL, quota and timeouts (its credentials are checked by
/// its vendor module).
fn validate_sources(files: BTreeMap<String, FileSource>) -> Result<BTreeMap<String, SourceConfig>, ConfigError> {
    let mut sources = BTreeMap::new();
    for (id, s) in files {
        let prefix = format!("sources.{id}");
        let base_url = expand_env(&format!("{prefix}.base_url"), &s.base_url)?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                format!("{prefix}.base_url"),
                format!("must start with http:// or https://, got {base_url:?}"),
            ));
        }
        if s.requests_per_second == 0 {
            return Err(ConfigError::invalid(format!("{prefix}.requests_per_second"), "must be at least 1"));
        }
        let request_timeout = parse_duration(&format!("{prefix}.request_timeout"), &s.request_timeout)?;
        if request_timeout.is_zero() {
            return Err(ConfigError::invalid(format!("{prefix}.request_timeout"), "must be positive"));
        }
        check_range(&format!("{prefix}.max_in_flight"), s.max_in_flight, 1..=MAX_IN_FLIGHT)?;
        let daily_quota_reset = chrono::NaiveTime::parse_from_str(&s.daily_quota_reset, "%H:%M:%S").map_err(|_| {
            ConfigError::invalid(
                format!("{prefix}.daily_quota_reset"),
                format!("must be a Beijing time of day HH:MM:SS, got {:?}", s.daily_quota_reset),
            )
        })?;
        let schema = match &s.schema {
            None => None,
            Some(path) => {
                let key = format!("{prefix}.schema");
                let path = expand_env(&key, path)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::invalid(&key, format!("cannot read {path}: {e}")))?;
                Some(text)
            }
        };
        sources.insert(
            id.clone(),
            SourceConfig {
                id: id.clone(),
                kind: s.kind,
                base_url: base_url.trim_end_matches('/').to_owned(),
                requests_per_second: s.requests_per_second,
                request_timeout,
                max_in_flight: s.max_in_flight,
                daily_quota_reset,
                schema,
                settings: SourceSettings::new(prefix, s.settings),
            },
        );
    }
    Ok(sources)
}

/// `[[streams]]`: ids, sources, topics and the window settings of each stream.
fn validate_streams(
    files: Vec<FileStream>,
    sources: &BTreeMap<String, SourceConfig>,
) -> Result<Vec<StreamConfig>, ConfigError> {
    if files.is_empty() {
        return Err(ConfigError::invalid("streams", "no streams configured: add at least one [[streams]] entry"));
    }
    let mut streams = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in files.into_iter().enumerate() {
        let key = |name: &str| format!("streams[{i}].{name}");
        let id = StreamId::parse(&s.id).map_err(|why| ConfigError::invalid(key("id"), why))?;
        // Keys tidemark writes beside the streams' own (see `ops` and `kafka::control`).
        if let Some(p) = ["backfill:", "error:"].iter().find(|p| s.id.starts_with(**p)) {
            return Err(ConfigError::invalid(
                key("id"),
                format!("{:?} starts with {p:?}, which tidemark reserves", s.id),
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(ConfigError::invalid(key("id"), format!("duplicate stream id {:?}", s.id)));
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
        let lookback = parse_duration(&key("lookback"), &s.lookback)?;
        let settle = parse_duration(&key("settle"), &s.settle)?;
        let poll_interval = parse_duration(&key("poll_interval"), &s.poll_interval)?;
        if poll_interval.is_zero() {
            return Err(ConfigError::invalid(key("poll_interval"), "must be positive"));
        }
        let max_span = s.max_span.as_deref().map(|m| parse_duration(&key("max_span"), m)).transpose()?;
        if let Some(m) = max_span {
            if m < Duration::from_secs(1) {
                return Err(ConfigError::invalid(key("max_span"), "must be at least 1s"));
            }
            if lookback >= m {
                return Err(ConfigError::invalid(
                    key("lookback"),
                    format!(
                        "lookback {} must be shorter than max_span {}",
                        s.lookback,
                        s.max_span.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        check_range(&key("windows_in_flight"), s.windows_in_flight, 1..=MAX_WINDOWS_IN_FLIGHT)?;
        if s.page_size == Some(0) {
            return Err(ConfigError::invalid(key("page_size"), "must be at least 1"));
        }
        let start = StartAt::parse(&key("start"), &s.start)?;
        let mut params = BTreeMap::new();
        for (name, v) in s.params {
            let v = expand_env(&key(&format!("params.{name}")), &v)?;
            params.insert(name, v);
        }
        let dedup_span = match &s.dedup_span {
            Some(t) => parse_duration(&key("dedup_span"), t)?.max(lookback),
            None => lookback,
        };
        streams.push(StreamConfig {
            id,
            source: s.source,
            topic: s.topic,
            start,
            lookback,
            dedup_span,
            settle,
            poll_interval,
            max_span,
            page_size: s.page_size,
            windows_in_flight: s.windows_in_flight,
            params,
        });
    }
    Ok(streams)
}

fn validate_registry(r: &FileRegistry) -> Result<RegistryConfig, ConfigError> {
    let url = expand_env("schema_registry.url", &r.url)?;
    let url = url.trim().trim_end_matches('/').to_owned();
    let authority = url.split_once("://").map_or(url.as_str(), |(_, r)| r).split('/').next().unwrap_or_default();
    if authority.contains('@') {
        // A password in the URL would end up in logs and errors.
        return Err(ConfigError::invalid(
            "schema_registry.url",
            "holds credentials: put them in schema_registry.username and schema_registry.password",
        ));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::invalid(
            "schema_registry.url",
            format!("must start with http:// or https://, got {url:?}"),
        ));
    }
    if authority.is_empty() {
        return Err(ConfigError::invalid("schema_registry.url", format!("has no host: {url:?}")));
    }
    let username = r.username.as_deref().map(|u| expand_env("schema_registry.username", u)).transpose()?;
    let password = r.password.as_deref().map(|p| expand_env("schema_registry.password", p).map(Secret)).transpose()?;
    if password.is_some() && username.is_none() {
        return Err(ConfigError::invalid("schema_registry.username", "missing: a password needs a username"));
    }
    let ca_location = r
        .ca_location
        .as_deref()
        .map(|c| expand_env("schema_registry.ca_location", c).map(PathBuf::from))
        .transpose()?;
    if let Some(ca) = &ca_location
        && !ca.is_file()
    {
        return Err(ConfigError::invalid(
            "schema_registry.ca_location",
            format!("{} is not a readable file", ca.display()),
        ));
    }
    let compatibility = r.compatibility.trim().to_ascii_uppercase();
    if !COMPATIBILITY_LEVELS.contains(&compatibility.as_str()) {
        return Err(ConfigError::invalid(
            "schema_registry.compatibility",
            format!("{:?} is not a compatibility level (one of {})", r.compatibility, COMPATIBILITY_LEVELS.join(", ")),
        ));
    }
    let request_timeout = parse_duration("schema_registry.request_timeout", &r.request_timeout)?;
    if request_timeout.is_zero() {
        return Err(ConfigError::invalid("schema_registry.request_timeout", "must be positive"));
    }
    let retry_for = parse_duration("schema_registry.retry_for", &r.retry_for)?;
    Ok(RegistryConfig { url, username, password, ca_location, compatibility, request_timeout, retry_for })
}

/// Whether a config key (or a line of config) names a secret: vendor secrets and sessions,
/// passwords, tokens, private keys.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "session", "token", "credential", "key.pem", "private", "oauthbearer"]
        .iter()
        .any(|w| k.contains(w))
}

/// A TOML error as `line L, column C: message`, then the offending line with its value left
/// out (`key = …`; table headers whole): no value is ever echoed, so a typo on a secret's line
/// cannot print the secret. On lines that mention a secret, or inside a multi-line string,
/// quoted values are also cut from the message.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().to_owned();
    let Some(span) = e.span() else { return redact_quoted(&message) };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = &text[line_start..line_end];
    let in_multiline = inside_multiline_string(text, line_start);
    let excerpt = if in_multiline {
        None
    } else if line.trim_start().starts_with('[') {
        Some(line.trim().to_owned())
    } else {
        line.split_once('=').map(|(k, _)| format!("{} = …", k.trim()))
    };
    let message = if in_multiline || is_secret_key(line) { redact_quoted(&message) } else { message };
    match excerpt {
        Some(x) => format!("line {line_no}, column {column}: {message}\n  {line_no} | {x}"),
        None => format!("line {line_no}, column {column}: {message} (inside a multi-line value, not shown)"),
    }
}

/// Whether byte offset `at` of TOML `text` lies inside a multi-line string (`"""` or `'''`).
fn inside_multiline_string(text: &str, at: usize) -> bool {
    #[derive(PartialEq)]
    enum In {
        Code,
        Comment,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
    }
    let b = &text.as_bytes()[..at.min(text.len())];
    let mut state = In::Code;
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        match state {
            In::Code if rest.starts_with(b"\"\"\"") => (state, i) = (In::MultiBasic, i + 2),
            In::Code if rest.starts_with(b"'''") => (state, i) = (In::MultiLiteral, i + 2),
            In::Code => match b[i] {
                b'"' => state = In::Basic,
                b'\'' => state = In::Literal,
                b'#' => state = In::Comment,
                _ => {}
            },
            In::Comment | In::Literal if b[i] == b'\n' => state = In::Code,
            In::Literal if b[i] == b'\'' => state = In::Code,
            In::Basic if b[i] == b'\\' => i += 1,
            In::Basic if b[i] == b'"' || b[i] == b'\n' => state = In::Code,
            In::MultiBasic if b[i] == b'\\' => i += 1,
            In::MultiBasic if rest.starts_with(b"\"\"\"") => (state, i) = (In::Code, i + 2),
            In::MultiLiteral if rest.starts_with(b"'''") => (state, i) = (In::Code, i + 2),
            _ => {}
        }
        i += 1;
    }
    matches!(state, In::MultiBasic | In::MultiLiteral)
}

/// Cuts quoted or backticked values out of an error message.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push_str("***");
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        out.push_str("***");
    }
    out
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
    fn source_settings_debug_names_the_keys_but_never_a_value() {
        let values = BTreeMap::from([
            ("app_key".to_owned(), toml::Value::String("ak-123".into())),
            ("app_secret".to_owned(), toml::Value::String("s3cr3t-value".into())),
        ]);
        let shown = format!("{:?}", SourceSettings::new("sources.qm", values));
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
    fn durations_parse_and_reject_nonsense() {
        assert_eq!(parse_duration("k", "1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("k", "250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("k", "-5s").unwrap_err().to_string().contains("negative"));
        assert!(parse_duration("k", "5").unwrap_err().to_string().contains("missing unit"));
        assert!(parse_duration("k", "5w").unwrap_err().to_string().contains("unknown unit"));
    }

    #[test]
    fn env_references_expand_and_unset_ones_name_the_key() {
        let got = expand_with("sources.x.appsecret", "a-${ONE}-${TWO}", |n| Some(n.to_lowercase())).unwrap();
        assert_eq!(got, "a-one-two");
        let got = expand_with("metrics.listen", "${NOPE:-127.0.0.1:9464}", |_| None).unwrap();
        assert_eq!(got, "127.0.0.1:9464");
        let got = expand_with("metrics.listen", "${SET:-127.0.0.1:9464}", |_| Some("0.0.0.0:1".into())).unwrap();
        assert_eq!(got, "0.0.0.0:1");
        let e = expand_with("sources.x.appsecret", "${NOPE}", |_| None).unwrap_err().to_string();
        assert!(e.contains("sources.x.appsecret") && e.contains("NOPE"), "{e}");
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
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
