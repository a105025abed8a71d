//! [`Gate`]: a fair, resizable async semaphore, the public API over the crate-private
//! [`RawGate`] mechanism.

mod acquire;
mod builder;
mod permit;
pub(crate) mod raw;

pub use acquire::{Acquire, AcquireOwned};
pub use builder::GateBuilder;
pub use permit::{OwnedPermit, Permit};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::stats::Stats;
use crate::sync::const_unless_loom;
use crate::{AcquireError, LimitError, TryAcquireError};
use raw::RawGate;

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
    /// The mechanism: permits, the queue, grants and releases.
    raw: RawGate,
    /// The bounds [`acquire`](Self::acquire) waits within.
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
    /// it fails at once with [`AcquireError::QueueFull`]. Zero never waits. A queue holds
    /// at most 2<sup>32</sup> − 1 callers whatever this says (its slots alone would then take
    /// 256 GiB), so [`UNBOUNDED`](Self::UNBOUNDED) refuses past that.
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
    pub const MAX_PERMITS: usize = raw::MAX_PERMITS;

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
            Self::with_limits(limit, WaitLimits::UNBOUNDED, None)
        }
    }

    const_unless_loom! {
        /// Like [`Gate::new`], but returns an error for a limit above [`Gate::MAX_PERMITS`].
        pub const fn try_new(limit: usize) -> Result<Self, LimitError> {
            if limit > Self::MAX_PERMITS {
                return Err(LimitError { requested: limit });
            }
            Ok(Self::with_limits(limit, WaitLimits::UNBOUNDED, None))
        }
    }

    const_unless_loom! {
        /// A gate with the given bounds and name; `limit` must already be checked.
        pub(crate) const fn with_limits(
            limit: usize,
            wait_limits: WaitLimits,
            name: Option<&'static str>,
        ) -> Self {
            Self {
                raw: RawGate::named(limit, name),
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
        self.raw.try_take(n).map(|()| Permit::new(self, n))
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
        self.raw.try_take(n).map(|()| OwnedPermit::new(self, n))
    }

    /// Takes one permit if the gate's lock-free path has one: nobody is queued, no shrink
    /// is draining, the gate is open. One compare-and-swap; it never takes the lock.
    ///
    /// Unlike [`try_acquire`](Self::try_acquire), a miss says nothing about why and is not
    /// counted as a rejection in [`stats`](Self::stats): it is for a caller with a waiting
    /// path of its own to fall back on, such as middleware that admits at once when it can.
    #[inline]
    pub fn try_acquire_uncontended(&self) -> Option<Permit<'_>> {
        self.raw.try_take_fast(1).map(|_| Permit::new(self, 1))
    }

    /// Like [`try_acquire_uncontended`](Self::try_acquire_uncontended), through an `Arc`,
    /// which is cloned only if a permit is taken.
    #[inline]
    pub fn try_acquire_owned_uncontended(self: &Arc<Self>) -> Option<OwnedPermit> {
        self.raw
            .try_take_fast(1)
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
        self.raw.available()
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.raw.limit()
    }

    /// Changes the limit. Growing admits waiters at once; shrinking takes effect as held
    /// permits come back, so those already in flight are never revoked.
    ///
    /// Returns an error, changing nothing, if `limit` exceeds [`Gate::MAX_PERMITS`].
    pub fn set_limit(&self, limit: usize) -> Result<(), LimitError> {
        self.raw.set_limit(limit)
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
        if !self.raw.add_permits(n) {
            panic!("Gate::add_permits({n}): the limit would exceed Gate::MAX_PERMITS");
        }
    }

    /// Takes up to `n` free permits out of the gate for good, lowering its limit by as many,
    /// and returns how many it took, like tokio's `Semaphore::forget_permits`. Permits that
    /// are held are never touched; use [`set_limit`](Self::set_limit) to shrink as they come
    /// back, or [`Permit::forget`] to drop a held one from the limit.
    pub fn forget_permits(&self, n: usize) -> usize {
        self.raw.forget_permits(n)
    }

    /// Closes the gate: every waiter and every later acquire fails with
    /// [`AcquireError::Closed`]. Permits already held stay valid and are released as usual.
    pub fn close(&self) {
        self.raw.close();
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
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
        self.raw.stats()
    }

    /// The gate's name, given by [`GateBuilder::name`] (or by `#[gated]`, which names a
    /// function's own gate after the function's path); `None` for an unnamed gate.
    ///
    /// ```
    /// let gate = gate_core::Gate::builder(4).name("openai").build().unwrap();
    /// assert_eq!(gate.name(), Some("openai"));
    /// assert_eq!(gate_core::Gate::new(4).name(), None);
    /// ```
    #[inline]
    pub fn name(&self) -> Option<&'static str> {
        self.raw.name()
    }

    /// The bounds on waiting that [`acquire`](Self::acquire) uses.
    pub fn wait_limits(&self) -> WaitLimits {
        self.wait_limits
    }

    /// The mechanism under this gate, for the crate's other sources of permits (a
    /// [`Limiter`](crate::Limiter) takes and gives back its permits there).
    #[inline]
    pub(crate) fn raw(&self) -> &RawGate {
        &self.raw
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
        self.raw.fmt_as("Gate", f)
    }
}
