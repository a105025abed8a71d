//! The hooks through which the slow paths tell `tracing` and `metrics` what happened: a
//! span for a caller that queues, an event and a counter for a retry decision.
//!
//! Every hook is called only where the caller already waits or backs off, never on the
//! path that admits at once; with the `tracing` and `metrics` features off, each is empty
//! and [`WaitTrace`] is zero-sized, so the hooks compile to nothing.

use std::time::Duration;

use crate::AcquireError;

/// The `gate.wait` span of one caller that queued for permits, from the moment it queued
/// until it was admitted, timed out, saw the gate close or gave up (was dropped).
///
/// Zero-sized without the `tracing` feature. With it, a box, so that a waiter that never
/// queues stays small and allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct WaitTrace {
    #[cfg(feature = "tracing")]
    span: Option<Box<Queued>>,
}

#[cfg(feature = "tracing")]
#[derive(Debug)]
struct Queued {
    span: tracing::Span,
    since: tokio::time::Instant,
}

/// How a queued caller's wait ended: the `outcome` field of its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// It got its permits.
    Admitted,
    /// Its deadline passed first.
    TimedOut,
    /// The gate closed first.
    Closed,
    /// It was dropped while it waited.
    Cancelled,
}

impl WaitEnd {
    /// How an acquire that had queued resolved.
    pub(crate) fn of(result: &Result<usize, AcquireError>) -> Self {
        match result {
            Ok(_) => Self::Admitted,
            Err(AcquireError::Closed) => Self::Closed,
            // A queued caller fails only by its deadline or the gate's closing.
            Err(_) => Self::TimedOut,
        }
    }

    /// The value of the span's `outcome` field.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::TimedOut => "timed_out",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl WaitTrace {
    /// The caller just queued for `permits` permits of the gate named `name`: opens its
    /// span, at `DEBUG`, as a child of the caller's current span.
    #[inline]
    pub(crate) fn queued(&mut self, name: Option<&'static str>, permits: usize) {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                target: "gate_core",
                "gate.wait",
                gate.name = name,
                permits,
                outcome = tracing::field::Empty,
                waited = tracing::field::Empty,
            );
            if !span.is_disabled() {
                self.span = Some(Box::new(Queued {
                    span,
                    since: tokio::time::Instant::now(),
                }));
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (name, permits);
    }

    /// The wait is over: records how it ended and how long it took, and closes the span.
    /// Called with no lock held (a subscriber runs arbitrary code).
    #[inline]
    pub(crate) fn end(&mut self, end: WaitEnd) {
        #[cfg(feature = "tracing")]
        if let Some(queued) = self.span.take() {
            let waited = queued.since.elapsed();
            queued.span.record("outcome", end.as_str());
            queued.span.record("waited", tracing::field::debug(waited));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = end;
    }
}

/// What a retried call decided after a failed attempt: the `outcome` of its retry event
/// and of the `gate.retries` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryDecision {
    /// Another attempt follows after this delay.
    Retried(Duration),
    /// The error was not retryable (`retry_if`), or that was the last allowed attempt.
    GaveUp,
    /// The error said retrying cannot help.
    Permanent,
    /// The server's hint was longer than the policy waits for.
    HintTooLong,
}

impl RetryDecision {
    /// The value of the `outcome` label and field.
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Retried(_) => "retried",
            Self::GaveUp => "gave_up",
            Self::Permanent => "permanent",
            Self::HintTooLong => "hint_too_long",
        }
    }
}

/// A retried call decided `decision` after its attempt number `attempt` (counting from 1)
/// failed: an event at `DEBUG` and a `gate.retries` count. Only failed attempts get here, so
/// a call that succeeds at once pays nothing.
#[inline]
pub(crate) fn retry(attempt: u32, decision: RetryDecision) {
    #[cfg(feature = "tracing")]
    match decision {
        RetryDecision::Retried(delay) => tracing::debug!(
            target: "gate_core",
            attempt,
            delay = ?delay,
            outcome = decision.as_str(),
            "attempt failed: retrying",
        ),
        _ => tracing::debug!(
            target: "gate_core",
            attempt,
            outcome = decision.as_str(),
            "attempt failed: not retrying",
        ),
    }
    #[cfg(feature = "metrics")]
    crate::metrics::record_retry(decision);
    #[cfg(not(feature = "tracing"))]
    let _ = attempt;
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = decision;
}
