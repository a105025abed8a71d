//! [`Gate`]: a fair, resizable async semaphore.

mod acquire;
mod builder;
mod permit;
mod pool;
mod state;
mod wait_list;

pub use acquire::{Acquire, AcquireOwned};
pub use builder::GateBuilder;
pub use permit::{OwnedPermit, Permit};

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::stats::{Stats, WaitStats};
use crate::sync::{Mutex, const_unless_loom};
use crate::{AcquireError, LimitError, TryAcquireError};
use pool::FastPool;
use state::{Locked, State, WakeList};

/// A fair, resizable async semaphore: at most `limit` permits are out at once.
///
/// A gate guards the part of a task that touches a limited resource, like
/// `async with asyncio.Semaphore(n):` in Python. Every task runs; only the code holding a
/// [`Permit`] is limited.
///
/// - **Fair.** Waiters are served strictly first in, first out. A released permit goes to the
///   longest waiter, and [`try_acquire`](Self::try_acquire) never barges past a queue. A waiter
///   asking for many permits holds up those behind it until its whole request fits.
/// - **Cancel-safe.** Dropping an acquire future at any point gives back whatever it holds
///   (its place in the queue, or permits granted to it but not yet collected) and lets the next
///   waiter in. Dropping a permit, including during a panic's unwinding, releases it.
/// - **Resizable.** [`set_limit`](Self::set_limit) grows the gate at once and shrinks it as
///   permits come back: the number in flight never exceeds the new limit once the excess held
///   before the shrink has drained. No permit is lost or duplicated.
/// - **Bounded waiting.** Build with [`Gate::builder`] to give every acquire a `max_wait` and
///   cap the queue with `max_waiters`; a plain [`Gate::new`] waits without bound, like tokio's
///   `Semaphore`.
/// - **Observable.** [`stats`](Self::stats) reports what is in flight, what waits, and the
///   wait-time distribution. Recording it costs an add per admission.
///
/// # Examples
///
/// A gate shared by every caller of an API, declared as a `static`:
///
/// ```
/// use gate_core::Gate;
///
/// static OPENAI: Gate = Gate::new(10);
///
/// async fn complete(prompt: &str) -> String {
///     let _permit = OPENAI.acquire().await.expect("never closed");
///     // At most 10 tasks run this part at once.
///     format!("echo: {prompt}")
/// }
/// # tokio_test::block_on(async { assert_eq!(complete("hi").await, "echo: hi") });
/// ```
///
/// Shrinking while permits are out: the limit takes hold as they come back.
///
/// ```
/// use gate_core::Gate;
///
/// let gate = Gate::new(4);
/// let held: Vec<_> = (0..4).map(|_| gate.try_acquire().unwrap()).collect();
/// gate.set_limit(2).unwrap();
/// drop(held);
/// assert_eq!(gate.available_permits(), 2);
/// ```
pub struct Gate {
    state: Mutex<State>,
    pool: FastPool,
    wait_limits: WaitLimits,
}

/// How long, and behind how many others, an acquire may wait.
///
/// Every gate has one, used by [`Gate::acquire`]; [`Gate::acquire_with`] takes another for one
/// call, so a tower layer or a caller with a deadline can bound its own waits on a shared gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitLimits {
    /// The longest an acquire waits before failing with [`AcquireError::TimedOut`]; `None`
    /// waits without bound, zero never waits.
    pub max_wait: Option<Duration>,
    /// The most callers that may be queued when this one arrives; if that many already wait,
    /// it fails at once with [`AcquireError::QueueFull`]. Zero never waits.
    pub max_waiters: usize,
}

impl WaitLimits {
    /// No bound on time or queue length (the default of [`Gate::new`]).
    pub const UNBOUNDED: Self = Self {
        max_wait: None,
        max_waiters: usize::MAX,
    };

    /// Refuse at once rather than wait.
    pub const NO_WAIT: Self = Self {
        max_wait: Some(Duration::ZERO),
        max_waiters: 0,
    };
}

impl Default for WaitLimits {
    fn default() -> Self {
        Self::UNBOUNDED
    }
}

impl Gate {
    /// The largest limit a gate accepts.
    pub const MAX_PERMITS: usize = usize::MAX >> 4;

    const_unless_loom! {
        /// A gate admitting `limit` permits at once, with no bound on waiting.
        ///
        /// `const`, so a gate can be a `static` shared by a whole program.
        ///
        /// # Panics
        ///
        /// If `limit` exceeds [`Gate::MAX_PERMITS`]; use [`Gate::try_new`] to get an error
        /// instead.
        #[track_caller]
        pub const fn new(limit: usize) -> Self {
            if limit > Self::MAX_PERMITS {
                panic!("Gate::new: the limit exceeds Gate::MAX_PERMITS; use a smaller limit");
            }
            Self::with_limits(limit, WaitLimits::UNBOUNDED)
        }
    }

