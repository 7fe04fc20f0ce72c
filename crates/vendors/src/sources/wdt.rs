//! 旺店通 openapi2: request signing, the `{code, message, total_count, <list>}` envelope, and
//! its error table ([`ERRORS`], sources in `docs/vendors.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::Value;

use super::config::SourceConfig;
use super::envelope::{Envelope, as_i64, json_body, preview, records, total};
use super::errors::{Action, ErrorRule, error, lookup};
use super::{ApiSpec, BoxFuture, Page, PageRequest, Source, SourceError, http};
use crate::config::{ConfigError, Secret};
use crate::domain::time::{DATETIME, format_beijing};
pub use tidemark_endpoints::wdt::ACCOUNT_CHECK;

/// The openapi2 signature: every parameter but `sign`, sorted by key, each written as
/// `LL-key:VVVV-value` (lengths in characters, zero-padded), joined by `;`, then the
/// appsecret appended; md5 as lowercase hex.
pub fn sign(params: &BTreeMap<String, String>, appsecret: &str) -> String {
    let mut text = String::with_capacity(256);
    for (k, v) in params.iter().filter(|(k, _)| k.as_str() != "sign") {
        if !text.is_empty() {
            text.push(';');
        }
        text.push_str(&format!("{:02}-{}:{:04}-{}", k.chars().count(), k, v.chars().count(), v));
    }
    text.push_str(appsecret);
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Reads an openapi2 envelope into a page, or the vendor's error.
pub fn parse_envelope(body: &[u8], list: &str) -> Result<Page, SourceError> {
    let mut v = checked_envelope(body)?;
    let total = total(v.get("total_count"), "total_count")?;
    Ok(Page { records: records(v.take(list), list)?, total })
}

/// The whole envelope of a successful answer (`code` 0), or the vendor's error: what
/// `tidemark discover` reads before it knows the list field.
pub fn checked_envelope(body: &[u8]) -> Result<Envelope, SourceError> {
    let v: Envelope = json_body(body)?;
    if !v.is_object() {
        return Err(SourceError::malformed(format!("response is not an object: {}", preview(body))));
    }
    let code = v
        .field("code")
        .and_then(as_i64)
        .ok_or_else(|| SourceError::malformed(format!("response has no numeric `code`: {}", preview(body))))?;
    if code != 0 {
        let message = v.field("message").and_then(Value::as_str).unwrap_or("").to_owned();
        return Err(classify(code, &message));
    }
    Ok(v)
}

/// The per-minute limits' wording (the vendor writes the comma full- or half-width).
const PER_MINUTE_LIMITS: &[&str] = &["超过每分钟最大调用频率限制", "超过每分钟最大并发次数限制"];

/// 旺店通's answers and what the engine does about each, first match wins (`docs/vendors.md`
/// cites each row). Code 100 is the vendor's catch-all: only its message tells a per-minute
/// limit from a real failure.
pub static ERRORS: &[ErrorRule] = &[
    ErrorRule::message("100", PER_MINUTE_LIMITS, Action::Throttle, "per-minute call or concurrency limit"),
    ErrorRule::message("100", &["签名", "sign"], Action::SignatureRejected, "signature"),
    ErrorRule::message("100", &["timestamp", "时间戳"], Action::ClockSkew, "timestamp"),
    ErrorRule::code("1", Action::Fatal, "authentication failed (appkey, appsecret or sid)"),
    ErrorRule::code("4", Action::Retry, "database error"),
    ErrorRule::code("5", Action::Retry, "database error"),
    ErrorRule::code("6", Action::Fatal, "ip not in the app's whitelist"),
    ErrorRule::code("7", Action::ClockSkew, "timestamp error"),
];

/// Maps a non-zero openapi2 `code` to what the worker must do: the [`ERRORS`] row, else
/// 1–199 as the request or the credentials being wrong (fatal) and anything else as a
/// server-side problem worth retrying.
pub fn classify(code: i64, message: &str) -> SourceError {
    let label = code.to_string();
    match lookup(ERRORS, &label, "", message) {
        Some(rule) => error(rule.action, &label, format!("wdt code {code} ({}): {message}", rule.meaning), None),
        None if (1..200).contains(&code) => error(Action::Fatal, &label, format!("wdt code {code}: {message}"), None),
        None => error(Action::Retry, &label, format!("wdt code {code}: {message}"), None),
    }
}

/// `[sources.<id>]` keys of a `wdt.*` kind: one seller's openapi2 credential.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WdtSettings {
    pub sid: String,
    pub appkey: String,
    pub appsecret: Secret,
}

