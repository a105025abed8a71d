//! Where a layer's permits come from, and what it hands out: one shape for an `Arc<Gate>`, a
//! `&'static Gate` and an `Arc<Limiter>`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use gate_core::{
    Acquire, AcquireError, AcquireOwned, Gate, Limiter, Outcome, OwnedLimiterPermit, OwnedPermit,
    Permit, Stats, WaitLimits,
};
use http::{HeaderMap, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::pushback::{self as backpressure, Pushback as Overload};
use crate::queue::{Entered, Queue};

/// What a layer, every service it wraps and every clone of those draw their permits from,
/// with the layer's [`Queue`].
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A gate: one made by the layer or handed to it, or a `static` one.
    Gate(Arc<GateSource>),
    /// A limiter (concurrency, rate, pause, adaptive), which learns how each call ended.
    Limiter(Arc<LimiterSource>),
}

/// A gate as a layer shares it.
#[derive(Debug)]
pub(crate) struct GateSource {
    gate: GateRef,
    queue: Arc<Queue>,
}

/// A gate behind an `Arc`, or a `static` one (for instance one a `#[gated]` function also
/// uses).
#[derive(Debug)]
enum GateRef {
    Owned(Arc<Gate>),
    Static(&'static Gate),
}

impl Source {
    pub(crate) fn owned(gate: Arc<Gate>) -> Self {
        Self::from_gate(GateRef::Owned(gate))
    }

    pub(crate) fn static_gate(gate: &'static Gate) -> Self {
        Self::from_gate(GateRef::Static(gate))
    }

    fn from_gate(gate: GateRef) -> Self {
        let limit = match &gate {
            GateRef::Owned(gate) => gate.limit(),
            GateRef::Static(gate) => gate.limit(),
        };
        Self::Gate(Arc::new(GateSource {
            gate,
            queue: Arc::new(Queue::new(limit)),
        }))
    }

    pub(crate) fn limiter(limiter: Arc<Limiter>) -> Self {
        let limit = limiter.limit().unwrap_or(1);
        Self::Limiter(Arc::new(LimiterSource {
            limiter,
            queue: Arc::new(Queue::new(limit)),
            timed_out: AtomicU64::new(0),
        }))
    }

    /// The gate behind the concurrency limit.
    #[inline]
    pub(crate) fn gate(&self) -> &Gate {
        match self {
            Self::Gate(source) => match &source.gate {
                GateRef::Owned(gate) => gate,
                GateRef::Static(gate) => gate,
            },
            Self::Limiter(source) => source.limiter.gate(),
        }
    }

    pub(crate) fn get_limiter(&self) -> Option<&Arc<Limiter>> {
        match self {
            Self::Gate(_) => None,
            Self::Limiter(source) => Some(&source.limiter),
        }
    }

    /// The layer's queue of waiting requests.
    pub(crate) fn queue(&self) -> &Queue {
        match self {
            Self::Gate(source) => &source.queue,
            Self::Limiter(source) => &source.queue,
        }
    }

    /// The gate's statistics, with the refusals the layer made itself.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.gate().stats();
        stats.rejected += self.queue().rejected();
        if let Self::Limiter(source) = self {
            stats.timed_out += source.timed_out.load(Ordering::Relaxed);
        }
        stats
    }

    /// Takes a permit at once if nothing stands in the way (for a gate, its lock-free path
    /// has one): the uncontended case, with no future to build and poll.
    #[inline]
    pub(crate) fn try_acquire_uncontended(&self) -> Option<GatePermit> {
        match self {
            Self::Gate(source) => match &source.gate {
                GateRef::Owned(gate) => gate
                    .try_acquire_owned_uncontended()
                    .map(|permit| GatePermit::Owned { _permit: permit }),
                GateRef::Static(gate) => gate
                    .try_acquire_uncontended()
                    .map(|permit| GatePermit::Static { _permit: permit }),
            },
            Self::Limiter(source) => source.try_acquire_uncontended(),
        }
    }

    /// Starts waiting for one permit within `limits`; nothing happens until it is polled.
    #[inline]
    pub(crate) fn acquire(&self, limits: WaitLimits) -> Acquiring {
        match self {
            Self::Gate(source) => {
                let queued = Queued {
                    queue: Arc::clone(&source.queue),
                    limits,
                    entered: None,
                };
                match &source.gate {
                    GateRef::Owned(gate) => Acquiring::Owned {
                        future: Arc::clone(gate).acquire_owned_with(1, limits),
                        queued,
                    },
                    GateRef::Static(gate) => Acquiring::Static {
                        future: gate.acquire_with(1, limits),
                        queued,
                    },
                }
            }
            Self::Limiter(source) => source.acquire(limits),
        }
    }
}

