//! Both tools against the mock, in the issue's setting: 240 varied prompts, a server
//! enforcing RPM 600, TPM 180,000 (charging `prompt + max_tokens` on admission, refunding
//! the unused part on completion) and 8 at once, and the same limits given to each client.
//! What `cargo run --release --example llm_batch_bench` prints and the tests assert.
//!
//! [`Scenario::speedup`] runs the same schedule `k` times faster (the mock's rates × `k`,
//! its latency / `k`, the clients' minute / `k`; bucket sizes, prompts and concurrency
//! unchanged), so a test can run it in seconds with the same ratios.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::args::Args;
use super::cookbook::{self, PauseOn};
use super::stop::Stop;
use crate::mock::{MockConfig, MockServer, ServerStats};

/// The tokens the batch's prompts use in all (prompt and completion), as the mock answers
/// them.
fn batch_tokens(prompts: usize) -> u64 {
    requests(prompts)
        .iter()
        .map(|r| {
            let prompt = r["messages"][0]["content"].as_str().unwrap_or_default();
            crate::mock::usage_for(prompt, r["max_tokens"].as_u64().unwrap_or(0))
        })
        .sum()
}

/// The limits, the prompts and the pace.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Prompts in the batch.
    pub prompts: usize,
    /// The server's requests per minute, and the clients'.
    pub rpm: u32,
    /// The server's tokens per minute, and the clients'.
    pub tpm: u32,
    /// The server's concurrency limit, and `llm_batch`'s `--concurrency`.
    pub concurrency: usize,
    /// The mock's mean latency (before the speed-up).
    pub latency: Duration,
    /// How many times faster than real time.
    pub speedup: f64,
}

impl Scenario {
    /// The issue's: 240 prompts, RPM 600, TPM 180,000, 8 at once, 250 ms a completion.
    pub fn issue() -> Self {
        Self {
            prompts: 240,
            rpm: 600,
            tpm: 180_000,
            concurrency: 8,
            latency: Duration::from_millis(250),
            speedup: 1.0,
        }
    }

    /// The same schedule `k` times faster.
    pub fn speedup(mut self, k: f64) -> Self {
        self.speedup = k;
        self
    }

    /// The clients' minute.
    pub fn minute(&self) -> Duration {
        Duration::from_secs(60).div_f64(self.speedup)
    }

    /// The mock's configuration: the limits per (sped-up) minute, each bucket a minute's
    /// worth, as OpenAI's.
    pub fn mock(&self) -> MockConfig {
        let mut config = MockConfig::per_minute(self.rpm, u64::from(self.tpm), self.concurrency);
        config.latency = self.latency.div_f64(self.speedup);
        config.rate_per_sec *= self.speedup;
        config.token_rate_per_sec *= self.speedup;
        config
    }

    /// The fastest the server's limits allow for the whole batch.
    pub fn ideal(&self) -> Duration {
        self.mock()
            .ideal_makespan(self.prompts, batch_tokens(self.prompts))
    }
}

/// The speed-up a fleet test runs at: `LLM_BATCH_SPEEDUP` if it holds a positive number
/// (1 for the real speed, to measure), else `default`.
pub fn speedup_from_env(default: f64) -> f64 {
    std::env::var("LLM_BATCH_SPEEDUP")
        .ok()
        .and_then(|k| k.parse::<f64>().ok())
        .filter(|k| k.is_finite() && *k > 0.0)
        .unwrap_or(default)
}

/// `n` chat-completions requests of varied length: prompts from about 200 to 1,400 tokens
/// and `max_tokens` from 100 to 400, in an order that mixes them, each with
/// `"metadata": {"id": i}`.
pub fn requests(n: usize) -> Vec<Map<String, Value>> {
    const WORDS: [&str; 8] = [
        "gate", "token", "budget", "quota", "minute", "server", "prompt", "answer",
    ];
    (0..n)
        .map(|i| {
            let target = 800 + (i * 37 % 50) * 100;
            let mut content = format!("Prompt {i}: write about");
            let mut w = i;
            while content.len() < target {
                content.push(' ');
                content.push_str(WORDS[w % WORDS.len()]);
                w = w.wrapping_mul(31).wrapping_add(7);
            }
            let body = json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 100 + (i * 13 % 4) * 100,
                "metadata": {"id": i},
            });
            match body {
                Value::Object(body) => body,
                _ => unreachable!("an object literal"),
            }
        })
        .collect()
}

