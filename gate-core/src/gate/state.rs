//! The state behind a gate's lock, and the rules that move permits.

use std::task::Waker;

use tokio::time::Instant;

use super::wait_list::WaitList;
use crate::stats::Recorder;

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) limit: usize,
    pub(crate) in_flight: usize,
    pub(crate) closed: bool,
    pub(crate) waiters: WaitList,
    pub(crate) stats: Recorder,
}

impl State {
    pub(crate) const fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: 0,
            closed: false,
            waiters: WaitList::new(),
            stats: Recorder::new(),
        }
    }

    /// Permits not held by anyone. Zero while a shrink is still draining.
    pub(crate) fn available(&self) -> usize {
        self.limit.saturating_sub(self.in_flight)
    }

    /// Takes `n` permits if nobody is queued and enough are free: no barging.
    #[inline]
    pub(crate) fn try_take(&mut self, n: usize) -> bool {
        if self.waiters.is_empty() && self.available() >= n {
            self.in_flight += n;
            true
        } else {
            false
        }
    }

    /// Grants permits to queued waiters, strictly in order, while the front one fits, and
    /// records how long each waited. Returns `true` if it stopped only because `wakers` is
    /// full.
    pub(crate) fn grant(&mut self, wakers: &mut WakeList) -> bool {
        let mut now = None;
        while let Some(needed) = self.waiters.front_needed() {
            if self.available() < needed {
                return false;
            }
            if wakers.is_full() {
                return true;
            }
            self.in_flight += needed;
            let granted = self.waiters.grant_front();
            let now = *now.get_or_insert_with(Instant::now);
            self.stats
                .admitted_after(now.saturating_duration_since(granted.since));
            if let Some(waker) = granted.waker {
                wakers.push(waker);
            }
        }
        false
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
    const CAPACITY: usize = 32;

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
