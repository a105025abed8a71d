//! [`Retry`]: how many times to try, how long to wait between tries, and which errors to retry.

use std::fmt;
use std::time::Duration;

use super::{Backoff, RetryConfigError};
use crate::{Backpressure, Outcome, Signal};

/// A retry policy: the first attempt plus up to `retries` more.
///
/// `Retry::fixed(3, 2s)` is tenacity's `@retry(stop=stop_after_attempt(4), wait=wait_fixed(2))`:
/// at most four calls in all, two seconds apart. Which errors are retried, how the delay grows,
/// whether it is jittered, and a per-attempt timeout are set with [`Retry::builder`].
///
/// A policy says nothing about where permits come from: run it over a [`Gate`](crate::Gate)
/// with [`Gate::call`](crate::Gate::call), or over any [`Admission`](crate::Admission) with
/// [`Retry::call`]. The permit is held for one attempt and released while the call backs off,
/// so a failing caller never blocks healthy ones.
///
/// The type parameter is the operation's error type, so that `retry_if` and the server hint
/// can look at it; it is inferred from the call.
///
/// # Attempts
///
/// A call makes at most [`max_attempts`](Self::max_attempts) attempts: `retries + 1`, or
/// `u32::MAX` for `Retry::new(u32::MAX)`, since
/// [`RetryError::attempts`](crate::RetryError::attempts) counts them in a `u32`. No count,
/// however large, retries for ever.
///
/// # Server hints
///
/// With [`honor_retry_after`](RetryBuilder::honor_retry_after), the wait before the next
/// attempt is at least the error's [`Backpressure::retry_after`]. Such hints come from the
/// network and are not trusted: a hint longer than
/// [`max_retry_after`](RetryBuilder::max_retry_after) (60 s unless set) **ends the call at
/// once** with that error, rather than sleeping for hours (or centuries) on a server's
/// word; [`RetryError::hint_too_long`](crate::RetryError::hint_too_long) says so, for a
/// caller that would rather schedule the work for later. A hint is never shortened, so a
/// longer hint never retries sooner.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gate_core::{Gate, Retry};
///
/// # #[derive(Debug)] struct ApiError { transient: bool }
/// let policy = Retry::<ApiError>::builder(3)
///     .exponential(Duration::from_millis(500), Duration::from_secs(10))
///     .jitter(true)
///     .timeout(Duration::from_secs(30))
///     .retry_if(|e| e.transient)
///     .build()
///     .expect("valid policy");
/// assert_eq!(policy.max_attempts(), 4);
/// ```
pub struct Retry<E> {
    pub(crate) retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_retry_after: Duration,
    pub(crate) retry_if: fn(&E) -> bool,
    /// What an error says about the server: nothing unless the policy honours hints.
    pub(crate) signal: fn(&E) -> Signal,
}

/// The longest server hint a policy waits for unless
/// [`max_retry_after`](RetryBuilder::max_retry_after) says otherwise: a minute, as long as a
/// [`Limiter`](crate::Limiter) pauses
/// ([`Limiter::DEFAULT_MAX_PAUSE`](crate::Limiter::DEFAULT_MAX_PAUSE)).
const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

fn always<E>(_: &E) -> bool {
    true
}

fn no_signal<E>(_: &E) -> Signal {
    Signal::NONE
}

impl<E> Retry<E> {
    /// Retries every error up to `retries` times, at once, with no timeout.
    pub const fn new(retries: u32) -> Self {
        Self {
            retries,
            backoff: Backoff::Fixed(Duration::ZERO),
            jitter: false,
            timeout: None,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            retry_if: always::<E>,
            signal: no_signal::<E>,
        }
    }

    /// Retries every error up to `retries` times, waiting `wait` before each retry.
    pub const fn fixed(retries: u32, wait: Duration) -> Self {
        let mut policy = Self::new(retries);
        policy.backoff = Backoff::Fixed(wait);
        policy
    }

    /// Starts a policy of `retries` retries to configure further.
    pub const fn builder(retries: u32) -> RetryBuilder<E> {
        RetryBuilder {
            policy: Self::new(retries),
            error: None,
        }
    }