/// What one run got done.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Which tool.
    pub tool: &'static str,
    /// Prompts in the batch.
    pub prompts: usize,
    /// Prompts answered with a completion.
    pub answered: u64,
    /// Requests the server received.
    pub requests: u64,
    /// Requests it refused with 429.
    pub refused: u64,
    /// From the first request to the last answer written.
    pub makespan: Duration,
    /// The fastest the server's limits allow.
    pub ideal: Duration,
    /// Whether the output's lines are in input order.
    pub in_order: bool,
}

impl Figures {
    fn new(
        tool: &'static str,
        scenario: &Scenario,
        answered: u64,
        stats: &ServerStats,
        makespan: Duration,
        in_order: bool,
    ) -> Self {
        Self {
            tool,
            prompts: scenario.prompts,
            answered,
            requests: stats.requests,
            refused: stats.rejected(),
            makespan,
            ideal: scenario.ideal(),
            in_order,
        }
    }

    /// Refused requests, as a percentage of those the server received.
    pub fn refused_pct(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        100.0 * self.refused as f64 / self.requests as f64
    }

    /// How far the makespan is above the ideal, in percent.
    pub fn over_ideal_pct(&self) -> f64 {
        100.0 * (self.makespan.as_secs_f64() / self.ideal.as_secs_f64().max(1e-9) - 1.0)
    }

    /// The table's header, for [`Display`](fmt::Display) rows.
    pub const HEADER: &'static str = "tool                      answered  requests  refused   makespan    ideal  vs ideal  in order";
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<24} {:>5}/{:<4} {:>8} {:>6.1}% {:>9.2}s {:>7.2}s {:>+8.1}%  {}",
            self.tool,
            self.answered,
            self.prompts,
            self.requests,
            self.refused_pct(),
            self.makespan.as_secs_f64(),
            self.ideal.as_secs_f64(),
            self.over_ideal_pct(),
            if self.in_order { "yes" } else { "no" },
        )
    }
}

/// Where a token-bound run's makespan went beyond [`Scenario::ideal`], read from the mock's
/// log of admissions: the parts add up to `makespan - ideal` exactly.
///
/// Replaying the server's token bucket (capacity `C`, refilled at `r` a second, charged
/// `prompt + max_tokens` on admission, refunded the unused part on completion) from the
/// first admission `a0` to the last one `aL` gives, with `U` the tokens spent net of
/// refunds, `R` the refunds still owed to the requests in flight just after `aL`, `W` the
/// refill lost while the bucket was full and `L` what it held just after `aL`:
/// `aL - a0 = (U - C + R + W + L) / r`. The ideal is `(U_batch - C) / r + latency`, so the
/// makespan (from the client's start to its end) is the ideal plus the parts below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    /// The ideal the parts are counted against.
    pub ideal: Duration,
    /// From the client's start to the server's first admission (start-up, the first
    /// round trips to Redis and to the server). Seconds, as are the rest.
    pub start: f64,
    /// `(U - U_batch) / r`: tokens the server charged beyond the batch's own (requests
    /// sent again: those on the wire at a kill).
    pub again: f64,
    /// `R / r`: the unused `max_tokens` of the requests in flight at the last admission,
    /// which the server holds until they finish. Inherent to the server's way of charging,
    /// and not in the ideal, which is a lower bound.
    pub in_flight: f64,
    /// `W / r`: refill lost while the server's bucket was full (nothing was asked while
    /// the budget allowed it).
    pub wasted: f64,
    /// `L / r`: what the server's bucket held at the last admission: the time by which
    /// the admissions, taken together, came later than the server would have admitted them
    /// (the client's own budget behind the server's, round trips, wake-ups).
    pub late: f64,
    /// From the last admission to the last answer, less the mean latency the ideal counts.
    pub tail: f64,
    /// From the last answer at the server to the client's end (reading the answer,
    /// writing it, the releases' flush, the process's exit).
    pub end: f64,
}

