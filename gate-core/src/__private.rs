//! Items used by code that `#[gated]` generates. Not public API; may change at any time.
//!
//! Every expansion takes its admission as a `&'static` `Admission` (a function's own
//! `static Gate` or `static LazyLock<Limiter>`, or the one it shares through `Shared`),
//! admits each call through `Admission::admit` (with a `cost`, `admit_tokens`), and panics
//! through `refused` if it is refused. One with `retry`, `timeout`, `adaptive`,
//! `backpressure` or `cost` runs an explicit loop (so that the body can borrow `&mut self`
//! and the arguments afresh for each attempt) and hands each attempt's permit to `next` or
//! `next_timed` (with a cost, `next_settled` or `next_timed_settled`, which settle a
//! success's reservation first), which report the attempt through it and decide, by the
//! public `Attempts`, whether to stop or how long to back off: the same schedule that
//! `Retry::call` uses inside.
//!
//! Only what expansions name is here; the bounds on `Shared`, `next`, `from_elapsed`,
//! `tokens_used` and `backpressure` carry the messages a user sees when the function does
//! not fit.

use std::future::Future;
use std::time::Duration as StdDuration;

pub use std::sync::LazyLock;
pub use std::time::Duration;

pub use crate::rate::Rate;
pub use crate::retry::{Attempt, Attempts, Step};
pub use crate::{Admission, Gate, Limiter, Retry};

use crate::adaptive::{Aimd, Bounds, Gradient};
use crate::rate::{ParseRateError, RateError};
use crate::{
    AcquireError, Backpressure, Elapsed, LimiterBuilder, Report, RetryBuilder, TokenUsage,
};

crate::sync::const_unless_loom! {
    /// A function's own gate of `limit` permits, named `name` (the function's path).
    ///
    /// # Panics
    ///
    /// If `limit` exceeds [`Gate::MAX_PERMITS`], as [`Gate::new`] does.
    #[track_caller]
    pub const fn named_gate(limit: usize, name: &'static str) -> Gate {
        if limit > Gate::MAX_PERMITS {
            panic!("Gate::new: the limit exceeds Gate::MAX_PERMITS; use a smaller limit");
        }
        Gate::with_limits(limit, crate::WaitLimits::UNBOUNDED, Some(name))
    }
}

/// The admission named by `#[gated(gate = PATH)]` or `#[gated(limiter = PATH)]`, shared by
/// every function that names it: `Shared(&PATH).admission()`.
///
/// It must live for `'static`: that admits a `static Gate`, a `static LazyLock<Limiter>`, a
/// `LazyLock<Arc<_>>` and a `LazyLock` of any other admission, and rejects a `const` gate
/// ("temporary value dropped while borrowed"), which would be a fresh gate at every call and
/// so limit nothing.
///
/// For an admission, [`admission`](Self::admission) is this inherent method. For anything
/// else, method lookup falls back to [`NotAnAdmission::admission`], whose bound fails with
/// one error on the path, and which is typed as an admission, so that no use of it adds
/// another error.
#[derive(Debug)]
pub struct Shared<A: ?Sized + 'static>(pub &'static A);

impl<A: Admission + ?Sized> Shared<A> {
    /// The admission itself.
    #[inline(always)]
    pub const fn admission(&self) -> &'static A {
        self.0
    }
}

/// The fallback of [`Shared::admission`] for what is not an admission: a compile error.
pub trait NotAnAdmission {
    /// What the path names.
    type Named: ?Sized;

    /// Never compiles: what the path names is not an admission.
    fn admission(&self) -> &'static crate::Unlimited
    where
        Self::Named: IsAdmission;
}

impl<A: ?Sized + 'static> NotAnAdmission for Shared<A> {
    type Named = A;

    fn admission(&self) -> &'static crate::Unlimited
    where
        A: IsAdmission,
    {
        &crate::Unlimited
    }
}

/// What `gate = PATH` and `limiter = PATH` need: any [`Admission`].
#[diagnostic::on_unimplemented(
    message = "`#[gated]` needs an admission here, and `{Self}` does not admit callers",
    label = "not a `Gate`, a `Limiter` or another `gate_core::Admission`",
    note = "share a `static NAME: Gate` or a `static NAME: LazyLock<Limiter>`, or implement `gate_core::Admission` for `{Self}`"
)]
pub trait IsAdmission {}

impl<A: Admission + ?Sized> IsAdmission for A {}

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

