//! [`RateLimit`]: the generic cell rate algorithm over one atomic word.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{Clock, Decision, Gcra, Rate, TokioClock, instant_after};
use crate::sync::{AtomicU64, Ordering};

/// A rate limit: admits callers at a steady [`Rate`], allowing short bursts.
///
/// It is the generic cell rate algorithm (GCRA), the one the `governor` crate uses: the state
/// is one "theoretical arrival time" in an atomic word, so checking costs a clock read and a
/// compare-and-swap, with no lock and no background task. The arithmetic is [`Gcra::step`],
/// the pure specification every store of a rate limit's state follows; this is the
/// in-process store.
///
/// - **Guarantee.** In every window of time of length `T`, at most
///   `burst + count × T / period` callers are admitted (rounded down), with no extra cell at
///   the edges. The interval between cells is rounded up to a whole nanosecond, so rounding
///   never runs the limit fast.
/// - **Time** comes from tokio's clock, so tests on paused time
///   (`#[tokio::test(start_paused = true)]`) see a rate limit exactly as production does.
///   [`check_at`](Self::check_at) takes the time as an argument instead, and
///   [`with_clock`](Self::with_clock) plugs in another [`Clock`].
/// - **Waiting.** [`until_ready`](Self::until_ready) books the next free cell and sleeps until
///   it is due: waiters are served in the order they asked, each wakes once, and a waiter
///   dropped before its cell is due gives the cell back if nobody booked after it.
///
/// # Examples
///
/// An API that allows 500 calls a minute:
///
/// ```
/// use gate_core::rate::{Rate, RateLimit};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limit = RateLimit::new("500/min".parse::<Rate>().unwrap());
/// let start = tokio::time::Instant::now();
/// for _ in 0..11 {
///     limit.until_ready().await;
///     // call the API
/// }
/// // One cell every 120ms: the eleventh is due 1.2s after the first.
/// assert_eq!(start.elapsed().as_millis(), 1200);
/// # }
/// ```
// What a check reads first and the rate, which it does not read, last, so that a limiter
// holding one keeps its hot words together.
#[repr(C)]
pub struct RateLimit<C = TokioClock> {
    /// The theoretical arrival time of the next cell, in the clock's nanoseconds.
    tat: AtomicU64,
    /// The arithmetic: interval and tolerance.
    gcra: Gcra,
    clock: C,
    rate: Rate,
}

/// A cell was not free: how long until one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUntil {
    wait: Duration,
}

impl NotUntil {
    /// How long from the check until the next cell is due.
    pub fn wait_time(&self) -> Duration {
        self.wait
    }
}

impl fmt::Display for NotUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited for another {:?}", self.wait)
    }
}

impl std::error::Error for NotUntil {}

impl RateLimit {
    /// A rate limit admitting callers at `rate` on tokio's clock, starting with a full burst
    /// available.
    pub fn new(rate: Rate) -> Self {
        Self::with_clock(rate, TokioClock::new())
    }

    /// Takes a cell if one is free at `now`. Times before an earlier call are treated as
    /// that earlier time: the limit never admits more because a clock went backwards.
    #[inline]
    pub fn check_at(&self, now: Instant) -> Result<(), NotUntil> {
        self.check_nanos(self.clock.nanos(now), 1).map(drop)
    }
}

impl<C: Clock> RateLimit<C> {
    /// A rate limit admitting callers at `rate`, reading the time from `clock`.
    pub fn with_clock(rate: Rate, clock: C) -> Self {
        Self {
            rate,
            gcra: Gcra::from_rate(rate),
            clock,
            tat: AtomicU64::new(0),
        }
    }

