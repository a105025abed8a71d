//! Implementation detail of `gate-core`: the `#[gated]` attribute. Use it through
//! `gate_core::gated`.

mod args;
mod duration;
mod expand;

use proc_macro::TokenStream;

/// Limits and retries an `async fn`. See `gate_core::gated`.
#[proc_macro_attribute]
pub fn gated(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::gated(args.into(), item.into()).into()
}
