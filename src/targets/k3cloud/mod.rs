//! 金蝶云星空 (K3Cloud) WebAPI: the signed headers of 第三方系统登录授权, and the
//! `BatchSave` / `ExecuteBillQuery` calls a 销售退货单 writer needs.

pub mod sign;
