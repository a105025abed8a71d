//! Run with: cargo run --example basic_gate
//!
//! The seed's Example 1: six workers, a gate of three. All six start at once (zone 1), at
//! most three are inside the gate (zone 2), and each goes on alone once past it (zone 3).

use examples::Out;
use examples::seed::basic_gate::{Config, run};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}
