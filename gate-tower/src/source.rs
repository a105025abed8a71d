//! Where a layer's permits come from: a gate, held as itself so that its path costs no
//! allocation, or any other [`OwnedAdmission`](gate_core::OwnedAdmission) (a limiter, a limit
//! shared through Redis, a per-key limit) behind a [`BoxAdmission`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gate_core::{
    Acquire, AcquireError, AcquireOwned, Admission, BoxAdmission, BoxPermit, Gate, Limiter,
    OwnedAdmission, Stats, WaitLimits,
};
use pin_project_lite::pin_project;

use crate::queue::{Entered, Queue};
use crate::refusal::RateLimited;
use crate::report::GatePermit;

/// What a layer, every service it wraps and every clone of those draw their permits from,
/// with the layer's [`Queue`].
#[derive(Debug, Clone)]
pub(crate) struct Source {
    admission: Kind,
    queue: Arc<Queue>,
}

/// Which kind of source it is.
#[derive(Debug, Clone)]
enum Kind {
    /// A gate made by the layer or handed to it.
    Owned(Arc<Gate>),
    /// A `static` gate (for instance one a `#[gated]` function also uses).
    Static(&'static Gate),
    /// Anything else, which learns how each call ended.
    Any(Arc<AnySource>),
}

/// An erased admission, and the limiter it is, if it is one (for the layer's accessors).
#[derive(Debug)]
struct AnySource {
    admission: BoxAdmission,
    limiter: Option<Arc<Limiter>>,
}

impl Source {
    pub(crate) fn owned(gate: Arc<Gate>) -> Self {
        let limit = gate.limit();
        Self::new(Kind::Owned(gate), limit)
    }

    pub(crate) fn static_gate(gate: &'static Gate) -> Self {
        Self::new(Kind::Static(gate), gate.limit())
    }

    pub(crate) fn limiter(limiter: Arc<Limiter>) -> Self {
        Self::any(BoxAdmission::new(Arc::clone(&limiter)), Some(limiter))
    }

    pub(crate) fn admission<A: OwnedAdmission>(admission: Arc<A>) -> Self {
        Self::any(BoxAdmission::new(admission), None)
    }

    fn any(admission: BoxAdmission, limiter: Option<Arc<Limiter>>) -> Self {
        let limit = admission.capacity().unwrap_or(1);
        Self::new(Kind::Any(Arc::new(AnySource { admission, limiter })), limit)
    }

    fn new(admission: Kind, limit: usize) -> Self {
        Self {
            admission,
            queue: Arc::new(Queue::new(limit)),
        }
    }

    /// The gate behind the concurrency limit, if there is one: the layer's, or a limiter's.
    /// The name of the gate this source draws from, if it has a named one: the label of
    /// the layer's logs.
    pub(crate) fn name(&self) -> Option<&'static str> {
        self.gate().and_then(Gate::name)
    }

    pub(crate) fn gate(&self) -> Option<&Gate> {
        match &self.admission {
            Kind::Owned(gate) => Some(gate),
            Kind::Static(gate) => Some(gate),
            Kind::Any(any) => any.limiter.as_deref().map(Limiter::gate),
        }
    }

    pub(crate) fn get_limiter(&self) -> Option<&Arc<Limiter>> {
        match &self.admission {
            Kind::Any(any) => any.limiter.as_ref(),
            Kind::Owned(_) | Kind::Static(_) => None,
        }
    }

    /// Callers admitted at once right now, if the source knows.
    pub(crate) fn capacity(&self) -> Option<usize> {
        match &self.admission {
            Kind::Owned(gate) => Some(gate.limit()),
            Kind::Static(gate) => Some(gate.limit()),
            Kind::Any(any) => any.admission.capacity(),
        }
    }

    /// The layer's queue of waiting requests.
    pub(crate) fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The source's statistics, with the refusals the layer made itself. A source that
    /// keeps none reports the layer's own counts only.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = match &self.admission {
            Kind::Owned(gate) => gate.stats(),
            Kind::Static(gate) => gate.stats(),
            Kind::Any(any) => any.admission.snapshot().unwrap_or_else(|| {
                let mut stats = Stats::default();
                stats.limit = any.admission.capacity().unwrap_or(0);
                stats
            }),
        };
        stats.rejected += self.queue.rejected();
        stats
    }

    /// Takes a permit at once if nothing stands in the way (for a gate, its lock-free path
    /// has one): the uncontended case, with no future to build and poll.
    #[inline]
    pub(crate) fn try_acquire_uncontended(&self) -> Option<GatePermit> {
        match &self.admission {
            Kind::Owned(gate) => gate
                .try_acquire_owned_uncontended()
                .map(|permit| GatePermit::Owned { _permit: permit }),
            Kind::Static(gate) => gate
                .try_acquire_uncontended()
                .map(|permit| GatePermit::Static { _permit: permit }),
            Kind::Any(any) => any.try_admit(),
        }
    }

    /// Starts waiting for one permit within `limits`; nothing happens until it is polled.
    #[inline]
    pub(crate) fn acquire(&self, limits: WaitLimits) -> Acquiring {
        let queued = Queued {
            queue: Arc::clone(&self.queue),
            limits,
            entered: None,
        };
        match &self.admission {
            Kind::Owned(gate) => Acquiring::Owned {
                future: Arc::clone(gate).acquire_owned_with(1, limits),
                queued,
            },
            Kind::Static(gate) => Acquiring::Static {
                future: gate.acquire_with(1, limits),
                queued,
            },
            Kind::Any(any) => any.acquire(limits, queued),
        }
    }
}

