//! The deterministic simulation: rate, adaptive and backpressure against simulated servers
//! with a hidden capacity, on tokio's paused clock with fixed seeds.
//!
//! Every scenario prints its figures and checks them against the allowed ranges in
//! `tests/fixtures/sim/NAME.txt` (see `fixture.rs`). Time is measured in windows of one
//! base latency (100ms), about one round trip.

mod client;
mod fixture;
mod server;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use gate_core::adaptive::{Aimd, Gradient, LimitAlgorithm};
use gate_core::rate::Rate;
use gate_core::{Limiter, Retry};
use tokio::time::Instant;

use client::{Client, Plan, Report};
use server::{Mode, Server, SimError};

/// One window: the server's base latency.
const WINDOW: Duration = Duration::from_millis(100);
const JITTER: f64 = 0.2;
const SEED: u64 = 0x5EED_0005;

fn windows(n: u32) -> Duration {
    WINDOW * n
}

/// Requests per second the server can complete at capacity `c`.
fn capacity_rps(c: usize) -> f64 {
    c as f64 / WINDOW.as_secs_f64()
}

fn limiter(algorithm: impl LimitAlgorithm + 'static) -> Arc<Limiter> {
    Arc::new(Limiter::builder().adaptive(algorithm).build().unwrap())
}

fn aimd() -> Aimd {
    Aimd::new()
}

fn gradient() -> Gradient {
    Gradient::new()
}

/// Retries generously, honouring `Retry-After`; `timeout` per attempt if given.
fn policy(timeout: Option<Duration>) -> Retry<SimError> {
    let builder = Retry::builder(20)
        .exponential(WINDOW, windows(20))
        .honor_retry_after();
    match timeout {
        Some(timeout) => builder.timeout(timeout),
        None => builder,
    }
    .build()
    .unwrap()
}

fn plan(offered: f64, duration: Duration, timeout: Option<Duration>) -> Plan {
    Plan {
        offered,
        duration,
        policy: policy(timeout),
        seed: SEED,
        steps: Vec::new(),
        sample_every: WINDOW / 10,
    }
}

/// The refusing server's `Retry-After`: a quarter of a round trip.
const REFUSE: Mode = Mode::Refuse {
    retry_after: Duration::from_millis(25),
};

/// Completed requests by the time the trailing 10-window mean of the limit enters
/// `[low, high]` for good.
fn settled_after(report: &Report, low: f64, high: f64) -> u64 {
    let per_window = (WINDOW.as_nanos() / (WINDOW / 10).as_nanos()) as usize;
    let span = 10 * per_window;
    let points = &report.points;
    let mut settled = points.len();
    for end in (span..=points.len()).rev() {
        let mean = points[end - span..end]
            .iter()
            .map(|p| p.limit as f64)
            .sum::<f64>()
            / span as f64;
        if !(low..=high).contains(&mean) {
            break;
        }
        settled = end - span;
    }
    points
        .get(settled + span - 1)
        .map_or(u64::MAX, |p| p.completed)
}