    const_unless_loom! {
        /// Like [`Gate::new`], but returns an error for a limit above [`Gate::MAX_PERMITS`].
        pub const fn try_new(limit: usize) -> Result<Self, LimitError> {
            if limit > Self::MAX_PERMITS {
                return Err(LimitError { requested: limit });
            }
            Ok(Self::with_limits(limit, WaitLimits::UNBOUNDED))
        }
    }

    const_unless_loom! {
        /// A gate with the given bounds; `limit` must already be checked.
        pub(super) const fn with_limits(limit: usize, wait_limits: WaitLimits) -> Self {
            Self {
                state: Mutex::new(State::new(limit)),
                pool: FastPool::new(limit),
                wait_limits,
            }
        }
    }

    /// Starts a gate of `limit` permits with bounds on waiting.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::Gate;
    ///
    /// let gate = Gate::builder(10)
    ///     .max_wait(Duration::from_secs(5))
    ///     .max_waiters(1_000)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(gate.limit(), 10);
    /// ```
    pub const fn builder(limit: usize) -> GateBuilder {
        GateBuilder::new(limit)
    }

    /// Waits for one permit.
    ///
    /// Fails with [`AcquireError::Closed`] if the gate closes first, and, for a gate built
    /// with `max_wait` or `max_waiters`, with [`AcquireError::TimedOut`] or
    /// [`AcquireError::QueueFull`].
    #[inline]
    pub fn acquire(&self) -> Acquire<'_> {
        self.acquire_many(1)
    }

    /// Waits for `n` permits, taken together. While it waits at the front of the queue it
    /// holds up everyone behind it (fairness); if `n` exceeds the limit it waits until the
    /// limit grows. A request for zero permits is answered at once, queue or not (unless the
    /// gate is closed), as tokio's `Semaphore` answers it.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Gate::MAX_PERMITS`], which no gate could ever grant.
    #[inline]
    #[track_caller]
    pub fn acquire_many(&self, n: usize) -> Acquire<'_> {
        Acquire::new(self, check_request(n), self.wait_limits)
    }

    /// Waits for `n` permits within `limits` instead of the gate's own.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Gate::MAX_PERMITS`].
    #[inline]
    #[track_caller]
    pub fn acquire_with(&self, n: usize, limits: WaitLimits) -> Acquire<'_> {
        Acquire::new(self, check_request(n), limits)
    }

    /// Waits for one permit for at most `timeout` (overriding the gate's `max_wait`), then
    /// fails with [`AcquireError::TimedOut`]. A zero timeout never waits.
    pub fn acquire_timeout(&self, timeout: Duration) -> Acquire<'_> {
        let limits = WaitLimits {
            max_wait: Some(timeout),
            ..self.wait_limits
        };
        Acquire::new(self, 1, limits)
    }

    /// Waits for one permit through an `Arc`, so the permit is `'static`.
    #[inline]
    pub fn acquire_owned(self: Arc<Self>) -> AcquireOwned {
        self.acquire_many_owned(1)
    }

    /// Waits for `n` permits through an `Arc`, so the permit is `'static`.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Gate::MAX_PERMITS`].
    #[inline]
    #[track_caller]
    pub fn acquire_many_owned(self: Arc<Self>, n: usize) -> AcquireOwned {
        let limits = self.wait_limits;
        AcquireOwned::new(self, check_request(n), limits)
    }

    /// Waits for `n` permits through an `Arc` within `limits` instead of the gate's own.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Gate::MAX_PERMITS`].
    #[inline]
    #[track_caller]
    pub fn acquire_owned_with(self: Arc<Self>, n: usize, limits: WaitLimits) -> AcquireOwned {
        AcquireOwned::new(self, check_request(n), limits)
    }

    /// Takes one permit if one is free and nobody is queued, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are free and nobody is queued, without waiting.
    pub fn try_acquire_many(&self, n: usize) -> Result<Permit<'_>, TryAcquireError> {
        self.try_take(n).map(|n| Permit::new(self, n))
    }

    /// Takes one permit through an `Arc` if one is free and nobody is queued.
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedPermit, TryAcquireError> {
        self.try_acquire_many_owned(1)
    }

    /// Takes `n` permits through an `Arc` if they are free and nobody is queued.
    pub fn try_acquire_many_owned(
        self: Arc<Self>,
        n: usize,
    ) -> Result<OwnedPermit, TryAcquireError> {
        self.try_take(n).map(|n| OwnedPermit::new(self, n))
    }

    /// Takes one permit if the gate's lock-free path has one: nobody is queued, no shrink
    /// is draining, the gate is open. One compare-and-swap; it never takes the lock.
    ///
    /// Unlike [`try_acquire`](Self::try_acquire), a miss says nothing about why and is not
    /// counted as a rejection in [`stats`](Self::stats): it is for a caller with a waiting
    /// path of its own to fall back on, such as middleware that admits at once when it can.
    #[inline]
    pub fn try_acquire_uncontended(&self) -> Option<Permit<'_>> {
        self.try_take_fast().map(|_| Permit::new(self, 1))
    }

    /// Like [`try_acquire_uncontended`](Self::try_acquire_uncontended), through an `Arc`,
    /// which is cloned only if a permit is taken.
    #[inline]
    pub fn try_acquire_owned_uncontended(self: &Arc<Self>) -> Option<OwnedPermit> {
        self.try_take_fast()
            .map(|_| OwnedPermit::new(Arc::clone(self), 1))
    }

    /// Runs `fut` while holding one permit, released when `fut` finishes or is dropped.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let gate = gate_core::Gate::new(2);
    /// let answer = gate.run(async { 6 * 7 }).await.unwrap();
    /// assert_eq!(answer, 42);
    /// # });
    /// ```
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, AcquireError> {
        let _permit = self.acquire().await?;
        Ok(fut.await)
    }

    /// Permits that could be taken right now (ignoring any queue).
    ///
    /// Unlike tokio's `Semaphore`, which hands freed permits to the front waiter one by one,
    /// a gate grants a request whole: while `acquire_many(5)` waits with 3 permits free, this
    /// reads 3, where tokio's would read 0. Those 3 still cannot be taken by
    /// [`try_acquire`](Self::try_acquire) while anyone waits (no barging), so the difference
    /// is in the reading only.
    pub fn available_permits(&self) -> usize {
        let state = self.observe();
        state.limit.saturating_sub(state.in_flight())
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.observe().limit
    }

    /// Changes the limit. Growing admits waiters at once; shrinking takes effect as held
    /// permits come back, so those already in flight are never revoked.
    ///
    /// Returns an error, changing nothing, if `limit` exceeds [`Gate::MAX_PERMITS`].
    pub fn set_limit(&self, limit: usize) -> Result<(), LimitError> {
        if limit > Self::MAX_PERMITS {
            return Err(LimitError { requested: limit });
        }
        let mut state = self.lock();
        state.limit = limit;
        self.grant_and_wake(state);
        Ok(())
    }

    /// Adds `n` permits to the gate, raising its limit by `n` and admitting waiters that now
    /// fit, like tokio's `Semaphore::add_permits`. Unlike `set_limit(limit() + n)`, concurrent
    /// callers never lose each other's updates.
    ///
    /// # Panics
    ///
    /// If the limit would exceed [`Gate::MAX_PERMITS`], as tokio's does; nothing changes then.
    #[track_caller]
    pub fn add_permits(&self, n: usize) {
        let mut state = self.lock();
        let limit = state
            .limit
            .checked_add(n)
            .filter(|limit| *limit <= Self::MAX_PERMITS);
        let Some(limit) = limit else {
            drop(state);
            panic!("Gate::add_permits({n}): the limit would exceed Gate::MAX_PERMITS");
        };
        state.limit = limit;
        self.grant_and_wake(state);
    }

    /// Takes up to `n` free permits out of the gate for good, lowering its limit by as many,
    /// and returns how many it took, like tokio's `Semaphore::forget_permits`. Permits that
    /// are held are never touched; use [`set_limit`](Self::set_limit) to shrink as they come
    /// back, or [`Permit::forget`] to drop a held one from the limit.
    pub fn forget_permits(&self, n: usize) -> usize {
        let mut state = self.lock();
        let forgotten = n.min(state.free());
        state.limit -= forgotten;
        forgotten
    }

    /// Closes the gate: every waiter and every later acquire fails with
    /// [`AcquireError::Closed`]. Permits already held stay valid and are released as usual.
    pub fn close(&self) {
        let mut wakers = Vec::new();
        {
            let mut state = self.lock();
            state.closed = true;
            state.waiters.close_all(|waker| wakers.push(waker));
        }
        wakers.into_iter().for_each(std::task::Waker::wake);
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.observe().closed
    }

    /// A snapshot of what the gate is doing and has done.
    ///
    /// ```
    /// let gate = gate_core::Gate::new(3);
    /// let _a = gate.try_acquire().unwrap();
    /// let stats = gate.stats();
    /// assert_eq!((stats.limit, stats.in_flight, stats.admitted), (3, 1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let (mut stats, wait) = {
            let state = self.observe();
            let stats = Stats {
                limit: state.limit,
                in_flight: state.in_flight(),
                waiting: state.waiters.len(),
                admitted: state.stats.admitted + self.pool.admitted(),
                rejected: state.stats.rejected,
                timed_out: state.stats.timed_out,
                wait: WaitStats::default(),
            };
            let mut wait = state.stats.wait.clone();
            wait.record_zeros(self.pool.admitted());
            (stats, wait)
        };
        stats.wait = WaitStats::from_histogram(&wait, stats.admitted);
        stats
    }

    /// The bounds on waiting that [`acquire`](Self::acquire) uses.
    pub fn wait_limits(&self) -> WaitLimits {
        self.wait_limits
    }

    fn try_take(&self, n: usize) -> Result<usize, TryAcquireError> {
        if self.pool.try_take(n).is_some() {
            return Ok(n);
        }
        let mut state = self.lock();
        if state.closed {
            return Err(TryAcquireError::Closed);
        }
        if state.try_take(n) {
            state.stats.admitted_at_once();
            Ok(n)
        } else {
            state.stats.rejected += 1;
            Err(TryAcquireError::NoPermits)
        }
    }

    /// Takes one permit on the lock-free path only, returning how many stay free there;
    /// `None` if that path is closed (someone queues, a shrink drains, the gate is closed) or
    /// empty. For callers with a slow path of their own.
    #[inline]
    pub(crate) fn try_take_fast(&self) -> Option<usize> {
        self.pool.try_take(1)
    }

    /// Whether the lock-free path is open and holds a permit: one atomic load.
    #[inline]
    pub(crate) fn has_fast_permit(&self) -> bool {
        self.pool.permits() > 0
    }

    /// Counts a caller refused without waiting by a limit of its own (a limiter's
    /// `max_wait` of zero), as the gate counts its own refusals.
    pub(crate) fn record_rejected(&self) {
        self.lock().stats.rejected += 1;
    }

    /// Counts a caller whose deadline passed while it waited for more than this gate (a
    /// limiter's rate cell or pause).
    pub(crate) fn record_timed_out(&self) {
        self.lock().stats.timed_out += 1;
    }

    /// Permits held right now, read under the lock.
    pub(crate) fn in_flight(&self) -> usize {
        self.observe().in_flight()
    }

    /// Takes `n` held permits out of the gate for good: they are not returned, and the limit
    /// drops by `n` (to no less than zero).
    pub(crate) fn forget(&self, n: usize) {
        let mut state = self.lock();
        state.taken -= n;
        state.limit = state.limit.saturating_sub(n);
    }

    /// Returns `n` permits and admits whoever now fits.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if !self.pool.try_give(n) {
            self.release_slow(n);
        }
    }

    #[inline(never)]
    fn release_slow(&self, n: usize) {
        let mut state = self.lock();
        state.taken -= n;
        if !state.waiters.is_empty() {
            self.grant_and_wake(state);
        }
    }

    /// Grants permits to the queue as far as they go, waking each admitted waiter after the
    /// lock is released.
    fn grant_and_wake<'a>(&'a self, mut state: Locked<'a>) {
        // The usual case under contention: one permit back, one waiter in. Wake it without
        // building a wake list.
        if !state.front_fits() {
            return;
        }
        let first = state.grant_front(&mut None);
        if !state.front_fits() {
            drop(state);
            if let Some(waker) = first {
                waker.wake();
            }
            return;
        }
        let mut wakers = WakeList::new();
        if let Some(waker) = first {
            wakers.push(waker);
        }
        loop {
            let more = state.grant(&mut wakers);
            drop(state);
            wakers.wake_all();
            if !more {
                return;
            }
            state = self.lock();
        }
    }

    /// Takes the lock with the fast path closed, to change the gate.
    fn lock(&self) -> Locked<'_> {
        Locked::exact(self.mutex(), &self.pool)
    }

    /// Takes the lock to read the gate, leaving the fast path as it is.
    fn observe(&self) -> Locked<'_> {
        Locked::observing(self.mutex(), &self.pool)
    }

    fn mutex(&self) -> crate::sync::MutexGuard<'_, State> {
        // The lock is never held across user code, so a poisoned lock still guards a
        // consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[inline]
#[track_caller]
fn check_request(n: usize) -> usize {
    assert!(
        n <= Gate::MAX_PERMITS,
        "acquire_many({n}): no gate can grant more than Gate::MAX_PERMITS permits at once"
    );
    n
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.observe();
        f.debug_struct("Gate")
            .field("limit", &state.limit)
            .field("in_flight", &state.in_flight())
            .field("waiting", &state.waiters.len())
            .field("closed", &state.closed)
            .finish()
    }
}
