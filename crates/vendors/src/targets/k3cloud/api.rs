//! The two K3Cloud calls a writer makes, `BatchSave` and `ExecuteBillQuery`: signed JSON
//! requests, and answers turned into per-row outcomes or an error classified by what the
//! writer must do (retry, wait, stop).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::sign::{Identity, SignError};
use crate::domain::{RowOutcome, SourceError};
use crate::sources::{envelope, http};

/// Every DynamicFormService call is `POST {server}{SERVICE_PREFIX}<name>.common.kdsvc`.
pub const SERVICE_PREFIX: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.";

/// K3Cloud's `MsgCode` for a request without a valid session or signature.
const MSG_CODE_NOT_LOGGED_IN: i64 = 1;
/// `MsgCode` 14, 调用限制 (call limited): K3Cloud's one throttle answer; the call is waited
/// out and sent again (`docs/vendors.md`).
const MSG_CODE_CALL_LIMITED: i64 = 14;

/// The flags of a `BatchSave` a writer's config decides.
#[derive(Debug, Clone, Copy)]
pub struct SaveFlags {
    pub is_auto_submit_and_audit: bool,
    pub is_verify_base_data_field: bool,
}

/// Session login with the app's secret (the Java SDK's `AuthService.LoginByAppSecret`).
pub const LOGIN_PATH: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret.common.kdsvc";
/// The header (and cookie) a session travels in.
const SESSION_HEADER: &str = "kdservice-sessionid";

/// How requests prove who they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request carries 第三方系统登录授权's signed headers (the SDKs' default).
    #[default]
    Signed,
    /// One `LoginByAppSecret`, then the session id on every request; logged in again when
    /// K3Cloud answers `MsgCode` 1 (the session expired or was dropped).
    Session,
}

/// A client of one K3Cloud server and account.
pub struct K3Client {
    http: reqwest::Client,
    /// `https://host` (the `/k3cloud/...` path is appended).
    base: String,
    identity: Identity,
    mode: AuthMode,
    session: tokio::sync::Mutex<Option<String>>,
    timeout: Duration,
}

impl K3Client {
    pub fn new(
        base: &str,
        identity: Identity,
        mode: AuthMode,
        timeout: Duration,
        http: reqwest::Client,
    ) -> Result<Self, SignError> {
        if mode == AuthMode::Signed {
            identity.check()?;
        }
        let session = tokio::sync::Mutex::new(None);
        Ok(K3Client { http, base: base.trim_end_matches('/').to_owned(), identity, mode, session, timeout })
    }

    /// One call, its answer parsed. In session mode a lost session is logged into again and
    /// the call sent once more.
    async fn call(&self, service: &str, body: &Value) -> Result<Value, SourceError> {
        let path = format!("{SERVICE_PREFIX}{service}.common.kdsvc");
        let url = format!("{}{path}", self.base);
        if self.mode == AuthMode::Signed {
            let headers = self
                .identity
                .headers(&path, chrono::Utc::now().timestamp())
                .map_err(|e| SourceError::Fatal { code: "config".into(), reason: e.to_string() })?;
            return http::post_json(&self.http, &url, body, &headers, self.timeout).await?.read(envelope::json_body);
        }
        let mut session = self.session.lock().await;
        for attempt in 0..2 {
            let sid = match session.as_ref() {
                Some(s) => s.clone(),
                None => session.insert(self.login().await?).clone(),
            };
            let headers = [(SESSION_HEADER, sid.clone()), ("Cookie", format!("{SESSION_HEADER}={sid}"))];
            let answer =
                http::post_json(&self.http, &url, body, &headers, self.timeout).await?.read(envelope::json_body)?;
            if attempt == 0 && msg_code(&answer) == Some(MSG_CODE_NOT_LOGGED_IN) {
                tracing::info!(service, "k3cloud session lost; logging in again");
                *session = None;
                continue;
            }
            return Ok(answer);
        }
        unreachable!("the second attempt returns")
    }

    /// `LoginByAppSecret`: the session id, or why K3Cloud refused the credentials.
    async fn login(&self) -> Result<String, SourceError> {
        let id = &self.identity;
        let body = json!({"parameters": [id.acct_id, id.user_name, id.app_id, id.app_secret.expose(), id.lcid]});
        let answer: Value =
            http::post_json(&self.http, &format!("{}{LOGIN_PATH}", self.base), &body, &[], self.timeout)
                .await?
                .read(envelope::json_body)?;
        match (envelope::as_i64(&answer["LoginResultType"]), answer["KDSVCSessionId"].as_str()) {
            (Some(1), Some(sid)) if !sid.is_empty() => Ok(sid.to_owned()),
            _ => Err(SourceError::Fatal {
                code: "login_refused".into(),
                reason: format!("k3cloud refused the login: {}", envelope::as_text(answer.get("Message"))),
            }),
        }
    }

