//! 旺店通 via 奇门 (Qimen): TOP-style system parameters and signing, the
//! `{"response": {"flag", "code", "message", "total_count", <list>}}` envelope, error classes.
//!
//! The public docs do not show Qimen's JSON envelope; SDKs disagree on its success marker
//! (`flag` or `errorcode`), so `parse_response` reads either, with `code`/`sub_code`/
//! `message`/`sub_message` on errors and TOP's own `error_response` for gateway errors.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::config::SourceConfig;
use super::envelope::{Envelope, as_text, json_body, preview, records, total};
use super::top::classify as top_classify;
use super::top_sign::{SignMethod, TopCredential};
use super::{ApiSpec, BoxFuture, Page, PageRequest, Source, SourceError, http};
use crate::config::{ConfigError, Secret};
use crate::domain::time::{DATETIME, format_beijing};
pub use tidemark_endpoints::qimen::STOCKIN_REFUND;

/// Reads a Qimen response into a page, or the vendor's error.
pub fn parse_response(body: &[u8], list: &str) -> Result<Page, SourceError> {
    let mut v = checked_response(body)?;
    let total = total(v.get("response").and_then(|r| r.get("total_count")), "total_count")?;
    Ok(Page { records: records(v.take("response").and_then(|mut r| r.take(list)), list)?, total })
}

/// The whole answer of a successful call (its `response` present and not a failure), or the
/// vendor's error: what `tidemark discover` reads before it knows the list field.
pub fn checked_response(body: &[u8]) -> Result<Envelope, SourceError> {
    let v: Envelope = json_body(body)?;
    if let Some(e) = v.get("error_response") {
        // The gateway's own error: the ban's seconds are in `sub_msg`, as in TOP's.
        let message = format!("{} {}", as_text(e.field("msg")), as_text(e.field("sub_msg")));
        return Err(top_classify(&as_text(e.field("code")), &as_text(e.field("sub_code")), message.trim()));
    }
    let r = v
        .get("response")
        .ok_or_else(|| SourceError::malformed(format!("response has no `response`: {}", preview(body))))?;
    // Two shapes are seen: the TS SDK reads `flag` ("success"/"failure"), while the Go SDK and
    // a production crawler read only `errorcode` (0 on success) and find `code`/`sub_code`/
    // `message`/`sub_message` on errors (docs/vendors.md). Either decides; neither is required.
    let flag = as_text(r.field("flag"));
    let errorcode = as_text(r.field("errorcode"));
    let failed = match flag.as_str() {
        "success" => false,
        "failure" => true,
        "" if !errorcode.is_empty() => errorcode != "0",
        "" => !matches!(as_text(r.field("code")).as_str(), "" | "0"),
        other => return Err(SourceError::malformed(format!("unknown flag {other:?}: {}", preview(body)))),
    };
    if failed {
        let code = match as_text(r.field("code")) {
            c if c.is_empty() => errorcode,
            c => c,
        };
        let message = match (as_text(r.field("message")), as_text(r.field("sub_message"))) {
            (m, s) if s.is_empty() => m,
            (m, s) if m.is_empty() => s,
            (m, s) => format!("{m} {s}"),
        };
        let sub_code = as_text(r.field("sub_code"));
        // 旺店通 business codes pass through Qimen as numbers: 1–199 mean the request or the
        // credentials are wrong, as in openapi2.
        if let Ok(n) = code.parse::<i64>()
            && (1..200).contains(&n)
            && !matches!(n, 7 | 15)
        {
            return Err(super::wdt::classify(n, &message));
        }
        return Err(top_classify(&code, &sub_code, &message));
    }
    Ok(v)
}

/// `[sources.<id>]` keys of a `qimen.*` kind: the Qimen app's credential and the 旺店通 seller
/// behind it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QimenSettings {
    pub app_key: String,
    pub app_secret: Secret,
    #[serde(default)]
    pub sign_method: SignMethod,
    pub target_app_key: String,
    pub sid: String,
}

/// A 旺店通 API reached through Qimen with one app's credentials.
pub struct QimenSource {
    spec: &'static ApiSpec,
    http: reqwest::Client,
    url: String,
    credential: TopCredential,
    target_app_key: String,
    sid: String,
    timeout: Duration,
}

impl QimenSource {
    pub fn new(spec: &'static ApiSpec, cfg: &SourceConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        let s: QimenSettings = cfg.settings.read()?;
        Ok(QimenSource {
            spec,
            http,
            url: cfg.base_url.clone(),
            credential: TopCredential::new(s.app_key, s.app_secret, s.sign_method),
            target_app_key: s.target_app_key,
            sid: s.sid,
            timeout: cfg.request_timeout,
        })
    }

    pub fn signed_params(
        &self,
        req: &PageRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<String, String>, SourceError> {
        let window = req.window.ok_or_else(|| SourceError::no_window(self.spec.kind))?;
        let mut p: BTreeMap<String, String> = req.params.clone();
        for (k, v) in [
            ("target_app_key", self.target_app_key.clone()),
            ("sid", self.sid.clone()),
            ("start_time", format_beijing(window.start, DATETIME)),
            // Closed interval, as 旺店通's own APIs.
            ("end_time", format_beijing(window.last_second(), DATETIME)),
            ("page_no", req.page_index.to_string()),
            ("page_size", req.page_size.to_string()),
        ] {
            p.insert(k.to_owned(), v);
        }
        Ok(self.credential.signed(self.spec.method, p, now))
    }
}

impl Source for QimenSource {
    fn spec(&self) -> &'static ApiSpec {
        self.spec
    }