impl Breakdown {
    /// The parts of a run of `scenario` whose `stats` the mock logged, the client started
    /// `started` and ended `ended` after the mock did. `None` without admissions.
    pub fn new(
        scenario: &Scenario,
        stats: &ServerStats,
        started: Duration,
        ended: Duration,
    ) -> Option<Self> {
        let config = scenario.mock();
        let (rate, capacity) = (config.token_rate_per_sec, config.token_burst as f64);
        let first = stats.admissions.first()?.at;
        let last = stats.admissions.last()?.at;
        let mut events: Vec<(Duration, f64)> = stats
            .admissions
            .iter()
            .map(|a| (a.at, -(a.charged as f64)))
            .chain(stats.admissions.iter().filter_map(|a| {
                let at = a.finished?;
                (at <= last).then_some((at, a.refunded as f64))
            }))
            .collect();
        // A refund at the instant of a charge came first (the mock's lock orders them).
        events.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let (mut level, mut wasted, mut at) = (capacity, 0.0, first);
        // As the mock does: refilled up to the brim, then charged or refunded (a refund
        // over the brim is lost too).
        let mut brim = |level: f64| {
            wasted += (level - capacity).max(0.0);
            level.min(capacity)
        };
        for (when, amount) in events {
            level = brim(level + (when - at).as_secs_f64() * rate);
            at = when;
            level = brim(level + amount);
        }
        let owed: f64 = stats
            .admissions
            .iter()
            .filter(|a| a.finished.is_none_or(|f| f > last))
            .map(|a| a.refunded as f64)
            .sum();
        let end_of_answers = stats
            .admissions
            .iter()
            .filter_map(|a| a.finished)
            .max()
            .unwrap_or(last);
        let spent = stats.tokens_spent() as f64;
        Some(Self {
            ideal: scenario.ideal(),
            start: first.as_secs_f64() - started.as_secs_f64(),
            again: (spent - batch_tokens(scenario.prompts) as f64) / rate,
            in_flight: owed / rate,
            wasted: wasted / rate,
            late: level / rate,
            tail: (end_of_answers - last).as_secs_f64() - config.latency.as_secs_f64(),
            end: ended.as_secs_f64() - end_of_answers.as_secs_f64(),
        })
    }

    /// The parts, in order, with their names.
    pub fn parts(&self) -> [(&'static str, f64); 7] {
        [
            ("start", self.start),
            ("sent again", self.again),
            ("in flight", self.in_flight),
            ("bucket full", self.wasted),
            ("late", self.late),
            ("tail", self.tail),
            ("end", self.end),
        ]
    }

    /// Their sum: the makespan less the ideal.
    pub fn total(&self) -> f64 {
        self.parts().iter().map(|(_, s)| s).sum()
    }
}

impl fmt::Display for Breakdown {
    /// Each part in ms and in % of the ideal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ideal = self.ideal.as_secs_f64().max(1e-9);
        write!(f, "over the ideal:")?;
        for (name, secs) in self.parts() {
            write!(
                f,
                " {name} {:+.0} ms ({:+.1}%),",
                secs * 1e3,
                100.0 * secs / ideal
            )?;
        }
        write!(
            f,
            " total {:+.0} ms ({:+.1}%)",
            self.total() * 1e3,
            100.0 * self.total() / ideal
        )
    }
}