    /// The rate this limit enforces.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The clock this limit reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Takes a cell if one is free now, without waiting.
    ///
    /// ```
    /// use gate_core::rate::{Rate, RateLimit};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limit = RateLimit::new(Rate::per_second(10).burst(2));
    /// assert!(limit.check().is_ok());
    /// assert!(limit.check().is_ok());
    /// let wait = limit.check().unwrap_err();
    /// assert_eq!(wait.wait_time().as_millis(), 100);
    /// # }
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), NotUntil> {
        self.check_nanos(self.clock.now_nanos(), 1).map(drop)
    }

    /// Takes `n` cells at once if they are all free now (a token budget's weighted check),
    /// else takes none. `n = 0` always succeeds.
    ///
    /// `n` above [`capacity`](Self::capacity) can never fit: the error then says
    /// `Duration::MAX`, so compare with the capacity first rather than sleep on it.
    ///
    /// ```
    /// use gate_core::rate::{Rate, RateLimit};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let tokens = RateLimit::new(Rate::per_second(1_000).burst(1_000));
    /// assert!(tokens.check_n(600).is_ok());
    /// // 400 left; 600 more are there in 200ms.
    /// assert_eq!(tokens.check_n(600).unwrap_err().wait_time().as_millis(), 200);
    /// assert_eq!(tokens.check_n(1_001).unwrap_err().wait_time(), std::time::Duration::MAX);
    /// # }
    /// ```
    #[inline]
    pub fn check_n(&self, n: u64) -> Result<(), NotUntil> {
        if n > self.capacity() {
            return Err(NotUntil {
                wait: Duration::MAX,
            });
        }
        self.check_nanos(self.clock.now_nanos(), n).map(drop)
    }

    /// How long from now until a cell is free (zero if one is free now), without taking it:
    /// what a server refusing a rate-limited caller tells it to wait. A cell that would end
    /// past the clock's range reads as the longest wait [`check`](Self::check) would give.
    ///
    /// ```
    /// use gate_core::rate::{Rate, RateLimit};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limit = RateLimit::new(Rate::per_second(10));
    /// assert_eq!(limit.wait_time().as_millis(), 0);
    /// limit.check().unwrap();
    /// assert_eq!(limit.wait_time().as_millis(), 100);
    /// assert_eq!(limit.wait_time().as_millis(), 100);
    /// # }
    /// ```
    pub fn wait_time(&self) -> Duration {
        let t = self.clock.now_nanos();
        match self.gcra.step(self.tat.load(Ordering::Acquire), t, 1) {
            Decision::Admit { .. } => Duration::ZERO,
            Decision::Wait { nanos } => Duration::from_nanos(nanos),
            Decision::Never => Duration::from_nanos((u64::MAX - t).max(self.gcra.interval())),
        }
    }

    /// Like [`check_n`](Self::check_n) at `t`, a time read from this limit's clock (so that
    /// two limits on one clock share one read), returning the booking, which
    /// [`cancel_booking`](Self::cancel_booking) gives back if the caller cannot use it.
    #[inline]
    pub(crate) fn try_book_n_at(&self, t: u64, n: u64) -> Option<Booking> {
        self.check_nanos(t, n).ok()
    }

    /// Takes `n` cells if they are free at `t`, in the clock's nanoseconds.
    #[inline]
    fn check_nanos(&self, t: u64, n: u64) -> Result<Booking, NotUntil> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = match self.gcra.step(tat, t, n) {
                Decision::Admit { tat: next } => next,
                Decision::Wait { nanos } => {
                    return Err(NotUntil {
                        wait: Duration::from_nanos(nanos),
                    });
                }
                // More cells than the burst (callers check against the capacity first), or
                // cells that would end past the clock's `u64` range (584 years from its
                // origin): the limit then stops admitting, erring slow.
                Decision::Never => {
                    return Err(NotUntil {
                        wait: Duration::from_nanos((u64::MAX - t).max(self.gcra.interval())),
                    });
                }
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Booking {
                        before: tat,
                        after: next,
                    });
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Waits for a cell: books the next free one and sleeps until it is due. Returns the time
    /// the cell was due: the window guarantee holds for these times, and the caller runs at
    /// or just after it (tokio's timer has millisecond resolution).
    ///
    /// Cancel-safe: dropping the future before the cell is due gives it back if no later
    /// caller has booked since; otherwise the cell goes unused (the limit only ever errs on
    /// the slow side).
    pub fn until_ready(&self) -> UntilReady<'_, C> {
        self.until_ready_n(1)
    }

    /// Like [`until_ready`](Self::until_ready), for `n` cells at once (tokens): books them
    /// together and sleeps until the last of them is due.
    ///
    /// `n` must be at most [`capacity`](Self::capacity): more never fit, and the future
    /// then waits until the end of the clock's range (584 years). Check first, as
    /// [`Limiter::acquire_tokens`](crate::Limiter::acquire_tokens) does.
    pub fn until_ready_n(&self, n: u64) -> UntilReady<'_, C> {
        UntilReady {
            limit: self,
            cells: n,
            booking: None,
            sleep: None,
        }
    }

    /// The most cells one check can take: the burst (for a token budget, the bucket's
    /// size). `u64::MAX` for a limit with no interval between cells.
    pub fn capacity(&self) -> u64 {
        self.gcra.burst()
    }

    /// Cells free now: how many one check could take at once, at most
    /// [`capacity`](Self::capacity).
    ///
    /// ```
    /// use gate_core::rate::{Rate, RateLimit};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let tokens = RateLimit::new(Rate::per_minute(6_000).burst(6_000));
    /// assert_eq!(tokens.remaining(), 6_000);
    /// tokens.charge(1_500);
    /// assert_eq!(tokens.remaining(), 4_500);
    /// tokens.refund(500);
    /// assert_eq!(tokens.remaining(), 5_000);
    /// // 100 a second come back.
    /// tokio::time::advance(std::time::Duration::from_secs(1)).await;
    /// assert_eq!(tokens.remaining(), 5_100);
    /// # }
    /// ```
    pub fn remaining(&self) -> u64 {
        remaining_at(
            &self.gcra,
            self.tat.load(Ordering::Acquire),
            self.clock.now_nanos(),
        )
    }

    /// Takes `n` cells whether or not they are free: what an attempt used beyond its
    /// reservation. The cells are owed: later callers wait until they are paid back. The
    /// debt saturates at the end of the clock's range.
    pub fn charge(&self, n: u64) {
        let t = self.clock.now_nanos();
        let span = u128::from(n) * u128::from(self.gcra.interval());
        self.update(|tat| {
            let next = u128::from(tat.max(t)) + span;
            u64::try_from(next).unwrap_or(u64::MAX)
        });
    }

    /// Gives `n` cells back: what an attempt reserved and did not use. Never makes more
    /// than [`capacity`](Self::capacity) free.
    pub fn refund(&self, n: u64) {
        let span = n.saturating_mul(self.gcra.interval());
        self.update(|tat| tat.saturating_sub(span));
    }

    /// Lowers the cells free now to at most `remaining` (a server said that is all that is
    /// left); never raises them. The free cells then come back at the limit's own rate.
    ///
    /// ```
    /// use gate_core::rate::{Rate, RateLimit};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let tokens = RateLimit::new(Rate::per_minute(6_000).burst(6_000));
    /// tokens.lower_remaining_to(1_000);
    /// assert_eq!(tokens.remaining(), 1_000);
    /// tokens.lower_remaining_to(4_000); // more than we think: ignored
    /// assert_eq!(tokens.remaining(), 1_000);
    /// # }
    /// ```
    pub fn lower_remaining_to(&self, remaining: u64) {
        if remaining >= self.capacity() {
            return;
        }
        let t = self.clock.now_nanos();
        // The TAT at which exactly `remaining` cells fit at `t`: the last of them is due
        // now, `tat + (remaining - 1) × interval - tolerance = t`, or one interval past
        // now for none.
        let interval = u128::from(self.gcra.interval());
        let target = (u128::from(t) + u128::from(self.gcra.tolerance()) + interval)
            .saturating_sub(u128::from(remaining) * interval);
        let target = u64::try_from(target).unwrap_or(u64::MAX);
        self.update(|tat| tat.max(target));
    }

    /// Replaces the TAT with `f(tat)` atomically.
    fn update(&self, f: impl Fn(u64) -> u64) {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = f(tat);
            if next == tat {
                return;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Books the next free `n` cells at or after `t`. Returns the booking (the state before
    /// and after) and when the last cell is due, in the clock's nanoseconds.
    fn book(&self, t: u64, n: u64) -> (Booking, u64) {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            // The cells are due when the step first admits them: now, or after its wait
            // (which cannot overflow, and after which the step admits or never will).
            let (due, decision) = match self.gcra.step(tat, t, n) {
                Decision::Wait { nanos } => (t + nanos, self.gcra.step(tat, t + nanos, n)),
                decision => (t, decision),
            };
            // Bookings run ahead of the clock by an interval per waiter, so with a rate of
            // one a century a few waiters reach the end of the `u64` range. A cell past it
            // is never due: the caller waits for the end of the range, books nothing, and
            // the limit errs slow.
            let Decision::Admit { tat: next } = decision else {
                return (
                    Booking {
                        before: tat,
                        after: tat,
                    },
                    u64::MAX,
                );
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return (
                        Booking {
                            before: tat,
                            after: next,
                        },
                        due,
                    );
                }
                Err(actual) => tat = actual,
            }
        }
    }
}

