//! Run with: cargo run --release --example llm_batch -- --input requests.jsonl
//! --output results.jsonl --base-url http://127.0.0.1:8080/v1 --rpm 600 --tpm 180000
//!
//! Pushes a JSONL file of chat-completions requests through an OpenAI-compatible API within
//! its request and token quotas, one result per input line, in input order; `--resume`
//! continues after a crash. `-- --help` lists the flags. The work is in
//! `examples::llm_batch`; this file is the runtime around it.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let api_key = std::env::var("OPENAI_API_KEY").ok();
    ExitCode::from(examples::llm_batch::cli::main(std::env::args().skip(1), api_key).await)
}
