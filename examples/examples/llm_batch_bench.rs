//! Run with: cargo run --release --example llm_batch_bench [-- --speedup K]
//!
//! `llm_batch` and the OpenAI Cookbook's `api_request_parallel_processor.py` (reimplemented
//! in `examples::llm_batch::cookbook`) against the same mock on 127.0.0.1: 240 varied
//! prompts, a server enforcing RPM 600, TPM 180,000 and 8 at once, the same limits given to
//! both. Prints what each answered, the share of requests refused, and the makespan against
//! the fastest the server's limits allow. `--speedup K` runs the same schedule K times
//! faster (the tests use 10); `--tpm N` and `--prompts N` change the budget and the batch;
//! `--no-cookbook` runs `llm_batch` alone. The Cookbook's older
//! revision pauses 15 s after each rate-limit error: at full speed its two rows take
//! minutes.

use examples::llm_batch::cookbook::PauseOn;
use examples::llm_batch::harness::{Figures, Scenario, run_cookbook, run_llm_batch};

/// The Cookbook's runs: the limits given as they are and with its advised 75% headroom,
/// for the current script and for its older rate-limit test.
const VARIANTS: [(f64, PauseOn); 4] = [
    (1.0, PauseOn::ErrorCode429),
    (0.75, PauseOn::ErrorCode429),
    (1.0, PauseOn::RateLimitMessage),
    (0.75, PauseOn::RateLimitMessage),
];

fn usage() -> ! {
    eprintln!("usage: llm_batch_bench [--speedup K] [--tpm N] [--prompts N] [--no-cookbook]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut scenario = Scenario::issue();
    let mut cookbook = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-cookbook" => cookbook = false,
            "--speedup" => match args.next().and_then(|k| k.parse::<f64>().ok()) {
                Some(k) if k > 0.0 => scenario = scenario.speedup(k),
                _ => usage(),
            },
            "--tpm" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => scenario.tpm = n,
                _ => usage(),
            },
            "--prompts" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => scenario.prompts = n,
                None => usage(),
            },
            _ => usage(),
        }
    }
    let dir = std::env::temp_dir().join(format!("llm_batch_bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "{} prompts, server: RPM {}, TPM {}, {} at once, {:?} a completion, {}x speed",
        scenario.prompts,
        scenario.rpm,
        scenario.tpm,
        scenario.concurrency,
        scenario.latency,
        scenario.speedup
    );
    println!("{}", Figures::HEADER);
    println!("{}", run_llm_batch(&scenario, &dir).await?);
    let variants = if cookbook { &VARIANTS[..] } else { &[] };
    for &(headroom, pause_on) in variants {
        println!(
            "{}",
            run_cookbook(&scenario, &dir, headroom, pause_on).await?
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