impl AnySource {
    /// Out of line, like everything but a gate, so that the gates' path stays as lean as it
    /// was.
    #[inline(never)]
    fn try_admit(&self) -> Option<GatePermit> {
        self.admission.try_admit().map(GatePermit::Any)
    }

    #[inline(never)]
    fn acquire(&self, limits: WaitLimits, queued: Queued) -> Acquiring {
        Acquiring::Any {
            future: self.admission.admit_boxed(limits),
            queued,
        }
    }
}

/// What a keyed layer's admission says of one request before any waiting.
pub(crate) enum KeyedAdmit {
    /// Admitted at once.
    Now(GatePermit),
    /// To wait in its key's queue.
    Wait(KeyedWait),
    /// Refused at once: its key is new and no room is left for keys, its key's queue is
    /// full, or its key's rate has no cell free within `max_wait`.
    Denied(Denied),
}

/// Why a source gave a request no permit.
#[derive(Debug)]
pub(crate) enum Denied {
    /// Refused as a gate refuses (answered `503`).
    Refused(AcquireError),
    /// Its key's rate has no cell free within `max_wait` (answered `429`).
    RateLimited(RateLimited),
}

/// Admission through a [`BoxAdmission`], as it hands it out.
pub(crate) type AnyAdmit = Pin<Box<dyn Future<Output = Result<BoxPermit, AcquireError>> + Send>>;

/// A keyed layer's request waiting in its key's queue.
pub(crate) type KeyedWait = Pin<Box<dyn Future<Output = Result<GatePermit, Denied>> + Send>>;

pin_project! {
    /// Waiting for one permit of a [`Source`]. Cancel-safe, as gate-core's futures are.
    #[project = AcquiringProj]
    pub(crate) enum Acquiring {
        Owned { #[pin] future: AcquireOwned, queued: Queued },
        Static { #[pin] future: Acquire<'static>, queued: Queued },
        // The fat pointer costs the gates' path nothing: a response future that waits keeps
        // this enum behind a box.
        Any { future: AnyAdmit, queued: Queued },
        // A keyed layer's request, waiting in its key's queue: the keyed gate bounds that
        // queue per key, and the layer's queue (one for all keys) is not entered, so that
        // one key's flood cannot refuse another key's request.
        Keyed { future: KeyedWait },
    }
}

impl Acquiring {
    /// Waiting for a permit of a keyed layer's request, in its key's queue.
    pub(crate) fn keyed(future: KeyedWait) -> Self {
        Self::Keyed { future }
    }
}

/// A waiter's place in its layer's [`Queue`]: entered at the first poll that has to wait,
/// left when admitted or dropped.
#[derive(Debug)]
pub(crate) struct Queued {
    queue: Arc<Queue>,
    limits: WaitLimits,
    entered: Option<Entered>,
}

impl Queued {
    /// What the source's admission said, once the layer's queue has had its say.
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
            // The source queued the request; the queue may still refuse it, and dropping the
            // admission then gives up its place in the source's queue.
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
    type Output = Result<GatePermit, Denied>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AcquiringProj::Owned { future, queued } => queued
                .poll(future.poll(cx))
                .map_ok(|permit| GatePermit::Owned { _permit: permit })
                .map_err(Denied::Refused),
            AcquiringProj::Static { future, queued } => queued
                .poll(future.poll(cx))
                .map_ok(|permit| GatePermit::Static { _permit: permit })
                .map_err(Denied::Refused),
            AcquiringProj::Any { future, queued } => poll_any(future, queued, cx),
            AcquiringProj::Keyed { future } => future.as_mut().poll(cx),
        }
    }
}

#[inline(never)]
fn poll_any(
    future: &mut AnyAdmit,
    queued: &mut Queued,
    cx: &mut Context<'_>,
) -> Poll<Result<GatePermit, Denied>> {
    queued
        .poll(future.as_mut().poll(cx))
        .map_ok(GatePermit::Any)
        .map_err(Denied::Refused)
}

impl fmt::Debug for Acquiring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Owned { future, .. } => f.debug_tuple("Owned").field(future).finish(),
            Self::Static { future, .. } => f.debug_tuple("Static").field(future).finish(),
            Self::Any { .. } => f.write_str("Any"),
            Self::Keyed { .. } => f.write_str("Keyed"),
        }
    }
}