    /// Retries after the first attempt.
    pub const fn retries(&self) -> u32 {
        self.retries
    }

    /// Calls at most: `retries + 1`, or `u32::MAX` if `retries` is `u32::MAX` (see
    /// [Attempts](Self#attempts)).
    pub const fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The backoff between attempts.
    pub const fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Whether delays are drawn uniformly from zero to the backoff ("full jitter").
    pub const fn jitter(&self) -> bool {
        self.jitter
    }

    /// The per-attempt timeout, if any.
    pub const fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The longest server hint the policy waits for; a longer one ends the call (see
    /// [Server hints](Self#server-hints)).
    pub const fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// Whether `error` should be retried (attempts permitting).
    pub fn is_retryable(&self, error: &E) -> bool {
        (self.retry_if)(error)
    }

    /// The least time to wait after `error`, if the error carries a server's hint and the
    /// policy honours it.
    pub fn hint(&self, error: &E) -> Option<Duration> {
        (self.signal)(error).retry_after
    }

    /// Whether `error` ends the call at once because retrying cannot help: its
    /// [`Backpressure::is_permanent`], when the policy
    /// [honours server hints](RetryBuilder::honor_retry_after); `false` otherwise.
    pub fn is_permanent(&self, error: &E) -> bool {
        (self.signal)(error).permanent
    }

    /// What `error` tells an [`Admission`](crate::Admission) about the server's load:
    /// [`Outcome::Overload`] for an overload error when the policy
    /// [honours server hints](RetryBuilder::honor_retry_after), unless the error is
    /// [permanent](Backpressure::is_permanent); [`Outcome::Failed`] otherwise.
    pub fn outcome(&self, error: &E) -> Outcome {
        (self.signal)(error).outcome()
    }
}

impl<E> Clone for Retry<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Retry<E> {}

impl<E> fmt::Debug for Retry<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("timeout", &self.timeout)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Retry`]; [`build`](Self::build) validates it.
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryBuilder<E> {
    policy: Retry<E>,
    error: Option<RetryConfigError>,
}

impl<E> RetryBuilder<E> {
    /// Waits `wait` before every retry.
    pub const fn fixed(mut self, wait: Duration) -> Self {
        self.policy.backoff = Backoff::Fixed(wait);
        self
    }

    /// Waits `secs` seconds before every retry; NaN, infinite or negative is an error at
    /// [`build`](Self::build).
    pub fn fixed_secs(self, secs: f64) -> Self {
        match secs_to_duration(secs) {
            Ok(wait) => self.fixed(wait),
            Err(e) => self.fail(e),
        }
    }

    /// Waits `base` before the first retry, doubling each time, never more than `max`.
    pub const fn exponential(mut self, base: Duration, max: Duration) -> Self {
        let factor = match self.policy.backoff {
            Backoff::Exponential { factor, .. } => factor,
            Backoff::Fixed(_) => 2.0,
        };
        self.policy.backoff = Backoff::Exponential { base, factor, max };
        self
    }

    /// Sets the growth factor of an exponential backoff (2 unless set); it must be finite
    /// and at least 1. Turns a fixed backoff `d` into an exponential one from `d` up to `d`.
    pub const fn factor(mut self, factor: f64) -> Self {
        self.policy.backoff = match self.policy.backoff {
            Backoff::Exponential { base, max, .. } => Backoff::Exponential { base, factor, max },
            Backoff::Fixed(d) => Backoff::Exponential {
                base: d,
                factor,
                max: d,
            },
        };
        self
    }

    /// Draws each delay uniformly from zero to the backoff ("full jitter"), so callers that
    /// failed together do not retry together.
    pub const fn jitter(mut self, jitter: bool) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// Cancels an attempt that runs longer than `timeout` and counts it as a failed attempt
    /// (like wrapping each attempt in `asyncio.wait_for`). Timed-out attempts are retried.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout);
        self
    }

    /// Retries only errors for which `retry_if` returns `true`; others end the call at once.
    pub const fn retry_if(mut self, retry_if: fn(&E) -> bool) -> Self {
        self.policy.retry_if = retry_if;
        self
    }

    /// Waits at least as long as the error's [`Backpressure::retry_after`] hint before the
    /// next attempt, even when the backoff is shorter. A hint longer than
    /// [`max_retry_after`](Self::max_retry_after) ends the call instead (see
    /// [Server hints](Retry#server-hints)).
    ///
    /// Also reports overload errors to the [`Admission`](crate::Admission) each attempt ran
    /// under, so a [`Limiter`](crate::Limiter) shared by many callers pauses them all and an
    /// adaptive limit backs off.
    ///
    /// Over a bare [`Gate`](crate::Gate), which learns nothing, a hint delays only the caller
    /// that got it, and the permit it frees goes to the next caller in the queue, who is
    /// refused too: with every call started at once against a server that allows fewer, that
    /// is a retry storm (the demo measured 407 retries for 150 prompts, against 1 for a
    /// `Limiter`). Put a rate-limited server behind a `Limiter`, whose pause holds back
    /// everyone.
    ///
    /// And ends the call at once on an error that says retrying cannot help
    /// ([`Backpressure::is_permanent`]: a spent quota, a request too large for any window),
    /// before `retry_if` is asked; it is reported as a failure, not an overload, and
    /// [`RetryError::is_permanent`](crate::RetryError::is_permanent) says so.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::{Backpressure, Limiter, Retry};
    ///
    /// #[derive(Debug)]
    /// enum ApiError {
    ///     RateLimited,
    ///     InsufficientQuota,
    /// }
    ///
    /// impl Backpressure for ApiError {
    ///     fn is_overload(&self) -> bool {
    ///         true // both came as a 429
    ///     }
    ///     fn is_permanent(&self) -> bool {
    ///         matches!(self, ApiError::InsufficientQuota)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::new(4);
    /// let policy = Retry::builder(5)
    ///     .fixed(Duration::from_secs(1))
    ///     .honor_retry_after()
    ///     .build()
    ///     .unwrap();
    /// let err = policy
    ///     .call(&limiter, || async { Err::<(), _>(ApiError::InsufficientQuota) })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.attempts(), 1);
    /// assert!(err.is_permanent());
    /// assert_eq!(limiter.paused_until(), None);
    /// # let _ = ApiError::RateLimited;
    /// # }
    /// ```
    pub const fn honor_retry_after(mut self) -> Self
    where
        E: Backpressure,
    {
        self.policy.signal = Signal::of::<E>;
        self
    }

