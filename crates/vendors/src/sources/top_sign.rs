//! The TOP-style request signature shared by 奇门 and 淘宝开放平台, and the app credentials
//! 奇门 and TOP sign their system parameters with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::config::Secret;
use crate::domain::time::{DATETIME, format_beijing};

/// `sign_method` values the TOP family accepts (`md5` unless configured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum SignMethod {
    /// `md5`: MD5(secret + text + secret).
    #[default]
    Md5,
    /// `hmac`: HMAC-MD5 keyed with the secret.
    HmacMd5,
    /// `hmac-sha256`: HMAC-SHA256 keyed with the secret.
    HmacSha256,
}

impl SignMethod {
    pub fn parse(s: &str) -> Option<SignMethod> {
        match s {
            "md5" => Some(SignMethod::Md5),
            "hmac" => Some(SignMethod::HmacMd5),
            "hmac-sha256" => Some(SignMethod::HmacSha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::HmacMd5 => "hmac",
            SignMethod::HmacSha256 => "hmac-sha256",
        }
    }
}

impl TryFrom<String> for SignMethod {
    type Error = String;

    fn try_from(m: String) -> Result<Self, String> {
        SignMethod::parse(&m).ok_or_else(|| format!("{m:?} is not one of md5, hmac, hmac-sha256"))
    }
}

/// Signs TOP-style: parameters sorted by key, empty values and `sign` dropped, each written
/// as `key` + `value`, then the raw body when it is not form-encoded; digest as uppercase hex.
pub fn sign(params: &BTreeMap<String, String>, body: Option<&str>, secret: &str, method: SignMethod) -> String {
    let mut text = String::with_capacity(256);
    for (k, v) in params.iter().filter(|(k, v)| k.as_str() != "sign" && !v.is_empty()) {
        text.push_str(k);
        text.push_str(v);
    }
    if let Some(b) = body {
        text.push_str(b);
    }
    let digest = match method {
        SignMethod::Md5 => {
            let mut h = Md5::new();
            h.update(secret.as_bytes());
            h.update(text.as_bytes());
            h.update(secret.as_bytes());
            h.finalize().to_vec()
        }
        SignMethod::HmacMd5 => {
            let mut m = Hmac::<Md5>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
            m.update(text.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        SignMethod::HmacSha256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
            m.update(text.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    hex::encode_upper(digest)
}

/// One app's TOP-family credentials (奇门 and TOP alike): the app key, its secret and the
/// signing method. `Debug` shows the secret as `***`.
#[derive(Debug, Clone)]
pub struct TopCredential {
    pub app_key: String,
    app_secret: Secret,
    sign_method: SignMethod,
}

impl TopCredential {
    /// The credential from a source's `app_key`, `app_secret` and `sign_method` (see
    /// `QimenSettings` and `TopSettings`).
    pub fn new(app_key: String, app_secret: Secret, sign_method: SignMethod) -> Self {
        TopCredential { app_key, app_secret, sign_method }
    }

    /// `params` (the call's own) plus the system parameters every TOP-family call carries
    /// (`method`, `app_key`, `timestamp` in Beijing time, `format=json`, `v=2.0`,
    /// `sign_method`), then `sign` over all of them.
    pub fn signed(
        &self,
        method: &str,
        mut params: BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> BTreeMap<String, String> {
        for (k, v) in [
            ("method", method.to_owned()),
            ("app_key", self.app_key.clone()),
            ("timestamp", format_beijing(now, DATETIME)),
            ("format", "json".to_owned()),
            ("v", "2.0".to_owned()),
            ("sign_method", self.sign_method.as_str().to_owned()),
        ] {
            params.insert(k.to_owned(), v);
        }
        let sig = sign(&params, None, self.app_secret.expose(), self.sign_method);
        params.insert("sign".to_owned(), sig);
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::sign_vectors::{params, top::*};

    fn with_method(pairs: &[(&str, &str)], method: &str) -> BTreeMap<String, String> {
        let mut p = params(pairs);
        p.insert("sign_method".into(), method.into());
        p
    }

    #[test]
    fn the_documented_example_and_the_sdk_vectors_match() {
        for (method, want) in DOC_SIGNS {
            // Over the page's parameters as they stand (their `sign_method` stays `md5`).
            let m = SignMethod::parse(method).unwrap();
            assert_eq!(sign(&params(DOC), None, SECRET, m), *want, "{method}");
        }
        for (method, want) in BACKFLOW_SIGNS {
            let m = SignMethod::parse(method).unwrap();
            assert_eq!(sign(&with_method(BACKFLOW, method), None, SECRET, m), *want, "{method}");
        }
    }

    #[test]
    fn a_raw_body_is_appended_and_sign_itself_is_ignored() {
        let mut p = params(QIMEN_WITH_BODY);
        assert_eq!(sign(&p, Some(QIMEN_BODY), SECRET, SignMethod::Md5), QIMEN_WITH_BODY_SIGN);
        p.insert("sign".into(), "X".into());
        assert_eq!(sign(&p, Some(QIMEN_BODY), SECRET, SignMethod::Md5), QIMEN_WITH_BODY_SIGN);
    }

    /// The credential keys of a TOP-family source (`QimenSettings` and `TopSettings` add theirs).
    #[derive(serde::Deserialize)]
    struct Keys {
        app_key: String,
        app_secret: Secret,
        #[serde(default)]
        sign_method: SignMethod,
    }

    fn from_settings(pairs: &[(&str, &str)]) -> Result<TopCredential, crate::config::ConfigError> {
        let s = crate::config::KindSettings::new(
            "sources.t",
            pairs.iter().map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string()))).collect(),
        );
        let k: Keys = s.read()?;
        Ok(TopCredential::new(k.app_key, k.app_secret, k.sign_method))
    }

    fn credential(method: &str) -> TopCredential {
        from_settings(&[("app_key", "12345678"), ("app_secret", SECRET), ("sign_method", method)]).unwrap()
    }

    #[test]
    fn credential_signed_system_parameters_match_the_sdk_vectors() {
        // 2024-01-01 08:00:00 in Beijing, the vectors' timestamp.
        let now = "2024-01-01T00:00:00Z".parse().unwrap();
        for (method, want) in BACKFLOW_SIGNS {
            let mut expected = with_method(BACKFLOW, method);
            let own = ["session", "simplify", "finance_order_detail_request"]
                .iter()
                .map(|k| (k.to_string(), expected[*k].clone()))
                .collect();
            expected.insert("sign".into(), want.to_string());
            assert_eq!(credential(method).signed("alibaba.wdk.finance.order.backflow", own, now), expected, "{method}");
        }
    }

    #[test]
    fn a_credential_never_shows_its_secret_and_names_a_bad_sign_method() {
        let debug = format!("{:?}", credential("hmac"));
        assert!(!debug.contains("helloworld") && debug.contains("12345678"), "{debug}");
        let e = from_settings(&[("app_key", "k"), ("app_secret", "s"), ("sign_method", "sha1")]).unwrap_err();
        assert!(e.to_string().contains("sources.t.sign_method") && e.to_string().contains("sha1"), "{e}");
    }

    #[test]
    fn sign_methods_round_trip_their_names() {
        for m in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
            assert_eq!(SignMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(SignMethod::parse("sha1"), None);
    }
}
