//! A retried body runs again for each attempt, so it cannot consume its arguments.

use gate_core::gated;

fn consume(_: String) -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 2)]
async fn send(body: String) -> Result<(), ()> {
    consume(body)
}

fn main() {}