/// The token budget of `#[gated(tokens = "...")]`, evaluated like [`rate`]: a malformed
/// budget is a compile error on its literal. A burst in the text (`"180000/min (burst
/// 30000)"`) sets the bucket's size, as for `LimiterBuilder::tokens`.
#[track_caller]
pub const fn tokens(text: &str) -> Rate {
    match Rate::parse(text) {
        Ok(rate) => rate,
        Err(error) => panic!("{}", tokens_error(error)),
    }
}

/// The messages for what `Rate::parse` refuses, for the argument `$key` whose burst is set
/// by `$burst` (a `const` panic message cannot be formatted, so each argument has its own
/// table).
macro_rules! rate_errors {
    ($error:expr, $key:literal, $burst:literal, $example:literal, $what:literal) => {
        match $error {
            ParseRateError::MissingSlash => concat!(
                "invalid `",
                $key,
                "`: expected a count per period, such as ",
                $example,
                ", \"10/s\" or \"100/10s\""
            ),
            ParseRateError::InvalidCount => concat!(
                "invalid `",
                $key,
                "`: the count before `/` must be a whole number, such as ",
                $example
            ),
            ParseRateError::InvalidPeriod => concat!(
                "invalid `",
                $key,
                "`: the period's multiple must be a whole number of at least 1, such as \"100/10s\""
            ),
            ParseRateError::UnknownUnit => concat!(
                "invalid `",
                $key,
                "`: unknown unit after `/`; expected `ms`, `s`, `min`, `h` or `d`, such as ",
                $example
            ),
            ParseRateError::Rate(RateError::ZeroCount) => concat!(
                "invalid `",
                $key,
                "`: the count must be at least 1; nothing would ever be admitted"
            ),
            ParseRateError::Rate(RateError::TooFast) => concat!(
                "invalid `",
                $key,
                "`: a rate cannot exceed one ",
                $what,
                " per nanosecond"
            ),
            ParseRateError::Rate(RateError::PeriodTooLong) => concat!(
                "invalid `",
                $key,
                "`: the period must be shorter than 146 years"
            ),
            ParseRateError::Rate(RateError::BurstTooLong) => concat!(
                "invalid `",
                $burst,
                "`: the burst must span less than 146 years (`burst` times the interval)"
            ),
            ParseRateError::InvalidBurst => concat!(
                "invalid `",
                $key,
                "`: expected a burst like \"(burst 5)\" after the period, at least 1"
            ),
        }
    };
}

/// What is wrong with a `rate = "..."` literal, as a `const` panic message can say it.
const fn rate_error(error: ParseRateError) -> &'static str {
    rate_errors!(error, "rate", "burst", "\"500/min\"", "admission")
}

/// What is wrong with a `tokens = "..."` literal.
const fn tokens_error(error: ParseRateError) -> &'static str {
    rate_errors!(error, "tokens", "tokens", "\"180000/min\"", "token")
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

/// Admits an attempt of `#[gated(cost = ..)]` that reserves `cost` tokens, within the
/// source's own wait limits (a source without a token budget ignores `cost`).
#[inline(always)]
pub fn admit_tokens<A: Admission + ?Sized>(
    admission: &A,
    cost: u64,
) -> impl Future<Output = Result<A::Permit<'_>, AcquireError>> + Send {
    admission.admit_tokens_with(cost, admission.wait_limits())
}

/// A type whose values say how many tokens the call that made them used: any
/// `T: TokenUsage`.
///
/// The note leads with `usage`, which works for any type: for another crate's (an
/// async-openai response), the orphan rule forbids the `TokenUsage` impl.
#[diagnostic::on_unimplemented(
    message = "`#[gated(cost = ...)]` settles each call from what its `Ok` value says it used, and `{Self}` does not implement `gate_core::TokenUsage`",
    label = "the `Ok` type here cannot say how many tokens the call used",
    note = "read it with `usage = |value| ...` (a `fn(&{Self}) -> Option<u64>`), which works for another crate's type too; `usage = |_| None` keeps every estimate charged",
    note = "or, if `{Self}` is defined in your crate, add `impl gate_core::TokenUsage for {Self}`"
)]
pub trait ReportsUsage: TokenUsage {}

impl<T: TokenUsage + ?Sized> ReportsUsage for T {}

/// The `usage` of a function without one: `TokenUsage::tokens_used`, whose bound says what
/// to write when the `Ok` type has none.
#[inline(always)]
pub fn tokens_used<T: ReportsUsage>(value: &T) -> Option<u64> {
    value.tokens_used()
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
    message = "`#[gated]` with `retry`, `timeout`, `adaptive`, `backpressure` or `cost` needs a function that returns a `Result`, not `{Self}`",
    label = "this is not a `Result`",
    note = "an attempt fails by returning `Err`, which is how `#[gated]` knows to try again; aliases such as `std::io::Result<T>` work too"
)]
pub trait Fallible {
    /// The value of a success.
    type Ok;
    /// The error an attempt may end with.
    type Error;

