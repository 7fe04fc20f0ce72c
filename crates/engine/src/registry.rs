//! A Confluent-compatible schema registry client: registers each topic's value schema under
//! its TopicNameStrategy subject (`<topic>-value`), checks compatibility, and looks schemas up
//! by id for readers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tracing::{info, warn};

use serde::Deserialize;

use crate::config::{ConfigError, Secret, duration};

/// `[schema_registry]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_location: Option<std::path::PathBuf>,
    #[serde(default = "default_compatibility")]
    pub compatibility: String,
    #[serde(default = "duration::secs::<10>", deserialize_with = "duration::required")]
    pub request_timeout: Duration,
    #[serde(default = "duration::secs::<30>", deserialize_with = "duration::required")]
    pub retry_for: Duration,
}

fn default_compatibility() -> String {
    "BACKWARD".into()
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
    pub ca_location: Option<std::path::PathBuf>,
    /// The compatibility level set on every subject tidemark registers.
    pub compatibility: String,
    pub request_timeout: Duration,
    /// How long an unreachable registry is retried before the start fails.
    pub retry_for: Duration,
}

/// A URL without credentials in it (they would end up in logs), a password only with a
/// username, a readable CA file, a known compatibility level.
impl TryFrom<RegistrySection> for RegistryConfig {
    type Error = ConfigError;

    fn try_from(r: RegistrySection) -> Result<Self, ConfigError> {
        let url = r.url.trim().trim_end_matches('/').to_owned();
        let authority = url.split_once("://").map_or(url.as_str(), |(_, r)| r).split('/').next().unwrap_or_default();
        if authority.contains('@') {
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
        if r.password.is_some() && r.username.is_none() {
            return Err(ConfigError::invalid("schema_registry.username", "missing: a password needs a username"));
        }
        if let Some(ca) = &r.ca_location
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
                format!(
                    "{:?} is not a compatibility level (one of {})",
                    r.compatibility,
                    COMPATIBILITY_LEVELS.join(", ")
                ),
            ));
        }
        if r.request_timeout.is_zero() {
            return Err(ConfigError::invalid("schema_registry.request_timeout", "must be positive"));
        }
        Ok(RegistryConfig {
            url,
            username: r.username,
            password: r.password,
            ca_location: r.ca_location,
            compatibility,
            request_timeout: r.request_timeout,
            retry_for: r.retry_for,
        })
    }
}

/// Why the registry did not give what was asked, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No answer (refused, DNS, TLS, timeout) or a 5xx/429 for longer than the retry budget.
    #[error("schema registry {url} is unreachable ({what}), retried for {waited:?}: {cause}")]
    Unreachable { url: String, what: String, waited: Duration, cause: String },
    /// A definite refusal: bad credentials, an invalid schema, a conflict.
    #[error("schema registry refused {what}: HTTP {status}{code}: {message}")]
    Refused { what: String, status: u16, code: String, message: String },
    /// The schema breaks the subject's compatibility rule against its latest version.
    #[error("schema for subject {subject} is not {level}-compatible with its latest registered version: {reasons}")]
    Incompatible { subject: String, level: String, reasons: String },
    #[error("schema registry answered {what} with something unexpected: {body}")]
    Malformed { what: String, body: String },
    /// The client could not be built (an unreadable CA file, say).
    #[error("schema registry client: {0}")]
    Setup(String),
}

/// The subject a topic's value schema is registered under (Confluent's TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// A Confluent-API schema registry (Confluent Schema Registry, Apicurio's `ccompat`, Karapace).
pub struct Registry {
    http: reqwest::Client,
    url: String,
    username: Option<String>,
    password: Option<Secret>,
    retry_for: Duration,
}

/// What a compatibility check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compatibility {
    /// The subject has no versions yet: anything may be its first.
    NewSubject,
    Compatible,
    Incompatible(Vec<String>),
}