/// A 旺店通 openapi2 API with one seller's credentials.
pub struct WdtSource {
    spec: &'static ApiSpec,
    http: reqwest::Client,
    url: String,
    sid: String,
    appkey: String,
    appsecret: Secret,
    timeout: Duration,
}

impl WdtSource {
    pub fn new(spec: &'static ApiSpec, cfg: &SourceConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        let s: WdtSettings = cfg.settings.read()?;
        Ok(WdtSource {
            spec,
            http,
            url: format!("{}/openapi2/{}", cfg.base_url, spec.method),
            sid: s.sid,
            appkey: s.appkey,
            appsecret: s.appsecret,
            timeout: cfg.request_timeout,
        })
    }

    /// The signed form for one page request.
    pub fn signed_params(&self, req: &PageRequest<'_>, now_unix: i64) -> Result<BTreeMap<String, String>, SourceError> {
        let window = req.window.ok_or_else(|| SourceError::no_window(self.spec.kind))?;
        let mut p: BTreeMap<String, String> = req.params.clone();
        p.insert("sid".into(), self.sid.clone());
        p.insert("appkey".into(), self.appkey.clone());
        p.insert("timestamp".into(), now_unix.to_string());
        p.insert("page_no".into(), req.page_index.to_string());
        p.insert("page_size".into(), req.page_size.to_string());
        // openapi2 windows are closed intervals: send the window's last second as end_time.
        p.insert("start_time".into(), format_beijing(window.start, DATETIME));
        p.insert("end_time".into(), format_beijing(window.last_second(), DATETIME));
        let sign = sign(&p, self.appsecret.expose());
        p.insert("sign".into(), sign);
        Ok(p)
    }
}

