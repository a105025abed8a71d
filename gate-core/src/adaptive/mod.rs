//! Adaptive concurrency: limits that find the server's capacity from how attempts end.
//!
//! A [`LimitAlgorithm`] turns a stream of [`Sample`]s (one per attempt: its [`Outcome`], its
//! latency, how full the gate was) into a concurrency limit. A [`Limiter`](crate::Limiter)
//! built with [`adaptive`](crate::LimiterBuilder::adaptive) feeds it every attempt that
//! [`Retry::call`](crate::Retry::call) makes and resizes its one gate with
//! [`Gate::set_limit`](crate::Gate::set_limit), so no permit is ever lost or duplicated:
//! attempts in flight keep their permits, and a shrink takes hold as they come back.
//!
//! - [`Aimd`] is for servers that refuse when overloaded (HTTP 429 or 503, gRPC
//!   `RESOURCE_EXHAUSTED`): it adds one to the limit per window of successes while the gate
//!   is full, and cuts it by a factor on an overload or a timeout.
//! - [`Gradient`] is for servers that slow down instead of refusing: it compares the latency
//!   of each window with the unloaded latency and holds the limit at the knee.
//!
//! Samples are per attempt, not per retry chain. Attempts cancelled by their caller are not
//! samples at all: a caller giving up says nothing about the server.

mod aimd;
mod bounds;
mod gradient;

pub use aimd::{Aimd, AimdBuilder};
pub(crate) use bounds::Bounds;
pub use gradient::{Gradient, GradientBuilder};

use std::fmt;
use std::time::Duration;

use crate::Outcome;

/// Decides a concurrency limit from what attempts report.
///
/// Implement it to plug your own algorithm into a [`Limiter`](crate::Limiter). Calls are
/// serialised by the limiter, so `update` may keep plain state.
pub trait LimitAlgorithm: fmt::Debug + Send {
    /// The limit to start with.
    fn initial_limit(&self) -> usize;

    /// Whether samples need a latency. If not, the limiter skips reading the clock.
    fn wants_latency(&self) -> bool {
        true
    }

    /// Whether a success admitted while the gate had room (`in_flight < limit`) teaches the
    /// algorithm anything beyond being counted. If not, the limiter only counts such samples,
    /// without taking the lock that serialises `update`, and hands the count over with the
    /// next sample it passes on, as [`Sample::skipped`]. Asked once, when the limiter is
    /// built.
    fn learns_from_successes_with_room(&self) -> bool {
        true
    }

    /// For an algorithm that does not [learn from successes with
    /// room](Self::learns_from_successes_with_room): how many of them its next
    /// [`update`](Self::update) still needs counted. Past that many the limiter may stop
    /// counting, so [`Sample::skipped`] is then at least this many rather than exact, and a
    /// success with room costs two atomic loads instead of an atomic add. Asked when the
    /// limiter is built and after every `update`, under the lock that serialises them. By
    /// default every one is counted.
    fn successes_with_room_wanted(&self) -> usize {
        usize::MAX
    }

    /// Takes one attempt's sample and returns the limit to use from now on.
    fn update(&mut self, sample: &Sample) -> usize;
}

/// What one attempt reported: how it ended, how long it ran, how full the gate was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// How the attempt ended.
    pub outcome: Outcome,
    /// How long the attempt ran, from admission to report; zero if the algorithm does not
    /// [want latencies](LimitAlgorithm::wants_latency).
    pub latency: Duration,
    /// How full the gate was when this attempt was admitted: its permits in use, this
    /// attempt's own included (attempts running, and waiters granted a permit who have not
    /// yet started), less those held by callers still waiting for a rate cell or a pause.
    pub in_flight: usize,
    /// The limit when this attempt was admitted.
    pub limit: usize,
    /// Successes with room that the limiter counted instead of passing on, since the
    /// previous sample it passed on (always zero for an algorithm that
    /// [learns from them](LimitAlgorithm::learns_from_successes_with_room)); counted up to
    /// at least what the algorithm [wanted](LimitAlgorithm::successes_with_room_wanted).
    pub skipped: usize,
}

impl Sample {
    /// A sample, for testing an algorithm.
    pub fn new(outcome: Outcome, latency: Duration, in_flight: usize, limit: usize) -> Self {
        Self {
            outcome,
            latency,
            in_flight,
            limit,
            skipped: 0,
        }
    }

    /// The same sample, following `skipped` successes with room that were only counted.
    pub fn after_skipped(self, skipped: usize) -> Self {
        Self { skipped, ..self }
    }

    /// Whether the attempt succeeded while the gate had room for more: no sign that the
    /// limit is too low, because the caller did not fill it.
    pub fn is_success_with_room(&self) -> bool {
        self.outcome == Outcome::Success && self.in_flight < self.limit
    }

    /// Whether the attempt says the server is overloaded (an overload signal or a timeout).
    pub fn is_drop(&self) -> bool {
        matches!(self.outcome, Outcome::Overload { .. } | Outcome::TimedOut)
    }
}

/// An adaptive limit's settings were invalid; nothing was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdaptiveError {
    /// The minimum was zero, above the maximum, or the initial limit outside them.
    InvalidLimits,
    /// A factor was NaN, infinite or outside its allowed range.
    InvalidFactor,
}

impl fmt::Display for AdaptiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidLimits => "limits must satisfy 1 <= min <= initial <= max",
            Self::InvalidFactor => "a factor must be finite and within its range",
        })
    }
}

impl std::error::Error for AdaptiveError {}

/// Checks that `factor` is finite and within `lo..=hi`.
pub(crate) fn check_factor(factor: f64, lo: f64, hi: f64) -> Result<(), AdaptiveError> {
    if factor.is_finite() && (lo..=hi).contains(&factor) {
        Ok(())
    } else {
        Err(AdaptiveError::InvalidFactor)
    }
}