    /// This value as the `Result` it is.
    fn into_result(self) -> Result<Self::Ok, Self::Error>;

    /// The value back from its `Result`.
    fn from_result(result: Result<Self::Ok, Self::Error>) -> Self;
}

impl<T, E> Fallible for Result<T, E> {
    type Ok = T;
    type Error = E;

    #[inline(always)]
    fn into_result(self) -> Self {
        self
    }

    #[inline(always)]
    fn from_result(result: Self) -> Self {
        result
    }
}

/// An error type that can report a timed-out attempt: any `E: From<Elapsed>`.
///
/// The note leads with `timeout_error`, which works for any error type: for another
/// crate's (async-openai's `OpenAIError`), the orphan rule forbids the `From` impl.
#[diagnostic::on_unimplemented(
    message = "`#[gated(timeout = ...)]` needs the error of a timed-out attempt, and `{Self}` has no `From<gate_core::Elapsed>`",
    label = "the error type here cannot say that an attempt timed out",
    note = "name the error with `timeout_error = |elapsed: gate_core::Elapsed| ...` (a `fn(Elapsed) -> {Self}`), which works for another crate's error type too",
    note = "or, if `{Self}` is defined in your crate, add `impl From<gate_core::Elapsed> for {Self}`"
)]
pub trait FromElapsed: From<Elapsed> {}

impl<E: From<Elapsed>> FromElapsed for E {}

/// The `timeout_error` of a function without one: `E::from(Elapsed)`, whose bound says what
/// to write when `E` has no such `From`.
#[inline(always)]
pub fn from_elapsed<E: FromElapsed>(elapsed: Elapsed) -> E {
    E::from(elapsed)
}

/// Reports how an attempt went through its permit, then decides what follows it
/// ([`Attempts::next`], with the function's `retry_if`).
///
/// `retry_if` comes after `returned`, so that the compiler knows the error type before it
/// checks the user's predicate against it.
#[inline(always)]
pub fn next<R, E, P>(
    attempts: &mut Attempts,
    permit: P,
    returned: R,
    policy: &Retry<E>,
    retry_if: fn(&E) -> bool,
) -> Step<R>
where
    R: Fallible<Error = E>,
    P: Report,
{
    match attempts.next_with(permit, returned.into_result(), policy, retry_if) {
        Step::Done(returned) => Step::Done(R::from_result(returned)),
        Step::Wait(delay) => Step::Wait(delay),
    }
}

/// Like [`next`] for an attempt under a per-attempt timeout
/// ([`Attempts::next_timed_or_else`]): a timed-out attempt is always retryable, and if it
/// was the last one the function returns `timed_out(Elapsed)` (the function's
/// `timeout_error`, else [`from_elapsed`]).
#[inline(always)]
pub fn next_timed<R, E, P>(
    attempts: &mut Attempts,
    permit: P,
    attempt: Attempt<R>,
    policy: &Retry<E>,
    timed_out: fn(Elapsed) -> E,
    retry_if: fn(&E) -> bool,
) -> Step<R>
where
    R: Fallible<Error = E>,
    P: Report,
{
    let attempt = match attempt {
        Attempt::Returned(returned) => Attempt::Returned(returned.into_result()),
        Attempt::TimedOut => Attempt::TimedOut,
    };
    match attempts.next_timed_with(permit, attempt, policy, retry_if, timed_out) {
        Step::Done(returned) => Step::Done(R::from_result(returned)),
        Step::Wait(delay) => Step::Wait(delay),
    }
}

/// [`next`] for a function with a `cost`: a success that says what it used (`usage`)
/// settles the attempt's reservation first; a failure, or a success that says nothing,
/// keeps the estimate charged (an overload is settled at 0 by `Attempts`).
#[inline(always)]
pub fn next_settled<R, T, E, P>(
    attempts: &mut Attempts,
    mut permit: P,
    returned: R,
    policy: &Retry<E>,
    usage: fn(&T) -> Option<u64>,
    retry_if: fn(&E) -> bool,
) -> Step<R>
where
    R: Fallible<Ok = T, Error = E>,
    P: Report,
{
    let returned = returned.into_result();
    if let Ok(value) = &returned
        && let Some(used) = usage(value)
    {
        permit.settle(used);
    }
    match attempts.next_with(permit, returned, policy, retry_if) {
        Step::Done(returned) => Step::Done(R::from_result(returned)),
        Step::Wait(delay) => Step::Wait(delay),
    }
}

