//! [`Attempts`]: the retry loop written out, for a body that [`Retry::call`] cannot take.
//!
//! [`Retry::call`] takes the operation as an `FnMut` closure that returns a future. A future
//! that borrows `&mut self` (or a `&mut` argument) cannot be returned from such a closure: the
//! borrow would have to outlive the call that made it. Written as a loop, each attempt is a
//! fresh `async` block that borrows what it needs only while it runs, and [`Attempts`] decides
//! between attempts exactly as [`Retry::call`] does: it is the same schedule, and the one that
//! `#[gated(retry = ..)]` expands to.

use std::future::Future;
use std::time::Duration;

use super::{Elapsed, Failed, Retry, Schedule, finish};
use crate::Report;

/// How an attempt run under a per-attempt timeout ([`Attempt::within`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<R> {
    /// The attempt finished with this value.
    Returned(R),
    /// The attempt ran past its timeout and was dropped.
    TimedOut,
}

impl<R> Attempt<R> {
    /// Runs `attempt`, dropping it if it runs longer than `timeout`. Uses tokio's timer, so
    /// it must run inside a tokio runtime with time enabled.
    pub async fn within<F>(timeout: Duration, attempt: F) -> Self
    where
        F: Future<Output = R>,
    {
        match tokio::time::timeout(timeout, attempt).await {
            Ok(returned) => Attempt::Returned(returned),
            Err(_) => Attempt::TimedOut,
        }
    }
}

/// What to do after an attempt, as [`Attempts::next`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a `Step` says whether to return or to back off and try again"]
pub enum Step<R> {
    /// The call is over: return this (a success, an error that is not retried, or the last
    /// attempt's error, unchanged).
    Done(R),
    /// Back off this long, holding no permit, then make the next attempt.
    Wait(Duration),
}

/// The state of one retried call between its attempts: how many were made, and the jitter
/// source. Keep one per call, ask [`next`](Self::next) after each attempt.
///
/// Each attempt takes its own permit from an [`Admission`](crate::Admission) and hands it to
/// [`next`](Self::next), which reports how the attempt went through it
/// ([`Report::finish`]: a success, what the policy makes of the error, or a timeout) and so
/// releases it before the caller backs off, as [`Retry::call`] does. An attempt dropped
/// before it is handed over (the call was cancelled) is not reported. An overload is
/// settled at 0 tokens before it is reported ([`Report::settle`]): a server does not charge
/// a request it refused, so a reservation from a token budget goes back; settle a success
/// by hand before handing its permit over.
///
/// The policy's attempt count, backoff, jitter, server hints
/// ([`honor_retry_after`](crate::RetryBuilder::honor_retry_after)) and
/// [`retry_if`](crate::RetryBuilder::retry_if) apply; its
/// [`timeout`](crate::RetryBuilder::timeout) applies only if the loop runs each attempt
/// through [`Attempt::within`] and asks [`next_timed`](Self::next_timed). Unlike
/// [`Retry::call`], the loop returns the last error itself, not a
/// [`RetryError`](crate::RetryError); a server hint longer than the policy waits for ends the
/// call with the error that carries it.
///
/// # Examples
///
/// A connection whose `query` takes `&mut self`, retried over any admission:
///
/// ```
/// use std::time::Duration;
/// use gate_core::retry::{Attempts, Step};
/// use gate_core::{Admission, Gate, Retry};
///
/// struct Connection {
///     failures_left: u32,
///     queries: u32,
/// }
///
/// impl Connection {
///     async fn query(&mut self, sql: &str) -> Result<usize, &'static str> {
///         self.queries += 1;
///         if self.failures_left > 0 {
///             self.failures_left -= 1;
///             return Err("connection reset");
///         }
///         Ok(sql.len())
///     }
///
///     /// Retries `query`, each attempt borrowing `self` afresh, under a permit of `admission`.
///     async fn query_retried<A: Admission>(
///         &mut self,
///         admission: &A,
///         policy: &Retry<&'static str>,
///         sql: &str,
///     ) -> Result<usize, &'static str> {
///         let mut attempts = Attempts::new();
///         loop {
///             let permit = admission.admit().await.map_err(|_| "refused")?;
///             let returned = self.query(sql).await;
///             match attempts.next(permit, returned, policy) {
///                 Step::Done(returned) => return returned,
///                 // The permit is released: back off without holding it.
///                 Step::Wait(delay) => tokio::time::sleep(delay).await,
///             }
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let gate = Gate::new(4);
/// let policy = Retry::fixed(3, Duration::from_millis(100));
/// let mut connection = Connection { failures_left: 2, queries: 0 };
/// let rows = connection.query_retried(&gate, &policy, "select 1").await;
/// assert_eq!(rows, Ok(8));
/// assert_eq!(connection.queries, 3);
/// assert_eq!(gate.available_permits(), 4);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Attempts {
    schedule: Schedule,
}

