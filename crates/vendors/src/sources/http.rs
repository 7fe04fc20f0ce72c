//! The HTTP round trip shared by vendor modules, with transport failures classified.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{DATE, RETRY_AFTER};

use super::SourceError;

/// A 2xx answer: its body, and the vendor's clock as its `Date` header tells it.
pub struct Reply {
    pub body: bytes::Bytes,
    pub server_time: Option<DateTime<Utc>>,
}

impl Reply {
    /// Reads the body with `parse`; a clock-skew answer is told how far off the local clock is.
    pub fn read<T>(self, parse: impl FnOnce(&[u8]) -> Result<T, SourceError>) -> Result<T, SourceError> {
        parse(&self.body).map_err(|e| e.with_server_time(self.server_time, Utc::now()))
    }
}

/// POSTs the (signed) parameters as a form and returns the body of a 2xx answer. Timeouts,
/// connection failures and 5xx are retryable; 429 is a throttle honouring `Retry-After`;
/// other statuses are fatal.
pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    params: &std::collections::BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Reply, SourceError> {
    let resp = client.post(url).form(params).timeout(timeout).send().await.map_err(transport_error)?;
    body_of(resp).await
}

/// POSTs a JSON body (the finance bill API style) with extra `headers` (K3Cloud's signature).
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<Reply, SourceError> {
    let mut req = client.post(url).json(body).timeout(timeout);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    body_of(req.send().await.map_err(transport_error)?).await
}

async fn body_of(resp: reqwest::Response) -> Result<Reply, SourceError> {
    let status = resp.status();
    let server_time = resp
        .headers()
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.with_timezone(&Utc));
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(SourceError::Throttled {
            code: "http_429".into(),
            reason: "http 429 too many requests".into(),
            after: retry_after,
        });
    }
    if status.is_server_error() {
        return Err(SourceError::Retryable {
            code: format!("http_{}", status.as_u16()),
            reason: format!("http {status}"),
            after: retry_after,
        });
    }
    if !status.is_success() {
        return Err(SourceError::Fatal { code: format!("http_{}", status.as_u16()), reason: format!("http {status}") });
    }
    Ok(Reply { body: resp.bytes().await.map_err(transport_error)?, server_time })
}

fn transport_error(e: reqwest::Error) -> SourceError {
    // reqwest errors can carry the URL; vendor URLs hold no secrets (they travel in the body).
    let (code, reason) = if e.is_timeout() {
        ("timeout", "request timed out".to_owned())
    } else if e.is_connect() {
        ("connect", format!("connection failed: {}", e.without_url()))
    } else {
        ("transport", format!("request failed: {}", e.without_url()))
    };
    SourceError::Retryable { code: code.into(), reason, after: None }
}
