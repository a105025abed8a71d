//! The state behind a gate's lock, and the rules that move permits.

use std::ops::{Deref, DerefMut};
use std::task::Waker;

use tokio::time::Instant;

use super::pool::FastPool;
use super::wait_list::{Served, WaitList};
use crate::stats::Recorder;
use crate::sync::MutexGuard;

/// In declaration order, so that what every grant touches (the queue's ends, the counts, the
/// admission counter) sits in the lines just after the lock, and the histogram after them.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct State {
    pub(crate) waiters: WaitList,
    pub(crate) limit: usize,
    /// Permits held by callers or parked in the fast pool.
    pub(crate) taken: usize,
    pub(crate) closed: bool,
    pub(crate) stats: Recorder,
}

impl State {
    /// The state of a new gate, whose `limit` free permits all start in the fast pool.
    pub(crate) const fn new(limit: usize) -> Self {
        Self {
            waiters: WaitList::new(),
            limit,
            taken: limit,
            closed: false,
            stats: Recorder::new(),
        }
    }

    /// Permits neither held nor in the pool. Zero while a shrink is still draining.
    pub(crate) fn free(&self) -> usize {
        self.limit.saturating_sub(self.taken)
    }

    /// Takes `n` permits if nobody is queued and enough are free: no barging. A request for
    /// none is granted at once, queue or not, as tokio's `Semaphore` grants it: it takes
    /// nothing from anyone.
    pub(crate) fn try_take(&mut self, n: usize) -> bool {
        if n == 0 || (self.waiters.is_empty() && self.free() >= n) {
            self.taken += n;
            true
        } else {
            false
        }
    }

    /// Whether the waiter at the front of the queue fits in the free permits.
    #[inline]
    pub(crate) fn front_fits(&self) -> bool {
        matches!(self.waiters.front_needed(), Some(needed) if self.free() >= needed)
    }
}

/// The locked state together with the fast pool and the word that tells waiters they were
/// served.
///
/// An exact guard ([`RawGate::lock`](super::RawGate)) has closed the fast path and drained the
/// pool, so `free` is exact and it may change anything; when dropped it reopens the fast path
/// with every free permit if nobody waits, the gate is open and no shrink is still draining.
/// An observing guard ([`RawGate::observe`](super::RawGate)) only reads.
pub(crate) struct Locked<'a> {
    state: MutexGuard<'a, State>,
    pool: &'a FastPool,
    served: &'a Served,
    exact: bool,
}

impl<'a> Locked<'a> {
    pub(crate) fn exact(
        state: MutexGuard<'a, State>,
        pool: &'a FastPool,
        served: &'a Served,
    ) -> Self {
        let mut locked = Self {
            state,
            pool,
            served,
            exact: true,
        };
        let parked = pool.enter_slow();
        locked.state.taken -= parked;
        locked
    }

    pub(crate) fn observing(
        state: MutexGuard<'a, State>,
        pool: &'a FastPool,
        served: &'a Served,
    ) -> Self {
        Self {
            state,
            pool,
            served,
            exact: false,
        }
    }

    /// Permits held by callers: taken, less those parked in the pool.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.taken - self.pool.permits()
    }

    /// Grants the front waiter, which must fit ([`front_fits`](State::front_fits)), records
    /// how long it waited (reading the clock into `now` at most once per grant round), and
    /// returns its waker. Inlined: it is most of a contended release.
    #[inline]
    pub(crate) fn grant_front(&mut self, now: &mut Option<Instant>) -> Option<Waker> {
        let served = self.served;
        let state = &mut **self;
        let granted = state.waiters.grant_front(served);
        state.taken += granted.needed;
        match granted.timing {
            Some(timing) => {
                let now = *now.get_or_insert_with(Instant::now);
                let wait = now.saturating_duration_since(timing.since);
                state.stats.admitted_after(wait, timing.weight);
            }
            None => state.stats.admitted += 1,
        }
        granted.waker
    }

    /// Grants permits to queued waiters, strictly in order, while the front one fits, and
    /// records how long each waited. Returns `true` if it stopped only because `wakers` is
    /// full.
    pub(crate) fn grant(&mut self, wakers: &mut WakeList) -> bool {
        let mut now = None;
        while self.front_fits() {
            if wakers.is_full() {
                return true;
            }
            if let Some(waker) = self.grant_front(&mut now) {
                wakers.push(waker);
            }
        }
        false
    }

    /// Fails every waiter and every later acquire with `Closed`, handing each waiter's waker
    /// to `wake`.
    pub(crate) fn close(&mut self, wake: impl FnMut(Waker)) {
        let served = self.served;
        let state = &mut **self;
        state.closed = true;
        state.waiters.close_all(served, wake);
    }
}

impl Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        debug_assert!(self.exact, "changing the gate through an observing guard");
        &mut self.state
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let state = &mut *self.state;
        if self.exact && state.waiters.is_empty() && !state.closed && state.taken <= state.limit {
            let free = state.limit - state.taken;
            state.taken = state.limit;
            self.pool.leave_slow(free);
        }
    }
}

/// Wakers collected under the lock and woken after it is released, so a woken task never
/// finds the lock still held by its waker.
#[derive(Debug)]
pub(crate) struct WakeList {
    wakers: [Option<Waker>; Self::CAPACITY],
    len: usize,
}

impl WakeList {
    const CAPACITY: usize = 8;

    pub(crate) fn new() -> Self {
        Self {
            wakers: [const { None }; Self::CAPACITY],
            len: 0,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == Self::CAPACITY
    }

    pub(crate) fn push(&mut self, waker: Waker) {
        self.wakers[self.len] = Some(waker);
        self.len += 1;
    }

    pub(crate) fn wake_all(&mut self) {
        for slot in &mut self.wakers[..self.len] {
            if let Some(waker) = slot.take() {
                waker.wake();
            }
        }
        self.len = 0;
    }
}
