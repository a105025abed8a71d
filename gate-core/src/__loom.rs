//! The crate's lock-free parts, opened to the loom models in `tests/loom*.rs` so each can be
//! checked alone. Built only under `--cfg gate_loom`; not an API.

use crate::gate::raw;
use crate::limiter;
use crate::rate::{self, Clock, Rate, RateLimit};

/// The gate's fast pool: free permits parked in one atomic word while nobody waits.
#[derive(Debug)]
pub struct FastPool(raw::FastPool);

impl FastPool {
    /// A pool holding `permits` free permits, on the fast path.
    pub fn new(permits: usize) -> Self {
        Self(raw::FastPool::new(permits))
    }

    /// Takes `n` permits if the fast path is open and holds them; how many it still holds.
    pub fn try_take(&self, n: usize) -> Option<usize> {
        self.0.try_take(n)
    }

    /// Returns `n` permits if the fast path is open.
    pub fn try_give(&self, n: usize) -> bool {
        self.0.try_give(n)
    }

    /// Closes the fast path and empties it, as the lock holder does: how many it held.
    pub fn enter_slow(&self) -> usize {
        self.0.enter_slow()
    }

    /// Opens the closed fast path with `free` permits, as the lock holder does.
    pub fn leave_slow(&self, free: usize) {
        self.0.leave_slow(free);
    }

    /// Permits in the pool (none while it is closed).
    pub fn permits(&self) -> usize {
        self.0.permits()
    }
}

/// A clock that stands still at 0.
#[derive(Debug)]
struct Still;

impl Clock for Still {
    fn now_nanos(&self) -> u64 {
        0
    }
}

/// A rate limit's atomic cell on a clock that stands still, booked and given back as the
/// limiter's lock-free admission does.
#[derive(Debug)]
pub struct RateCell(RateLimit<Still>);

/// A cell booked from a [`RateCell`].
#[derive(Debug, Clone, Copy)]
pub struct Booking(rate::Booking);

impl Booking {
    /// The theoretical arrival time before and after the booking.
    pub fn span(&self) -> (u64, u64) {
        self.0.span()
    }
}

impl RateCell {
    /// A fresh cell enforcing `rate`.
    pub fn new(rate: Rate) -> Self {
        Self(RateLimit::with_clock(rate, Still))
    }

    /// Books a cell if one is free now.
    pub fn try_book(&self) -> Option<Booking> {
        self.0
            .try_book_n_at(self.0.clock().now_nanos(), 1)
            .map(Booking)
    }

    /// Gives `booking` back if nobody has booked after it.
    pub fn cancel(&self, booking: Booking) {
        self.0.cancel_booking(booking.0);
    }
}

/// The limiter's shared pause, on nanoseconds after its origin.
#[derive(Debug)]
pub struct Pause(limiter::Pause);

impl Pause {
    /// No pause.
    pub fn new() -> Self {
        Self(limiter::Pause::new())
    }

    /// Pauses until `nanos`, unless already paused until later.
    pub fn extend_to(&self, nanos: u64) {
        self.0.extend_to(nanos);
    }

    /// The end of the pause in force at `now`, clearing one found over.
    pub fn settle(&self, now: u64) -> Option<u64> {
        self.0.settle(|| now)
    }
}

impl Default for Pause {
    fn default() -> Self {
        Self::new()
    }
}