impl Registry {
    pub fn new(cfg: &RegistryConfig) -> Result<Registry, RegistryError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)));
        if let Some(ca) = &cfg.ca_location {
            let setup =
                |why: String| RegistryError::Setup(format!("schema_registry.ca_location {}: {why}", ca.display()));
            let pem = std::fs::read(ca).map_err(|e| setup(format!("cannot read it: {e}")))?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| setup(format!("not a PEM certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| RegistryError::Setup(e.to_string()))?;
        Ok(Registry {
            http,
            url: cfg.url.clone(),
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            retry_for: cfg.retry_for,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers `avsc` under `subject` (or finds it registered) and returns its global id.
    pub async fn register(&self, subject: &str, avsc: &str) -> Result<u32, RegistryError> {
        let what = format!("registering the schema under subject {subject}");
        let path = format!("/subjects/{subject}/versions");
        let (status, body) =
            self.call(Method::POST, &path, Some(json!({"schemaType": "AVRO", "schema": avsc})), &what).await?;
        if status == StatusCode::CONFLICT {
            // 409: the subject's compatibility rule refused it, with the registry's reasons.
            let level = self.compatibility_level(subject).await.unwrap_or_else(|_| "the configured".into());
            return Err(RegistryError::Incompatible { subject: subject.to_owned(), level, reasons: message_of(&body) });
        }
        let body = success(status, body, &what)?;
        let id = id_of(&body, &what)?;
        Ok(id)
    }

    /// Checks `avsc` against the latest version of `subject` under the subject's rule.
    pub async fn compatibility(&self, subject: &str, avsc: &str) -> Result<Compatibility, RegistryError> {
        // Some registries (Apicurio) call anything compatible with a subject that has no
        // versions: ask first whether it has any.
        if !self.has_versions(subject).await? {
            return Ok(Compatibility::NewSubject);
        }
        let what = format!("the compatibility check for subject {subject}");
        let path = format!("/compatibility/subjects/{subject}/versions/latest?verbose=true");
        let (status, body) =
            self.call(Method::POST, &path, Some(json!({"schemaType": "AVRO", "schema": avsc})), &what).await?;
        let body = success(status, body, &what)?;
        match body.get("is_compatible").and_then(Value::as_bool) {
            Some(true) => Ok(Compatibility::Compatible),
            Some(false) => {
                let messages = match body.get("messages") {
                    Some(Value::Array(m)) => {
                        m.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_owned)).collect()
                    }
                    _ => Vec::new(),
                };
                Ok(Compatibility::Incompatible(messages))
            }
            None => Err(RegistryError::Malformed { what, body: body.to_string() }),
        }
    }

    /// Whether `subject` has any version; only the registry's "subject not found" (40401)
    /// means no, so a wrong base URL's 404 is an error, not a new subject.
    pub async fn has_versions(&self, subject: &str) -> Result<bool, RegistryError> {
        let what = format!("the versions of subject {subject}");
        let (status, body) = self.call(Method::GET, &format!("/subjects/{subject}/versions"), None, &what).await?;
        if status == StatusCode::NOT_FOUND && body.get("error_code").and_then(Value::as_u64) == Some(40401) {
            return Ok(false);
        }
        success(status, body, &what).map(|_| true)
    }

    /// The subject's own compatibility level, `None` where it has none (Confluent answers 404
    /// 40408; Apicurio 404 40401 for a subject with neither a level nor a version, and its
    /// global level once the subject has versions).
    pub async fn subject_compatibility_level(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        let what = format!("the compatibility level of subject {subject}");
        let (status, body) = self.call(Method::GET, &format!("/config/{subject}"), None, &what).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = success(status, body, &what)?;
        level_of(&body).map(Some).ok_or_else(|| RegistryError::Malformed { what, body: body.to_string() })
    }

    /// The subject's compatibility level (its own, else the registry's global one).
    pub async fn compatibility_level(&self, subject: &str) -> Result<String, RegistryError> {
        let what = format!("the compatibility level of subject {subject}");
        let path = format!("/config/{subject}?defaultToGlobal=true");
        let (status, body) = self.call(Method::GET, &path, None, &what).await?;
        let body = success(status, body, &what)?;
        level_of(&body).ok_or_else(|| RegistryError::Malformed { what, body: body.to_string() })
    }

    /// Sets the subject's compatibility level (e.g. `BACKWARD`).
    pub async fn set_compatibility_level(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let what = format!("setting compatibility {level} on subject {subject}");
        let path = format!("/config/{subject}");
        let (status, body) = self.call(Method::PUT, &path, Some(json!({"compatibility": level})), &what).await?;
        success(status, body, &what).map(drop)
    }

    /// The schema text registered as `id` (readers cache it: ids never change their schema).
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let what = format!("schema id {id}");
        let (status, body) = self.call(Method::GET, &format!("/schemas/ids/{id}"), None, &what).await?;
        let body = success(status, body, &what)?;
        let schema = body
            .get("schema")
            .and_then(Value::as_str)
            .ok_or_else(|| RegistryError::Malformed { what, body: body.to_string() })?
            .to_owned();
        Ok(schema)
    }

    /// One request, retried with backoff while the registry is unreachable or answers 5xx/429,
    /// for at most `retry_for`. Returns the status and JSON body of the first definite answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<(StatusCode, Value), RegistryError> {
        let started = Instant::now();
        let url = format!("{}{path}", self.url);
        for attempt in 1u32.. {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
            if let Some(b) = &body {
                req = req.header("Content-Type", "application/vnd.schemaregistry.v1+json").body(b.to_string());
            }
            if let Some(user) = &self.username {
                req = req.basic_auth(user, self.password.as_ref().map(Secret::expose));
            }
            let cause = match req.send().await {
                Ok(resp) if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let status = resp.status();
                    format!("HTTP {status}: {}", message_of(&resp.json::<Value>().await.unwrap_or(Value::Null)))
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Ok((status, json));
                }
                Err(e) => transport_cause(&e),
            };
            let waited = started.elapsed();
            if waited >= self.retry_for {
                return Err(RegistryError::Unreachable { url: self.url.clone(), what: what.to_owned(), waited, cause });
            }
            let wait = crate::domain::backoff::delay(attempt, Duration::from_millis(200), Duration::from_secs(5))
                .min(self.retry_for - waited);
            warn!(registry = %self.url, error = %cause, retry_in = ?wait, "schema registry not answering; retrying");
            tokio::time::sleep(wait).await;
        }
        unreachable!("the retry loop returns")
    }
}

