//! [`Gcra`]: the generic cell rate algorithm as pure arithmetic, apart from where its state
//! is stored.

use super::Rate;

/// The generic cell rate algorithm as one pure step: given the stored theoretical arrival
/// time, the time now and a number of cells, whether they are admitted (and the new state) or
/// how long to wait.
///
/// This is the specification of a rate limit's arithmetic. [`RateLimit`](super::RateLimit)
/// stores the state in one atomic word and runs this step in a compare-and-swap loop; a store
/// elsewhere (a Redis script shared by many processes, a per-key table) keeps the same single
/// `u64` and must answer exactly as [`step`](Self::step) does for the same inputs, which is
/// what its tests check.
///
/// - **State.** One `u64`, the theoretical arrival time (TAT) of the next cell, in
///   nanoseconds on the store's clock. A fresh cell starts at `0`: a full burst is available
///   at any time.
/// - **Parameters.** `interval`, the nanoseconds between cells at the steady rate, and
///   `tolerance`, how far ahead of now the TAT may run, `(burst - 1) × interval`. Both come
///   from a [`Rate`] with [`Gcra::from_rate`].
/// - **Weighted cells.** `n` cells at once are admitted exactly when `n` single cells in a
///   row at the same time would all be, and leave the same state; if they do not all fit,
///   none is taken.
/// - **Guarantee.** Whatever the sequence of steps (times that go backwards are treated as
///   the latest time seen, since the TAT never moves back), the cells admitted in any closed
///   window of `T` nanoseconds number at most `burst + T / interval` (rounded down).
/// - **Arithmetic.** Exact and overflow-free for every input: sums are taken in 128 bits, and a
///   result past the end of the `u64` clock is never admitted ([`Decision::Never`]): the
///   limit errs slow, never fast.
///
/// # Examples
///
/// Ten a second with a burst of 3, driven by hand:
///
/// ```
/// use gate_core::rate::{Decision, Gcra, Rate};
///
/// let gcra = Gcra::from_rate(Rate::per_second(10).burst(3));
/// let mut tat = 0;
/// let now = 5_000_000_000;
/// // The burst: 3 cells at once, then nothing.
/// let Decision::Admit { tat: next } = gcra.step(tat, now, 3) else { panic!() };
/// tat = next;
/// assert_eq!(gcra.step(tat, now, 1), Decision::Wait { nanos: 100_000_000 });
/// // More than the burst can ever hold is never admitted, rather than waited for.
/// assert_eq!(gcra.step(tat, now, 4), Decision::Never);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    interval: u64,
    tolerance: u64,
}

/// What [`Gcra::step`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The cells are admitted: store `tat` as the new theoretical arrival time.
    Admit {
        /// The new theoretical arrival time.
        tat: u64,
    },
    /// Not yet: the cells fit `nanos` from now, at the earliest, if nobody else takes cells
    /// in between. Store nothing. `now + nanos` never overflows.
    Wait {
        /// Nanoseconds from `now` until the cells fit.
        nanos: u64,
    },
    /// The cells will never be admitted, so waiting is pointless: `n` is more than the burst
    /// (`n - 1` intervals exceed the tolerance), or admitting them would carry the TAT past
    /// the end of the `u64` clock (584 years from its origin). Store nothing.
    Never,
}

impl Gcra {
    /// The algorithm for `interval` nanoseconds between cells and a `tolerance` of nanoseconds
    /// the theoretical arrival time may run ahead of now (`(burst - 1) × interval`).
    ///
    /// Any values are valid: an interval of 0 admits any number of cells at once, a tolerance
    /// below one interval allows no burst.
    pub const fn new(interval: u64, tolerance: u64) -> Self {
        Self {
            interval,
            tolerance,
        }
    }

    /// The algorithm that enforces `rate`: its [interval](Rate::interval) (rounded up to a
    /// whole nanosecond) and a tolerance of `burst - 1` intervals.
    pub const fn from_rate(rate: Rate) -> Self {
        Self::new(rate.interval_nanos(), rate.tolerance_nanos())
    }

    /// Nanoseconds between cells.
    pub const fn interval(&self) -> u64 {
        self.interval
    }

    /// Nanoseconds the theoretical arrival time may run ahead of now.
    pub const fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// The most cells one step can admit: `tolerance / interval + 1` (`u64::MAX` for an
    /// interval of 0). A step for more answers [`Decision::Never`].
    pub const fn burst(&self) -> u64 {
        match self.tolerance.checked_div(self.interval) {
            Some(spans) => spans.saturating_add(1),
            None => u64::MAX,
        }
    }

