//! The 财务账单 API endpoints tidemark knows: what each method is (data), not how to call it.

use std::time::Duration;

use tidemark_domain::{ApiSpec, Mode};

/// The system parameters every finance request carries, set by the client.
pub const SYSTEM_PARAMS: &[&str] = &["flag", "method", "ver", "charset", "type", "timestamp", "sign"];

/// 获取交易流水列表 (transactions), seed `000_…`.
pub static TRANSACTIONS: ApiSpec = ApiSpec {
    kind: "finance.transactions",
    method: "finance.getTransactionList",
    list_field: "lists",
    reserved_params: &[
        "flag",
        "method",
        "ver",
        "charset",
        "type",
        "timestamp",
        "sign",
        "start_time",
        "end_time",
        "page_no",
        "page_size",
    ],
    schema: include_str!("../../../schemas/finance.transactions.avsc"),
    key_field: "trans_id",
    default_topic: "finance.transactions",
    // No documented limit; one day keeps each window's transaction bounded.
    max_span: Duration::from_secs(24 * 3600),
    // The API accepts up to 1000 but serves at most 100 per page: the worker trusts the
    // pages it gets, not the size it asked for.
    max_page_size: 1000,
    default_page_size: 100,
    mode: Mode::Windowed,
    paged: true,
    total_on_every_page: true,
};

/// 获取账户余额信息 (account balances): a snapshot, no time filter, no paging.
pub static BALANCES: ApiSpec = ApiSpec {
    kind: "finance.balances",
    method: "finance.getAccountBalance",
    list_field: "accounts",
    reserved_params: SYSTEM_PARAMS,
    schema: include_str!("../../../schemas/finance.balances.avsc"),
    key_field: "account_id",
    default_topic: "finance.balances",
    max_span: Duration::from_secs(24 * 3600),
    max_page_size: 1,
    default_page_size: 1,
    mode: Mode::Snapshot,
    paged: false,
    total_on_every_page: false,
};
