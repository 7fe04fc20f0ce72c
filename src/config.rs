//! Worker configuration: loading the TOML file and the assembly of each module's section
//! (`[kafka]` in `kafka::config`, `[sources.<id>]` in `sources::config`, …) into one validated
//! [`Config`] whose errors name the key. The shared vocabulary (errors, `Secret`, durations,
//! expansion) is `tidemark_domain::config`, re-exported here.

#[cfg(test)]
mod reference_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use tidemark_domain::config::expand::expand_tree;

pub use crate::cluster::config::{ClusterConfig, ClusterSection};
pub use crate::kafka::config::{KafkaConfig, KafkaSection, ValueFormat};
pub use crate::registry::{COMPATIBILITY_LEVELS, RegistryConfig, RegistrySection};
pub use crate::sources::Endpoints;
pub use crate::sources::config::{DEFAULT_MAX_IN_FLIGHT, SourceConfig, SourceSection};
pub use crate::worker::config::{StreamConfig, StreamSection};
pub use crate::writer::config::{WriterConfig, WriterSection};
pub use tidemark_domain::config::*;

/// The whole file as written: each module's section, and the kinds' own keys set aside.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// A folder of the worker's own endpoints (`<kind>.toml` + `<kind>.avsc`), relative to the
    /// config file.
    pub endpoints_dir: Option<PathBuf>,
    /// Bytes the process's streams may hold in windows read ahead of the one each commits
    /// next: a number of bytes, or text with a unit (`"64MiB"`).
    #[serde(default)]
    pub max_buffered_bytes: Option<ByteSize>,
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
    /// What a relative `endpoints_dir` is relative to: the config file's folder.
    #[serde(skip)]
    base_dir: PathBuf,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; off unless set.
    pub listen: Option<String>,
}

/// `max_buffered_bytes` when not set: room for several busy windows read ahead (a 6-hour
/// window of 奇门 stock-ins is about 3 MiB), and a worker under 150 MiB whatever its windows'
/// size (64 MiB measured 153-179 MiB with 奇门; BENCHMARKS.md).
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 32 << 20;

/// A size as written in the file: bytes, or text such as `"64MiB"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    /// The size in bytes; `key` names it in errors.
    pub fn bytes(&self, key: &str) -> Result<u64, ConfigError> {
        let text = match self {
            ByteSize::Bytes(n) => return Ok(*n),
            ByteSize::Text(t) => t.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = (&text[..split], text[split..].trim());
        let shift = match unit {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            _ => {
                return Err(ConfigError::invalid(
                    key,
                    format!("{text:?}: expected bytes, or a number with KiB, MiB or GiB"),
                ));
            }
        };
        digits.parse::<u64>().ok().and_then(|n| n.checked_mul(1 << shift)).ok_or_else(|| {
            ConfigError::invalid(key, format!("{text:?}: expected bytes, or a number with KiB, MiB or GiB"))
        })
    }
}

/// The validated worker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// Bytes the process's streams may hold in windows read ahead (the window each stream
    /// commits next is read whatever its size).
    pub max_buffered_bytes: u64,
    pub metrics_listen: Option<String>,
    /// Set when values use the Confluent wire format.
    pub schema_registry: Option<RegistryConfig>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub streams: Vec<StreamConfig>,
    pub writers: BTreeMap<String, WriterConfig>,
    /// Set when several replicas share the streams (see `cluster`).
    pub cluster: Option<ClusterConfig>,
    /// The endpoints a source's `kind` may name: the built-ins and `endpoints_dir`'s.
    pub endpoints: Endpoints,
}

impl Config {
    /// Reads, expands and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Config::parse_in(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses and validates config text: TOML, then `${…}` expanded in every value (but the
    /// kinds' own keys, see [`KindSettings`]), then each section as its type, then the keys
    /// that depend on each other.
    /// A relative `endpoints_dir` is taken from the working directory.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, Path::new("."))
    }

    /// [`Config::parse`] of a file in folder `base` (what a relative `endpoints_dir` is from).
    pub fn parse_in(text: &str, base: &Path) -> Result<Config, ConfigError> {
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
        file.base_dir = base.to_owned();
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
        kinds.insert(id.clone(), KindSettings::split_from(format!("{section}.{id}"), keys, common));
    }
    kinds
}

/// The keys that depend on each other across sections: the value format and the registry,
/// each stream and its source, unique stream ids.
impl TryFrom<FileConfig> for Config {
    type Error = ConfigError;