impl Attempts {
    /// The state of a call that has made no attempt yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts decided on so far, counting the first.
    pub fn made(&self) -> u32 {
        self.schedule.made()
    }

    /// Reports how the attempt that returned `returned` went through its `permit` (which
    /// releases it), then decides, as [`Retry::call`] does: a success, an error that
    /// `retry_if` rejects, a server hint longer than the policy waits for, and the last
    /// allowed attempt end the call; any other error backs off.
    pub fn next<T, E, P>(
        &mut self,
        permit: P,
        returned: Result<T, E>,
        policy: &Retry<E>,
    ) -> Step<Result<T, E>>
    where
        P: Report,
    {
        self.next_with(permit, returned, policy, policy.retry_if)
    }

    /// Like [`next`](Self::next), for an attempt run under a per-attempt timeout
    /// ([`Attempt::within`]): a timed-out attempt is reported as
    /// [`Outcome::TimedOut`](crate::Outcome::TimedOut) and is always retryable; if it was
    /// the last one, the call ends with `E::from(Elapsed)`.
    pub fn next_timed<T, E, P>(
        &mut self,
        permit: P,
        attempt: Attempt<Result<T, E>>,
        policy: &Retry<E>,
    ) -> Step<Result<T, E>>
    where
        P: Report,
        E: From<Elapsed>,
    {
        self.next_timed_with(permit, attempt, policy, policy.retry_if, E::from)
    }

    /// Like [`next_timed`](Self::next_timed), with the error a timed-out last attempt ends
    /// the call with made by `timed_out`, for an error type that cannot implement
    /// `From<Elapsed>`: another crate's (the orphan rule forbids that impl in yours).
    /// `#[gated(timeout_error = ..)]` expands to it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::retry::{Attempt, Attempts, Step};
    /// use gate_core::Retry;
    ///
    /// // Stands for another crate's error: no `From<Elapsed>` can be written for it here.
    /// let policy: Retry<std::io::Error> = Retry::new(0);
    /// let mut attempts = Attempts::new();
    /// let step = attempts.next_timed_or_else((), Attempt::<Result<(), _>>::TimedOut, &policy, |elapsed| {
    ///     std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed)
    /// });
    /// let Step::Done(Err(error)) = step else { panic!("the only attempt timed out") };
    /// assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    /// ```
    pub fn next_timed_or_else<T, E, P>(
        &mut self,
        permit: P,
        attempt: Attempt<Result<T, E>>,
        policy: &Retry<E>,
        timed_out: impl FnOnce(Elapsed) -> E,
    ) -> Step<Result<T, E>>
    where
        P: Report,
    {
        self.next_timed_with(permit, attempt, policy, policy.retry_if, timed_out)
    }

