//! The signed headers of K3Cloud's 第三方系统登录授权 (`X-Api-Auth-Version: 2.0`), built as
//! Kingdee's official WebAPI SDKs build them (the Python SDK `kingdee-cdp-webapi-sdk` 8.2.0,
//! `k3cloud_webapi_sdk/core/webapi_client.py::BuildHeader`; the Java SDK's `ApiRequester`
//! agrees). Every request is signed on its own; no login call is needed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The key the SDKs XOR an app id's secret half with (`encode_util.py` builds it from
/// `"0054s397" "p6234378" "o09pn7q3" "r5qropr7"` through ROT13; Java has it as `seckey`).
const APP_ID_XOR_KEY: &[u8; 32] = b"0054f397c6234378b09ca7d3e5debce7";

/// Why a K3Cloud credential cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("app id must be `<client id>_<32-character key>` as 第三方系统登录授权 issues it")]
    BadAppId,
}

/// A 第三方系统登录授权 credential: the app (id and secret) and the account it acts as.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `<client id>_<base64 key>`, e.g. `224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oLA`.
    pub app_id: String,
    pub app_secret: Secret,
    /// The 账套 (data centre) id.
    pub acct_id: String,
    pub user_name: String,
    /// Language: 2052 is simplified Chinese.
    pub lcid: u32,
    /// The organisation number when several organisations are enabled (the SDK's default 0).
    pub org_num: String,
}

impl Identity {
    /// Checks the app id's form once, so a typo is a config error rather than every request
    /// failing. (The Python SDK would sign with an empty key; Java with the raw text.)
    pub fn check(&self) -> Result<(), SignError> {
        self.client().map(|_| ())
    }

    /// The client id and the gateway secret decoded from the app id's second half.
    fn client(&self) -> Result<(&str, String), SignError> {
        let (id, key) = self.app_id.split_once('_').ok_or(SignError::BadAppId)?;
        if id.is_empty() || key.contains('_') || key.len() != 32 {
            return Err(SignError::BadAppId);
        }
        Ok((id, decode_app_secret(key).ok_or(SignError::BadAppId)?))
    }

    /// The headers of one request to `path` (the URL's path, e.g.
    /// `/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave.common.kdsvc`)
    /// at `timestamp` (Unix seconds, also used as the nonce, as the Python SDK does).
    pub fn headers(&self, path: &str, timestamp: i64) -> Result<Vec<(&'static str, String)>, SignError> {
        let (client_id, _) = self.client()?;
        let ts = timestamp.to_string();
        let nonce = ts.clone();
        let signature = self.api_signature(path, &nonce, &ts)?;
        let app_data = format!("{},{},{},{}", self.acct_id, self.user_name, self.lcid, self.org_num);
        Ok(vec![
            ("X-Api-ClientID", client_id.to_owned()),
            ("X-Api-Auth-Version", "2.0".to_owned()),
            ("x-api-timestamp", ts),
            ("x-api-nonce", nonce),
            ("x-api-signheaders", "x-api-timestamp,x-api-nonce".to_owned()),
            ("X-Api-Signature", signature),
            ("X-Kd-Appkey", self.app_id.clone()),
            ("X-Kd-Appdata", BASE64.encode(app_data.as_bytes())),
            ("X-Kd-Signature", self.app_signature(&app_data)),
        ])
    }

    /// `X-Api-Signature` over the nonce and timestamp as sent: the Python SDK reuses the
    /// timestamp as the nonce, but a server (the simulator) must check what the client chose.
    pub fn api_signature(&self, path: &str, nonce: &str, timestamp: &str) -> Result<String, SignError> {
        let (_, client_secret) = self.client()?;
        let to_sign = format!("POST\n{}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n", encode_path(path));
        Ok(kd_hmac(&to_sign, &client_secret))
    }

    /// `X-Kd-Signature` over the app data text (`acct,user,lcid,org`, before base64).
    pub fn app_signature(&self, app_data: &str) -> String {
        kd_hmac(&format!("{}{app_data}", self.app_id), self.app_secret.expose())
    }
}

/// The app id's key half, base64-decoded, XORed with the SDKs' fixed key, base64 again.
pub fn decode_app_secret(key: &str) -> Option<String> {
    let raw = BASE64.decode(key).ok()?;
    let xored: Vec<u8> = raw.iter().zip(APP_ID_XOR_KEY.iter()).map(|(b, k)| b ^ k).collect();
    Some(BASE64.encode(xored))
}