    /// [`honor_retry_after`](Self::honor_retry_after) for an error type that does not
    /// implement [`Backpressure`], and cannot: one of another crate, which the orphan rule
    /// keeps you from implementing a trait of this crate for. `read` says what each error
    /// means, as a [`Signal`]; a closure that captures nothing will do.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::{Retry, Signal};
    ///
    /// /// Stands in for another crate's error type.
    /// #[derive(Debug)]
    /// struct ClientError { status: u16 }
    ///
    /// let policy = Retry::builder(3)
    ///     .honor_retry_after_with(|e: &ClientError| match e.status {
    ///         429 | 503 => Signal::overload(None),
    ///         402 => Signal::PERMANENT,
    ///         _ => Signal::NONE,
    ///     })
    ///     .build()
    ///     .unwrap();
    /// assert!(policy.is_permanent(&ClientError { status: 402 }));
    /// assert!(!policy.is_permanent(&ClientError { status: 429 }));
    /// ```
    pub const fn honor_retry_after_with(mut self, read: fn(&E) -> Signal) -> Self {
        self.policy.signal = read;
        self
    }

    /// The longest server hint to wait for (60 s unless set): a hint up to it delays the
    /// next attempt, a longer one ends the call at once with its error, and
    /// [`RetryError::hint_too_long`](crate::RetryError::hint_too_long) returns it. Set it
    /// to what a caller can afford to wait; `Duration::MAX` trusts every hint. Only matters
    /// with [`honor_retry_after`](Self::honor_retry_after).
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::{Backpressure, Retry};
    ///
    /// #[derive(Debug)]
    /// struct QuotaExhausted(Duration);
    ///
    /// impl Backpressure for QuotaExhausted {
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
    /// let policy = Retry::builder(5)
    ///     .honor_retry_after()
    ///     .max_retry_after(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// // The daily quota is spent: "come back in 20 hours". No point in waiting here.
    /// let err = policy
    ///     .run(|| async { Err::<(), _>(QuotaExhausted(Duration::from_secs(20 * 3600))) })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.attempts(), 1);
    /// assert_eq!(err.hint_too_long(), Some(Duration::from_secs(72_000)));
    /// assert_eq!(start.elapsed(), Duration::ZERO);
    /// # }
    /// ```
    pub const fn max_retry_after(mut self, max: Duration) -> Self {
        self.policy.max_retry_after = max;
        self
    }

