//! 淘宝开放平台 (TOP): system parameters and signing, the `<method>_response` / `api_result`
//! envelope in both wrapped and simplified forms, and the TOP family's error table
//! ([`ERRORS`], shared with 奇门; sources in `docs/vendors.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::SourceConfig;
use super::envelope::{Envelope, as_text, json_body, preview, records, total};
use super::errors::{Action, ErrorRule, ban_seconds, error, lookup};
use super::top_sign::{SignMethod, TopCredential};
use super::{ApiSpec, BoxFuture, Page, PageRequest, Source, SourceError, http};
use crate::config::{ConfigError, Secret};
use crate::domain::time::{DATETIME, format_beijing};
pub use tidemark_endpoints::top::FINANCE_ORDER;

/// The TOP family's answers (TOP and the 奇门 gateway) and what the engine does about each,
/// first match wins (`docs/vendors.md` cites each row). Code 7 is three limits told apart by
/// the sub-code: the app's daily quota, and two bans that say how many seconds they last.
pub static ERRORS: &[ErrorRule] = &[
    ErrorRule::sub_code("accesscontrol.limited-by-app-access-count", Action::DailyQuota, "the app's daily call quota"),
    ErrorRule::sub_code("isv.access-limited-by-app-access-count", Action::DailyQuota, "the app's daily call quota"),
    ErrorRule::sub_code("accesscontrol.", Action::Throttle, "call frequency limit"),
    ErrorRule::sub_code("isv.access-limited", Action::Throttle, "call frequency limit"),
    ErrorRule::sub_code("isp.call-limited", Action::Throttle, "call frequency limit"),
    ErrorRule::code("7", Action::Throttle, "app call limited"),
    ErrorRule::code("4", Action::Throttle, "user call limited"),
    ErrorRule::code("5", Action::Throttle, "session call limited"),
    ErrorRule::code("6", Action::Throttle, "partner call limited"),
    ErrorRule::code("8", Action::Throttle, "app call frequency limited"),
    ErrorRule::sub_code("isp.", Action::Retry, "the platform's own fault"),
    ErrorRule::code("10", Action::Retry, "service currently unavailable"),
    ErrorRule {
        code: Some("15"),
        sub_code: Some("isv."),
        message: &[],
        action: Action::Fatal,
        meaning: "remote service refused the request",
    },
    ErrorRule::code("15", Action::Retry, "remote service error"),
    ErrorRule::code("24", Action::SignatureRejected, "missing signature"),
    ErrorRule::code("25", Action::SignatureRejected, "invalid signature"),
    ErrorRule::code("31", Action::ClockSkew, "invalid timestamp"),
    ErrorRule::sub_code("sign-check-failure", Action::SignatureRejected, "invalid signature"),
];

/// Maps a TOP-family error (`code`, `sub_code`, message) to what the worker must do: the
/// [`ERRORS`] row, else any other platform code 1–99 or `isv.*` sub-code as fatal (missing
/// or invalid method, session, app key, version, arguments, permissions; 50 business error)
/// and anything else as retryable. A ban's seconds are read from the message.
pub fn classify(code: &str, sub_code: &str, message: &str) -> SourceError {
    let label = if code.is_empty() { "unknown" } else { code };
    let described = |meaning: &str| match (sub_code.is_empty(), meaning.is_empty()) {
        (true, true) => format!("code {code}: {message}"),
        (true, false) => format!("code {code} ({meaning}): {message}"),
        (false, true) => format!("code {code} ({sub_code}): {message}"),
        (false, false) => format!("code {code} ({sub_code}, {meaning}): {message}"),
    };
    let wait = ban_seconds(message);
    if let Some(rule) = lookup(ERRORS, code, sub_code, message) {
        return error(rule.action, label, described(rule.meaning), wait);
    }
    let action = match code.parse::<u32>() {
        Ok(1..=99) => Action::Fatal,
        _ if sub_code.contains("sign") || code.contains("sign") => Action::SignatureRejected,
        _ if sub_code.starts_with("isv.") => Action::Fatal,
        _ => Action::Retry,
    };
    error(action, label, described(""), wait)
}