    fn try_from(mut file: FileConfig) -> Result<Config, ConfigError> {
        let endpoints = match &file.endpoints_dir {
            None => Endpoints::builtin(),
            Some(dir) => {
                let dir = file.base_dir.join(dir);
                let endpoints =
                    Endpoints::load_dir(&dir).map_err(|e| ConfigError::invalid("endpoints_dir", e.to_string()))?;
                tracing::info!(dir = %dir.display(), endpoints = endpoints.user().len(), "endpoints loaded");
                endpoints
            }
        };
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
            let stream =
                StreamConfig::from_section(i, s, |id| sources.contains_key(id), || sources.keys().cloned().collect())?;
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
        let max_buffered_bytes = match &file.max_buffered_bytes {
            None => DEFAULT_MAX_BUFFERED_BYTES,
            Some(size) => match size.bytes("max_buffered_bytes")? {
                n if n < 1 << 20 => {
                    return Err(ConfigError::invalid(
                        "max_buffered_bytes",
                        format!("{n} bytes is under 1MiB: too little to read any window ahead"),
                    ));
                }
                n => n,
            },
        };
        Ok(Config {
            kafka,
            max_buffered_bytes,
            metrics_listen: file.metrics.listen,
            schema_registry,
            sources,
            streams,
            writers,
            cluster,
            endpoints,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    /// A user endpoint: found relative to the config file, named by a source's kind, its
    /// `[params]` sent unless the stream sets them; a bad one names its file and key.
    #[test]
    fn an_endpoints_dir_beside_the_config_adds_kinds_with_default_params() {
        let dir = tempfile::tempdir().unwrap();
        // Not `endpoints`: the repository's own endpoints/ folder is in the working directory.
        let endpoints = dir.path().join("my-endpoints");
        std::fs::create_dir(&endpoints).unwrap();
        let manifest = include_str!("../schemas/wdt.account_check.toml")
            .replace("kind = \"wdt.account_check\"", "kind = \"wdt.account_check_copy\"")
            .replace("[pages]", "[params]\ntime_type = \"2\"\nstatus = \"1\"\n\n[pages]");
        std::fs::write(endpoints.join("wdt.account_check_copy.toml"), &manifest).unwrap();
        std::fs::write(
            endpoints.join("wdt.account_check_copy.avsc"),
            include_str!("../schemas/wdt.account_check.avsc"),
        )
        .unwrap();
        let text = format!(
            "endpoints_dir = \"my-endpoints\"\n{}",
            GOOD.replace("wdt.account_check\"", "wdt.account_check_copy\"")
        )
        .replace("sid = \"s\"", "sid = \"s\"\nappkey = \"k\"\nappsecret = \"x\"")
        .replace("shop_no = \"shop-01\"", "shop_no = \"shop-01\"\nstatus = \"3\"");
        let file = dir.path().join("tidemark.toml");
        std::fs::write(&file, &text).unwrap();
        let c = Config::load(&file).unwrap();
        let e = c.endpoints.find("wdt.account_check_copy").unwrap();
        assert_eq!(e.origin, tidemark_endpoints::Origin::File(endpoints.join("wdt.account_check_copy.toml")));
        let plans = crate::pipeline::plan(&c).unwrap();
        assert_eq!(plans[0].source.spec().kind, "wdt.account_check_copy");
        let params = &plans[0].cfg.params;
        assert_eq!((params["time_type"].as_str(), params["status"].as_str()), ("2", "3"), "the stream's status wins");
        // Relative to the config file, not the working directory.
        assert!(Config::parse(&text).unwrap_err().to_string().contains("endpoints_dir"));
        std::fs::write(
            endpoints.join("wdt.account_check_copy.toml"),
            manifest.replace("max_size = 100", "max_size = 500"),
        )
        .unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("wdt.account_check_copy.toml") && e.contains("pages.max_size") && e.contains("500"), "{e}");
    }

    #[test]
    fn tidemarks_own_topics_are_each_its_own_and_no_streams() {
        // Two of them in one topic would mix their records (and a create request naming a
        // topic twice crashed librdkafka's admin client).
        let e =
            err(&GOOD
                .replace("[kafka]", "[kafka]\nledger_topic = \"tidemark.dlq\"\ndead_letter_topic = \"tidemark.dlq\""));
        assert!(
            e.contains("kafka.ledger_topic") && e.contains("\"tidemark.dlq\" is also kafka.dead_letter_topic"),
            "{e}"
        );
        let e = err(&GOOD.replace("[kafka]", "[kafka]\ncontrol_topic = \"tidemark.watermarks\""));
        assert!(e.contains("kafka.control_topic") && e.contains("also kafka.watermark_topic"), "{e}");
        let text = GOOD
            .replace("lookback = \"10m\"", "lookback = \"10m\"\ntopic = \"tidemark.ledger\"")
            .replace("sid = \"s\"", "sid = \"s\"\nappkey = \"k\"\nappsecret = \"x\"");
        let c = Config::parse(&text).unwrap();
        let e = crate::pipeline::plan(&c).err().expect("a stream writing tidemark's ledger topic").to_string();
        assert!(e.contains("streams[0].topic") && e.contains("\"tidemark.ledger\" is kafka.ledger_topic"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
