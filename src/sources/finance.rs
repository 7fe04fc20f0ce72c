//! 财务账单 API: JSON POST with system parameters (`flag`, `method`, `ver`, `charset`, `type`,
//! `timestamp`, `sign`), its `{code, message, count, <list>}` envelope and error codes.
//!
//! The seed does not give the signing algorithm; we use the TOP md5 scheme over every
//! parameter's text (`sign` excluded), uppercase hex. Error codes are the seed's table:
//! 500 is retried; everything else it lists (parameters, auth, forbidden, expired request,
//! bad type, unknown method) stops the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::envelope::{as_i64, as_text, json_body, preview, records, total};
use super::top_sign::{SignMethod, sign};
use super::{ApiSpec, BoxFuture, Mode, Page, PageRequest, Source, SourceError, http};
use crate::config::{ConfigError, Secret, SourceConfig};
use crate::domain::time::{COMPACT_DATETIME, DATETIME, format_beijing};

const SYSTEM_PARAMS: &[&str] = &["flag", "method", "ver", "charset", "type", "timestamp", "sign"];

/// 获取交易流水列表 (transactions), seed `000_…`.
pub static TRANSACTIONS: ApiSpec = ApiSpec {
    kind: "finance.transactions",
    method: "finance.getTransactionList",
    list_field: "lists",
    reserved_params: &[
        "flag",
        "method",
        "ver",
        "charset",
        "type",
        "timestamp",
        "sign",
        "start_time",
        "end_time",
        "page_no",
        "page_size",
    ],
    schema: include_str!("../../schemas/finance.transaction.avsc"),
    key_field: "trans_id",
    default_topic: "finance.transactions",
    // No documented limit; one day keeps each window's transaction bounded.
    max_span: Duration::from_secs(24 * 3600),
    // The API accepts up to 1000 but serves at most 100 per page: the worker trusts the
    // pages it gets, not the size it asked for.
    max_page_size: 1000,
    default_page_size: 100,
    mode: Mode::Windowed,
    paged: true,
    total_on_every_page: true,
};

/// 获取账户余额信息 (account balances): a snapshot, no time filter, no paging.
pub static BALANCES: ApiSpec = ApiSpec {
    kind: "finance.balances",
    method: "finance.getAccountBalance",
    list_field: "accounts",
    reserved_params: SYSTEM_PARAMS,
    schema: include_str!("../../schemas/finance.account_balance.avsc"),
    key_field: "account_id",
    default_topic: "finance.balances",
    max_span: Duration::from_secs(24 * 3600),
    max_page_size: 1,
    default_page_size: 1,
    mode: Mode::Snapshot,
    paged: false,
    total_on_every_page: false,
};

/// Maps a finance API error code to what the worker must do.
pub fn classify(code: i64, message: &str) -> SourceError {
    let reason = format!("finance code {code}: {message}");
    let fatal = |reason: String| SourceError::Fatal { code: code.to_string(), reason };
    match code {
        1003 => fatal(format!("signature rejected: {reason}")),
        1 | 400 | 401 | 403 | 1001 | 1002 | 1004 | 2001 | 2002 | 2003 => fatal(reason),
        _ => SourceError::Retryable { code: code.to_string(), reason, after: None },
    }
}

/// Reads a finance API response into a page, or its error.
pub fn parse_response(body: &[u8], list: &str) -> Result<Page, SourceError> {
    let mut v = json_body(body)?;
    let obj =
        v.as_object().ok_or_else(|| SourceError::malformed(format!("response is not an object: {}", preview(body))))?;
    // The seed's examples omit `code` on success; its error table has 0 for success.
    let code = match obj.get("code") {
        None => 0,
        Some(c) => as_i64(c).ok_or_else(|| SourceError::malformed(format!("`code` is not a number: {c}")))?,
    };
    if code != 0 {
        let message = match as_text(obj.get("message")) {
            m if m.is_empty() => as_text(obj.get("msg")),
            m => m,
        };
        return Err(classify(code, &message));
    }
    if !obj.contains_key(list) {
        return Err(SourceError::malformed(format!("response has no `{list}`: {}", preview(body))));
    }
    let total = total(obj.get("count"), "count")?;
    Ok(Page { records: records(v.get_mut(list), list)?, total })
}

/// The parameters' text for signing: strings as they are, numbers as written.
fn sign_text(body: &Map<String, Value>) -> BTreeMap<String, String> {
    body.iter().filter(|(k, _)| k.as_str() != "sign").map(|(k, v)| (k.clone(), as_text(Some(v)))).collect()
}

/// Signs a finance request body in place.
pub fn sign_body(body: &mut Map<String, Value>, secret: &str) {
    let sig = sign(&sign_text(body), None, secret, SignMethod::Md5);
    body.insert("sign".into(), Value::from(sig));
}

