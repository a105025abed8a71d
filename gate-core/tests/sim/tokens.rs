//! An LLM API with a token quota, simulated: requests and tokens per minute, charged as the
//! providers charge, and two clients pushing the same prompts through it: gate's token
//! budget, and the OpenAI Cookbook's `api_request_parallel_processor.py` algorithm.
//!
//! The server keeps two buckets, each holding a minute's quota and refilling continuously,
//! as OpenAI documents: a request costs one request and `prompt + max_tokens` tokens on
//! admission, and the unused `max_tokens - completion` come back when it completes. A
//! request either bucket cannot pay for is refused at once with a 429 and a `Retry-After`
//! of the time until it could be paid (rounded up to a whole second, as the header is).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::{Limiter, Outcome};
use tokio::time::Instant;

use crate::server::Rng;

/// One prompt: its true size, its size in characters (what a client can estimate from),
/// the completion limit it asks for, and the completion it will get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prompt {
    pub(crate) prompt_tokens: u64,
    pub(crate) chars: u64,
    pub(crate) max_tokens: u64,
    pub(crate) completion_tokens: u64,
}

impl Prompt {
    /// What a client estimates before sending: about four characters a token, plus the
    /// completion limit (the server's own charging rule).
    pub(crate) fn estimate(&self) -> u64 {
        self.chars.div_ceil(4) + self.max_tokens
    }

    /// What the server charges on admission.
    fn charge(&self) -> u64 {
        self.prompt_tokens + self.max_tokens
    }

    /// What the response reports in `usage.total_tokens`.
    pub(crate) fn used(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// `n` prompts with a realistic spread: prompts of 20 to about 3,000 tokens, most short
/// (log-uniform), completion limits of 64 to 1,024, completions using 20-100% of the limit.
pub(crate) fn prompts(n: usize, seed: u64) -> Vec<Prompt> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let prompt_tokens = (20.0 * 150f64.powf(rng.unit())) as u64;
            let chars = (prompt_tokens as f64 * 4.0 * (0.85 + 0.3 * rng.unit())) as u64;
            let max_tokens = [64, 128, 256, 512, 1024][(rng.unit() * 5.0) as usize];
            let completion_tokens = ((0.2 + 0.8 * rng.unit()) * max_tokens as f64).ceil() as u64;
            Prompt {
                prompt_tokens,
                chars,
                max_tokens,
                completion_tokens,
            }
        })
        .collect()
}

/// A bucket that holds `capacity` and refills `capacity` per minute.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: u64, now: Instant) -> Self {
        Self {
            capacity: capacity as f64,
            level: capacity as f64,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let per_sec = self.capacity / 60.0;
        self.level = (self.level + per_sec * (now - self.at).as_secs_f64()).min(self.capacity);
        self.at = now;
    }

    /// Seconds until `amount` is there (zero if it is now).
    fn wait_for(&self, amount: f64) -> f64 {
        ((amount - self.level) / (self.capacity / 60.0)).max(0.0)
    }
}

/// The simulated API.
#[derive(Debug)]
pub(crate) struct QuotaServer {
    buckets: Mutex<(Bucket, Bucket)>,
    tokens_per_minute: u64,
    pub(crate) attempts: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// A 429: the seconds its `Retry-After` says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TooMany {
    pub(crate) retry_after: Duration,
}

impl QuotaServer {
    pub(crate) fn new(requests_per_minute: u64, tokens_per_minute: u64) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            buckets: Mutex::new((
                Bucket::new(requests_per_minute, now),
                Bucket::new(tokens_per_minute, now),
            )),
            tokens_per_minute,
            attempts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The fastest the quota lets `prompts` through: the tokens they use beyond one bucket
    /// at the refill rate (requests bind far less here), plus the mean latency of the last.
    pub(crate) fn ideal_makespan(&self, prompts: &[Prompt]) -> Duration {
        let used: u64 = prompts.iter().map(Prompt::used).sum();
        let beyond = used.saturating_sub(self.tokens_per_minute) as f64;
        let mean_latency = prompts
            .iter()
            .map(|p| latency(p).as_secs_f64())
            .sum::<f64>()
            / prompts.len() as f64;
        Duration::from_secs_f64(beyond / (self.tokens_per_minute as f64 / 60.0) + mean_latency)
    }

    /// One chat completion.
    pub(crate) async fn call(&self, prompt: Prompt) -> Result<u64, TooMany> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        {
            let now = Instant::now();
            let mut buckets = self.buckets.lock().unwrap();
            let (requests, tokens) = &mut *buckets;
            requests.refill(now);
            tokens.refill(now);
            let charge = prompt.charge() as f64;
            let wait = requests.wait_for(1.0).max(tokens.wait_for(charge));
            if wait > 0.0 {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Err(TooMany {
                    retry_after: Duration::from_secs(wait.ceil() as u64),
                });
            }
            requests.level -= 1.0;
            tokens.level -= charge;
        }
        tokio::time::sleep(latency(&prompt)).await;
        let mut buckets = self.buckets.lock().unwrap();
        let tokens = &mut buckets.1;
        tokens.refill(Instant::now());
        let unused = (prompt.max_tokens - prompt.completion_tokens) as f64;
        tokens.level = (tokens.level + unused).min(tokens.capacity);
        Ok(prompt.used())
    }
}

