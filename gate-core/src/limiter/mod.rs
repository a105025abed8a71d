//! [`Limiter`]: a concurrency limit, a rate limit, or both, with a shared pause for server
//! backpressure and an optional adaptive limit.

mod acquire;
mod builder;
#[cfg(feature = "http")]
mod observe;
mod pause;
mod permit;

pub use acquire::{LimiterAcquire, LimiterAcquireOwned};
pub use builder::LimiterBuilder;
pub use permit::{LimiterPermit, OwnedLimiterPermit};

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::adaptive::{LimitAlgorithm, Sample};
use crate::gate::raw::RawGate;
use crate::rate::{Booking, Clock, LimiterClock, Rate, RateLimit};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use crate::{AcquireError, Gate, Outcome, Stats, WaitLimits};
pub(crate) use pause::Pause;
use permit::Admitted;

/// What a caller of a limited API holds: a concurrency limit, a rate limit, or both, plus a
/// pause shared by everyone behind it when the server pushes back.
///
/// - **Concurrency** is a [`Gate`]: fair (first in, first out), cancel-safe, resizable.
///   With [`adaptive`](LimiterBuilder::adaptive) an algorithm resizes it from how attempts
///   end, through [`Gate::set_limit`], so permits are never lost or duplicated.
/// - **Rate** is a [`RateLimit`] (GCRA): in every window of length `T`, at most
///   `burst + rate × T` attempts start.
/// - **Tokens** (an LLM API's tokens per minute) are a second, weighted [`RateLimit`]:
///   each attempt reserves its estimate on admission ([`acquire_tokens`](Self::acquire_tokens))
///   and [settles](LimiterPermit::settle) it with what the response reports it used.
/// - **Backpressure.** When an attempt ends in an overload signal carrying `Retry-After`
///   (reported by [`Retry::call`](crate::Retry::call) for a policy that
///   [honours it](crate::RetryBuilder::honor_retry_after), or by
///   [`LimiterPermit::finish`]), the limiter pauses new admissions *for every caller sharing
///   it* until then. Callers already waiting are not failed: they keep waiting.
///
/// # Server hints are capped
///
/// A `Retry-After` comes from the network and may say anything: a typo of a million
/// seconds, a date in 2099, `u64::MAX`. A limiter never pauses for longer than its
/// [`max_pause`](LimiterBuilder::max_pause), [60 s](Self::DEFAULT_MAX_PAUSE) unless set:
/// a hint above it pauses for the cap. This holds for every pause, from an [`Outcome`] or
/// from [`pause_for`](Self::pause_for) and [`pause_until`](Self::pause_until), and for any
/// `Duration`, `Duration::MAX` included (nothing overflows or panics). The numbers are
/// monotone: a longer hint never pauses for less than a shorter one.
///
/// A [`Retry`](crate::Retry) policy caps hints in the same way, at its own
/// [`max_retry_after`](crate::RetryBuilder::max_retry_after), and ends the call at once on a
/// hint above it rather than sleeping through it.
///
/// # Order of admission
///
/// A caller (1) waits out any pause, (2) queues for a concurrency permit, (3) waits out any
/// pause that began while it queued, then (4) books the next rate cell and sleeps until it is
/// due, and (5) with a [token budget](LimiterBuilder::tokens), books its estimate of tokens
/// and sleeps until they are due; if a pause began meanwhile, it gives the tokens back,
/// waits the pause out and books afresh. The rate cell
/// comes last so that the rate guarantee holds for the moments attempts actually start: a
/// cell taken earlier and held while queueing for a permit would let cells bank up and
/// release as a burst. Only attempts past step 4 count as running for an adaptive limit, so
/// time spent waiting for the rate never looks like load.
///
/// # Examples
///
/// The seed's problem: 1,000 calls to an API that allows 500 a minute and whose safe
/// concurrency nobody knows.
///
/// ```
/// use std::time::Duration;
/// use gate_core::adaptive::Aimd;
/// use gate_core::{Backpressure, Limiter, Retry};
///
/// #[derive(Debug)]
/// struct TooManyRequests(Duration);
///
/// impl Backpressure for TooManyRequests {
///     fn is_overload(&self) -> bool {
///         true
///     }
///     fn retry_after(&self) -> Option<Duration> {
///         Some(self.0)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let api = Limiter::builder()
///     .rate("500/min".parse().unwrap())
///     .adaptive(Aimd::new())
///     .build()
///     .unwrap();
/// let policy = Retry::<TooManyRequests>::builder(5)
///     .exponential(Duration::from_millis(100), Duration::from_secs(10))
///     .honor_retry_after()
///     .build()
///     .unwrap();
/// let start = tokio::time::Instant::now();
/// for id in 0..10u32 {
///     let reply = policy.call(&api, || async move { Ok::<_, TooManyRequests>(id) }).await;
///     assert_eq!(reply.unwrap(), id);
/// }
/// // Ten calls at 500 a minute: one every 120ms.
/// assert_eq!(start.elapsed(), Duration::from_millis(1080));
/// # }
/// ```
///
/// A `static` limiter is built on first use:
///
/// ```
/// use std::sync::LazyLock;
/// use gate_core::Limiter;
/// use gate_core::rate::Rate;
///
/// static GITHUB: LazyLock<Limiter> = LazyLock::new(|| {
///     Limiter::builder().concurrency(8).rate(Rate::per_hour(5_000)).build().unwrap()
/// });
/// # assert_eq!(GITHUB.limit(), Some(8));
/// ```
// Laid out for a check without waiting: the words it reads (the pause, the rate limit's
// state, arithmetic and clock) come first, within the first 128 bytes, a pair of cache
// lines that x86 fetches together; the adaptive part next; the gate, whose fast pool is
// aligned to 128 bytes, last, so that the pool starts a pair of its own. A keyed limiter's
// check then reads 5 cache lines of a key's limiter rather than 8.
// `hot_words_lead_the_limiter` pins the order.
#[repr(C)]
pub struct Limiter {
    pause: Pause,
    rate: Option<RateLimit<LimiterClock>>,
    adaptive: Option<Adaptive>,
    /// The token budget: weighted cells, reserved on admission and settled after.
    tokens: Option<RateLimit<LimiterClock>>,
    /// The longest pause any hint may cause.
    max_pause: Duration,
    /// The bounds on waiting of [`acquire`](Self::acquire).
    wait_limits: WaitLimits,
    /// Attempts reported as overloaded (server pushback), for metrics: counted only on
    /// that rare path.
    pushback: AtomicU64,
    /// Whether the gate limits anything (otherwise it is at `Gate::MAX_PERMITS`).
    limited: bool,
    gate: Gate,
}