/// [`next_timed`] for a function with a `cost`, settling as [`next_settled`] does; an
/// attempt that timed out keeps its estimate charged.
#[inline(always)]
pub fn next_timed_settled<R, T, E, P>(
    attempts: &mut Attempts,
    mut permit: P,
    attempt: Attempt<R>,
    policy: &Retry<E>,
    timed_out: fn(Elapsed) -> E,
    usage: fn(&T) -> Option<u64>,
    retry_if: fn(&E) -> bool,
) -> Step<R>
where
    R: Fallible<Ok = T, Error = E>,
    P: Report,
{
    let attempt = match attempt {
        Attempt::Returned(returned) => {
            let returned = returned.into_result();
            if let Ok(value) = &returned
                && let Some(used) = usage(value)
            {
                permit.settle(used);
            }
            Attempt::Returned(returned)
        }
        Attempt::TimedOut => Attempt::TimedOut,
    };
    match attempts.next_timed_with(permit, attempt, policy, retry_if, timed_out) {
        Step::Done(returned) => Step::Done(R::from_result(returned)),
        Step::Wait(delay) => Step::Wait(delay),
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
            wait(next(&mut attempts, (), Err(E::Transient), &p, transient)),
            second
        );
        assert_eq!(
            wait(next_timed(
                &mut attempts,
                (),
                Attempt::TimedOut,
                &p,
                from_elapsed,
                transient
            )),
            second
        );
        assert!(matches!(
            next_timed(
                &mut attempts,
                (),
                Attempt::<Result<(), E>>::TimedOut,
                &p,
                from_elapsed,
                transient
            ),
            Step::Done(Err(E::Elapsed))
        ));
        // `timeout_error` makes the last timeout's error, whatever `From` says.
        let mut attempts = Attempts::default();
        let once = policy(Retry::builder(0));
        assert!(matches!(
            next_timed(
                &mut attempts,
                (),
                Attempt::<Result<(), E>>::TimedOut,
                &once,
                |_| E::Fatal,
                transient
            ),
            Step::Done(Err(E::Fatal))
        ));

        let mut attempts = Attempts::default();
        let fatal = next(&mut attempts, (), Err::<(), _>(E::Fatal), &p, transient);
        assert!(matches!(fatal, Step::Done(Err(E::Fatal))));
        let mut attempts = Attempts::default();
        let fatal_retried = next(&mut attempts, (), Err::<(), _>(E::Fatal), &p, always);
        assert!(matches!(fatal_retried, Step::Wait(_)));
        let mut attempts = Attempts::default();
        assert!(matches!(
            next(&mut attempts, (), Ok::<_, E>(7), &p, transient),
            Step::Done(Ok(7))
        ));
    }

    /// A permit that remembers what it was settled at.
    struct Settled<'a>(&'a std::cell::Cell<Option<u64>>);

    impl Report for Settled<'_> {
        fn finish(self, _: crate::Outcome) {}

        fn settle(&mut self, used: u64) {
            self.0.set(Some(used));
        }
    }

    #[test]
    fn a_success_that_says_what_it_used_is_settled_and_nothing_else_is() {
        let p = policy(Retry::builder(1));
        let settled = std::cell::Cell::new(None);
        let used = |n: &u64| Some(*n);
        let mut attempts = Attempts::default();
        let _ = next_settled(
            &mut attempts,
            Settled(&settled),
            Ok::<u64, E>(42),
            &p,
            used,
            always,
        );
        assert_eq!(settled.take(), Some(42));
        let mut attempts = Attempts::default();
        let _ = next_settled(
            &mut attempts,
            Settled(&settled),
            Ok::<u64, E>(42),
            &p,
            |_| None,
            always,
        );
        assert_eq!(settled.take(), None, "a success that says nothing");
        let _ = next_settled(
            &mut attempts,
            Settled(&settled),
            Err::<u64, E>(E::Transient),
            &p,
            used,
            always,
        );
        assert_eq!(settled.take(), None, "a failure keeps its estimate");
        let mut attempts = Attempts::default();
        let timed = Attempt::Returned(Ok::<u64, E>(7));
        let _ = next_timed_settled(
            &mut attempts,
            Settled(&settled),
            timed,
            &p,
            from_elapsed,
            used,
            always,
        );
        assert_eq!(settled.take(), Some(7));
        let _ = next_timed_settled(
            &mut attempts,
            Settled(&settled),
            Attempt::<Result<u64, E>>::TimedOut,
            &p,
            from_elapsed,
            used,
            always,
        );
        assert_eq!(settled.take(), None, "a timeout keeps its estimate");
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