/// Cells free at `t` for a TAT of `tat`: the most `n` that [`Gcra::step`] would admit.
fn remaining_at(gcra: &Gcra, tat: u64, t: u64) -> u64 {
    let Some(room) = (u128::from(t) + u128::from(gcra.tolerance())).checked_sub(u128::from(tat))
    else {
        return 0;
    };
    match room.checked_div(u128::from(gcra.interval())) {
        // The cells must also end within the clock's range, which `step` checks; near its
        // end the count errs high by what `step` would refuse.
        Some(spans) => u64::try_from(spans + 1)
            .unwrap_or(u64::MAX)
            .min(gcra.burst()),
        None => u64::MAX,
    }
}

impl<C> RateLimit<C> {
    /// Gives a booked cell back if nobody has booked after it; otherwise it goes unused
    /// (the limit errs on the slow side, never the fast one).
    pub(crate) fn cancel_booking(&self, booking: Booking) {
        let _ = self.tat.compare_exchange(
            booking.after,
            booking.before,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

impl<C> fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// A cell booked by [`RateLimit::until_ready`]: the theoretical arrival time before and after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Booking {
    before: u64,
    after: u64,
}

impl Booking {
    /// The theoretical arrival time before and after.
    #[cfg(gate_loom)]
    pub(crate) fn span(&self) -> (u64, u64) {
        (self.before, self.after)
    }
}

pin_project! {
    /// Future returned by [`RateLimit::until_ready`]: resolves, to the time the caller's cell
    /// was due, once it is.
    ///
    /// The cell is booked on the first poll. Dropping the future before it resolves gives the
    /// cell back if no later caller has booked since.
    #[must_use = "futures do nothing unless polled"]
    pub struct UntilReady<'a, C = TokioClock> {
        limit: &'a RateLimit<C>,
        cells: u64,
        booking: Option<Booking>,
        #[pin]
        sleep: Option<Sleep>,
    }

    impl<C> PinnedDrop for UntilReady<'_, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(booking) = this.booking.take() {
                this.limit.cancel_booking(booking);
            }
        }
    }
}