/// The adaptive part of a limiter: the algorithm and what it needs to know.
///
/// Attempts running are not counted as such: that would cost two atomic read-modify-writes
/// per attempt. They are the gate's permits in use (which the lock-free acquire reports for
/// free) less those held by callers still waiting for a rate cell or a pause, which only
/// the waiting path counts.
struct Adaptive {
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    /// The limit the algorithm last set, mirrored so admission need not lock the gate.
    limit: AtomicUsize,
    /// Callers holding a permit while they wait for a rate cell or a pause to end.
    held_waiting: AtomicUsize,
    /// Where latencies are read, if the algorithm wants them.
    clock: Option<LimiterClock>,
    /// Whether successes with room are only counted, in `skipped`, not passed on.
    skips_successes_with_room: bool,
    /// Successes with room counted since the last sample passed on.
    skipped: AtomicUsize,
    /// How many of them the algorithm still wants counted; past that, they are not.
    skipped_wanted: AtomicUsize,
}

impl Adaptive {
    /// Counts the caller as holding a permit while waiting, until the guard drops.
    fn hold_waiting(&self) -> HeldWaiting<'_> {
        self.held_waiting.fetch_add(1, Ordering::AcqRel);
        HeldWaiting(&self.held_waiting)
    }

    /// Learns from an attempt's end. A success with room, which the algorithm only counts,
    /// costs at most one atomic add (none once the algorithm has all it wants counted) and
    /// stays inline; everything else goes through the lock.
    #[inline]
    fn report(&self, admitted: &Admitted, outcome: Outcome, gate: &Gate) {
        // `Sample::is_success_with_room`, before the sample is built.
        if self.skips_successes_with_room
            && outcome == Outcome::Success
            && admitted.in_flight < admitted.limit
        {
            if self.skipped.load(Ordering::Relaxed) < self.skipped_wanted.load(Ordering::Relaxed) {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.record(admitted, outcome, gate);
    }

    #[inline(never)]
    fn record(&self, admitted: &Admitted, outcome: Outcome, gate: &Gate) {
        let latency = self.clock.as_ref().map_or(Duration::ZERO, |clock| {
            Duration::from_nanos(clock.now_nanos().saturating_sub(admitted.start))
        });
        let sample = Sample::new(outcome, latency, admitted.in_flight, admitted.limit);
        let mut algorithm = self
            .algorithm
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let skipped = match self.skipped.load(Ordering::Relaxed) {
            0 => 0,
            _ => self.skipped.swap(0, Ordering::Relaxed),
        };
        let limit = algorithm
            .update(&sample.after_skipped(skipped))
            .min(Gate::MAX_PERMITS);
        if self.skips_successes_with_room {
            self.skipped_wanted
                .store(algorithm.successes_with_room_wanted(), Ordering::Relaxed);
        }
        if limit != self.limit.load(Ordering::Acquire) {
            self.limit.store(limit, Ordering::Release);
            // Under the algorithm's lock, so resizes land in the order they were decided.
            let _ = gate.set_limit(limit);
        }
    }
}

/// The cells [`Limiter::try_book_cells`] booked, to give back if the permit is not there.
#[derive(Clone, Copy)]
struct Cells {
    request: Option<Booking>,
    tokens: Option<Booking>,
}

/// One caller counted in [`Adaptive::held_waiting`] until dropped (or cancelled).
struct HeldWaiting<'a>(&'a AtomicUsize);

