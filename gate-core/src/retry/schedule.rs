//! [`Schedule`]: what happens between the attempts of one retried call. The one copy of the
//! stop decision and the delay, used by [`Retry::call`] and by the loop that `#[gated]`
//! expands to (`__private::Attempts`).

use std::time::Duration;

use super::{Jitter, Retry};
use crate::Outcome;

/// How an attempt that did not succeed ended.
#[derive(Debug)]
pub(crate) enum Failed<'a, E> {
    /// The operation returned this error.
    Error(&'a E),
    /// The attempt ran past the per-attempt timeout and was cancelled.
    TimedOut,
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

    /// After the counted attempt failed: `None` to stop, or how long to back off before the
    /// next one.
    ///
    /// An error that `retry_if` rejects stops the call; a timed-out attempt is always
    /// retryable. The last allowed attempt stops it too. The delay is the backoff for this
    /// retry, jittered if the policy says so, and at least the error's server hint if the
    /// policy honours hints.
    pub(crate) fn after<E>(
        &mut self,
        policy: &Retry<E>,
        failed: Failed<'_, E>,
        retry_if: fn(&E) -> bool,
    ) -> Option<Duration> {
        let hint = match failed {
            Failed::Error(error) if !retry_if(error) => return None,
            Failed::Error(error) => policy.hint(error),
            Failed::TimedOut => None,
        };
        if self.made > policy.retries() {
            return None;
        }
        let mut delay = policy.backoff().delay(self.made);
        if policy.jitter() {
            delay = self.jitter.get_or_insert_with(Jitter::new).full(delay);
        }
        Some(match hint {
            Some(hint) => delay.max(hint),
            None => delay,
        })
    }
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
                Some(delay) => delays.push(delay),
                None => break,
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
            Some(Duration::ZERO)
        );
        schedule.begin();
        assert_eq!(
            schedule.after(&policy, Failed::Error(&"fatal"), |_| false),
            None
        );
    }
}
