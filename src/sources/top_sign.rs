//! The TOP-style request signature shared by 奇门 and 淘宝开放平台, and the app credentials
//! 奇门 and TOP sign their system parameters with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::config::{ConfigError, Secret, SourceSettings};
use crate::domain::time::{DATETIME, format_beijing};

/// `sign_method` values the TOP family accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    /// `md5`: MD5(secret + text + secret).
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
    /// Reads `app_key`, `app_secret` and `sign_method` (default `md5`) from a source's settings.
    pub fn from_settings(s: &SourceSettings, source_id: &str) -> Result<Self, ConfigError> {
        let app_key = s.string("app_key")?;
        let app_secret = s.secret("app_secret")?;
        let sign_method = match s.optional_string("sign_method")? {
            None => SignMethod::Md5,
            Some(m) => SignMethod::parse(&m).ok_or_else(|| {
                ConfigError::invalid(
                    format!("sources.{source_id}.sign_method"),
                    format!("{m:?} is not one of md5, hmac, hmac-sha256"),
                )
            })?,
        };
        Ok(TopCredential { app_key, app_secret, sign_method })
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

    // Vectors computed independently (Python hashlib/hmac) from the TOP SDK's algorithm.
    fn top_params(method: &str) -> BTreeMap<String, String> {
        [
            ("method", "alibaba.wdk.finance.order.backflow"),
            ("app_key", "12345678"),
            ("session", "sess-abc"),
            ("timestamp", "2024-01-01 08:00:00"),
            ("v", "2.0"),
            ("sign_method", method),
            ("format", "json"),
            ("simplify", ""),
            (
                "finance_order_detail_request",
                r#"{"current_page":1,"page_size":100,"start_time":"2019-01-11 00:00:01","end_time":"2019-01-11 23:59:00"}"#,
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn md5_hmac_and_hmac_sha256_match_independent_vectors() {
        assert_eq!(sign(&top_params("md5"), None, "helloworld", SignMethod::Md5), "9C3FB30F3818B98448E1310CA3E183D7");
        assert_eq!(
            sign(&top_params("hmac"), None, "helloworld", SignMethod::HmacMd5),
            "15B430DF5A06758D052A2D538B9BF3BD"
        );
        assert_eq!(
            sign(&top_params("hmac-sha256"), None, "helloworld", SignMethod::HmacSha256),
            "940218B1F8C54662DB0E1919817238610A3CE2D1D18F3F62F85333C0A52C0E86"
        );
    }

    #[test]
    fn a_raw_body_is_appended_and_sign_itself_is_ignored() {
        let mut p: BTreeMap<String, String> = [
            ("method", "wdt.stockin.order.query.refund"),
            ("app_key", "qm-key"),
            ("target_app_key", "wdt-target"),
            ("sid", "测试卖家"),
            ("timestamp", "2024-01-01 08:00:00"),
            ("format", "xml"),
            ("v", "2.0"),
            ("sign_method", "md5"),
            ("customerId", "c1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let body = "<request><shop_no>旺店-01</shop_no></request>";
        assert_eq!(sign(&p, Some(body), "helloworld", SignMethod::Md5), "E7C6C68EA929443002C9BA9125F75B43");
        p.insert("sign".into(), "X".into());
        assert_eq!(sign(&p, Some(body), "helloworld", SignMethod::Md5), "E7C6C68EA929443002C9BA9125F75B43");
    }

    fn settings(pairs: &[(&str, &str)]) -> SourceSettings {
        SourceSettings::new(
            "sources.t",
            pairs.iter().map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string()))).collect(),
        )
    }

    fn credential(method: &str) -> TopCredential {
        let s = settings(&[("app_key", "12345678"), ("app_secret", "helloworld"), ("sign_method", method)]);
        TopCredential::from_settings(&s, "t").unwrap()
    }

    #[test]
    fn credential_signed_system_parameters_match_the_independent_vectors() {
        // 2024-01-01 08:00:00 in Beijing, the vectors' timestamp.
        let now = "2024-01-01T00:00:00Z".parse().unwrap();
        for (method, want) in [
            ("md5", "9C3FB30F3818B98448E1310CA3E183D7"),
            ("hmac", "15B430DF5A06758D052A2D538B9BF3BD"),
            ("hmac-sha256", "940218B1F8C54662DB0E1919817238610A3CE2D1D18F3F62F85333C0A52C0E86"),
        ] {
            let mut expected = top_params(method);
            let own = ["session", "simplify", "finance_order_detail_request"]
                .iter()
                .map(|k| (k.to_string(), expected[*k].clone()))
                .collect();
            expected.insert("sign".into(), want.into());
            assert_eq!(credential(method).signed("alibaba.wdk.finance.order.backflow", own, now), expected, "{method}");
        }
    }

    #[test]
    fn a_credential_never_shows_its_secret_and_names_a_bad_sign_method() {
        let debug = format!("{:?}", credential("hmac"));
        assert!(!debug.contains("helloworld") && debug.contains("12345678"), "{debug}");
        let s = settings(&[("app_key", "k"), ("app_secret", "s"), ("sign_method", "sha1")]);
        let e = TopCredential::from_settings(&s, "t").unwrap_err();
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
