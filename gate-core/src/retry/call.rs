//! The retry loop: one permit per attempt, released while backing off.

use std::future::Future;

use super::{Elapsed, Failed, Failure, Retry, RetryError, Schedule, Stop};
use crate::{Admission, Gate, Report, Unlimited};

impl<E> Retry<E> {
    /// Runs `op` under this policy, taking a permit from `admission` for each attempt and
    /// releasing it before backing off.
    ///
    /// Returns the first success, or a [`RetryError`] saying how many attempts were made and
    /// what ended the last one. An error that [`retry_if`](crate::RetryBuilder::retry_if)
    /// rejects ends the call at once, and so do a server hint longer than the policy
    /// waits for ([Server hints](Retry#server-hints)) and an error that says retrying cannot
    /// help ([`RetryError::is_permanent`]); a timed-out attempt is always retryable.
    pub async fn call<A, F, Fut, T>(&self, admission: &A, mut op: F) -> Result<T, RetryError<E>>
    where
        A: Admission + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut schedule = Schedule::default();
        loop {
            let ran = {
                let permit = match admission.admit().await {
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
                // Each attempt is reported on its own; a cancelled attempt never gets here.
                permit.finish(self.report(ended(&ran)));
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
