//! The simulators' own signature checks: a second, plain implementation of each vendor's
//! signing rule, written from the vendor's documentation and sharing no code with the clients
//! in `sources` (only the hash crates). A client and its simulator agreeing therefore means
//! two implementations agree, and both are pinned to the vectors in `crate::domain::sign_vectors`.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::{Map, Value};
use sha2::Sha256;

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// 旺店通 openapi2 (the "签名算法" of the seed's `fa_alipay_account_check_query.php` page):
/// parameters but `sign` by key; each `LL-key:VVVV-value` with lengths in characters; joined
/// by `;`; the appsecret appended; md5 in lowercase hex.
pub fn wdt_sign(params: &BTreeMap<String, String>, appsecret: &str) -> String {
    let mut keys: Vec<&str> = params.keys().map(String::as_str).filter(|k| *k != "sign").collect();
    keys.sort_unstable();
    let fields: Vec<String> = keys
        .iter()
        .map(|k| {
            let v = &params[*k];
            format!("{:02}-{k}:{:04}-{v}", k.chars().count(), v.chars().count())
        })
        .collect();
    md5_hex(&(fields.join(";") + appsecret))
}

/// TOP and 奇门 ("API调用方法详解"): parameters but `sign` and those with empty values, by key,
/// each `key` + `value`, then the raw body if any. `md5` (or no `sign_method`):
/// MD5(secret + text + secret); `hmac`: HMAC-MD5; `hmac-sha256`: HMAC-SHA256, both keyed
/// with the secret; uppercase hex. `None` for a `sign_method` TOP does not know.
pub fn top_sign(params: &BTreeMap<String, String>, body: Option<&str>, secret: &str, method: &str) -> Option<String> {
    let mut pairs: Vec<(&String, &String)> = params.iter().filter(|(k, v)| *k != "sign" && !v.is_empty()).collect();
    pairs.sort_unstable();
    let mut text: String = pairs.into_iter().map(|(k, v)| format!("{k}{v}")).collect();
    text += body.unwrap_or("");
    let digest = match method {
        "" | "md5" => Md5::digest(format!("{secret}{text}{secret}").as_bytes()).to_vec(),
        "hmac" => {
            let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "hmac-sha256" => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => return None,
    };
    Some(hex::encode_upper(digest))
}

/// 财务账单 API (the OMS OpenAPI's "签名算法"): `upper(md5(upper(md5(assemble(params))) + token))`,
/// where `assemble` writes each parameter but `sign`, by key, as key then value; a nested
/// object or list is assembled the same way (a list's keys are its indexes, ordered as text);
/// `null` is left out; booleans are `1`/`0`.
pub fn finance_sign(body: &Map<String, Value>, token: &str) -> String {
    let top: Map<String, Value> =
        body.iter().filter(|(k, _)| *k != "sign").map(|(k, v)| (k.clone(), v.clone())).collect();
    let assembled = php_assemble(&Value::Object(top)).unwrap_or_default();
    let first = md5_hex(&assembled).to_uppercase();
    md5_hex(&(first + token)).to_uppercase()
}

/// PHP's view of a decoded JSON value as `assemble` writes it; `None` for `null`.
fn php_assemble(v: &Value) -> Option<String> {
    let entries: Vec<(String, &Value)> = match v {
        Value::Null => return None,
        Value::Bool(true) => return Some("1".into()),
        Value::Bool(false) => return Some("0".into()),
        Value::Number(n) => return Some(n.to_string()),
        Value::String(s) => return Some(s.clone()),
        Value::Array(items) => items.iter().enumerate().map(|(i, x)| (i.to_string(), x)).collect(),
        Value::Object(m) => m.iter().map(|(k, x)| (k.clone(), x)).collect(),
    };
    let sorted: BTreeMap<String, &Value> = entries.into_iter().collect();
    Some(sorted.into_iter().filter_map(|(k, x)| php_assemble(x).map(|s| k + &s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sign_vectors::{finance, params, top, wdt};

    #[test]
    fn wdt_accepts_the_sdk_vectors_and_notices_tampering() {
        assert_eq!(wdt_sign(&params(wdt::SDK_ACCOUNT_CHECK), wdt::SECRET), wdt::SDK_ACCOUNT_CHECK_SIGN);
        let mut p = params(wdt::SDK_CHINESE);
        assert_eq!(wdt_sign(&p, wdt::SECRET), wdt::SDK_CHINESE_SIGN);
        p.insert("sign".into(), "x".into());
        assert_eq!(wdt_sign(&p, wdt::SECRET), wdt::SDK_CHINESE_SIGN, "sign is not signed");
        p.insert("shop_no".into(), "旺店-02".into());
        assert_ne!(wdt_sign(&p, wdt::SECRET), wdt::SDK_CHINESE_SIGN);
        assert_ne!(wdt_sign(&params(wdt::SDK_ACCOUNT_CHECK), "secret124"), wdt::SDK_ACCOUNT_CHECK_SIGN);
    }

    #[test]
    fn top_accepts_the_documented_and_sdk_vectors_and_notices_tampering() {
        for (method, want) in top::DOC_SIGNS {
            assert_eq!(top_sign(&params(top::DOC), None, top::SECRET, method).as_deref(), Some(*want), "{method}");
        }
        for (method, want) in top::BACKFLOW_SIGNS {
            let mut p = params(top::BACKFLOW);
            p.insert("sign_method".into(), method.to_string());
            assert_eq!(top_sign(&p, None, top::SECRET, method).as_deref(), Some(*want), "{method}");
            p.insert("session".into(), "sess-abd".into());
            assert_ne!(top_sign(&p, None, top::SECRET, method).as_deref(), Some(*want), "{method}");
        }
        let p = params(top::QIMEN_WITH_BODY);
        let with_body = top_sign(&p, Some(top::QIMEN_BODY), top::SECRET, "md5");
        assert_eq!(with_body.as_deref(), Some(top::QIMEN_WITH_BODY_SIGN));
        assert_ne!(top_sign(&p, Some("<request/>"), top::SECRET, "md5").as_deref(), Some(top::QIMEN_WITH_BODY_SIGN));
        assert_ne!(top_sign(&p, Some(top::QIMEN_BODY), "hello", "md5").as_deref(), Some(top::QIMEN_WITH_BODY_SIGN));
        assert_eq!(top_sign(&p, None, top::SECRET, "sha1"), None);
    }

    #[test]
    fn finance_accepts_the_vendor_vectors_and_notices_tampering() {
        use finance::*;
        assert_eq!(finance_sign(&text_body(VENDOR_TRANSACTIONS), VENDOR_TOKEN), VENDOR_TRANSACTIONS_SIGN);
        assert_eq!(finance_sign(&text_body(VENDOR_BALANCES), VENDOR_TOKEN), VENDOR_BALANCES_SIGN);
        assert_eq!(finance_sign(&object(VENDOR_NESTED), VENDOR_TOKEN), VENDOR_NESTED_SIGN);
        assert_eq!(finance_sign(&object(VENDOR_LONG_LIST), VENDOR_TOKEN), VENDOR_LONG_LIST_SIGN);
        let mut b = text_body(VENDOR_TRANSACTIONS);
        b.insert("sign".into(), Value::from(VENDOR_TRANSACTIONS_SIGN));
        assert_eq!(finance_sign(&b, VENDOR_TOKEN), VENDOR_TRANSACTIONS_SIGN, "sign is not signed");
        b.insert("page_no".into(), Value::from(2));
        assert_ne!(finance_sign(&b, VENDOR_TOKEN), VENDOR_TRANSACTIONS_SIGN);
        // An empty value is signed (only null is left out), so dropping it is noticed.
        let mut b = text_body(VENDOR_BALANCES);
        b.remove("account_type");
        assert_ne!(finance_sign(&b, VENDOR_TOKEN), VENDOR_BALANCES_SIGN);
        assert_ne!(finance_sign(&text_body(VENDOR_BALANCES), "other"), VENDOR_BALANCES_SIGN);
    }
}