/// Base64 of the lowercase hex of HMAC-SHA256: the SDKs sign the hex text, not the digest.
pub fn kd_hmac(message: &str, key: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac takes any key length");
    mac.update(message.as_bytes());
    BASE64.encode(hex::encode(mac.finalize().into_bytes()))
}

/// Python's `quote(path, safe='/')` then `/` → `%2F`: everything but `A-Za-z0-9_.-~`
/// percent-encoded with uppercase hex.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3 / 2);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sign_vectors::k3cloud::{BATCH_SAVE, SDK_SAMPLE, SDK_SECOND, SdkCase};

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> &'a str {
        &h.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no {name}")).1
    }

    fn identity(c: &SdkCase) -> Identity {
        Identity {
            app_id: c.app_id.into(),
            app_secret: Secret::new(c.app_secret),
            acct_id: c.acct_id.into(),
            user_name: c.user_name.into(),
            lcid: c.lcid,
            org_num: c.org_num.into(),
        }
    }

    /// The headers the official Python SDK produced for the same credential, time and path.
    #[test]
    fn headers_match_the_official_python_sdk() {
        for c in [&SDK_SAMPLE, &SDK_SECOND] {
            let id = identity(c);
            let ts = c.timestamp.to_string();
            for (path, want) in c.api_signatures {
                let h = id.headers(path, c.timestamp).unwrap();
                assert_eq!(header(&h, "X-Api-ClientID"), c.app_id.split('_').next().unwrap());
                assert_eq!(header(&h, "X-Api-Auth-Version"), "2.0");
                assert_eq!(header(&h, "x-api-timestamp"), ts);
                assert_eq!(header(&h, "x-api-nonce"), ts);
                assert_eq!(header(&h, "x-api-signheaders"), "x-api-timestamp,x-api-nonce");
                assert_eq!(header(&h, "X-Api-Signature"), *want, "{path}: the signature covers the path");
                assert_eq!(header(&h, "X-Kd-Appkey"), c.app_id);
                assert_eq!(header(&h, "X-Kd-Appdata"), c.app_data);
                assert_eq!(header(&h, "X-Kd-Signature"), c.app_signature, "the app signature does not");
            }
        }
    }

    #[test]
    fn the_api_signature_covers_the_nonce_as_sent() {
        let id = identity(&SDK_SAMPLE);
        // The SDK's own vector (its nonce is its timestamp), then another nonce.
        let ts = SDK_SAMPLE.timestamp.to_string();
        let sdk = id.api_signature(BATCH_SAVE, &ts, &ts).unwrap();
        assert_eq!(sdk, SDK_SAMPLE.api_signatures[0].1);
        assert_ne!(id.api_signature(BATCH_SAVE, "8f3a", &ts).unwrap(), sdk);
        assert_eq!(id.app_signature("5db25ac8d2b819,webapi,2052,100"), SDK_SAMPLE.app_signature);
    }

    #[test]
    fn the_app_id_key_decodes_as_the_sdk_decodes_it() {
        // The official sample's app id decodes to a 32-hex-digit gateway secret.
        let key = SDK_SAMPLE.app_id.split_once('_').unwrap().1;
        assert_eq!(decode_app_secret(key).as_deref(), SDK_SAMPLE.client_secret);
        assert_eq!(encode_path(BATCH_SAVE), BATCH_SAVE.replace('/', "%2F"));
        assert_eq!(encode_path("/a b*~"), "%2Fa%20b%2A~");
    }

    #[test]
    fn an_app_id_without_its_key_half_is_refused() {
        let mut id = Identity {
            app_id: "224622_6+eC0bxIzoA/W/1rVZ3A7a8MTr0r6oL".into(), // 31 characters after `_`
            app_secret: Secret::new("s"),
            acct_id: "a".into(),
            user_name: "u".into(),
            lcid: 2052,
            org_num: "0".into(),
        };
        assert_eq!(id.check(), Err(SignError::BadAppId));
        id.app_id = "224622".into();
        assert_eq!(id.check(), Err(SignError::BadAppId));
        assert!(!format!("{id:?}").contains("\"s\""), "the secret is not printed");
    }
}
