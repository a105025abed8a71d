//! `#[gated]` over a `Limiter`, on paused time: `rate = "..."` (and `burst`), adaptive
//! concurrency (`adaptive = "aimd"`), a `limiter = PATH` shared by two functions, and how
//! each attempt's outcome reaches the limiter (`backpressure = true`, timeouts, cancellation).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::rate::Rate;
use gate_core::{Backpressure, Elapsed, Limiter, gated};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod support;
use support::InFlight;

/// Admission times, in order.
struct Log(Mutex<Vec<Instant>>);

impl Log {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn record(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }

    fn take(&self) -> Vec<Instant> {
        let mut times = std::mem::take(&mut *self.0.lock().unwrap());
        times.sort();
        times
    }
}

/// Checks the rate guarantee: in every window from one admission to a later one, of length
/// `T`, at most `burst + count × T / period` admissions (rounded down).
fn assert_within_rate(times: &[Instant], count: u32, period: Duration, burst: u32) {
    for (i, start) in times.iter().enumerate() {
        for (j, end) in times.iter().enumerate().skip(i) {
            let window = *end - *start;
            let allowed =
                u128::from(burst) + u128::from(count) * window.as_nanos() / period.as_nanos();
            let admitted = (j - i + 1) as u128;
            assert!(
                admitted <= allowed,
                "{admitted} admissions within {window:?}, at most {allowed} allowed"
            );
        }
    }
}

static TICKS: Log = Log::new();

#[gated(rate = "10/s")]
async fn ticked(i: u32) -> u32 {
    TICKS.record();
    i
}

#[tokio::test(start_paused = true)]
async fn a_rate_spaces_calls_as_the_rate_implies() {
    let start = Instant::now();
    for i in 0..21 {
        assert_eq!(ticked(i).await, i);
    }
    // The first call at once, then one every 100 ms.
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let times = TICKS.take();
    assert_eq!(times.len(), 21);
    assert_within_rate(&times, 10, Duration::from_secs(1), 1);
}

static BURSTS: Log = Log::new();

#[gated(rate = "100/10s", burst = 5, limit = 3)]
async fn bursty() {
    BURSTS.record();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_lets_a_few_through_at_once_and_no_window_admits_more_than_allowed() {
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..50 {
        calls.spawn(bursty());
    }
    calls.join_all().await;
    let times = BURSTS.take();
    assert_eq!(times.len(), 50);
    // `limit = 3` holds the first burst to three at once; then a cell every 100 ms.
    assert_eq!(times.iter().filter(|t| **t == start).count(), 3);
    assert_within_rate(&times, 100, Duration::from_secs(10), 5);
    // 50 calls: 5 from the burst, then 45 cells 100 ms apart.
    let last = *times.last().unwrap() - start;
    assert!(
        last >= Duration::from_millis(4_500) && last < Duration::from_millis(4_600),
        "{last:?}"
    );
}

/// A server that refuses (with an overload error) any request beyond its capacity.
struct Server {
    capacity: AtomicUsize,
    in_flight: InFlight,
    refused: AtomicUsize,
}

#[derive(Debug, PartialEq)]
enum ApiError {
    Overloaded { retry_after: Option<Duration> },
    TimedOut,
}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        matches!(self, ApiError::Overloaded { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Overloaded { retry_after } => *retry_after,
            ApiError::TimedOut => None,
        }
    }
}

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        ApiError::TimedOut
    }
}

impl Server {
    const fn new(capacity: usize) -> Self {
        Self {
            capacity: AtomicUsize::new(capacity),
            in_flight: InFlight::new(),
            refused: AtomicUsize::new(0),
        }
    }

    async fn handle(&self) -> Result<(), ApiError> {
        let now = self.in_flight.enter();
        let result = if now > self.capacity.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::Overloaded { retry_after: None })
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        };
        self.in_flight.leave();
        result
    }

    /// The most requests seen at once since the last call.
    fn take_peak(&self) -> usize {
        self.in_flight.take_peak()
    }
}

static AIMD_SERVER: Server = Server::new(4);

#[gated(adaptive = "aimd", limit = 20, backpressure = true)]
async fn adaptive_call() -> Result<(), ApiError> {
    AIMD_SERVER.handle().await
}

/// Sends `n` calls at once and waits for all of them.
async fn wave(n: usize) -> usize {
    let mut calls = JoinSet::new();
    for _ in 0..n {
        calls.spawn(adaptive_call());
    }
    let results = calls.join_all().await;
    results.iter().filter(|r| r.is_err()).count()
}

#[tokio::test(start_paused = true)]
async fn an_aimd_limit_shrinks_on_overload_errors_and_grows_back() {
    // It starts at 10, above the server's capacity of 4: refusals cut it.
    assert!(wave(300).await > 0, "the server must refuse at first");
    AIMD_SERVER.take_peak();
    let refused_before = AIMD_SERVER.refused.load(Ordering::SeqCst);
    wave(200).await;
    let peak = AIMD_SERVER.take_peak();
    assert!(
        peak < 10,
        "the limit fell below its initial 10 towards the capacity of 4, got {peak}"
    );
    let refused = AIMD_SERVER.refused.load(Ordering::SeqCst) - refused_before;
    assert!(
        refused <= 20,
        "probing near the capacity costs few refusals, got {refused} of 200"
    );

    // The server recovers: the limit grows back, up to `limit = 20` and no further.
    AIMD_SERVER.capacity.store(1_000, Ordering::SeqCst);
    let mut peaks = Vec::new();
    while peaks.last() != Some(&20) {
        assert!(peaks.len() < 30, "did not grow back to 20: {peaks:?}");
        assert_eq!(wave(200).await, 0);
        peaks.push(AIMD_SERVER.take_peak());
    }
    assert!(peaks.is_sorted(), "it only grows: {peaks:?}");
    assert!(peaks.iter().all(|p| *p <= 20), "never beyond 20: {peaks:?}");
}

