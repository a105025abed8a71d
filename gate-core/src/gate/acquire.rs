//! The futures returned by `Gate::acquire` and friends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use super::raw::Waiter;
use super::{Gate, OwnedPermit, Permit, WaitLimits};
use crate::AcquireError;

/// Future returned by [`Gate::acquire`], [`Gate::acquire_many`] and
/// [`Gate::acquire_timeout`].
///
/// Cancel-safe: dropping it at any point gives back its place in the queue, or the
/// permits it was granted but not yet returned, and lets the next waiter in.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    gate: &'a Gate,
    waiter: Waiter,
}

impl<'a> Acquire<'a> {
    #[inline]
    pub(crate) fn new(gate: &'a Gate, needed: usize, limits: WaitLimits) -> Self {
        Self {
            gate,
            waiter: Waiter::new(needed, limits),
        }
    }
}

impl Drop for Acquire<'_> {
    #[inline]
    fn drop(&mut self) {
        self.waiter.cancel(&self.gate.raw);
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<Permit<'a>, AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let gate: &'a Gate = self.gate;
        let permits = ready!(self.waiter.poll_acquire(&gate.raw, cx))?;
        Poll::Ready(Ok(Permit::new(gate, permits)))
    }
}

/// Future returned by [`Gate::acquire_owned`] and [`Gate::acquire_many_owned`]: like
/// [`Acquire`], but holding an `Arc<Gate>`, so it is `'static` and can be stored in a
/// struct (a tower response future, a spawned task). It is `Unpin`.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AcquireOwned {
    /// Handed to the permit on success, so the `Arc` is never cloned.
    gate: Option<Arc<Gate>>,
    waiter: Waiter,
}

impl AcquireOwned {
    #[inline]
    pub(crate) fn new(gate: Arc<Gate>, needed: usize, limits: WaitLimits) -> Self {
        Self {
            gate: Some(gate),
            waiter: Waiter::new(needed, limits),
        }
    }
}

impl Drop for AcquireOwned {
    #[inline]
    fn drop(&mut self) {
        if let Some(gate) = &self.gate {
            self.waiter.cancel(&gate.raw);
        }
    }
}

impl Future for AcquireOwned {
    type Output = Result<OwnedPermit, AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let gate = this
            .gate
            .as_ref()
            .expect("acquire future polled after it completed");
        let permits = ready!(this.waiter.poll_acquire(&gate.raw, cx))?;
        let gate = this.gate.take().expect("checked above");
        Poll::Ready(Ok(OwnedPermit::new(gate, permits)))
    }
}
