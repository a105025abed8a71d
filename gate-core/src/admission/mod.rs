//! [`Admission`]: where permits come from, kept apart from everything that uses them.
//!
//! Retry ([`Retry::call`](crate::Retry::call)), [`Batch`](crate::Batch), `#[gated]` and
//! gate-tower's `GateLayer` are written against this trait, not against [`Gate`](crate::Gate)
//! or [`Limiter`](crate::Limiter). So a new source of permits (a limit shared by many
//! processes through Redis, a per-key limit, a token budget) is one `impl` and works with all
//! of them, and each of them works over a local gate, a limiter, or no limit at all
//! ([`Unlimited`]).
//!
//! - [`Admission`]: admit (waiting within [`WaitLimits`]), admit at once if nothing stands in
//!   the way, say the capacity and the statistics.
//! - [`OwnedAdmission`]: the same through an `Arc`, for permits that must be `'static` (a
//!   tower response future, a spawned task).
//! - [`Report`]: a permit tells its source how its attempt went: a server's pushback at
//!   once, how it ended ([`Outcome`]) as it is released.
//! - [`BoxAdmission`]: any owned admission behind one type, for holders that cannot be
//!   generic (a tower layer).

mod boxed;
mod forward;
mod gate;
mod limiter;
mod outcome;
mod unlimited;

pub use boxed::{BoxAdmission, BoxPermit};
pub use outcome::Outcome;
pub use unlimited::Unlimited;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{AcquireError, Stats, WaitLimits};

/// Something that admits callers: a [`Gate`](crate::Gate), a [`Limiter`](crate::Limiter), or
/// any other source of permits.
///
/// [`admit_with`](Self::admit_with) waits until the caller may proceed, within the caller's
/// [`WaitLimits`], and returns a permit that holds the admission until it is dropped or
/// [finished](Report::finish) with how the attempt ended.
///
/// Only `admit_with` and `try_admit` are required; the rest have defaults.
///
/// # Writing one
///
/// A source that counts the callers it lets through, over a gate:
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use gate_core::{AcquireError, Admission, Gate, OwnedAdmission, OwnedPermit, Permit, WaitLimits};
///
/// struct Counting {
///     gate: Arc<Gate>,
///     admitted: AtomicU64,
/// }
///
/// impl Admission for Counting {
///     type Permit<'a> = Permit<'a>;
///
///     async fn admit_with(&self, limits: WaitLimits) -> Result<Permit<'_>, AcquireError> {
///         let permit = self.gate.admit_with(limits).await?;
///         self.admitted.fetch_add(1, Ordering::Relaxed);
///         Ok(permit)
///     }
///
///     fn try_admit(&self) -> Option<Permit<'_>> {
///         let permit = self.gate.try_admit()?;
///         self.admitted.fetch_add(1, Ordering::Relaxed);
///         Some(permit)
///     }
/// }
///
/// impl OwnedAdmission for Counting {
///     type OwnedPermit = OwnedPermit;
///
///     async fn admit_owned_with(self: Arc<Self>, limits: WaitLimits) -> Result<OwnedPermit, AcquireError> {
///         let permit = Arc::clone(&self.gate).admit_owned_with(limits).await?;
///         self.admitted.fetch_add(1, Ordering::Relaxed);
///         Ok(permit)
///     }
///
///     fn try_admit_owned(self: &Arc<Self>) -> Option<OwnedPermit> {
///         let permit = self.gate.try_admit_owned()?;
///         self.admitted.fetch_add(1, Ordering::Relaxed);
///         Some(permit)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let source = Counting { gate: Arc::new(Gate::new(2)), admitted: AtomicU64::new(0) };
/// let policy = gate_core::Retry::new(0);
/// let answer = policy.call(&source, || async { Ok::<_, ()>(7) }).await;
/// assert_eq!(answer.ok(), Some(7));
/// assert_eq!(source.admitted.load(Ordering::Relaxed), 1);
/// # }
/// ```
pub trait Admission: Send + Sync {
    /// Held while the caller is admitted; dropping it lets the next caller in.
    type Permit<'a>: Report + Send
    where
        Self: 'a;

    /// Waits for admission, at most as long and behind at most as many others as `limits`
    /// say: past `max_wait` it fails with [`AcquireError::TimedOut`], behind `max_waiters`
    /// with [`AcquireError::QueueFull`], and with `max_wait` zero it refuses at once
    /// (counted as rejected) rather than wait. The bounds cover the whole admission,
    /// whatever it waits for (a permit, a rate cell, a pause).
    ///
    /// Cancel-safe: dropping the future gives back whatever it holds.
    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send;

