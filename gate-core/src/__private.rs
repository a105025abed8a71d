//! Items used by code that `#[gated]` generates. Not public API; may change at any time.
//!
//! An expansion without `retry` or `timeout` uses only `Gate`, `shared_gate` and `refused`.
//! One with them runs an explicit loop (so that the body can borrow `&mut self` and the
//! arguments afresh for each attempt) and asks `Attempts` after every attempt whether to stop
//! or how long to back off, which is what `Retry::call` does inside.

use std::time::Duration as StdDuration;

pub use std::future::Future;
pub use std::time::Duration;

pub use crate::{AcquireError, Elapsed, Gate, Retry, RetryBuilder};

use crate::retry::Jitter;

/// The gate named by `#[gated(gate = PATH)]`.
///
/// It must live for `'static`: that admits a `static` gate, a `LazyLock<Gate>` and a
/// `LazyLock<Arc<Gate>>` (by deref coercion), and rejects a `const` gate, which would be a
/// fresh gate at every call and so limit nothing.
#[inline(always)]
pub const fn shared_gate(gate: &'static Gate) -> &'static Gate {
    gate
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

/// A return type whose values say whether the call failed: `Result<T, E>` under any alias
/// (`std::io::Result<T>`, `anyhow::Result<T>`), decided by the type system, not by spelling.
#[diagnostic::on_unimplemented(
    message = "`#[gated]` with `retry` or `timeout` needs a function that returns a `Result`, not `{Self}`",
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
pub enum Outcome<R> {
    /// The body finished with this value.
    Returned(R),
    /// The body ran past the timeout and was dropped.
    TimedOut,
}

/// Runs one attempt, cancelling it if it runs longer than `timeout`.
pub async fn attempt_timeout<F: Future>(timeout: StdDuration, attempt: F) -> Outcome<F::Output> {
    match tokio::time::timeout(timeout, attempt).await {
        Ok(returned) => Outcome::Returned(returned),
        Err(_) => Outcome::TimedOut,
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

/// The state of a retried call between attempts: how many were made, and the jitter source
/// (seeded only once a call backs off, so the success path pays nothing).
#[derive(Debug, Default)]
pub struct Attempts {
    made: u32,
    jitter: Option<Jitter>,
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
        self.made = self.made.saturating_add(1);
        let hint = match returned.error() {
            None => return Step::Done(returned),
            Some(error) if !retry_if(error) => return Step::Done(returned),
            Some(error) => policy.hint(error),
        };
        if self.made > policy.retries() {
            return Step::Done(returned);
        }
        Step::Wait(self.delay(policy, hint))
    }

    /// Like [`next`](Self::next) under a per-attempt timeout: a timed-out attempt is always
    /// retryable, and if it was the last one the function returns `E::from(Elapsed)`.
    pub fn next_timed<R, E>(
        &mut self,
        outcome: Outcome<R>,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<R>
    where
        R: Fallible<Error = E>,
        E: FromElapsed,
    {
        match outcome {
            Outcome::Returned(returned) => self.next(returned, policy, retry_if),
            Outcome::TimedOut => {
                self.made = self.made.saturating_add(1);
                if self.made > policy.retries() {
                    let error = E::from_elapsed(Elapsed::new());
                    return Step::Done(R::from_error(error));
                }
                Step::Wait(self.delay(policy, None))
            }
        }
    }

    fn delay<E>(&mut self, policy: &Retry<E>, hint: Option<StdDuration>) -> StdDuration {
        let mut delay = policy.backoff().delay(self.made);
        if policy.jitter() {
            delay = self.jitter.get_or_insert_with(Jitter::new).full(delay);
        }
        match hint {
            Some(hint) => delay.max(hint),
            None => delay,
        }
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
            wait(attempts.next_timed(Outcome::TimedOut, &p, transient)),
            second
        );
        assert!(matches!(
            attempts.next_timed(Outcome::<Result<(), E>>::TimedOut, &p, transient),
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
    #[should_panic(expected = "`#[gated]` function `embed` could not get a permit: gate closed")]
    fn a_refused_permit_panics_naming_the_function() {
        refused(AcquireError::Closed, "embed");
    }
}
