//! Config vocabulary every section type shares: the error naming a key, the redacting
//! `Secret`, durations, `${ENV}`/`${file:…}` expansion, a kind's own keys read as its type.

pub mod duration;
pub mod expand;
pub mod fields;
pub mod redact;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use expand::{expand_tree, join};

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
    pub fn redacted_for(self, from_files: &BTreeSet<String>) -> Self {
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
        if let Some(t) = crate::time::parse_beijing(&text) {
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

    /// Takes the keys of `entry` (the table at `prefix`) that are not among `common` (its
    /// section type's own keys) out of it, as the kind's settings.
    pub fn split_from(prefix: impl Into<String>, entry: &mut toml::Table, common: &'static [&'static str]) -> Self {
        let own: Vec<String> = entry.keys().filter(|k| !common.contains(&k.as_str())).cloned().collect();
        let values = own.into_iter().filter_map(|k| entry.remove(&k).map(|v| (k, v))).collect();
        KindSettings { prefix: prefix.into(), values, common }
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
pub fn section_error(
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