impl<C: Clock> Future for UntilReady<'_, C> {
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let mut this = self.project();
        if this.sleep.is_none() {
            let t = this.limit.clock.now_nanos();
            // Read after the clock, so the due instant errs late, never early.
            let now = Instant::now();
            let (booking, due) = this.limit.book(t, *this.cells);
            if due <= t {
                return Poll::Ready(now);
            }
            *this.booking = Some(booking);
            let due = instant_after(now, Duration::from_nanos(due - t));
            this.sleep.set(Some(tokio::time::sleep_until(due)));
        }
        let sleep = this.sleep.as_pin_mut().expect("set above");
        let due = sleep.deadline();
        match sleep.poll(cx) {
            Poll::Ready(()) => {
                *this.booking = None;
                Poll::Ready(due)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> fmt::Debug for UntilReady<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilReady")
            .field("booked", &self.booking.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::LimiterClock;

    // A check reads the TAT, the arithmetic and the clock, not the rate: those come first, so
    // that a limiter holding the limit keeps them in its first lines (see `Limiter`).
    #[test]
    fn what_a_check_reads_comes_first() {
        use std::mem::{offset_of, size_of};
        type Limit = RateLimit<LimiterClock>;
        assert_eq!(offset_of!(Limit, tat), 0);
        assert_eq!(
            offset_of!(Limit, rate),
            size_of::<Limit>() - size_of::<Rate>()
        );
    }

    fn at(limit: &RateLimit, ms: u64) -> Instant {
        limit.clock().instant(ms * 1_000_000)
    }

    #[test]
    fn a_burst_of_b_admits_exactly_b_at_once() {
        // Regression (governor < 0.8): a burst of `b` admitted `b + 1` cells at once.
        let limit = RateLimit::new(Rate::per_second(10).burst(3));
        let now = at(&limit, 1000);
        let admitted = (0..10).filter(|_| limit.check_at(now).is_ok()).count();
        assert_eq!(admitted, 3);
        let wait = limit.check_at(now).unwrap_err();
        assert_eq!(wait.wait_time(), Duration::from_millis(100));
        assert!(limit.check_at(at(&limit, 1099)).is_err());
        assert!(limit.check_at(at(&limit, 1100)).is_ok());
        assert!(limit.check_at(at(&limit, 1100)).is_err());
    }

    #[test]
    fn any_clock_can_drive_the_limit() {
        let clock = Manual(AtomicU64::new(7));
        let limit = RateLimit::with_clock(Rate::per_second(2), &clock);
        assert!(limit.check().is_ok());
        let wait = limit.check().unwrap_err();
        assert_eq!(wait.wait_time(), Duration::from_millis(500));
        clock.0.fetch_add(499_999_999, Ordering::SeqCst);
        assert!(limit.check().is_err());
        clock.0.fetch_add(1, Ordering::SeqCst);
        assert!(limit.check().is_ok());
    }

    #[test]
    fn a_clock_going_backwards_admits_nothing_extra() {
        let limit = RateLimit::new(Rate::per_second(1));
        assert!(limit.check_at(at(&limit, 5000)).is_ok());
        assert!(limit.check_at(at(&limit, 0)).is_err());
        assert!(limit.check_at(at(&limit, 5999)).is_err());
        assert!(limit.check_at(at(&limit, 6000)).is_ok());
    }

    /// A clock that reads what it is told.
    struct Manual(AtomicU64);

    impl Clock for Manual {
        fn now_nanos(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn extreme_rates_and_clocks_never_overflow() {
        // Regression: `tat + interval` overflowed (a panic in debug builds, a wrap that
        // admitted everything in release) near the end of the clock's `u64` range.
        let longest = Rate::new(1, Duration::from_nanos(u64::MAX / 4)).unwrap();
        let span = u64::MAX / 4;
        let limit = RateLimit::with_clock(longest, Manual(AtomicU64::new(0)));
        let dues: Vec<u64> = (0..8).map(|_| limit.book(0, 1).1).collect();
        assert_eq!(dues[..4], [0, span, 2 * span, 3 * span]);
        assert!(dues[4..].iter().all(|&due| due >= 4 * span), "{dues:?}");
        assert!(limit.check().is_err());

        // Any burst at one a nanosecond, and checks at the very end of the clock's range.
        let fastest = Rate::new(u32::MAX, Duration::from_nanos(u64::from(u32::MAX)))
            .unwrap()
            .burst(u32::MAX);
        for t in [0, u64::MAX / 2, u64::MAX - 10, u64::MAX] {
            let clock = Manual(AtomicU64::new(t));
            let limit = RateLimit::with_clock(fastest, &clock);
            let admitted = (0..100).filter(|_| limit.check().is_ok()).count();
            // Cells that end past the range are not admitted: erring slow.
            let room = usize::try_from((u64::MAX - t).min(100)).unwrap();
            assert_eq!(admitted, room, "at {t}");
        }

        // A burst of 3 at one a second, ten seconds before the end: exactly 3 at once.
        let bursty = Rate::per_second(1).burst(3);
        let clock = Manual(AtomicU64::new(u64::MAX - 10_000_000_000));
        let limit = RateLimit::with_clock(bursty, &clock);
        assert_eq!((0..10).filter(|_| limit.check().is_ok()).count(), 3);
        clock.0.store(u64::MAX, Ordering::SeqCst);
        assert!(limit.check().is_err());
    }

    #[test]
    fn bookings_follow_one_another_and_can_be_returned() {
        let limit = RateLimit::new(Rate::per_second(10));
        let now = 0;
        let (_, first) = limit.book(now, 1);
        let (second_booking, second) = limit.book(now, 1);
        assert_eq!((first, second), (0, 100_000_000));
        // The last booking goes back; the next caller gets its cell.
        limit.cancel_booking(second_booking);
        let (third_booking, third) = limit.book(now, 1);
        assert_eq!(third, 100_000_000);
        // A booking with a later one behind it cannot go back: the cell is lost, not doubled.
        let (_, fourth) = limit.book(now, 1);
        limit.cancel_booking(third_booking);
        assert_eq!(fourth, 200_000_000);
        assert_eq!(limit.book(now, 1).1, 300_000_000);
    }
}
