//! Run with: cargo run --example llm_client
//!
//! The seed's Example 3: 50 prompts to an OpenAI-style API through a gate of 10, each with
//! up to 3 attempts and a per-attempt timeout, against a local mock on 127.0.0.1 that stalls
//! some requests and fails others. No API key, no network.

use examples::Out;
use examples::seed::llm_client::{Config, run};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    run(&Config::default(), &Out::stdout()).await?;
    Ok(())
}
