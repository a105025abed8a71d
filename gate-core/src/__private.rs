//! Items used by code that `#[gated]` generates. Not public API; may change at any time.
//!
//! An expansion without `retry` or `timeout` uses only `Gate`, `shared_gate` and `refused`
//! (or, with a rate or adaptive limit, a `Limiter` built once in a `LazyLock`). One with them
//! runs an explicit loop (so that the body can borrow `&mut self` and the arguments afresh
//! for each attempt) and asks `Attempts` after every attempt whether to stop or how long to
//! back off: the same schedule that `Retry::call` uses inside.

use std::time::Duration as StdDuration;

pub use std::future::Future;
pub use std::sync::LazyLock;
pub use std::time::Duration;

pub use crate::adaptive::{Aimd, Gradient};

use crate::adaptive::Bounds;
pub use crate::rate::Rate;
pub use crate::{
    AcquireError, Backpressure, Elapsed, Gate, Limiter, LimiterBuilder, LimiterPermit, Retry,
    RetryBuilder,
};

use crate::Outcome;
use crate::rate::{ParseRateError, RateError};
use crate::retry::{Failed, Schedule};

/// The gate named by `#[gated(gate = PATH)]`.
///
/// It must live for `'static`: that admits a `static` gate, a `LazyLock<Gate>` and a
/// `LazyLock<Arc<Gate>>` (by deref coercion), and rejects a `const` gate, which would be a
/// fresh gate at every call and so limit nothing.
#[inline(always)]
pub const fn shared_gate(gate: &'static Gate) -> &'static Gate {
    gate
}

/// The limiter named by `#[gated(limiter = PATH)]`: a `static LazyLock<Limiter>` or
/// `LazyLock<Arc<Limiter>>` (by deref coercion), shared by every function that names it.
#[inline(always)]
pub const fn shared_limiter(limiter: &'static Limiter) -> &'static Limiter {
    limiter
}

/// The rate of `#[gated(rate = "...", burst = N)]`, evaluated in a `const` spanned at the
/// literal, so that a malformed rate is a compile error there ("evaluation panicked: ...")
/// that the same [`Rate::parse`] decides as at run time.
///
/// `burst` is 1 unless given; a burst in the text (`"10/s (burst 4)"`) stands unless
/// `burst` gives another too, which is an error.
#[track_caller]
pub const fn rate(text: &str, burst: u32) -> Rate {
    let rate = match Rate::parse(text) {
        Ok(rate) => rate,
        Err(error) => panic!("{}", rate_error(error)),
    };
    if burst == 1 {
        return rate;
    }
    if rate.burst_size() > 1 {
        panic!("invalid `rate`: the text gives a burst and so does `burst`; give it once");
    }
    match rate.try_burst(burst) {
        Ok(rate) => rate,
        Err(error) => panic!("{}", rate_error(ParseRateError::Rate(error))),
    }
}

/// What is wrong with a `rate = "..."` literal, as a `const` panic message can say it.
const fn rate_error(error: ParseRateError) -> &'static str {
    match error {
        ParseRateError::MissingSlash => {
            "invalid `rate`: expected a count per period, such as \"500/min\", \"10/s\" or \"100/10s\""
        }
        ParseRateError::InvalidCount => {
            "invalid `rate`: the count before `/` must be a whole number, such as \"500/min\""
        }
        ParseRateError::InvalidPeriod => {
            "invalid `rate`: the period's multiple must be a whole number of at least 1, such as \"100/10s\""
        }
        ParseRateError::UnknownUnit => {
            "invalid `rate`: unknown unit after `/`; expected `ms`, `s`, `min`, `h` or `d`, such as \"500/min\""
        }
        ParseRateError::Rate(RateError::ZeroCount) => {
            "invalid `rate`: the count must be at least 1; nothing would ever be admitted"
        }
        ParseRateError::Rate(RateError::TooFast) => {
            "invalid `rate`: a rate cannot exceed one admission per nanosecond"
        }
        ParseRateError::Rate(RateError::PeriodTooLong) => {
            "invalid `rate`: the period must be shorter than 146 years"
        }
        ParseRateError::Rate(RateError::BurstTooLong) => {
            "invalid `burst`: the burst must span less than 146 years (`burst` times the interval)"
        }
        ParseRateError::InvalidBurst => {
            "invalid `rate`: expected a burst like \"(burst 5)\" after the period, at least 1"
        }
    }
}

/// `#[gated(adaptive = "aimd")]`: AIMD between 1 and `max` (`limit = N`), or between 1 and
/// 1,000 without a `limit`, starting at 10 or `max` if lower.
pub fn aimd(max: Option<usize>) -> Aimd {
    Aimd::builder()
        .bounds(Bounds::up_to(max))
        .build()
        .unwrap_or_else(|error| panic!("`#[gated]` built an invalid AIMD limit: {error}"))
}

/// `#[gated(adaptive = "gradient")]`: a gradient limit with the bounds of [`aimd`].
pub fn gradient(max: Option<usize>) -> Gradient {
    Gradient::builder()
        .bounds(Bounds::up_to(max))
        .build()
        .unwrap_or_else(|error| panic!("`#[gated]` built an invalid gradient limit: {error}"))
}

/// Builds a function's own limiter, on its first call.
#[track_caller]
pub fn limiter(builder: LimiterBuilder, function: &'static str) -> Limiter {
    builder
        .build()
        .unwrap_or_else(|error| panic!("`#[gated]` function `{function}`: {error}"))
}

/// What a `#[gated]` function does when its gate refuses a permit: it panics, naming the
/// function and the reason. A function's own gate (`limit = N`) never refuses; a shared gate
/// (`gate = PATH`) refuses once closed, or, if built with `max_wait` or `max_waiters`, when
/// those bounds are hit. The function's signature has no room for that error.
#[cold]
#[inline(never)]
#[track_caller]
pub fn refused(error: AcquireError, function: &'static str) -> ! {
    panic!("`#[gated]` function `{function}` could not get a permit: {error}")
}

/// Builds the retry policy that `#[gated]` has already validated when the macro ran.
pub fn policy<E>(builder: RetryBuilder<E>) -> Retry<E> {
    match builder.build() {
        Ok(policy) => policy,
        Err(error) => panic!("`#[gated]` built an invalid retry policy: {error}"),
    }
}

/// `#[gated(backpressure = true)]`: the policy honours the error's `Retry-After` and reports
/// overload errors to the limiter.
pub const fn backpressure<E: BackpressureError>(builder: RetryBuilder<E>) -> RetryBuilder<E> {
    builder.honor_retry_after()
}

/// An error type that can say "the server is overloaded": any `E: Backpressure`.
#[diagnostic::on_unimplemented(
    message = "`#[gated(backpressure = true)]` needs the error type `{Self}` to implement `gate_core::Backpressure`",
    label = "the error type here cannot say that the server is overloaded",
    note = "add `impl gate_core::Backpressure for {Self}`, with `is_overload` and `retry_after`"
)]
pub trait BackpressureError: Backpressure {}