/// Reads a TOP response for `method` into a page: the wrapped form
/// `{"<method>_response": {"api_result": …}}` or the simplified `{"api_result": …}`, with the
/// list either a plain array or wrapped in the method's item tag (`{"<item>": [...]}`).
pub fn parse_response(body: &[u8], method: &str, list: &str, item: &str) -> Result<Page, SourceError> {
    let mut models = checked_models(body, method)?;
    let total = total(models.get("pagination").and_then(|p| p.get("total_count")), "pagination.total_count")?;
    let list_value = match models.take(list) {
        Some(mut tagged @ Envelope::Object(_)) => tagged.take(item),
        other => other,
    };
    Ok(Page { records: records(list_value, list)?, total })
}

/// The `models` of a successful answer for `method` (moved out of the parsed body rather
/// than copied), or the error the answer carries.
fn checked_models(body: &[u8], method: &str) -> Result<Envelope, SourceError> {
    let mut v: Envelope = json_body(body)?;
    if let Some(e) = v.get("error_response") {
        return Err(classify(
            &as_text(e.field("code")),
            &as_text(e.field("sub_code")),
            format!("{} {}", as_text(e.field("msg")), as_text(e.field("sub_msg"))).trim(),
        ));
    }
    let wrapper = format!("{}_response", method.replace('.', "_"));
    let root = v.get(&wrapper).unwrap_or(&v);
    let result = root.get("api_result").ok_or_else(|| {
        SourceError::malformed(format!("response has neither `{wrapper}` nor `api_result`: {}", preview(body)))
    })?;
    let success = as_text(result.field("success")) == "true";
    if !success {
        return Err(classify(
            &as_text(result.field("err_code")),
            &as_text(result.field("err_code")),
            &as_text(result.field("err_msg")),
        ));
    }
    let mut root = if v.get(&wrapper).is_some() { v.take(&wrapper).expect("checked") } else { v };
    Ok(root.take("api_result").and_then(|mut r| r.take("models")).unwrap_or(Envelope::Scalar(Value::Null)))
}

/// A raw answer as `tidemark discover` reads every protocol's: the `models` object, with
/// `pagination.total_count` also as `total_count` beside the list (still in its item tag).
pub fn raw_models(body: &[u8], method: &str) -> Result<Value, SourceError> {
    let mut models = checked_models(body, method)?.into_value()?;
    let count = models.get("pagination").and_then(|p| p.get("total_count")).cloned();
    if let (Value::Object(o), Some(count)) = (&mut models, count) {
        o.insert("total_count".into(), count);
    }
    Ok(models)
}

/// `[sources.<id>]` keys of a `top.*` kind: the app's credential and the seller's session.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSettings {
    pub app_key: String,
    pub app_secret: Secret,
    pub session: Secret,
    #[serde(default)]
    pub sign_method: SignMethod,
    /// Ask for the simplified response form (`simplify=true`).
    #[serde(default, deserialize_with = "true_or_false")]
    pub simplify: bool,
}

/// `"true"` or `"false"` (as the TOP parameter is written), or a TOML boolean.
fn true_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(t) if t == "true" => Ok(true),
        Flag::Text(t) if t == "false" => Ok(false),
        Flag::Text(other) => Err(serde::de::Error::custom(format!("must be \"true\" or \"false\", got {other:?}"))),
    }
}

/// A TOP API with one app's credentials and a user session.
pub struct TopSource {
    spec: &'static ApiSpec,
    /// The method's object parameter (the manifest's `request_object`).
    request_object: &'static str,
    /// The method's list item tag (the manifest's `list_item`).
    list_item: &'static str,
    http: reqwest::Client,
    url: String,
    credential: TopCredential,
    session: Secret,
    simplify: bool,
    timeout: Duration,
}