/// A limiter as a layer shares it: the limiter, and the layer's own bookkeeping of the
/// bounds it puts on waiting.
pub(crate) struct LimiterSource {
    limiter: Arc<Limiter>,
    /// Requests of this layer waiting for admission (a pause, a permit or a rate cell).
    queue: Arc<Queue>,
    /// Refusals by `max_wait`, which the limiter's gate does not see.
    timed_out: AtomicU64,
}

impl LimiterSource {
    /// Out of line, so that the gates' path stays as lean as it was.
    #[inline(never)]
    fn try_acquire_uncontended(&self) -> Option<GatePermit> {
        self.limiter
            .try_acquire_owned_uncontended()
            .map(Reporting::start)
    }

    /// Out of line, like everything a limiter adds, so that the gates' path stays as lean
    /// as it was.
    #[inline(never)]
    fn acquire(self: &Arc<Self>, limits: WaitLimits) -> Acquiring {
        Acquiring::Limiter {
            future: Box::pin(Arc::clone(self).admit(limits)),
        }
    }

    /// Admission through the limiter, bounded by the layer's `limits`: a request admitted at
    /// once never counts as waiting; one that must wait is refused if the layer's [`Queue`]
    /// says so (`max_waiters` already wait, or they would not get through within
    /// `max_wait`), and gives up after `max_wait` (the whole admission: pause, queue and
    /// rate).
    async fn admit(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> Result<OwnedLimiterPermit, AcquireError> {
        let mut acquire = pin!(Arc::clone(&self.limiter).acquire_owned());
        if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await {
            return result;
        }
        if limits.max_wait == Some(Duration::ZERO) {
            // Refused without waiting: a rejection, as a gate counts it.
            self.queue.reject();
            return Err(AcquireError::TimedOut);
        }
        let entered = self.queue.enter(limits)?;
        let result = match limits.max_wait {
            None => acquire.await,
            Some(max_wait) => match tokio::time::timeout(max_wait, acquire).await {
                Ok(result) => result,
                Err(_) => {
                    self.timed_out.fetch_add(1, Ordering::Relaxed);
                    Err(AcquireError::TimedOut)
                }
            },
        };
        if result.is_ok() {
            entered.admitted();
        }
        result
    }
}

impl fmt::Debug for LimiterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterSource")
            .field("limiter", &self.limiter)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Admission through a limiter, boxed: `Limiter::acquire_owned` is an `async fn`.
type LimiterAdmit =
    Pin<Box<dyn Future<Output = Result<OwnedLimiterPermit, AcquireError>> + Send + Sync>>;

pin_project! {
    /// Waiting for one permit of a [`Source`]. Cancel-safe, as gate-core's futures are.
    #[project = AcquiringProj]
    pub(crate) enum Acquiring {
        Owned { #[pin] future: AcquireOwned, queued: Queued },
        Static { #[pin] future: Acquire<'static>, queued: Queued },
        // One allocation per limiter request. The fat pointer no longer costs the gates'
        // path anything: a response future that waits keeps this enum behind a box.
        Limiter { future: LimiterAdmit },
    }
}

/// A gate's waiter's place in its layer's [`Queue`]: entered at the first poll that has to
/// wait, left when admitted or dropped.
#[derive(Debug)]
pub(crate) struct Queued {
    queue: Arc<Queue>,
    limits: WaitLimits,
    entered: Option<Entered>,
}

impl Queued {
    /// What a gate's acquire said, once the layer's queue has had its say.
    #[inline]
    fn poll<P>(&mut self, poll: Poll<Result<P, AcquireError>>) -> Poll<Result<P, AcquireError>> {
        match poll {
            Poll::Ready(Ok(permit)) => {
                if let Some(entered) = self.entered.take() {
                    entered.admitted();
                }
                Poll::Ready(Ok(permit))
            }
            Poll::Ready(Err(reason)) => Poll::Ready(Err(reason)),
            Poll::Pending if self.entered.is_some() => Poll::Pending,
            // The gate queued the request; the queue may still refuse it, and dropping the
            // acquire then gives up its place in the gate's queue.
            Poll::Pending => match self.queue.enter(self.limits) {
                Ok(entered) => {
                    self.entered = Some(entered);
                    Poll::Pending
                }
                Err(reason) => Poll::Ready(Err(reason)),
            },
        }
    }
}

impl Future for Acquiring {
    type Output = Result<GatePermit, AcquireError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AcquiringProj::Owned { future, queued } => queued
                .poll(future.poll(cx))
                .map_ok(|permit| GatePermit::Owned { _permit: permit }),
            AcquiringProj::Static { future, queued } => queued
                .poll(future.poll(cx))
                .map_ok(|permit| GatePermit::Static { _permit: permit }),
            AcquiringProj::Limiter { future } => poll_limiter(future, cx),
        }
    }
}

#[inline(never)]
fn poll_limiter(
    future: &mut LimiterAdmit,
    cx: &mut Context<'_>,
) -> Poll<Result<GatePermit, AcquireError>> {
    future.as_mut().poll(cx).map_ok(Reporting::start)
}

impl fmt::Debug for Acquiring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Owned { future, .. } => f.debug_tuple("Owned").field(future).finish(),
            Self::Static { future, .. } => f.debug_tuple("Static").field(future).finish(),
            Self::Limiter { .. } => f.write_str("Limiter"),
        }
    }
}