/// Time to answer: a base plus the time to generate the completion (100 tokens a second).
fn latency(prompt: &Prompt) -> Duration {
    Duration::from_millis(300 + prompt.completion_tokens * 10)
}

/// What a client got done.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) succeeded: usize,
    pub(crate) refused_fraction: f64,
    pub(crate) makespan: Duration,
}

fn run_report(server: &QuotaServer, succeeded: usize, start: Instant) -> Run {
    let attempts = server.attempts.load(Ordering::SeqCst) as f64;
    Run {
        succeeded,
        refused_fraction: server.refused.load(Ordering::SeqCst) as f64 / attempts.max(1.0),
        makespan: start.elapsed(),
    }
}

/// gate: one limiter with the quota's request rate and token budget and an adaptive
/// concurrency limit; each attempt reserves its estimate, settles with the usage the
/// response reports (0 for a 429, which the server does not charge), and is retried with
/// exponential backoff and the server's `Retry-After`.
pub(crate) async fn gate(server: &Arc<QuotaServer>, prompts: &[Prompt]) -> Run {
    let tokens_per_minute = u32::try_from(server.tokens_per_minute).unwrap();
    let limiter = Arc::new(
        Limiter::builder()
            .rate("500/min".parse().unwrap())
            .tokens(gate_core::rate::Rate::per_minute(tokens_per_minute))
            .adaptive(Aimd::new())
            .build()
            .unwrap(),
    );
    let start = Instant::now();
    let tasks: Vec<_> = prompts
        .iter()
        .map(|&prompt| {
            let (server, limiter) = (Arc::clone(server), Arc::clone(&limiter));
            tokio::spawn(async move {
                let mut backoff = Duration::from_secs(1);
                for _ in 0..10 {
                    let mut permit = limiter.acquire_tokens(prompt.estimate()).await.unwrap();
                    match server.call(prompt).await {
                        Ok(used) => {
                            permit.settle(used);
                            permit.finish(Outcome::Success);
                            return true;
                        }
                        Err(TooMany { retry_after }) => {
                            permit.settle(0);
                            permit.finish(Outcome::Overload {
                                retry_after: Some(retry_after),
                            });
                            tokio::time::sleep(backoff.max(retry_after)).await;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                }
                false
            })
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        succeeded += usize::from(task.await.unwrap());
    }
    run_report(server, succeeded, start)
}

/// The Cookbook's algorithm, faithfully: both capacities start full (a whole minute of
/// burst) and refill at the limits given; a request is sent when both can pay its estimate,
/// which is never corrected from the usage; the loop sleeps 1 ms; a failed request goes
/// back on a retry queue at once, with no backoff, up to 5 attempts in all; after a rate
/// limit error, no request is sent for 15 s. Results are counted as they complete.
pub(crate) async fn cookbook(
    server: &Arc<QuotaServer>,
    prompts: &[Prompt],
    requests_per_minute: f64,
    tokens_per_minute: f64,
) -> Run {
    const MAX_ATTEMPTS: u32 = 5;
    const PAUSE_AFTER_RATE_LIMIT: Duration = Duration::from_secs(15);
    let start = Instant::now();
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let retry_queue = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let last_rate_limit_error = Arc::new(Mutex::new(None::<Instant>));
    let mut available_requests = requests_per_minute;
    let mut available_tokens = tokens_per_minute;
    let mut last_update = start;
    let mut next: Option<(Prompt, u32)> = None;
    let mut unread = prompts.iter().copied();
    let total = prompts.len() as u64;
    loop {
        if next.is_none() {
            next = retry_queue
                .lock()
                .unwrap()
                .pop_front()
                .or_else(|| unread.next().map(|p| (p, MAX_ATTEMPTS)));
        }
        let now = Instant::now();
        let elapsed = (now - last_update).as_secs_f64();
        available_requests =
            (available_requests + requests_per_minute * elapsed / 60.0).min(requests_per_minute);
        available_tokens =
            (available_tokens + tokens_per_minute * elapsed / 60.0).min(tokens_per_minute);
        last_update = now;
        if let Some((prompt, attempts_left)) = next {
            let cost = prompt.estimate() as f64;
            if available_requests >= 1.0 && available_tokens >= cost {
                available_requests -= 1.0;
                available_tokens -= cost;
                next = None;
                let server = Arc::clone(server);
                let (succeeded, failed) = (Arc::clone(&succeeded), Arc::clone(&failed));
                let retry_queue = Arc::clone(&retry_queue);
                let last_error = Arc::clone(&last_rate_limit_error);
                tokio::spawn(async move {
                    match server.call(prompt).await {
                        Ok(_) => {
                            succeeded.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            *last_error.lock().unwrap() = Some(Instant::now());
                            if attempts_left > 1 {
                                retry_queue
                                    .lock()
                                    .unwrap()
                                    .push_back((prompt, attempts_left - 1));
                            } else {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        }
        if succeeded.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let last_error = *last_rate_limit_error.lock().unwrap();
        if let Some(at) = last_error {
            let since = at.elapsed();
            if since < PAUSE_AFTER_RATE_LIMIT {
                tokio::time::sleep(PAUSE_AFTER_RATE_LIMIT - since).await;
            }
        }
    }
    let succeeded = usize::try_from(succeeded.load(Ordering::SeqCst)).unwrap();
    run_report(server, succeeded, start)
}
