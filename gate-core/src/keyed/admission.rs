//! [`KeyedAdmission`]: where a per-key limit's permits come from, kept apart from what uses
//! them (gate-tower's `KeyedGateLayer`), as [`Admission`](crate::Admission) is for one limit.
//! Implemented here for [`KeyedGate`] and [`KeyedLimiter`]; gate-redis implements it for its
//! `RedisKeyedLimiter`, so that a layer limits a fleet's tenants the way it limits one
//! process's.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use super::{KeyedAcquireError, KeyedGate, KeyedLimiter, KeyedTryAcquireError, OwnedKeyedPermit};
use crate::rate::{Clock, Rate, RateLimit};
use crate::{AcquireError, OwnedLimiterPermit, Report, WaitLimits};

/// A source of permits per key: a [`KeyedGate`], a [`KeyedLimiter`], or a limit per key kept
/// elsewhere (gate-redis's `RedisKeyedLimiter`, shared by a fleet).
///
/// [`admit_key`](Self::admit_key) says at once what becomes of a key's caller: admitted,
/// refused, or to wait for a future that admits or refuses it within the caller's
/// [`WaitLimits`]. A refusal is a [`KeyedAdmitError`]: refused as a keyed gate refuses
/// (too many keys in memory, the key's queue full, `max_wait` passed), or refused because
/// the key's rate has no cell free within `max_wait`, with the rate and the wait until its
/// next cell, so that a server can answer `429` with `Retry-After` rather than keep the
/// caller waiting for a refusal it can already see.
///
/// A source that knows what its key's rate has left after an admission says so in
/// [`rate_left`](Self::rate_left), for the `RateLimit` fields of an admitted response.
///
/// # Examples
///
/// Per-tenant admission over any source, the way a tower layer drives it:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use gate_core::keyed::{KeyedAdmission, KeyedAdmit, KeyedAdmitError, KeyedLimiter};
/// use gate_core::{Limiter, WaitLimits, rate::Rate};
///
/// async fn admit<A: KeyedAdmission<String>>(
///     source: &Arc<A>,
///     key: &str,
/// ) -> Result<A::Permit, KeyedAdmitError> {
///     let limits = WaitLimits { max_wait: Some(Duration::ZERO), max_waiters: 16 };
///     match source.admit_key(key.to_owned(), limits) {
///         KeyedAdmit::Admitted(permit) => Ok(permit),
///         KeyedAdmit::Refused(refused) => Err(refused),
///         KeyedAdmit::Wait(wait) => wait.await,
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let tenants = Arc::new(KeyedLimiter::new(|| Limiter::with_rate(Rate::per_second(1))));
/// let first = admit(&tenants, "a").await.unwrap();
/// assert_eq!(tenants.rate_left(&first).map(|left| left.remaining()), Some(0));
/// let Err(KeyedAdmitError::RateLimited(refused)) = admit(&tenants, "a").await else {
///     panic!("a's second request within the second is refused")
/// };
/// assert_eq!(refused.wait(), Duration::from_secs(1));
/// assert!(admit(&tenants, "b").await.is_ok());
/// # }
/// ```
pub trait KeyedAdmission<K>: Send + Sync + 'static {
    /// Held while the key's caller is admitted; dropping it lets the key's next caller in.
    type Permit: Report + Send + 'static;

    /// Admits `key`'s caller at once, refuses it at once, or hands back the future that
    /// waits for its admission within `limits` (which may still refuse it, a rate refusal
    /// included: a source that learns its rate's state from a store only does so there).
    ///
    /// A source refuses with [`KeyedAdmitError::RateLimited`] when `limits.max_wait` is set
    /// and the key's rate has no cell free within it (with `max_wait` zero, whenever it has
    /// none free now); with no `max_wait` it waits for the cell.
    ///
    /// Cancel-safe: dropping the future gives back whatever it holds.
    #[allow(clippy::type_complexity)]
    fn admit_key(
        self: &Arc<Self>,
        key: K,
        limits: WaitLimits,
    ) -> KeyedAdmit<
        Self::Permit,
        impl Future<Output = Result<Self::Permit, KeyedAdmitError>> + Send + 'static,
    >;

    /// What `permit`'s key's rate had left once the permit took its cell, if the source has
    /// a rate per key and knows; `None` by default.
    fn rate_left(&self, permit: &Self::Permit) -> Option<RateLeft> {
        let _ = permit;
        None
    }
}

/// What [`KeyedAdmission::admit_key`] says of one key's caller before any waiting.
#[derive(Debug)]
pub enum KeyedAdmit<P, F> {
    /// Admitted at once.
    Admitted(P),
    /// Refused at once.
    Refused(KeyedAdmitError),
    /// To wait for this future, which admits or refuses within the caller's bounds.
    Wait(F),
}

/// Why a [`KeyedAdmission`] gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyedAdmitError {
    /// Refused as a keyed gate refuses: too many keys in memory, the key's queue full, its
    /// `max_wait` passed, its limit closed or its store out of reach.
    Acquire(KeyedAcquireError),
    /// The key's rate has no cell free within the caller's `max_wait`: refused at once.
    RateLimited(RateLimited),
}

