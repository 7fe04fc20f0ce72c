//! The 旺店通 openapi2 endpoints tidemark knows: what each method is (data), not how to call it.

use std::time::Duration;

use tidemark_domain::{ApiSpec, Mode};

/// Parameters the openapi2 client sets itself.
pub const RESERVED_PARAMS: &[&str] =
    &["sid", "appkey", "timestamp", "sign", "page_no", "page_size", "start_time", "end_time"];

/// 查询平台对账 (platform account checks), seed `002_…`.
pub static ACCOUNT_CHECK: ApiSpec = ApiSpec {
    kind: "wdt.account_check",
    method: "fa_alipay_account_check_query.php",
    list_field: "account_list",
    reserved_params: RESERVED_PARAMS,
    schema: include_str!("../../../schemas/wdt.account_check.avsc"),
    key_field: "account_check_no",
    default_topic: "wdt.account_check",
    max_span: Duration::from_secs(24 * 3600),
    max_page_size: 100,
    default_page_size: 100,
    mode: Mode::Windowed,
    paged: true,
    total_on_every_page: false,
};
