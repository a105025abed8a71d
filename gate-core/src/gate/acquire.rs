//! The futures returned by `Gate::acquire` and friends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::wait_list::{Key, Status};
use super::{Gate, OwnedPermit, Permit, WaitLimits};
use crate::AcquireError;

/// Where a waiter is in its life.
#[derive(Debug)]
enum Phase {
    /// Not polled yet: holds nothing.
    Idle,
    /// In the gate's queue since `since`.
    Queued { key: Key, since: Instant },
    /// Finished: the permits (if any) were handed to the caller.
    Done,
}

pin_project! {
    /// The machinery shared by the borrowed and owned acquire futures. It does not store the
    /// gate, so that each of them can hold the gate the way it needs to.
    #[derive(Debug)]
    struct Waiter {
        needed: usize,
        limits: WaitLimits,
        phase: Phase,
        // Created only once the waiter has to queue, so the fast path touches no timer.
        #[pin]
        deadline: Option<Sleep>,
    }
}

impl Waiter {
    fn new(needed: usize, limits: WaitLimits) -> Self {
        Self {
            needed,
            limits,
            phase: Phase::Idle,
            deadline: None,
        }
    }

    /// Polls for `needed` permits; on `Ready(Ok(n))` the caller owns `n` permits of `gate`.
    fn poll_acquire(
        self: Pin<&mut Self>,
        gate: &Gate,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        let mut this = self.project();
        let needed = *this.needed;
        match *this.phase {
            Phase::Idle => {
                let mut state = gate.lock();
                if state.closed {
                    *this.phase = Phase::Done;
                    return Poll::Ready(Err(AcquireError::Closed));
                }
                if state.try_take(needed) {
                    state.stats.admitted_at_once();
                    *this.phase = Phase::Done;
                    return Poll::Ready(Ok(needed));
                }
                if this.limits.max_wait == Some(Duration::ZERO) {
                    state.stats.timed_out += 1;
                    *this.phase = Phase::Done;
                    return Poll::Ready(Err(AcquireError::TimedOut));
                }
                if state.waiters.len() >= this.limits.max_waiters {
                    state.stats.rejected += 1;
                    *this.phase = Phase::Done;
                    return Poll::Ready(Err(AcquireError::QueueFull));
                }
                let key = state.waiters.push_back(needed, cx.waker().clone());
                drop(state);
                let since = Instant::now();
                *this.phase = Phase::Queued { key, since };
                if let Some(max_wait) = this.limits.max_wait {
                    this.deadline
                        .set(Some(tokio::time::sleep_until(since + max_wait)));
                }
                // Register with the timer now; a deadline that has already passed is noticed
                // on the next poll.
                if let Some(deadline) = this.deadline.as_pin_mut() {
                    let _ = deadline.poll(cx);
                }
                Poll::Pending
            }
            Phase::Queued { key, since } => {
                let expired = match this.deadline.as_pin_mut() {
                    Some(deadline) => deadline.poll(cx).is_ready(),
                    None => false,
                };
                let mut state = gate.lock();
                match state.waiters.status(key) {
                    Status::Granted => {
                        state.waiters.release(key);
                        state.stats.admitted_after(since.elapsed());
                        *this.phase = Phase::Done;
                        Poll::Ready(Ok(needed))
                    }
                    Status::Closed => {
                        state.waiters.release(key);
                        *this.phase = Phase::Done;
                        Poll::Ready(Err(AcquireError::Closed))
                    }
                    Status::Queued if expired => {
                        let was_front = state.waiters.is_front(key);
                        state.waiters.release(key);
                        state.stats.timed_out += 1;
                        *this.phase = Phase::Done;
                        if was_front {
                            // Those behind may fit where this one did not.
                            gate.grant_and_wake(state);
                        }
                        Poll::Ready(Err(AcquireError::TimedOut))
                    }
                    Status::Queued => {
                        state.waiters.register(key, cx.waker());
                        Poll::Pending
                    }
                }
            }
            Phase::Done => panic!("acquire future polled after it completed"),
        }
    }

    /// Gives back whatever this waiter holds: its place in the queue, or permits granted to
    /// it that nobody collected.
    fn cancel(self: Pin<&mut Self>, gate: &Gate) {
        let this = self.project();
        let Phase::Queued { key, .. } = *this.phase else {
            return;
        };
        *this.phase = Phase::Done;
        let mut state = gate.lock();
        let was_front = state.waiters.is_front(key);
        match state.waiters.release(key) {
            Status::Granted => {
                state.in_flight -= *this.needed;
                gate.grant_and_wake(state);
            }
            Status::Queued if was_front => gate.grant_and_wake(state),
            Status::Queued | Status::Closed => {}
        }
    }
}

pin_project! {
    /// Future returned by [`Gate::acquire`], [`Gate::acquire_many`] and
    /// [`Gate::acquire_timeout`].
    ///
    /// Cancel-safe: dropping it at any point gives back its place in the queue, or the
    /// permits it was granted but not yet returned, and lets the next waiter in.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire<'a> {
        gate: &'a Gate,
        #[pin]
        waiter: Waiter,
    }

    impl PinnedDrop for Acquire<'_> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.cancel(this.gate);
        }
    }
}

impl<'a> Acquire<'a> {
    pub(crate) fn new(gate: &'a Gate, needed: usize, limits: WaitLimits) -> Self {
        Self {
            gate,
            waiter: Waiter::new(needed, limits),
        }
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<Permit<'a>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let gate: &'a Gate = this.gate;
        let permits = ready!(this.waiter.poll_acquire(gate, cx))?;
        Poll::Ready(Ok(Permit::new(gate, permits)))
    }
}

pin_project! {
    /// Future returned by [`Gate::acquire_owned`] and [`Gate::acquire_many_owned`]: like
    /// [`Acquire`], but holding an `Arc<Gate>`, so it is `'static` and can be stored in a
    /// struct (a tower response future, a spawned task).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireOwned {
        gate: Arc<Gate>,
        #[pin]
        waiter: Waiter,
    }

    impl PinnedDrop for AcquireOwned {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.cancel(this.gate);
        }
    }
}

impl AcquireOwned {
    pub(crate) fn new(gate: Arc<Gate>, needed: usize, limits: WaitLimits) -> Self {
        Self {
            gate,
            waiter: Waiter::new(needed, limits),
        }
    }
}

impl Future for AcquireOwned {
    type Output = Result<OwnedPermit, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let permits = ready!(this.waiter.poll_acquire(this.gate, cx))?;
        Poll::Ready(Ok(OwnedPermit::new(Arc::clone(this.gate), permits)))
    }
}
