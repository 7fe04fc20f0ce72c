//! Vendor API clients behind one trait: the worker asks for a page of a window; a vendor module signs, parses and classifies.
//!
//! An endpoint (a vendor method) is data: a manifest and a schema (`tidemark-endpoints`; the
//! README's "Adding an endpoint"). A protocol is code: one module here (signing, envelope,
//! error classes behind [`Source`]; its credential keys as a `#[serde(deny_unknown_fields)]`
//! settings type its client reads with `cfg.settings.read()`, and a row in the README's
//! credentials table, which `config::reference_tests` holds to that type), its
//! `tidemark_endpoints::protocol::Protocol` (reserved parameters, page limit), and one line in
//! [`CLIENTS`].

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
use tidemark_endpoints::protocol::Protocol;
pub use tidemark_endpoints::{Endpoint, Endpoints, protocol};

/// Builds a protocol's client for a configured source of one of its endpoints.
pub type ClientFn = fn(&'static ApiSpec, &SourceConfig, reqwest::Client) -> Result<Arc<dyn Source>, ConfigError>;

/// One protocol's client.
pub struct Client {
    pub protocol: &'static Protocol,
    pub client: ClientFn,
}

/// Every protocol tidemark speaks, with its client: the endpoints (built-in and the user's)
/// name their protocol, and the source's client is that protocol's.
pub static CLIENTS: &[Client] = &[
    Client { protocol: &protocol::WDT, client: |s, c, h| Ok(Arc::new(wdt::WdtSource::new(s, c, h)?)) },
    Client { protocol: &protocol::QIMEN, client: |s, c, h| Ok(Arc::new(qimen::QimenSource::new(s, c, h)?)) },
    Client { protocol: &protocol::TOP, client: |s, c, h| Ok(Arc::new(top::TopSource::new(s, c, h)?)) },
    Client { protocol: &protocol::FINANCE, client: |s, c, h| Ok(Arc::new(finance::FinanceSource::new(s, c, h)?)) },
];

/// The client of protocol `name`.
pub fn client_of(name: &str) -> Option<&'static Client> {
    CLIENTS.iter().find(|c| c.protocol.name == name)
}

/// Builds the client for a configured source: its kind's endpoint among `endpoints`, then
/// that endpoint's protocol's client.
pub fn build(cfg: &SourceConfig, endpoints: &Endpoints, http: reqwest::Client) -> Result<Arc<dyn Source>, ConfigError> {
    let endpoint = endpoints.find(&cfg.kind).ok_or_else(|| {
        ConfigError::invalid(
            format!("sources.{}.kind", cfg.id),
            format!("unknown source kind {:?} (known: {})", cfg.kind, endpoints.kinds()),
        )
    })?;
    let client = client_of(endpoint.protocol.name).expect("every protocol has a client (a unit test checks)");
    (client.client)(&endpoint.spec, cfg, http)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    #[test]
    fn every_protocol_has_one_client() {
        let names: Vec<&str> = CLIENTS.iter().map(|c| c.protocol.name).collect();
        let protocols: Vec<&str> = protocol::PROTOCOLS.iter().map(|p| p.name).collect();
        assert_eq!(names, protocols);
    }

    #[test]
    fn every_api_schema_keys_on_a_required_string() {
        for spec in tidemark_endpoints::builtins().iter().map(|e| &e.spec) {
            let Schema::Record(r) = Schema::parse_str(spec.schema).unwrap() else { panic!("{}", spec.kind) };
            let key = r.fields.iter().find(|f| f.name == spec.key_field).unwrap_or_else(|| panic!("{}", spec.kind));
            assert_eq!(key.schema, Schema::String, "{}: the key field is a required string", spec.kind);
            assert!(spec.default_page_size <= spec.max_page_size, "{}", spec.kind);
            assert!(spec.reserved_params.contains(&"sign"), "{}: sign is always set by tidemark", spec.kind);
        }
    }

    #[test]
    fn kinds_are_unique_and_start_with_their_protocol() {
        let builtins = tidemark_endpoints::builtins();
        let mut kinds: Vec<_> = builtins.iter().map(|e| e.spec.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), builtins.len());
        assert!(builtins.iter().all(|e| e.spec.kind.starts_with(&format!("{}.", e.protocol.name))));
    }
}