async fn aimd_refusing(c: usize) -> Vec<(&'static str, f64)> {
    let server = Server::new(REFUSE, c, WINDOW, JITTER, SEED);
    let limiter = limiter(aimd());
    let total = windows(300);
    let report = client::run(
        &server,
        Client::Limited(limiter),
        capacity_rps(c),
        plan(2.0, total, None),
    )
    .await;
    let cf = c as f64;
    let half = total / 2;
    vec![
        ("limit_mean_over_c", report.mean_limit(half, total) / cf),
        (
            "settled_after_over_c",
            settled_after(&report, 0.8 * cf, 1.1 * cf) as f64 / cf,
        ),
        (
            "goodput_over_capacity",
            report.goodput(half, total) / capacity_rps(c),
        ),
        (
            "refused_fraction",
            report.refused as f64 / report.attempts as f64,
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn aimd_on_a_refusing_server_c5() {
    fixture::check("aimd_refusing_c5", &aimd_refusing(5).await);
}

#[tokio::test(start_paused = true)]
async fn aimd_on_a_refusing_server_c20() {
    fixture::check("aimd_refusing_c20", &aimd_refusing(20).await);
}

#[tokio::test(start_paused = true)]
async fn aimd_on_a_refusing_server_c100() {
    fixture::check("aimd_refusing_c100", &aimd_refusing(100).await);
}

/// p99 latency of a server at half load with nobody limiting: the unloaded p99.
async fn unloaded_p99(mode: Mode, c: usize) -> Duration {
    let server = Server::new(mode, c, WINDOW, JITTER, SEED);
    let total = windows(200);
    let report = client::run(
        &server,
        Client::Unlimited,
        capacity_rps(c),
        plan(0.5, total, None),
    )
    .await;
    report.latency(0.99, Duration::ZERO, total)
}

async fn gradient_queueing(c: usize) -> Vec<(&'static str, f64)> {
    let unloaded = unloaded_p99(Mode::Queue, c).await;
    let server = Server::new(Mode::Queue, c, WINDOW, JITTER, SEED);
    let total = windows(400);
    let report = client::run(
        &server,
        Client::Limited(limiter(gradient())),
        capacity_rps(c),
        plan(2.0, total, Some(windows(10))),
    )
    .await;
    let half = total / 2;
    vec![
        (
            "limit_median_over_c",
            report.median_limit(half, total) / c as f64,
        ),
        (
            "p99_over_unloaded_p99",
            report.latency(0.99, half, total).as_secs_f64() / unloaded.as_secs_f64(),
        ),
        (
            "goodput_over_capacity",
            report.goodput(half, total) / capacity_rps(c),
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn gradient_on_a_queueing_server_c20() {
    fixture::check("gradient_queueing_c20", &gradient_queueing(20).await);
}

#[tokio::test(start_paused = true)]
async fn gradient_on_a_queueing_server_c100() {
    fixture::check("gradient_queueing_c100", &gradient_queueing(100).await);
}

/// Capacity C, then C/2 from window 150, then C again from window 300.
async fn step(
    mode: Mode,
    algorithm: impl LimitAlgorithm + 'static,
    timeout: Option<Duration>,
) -> Vec<(&'static str, f64)> {
    let c = 20;
    let server = Server::new(mode, c, WINDOW, JITTER, SEED);
    let (down, up, total) = (windows(150), windows(300), windows(450));
    let mut plan = plan(2.0, total, timeout);
    plan.steps = vec![(down, c / 2), (up, c)];
    let report = client::run(
        &server,
        Client::Limited(limiter(algorithm)),
        capacity_rps(c),
        plan,
    )
    .await;
    let first = |from: Duration, ok: &dyn Fn(usize) -> bool| {
        report
            .points
            .iter()
            .find(|p| p.at >= from && ok(p.limit))
            .map_or(f64::INFINITY, |p| {
                (p.at - from).as_secs_f64() / WINDOW.as_secs_f64()
            })
    };
    let half = c as f64 / 2.0;
    vec![
        (
            "limit_before_over_c",
            report.mean_limit(windows(100), down) / c as f64,
        ),
        ("windows_to_fall", first(down, &|l| l as f64 <= 1.1 * half)),
        (
            "windows_to_recover",
            first(up, &|l| l as f64 >= 0.9 * c as f64),
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn step_change_aimd_on_a_refusing_server() {
    fixture::check("step_aimd_refusing", &step(REFUSE, aimd(), None).await);
}

#[tokio::test(start_paused = true)]
async fn step_change_gradient_on_a_queueing_server() {
    fixture::check(
        "step_gradient_queueing",
        &step(Mode::Queue, gradient(), Some(windows(10))).await,
    );
}

/// 10^4 windows at 1.25x load: the limit must not drift upward.
async fn drift(
    mode: Mode,
    algorithm: impl LimitAlgorithm + 'static,
    timeout: Option<Duration>,
) -> Vec<(&'static str, f64)> {
    let c = 10;
    let server = Server::new(mode, c, WINDOW, JITTER, SEED);
    let total = windows(10_000);
    let report = client::run(
        &server,
        Client::Limited(limiter(algorithm)),
        capacity_rps(c),
        plan(1.25, total, timeout),
    )
    .await;
    let half = total / 2;
    let first = report.mean_limit(Duration::ZERO, half);
    let second = report.mean_limit(half, total);
    vec![
        ("first_half_over_c", first / c as f64),
        ("second_over_first_half", second / first),
    ]
}

#[tokio::test(start_paused = true)]
async fn no_drift_aimd_on_a_refusing_server() {
    fixture::check("drift_aimd_refusing", &drift(REFUSE, aimd(), None).await);
}

#[tokio::test(start_paused = true)]
async fn no_drift_gradient_on_a_queueing_server() {
    fixture::check(
        "drift_gradient_queueing",
        &drift(Mode::Queue, gradient(), Some(windows(10))).await,
    );
}

/// Goodput at `offered` load on a queueing server with a 5-window client timeout: the
/// gradient limiter against no limit at all, in the same harness.
async fn goodput(offered: f64) -> Vec<(&'static str, f64)> {
    let c = 20;
    let timeout = Some(windows(5));
    let total = windows(200);
    let half = total / 2;
    let limited = {
        let server = Server::new(Mode::Queue, c, WINDOW, JITTER, SEED);
        let client = Client::Limited(limiter(gradient()));
        client::run(
            &server,
            client,
            capacity_rps(c),
            plan(offered, total, timeout),
        )
        .await
    };
    let unlimited = {
        let server = Server::new(Mode::Queue, c, WINDOW, JITTER, SEED);
        client::run(
            &server,
            Client::Unlimited,
            capacity_rps(c),
            plan(offered, total, timeout),
        )
        .await
    };
    let refusing = {
        let server = Server::new(REFUSE, c, WINDOW, JITTER, SEED);
        let client = Client::Limited(limiter(aimd()));
        client::run(&server, client, capacity_rps(c), plan(offered, total, None)).await
    };
    vec![
        (
            "gradient_queueing",
            limited.goodput(half, total) / capacity_rps(c),
        ),
        (
            "unlimited_queueing",
            unlimited.goodput(half, total) / capacity_rps(c),
        ),
        (
            "aimd_refusing",
            refusing.goodput(half, total) / capacity_rps(c),
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn goodput_at_twice_capacity() {
    fixture::check("goodput_2x", &goodput(2.0).await);
}

#[tokio::test(start_paused = true)]
async fn goodput_at_three_times_capacity() {
    fixture::check("goodput_3x", &goodput(3.0).await);
}

#[tokio::test(start_paused = true)]
async fn aimd_on_a_hanging_server() {
    let c = 20;
    let server = Server::new(Mode::Hang, c, WINDOW, JITTER, SEED);
    let total = windows(300);
    let report = client::run(
        &server,
        Client::Limited(limiter(aimd())),
        capacity_rps(c),
        plan(2.0, total, Some(windows(5))),
    )
    .await;
    let half = total / 2;
    fixture::check(
        "aimd_hanging_c20",
        &[
            (
                "limit_mean_over_c",
                report.mean_limit(half, total) / c as f64,
            ),
            (
                "goodput_over_capacity",
                report.goodput(half, total) / capacity_rps(c),
            ),
        ],
    );
}

/// The seed's problem: 1,000 calls at once against a server that allows 500 a minute and
/// at most 10 at once, refusing beyond either with 429 and `Retry-After`. Returns the
/// successes, the fraction of attempts refused, the makespan and the server's peak
/// concurrency.
async fn seed(limiter: Limiter) -> (u32, f64, Duration, usize) {
    let latency = Duration::from_secs(1);
    let server = Server::new(
        Mode::Refuse {
            retry_after: Duration::from_secs(1),
        },
        10,
        latency,
        0.3,
        SEED,
    )
    .with_rate(500, Duration::from_secs(60));
    let limiter = Arc::new(limiter);
    let policy = Retry::<SimError>::builder(10)
        .exponential(Duration::from_secs(1), Duration::from_secs(30))
        .honor_retry_after()
        .build()
        .unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (server, limiter) = (Arc::clone(&server), Arc::clone(&limiter));
            tokio::spawn(async move { policy.call(&*limiter, || server.call()).await })
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        succeeded += u32::from(task.await.unwrap().is_ok());
    }
    let makespan = start.elapsed();
    let attempts = server.attempts.load(std::sync::atomic::Ordering::SeqCst) as f64;
    let refused = server.refused.load(std::sync::atomic::Ordering::SeqCst) as f64;
    let peak = server.peak.load(std::sync::atomic::Ordering::SeqCst);
    (succeeded, refused / attempts, makespan, peak)
}

/// The seed's scenario. The client knows the rate (it is documented) but not the
/// concurrency; an oracle that knows both (a fixed limit of 10) runs in the same harness for
/// comparison.
#[tokio::test(start_paused = true)]
async fn the_seed_scenario() {
    let rate: Rate = "500/min".parse().unwrap();
    let adaptive = Limiter::builder()
        .rate(rate)
        .adaptive(aimd())
        .build()
        .unwrap();
    let (succeeded, refused, makespan, peak) = seed(adaptive).await;
    let oracle = Limiter::builder()
        .rate(rate)
        .concurrency(10)
        .build()
        .unwrap();
    let (_, _, oracle_makespan, _) = seed(oracle).await;
    fixture::check(
        "seed",
        &[
            ("succeeded", f64::from(succeeded)),
            ("refused_fraction", refused),
            ("makespan_over_120s", makespan.as_secs_f64() / 120.0),
            (
                "makespan_over_oracle",
                makespan.as_secs_f64() / oracle_makespan.as_secs_f64(),
            ),
            (
                "oracle_makespan_over_120s",
                oracle_makespan.as_secs_f64() / 120.0,
            ),
            ("peak_concurrency", peak as f64),
        ],
    );
}

/// Issue #13's scenario: 1,000 prompts of realistic lengths against an API allowing 500
/// requests and 150,000 tokens a minute; the tokens bind. gate (request rate + token budget
/// + AIMD, reserve the estimate, settle from usage) and the Cookbook's algorithm, given the
/// same limits, in the same run.
#[tokio::test(start_paused = true)]
async fn a_token_quota_binds() {
    let prompts = tokens::prompts(1000, SEED);
    let server = tokens::QuotaServer::new(500, 150_000);
    let ideal = server.ideal_makespan(&prompts);
    let gate = tokens::gate(&server, &prompts).await;
    let server = tokens::QuotaServer::new(500, 150_000);
    let cookbook = tokens::cookbook(&server, &prompts, 500.0, 150_000.0).await;
    let server = tokens::QuotaServer::new(500, 150_000);
    let headroom = tokens::cookbook(&server, &prompts, 375.0, 112_500.0).await;
    let over = |run: &tokens::Run| run.makespan.as_secs_f64() / ideal.as_secs_f64();
    fixture::check(
        "token_quota",
        &[
            ("succeeded", gate.succeeded as f64),
            ("refused_fraction", gate.refused_fraction),
            ("makespan_over_ideal", over(&gate)),
            ("ideal_makespan_s", ideal.as_secs_f64()),
            ("cookbook_succeeded", cookbook.succeeded as f64),
            ("cookbook_refused_fraction", cookbook.refused_fraction),
            ("cookbook_makespan_over_ideal", over(&cookbook)),
            ("cookbook75_succeeded", headroom.succeeded as f64),
            ("cookbook75_refused_fraction", headroom.refused_fraction),
            ("cookbook75_makespan_over_ideal", over(&headroom)),
        ],
    );
}
