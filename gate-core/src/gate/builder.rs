//! [`GateBuilder`]: a gate with bounds on waiting.

use std::time::Duration;

use super::{Gate, WaitLimits};
use crate::LimitError;

/// Builds a [`Gate`] whose acquires are bounded in time and number, from [`Gate::builder`].
///
/// An unbounded queue lets a flood of callers pile up without limit; a server should set
/// both bounds.
#[derive(Debug, Clone, Copy)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct GateBuilder {
    limit: usize,
    wait_limits: WaitLimits,
    name: Option<&'static str>,
}

impl GateBuilder {
    pub(crate) const fn new(limit: usize) -> Self {
        Self {
            limit,
            wait_limits: WaitLimits::UNBOUNDED,
            name: None,
        }
    }

    /// Names the gate: the `gate.name` of its `gate.wait` spans (with the `tracing`
    /// feature) and the label of its metrics (with the `metrics` feature; an unnamed gate
    /// has none). See [`Gate::name`].
    ///
    /// A name is a `&'static str`, so that naming costs nothing on the hot path (it is
    /// copied, never cloned or counted) and a named gate can still be a `static`. Gates are
    /// few and long-lived; a name made at run time can be leaked once
    /// ([`String::leak`]) for a gate that lives as long as the program.
    ///
    /// Errors do not carry the name: an [`AcquireError`](crate::AcquireError) stays a
    /// one-byte `Copy` enum, and the caller that gets one knows which gate it asked.
    pub const fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// The longest any acquire waits before failing with
    /// [`AcquireError::TimedOut`](crate::AcquireError::TimedOut). Zero means never wait.
    pub const fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait_limits.max_wait = Some(max_wait);
        self
    }

    /// The most callers that may wait at once; the next one fails at once with
    /// [`AcquireError::QueueFull`](crate::AcquireError::QueueFull). Zero means never wait.
    pub const fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.wait_limits.max_waiters = max_waiters;
        self
    }

    crate::sync::const_unless_loom! {
        /// Builds the gate, or fails if the limit exceeds [`Gate::MAX_PERMITS`].
        pub const fn build(self) -> Result<Gate, LimitError> {
            if self.limit > Gate::MAX_PERMITS {
                return Err(LimitError {
                    requested: self.limit,
                });
            }
            Ok(Gate::with_limits(self.limit, self.wait_limits, self.name))
        }
    }
}
