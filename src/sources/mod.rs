//! Vendor API clients behind one trait: the worker asks for a page of a window; a vendor module signs, parses and classifies.

pub mod envelope;
pub mod finance;
pub mod http;
pub mod qimen;
pub mod top;
pub mod top_sign;
pub mod wdt;

use std::sync::Arc;

use crate::config::{ConfigError, SourceConfig};
pub use crate::domain::source::{ApiSpec, BoxFuture, Mode, Page, PageRequest, Source, SourceError};

/// Every API tidemark knows, by config `kind`.
pub static APIS: &[&ApiSpec] =
    &[&wdt::ACCOUNT_CHECK, &qimen::STOCKIN_REFUND, &top::FINANCE_ORDER, &finance::TRANSACTIONS, &finance::BALANCES];

pub fn spec_of(kind: &str) -> Option<&'static ApiSpec> {
    APIS.iter().copied().find(|s| s.kind == kind)
}

/// Builds the client for a configured source.
pub fn build(cfg: &SourceConfig, http: reqwest::Client) -> Result<Arc<dyn Source>, ConfigError> {
    let spec = spec_of(&cfg.kind).ok_or_else(|| {
        ConfigError::invalid(
            format!("sources.{}.kind", cfg.id),
            format!(
                "unknown source kind {:?} (known: {})",
                cfg.kind,
                APIS.iter().map(|s| s.kind).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    match spec.kind.split('.').next() {
        Some("wdt") => Ok(Arc::new(wdt::WdtSource::new(spec, cfg, http)?)),
        Some("qimen") => Ok(Arc::new(qimen::QimenSource::new(spec, cfg, http)?)),
        Some("top") => Ok(Arc::new(top::TopSource::new(spec, cfg, http)?)),
        Some("finance") => Ok(Arc::new(finance::FinanceSource::new(spec, cfg, http)?)),
        _ => unreachable!("every spec in APIS has a vendor module"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    #[test]
    fn every_api_schema_compiles_and_keys_on_a_required_string() {
        for spec in APIS {
            crate::avro::RecordCodec::from_avsc(spec.schema).unwrap_or_else(|e| panic!("{}: {e}", spec.kind));
            let Schema::Record(r) = Schema::parse_str(spec.schema).unwrap() else { panic!("{}", spec.kind) };
            let key = r.fields.iter().find(|f| f.name == spec.key_field).unwrap_or_else(|| panic!("{}", spec.kind));
            assert_eq!(key.schema, Schema::String, "{}: the key field is a required string", spec.kind);
            assert!(spec.default_page_size <= spec.max_page_size, "{}", spec.kind);
            assert!(spec.reserved_params.contains(&"sign"), "{}: sign is always set by tidemark", spec.kind);
        }
    }

    #[test]
    fn kinds_are_unique_and_start_with_a_vendor_module() {
        let mut kinds: Vec<_> = APIS.iter().map(|s| s.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), APIS.len());
        assert!(kinds.iter().all(|k| ["wdt.", "qimen.", "top.", "finance."].iter().any(|v| k.starts_with(v))));
    }
}
