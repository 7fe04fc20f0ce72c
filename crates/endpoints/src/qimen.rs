//! The 旺店通 via 奇门 endpoints tidemark knows: what each method is (data), not how to call it.

use std::time::Duration;

use tidemark_domain::{ApiSpec, Mode};

/// 查询退货入库单 (refund stock-ins), seed `001_…`.
pub static STOCKIN_REFUND: ApiSpec = ApiSpec {
    kind: "qimen.stockin_refund",
    method: "wdt.stockin.order.query.refund",
    list_field: "stockin_list",
    reserved_params: &[
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
    schema: include_str!("../../../schemas/qimen.stockin_refund.avsc"),
    key_field: "order_no",
    default_topic: "qimen.stockin_refund",
    // 旺店通 query APIs cap windows; one day is the conservative cap we assume.
    max_span: Duration::from_secs(24 * 3600),
    max_page_size: 100,
    default_page_size: 100,
    mode: Mode::Windowed,
    paged: true,
    total_on_every_page: true,
};
