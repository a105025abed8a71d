//! Unknown arguments: a close misspelling gets "did you mean", and every message lists the
//! valid arguments. `max_wait` says where that setting lives.

use gate_core::gated;

#[gated(limt = 10)]
async fn misspelled() {}

#[gated(limit = 10, flavor = "fast")]
async fn unknown() {}

#[gated(limit = 10, retries = 3)]
async fn synonym() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 10, max_wait = "1s")]
async fn max_wait() {}

fn main() {}
