//! Run with: cargo run --example with_vs_without
//!
//! The seed's Example 4: 50 calls against a server that refuses anything above 10 at once,
//! without a gate (40 refused) and with a gate of 10 (none refused).

use examples::Out;
use examples::seed::with_vs_without::{Config, run};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}
