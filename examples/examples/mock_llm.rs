//! Run with: cargo run --example mock_llm -- --rpm 500 --tpm 150000 --concurrency 8
//!
//! A mock OpenAI API on 127.0.0.1 with OpenAI's request, token and concurrency limits, its
//! `x-ratelimit-*` headers, its 429s and 400s, streaming, and `GET /v1/models`: point a real
//! client at it offline (`OPENAI_BASE_URL=http://127.0.0.1:PORT/v1`, any API key). It prints
//! its base URL and serves until Ctrl-C, then prints what it saw. `-- --help` lists the flags.

use examples::mock::MockServer;
use examples::mock::cli::{Options, USAGE, UsageError};

#[tokio::main]
async fn main() {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(UsageError::Help) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let server = match MockServer::start_on(options.config, options.port).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mock_llm: cannot listen on 127.0.0.1:{}: {e}", options.port);
            std::process::exit(1);
        }
    };
    let c = server.config();
    println!("{}", server.base_url());
    eprintln!(
        "mock OpenAI API: {:.0} requests/min (bucket {}), {:.0} tokens/min (bucket {}), {} at \
         once, ~{}ms a completion; Ctrl-C to stop",
        c.rate_per_sec * 60.0,
        c.burst,
        c.token_rate_per_sec * 60.0,
        c.token_burst,
        c.max_concurrent,
        c.latency.as_millis(),
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("mock_llm: cannot wait for Ctrl-C: {e}");
    }
    let s = server.stats();
    eprintln!(
        "served {} requests: {} completed, 429s: {} requests, {} tokens, {} concurrency, {} too \
         large, {} quota; {} bad; most at once {}; tokens charged {}, refunded {}",
        s.requests,
        s.completed,
        s.rejected_rate,
        s.rejected_tokens,
        s.rejected_concurrency,
        s.rejected_too_large,
        s.rejected_quota,
        s.bad_requests,
        s.peak_concurrency,
        s.tokens_charged,
        s.tokens_refunded,
    );
    server.shutdown().await;
}
