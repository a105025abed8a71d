//! A simulated server with a hidden capacity, on tokio's paused clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::{Backpressure, Gate};
use tokio::time::Instant;

/// What the server does beyond its capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Refuses at once with a 429 carrying this `Retry-After`.
    Refuse { retry_after: Duration },
    /// Queues (first in, first out) for one of `capacity` workers: a latency knee. Work
    /// for callers that gave up is still done.
    Queue,
    /// Never answers: the caller's timeout is the only way out.
    Hang,
}

/// An error the simulated server returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SimError {
    /// 429 Too Many Requests.
    TooMany { retry_after: Duration },
}

impl Backpressure for SimError {
    fn is_overload(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            SimError::TooMany { retry_after } => Some(*retry_after),
        }
    }
}

/// splitmix64: a small, seeded, deterministic generator.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
pub(crate) struct Server {
    mode: Mode,
    base: Duration,
    jitter: f64,
    capacity: AtomicUsize,
    /// Requests being served (refuse and hang modes).
    running: AtomicUsize,
    /// Workers (queue mode).
    workers: Arc<Gate>,
    /// A sliding-window rate rule: at most `.0` accepted per `.1`, refusing beyond.
    rate: Option<(usize, Duration)>,
    accepted: Mutex<VecDeque<Instant>>,
    rng: Mutex<Rng>,
    pub(crate) attempts: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Most requests ever being served at once (refuse mode).
    pub(crate) peak: AtomicUsize,
}

impl Server {
    pub(crate) fn new(
        mode: Mode,
        capacity: usize,
        base: Duration,
        jitter: f64,
        seed: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            mode,
            base,
            jitter,
            capacity: AtomicUsize::new(capacity),
            running: AtomicUsize::new(0),
            workers: Arc::new(Gate::new(capacity)),
            rate: None,
            accepted: Mutex::new(VecDeque::new()),
            rng: Mutex::new(Rng::new(seed)),
            attempts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Adds a sliding-window rule: at most `count` accepted requests per `period`.
    pub(crate) fn with_rate(mut self: Arc<Self>, count: usize, period: Duration) -> Arc<Self> {
        Arc::get_mut(&mut self).expect("not shared yet").rate = Some((count, period));
        self
    }

    pub(crate) fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::SeqCst);
        self.workers.set_limit(capacity).unwrap();
    }

    /// One base latency with jitter: uniform in `base × [1 - jitter, 1 + jitter]`.
    pub(crate) fn service_time(&self) -> Duration {
        let u = self.rng.lock().unwrap().unit();
        self.base.mul_f64(1.0 - self.jitter + 2.0 * self.jitter * u)
    }

    fn refuse(&self, retry_after: Duration) -> Result<(), SimError> {
        self.refused.fetch_add(1, Ordering::SeqCst);
        Err(SimError::TooMany { retry_after })
    }

    /// Handles one request. In queue mode the work runs in a task of its own, so a caller
    /// that gives up does not stop it.
    pub(crate) async fn call(self: &Arc<Self>) -> Result<(), SimError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if let Some((count, period)) = self.rate {
            let now = Instant::now();
            let mut accepted = self.accepted.lock().unwrap();
            while accepted.front().is_some_and(|t| *t + period <= now) {
                accepted.pop_front();
            }
            if accepted.len() >= count {
                let retry_after = *accepted.front().unwrap() + period - now;
                drop(accepted);
                return self.refuse(retry_after);
            }
            accepted.push_back(now);
        }
        match self.mode {
            Mode::Refuse { retry_after } => {
                let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                let _guard = Leave(&self.running);
                if running > self.capacity.load(Ordering::SeqCst) {
                    return self.refuse(retry_after);
                }
                self.peak.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(self.service_time()).await;
                Ok(())
            }
            Mode::Hang => {
                let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                let _guard = Leave(&self.running);
                if running > self.capacity.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(self.service_time()).await;
                Ok(())
            }
            Mode::Queue => {
                let (done, wait) = tokio::sync::oneshot::channel();
                let server = Arc::clone(self);
                tokio::spawn(async move {
                    let _worker = server.workers.acquire().await.unwrap();
                    tokio::time::sleep(server.service_time()).await;
                    let _ = done.send(());
                });
                wait.await.expect("the server finishes what it starts");
                Ok(())
            }
        }
    }
}

/// Decrements a counter when dropped (also when the caller gives up).
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
