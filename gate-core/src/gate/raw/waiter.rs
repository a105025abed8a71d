//! One acquire's life: first poll, queue, grant, time-out and cancel. The futures that
//! acquire from a gate (the public [`Acquire`](crate::Acquire) and
//! [`AcquireOwned`](crate::AcquireOwned), the raw [`Acquire`] below) each hold a [`Waiter`]
//! and the gate the way they need to, and hand the gate to it on every call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::state::Locked;
use super::wait_list::{Key, Status, Ticket, Timing};
use super::{Held, RawGate};
use crate::observe::{WaitEnd, WaitTrace};
use crate::{AcquireError, WaitLimits};

/// Where a waiter is in its life.
#[derive(Debug)]
enum Phase {
    /// Not polled yet: holds nothing.
    Idle,
    /// In the gate's queue; the gate's [`Served`](super::wait_list::Served) word says when
    /// `ticket` leaves it.
    Queued { key: Key, ticket: Ticket },
    /// Finished: the permits (if any) were handed to the caller.
    Done,
}

/// The machinery shared by every acquire future. It does not store the gate, so that each
/// of them can hold the gate the way it needs to; every call must pass the same gate.
#[derive(Debug)]
pub(crate) struct Waiter {
    needed: usize,
    limits: WaitLimits,
    phase: Phase,
    /// Created only once the waiter has to queue with a deadline, so the fast path touches no
    /// timer, and boxed, so the future stays small for the common case that never needs it.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The `gate.wait` span of a waiter that queued (zero-sized without `tracing`).
    trace: WaitTrace,
}

impl Waiter {
    /// A waiter for `needed` permits (at most [`MAX_PERMITS`](super::MAX_PERMITS)) within
    /// `limits`, holding nothing until first polled.
    #[inline]
    pub(crate) fn new(needed: usize, limits: WaitLimits) -> Self {
        Self {
            needed,
            limits,
            phase: Phase::Idle,
            deadline: None,
            trace: WaitTrace::default(),
        }
    }

    /// Polls for `needed` permits; on `Ready(Ok(n))` the caller owns `n` permits of `gate`.
    ///
    /// The uncontended case (a first poll that finds permits on the lock-free path) is inlined
    /// into callers, across crates too; everything else is out of line.
    #[inline]
    pub(crate) fn poll_acquire(
        &mut self,
        gate: &RawGate,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        if matches!(self.phase, Phase::Idle) && gate.pool.try_take(self.needed).is_some() {
            self.phase = Phase::Done;
            return Poll::Ready(Ok(self.needed));
        }
        self.poll_slow(gate, cx)
    }

    #[inline(never)]
    fn poll_slow(
        &mut self,
        gate: &RawGate,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        let poll = self.poll_steps(gate, cx);
        // With no lock held: closes the span of a waiter that queued.
        if let Poll::Ready(result) = &poll {
            self.trace.end(WaitEnd::of(result));
        }
        poll
    }

