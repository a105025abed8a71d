//! The raw gate: the mechanism behind [`Gate`](super::Gate), crate-private.
//!
//! A [`RawGate`] counts permits and queues waiters; it has no policy of its own (no default
//! bounds on waiting, no guard types, no docs for users). [`Gate`](super::Gate) is the public
//! API over one, the [`Limiter`](crate::Limiter) takes its permits straight from one, and a
//! keyed gate would hold one per key. Everything that moves a permit lives here:
//!
//! - [`pool`]: the lock-free fast path, free permits parked in one atomic word while nobody
//!   waits;
//! - [`state`]: the count behind the lock and the rules that grant it;
//! - [`wait_list`]: the FIFO queue of waiters, and the cell each one reads without the lock;
//! - [`waiter`]: one acquire's life (queue, grant, time-out, cancel), driven by whichever
//!   future holds it;
//! - this file: taking, releasing, resizing, closing, and granting the queue.
//!
//! Permits taken from a raw gate are plain counts: whoever took `n` owns them and must give
//! them back with [`RawGate::release`] (or drop them from the limit with
//! [`RawGate::forget`]). [`Held`] is the guard for callers that need one in between.

mod pool;
mod state;
mod wait_list;
mod waiter;

pub(crate) use waiter::{Acquire, Waiter};

use std::fmt;
use std::sync::PoisonError;

use crate::WaitLimits;
use crate::stats::{Stats, WaitStats};
use crate::sync::{Mutex, MutexGuard, const_unless_loom};
use crate::{LimitError, TryAcquireError};
pub(crate) use pool::FastPool;
use state::{Locked, State, WakeList};
use wait_list::Served;

/// The largest limit a raw gate holds, leaving the fast pool's word room for its flag bit and
/// sums of two limits.
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 4;

/// Permits and a FIFO queue of waiters for them: the fast pool over the locked state.
///
/// Laid out for a gate that several cores contend for. The fast pool's word changes only
/// when the gate goes from free to contended and back, and is read by every acquire and
/// release, so it has a cache-line pair of its own ([`FastPool`] is aligned to 128 bytes):
/// the lock and the served word, written at every grant, do not drag it from core to core.
/// The served word comes next, in the lines of the lock and the queue's head, which the
/// releaser that writes it has just taken; the statistics' histogram comes last.
#[repr(C)]
pub(crate) struct RawGate {
    pool: FastPool,
    /// The last waiter served, which waiters read without the lock; beside the lock that
    /// every write to it holds.
    served: Served,
    state: Mutex<State>,
    /// What traces and metrics call this gate; `None` for an unnamed one.
    name: Option<&'static str>,
    /// The wait times already published as metrics.
    #[cfg(feature = "metrics")]
    published: Mutex<crate::stats::Published>,
}

impl RawGate {
    const_unless_loom! {
        /// A raw gate of `limit` permits, all free; `limit` must be at most [`MAX_PERMITS`].
        #[cfg(test)]
        pub(crate) const fn new(limit: usize) -> Self {
            Self::named(limit, None)
        }
    }

    const_unless_loom! {
        /// Like [`new`](Self::new), with the name traces and metrics give the gate.
        pub(crate) const fn named(limit: usize, name: Option<&'static str>) -> Self {
            Self {
                pool: FastPool::new(limit),
                served: Served::new(),
                state: Mutex::new(State::new(limit)),
                name,
                #[cfg(feature = "metrics")]
                published: Mutex::new(crate::stats::Published::new()),
            }
        }
    }