    /// Validates the settings.
    pub const fn build(self) -> Result<Retry<E>, RetryConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Backoff::Exponential { base, factor, max } = self.policy.backoff {
            if factor.is_nan() || factor.is_infinite() || factor < 1.0 {
                return Err(RetryConfigError::InvalidFactor);
            }
            if base.as_nanos() > max.as_nanos() {
                return Err(RetryConfigError::BaseExceedsMax);
            }
        }
        if let Some(timeout) = self.policy.timeout
            && timeout.is_zero()
        {
            return Err(RetryConfigError::ZeroTimeout);
        }
        Ok(self.policy)
    }

    const fn fail(mut self, error: RetryConfigError) -> Self {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self
    }
}

impl<E> fmt::Debug for RetryBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("policy", &self.policy)
            .field("error", &self.error)
            .finish()
    }
}

fn secs_to_duration(secs: f64) -> Result<Duration, RetryConfigError> {
    if secs.is_nan() || secs.is_infinite() || secs < 0.0 || secs > u64::MAX as f64 {
        return Err(RetryConfigError::InvalidDuration);
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_rejected_with_a_typed_error() {
        let bad = |b: RetryBuilder<()>| b.build().unwrap_err();
        assert_eq!(
            bad(Retry::builder(1).fixed_secs(f64::NAN)),
            RetryConfigError::InvalidDuration
        );
        assert_eq!(
            bad(Retry::builder(1).fixed_secs(-1.0)),
            RetryConfigError::InvalidDuration
        );
        assert_eq!(
            bad(Retry::builder(1).fixed_secs(f64::INFINITY)),
            RetryConfigError::InvalidDuration
        );
        let (s1, s2) = (Duration::from_secs(1), Duration::from_secs(2));
        assert_eq!(
            bad(Retry::builder(1).exponential(s2, s1)),
            RetryConfigError::BaseExceedsMax
        );
        assert_eq!(
            bad(Retry::builder(1).exponential(s1, s2).factor(f64::NAN)),
            RetryConfigError::InvalidFactor
        );
        assert_eq!(
            bad(Retry::builder(1).exponential(s1, s2).factor(0.5)),
            RetryConfigError::InvalidFactor
        );
        assert_eq!(
            bad(Retry::builder(1).timeout(Duration::ZERO)),
            RetryConfigError::ZeroTimeout
        );
    }

    #[test]
    fn a_valid_policy_keeps_its_settings() {
        const POLICY: Retry<()> = match Retry::builder(3)
            .exponential(Duration::from_millis(100), Duration::from_secs(1))
            .factor(3.0)
            .jitter(true)
            .timeout(Duration::from_secs(5))
            .build()
        {
            Ok(policy) => policy,
            Err(_) => panic!("valid"),
        };
        assert_eq!(POLICY.max_attempts(), 4);
        assert!(POLICY.jitter());
        assert_eq!(POLICY.timeout(), Some(Duration::from_secs(5)));
        assert_eq!(
            POLICY.backoff(),
            Backoff::Exponential {
                base: Duration::from_millis(100),
                factor: 3.0,
                max: Duration::from_secs(1)
            }
        );
    }
}