    /// Admits at once if nothing stands in the way, without a future and without waiting;
    /// otherwise takes nothing and returns `None`.
    ///
    /// For a caller with a waiting path of its own (which it enters with
    /// [`admit_with`](Self::admit_with)): a miss is not counted anywhere, and may be
    /// spurious (a gate answers from its lock-free path only).
    fn try_admit(&self) -> Option<Self::Permit<'_>>;

    /// Waits for admission of an attempt that will spend about `tokens` tokens of a token
    /// budget, within `limits`: a [`Limiter`](crate::Limiter) with a
    /// [budget](crate::LimiterBuilder::tokens) reserves them (see
    /// [`Limiter::acquire_tokens`](crate::Limiter::acquire_tokens)), and the permit
    /// [settles](Report::settle) them with what the attempt used.
    ///
    /// A source without a token budget (a gate, the default) ignores `tokens` and admits as
    /// [`admit_with`](Self::admit_with) does.
    fn admit_tokens_with(
        &self,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
        let _ = tokens;
        self.admit_with(limits)
    }

    /// Waits for admission within the source's own [`wait_limits`](Self::wait_limits).
    fn admit(&self) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
        self.admit_with(self.wait_limits())
    }

    /// The bounds on waiting the source was configured with, which [`admit`](Self::admit)
    /// uses. Unbounded unless the source says otherwise.
    fn wait_limits(&self) -> WaitLimits {
        WaitLimits::UNBOUNDED
    }

    /// Callers admitted at once right now, if known. A [`Batch`](crate::Batch) reads it
    /// before starting each item, to keep no more than this plus its window alive.
    fn capacity(&self) -> Option<usize> {
        None
    }

    /// A snapshot of what the source has recorded, if it keeps statistics (a gate and a
    /// limiter do: their [`Stats`]). Named apart from `Gate::stats`, so that on an `Arc<Gate>`
    /// with this trait in scope `.stats()` still means the gate's own.
    fn snapshot(&self) -> Option<Stats> {
        None
    }
}

/// An [`Admission`] reached through an `Arc`, whose permits own a handle to it, so that they
/// (and the futures that wait for them) are `'static`: for a tower layer's response futures
/// and for spawned tasks.
pub trait OwnedAdmission: Admission + 'static {
    /// Like [`Admission::Permit`], without the borrow.
    type OwnedPermit: Report + Send + 'static;

    /// Like [`Admission::admit_with`], through an `Arc`.
    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<Self::OwnedPermit, AcquireError>> + Send + 'static;

    /// Like [`Admission::try_admit`], through an `Arc` (cloned only on admission).
    fn try_admit_owned(self: &Arc<Self>) -> Option<Self::OwnedPermit>;

    /// Like [`Admission::admit_tokens_with`], through an `Arc`. A source without a token
    /// budget (the default) ignores `tokens`.
    fn admit_owned_tokens_with(
        self: Arc<Self>,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<Self::OwnedPermit, AcquireError>> + Send + 'static {
        let _ = tokens;
        self.admit_owned_with(limits)
    }

    /// Like [`Admission::admit`], through an `Arc`.
    fn admit_owned(
        self: Arc<Self>,
    ) -> impl Future<Output = Result<Self::OwnedPermit, AcquireError>> + Send + 'static {
        let limits = self.wait_limits();
        self.admit_owned_with(limits)
    }
}

/// A permit that tells its source how the attempt made under it went: at once when a
/// server pushes back, and as it is released, how the attempt ended.
///
/// [`Retry::call`](crate::Retry::call) and `#[gated]` finish every attempt's permit, so
/// adaptive limits and shared pauses (see [`Limiter`](crate::Limiter)) learn from every
/// attempt, not from whole retry chains. A permit dropped without being finished (an attempt
/// cancelled by its caller) says nothing about the server and is not counted.
pub trait Report {
    /// Reports how the attempt ended, then releases the permit. A permit whose source learns
    /// nothing just drops.
    fn finish(self, outcome: Outcome);

    /// A server said to stay away for `retry_after`, and the attempt is not over yet (a
    /// response head seen while its body streams): a source that pauses (a
    /// [`Limiter`](crate::Limiter), a limit shared through Redis) stops admitting until
    /// then, within its own cap, without waiting for [`finish`](Self::finish). Others
    /// ignore it, as the default does.
    fn pushback(&self, retry_after: Duration) {
        let _ = retry_after;
    }

    /// The attempt used `used` tokens (as its response reports): a source with a token
    /// budget refunds what was reserved beyond it and charges what was used over it (see
    /// [`LimiterPermit::settle`](crate::LimiterPermit::settle), whose rules apply: not
    /// settled, the reservation stays charged). Others ignore it, as the default does.
    fn settle(&mut self, used: u64) {
        let _ = used;
    }
}
