//! 财务账单 API: JSON POST with system parameters (`flag`, `method`, `ver`, `charset`, `type`,
//! `timestamp`, `sign`), its `{code, message, count, <list>}` envelope and error codes.
//!
//! The seed points to the OMS OpenAPI document for the signature: `sign` is the vendor's
//! `gen_sign` (see [`sign`]), pinned to vectors produced by the vendor's own PHP code.
//! Error codes are the seed's table:
//! 500 is retried; everything else it lists (parameters, auth, forbidden, expired request,
//! bad type, unknown method) stops the stream.

use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{Map, Value};

use super::config::SourceConfig;
use super::envelope::{Envelope, as_i64, as_text, json_body, preview, records, total};
use super::errors::{Action, ErrorRule, error, lookup};
use super::{ApiSpec, BoxFuture, Mode, Page, PageRequest, Source, SourceError, http};
use crate::config::{ConfigError, Secret};
use crate::domain::time::{COMPACT_DATETIME, DATETIME, format_beijing};
pub use tidemark_endpoints::finance::{BALANCES, TRANSACTIONS};

/// The finance bill API's answers (the seed's error table) and what the engine does about
/// each; `docs/vendors.md` cites it. The API documents no throttle code: an HTTP gateway's
/// 429 is read as one (`sources::http`).
pub static ERRORS: &[ErrorRule] = &[
    ErrorRule::code("1003", Action::SignatureRejected, "签名错误"),
    ErrorRule::code("1002", Action::ClockSkew, "请求已过期"),
    ErrorRule::code("1", Action::Fatal, "参数错误"),
    ErrorRule::code("400", Action::Fatal, "参数错误"),
    ErrorRule::code("401", Action::Fatal, "未授权访问"),
    ErrorRule::code("403", Action::Fatal, "禁止访问"),
    ErrorRule::code("1001", Action::Fatal, "非法的flag"),
    ErrorRule::code("1004", Action::Fatal, "不支持的type格式"),
    ErrorRule::code("2001", Action::Fatal, "缺少必要的参数"),
    ErrorRule::code("2002", Action::Fatal, "非法的请求参数"),
    ErrorRule::code("2003", Action::Fatal, "接口不存在"),
    ErrorRule::code("500", Action::Retry, "服务器内部错误"),
];

/// Maps a finance API error code to what the worker must do: the [`ERRORS`] row, else retry
/// (an undocumented code is more likely the server's trouble than ours).
pub fn classify(code: i64, message: &str) -> SourceError {
    let label = code.to_string();
    let reason = format!("finance code {code}: {message}");
    match lookup(ERRORS, &label, "", message) {
        Some(rule) => error(rule.action, &label, reason, None),
        None => error(Action::Retry, &label, reason, None),
    }
}

/// Reads a finance API response into a page, or its error.
pub fn parse_response(body: &[u8], list: &str) -> Result<Page, SourceError> {
    let mut v = checked_response(body)?;
    if v.get(list).is_none() {
        return Err(SourceError::malformed(format!("response has no `{list}`: {}", preview(body))));
    }
    let total = total(v.get("count"), "count")?;
    Ok(Page { records: records(v.take(list), list)?, total })
}

/// The whole answer of a successful call (`code` 0 or absent), or the vendor's error: what
/// `tidemark discover` reads before it knows the list field.
pub fn checked_response(body: &[u8]) -> Result<Envelope, SourceError> {
    let v: Envelope = json_body(body)?;
    if !v.is_object() {
        return Err(SourceError::malformed(format!("response is not an object: {}", preview(body))));
    }
    // The seed's examples omit `code` on success; its error table has 0 for success.
    let code = match v.get("code") {
        None => 0,
        Some(c) => v
            .field("code")
            .and_then(as_i64)
            .ok_or_else(|| SourceError::malformed(format!("`code` is not a number: {c}")))?,
    };
    if code != 0 {
        let message = match as_text(v.field("message")) {
            m if m.is_empty() => as_text(v.field("msg")),
            m => m,
        };
        return Err(classify(code, &message));
    }
    Ok(v)
}

