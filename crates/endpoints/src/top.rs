//! The 淘宝开放平台 TOP endpoints tidemark knows: what each method is (data), not how to call it.

use std::time::Duration;

use tidemark_domain::{ApiSpec, Mode};

/// 财务订单回流 (finance order backflow), seed `003_…`.
pub static FINANCE_ORDER: ApiSpec = ApiSpec {
    kind: "top.finance_order",
    method: "alibaba.wdk.finance.order.backflow",
    list_field: "finance_order_details",
    reserved_params: &[
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
    schema: include_str!("../../../schemas/top.finance_order.avsc"),
    key_field: "biz_uk",
    default_topic: "top.finance_order",
    // The API documents no limit; one day keeps each window's transaction bounded.
    max_span: Duration::from_secs(24 * 3600),
    max_page_size: 100,
    default_page_size: 100,
    mode: Mode::Windowed,
    paged: true,
    total_on_every_page: true,
};
