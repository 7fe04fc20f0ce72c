//! The endpoints tidemark knows, as data: each vendor method's kind, method name, list and key
//! fields, window and page limits, mode and schema. Both the vendor clients and the vendor
//! simulators read them; neither reaches the other's code.

pub mod finance;
pub mod qimen;
pub mod top;
pub mod wdt;
