//! The built-in 淘宝开放平台 TOP endpoints by name (`schemas/top.*.toml`).

use crate::Builtin;

/// 财务订单回流 (finance order backflow), seed `003_…`.
pub static FINANCE_ORDER: Builtin = Builtin::new("top.finance_order");