/// The OMS OpenAPI signature, as the vendor documents it (doc.shopex.cn
/// `oms/oms-apis/openapi/openapi.html` §3, the page the seed's examples refer to) and checks
/// it (`openapi_entrance::gen_sign`): every parameter but `sign`, sorted by key (PHP
/// `ksort(…, SORT_STRING)`, byte order), written as key then value (objects and lists the same
/// way, recursively; `null` left out; `true`/`false` as `1`/`0`; empty strings kept); md5 of that
/// as uppercase hex, the token (接口密钥) appended, md5 again, uppercase hex.
///
/// Numbers are written as sent: integers as PHP writes them; a float may differ from PHP's
/// text, and tidemark sends none.
pub fn sign(body: &Map<String, Value>, token: &str) -> String {
    let mut text = String::with_capacity(256);
    assemble(body.iter().filter(|(k, _)| k.as_str() != "sign").map(|(k, v)| (k.clone(), v)).collect(), &mut text);
    let inner = hex::encode_upper(Md5::digest(text.as_bytes()));
    hex::encode_upper(Md5::digest(format!("{inner}{token}").as_bytes()))
}

/// `assemble`: the entries sorted by key, each `key` + value text.
fn assemble(mut entries: Vec<(String, &Value)>, out: &mut String) {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in entries {
        match v {
            Value::Null => continue,
            Value::Bool(b) => {
                out.push_str(&k);
                out.push(if *b { '1' } else { '0' });
            }
            Value::String(s) => {
                out.push_str(&k);
                out.push_str(s);
            }
            Value::Number(n) => {
                out.push_str(&k);
                out.push_str(&n.to_string());
            }
            // PHP arrays: a list's keys are its indexes, sorted as text too ("10" < "2").
            Value::Array(items) => {
                out.push_str(&k);
                assemble(items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(), out);
            }
            Value::Object(m) => {
                out.push_str(&k);
                assemble(m.iter().map(|(k, v)| (k.clone(), v)).collect(), out);
            }
        }
    }
}

/// Signs a finance request body in place.
pub fn sign_body(body: &mut Map<String, Value>, token: &str) {
    let sig = sign(body, token);
    body.insert("sign".into(), Value::from(sig));
}