/// One permit of a [`Source`], released when dropped. A gate's permit is held only for its
/// `Drop`; a limiter's also carries what the call's response said, for the limiter to learn.
/// That one is boxed so that the gate's permits, and the futures and bodies holding them,
/// stay small.
#[derive(Debug)]
pub(crate) enum GatePermit {
    Owned { _permit: OwnedPermit },
    Static { _permit: Permit<'static> },
    Limiter(Box<Reporting>),
}

impl GatePermit {
    /// Notes the outcome a response head says (a limiter's permit only: a gate learns
    /// nothing). An overload with a `Retry-After` pauses the limiter at once, even if the
    /// permit is held until the body ends.
    #[inline]
    pub(crate) fn observe_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        if let Self::Limiter(reporting) = self {
            reporting.observe_head(status, headers);
        }
    }

    /// Notes an overload signalled in gRPC trailers, which outranks the head's success.
    #[inline]
    pub(crate) fn observe_trailers(&mut self, trailers: &HeaderMap) {
        if let Self::Limiter(reporting) = self {
            reporting.observe_trailers(trailers);
        }
    }

    /// Notes how the call ended, replacing what was noted before.
    #[inline]
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        if let Self::Limiter(reporting) = self {
            reporting.observe(outcome);
        }
    }

    /// Notes that the call failed after its head (its body did), unless the head already
    /// said the server was overloaded.
    #[inline]
    pub(crate) fn fail(&mut self) {
        if let Self::Limiter(reporting) = self {
            reporting.fail();
        }
    }
}

/// A limiter's permit and what the call said so far; reports it when dropped.
///
/// Dropped before anything was noted (the response future was dropped while the inner
/// service ran, or the inner service panicked), it reports nothing: a cancellation says
/// nothing about the server.
pub(crate) struct Reporting {
    permit: Option<OwnedLimiterPermit>,
    verdict: Option<Verdict>,
}

/// What a call said about the server.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Anything but an overload with a pause already in force.
    Done(Outcome),
    /// An overload whose `Retry-After` already paused the limiter until `until`.
    Overload { until: Option<Instant> },
}

impl Reporting {
    /// A limiter's permit, nothing noted yet.
    #[inline(never)]
    fn start(permit: OwnedLimiterPermit) -> GatePermit {
        GatePermit::Limiter(Box::new(Self {
            permit: Some(permit),
            verdict: None,
        }))
    }

    #[inline(never)]
    fn observe_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.observe(backpressure::outcome_of_head(status, headers));
    }

    #[inline(never)]
    fn observe_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(overload) = Overload::from_trailers(trailers) {
            self.observe(overload.outcome());
        }
    }

    #[inline(never)]
    fn fail(&mut self) {
        if !matches!(self.verdict, Some(Verdict::Overload { .. })) {
            self.verdict = Some(Verdict::Done(Outcome::Failed));
        }
    }

    #[inline(never)]
    fn observe(&mut self, outcome: Outcome) {
        self.verdict = Some(match outcome {
            Outcome::Overload {
                retry_after: Some(retry_after),
            } => {
                let until = saturating_deadline(Instant::now(), retry_after);
                if let Some(permit) = &self.permit {
                    // Now, not when the body ends: nobody else should start meanwhile.
                    permit.limiter().pause_until(until);
                }
                Verdict::Overload { until: Some(until) }
            }
            Outcome::Overload { retry_after: None } => Verdict::Overload { until: None },
            outcome => Verdict::Done(outcome),
        });
    }
}

impl Drop for Reporting {
    #[inline(never)]
    fn drop(&mut self) {
        let (Some(permit), Some(verdict)) = (self.permit.take(), self.verdict) else {
            return;
        };
        let outcome = match verdict {
            Verdict::Done(outcome) => outcome,
            // The pause was set when the signal arrived; reporting what is left of it
            // extends nothing.
            Verdict::Overload { until } => Outcome::Overload {
                retry_after: until
                    .map(|until| until.saturating_duration_since(Instant::now()))
                    .filter(|left| !left.is_zero()),
            },
        };
        permit.finish(outcome);
    }
}

/// `now + wait`, or, for a wait too long for the clock (a hostile `Retry-After`), thirty
/// years from now: a deadline either way, never none, so that a longer hint never means a
/// shorter pause. The limiter caps how long it honours a pause.
fn saturating_deadline(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Thirty years: as far ahead as [`saturating_deadline`] reaches.
const FAR_FUTURE: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

impl fmt::Debug for Reporting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporting")
            .field("permit", &self.permit)
            .field("verdict", &self.verdict)
            .finish()
    }
}
