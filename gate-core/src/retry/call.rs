//! The retry loop: one permit per attempt, released while backing off.

use std::future::Future;

use super::{Elapsed, Failed, Failure, Retry, RetryError, Schedule, Stop, finish};
use crate::{Admission, Gate, Report, TokenUsage, Unlimited};

impl<E> Retry<E> {
    /// Runs `op` under this policy, taking a permit from `admission` for each attempt and
    /// releasing it before backing off.
    ///
    /// Returns the first success, or a [`RetryError`] saying how many attempts were made and
    /// what ended the last one. An error that [`retry_if`](crate::RetryBuilder::retry_if)
    /// rejects ends the call at once, and so do a server hint longer than the policy
    /// waits for ([Server hints](Retry#server-hints)) and an error that says retrying cannot
    /// help ([`RetryError::is_permanent`]); a timed-out attempt is always retryable.
    pub async fn call<A, F, Fut, T>(&self, admission: &A, op: F) -> Result<T, RetryError<E>>
    where
        A: Admission + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.attempt_each(admission, None, op, |_| None).await
    }

    /// Like [`call`](Self::call), for an operation that spends tokens of a token budget
    /// (a [`Limiter`](crate::Limiter) built with
    /// [`tokens`](crate::LimiterBuilder::tokens)): each attempt reserves `cost`, the
    /// estimate, as it is admitted ([`Admission::admit_tokens_with`], within the source's
    /// own [`wait_limits`](Admission::wait_limits)), and a success is settled with what it
    /// reports ([`TokenUsage::tokens_used`], through [`Report::settle`]) before it is
    /// reported, so that later callers wait for the tokens really spent.
    ///
    /// A success that reports nothing, a failed attempt and a timed-out one keep the
    /// estimate charged: the request may have reached the server, which counts it. An
    /// overload under a policy that honours it
    /// ([`honor_retry_after`](crate::RetryBuilder::honor_retry_after): an error whose
    /// [`Backpressure::is_overload`](crate::Backpressure::is_overload) says the server
    /// refused, a 429) is settled at 0: a server does not charge a request it refused. An
    /// attempt cancelled with the call gives its permit back and keeps its estimate charged
    /// too; a call cancelled while it waits for tokens has reserved none.
    ///
    /// A cost the budget can never admit (larger than its bucket, or zero) is refused at
    /// once: the call returns [`Failure::Gate`] with
    /// [`AcquireError::TooLarge`](crate::AcquireError::TooLarge) or
    /// [`AcquireError::ZeroCost`](crate::AcquireError::ZeroCost), without waiting. A source
    /// without a token budget ignores `cost`.
    ///
    /// For a response type of another crate, which cannot implement [`TokenUsage`] in
    /// yours, wrap it in a type of your own inside `op`, or write the loop with
    /// [`Attempts`](crate::retry::Attempts) and settle the permit by hand.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::rate::Rate;
    /// use gate_core::{Limiter, Retry, TokenUsage};
    ///
    /// struct Completion { total_tokens: u64 }
    ///
    /// impl TokenUsage for Completion {
    ///     fn tokens_used(&self) -> Option<u64> {
    ///         Some(self.total_tokens)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .concurrency(8)
    ///     .tokens(Rate::per_minute(180_000))
    ///     .build()
    ///     .unwrap();
    /// let policy = Retry::fixed(3, Duration::from_secs(1));
    /// // Reserves the estimate (prompt and `max_tokens`), then settles at what was used.
    /// let reply = policy
    ///     .call_tokens(&limiter, 1_500, || async { Ok::<_, ()>(Completion { total_tokens: 420 }) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(reply.total_tokens, 420);
    /// assert_eq!(limiter.token_limit().unwrap().remaining(), 180_000 - 420);
    /// # }
    /// ```
    pub async fn call_tokens<A, F, Fut, T>(
        &self,
        admission: &A,
        cost: u64,
        op: F,
    ) -> Result<T, RetryError<E>>
    where
        A: Admission + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: TokenUsage,
    {
        self.attempt_each(admission, Some(cost), op, T::tokens_used)
            .await
    }

    /// The loop of [`call`](Self::call) and [`call_tokens`](Self::call_tokens): each
    /// attempt admitted (reserving `cost` if given), run, settled from `usage` if it
    /// succeeded, and reported.
    async fn attempt_each<A, F, Fut, T>(
        &self,
        admission: &A,
        cost: Option<u64>,
        mut op: F,
        usage: impl Fn(&T) -> Option<u64>,
    ) -> Result<T, RetryError<E>>
    where
        A: Admission + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut schedule = Schedule::default();
        loop {
            let ran = {
                let admitted = match cost {
                    None => admission.admit().await,
                    Some(cost) => {
                        admission
                            .admit_tokens_with(cost, admission.wait_limits())
                            .await
                    }
                };
                let mut permit = match admitted {
                    Ok(permit) => permit,
                    Err(e) => return Err(RetryError::new(schedule.made(), Failure::Gate(e))),
                };
                schedule.begin();
                let ran = match self.timeout {
                    None => Ok(op().await),
                    Some(limit) => tokio::time::timeout(limit, op())
                        .await
                        .map_err(|_| Elapsed::new()),
                };
                if let Ok(Ok(value)) = &ran
                    && let Some(used) = usage(value)
                {
                    permit.settle(used);
                }
                // Each attempt is reported on its own; a cancelled attempt never gets here.
                finish(permit, self.report(ended(&ran)));
                ran
            };
            let stop = match ended(&ran) {
                Ok(()) => Stop::Done,
                Err(failed) => match schedule.after(self, failed, self.retry_if) {
                    Ok(delay) => {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        continue;
                    }
                    Err(stop) => stop,
                },
            };
            let failure = match ran {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => Failure::Error(e),
                Err(elapsed) => Failure::TimedOut(elapsed),
            };
            let error = RetryError::new(schedule.made(), failure);
            return Err(match stop {
                Stop::Done => error,
                Stop::Permanent => error.permanent(),
                Stop::HintTooLong(hint, max) => error.with_hint_too_long(hint, max),
            });
        }
    }

    /// Runs `op` under this policy with no limit on concurrency.
    pub async fn run<F, Fut, T>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call(&Unlimited, op).await
    }
}

impl Gate {
    /// Runs `op` under `policy`: each attempt holds a permit of this gate, and the permit is
    /// released while the call backs off, so a failing caller never blocks healthy ones.
    ///
    /// This is what tenacity's `@retry` around `async with sem:` does in Python.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::{Gate, Retry};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let gate = Gate::new(10);
    /// let policy = Retry::fixed(3, Duration::from_secs(2));
    /// let mut calls = 0;
    /// let answer = gate
    ///     .call(&policy, || {
    ///         calls += 1;
    ///         let n = calls;
    ///         async move { if n < 3 { Err("busy") } else { Ok(n) } }
    ///     })
    ///     .await;
    /// assert_eq!(answer, Ok(3));
    /// # }
    /// ```
    pub async fn call<E, F, Fut, T>(&self, policy: &Retry<E>, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        policy.call(self, op).await
    }
}

/// How an attempt ended, as the schedule and the report see it.
fn ended<T, E>(ran: &Result<Result<T, E>, Elapsed>) -> Result<(), Failed<'_, E>> {
    match ran {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failed::Error(e)),
        Err(_) => Err(Failed::TimedOut),
    }
}