    fn poll_steps(
        &mut self,
        gate: &RawGate,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        match &self.phase {
            Phase::Idle => self.poll_first(gate, cx),
            &Phase::Queued { key, ticket } => {
                // Granted or closed is final, and visible without the lock.
                if let Some(done) = self.finish(gate.served.status(ticket)) {
                    return done;
                }
                let expired = match &mut self.deadline {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                let mut state = gate.lock();
                // The status only changes under the lock, so this answer is final.
                if let Some(done) = self.finish(gate.served.status(ticket)) {
                    return done;
                }
                if expired {
                    return self.time_out(gate, state, key);
                }
                let displaced = state.waiters.register(key, cx.waker());
                // A waker's drop may run user code: never under the lock.
                drop(state);
                drop(displaced);
                Poll::Pending
            }
            Phase::Done => panic!("acquire future polled after it completed"),
        }
    }

    /// The first poll: take the permits at once, refuse, or join the queue.
    fn poll_first(
        &mut self,
        gate: &RawGate,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        let needed = self.needed;
        // The lock-free path was tried by `poll_acquire`: likely to queue: clone the waker
        // before taking the lock, not while holding it.
        let waker = cx.waker().clone();
        let mut state = gate.lock();
        let refused = if state.closed {
            Some(AcquireError::Closed)
        } else if state.try_take(needed) {
            state.stats.admitted_at_once();
            self.phase = Phase::Done;
            return Poll::Ready(Ok(needed));
        } else if self.limits.max_wait == Some(Duration::ZERO) {
            // Refused without waiting: a rejection, like a full queue, though the error
            // says which bound refused it.
            state.stats.rejected += 1;
            Some(AcquireError::TimedOut)
        } else if !state.waiters.has_room(self.limits.max_waiters) {
            state.stats.rejected += 1;
            Some(AcquireError::QueueFull)
        } else {
            None
        };
        if let Some(error) = refused {
            self.phase = Phase::Done;
            return Poll::Ready(Err(error));
        }
        let queued = state.waiters.len();
        let timing = state.stats.sample(queued).map(|weight| Timing {
            since: Instant::now(),
            weight,
        });
        let (key, ticket) = state.waiters.push_back(needed, timing, waker);
        drop(state);
        self.phase = Phase::Queued { key, ticket };
        self.trace.queued(gate.name(), needed);
        match self.limits.max_wait {
            // `sleep` saturates a deadline too far to represent.
            Some(max_wait) => self.arm_deadline(gate, cx, Box::pin(tokio::time::sleep(max_wait))),
            None => Poll::Pending,
        }
    }

    /// Registers a queued waiter's deadline with the timer. A deadline found already passed
    /// (its first poll is `Ready`, so no wake-up was registered) times the waiter out now:
    /// otherwise nothing would ever wake it to notice.
    fn arm_deadline(
        &mut self,
        gate: &RawGate,
        cx: &mut Context<'_>,
        mut deadline: Pin<Box<Sleep>>,
    ) -> Poll<Result<usize, AcquireError>> {
        let passed = deadline.as_mut().poll(cx).is_ready();
        self.deadline = Some(deadline);
        if !passed {
            return Poll::Pending;
        }
        let Phase::Queued { key, ticket } = self.phase else {
            unreachable!("armed a deadline for a waiter that is not queued")
        };
        let state = gate.lock();
        // Granted or closed since it queued: that answer stands (the status only changes
        // under the lock).
        if let Some(done) = self.finish(gate.served.status(ticket)) {
            return done;
        }
        self.time_out(gate, state, key)
    }

    /// Takes a queued waiter whose deadline passed off the queue and fails it. It is still
    /// `Queued` and `state` is the gate's lock.
    fn time_out(
        &mut self,
        gate: &RawGate,
        mut state: Locked<'_>,
        key: Key,
    ) -> Poll<Result<usize, AcquireError>> {
        let was_front = state.waiters.is_front(key);
        let waker = state.waiters.remove(key);
        state.stats.timed_out += 1;
        self.phase = Phase::Done;
        if was_front {
            // Those behind may fit where this one did not.
            gate.grant_and_wake(state);
        } else {
            drop(state);
        }
        drop(waker);
        Poll::Ready(Err(AcquireError::TimedOut))
    }

    /// The outcome for a waiter whose status is `status`, if it is final.
    fn finish(&mut self, status: Status) -> Option<Poll<Result<usize, AcquireError>>> {
        let result = match status {
            Status::Queued => return None,
            Status::Granted => Ok(self.needed),
            Status::Closed => Err(AcquireError::Closed),
        };
        self.phase = Phase::Done;
        Some(Poll::Ready(result))
    }

    /// Gives back whatever this waiter holds: its place in the queue, or permits granted to
    /// it that nobody collected. Called when the future holding it is dropped.
    ///
    /// The usual case, a waiter that never queued or already collected its permits, is a
    /// check inlined into the future's drop; giving a place back is out of line.
    #[inline]
    pub(crate) fn cancel(&mut self, gate: &RawGate) {
        if matches!(self.phase, Phase::Queued { .. }) {
            self.cancel_queued(gate);
        }
    }

    #[inline(never)]
    fn cancel_queued(&mut self, gate: &RawGate) {
        let Phase::Queued { key, ticket } = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        if gate.served.status(ticket) == Status::Closed {
            self.trace.end(WaitEnd::Closed);
            return;
        }
        let mut state = gate.lock();
        match gate.served.status(ticket) {
            Status::Granted => {
                state.taken -= self.needed;
                gate.grant_and_wake(state);
            }
            Status::Queued => {
                let was_front = state.waiters.is_front(key);
                let waker = state.waiters.remove(key);
                state.stats.cancelled += 1;
                if was_front {
                    gate.grant_and_wake(state);
                } else {
                    drop(state);
                }
                // A waker's drop may run user code: never under the lock.
                drop(waker);
            }
            Status::Closed => {}
        }
        self.trace.end(WaitEnd::Cancelled);
    }
}

/// Future returned by [`RawGate::acquire`]: resolves to a guard holding the permits.
///
/// Cancel-safe: dropping it gives back its place in the queue, or permits it was granted but
/// not yet returned.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Acquire<'a> {
    raw: &'a RawGate,
    waiter: Waiter,
}

impl<'a> Acquire<'a> {
    #[inline]
    pub(crate) fn new(raw: &'a RawGate, needed: usize, limits: WaitLimits) -> Self {
        Self {
            raw,
            waiter: Waiter::new(needed, limits),
        }
    }
}

impl Drop for Acquire<'_> {
    #[inline]
    fn drop(&mut self) {
        self.waiter.cancel(self.raw);
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<Held<'a>, AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let raw: &'a RawGate = self.raw;
        let permits = ready!(self.waiter.poll_acquire(raw, cx))?;
        Poll::Ready(Ok(Held::new(raw, permits)))
    }
}

#[cfg(all(test, not(gate_loom)))]
mod tests {
    use super::*;

    // Regression: the first poll of a waiter's deadline discarded its result, so a deadline
    // already passed then registered no wake-up and the waiter waited for a permit instead.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_passed_when_armed_times_the_waiter_out() {
        let gate = RawGate::new(1);
        gate.try_take(1).unwrap();
        let mut waiter = Waiter::new(1, WaitLimits::UNBOUNDED);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(waiter.poll_acquire(&gate, &mut cx).is_pending());
        assert_eq!(gate.stats().waiting, 1);
        let passed = Instant::now() - Duration::from_secs(1);
        let armed = waiter.arm_deadline(&gate, &mut cx, Box::pin(tokio::time::sleep_until(passed)));
        assert_eq!(armed, Poll::Ready(Err(AcquireError::TimedOut)));
        let stats = gate.stats();
        assert_eq!((stats.waiting, stats.timed_out), (0, 1));
    }
}
