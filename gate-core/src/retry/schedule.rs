//! [`Schedule`]: what happens between the attempts of one retried call. The one copy of the
//! stop decision and the delay, used by [`Retry::call`] and by the loop that `#[gated]`
//! expands to ([`Attempts`](super::Attempts)).

use std::time::Duration;

use super::{Jitter, Retry};
use crate::observe::{self, RetryDecision};
use crate::{Outcome, Report};

/// How an attempt that did not succeed ended.
#[derive(Debug)]
pub(crate) enum Failed<'a, E> {
    /// The operation returned this error.
    Error(&'a E),
    /// The attempt ran past the per-attempt timeout and was cancelled.
    TimedOut,
}

/// Why a retried call stops after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `retry_if` rejected the error, or that was the last allowed attempt.
    Done,
    /// The error said retrying cannot help ([`Retry::is_permanent`]).
    Permanent,
    /// The error's server hint was longer than the policy waits for (the hint, the cap).
    HintTooLong(Duration, Duration),
}

/// The state of one retried call between attempts: how many attempts were made, and the
/// jitter source (seeded only once the call backs off, so the success path pays nothing).
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    made: u32,
    jitter: Option<Jitter>,
}

impl Schedule {
    /// Counts an attempt that is about to run (or has just run).
    #[inline]
    pub(crate) fn begin(&mut self) {
        self.made = self.made.saturating_add(1);
    }

    /// Attempts counted so far.
    #[inline]
    pub(crate) fn made(&self) -> u32 {
        self.made
    }

    /// After the counted attempt failed: why the call stops, or how long to back off before
    /// the next attempt.
    ///
    /// A permanent error ([`Retry::is_permanent`]) stops the call before `retry_if` is asked;
    /// an error that `retry_if` rejects stops it too; a timed-out attempt is always
    /// retryable. The last allowed attempt ([`Retry::max_attempts`]) stops it too, for any
    /// count up to `u32::MAX`. The delay is the backoff for this retry, jittered if the
    /// policy says so, and at least the error's server hint if the policy honours hints; a
    /// hint above the policy's `max_retry_after` stops the call instead.
    ///
    /// The decision is traced and counted ([`observe::retry`]).
    pub(crate) fn after<E>(
        &mut self,
        policy: &Retry<E>,
        failed: Failed<'_, E>,
        retry_if: fn(&E) -> bool,
    ) -> Result<Duration, Stop> {
        let next = self.decide(policy, failed, retry_if);
        observe::retry(
            self.made,
            match next {
                Ok(delay) => RetryDecision::Retried(delay),
                Err(Stop::Done) => RetryDecision::GaveUp,
                Err(Stop::Permanent) => RetryDecision::Permanent,
                Err(Stop::HintTooLong(..)) => RetryDecision::HintTooLong,
            },
        );
        next
    }

    fn decide<E>(
        &mut self,
        policy: &Retry<E>,
        failed: Failed<'_, E>,
        retry_if: fn(&E) -> bool,
    ) -> Result<Duration, Stop> {
        let hint = match failed {
            Failed::Error(error) if policy.is_permanent(error) => return Err(Stop::Permanent),
            Failed::Error(error) if !retry_if(error) => return Err(Stop::Done),
            Failed::Error(error) => policy.hint(error),
            Failed::TimedOut => None,
        };
        if self.made >= policy.max_attempts() {
            return Err(Stop::Done);
        }
        let max = policy.max_retry_after();
        if let Some(hint) = hint
            && hint > max
        {
            return Err(Stop::HintTooLong(hint, max));
        }
        let mut delay = policy.backoff().delay(self.made);
        if policy.jitter() {
            delay = self.jitter.get_or_insert_with(Jitter::new).full(delay);
        }
        Ok(match hint {
            Some(hint) => delay.max(hint),
            None => delay,
        })
    }
}

/// Reports an attempt's `outcome` through its permit, which releases it. An overload (the
/// server refused, as a 429 or a 503 says) is settled at 0 tokens first: the server did not
/// charge for a request it refused, so its reservation goes back to the token budget. Every
/// other outcome leaves the reservation as it is (see [`Report::settle`]).
#[inline(always)]
pub(crate) fn finish<P: Report>(mut permit: P, outcome: Outcome) {
    if let Outcome::Overload { .. } = outcome {
        permit.settle(0);
    }
    permit.finish(outcome);
}

impl<E> Retry<E> {
    /// What an attempt's end tells an [`Admission`](crate::Admission): a success, what the
    /// policy makes of the error ([`Retry::outcome`]), or a timeout.
    pub(crate) fn report(&self, ended: Result<(), Failed<'_, E>>) -> Outcome {
        match ended {
            Ok(()) => Outcome::Success,
            Err(Failed::Error(error)) => self.outcome(error),
            Err(Failed::TimedOut) => Outcome::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn always(_: &&str) -> bool {
        true
    }

    #[test]
    fn stops_after_the_last_allowed_attempt() {
        let policy = Retry::<&str>::fixed(2, Duration::from_secs(1));
        let mut schedule = Schedule::default();
        let mut delays = Vec::new();
        loop {
            schedule.begin();
            match schedule.after(&policy, Failed::Error(&"busy"), always) {
                Ok(delay) => delays.push(delay),
                Err(stop) => {
                    assert_eq!(stop, Stop::Done);
                    break;
                }
            }
        }
        assert_eq!(schedule.made(), 3);
        assert_eq!(delays, [Duration::from_secs(1); 2]);
    }

    #[test]
    fn a_rejected_error_stops_at_once_and_a_timeout_is_retried() {
        let policy = Retry::<&str>::new(5);
        let mut schedule = Schedule::default();
        schedule.begin();
        assert_eq!(
            schedule.after(&policy, Failed::TimedOut, |_| false),
            Ok(Duration::ZERO)
        );
        schedule.begin();
        assert_eq!(
            schedule.after(&policy, Failed::Error(&"fatal"), |_| false),
            Err(Stop::Done)
        );
    }

    #[test]
    fn the_attempt_counter_stops_at_the_top_of_its_range() {
        // Regression: `Retry::new(u32::MAX)` never stopped: the count saturated at
        // `u32::MAX`, which never exceeded the retries.
        for retries in [u32::MAX, u32::MAX - 1] {
            let policy = Retry::<&str>::new(retries);
            let mut schedule = Schedule {
                made: u32::MAX - 2,
                jitter: None,
            };
            schedule.begin();
            let next = schedule.after(&policy, Failed::Error(&"busy"), always);
            assert_eq!(next, Ok(Duration::ZERO), "{retries}: attempt u32::MAX - 1");
            schedule.begin();
            let last = schedule.after(&policy, Failed::Error(&"busy"), always);
            assert_eq!(last, Err(Stop::Done), "{retries}: attempt u32::MAX");
            assert_eq!(schedule.made(), u32::MAX);
        }
        // One below: `u32::MAX - 2` retries are `u32::MAX - 1` attempts.
        let policy = Retry::<&str>::new(u32::MAX - 2);
        let mut schedule = Schedule {
            made: u32::MAX - 2,
            jitter: None,
        };
        schedule.begin();
        let last = schedule.after(&policy, Failed::Error(&"busy"), always);
        assert_eq!(last, Err(Stop::Done));
    }
}
