//! [`Bounds`]: the range an adaptive limit moves in, shared by every algorithm.

use super::AdaptiveError;

/// Where an adaptive limit starts and the range it stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) min: usize,
    pub(crate) initial: usize,
    pub(crate) max: usize,
}

impl Bounds {
    /// Start at 10, stay within 1 and 1,000.
    pub(crate) const DEFAULT: Self = Self {
        min: 1,
        initial: 10,
        max: 1_000,
    };

    /// The defaults, capped at `max` if given: the bounds of `#[gated(adaptive = ..)]`, whose
    /// `limit = N` is the most the limit may grow to.
    pub(crate) const fn up_to(max: Option<usize>) -> Self {
        match max {
            None => Self::DEFAULT,
            Some(max) => Self {
                min: Self::DEFAULT.min,
                initial: if Self::DEFAULT.initial < max {
                    Self::DEFAULT.initial
                } else {
                    max
                },
                max,
            },
        }
    }

    /// Checks `1 <= min <= initial <= max <= Gate::MAX_PERMITS`.
    pub(crate) fn check(&self) -> Result<(), AdaptiveError> {
        let Self { min, initial, max } = *self;
        if min == 0 || min > initial || initial > max || max > crate::Gate::MAX_PERMITS {
            return Err(AdaptiveError::InvalidLimits);
        }
        Ok(())
    }

    /// Keeps a fractional limit within bounds (a limit of `max + 0.999` still admits `max`).
    pub(crate) fn clamp(&self, limit: f64) -> f64 {
        limit.clamp(self.min as f64, self.max as f64 + 0.999)
    }

    /// The whole number of permits a fractional limit admits.
    pub(crate) fn permits(&self, limit: f64) -> usize {
        // Truncation is the point: a limit of 5.9 admits 5.
        (limit as usize).clamp(self.min, self.max)
    }
}

/// The `initial`, `min` and `max` setters every adaptive builder has, on a `bounds` field.
macro_rules! bounds_setters {
    () => {
        /// All three bounds at once.
        pub(crate) const fn bounds(mut self, bounds: $crate::adaptive::Bounds) -> Self {
            self.bounds = bounds;
            self
        }

        /// The limit to start with (10 unless set).
        pub const fn initial(mut self, initial: usize) -> Self {
            self.bounds.initial = initial;
            self
        }

        /// The lowest the limit goes (1 unless set; at least 1).
        pub const fn min(mut self, min: usize) -> Self {
            self.bounds.min = min;
            self
        }

        /// The highest the limit goes (1,000 unless set).
        pub const fn max(mut self, max: usize) -> Self {
            self.bounds.max = max;
            self
        }
    };
}

pub(crate) use bounds_setters;
