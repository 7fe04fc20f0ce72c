//! 金蝶云星空 (K3Cloud) WebAPI as a writer's target: the signed headers of
//! 第三方系统登录授权, `BatchSave` / `ExecuteBillQuery`, and refund stock-ins as 销售退货单.

pub mod api;
pub mod bill;
pub mod sign;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::TargetConfig;
use crate::config::{ConfigError, Secret};
use crate::domain::{BoxFuture, Document, Held, RowOutcome, SourceError, Target};
use api::{AuthMode, K3Client, SaveFlags};
use bill::{FORM_ID, ReturnStockMapping, TaxRate};
use sign::Identity;

/// The writer kind: refund stock-ins → 销售退货单 via `BatchSave`.
pub const KIND: &str = "k3cloud.sal_returnstock";

/// The most rows a comparison asks one `ExecuteBillQuery` for (an assumed server limit,
/// docs/vendors.md). A comparison whose lines reach it is refused, not cut short.
const MAX_ROWS: usize = 10_000;

/// Refund stock-ins saved as SAL_RETURNSTOCK bills in one K3Cloud account.
pub struct ReturnStockTarget {
    client: K3Client,
    mapping: ReturnStockMapping,
    flags: SaveFlags,
}

/// `[writers.<id>]` keys of the `k3cloud.*` kinds: the 第三方系统登录授权 credential, the bill's
/// organisations and type, and the tables mapping 旺店通 numbers to K3Cloud's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3CloudSettings {
    pub app_id: String,
    pub app_secret: Secret,
    pub acct_id: String,
    pub user_name: String,
    /// Language: 2052 is simplified Chinese.
    #[serde(default = "default_lcid")]
    pub lcid: u32,
    #[serde(default = "default_org_num")]
    pub org_num: String,
    pub stock_org: String,
    /// `stock_org` unless set.
    pub sale_org: Option<String>,
    /// `stock_org` unless set.
    pub settle_org: Option<String>,
    #[serde(default = "default_bill_type")]
    pub bill_type: String,
    pub default_customer: Option<String>,
    #[serde(default, deserialize_with = "tax_rate")]
    pub tax_rate: TaxRate,
    #[serde(default)]
    pub is_auto_submit_and_audit: bool,
    #[serde(default = "yes")]
    pub is_verify_base_data_field: bool,
    #[serde(default)]
    pub warehouses: BTreeMap<String, String>,
    #[serde(default)]
    pub customers: BTreeMap<String, String>,
    #[serde(default)]
    pub materials: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "auth_mode")]
    pub auth: AuthMode,
}

fn default_lcid() -> u32 {
    2052
}
/// The SDK's default: one organisation.
fn default_org_num() -> String {
    "0".into()
}
fn default_bill_type() -> String {
    "XSTHD01_SYS".into()
}
fn yes() -> bool {
    true
}

fn tax_rate<'de, D: Deserializer<'de>>(d: D) -> Result<TaxRate, D::Error> {
    match String::deserialize(d)?.as_str() {
        "fraction" => Ok(TaxRate::Fraction),
        "percent" => Ok(TaxRate::Percent),
        other => {
            Err(serde::de::Error::custom(format!("must be \"fraction\" (0.13) or \"percent\" (13), got {other:?}")))
        }
    }
}

fn auth_mode<'de, D: Deserializer<'de>>(d: D) -> Result<AuthMode, D::Error> {
    match String::deserialize(d)?.as_str() {
        "signed" => Ok(AuthMode::Signed),
        "session" => Ok(AuthMode::Session),
        other => Err(serde::de::Error::custom(format!(
            "must be \"signed\" (第三方系统登录授权 headers) or \"session\" (LoginByAppSecret), got {other:?}"
        ))),
    }
}

impl ReturnStockTarget {
    pub fn from_config(cfg: &TargetConfig<'_>, http: reqwest::Client) -> Result<Arc<dyn Target>, ConfigError> {
        let s: K3CloudSettings = cfg.settings.read()?;
        let identity = Identity {
            app_id: s.app_id,
            app_secret: s.app_secret,
            acct_id: s.acct_id,
            user_name: s.user_name,
            lcid: s.lcid,
            org_num: s.org_num,
        };
        let mapping = ReturnStockMapping {
            sale_org: s.sale_org.unwrap_or_else(|| s.stock_org.clone()),
            settle_org: s.settle_org.unwrap_or_else(|| s.stock_org.clone()),
            bill_type: s.bill_type,
            default_customer: s.default_customer,
            tax_rate: s.tax_rate,
            warehouses: s.warehouses,
            customers: s.customers,
            materials: s.materials,
            stock_org: s.stock_org,
        };
        let flags = SaveFlags {
            is_auto_submit_and_audit: s.is_auto_submit_and_audit,
            is_verify_base_data_field: s.is_verify_base_data_field,
        };
        let mode = s.auth;
        let client = K3Client::new(cfg.base_url, identity, mode, cfg.request_timeout, http)
            .map_err(|e| ConfigError::invalid(format!("writers.{}.app_id", cfg.id), e.to_string()))?;
        Ok(Arc::new(ReturnStockTarget { client, mapping, flags }))
    }
}

impl Target for ReturnStockTarget {
    fn input_kind(&self) -> &'static str {
        crate::sources::qimen::STOCKIN_REFUND.kind
    }

    fn document(&self, record: &Value) -> Result<Document, String> {
        self.mapping.bill(record).map(|(key, body)| Document { key, body })
    }

    fn existing<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<HashSet<String>, SourceError>> {
        Box::pin(self.client.existing(FORM_ID, keys))
    }

    fn compare<'a>(&'a self, docs: &'a [Document]) -> BoxFuture<'a, Result<Vec<Held>, SourceError>> {
        Box::pin(async move {
            if docs.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = docs.iter().map(|d| d.key.clone()).collect();
            let rows = self.client.bill_rows(FORM_ID, &bill::compare_keys(), &keys, MAX_ROWS).await?;
            if rows.len() >= MAX_ROWS {
                return Err(SourceError::Fatal {
                    code: "too_many_rows".into(),
                    reason: format!("{} bills have {MAX_ROWS} lines or more: compare fewer at a time", keys.len()),
                });
            }
            let mut by_no: BTreeMap<String, Vec<&[Value]>> = BTreeMap::new();
            for r in &rows {
                by_no.entry(crate::sources::envelope::as_text(r.first())).or_default().push(r.as_slice());
            }
            Ok(docs
                .iter()
                .map(|d| match by_no.get(&d.key) {
                    None => Held::Missing,
                    Some(rows) => match bill::differences(&d.body, rows) {
                        diffs if diffs.is_empty() => Held::Same,
                        diffs => Held::Different(diffs),
                    },
                })
                .collect())
        })
    }

    fn save<'a>(&'a self, docs: &'a [Value]) -> BoxFuture<'a, Result<Vec<RowOutcome>, SourceError>> {
        Box::pin(async move {
            let outcomes = self.client.batch_save(FORM_ID, docs, self.flags).await?;
            // "Already exists" on the bill number: an earlier save (one that timed out on our
            // side) landed after all. The next existence query settles it; it is no rejection.
            Ok(outcomes
                .into_iter()
                .map(|o| match o {
                    RowOutcome::Rejected { field, message } if field == "FBillNo" && message.contains("已经存在") => {
                        RowOutcome::Unknown
                    }
                    other => other,
                })
                .collect())
        })
    }
}