    /// The gate's name, if it was given one.
    #[inline]
    pub(crate) fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Waits for `n` permits (at most [`MAX_PERMITS`]) within `limits`; resolves to a guard
    /// holding them.
    #[inline]
    pub(crate) fn acquire(&self, n: usize, limits: WaitLimits) -> Acquire<'_> {
        Acquire::new(self, n, limits)
    }

    /// Takes `n` permits if they are free and nobody is queued, without waiting. A miss is
    /// counted as a rejection in [`stats`](Self::stats).
    pub(crate) fn try_take(&self, n: usize) -> Result<(), TryAcquireError> {
        if self.pool.try_take(n).is_some() {
            return Ok(());
        }
        let mut state = self.lock();
        if state.closed {
            return Err(TryAcquireError::Closed);
        }
        if state.try_take(n) {
            state.stats.admitted_at_once();
            Ok(())
        } else {
            state.stats.rejected += 1;
            Err(TryAcquireError::NoPermits)
        }
    }

    /// Takes `n` permits on the lock-free path only, returning how many stay free there;
    /// `None` if that path is closed (someone queues, a shrink drains, the gate is closed),
    /// holds fewer, or `n` is 0. One compare-and-swap; it never takes the lock, and a miss is
    /// not counted. For callers with a slow path of their own.
    #[inline]
    pub(crate) fn try_take_fast(&self, n: usize) -> Option<usize> {
        self.pool.try_take(n)
    }

    /// Like [`try_take_fast`](Self::try_take_fast) of one permit followed by its
    /// [`release`](Self::release), for an acquisition that ends as it starts: counted as
    /// admitted if the lock-free path is open and holds a permit, which stays there. One load
    /// and one add; returns how many permits that path holds.
    #[inline]
    pub(crate) fn take_and_give_back(&self) -> Option<usize> {
        self.pool.take_and_give_back()
    }

    /// Whether the lock-free path is open and holds a permit: one atomic load.
    #[inline]
    pub(crate) fn has_fast_permit(&self) -> bool {
        self.pool.permits() > 0
    }

    /// Gives back `n` permits taken earlier and admits whoever now fits.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if !self.pool.try_give(n) {
            self.release_slow(n);
        }
    }

    #[inline(never)]
    fn release_slow(&self, n: usize) {
        let mut state = self.lock();
        state.taken -= n;
        if !state.waiters.is_empty() {
            self.grant_and_wake(state);
        }
    }

    /// Takes `n` held permits out of the gate for good: they are not returned, and the limit
    /// drops by `n` (to no less than zero).
    pub(crate) fn forget(&self, n: usize) {
        let mut state = self.lock();
        state.taken -= n;
        state.limit = state.limit.saturating_sub(n);
    }

    /// Permits held right now, read under the lock.
    pub(crate) fn in_flight(&self) -> usize {
        self.observe().in_flight()
    }

    /// Counts a caller refused without waiting by a limit of its own (a limiter's
    /// `max_wait` of zero), as the gate counts its own refusals.
    pub(crate) fn record_rejected(&self) {
        self.lock().stats.rejected += 1;
    }

    /// Counts a caller whose deadline passed while it waited for more than this gate (a
    /// limiter's rate cell or pause).
    pub(crate) fn record_timed_out(&self) {
        self.lock().stats.timed_out += 1;
    }

    /// Permits that could be taken right now, ignoring any queue.
    pub(crate) fn available(&self) -> usize {
        let state = self.observe();
        state.limit.saturating_sub(state.in_flight())
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.observe().limit
    }

    /// Changes the limit, admitting waiters that now fit; held permits are never revoked.
    /// Fails, changing nothing, above [`MAX_PERMITS`].
    pub(crate) fn set_limit(&self, limit: usize) -> Result<(), LimitError> {
        if limit > MAX_PERMITS {
            return Err(LimitError { requested: limit });
        }
        let mut state = self.lock();
        state.limit = limit;
        self.grant_and_wake(state);
        Ok(())
    }

    /// Raises the limit by `n`, admitting waiters that now fit. Returns `false`, changing
    /// nothing, if the limit would exceed [`MAX_PERMITS`].
    pub(crate) fn add_permits(&self, n: usize) -> bool {
        let mut state = self.lock();
        let limit = state
            .limit
            .checked_add(n)
            .filter(|limit| *limit <= MAX_PERMITS);
        let Some(limit) = limit else {
            return false;
        };
        state.limit = limit;
        self.grant_and_wake(state);
        true
    }

    /// Takes up to `n` free permits out of the gate for good, lowering the limit by as many,
    /// and returns how many it took. Held permits are never touched.
    pub(crate) fn forget_permits(&self, n: usize) -> usize {
        let mut state = self.lock();
        let forgotten = n.min(state.free());
        state.limit -= forgotten;
        forgotten
    }

    /// Fails every waiter and every later acquire with `Closed`. Held permits stay valid.
    pub(crate) fn close(&self) {
        let mut wakers = Vec::new();
        {
            self.lock().close(|waker| wakers.push(waker));
        }
        wakers.into_iter().for_each(std::task::Waker::wake);
    }

    /// Whether [`close`](Self::close) has been called.
    pub(crate) fn is_closed(&self) -> bool {
        self.observe().closed
    }

    /// A snapshot of what the gate is doing and has done.
    pub(crate) fn stats(&self) -> Stats {
        let (mut stats, wait) = {
            let state = self.observe();
            let stats = Stats {
                limit: state.limit,
                in_flight: state.in_flight(),
                waiting: state.waiters.len(),
                admitted: state.stats.admitted + self.pool.admitted(),
                rejected: state.stats.rejected,
                timed_out: state.stats.timed_out,
                cancelled: state.stats.cancelled,
                wait: WaitStats::default(),
            };
            let mut wait = state.stats.wait.clone();
            wait.record_zeros(self.pool.admitted());
            (stats, wait)
        };
        stats.wait = WaitStats::from_histogram(&wait, stats.admitted);
        stats
    }

    /// The gate's state for publishing as metrics, read under one lock: its counters (no
    /// wait quantiles) and the waits of callers who queued recorded since the last call,
    /// added to `waits`.
    #[cfg(feature = "metrics")]
    pub(crate) fn publish(&self, waits: &mut Vec<(std::time::Duration, u64)>) -> Stats {
        // Only publishers take this lock, always before the gate's.
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let state = self.observe();
        let fast = self.pool.admitted();
        published.news(&state.stats.wait, waits);
        Stats {
            limit: state.limit,
            in_flight: state.in_flight(),
            waiting: state.waiters.len(),
            admitted: state.stats.admitted + fast,
            rejected: state.stats.rejected,
            timed_out: state.stats.timed_out,
            cancelled: state.stats.cancelled,
            wait: WaitStats::default(),
        }
    }

    /// Grants permits to the queue as far as they go, waking each admitted waiter after the
    /// lock is released.
    fn grant_and_wake<'a>(&'a self, mut state: Locked<'a>) {
        // The usual case under contention: one permit back, one waiter in. Wake it without
        // building a wake list.
        if !state.front_fits() {
            return;
        }
        let first = state.grant_front(&mut None);
        if !state.front_fits() {
            drop(state);
            if let Some(waker) = first {
                waker.wake();
            }
            return;
        }
        let mut wakers = WakeList::new();
        if let Some(waker) = first {
            wakers.push(waker);
        }
        loop {
            let more = state.grant(&mut wakers);
            drop(state);
            wakers.wake_all();
            if !more {
                return;
            }
            state = self.lock();
        }
    }

    /// Takes the lock with the fast path closed, to change the gate.
    fn lock(&self) -> Locked<'_> {
        Locked::exact(self.mutex(), &self.pool, &self.served)
    }

    /// Takes the lock to read the gate, leaving the fast path as it is.
    fn observe(&self) -> Locked<'_> {
        Locked::observing(self.mutex(), &self.pool, &self.served)
    }

    fn mutex(&self) -> MutexGuard<'_, State> {
        // The lock is never held across user code, so a poisoned lock still guards a
        // consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RawGate {
    /// Writes the gate's limit, in flight, waiting and closed fields, read under one lock,
    /// as a struct called `name`: the `Debug` of the types built on a raw gate.
    pub(crate) fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.observe();
        let mut f = f.debug_struct(name);
        if let Some(name) = self.name {
            f.field("name", &name);
        }
        f.field("limit", &state.limit)
            .field("in_flight", &state.in_flight())
            .field("waiting", &state.waiters.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl fmt::Debug for RawGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_as("RawGate", f)
    }
}

