//! An argument given twice is reported on its second occurrence.

use gate_core::gated;

#[gated(limit = 10, limit = 20)]
async fn twice() {}

#[gated(limit = 1, retry = 2, wait = "1s", wait = "2s")]
async fn twice_wait() -> Result<(), ()> {
    Ok(())
}

fn main() {}
