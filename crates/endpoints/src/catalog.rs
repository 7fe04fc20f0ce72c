//! The endpoint table: the built-in manifests compiled in from `schemas/`, plus a worker's own
//! from its `endpoints_dir`, found by kind.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use tidemark_domain::ApiSpec;

use crate::manifest::{self, Endpoint, ManifestError, Origin};

/// The built-in endpoints' files: `schemas/<kind>.toml` and `schemas/<kind>.avsc`.
macro_rules! builtin_files {
    ($($kind:literal),* $(,)?) => {
        &[$((
            $kind,
            include_str!(concat!("../../../schemas/", $kind, ".toml")),
            include_str!(concat!("../../../schemas/", $kind, ".avsc")),
        )),*]
    };
}

/// `(kind, manifest, schema)` of each built-in endpoint.
const BUILTIN_FILES: &[(&str, &str, &str)] = builtin_files![
    "wdt.account_check",
    "qimen.stockin_refund",
    "top.finance_order",
    "finance.transactions",
    "finance.balances",
];

/// The built-in endpoints, checked as a user's are the first time any is asked for. A bad
/// compiled-in manifest is a build defect (a unit test parses them all), hence the panic.
static BUILTINS: LazyLock<Vec<&'static Endpoint>> = LazyLock::new(|| {
    BUILTIN_FILES
        .iter()
        .map(|(kind, toml, avsc)| {
            let file = PathBuf::from(format!("schemas/{kind}.toml"));
            let avsc_file = file.with_extension("avsc");
            let endpoint = manifest::parse(&file, kind, toml, &avsc_file, avsc, Origin::BuiltIn)
                .unwrap_or_else(|e| panic!("a compiled-in endpoint is invalid: {e}"));
            &*Box::leak(Box::new(endpoint))
        })
        .collect()
});

/// The built-in endpoints, in `schemas/` order.
pub fn builtins() -> &'static [&'static Endpoint] {
    &BUILTINS
}

/// The built-in endpoint of `kind`.
pub fn builtin(kind: &str) -> Option<&'static Endpoint> {
    builtins().iter().copied().find(|e| e.spec.kind == kind)
}

/// A built-in endpoint by name, usable where a `&'static ApiSpec` is (`&wdt::ACCOUNT_CHECK`):
/// the names the code used when the specs were Rust statics.
pub struct Builtin(&'static str);

impl Builtin {
    pub const fn new(kind: &'static str) -> Self {
        Builtin(kind)
    }

    pub fn endpoint(&self) -> &'static Endpoint {
        builtin(self.0).unwrap_or_else(|| panic!("{} is not a built-in endpoint", self.0))
    }
}

impl Deref for Builtin {
    type Target = ApiSpec;

    fn deref(&self) -> &ApiSpec {
        &self.endpoint().spec
    }
}

/// Every endpoint a worker knows: the built-ins and those of its `endpoints_dir`.
#[derive(Clone, Default)]
pub struct Endpoints {
    user: Vec<&'static Endpoint>,
}

/// The user's kinds and files only: a config's `Debug` would otherwise print every schema.
impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.user.iter().map(|e| (e.spec.kind, e.origin.to_string()))).finish()
    }
}

impl Endpoints {
    /// The built-ins only (a config without `endpoints_dir`).
    pub fn builtin() -> Self {
        Endpoints::default()
    }

    /// The built-ins and every `<kind>.toml` in `dir` (each with its `<kind>.avsc`), all
    /// checked; a user kind equal to a built-in one is an error (never a silent override:
    /// it would change what an existing stream reads).
    pub fn load_dir(dir: &Path) -> Result<Self, ManifestError> {
        let listing = |source| ManifestError::Dir { dir: dir.to_owned(), source };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(listing)? {
            let path = entry.map_err(listing)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
        files.sort();
        let mut user = Vec::new();
        for file in files {
            let endpoint = manifest::load(&file)?;
            if builtin(endpoint.spec.kind).is_some() {
                return Err(ManifestError::BuiltIn {
                    builtin: format!("schemas/{}.toml", endpoint.spec.kind),
                    kind: endpoint.spec.kind.to_owned(),
                    file,
                });
            }
            tracing::debug!(kind = endpoint.spec.kind, file = %file.display(), "endpoint loaded");
            user.push(&*Box::leak(Box::new(endpoint)));
        }
        Ok(Endpoints { user })
    }

    /// The endpoint of config `kind`.
    pub fn find(&self, kind: &str) -> Option<&'static Endpoint> {
        self.iter().find(|e| e.spec.kind == kind)
    }

    /// Built-ins first, then the user's by file name.
    pub fn iter(&self) -> impl Iterator<Item = &'static Endpoint> + '_ {
        builtins().iter().copied().chain(self.user.iter().copied())
    }

    /// The user's endpoints only.
    pub fn user(&self) -> &[&'static Endpoint] {
        &self.user
    }

    /// Every kind, for errors.
    pub fn kinds(&self) -> String {
        self.iter().map(|e| e.spec.kind).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod shipped {
    /// The real vendor methods shipped in `endpoints/` (orders, stock-outs, refunds of 旺店通
    /// openapi2 and 奇门) load as a user's endpoints_dir: every manifest and schema checks.
    #[test]
    fn the_shipped_endpoints_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../endpoints");
        let endpoints = super::Endpoints::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = endpoints.user().iter().map(|e| e.spec.kind).collect();
        for kind in ["wdt.trade_query", "wdt.stockout_trade", "wdt.refund_query", "qimen.trade_query"] {
            assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
        }
        assert_eq!(kinds.len(), 6, "{kinds:?}");
    }
}