    fn quota_key(&self) -> String {
        format!("qimen:{}:{}", self.credential.app_key, self.sid)
    }

    fn fetch_page<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
        Box::pin(async move {
            let params = self.signed_params(&req, chrono::Utc::now())?;
            let reply = http::post_form(&self.http, &self.url, &params, self.timeout).await?;
            reply.read(|body| parse_response(body, self.spec.list_field))
        })
    }

    fn fetch_raw<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Value, SourceError>> {
        Box::pin(async move {
            let params = self.signed_params(&req, chrono::Utc::now())?;
            let reply = http::post_form(&self.http, &self.url, &params, self.timeout).await?;
            reply.read(|body| checked_response(body)?.into_value())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Page, SourceError> {
        parse_response(body.as_bytes(), "stockin_list")
    }

    #[test]
    fn success_envelope_parses_with_nested_details() {
        let p = parse(
            r#"{"response":{"flag":"success","code":"0","message":"","total_count":"2",
               "stockin_list":[{"order_no":"RK1","details_list":[{"num":"1.0000"}]},{"order_no":"RK2","details_list":[]}]}}"#,
        )
        .unwrap();
        assert_eq!((p.total, p.records.len()), (Some(2), 2));
        assert_eq!(p.records[0].to_value().unwrap()["details_list"][0]["num"], "1.0000");
    }

    /// The shape the Go SDK (ITITO881/go-zero-service `wdt_qm/qm_trade_query.go`, `qm_refund_query.go`)
    /// and a production crawler read: `errorcode` 0 on success, no `flag`; on error `code`,
    /// `message`, `sub_code`, `sub_message` (docs/vendors.md).
    #[test]
    fn an_errorcode_envelope_without_flag_is_read_too() {
        let p = parse(r#"{"response":{"errorcode":0,"total_count":1,"stockin_list":[{"order_no":"RK1"}]}}"#).unwrap();
        assert_eq!((p.total, p.records.len()), (Some(1), 1));
        let p = parse(r#"{"response":{"total_count":"0","stockin_list":[]}}"#).unwrap();
        assert_eq!((p.total, p.records.len()), (Some(0), 0), "neither flag nor errorcode nor code: a page");
        let e =
            parse(r#"{"response":{"errorcode":100,"message":"超过每分钟最大调用频率限制,请稍后重试"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Throttled { after: None, .. }), "errorcode is the code: {e:?}");
        let e =
            parse(r#"{"response":{"code":"15","sub_code":"isp.service-unavailable","sub_message":"x"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e = parse(r#"{"response":{"code":"sign-check-failure","message":"Illegal request"}}"#).unwrap_err();
        assert!(e.to_string().contains("signature rejected"), "a code without flag is an error: {e:?}");
    }

    #[test]
    fn failures_are_classified() {
        let e = parse(r#"{"response":{"flag":"failure","code":"sign-check-failure","message":"Illegal request"}}"#)
            .unwrap_err();
        assert!(matches!(&e, SourceError::Fatal { .. }) && e.to_string().contains("signature rejected"), "{e:?}");
        let e = parse(r#"{"response":{"flag":"failure","code":"100","message":"签名错误"}}"#).unwrap_err();
        assert!(matches!(&e, SourceError::Fatal { .. }) && e.to_string().contains("signature rejected"), "{e:?}");
        let e = parse(r#"{"response":{"flag":"failure","code":"7","message":"ban will last 4 more seconds"}}"#)
            .unwrap_err();
        assert!(matches!(e, SourceError::Throttled { after: Some(a), .. } if a == Duration::from_secs(4)), "{e:?}");
        let e =
            parse(r#"{"response":{"flag":"failure","code":"100","message":"超过每分钟最大调用频率限制,请稍后重试"}}"#)
                .unwrap_err();
        assert!(
            matches!(e, SourceError::Throttled { after: None, .. }),
            "旺店通's per-minute limit through 奇门: {e:?}"
        );
        let e = parse(r#"{"response":{"flag":"failure","code":"4","message":"数据库错误"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e =
            parse(r#"{"response":{"flag":"failure","code":"15","sub_code":"isp.service-unavailable","message":"x"}}"#)
                .unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e = parse(r#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-app-access-count","sub_msg":"This ban will last for 3600 more seconds"}}"#).unwrap_err();
        assert!(
            matches!(e, SourceError::QuotaExhausted { after: Some(a), .. } if a == Duration::from_secs(3600)),
            "the gateway's sub_msg is read: {e:?}"
        );
        let e = parse(r#"{"error_response":{"code":"29","msg":"Invalid app Key"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Fatal { .. }), "{e:?}");
    }

    #[test]
    fn the_raw_answer_is_whole_and_its_errors_classified_as_a_pages() {
        let v = checked_response(br#"{"response":{"flag":"success","total_count":1,"x_list":[{"a":1}]}}"#)
            .unwrap()
            .into_value()
            .unwrap();
        assert_eq!(v["response"]["x_list"][0]["a"], 1);
        let e = checked_response(
            "{\"response\":{\"flag\":\"failure\",\"code\":\"100\",\"message\":\"签名错误\"}}".as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("signature rejected"), "{e}");
    }

    #[test]
    fn malformed_envelopes_are_retryable() {
        for body in [r#"{"stockin_list":[]}"#, r#"{"response":{"flag":"maybe"}}"#, "not json"] {
            assert!(matches!(parse(body).unwrap_err(), SourceError::Retryable { .. }), "{body}");
        }
    }
}