/// Registers every topic's value schema (`schemas` maps topic → `.avsc`) and returns topic →
/// schema id. A subject without a level of its own gets `level` first, so the registry checks
/// every later version; one with a level an operator gave it (before the first start too)
/// keeps it, except the unchecked `NONE` (what Apicurio reports for a subject with versions and
/// no level of its own), which becomes `level`. Nothing is produced before this succeeds.
pub async fn register_all(
    registry: &Registry,
    schemas: &BTreeMap<String, String>,
    level: &str,
) -> Result<BTreeMap<String, u32>, RegistryError> {
    let mut ids = BTreeMap::new();
    for (topic, avsc) in schemas {
        let subject = value_subject(topic);
        let current = registry.subject_compatibility_level(&subject).await?;
        match current.as_deref() {
            Some(c) if c == level => {}
            None | Some("NONE") => registry.set_compatibility_level(&subject, level).await?,
            Some(c) => warn!(
                subject,
                compatibility = c,
                configured = level,
                "the subject keeps the compatibility level it was given, not the configured one"
            ),
        }
        let id = registry.register(&subject, avsc).await?;
        info!(subject, id, registry = %registry.url(), "value schema registered");
        ids.insert(topic.clone(), id);
    }
    Ok(ids)
}

/// Fails with the registry's reasons if `avsc` is incompatible with the subject's latest version.
pub async fn check(registry: &Registry, subject: &str, avsc: &str) -> Result<Compatibility, RegistryError> {
    match registry.compatibility(subject, avsc).await? {
        Compatibility::Incompatible(reasons) => {
            let level = registry.compatibility_level(subject).await.unwrap_or_else(|_| "the configured".into());
            let reasons = if reasons.is_empty() {
                "the registry's check gave no details (registering reports them)".to_owned()
            } else {
                reasons.join("; ")
            };
            Err(RegistryError::Incompatible { subject: subject.to_owned(), level, reasons })
        }
        ok => Ok(ok),
    }
}

/// A `/config` answer's level (`compatibilityLevel` read, `compatibility` as written).
fn level_of(body: &Value) -> Option<String> {
    body.get("compatibilityLevel").or_else(|| body.get("compatibility")).and_then(Value::as_str).map(str::to_owned)
}

fn success(status: StatusCode, body: Value, what: &str) -> Result<Value, RegistryError> {
    if status.is_success() {
        return Ok(body);
    }
    let code = body.get("error_code").map(|c| format!(" error_code {c}")).unwrap_or_default();
    Err(RegistryError::Refused { what: what.to_owned(), status: status.as_u16(), code, message: message_of(&body) })
}