impl<E: Backpressure> BackpressureError for E {}

/// A return type whose values say whether the call failed: `Result<T, E>` under any alias
/// (`std::io::Result<T>`, `anyhow::Result<T>`), decided by the type system, not by spelling.
#[diagnostic::on_unimplemented(
    message = "`#[gated]` with `retry`, `timeout`, `adaptive` or `backpressure` needs a function that returns a `Result`, not `{Self}`",
    label = "this is not a `Result`",
    note = "an attempt fails by returning `Err`, which is how `#[gated]` knows to try again; aliases such as `std::io::Result<T>` work too"
)]
pub trait Fallible {
    /// The error an attempt may end with.
    type Error;

    /// The error, if this value is one.
    fn error(&self) -> Option<&Self::Error>;

    /// Wraps an error.
    fn from_error(error: Self::Error) -> Self;
}

impl<T, E> Fallible for Result<T, E> {
    type Error = E;

    #[inline]
    fn error(&self) -> Option<&E> {
        self.as_ref().err()
    }

    #[inline]
    fn from_error(error: E) -> Self {
        Err(error)
    }
}

/// An error type that can report a timed-out attempt: any `E: From<Elapsed>`.
#[diagnostic::on_unimplemented(
    message = "`#[gated(timeout = ...)]` needs the error type `{Self}` to implement `From<gate_core::Elapsed>`",
    label = "the error type here cannot say that an attempt timed out",
    note = "add `impl From<gate_core::Elapsed> for {Self}`: when the last attempt times out, the function returns that error"
)]
pub trait FromElapsed {
    /// The error returned when the last attempt timed out.
    fn from_elapsed(elapsed: Elapsed) -> Self;
}

