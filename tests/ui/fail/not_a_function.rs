//! `#[gated]` on items that are not functions with a body.

use gate_core::gated;

#[gated(limit = 1)]
struct Client;

#[gated(limit = 1)]
mod api {}

trait Fetch {
    #[gated(limit = 1)]
    async fn fetch(&self) -> u32;
}

fn main() {
    let _ = Client;
}