/// Requests running at once through the shared limiter, from either function.
static SHARED_SEEN: InFlight = InFlight::new();

static SHARED: LazyLock<Limiter> = LazyLock::new(|| {
    Limiter::builder()
        .concurrency(2)
        .rate(Rate::per_second(10))
        .build()
        .unwrap()
});

async fn visit() {
    SHARED_SEEN.visit(Duration::from_millis(150)).await;
}

#[gated(limiter = SHARED)]
async fn first_user() {
    visit().await;
}

#[gated(limiter = SHARED, retry = 1)]
async fn second_user(label: &str) -> Result<&str, ApiError> {
    visit().await;
    Ok(label)
}

#[tokio::test(start_paused = true)]
async fn a_shared_limiter_caps_two_functions_together() {
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for i in 0..40 {
        if i % 2 == 0 {
            calls.spawn(first_user());
        } else {
            calls.spawn(async {
                assert_eq!(second_user("x").await, Ok("x"));
            });
        }
    }
    calls.join_all().await;
    assert_eq!(SHARED_SEEN.peak(), 2, "two at once, together");
    assert_eq!(SHARED.stats().admitted, 40);
    // 40 admissions at 10 a second, together: the last starts 3.9 s in.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3_900 + 150) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

static PAUSABLE: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(10));

static THROTTLE: AtomicBool = AtomicBool::new(true);

#[gated(limiter = PAUSABLE, backpressure = true)]
async fn throttled() -> Result<(), ApiError> {
    if THROTTLE.swap(false, Ordering::SeqCst) {
        return Err(ApiError::Overloaded {
            retry_after: Some(Duration::from_secs(5)),
        });
    }
    Ok(())
}

#[gated(limiter = PAUSABLE)]
async fn bystander() -> Instant {
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn an_overload_error_pauses_the_shared_limiter_for_its_retry_after() {
    let start = Instant::now();
    assert!(throttled().await.is_err());
    assert_eq!(
        PAUSABLE.paused_until(),
        Some(start + Duration::from_secs(5))
    );
    // Another function sharing the limiter waits out the pause.
    assert_eq!(bystander().await - start, Duration::from_secs(5));
    assert_eq!(throttled().await, Ok(()));
}

static UNREPORTED: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(10));

#[gated(limiter = UNREPORTED, retry = 1)]
async fn overload_not_declared() -> Result<(), ApiError> {
    Err(ApiError::Overloaded {
        retry_after: Some(Duration::from_secs(5)),
    })
}

#[tokio::test(start_paused = true)]
async fn without_backpressure_an_error_is_only_a_failure() {
    let start = Instant::now();
    assert!(overload_not_declared().await.is_err());
    assert_eq!(UNREPORTED.paused_until(), None);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the retry did not wait either"
    );
}

static BACKING_OFF: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(10));

#[gated(limiter = BACKING_OFF, retry = 1, backpressure = true)]
async fn retried_after_overload(calls: &AtomicUsize) -> Result<usize, ApiError> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 1 {
        return Err(ApiError::Overloaded {
            retry_after: Some(Duration::from_secs(3)),
        });
    }
    Ok(n)
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_out_the_retry_after_it_reported() {
    let start = Instant::now();
    let calls = AtomicUsize::new(0);
    assert_eq!(retried_after_overload(&calls).await, Ok(2));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

static SHRINKING: LazyLock<Limiter> = LazyLock::new(|| {
    Limiter::builder()
        .adaptive(Aimd::builder().initial(8).build().unwrap())
        .build()
        .unwrap()
});

#[gated(limiter = SHRINKING, timeout = "1s")]
async fn slow(delay: Duration) -> Result<(), ApiError> {
    tokio::time::sleep(delay).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_reported_and_a_cancelled_one_is_not() {
    assert_eq!(SHRINKING.limit(), Some(8));
    // Cancelled by its caller mid-attempt: says nothing about the server.
    let cancelled = tokio::time::timeout(Duration::from_millis(100), slow(Duration::from_secs(60)));
    assert!(cancelled.await.is_err());
    assert_eq!(SHRINKING.limit(), Some(8));
    assert_eq!(
        SHRINKING.gate().available_permits(),
        8,
        "the permit came back"
    );
    // Timed out by `timeout = "1s"`: a drop, which AIMD halves the limit for (at most).
    assert_eq!(slow(Duration::from_secs(60)).await, Err(ApiError::TimedOut));
    assert_eq!(SHRINKING.limit(), Some(4));
    assert_eq!(slow(Duration::ZERO).await, Ok(()));
}
