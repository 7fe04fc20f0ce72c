//! The simulator's check of 第三方系统登录授权 headers: the gateway's signature over the
//! request's own nonce and timestamp, then the app key, account and user the request acts as.
//!
//! The signatures are computed here again, from the SDKs' description of them, sharing no code
//! with the writer's signer (`targets::k3cloud::sign`): the simulator and the writer agreeing
//! means two implementations agree, and both are pinned to the SDK's own output
//! (`crate::domain::sign_vectors::k3cloud`).

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// What the SDKs XOR an app id's key half with to get the gateway secret (the Python SDK
/// builds it by ROT13 in `encode_util.py`; the Java SDK holds it as `seckey`).
const SDK_XOR_KEY: &str = "0054f397c6234378b09ca7d3e5debce7";

/// The app and account the simulator holds, with the gateway secret derived from the app id.
#[derive(Debug)]
pub struct Account {
    /// `<client id>_<32-character base64 key>`.
    pub app_id: String,
    pub app_secret: Secret,
    pub acct_id: String,
    pub user_name: String,
    pub lcid: u32,
    client_id: String,
    gateway_secret: Secret,
}

impl Account {
    /// Fails (with the reason) when the app id is not `<client id>_<32-character base64 key>`.
    pub fn new(
        app_id: String,
        app_secret: String,
        acct_id: String,
        user_name: String,
        lcid: u32,
    ) -> Result<Self, String> {
        let bad = || format!("{app_id:?} is not `<client id>_<32-character key>` as 第三方系统登录授权 issues app ids");
        let (client_id, key) = app_id.split_once('_').ok_or_else(bad)?;
        if client_id.is_empty() || key.len() != 32 {
            return Err(bad());
        }
        let raw = BASE64.decode(key).map_err(|_| bad())?;
        let xored: Vec<u8> = raw.iter().zip(SDK_XOR_KEY.bytes()).map(|(a, b)| a ^ b).collect();
        Ok(Account {
            client_id: client_id.to_owned(),
            gateway_secret: Secret::new(BASE64.encode(xored)),
            app_id,
            app_secret: Secret::new(app_secret),
            acct_id,
            user_name,
            lcid,
        })
    }

    /// `X-Api-Signature` for a POST to `path` with this nonce and timestamp.
    pub fn api_signature(&self, path: &str, nonce: &str, timestamp: &str) -> String {
        let mut encoded = String::new();
        for b in path.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(b as char),
                _ => encoded += &format!("%{b:02X}"),
            }
        }
        let text = ["POST", &encoded, "", &format!("x-api-nonce:{nonce}"), &format!("x-api-timestamp:{timestamp}"), ""]
            .join("\n");
        base64_hex_hmac(self.gateway_secret.expose(), &text)
    }

    /// `X-Kd-Signature` over the app data text (`acct,user,lcid,org`).
    pub fn app_signature(&self, app_data: &str) -> String {
        base64_hex_hmac(self.app_secret.expose(), &(self.app_id.clone() + app_data))
    }
}

/// Base64 of the lowercase hex text of HMAC-SHA256(key, text).
fn base64_hex_hmac(key: &str, text: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(text.as_bytes());
    BASE64.encode(hex::encode(mac.finalize().into_bytes()).as_bytes())
}

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
pub fn check(id: &Account, max_skew: i64, path: &str, h: &HeaderMap, now: DateTime<Utc>) -> Result<(), AuthFailure> {
    let get = |name: &'static str| -> Result<&str, AuthFailure> {
        h.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).ok_or(AuthFailure::Missing(name))
    };
    if get("X-Api-Auth-Version")? != "2.0" {
        return Err(AuthFailure::Version);
    }
    if get("X-Api-ClientID")? != id.client_id {
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
    if id.api_signature(path, nonce, ts) != signature {
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::domain::sign_vectors::k3cloud::{QUERY, SDK_SAMPLE, SDK_SECOND, SdkCase};

    fn account(c: &SdkCase) -> Account {
        Account::new(c.app_id.into(), c.app_secret.into(), c.acct_id.into(), c.user_name.into(), c.lcid).unwrap()
    }

    /// The headers the official Python SDK sent, as literals.
    fn sdk_headers(c: &SdkCase, signature: &str) -> HeaderMap {
        let ts = c.timestamp.to_string();
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("X-Api-ClientID", c.app_id.split('_').next().unwrap()),
            ("X-Api-Auth-Version", "2.0"),
            ("x-api-timestamp", &ts),
            ("x-api-nonce", &ts),
            ("x-api-signheaders", "x-api-timestamp,x-api-nonce"),
            ("X-Api-Signature", signature),
            ("X-Kd-Appkey", c.app_id),
            ("X-Kd-Appdata", c.app_data),
            ("X-Kd-Signature", c.app_signature),
        ] {
            h.insert(name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn at(c: &SdkCase) -> DateTime<Utc> {
        DateTime::from_timestamp(c.timestamp, 0).unwrap()
    }

    #[test]
    fn the_sdks_own_headers_are_accepted() {
        for c in [&SDK_SAMPLE, &SDK_SECOND] {
            let a = account(c);
            if let Some(secret) = c.client_secret {
                assert_eq!(a.gateway_secret.expose(), secret);
            }
            let ts = c.timestamp.to_string();
            for (path, want) in c.api_signatures {
                assert_eq!(a.api_signature(path, &ts, &ts), *want, "{path}");
                assert_eq!(check(&a, 600, path, &sdk_headers(c, want), at(c)), Ok(()), "{path}");
            }
            let app_data = String::from_utf8(BASE64.decode(c.app_data).unwrap()).unwrap();
            assert_eq!(a.app_signature(&app_data), c.app_signature);
        }
    }

    #[test]
    fn tampered_sdk_headers_are_refused() {
        let c = &SDK_SAMPLE;
        let (path, sig) = c.api_signatures[0];
        let a = account(c);
        // Another path than the one signed.
        assert_eq!(check(&a, 600, QUERY, &sdk_headers(c, sig), at(c)), Err(AuthFailure::Signature));
        // Another nonce than the one signed.
        let mut h = sdk_headers(c, sig);
        h.insert("x-api-nonce", HeaderValue::from_static("8f3a"));
        assert_eq!(check(&a, 600, path, &h, at(c)), Err(AuthFailure::Signature));
        // Another app secret than the one that signed the app data.
        let other =
            Account::new(c.app_id.into(), "other".into(), c.acct_id.into(), c.user_name.into(), c.lcid).unwrap();
        assert_eq!(check(&other, 600, path, &sdk_headers(c, sig), at(c)), Err(AuthFailure::AppSignature));
        // Another app id (so another gateway secret).
        let second = account(&SDK_SECOND);
        let mut h = sdk_headers(c, sig);
        h.insert("X-Api-ClientID", HeaderValue::from_static("224622"));
        assert_eq!(check(&second, 600, path, &h, at(c)), Err(AuthFailure::Signature));
    }

    #[test]
    fn malformed_app_ids_are_refused() {
        for id in ["224622", "_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA", "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oL"] {
            let e = Account::new(id.into(), "s".into(), "a".into(), "u".into(), 2052).unwrap_err();
            assert!(e.contains(id), "{e}");
        }
        let a = account(&SDK_SAMPLE);
        assert!(!format!("{a:?}").contains(SDK_SAMPLE.app_secret), "the secret is not printed");
    }
}
