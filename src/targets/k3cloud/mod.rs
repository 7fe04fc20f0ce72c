//! 金蝶云星空 (K3Cloud) WebAPI as a writer's target: the signed headers of
//! 第三方系统登录授权, `BatchSave` / `ExecuteBillQuery`, and refund stock-ins as 销售退货单.

pub mod api;
pub mod bill;
pub mod sign;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{ConfigError, WriterConfig};
use crate::domain::{BoxFuture, Document, RowOutcome, SourceError, Target};
use api::{AuthMode, K3Client, SaveFlags};
use bill::{FORM_ID, ReturnStockMapping, TaxRate};
use sign::Identity;

/// The writer kind: refund stock-ins → 销售退货单 via `BatchSave`.
pub const KIND: &str = "k3cloud.sal_returnstock";

/// Refund stock-ins saved as SAL_RETURNSTOCK bills in one K3Cloud account.
pub struct ReturnStockTarget {
    client: K3Client,
    mapping: ReturnStockMapping,
    flags: SaveFlags,
}

const KEYS: &[&str] = &[
    "app_id",
    "app_secret",
    "acct_id",
    "user_name",
    "lcid",
    "org_num",
    "stock_org",
    "sale_org",
    "settle_org",
    "bill_type",
    "default_customer",
    "tax_rate",
    "is_auto_submit_and_audit",
    "is_verify_base_data_field",
    "warehouses",
    "customers",
    "materials",
    "auth",
];

impl ReturnStockTarget {
    pub fn from_config(cfg: &WriterConfig, http: reqwest::Client) -> Result<Arc<dyn Target>, ConfigError> {
        let s = &cfg.settings;
        s.deny_unknown(KEYS)?;
        let identity = Identity {
            app_id: s.string("app_id")?,
            app_secret: s.secret("app_secret")?,
            acct_id: s.string("acct_id")?,
            user_name: s.string("user_name")?,
            lcid: s.optional_u32("lcid")?.unwrap_or(2052),
            org_num: s.optional_string("org_num")?.unwrap_or_else(|| "0".into()),
        };
        let stock_org = s.string("stock_org")?;
        let tax_rate = match s.optional_string("tax_rate")?.as_deref() {
            None | Some("fraction") => TaxRate::Fraction,
            Some("percent") => TaxRate::Percent,
            Some(other) => {
                return Err(ConfigError::invalid(
                    format!("writers.{}.tax_rate", cfg.id),
                    format!("must be \"fraction\" (0.13) or \"percent\" (13), got {other:?}"),
                ));
            }
        };
        let mapping = ReturnStockMapping {
            sale_org: s.optional_string("sale_org")?.unwrap_or_else(|| stock_org.clone()),
            settle_org: s.optional_string("settle_org")?.unwrap_or_else(|| stock_org.clone()),
            bill_type: s.optional_string("bill_type")?.unwrap_or_else(|| "XSTHD01_SYS".into()),
            default_customer: s.optional_string("default_customer")?,
            tax_rate,
            warehouses: s.table("warehouses")?,
            customers: s.table("customers")?,
            materials: s.table("materials")?,
            stock_org,
        };
        let flags = SaveFlags {
            is_auto_submit_and_audit: s.optional_bool("is_auto_submit_and_audit")?.unwrap_or(false),
            is_verify_base_data_field: s.optional_bool("is_verify_base_data_field")?.unwrap_or(true),
        };
        let mode = match s.optional_string("auth")?.as_deref() {
            None | Some("signed") => AuthMode::Signed,
            Some("session") => AuthMode::Session,
            Some(other) => {
                return Err(ConfigError::invalid(
                    format!("writers.{}.auth", cfg.id),
                    format!(
                        "must be \"signed\" (第三方系统登录授权 headers) or \"session\" (LoginByAppSecret), got {other:?}"
                    ),
                ));
            }
        };
        let client = K3Client::new(&cfg.base_url, identity, mode, cfg.request_timeout, http)
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
