//! Drives a simulated server with open-loop arrivals through a limiter, and records what
//! happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::{Limiter, Retry, Unlimited};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::server::{Rng, Server, SimError};

/// Who admits the client's attempts.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// No limit at all: the baseline that should collapse.
    Unlimited,
    Limited(Arc<Limiter>),
}

/// One run: arrivals at `offered` × the server's capacity, for `duration`.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) offered: f64,
    pub(crate) duration: Duration,
    pub(crate) policy: Retry<SimError>,
    pub(crate) seed: u64,
    /// Capacity changes: at this time, set the capacity to this.
    pub(crate) steps: Vec<(Duration, usize)>,
    pub(crate) sample_every: Duration,
}

/// A sample of the client's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    pub(crate) at: Duration,
    pub(crate) limit: usize,
    /// Requests completed successfully so far.
    pub(crate) completed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) points: Vec<Point>,
    /// Successful attempts: when they finished and how long they took.
    pub(crate) successes: Vec<(Duration, Duration)>,
    pub(crate) attempts: u64,
    pub(crate) refused: u64,
}

impl Report {
    /// Mean of the sampled limit over `[from, to)`.
    pub(crate) fn mean_limit(&self, from: Duration, to: Duration) -> f64 {
        let limits: Vec<f64> = self
            .points
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .map(|p| p.limit as f64)
            .collect();
        limits.iter().sum::<f64>() / limits.len().max(1) as f64
    }

    /// Median of the sampled limit over `[from, to)`.
    pub(crate) fn median_limit(&self, from: Duration, to: Duration) -> f64 {
        let mut limits: Vec<usize> = self
            .points
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .map(|p| p.limit)
            .collect();
        limits.sort_unstable();
        limits.get(limits.len() / 2).copied().unwrap_or(0) as f64
    }

    /// Successful attempts per second that finished within `[from, to)`.
    pub(crate) fn goodput(&self, from: Duration, to: Duration) -> f64 {
        let n = self
            .successes
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    }

    /// A quantile of the latency of successful attempts that finished within `[from, to)`.
    pub(crate) fn latency(&self, q: f64, from: Duration, to: Duration) -> Duration {
        let mut latencies: Vec<Duration> = self
            .successes
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, latency)| *latency)
            .collect();
        latencies.sort_unstable();
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(i).copied().unwrap_or_default()
    }
}

/// Runs open-loop arrivals against `server` and samples the client every `sample_every`.
/// Requests still waiting when `duration` ends are cancelled.
pub(crate) async fn run(
    server: &Arc<Server>,
    client: Client,
    capacity_rps: f64,
    plan: Plan,
) -> Report {
    let start = Instant::now();
    let end = start + plan.duration;
    let completed = Arc::new(AtomicU64::new(0));
    let successes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();

    // Capacity steps.
    for (at, capacity) in plan.steps.clone() {
        let server = Arc::clone(server);
        tasks.spawn(async move {
            tokio::time::sleep_until(start + at).await;
            server.set_capacity(capacity);
        });
    }

    // The sampler.
    let points = Arc::new(Mutex::new(Vec::new()));
    {
        let (client, completed, points) =
            (client.clone(), Arc::clone(&completed), Arc::clone(&points));
        let every = plan.sample_every;
        tasks.spawn(async move {
            let mut at = start;
            while at < end {
                let limit = match &client {
                    Client::Unlimited => 0,
                    Client::Limited(limiter) => limiter.limit().unwrap_or(0),
                };
                points.lock().unwrap().push(Point {
                    at: at - start,
                    limit,
                    completed: completed.load(Ordering::SeqCst),
                });
                at += every;
                tokio::time::sleep_until(at).await;
            }
        });
    }

    // Arrivals: a Poisson process at `offered × capacity`.
    let rate = plan.offered * capacity_rps;
    let mut rng = Rng::new(plan.seed);
    let mut at = start;
    loop {
        let gap = -(1.0 - rng.unit()).ln() / rate;
        at += Duration::from_secs_f64(gap);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let (server, client, completed, successes) = (
            Arc::clone(server),
            client.clone(),
            Arc::clone(&completed),
            Arc::clone(&successes),
        );
        let policy = plan.policy;
        tasks.spawn(async move {
            let op = || {
                let (server, successes) = (Arc::clone(&server), Arc::clone(&successes));
                async move {
                    let began = Instant::now();
                    server.call().await?;
                    let now = Instant::now();
                    successes.lock().unwrap().push((now - start, now - began));
                    Ok::<(), SimError>(())
                }
            };
            let result = match &client {
                Client::Unlimited => policy.call(&Unlimited, op).await,
                Client::Limited(limiter) => policy.call(&**limiter, op).await,
            };
            if result.is_ok() {
                completed.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    tokio::time::sleep_until(end).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let successes = std::mem::take(&mut *successes.lock().unwrap());
    let points = std::mem::take(&mut *points.lock().unwrap());
    Report {
        points,
        successes,
        attempts: server.attempts.load(Ordering::SeqCst),
        refused: server.refused.load(Ordering::SeqCst),
    }
}