    /// Takes `n` cells at `now` from a cell whose theoretical arrival time is `tat`, all in
    /// nanoseconds.
    ///
    /// The cells are admitted when the last of them is due by now: `tat + (n - 1) × interval
    /// - tolerance <= now`; the new TAT is then `max(tat, now) + n × interval`. Otherwise the
    /// answer is how long until that holds, or [`Decision::Never`] if it never will.
    ///
    /// `n = 0` asks for nothing and is always admitted, with the TAT unchanged
    /// (`Admit { tat }`): a no-op, not an error, so a weight computed at run time needs no
    /// special case.
    #[inline]
    pub const fn step(&self, tat: u64, now: u64, n: u64) -> Decision {
        if n == 0 {
            return Decision::Admit { tat };
        }
        let interval = self.interval as u128;
        // The span from the first cell to the last; at most `u64::MAX²`, which fits.
        let span = (n as u128 - 1) * interval;
        if span > self.tolerance as u128 {
            return Decision::Never;
        }
        // `span <= tolerance`, so the earliest time is at most `tat`: it fits in a `u64`.
        let earliest = (tat as u128 + span).saturating_sub(self.tolerance as u128) as u64;
        if now < earliest {
            return Decision::Wait {
                nanos: earliest - now,
            };
        }
        let start = if tat > now { tat } else { now };
        let next = start as u128 + span + interval;
        if next > u64::MAX as u128 {
            return Decision::Never;
        }
        Decision::Admit { tat: next as u64 }
    }
}

impl From<Rate> for Gcra {
    fn from(rate: Rate) -> Self {
        Self::from_rate(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn one_cell_at_a_time_at_the_steady_rate() {
        let gcra = Gcra::from_rate(Rate::per_second(10));
        assert_eq!(gcra.burst(), 1);
        assert_eq!(
            gcra.step(0, 1000 * MS, 1),
            Decision::Admit { tat: 1100 * MS }
        );
        assert_eq!(
            gcra.step(1100 * MS, 1000 * MS, 1),
            Decision::Wait { nanos: 100 * MS }
        );
        assert_eq!(
            gcra.step(1100 * MS, 1100 * MS, 1),
            Decision::Admit { tat: 1200 * MS }
        );
    }

    #[test]
    fn weighted_cells_wait_for_the_last_of_them() {
        let gcra = Gcra::from_rate(Rate::per_second(10).burst(5));
        assert_eq!(gcra.burst(), 5);
        // Two of the five are taken; three more fit now, four in 100ms.
        let tat = 1200 * MS;
        let now = 1000 * MS;
        assert_eq!(gcra.step(tat, now, 3), Decision::Admit { tat: 1500 * MS });
        assert_eq!(gcra.step(tat, now, 4), Decision::Wait { nanos: 100 * MS });
        assert_eq!(gcra.step(tat, now, 5), Decision::Wait { nanos: 200 * MS });
        assert_eq!(gcra.step(tat, now, 6), Decision::Never);
    }

    #[test]
    fn zero_cells_change_nothing() {
        let gcra = Gcra::from_rate(Rate::per_second(1));
        for (tat, now) in [(0, 0), (u64::MAX, 0), (5, u64::MAX)] {
            assert_eq!(gcra.step(tat, now, 0), Decision::Admit { tat });
        }
    }

    #[test]
    fn cells_past_the_end_of_the_clock_are_never_admitted() {
        let gcra = Gcra::new(10, 0);
        assert_eq!(
            gcra.step(0, u64::MAX - 10, 1),
            Decision::Admit { tat: u64::MAX }
        );
        assert_eq!(gcra.step(0, u64::MAX - 9, 1), Decision::Never);
        assert_eq!(gcra.step(u64::MAX, u64::MAX, 1), Decision::Never);
        assert_eq!(
            Gcra::new(u64::MAX, u64::MAX).step(0, 0, u64::MAX),
            Decision::Never
        );
    }

    #[test]
    fn an_interval_of_zero_admits_everything() {
        let gcra = Gcra::new(0, 0);
        assert_eq!(gcra.burst(), u64::MAX);
        assert_eq!(gcra.step(3, 7, u64::MAX), Decision::Admit { tat: 7 });
        assert_eq!(gcra.step(7, 7, 1), Decision::Admit { tat: 7 });
        // A clock gone backwards still waits for the time it had reached.
        assert_eq!(gcra.step(7, 3, 1), Decision::Wait { nanos: 4 });
    }
}