impl fmt::Display for KeyedAdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Acquire(error) => error.fmt(f),
            Self::RateLimited(refused) => refused.fmt(f),
        }
    }
}

impl std::error::Error for KeyedAdmitError {}

impl From<KeyedAcquireError> for KeyedAdmitError {
    fn from(error: KeyedAcquireError) -> Self {
        Self::Acquire(error)
    }
}

impl From<AcquireError> for KeyedAdmitError {
    fn from(error: AcquireError) -> Self {
        Self::Acquire(error.into())
    }
}

/// Through the admission seam, a rate refusal reads as [`AcquireError::TimedOut`]: the
/// caller's `max_wait` would pass before the next cell.
impl From<KeyedAdmitError> for AcquireError {
    fn from(error: KeyedAdmitError) -> Self {
        match error {
            KeyedAdmitError::Acquire(error) => error.into(),
            KeyedAdmitError::RateLimited(_) => Self::TimedOut,
        }
    }
}

/// A refusal by a key's rate: the rate, and how long until its next cell is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    rate: Rate,
    wait: Duration,
}

impl RateLimited {
    /// Refused by `rate`, whose next cell is free in `wait`. The wait is kept as given:
    /// a server that advertises it caps it (gate-tower at `i32::MAX` milliseconds).
    pub const fn new(rate: Rate, wait: Duration) -> Self {
        Self { rate, wait }
    }

    /// The key's rate.
    pub const fn rate(&self) -> Rate {
        self.rate
    }

    /// How long until the key's rate has a cell free.
    pub const fn wait(&self) -> Duration {
        self.wait
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited for another {:?}", self.wait)
    }
}

/// What a key's rate had left after an admission: the rate, the cells free, and how long
/// until the next cell is free again (zero with the bucket full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLeft {
    rate: Rate,
    remaining: u64,
    next: Duration,
}

impl RateLeft {
    /// `remaining` cells of `rate` free, the next one free again in `next`.
    pub const fn new(rate: Rate, remaining: u64, next: Duration) -> Self {
        Self {
            rate,
            remaining,
            next,
        }
    }

    /// What `rate` has left now: the cells free, and when the next is free again (now if
    /// the bucket is full; the wait for the next cell if none is left; otherwise at most
    /// one interval between cells).
    pub fn of<C: Clock>(rate: &RateLimit<C>) -> Self {
        let remaining = rate.remaining();
        let next = if remaining >= rate.capacity() {
            Duration::ZERO
        } else if remaining == 0 {
            rate.wait_time()
        } else {
            rate.rate().interval()
        };
        Self::new(rate.rate(), remaining, next)
    }

    /// The key's rate.
    pub const fn rate(&self) -> Rate {
        self.rate
    }

    /// Cells free.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long until the next cell is free again.
    pub const fn next(&self) -> Duration {
        self.next
    }
}

/// A keyed gate has no rate: it admits at once, refuses a new key at the cap, or waits in
/// the key's queue.
impl<K, S> KeyedAdmission<K> for KeyedGate<K, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    type Permit = OwnedKeyedPermit<K, S>;

    fn admit_key(
        self: &Arc<Self>,
        key: K,
        limits: WaitLimits,
    ) -> KeyedAdmit<
        OwnedKeyedPermit<K, S>,
        impl Future<Output = Result<OwnedKeyedPermit<K, S>, KeyedAdmitError>> + Send + 'static,
    > {
        let wait = match self.try_acquire_owned(&key) {
            Ok(permit) => return KeyedAdmit::Admitted(permit),
            Err(KeyedTryAcquireError::TooManyKeys) => {
                return KeyedAdmit::Refused(KeyedAcquireError::TooManyKeys.into());
            }
            Err(_) => Arc::clone(self).acquire_owned_with(key, limits),
        };
        KeyedAdmit::Wait(async move { wait.await.map_err(KeyedAdmitError::from) })
    }
}

