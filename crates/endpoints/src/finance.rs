//! The built-in 财务账单 API endpoints by name (`schemas/finance.*.toml`).

use crate::Builtin;

/// 获取交易流水列表 (transactions), seed `000_…`.
pub static TRANSACTIONS: Builtin = Builtin::new("finance.transactions");

/// 获取账户余额信息 (account balances): a snapshot, no time filter, no paging.
pub static BALANCES: Builtin = Builtin::new("finance.balances");
