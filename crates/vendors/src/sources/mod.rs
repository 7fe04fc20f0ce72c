//! Vendor API clients behind one trait: the worker asks for a page of a window; a vendor module signs, parses and classifies.
//!
//! # Adding a vendor API
//!
//! A second method of a vendor tidemark already speaks, say another 旺店通 openapi2 script,
//! needs no new code in the worker, Kafka or config:
//! 1. **One spec** in the vendor's module of `tidemark-endpoints` (`crates/endpoints/src/wdt.rs`): `pub static NEW: ApiSpec = ApiSpec {
//!    kind: "wdt.<name>", method: "<script>.php", list_field, key_field, default_topic,
//!    max_span, page sizes, mode, .. }`, with `schema: include_str!("../../../schemas/wdt.<name>.avsc")`.
//!    The vendor's client is built from its spec (URL, envelope list field), so it serves the
//!    new method as it is.
//! 2. **One schema**, `schemas/wdt.<name>.avsc`: a record keyed on a required string field
//!    named by `key_field`; money as `decimal`, vendor times as `timestamp-millis`, optional
//!    fields as `["null", T]` (the transcoder maps the vendor's JSON by these names and types).
//! 3. **One line** in [`KINDS`]: `Kind { spec: &wdt::NEW, client: |s, c, h| Ok(Arc::new(wdt::WdtSource::new(s, c, h)?)) }`.
//! 4. **Its simulator**: a data set in the vendor's simulator and one `SimKind` line in
//!    `simulate::SIM_KINDS` (a unit test holds the two tables to the same kinds). The 旺店通
//!    simulator serves one script today (`simulate/wdt.rs`: its config section, its data set
//!    and the `method` it answers), so the first second script also gives it a config
//!    section and data set per script and a dispatch on the requested `method`, the way
//!    `simulate/finance.rs` serves its two APIs; a vendor whose simulator already serves
//!    several does not need that.
//!
//! A stream then names it in config: `[sources.x] kind = "wdt.<name>"`. A new vendor protocol
//! is one module here (signing, envelope, error classes behind [`Source`]; its credential keys
//! as a `#[serde(deny_unknown_fields)]` settings type its client reads with
//! `cfg.settings.read()`, and a row in the README's credentials table, which
//! `config::reference_tests` holds to that type) plus the above.

pub mod config;
pub mod envelope;
pub mod errors;
pub mod finance;
pub mod http;
pub mod qimen;
pub mod top;
pub mod top_sign;
pub mod wdt;

use std::sync::Arc;

use crate::config::ConfigError;
pub use crate::domain::source::{ApiSpec, BoxFuture, Mode, Page, PageRequest, Source, SourceError};
use config::SourceConfig;

/// Builds a vendor module's client for a configured source of one of its APIs.
pub type ClientFn = fn(&'static ApiSpec, &SourceConfig, reqwest::Client) -> Result<Arc<dyn Source>, ConfigError>;

/// One vendor API as tidemark knows it: the spec the worker reads it by (with its schema) and
/// its client. The simulators key their data sets by the same spec (`simulate::SIM_KINDS`).
pub struct Kind {
    pub spec: &'static ApiSpec,
    pub client: ClientFn,
}

/// Every API tidemark knows, by config `kind`: adding one is an entry here (module doc).
pub static KINDS: &[Kind] = &[
    Kind { spec: &wdt::ACCOUNT_CHECK, client: |s, c, h| Ok(Arc::new(wdt::WdtSource::new(s, c, h)?)) },
    Kind { spec: &qimen::STOCKIN_REFUND, client: |s, c, h| Ok(Arc::new(qimen::QimenSource::new(s, c, h)?)) },
    Kind { spec: &top::FINANCE_ORDER, client: |s, c, h| Ok(Arc::new(top::TopSource::new(s, c, h)?)) },
    Kind { spec: &finance::TRANSACTIONS, client: |s, c, h| Ok(Arc::new(finance::FinanceSource::new(s, c, h)?)) },
    Kind { spec: &finance::BALANCES, client: |s, c, h| Ok(Arc::new(finance::FinanceSource::new(s, c, h)?)) },
];

pub fn kind_of(kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.spec.kind == kind)
}

/// Builds the client for a configured source.
pub fn build(cfg: &SourceConfig, http: reqwest::Client) -> Result<Arc<dyn Source>, ConfigError> {
    let kind = kind_of(&cfg.kind).ok_or_else(|| {
        ConfigError::invalid(
            format!("sources.{}.kind", cfg.id),
            format!(
                "unknown source kind {:?} (known: {})",
                cfg.kind,
                KINDS.iter().map(|k| k.spec.kind).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    (kind.client)(kind.spec, cfg, http)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    #[test]
    fn every_api_schema_keys_on_a_required_string() {
        for spec in KINDS.iter().map(|k| k.spec) {
            let Schema::Record(r) = Schema::parse_str(spec.schema).unwrap() else { panic!("{}", spec.kind) };
            let key = r.fields.iter().find(|f| f.name == spec.key_field).unwrap_or_else(|| panic!("{}", spec.kind));
            assert_eq!(key.schema, Schema::String, "{}: the key field is a required string", spec.kind);
            assert!(spec.default_page_size <= spec.max_page_size, "{}", spec.kind);
            assert!(spec.reserved_params.contains(&"sign"), "{}: sign is always set by tidemark", spec.kind);
        }
    }

    #[test]
    fn kinds_are_unique_and_start_with_a_vendor_module() {
        let mut kinds: Vec<_> = KINDS.iter().map(|k| k.spec.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len());
        assert!(kinds.iter().all(|k| ["wdt.", "qimen.", "top.", "finance."].iter().any(|v| k.starts_with(v))));
    }
}