    /// [`next`](Self::next) with `retry_if` given apart from the policy. `#[gated]` passes
    /// it after the attempt's value, so that the compiler knows the error type before it
    /// checks the user's predicate against it.
    #[inline(always)]
    pub(crate) fn next_with<T, E, P>(
        &mut self,
        permit: P,
        returned: Result<T, E>,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<Result<T, E>>
    where
        P: Report,
    {
        finish(
            permit,
            policy.report(match &returned {
                Ok(_) => Ok(()),
                Err(error) => Err(Failed::Error(error)),
            }),
        );
        self.decide(returned, policy, retry_if)
    }

    /// [`next_timed_or_else`](Self::next_timed_or_else) with `retry_if` given apart from the
    /// policy.
    #[inline(always)]
    pub(crate) fn next_timed_with<T, E, P>(
        &mut self,
        permit: P,
        attempt: Attempt<Result<T, E>>,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
        timed_out: impl FnOnce(Elapsed) -> E,
    ) -> Step<Result<T, E>>
    where
        P: Report,
    {
        match attempt {
            Attempt::Returned(returned) => self.next_with(permit, returned, policy, retry_if),
            Attempt::TimedOut => {
                finish(permit, policy.report(Err(Failed::TimedOut)));
                self.schedule.begin();
                match self.schedule.after(policy, Failed::TimedOut, retry_if) {
                    Ok(delay) => Step::Wait(delay),
                    Err(_) => Step::Done(Err(timed_out(Elapsed::new()))),
                }
            }
        }
    }

    /// Counts the attempt that returned `returned` and decides what follows it.
    #[inline]
    fn decide<T, E>(
        &mut self,
        returned: Result<T, E>,
        policy: &Retry<E>,
        retry_if: fn(&E) -> bool,
    ) -> Step<Result<T, E>> {
        self.schedule.begin();
        let next = match &returned {
            Ok(_) => return Step::Done(returned),
            Err(error) => self.schedule.after(policy, Failed::Error(error), retry_if),
        };
        match next {
            // Stopped, or a server hint longer than the policy waits for: the call returns
            // the error, which carries the hint.
            Err(_) => Step::Done(returned),
            Ok(delay) => Step::Wait(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::{Backpressure, Outcome};

    #[derive(Debug, PartialEq)]
    enum E {
        Transient,
        Fatal,
        Busy(Duration),
        Elapsed,
    }

    impl From<Elapsed> for E {
        fn from(_: Elapsed) -> Self {
            E::Elapsed
        }
    }

    impl Backpressure for E {
        fn is_overload(&self) -> bool {
            matches!(self, E::Busy(_))
        }

        fn retry_after(&self) -> Option<Duration> {
            match self {
                E::Busy(after) => Some(*after),
                _ => None,
            }
        }
    }

    fn transient(e: &E) -> bool {
        *e == E::Transient
    }

    /// A permit that remembers what it was told.
    struct Told<'a>(&'a Cell<Option<Outcome>>);

    impl Report for Told<'_> {
        fn finish(self, outcome: Outcome) {
            self.0.set(Some(outcome));
        }
    }

    fn wait<R: std::fmt::Debug>(step: Step<R>) -> Duration {
        match step {
            Step::Wait(d) => d,
            Step::Done(r) => panic!("stopped with {r:?}"),
        }
    }

    #[test]
    fn attempts_follow_the_policy() {
        let second = Duration::from_secs(1);
        let p = Retry::builder(2)
            .fixed(second)
            .retry_if(transient)
            .build()
            .unwrap();
        let mut attempts = Attempts::new();
        assert_eq!(
            wait(attempts.next((), Err::<(), _>(E::Transient), &p)),
            second
        );
        assert_eq!(
            wait(attempts.next_timed((), Attempt::<Result<(), E>>::TimedOut, &p)),
            second
        );
        assert_eq!(
            attempts.next_timed((), Attempt::<Result<(), E>>::TimedOut, &p),
            Step::Done(Err(E::Elapsed))
        );
        assert_eq!(attempts.made(), 3);

        let mut attempts = Attempts::new();
        let fatal = attempts.next((), Err::<(), _>(E::Fatal), &p);
        assert_eq!(fatal, Step::Done(Err(E::Fatal)), "`retry_if` rejects it");
        let mut attempts = Attempts::new();
        let fatal_retried = attempts.next_with((), Err::<(), _>(E::Fatal), &p, |_| true);
        assert!(
            matches!(fatal_retried, Step::Wait(_)),
            "the predicate given wins"
        );
        let mut attempts = Attempts::new();
        assert_eq!(attempts.next((), Ok::<_, E>(7), &p), Step::Done(Ok(7)));
    }

    #[test]
    fn each_attempt_is_reported_through_its_permit() {
        let told = Cell::new(None);
        let p = Retry::builder(3)
            .honor_retry_after()
            .max_retry_after(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut attempts = Attempts::new();
        let busy = E::Busy(Duration::from_secs(2));
        assert_eq!(
            wait(attempts.next(Told(&told), Err::<(), _>(busy), &p)),
            Duration::from_secs(2),
            "the hint is waited out"
        );
        assert_eq!(
            told.take(),
            Some(Outcome::Overload {
                retry_after: Some(Duration::from_secs(2))
            })
        );
        let _ = attempts.next_timed(Told(&told), Attempt::<Result<(), E>>::TimedOut, &p);
        assert_eq!(told.take(), Some(Outcome::TimedOut));
        let _ = attempts.next(Told(&told), Err::<(), _>(E::Fatal), &p);
        assert_eq!(told.take(), Some(Outcome::Failed));
        let _ = attempts.next_timed(Told(&told), Attempt::Returned(Ok::<_, E>(())), &p);
        assert_eq!(told.take(), Some(Outcome::Success));
    }

    #[test]
    fn a_hint_longer_than_the_policy_waits_ends_the_call_with_its_error() {
        let p = Retry::builder(3)
            .honor_retry_after()
            .max_retry_after(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut attempts = Attempts::new();
        let long = E::Busy(Duration::from_secs(3_600));
        assert_eq!(
            attempts.next((), Err::<(), _>(long), &p),
            Step::Done(Err(E::Busy(Duration::from_secs(3_600))))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_past_its_timeout_is_dropped() {
        let slow = Attempt::within(Duration::from_secs(1), async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            1
        });
        assert_eq!(slow.await, Attempt::TimedOut);
        let quick = Attempt::within(Duration::from_secs(1), async { 2 });
        assert_eq!(quick.await, Attempt::Returned(2));
    }
}
