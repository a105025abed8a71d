//! [`LimiterBuilder`]: which limits a [`Limiter`] enforces.

use std::sync::Mutex;
use std::time::Duration;

use super::pause::Pause;
use super::{Adaptive, Limiter};
use crate::adaptive::LimitAlgorithm;
use crate::rate::{Clock, LimiterClock, Rate, RateLimit};
use crate::sync::{AtomicU64, AtomicUsize};
use crate::{Gate, LimitError, WaitLimits};

/// Configures a [`Limiter`], from [`Limiter::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct LimiterBuilder {
    concurrency: Option<usize>,
    rate: Option<Rate>,
    tokens: Option<Rate>,
    clock: Option<LimiterClock>,
    adaptive: Option<Box<dyn LimitAlgorithm>>,
    wait_limits: WaitLimits,
    max_pause: Duration,
    name: Option<&'static str>,
}

impl LimiterBuilder {
    pub(super) fn new() -> Self {
        Self {
            concurrency: None,
            rate: None,
            tokens: None,
            clock: None,
            adaptive: None,
            wait_limits: WaitLimits::UNBOUNDED,
            max_pause: Limiter::DEFAULT_MAX_PAUSE,
            name: None,
        }
    }

    /// Names the limiter: the `gate.name` of its spans and metrics, as
    /// [`GateBuilder::name`](crate::GateBuilder::name) names a gate (a `&'static str`,
    /// free to copy on the hot path). See [`Limiter::name`].
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// At most `limit` attempts run at once. Replaces an adaptive limit set before.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self.adaptive = None;
        self
    }

    /// At most `rate` attempts start per period (see [`Rate`] for the guarantee).
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// A token budget beside the request rate: at most `rate` tokens are spent per period,
    /// counted as [`Limiter::acquire_tokens`] reserves them and
    /// [`LimiterPermit::settle`](crate::LimiterPermit::settle) corrects them (an LLM API's
    /// tokens per minute).
    ///
    /// The bucket holds the rate's [burst](Rate::burst) if one above 1 was given, and
    /// otherwise the whole period's count: `"180000/min"` is a bucket of 180,000 tokens
    /// that refills at 3,000 a second, as LLM providers define a quota of tokens per
    /// minute. Give a smaller burst (`"180000/min (burst 30000)"`) to start slower than a
    /// full minute's worth. A reservation above the bucket's size can never be admitted
    /// and fails at once with [`AcquireError::TooLarge`](crate::AcquireError::TooLarge).
    ///
    /// ```
    /// use gate_core::Limiter;
    ///
    /// let limiter = Limiter::builder()
    ///     .rate("500/min".parse().unwrap())
    ///     .tokens("180000/min".parse().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(limiter.token_limit().unwrap().capacity(), 180_000);
    /// ```
    pub fn tokens(mut self, rate: Rate) -> Self {
        self.tokens = Some(rate.token_bucket());
        self
    }

    /// The clock the rate limit and an adaptive limit's latencies read (tokio's unless
    /// set): for instance a `QuantaClock` (`gate_core::rate::QuantaClock`, with the `quanta`
    /// feature), where the check is hot and tests do not pause time. Waits for a cell still
    /// sleep on tokio's timer, and pauses still read tokio's clock.
    ///
    /// ```
    /// use gate_core::Limiter;
    /// use gate_core::rate::{Clock, Rate};
    ///
    /// /// A clock for a simulation outside tokio: time moves only when told to.
    /// struct Manual(std::sync::atomic::AtomicU64);
    ///
    /// impl Clock for Manual {
    ///     fn now_nanos(&self) -> u64 {
    ///         self.0.load(std::sync::atomic::Ordering::Relaxed)
    ///     }
    /// }
    ///
    /// let limiter = Limiter::builder()
    ///     .rate(Rate::per_second(1))
    ///     .clock(Manual(0.into()))
    ///     .build()
    ///     .unwrap();
    /// assert!(!limiter.rate_limit().unwrap().clock().is_tokio());
    /// assert!(limiter.try_acquire_uncontended().is_some());
    /// assert!(limiter.try_acquire_uncontended().is_none(), "the manual clock stood still");
    /// ```
    pub fn clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.clock = Some(LimiterClock::from_clock(clock));
        self
    }

    /// A concurrency limit that `algorithm` adjusts from how attempts end, starting at its
    /// [initial limit](LimitAlgorithm::initial_limit). Replaces a fixed limit set before.
    ///
    /// ```
    /// use gate_core::Limiter;
    /// use gate_core::adaptive::Aimd;
    ///
    /// let limiter = Limiter::builder()
    ///     .rate("500/min".parse().unwrap())
    ///     .adaptive(Aimd::new())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(limiter.limit(), Some(10));
    /// ```
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm + 'static) -> Self {
        self.adaptive = Some(Box::new(algorithm));
        self.concurrency = None;
        self
    }

    /// The longest a caller of [`Limiter::acquire`] waits in all (for a pause to end, for a
    /// concurrency permit and for a rate cell) before failing with
    /// [`AcquireError::TimedOut`](crate::AcquireError::TimedOut); zero refuses at once a
    /// caller who cannot be admitted at once. See [`Limiter::acquire_with`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait_limits.max_wait = Some(max_wait);
        self
    }

    /// The most callers that may queue for a concurrency permit; the next one fails at once
    /// with [`AcquireError::QueueFull`](crate::AcquireError::QueueFull).
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.wait_limits.max_waiters = max_waiters;
        self
    }

    /// The longest the limiter pauses for a server's `Retry-After` (or for
    /// [`Limiter::pause_for`] and [`Limiter::pause_until`]):
    /// [60 s](Limiter::DEFAULT_MAX_PAUSE) unless set. A longer hint pauses for `max_pause`
    /// only; see [Server hints are capped](Limiter#server-hints-are-capped). Zero turns
    /// pauses off; `Duration::MAX` trusts every hint.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::Limiter;
    ///
    /// // A batch job that would rather sleep out a long quota reset than fail.
    /// let limiter = Limiter::builder()
    ///     .concurrency(4)
    ///     .max_pause(Duration::from_secs(15 * 60))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(limiter.max_pause(), Duration::from_secs(900));
    /// ```
    pub fn max_pause(mut self, max_pause: Duration) -> Self {
        self.max_pause = max_pause;
        self
    }

    /// Builds the limiter, or fails if a concurrency limit exceeds
    /// [`Gate::MAX_PERMITS`](crate::Gate::MAX_PERMITS).
    pub fn build(self) -> Result<Limiter, LimitError> {
        let limit = match (&self.adaptive, self.concurrency) {
            (Some(algorithm), _) => Some(algorithm.initial_limit()),
            (None, limit) => limit,
        };
        let mut gate = Gate::builder(limit.unwrap_or(Gate::MAX_PERMITS));
        if let Some(max_wait) = self.wait_limits.max_wait {
            gate = gate.max_wait(max_wait);
        }
        if let Some(name) = self.name {
            gate = gate.name(name);
        }
        let gate = gate.max_waiters(self.wait_limits.max_waiters).build()?;
        let clock = self.clock.unwrap_or_else(LimiterClock::tokio);
        let adaptive = self.adaptive.map(|algorithm| Adaptive {
            clock: algorithm.wants_latency().then(|| clock.clone()),
            skips_successes_with_room: !algorithm.learns_from_successes_with_room(),
            skipped: AtomicUsize::new(0),
            skipped_wanted: AtomicUsize::new(algorithm.successes_with_room_wanted()),
            limit: AtomicUsize::new(gate.limit()),
            held_waiting: AtomicUsize::new(0),
            algorithm: Mutex::new(algorithm),
        });
        Ok(Limiter {
            gate,
            limited: limit.is_some(),
            rate: self
                .rate
                .map(|rate| RateLimit::with_clock(rate, clock.clone())),
            tokens: self.tokens.map(|rate| RateLimit::with_clock(rate, clock)),
            pause: Pause::new(),
            max_pause: self.max_pause,
            wait_limits: self.wait_limits,
            adaptive,
            pushback: AtomicU64::new(0),
        })
    }
}
