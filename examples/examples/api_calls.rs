//! Run with: cargo run --example api_calls
//!
//! The seed's Example 2: 20 simulated API calls of one second through a gate of 5. The
//! makespan is 4 rounds of the call time, about 4 seconds.

use examples::Out;
use examples::seed::api_calls::{Config, run};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}
