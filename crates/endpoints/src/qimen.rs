//! The built-in 旺店通 via 奇门 endpoints by name (`schemas/qimen.*.toml`).

use crate::Builtin;

/// 查询退货入库单 (refund stock-ins), seed `001_…`.
pub static STOCKIN_REFUND: Builtin = Builtin::new("qimen.stockin_refund");