/// `[sources.<id>]` keys of a `finance.*` kind: one app's flag and secret.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinanceSettings {
    pub flag: String,
    pub app_secret: Secret,
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
        let s: FinanceSettings = cfg.settings.read()?;
        Ok(FinanceSource {
            spec,
            http,
            url: cfg.base_url.clone(),
            flag: s.flag,
            app_secret: s.app_secret,
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
            let reply = http::post_json(&self.http, &self.url, &body, &[], self.timeout).await?;
            reply.read(|body| parse_response(body, self.spec.list_field))
        })
    }

    fn fetch_raw<'a>(&'a self, req: PageRequest<'a>) -> BoxFuture<'a, Result<Value, SourceError>> {
        Box::pin(async move {
            let body = Value::Object(self.signed_body(&req, chrono::Utc::now())?);
            let reply = http::post_json(&self.http, &self.url, &body, &[], self.timeout).await?;
            reply.read(|body| checked_response(body)?.into_value())
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
        assert_eq!(p.records[0].to_value().unwrap()["amount"].to_string(), "1000.00");
        let p = parse_response(br#"{"accounts":[{"account_id":"ACC001","balance":10000.00}]}"#, "accounts").unwrap();
        assert_eq!((p.total, p.records.len()), (None, 1));
    }

    #[test]
    fn error_codes_follow_the_seed_table() {
        let e = parse_response("{\"code\":1003,\"message\":\"签名错误\"}".as_bytes(), "lists").unwrap_err();
        assert!(matches!(&e, SourceError::Fatal { .. }) && e.to_string().contains("signature rejected"), "{e:?}");
        let e = parse_response("{\"code\":1002,\"message\":\"请求已过期\"}".as_bytes(), "lists").unwrap_err();
        assert!(matches!(e, SourceError::ClockSkew { .. }), "{e:?}");
        for code in [1, 400, 401, 403, 1001, 1004, 2001, 2002, 2003] {
            let e = parse_response(format!(r#"{{"code":{code},"message":"x"}}"#).as_bytes(), "lists").unwrap_err();
            assert!(matches!(e, SourceError::Fatal { .. }), "{code}: {e:?}");
        }
        let e = parse_response(br#"{"code":500,"message":"server error"}"#, "lists").unwrap_err();
        assert!(matches!(e, SourceError::Retryable { .. }), "{e:?}");
        let e = parse_response(br#"{"code":0,"count":1}"#, "lists").unwrap_err();
        assert!(e.to_string().contains("no `lists`"), "{e}");
    }

    #[test]
    fn the_raw_answer_is_whole_and_its_errors_classified_as_a_pages() {
        let v = checked_response(br#"{"code":0,"count":1,"bills":[{"a":1}]}"#).unwrap().into_value().unwrap();
        assert_eq!(v["bills"][0]["a"], 1);
        let e = checked_response(br#"{"code":1002,"message":"expired"}"#).unwrap_err();
        assert!(matches!(e, SourceError::ClockSkew { .. }), "{e:?}");
    }

    use crate::domain::sign_vectors::finance::*;
    use std::collections::BTreeMap;

    #[test]
    fn sign_matches_the_vendors_gen_sign() {
        assert_eq!(sign(&text_body(VENDOR_TRANSACTIONS), VENDOR_TOKEN), VENDOR_TRANSACTIONS_SIGN);
        assert_eq!(sign(&text_body(VENDOR_BALANCES), VENDOR_TOKEN), VENDOR_BALANCES_SIGN);
        assert_eq!(sign(&object(VENDOR_NESTED), VENDOR_TOKEN), VENDOR_NESTED_SIGN);
        assert_eq!(sign(&object(VENDOR_LONG_LIST), VENDOR_TOKEN), VENDOR_LONG_LIST_SIGN);
        // `sign` itself is not signed.
        let mut b = text_body(VENDOR_TRANSACTIONS);
        b.insert("sign".into(), Value::from("X"));
        assert_eq!(sign(&b, VENDOR_TOKEN), VENDOR_TRANSACTIONS_SIGN);
    }

    #[test]
    fn the_client_signs_its_request_as_the_vendor_does() {
        let cfg = crate::sources::config::SourceConfig::from_toml(
            "s",
            &format!(
                "kind = \"finance.transactions\"\nbase_url = \"http://127.0.0.1:1/api\"\nflag = \"tidemark\"\napp_secret = \"{VENDOR_TOKEN}\"\n"
            ),
        )
        .unwrap();
        let src = FinanceSource::new(&TRANSACTIONS, &cfg, reqwest::Client::new()).unwrap();
        // 2024-01-01 00:00 to 2024-01-02 00:00 Beijing; the request is made at 08:00 Beijing.
        let w = crate::domain::Window {
            start: "2023-12-31T16:00:00Z".parse().unwrap(),
            end: "2024-01-01T16:00:00Z".parse().unwrap(),
        };
        let params = [("account_id".to_string(), "ACC001".to_string())].into_iter().collect();
        let req = PageRequest { window: Some(&w), page_index: 0, page_size: 100, params: &params };
        let body = src.signed_body(&req, "2024-01-01T00:00:00Z".parse().unwrap()).unwrap();
        let text: BTreeMap<&str, String> =
            body.iter().filter(|(k, _)| k.as_str() != "sign").map(|(k, v)| (k.as_str(), as_text(Some(v)))).collect();
        let want: BTreeMap<&str, String> = VENDOR_TRANSACTIONS.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(text, want);
        assert_eq!(body["sign"], VENDOR_TRANSACTIONS_SIGN);
    }

    #[test]
    fn any_changed_parameter_changes_the_signature() {
        let b = text_body(VENDOR_TRANSACTIONS);
        for (k, _) in VENDOR_TRANSACTIONS {
            let mut t = b.clone();
            t.insert(k.to_string(), Value::from("x"));
            assert_ne!(sign(&t, VENDOR_TOKEN), VENDOR_TRANSACTIONS_SIGN, "{k}");
        }
        assert_ne!(sign(&b, "other"), VENDOR_TRANSACTIONS_SIGN);
    }
}
