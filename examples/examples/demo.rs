//! Run with: cargo run --release --example demo
//!
//! The same batch of prompts pushed at a rate- and concurrency-limited OpenAI-compatible API
//! in several ways (no limit, the seed's gate + fixed retry, a gate honouring Retry-After, a
//! rate + adaptive limiter, and a token budget against a mock whose tokens a minute bind),
//! with a progress bar each, then a table of what each got done.
//! It starts a mock API on 127.0.0.1: no API key, no network. `-- --help` lists the flags;
//! `-- --base-url https://HOST/v1` points the same client at a real endpoint;
//! `-- --plot run.svg` also draws the run (README's `docs/demo.svg`).
//!
//! `-- --replicas N` runs a fleet of N worker processes against one mock instead, each
//! keeping the whole quota to itself and then sharing it through Redis (gate-redis); it
//! starts a redis-server of its own, so needs one on PATH.

use examples::Out;
use examples::demo::{Config, DemoError, replicas, run};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--replicas N`: a fleet of worker processes, each alone, then sharing the quota
    // through Redis. The workers are this program again.
    if args.first().map(String::as_str) == Some(replicas::WORKER_FLAG) {
        std::process::exit(i32::from(replicas::worker(args[1..].to_vec()).await));
    }
    if let Some(at) = args.iter().position(|arg| arg == "--replicas") {
        let n = args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(0);
        if n == 0 {
            eprintln!("`--replicas` needs a number of worker processes, at least 1");
            std::process::exit(2);
        }
        if let Err(e) = replicas::run(n, &Out::stdout()).await.map(drop) {
            eprintln!("demo: {e}");
            std::process::exit(1);
        }
        return;
    }
    let config = match Config::from_args(args) {
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