impl Source for WdtSource {
    fn spec(&self) -> &'static ApiSpec {
        self.spec
    }

    fn quota_key(&self) -> String {
        format!("wdt:{}:{}", self.sid, self.appkey)
    }

    fn fetch_page<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
        Box::pin(async move {
            let params = self.signed_params(&req, chrono::Utc::now().timestamp())?;
            let reply = http::post_form(&self.http, &self.url, &params, self.timeout).await?;
            reply.read(|body| parse_envelope(body, self.spec.list_field))
        })
    }

    fn fetch_raw<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Value, SourceError>> {
        Box::pin(async move {
            let params = self.signed_params(&req, chrono::Utc::now().timestamp())?;
            let reply = http::post_form(&self.http, &self.url, &params, self.timeout).await?;
            reply.read(|body| checked_envelope(body)?.into_value())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::sign_vectors::{params, wdt::*};

    #[test]
    fn sign_matches_the_vendor_sdk() {
        assert_eq!(sign(&params(SDK_ACCOUNT_CHECK), SECRET), SDK_ACCOUNT_CHECK_SIGN);
        // Lengths count characters, not bytes; `sign` itself is not signed.
        let mut p = params(SDK_CHINESE);
        assert_eq!(sign(&p, SECRET), SDK_CHINESE_SIGN);
        p.insert("sign".into(), "whatever".into());
        assert_eq!(sign(&p, SECRET), SDK_CHINESE_SIGN);
    }

    #[test]
    fn success_envelope_from_the_seed_parses() {
        let body = br#"{"code":0,"total_count":19,"account_list":[{"account_check_no":"xxxx","send_amount":"368.0000"}],"message":"ok"}"#;
        let page = parse_envelope(body, "account_list").unwrap();
        assert_eq!(page.total, Some(19));
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].to_value().unwrap()["send_amount"], "368.0000");
    }

    #[test]
    fn later_pages_without_total_parse() {
        let page = parse_envelope(br#"{"code":"0","message":"ok","account_list":[]}"#, "account_list").unwrap();
        assert_eq!((page.total, page.records.len()), (None, 0));
    }

    #[test]
    fn error_envelopes_are_classified() {
        let e = parse_envelope("{\"code\": 2, \"message\": \"结束时间 end_time 为空\"}".as_bytes(), "account_list")
            .unwrap_err();
        assert!(
            matches!(&e, SourceError::Fatal { code, reason } if code == "2" && reason.contains("end_time")),
            "{e:?}"
        );
        let e = parse_envelope("{\"code\":100,\"message\":\"签名错误\"}".as_bytes(), "account_list").unwrap_err();
        assert!(e.to_string().contains("signature rejected"), "{e}");
        let e = parse_envelope(br#"{"code":500,"message":"busy"}"#, "account_list").unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
    }

    /// The vendor's own texts (its 错误码说明 table and an API page's 异常响应示例): code 100
    /// is a throttle only by its message, with either comma; a real failure on 100 stays fatal.
    #[test]
    fn per_minute_limits_are_throttles_and_other_code_100s_are_not() {
        for message in [
            "超过每分钟最大调用频率限制，请稍后重试",
            "超过每分钟最大调用频率限制,请稍后重试",
            "超过每分钟最大并发次数限制，请稍后重试",
        ] {
            let e = classify(100, message);
            assert!(matches!(e, SourceError::Throttled { after: None, .. }), "{message}: {e:?}");
        }
        for message in ["店铺编号不存在或已停用", "权限不足", "appkey 不存在或已停用"] {
            assert!(matches!(classify(100, message), SourceError::Fatal { .. }), "{message}");
        }
        assert!(matches!(classify(4, "数据库错误"), SourceError::Retryable { .. }));
        assert!(matches!(classify(5, "数据库错误"), SourceError::Retryable { .. }));
        assert!(matches!(classify(6, "ip限制"), SourceError::Fatal { .. }));
        assert!(matches!(classify(7, "时间戳错误"), SourceError::ClockSkew { .. }));
        assert!(matches!(classify(100, "timestamp 与服务器时间相差超过5分钟"), SourceError::ClockSkew { .. }));
    }

    #[test]
    fn a_clock_skew_answer_says_how_far_off_the_local_clock_is() {
        let local = chrono::Utc::now();
        let e = classify(7, "时间戳错误").with_server_time(Some(local - chrono::Duration::seconds(425)), local);
        assert!(e.to_string().contains("the local clock is 425s ahead of the vendor's"), "{e}");
        let e = classify(7, "时间戳错误").with_server_time(Some(local + chrono::Duration::seconds(90)), local);
        assert!(e.to_string().contains("90s behind"), "{e}");
    }

    #[test]
    fn malformed_pages_are_retryable_and_say_why() {
        for (body, why) in [
            (&b"<html>502</html>"[..], "not json"),
            (br#"{"message":"ok"}"#, "no numeric `code`"),
            (br#"{"code":0,"account_list":{"a":1}}"#, "not a list"),
            (br#"{"code":0,"account_list":[1]}"#, "not an object"),
            (br#"{"code":0,"total_count":-3}"#, "not a count"),
        ] {
            let e = parse_envelope(body, "account_list").unwrap_err();
            assert!(matches!(&e, SourceError::Retryable { code, .. } if code == "malformed"), "{e:?}");
            assert!(e.to_string().contains(why), "{e} should say {why}");
        }
    }
}
