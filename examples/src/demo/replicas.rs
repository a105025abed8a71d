//! `demo --replicas N`: a fleet of N worker processes pushing one batch through the same
//! API, first each keeping the whole quota to itself (as replicas configured alike do), then
//! sharing it through Redis (gate-redis, one key); a table shows what the server saw.
//!
//! Each worker is this program run again with [`WORKER_FLAG`]: an `llm_batch` over its share
//! of the prompts (see [`crate::llm_batch`]), with `--redis` for the shared run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::Out;
use crate::llm_batch::args::Args;
use crate::llm_batch::harness::{Scenario, requests};
use crate::llm_batch::stop::Stop;
use crate::mock::{MockServer, ServerStats};
use crate::redis_server::RedisServer;

/// The first argument of a worker: the rest are `llm_batch`'s, then `--period-ms N`.
pub const WORKER_FLAG: &str = "--replica-worker";

/// The batch: the `llm_batch` scenario's limits (RPM 600, TPM 180,000, 8 at once) with 480
/// varied prompts, about two minutes of the token budget, six times faster, so that both
/// runs take a few seconds.
fn scenario() -> Scenario {
    Scenario {
        prompts: 480,
        ..Scenario::issue()
    }
    .speedup(6.0)
}

/// Runs the two fleets of `replicas` workers, prints the table to `out` and returns its
/// rows: each alone, then shared.
pub async fn run(replicas: usize, out: &Out) -> std::io::Result<Vec<Row>> {
    let replicas = replicas.clamp(1, 64);
    let redis = RedisServer::start()?;
    let scenario = scenario();
    let dir = std::env::temp_dir().join(format!("gate-demo-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    out.line(format!(
        "{} prompts, {replicas} worker processes, a server allowing {} requests and {} tokens \
         a minute and {} at once (the minute is {:?} here); every worker is given the whole \
         quota.\n",
        scenario.prompts,
        scenario.rpm,
        scenario.tpm,
        scenario.concurrency,
        scenario.minute()
    ));
    out.line(HEADER);
    let mut rows = Vec::new();
    for shared in [false, true] {
        let row = fleet(&scenario, &dir, replicas, shared.then(|| redis.url())).await?;
        out.line(row.to_string());
        rows.push(row);
    }
    out.line(
        "\nEach worker alone believes the whole quota is its own, so the fleet asks the server \
         for that many times its limits, and the server refuses the excess (retried, at the \
         cost of 429s and backoff). Shared through Redis, the fleet holds one quota.",
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

const HEADER: &str = "fleet                   quota asked for (req/min, tok/min)  answered  lost  requests   429s  elapsed";

/// One fleet's figures.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which fleet.
    pub name: &'static str,
    /// How many workers each believe they hold the whole quota (1 when it is shared).
    pub holders: u64,
    /// Prompts answered, over all workers.
    pub answered: u64,
    /// Prompts in the batch.
    pub prompts: usize,
    /// What the server saw.
    pub stats: ServerStats,
    /// The server's requests a minute.
    pub rpm: u32,
    /// The server's tokens a minute.
    pub tpm: u32,
    /// From the first worker's start to the last one's end.
    pub elapsed: Duration,
}

impl Row {
    /// Prompts not answered.
    pub fn lost(&self) -> u64 {
        (self.prompts as u64).saturating_sub(self.answered)
    }

    /// Requests the server refused, as a share of those it received.
    pub fn refused_fraction(&self) -> f64 {
        self.stats.rejected() as f64 / self.stats.requests.max(1) as f64
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let refused = self.stats.rejected();
        let quota = format!("{} x ({}, {})", self.holders, self.rpm, self.tpm);
        write!(
            f,
            "{:<23} {:<35} {:>5}/{:<4} {:>4} {:>9} {:>6} {:>7.1}s  ({:.1}% refused)",
            self.name,
            quota,
            self.answered,
            self.prompts,
            self.lost(),
            self.stats.requests,
            refused,
            self.elapsed.as_secs_f64(),
            100.0 * self.refused_fraction(),
        )
    }
}

/// Starts a fresh mock and `replicas` workers over shares of the batch, waits for them.
async fn fleet(
    scenario: &Scenario,
    dir: &Path,
    replicas: usize,
    redis: Option<String>,
) -> std::io::Result<Row> {
    let server = MockServer::start(scenario.mock()).await?;
    let all = requests(scenario.prompts);
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for replica in 0..replicas {
        let input = dir.join(format!("replica-{replica}-in.jsonl"));
        let output = dir.join(format!("replica-{replica}-out.jsonl"));
        let _ = std::fs::remove_file(&output);
        let mut text = String::new();
        for request in all.iter().skip(replica).step_by(replicas) {
            text.push_str(&Value::Object(request.clone()).to_string());
            text.push('\n');
        }
        std::fs::write(&input, text)?;
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg(WORKER_FLAG)
            .args(worker_args(scenario, &server.base_url(), &input, &output))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(url) = &redis {
            command.args(["--redis", url, "--key", "demo-replicas"]);
        }
        workers.push(command.spawn()?);
    }
    let mut answered = 0;
    for worker in workers {
        let done = worker.wait_with_output().await?;
        let stdout = String::from_utf8_lossy(&done.stdout);
        let summary: Option<Value> = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok());
        answered += summary.map_or(0, |s| s["succeeded"].as_u64().unwrap_or(0));
    }
    Ok(Row {
        name: if redis.is_some() {
            "shared through Redis"
        } else {
            "each alone"
        },
        holders: if redis.is_some() { 1 } else { replicas as u64 },
        answered,
        prompts: scenario.prompts,
        stats: server.stats(),
        rpm: scenario.rpm,
        tpm: scenario.tpm,
        elapsed: start.elapsed(),
    })
}

fn worker_args(scenario: &Scenario, base_url: &str, input: &Path, output: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--input".into(),
        path(input),
        "--output".into(),
        path(output),
        "--base-url".into(),
        base_url.into(),
        "--rpm".into(),
        scenario.rpm.to_string(),
        "--tpm".into(),
        scenario.tpm.to_string(),
        "--concurrency".into(),
        scenario.concurrency.to_string(),
        "--period-ms".into(),
        scenario.minute().as_millis().to_string(),
    ]
}

/// For a program that re-executes itself as the workers (the demo, a test binary): if its
/// arguments (without the program's name) start with [`WORKER_FLAG`], runs the worker on
/// `runtime` and returns its exit status; otherwise `None`, and the program goes on.
pub fn run_if_worker(runtime: &tokio::runtime::Runtime, args: &[String]) -> Option<u8> {
    (args.first().map(String::as_str) == Some(WORKER_FLAG))
        .then(|| runtime.block_on(worker(args[1..].to_vec())))
}

/// A worker's body: `args` are what follows [`WORKER_FLAG`]. Prints `llm_batch`'s JSON
/// summary as its last line; the exit status is `llm_batch`'s.
pub async fn worker(args: Vec<String>) -> u8 {
    let (mut rest, mut period) = (Vec::new(), Duration::from_secs(60));
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.clone().next()) {
            ("--period-ms", Some(ms)) => {
                period = Duration::from_millis(ms.parse().unwrap_or(60_000));
                args.next();
            }
            _ => rest.push(arg),
        }
    }
    let mut args = match Args::parse(rest) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("replica worker: {e}");
            return 2;
        }
    };
    args.period = period;
    match crate::llm_batch::run(&args, &Stop::new(), false).await {
        Ok(finished) => {
            println!("{}", finished.summary.to_line());
            finished.summary.exit_code()
        }
        Err(e) => {
            eprintln!("replica worker: {e}");
            1
        }
    }
}