/// A keyed limiter refuses at once a key whose rate has no cell within `max_wait`, and
/// says what an admitted key's rate has left.
impl<K, S> KeyedAdmission<K> for KeyedLimiter<K, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    type Permit = OwnedLimiterPermit;

    fn admit_key(
        self: &Arc<Self>,
        key: K,
        limits: WaitLimits,
    ) -> KeyedAdmit<
        OwnedLimiterPermit,
        impl Future<Output = Result<OwnedLimiterPermit, KeyedAdmitError>> + Send + 'static,
    > {
        let refused = match self.try_acquire(&key) {
            Ok(permit) => return KeyedAdmit::Admitted(permit),
            Err(KeyedTryAcquireError::TooManyKeys) => Some(KeyedAcquireError::TooManyKeys.into()),
            Err(_) => match self.limiter(&key) {
                Err(error) => Some(error.into()),
                Ok(limiter) => match (limits.max_wait, limiter.rate_limit()) {
                    // One reading of the clock: the wait compared is the wait reported.
                    (Some(max_wait), Some(rate)) => Some(rate.wait_time())
                        .filter(|wait| *wait > max_wait)
                        .map(|wait| {
                            KeyedAdmitError::RateLimited(RateLimited::new(rate.rate(), wait))
                        }),
                    _ => None,
                },
            },
        };
        if let Some(refused) = refused {
            return KeyedAdmit::Refused(refused);
        }
        let keyed = Arc::clone(self);
        KeyedAdmit::Wait(async move {
            keyed
                .acquire_with(&key, limits)
                .await
                .map_err(KeyedAdmitError::from)
        })
    }

    fn rate_left(&self, permit: &OwnedLimiterPermit) -> Option<RateLeft> {
        permit.limiter().rate_limit().map(RateLeft::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limiter;

    const AT_ONCE: WaitLimits = WaitLimits {
        max_wait: Some(Duration::ZERO),
        max_waiters: 16,
    };

    /// What `admit_key` said at once, and what its future said if it had one.
    async fn admit<K, A: KeyedAdmission<K>>(
        source: &Arc<A>,
        key: K,
        limits: WaitLimits,
    ) -> (&'static str, Result<A::Permit, KeyedAdmitError>) {
        match source.admit_key(key, limits) {
            KeyedAdmit::Admitted(permit) => ("admitted", Ok(permit)),
            KeyedAdmit::Refused(refused) => ("refused", Err(refused)),
            KeyedAdmit::Wait(wait) => ("wait", wait.await),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_keyed_limiter_refuses_a_rate_with_no_cell_in_max_wait_with_the_wait() {
        let rate = Rate::per_second(2);
        let tenants = Arc::new(KeyedLimiter::<u8>::new(move || Limiter::with_rate(rate)));
        let (how, first) = admit(&tenants, 1, AT_ONCE).await;
        assert_eq!(how, "admitted");
        let left = tenants.rate_left(&first.unwrap()).unwrap();
        assert_eq!((left.rate(), left.remaining()), (rate, 0));
        assert_eq!(left.next(), Duration::from_millis(500));

        let (how, refused) = admit(&tenants, 1, AT_ONCE).await;
        assert_eq!(how, "refused");
        let expected = RateLimited::new(rate, Duration::from_millis(500));
        assert_eq!(refused.unwrap_err(), KeyedAdmitError::RateLimited(expected));
        assert_eq!(
            AcquireError::from(KeyedAdmitError::RateLimited(expected)),
            AcquireError::TimedOut
        );

        // Within a `max_wait` that covers the next cell, the caller waits for it.
        let limits = WaitLimits {
            max_wait: Some(Duration::from_secs(1)),
            ..AT_ONCE
        };
        let started = tokio::time::Instant::now();
        let (how, waited) = admit(&tenants, 1, limits).await;
        assert_eq!(how, "wait");
        assert!(waited.is_ok());
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        // Another key has its own rate.
        assert_eq!(admit(&tenants, 2, AT_ONCE).await.0, "admitted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_has_nothing_to_wait_for() {
        let rate = Rate::per_second(10).burst(5);
        let tenants = Arc::new(KeyedLimiter::<u8>::new(move || Limiter::with_rate(rate)));
        let (_, permit) = admit(&tenants, 1, AT_ONCE).await;
        let permit = permit.unwrap();
        let left = tenants.rate_left(&permit).unwrap();
        assert_eq!(left.remaining(), 4);
        assert_eq!(left.next(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(1)).await;
        let left = tenants.rate_left(&permit).unwrap();
        assert_eq!((left.remaining(), left.next()), (5, Duration::ZERO));
    }

    #[tokio::test]
    async fn a_new_key_at_the_cap_is_refused_with_too_many_keys() {
        let gate = Arc::new(KeyedGate::<u8>::builder(1).max_keys(1).build().unwrap());
        let (how, held) = admit(&gate, 1, AT_ONCE).await;
        assert_eq!(how, "admitted");
        let (how, refused) = admit(&gate, 2, AT_ONCE).await;
        assert_eq!(how, "refused");
        let too_many = KeyedAdmitError::Acquire(KeyedAcquireError::TooManyKeys);
        assert_eq!(refused.unwrap_err(), too_many);
        assert_eq!(AcquireError::from(too_many), AcquireError::QueueFull);
        // A busy key waits in its own queue, bounded by `max_wait`.
        let (how, busy) = admit(&gate, 1, AT_ONCE).await;
        assert_eq!(how, "wait");
        let timed_out = KeyedAdmitError::Acquire(KeyedAcquireError::TimedOut);
        assert_eq!(busy.unwrap_err(), timed_out);
        assert!(gate.rate_left(held.as_ref().unwrap()).is_none());
        drop(held);
        assert_eq!(admit(&gate, 2, AT_ONCE).await.0, "admitted");

        let limiters = Arc::new(
            KeyedLimiter::<u8>::builder(|| Limiter::new(1))
                .max_keys(1)
                .build(),
        );
        let (_, held) = admit(&limiters, 1, AT_ONCE).await;
        let (how, refused) = admit(&limiters, 2, AT_ONCE).await;
        assert_eq!((how, refused.unwrap_err()), ("refused", too_many));
        drop(held);
    }
}
