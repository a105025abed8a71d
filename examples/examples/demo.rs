//! Run with: cargo run --release --example demo
//!
//! The same batch of prompts pushed at a rate- and concurrency-limited OpenAI-compatible API
//! in several ways (no limit, the seed's gate + fixed retry, a gate honouring Retry-After, a
//! rate + adaptive limiter, and a token budget against a mock whose tokens a minute bind),
//! with a progress bar each, then a table of what each got done.
//! It starts a mock API on 127.0.0.1: no API key, no network. `-- --help` lists the flags;
//! `-- --base-url http://HOST/v1` points the same client at a real endpoint (plain HTTP).

use examples::Out;
use examples::demo::{Config, DemoError, run};

#[tokio::main]
async fn main() {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(DemoError::Help) => {
            println!("{}", examples::demo::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&config, &Out::stdout()).await {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}
