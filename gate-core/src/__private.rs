//! Items used by code that `#[gated]` generates. Not public API; may change at any time.

pub use std::future::Future;
