//! The built-in 旺店通 openapi2 endpoints by name (`schemas/wdt.*.toml`).

use crate::Builtin;

/// 查询平台对账 (platform account checks), seed `002_…`.
pub static ACCOUNT_CHECK: Builtin = Builtin::new("wdt.account_check");