fn message_of(body: &Value) -> String {
    match body.get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => {
            let s = body.to_string();
            s.chars().take(500).collect()
        }
    }
}

fn id_of(body: &Value, what: &str) -> Result<u32, RegistryError> {
    body.get("id")
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| RegistryError::Malformed { what: what.to_owned(), body: body.to_string() })
}

/// What kind of transport failure this was, for the error message (refused, DNS, TLS, timeout).
fn transport_cause(e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    let all = chain.join(": ");
    let kind = if e.is_timeout() {
        "timed out"
    } else if all.contains("Connection refused") {
        "connection refused"
    } else if all.contains("dns error") || all.contains("failed to lookup") {
        "name not resolved"
    } else if all.to_lowercase().contains("certificate") || all.contains("ssl") || all.contains("tls") {
        "TLS handshake failed"
    } else {
        "transport error"
    };
    format!("{kind} ({all})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config(url: String) -> RegistryConfig {
        RegistryConfig {
            url,
            username: Some("tidemark".into()),
            password: Some(Secret::new("s3cret-pw")),
            ca_location: None,
            compatibility: "BACKWARD".into(),
            request_timeout: Duration::from_secs(5),
            retry_for: Duration::from_millis(300),
        }
    }

    /// Answers one request per `(status, body)` in turn, handing back the requests received.
    async fn serve(answers: Vec<(&'static str, &'static str)>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let n = sock.read(&mut buf).await.unwrap();
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(reply.as_bytes()).await.unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            seen
        });
        (url, task)
    }

    #[tokio::test]
    async fn credentials_go_as_basic_auth_and_a_refusal_names_status_and_code_without_them() {
        let (url, seen) = serve(vec![("401 Unauthorized", r#"{"error_code":40101,"message":"Unauthorized"}"#)]).await;
        let reg = Registry::new(&config(url)).unwrap();
        let e = reg.register("orders-value", r#"{"type":"string"}"#).await.unwrap_err().to_string();
        let request = seen.await.unwrap().remove(0);
        // base64("tidemark:s3cret-pw")
        assert!(request.to_lowercase().contains("authorization: basic dglkzw1hcms6cznjcmv0lxb3"), "{request}");
        assert!(request.starts_with("POST /subjects/orders-value/versions "), "{request}");
        assert!(e.contains("HTTP 401") && e.contains("40101") && e.contains("Unauthorized"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[tokio::test]
    async fn only_subject_not_found_means_a_new_subject() {
        let (url, _) =
            serve(vec![("404 Not Found", r#"{"error_code":40401,"message":"Subject 'x-value' not found."}"#)]).await;
        let reg = Registry::new(&config(url)).unwrap();
        assert_eq!(reg.compatibility("x-value", r#""string""#).await.unwrap(), Compatibility::NewSubject);
        // A base URL without the Confluent API's path answers a plain 404: an error, not "new".
        let (url, _) = serve(vec![("404 Not Found", r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#)]).await;
        let reg = Registry::new(&config(url)).unwrap();
        let e = reg.compatibility("x-value", r#""string""#).await.unwrap_err().to_string();
        assert!(e.contains("HTTP 404") && e.contains("versions of subject x-value"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_retried_then_named_with_the_cause() {
        let reg = Registry::new(&config("http://127.0.0.1:1".into())).unwrap();
        let started = Instant::now();
        let e = reg.schema_by_id(7).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300), "retried for retry_for");
        let e = e.to_string();
        assert!(
            e.contains("http://127.0.0.1:1") && e.contains("connection refused") && e.contains("schema id 7"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_a_definite_answer() {
        let (url, seen) =
            serve(vec![("503 Service Unavailable", r#"{"message":"starting"}"#), ("200 OK", r#"{"id":42}"#)]).await;
        let mut cfg = config(url);
        cfg.retry_for = Duration::from_secs(10);
        let reg = Registry::new(&cfg).unwrap();
        assert_eq!(reg.register("orders-value", r#"{"type":"string"}"#).await.unwrap(), 42);
        assert_eq!(seen.await.unwrap().len(), 2, "the 503 was retried");
    }
}