impl TopSource {
    pub fn new(spec: &'static ApiSpec, cfg: &SourceConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        let s: TopSettings = cfg.settings.read()?;
        let named = |key: &str, value: Option<&'static str>| {
            value.ok_or_else(|| {
                ConfigError::invalid(
                    format!("sources.{}.kind", cfg.id),
                    format!("{}'s manifest names no `{key}`, which a top method needs", spec.kind),
                )
            })
        };
        Ok(TopSource {
            spec,
            request_object: named("request_object", spec.request_object)?,
            list_item: named("list_item", spec.list_item)?,
            http,
            url: cfg.base_url.clone(),
            credential: TopCredential::new(s.app_key, s.app_secret, s.sign_method),
            session: s.session,
            simplify: s.simplify,
            timeout: cfg.request_timeout,
        })
    }

    /// The business object: paging, the window (closed, in Beijing time) and the stream's
    /// filters; `shop_codes` is a comma-separated list in config and a list on the wire.
    pub fn request_object(&self, req: &PageRequest<'_>) -> Result<String, SourceError> {
        let window = req.window.ok_or_else(|| SourceError::no_window(self.spec.kind))?;
        let mut o = Map::new();
        o.insert("current_page".into(), Value::from(req.page_index + 1));
        o.insert("page_size".into(), Value::from(req.page_size));
        o.insert("start_time".into(), Value::from(format_beijing(window.start, DATETIME)));
        o.insert("end_time".into(), Value::from(format_beijing(window.last_second(), DATETIME)));
        for (k, v) in req.params {
            let value = if k == "shop_codes" {
                Value::Array(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Value::from).collect())
            } else {
                Value::from(v.as_str())
            };
            o.insert(k.clone(), value);
        }
        Ok(Value::Object(o).to_string())
    }

    pub fn signed_params(
        &self,
        req: &PageRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<String, String>, SourceError> {
        let mut p = BTreeMap::new();
        p.insert("session".to_owned(), self.session.expose().to_owned());
        if self.simplify {
            p.insert("simplify".to_owned(), "true".to_owned());
        }
        p.insert(self.request_object.to_owned(), self.request_object(req)?);
        Ok(self.credential.signed(self.spec.method, p, now))
    }
}