    /// Saves `models` of `form_id` in one call; one outcome per model, in order.
    pub async fn batch_save(
        &self,
        form_id: &str,
        models: &[Value],
        flags: SaveFlags,
    ) -> Result<Vec<RowOutcome>, SourceError> {
        // The Python SDK's body form; the server takes the Java SDK's `parameters` too.
        let body = json!({"formid": form_id, "data": {
            "Model": models,
            "IsAutoSubmitAndAudit": flags.is_auto_submit_and_audit,
            "IsVerifyBaseDataField": flags.is_verify_base_data_field,
            "ValidateRepeatJson": false,
            "IsDeleteEntry": true,
        }});
        parse_save(&self.call("BatchSave", &body).await?, models.len())
    }

    /// Which of `bill_nos` already exist as `form_id` bills.
    pub async fn existing(&self, form_id: &str, bill_nos: &[String]) -> Result<HashSet<String>, SourceError> {
        if bill_nos.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = self.bill_rows(form_id, "FBillNo", bill_nos, bill_nos.len()).await?;
        Ok(rows.iter().filter_map(|r| r.first()).map(|v| envelope::as_text(Some(v))).collect())
    }

    /// `field_keys` of the `form_id` bills numbered `bill_nos`, at most `limit` rows, in one
    /// `ExecuteBillQuery` (a query naming entry fields answers a row per entry line).
    pub async fn bill_rows(
        &self,
        form_id: &str,
        field_keys: &str,
        bill_nos: &[String],
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, SourceError> {
        let quoted: Vec<String> = bill_nos.iter().map(|n| format!("'{}'", n.replace('\'', "''"))).collect();
        let body = json!({"data": {
            "FormId": form_id,
            "FieldKeys": field_keys,
            "FilterString": format!("FBillNo in ({})", quoted.join(",")),
            "OrderString": "",
            "TopRowCount": 0,
            "StartRow": 0,
            "Limit": limit,
        }});
        parse_query(&self.call("ExecuteBillQuery", &body).await?)
    }
}

/// The `MsgCode` of an answer, in a save's envelope or a query's error form.
fn msg_code(v: &Value) -> Option<i64> {
    let status = match v {
        Value::Array(rows) => &rows.first()?.get(0)?.get("Result")?["ResponseStatus"],
        _ => &v.get("Result")?["ResponseStatus"],
    };
    envelope::as_i64(status.get("MsgCode")?)
}

/// A failed answer's `ResponseStatus` as an error: not logged in (a rejected signature) and
/// request-level refusals stop the writer; retrying cannot fix them.
fn status_error(status: &Value) -> SourceError {
    let messages: Vec<String> = status["Errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| envelope::as_text(e.get("Message")))
        .filter(|m| !m.is_empty())
        .collect();
    let reason = if messages.is_empty() { status.to_string() } else { messages.join("; ") };
    if envelope::as_i64(&status["MsgCode"]) == Some(MSG_CODE_CALL_LIMITED) {
        return SourceError::Throttled {
            code: "call_limited".into(),
            reason: format!("k3cloud call limit: {reason}"),
            after: None,
        };
    }
    if envelope::as_i64(&status["MsgCode"]) == Some(MSG_CODE_NOT_LOGGED_IN) {
        SourceError::Fatal {
            code: "not_logged_in".into(),
            reason: format!("k3cloud refused the credentials: {reason}"),
        }
    } else {
        SourceError::Fatal { code: "refused".into(), reason: format!("k3cloud refused the request: {reason}") }
    }
}

/// `{"Result":{"ResponseStatus":{IsSuccess, Errors[{FieldName, Message, DIndex}],
/// SuccessEntitys[{Id, Number, DIndex}], MsgCode}}}` → one outcome per model.
pub fn parse_save(v: &Value, models: usize) -> Result<Vec<RowOutcome>, SourceError> {
    let status = &v["Result"]["ResponseStatus"];
    if !status.is_object() {
        return Err(SourceError::malformed(format!(
            "no Result.ResponseStatus in {}",
            envelope::preview(v.to_string().as_bytes())
        )));
    }
    // A call limit says nothing about the rows, even where it names one: the call is sent again.
    if envelope::as_i64(&status["MsgCode"]) == Some(MSG_CODE_CALL_LIMITED) {
        return Err(status_error(status));
    }
    let mut out = vec![RowOutcome::Unknown; models];
    let mut placed = false;
    for s in status["SuccessEntitys"].as_array().into_iter().flatten() {
        if let Some(i) = s.get("DIndex").and_then(envelope::as_i64).and_then(|i| usize::try_from(i).ok())
            && i < models
        {
            out[i] =
                RowOutcome::Saved { id: envelope::as_text(s.get("Id")), number: envelope::as_text(s.get("Number")) };
            placed = true;
        }
    }
    for e in status["Errors"].as_array().into_iter().flatten() {
        let Some(i) = e.get("DIndex").and_then(envelope::as_i64).and_then(|i| usize::try_from(i).ok()) else {
            continue;
        };
        if i >= models {
            continue;
        }
        let (field, message) = (envelope::as_text(e.get("FieldName")), envelope::as_text(e.get("Message")));
        out[i] = match std::mem::replace(&mut out[i], RowOutcome::Unknown) {
            RowOutcome::Rejected { field: f, message: m } => {
                RowOutcome::Rejected { field: if f.is_empty() { field } else { f }, message: format!("{m}; {message}") }
            }
            _ => RowOutcome::Rejected { field, message },
        };
        placed = true;
    }
    let success = status["IsSuccess"].as_bool().unwrap_or(false);
    if !success && !placed {
        return Err(status_error(status));
    }
    Ok(out)
}

/// `ExecuteBillQuery`'s rows, or its error (the SDKs detect `[[{"Result":...IsSuccess false}]]`).
pub fn parse_query(v: &Value) -> Result<Vec<Vec<Value>>, SourceError> {
    let rows = v.as_array().ok_or_else(|| SourceError::malformed(format!("query answer is not a list: {v}")))?;
    if let Some(status) =
        rows.first().and_then(|r| r.get(0)).and_then(|c| c.get("Result")).map(|r| &r["ResponseStatus"])
        && status.get("IsSuccess").and_then(Value::as_bool) == Some(false)
    {
        return Err(status_error(status));
    }
    rows.iter()
        .map(|r| r.as_array().cloned().ok_or_else(|| SourceError::malformed(format!("query row is not a list: {r}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partly_saved_batch_maps_back_by_dindex() {
        let answer = json!({"Result": {"ResponseStatus": {"ErrorCode": 500, "IsSuccess": false,
            "Errors": [{"FieldName": "FMaterialId", "Message": "物料编码 X 不存在", "DIndex": 1},
                       {"FieldName": "FBillNo", "Message": "已经存在", "DIndex": 1}],
            "SuccessEntitys": [{"Id": 100001, "Number": "A", "DIndex": 0}, {"Id": 100002, "Number": "C", "DIndex": 2}],
            "SuccessMessages": [], "MsgCode": 0}}});
        let out = parse_save(&answer, 4).unwrap();
        assert_eq!(out[0], RowOutcome::Saved { id: "100001".into(), number: "A".into() });
        assert_eq!(
            out[1],
            RowOutcome::Rejected {
                field: "FMaterialId".into(), message: "物料编码 X 不存在; 已经存在".into()
            }
        );
        assert_eq!(out[2], RowOutcome::Saved { id: "100002".into(), number: "C".into() });
        assert_eq!(out[3], RowOutcome::Unknown, "a model the answer does not name is queried again");
    }

    #[test]
    fn refusals_of_the_whole_request_are_classified() {
        let not_logged_in = json!({"Result": {"ResponseStatus": {"IsSuccess": false, "MsgCode": 1,
            "Errors": [{"FieldName": "", "Message": "签名错误", "DIndex": null}]}}});
        let e = parse_save(&not_logged_in, 2).unwrap_err();
        assert!(
            matches!(&e, SourceError::Fatal { code, reason } if code == "not_logged_in" && reason.contains("签名错误")),
            "{e}"
        );
        assert!(matches!(parse_save(&json!({"oops": 1}), 1), Err(SourceError::Retryable { .. })));
        // MsgCode 14 调用限制: a throttle, even when it names a row.
        let limited = json!({"Result": {"ResponseStatus": {"IsSuccess": false, "MsgCode": 14,
            "Errors": [{"FieldName": "", "Message": "调用限制", "DIndex": 0}]}}});
        assert!(matches!(parse_save(&limited, 1), Err(SourceError::Throttled { .. })), "{limited}");
        let query_error = json!([[{"Result": {"ResponseStatus": {"IsSuccess": false, "MsgCode": 0,
            "Errors": [{"Message": "字段 FBad 不存在"}]}}}]]);
        assert!(matches!(parse_query(&query_error), Err(SourceError::Fatal { reason, .. }) if reason.contains("FBad")));
        assert_eq!(parse_query(&json!([["A"], ["B"]])).unwrap(), vec![vec![json!("A")], vec![json!("B")]]);
    }
}
