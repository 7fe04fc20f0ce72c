//! The simulator's check of 第三方系统登录授权 headers: the gateway's signature over the
//! request's own nonce and timestamp, then the app key, account and user the request acts as.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};

use crate::targets::k3cloud::sign::Identity;

/// Why a request was refused; the text follows `身份验证失败: ` in the answer's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("缺少 {0} (missing header)")]
    Missing(&'static str),
    #[error("X-Api-Auth-Version 必须为 2.0 (auth version must be 2.0)")]
    Version,
    #[error("X-Api-ClientID 不匹配 (client id mismatch)")]
    ClientId,
    #[error("X-Kd-Appkey 不匹配 (app key mismatch)")]
    AppKey,
    #[error("x-api-timestamp 无效 (timestamp must be unix seconds or milliseconds)")]
    BadTimestamp,
    #[error("x-api-timestamp 超出允许的时间差 (timestamp is {0}s from the server clock, more than {1}s)")]
    Skew(i64, i64),
    #[error("X-Api-Signature 不匹配 (signature mismatch)")]
    Signature,
    #[error("X-Kd-Appdata 无效 (app data must be base64 of acct,user,lcid,org)")]
    AppData,
    #[error("X-Kd-Appdata 数据中心不匹配 (wrong acct id)")]
    Acct,
    #[error("X-Kd-Appdata 用户不匹配 (wrong user name)")]
    User,
    #[error("X-Kd-Signature 不匹配 (app signature mismatch)")]
    AppSignature,
    #[error("应用授权已停用 (app credentials revoked)")]
    Revoked,
}

/// Timestamps above this are milliseconds (the Java SDK's); below, seconds (the Python SDK's).
const MILLIS_ABOVE: i64 = 100_000_000_000;

/// Checks one request to `path` against the configured identity, in the order a gateway
/// would: presence, client, time, signature, then what K3Cloud itself checks.
pub fn check(id: &Identity, max_skew: i64, path: &str, h: &HeaderMap, now: DateTime<Utc>) -> Result<(), AuthFailure> {
    let get = |name: &'static str| -> Result<&str, AuthFailure> {
        h.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).ok_or(AuthFailure::Missing(name))
    };
    if get("X-Api-Auth-Version")? != "2.0" {
        return Err(AuthFailure::Version);
    }
    let client_id = id.app_id.split_once('_').map_or("", |(c, _)| c);
    if get("X-Api-ClientID")? != client_id {
        return Err(AuthFailure::ClientId);
    }
    let ts = get("x-api-timestamp")?;
    let nonce = get("x-api-nonce")?;
    let signature = get("X-Api-Signature")?;
    let secs = ts.parse::<i64>().map_err(|_| AuthFailure::BadTimestamp)?;
    let secs = if secs > MILLIS_ABOVE { secs / 1000 } else { secs };
    let skew = (secs - now.timestamp()).abs();
    if skew > max_skew {
        return Err(AuthFailure::Skew(skew, max_skew));
    }
    // The app id was checked when the simulator started.
    if id.api_signature(path, nonce, ts).ok().as_deref() != Some(signature) {
        return Err(AuthFailure::Signature);
    }
    if get("X-Kd-Appkey")? != id.app_id {
        return Err(AuthFailure::AppKey);
    }
    let app_data =
        BASE64.decode(get("X-Kd-Appdata")?).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(AuthFailure::AppData)?;
    let parts: Vec<&str> = app_data.split(',').collect();
    let [acct, user, lcid, _org] = parts[..] else { return Err(AuthFailure::AppData) };
    if lcid.parse::<u32>().is_err() {
        return Err(AuthFailure::AppData);
    }
    if acct != id.acct_id {
        return Err(AuthFailure::Acct);
    }
    if user != id.user_name {
        return Err(AuthFailure::User);
    }
    // Signed over the app data as sent: the organisation and language may be the client's.
    if get("X-Kd-Signature")? != id.app_signature(&app_data) {
        return Err(AuthFailure::AppSignature);
    }
    Ok(())
}