/// Checks a finance request body's signature (for the simulator).
pub fn signature_matches(body: &Map<String, Value>, secret: &str) -> bool {
    let given = as_text(body.get("sign"));
    sign(&sign_text(body), None, secret, SignMethod::Md5) == given
}

/// A finance bill API with one app's credentials.
pub struct FinanceSource {
    spec: &'static ApiSpec,
    http: reqwest::Client,
    url: String,
    flag: String,
    app_secret: Secret,
    timeout: Duration,
}

impl FinanceSource {
    pub fn new(spec: &'static ApiSpec, cfg: &SourceConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        let s = &cfg.settings;
        s.deny_unknown(&["flag", "app_secret"])?;
        Ok(FinanceSource {
            spec,
            http,
            url: cfg.base_url.clone(),
            flag: s.string("flag")?,
            app_secret: s.secret("app_secret")?,
            timeout: cfg.request_timeout,
        })
    }

    /// The signed JSON body for one request.
    pub fn signed_body(
        &self,
        req: &PageRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Map<String, Value>, SourceError> {
        let mut b = Map::new();
        for (k, v) in req.params {
            b.insert(k.clone(), Value::from(v.as_str()));
        }
        b.insert("flag".into(), Value::from(self.flag.as_str()));
        b.insert("method".into(), Value::from(self.spec.method));
        b.insert("ver".into(), Value::from(1));
        b.insert("charset".into(), Value::from("utf-8"));
        b.insert("type".into(), Value::from("json"));
        b.insert("timestamp".into(), Value::from(format_beijing(now, COMPACT_DATETIME)));
        if self.spec.mode == Mode::Windowed {
            let window = req.window.ok_or_else(|| SourceError::no_window(self.spec.kind))?;
            b.insert("start_time".into(), Value::from(format_beijing(window.start, DATETIME)));
            // Assumed closed, like the other vendors' windows.
            b.insert("end_time".into(), Value::from(format_beijing(window.last_second(), DATETIME)));
            b.insert("page_no".into(), Value::from(req.page_index + 1));
            b.insert("page_size".into(), Value::from(req.page_size));
        }
        sign_body(&mut b, self.app_secret.expose());
        Ok(b)
    }
}

impl Source for FinanceSource {
    fn spec(&self) -> &'static ApiSpec {
        self.spec
    }

    fn quota_key(&self) -> String {
        format!("finance:{}", self.flag)
    }

    fn fetch_page<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
        Box::pin(async move {
            let body = Value::Object(self.signed_body(&req, chrono::Utc::now())?);
            let resp = http::post_json(&self.http, &self.url, &body, &[], self.timeout).await?;
            parse_response(&resp, self.spec.list_field)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_examples_parse_with_exact_number_text() {
        let body =
            r#"{"count": 100, "lists": [{"trans_id": "TRANS20240101001", "amount": 1000.00, "balance": 11000.00}]}"#;
        let p = parse_response(body.as_bytes(), "lists").unwrap();
        assert_eq!(p.total, Some(100));
        // serde_json keeps the number's text, so decimals stay exact downstream.
        assert_eq!(p.records[0]["amount"].to_string(), "1000.00");
        let p = parse_response(br#"{"accounts":[{"account_id":"ACC001","balance":10000.00}]}"#, "accounts").unwrap();
        assert_eq!((p.total, p.records.len()), (None, 1));
    }

    #[test]
    fn error_codes_follow_the_seed_table() {
        let e = parse_response("{\"code\":1003,\"message\":\"签名错误\"}".as_bytes(), "lists").unwrap_err();
        assert!(matches!(&e, SourceError::Fatal { .. }) && e.to_string().contains("signature rejected"), "{e:?}");
        for code in [1, 400, 401, 403, 1001, 1002, 1004, 2001, 2002, 2003] {
            let e = parse_response(format!(r#"{{"code":{code},"message":"x"}}"#).as_bytes(), "lists").unwrap_err();
            assert!(matches!(e, SourceError::Fatal { .. }), "{code}: {e:?}");
        }
        let e = parse_response(br#"{"code":500,"message":"server error"}"#, "lists").unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e = parse_response(br#"{"code":0,"count":1}"#, "lists").unwrap_err();
        assert!(e.to_string().contains("no `lists`"), "{e}");
    }

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let mut b = Map::new();
        b.insert("flag".into(), Value::from("f1"));
        b.insert("page_no".into(), Value::from(2));
        b.insert("start_time".into(), Value::from("2024-01-01 00:00:00"));
        sign_body(&mut b, "s3cret");
        assert!(signature_matches(&b, "s3cret"));
        assert!(!signature_matches(&b, "other"));
        b.insert("page_no".into(), Value::from(3));
        assert!(!signature_matches(&b, "s3cret"));
    }
}
