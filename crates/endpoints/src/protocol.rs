//! The vendor protocols tidemark speaks, as the endpoint manifests see them: the parameters each
//! client sets itself, its page-size limit and whether it can read a snapshot.
//!
//! How a protocol signs, pages and reads its envelope is Rust (`tidemark-vendors`'
//! `sources::<protocol>`); this is what a manifest is checked against, so the two must agree
//! (a unit test there holds every protocol here to a client).

use tidemark_domain::Mode;

/// One vendor protocol.
#[derive(Debug, PartialEq, Eq)]
pub struct Protocol {
    /// The manifest's `protocol`, and the prefix of its endpoints' kinds (`wdt.`).
    pub name: &'static str,
    /// Parameters the client sets on every request.
    pub system_params: &'static [&'static str],
    /// Parameters the client sets only for a windowed endpoint (the window, and paging where
    /// the client pages only then).
    pub windowed_params: &'static [&'static str],
    /// The largest page the protocol's documentation (or, where it says nothing, our
    /// assumption in `docs/vendors.md`) allows; a manifest's `pages.max_size` may not exceed it.
    pub max_page_size: u32,
    /// Whether its client can read an endpoint without a time window (`mode = "snapshot"`).
    pub snapshot: bool,
    /// Whether its methods take paging, window and filters in one JSON object parameter and
    /// wrap list items in a tag, so each manifest names both (`request_object`, `list_item`).
    pub object_request: bool,
}

impl Protocol {
    /// The parameters a stream of an endpoint in `mode` may not set.
    pub fn reserved_params(&self, mode: Mode) -> Vec<&'static str> {
        let mut all = self.system_params.to_vec();
        if mode == Mode::Windowed {
            all.extend(self.windowed_params);
        }
        all
    }
}

/// 旺店通 openapi2: `page_size` 1–100 (the vendor's docs); the client sends the window and
/// paging on every request, so it reads windowed endpoints only.
pub static WDT: Protocol = Protocol {
    name: "wdt",
    system_params: &["sid", "appkey", "timestamp", "sign", "page_no", "page_size", "start_time", "end_time"],
    windowed_params: &[],
    max_page_size: 100,
    snapshot: false,
    object_request: false,
};

/// 旺店通 via 奇门: 旺店通's page limit assumed (the public docs show none).
pub static QIMEN: Protocol = Protocol {
    name: "qimen",
    system_params: &[
        "method",
        "app_key",
        "target_app_key",
        "sid",
        "timestamp",
        "format",
        "v",
        "sign_method",
        "sign",
        "start_time",
        "end_time",
        "page_no",
        "page_size",
    ],
    windowed_params: &[],
    max_page_size: 100,
    snapshot: false,
    object_request: false,
};

/// 淘宝开放平台 TOP: `page_size` ≤ 100 assumed (the seed's example value). Its methods take
/// their paging and window in one object parameter whose name each method chooses
/// (`finance_order_detail_request`), with `current_page` (from 1), `page_size`, `start_time`,
/// `end_time` in it, and answer `api_result.models.pagination.total_count`.
pub static TOP: Protocol = Protocol {
    name: "top",
    system_params: &[
        "method",
        "app_key",
        "session",
        "timestamp",
        "v",
        "sign_method",
        "sign",
        "format",
        "simplify",
        "current_page",
        "page_size",
        "start_time",
        "end_time",
    ],
    windowed_params: &[],
    max_page_size: 100,
    snapshot: false,
    object_request: true,
};

/// 财务账单 API: `page_size` at most 1000 (the vendor's docs); the client sends the window and
/// paging only for a windowed endpoint, so it also reads snapshots.
pub static FINANCE: Protocol = Protocol {
    name: "finance",
    system_params: &["flag", "method", "ver", "charset", "type", "timestamp", "sign"],
    windowed_params: &["start_time", "end_time", "page_no", "page_size"],
    max_page_size: 1000,
    snapshot: true,
    object_request: false,
};

/// Every protocol, by manifest name.
pub static PROTOCOLS: &[&Protocol] = &[&WDT, &QIMEN, &TOP, &FINANCE];

/// The protocol named `name`.
pub fn protocol(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().copied().find(|p| p.name == name)
}

/// The protocols' names, for errors.
pub fn names() -> String {
    PROTOCOLS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}
