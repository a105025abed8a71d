//! [`LimiterAcquire`] and [`LimiterAcquireOwned`]: waiting for a limiter's admission.
//!
//! Most admissions wait for nothing: no pause, a permit free on the gate's lock-free path, a
//! rate cell due now. The first poll decides that case in place, with a few atomic operations
//! and no allocation. An admission that must wait (for the queue, a rate cell or a pause)
//! goes on in a boxed future, an allocation that is small beside the wait itself.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use super::{Admitted, Limiter, LimiterPermit, OwnedLimiterPermit};
use crate::{AcquireError, WaitLimits};

/// The rest of an admission that has to wait.
type Waiting<'a> = Pin<Box<dyn Future<Output = Result<Admitted, AcquireError>> + Send + Sync + 'a>>;

/// Future returned by [`Limiter::acquire`]: resolves to a [`LimiterPermit`] once the caller
/// is admitted.
///
/// Cancel-safe: dropping it gives back the permit or queue place it holds, and a booked rate
/// cell if nobody booked after it.
#[must_use = "futures do nothing unless polled"]
pub struct LimiterAcquire<'a> {
    /// `None` once the permit has been handed out.
    limiter: Option<&'a Limiter>,
    limits: WaitLimits,
    /// The tokens to reserve, if the caller said.
    estimate: Option<u64>,
    waiting: Option<Waiting<'a>>,
}

impl<'a> LimiterAcquire<'a> {
    pub(super) fn new(limiter: &'a Limiter, limits: WaitLimits, estimate: Option<u64>) -> Self {
        Self {
            limiter: Some(limiter),
            limits,
            estimate,
            waiting: None,
        }
    }
}

impl<'a> Future for LimiterAcquire<'a> {
    type Output = Result<LimiterPermit<'a>, AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let limiter = self
            .limiter
            .expect("LimiterAcquire polled after completion");
        let (limits, estimate) = (self.limits, self.estimate);
        let (admitted, tokens) = ready!(poll_admission(
            limiter,
            limits,
            estimate,
            &mut self.waiting,
            cx,
            |tokens| { Box::pin(limiter.wait_for_admission(limits, tokens)) }
        ))?;
        self.limiter = None;
        Poll::Ready(Ok(LimiterPermit {
            limiter,
            admitted,
            tokens,
        }))
    }
}

impl fmt::Debug for LimiterAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterAcquire")
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

/// Future returned by [`Limiter::acquire_owned`]: like [`LimiterAcquire`], but `'static`,
/// resolving to an [`OwnedLimiterPermit`].
#[must_use = "futures do nothing unless polled"]
pub struct LimiterAcquireOwned {
    /// `None` once the permit has been handed out.
    limiter: Option<Arc<Limiter>>,
    limits: WaitLimits,
    /// The tokens to reserve, if the caller said.
    estimate: Option<u64>,
    waiting: Option<Waiting<'static>>,
}

impl LimiterAcquireOwned {
    pub(super) fn new(limiter: Arc<Limiter>, limits: WaitLimits, estimate: Option<u64>) -> Self {
        Self {
            limiter: Some(limiter),
            limits,
            estimate,
            waiting: None,
        }
    }
}

impl Future for LimiterAcquireOwned {
    type Output = Result<OwnedLimiterPermit, AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let limiter = this
            .limiter
            .as_ref()
            .expect("LimiterAcquireOwned polled after completion");
        let (limits, estimate) = (this.limits, this.estimate);
        let (admitted, tokens) = ready!(poll_admission(
            limiter,
            limits,
            estimate,
            &mut this.waiting,
            cx,
            |tokens| {
                let limiter = Arc::clone(limiter);
                Box::pin(async move { limiter.wait_for_admission(limits, tokens).await })
            }
        ))?;
        let limiter = this.limiter.take().expect("checked above");
        Poll::Ready(Ok(OwnedLimiterPermit {
            limiter,
            admitted,
            tokens,
        }))
    }
}

impl fmt::Debug for LimiterAcquireOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterAcquireOwned")
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

/// Polls an admission: on the first poll, refuses a token `estimate` the budget cannot take,
/// admits in place if nothing stands in the way, refuses if `limits` allow no wait, or else
/// starts the wait (`wait` boxes it, for the tokens to book) and polls that. Resolves to the
/// admission and the tokens it reserved.
#[inline]
fn poll_admission<'w>(
    limiter: &Limiter,
    limits: WaitLimits,
    estimate: Option<u64>,
    waiting: &mut Option<Waiting<'w>>,
    cx: &mut Context<'_>,
    wait: impl FnOnce(u64) -> Waiting<'w>,
) -> Poll<Result<(Admitted, u64), AcquireError>> {
    let tokens = limiter.token_cost(estimate)?;
    let waiting = match waiting {
        Some(waiting) => waiting,
        None => match limiter.try_admit(tokens) {
            Some(admitted) => return Poll::Ready(Ok((admitted, tokens))),
            None if limits.max_wait == Some(Duration::ZERO) => {
                return Poll::Ready(Err(limiter.refuse_at_once()));
            }
            None => waiting.insert(wait(tokens)),
        },
    };
    waiting
        .as_mut()
        .poll(cx)
        .map_ok(|admitted| (admitted, tokens))
}