fn write_input(path: &Path, requests: &[Map<String, Value>]) -> io::Result<()> {
    let mut text = String::new();
    for request in requests {
        text.push_str(&Value::Object(request.clone()).to_string());
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Runs `llm_batch` (in this process) over the scenario's prompts against a fresh mock,
/// with files in `dir`.
pub async fn run_llm_batch(scenario: &Scenario, dir: &Path) -> io::Result<Figures> {
    let server = MockServer::start(scenario.mock()).await?;
    let input = dir.join("llm_batch-in.jsonl");
    let output = dir.join("llm_batch-out.jsonl");
    let _ = std::fs::remove_file(&output);
    write_input(&input, &requests(scenario.prompts))?;
    let args = Args {
        input,
        output: output.clone(),
        base_url: server.base_url(),
        rpm: scenario.rpm,
        tpm: scenario.tpm,
        concurrency: scenario.concurrency,
        retries: Args::DEFAULT_RETRIES,
        resume: false,
        redis: None,
        key: "default".into(),
        instance: None,
        api_key: None,
        period: scenario.minute(),
    };
    let start = Instant::now();
    let finished = super::run(&args, &Stop::new(), false)
        .await
        .map_err(io::Error::other)?;
    let makespan = start.elapsed();
    let indices: Vec<u64> = std::fs::read_to_string(&output)?
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok()?["index"].as_u64())
        .collect();
    let in_order = indices.iter().copied().eq(0..scenario.prompts as u64);
    Ok(Figures::new(
        "llm_batch",
        scenario,
        finished.summary.succeeded,
        &server.stats(),
        makespan,
        in_order,
    ))
}

/// Runs the Cookbook's algorithm over the scenario's prompts against a fresh mock, with the
/// same limits times `headroom` (1.0, or its advised 0.75), with files in `dir`.
pub async fn run_cookbook(
    scenario: &Scenario,
    dir: &Path,
    headroom: f64,
    pause_on: PauseOn,
) -> io::Result<Figures> {
    let server = MockServer::start(scenario.mock()).await?;
    let output = dir.join("cookbook-out.jsonl");
    let _ = std::fs::remove_file(&output);
    let config = cookbook::Config {
        request_url: format!("{}/chat/completions", server.base_url()),
        api_key: None,
        max_requests_per_minute: f64::from(scenario.rpm) * headroom,
        max_tokens_per_minute: f64::from(scenario.tpm) * headroom,
        max_attempts: 5,
        pause_on,
        minute: scenario.minute(),
    };
    let start = Instant::now();
    let status =
        cookbook::process_api_requests(requests(scenario.prompts), &output, config).await?;
    let makespan = start.elapsed();
    let ids: Vec<u64> = std::fs::read_to_string(&output)?
        .lines()
        .filter_map(|line| {
            let line: Value = serde_json::from_str(line).ok()?;
            line.get(2)?["id"].as_u64()
        })
        .collect();
    let in_order = ids.iter().copied().eq(0..scenario.prompts as u64);
    let tool = match (pause_on, headroom < 1.0) {
        (PauseOn::ErrorCode429, false) => "cookbook",
        (PauseOn::ErrorCode429, true) => "cookbook, 75% headroom",
        (PauseOn::RateLimitMessage, false) => "cookbook (older pause)",
        (PauseOn::RateLimitMessage, true) => "cookbook (older), 75%",
    };
    Ok(Figures::new(
        tool,
        scenario,
        status.num_tasks_succeeded,
        &server.stats(),
        makespan,
        in_order,
    ))
}

/// Runs `replicas` copies of `llm_batch` at once (in this process, each with its own limiter
/// and its own share of the prompts, as separate processes would) against one fresh mock,
/// every copy given the whole quota: without `redis` each keeps it alone, so the fleet asks
/// for `replicas` times the quota; with `redis` (a URL and a key) they share it. With the
/// figures, where the makespan went beyond the ideal ([`Breakdown`]).
pub async fn run_fleet(
    scenario: &Scenario,
    dir: &Path,
    replicas: usize,
    redis: Option<(&str, &str)>,
) -> io::Result<(Figures, Option<Breakdown>)> {
    let server = MockServer::start(scenario.mock()).await?;
    let epoch = Instant::now();
    let replicas = replicas.max(1);
    let all = requests(scenario.prompts);
    let mut runs = Vec::new();
    for replica in 0..replicas {
        let share: Vec<_> = all
            .iter()
            .skip(replica)
            .step_by(replicas)
            .cloned()
            .collect();
        let input = dir.join(format!("fleet-{replica}-in.jsonl"));
        let output = dir.join(format!("fleet-{replica}-out.jsonl"));
        let _ = std::fs::remove_file(&output);
        write_input(&input, &share)?;
        let args = Args {
            input,
            output,
            base_url: server.base_url(),
            rpm: scenario.rpm,
            tpm: scenario.tpm,
            concurrency: scenario.concurrency,
            retries: Args::DEFAULT_RETRIES,
            resume: false,
            redis: redis.map(|(url, _)| url.to_owned()),
            key: redis.map_or_else(|| String::from("default"), |(_, key)| key.to_owned()),
            instance: None,
            api_key: None,
            period: scenario.minute(),
        };
        runs.push(async move { super::run(&args, &Stop::new(), false).await });
    }
    let start = Instant::now();
    let finished = futures_util::future::join_all(runs).await;
    let end = Instant::now();
    let makespan = end - start;
    let mut answered = 0;
    for run in finished {
        answered += run.map_err(io::Error::other)?.summary.succeeded;
    }
    let tool = if redis.is_some() {
        "fleet, shared quota"
    } else {
        "fleet, each alone"
    };
    let stats = server.stats();
    let breakdown = Breakdown::new(scenario, &stats, start - epoch, end - epoch);
    Ok((
        Figures::new(tool, scenario, answered, &stats, makespan, true),
        breakdown,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::Admitted;

    fn admitted(at: f64, charged: u64, refunded: u64, finished: f64) -> Admitted {
        Admitted {
            at: Duration::from_secs_f64(at),
            charged,
            refunded,
            finished: Some(Duration::from_secs_f64(finished)),
        }
    }

    #[test]
    fn the_parts_replay_the_servers_bucket_and_add_up_to_the_makespan_beyond_the_ideal() {
        // Two prompts against 1,000 tokens a minute: the budget binds.
        let scenario = Scenario {
            prompts: 2,
            tpm: 1_000,
            ..Scenario::issue()
        };
        let rate = 1_000.0 / 60.0;
        let stats = ServerStats {
            // 1,000 - 900 = 100; at 1 s, 100 refilled and 100 refunded: 216.7; at 50 s,
            // 816.7 refilled, 33.3 of them over the brim: 1,000, less 900 = 100 left.
            admissions: vec![admitted(0.0, 900, 100, 1.0), admitted(50.0, 900, 300, 50.3)],
            tokens_charged: 1_800,
            tokens_refunded: 400,
            ..ServerStats::default()
        };
        let (started, ended) = (Duration::from_millis(10), Duration::from_secs_f64(50.32));
        let parts = Breakdown::new(&scenario, &stats, started, ended).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(parts.start, -0.01), "{parts:?}");
        assert!(close(
            parts.again,
            (1_400.0 - batch_tokens(2) as f64) / rate
        ));
        assert!(close(parts.in_flight, 300.0 / rate), "{parts:?}");
        assert!(close(parts.wasted, (100.0 / 3.0) / rate), "{parts:?}");
        assert!(close(parts.late, 100.0 / rate), "{parts:?}");
        assert!(close(parts.tail, 0.3 - 0.25), "{parts:?}");
        assert!(close(parts.end, 0.02), "{parts:?}");
        let beyond = (ended - started).as_secs_f64() - scenario.ideal().as_secs_f64();
        assert!(
            close(parts.total(), beyond),
            "{} vs {beyond}",
            parts.total()
        );
        assert!(Breakdown::new(&scenario, &ServerStats::default(), started, ended).is_none());
    }
}