impl Drop for HeldWaiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    /// The longest a limiter pauses for a server's hint unless
    /// [`max_pause`](LimiterBuilder::max_pause) says otherwise: 60 seconds, long enough for
    /// any per-minute quota (an LLM API's tokens or requests a minute) to refill, short
    /// enough that a bogus hint costs a minute rather than the day.
    pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(60);

    /// A limiter allowing `limit` attempts at once, with no rate limit.
    ///
    /// # Panics
    ///
    /// If `limit` exceeds [`Gate::MAX_PERMITS`].
    #[track_caller]
    pub fn new(limit: usize) -> Self {
        Self::builder()
            .concurrency(limit)
            .build()
            .expect("Limiter::new: the limit exceeds Gate::MAX_PERMITS")
    }

    /// A limiter allowing attempts to start at `rate`, with no concurrency limit.
    pub fn with_rate(rate: Rate) -> Self {
        Self::builder()
            .rate(rate)
            .build()
            .expect("no concurrency limit to reject")
    }

    /// Starts configuring a limiter.
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder::new()
    }

    /// Waits for admission in the [order](Self#order-of-admission) described above, within
    /// the limiter's own [`wait_limits`](Self::wait_limits).
    ///
    /// Cancel-safe: dropping the future gives back the permit or queue place it holds, and
    /// a booked rate cell if nobody booked after it.
    #[inline]
    pub fn acquire(&self) -> LimiterAcquire<'_> {
        self.acquire_with(self.wait_limits)
    }

    /// Like [`acquire`](Self::acquire), within `limits` instead of the limiter's own.
    ///
    /// The bounds cover the whole admission: `max_wait` is the longest the caller waits in
    /// all, for a pause to end, for a permit and for a rate cell; past it the caller fails
    /// with [`AcquireError::TimedOut`], counted in [`stats`](Self::stats) as timed out.
    /// With `max_wait` zero a caller who cannot be admitted at once is refused without
    /// waiting, counted as rejected. `max_waiters` bounds the queue for a permit, as
    /// [`Gate::acquire_with`] does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::{AcquireError, Limiter, WaitLimits};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::new(1);
    /// limiter.pause_for(Duration::from_secs(5));
    /// let limits = WaitLimits { max_wait: Some(Duration::from_secs(1)), ..WaitLimits::UNBOUNDED };
    /// // The pause outlasts the second this caller waits.
    /// assert!(matches!(limiter.acquire_with(limits).await, Err(AcquireError::TimedOut)));
    /// assert_eq!(limiter.stats().timed_out, 1);
    /// # }
    /// ```
    #[inline]
    pub fn acquire_with(&self, limits: WaitLimits) -> LimiterAcquire<'_> {
        LimiterAcquire::new(self, limits, None)
    }

    /// Waits for admission of an attempt that will spend about `estimate` tokens of the
    /// [token budget](LimiterBuilder::tokens), within the limiter's own
    /// [`wait_limits`](Self::wait_limits).
    ///
    /// The tokens are the last step of the [order of admission](Self#order-of-admission):
    /// after the request's rate cell, the caller books `estimate` token cells at once
    /// (weighted GCRA) and sleeps until they are due. Once the response says what it used,
    /// [`settle`](LimiterPermit::settle) the permit: the unused part goes back, the excess
    /// is charged, so later callers wait for what was really spent. Not settled, the
    /// estimate stays charged.
    ///
    /// A limiter without a token budget ignores `estimate`. With one, an estimate of 0
    /// fails at once with [`AcquireError::ZeroCost`], and one above the budget's
    /// [capacity](RateLimit::capacity) with [`AcquireError::TooLarge`]: it could never be
    /// admitted, so it is not left to wait for ever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::{AcquireError, Limiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let api = Limiter::builder().tokens("6000/min".parse().unwrap()).build().unwrap();
    /// let start = tokio::time::Instant::now();
    /// let mut permit = api.acquire_tokens(5_000).await.unwrap();
    /// // The answer used 1,000 tokens: 4,000 go back to the bucket.
    /// permit.settle(1_000);
    /// drop(permit);
    /// // 5,000 free: admitted at once.
    /// let _second = api.acquire_tokens(5_000).await.unwrap();
    /// assert_eq!(start.elapsed(), Duration::ZERO);
    /// // 6,000 is the whole bucket; 6,001 could never fit.
    /// assert_eq!(
    ///     api.acquire_tokens(6_001).await.unwrap_err(),
    ///     AcquireError::TooLarge { requested: 6_001, capacity: 6_000 },
    /// );
    /// # }
    /// ```
    #[inline]
    pub fn acquire_tokens(&self, estimate: u64) -> LimiterAcquire<'_> {
        self.acquire_tokens_with(estimate, self.wait_limits)
    }

    /// Like [`acquire_tokens`](Self::acquire_tokens), within `limits` instead of the
    /// limiter's own (see [`acquire_with`](Self::acquire_with)).
    #[inline]
    pub fn acquire_tokens_with(&self, estimate: u64, limits: WaitLimits) -> LimiterAcquire<'_> {
        LimiterAcquire::new(self, limits, Some(estimate))
    }

    /// Like [`acquire_tokens`](Self::acquire_tokens), through an `Arc`.
    #[inline]
    pub fn acquire_owned_tokens(self: Arc<Self>, estimate: u64) -> LimiterAcquireOwned {
        let limits = self.wait_limits;
        self.acquire_owned_tokens_with(estimate, limits)
    }

    /// Like [`acquire_tokens_with`](Self::acquire_tokens_with), through an `Arc`.
    #[inline]
    pub fn acquire_owned_tokens_with(
        self: Arc<Self>,
        estimate: u64,
        limits: WaitLimits,
    ) -> LimiterAcquireOwned {
        LimiterAcquireOwned::new(self, limits, Some(estimate))
    }

    /// Like [`acquire`](Self::acquire), through an `Arc`, so the future and the permit are
    /// `'static`: for tower middleware and spawned tasks.
    #[inline]
    pub fn acquire_owned(self: Arc<Self>) -> LimiterAcquireOwned {
        let limits = self.wait_limits;
        self.acquire_owned_with(limits)
    }

    /// Like [`acquire_with`](Self::acquire_with), through an `Arc`.
    #[inline]
    pub fn acquire_owned_with(self: Arc<Self>, limits: WaitLimits) -> LimiterAcquireOwned {
        LimiterAcquireOwned::new(self, limits, None)
    }

    /// The bounds on waiting that [`acquire`](Self::acquire) uses, from
    /// [`LimiterBuilder::max_wait`] and [`LimiterBuilder::max_waiters`].
    pub fn wait_limits(&self) -> WaitLimits {
        self.wait_limits
    }

    /// Admits at once if nothing stands in the way (no pause, a rate cell due now, a permit
    /// free on the gate's lock-free path), without a future; otherwise takes nothing.
    ///
    /// Like [`Gate::try_acquire_uncontended`], for a caller with a waiting path of its own:
    /// a miss is not counted anywhere.
    #[inline]
    pub fn try_acquire_uncontended(&self) -> Option<LimiterPermit<'_>> {
        self.try_admit(0).map(|admitted| LimiterPermit {
            limiter: self,
            admitted,
            tokens: 0,
        })
    }

    /// Like [`try_acquire_uncontended`](Self::try_acquire_uncontended), through an `Arc`,
    /// which is cloned only on admission.
    #[inline]
    pub fn try_acquire_owned_uncontended(self: &Arc<Self>) -> Option<OwnedLimiterPermit> {
        self.try_admit(0).map(|admitted| OwnedLimiterPermit {
            limiter: Arc::clone(self),
            admitted,
            tokens: 0,
        })
    }

    /// Admits one attempt and ends it at once, if nothing stands in the way: the same as
    /// [`try_acquire_uncontended`](Self::try_acquire_uncontended) with its permit dropped
    /// at once, without the permit. A rate check with nothing to hold, as governor's
    /// `check`, for a caller that only asks whether a request may start now.
    ///
    /// The attempt counts in [`stats`](Self::stats) as admitted without waiting and takes
    /// a rate cell (and no token cells); its permit never leaves the gate, so
    /// [`in_flight`](Stats::in_flight) does not move, and a concurrency limit refuses it
    /// only when it is full or callers queue, as it would refuse `try_acquire_uncontended`.
    /// An adaptive limit learns nothing from it, as from a permit dropped without a report.
    /// A refusal takes nothing and is not counted.
    ///
    /// ```
    /// use gate_core::Limiter;
    /// use gate_core::rate::Rate;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::with_rate(Rate::per_second(10).burst(2));
    /// assert!(limiter.check());
    /// assert!(limiter.check());
    /// assert!(!limiter.check(), "the burst is spent");
    /// assert_eq!((limiter.stats().admitted, limiter.stats().in_flight), (2, 0));
    /// # }
    /// ```
    #[inline]
    pub fn check(&self) -> bool {
        self.try_admit_with(0, RawGate::take_and_give_back)
            .is_some()
    }

    /// Admits at once if nothing stands in the way (see [`try_admit_with`](Self::try_admit_with)),
    /// taking a permit from the gate's lock-free path.
    #[inline]
    fn try_admit(&self, tokens: u64) -> Option<Admitted> {
        let free = self.try_admit_with(tokens, |gate| gate.try_take_fast(1))?;
        Some(self.admitted(Some(free)))
    }

    /// Admits at once if nothing stands in the way: no pause, a rate cell and `tokens`
    /// token cells due now, a permit free on the gate's lock-free path, where `take` takes
    /// it (returning what that path holds after, `None` if it cannot). Otherwise takes
    /// nothing and returns `None`.
    ///
    /// All are taken at the same instant, so the order of admission does not arise. The
    /// cells are taken first: a cell can be given back (if nobody booked after it; else
    /// it goes unused, erring slow), while a permit given back would count as an admission
    /// in the gate's statistics.
    #[inline]
    fn try_admit_with(
        &self,
        tokens: u64,
        take: impl FnOnce(&RawGate) -> Option<usize>,
    ) -> Option<usize> {
        if self.pause.is_set() {
            return None;
        }
        if self.rate.is_none() && tokens == 0 {
            return take(self.gate.raw());
        }
        // Skip the booking (and giving it back) when the permit is clearly not there.
        if !self.gate.raw().has_fast_permit() {
            return None;
        }
        let cells = self.try_book_cells(tokens)?;
        let free = take(self.gate.raw());
        if free.is_none() {
            self.cancel_cells(cells);
        }
        free
    }

    /// Books a request cell (if there is a rate) and `tokens` token cells (if more than
    /// none), both due now, or neither. Always inlined: it is most of an admission, and out of
    /// line its result goes through memory.
    #[inline(always)]
    fn try_book_cells(&self, tokens: u64) -> Option<Cells> {
        let (request, t) = match &self.rate {
            Some(rate) => {
                // Both limits read the limiter's one clock: one read serves both.
                let t = rate.clock().now_nanos();
                (Some(rate.try_book_n_at(t, 1)?), Some(t))
            }
            None => (None, None),
        };
        let tokens = match (&self.tokens, tokens) {
            (Some(budget), 1..) => match budget
                .try_book_n_at(t.unwrap_or_else(|| budget.clock().now_nanos()), tokens)
            {
                Some(booking) => Some(booking),
                None => {
                    self.cancel_cells(Cells {
                        request,
                        tokens: None,
                    });
                    return None;
                }
            },
            _ => None,
        };
        Some(Cells { request, tokens })
    }

    /// Gives booked cells back, the last booked first.
    fn cancel_cells(&self, cells: Cells) {
        if let (Some(budget), Some(booking)) = (&self.tokens, cells.tokens) {
            budget.cancel_booking(booking);
        }
        if let (Some(rate), Some(booking)) = (&self.rate, cells.request) {
            rate.cancel_booking(booking);
        }
    }

    /// The token cells an acquire for `estimate` books: none without a budget or an
    /// estimate, else the estimate, if the budget can ever hold it.
    #[inline]
    fn token_cost(&self, estimate: Option<u64>) -> Result<u64, AcquireError> {
        let (Some(budget), Some(estimate)) = (&self.tokens, estimate) else {
            return Ok(0);
        };
        let capacity = budget.capacity();
        match estimate {
            0 => Err(AcquireError::ZeroCost),
            requested if requested > capacity => Err(AcquireError::TooLarge {
                requested,
                capacity,
            }),
            tokens => Ok(tokens),
        }
    }

    /// Settles a reservation of `reserved` tokens with what the attempt `used`.
    fn settle(&self, reserved: &mut u64, used: u64) {
        let Some(budget) = &self.tokens else {
            return;
        };
        match used.cmp(reserved) {
            std::cmp::Ordering::Less => budget.refund(*reserved - used),
            std::cmp::Ordering::Greater => budget.charge(used - *reserved),
            std::cmp::Ordering::Equal => {}
        }
        *reserved = used;
    }

    /// Refuses a caller who could not be admitted at once and may not wait at all.
    #[cold]
    fn refuse_at_once(&self) -> AcquireError {
        self.gate.raw().record_rejected();
        AcquireError::TimedOut
    }

    /// Admission that has to wait, in the [order](Self#order-of-admission) described above,
    /// for at most `limits.max_wait` in all.
    async fn wait_for_admission(
        &self,
        limits: WaitLimits,
        tokens: u64,
    ) -> Result<Admitted, AcquireError> {
        let Some(max_wait) = limits.max_wait else {
            return self.wait_in_order(limits.max_waiters, tokens).await;
        };
        let admission = self.wait_in_order(limits.max_waiters, tokens);
        match tokio::time::timeout(max_wait, admission).await {
            Ok(admitted) => admitted,
            Err(_) => {
                self.gate.raw().record_timed_out();
                Err(AcquireError::TimedOut)
            }
        }
    }

    /// Steps 1 to 4 of admission (and the token cells), queueing for a permit behind at most
    /// `max_waiters`.
    async fn wait_in_order(
        &self,
        max_waiters: usize,
        tokens: u64,
    ) -> Result<Admitted, AcquireError> {
        if self.pause.is_set() {
            self.pause.wait().await;
        }
        let limits = WaitLimits {
            max_wait: None,
            max_waiters,
        };
        let permit = self.gate.raw().acquire(1, limits).await?;
        if self.rate.is_some() || tokens > 0 || self.pause.is_set() {
            let _held = self.adaptive.as_ref().map(Adaptive::hold_waiting);
            self.wait_for_rate(tokens).await;
        }
        // From here the limiter's permit guard gives it back.
        permit.keep();
        Ok(self.admitted(None))
    }

    /// Steps 3 and 4 of admission: a pause that began while queueing, then the rate cell,
    /// then the token cells.
    async fn wait_for_rate(&self, tokens: u64) {
        let budget = self.tokens.as_ref().filter(|_| tokens > 0);
        loop {
            self.pause.wait().await;
            if let Some(rate) = &self.rate {
                rate.until_ready().await;
            }
            if let Some(budget) = budget {
                budget.until_ready_n(tokens).await;
            }
            if !self.pause.is_active() {
                return;
            }
            // A pause began meanwhile: the tokens go back until the caller books again (the
            // request cell is spent, erring slow).
            if let Some(budget) = budget {
                budget.refund(tokens);
            }
        }
    }

    /// What an adaptive limit notes of an admitted attempt. `free` is what the lock-free
    /// acquire left in the gate's pool; without it the gate is read under its lock.
    #[inline]
    fn admitted(&self, free: Option<usize>) -> Admitted {
        let Some(adaptive) = &self.adaptive else {
            return Admitted::UNOBSERVED;
        };
        let limit = adaptive.limit.load(Ordering::Acquire);
        let held = match free {
            Some(free) => limit.saturating_sub(free),
            None => self.gate.raw().in_flight(),
        };
        let waiting = adaptive.held_waiting.load(Ordering::Acquire);
        Admitted {
            start: adaptive.clock.as_ref().map_or(0, LimiterClock::now_nanos),
            in_flight: held.saturating_sub(waiting).max(1),
            limit,
        }
    }

    /// Learns from an attempt's end: pauses on `Retry-After`, feeds the adaptive limit.
    #[inline]
    fn report(&self, admitted: &Admitted, outcome: Outcome) {
        if let Outcome::Overload { retry_after } = outcome {
            self.pushback.fetch_add(1, Ordering::Relaxed);
            if let Some(retry_after) = retry_after {
                self.pause_for(retry_after);
            }
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.report(admitted, outcome, &self.gate);
        }
    }

    /// Gives back an admitted attempt's permit.
    #[inline]
    fn release(&self) {
        self.gate.raw().release(1);
    }

    /// Pauses new admissions for `duration` from now, at most for
    /// [`max_pause`](Self::max_pause), unless already paused for longer. Callers already
    /// waiting keep waiting; attempts running are not affected.
    ///
    /// Any `Duration` is accepted, `Duration::MAX` included: it pauses for the cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::Limiter;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::new(4);
    /// let now = tokio::time::Instant::now();
    /// // A `Retry-After: 1000000000000` from a broken server: a minute, not 31,700 years.
    /// limiter.pause_for(Duration::from_secs(1_000_000_000_000));
    /// assert_eq!(limiter.paused_until(), Some(now + Limiter::DEFAULT_MAX_PAUSE));
    /// # }
    /// ```
    pub fn pause_for(&self, duration: Duration) {
        self.pause
            .extend_for(Instant::now(), duration.min(self.max_pause));
    }

    /// Pauses new admissions until `until`, or for [`max_pause`](Self::max_pause) if that
    /// ends sooner, unless already paused for longer.
    pub fn pause_until(&self, until: Instant) {
        let now = Instant::now();
        let duration = until.saturating_duration_since(now);
        self.pause.extend_for(now, duration.min(self.max_pause));
    }

    /// The longest pause a server's hint (or [`pause_for`](Self::pause_for)) may cause; see
    /// [`LimiterBuilder::max_pause`].
    pub fn max_pause(&self) -> Duration {
        self.max_pause
    }

    /// The end of the pause in force, if any.
    pub fn paused_until(&self) -> Option<Instant> {
        self.pause.until(Instant::now())
    }

    /// The limiter's name, given by [`LimiterBuilder::name`]; `None` for an unnamed one.
    ///
    /// ```
    /// let limiter = gate_core::Limiter::builder().concurrency(4).name("openai").build().unwrap();
    /// assert_eq!(limiter.name(), Some("openai"));
    /// ```
    #[inline]
    pub fn name(&self) -> Option<&'static str> {
        self.gate.name()
    }

    #[cfg(feature = "metrics")]
    /// How many attempts were reported as overloaded (a 429 or 503, with or without a
    /// `Retry-After`): the server's pushback, as the limiter saw it.
    pub(crate) fn pushback_seen(&self) -> u64 {
        self.pushback.load(Ordering::Relaxed)
    }

    /// Whether a pause is in force now.
    #[cfg(feature = "metrics")]
    pub(crate) fn is_paused(&self) -> bool {
        self.pause.is_active()
    }

    /// The concurrency limit in force, if there is one.
    pub fn limit(&self) -> Option<usize> {
        self.limited.then(|| self.gate.limit())
    }

    /// The rate limit, if there is one.
    pub fn rate_limit(&self) -> Option<&RateLimit<LimiterClock>> {
        self.rate.as_ref()
    }

    /// The [token budget](LimiterBuilder::tokens), if there is one: its
    /// [`remaining`](RateLimit::remaining) tokens and [`capacity`](RateLimit::capacity).
    pub fn token_limit(&self) -> Option<&RateLimit<LimiterClock>> {
        self.tokens.as_ref()
    }

    /// The gate behind the concurrency limit (at [`Gate::MAX_PERMITS`] if there is none).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// What the gate has done; see [`Gate::stats`].
    pub fn stats(&self) -> Stats {
        self.gate.stats()
    }

    /// Closes the limiter: every waiter and every later acquire fails with
    /// [`AcquireError::Closed`]. Attempts running keep their permits.
    pub fn close(&self) {
        self.gate.close();
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = self.adaptive.as_ref().map(|adaptive| {
            format!(
                "{:?}",
                adaptive
                    .algorithm
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            )
        });
        f.debug_struct("Limiter")
            .field("name", &self.name())
            .field("limit", &self.limit())
            .field("rate", &self.rate.as_ref().map(RateLimit::rate))
            .field("tokens", &self.tokens.as_ref().map(RateLimit::rate))
            .field("paused_until", &self.paused_until())
            .field("adaptive", &algorithm)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    // A check without waiting reads the pause's word and the rate limit's state, arithmetic
    // and clock: they lead the limiter, within the first 128 bytes (one pair of lines), and
    // the gate's fast pool starts a pair of its own after them.
    #[test]
    fn hot_words_lead_the_limiter() {
        assert_eq!(offset_of!(Limiter, pause), 0);
        assert_eq!(offset_of!(Limiter, rate), size_of::<Pause>());
        assert!(offset_of!(Limiter, rate) + size_of::<Option<RateLimit<LimiterClock>>>() <= 128);
        assert!(offset_of!(Limiter, gate) >= 128);
        assert_eq!(offset_of!(Limiter, gate) % 128, 0);
    }
}