impl<E: From<Elapsed>> FromElapsed for E {
    #[inline]
    fn from_elapsed(elapsed: Elapsed) -> Self {
        E::from(elapsed)
    }
}

/// How an attempt under a per-attempt timeout ended.
#[derive(Debug)]
pub enum Attempt<R> {
    /// The body finished with this value.
    Returned(R),
    /// The body ran past the timeout and was dropped.
    TimedOut,
}

/// Runs one attempt, cancelling it if it runs longer than `timeout`.
pub async fn attempt_timeout<F: Future>(timeout: StdDuration, attempt: F) -> Attempt<F::Output> {
    match tokio::time::timeout(timeout, attempt).await {
        Ok(returned) => Attempt::Returned(returned),
        Err(_) => Attempt::TimedOut,
    }
}

/// What to do after an attempt.
#[derive(Debug)]
pub enum Step<R> {
    /// Return this from the function: a success, a non-retryable error, or the last error.
    Done(R),
    /// Back off this long (with no permit held), then try again.
    Wait(StdDuration),
}

/// The state of a retried call between attempts: the `Schedule` that `Retry::call` keeps
/// too, so both decide when to stop and how long to wait in the same way.
#[derive(Debug, Default)]
pub struct Attempts {
    schedule: Schedule,
}

impl Attempts {
    /// Decides what follows an attempt that returned `returned`, as [`Retry::call`] does:
    /// a success, an error that `retry_if` rejects, and the last allowed attempt end the call;
    /// otherwise back off.
    ///
    /// `retry_if` comes apart from the policy and after `returned`, so that the compiler
    /// knows the error type before it checks the user's predicate against it.
    pub fn next<R, E>(
        &mut self,
        returned: R,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<R>
    where
        R: Fallible<Error = E>,
    {
        self.schedule.begin();
        let next = match returned.error() {
            None => return Step::Done(returned),
            Some(error) => self.schedule.after(policy, Failed::Error(error), retry_if),
        };
        match next {
            // Stopped, or a server hint longer than the policy waits for: the function
            // returns the error, which carries the hint.
            Err(_) => Step::Done(returned),
            Ok(delay) => Step::Wait(delay),
        }
    }

    /// Like [`next`](Self::next) under a per-attempt timeout: a timed-out attempt is always
    /// retryable, and if it was the last one the function returns `E::from(Elapsed)`.
    pub fn next_timed<R, E>(
        &mut self,
        outcome: Attempt<R>,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<R>
    where
        R: Fallible<Error = E>,
        E: FromElapsed,
    {
        match outcome {
            Attempt::Returned(returned) => self.next(returned, policy, retry_if),
            Attempt::TimedOut => {
                self.schedule.begin();
                match self.schedule.after(policy, Failed::TimedOut, retry_if) {
                    Ok(delay) => Step::Wait(delay),
                    Err(_) => Step::Done(R::from_error(E::from_elapsed(Elapsed::new()))),
                }
            }
        }
    }

    /// Like [`next`](Self::next) for an attempt admitted by a limiter: first reports how it
    /// ended through `permit` (a success, or what `policy` makes of the error), then decides.
    pub fn next_reported<R, E>(
        &mut self,
        permit: LimiterPermit<'_>,
        returned: R,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<R>
    where
        R: Fallible<Error = E>,
    {
        permit.finish(policy.report(match returned.error() {
            None => Ok(()),
            Some(error) => Err(Failed::Error(error)),
        }));
        self.next(returned, policy, retry_if)
    }

    /// Like [`next_timed`](Self::next_timed) for an attempt admitted by a limiter: a
    /// timed-out attempt is reported as [`Outcome::TimedOut`].
    pub fn next_timed_reported<R, E>(
        &mut self,
        permit: LimiterPermit<'_>,
        outcome: Attempt<R>,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<R>
    where
        R: Fallible<Error = E>,
        E: FromElapsed,
    {
        permit.finish(match &outcome {
            Attempt::Returned(returned) => policy.report(match returned.error() {
                None => Ok(()),
                Some(error) => Err(Failed::Error(error)),
            }),
            Attempt::TimedOut => Outcome::TimedOut,
        });
        self.next_timed(outcome, policy, retry_if)
    }
}

/// The `retry_if` of a function without one: every error is retried.
pub fn always<E>(_: &E) -> bool {
    true
}

/// Backs off between attempts; a zero delay does not touch the timer.
pub async fn pause(delay: StdDuration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum E {
        Transient,
        Fatal,
        Elapsed,
    }

    impl From<Elapsed> for E {
        fn from(_: Elapsed) -> Self {
            E::Elapsed
        }
    }

    fn transient(e: &E) -> bool {
        *e == E::Transient
    }

    #[test]
    fn attempts_follow_the_policy() {
        let p = policy(Retry::builder(2).fixed(StdDuration::from_secs(1)));
        let second = StdDuration::from_secs(1);
        let mut attempts = Attempts::default();
        let wait = |step: Step<Result<(), E>>| match step {
            Step::Wait(d) => d,
            Step::Done(r) => panic!("stopped with {r:?}"),
        };
        assert_eq!(
            wait(attempts.next(Err(E::Transient), &p, transient)),
            second
        );
        assert_eq!(
            wait(attempts.next_timed(Attempt::TimedOut, &p, transient)),
            second
        );
        assert!(matches!(
            attempts.next_timed(Attempt::<Result<(), E>>::TimedOut, &p, transient),
            Step::Done(Err(E::Elapsed))
        ));

        let mut attempts = Attempts::default();
        let fatal = attempts.next(Err::<(), _>(E::Fatal), &p, transient);
        assert!(matches!(fatal, Step::Done(Err(E::Fatal))));
        let mut attempts = Attempts::default();
        let fatal_retried = attempts.next(Err::<(), _>(E::Fatal), &p, always);
        assert!(matches!(fatal_retried, Step::Wait(_)));
        let mut attempts = Attempts::default();
        assert!(matches!(
            attempts.next(Ok::<_, E>(7), &p, transient),
            Step::Done(Ok(7))
        ));
    }

    #[test]
    fn a_burst_comes_from_the_text_or_the_argument() {
        assert_eq!(rate("10/s (burst 4)", 1), Rate::per_second(10).burst(4));
        assert_eq!(rate("10/s", 4), Rate::per_second(10).burst(4));
        assert_eq!(rate("10/s", 1), Rate::per_second(10));
    }

    #[test]
    #[should_panic(expected = "the text gives a burst and so does `burst`; give it once")]
    fn a_burst_given_twice_is_refused() {
        let _ = rate("10/s (burst 4)", 4);
    }

    #[test]
    #[should_panic(expected = "invalid `burst`: the burst must span less than 146 years")]
    fn a_burst_too_long_to_count_is_refused() {
        let _ = rate("1/d", 250_000);
    }

    #[test]
    #[should_panic(expected = "`#[gated]` function `embed` could not get a permit: gate closed")]
    fn a_refused_permit_panics_naming_the_function() {
        refused(AcquireError::Closed, "embed");
    }
}
