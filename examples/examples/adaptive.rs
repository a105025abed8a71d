//! Run with: cargo run --example adaptive
//!
//! The seed's Example 5, corrected: an adaptive limit that resizes ONE gate with
//! `Gate::set_limit`, next to two ports of the seed's version, which swaps in a new
//! semaphore on every change.
//!
//! Why the seed's version breaks the limit: permits held on the old semaphore are invisible
//! to the new one, which hands out `limit` fresh permits while the old holders still run, so
//! more than the limit run at once; and its `release()` goes to whichever semaphore is current,
//! swelling the new one past its limit while callers queued on the old one wait forever.
//! Resizing one gate keeps every permit accounted for: growth admits waiters at once, a
//! shrink takes hold as permits come back. See `examples/src/seed/adaptive.rs`.

use examples::Out;
use examples::seed::adaptive::{Config, run};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}