/// Permits taken from a raw gate, given back when dropped: for a caller that holds them
/// across an await before handing them to a guard of its own.
#[must_use = "the permits are released as soon as this is dropped"]
#[derive(Debug)]
pub(crate) struct Held<'a> {
    raw: &'a RawGate,
    permits: usize,
}

impl<'a> Held<'a> {
    /// Guards `permits` already taken from `raw`.
    #[inline]
    pub(crate) fn new(raw: &'a RawGate, permits: usize) -> Self {
        Self { raw, permits }
    }

    /// Hands the permits to the caller, who must give them back with [`RawGate::release`].
    #[inline]
    pub(crate) fn keep(self) -> usize {
        let permits = self.permits;
        std::mem::forget(self);
        permits
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        self.raw.release(self.permits);
    }
}

#[cfg(all(test, not(gate_loom)))]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::AcquireError;

    fn poll<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn permits_taken_fast_and_slow_are_counted_alike() {
        let raw = RawGate::new(3);
        assert_eq!(raw.try_take_fast(1), Some(2));
        assert_eq!(raw.try_take(1), Ok(()));
        assert_eq!(raw.try_take_fast(2), None);
        assert_eq!(raw.in_flight(), 2);
        assert_eq!(raw.available(), 1);
        raw.release(2);
        assert_eq!(raw.available(), 3);
        let stats = raw.stats();
        assert_eq!((stats.admitted, stats.rejected, stats.in_flight), (2, 0, 0));
    }

    #[test]
    fn a_release_grants_the_front_waiter_in_order() {
        let raw = RawGate::new(2);
        assert_eq!(raw.try_take_fast(2), Some(0));
        let held = Held::new(&raw, 2);
        let mut first = pin!(raw.acquire(2, WaitLimits::UNBOUNDED));
        let mut second = pin!(raw.acquire(1, WaitLimits::UNBOUNDED));
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        // The fast path is closed while anyone waits, and no caller barges past the queue.
        assert_eq!(raw.try_take_fast(1), None);
        assert_eq!(raw.try_take(1), Err(TryAcquireError::NoPermits));
        drop(held);
        let Poll::Ready(Ok(first)) = poll(first.as_mut()) else {
            panic!("the front waiter fits")
        };
        assert!(poll(second.as_mut()).is_pending());
        assert_eq!(first.keep(), 2);
        raw.release(1);
        let Poll::Ready(Ok(second)) = poll(second.as_mut()) else {
            panic!("one permit came back")
        };
        drop(second);
        raw.release(1);
        assert_eq!((raw.in_flight(), raw.available()), (0, 2));
    }

    #[test]
    fn forgetting_and_resizing_move_the_limit_not_the_holders() {
        let raw = RawGate::new(4);
        assert_eq!(raw.try_take_fast(3), Some(1));
        let held = Held::new(&raw, 3);
        assert_eq!(raw.forget_permits(5), 1);
        assert_eq!(raw.limit(), 3);
        raw.forget(held.keep() - 1);
        assert_eq!((raw.limit(), raw.in_flight()), (1, 1));
        assert!(raw.add_permits(2));
        assert!(!raw.add_permits(MAX_PERMITS));
        assert_eq!(raw.limit(), 3);
        assert_eq!(
            raw.set_limit(MAX_PERMITS + 1),
            Err(LimitError {
                requested: MAX_PERMITS + 1
            })
        );
        raw.set_limit(0).unwrap();
        raw.release(1);
        assert_eq!((raw.limit(), raw.in_flight(), raw.available()), (0, 0, 0));
    }

    #[test]
    fn the_fast_pool_shares_no_cache_line_with_the_lock() {
        use std::mem::{align_of, offset_of};
        // The pool's word is read by every acquire and release; the lock and the served word
        // are written at every grant. Lines are fetched in pairs: 128 bytes apart.
        assert_eq!(align_of::<RawGate>(), 128);
        assert_eq!(offset_of!(RawGate, pool), 0);
        let (served, lock) = (offset_of!(RawGate, served), offset_of!(RawGate, state));
        assert!(served >= 128 && lock >= 128);
        // The served word and the lock share one pair, with the queue's ends and the counts.
        assert_eq!(served / 128, lock / 128);
        assert!(lock + offset_of!(State, stats) - served < 128);
    }

    #[test]
    fn closing_fails_the_queue_and_later_acquires() {
        let raw = RawGate::new(0);
        let mut waiter = pin!(raw.acquire(1, WaitLimits::UNBOUNDED));
        assert!(poll(waiter.as_mut()).is_pending());
        raw.close();
        assert!(raw.is_closed());
        assert!(matches!(
            poll(waiter.as_mut()),
            Poll::Ready(Err(AcquireError::Closed))
        ));
        assert_eq!(raw.try_take(0), Err(TryAcquireError::Closed));
        assert_eq!(raw.stats().waiting, 0);
    }
}
