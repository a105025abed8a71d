//! The retry loop: one permit per attempt, released while backing off.

use std::future::Future;

use super::backoff::Jitter;
use super::{Elapsed, Failure, Retry, RetryError};
use crate::{Admission, Gate, Outcome, Unlimited};

impl<E> Retry<E> {
    /// Runs `op` under this policy, taking a permit from `admission` for each attempt and
    /// releasing it before backing off.
    ///
    /// Returns the first success, or a [`RetryError`] saying how many attempts were made and
    /// what ended the last one. An error that [`retry_if`](super::RetryBuilder::retry_if)
    /// rejects ends the call at once; a timed-out attempt is always retryable.
    pub async fn call<A, F, Fut, T>(&self, admission: &A, mut op: F) -> Result<T, RetryError<E>>
    where
        A: Admission + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut jitter = None;
        let mut attempts = 0;
        loop {
            let outcome = {
                let permit = match admission.admit().await {
                    Ok(permit) => permit,
                    Err(e) => return Err(RetryError::new(attempts, Failure::Gate(e))),
                };
                attempts += 1;
                let outcome = match self.timeout {
                    None => op().await.map_err(Failure::Error),
                    Some(limit) => match tokio::time::timeout(limit, op()).await {
                        Ok(result) => result.map_err(Failure::Error),
                        Err(_) => Err(Failure::TimedOut(Elapsed::new())),
                    },
                };
                // Each attempt is reported on its own; a cancelled attempt never gets here.
                let report = match &outcome {
                    Ok(_) => Outcome::Success,
                    Err(Failure::Error(e)) => self.outcome(e),
                    Err(_) => Outcome::TimedOut,
                };
                admission.release(permit, report);
                outcome
            };
            let failure = match outcome {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let (retryable, hint) = match &failure {
                Failure::Error(e) => (self.is_retryable(e), self.hint(e)),
                _ => (true, None),
            };
            if !retryable || attempts > self.retries {
                return Err(RetryError::new(attempts, failure));
            }
            let mut delay = self.backoff.delay(attempts);
            if self.jitter {
                delay = jitter.get_or_insert_with(Jitter::new).full(delay);
            }
            if let Some(hint) = hint {
                delay = delay.max(hint);
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
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