impl Source for TopSource {
    fn spec(&self) -> &'static ApiSpec {
        self.spec
    }

    fn quota_key(&self) -> String {
        format!("top:{}", self.credential.app_key)
    }

    fn fetch_page<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Page, SourceError>> {
        Box::pin(async move {
            let params = self.signed_params(&req, chrono::Utc::now())?;
            let reply = http::post_form(&self.http, &self.url, &params, self.timeout).await?;
            reply.read(|body| parse_response(body, self.spec.method, self.spec.list_field, self.list_item))
        })
    }

    fn fetch_raw<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Value, SourceError>> {
        Box::pin(async move {
            let params = self.signed_params(&req, chrono::Utc::now())?;
            let reply = http::post_form(&self.http, &self.url, &params, self.timeout).await?;
            reply.read(|body| raw_models(body, self.spec.method))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "alibaba.wdk.finance.order.backflow";
    const LIST_ITEM: &str = "finance_order_detail";

    fn parse(body: &str) -> Result<Page, SourceError> {
        parse_response(body.as_bytes(), M, "finance_order_details", LIST_ITEM)
    }

    #[test]
    fn wrapped_and_simplified_responses_both_parse() {
        let wrapped = r#"{"alibaba_wdk_finance_order_backflow_response":{"api_result":{"success":true,"err_code":"","err_msg":"",
            "models":{"pagination":{"total_page":20,"total_count":400,"page_size":20,"current_page":1},
            "finance_order_details":{"finance_order_detail":[{"biz_uk":"1231231","amount":"1"}]}}}}}"#;
        let p = parse(wrapped).unwrap();
        assert_eq!((p.total, p.records.len()), (Some(400), 1));
        assert_eq!(p.records[0].to_value().unwrap()["biz_uk"], "1231231");
        let simplified = r#"{"api_result":{"success":"true","models":{"pagination":{"total_count":"1"},
            "finance_order_details":[{"biz_uk":"x"}]}}}"#;
        let p = parse(simplified).unwrap();
        assert_eq!(
            (p.total, p.records[0].to_value().unwrap()["biz_uk"].as_str().map(str::to_owned)),
            (Some(1), Some("x".to_owned()))
        );
    }

    #[test]
    fn error_responses_are_classified() {
        let e = parse(r#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-api-access-count","sub_msg":"This ban will last 12 more seconds"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Throttled { after: Some(a), .. } if a == Duration::from_secs(12)), "{e:?}");
        let e = parse(r#"{"error_response":{"code":15,"msg":"Remote service error","sub_code":"isp.unknown-error"}}"#)
            .unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e = parse(r#"{"error_response":{"code":25,"msg":"Invalid signature"}}"#).unwrap_err();
        assert!(matches!(&e, SourceError::Fatal { .. }) && e.to_string().contains("signature rejected"), "{e:?}");
        for code in [21, 22, 26, 27, 28, 29, 33, 40, 41, 50] {
            let e = parse(&format!(
                r#"{{"error_response":{{"code":{code},"msg":"x","sub_code":"isv.invalid-parameter"}}}}"#
            ))
            .unwrap_err();
            assert!(matches!(&e, SourceError::Fatal { code: c, .. } if *c == code.to_string()), "{code}: {e:?}");
        }
        let e = parse(r#"{"error_response":{"code":10,"msg":"Service Currently Unavailable"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e = parse(r#"{"api_result":{"success":false,"err_code":"isp.timeout","err_msg":"busy"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
    }

    #[test]
    fn a_raw_answer_is_its_models_with_the_count_beside_the_list() {
        let wrapped = r#"{"alibaba_wdk_finance_order_backflow_response":{"api_result":{"success":true,
            "models":{"pagination":{"total_count":"3"},"finance_order_details":{"finance_order_detail":[{"biz_uk":"1"}]}}}}}"#;
        let raw = raw_models(wrapped.as_bytes(), M).unwrap();
        assert_eq!(raw["total_count"], "3");
        assert_eq!(raw["finance_order_details"]["finance_order_detail"][0]["biz_uk"], "1");
        let e = raw_models(br#"{"error_response":{"code":25,"msg":"Invalid signature"}}"#, M).unwrap_err();
        assert!(e.to_string().contains("signature rejected"), "{e}");
    }

    #[test]
    fn malformed_responses_say_what_is_missing() {
        let e = parse(r#"{"something_else":{}}"#).unwrap_err();
        assert!(e.to_string().contains("api_result"), "{e}");
        assert!(matches!(parse("<xml/>").unwrap_err(), SourceError::Retryable { .. }));
    }

    #[test]
    fn code_7_is_told_apart_by_its_sub_code() {
        let answer = |sub: &str, sub_msg: &str| {
            parse(&format!(
                r#"{{"error_response":{{"code":7,"msg":"App Call Limited","sub_code":"{sub}","sub_msg":"{sub_msg}"}}}}"#
            ))
            .unwrap_err()
        };
        let e = answer("accesscontrol.limited-by-app-access-count", "App Call Limited");
        assert!(matches!(e, SourceError::QuotaExhausted { after: None, .. }), "{e:?}");
        let e = answer("accesscontrol.limited-by-app-api-access-count", "This ban will last for 2 more seconds");
        assert!(matches!(e, SourceError::Throttled { after: Some(a), .. } if a == Duration::from_secs(2)), "{e:?}");
        let e = answer("accesscontrol.limited-by-api-access-count", "App Call Limited");
        assert!(matches!(e, SourceError::Throttled { after: None, .. }), "a ban without a number: {e:?}");
        let e = parse(r#"{"error_response":{"code":15,"msg":"Remote service error","sub_code":"isv.access-limited-by-api-access-count"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::Throttled { .. }), "legacy isv.access-limited-*: {e:?}");
        let e = parse(r#"{"error_response":{"code":31,"msg":"Invalid timestamp"}}"#).unwrap_err();
        assert!(matches!(e, SourceError::ClockSkew { .. }), "{e:?}");
        for code in [4, 5, 6, 8] {
            let e = parse(&format!(r#"{{"error_response":{{"code":{code},"msg":"Call Limited"}}}}"#)).unwrap_err();
            assert!(matches!(e, SourceError::Throttled { .. }), "{code}: {e:?}");
        }
    }
}
